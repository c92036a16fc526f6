//! File writes that must not be seen half done: a temporary file beside the target, written,
//! fsynced, renamed over it, the directory fsynced.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically, creating the file with `mode` (e.g. 0o600).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let (tmp, dir) = write_temp(path, data, mode)?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Writes `data` (synced) to a new temporary file beside `path`: (its path, the directory).
fn write_temp<'a>(
    path: &'a Path,
    data: &[u8],
    mode: u32,
) -> std::io::Result<(PathBuf, Option<&'a Path>)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("pxelator-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok((tmp, dir))
}

fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    match dir {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

/// Like [`write_atomic`], but never replaces: Ok(false) when `path` already exists (also when
/// it appears while writing — a racing hand edit is never clobbered).
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let (tmp, dir) = write_temp(path, data, mode)?;
    // hard_link fails if the target exists, where rename would replace it.
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves `from` to `to` (creating `to`'s directories), replacing it atomically; across file
/// systems, copies to a temporary name beside `to` first. The file keeps its mode.
pub fn move_into(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    if std::fs::rename(from, to).is_err() {
        let tmp = to.with_extension("pxelator-tmp");
        let _ = std::fs::remove_file(&tmp);
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)?;
        let _ = std::fs::remove_file(from);
    }
    sync_dir(dir)
}

/// [`write_atomic`] with mode 0600: secrets, password hashes, keys.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic(path, data, 0o600)
}

/// Why a secret file (a private key, a password file) must not be used: it is readable by
/// group or others. The error names the file, its mode and the chmod that fixes it.
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:o}); it holds a secret: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Makes `dir` (and its parents) if missing and insists it is ours alone: mode 0700 is set on
/// it, and a directory owned by another user is refused (what it holds — ssh control sockets —
/// lets whoever reaches them run commands as us).
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} is not a directory of this user's; remove it (pxelator makes it again, mode 700)",
            dir.display()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Reads a secret file (first line, without its newline), refusing one others can read.
pub fn read_secret(path: &Path) -> Result<String, String> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// An exclusive flock on `path` (created if missing), held until the value is dropped.
pub fn lock_exclusive(path: &Path) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The ssh control-socket directory: made 0700, tightened if opened up, refused when
    /// someone else owns it (or it is a link to somewhere else).
    #[test]
    fn private_dirs_are_ours_alone() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("ssh/mux");
        ensure_private_dir(&m).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&m), 0o700);
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&m).unwrap();
        assert_eq!(mode(&m), 0o700);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&m, &link).unwrap();
        assert!(ensure_private_dir(&link)
            .unwrap_err()
            .contains("not a directory of this user's"));
        if nix::unistd::geteuid().is_root() {
            let other = d.path().join("other");
            std::fs::create_dir(&other).unwrap();
            nix::unistd::chown(&other, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            assert!(ensure_private_dir(&other).is_err());
        }
    }

    #[test]
    fn secrets_others_can_read_are_refused_and_private_writes_are_0600() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/secret");
        write_private(&f, b"s3cret\nrest\n").unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret(&f).unwrap(), "s3cret");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_secret(&f).unwrap_err();
        assert!(e.contains("mode 640") && e.contains("chmod 600"), "{e}");
    }
}
