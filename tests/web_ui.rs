//! The web UI in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, via fantoccini) against the real daemon on loopback, with machines added by
//! the CLI and traffic from curl (TFTP and HTTP from 127.0.0.2, a machine's address).
//! Screenshots of each page go to $PXELATOR_SCREENSHOTS (default target/web-ui-screenshots).
//! Skipped, loudly, without chromium + chromium-driver (scripts/setup installs them).
mod browser;
mod common;
use browser::*;
use common::*;
use fantoccini::Locator;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A form POST with the browser's own session cookie and CSRF token (what a page's form would
/// send, whether or not the page shows that form).
async fn post_as_browser(c: &fantoccini::Client, http: u16, path: &str, form: &str) -> Resp {
    let cookie = c
        .get_named_cookie("pxl_session")
        .await
        .unwrap()
        .value()
        .to_string();
    let token = c
        .find(Locator::Css("header form input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    request(
        http,
        "POST",
        path,
        &[
            ("Cookie", &format!("pxl_session={cookie}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={token}&{form}"),
    )
    .unwrap()
}

/// The audit store's events matching `filter` (the CLI's `audit find`), once there are `want`
/// of them: events are written in batches, so this waits up to 5 s.
async fn stored_events(cfg: &Path, filter: &str, want: usize) -> String {
    let mut out = String::new();
    for _ in 0..50 {
        let o = px(cfg, &["audit", "find", filter]);
        out = String::from_utf8_lossy(&o.stdout).into_owned();
        if out.lines().count() == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

fn curl_from(ip: &str, url: &str) {
    let o = Command::new("curl")
        .args([
            "-s",
            "-S",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--interface",
            ip,
            url,
        ])
        .output()
        .expect("curl");
    assert!(
        o.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A directory, an HTTP port and a config for one more daemon beside the others of this
/// file (its own TFTP port: the tests run at once).
fn daemon_dir() -> (tempfile::TempDir, u16, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let http = free_port();
    let cfg = loopback_config_with(
        d.path(),
        http,
        &format!("[tftp]\nlisten = \"127.0.0.1:{}\"\n", free_port()),
    );
    (d, http, cfg)
}

fn add_user(cfg: &Path, name: &str, role: &str) {
    user_with_token(cfg, name, role, &format!("{name}-password-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_chromium() {
    if !have_chromium() {
        return skipped_without_chromium();
    }
    let d = tempfile::tempdir().unwrap();
    let (http, tftp) = (free_port(), free_port());
    let cfg = loopback_config_with(
        d.path(),
        http,
        &format!("[tftp]\nlisten = \"127.0.0.1:{tftp}\"\n[[subnet]]\nnetwork = \"127.0.0.0/8\"\n"),
    );
    std::fs::write(d.path().join("boot/hello.bin"), vec![7u8; 40_000]).unwrap();
    add_user(&cfg, "amy", "operator");
    add_user(&cfg, "vic", "viewer");
    let o = px(&cfg, &["user", "email", "amy", "amy@library.example"]);
    assert!(o.status.success(), "{}", text(&o));
    for (name, mac, ip, group) in [
        ("kiosk1", "52:54:00:aa:00:01", "127.0.0.2", "reading-room"),
        ("kiosk2", "52:54:00:aa:00:02", "127.0.0.3", "children"),
    ] {
        let o = px(
            &cfg,
            &[
                "host",
                "add",
                name,
                "--mac",
                mac,
                "--ip",
                ip,
                "--param",
                &format!("group={group}"),
                "--author",
                "Setup Script <setup@library.example>",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    // A machine that registered itself (as DHCP registration writes it), committed with git.
    let repo = d.path().join("conf-repo");
    std::fs::write(
        repo.join("machines/52-54-00-aa-00-09.toml"),
        "# Registered automatically by pxelator when this MAC first asked for an address.\n\
         mac = \"52:54:00:aa:00:09\"\nip = \"127.0.0.9\"\nhostname = \"host-aa0009\"\nregistered = \"2026-11-30T08:00:00Z\"\n",
    )
    .unwrap();
    // And a file with a mistake in it: the health page names it with its line.
    std::fs::write(
        repo.join("machines/broken.toml"),
        "mac = \"52:54:00:aa:00:0a\"\nip = \"not-an-ip\"\n",
    )
    .unwrap();
    // Power: Wake-on-LAN to a port this test listens on (the magic packets go to the loopback
    // subnet's broadcast, 127.255.255.255), a weekday schedule and today as a holiday.
    let wol = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
    wol.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let wol_port = wol.local_addr().unwrap().port();
    let today = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        repo.join("power.toml"),
        format!(
            "timezone = \"UTC\"\nwol_port = {wol_port}\n[group.reading-room]\non = \"30 7 * * 1-5\"\noff = \"30 20 * * 1-5\"\n\
             [host.kiosk2]\noff = \"0 */6 * * *\"\n\
             [[exception]]\ndate = \"{}\"\ntargets = [\"reading-room\"]\n",
            today.trim()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("groups")).unwrap();
    std::fs::write(
        repo.join("groups/reading-room.toml"),
        "[params]\nnoblank = \"true\"\n",
    )
    .unwrap();
    git(&repo, &["add", "machines", "power.toml", "groups"]);
    git(
        &repo,
        &[
            "-c",
            "user.name=pxelator",
            "-c",
            "user.email=pxelator@localhost",
            "commit",
            "-q",
            "-m",
            "Register 52:54:00:aa:00:09",
        ],
    );
    let _daemon = Daemon::start(&cfg, &d.path().join("daemon.log"));
    wait_listening(http, Duration::from_secs(20), || {
        std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default()
    });
    // kiosk1 fetches files: it shows as seen over TFTP and HTTP.
    curl_from("127.0.0.2", &format!("tftp://127.0.0.1:{tftp}/hello.bin"));
    curl_from(
        "127.0.0.2",
        &format!("http://127.0.0.1:{http}/files/hello.bin"),
    );

    let (_driver, c) = start_browser().await;
    let base = format!("http://127.0.0.1:{http}");

    // Not logged in: the UI sends the browser to the login form.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    shot(&c, "login").await;
    login(&c, &base, "amy", "wrong-password").await;
    assert!(body(&c).await.contains("wrong user or password"));

    // The operator logs in and sees both machines, kiosk1 seen over TFTP and HTTP.
    login(&c, &base, "amy", "amy-password-1").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/"));
    let text = body(&c).await;
    assert!(
        text.contains("kiosk1") && text.contains("kiosk2") && text.contains("reading-room"),
        "{text}"
    );
    let row = text_at(&c, Locator::XPath("//tr[td/a[text()='kiosk1']]")).await;
    assert!(row.contains("booting: HTTP"), "kiosk1's row: {row}");
    assert_eq!(
        row.matches("s ago").count(),
        2,
        "TFTP and HTTP seen just now: {row}"
    );
    shot(&c, "overview").await;
    // Live: kiosk2 fetches a file while the overview is open; its row follows without a reload.
    // The live script replaces the table body: a row found just before may be gone when read.
    let row2 = || async {
        for _ in 0..20 {
            if let Ok(r) = c.find(Locator::XPath("//tr[td/a[text()='kiosk2']]")).await {
                if let Ok(t) = r.text().await {
                    return t;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kiosk2's row could not be read");
    };
    assert!(row2().await.contains("never seen"));
    let page = c.find(Locator::Css("html")).await.unwrap();
    curl_from("127.0.0.3", &format!("tftp://127.0.0.1:{tftp}/hello.bin"));
    let mut live = String::new();
    for _ in 0..100 {
        live = row2().await;
        if live.contains("booting: TFTP") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        live.contains("booting: TFTP"),
        "kiosk2's row did not follow live: {live}"
    );
    assert!(
        page.tag_name().await.is_ok(),
        "the page was reloaded instead of updated"
    );
    // Filter.
    type_into(&c, Locator::Id("q"), "children").await;
    click_and_load(&c, Locator::Css("form[role=search] button")).await;
    let text = body(&c).await;
    assert!(
        text.contains("kiosk2") && !text.contains("kiosk1"),
        "{text}"
    );

    // The approval queue: the self-registered machine, approved as kiosk3 in a group.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(body(&c).await.contains("Registered by themselves"));
    click_and_load(&c, Locator::LinkText("host-aa0009")).await;
    let name = c.find(Locator::Id("ap_name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys("kiosk3").await.unwrap();
    type_into(&c, Locator::Id("ap_group"), "reading-room").await;
    shot(&c, "approve").await;
    click_and_load(&c, Locator::Id("approve")).await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/ui/machines/kiosk3"));
    let text = body(&c).await;
    assert!(
        text.contains("Committed") && !text.contains("Approve and commit"),
        "{text}"
    );
    let file = git(&repo, &["show", "HEAD:machines/52-54-00-aa-00-09.toml"]);
    assert!(
        file.contains("hostname = \"kiosk3\"")
            && file.contains("group = \"reading-room\"")
            && !file.contains("registered"),
        "{file}"
    );
    assert!(git(&repo, &["log", "-1", "--format=%an|%s"])
        .starts_with("amy|Edit host host-aa0009: hostname kiosk3"));

    // Enough traffic from kiosk1 that its events take more than one page.
    for _ in 0..55 {
        curl_from(
            "127.0.0.2",
            &format!("http://127.0.0.1:{http}/files/hello.bin"),
        );
    }

    // Keyboard only: Tab to the kiosk1 link from the top of the overview, Enter opens it.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    keyboard_to(&c, "kiosk1", 30).await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/ui/machines/kiosk1"));
    let text = body(&c).await;
    assert!(text.contains("http_served"), "kiosk1's events: {text}");
    assert!(text.contains("Setup Script"), "its history: {text}");
    shot(&c, "machine").await;
    // Its events, paged: 50 on the page, the older ones behind a link, in time order.
    let times = || async {
        let mut out = Vec::new();
        for r in c
            .find_all(Locator::XPath(
                "//h2[@id='events']/following-sibling::table[1]/tbody/tr/td[1]",
            ))
            .await
            .unwrap()
        {
            out.push(r.text().await.unwrap());
        }
        out
    };
    let page1 = times().await;
    assert_eq!(page1.len(), 50, "{page1:?}");
    click_and_load(&c, Locator::Id("older")).await;
    assert!(body(&c).await.contains("Older events"));
    let page2 = times().await;
    assert!(!page2.is_empty(), "older events");
    assert!(
        body(&c).await.contains("tftp_finished"),
        "its first TFTP transfer is on the older page"
    );
    assert!(
        page2.first().unwrap() <= page1.last().unwrap(),
        "page 2 is older: {} vs {}",
        page2[0],
        page1[49]
    );
    c.goto(&format!("{base}/ui/machines/kiosk1")).await.unwrap();

    // Next boot: the local disk once. The boot script kiosk1 fetches says exit, the one after
    // is its usual one again, and both are in the audit store.
    click_and_load(&c, Locator::Id("next-local")).await;
    let shown = text_at(&c, Locator::Id("next-boot")).await;
    assert!(shown.contains("Its local disk, once"), "{shown}");
    let script = |n: u32| {
        let o = Command::new("curl")
            .args(["-s", "--max-time", "10", "--interface", "127.0.0.2"])
            .arg(format!(
                "http://127.0.0.1:{http}/boot/52-54-00-aa-00-01.ipxe"
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "script fetch {n}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = script(1);
    assert!(
        first.contains("next boot: local disk (once)") && first.ends_with("exit\n"),
        "{first}"
    );
    let second = script(2);
    assert!(!second.contains("next boot"), "used once: {second}");
    c.refresh().await.unwrap();
    let shown = text_at(&c, Locator::Id("next-boot")).await;
    assert!(shown.contains("As its profile says"), "{shown}");
    let kinds = stored_events(
        &cfg,
        r#"{"kind": {"$in": ["next_boot_set", "next_boot_used"]}}"#,
        2,
    )
    .await;
    assert!(
        kinds.contains("\"kind\":\"next_boot_set\"")
            && kinds.contains("\"user\":\"amy\"")
            && kinds.contains("\"kind\":\"next_boot_used\""),
        "{kinds}"
    );

    // Edit a parameter: a commit authored by amy.
    type_into(&c, Locator::Id("param_key"), "homepage").await;
    type_into(
        &c,
        Locator::Id("param_value"),
        "http://opac.library.example/?k=1&x=<y>",
    )
    .await;
    click_and_load(&c, Locator::Css("main form[method=post] button.primary")).await;
    let text = body(&c).await;
    assert!(
        text.contains("Committed") && text.contains("amy <amy@library.example>"),
        "{text}"
    );
    assert!(
        text.contains("http://opac.library.example/?k=1&x=<y>"),
        "the page shows the new value: {text}"
    );
    let log = git(&repo, &["log", "-1", "--format=%an <%ae>|%s"]);
    assert!(
        log.starts_with("amy <amy@library.example>|Edit host kiosk1"),
        "{log}"
    );
    let file = git(&repo, &["show", "HEAD:machines/kiosk1.toml"]);
    assert!(
        file.contains("homepage = \"http://opac.library.example/?k=1&x=<y>\""),
        "{file}"
    );
    shot(&c, "machine-edited").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Its history: the diff between the two versions, the file as of a date and as of the
    // first commit, and restoring the first version (a commit by amy).
    click_and_load(&c, Locator::Css("a[href$=\"/history\"]")).await;
    click_and_load(&c, Locator::Id("compare")).await;
    let diff = text_at(&c, Locator::Css("pre.diff")).await;
    assert!(
        diff.contains("+homepage = \"http://opac.library.example/?k=1&x=<y>\""),
        "{diff}"
    );
    let added = c.find_all(Locator::Css("pre.diff span.add")).await.unwrap();
    assert_eq!(added.len(), 1, "one line added: {diff}");
    shot(&c, "history-diff").await;
    let first = git(
        &repo,
        &[
            "log",
            "--format=%h",
            "-1",
            "--abbrev=12",
            "HEAD~1",
            "--",
            "machines/kiosk1.toml",
        ],
    );
    let at = c.find(Locator::Id("at")).await.unwrap();
    at.send_keys("2999-01-01").await.unwrap();
    click_and_load(&c, Locator::Css("input#at ~ button")).await;
    let text = body(&c).await;
    assert!(
        text.contains("As of 2999-01-01") && text.contains("homepage = "),
        "{text}"
    );
    let at = c.find(Locator::Id("at")).await.unwrap();
    at.clear().await.unwrap();
    at.send_keys(first.trim()).await.unwrap();
    click_and_load(&c, Locator::Css("input#at ~ button")).await;
    let shown = text_at(&c, Locator::Css("h2 + pre")).await;
    assert!(
        shown.contains("52:54:00:aa:00:01") && !shown.contains("homepage"),
        "{shown}"
    );
    click_and_load(
        &c,
        Locator::Css(&format!("button[form=revert-{}]", first.trim())),
    )
    .await;
    assert!(body(&c).await.contains("Committed"));
    let log = git(&repo, &["log", "-1", "--format=%an|%s"]);
    assert!(
        log.starts_with("amy|Restore machines/kiosk1.toml as of"),
        "{log}"
    );
    let file = git(&repo, &["show", "HEAD:machines/kiosk1.toml"]);
    assert!(!file.contains("homepage"), "{file}");
    // And back to the edited version, for the rest of the test.
    c.goto(&format!("{base}/ui/machines/kiosk1/history"))
        .await
        .unwrap();
    let edited = git(
        &repo,
        &["log", "--format=%h", "-1", "--abbrev=12", "HEAD~1"],
    );
    click_and_load(
        &c,
        Locator::Css(&format!("button[form=revert-{}]", edited.trim())),
    )
    .await;
    let file = git(&repo, &["show", "HEAD:machines/kiosk1.toml"]);
    assert!(file.contains("homepage"), "{file}");
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The audit explorer: the same rows as the CLI's `audit find` with the same filter (kiosk1's
    // own traffic: the browser's page loads are events too, and would race the comparison).
    click_and_load(&c, Locator::LinkText("Audit")).await;
    let filter = c.find(Locator::Id("filter")).await.unwrap();
    filter.clear().await.unwrap();
    filter
        .send_keys(r#"{"ip": "127.0.0.2", "source": {"$in": ["tftp", "http"]}}"#)
        .await
        .unwrap();
    c.find(Locator::Id("plan"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click_and_load(&c, Locator::Css("form[role=search] button")).await;
    let plan = text_at(&c, Locator::Id("query-plan")).await;
    assert!(
        plan.contains("POSTINGS ip = 127.0.0.2"),
        "the query's plan: {plan}"
    );
    let rows = c
        .find_all(Locator::Css("main table tbody tr"))
        .await
        .unwrap()
        .len();
    let cli = px(
        &cfg,
        &[
            "audit",
            "find",
            r#"{"ip": "127.0.0.2", "source": {"$in": ["tftp", "http"]}}"#,
            "--limit",
            "100",
        ],
    );
    let cli_rows = String::from_utf8_lossy(&cli.stdout).lines().count();
    assert!(
        rows >= 3 && rows == cli_rows,
        "explorer {rows} rows, CLI {cli_rows}"
    );
    shot(&c, "audit").await;
    // An aggregation: the same groups as the CLI's `audit aggregate`.
    let pipeline = r#"[{"$match": {"ip": "127.0.0.2"}}, {"$group": {"_id": {"k": "$kind", "s": "$source"}, "n": {"$count": {}}}}, {"$sort": {"_id": 1}}]"#;
    type_into(&c, Locator::Id("pipeline"), pipeline).await;
    click_and_load(&c, Locator::Id("run-aggregate")).await;
    let mut ui_groups = Vec::new();
    for r in c.find_all(Locator::Css("#groups tbody tr")).await.unwrap() {
        ui_groups.push(r.text().await.unwrap());
    }
    let cli = px(&cfg, &["audit", "aggregate", pipeline]);
    let cli_groups: Vec<serde_json::Value> = String::from_utf8_lossy(&cli.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cli_rows: Vec<String> = cli_groups
        .iter()
        .map(|g| {
            format!(
                "{} {} {}",
                g["_id"]["k"].as_str().unwrap(),
                g["_id"]["s"].as_str().unwrap(),
                g["n"]
            )
        })
        .collect();
    assert!(
        cli_rows.len() >= 2,
        "http_served and tftp_finished at least: {cli_rows:?}"
    );
    assert_eq!(ui_groups, cli_rows, "explorer's groups vs the CLI's");
    let head = text_at(&c, Locator::Css("#groups thead")).await;
    assert_eq!(head, "_id.k _id.s n");
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Graphs: this run's TFTP and HTTP traffic per hour, in requests and bytes.
    click_and_load(&c, Locator::LinkText("Graphs")).await;
    let label = |title: &'static str| {
        let c = c.clone();
        async move {
            c.find(Locator::Css(&format!("svg[aria-label^='{title}:']")))
                .await
                .unwrap()
                .attr("aria-label")
                .await
                .unwrap()
                .unwrap()
        }
    };
    let requests = label("Requests").await;
    let total: f64 = requests
        .trim_start_matches("Requests: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total >= 4.0, "2 TFTP + 2 HTTP at least: {requests}");
    let text = body(&c).await;
    assert!(
        text.contains("TFTP transfers (2)") && text.contains("HTTP responses"),
        "{text}"
    );
    let bytes = text_at(
        &c,
        Locator::XPath("//figure[.//*[starts-with(@aria-label, 'Bytes served:')]]"),
    )
    .await;
    assert!(
        bytes.contains("TFTP transfers (0.08)"),
        "2 × 40 000 bytes over TFTP, in MB: {bytes}"
    );
    assert!(
        label("Boots").await.starts_with("Boots: 0 "),
        "no DHCP here"
    );
    assert_eq!(
        c.find_all(Locator::Css("figure.chart"))
            .await
            .unwrap()
            .len(),
        6
    );
    shot(&c, "graphs").await;
    c.execute(
        "document.querySelectorAll('figure.chart')[2].scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "graphs-traffic").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Power a group: one magic packet per machine of reading-room (kiosk1 and kiosk3) reaches
    // the loopback segment, and the page shows one result per machine.
    click_and_load(&c, Locator::LinkText("Groups")).await;
    let text = body(&c).await;
    assert!(
        text.contains("reading-room (2 machines)")
            && text.contains("children (1 machine)")
            && text.contains("noblank = true"),
        "{text}"
    );
    let cal = text_at(&c, Locator::Id("calendar")).await;
    assert!(
        cal.contains("07:30 on reading-room"),
        "the week's schedule: {cal}"
    );
    let holidays = c
        .find_all(Locator::Css("#calendar .slot.holiday"))
        .await
        .unwrap();
    let workday = !matches!(
        Command::new("date")
            .args(["-u", "+%u"])
            .output()
            .unwrap()
            .stdout
            .as_slice(),
        b"6\n" | b"7\n"
    );
    assert_eq!(
        holidays.len(),
        if workday { 2 } else { 0 },
        "today is a holiday: {cal}"
    );
    shot(&c, "groups").await;
    // From the keyboard: Tab to the group's "Power on" (named for screen readers too), Enter.
    keyboard_to(&c, "Power on: every machine of reading-room", 40).await;
    let mut woken = Vec::new();
    let mut buf = [0u8; 200];
    while let Ok((n, _)) = wol.recv_from(&mut buf) {
        assert_eq!(n, 102, "a magic packet is 102 bytes");
        assert_eq!(&buf[..6], &[0xff; 6]);
        woken.push(
            buf[6..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        );
        if woken.len() == 2 {
            break;
        }
    }
    woken.sort();
    assert_eq!(woken, ["52:54:00:aa:00:01", "52:54:00:aa:00:09"]);
    let rows = text_at(&c, Locator::Id("power-results")).await;
    assert!(
        rows.contains("kiosk1")
            && rows.contains("kiosk3")
            && rows
                .matches(&format!("via 127.255.255.255:{wol_port}"))
                .count()
                == 2,
        "{rows}"
    );
    assert!(body(&c).await.contains("2 of 2 machines done"));
    shot(&c, "group-power").await;
    // A group default, set on the groups page: one commit by amy; kiosk3 (no homepage of its
    // own) gets it, kiosk1 keeps its own.
    c.goto(&format!("{base}/ui/groups")).await.unwrap();
    c.find(Locator::XPath("//summary[contains(., 'reading-room')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    type_into(&c, Locator::Id("key-reading-room"), "homepage").await;
    type_into(
        &c,
        Locator::Id("value-reading-room"),
        "https://library.example/start",
    )
    .await;
    click_and_load(
        &c,
        Locator::Css("form[action='/ui/groups/reading-room/defaults'] button"),
    )
    .await;
    assert!(body(&c).await.contains("Committed"));
    let file = git(&repo, &["show", "HEAD:groups/reading-room.toml"]);
    assert!(
        file.contains("homepage = \"https://library.example/start\"")
            && file.contains("noblank = \"true\""),
        "{file}"
    );
    assert!(git(&repo, &["log", "-1", "--format=%an|%s"])
        .starts_with("amy|Edit group reading-room: param homepage=https://library.example/start"));
    c.goto(&format!("{base}/ui/machines/kiosk3")).await.unwrap();
    let text = body(&c).await;
    assert!(
        text.contains("https://library.example/start (default of group reading-room)"),
        "{text}"
    );
    c.goto(&format!("{base}/ui/machines/kiosk1")).await.unwrap();
    assert!(body(&c)
        .await
        .contains("http://opac.library.example/?k=1&x=<y>"));
    // A machine's own button: reset needs AMT, which kiosk2 has not — the reason is shown.
    c.goto(&format!("{base}/ui/machines/kiosk2")).await.unwrap();
    click_and_load(&c, Locator::Id("power-reset")).await;
    let text = body(&c).await;
    assert!(
        text.contains("reset failed") && text.contains("reset needs Intel AMT"),
        "{text}"
    );
    // The power events reach the audit store (written in batches: wait a little).
    let stored = stored_events(&cfg, r#"{"kind": "power_requested", "method": "wol"}"#, 2).await;
    assert_eq!(
        stored.lines().count(),
        2,
        "the power events are in the audit store: {stored}"
    );
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Keyboard only, on the main pages: Tab reaches every link and form control.
    for path in [
        "/ui/",
        "/ui/machines/kiosk1",
        "/ui/machines/kiosk1/history",
        "/ui/groups",
        "/ui/graphs",
        "/ui/audit",
        "/ui/health",
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let n = tab_reaches_everything(&c).await;
        assert!(n >= 3, "{path}: {n} controls");
    }
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Logout ends the session on the server: the old cookie no longer works.
    let cookie = c
        .get_named_cookie("pxl_session")
        .await
        .unwrap()
        .value()
        .to_string();
    click_and_load(&c, Locator::Css("header form button")).await;
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    let r = request(
        http,
        "GET",
        "/ui/",
        &[("Cookie", &format!("pxl_session={cookie}"))],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 303, "the ended session still opens the overview");

    // A viewer sees the machine but gets no edit form, and a POST is refused.
    login(&c, &base, "vic", "vic-password-1").await;
    c.goto(&format!("{base}/ui/machines/kiosk1")).await.unwrap();
    let text = body(&c).await;
    assert!(
        text.contains("homepage") && !text.contains("Commit change"),
        "{text}"
    );
    shot(&c, "machine-viewer").await;
    assert!(
        c.find(Locator::Id("power-on")).await.is_err(),
        "no power buttons for a viewer"
    );
    // A viewer's POST to a power endpoint, with a valid session and CSRF token: refused, and no
    // packet goes out.
    let r = post_as_browser(&c, http, "/ui/groups/reading-room/power", "action=on").await;
    assert_eq!(r.status, 403, "a viewer pressed power");
    wol.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        wol.recv_from(&mut buf).is_err(),
        "a packet went out for the viewer"
    );
    // The viewer reads the daemon's health: the broken file, with path and line.
    click_and_load(&c, Locator::LinkText("Health")).await;
    let text = body(&c).await;
    assert!(
        text.contains("machines/broken.toml:2") && text.contains("1 problems"),
        "{text}"
    );
    let next = text_at(&c, Locator::Id("next-power")).await;
    assert!(
        next.contains(":00 UTC off kiosk2"),
        "the next scheduled power actions (kiosk2 every 6 hours): {next}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{http}")),
        "listening addresses: {text}"
    );
    shot(&c, "health").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    c.close().await.unwrap();
}

/// Host-file backups in the browser: an admin sees the pulls of a host (a real sshd), the
/// files each changed, a file's last change, previews a restore (the diff from what the host
/// has now) and writes it; a viewer gets neither the link nor the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_in_chromium() {
    use common::sshd::*;
    if !have_chromium() {
        return skipped_without_chromium();
    }
    if !sshd_available() {
        println!(
            "SKIPPED: web backups test: {SSHD} not installed (apt-get install openssh-server)"
        );
        return;
    }
    let (keys, key, authorized) = client_key();
    let host = start_sshd(&keys.path().join("h1"), &authorized);
    let etc = host.root.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let motd = etc.join("motd");
    std::fs::write(&motd, "Welcome, version 1\n").unwrap();
    let (d, http, cfg) = daemon_dir();
    add_user(&cfg, "ada", "admin");
    add_user(&cfg, "vic", "viewer");
    let o = px(
        &cfg,
        &[
            "host",
            "add",
            "kiosk1",
            "--mac",
            "52:54:00:bb:00:01",
            "--ip",
            "127.0.0.2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let repo = d.path().join("conf-repo");
    std::fs::write(
        repo.join("backup.toml"),
        format!(
            "[host.kiosk1]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nkey = \"{}\"\npaths = [\"{}\"]\n",
            host.port,
            key.display(),
            etc.display()
        ),
    )
    .unwrap();
    git(&repo, &["add", "backup.toml"]);
    git(&repo, &["commit", "-q", "-m", "Back up kiosk1's /etc"]);
    // Two pulls: the second records a change of motd; then the host's file changes again.
    for v in ["1", "2"] {
        std::fs::write(&motd, format!("Welcome, version {v}\n")).unwrap();
        let o = px(&cfg, &["backup", "run"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    std::fs::write(&motd, "Hacked by the kiosk user\n").unwrap();
    let rel = format!("{}/motd", etc.display())
        .trim_start_matches('/')
        .to_string();
    let first_pull = git(
        &repo,
        &[
            "log",
            "--format=%h",
            "--abbrev=12",
            "--reverse",
            "--",
            "hosts/kiosk1",
        ],
    );
    let first_pull = first_pull.lines().next().unwrap().to_string();

    let _daemon = Daemon::start(&cfg, &d.path().join("daemon.log"));
    wait_listening(http, Duration::from_secs(20), || {
        std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default()
    });
    let (_driver, c) = start_browser().await;
    let base = format!("http://127.0.0.1:{http}");
    login(&c, &base, "ada", "ada-password-1").await;
    c.goto(&format!("{base}/ui/machines/kiosk1")).await.unwrap();
    click_and_load(&c, Locator::Id("backups")).await;
    if c.find(Locator::Id("pulls")).await.is_err() {
        panic!("no pulls listed: {}", body(&c).await);
    }
    let pulls = text_at(&c, Locator::Id("pulls")).await;
    assert_eq!(
        c.find_all(Locator::Css("#pulls tbody tr"))
            .await
            .unwrap()
            .len(),
        2,
        "{pulls}"
    );
    assert!(pulls.contains(&rel), "the files each pull changed: {pulls}");
    let text = body(&c).await;
    assert!(text.contains("Last pull") && text.contains("ok"), "{text}");
    shot(&c, "backups").await;
    assert!(tab_reaches_everything(&c).await >= 3, "keyboard only");
    // The newest pull changed motd: its link shows the file's last change.
    click_and_load(&c, Locator::Css("#pulls tbody tr:first-child td a")).await;
    let diff = text_at(&c, Locator::Css("pre.diff")).await;
    assert!(
        diff.contains("-Welcome, version 1") && diff.contains("+Welcome, version 2"),
        "{diff}"
    );
    // Preview restoring the first pull's version: the diff from what the host has now.
    type_into(&c, Locator::Id("rev"), &first_pull).await;
    click_and_load(&c, Locator::Id("preview")).await;
    let preview = text_at(&c, Locator::Css("pre.diff")).await;
    assert!(
        preview.contains("-Hacked by the kiosk user") && preview.contains("+Welcome, version 1"),
        "{preview}"
    );
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "Hacked by the kiosk user\n",
        "a preview writes nothing"
    );
    shot(&c, "restore-preview").await;
    click_and_load(&c, Locator::Id("restore-now")).await;
    assert!(body(&c).await.contains("Restored /"), "{}", body(&c).await);
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "Welcome, version 1\n"
    );
    let stored = stored_events(&cfg, r#"{"kind": "backup_restored", "host": "kiosk1"}"#, 1).await;
    assert_eq!(
        stored.lines().count(),
        1,
        "the restore is an audit event: {stored}"
    );
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // A viewer: no link, and the page itself is refused.
    c.delete_all_cookies().await.unwrap();
    login(&c, &base, "vic", "vic-password-1").await;
    c.goto(&format!("{base}/ui/machines/kiosk1")).await.unwrap();
    assert!(c.find(Locator::Id("backups")).await.is_err());
    let cookie = c
        .get_named_cookie("pxl_session")
        .await
        .unwrap()
        .value()
        .to_string();
    let r = request(
        http,
        "GET",
        "/ui/machines/kiosk1/backups",
        &[("Cookie", &format!("pxl_session={cookie}"))],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 403, "a viewer read host-file backups");
    assert!(!r.body.contains("Welcome"), "{}", r.body);
    c.close().await.unwrap();
}

/// Live images in the browser: the stored versions with checksums and the profiles that boot
/// each, an import from a path on the server with its progress, switching a profile to a
/// pinned version (a commit by the user, comments kept; the boot script follows), removing an
/// unused version while the used one cannot be removed; a viewer gets no import form and its
/// POST is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_chromium() {
    if !have_chromium() {
        return skipped_without_chromium();
    }
    if which("mksquashfs").is_err() {
        println!(
            "SKIPPED: web images test: mksquashfs not installed (apt-get install squashfs-tools)"
        );
        return;
    }
    let (d, http, cfg) = daemon_dir();
    add_user(&cfg, "ada", "admin");
    add_user(&cfg, "vic", "viewer");
    let repo = d.path().join("conf-repo");
    std::fs::create_dir_all(repo.join("profiles")).unwrap();
    std::fs::write(
        repo.join("profiles/live-kiosk.toml"),
        "# The reading room's kiosks.\nboot = \"ipxe\"\nimage = \"kiosk\"\nkiosk = true\n",
    )
    .unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "profiles"]);
    git(&repo, &["commit", "-q", "-m", "Live kiosk profile"]);
    let o = px(
        &cfg,
        &[
            "host",
            "add",
            "kiosk1",
            "--mac",
            "52:54:00:cc:00:01",
            "--ip",
            "127.0.0.2",
            "--profile",
            "live-kiosk",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v1 = live_tree(&d.path().join("t1"), "one");
    let o = px(
        &cfg,
        &["image", "import", v1.to_str().unwrap(), "--name", "kiosk"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v2 = live_tree(&d.path().join("t2"), "two");

    let _daemon = Daemon::start(&cfg, &d.path().join("daemon.log"));
    wait_listening(http, Duration::from_secs(20), || {
        std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default()
    });
    let (_driver, c) = start_browser().await;
    let base = format!("http://127.0.0.1:{http}");
    login(&c, &base, "ada", "ada-password-1").await;
    click_and_load(&c, Locator::LinkText("Images")).await;
    let table = text_at(&c, Locator::Id("images")).await;
    assert!(
        table.contains("kiosk-v1") && table.contains("live-kiosk"),
        "{table}"
    );
    // Import the second version from a path on the server.
    type_into(&c, Locator::Id("source"), v2.to_str().unwrap()).await;
    type_into(&c, Locator::Id("name"), "kiosk").await;
    click_and_load(&c, Locator::Id("import")).await;
    let mut status = String::new();
    for _ in 0..100 {
        status = text_at(&c, Locator::Id("import-status")).await;
        if !status.starts_with("Importing") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.goto(&format!("{base}/ui/images")).await.unwrap();
    }
    assert!(
        status.contains("as kiosk-v2") && status.contains("by ada"),
        "{status}"
    );
    let rows = c.find_all(Locator::Css("#images tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 2);
    let v2_row = rows[1].text().await.unwrap();
    assert!(
        v2_row.contains("kiosk-v2")
            && v2_row.contains("current")
            && v2_row.contains("live-kiosk")
            && v2_row.contains("in use"),
        "{v2_row}"
    );
    let sum = Command::new("sha256sum")
        .arg(v2.join("live/filesystem.squashfs"))
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)[..64].to_string();
    let shown = rows[1]
        .find(Locator::Css("code"))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shown, sum, "the page shows the squashfs's SHA-256");
    shot(&c, "images").await;
    assert!(tab_reaches_everything(&c).await >= 3, "keyboard only");
    // Pin the profile to version 1: a commit by ada that keeps the file's comment; the
    // kiosk's boot script follows.
    c.find(Locator::Css("#use-live-kiosk option[value='kiosk-v1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click_and_load(
        &c,
        Locator::Css("form[action='/ui/profiles/live-kiosk/image'] button"),
    )
    .await;
    assert!(body(&c).await.contains("Committed"));
    let file = git(&repo, &["show", "HEAD:profiles/live-kiosk.toml"]);
    assert!(
        file.starts_with("# The reading room's kiosks.\n")
            && file.contains("image = \"kiosk-v1\"\n"),
        "{file}"
    );
    assert!(git(&repo, &["log", "-1", "--format=%an|%s"])
        .starts_with("ada|Profile live-kiosk boots image kiosk-v1"));
    let script = request(http, "GET", "/boot/52-54-00-cc-00-01.ipxe", &[], "").unwrap();
    assert!(
        script.body.contains("/files/images/kiosk-v1/vmlinuz"),
        "{}",
        script.body
    );
    // Now version 2 is unused and can go; version 1 cannot.
    let rows = c.find_all(Locator::Css("#images tbody tr")).await.unwrap();
    assert!(rows[0].text().await.unwrap().contains("in use"));
    click_and_load(&c, Locator::Css("button[aria-label='remove kiosk-v2']")).await;
    assert!(body(&c).await.contains("Removed kiosk-v2"));
    assert!(!d.path().join("boot/images/kiosk-v2").exists());
    assert!(d.path().join("boot/images/kiosk-v1/vmlinuz").exists());
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // A viewer: the list, but no import form, and the import POST is refused.
    c.delete_all_cookies().await.unwrap();
    login(&c, &base, "vic", "vic-password-1").await;
    c.goto(&format!("{base}/ui/images")).await.unwrap();
    assert!(c.find(Locator::Id("source")).await.is_err());
    let text = body(&c).await;
    assert!(
        text.contains("kiosk-v1"),
        "a viewer reads the images page: {text}"
    );
    let r = post_as_browser(&c, http, "/ui/images/import", "source=%2Fetc&name=etc").await;
    assert_eq!(r.status, 403, "a viewer started an import");
    c.close().await.unwrap();
}

/// Issue 13: a machine's network root on the web UI, for an admin: the base it lies over, what
/// it changed (an added file, a changed text file with its diff, a deletion as overlayfs
/// records it: a 0:0 device), a snapshot taken with the button and listed, a reset asked for.
/// No mount is made here (the page reads the overlay's upper against the base, as `overlay
/// diff` does); the machine's profile boots iPXE, so the daemon starts no NFS server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_root_in_chromium() {
    if !have_chromium() {
        return skipped_without_chromium();
    }
    let (d, http, cfg) = daemon_dir();
    add_user(&cfg, "ada", "admin");
    let o = px(
        &cfg,
        &[
            "host",
            "add",
            "ws1",
            "--mac",
            "52:54:00:dd:00:01",
            "--ip",
            "127.0.0.2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let state = d.path().join("state");
    let base = state.join("bases/debian-v1");
    for dir in ["root/etc", "root/root", "root/var/log"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    std::fs::write(base.join("root/etc/motd"), "Welcome to Debian\n").unwrap();
    std::fs::write(base.join("root/etc/issue.net"), "Debian GNU/Linux 12\n").unwrap();
    std::fs::write(
        base.join("base.toml"),
        "name = \"debian\"\nversion = 1\nbuilt = \"2026-12-01T00:00:00Z\"\nsuite = \"bookworm\"\npackages = []\nrecipe = \"r\"\nkernel = \"6.1\"\nfiles = 3\nbytes = 0\nignore = [\"/var/log\"]\n",
    )
    .unwrap();
    let upper = state.join("overlays/ws1/upper");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::create_dir_all(upper.join("root")).unwrap();
    std::fs::create_dir_all(upper.join("var/log")).unwrap();
    std::fs::write(
        upper.join("etc/motd"),
        "Welcome to the reading room <b>ws1</b>\n",
    )
    .unwrap();
    std::fs::write(upper.join("root/notes.txt"), "backup at 18:00\n").unwrap();
    std::fs::write(upper.join("var/log/syslog"), "noise\n").unwrap();
    nix::sys::stat::mknod(
        &upper.join("etc/issue.net"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    std::fs::write(state.join("overlays/ws1/base"), "debian-v1\n").unwrap();

    let _daemon = Daemon::start(&cfg, &d.path().join("daemon.log"));
    wait_listening(http, Duration::from_secs(20), || {
        std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default()
    });
    let (_driver, c) = start_browser().await;
    let url = format!("http://127.0.0.1:{http}");
    login(&c, &url, "ada", "ada-password-1").await;
    c.goto(&format!("{url}/ui/machines/ws1")).await.unwrap();
    click_and_load(&c, Locator::Id("root")).await;
    let page = body(&c).await;
    assert!(page.contains("Over base debian-v1"), "{page}");
    let changes = text_at(&c, Locator::Id("changes")).await;
    for want in [
        "added /root/notes.txt",
        "changed /etc/motd content",
        "deleted /etc/issue.net",
    ] {
        assert!(changes.contains(want), "{want}: {changes}");
    }
    assert!(
        !changes.contains("syslog"),
        "an ignored path is listed: {changes}"
    );
    assert!(
        page.contains("1 more under the base's ignored paths"),
        "{page}"
    );
    assert!(
        page.contains("+Welcome to the reading room <b>ws1</b>"),
        "the diff, as text: {page}"
    );
    click_and_load(&c, Locator::Css("button[value=snapshot]")).await;
    let page = body(&c).await;
    assert!(page.contains("snapshot written"), "{page}");
    let snaps: Vec<_> = std::fs::read_dir(state.join("overlays/ws1/snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(snaps.len(), 1);
    let name = snaps[0].file_name().to_string_lossy().into_owned();
    assert!(page.contains(&name), "{page}");
    shot(&c, "network-root").await;
    click_and_load(&c, Locator::Css("button[value=reset]")).await;
    let page = body(&c).await;
    assert!(page.contains("A reset is asked for"), "{page}");
    assert!(state.join("overlays/ws1/reset-requested").exists());
    let events = stored_events(
        &cfg,
        "{\"kind\": {\"$in\": [\"overlay_snapshot\", \"overlay_reset_requested\"]}}",
        2,
    )
    .await;
    assert!(
        events.contains("overlay_snapshot") && events.contains("overlay_reset_requested"),
        "{events}"
    );
    assert!(console_errors(&c).await.is_empty());
}
