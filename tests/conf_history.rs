//! Issue 3: the conf repo is git. Through the real CLI (`pxelator host …`, `pxelator history …`)
//! and checked with the stock `git` CLI: commits have the right authors and messages, `git fsck`
//! is clean, `git show REV:path` equals `history cat`, `history diff` shows exactly the change,
//! `history revert` restores old content with a new commit, dates select revisions, hand commits
//! made with plain git appear in the history, and uncommitted hand edits are never swept into
//! pxelator's commits.
use std::path::PathBuf;
use std::process::{Command, Output};

mod common;
use common::git;

const BIN: &str = env!("CARGO_BIN_EXE_pxelator");

struct Lab {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    repo: PathBuf,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("conf-repo");
    std::fs::create_dir_all(repo.join("machines")).unwrap();
    std::fs::create_dir_all(repo.join("profiles")).unwrap();
    std::fs::create_dir_all(dir.path().join("boot")).unwrap();
    std::fs::write(
        repo.join("machines/kiosk1.toml"),
        "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.11\"\nhostname = \"kiosk1\"\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("profiles/live.toml"),
        "boot = \"ipxe\"\nkernel = \"k\"\n",
    )
    .unwrap();
    let cfg = dir.path().join("pxelator.toml");
    std::fs::write(
        &cfg,
        format!(
            "conf_repo = \"{0}/conf-repo\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\nserver_ip = \"10.77.1.1\"\n[dhcp]\nmode = \"off\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    Lab {
        _dir: dir,
        cfg,
        repo,
    }
}

fn px(l: &Lab, user: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(&args[..1])
        .arg("--config")
        .arg(&l.cfg)
        .args(&args[1..])
        .env("USER", user)
        .env_remove("SUDO_USER")
        .output()
        .expect("run pxelator")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn host_verbs_commit_with_real_authors_and_git_agrees() {
    let l = lab();
    let out = ok(px(
        &l,
        "root",
        &[
            "host",
            "add",
            "kiosk2",
            "--mac",
            "52:54:00:00:00:02",
            "--ip",
            "10.77.1.12",
            "--profile",
            "live",
            "--param",
            "homepage=http://lib.example/?id=MACID",
            "--author",
            "Ana Admin <ana@lib.example>",
        ],
    ));
    assert!(out.contains("committed"), "{out}");
    // Clashes are refused, naming the other machine; nothing is committed.
    let dup = px(
        &l,
        "root",
        &["host", "add", "kiosk3", "--mac", "52-54-00-00-00-01"],
    );
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        !dup.status.success() && err.contains("already used by kiosk1 (machines/kiosk1.toml)"),
        "{err}"
    );
    let unknown_profile = px(&l, "root", &["host", "edit", "kiosk2", "--profile", "nope"]);
    assert!(String::from_utf8_lossy(&unknown_profile.stderr).contains("known profiles: live"));

    ok(px(
        &l,
        "bob",
        &["host", "edit", "kiosk2", "--ip", "10.77.1.22"],
    ));
    ok(px(&l, "bob", &["host", "rm", "kiosk1"]));
    let list = ok(px(&l, "bob", &["host", "list"]));
    assert!(
        list.contains("kiosk2") && list.contains("10.77.1.22") && !list.contains("kiosk1"),
        "{list}"
    );
    let show = ok(px(&l, "bob", &["host", "show", "52:54:00:00:00:02"]));
    assert!(
        show.contains("homepage = \"http://lib.example/?id=MACID\""),
        "{show}"
    );

    // The stock git CLI agrees.
    git(&l.repo, &["fsck", "--strict", "--no-progress"]);
    let log = git(&l.repo, &["log", "--format=%an|%s"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert_eq!(
        lines[0],
        "bob|Remove host kiosk1 (52:54:00:00:00:01, 10.77.1.11)"
    );
    assert_eq!(lines[1], "bob|Edit host kiosk2: ip 10.77.1.22");
    assert_eq!(
        lines[2],
        "Ana Admin|Add host kiosk2: mac 52:54:00:00:00:02, ip 10.77.1.12, profile live, param homepage=http://lib.example/?id=MACID"
    );
    assert!(
        lines[3].starts_with("Ana Admin|Start the conf repo with the 2 files"),
        "{}",
        lines[3]
    );
    assert_eq!(
        git(&l.repo, &["status", "--porcelain"]),
        "",
        "working tree and index clean"
    );

    // history cat == git show, at a revision and at a date.
    let cat = ok(px(
        &l,
        "bob",
        &["history", "cat", "machines/kiosk2.toml@HEAD~1"],
    ));
    assert_eq!(cat, git(&l.repo, &["show", "HEAD~1:machines/kiosk2.toml"]));
    let cat_old = ok(px(
        &l,
        "bob",
        &["history", "cat", "machines/kiosk2.toml@HEAD~2"],
    ));
    assert!(cat_old.contains("10.77.1.12"));
    let now = ok(px(
        &l,
        "bob",
        &["history", "cat", "machines/kiosk2.toml@2099-01-01"],
    ));
    assert_eq!(
        now,
        std::fs::read_to_string(l.repo.join("machines/kiosk2.toml")).unwrap()
    );
    let early = px(
        &l,
        "bob",
        &["history", "cat", "machines/kiosk2.toml@1990-01-01"],
    );
    assert!(String::from_utf8_lossy(&early.stderr).contains("before the first commit"));
    let gone = px(&l, "bob", &["history", "cat", "machines/kiosk1.toml"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("did not exist at HEAD"));

    // history diff (the path's last change) shows exactly the edit, like git diff.
    let diff = ok(px(&l, "bob", &["history", "diff", "machines/kiosk2.toml"]));
    let changed = |d: &str| -> Vec<String> {
        d.lines()
            .filter(|l| {
                (l.starts_with('+') || l.starts_with('-'))
                    && !l.starts_with("+++")
                    && !l.starts_with("---")
            })
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        changed(&diff),
        ["-ip = \"10.77.1.12\"", "+ip = \"10.77.1.22\""],
        "{diff}"
    );
    assert_eq!(
        changed(&diff),
        changed(&git(
            &l.repo,
            &["diff", "HEAD~2", "HEAD~1", "--", "machines/kiosk2.toml"]
        ))
    );
    let log_kiosk2 = ok(px(&l, "bob", &["history", "log", "machines/kiosk2.toml"]));
    assert_eq!(log_kiosk2.matches("\n    ").count(), 2, "{log_kiosk2}");

    // revert: a new commit restoring the old content; git sees it.
    let r = ok(px(
        &l,
        "bob",
        &["history", "revert", "machines/kiosk1.toml@HEAD~1"],
    ));
    assert!(r.contains("restored machines/kiosk1.toml"), "{r}");
    assert_eq!(
        std::fs::read_to_string(l.repo.join("machines/kiosk1.toml")).unwrap(),
        git(&l.repo, &["show", "HEAD:machines/kiosk1.toml"])
    );
    assert!(git(&l.repo, &["log", "-1", "--format=%an|%s"])
        .starts_with("bob|Restore machines/kiosk1.toml as of "));

    // A hand commit with plain git shows up in history with its author.
    std::fs::write(l.repo.join("profiles/local.toml"), "boot = \"local\"\n").unwrap();
    git(&l.repo, &["add", "profiles/local.toml"]);
    git(&l.repo, &["commit", "-q", "-m", "Add a local-disk profile"]);
    let hist = ok(px(
        &l,
        "bob",
        &["history", "log", "profiles/local.toml", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&hist).unwrap();
    assert_eq!(v[0]["author"], "Carol Hand");
    assert_eq!(v[0]["message"], "Add a local-disk profile");

    // An uncommitted hand edit is not swept into pxelator's next commit.
    let k2 = l.repo.join("machines/kiosk2.toml");
    let edited = std::fs::read_to_string(&k2).unwrap() + "args = \"quiet\"\n";
    std::fs::write(&k2, &edited).unwrap();
    ok(px(
        &l,
        "bob",
        &[
            "host",
            "add",
            "--name",
            "kiosk4",
            "--mac",
            "52:54:00:00:00:04",
        ],
    ));
    assert_eq!(
        git(&l.repo, &["show", "--name-only", "--format=", "HEAD"]).trim(),
        "machines/kiosk4.toml"
    );
    assert_eq!(
        git(&l.repo, &["status", "--porcelain"]),
        " M machines/kiosk2.toml\n"
    );
    assert_eq!(
        std::fs::read_to_string(&k2).unwrap(),
        edited,
        "the hand edit is kept"
    );
    git(&l.repo, &["fsck", "--strict", "--no-progress"]);
}
