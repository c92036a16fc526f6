//! Host-file history (BackupPC-like, successor of bak-git): listed files of managed hosts are
//! pulled over ssh into the conf repo, one commit per host per run and only when something
//! changed, and can be written back from any revision or date.
//!
//! - What to pull is `backup.toml` in the conf repo (so the lists have history too):
//!   `[defaults]`, `[group.<name>]` with `hosts = [...]`, `[host.<name>]`; a host's value wins
//!   over its group's, which wins over the defaults.
//! - Transport: the stock OpenSSH client (`ssh`) running `tar` on the host. Key-based auth with
//!   the configured key; the host key is pinned on first use in `<state_dir>/ssh/known_hosts`
//!   under the host's *name* (HostKeyAlias), so a changed key is refused, never re-learned.
//! - Files land under `hosts/<host>/<path>`; mode, owner, mtime (and symlink targets) go to
//!   `hosts/<host>.meta` (one tab-separated line per path, diffable).
//! - Secrets (shadow files, private keys, `ssl/private`) are excluded on the host and again
//!   here, unless listed in `include_secrets`.
//! - Unreachable hosts are retried with backoff (1 s, 2 s, 4 s …) by their own worker; other
//!   hosts go on in parallel (`concurrency`). Pulls run in parallel; commits are made one at a
//!   time by the caller's thread.
use crate::config::Config;
use crate::confrepo::{Author, Change, ConfRepo};
use crate::core::event::Event;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod plan;
mod pull;
mod restore;
mod schedule;
pub use plan::*;
pub use pull::*;
pub use restore::*;
pub use schedule::*;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{file}: {msg}")]
    Config { file: PathBuf, msg: String },
    #[error("{0:?} is not in backup.toml (add [host.{0}] or list it in a [group.*] hosts)")]
    UnknownHost(String),
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error("{host}: {msg}")]
    Remote { host: String, msg: String },
    #[error(transparent)]
    Repo(#[from] crate::confrepo::RepoError),
    #[error("{0}")]
    Io(String),
}

/// Where pinned host keys live.
pub fn known_hosts(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("ssh/known_hosts")
}

/// Creates the default ssh key (`state_dir/ssh/id_ed25519`, mode 0600) if it is missing, so
/// pulls and power-off work without a manual step; the public half is what hosts authorise.
pub fn ensure_default_key(cfg: &Config) -> Result<PathBuf, BackupError> {
    let key = cfg.state_dir.join("ssh/id_ed25519");
    if key.exists() {
        return Ok(key);
    }
    let dir = key.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(|e| BackupError::Io(format!("{}: {e}", dir.display())))?;
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("pxelator@{}", crate::confrepo::host_name()))
        .arg("-f")
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            BackupError::Io(format!(
                "cannot run ssh-keygen (apt-get install openssh-client): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(BackupError::Io(format!(
            "ssh-keygen for {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(key)
}

/// What one host's run did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostResult {
    pub host: String,
    /// Unix seconds.
    pub time: u64,
    pub ok: bool,
    pub message: String,
    pub files: usize,
    pub commit: Option<String>,
    pub attempts: u32,
}

/// Stores a pulled host in the repo: one commit when anything (content or metadata) differs
/// from HEAD, none otherwise.
pub fn record(
    repo: &ConfRepo,
    host: &str,
    pulled: &Pulled,
    author: &Author,
) -> Result<(Option<String>, usize, usize, usize), BackupError> {
    let prefix = format!("hosts/{host}/");
    let meta_path = format!("hosts/{host}.meta");
    let existing: HashMap<String, gix::ObjectId> = match repo.head()? {
        Some(h) => repo.files(h, &prefix)?.into_iter().collect(),
        None => HashMap::new(),
    };
    let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let mut changes = Vec::new();
    for (p, f) in &pulled.files {
        let rp = format!("{prefix}{p}");
        match existing.get(&rp) {
            Some(id) if *id == f.id => {}
            Some(_) => {
                changed.push(format!("/{p}"));
                changes.push(Change::Move(rp, f.spill.clone()));
            }
            None => {
                added.push(format!("/{p}"));
                changes.push(Change::Move(rp, f.spill.clone()));
            }
        }
    }
    for rp in existing.keys() {
        let p = &rp[prefix.len()..];
        if !pulled.files.contains_key(p) {
            removed.push(format!("/{p}"));
            changes.push(Change::Delete(rp.clone()));
        }
    }
    let meta_text: String = pulled
        .meta
        .iter()
        .map(|(p, m)| m.line(&format!("/{p}")))
        .collect();
    let old_meta = repo
        .head()?
        .and_then(|_| repo.cat(&meta_path, "HEAD").ok())
        .unwrap_or_default();
    let meta_changed = old_meta != meta_text.as_bytes();
    if meta_changed {
        changes.push(Change::Write(meta_path, meta_text.into_bytes()));
    }
    if changes.is_empty() {
        return Ok((None, 0, 0, 0));
    }
    changed.sort();
    added.sort();
    removed.sort();
    let mut msg = format!(
        "Pull {host}: {} changed, {} new, {} removed of {} files{}",
        changed.len(),
        added.len(),
        removed.len(),
        pulled.files.len(),
        if changed.is_empty() && added.is_empty() && removed.is_empty() && meta_changed {
            " (owner, mode or time only)"
        } else {
            ""
        }
    );
    let mut body = String::new();
    for (label, list) in [
        ("changed", &changed),
        ("new", &added),
        ("removed", &removed),
    ] {
        for p in list.iter().take(50) {
            body.push_str(&format!("{label}: {p}\n"));
        }
        if list.len() > 50 {
            body.push_str(&format!("{label}: … and {} more\n", list.len() - 50));
        }
    }
    if !body.is_empty() {
        msg.push_str("\n\n");
        msg.push_str(&body);
    }
    let id = repo.commit(&changes, author, &msg)?;
    Ok((
        id.map(|i| i.to_string()),
        changed.len(),
        added.len(),
        removed.len(),
    ))
}

/// Pulls `hosts` (all when empty) in parallel, commits each one that changed, emits an event
/// per host through `emit`, and saves the status file. Returns one result per host.
pub fn run(
    cfg: &Config,
    plans: &Plans,
    only: &[String],
    author: &Author,
    emit: &dyn Fn(Event),
) -> Result<Vec<HostResult>, BackupError> {
    for h in only {
        if !plans.hosts.iter().any(|p| &p.name == h) {
            return Err(BackupError::UnknownHost(h.clone()));
        }
    }
    let todo: VecDeque<HostPlan> = plans
        .hosts
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.name))
        .cloned()
        .collect();
    let repo = ConfRepo::open_or_init(&cfg.conf_repo, author)?;
    let known = known_hosts(cfg);
    let queue = Arc::new(Mutex::new(todo));
    type Done = (HostPlan, u32, Result<Pulled, BackupError>, Duration);
    let (tx, rx) = std::sync::mpsc::channel::<Done>();
    let workers: Vec<_> = (0..plans.concurrency)
        .map(|_| {
            let (queue, tx, known, attempts, timeout, max_file_bytes) = (
                queue.clone(),
                tx.clone(),
                known.clone(),
                plans.attempts,
                plans.timeout,
                plans.max_file_bytes,
            );
            let spill_root = spill_root(&cfg.conf_repo);
            std::thread::spawn(move || loop {
                let Some(plan) = queue.lock().expect("queue").pop_front() else {
                    return;
                };
                let mut tries = 0;
                let started = std::time::Instant::now();
                let res = loop {
                    tries += 1;
                    match pull(&plan, &known, timeout, max_file_bytes, &spill_root) {
                        Err(BackupError::Ssh(
                            crate::ssh::SshError::Unreachable { .. }
                            | crate::ssh::SshError::TimedOut { .. },
                        )) if tries < attempts => {
                            std::thread::sleep(Duration::from_secs(1 << (tries - 1).min(5)));
                        }
                        other => break other,
                    }
                };
                if tx.send((plan, tries, res, started.elapsed())).is_err() {
                    return;
                }
            })
        })
        .collect();
    drop(tx);
    let mut results = Vec::new();
    for (plan, attempts, res, took) in rx {
        let now = crate::clock::unix_now();
        let r = match res.and_then(|p| record(&repo, &plan.name, &p, author).map(|r| (p, r))) {
            Ok((p, (commit, changed, added, removed))) => {
                let oversize: Vec<String> = p
                    .oversize
                    .iter()
                    .map(|(path, size)| format!("{path} ({size} bytes)"))
                    .chain(
                        p.unrecordable
                            .iter()
                            .map(|path| format!("{path} (control characters in its name)")),
                    )
                    .collect();
                emit(Event::BackupPulled {
                    host: plan.name.clone(),
                    files: p.files.len(),
                    changed,
                    added,
                    removed,
                    commit: commit.clone(),
                    oversize: oversize.clone(),
                    duration_ms: took.as_millis() as u64,
                });
                let skipped = if oversize.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not pulled (over the {} MiB cap, or unrecordable): {}",
                        plans.max_file_bytes >> 20,
                        oversize.join(", ")
                    )
                };
                HostResult {
                    host: plan.name.clone(),
                    time: now,
                    ok: true,
                    message: match &commit {
                        Some(c) => format!(
                            "{changed} changed, {added} new, {removed} removed of {} files: commit {}{skipped}",
                            p.files.len(),
                            &c[..12]
                        ),
                        None => format!("{} files, nothing changed{skipped}", p.files.len()),
                    },
                    files: p.files.len(),
                    commit,
                    attempts,
                }
            }
            Err(e) => {
                emit(Event::BackupFailed {
                    host: plan.name.clone(),
                    attempts,
                    reason: e.to_string(),
                });
                HostResult {
                    host: plan.name.clone(),
                    time: now,
                    ok: false,
                    message: e.to_string(),
                    files: 0,
                    commit: None,
                    attempts,
                }
            }
        };
        results.push(r);
    }
    for w in workers {
        let _ = w.join();
    }
    results.sort_by(|a, b| a.host.cmp(&b.host));
    save_status(cfg, &results);
    Ok(results)
}

fn status_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("backup/status.json")
}

fn save_status(cfg: &Config, results: &[HostResult]) {
    let mut all: BTreeMap<String, HostResult> = load_status(cfg)
        .into_iter()
        .map(|r| (r.host.clone(), r))
        .collect();
    for r in results {
        all.insert(r.host.clone(), r.clone());
    }
    let p = status_path(cfg);
    let list: Vec<&HostResult> = all.values().collect();
    let bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
    if let Err(e) = crate::fsutil::write_atomic(&p, &bytes, 0o600) {
        tracing::warn!("backup status {}: {e}", p.display());
    }
}

/// The last result per host.
pub fn load_status(cfg: &Config) -> Vec<HostResult> {
    std::fs::read(status_path(cfg))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, std::io::repeat(b'x').take(*size as u64))
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    fn spill(d: &tempfile::TempDir) -> SpillDir {
        SpillDir::create(d.path(), "kiosk1").unwrap()
    }

    #[test]
    fn spill_directories_of_dead_processes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        // Pid 2^22+1 is above the kernel's pid_max ceiling: never a live process.
        let stale = d.path().join("kiosk1-4194305-0");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("00000000"), "left by a killed pull").unwrap();
        let mine = SpillDir::create(d.path(), "kiosk1").unwrap();
        let other_live = SpillDir::create(d.path(), "kiosk2").unwrap();
        assert!(!stale.exists(), "a dead process's spill is removed");
        assert!(mine.path().is_dir() && other_live.path().is_dir());
    }

    #[test]
    fn oversize_files_are_reported_and_not_read() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("home/k/big", 5000), ("home/k/small", 500), ("etc/x", 1000)]);
        let (p, err) = read_archive(&t[..], &[], 1000, spill(&d));
        assert_eq!(err, None);
        assert_eq!(p.oversize, vec![("/home/k/big".to_string(), 5000)]);
        assert!(!p.files.contains_key("home/k/big") && !p.meta.contains_key("home/k/big"));
        assert_eq!(p.files["home/k/small"].size, 500);
        let x = &p.files["etc/x"];
        assert_eq!(x.size, 1000, "a file exactly at the cap is pulled");
        // Spilled, not held: the content is on disk (0600) and the id is git's blob id of it.
        let on_disk = std::fs::read(&x.spill).unwrap();
        assert_eq!(on_disk, vec![b'x'; 1000]);
        let want = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &on_disk)
            .unwrap();
        assert_eq!(x.id, want);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&x.spill).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir = p.spill.as_ref().unwrap().path().to_owned();
        drop(p);
        assert!(!dir.exists(), "the spill directory goes with the pull");
    }

    /// Issue 10: a file name holding a newline could add a forged line to hosts/<h>.meta,
    /// whose mode field went into the restore's shell line as text.
    #[test]
    fn forged_metadata_never_reaches_the_restore_script() {
        let t = tar_of(&[("home/k/a\n/etc/x\tf\t4755;touch /tmp/canary\t0:0\t0\t", 3)]);
        let d = tempfile::tempdir().unwrap();
        let (p, err) = read_archive(&t[..], &[], MAX_FILE_BYTES, spill(&d));
        assert_eq!(err, None);
        assert!(p.files.is_empty() && p.meta.is_empty(), "{p:?}");
        assert_eq!(p.unrecordable.len(), 1);
        let meta = "/etc/x\tf\t4755;touch /tmp/canary\t0:0\t0\t\n/etc/y\tf\t0640\t0:42\t0\t\n/etc/z\tf\t644\t0:$(id)\t0\t\n";
        assert_eq!(mode_and_owner(meta, "/etc/x"), None);
        assert_eq!(mode_and_owner(meta, "/etc/y"), Some((0o640, 0, 42)));
        assert_eq!(mode_and_owner(meta, "/etc/z"), None);
        assert_eq!(mode_and_owner("/etc/w\tf\t99999\t0:0\t0\t", "/etc/w"), None);
    }

    #[test]
    fn a_truncated_stream_is_an_error_not_a_panic() {
        let t = tar_of(&[("a", 3000)]);
        let d = tempfile::tempdir().unwrap();
        let (p, err) = read_archive(&t[..1200], &[], MAX_FILE_BYTES, spill(&d));
        assert!(err.is_some(), "{p:?}");
        assert!(p.files.is_empty());
    }

    fn plans(schedule: &str) -> Plans {
        Plans {
            hosts: vec![HostPlan {
                name: "kiosk1".into(),
                address: "x".into(),
                port: 22,
                user: "root".into(),
                key: "k".into(),
                paths: vec!["/etc".into()],
                exclude: vec![],
                include_secrets: vec![],
                schedule: Some(schedule.into()),
            }],
            concurrency: 1,
            max_file_bytes: MAX_FILE_BYTES,
            attempts: 1,
            timeout: Duration::from_secs(60),
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn ran(time: &str) -> Vec<HostResult> {
        vec![HostResult {
            host: "kiosk1".into(),
            time: at(time).as_second() as u64,
            ok: true,
            message: String::new(),
            files: 1,
            commit: None,
            attempts: 1,
        }]
    }

    #[test]
    fn schedules_with_an_injected_clock() {
        let utc = jiff::tz::TimeZone::UTC;
        let p = plans("0 3 * * *");
        let start = at("2026-11-26T00:00:00Z");
        // Never ran: waits for the first 03:00 after the daemon started.
        assert!(due_hosts(&p, &[], start, at("2026-11-26T02:59:00Z"), &utc).is_empty());
        assert_eq!(
            due_hosts(&p, &[], start, at("2026-11-26T03:00:10Z"), &utc),
            vec![("kiosk1".into(), false)]
        );
        // Ran at 03:00 today: nothing until tomorrow.
        let today = ran("2026-11-26T03:00:05Z");
        assert!(due_hosts(&p, &today, start, at("2026-11-26T23:00:00Z"), &utc).is_empty());
        // Appliance down for three days: one catch-up run, flagged as missed.
        assert_eq!(
            due_hosts(&p, &today, start, at("2026-11-29T10:00:00Z"), &utc),
            vec![("kiosk1".into(), true)]
        );
        // Weekdays only: after a Friday run the next is Monday.
        let wk = plans("30 7 * * 1-5");
        let fri = ran("2026-11-27T07:30:00Z");
        assert!(due_hosts(&wk, &fri, start, at("2026-11-29T12:00:00Z"), &utc).is_empty());
        assert_eq!(
            due_hosts(&wk, &fri, start, at("2026-11-30T07:30:00Z"), &utc).len(),
            1
        );
        assert!(parse_schedule("every day")
            .unwrap_err()
            .contains("cron syntax"));
    }

    #[test]
    fn schedules_follow_local_time_across_dst() {
        let Ok(tz) = jiff::tz::TimeZone::get("Europe/Zagreb") else {
            println!("SKIPPED: DST schedule test: no tz database (apt-get install tzdata)");
            return;
        };
        // 03:00 local daily; on 2026-03-29 clocks go 02:00 → 03:00 (UTC+1 → UTC+2).
        let p = plans("0 3 * * *");
        let before = ran("2026-03-28T02:00:00Z"); // 03:00 CET
        let due = next_due(
            &parse_schedule("0 3 * * *").unwrap(),
            Some(at("2026-03-28T02:00:00Z")),
            at("2026-03-01T00:00:00Z"),
            &tz,
        )
        .unwrap();
        assert_eq!(
            due.timestamp(),
            at("2026-03-29T01:00:00Z"),
            "03:00 CEST is 01:00 UTC"
        );
        assert!(due_hosts(
            &p,
            &before,
            at("2026-03-01T00:00:00Z"),
            at("2026-03-29T00:59:00Z"),
            &tz
        )
        .is_empty());
        assert_eq!(
            due_hosts(
                &p,
                &before,
                at("2026-03-01T00:00:00Z"),
                at("2026-03-29T01:00:00Z"),
                &tz
            )
            .len(),
            1
        );
    }

    #[test]
    fn host_beats_group_beats_defaults_and_addresses_come_from_the_inventory() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("conf/machines")).unwrap();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(
            root.join("conf/machines/kiosk1.toml"),
            "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.11\"\nhostname = \"kiosk1\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("conf/backup.toml"),
            "attempts = 5\n[defaults]\nschedule = \"0 3 * * *\"\nuser = \"backup\"\n\
             [group.kiosks]\nhosts = [\"kiosk1\", \"kiosk2\"]\npaths = [\"/etc\", \"/home/kiosk/.config\"]\nport = 2222\n\
             [host.kiosk2]\npaths = [\"/etc/*.conf\"]\naddress = \"kiosk2.lib.example\"\ninclude_secrets = [\"/etc/shadow\"]\n\
             [host.server]\n",
        )
        .unwrap();
        let cfgp = root.join("p.toml");
        std::fs::write(
            &cfgp,
            format!(
                "conf_repo = \"{0}/conf\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\nserver_ip = \"10.77.1.1\"\n[dhcp]\nmode = \"off\"\n",
                root.display()
            ),
        )
        .unwrap();
        let cfg = crate::config::Config::load(&cfgp).unwrap();
        let inv = crate::inventory::load(&cfg.conf_repo, cfg.server_ip, None).0;
        let p = load_plans(&cfg, &inv).unwrap();
        assert_eq!(p.attempts, 5);
        let by = |n: &str| p.hosts.iter().find(|h| h.name == n).unwrap().clone();
        let k1 = by("kiosk1");
        assert_eq!(
            (k1.address.as_str(), k1.port, k1.user.as_str()),
            ("10.77.1.11", 2222, "backup")
        );
        assert_eq!(k1.paths, ["/etc", "/home/kiosk/.config"]);
        assert_eq!(k1.schedule.as_deref(), Some("0 3 * * *"));
        let k2 = by("kiosk2");
        assert_eq!((k2.address.as_str(), k2.port), ("kiosk2.lib.example", 2222));
        assert_eq!(k2.paths, ["/etc/*.conf"]);
        assert_eq!(k2.include_secrets, ["/etc/shadow"]);
        let srv = by("server");
        assert_eq!((srv.address.as_str(), srv.port), ("server", 22));
        assert_eq!(srv.paths, ["/etc"], "the default");
        std::fs::write(root.join("conf/backup.toml"), "[host.x]\nport = \"ssh\"\n").unwrap();
        let e = load_plans(&cfg, &inv).unwrap_err().to_string();
        assert!(e.contains("backup.toml:2"), "{e}");
        // Issue 10: a user or address that ssh would read as an option, or as two words.
        for (key, v) in [
            ("user", "-oProxyCommand=touch /tmp/x"),
            ("user", "root x"),
            ("address", "-oProxyCommand=x"),
        ] {
            std::fs::write(
                root.join("conf/backup.toml"),
                format!("[host.x]\n{key} = \"{v}\"\n"),
            )
            .unwrap();
            let e = load_plans(&cfg, &inv).unwrap_err().to_string();
            assert!(e.contains(&format!("{key} {v:?}")), "{e}");
        }
    }

    #[test]
    fn secrets_are_recognised() {
        for s in [
            "/etc/shadow",
            "/etc/gshadow-",
            "/etc/ssh/ssh_host_ed25519_key",
            "/root/.ssh/id_ed25519",
            "/etc/ssl/private/site.pem",
            "/srv/x/tls.key",
        ] {
            assert!(is_secret(s), "{s}");
        }
        for s in [
            "/etc/passwd",
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "/root/.ssh/id_ed25519.pub",
            "/etc/hosts",
        ] {
            assert!(!is_secret(s), "{s}");
        }
    }

    #[test]
    fn remote_words_keep_globs_and_quote_the_rest() {
        assert_eq!(remote_word("/etc/*.conf"), "/etc/*.conf");
        assert_eq!(remote_word("/srv/my files"), "'/srv/my files'");
        assert_eq!(remote_word("/x/it's"), "'/x/it'\\''s'");
    }
}
