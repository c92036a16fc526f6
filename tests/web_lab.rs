//! A QEMU lab boot watched in a real browser (issue 12): run by scripts/test-boot inside the lab's
//! server network namespace, where the daemon serves the lab segment. Headless Chromium logs in
//! as the lab's viewer and keeps the overview open; test-boot boots the virtual machine once
//! the page is ready (the file $PXELATOR_LAB_READY appears); the machine's row must change to
//! booting without the page being reloaded, and its page must then tell the boot's story by
//! phase. Ignored by `cargo test` (it needs the lab); test-boot runs it with `--ignored`.
mod browser;
use browser::*;
use fantoccini::Locator;
use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (scripts/test-boot sets it)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QEMU lab: scripts/test-boot runs it inside the lab network"]
async fn a_lab_boot_seen_live_in_the_browser() {
    let base = env("PXELATOR_LAB_URL");
    let host = env("PXELATOR_LAB_HOST");
    let ready = env("PXELATOR_LAB_READY");
    let phases: Vec<String> = env("PXELATOR_LAB_PHASES")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert!(
        have_chromium(),
        "chromium and chromium-driver are needed (scripts/setup)"
    );
    let (_driver, c) = start_browser().await;
    login(
        &c,
        &base,
        &env("PXELATOR_LAB_USER"),
        &env("PXELATOR_LAB_PASSWORD"),
    )
    .await;
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/"));
    let row_xpath = format!("//tr[td/a[text()='{host}']]");
    let row = || async {
        for _ in 0..20 {
            if let Ok(r) = c.find(Locator::XPath(&row_xpath)).await {
                if let Ok(t) = r.text().await {
                    return t;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no row for {host} on the overview");
    };
    let before = row().await;
    assert!(
        before.contains("never seen"),
        "{host} before its boot: {before}"
    );
    let page = c.find(Locator::Css("html")).await.unwrap();
    std::fs::write(&ready, "watching\n").unwrap();

    // The boot, live: the row changes while the page stays the same document.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut now = before.clone();
    while !now.contains("booting") && !now.contains("up") {
        assert!(
            Instant::now() < deadline,
            "{host}'s row never changed live: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = row().await;
    }
    assert!(
        page.tag_name().await.is_ok(),
        "the overview was reloaded instead of updated"
    );
    println!("live on the overview: {now}");
    shot(&c, "lab-overview-live").await;

    // Its story, once the boot has gone through its phases.
    let want = phases.join(" ");
    let mut story = String::new();
    while Instant::now() < deadline {
        c.goto(&format!("{base}/ui/machines/{host}")).await.unwrap();
        let mut got = Vec::new();
        if let Ok(rows) = c
            .find_all(Locator::XPath(
                "//h3[1]/following-sibling::table[1]/tbody/tr/td[1]",
            ))
            .await
        {
            for r in rows {
                got.push(r.text().await.unwrap_or_default());
            }
        }
        story = got.join(" ");
        if story.starts_with(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        story.starts_with(&want),
        "{host}'s boot story: {story:?}, want {want:?} first"
    );
    println!("boot story on its page: {story}");
    assert!(
        c.find(Locator::Css("svg.story rect")).await.is_ok(),
        "the timeline is drawn"
    );
    shot(&c, "lab-boot-story").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    c.close().await.unwrap();
}
