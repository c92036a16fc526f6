//! Live images (Debian Live, Webconverger) as first-class things: `pxelator image import
//! FILE.iso|DIR` takes the kernel, initrd and squashfs a netbooted live system needs out of an
//! ISO (read in Rust, see [`iso`]) or a directory, checks them, and stores them under the boot
//! directory as a new version:
//!
//! ```text
//! <boot_dir>/images/<name>-v<N>/vmlinuz, initrd.img, filesystem.squashfs, image.toml
//! <boot_dir>/images/<name> -> <name>-v<N>      (the current version)
//! ```
//!
//! `image.toml` records the source, the time and each file's size and SHA-256. A profile says
//! `image = "<name>"` (the current version) or `"<name>-v<N>"` (pinned). An import works in a
//! hidden directory and renames it into place at the end, so a bad source (not a live image,
//! truncated, unreadable) leaves nothing behind.
pub mod iso;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The files a live image is made of, as stored.
pub const FILES: [&str; 3] = ["vmlinuz", "initrd.img", "filesystem.squashfs"];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Iso(#[from] iso::IsoError),
    #[error("{source_path}: not a live image: {what} (a Debian Live or Webconverger ISO has /live/vmlinuz, /live/initrd.img and /live/filesystem.squashfs)")]
    NotLive { source_path: String, what: String },
    #[error("{source_path}: {file} is damaged: {what}")]
    BadFile {
        source_path: String,
        file: String,
        what: String,
    },
    #[error("image name {0:?}: use lower-case letters, digits, '.', '_' and '-', not ending in -v<number> (--name NAME)")]
    BadName(String),
    #[error("no image {0:?}; `pxelator image list` shows them")]
    NoSuchImage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One stored file of an image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredFile {
    pub name: String,
    /// Its name in the source (e.g. `live/vmlinuz-6.1.0-28-amd64`).
    pub from: String,
    pub size: u64,
    pub sha256: String,
}

/// `image.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub version: u32,
    pub source: String,
    pub imported: String,
    pub files: Vec<StoredFile>,
}

impl ImageInfo {
    pub fn dir_name(&self) -> String {
        format!("{}-v{}", self.name, self.version)
    }

    /// The SHA-256 of its squashfs (what identifies the live system).
    pub fn squashfs_sha256(&self) -> &str {
        self.files
            .iter()
            .find(|f| f.name == FILES[2])
            .map_or("", |f| f.sha256.as_str())
    }
}

pub fn images_dir(boot_dir: &Path) -> PathBuf {
    boot_dir.join("images")
}

/// Splits "name-v3" into ("name", Some(3)); "name" into ("name", None).
pub fn split_version(s: &str) -> (&str, Option<u32>) {
    if let Some((n, v)) = s.rsplit_once("-v") {
        if let Ok(v) = v.parse() {
            if !n.is_empty() {
                return (n, Some(v));
            }
        }
    }
    (s, None)
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && split_version(s).1.is_none()
}

/// The default name for a source: its file name without `.iso`, lower-cased, other
/// characters as '-'.
pub fn default_name(src: &Path) -> String {
    let stem = src
        .file_name()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let stem = stem.strip_suffix(".iso").unwrap_or(&stem);
    let mut n: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if let (base, Some(_)) = split_version(&n) {
        n = base.to_owned();
    }
    n
}

/// Which of the names in a live directory are the kernel, the initrd and the squashfs:
/// `vmlinuz` / `initrd.img` / `filesystem.squashfs` if present, else the first (sorted)
/// `vmlinuz*` / `initrd*` / `*.squashfs`.
pub fn pick(names: &[String]) -> Result<[usize; 3], String> {
    let find = |exact: &str, ok: &dyn Fn(&str) -> bool| -> Option<usize> {
        names.iter().position(|n| n == exact).or_else(|| {
            let mut c: Vec<usize> = (0..names.len()).filter(|&i| ok(&names[i])).collect();
            c.sort_by(|&a, &b| names[a].cmp(&names[b]));
            c.first().copied()
        })
    };
    let k = find("vmlinuz", &|n| n.starts_with("vmlinuz"));
    let i = find("initrd.img", &|n| n.starts_with("initrd"));
    let s = find("filesystem.squashfs", &|n| n.ends_with(".squashfs"));
    match (k, i, s) {
        (Some(k), Some(i), Some(s)) => Ok([k, i, s]),
        _ => {
            let missing: Vec<&str> = [(k, "vmlinuz*"), (i, "initrd*"), (s, "*.squashfs")]
                .iter()
                .filter(|(f, _)| f.is_none())
                .map(|(_, n)| *n)
                .collect();
            Err(format!(
                "no {} in its live directory (it has: {})",
                missing.join(", "),
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        }
    }
}

/// Checks a stored file's first bytes (and the squashfs's own length) for what it must be.
pub fn check_content(name: &str, head: &[u8], size: u64) -> Result<(), String> {
    match name {
        "vmlinuz" => {
            if head.get(0x202..0x206) != Some(b"HdrS") {
                return Err("not an x86 Linux kernel (no HdrS boot header at 0x202)".into());
            }
        }
        "initrd.img" => {
            const MAGICS: [&[u8]; 7] = [
                b"070701",                 // cpio (early microcode first)
                b"070702",                 // cpio with checksums
                &[0x1f, 0x8b],             // gzip
                &[0x28, 0xb5, 0x2f, 0xfd], // zstd
                &[0xfd, b'7', b'z', b'X'], // xz
                &[0x02, 0x21, 0x4c, 0x18], // lz4 legacy
                &[0x5d, 0x00, 0x00],       // lzma
            ];
            if !MAGICS.iter().any(|m| head.starts_with(m)) {
                return Err(
                    "not an initramfs (no cpio, gzip, zstd, xz, lz4 or lzma header)".into(),
                );
            }
        }
        _ => {
            if head.get(..4) != Some(b"hsqs") {
                return Err("not a squashfs (no hsqs magic)".into());
            }
            let used = head
                .get(40..48)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .unwrap_or(u64::MAX);
            if used > size {
                return Err(format!(
                    "truncated: its superblock says {used} bytes, the file has {size}"
                ));
            }
        }
    }
    Ok(())
}

/// An import's progress: bytes copied so far and the total, reported to a callback (the CLI
/// draws a bar, the web UI shows a percentage).
pub struct Progress<'a> {
    done: std::cell::Cell<u64>,
    total: std::cell::Cell<u64>,
    report: &'a dyn Fn(u64, u64),
}

impl<'a> Progress<'a> {
    pub fn new(report: &'a dyn Fn(u64, u64)) -> Progress<'a> {
        Progress {
            done: 0.into(),
            total: 0.into(),
            report,
        }
    }
    fn set_total(&self, total: u64) {
        self.total.set(total);
        (self.report)(self.done.get(), total);
    }
    fn add(&self, n: u64) {
        self.done.set(self.done.get() + n);
        (self.report)(self.done.get(), self.total.get());
    }
}

/// Copies `len` bytes to `dest`, hashing them; progress goes to `progress`. Fewer bytes than
/// `len` is an error (a truncated source).
fn copy_hashed(
    mut from: impl Read,
    len: u64,
    dest: &Path,
    progress: &Progress,
) -> Result<(String, Vec<u8>), String> {
    let mut out = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut hash = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = from.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("ends after {done} of {len} bytes (truncated)"));
        }
        hash.update(&buf[..n]);
        if head.len() < 4096 {
            head.extend_from_slice(&buf[..n.min(4096 - head.len())]);
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        done += n as u64;
        progress.add(n as u64);
    }
    out.sync_all()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok((crate::proto::hex(&hash.finalize()), head))
}

/// Removes the hidden work directory unless the import got to the end.
struct WorkDir(Option<PathBuf>);
impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// The versions stored for a name, ascending.
pub fn versions(boot_dir: &Path, name: &str) -> Vec<u32> {
    versions_in(&images_dir(boot_dir), name, |p| {
        p.is_dir() && !p.is_symlink()
    })
}

/// The versions of `name` in a directory of versioned entries (`<name>-vN`, as images and
/// bases keep them), ascending; `complete` says whether an entry is a finished version.
pub fn versions_in(dir: &Path, name: &str, complete: impl Fn(&Path) -> bool) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| complete(&e.path()))
        .filter_map(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            match split_version(&f) {
                (n, Some(v)) if n == name => Some(v),
                _ => None,
            }
        })
        .collect();
    v.sort_unstable();
    v
}

/// Points `<dir>/<name>` at `<name>-v<version>` (a new link renamed over the old one), or
/// removes it for None.
pub fn point_current(dir: &Path, name: &str, version: Option<u32>) -> std::io::Result<()> {
    let link = dir.join(name);
    match version {
        Some(v) => {
            let tmp = dir.join(format!(".{name}.link.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(format!("{name}-v{v}"), &tmp)?;
            std::fs::rename(&tmp, &link)
        }
        None => match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Points `images/<name>` at `<name>-v<version>` (or removes it), atomically.
fn set_current(boot_dir: &Path, name: &str, version: Option<u32>) -> Result<(), ImageError> {
    let dir = images_dir(boot_dir);
    point_current(&dir, name, version).map_err(io_err(&dir.join(name)))
}

/// Imports an ISO or a directory as the next version of `name` and makes it current.
/// `progress` is told the bytes copied and the total as the files are copied.
pub fn import(
    boot_dir: &Path,
    src: &Path,
    name: &str,
    progress: &dyn Fn(u64, u64),
) -> Result<ImageInfo, ImageError> {
    let bar = Progress::new(progress);
    let bar = &bar;
    if !valid_name(name) {
        return Err(ImageError::BadName(name.to_owned()));
    }
    let source_path = src.display().to_string();
    let not_live = |what: String| ImageError::NotLive {
        source_path: source_path.clone(),
        what,
    };
    let dir = images_dir(boot_dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let work = dir.join(format!(".import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io_err(&work))?;
    let mut guard = WorkDir(Some(work.clone()));

    let mut stored = Vec::new();
    let mut copy =
        |i: usize, from: String, reader: &mut dyn Read, len: u64| -> Result<(), ImageError> {
            let dest = work.join(FILES[i]);
            let bad = |what| ImageError::BadFile {
                source_path: source_path.clone(),
                file: from.clone(),
                what,
            };
            let (sha256, head) = copy_hashed(reader, len, &dest, bar).map_err(bad)?;
            check_content(FILES[i], &head, len).map_err(bad)?;
            stored.push(StoredFile {
                name: FILES[i].into(),
                from: from.clone(),
                size: len,
                sha256,
            });
            Ok(())
        };
    let meta = std::fs::metadata(src).map_err(io_err(src))?;
    if meta.is_dir() {
        let live = if src.join("live").is_dir() {
            src.join("live")
        } else {
            src.to_owned()
        };
        let mut names: Vec<String> = std::fs::read_dir(&live)
            .map_err(io_err(&live))?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let idx = pick(&names).map_err(not_live)?;
        let paths: Vec<PathBuf> = idx.iter().map(|&i| live.join(&names[i])).collect();
        bar.set_total(
            paths
                .iter()
                .map(|p| p.metadata().map(|m| m.len()).unwrap_or(0))
                .sum(),
        );
        for (i, p) in paths.iter().enumerate() {
            let len = p.metadata().map_err(io_err(p))?.len();
            let mut f = std::fs::File::open(p).map_err(io_err(p))?;
            copy(i, p.display().to_string(), &mut f, len)?;
        }
    } else {
        let mut image = iso::Iso::open(src)?;
        let Some(live) = image.lookup("live")?.filter(|e| e.is_dir) else {
            return Err(not_live("no /live directory".into()));
        };
        let entries: Vec<iso::Entry> = image
            .read_dir(&live)?
            .into_iter()
            .filter(|e| !e.is_dir)
            .collect();
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let idx = pick(&names).map_err(not_live)?;
        bar.set_total(idx.iter().map(|&i| entries[i].size).sum());
        for (i, &j) in idx.iter().enumerate() {
            let e = &entries[j];
            let mut r = image.open_file(e)?;
            copy(i, format!("live/{}", e.name), &mut r, e.size)?;
        }
    }

    let version = versions(boot_dir, name).last().copied().unwrap_or(0) + 1;
    let info = ImageInfo {
        name: name.to_owned(),
        version,
        source: std::fs::canonicalize(src)
            .unwrap_or_else(|_| src.to_owned())
            .display()
            .to_string(),
        imported: jiff::Timestamp::now().to_string(),
        files: stored,
    };
    let toml_path = work.join("image.toml");
    std::fs::write(
        &toml_path,
        toml::to_string(&info).map_err(|e| io_err(&toml_path)(std::io::Error::other(e)))?,
    )
    .map_err(io_err(&toml_path))?;
    let final_dir = dir.join(info.dir_name());
    std::fs::rename(&work, &final_dir).map_err(io_err(&final_dir))?;
    guard.0 = None;
    set_current(boot_dir, name, Some(version))?;
    Ok(info)
}

/// Every stored version, by name then version, with whether it is the current one.
pub fn list(boot_dir: &Path) -> Vec<(ImageInfo, bool)> {
    let dir = images_dir(boot_dir);
    let mut out: Vec<(ImageInfo, bool)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && !e.path().is_symlink())
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("image.toml")).ok()?;
            crate::tomlfile::parse::<ImageInfo>(&e.path().join("image.toml"), &text).ok()
        })
        .map(|i| {
            let current = std::fs::read_link(dir.join(&i.name))
                .is_ok_and(|t| t.as_os_str() == i.dir_name().as_str());
            (i, current)
        })
        .collect();
    out.sort_by(|a, b| (&a.0.name, a.0.version).cmp(&(&b.0.name, b.0.version)));
    out
}

/// Which profiles boot each stored version (by directory name, `name-vN`): a profile with
/// `image = "name"` boots the current version of `name`, one with `"name-vN"` that version.
pub fn usage<'a>(
    stored: &[(ImageInfo, bool)],
    profiles: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = stored
        .iter()
        .map(|(i, _)| (i.dir_name(), Vec::new()))
        .collect();
    for (profile, image) in profiles {
        let dir = match split_version(image) {
            (_, Some(_)) => Some(image.to_string()),
            (name, None) => stored
                .iter()
                .find(|(i, current)| *current && i.name == name)
                .map(|(i, _)| i.dir_name()),
        };
        if let Some(users) = dir.and_then(|d| out.get_mut(&d)) {
            users.push(profile.to_string());
        }
    }
    out
}

/// Removes `name-vN` (then the newest remaining version becomes current) or every version of
/// `name`. Returns the removed directory names.
pub fn remove(boot_dir: &Path, what: &str) -> Result<Vec<String>, ImageError> {
    let (name, version) = split_version(what);
    let have = versions(boot_dir, name);
    let gone: Vec<u32> = match version {
        Some(v) if have.contains(&v) => vec![v],
        None if !have.is_empty() => have.clone(),
        _ => return Err(ImageError::NoSuchImage(what.to_owned())),
    };
    let dir = images_dir(boot_dir);
    let mut removed = Vec::new();
    for v in &gone {
        let d = dir.join(format!("{name}-v{v}"));
        std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
        removed.push(format!("{name}-v{v}"));
    }
    let left = versions(boot_dir, name);
    set_current(boot_dir, name, left.last().copied())?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_follows_current_and_pinned_versions() {
        let info = |v| ImageInfo {
            name: "kiosk".into(),
            version: v,
            source: String::new(),
            imported: String::new(),
            files: vec![],
        };
        let stored = vec![(info(1), false), (info(2), true), (info(3), false)];
        let u = usage(
            &stored,
            [("live", "kiosk"), ("old", "kiosk-v1"), ("gone", "other")].into_iter(),
        );
        assert_eq!(u["kiosk-v1"], ["old"]);
        assert_eq!(u["kiosk-v2"], ["live"]);
        assert!(u["kiosk-v3"].is_empty());
        assert_eq!(u.len(), 3);
    }

    #[test]
    fn picks_debian_and_webconverger_layouts() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let deb = s(&[
            "filesystem.packages",
            "filesystem.squashfs",
            "initrd.img-6.1.0-28-amd64",
            "vmlinuz-6.1.0-28-amd64",
        ]);
        assert_eq!(pick(&deb).unwrap(), [3, 2, 1]);
        let wc = s(&["filesystem.squashfs", "initrd.img", "vmlinuz"]);
        assert_eq!(pick(&wc).unwrap(), [2, 1, 0]);
        let e = pick(&s(&["README"])).unwrap_err();
        assert!(
            e.contains("no vmlinuz*, initrd*, *.squashfs") && e.contains("README"),
            "{e}"
        );
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(split_version("kiosk-v12"), ("kiosk", Some(12)));
        assert_eq!(split_version("kiosk"), ("kiosk", None));
        assert_eq!(split_version("-v3"), ("-v3", None));
        assert!(valid_name("debian-live-12.8-amd64"));
        assert!(!valid_name("Kiosk") && !valid_name("a/b") && !valid_name("x-v2"));
        assert_eq!(
            default_name(Path::new("/tmp/Webconverger 60.iso")),
            "webconverger-60"
        );
    }

    #[test]
    fn content_checks() {
        let mut k = vec![0u8; 0x300];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(check_content("vmlinuz", &k, 0x300).is_ok());
        assert!(check_content("vmlinuz", &[0u8; 0x300], 0x300).is_err());
        assert!(check_content("initrd.img", b"070701000", 9).is_ok());
        assert!(check_content("initrd.img", b"<html>", 6).is_err());
        let mut sq = vec![0u8; 96];
        sq[..4].copy_from_slice(b"hsqs");
        sq[40..48].copy_from_slice(&5000u64.to_le_bytes());
        assert!(check_content("filesystem.squashfs", &sq, 8192).is_ok());
        let e = check_content("filesystem.squashfs", &sq, 4096).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }
}
