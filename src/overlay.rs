//! Writable network roots (issue 13), first piece: what a host changed in its overlay.
//!
//! A host's root is a kernel overlayfs: the shared, immutable base as the lower layer, the
//! host's own upper directory on the server. [`diff`] reads an upper directory against its
//! lower the way overlayfs itself does: a character device 0:0 is a *whiteout* (the path was
//! deleted), a directory carrying the xattr `trusted.overlay.opaque = "y"` hides everything the
//! lower has below it (the directory was deleted and made again), and anything else was created
//! (not in the lower) or copied up (it is in the lower: changed when its content, link target,
//! mode or owner differ — a file opened for writing but left as it was is not a change).
//! Renamed directories (`redirect_dir`) are not followed: pxelator mounts without it, so a
//! rename shows as a deletion and an addition.
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Entries read from one upper directory at most (a bound on time and memory).
pub const MAX_ENTRIES: usize = 1_000_000;
/// Text files larger than this get no content diff.
pub const MAX_DIFF_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A device, fifo or socket.
    Special,
}

/// One change, by path relative to the root (`etc/motd`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub entry: EntryKind,
    /// For a change: what differs ("content", "mode 644 → 600", "owner 0:0 → 1000:1000", …).
    pub detail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: more than {MAX_ENTRIES} entries in the upper directory; is it really an overlay's upper?")]
    TooMany(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError + '_ {
    move |source| OverlayError::Io {
        path: path.to_owned(),
        source,
    }
}

fn entry_kind(ft: std::fs::FileType) -> EntryKind {
    if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Special
    }
}

/// A whiteout: the character device 0:0 overlayfs writes for a deleted path.
pub fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether `dir` is an opaque directory of an overlay's upper layer.
fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(
        rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf),
        Ok(n) if &buf[..n] == b"y"
    )
}

/// Every change an upper directory makes to its lower, sorted by path.
pub fn diff(lower: &Path, upper: &Path) -> Result<Vec<Change>, OverlayError> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    walk(lower, upper, Path::new(""), &mut out, &mut seen)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn rel_str(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

fn walk(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    out: &mut Vec<Change>,
    seen: &mut usize,
) -> Result<(), OverlayError> {
    for (name, _) in counted_entries(upper, rel, seen)? {
        let r = rel.join(&name);
        let up = upper.join(&r);
        let lo = lower.join(&r);
        let um = std::fs::symlink_metadata(&up).map_err(io(&up))?;
        let lm = std::fs::symlink_metadata(&lo).ok();
        if is_whiteout(&um) {
            // Deleted; what it was comes from the lower (a whiteout with nothing below is a
            // leftover and changes nothing).
            if let Some(lm) = lm {
                out.push(Change {
                    path: rel_str(&r),
                    kind: ChangeKind::Deleted,
                    entry: entry_kind(lm.file_type()),
                    detail: None,
                });
                if lm.is_dir() {
                    all_below(lower, &r, ChangeKind::Deleted, out, seen)?;
                }
            }
            continue;
        }
        let kind = entry_kind(um.file_type());
        match (&lm, kind) {
            (None, _) => {
                out.push(Change {
                    path: rel_str(&r),
                    kind: ChangeKind::Added,
                    entry: kind,
                    detail: None,
                });
                if kind == EntryKind::Dir {
                    all_below(upper, &r, ChangeKind::Added, out, seen)?;
                }
            }
            (Some(lm), EntryKind::Dir) if lm.is_dir() => {
                if let Some(d) = metadata_change(lm, &um) {
                    out.push(Change {
                        path: rel_str(&r),
                        kind: ChangeKind::Changed,
                        entry: kind,
                        detail: Some(d),
                    });
                }
                if is_opaque(&up) {
                    // Made again: the lower's entries below are gone unless the upper has them.
                    opaque_below(lower, upper, &r, out, seen)?;
                }
                walk(lower, upper, &r, out, seen)?;
            }
            (Some(lm), _) if entry_kind(lm.file_type()) != kind => {
                // Replaced by another kind of entry.
                out.push(Change {
                    path: rel_str(&r),
                    kind: ChangeKind::Changed,
                    entry: kind,
                    detail: Some(format!("{:?} → {:?}", entry_kind(lm.file_type()), kind)),
                });
                if kind == EntryKind::Dir {
                    all_below(upper, &r, ChangeKind::Added, out, seen)?;
                }
            }
            (Some(lm), _) => {
                let mut what = Vec::new();
                if differs(&lo, &up, lm, &um, kind)? {
                    what.push(match kind {
                        EntryKind::Symlink => "link target".to_string(),
                        _ => "content".to_string(),
                    });
                }
                what.extend(metadata_change(lm, &um));
                if !what.is_empty() {
                    out.push(Change {
                        path: rel_str(&r),
                        kind: ChangeKind::Changed,
                        entry: kind,
                        detail: Some(what.join(", ")),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Mode and owner differences, as "mode 644 → 600, owner 0:0 → 1000:1000".
fn metadata_change(lm: &std::fs::Metadata, um: &std::fs::Metadata) -> Option<String> {
    let mut what = Vec::new();
    let (a, b) = (lm.mode() & 0o7777, um.mode() & 0o7777);
    if a != b && !um.file_type().is_symlink() {
        what.push(format!("mode {a:o} → {b:o}"));
    }
    if (lm.uid(), lm.gid()) != (um.uid(), um.gid()) {
        what.push(format!(
            "owner {}:{} → {}:{}",
            lm.uid(),
            lm.gid(),
            um.uid(),
            um.gid()
        ));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// Whether the content (files: bytes, symlinks: target) differs.
fn differs(
    lo: &Path,
    up: &Path,
    lm: &std::fs::Metadata,
    um: &std::fs::Metadata,
    kind: EntryKind,
) -> Result<bool, OverlayError> {
    match kind {
        EntryKind::Symlink => Ok(
            std::fs::read_link(lo).map_err(io(lo))? != std::fs::read_link(up).map_err(io(up))?
        ),
        EntryKind::File if lm.len() != um.len() => Ok(true),
        EntryKind::File => same_bytes(lo, up).map(|same| !same),
        EntryKind::Special => Ok(lm.rdev() != um.rdev()),
        EntryKind::Dir => Ok(false),
    }
}

/// Compares two files of equal length in blocks (never whole files in memory).
fn same_bytes(a: &Path, b: &Path) -> Result<bool, OverlayError> {
    let mut fa = std::fs::File::open(a).map_err(io(a))?;
    let mut fb = std::fs::File::open(b).map_err(io(b))?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(io(a))?;
        let m = read_full(&mut fb, &mut bb).map_err(io(b))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Everything below a new upper directory (Added) or a deleted lower one (Deleted).
fn all_below(
    root: &Path,
    rel: &Path,
    kind: ChangeKind,
    out: &mut Vec<Change>,
    seen: &mut usize,
) -> Result<(), OverlayError> {
    list_below(root, rel, seen, &mut |r, entry| {
        out.push(Change {
            path: rel_str(r),
            kind,
            entry,
            detail: None,
        })
    })
}

/// Below an opaque directory: the lower's entries the upper does not have are deleted.
fn opaque_below(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    out: &mut Vec<Change>,
    seen: &mut usize,
) -> Result<(), OverlayError> {
    if !lower.join(rel).is_dir() {
        return Ok(());
    }
    list_below(lower, rel, seen, &mut |r, kind| {
        if std::fs::symlink_metadata(upper.join(r)).is_err() {
            out.push(Change {
                path: rel_str(r),
                kind: ChangeKind::Deleted,
                entry: kind,
                detail: None,
            });
        }
    })
}

/// The entries of `root/rel` by name, each counted against [`MAX_ENTRIES`] (the bound of one
/// whole diff, shared by every directory it reads).
fn counted_entries(
    root: &Path,
    rel: &Path,
    seen: &mut usize,
) -> Result<Vec<(std::ffi::OsString, std::fs::FileType)>, OverlayError> {
    let dir = root.join(rel);
    let mut entries: Vec<(std::ffi::OsString, std::fs::FileType)> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .map(|e| e.and_then(|e| Ok((e.file_name(), e.file_type()?))))
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    *seen += entries.len();
    if *seen > MAX_ENTRIES {
        return Err(OverlayError::TooMany(root.to_owned()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Calls `f` for every entry below `root/rel` (depth first, sorted), bounded by MAX_ENTRIES.
fn list_below(
    root: &Path,
    rel: &Path,
    seen: &mut usize,
    f: &mut dyn FnMut(&Path, EntryKind),
) -> Result<(), OverlayError> {
    for (name, ft) in counted_entries(root, rel, seen)? {
        let r = rel.join(&name);
        f(&r, entry_kind(ft));
        if ft.is_dir() {
            list_below(root, &r, seen, f)?;
        }
    }
    Ok(())
}

/// Opens `rel` below `dir` for reading without following any symbolic link on the way (not
/// the last component either) and without leaving `dir`: a host owns its upper directory and
/// may swap a file for a link to the server's own files between a walk and a read.
pub fn open_beneath(dir: &Path, rel: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let d = std::fs::File::open(dir)?;
    let fd = rustix::fs::openat2(
        &d,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
    )?;
    Ok(std::fs::File::from(fd))
}

/// A unified diff of a changed text file (lower → upper); None when either side is not text
/// (not UTF-8, or holds NUL), not a regular file, or larger than [`MAX_DIFF_BYTES`].
pub fn text_diff(lower: &Path, upper: &Path, rel: &str) -> Option<String> {
    use std::io::Read;
    let read = |dir: &Path| -> Option<Vec<u8>> {
        let f = open_beneath(dir, rel).ok()?;
        let m = f.metadata().ok()?;
        if !m.is_file() || m.len() > MAX_DIFF_BYTES {
            return None;
        }
        let mut b = Vec::new();
        f.take(MAX_DIFF_BYTES + 1).read_to_end(&mut b).ok()?;
        (b.len() as u64 <= MAX_DIFF_BYTES && std::str::from_utf8(&b).is_ok() && !b.contains(&0))
            .then_some(b)
    };
    let (a, b) = (read(lower)?, read(upper)?);
    Some(crate::confrepo::unified_diff(rel, &a, &b, "base", "host"))
}
