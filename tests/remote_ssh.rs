//! Issue 18: `pxelator run` and recipes against real OpenSSH servers. Three `sshd` on loopback
//! ports (each tells its name to commands through `SetEnv PXL_HOST`), one address that accepts
//! TCP and never answers, one where nothing listens. Through the real CLI: a command on a group
//! and the odd hosts at once — per-host results, the hung host cut off at its timeout without
//! holding up the others, a run_finished audit event; a repeat run over the kept connection
//! (sshd logs no new login); recipes check → apply → check, a second apply changes nothing;
//! parameters are data, never code; the daemon's scheduled check of recipes.toml finds a
//! drifted host; a file pulled by backups becomes a recipe (a git commit) that makes the same
//! file on another host.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::sshd::*;
use common::{
    free_port, git, loopback_config_with, px_as, request, text, user_with_token, within, Daemon,
};

fn px(cfg: &Path, args: &[&str]) -> Output {
    px_as(cfg, "remote-admin", args)
}

fn commit_file(repo: &Path, rel: &str, content: &str, msg: &str) {
    let p = repo.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    git(repo, &["add", rel]);
    git(
        repo,
        &[
            "-c",
            "user.name=Lab Admin",
            "-c",
            "user.email=lab@example.org",
            "commit",
            "-q",
            "-m",
            msg,
        ],
    );
}

/// Audit events of `kind` as JSON values.
fn events(cfg: &Path, kind: &str) -> Vec<serde_json::Value> {
    let o = px(
        cfg,
        &["audit", "find", &format!("{{\"kind\": \"{kind}\"}}")],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Tells every master connection the runs left (state_dir/ssh/mux) to exit: they are ours.
fn close_masters(mux: &Path) {
    for e in std::fs::read_dir(mux).into_iter().flatten().flatten() {
        let _ = Command::new("ssh")
            .arg("-S")
            .arg(e.path())
            .args(["-O", "exit", "x"])
            .output();
    }
}

struct Masters(PathBuf);
impl Drop for Masters {
    fn drop(&mut self) {
        close_masters(&self.0);
    }
}

fn row<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no row for {host} in:\n{out}"))
}

#[test]
fn run_and_recipes_against_real_sshd() {
    if !sshd_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssh-server missing; scripts/setup installs it"
        );
        println!(
            "SKIPPED: run/recipes test: {SSHD} not installed (apt-get install openssh-server)"
        );
        return;
    }
    let (d, key, authorized) = client_key();
    let base = d.path();
    let hosts: Vec<Sshd> = (1..=3)
        .map(|i| {
            start_sshd_with(
                &base.join(format!("h{i}")),
                &authorized,
                &format!("SetEnv PXL_HOST=h{i}\n"),
            )
        })
        .collect();
    // Each "host"'s own files (they share this machine's file system).
    let files = base.join("files");
    for i in 1..=3 {
        std::fs::create_dir_all(files.join(format!("h{i}"))).unwrap();
        std::fs::write(
            files.join(format!("h{i}/motd")),
            format!("Welcome to h{i}\n"),
        )
        .unwrap();
    }
    let http = free_port();
    let cfg = loopback_config_with(base, http, "[tftp]\nenabled = false\n");
    let repo = base.join("conf-repo");
    let mux = base.join("state/ssh/mux");
    let _masters = Masters(mux.clone());
    for i in 1..=3 {
        let o = px(
            &cfg,
            &[
                "host",
                "add",
                &format!("h{i}"),
                "--mac",
                &format!("52:54:00:18:00:0{i}"),
                "--ip",
                &format!("10.77.18.{}", 10 + i),
                "--param",
                "group=reading-room",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let dead_port = free_port();
    let mut bt = format!(
        "[defaults]\nuser = \"root\"\nkey = \"{}\"\naddress = \"127.0.0.1\"\n",
        key.display()
    );
    for (i, h) in hosts.iter().enumerate() {
        // What backups pull of each: its app.conf.
        bt.push_str(&format!(
            "[host.h{0}]\nport = {1}\npaths = [\"{2}/h{0}/app.conf\"]\n",
            i + 1,
            h.port,
            files.display()
        ));
    }
    bt.push_str(&format!(
        "[host.hung]\nport = {hung_port}\n[host.gone]\nport = {dead_port}\n[group.odd]\nhosts = [\"hung\", \"gone\"]\n"
    ));
    commit_file(&repo, "backup.toml", &bt, "ssh settings for the lab hosts");

    // run: a group (the inventory's param group) and backup.toml's group, at once.
    let cmd = "echo \"I am $PXL_HOST\"; [ \"$PXL_HOST\" != h2 ] || exit 3";
    let o = px(
        &cfg,
        &["run", "reading-room,odd", "--timeout", "4", "--", cmd],
    );
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a failed host makes run exit 2: {out}"
    );
    for h in ["h1", "h3"] {
        let r = row(&out, h);
        assert!(
            r.contains(" ok ") && r.contains(&format!("I am {h}")),
            "{r}"
        );
    }
    let r = row(&out, "h2");
    assert!(
        r.contains("failed") && r.contains(" 3 ") && r.contains("I am h2"),
        "{r}"
    );
    let r = row(&out, "hung");
    assert!(
        r.contains("timeout") && r.contains("no answer within 4 s"),
        "{r}"
    );
    let r = row(&out, "gone");
    assert!(
        r.contains("unreachable") && r.contains("cannot connect"),
        "{r}"
    );

    // JSON, and the good hosts are not held up by the hung one (each has its own deadline).
    let o = px(
        &cfg,
        &[
            "run",
            "reading-room,hung",
            "--timeout",
            "5",
            "--json",
            "--",
            cmd,
        ],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("JSON array");
    assert_eq!(rows.len(), 4, "{}", text(&o));
    for r in &rows {
        let ms = r["duration_ms"].as_u64().unwrap();
        match r["host"].as_str().unwrap() {
            "hung" => assert!(r["outcome"] == "timeout" && ms >= 5000, "{r}"),
            h => {
                assert!(ms < 5000, "{h} waited for the hung host: {r}");
                assert_eq!(r["stdout"], format!("I am {h}\n"));
            }
        }
    }
    let ev = events(&cfg, "run_finished");
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(
        ev[0]["user"].as_str().unwrap().starts_with("remote-admin"),
        "{}",
        ev[0]
    );
    assert_eq!(ev[0]["command"], cmd);
    assert_eq!(
        ev[0]["targets"],
        serde_json::json!(["h1", "h2", "h3", "hung", "gone"])
    );
    let outcomes: Vec<String> = ev[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["host"].as_str().unwrap(),
                r["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "h1=ok",
            "h2=failed",
            "h3=ok",
            "hung=timeout",
            "gone=unreachable"
        ]
    );

    // The repeat run reuses the connection the first left: sshd logs no new login.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&mux).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let logins = |i: usize| {
        std::fs::read_to_string(base.join(format!("h{i}/sshd.log")))
            .unwrap()
            .matches("Accepted publickey")
            .count()
    };
    let before = logins(1);
    assert!(before >= 1);
    for _ in 0..3 {
        let o = px(&cfg, &["run", "h1", "--", "uptime"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(
        logins(1),
        before,
        "a repeat run logged in again instead of reusing the master"
    );
    // What a host prints is bounded (1 MiB kept, the rest not read), and said so.
    let o = px(
        &cfg,
        &[
            "run",
            "h1",
            "--json",
            "--",
            "head -c 3000000 /dev/zero | tr '\\0' x",
        ],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["stdout"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(rows[0]["truncated"], true);

    // Recipes: the built-in line-in-file on h1, check → apply → check.
    let motd1 = files.join("h1/motd");
    let file_param = format!("file={}", motd1.display());
    let line = "Ask at the desk for help";
    let line_param = format!("line={line}");
    // `recipe VERB line-in-file h1 --param …` with these params.
    let on_h1 = |verb: &str, params: &[&str]| {
        let mut args = vec!["recipe", verb, "line-in-file", "h1"];
        for p in params {
            args.extend(["--param", p]);
        }
        px(&cfg, &args)
    };
    let o = on_h1("check", &[&file_param, &line_param]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(row(&text(&o), "h1").contains("drift"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&motd1).unwrap(),
        "Welcome to h1\n",
        "check changed the file"
    );
    let o = on_h1("apply", &[&file_param, &line_param]);
    assert!(
        o.status.success() && row(&text(&o), "h1").contains("fixed"),
        "{}",
        text(&o)
    );
    let o = on_h1("check", &[&file_param, &line_param]);
    assert!(
        o.status.success() && row(&text(&o), "h1").contains("ok"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&motd1).unwrap(),
        format!("Welcome to h1\n{line}\n")
    );

    // Parameters are checked before any host is reached, and are data, never code.
    let o = on_h1("apply", &[&file_param]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("parameter line has no value"),
        "{}",
        text(&o)
    );
    let o = on_h1("apply", &[&file_param, &line_param, "lien=x"]);
    assert!(text(&o).contains("no parameter \"lien\""), "{}", text(&o));
    let pwned = base.join("pwned");
    let evil = format!(
        "x'; touch {0}; echo '$(touch {0})`touch {0}`",
        pwned.display()
    );
    let o = on_h1("apply", &[&file_param, &format!("line={evil}")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!pwned.exists(), "a parameter value ran as a command");
    assert!(std::fs::read_to_string(&motd1)
        .unwrap()
        .lines()
        .any(|l| l == evil));

    // A site recipe (committed in the conf repo) on the whole group: h1 already has the line.
    commit_file(
        &repo,
        "recipes/lab-motd.sh",
        "# recipe: the lab's motd line, in each host's own file\n# param base: the directory holding each host's files\n# param line: the line\n\
         check() { grep -qxF -- \"$line\" \"$base/$PXL_HOST/motd\"; }\n\
         apply() { printf '%s\\n' \"$line\" >> \"$base/$PXL_HOST/motd\"; }\n",
        "recipe: the lab's motd line",
    );
    let o = px(&cfg, &["recipe", "list"]);
    let l = text(&o);
    assert!(
        l.contains("lab-motd")
            && l.contains("conf repo")
            && l.contains("line-in-file")
            && l.contains("built in"),
        "{l}"
    );
    let base_param = format!("base={}", files.display());
    let apply = || {
        px(
            &cfg,
            &[
                "recipe",
                "apply",
                "lab-motd",
                "reading-room",
                "--param",
                &base_param,
                "--param",
                &line_param,
            ],
        )
    };
    let o = apply();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(row(&out, "h1").contains(" ok "), "{out}");
    assert!(
        row(&out, "h2").contains("fixed") && row(&out, "h3").contains("fixed"),
        "{out}"
    );
    let snapshot = || {
        (1..=3)
            .map(|i| std::fs::read(files.join(format!("h{i}/motd"))).unwrap())
            .collect::<Vec<_>>()
    };
    let after_first = snapshot();
    let o = apply();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for h in ["h1", "h2", "h3"] {
        assert!(row(&out, h).contains(" ok "), "second apply on {h}: {out}");
    }
    assert_eq!(snapshot(), after_first, "a second apply changed a file");
    let results = events(&cfg, "recipe_result");
    assert!(results
        .iter()
        .any(|e| e["host"] == "h2" && e["outcome"] == "fixed" && e["recipe"] == "lab-motd"));

    // The daemon checks recipes.toml on its schedule (first round at start): h3 drifted.
    commit_file(
        &repo,
        "recipes.toml",
        &format!("interval_mins = 60\n[[assign]]\nrecipe = \"lab-motd\"\nto = [\"reading-room\"]\nparams = {{ base = \"{}\", line = \"{line}\" }}\n", files.display()),
        "recipes: the motd line on the reading room",
    );
    std::fs::write(files.join("h3/motd"), "Welcome to h3\n").unwrap();
    let token = user_with_token(&cfg, "vic", "viewer", "vic-password-1");
    let mut daemon = Daemon::start(&cfg, &base.join("daemon.log"));
    let scheduled = |e: &serde_json::Value| e["user"] == "schedule" && e["recipe"] == "lab-motd";
    let found = within(Duration::from_secs(60), || {
        events(&cfg, "recipe_result")
            .iter()
            .filter(|e| scheduled(e))
            .count()
            >= 3
    });
    let daemon_log = std::fs::read_to_string(base.join("daemon.log")).unwrap_or_default();
    // The machine page shows each recipe's newest result.
    let page = request(
        http,
        "GET",
        "/ui/machines/h3",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert!(
        found.is_some(),
        "no scheduled recipe checks; daemon log:\n{daemon_log}"
    );
    let page = page.expect("machine page");
    assert_eq!(page.status, 200, "{}", page.body);
    let recipes = page
        .body
        .split("id=\"recipes\"")
        .nth(1)
        .expect("a Recipes section");
    assert!(
        recipes.contains("lab-motd") && recipes.contains("drift") && recipes.contains("schedule"),
        "{recipes}"
    );
    let o = px(&cfg, &["recipe", "status", "reading-room"]);
    let st = text(&o);
    assert!(o.status.success(), "{st}");
    assert!(
        row(&st, "h3").contains("lab-motd")
            && row(&st, "h3").contains("drift")
            && row(&st, "h3").contains("schedule"),
        "{st}"
    );
    assert!(row(&st, "h2").contains(" ok "), "{st}");
    let sched: Vec<_> = events(&cfg, "recipe_result")
        .into_iter()
        .filter(scheduled)
        .collect();
    let of = |h: &str| {
        sched
            .iter()
            .find(|e| e["host"] == h)
            .map(|e| e["outcome"].as_str().unwrap().to_owned())
    };
    assert_eq!(of("h3").as_deref(), Some("drift"), "{sched:?}");
    assert_eq!(of("h1").as_deref(), Some("ok"));
    assert_eq!(of("h2").as_deref(), Some("ok"));
    assert_eq!(
        std::fs::read_to_string(files.join("h3/motd")).unwrap(),
        "Welcome to h3\n",
        "apply = false, yet the daemon changed h3"
    );
    // Assigned with apply = true (a commit the daemon sees without waiting for the interval):
    // the daemon fixes h3, and only h3 needed it.
    commit_file(
        &repo,
        "recipes.toml",
        &format!("interval_mins = 60\n[[assign]]\nrecipe = \"lab-motd\"\nto = [\"reading-room\"]\napply = true\nparams = {{ base = \"{}\", line = \"{line}\" }}\n", files.display()),
        "recipes: fix the motd line where it drifts",
    );
    // The round's three results (each host's is recorded as it finishes).
    let fixed = within(Duration::from_secs(60), || {
        let ev = events(&cfg, "recipe_result");
        let round: Vec<_> = ev
            .iter()
            .filter(|e| scheduled(e) && e["mode"] == "apply")
            .collect();
        round.len() >= 3
            && round
                .iter()
                .any(|e| e["host"] == "h3" && e["outcome"] == "fixed")
    });
    let daemon_log = std::fs::read_to_string(base.join("daemon.log")).unwrap_or_default();
    daemon.terminate(Duration::from_secs(10));
    assert!(
        fixed.is_some(),
        "the daemon did not fix h3; its log:\n{daemon_log}"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("h3/motd")).unwrap(),
        format!("Welcome to h3\n{line}\n")
    );
    let applied: Vec<_> = events(&cfg, "recipe_result")
        .into_iter()
        .filter(|e| scheduled(e) && e["mode"] == "apply")
        .map(|e| {
            format!(
                "{}={}",
                e["host"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        applied.contains(&"h3=fixed".to_owned())
            && applied.contains(&"h1=ok".to_owned())
            && !applied
                .iter()
                .any(|a| a.starts_with("h1=fixed") || a.starts_with("h2=fixed")),
        "{applied:?}"
    );

    // From history to recipe: h2's app.conf, pulled by a backup, made into a recipe applied on h3.
    let conf = b"# app settings\nserver = 10.77.18.1\nmode = 'kiosk' $(not code)\n";
    let app2 = files.join("h2/app.conf");
    std::fs::write(&app2, conf).unwrap();
    std::fs::set_permissions(&app2, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = px(&cfg, &["backup", "run", "h2"]);
    let pulled = text(&o);
    assert!(o.status.success(), "{pulled}");
    let spec = format!("h2:{}", app2.display());
    let o = px(&cfg, &["recipe", "capture", &spec, "--as", "app-conf"]);
    assert!(
        o.status.success(),
        "{}\nbackup run: {pulled}\nin the repo: {}",
        text(&o),
        git(&repo, &["ls-files", "hosts"])
    );
    let subject = git(
        &repo,
        &["log", "-1", "--format=%an|%s", "--", "recipes/app-conf.sh"],
    );
    assert!(
        subject.starts_with("remote-admin|recipe app-conf: ") && subject.contains("as on h2"),
        "{subject}"
    );
    let app3 = files.join("h3/app.conf");
    let path3 = format!("path={}", app3.display());
    let apply3 = || {
        let o = px(
            &cfg,
            &["recipe", "apply", "app-conf", "h3", "--param", &path3],
        );
        assert!(o.status.success(), "{}", text(&o));
        row(&text(&o), "h3").to_owned()
    };
    let r = apply3();
    assert!(r.contains("fixed"), "{r}");
    // Checked over ssh: h3's file now has h2's bytes and mode.
    let o = px(
        &cfg,
        &[
            "run",
            "h3",
            "--json",
            "--",
            &format!("cat {0}; stat -c %a {0}", app3.display()),
        ],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        rows[0]["stdout"],
        format!("{}640\n", String::from_utf8_lossy(conf))
    );
    assert_eq!(std::fs::read(&app3).unwrap(), conf);
    let r = apply3();
    assert!(r.contains(" ok "), "a second apply: {r}");
    assert_eq!(events(&cfg, "recipe_captured").len(), 1);

    // From a network root's overlay: the kiosk.conf h3 changed in its root (its upper
    // directory, as the daemon keeps it) becomes a recipe that makes h1's the same.
    let upper = base.join("state/overlays/h3/upper/etc");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::write(base.join("state/overlays/h3/base"), "kbase-v1\n").unwrap();
    let kiosk = b"homepage=https://library.example/\n";
    std::fs::write(upper.join("kiosk.conf"), kiosk).unwrap();
    std::fs::set_permissions(
        upper.join("kiosk.conf"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/shadow", upper.join("shadow-link")).unwrap();
    let o = px(
        &cfg,
        &[
            "recipe",
            "capture",
            "h3:/etc/kiosk.conf",
            "--overlay",
            "--as",
            "kiosk-conf",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let k1 = files.join("h1/kiosk.conf");
    let o = px(
        &cfg,
        &[
            "recipe",
            "apply",
            "kiosk-conf",
            "h1",
            "--param",
            &format!("path={}", k1.display()),
        ],
    );
    assert!(
        o.status.success() && row(&text(&o), "h1").contains("fixed"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(&k1).unwrap(), kiosk);
    assert_eq!(
        std::fs::metadata(&k1).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    for (spec, want) in [
        ("h3:/etc/shadow-link", "is not a change in h3's overlay"),
        ("h3:/etc/kiosk.conf@HEAD", "has no revisions"),
        ("h1:/etc/kiosk.conf", "h1 has no overlay"),
    ] {
        let o = px(&cfg, &["recipe", "capture", spec, "--overlay", "--as", "y"]);
        assert_eq!(o.status.code(), Some(1), "{spec}: {}", text(&o));
        assert!(text(&o).contains(want), "{spec}: {}", text(&o));
    }

    // Hostile names and paths are refused where they enter, naming what is wrong.
    for (args, want) in [
        (
            vec![
                "recipe",
                "capture",
                "h2:/etc/../../root/.ssh/id_ed25519",
                "--as",
                "x",
            ],
            "without `..`",
        ),
        (
            vec!["recipe", "capture", "../h2:/etc/motd", "--as", "x"],
            "../h2",
        ),
        (
            vec!["recipe", "capture", &spec, "--as", "../../evil"],
            "recipe name",
        ),
        (
            vec!["recipe", "capture", &spec, "--as", "line-in-file"],
            "built-in recipe",
        ),
        (
            vec!["recipe", "check", "../../etc/passwd", "h1"],
            "recipe name",
        ),
        (
            vec!["run", "h1;reboot", "--", "true"],
            "is no machine, group or backup.toml host",
        ),
    ] {
        let o = px(&cfg, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
    // A broken recipes.toml is an error naming the file and line; a broken site recipe is
    // listed as unusable, and the others still are.
    commit_file(
        &repo,
        "recipes.toml",
        "[[assign]]\nrecipe = \"lab-motd\"\nto = [\"h1\"]\nbogus = 1\n",
        "a typo",
    );
    let o = px(&cfg, &["recipe", "assigned"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("recipes.toml:4") && text(&o).contains("bogus"),
        "{}",
        text(&o)
    );
    commit_file(
        &repo,
        "recipes/broken.sh",
        "check() { true; }\n",
        "a recipe without its header",
    );
    let o = px(&cfg, &["recipe", "list"]);
    let l = text(&o);
    assert_eq!(o.status.code(), Some(2), "{l}");
    assert!(
        l.contains("broken")
            && l.contains("UNUSABLE")
            && l.contains("no `# recipe:")
            && l.contains("lab-motd"),
        "{l}"
    );
    drop(hung);
}
