//! Headless Chromium for the web UI tests: chromedriver started and killed by PID, a WebDriver
//! session (fantoccini), screenshots, the browser console, keyboard-only navigation.
#![allow(dead_code)]
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Driver(Child, pub u16);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn shots_dir() -> PathBuf {
    let d = std::env::var_os("PXELATOR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/web-ui-screenshots")
        });
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--window-size=1280,900", "--disable-gpu"]}),
    );
    caps.insert(
        "goog:loggingPrefs".into(),
        serde_json::json!({"browser": "ALL"}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromedriver session")
}

pub async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 2000, "screenshot {name} is empty");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Browser console messages at SEVERE level since the last call (chromedriver's log API).
pub async fn console_errors(c: &Client) -> Vec<String> {
    match c.issue_cmd(LogCmd).await {
        Ok(v) => v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect(),
        Err(e) => vec![format!("could not read the browser log: {e}")],
    }
}

#[derive(Debug)]
struct LogCmd;
impl fantoccini::wd::WebDriverCompatibleCommand for LogCmd {
    fn endpoint(
        &self,
        base: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Clicks what `loc` finds and waits for the next page to replace this one.
pub async fn click_and_load(c: &Client, loc: Locator<'_>) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(loc).await.unwrap().click().await.unwrap();
    for _ in 0..200 {
        if old.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new page within 10 s");
}

/// Keyboard only: presses Tab until the focused element reads `label` (its text or its
/// aria-label), at most `tabs` times, then Enter, and waits for the next page.
pub async fn keyboard_to(c: &Client, label: &str, tabs: usize) {
    for _ in 0..tabs {
        press_tab(c).await;
        let el = c.active_element().await.unwrap();
        let aria = el
            .attr("aria-label")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        if el.text().await.unwrap_or_default() == label || aria == label {
            let old = c.find(Locator::Css("html")).await.unwrap();
            el.send_keys("\u{E007}").await.unwrap(); // Enter
            for _ in 0..200 {
                if old.tag_name().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("Enter on {label:?} loaded no page within 10 s");
        }
    }
    panic!("{tabs} Tabs never reached {label:?}");
}

pub async fn login(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    c.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click_and_load(c, Locator::Css("button[type=submit]")).await;
}

pub async fn body(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn which(cmd: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(cmd))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

/// Starts chromedriver on a free loopback port and opens a headless Chromium session; the
/// driver is killed (by PID) when the returned guard is dropped.
pub async fn start_browser() -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
        port,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = browser(port).await;
    (driver, c)
}

/// Whether headless Chromium and chromedriver are installed.
pub fn have_chromium() -> bool {
    which("chromium").is_ok() && which("chromedriver").is_ok()
}

/// The text of what `loc` finds (the test fails when nothing is found).
pub async fn text_at(c: &Client, loc: Locator<'_>) -> String {
    c.find(loc).await.unwrap().text().await.unwrap()
}

/// Types `text` into what `loc` finds.
pub async fn type_into(c: &Client, loc: Locator<'_>, text: &str) {
    c.find(loc).await.unwrap().send_keys(text).await.unwrap();
}

/// Says loudly that a browser test did not run (counted as skipped by scripts/test).
pub fn skipped_without_chromium() {
    println!(
        "SKIPPED: chromium and chromium-driver are not installed (scripts/setup installs them)"
    );
}

/// Keyboard only: presses Tab from the top of the page until every link and form control
/// (not those inside a closed `<details>`; a radio group counts once) has had the focus once;
/// returns how many there are.
/// Fails naming the ones Tab never reached.
pub async fn tab_reaches_everything(c: &Client) -> usize {
    let n = c
        .execute(
            "const els = [...document.querySelectorAll('a[href],button,input:not([type=hidden]),select,textarea,summary')]
               .filter(e => { const d = e.closest('details:not([open])');
                              return !d || (e.tagName === 'SUMMARY' && e.parentElement === d); });
             // A group of radio buttons is one Tab stop (arrow keys move inside it).
             const groups = {}; let n = 0;
             els.forEach(e => {
               if (e.type === 'radio') {
                 const k = e.form ? e.form.id + '/' + e.name : e.name;
                 if (!(k in groups)) groups[k] = n++;
                 e.dataset.kb = groups[k];
               } else { e.dataset.kb = n++; }
             });
             document.activeElement && document.activeElement.blur();
             return n;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..(n + 10) {
        press_tab(c).await;
        let i = c
            .execute("return document.activeElement.dataset.kb ?? null;", vec![])
            .await
            .unwrap();
        if let Some(i) = i.as_str().and_then(|s| s.parse::<usize>().ok()) {
            seen.insert(i);
        }
        if seen.len() == n {
            break;
        }
    }
    if seen.len() < n {
        let missing: Vec<usize> = (0..n).filter(|i| !seen.contains(i)).collect();
        let names = c
            .execute(
                "return arguments[0].map(i => { const e = document.querySelector(`[data-kb=\"${i}\"]`);
                   return e.tagName + ' ' + (e.id || e.name || e.textContent.trim().slice(0, 30)); });",
                vec![serde_json::json!(missing)],
            )
            .await
            .unwrap();
        panic!("Tab reached {} of {n} controls; never: {names}", seen.len());
    }
    n
}

/// Keyboard only: one Tab from the focused element.
pub async fn press_tab(c: &Client) {
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
}
