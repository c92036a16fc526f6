//! Rough edges of the command line a new user hits first (issue 12's list): `--config` is taken
//! after the verb too, and an error names its cause once.
mod common;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pxelator"))
        .args(args)
        .env_remove("PXELATOR_CONFIG")
        .output()
        .unwrap();
    (o.status.success(), common::text(&o))
}

#[test]
fn config_goes_before_or_after_the_verb() {
    let d = tempfile::tempdir().unwrap();
    let cfg = common::minimal_config(d.path(), "10.77.1.1");
    let cfg = cfg.to_str().unwrap();
    let add = [
        "host",
        "add",
        "kiosk1",
        "--mac",
        "52:54:00:00:00:01",
        "--ip",
        "10.77.1.11",
    ];
    let (ok, out) = run(&[&add[..], &["--config", cfg]].concat());
    assert!(ok, "{out}");
    let (ok, out) = run(&["host", "--config", cfg, "list"]);
    assert!(ok && out.contains("kiosk1"), "{out}");
    let (ok, out) = run(&["host", "list", "-c", cfg]);
    assert!(ok && out.contains("kiosk1"), "{out}");
    assert!(
        out.contains("(default)"),
        "a machine without a profile gets the default: {out}"
    );
    // A one-time boot override: checked words, state outside the conf repo, cleared again.
    let (ok, out) = run(&["host", "next-boot", "kiosk1", "disk", "-c", cfg]);
    assert!(!ok && out.contains("local (its disk) or netboot"), "{out}");
    let (ok, out) = run(&["host", "next-boot", "kiosk1", "local", "-c", cfg]);
    assert!(
        ok && out.contains("kiosk1 (52:54:00:00:00:01) boots its local disk once"),
        "{out}"
    );
    let state = std::fs::read_to_string(d.path().join("state/next-boot.json")).unwrap();
    assert!(
        state.contains("\"52:54:00:00:00:01\": \"local\""),
        "{state}"
    );
    let (ok, out) = run(&["host", "next-boot", "kiosk1", "clear", "-c", cfg]);
    assert!(ok && out.contains("no one-time boot override"), "{out}");
    let (ok, out) = run(&["host", "next-boot", "nobody", "local", "-c", cfg]);
    assert!(!ok && out.contains("no machine named \"nobody\""), "{out}");
    // Group defaults: one commit; bad names, a group key and multi-line values refused.
    let (ok, out) = run(&[
        "group",
        "edit",
        "reading-room",
        "--param",
        "homepage=http://x/",
        "-c",
        cfg,
        "--author",
        "Ann <ann@lib.example>",
    ]);
    assert!(
        ok && out.contains("Edit group reading-room: param homepage=http://x/"),
        "{out}"
    );
    let file =
        std::fs::read_to_string(d.path().join("conf-repo/groups/reading-room.toml")).unwrap();
    assert!(file.contains("homepage = \"http://x/\""), "{file}");
    for (args, why) in [
        (
            vec!["group", "edit", "../etc", "--param", "a=b"],
            "not a group name",
        ),
        (
            vec!["group", "edit", "room", "--param", "group=other"],
            "cannot set group",
        ),
        (
            vec!["group", "edit", "room", "--param", "motd=a\nkernel evil"],
            "expected KEY=VALUE",
        ),
        (vec!["group", "edit", "room"], "nothing to change"),
    ] {
        let (ok, out) = run(&[&args[..], &["-c", cfg]].concat());
        assert!(!ok && out.contains(why), "{args:?}: {out}");
    }
}

/// A fresh install (the daemon never ran, so no audit store file): "never seen", not a
/// failure to open the store.
#[test]
fn last_seen_on_a_fresh_install_says_never_seen() {
    let d = tempfile::tempdir().unwrap();
    let cfg = common::minimal_config(d.path(), "10.77.1.1");
    let cfg = cfg.to_str().unwrap();
    let (ok, out) = run(&["audit", "last-seen", "52:54:00:00:00:01", "--config", cfg]);
    assert!(!ok);
    assert!(
        out.contains("52:54:00:00:00:01: never seen: nothing recorded yet")
            && !out.contains("unable to open"),
        "{out}"
    );
    let (ok, out) = run(&["audit", "count", "--config", cfg]);
    assert!(ok && out.trim() == "0", "{out}");
    assert!(
        !d.path().join("state/audit.sqlite").exists(),
        "reading created nothing"
    );
}

#[test]
fn an_error_names_its_cause_once() {
    let (ok, out) = run(&["host", "list", "--config", "/nonexistent/pxelator.toml"]);
    assert!(!ok);
    assert!(
        out.contains("/nonexistent/pxelator.toml: cannot read config"),
        "{out}"
    );
    assert_eq!(out.matches("No such file or directory").count(), 1, "{out}");
}
