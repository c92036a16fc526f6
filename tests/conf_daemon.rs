//! Issue 3: the daemon serves the committed conf repo. A hand edit committed with plain `git`
//! is served within 2 s; an uncommitted edit is reported and not served; a committed edit that
//! breaks a machine file is refused with `path:line` (naming the conf repo file) while the
//! previous version keeps being served; every commit becomes a `config_committed` audit event
//! with its author. The daemon runs on loopback only (DHCP and TFTP off, HTTP on 127.0.0.1).
use std::process::Command;
use std::time::Duration;

mod common;
use common::{free_port, get, git, loopback_config, request, user_with_token, within, Daemon};

const BIN: &str = env!("CARGO_BIN_EXE_pxelator");

const SCRIPT: &str = "/boot/52-54-00-00-00-01.ipxe";

#[test]
fn committed_hand_edits_are_served_and_broken_ones_refused() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("conf-repo");
    std::fs::create_dir_all(repo.join("machines")).unwrap();
    std::fs::create_dir_all(repo.join("profiles")).unwrap();
    let machine = repo.join("machines/kiosk1.toml");
    let write = |marker: &str| {
        std::fs::write(
            &machine,
            format!(
                "mac = \"52:54:00:00:00:01\"\nhostname = \"kiosk1\"\nargs = \"marker={marker}\"\n[params]\ngroup = \"reading-room\"\n"
            ),
        )
        .unwrap()
    };
    write("one");
    // Group defaults come from the committed tree too.
    std::fs::create_dir_all(repo.join("groups")).unwrap();
    std::fs::write(
        repo.join("groups/reading-room.toml"),
        "[params]\nhomepage = \"https://lib.example/\"\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("profiles/default.toml"),
        "boot = \"ipxe\"\nkernel = \"k\"\nkiosk = true\n",
    )
    .unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "Initial inventory"]);

    let port = free_port();
    let cfg = loopback_config(d.path(), port);
    let log = d.path().join("daemon.log");
    let _daemon = Daemon::start(&cfg, &log);
    let served = |m: &str| get(port, SCRIPT).is_some_and(|b| b.contains(&format!("marker={m}")));
    assert!(
        within(Duration::from_secs(20), || served("one")).is_some(),
        "daemon did not serve"
    );
    assert!(
        get(port, SCRIPT).is_some_and(|b| b.contains("homepage=https://lib.example/")),
        "the committed group's defaults are served: {:?}",
        get(port, SCRIPT)
    );

    // Uncommitted: reported, not served.
    write("two");
    let log_has = |s: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(s)
    };
    assert!(
        within(Duration::from_secs(5), || log_has(
            "changed but not committed"
        ))
        .is_some(),
        "uncommitted edit reported"
    );
    assert!(served("one"), "uncommitted edit not served");

    // Committed with plain git: served within 2 s.
    git(&repo, &["commit", "-q", "-am", "kiosk1: marker two"]);
    let took = within(Duration::from_secs(2), || served("two"));
    assert!(took.is_some(), "committed hand edit not served within 2 s");
    println!("committed hand edit served after {:?}", took.unwrap());

    // A committed edit that breaks the file: refused with path:line, the old version stays.
    std::fs::write(
        &machine,
        "mac = \"52:54:00:00:00:01\"\nargs = \"marker=three\nhostname = 5\n",
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "kiosk1: broken edit"]);
    let where_ = format!("{}:2", machine.display());
    assert!(
        within(Duration::from_secs(5), || log_has(&where_)).is_some(),
        "problem names {where_}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(served("two"), "previous version keeps being served");

    write("four");
    git(&repo, &["commit", "-q", "-am", "kiosk1: fixed"]);
    assert!(within(Duration::from_secs(2), || served("four")).is_some());

    // The history API (for the web UI) answers from the same repository.
    // The history API needs a user (issue 10): a viewer for conf files, an admin for the rest.
    let viewer = user_with_token(&cfg, "victor", "viewer", "viewer password 1");
    let admin = user_with_token(&cfg, "alice", "admin", "admin password 12");
    let api = |token: &str, path: &str| {
        let auth = format!("Bearer {token}");
        request(port, "GET", path, &[("Authorization", &auth)], "")
            .unwrap()
            .body
    };
    let log = api(
        &viewer,
        "/api/history/log?path=machines/kiosk1.toml&limit=10",
    );
    let v: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(v[0]["message"], "kiosk1: fixed");
    assert_eq!(v[0]["author"], "Carol Hand");
    assert_eq!(v.as_array().unwrap().len(), 4);
    let diff = api(&viewer, "/api/history/diff?path=machines/kiosk1.toml");
    assert!(diff.contains("+args = \\\"marker=four\\\""), "{diff}");
    let old = api(
        &viewer,
        "/api/history/cat?path=machines/kiosk1.toml&rev=HEAD~2",
    );
    assert!(old.contains("marker=two"), "{old}");
    let bad = api(&admin, "/api/history/cat?path=../etc/passwd");
    assert!(bad.contains("not a path inside the conf repo"), "{bad}");

    // Every commit reached the audit store with its author.
    let found = || {
        let o = Command::new(BIN)
            .args(["audit", "--config"])
            .arg(&cfg)
            .args(["find", "{\"kind\": \"config_committed\"}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut events = String::new();
    within(Duration::from_secs(5), || {
        events = found();
        events.contains("kiosk1: fixed")
    });
    for m in [
        "Initial inventory",
        "kiosk1: marker two",
        "kiosk1: broken edit",
        "kiosk1: fixed",
    ] {
        assert!(events.contains(m), "{m} missing from audit: {events}");
    }
    assert!(
        events.contains("Carol Hand <carol@lib.example>"),
        "{events}"
    );
    // A kiosk profile: each script fetch is a kiosk_booted event with the profile and args.
    let kiosk = Command::new(BIN)
        .args(["audit", "--config"])
        .arg(&cfg)
        .args([
            "find",
            "{\"kind\": \"kiosk_booted\"}",
            "--sort",
            "{\"time\": -1}",
            "--limit",
            "1",
        ])
        .output()
        .unwrap();
    let kiosk = String::from_utf8_lossy(&kiosk.stdout);
    assert!(
        kiosk.contains("\"profile\":\"default\"")
            && kiosk.contains("marker=four homepage=https://lib.example/ noconfig noupgrade")
            && kiosk.contains("\"host\":\"kiosk1\""),
        "{kiosk}"
    );
}
