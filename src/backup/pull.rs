//! One host's pull: `tar` over ssh, read as it streams — files spilled to disk and hashed as
//! git blobs on the way, never held in memory; over-size files, secrets and unrecordable names
//! reported, not pulled.
use super::*;

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
    pub(crate) fn line(&self, path: &str) -> String {
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
pub(crate) fn sweep_stale_spills(root: &Path) {
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
pub(crate) fn spill_file(
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
