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

/// Settings shared by defaults, groups and hosts (all optional; see [`HostPlan`] for defaults).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub paths: Option<Vec<String>>,
    /// Extra paths or globs to leave out.
    pub exclude: Option<Vec<String>>,
    /// Secret paths to pull anyway (they are excluded by default).
    pub include_secrets: Option<Vec<String>>,
    /// Cron syntax, e.g. "0 3 * * *" (used by the daemon's scheduler).
    pub schedule: Option<String>,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    pub port: Option<u16>,
    /// Address to connect to (default: the machine's IP from the inventory, else the name).
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(flatten)]
    settings: Settings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupFile {
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    group: BTreeMap<String, Group>,
    #[serde(default)]
    host: BTreeMap<String, Settings>,
    /// Hosts pulled at once.
    concurrency: Option<usize>,
    /// Tries per host per run for a host that cannot be reached.
    attempts: Option<u32>,
    /// Seconds one host's pull may take before it is cut off (default 600).
    timeout_secs: Option<u64>,
    /// Largest file pulled, in MiB (default 64); larger ones are reported and never read.
    max_file_mb: Option<u64>,
}

/// Everything needed to pull one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPlan {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    pub include_secrets: Vec<String>,
    pub schedule: Option<String>,
}

/// The resolved `backup.toml`.
#[derive(Debug, Clone)]
pub struct Plans {
    pub hosts: Vec<HostPlan>,
    pub concurrency: usize,
    pub attempts: u32,
    /// One host's pull is cut off after this long (a hung host never holds a worker forever).
    pub timeout: Duration,
    /// Per-file cap (`max_file_mb`, default [`MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
}

fn merge(a: &Settings, b: &Settings) -> Settings {
    Settings {
        paths: b.paths.clone().or_else(|| a.paths.clone()),
        exclude: b.exclude.clone().or_else(|| a.exclude.clone()),
        include_secrets: b
            .include_secrets
            .clone()
            .or_else(|| a.include_secrets.clone()),
        schedule: b.schedule.clone().or_else(|| a.schedule.clone()),
        user: b.user.clone().or_else(|| a.user.clone()),
        key: b.key.clone().or_else(|| a.key.clone()),
        port: b.port.or(a.port),
        address: b.address.clone().or_else(|| a.address.clone()),
    }
}

/// Reads `backup.toml` from the conf repo (errors name `path:line`). Hosts are resolved to
/// addresses through the inventory.
pub fn load_plans(cfg: &Config, inv: &crate::inventory::Inventory) -> Result<Plans, BackupError> {
    let file = cfg.conf_repo.join("backup.toml");
    // Committed, like the inventory (confrepo::read_current).
    let text = match crate::confrepo::read_current(&cfg.conf_repo, "backup.toml") {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(None) => String::new(),
        Err(e) => {
            return Err(BackupError::Config {
                file,
                msg: e.to_string(),
            })
        }
    };
    let parsed: BackupFile =
        crate::tomlfile::parse(&file, &text).map_err(|e| BackupError::Config {
            file: match e.line {
                Some(l) => PathBuf::from(format!("{}:{l}", file.display())),
                None => file.clone(),
            },
            msg: e.message,
        })?;
    let mut per_host: BTreeMap<String, Settings> = BTreeMap::new();
    for g in parsed.group.values() {
        for h in &g.hosts {
            let base = per_host.get(h).cloned().unwrap_or_default();
            per_host.insert(h.clone(), merge(&base, &g.settings));
        }
    }
    for (h, s) in &parsed.host {
        let base = per_host.get(h).cloned().unwrap_or_default();
        per_host.insert(h.clone(), merge(&base, s));
    }
    let default_key = cfg.state_dir.join("ssh/id_ed25519");
    let mut hosts = Vec::new();
    for (name, s) in per_host {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(BackupError::Config {
                file: file.clone(),
                msg: format!("host name {name:?}: letters, digits, '-' and '.' only"),
            });
        }
        let s = merge(&parsed.defaults, &s);
        let bad = |what: &str, v: &str, rule: &str| BackupError::Config {
            file: file.clone(),
            msg: format!("host {name}: {what} {v:?} {rule}"),
        };
        if let Some(u) = &s.user {
            // A user name goes into `ssh USER@HOST`: never an option, never two words.
            let ok = u.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && u.len() <= 32
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad("user", u, "is not a user name (letters, digits, '_', '.', '-'; starting with a letter or '_')"));
            }
        }
        if let Some(a) = &s.address {
            if crate::inventory::check_hostname(a).is_err()
                && a.parse::<std::net::IpAddr>().is_err()
            {
                return Err(bad(
                    "address",
                    a,
                    "is neither a host name nor an IP address",
                ));
            }
        }
        let address = s.address.clone().unwrap_or_else(|| {
            inv.machines()
                .iter()
                .find(|m| m.hostname.as_deref() == Some(name.as_str()))
                .and_then(|m| m.ip)
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| name.clone())
        });
        hosts.push(HostPlan {
            address,
            port: s.port.unwrap_or(22),
            user: s.user.unwrap_or_else(|| "root".into()),
            key: s.key.unwrap_or_else(|| default_key.clone()),
            paths: s.paths.unwrap_or_else(|| vec!["/etc".into()]),
            exclude: s.exclude.unwrap_or_default(),
            include_secrets: s.include_secrets.unwrap_or_default(),
            schedule: s.schedule,
            name,
        });
    }
    Ok(Plans {
        hosts,
        concurrency: parsed.concurrency.unwrap_or(8).max(1),
        attempts: parsed.attempts.unwrap_or(3).max(1),
        timeout: Duration::from_secs(parsed.timeout_secs.unwrap_or(600).max(1)),
        max_file_bytes: parsed
            .max_file_mb
            .map_or(MAX_FILE_BYTES, |mb| mb.max(1).saturating_mul(1 << 20)),
    })
}

/// File names never pulled unless `include_secrets` lists them (globs with at most one `*`):
/// the remote `tar --exclude`s and the local [`is_secret`] check both come from this table.
const SECRET_NAMES: [&str; 12] = [
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "ssh_host_*_key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ecdsa_sk",
    "id_ed25519_sk",
    "*.key",
];

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
        None => name == pattern,
    }
}

/// Is this (absolute) path a secret that is only pulled when listed explicitly? A secret
/// name ([`SECRET_NAMES`]) or anything under an `ssl/private` directory.
pub fn is_secret(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    SECRET_NAMES.iter().any(|p| name_matches(p, name))
        || path
            .split('/')
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["ssl", "private"])
}

/// What is known about a pulled path besides its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub kind: char, // f file, d directory, l symlink
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
}

impl Meta {
    fn line(&self, path: &str) -> String {
        format!(
            "{path}\t{}\t{:04o}\t{}:{}\t{}\t{}\n",
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.mtime,
            self.link.as_deref().unwrap_or("")
        )
    }
}

/// A pulled file's content: written to a spill file as it came off the stream (never held in
/// memory), with its git blob id computed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledFile {
    pub spill: PathBuf,
    pub size: u64,
    pub id: gix::ObjectId,
}

/// A directory of spill files, removed with everything in it when dropped.
#[derive(Debug)]
pub struct SpillDir(PathBuf);

impl SpillDir {
    /// A new, empty, private directory under `root` (one per pull: `<host>-<pid>-<n>`).
    pub fn create(root: &Path, host: &str) -> std::io::Result<SpillDir> {
        use std::os::unix::fs::DirBuilderExt;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        sweep_stale_spills(root);
        let dir = root.join(format!("{host}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(SpillDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes spill directories left by a process that is gone (killed mid-pull): their names
/// end in `-<pid>-<n>` and no process has that pid.
fn sweep_stale_spills(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '-');
        let (_, pid) = (
            parts.next(),
            parts.next().and_then(|p| p.parse::<u32>().ok()),
        );
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Where a conf repo's pulls spill their files: inside its `.git`, so moving one into the
/// working tree is a rename on the same file system, and `git status` never shows them.
pub fn spill_root(conf_repo: &Path) -> PathBuf {
    conf_repo.join(".git/pxelator-spill")
}

/// One pulled host: files (path without the leading '/' → spilled content) and metadata.
#[derive(Debug, Default)]
pub struct Pulled {
    pub files: BTreeMap<String, PulledFile>,
    pub meta: BTreeMap<String, Meta>,
    /// Paths skipped as secrets.
    pub secrets_skipped: Vec<String>,
    /// Files over the size cap, with their size: reported, not read.
    pub oversize: Vec<(String, u64)>,
    /// Files whose names hold control characters (escaped here): reported, not pulled.
    pub unrecordable: Vec<String>,
    /// The spill files' directory (removed when this is dropped, after the commit).
    pub spill: Option<SpillDir>,
}

/// `'…'` quoting for the remote shell; globs (`* ? [`) stay active when the path has only
/// plain characters besides them.
fn remote_word(p: &str) -> String {
    let plain = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+*?[]@%:=,".contains(c));
    if plain {
        p.to_owned()
    } else {
        format!("'{}'", p.replace('\'', "'\\''"))
    }
}

/// Where pinned host keys live.
pub fn known_hosts(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("ssh/known_hosts")
}

impl HostPlan {
    /// The ssh runner for this host (its key, port, user; host key pinned under its name).
    pub fn ssh(&self, known_hosts: &Path) -> crate::ssh::Ssh {
        crate::ssh::Ssh {
            name: self.name.clone(),
            address: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            key: self.key.clone(),
            known_hosts: known_hosts.to_owned(),
        }
    }
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

/// Pulls one host's listed paths (one ssh connection running `tar`).
pub fn pull(
    plan: &HostPlan,
    known: &Path,
    timeout: Duration,
    max_file_bytes: u64,
    spill_root: &Path,
) -> Result<Pulled, BackupError> {
    let spill = SpillDir::create(spill_root, &plan.name).map_err(|e| {
        BackupError::Io(format!(
            "cannot create a spill directory under {}: {e}",
            spill_root.display()
        ))
    })?;
    let mut remote = String::from(
        "tar --create --file=- --numeric-owner --ignore-failed-read --warning=no-file-removed",
    );
    for pat in SECRET_NAMES {
        // A pattern one listed secret matches is left to the local check, which keeps the
        // listed file and still drops the others.
        let explicit = plan
            .include_secrets
            .iter()
            .any(|s| name_matches(pat, s.rsplit('/').next().unwrap_or(s)));
        if !explicit {
            remote.push_str(&format!(" --exclude='{pat}'"));
        }
    }
    for ex in &plan.exclude {
        remote.push_str(&format!(
            " --exclude={}",
            remote_word(ex.trim_start_matches('/'))
        ));
    }
    remote.push_str(" --");
    for p in plan.paths.iter().chain(&plan.include_secrets) {
        remote.push(' ');
        remote.push_str(&remote_word(p));
    }
    // tar exits 1 when a file changed while being read: still a usable pull.
    remote.push_str("; s=$?; [ $s -le 1 ] || exit $s");
    let (out, parse_err) = plan.ssh(known).stream(
        "tar of the listed paths (timeout_secs in backup.toml)",
        &remote,
        None,
        timeout,
        |stdout| {
            Ok(read_archive(
                stdout,
                &plan.include_secrets,
                max_file_bytes,
                spill,
            ))
        },
    )?;
    for (path, size) in &out.oversize {
        tracing::warn!(host = %plan.name, "{path}: {size} bytes, over the {max_file_bytes}-byte cap (max_file_mb in backup.toml); not pulled");
    }
    if let Some(e) = parse_err {
        return Err(BackupError::Remote {
            host: plan.name.clone(),
            msg: format!("unreadable tar stream: {e}"),
        });
    }
    Ok(out)
}

/// How long each of a restore's two ssh commands may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Default per-file cap of a pull (`max_file_mb` in backup.toml changes it): a larger file is
/// reported (`Pulled::oversize`) and never read, so a kiosk user's `truncate -s 1T ~/.config/x`
/// costs nothing.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Per-host cap on what one pull spills to disk before its commit; the files that would take
/// it past this are reported like oversize ones.
pub const MAX_HOST_BYTES: u64 = 4 << 30;

/// Reads a pull's tar stream: files (at most `max_file_bytes` each) are copied into `spill`
/// through a small buffer, hashed as git blobs on the way; directories and symlinks keep their
/// metadata; `..` and `.git` paths dropped; secrets skipped unless listed in `include_secrets`.
/// Returns what was read and, if the stream broke, why. Memory use does not depend on the
/// sizes of the files.
pub fn read_archive(
    stream: impl Read,
    include_secrets: &[String],
    max_file_bytes: u64,
    spill: SpillDir,
) -> (Pulled, Option<String>) {
    let mut out = Pulled::default();
    let mut parse_err = None;
    let mut total = 0u64;
    let mut ar = tar::Archive::new(stream);
    match ar.entries() {
        Ok(entries) => {
            for e in entries {
                let mut e = match e {
                    Ok(e) => e,
                    Err(err) => {
                        parse_err = Some(err.to_string());
                        break;
                    }
                };
                let path = match e.path() {
                    Ok(p) => p.to_string_lossy().trim_end_matches('/').to_owned(),
                    Err(_) => continue,
                };
                if path.is_empty() || path.split('/').any(|c| c == ".." || c == ".git") {
                    continue;
                }
                // A name with a tab or newline could forge a line of the .meta file (and so
                // the mode and owner a restore sets): such a file is reported, not pulled.
                if path.chars().any(char::is_control) {
                    out.unrecordable.push(format!("/{}", path.escape_debug()));
                    continue;
                }
                let h = e.header();
                let kind = match h.entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => 'f',
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    _ => continue,
                };
                let explicit = include_secrets
                    .iter()
                    .any(|s| s.trim_start_matches('/') == path);
                if kind == 'f' && is_secret(&format!("/{path}")) && !explicit {
                    out.secrets_skipped.push(format!("/{path}"));
                    continue;
                }
                let meta = Meta {
                    kind,
                    mode: h.mode().unwrap_or(0) & 0o7777,
                    uid: h.uid().unwrap_or(0),
                    gid: h.gid().unwrap_or(0),
                    mtime: h.mtime().unwrap_or(0),
                    link: e
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned()),
                };
                if kind == 'f' {
                    let size = h.size().unwrap_or(0);
                    if size > max_file_bytes || total + size > MAX_HOST_BYTES {
                        // Never read: the archive skips its bytes in small reads.
                        out.oversize.push((format!("/{path}"), size));
                        continue;
                    }
                    total += size;
                    let dest = spill.path().join(format!("{:08}", out.files.len()));
                    match spill_file(&mut e, size, &dest) {
                        Ok(Ok(id)) => {
                            out.files.insert(
                                path.clone(),
                                PulledFile {
                                    spill: dest,
                                    size,
                                    id,
                                },
                            );
                        }
                        Ok(Err(got)) => {
                            parse_err =
                                Some(format!("/{path}: stream ended after {got} of {size} bytes"));
                            break;
                        }
                        Err(err) => {
                            parse_err = Some(format!("/{path}: {err}"));
                            break;
                        }
                    }
                }
                out.meta.insert(path, meta);
            }
        }
        Err(err) => parse_err = Some(err.to_string()),
    }
    out.spill = Some(spill);
    (out, parse_err)
}

/// Copies exactly `size` bytes of `from` into a new 0600 file at `dest` (synced) and returns
/// their git blob id; `Ok(Err(n))` when the stream ended after `n` bytes.
fn spill_file(
    from: &mut impl Read,
    size: u64,
    dest: &Path,
) -> std::io::Result<Result<gix::ObjectId, u64>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&gix::objs::encode::loose_header(
        gix::objs::Kind::Blob,
        size,
    ));
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut limited = from.take(size);
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        got += n as u64;
    }
    if got != size {
        return Ok(Err(got));
    }
    file.sync_all()?;
    hasher
        .try_finalize()
        .map(Ok)
        .map_err(|e| std::io::Error::other(e.to_string()))
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
    let (tx, rx) = std::sync::mpsc::channel::<(HostPlan, u32, Result<Pulled, BackupError>)>();
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
                if tx.send((plan, tries, res)).is_err() {
                    return;
                }
            })
        })
        .collect();
    drop(tx);
    let mut results = Vec::new();
    for (plan, attempts, res) in rx {
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

/// Writes `path` (absolute, on `plan`'s host) back as of `rev`: content from
/// `hosts/<host>/<path>`, mode and owner from `hosts/<host>.meta` at that revision. With
/// `dry_run`, only returns the diff from the host's current content.
pub fn restore(
    cfg: &Config,
    plan: &HostPlan,
    path: &str,
    rev: &str,
    dry_run: bool,
) -> Result<String, BackupError> {
    let repo = ConfRepo::open(&cfg.conf_repo)?.ok_or_else(|| {
        BackupError::Io(format!(
            "{} is not a git repository",
            cfg.conf_repo.display()
        ))
    })?;
    let rel = path.trim_start_matches('/');
    let want = repo.cat(&format!("hosts/{}/{rel}", plan.name), rev)?;
    let meta = repo
        .cat(&format!("hosts/{}.meta", plan.name), rev)
        .unwrap_or_default();
    let mode = mode_and_owner(&String::from_utf8_lossy(&meta), &format!("/{rel}"));
    let known = known_hosts(cfg);
    let q = remote_word_quoted(&format!("/{rel}"));
    let ssh = plan.ssh(&known);
    let current = ssh.run(
        &format!("reading /{rel} to compare"),
        &format!("cat {q} 2>/dev/null || true"),
        None,
        MAX_FILE_BYTES,
        RESTORE_TIMEOUT,
    )?;
    let diff = crate::confrepo::unified_diff(
        &format!("/{rel}"),
        &current,
        &want,
        &format!("{} now", plan.name),
        rev,
    );
    if dry_run {
        return Ok(if diff.is_empty() {
            format!("/{rel} on {} already has its content of {rev}\n", plan.name)
        } else {
            diff
        });
    }
    let tmp = remote_word_quoted(&format!("/{rel}.pxelator-restore"));
    let mut script = format!("umask 077 && cat > {tmp}");
    // Only numbers parsed from the metadata reach the remote shell, never its text.
    if let Some((mode, uid, gid)) = mode {
        script.push_str(&format!(
            " && chmod {mode:o} {tmp} && chown {uid}:{gid} {tmp}"
        ));
    }
    script.push_str(&format!(" && mv -f {tmp} {q}"));
    ssh.run(
        &format!("writing /{rel} back"),
        &script,
        Some(&want),
        0,
        RESTORE_TIMEOUT,
    )?;
    Ok(format!(
        "restored /{rel} on {} as of {rev}\n{diff}",
        plan.name
    ))
}

/// Parses a schedule: cron syntax with 5 fields (minute hour day month weekday) or 6 with
/// seconds first; nicknames like `@daily` too.
pub fn parse_schedule(s: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(s)
        .map_err(|e| {
            format!("schedule {s:?}: {e} (cron syntax, e.g. \"0 3 * * *\" for 03:00 daily)")
        })
}

/// When a host's next scheduled pull is due, in `tz`: the first occurrence after its last
/// run, or after `since` (the daemon's start) when it never ran. A due time already in the
/// past means "run now": occurrences missed while the appliance was down are made up once.
pub fn next_due(
    cron: &croner::Cron,
    last_run: Option<jiff::Timestamp>,
    since: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Option<jiff::Zoned> {
    let from = last_run.unwrap_or(since).to_zoned(tz.clone());
    cron.find_next_occurrence(&from, false).ok()
}

/// Which hosts are due at `now`, and for each whether a run was missed (due more than a
/// minute ago). Pure: the daemon's scheduler and the tests call it with their own clock.
pub fn due_hosts(
    plans: &Plans,
    status: &[HostResult],
    since: jiff::Timestamp,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for p in &plans.hosts {
        let Some(Ok(cron)) = p.schedule.as_deref().map(parse_schedule) else {
            continue;
        };
        let last = status
            .iter()
            .find(|r| r.host == p.name)
            .and_then(|r| jiff::Timestamp::from_second(r.time as i64).ok());
        if let Some(due) = next_due(&cron, last, since, tz) {
            if due.timestamp() <= now {
                let missed = now.as_second() - due.timestamp().as_second() > 60;
                out.push((p.name.clone(), missed));
            }
        }
    }
    out
}

/// The mode and owner recorded for `path` in a `.meta` text: the line for that path whose
/// mode is octal (at most 7777) and whose owner is `uid:gid` in digits. A line in any other
/// shape (hand-edited, or forged) gives nothing, so restore keeps the umask's mode and owner.
pub fn mode_and_owner(meta: &str, path: &str) -> Option<(u32, u64, u64)> {
    meta.lines().find_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 4 || f[0] != path {
            return None;
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (uid, gid) = f[3].split_once(':')?;
        if !(digits(f[2]) && f[2].len() <= 4 && digits(uid) && digits(gid)) {
            return None;
        }
        let mode = u32::from_str_radix(f[2], 8).ok().filter(|m| *m <= 0o7777)?;
        Some((mode, uid.parse().ok()?, gid.parse().ok()?))
    })
}

fn remote_word_quoted(p: &str) -> String {
    format!("'{}'", p.replace('\'', "'\\''"))
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
