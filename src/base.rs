//! Bases for writable network roots (issue 13). `overlay/<name>.toml` in the conf repo defines
//! one — a Debian suite, packages beyond the always-included ones ([`ALWAYS`]), paths that
//! `overlay diff` leaves out — and `overlay/<name>/` holds files laid into its root.
//! `pxelator base build NAME` makes an immutable version with mmdebstrap:
//!
//! ```text
//! <state_dir>/bases/<name>-vN/root/          the root tree (overlay lower of its hosts; never served)
//! <state_dir>/bases/<name>-vN/base.toml      what it is: definition hash, packages, kernel, size
//! <state_dir>/bases/<name>-vN/manifest.txt   every entry: sha256 mode uid:gid size path [-> link]
//! <state_dir>/bases/<name> -> <name>-vN      the current version
//! <boot_dir>/bases/<name>-vN/{vmlinuz,initrd.img}  served over HTTP to its hosts' iPXE
//! <boot_dir>/bases/<name> -> <name>-vN
//! ```
//!
//! A version is written under a temporary name and renamed into place when complete, so a
//! half-built base is never listed. Nothing edits a version once built: an upper directory is
//! bound to its lower's inodes, so a change is a new version (`overlay promote`).
use crate::fsutil;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files a base serves to its hosts' iPXE, under `<boot_dir>/bases/<name>-vN/`.
pub const BOOT_FILES: [&str; 2] = ["vmlinuz", "initrd.img"];

/// Packages every base has: a kernel and an initramfs that mounts an NFS root, systemd.
pub const ALWAYS: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "iproute2",
    "netbase",
];

/// Paths `overlay diff` leaves out unless asked for everything: what a running Debian system
/// writes by itself (its identity, logs, caches, timers' stamps), not the admin's changes.
pub const DEFAULT_IGNORE: &[&str] = &[
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/var/log",
    "/var/cache",
    "/var/tmp",
    "/tmp",
    "/var/lib/systemd",
    "/var/lib/dhcp",
    "/var/lib/apt/lists",
    "/etc/ld.so.cache",
    "/root/.bash_history",
    "/root/.lesshst",
];

const MAX_DEF_BYTES: usize = 64 * 1024;
const MAX_LAID_FILES: usize = 10_000;
const MAX_LAID_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mmdebstrap failed for base {name} ({status}); its last lines:\n{tail}")]
    Mmdebstrap {
        name: String,
        status: String,
        tail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BaseError {
    let what = what.into();
    move |source| BaseError::Io { what, source }
}

/// `overlay/<name>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefFile {
    suite: Option<String>,
    mirror: Option<String>,
    security_mirror: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    ignore: Option<Vec<String>>,
}

/// A base definition as read from the conf repo (committed state).
#[derive(Debug, Clone, PartialEq)]
pub struct BaseDef {
    pub name: String,
    pub suite: String,
    pub mirror: String,
    /// None: no security updates source (a mirror that has none).
    pub security_mirror: Option<String>,
    /// Everything installed: [`ALWAYS`] plus the definition's packages, sorted, no repeats.
    pub packages: Vec<String>,
    pub ignore: Vec<String>,
    /// Files laid into the root after mmdebstrap: path inside the root, content, executable.
    pub files: Vec<LaidFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaidFile {
    pub path: String,
    /// The bytes of a file, or the target of a symbolic link.
    pub content: Vec<u8>,
    pub executable: bool,
    /// A symbolic link (such as a systemd unit's enablement under `*.wants/`).
    pub symlink: bool,
}

/// A Debian package name (policy §5.6.1): lower case, digits, `+ - .`, at least two chars.
fn valid_package(p: &str) -> bool {
    p.len() >= 2
        && p.len() <= 100
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn valid_mirror(m: &str) -> bool {
    (m.starts_with("http://") || m.starts_with("https://") || m.starts_with("file:/"))
        && m.len() < 512
        && !m.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An absolute path inside the root: `/`-separated, no empty, `.` or `..` component, no
/// control characters.
pub fn valid_root_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() < 4096
        && !p.chars().any(char::is_control)
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl BaseDef {
    /// Parses `overlay/<name>.toml` (`src` names it in errors) with the files to lay in.
    pub fn parse(
        name: &str,
        src: &str,
        text: &[u8],
        files: Vec<LaidFile>,
    ) -> Result<BaseDef, BaseError> {
        if !crate::image::valid_name(name) {
            return Err(BaseError::Invalid(format!(
                "{name:?} is not a base name: lower-case letters, digits, '.', '_' and '-', not ending in -vN"
            )));
        }
        if text.len() > MAX_DEF_BYTES {
            return Err(BaseError::Invalid(format!(
                "{src}: {} bytes; a base definition is at most {MAX_DEF_BYTES}",
                text.len()
            )));
        }
        let text = std::str::from_utf8(text)
            .map_err(|_| BaseError::Invalid(format!("{src}: not UTF-8 text")))?;
        let f: DefFile = toml::from_str(text)
            .map_err(|e| BaseError::Invalid(format!("{src}: {}", e.message())))?;
        let bad = |what: &str, v: &str, fix: &str| {
            BaseError::Invalid(format!("{src}: {what} = {v:?}: {fix}"))
        };
        let suite = f.suite.unwrap_or_else(|| "bookworm".into());
        if suite.is_empty()
            || suite.len() > 32
            || !suite.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        {
            return Err(bad(
                "suite",
                &suite,
                "a Debian suite name such as \"bookworm\"",
            ));
        }
        let mirror = f
            .mirror
            .unwrap_or_else(|| "http://deb.debian.org/debian".into());
        if !valid_mirror(&mirror) {
            return Err(bad(
                "mirror",
                &mirror,
                "an http://, https:// or file:/ URL without spaces",
            ));
        }
        let security_mirror = match f.security_mirror {
            None => Some("http://deb.debian.org/debian-security".into()),
            Some(s) if s.is_empty() => None,
            Some(s) if valid_mirror(&s) => Some(s),
            Some(s) => {
                return Err(bad(
                    "security_mirror",
                    &s,
                    "an http://, https:// or file:/ URL without spaces, or \"\" for none",
                ))
            }
        };
        let mut packages: BTreeSet<String> = ALWAYS.iter().map(|p| (*p).to_owned()).collect();
        for p in f.packages {
            if !valid_package(&p) {
                return Err(bad(
                    "packages",
                    &p,
                    "a Debian package name (lower case, digits, + - .)",
                ));
            }
            packages.insert(p);
        }
        let ignore = match f.ignore {
            None => DEFAULT_IGNORE.iter().map(|p| (*p).to_owned()).collect(),
            Some(v) => v,
        };
        if let Some(p) = ignore.iter().find(|p| !valid_root_path(p)) {
            return Err(bad(
                "ignore",
                p,
                "an absolute path inside the root such as \"/var/log\"",
            ));
        }
        if files.len() > MAX_LAID_FILES {
            return Err(BaseError::Invalid(format!(
                "overlay/{name}/ holds {} files; a base lays in at most {MAX_LAID_FILES}",
                files.len()
            )));
        }
        let total: u64 = files.iter().map(|f| f.content.len() as u64).sum();
        if total > MAX_LAID_BYTES {
            return Err(BaseError::Invalid(format!(
                "overlay/{name}/ holds {total} bytes; a base lays in at most {MAX_LAID_BYTES}"
            )));
        }
        if let Some(f) = files.iter().find(|f| !valid_root_path(&f.path)) {
            return Err(BaseError::Invalid(format!(
                "overlay/{name}{}: not a plain path inside the root",
                f.path
            )));
        }
        Ok(BaseDef {
            name: name.to_owned(),
            suite,
            mirror,
            security_mirror,
            packages: packages.into_iter().collect(),
            ignore,
            files,
        })
    }

    /// Reads the definition as the conf repo has it committed (HEAD; the files on disk when
    /// the conf repo is not a git repository yet).
    pub fn load(conf_repo: &Path, name: &str) -> Result<BaseDef, BaseError> {
        if !crate::image::valid_name(name) {
            return Err(BaseError::Invalid(format!(
                "{name:?} is not a base name: lower-case letters, digits, '.', '_' and '-', not ending in -vN"
            )));
        }
        let rel = format!("overlay/{name}.toml");
        let repo_err = |e: crate::confrepo::RepoError| BaseError::Invalid(e.to_string());
        let text = crate::confrepo::read_current(conf_repo, &rel)
            .map_err(repo_err)?
            .ok_or_else(|| {
                BaseError::Invalid(format!(
                    "no base definition {rel} in the conf repo (committed); write one (suite, packages) and commit it"
                ))
            })?;
        let dir = format!("overlay/{name}");
        let mut files = Vec::new();
        let head = match crate::confrepo::ConfRepo::open(conf_repo).map_err(repo_err)? {
            Some(repo) => repo.head().map_err(repo_err)?.map(|h| (repo, h)),
            None => None,
        };
        if let Some((repo, head)) = head {
            for f in repo.files_with_modes(head, &dir).map_err(repo_err)? {
                files.push(LaidFile {
                    path: f.path[dir.len()..].to_owned(),
                    content: repo.blob(f.id).map_err(repo_err)?,
                    executable: f.executable,
                    symlink: f.symlink,
                });
            }
        } else {
            let top = conf_repo.join(&dir);
            if top.is_dir() {
                read_files_on_disk(&top, &top, &mut files)?;
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        BaseDef::parse(name, &rel, &text, files)
    }

    /// A digest of everything the build depends on (definition and laid-in files): two bases
    /// with the same hash came from the same recipe (the mirror's packages may have moved).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.suite, &self.mirror] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.security_mirror.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        for p in &self.packages {
            h.update(p.as_bytes());
            h.update([0]);
        }
        h.update([1]);
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update([0, f.executable as u8, f.symlink as u8]);
            h.update((f.content.len() as u64).to_le_bytes());
            h.update(&f.content);
        }
        crate::core::hex(&h.finalize())
    }
}

fn read_files_on_disk(top: &Path, dir: &Path, out: &mut Vec<LaidFile>) -> Result<(), BaseError> {
    let entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
    for e in entries {
        let e = e.map_err(io(format!("reading {}", dir.display())))?;
        let p = e.path();
        let ft = e
            .file_type()
            .map_err(io(format!("reading {}", p.display())))?;
        if ft.is_dir() {
            read_files_on_disk(top, &p, out)?;
        } else if ft.is_file() {
            if out.len() >= MAX_LAID_FILES {
                return Err(BaseError::Invalid(format!(
                    "{}: more than {MAX_LAID_FILES} files to lay in",
                    top.display()
                )));
            }
            let meta = e
                .metadata()
                .map_err(io(format!("reading {}", p.display())))?;
            if meta.len() > MAX_LAID_BYTES {
                return Err(BaseError::Invalid(format!(
                    "{}: {} bytes; a base lays in at most {MAX_LAID_BYTES}",
                    p.display(),
                    meta.len()
                )));
            }
            let rel = p.strip_prefix(top).unwrap_or(&p).to_string_lossy();
            out.push(LaidFile {
                path: format!("/{rel}"),
                content: std::fs::read(&p).map_err(io(format!("reading {}", p.display())))?,
                executable: meta.permissions().mode() & 0o111 != 0,
                symlink: false,
            });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&p).map_err(io(format!("reading {}", p.display())))?;
            let rel = p.strip_prefix(top).unwrap_or(&p).to_string_lossy();
            out.push(LaidFile {
                path: format!("/{rel}"),
                content: target.as_os_str().as_encoded_bytes().to_vec(),
                executable: false,
                symlink: true,
            });
        } else {
            return Err(BaseError::Invalid(format!(
                "{}: not a regular file, directory or symbolic link",
                p.display()
            )));
        }
    }
    Ok(())
}

/// `base.toml` of a built version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseInfo {
    pub name: String,
    pub version: u32,
    /// RFC 3339.
    pub built: String,
    pub suite: String,
    pub packages: Vec<String>,
    /// [`BaseDef::hash`] of the recipe.
    pub recipe: String,
    /// The kernel release of `vmlinuz` (e.g. "6.1.0-57-amd64").
    pub kernel: String,
    pub files: u64,
    pub bytes: u64,
    pub ignore: Vec<String>,
    /// Set when the version was made by `overlay promote` from another version and a host's
    /// changes ("name-vN host:path,path").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
}

impl BaseInfo {
    pub fn dir_name(&self) -> String {
        format!("{}-v{}", self.name, self.version)
    }
}

pub fn bases_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("bases")
}

fn boot_bases_dir(boot_dir: &Path) -> PathBuf {
    boot_dir.join("bases")
}

/// Where a version's kernel and initramfs are served from (`<boot_dir>/bases/NAME-vN/`).
pub fn boot_dir_of(boot_dir: &Path, info: &BaseInfo) -> PathBuf {
    boot_bases_dir(boot_dir).join(info.dir_name())
}

/// Built versions of `name`, ascending.
pub fn versions(state_dir: &Path, name: &str) -> Vec<u32> {
    crate::image::versions_in(&bases_dir(state_dir), name, |p| {
        p.join("base.toml").is_file()
    })
}

/// The version `name` (current) or `name-vN` stands for, if built.
pub fn resolve(state_dir: &Path, spec: &str) -> Option<BaseInfo> {
    let (name, version) = crate::image::split_version(spec);
    let version = match version {
        Some(v) => v,
        None => {
            let link = std::fs::read_link(bases_dir(state_dir).join(name)).ok()?;
            crate::image::split_version(link.to_str()?).1?
        }
    };
    read_info(&bases_dir(state_dir).join(format!("{name}-v{version}")))
}

fn read_info(dir: &Path) -> Option<BaseInfo> {
    let text = std::fs::read_to_string(dir.join("base.toml")).ok()?;
    toml::from_str(&text).ok()
}

/// The root tree of a built version (the overlay lower of its hosts).
pub fn root_dir(state_dir: &Path, info: &BaseInfo) -> PathBuf {
    bases_dir(state_dir).join(info.dir_name()).join("root")
}

/// Every built version with whether it is its name's current one.
pub fn list(state_dir: &Path) -> Vec<(BaseInfo, bool)> {
    let dir = bases_dir(state_dir);
    let mut out: Vec<(BaseInfo, bool)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| read_info(&e.path()))
        .map(|i| {
            let current = resolve(state_dir, &i.name).is_some_and(|c| c.version == i.version);
            (i, current)
        })
        .collect();
    out.sort_by(|a, b| (&a.0.name, a.0.version).cmp(&(&b.0.name, b.0.version)));
    out
}

/// Points `<dir>/<name>` at `<name>-v<version>`.
fn set_current(dir: &Path, name: &str, version: u32) -> Result<(), BaseError> {
    crate::image::point_current(dir, name, Some(version))
        .map_err(io(format!("linking {}/{name}", dir.display())))
}

/// What a build reports as it goes (a line per step).
pub type Report<'a> = &'a dyn Fn(&str);

/// Builds the next version of `def` with mmdebstrap (`mmdebstrap` on PATH, or the program
/// given), lays in its files, writes the manifest and makes it current.
pub fn build(
    state_dir: &Path,
    boot_dir: &Path,
    def: &BaseDef,
    mmdebstrap: &Path,
    report: Report,
) -> Result<BaseInfo, BaseError> {
    let dir = bases_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let lock = fsutil::lock_exclusive(&dir.join(".lock"))
        .map_err(io(format!("locking {}", dir.display())))?;
    let version = versions(state_dir, &def.name).last().copied().unwrap_or(0) + 1;
    let work = dir.join(format!(".build-{}-v{version}", def.name));
    if work.exists() {
        // A build killed midway: nobody uses a temporary tree.
        std::fs::remove_dir_all(&work).map_err(io(format!("removing {}", work.display())))?;
    }
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let root = work.join("root");
    report(&format!(
        "mmdebstrap {} ({} packages) into {}",
        def.suite,
        def.packages.len(),
        root.display()
    ));
    let mut cmd = Command::new(mmdebstrap);
    cmd.arg("--variant=minbase")
        .arg("--quiet")
        .arg(format!("--include={}", def.packages.join(",")))
        // Before the kernel's postinst runs mkinitramfs: an initramfs that mounts an NFS root
        // and holds only the network and storage drivers it needs.
        .arg("--essential-hook=mkdir -p \"$1/etc/initramfs-tools/conf.d\" && printf 'MODULES=netboot\\nBOOT=nfs\\n' > \"$1/etc/initramfs-tools/conf.d/pxelator-nfsroot\"")
        // And the virtio disk driver, so a machine made by `restore-vm --pool` boots the same
        // kernel and initramfs with its root on a virtual disk (an RBD image).
        .arg("--essential-hook=mkdir -p \"$1/etc/initramfs-tools/hooks\" && printf '#!/bin/sh\\n[ \"$1\" = prereqs ] && exit 0\\n. /usr/share/initramfs-tools/hook-functions\\nmanual_add_modules virtio_blk\\n' > \"$1/etc/initramfs-tools/hooks/pxelator-virtio\" && chmod 755 \"$1/etc/initramfs-tools/hooks/pxelator-virtio\"")
        .arg(&def.suite)
        .arg(&root)
        .arg(format!("deb {} {} main", def.mirror, def.suite))
        .arg(format!("deb {} {}-updates main", def.mirror, def.suite));
    if let Some(sec) = &def.security_mirror {
        cmd.arg(format!("deb {sec} {}-security main", def.suite));
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io(format!("running {}", mmdebstrap.display())))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let _ = std::fs::remove_dir_all(&work);
        return Err(BaseError::Mmdebstrap {
            name: def.name.clone(),
            status: out.status.to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    report("laying in files, writing the manifest");
    prepare_root(&root, def)?;
    let kernel = take_boot_files(&root, &work.join("boot"))?;
    let (files, bytes) = write_manifest(&root, &work.join("manifest.txt"))?;
    let info = BaseInfo {
        name: def.name.clone(),
        version,
        built: crate::clock::rfc3339(crate::clock::unix_now()),
        suite: def.suite.clone(),
        packages: def.packages.clone(),
        recipe: def.hash(),
        kernel,
        files,
        bytes,
        ignore: def.ignore.clone(),
        promoted_from: None,
    };
    publish(state_dir, boot_dir, &work, &info)?;
    drop(lock);
    Ok(info)
}

/// What every base needs to be many hosts' root: no hostname of its own (each host's comes
/// from the kernel command line), an empty machine-id (each host makes its own on first
/// boot), an fstab without a disk; then the definition's files.
fn prepare_root(root: &Path, def: &BaseDef) -> Result<(), BaseError> {
    let _ = std::fs::remove_file(root.join("etc/hostname"));
    std::fs::write(root.join("etc/machine-id"), b"")
        .map_err(io(format!("writing {}/etc/machine-id", root.display())))?;
    std::fs::write(
        root.join("etc/fstab"),
        b"# pxelator nfsroot: / is this host's overlay over NFS (kernel command line)\n",
    )
    .map_err(io(format!("writing {}/etc/fstab", root.display())))?;
    for f in &def.files {
        lay_in(root, f)?;
    }
    Ok(())
}

/// Writes one file under `root` without following a symbolic link of the root (a base's own
/// `/etc/…` links must not send a write outside it).
fn lay_in(root: &Path, f: &LaidFile) -> Result<(), BaseError> {
    let mut at = root.to_path_buf();
    let comps: Vec<&str> = f.path[1..].split('/').collect();
    for c in &comps[..comps.len() - 1] {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BaseError::Invalid(format!(
                    "overlay/{}{}: {} in the root is not a directory (a link or a file); lay the file in at its real path",
                    def_name(root),
                    f.path,
                    at.display()
                )))
            }
            Err(_) => {
                std::fs::create_dir(&at).map_err(io(format!("creating {}", at.display())))?;
                // pxelator runs with umask 077; a base's directories are the system's, 0755.
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("creating {}", at.display())))?;
            }
        }
    }
    at.push(comps[comps.len() - 1]);
    let there = std::fs::symlink_metadata(&at);
    if f.symlink {
        // A link's target is only ever read inside the host's root, never followed here.
        if there.as_ref().is_ok_and(|m| m.is_dir()) {
            return Err(BaseError::Invalid(format!(
                "overlay/{}{}: the root has a directory there",
                def_name(root),
                f.path
            )));
        }
        if there.is_ok() {
            std::fs::remove_file(&at).map_err(io(format!("replacing {}", at.display())))?;
        }
        let target = std::ffi::OsStr::from_bytes(&f.content);
        return std::os::unix::fs::symlink(target, &at)
            .map_err(io(format!("linking {}", at.display())));
    }
    if there.is_ok_and(|m| !m.is_file()) {
        return Err(BaseError::Invalid(format!(
            "overlay/{}{}: the root has something other than a regular file there",
            def_name(root),
            f.path
        )));
    }
    let mode = if f.executable { 0o755 } else { 0o644 };
    fsutil::write_atomic(&at, &f.content, mode).map_err(io(format!("writing {}", at.display())))?;
    // Whatever the umask: git's modes, as a package would install them.
    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("writing {}", at.display())))
}

fn def_name(root: &Path) -> String {
    root.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().trim_start_matches(".build-").to_owned())
        .unwrap_or_default()
}

/// Copies the root's kernel and initramfs to `out/` (vmlinuz, initrd.img); the kernel release.
fn take_boot_files(root: &Path, out: &Path) -> Result<String, BaseError> {
    let boot = root.join("boot");
    let mut kernels: Vec<String> = std::fs::read_dir(&boot)
        .map_err(io(format!("reading {}", boot.display())))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    kernels.sort();
    let Some(release) = kernels.pop() else {
        return Err(BaseError::Invalid(format!(
            "{} has no vmlinuz-*: the base needs linux-image-amd64",
            boot.display()
        )));
    };
    std::fs::create_dir_all(out).map_err(io(format!("creating {}", out.display())))?;
    for (from, to) in [
        (format!("vmlinuz-{release}"), BOOT_FILES[0]),
        (format!("initrd.img-{release}"), BOOT_FILES[1]),
    ] {
        std::fs::copy(boot.join(&from), out.join(to)).map_err(io(format!(
            "copying {} (is initramfs-tools installed?)",
            boot.join(&from).display()
        )))?;
    }
    Ok(release)
}

/// Writes `manifest.txt` for `root`: one line per entry, sorted by path; (entries, bytes).
pub fn write_manifest(root: &Path, to: &Path) -> Result<(u64, u64), BaseError> {
    let mut lines = Vec::new();
    let mut bytes = 0u64;
    walk(root, root, &mut |rel, meta, path| {
        let kind = meta.file_type();
        let sum = if kind.is_file() {
            bytes += meta.len();
            sha256_file(path)?
        } else {
            "-".into()
        };
        let link = if kind.is_symlink() {
            let t = std::fs::read_link(path).map_err(io(format!("reading {}", path.display())))?;
            format!(" -> {}", escape(&t.to_string_lossy()))
        } else {
            String::new()
        };
        lines.push(format!(
            "{sum} {:o} {}:{} {} {}{link}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.len(),
            escape(rel)
        ));
        Ok(())
    })?;
    lines.sort_by(|a, b| manifest_path(a).cmp(manifest_path(b)));
    let mut text = lines.join("\n");
    text.push('\n');
    fsutil::write_atomic(to, text.as_bytes(), 0o644)
        .map_err(io(format!("writing {}", to.display())))?;
    Ok((lines.len() as u64, bytes))
}

fn manifest_path(line: &str) -> &str {
    let rest = line.splitn(5, ' ').nth(4).unwrap_or("");
    rest.split(" -> ").next().unwrap_or(rest)
}

/// A path as one manifest field: backslash, space, newline and other control characters as
/// `\ooo` octal (as /proc/mounts does).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c == ' ' || c.is_control() {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("\\{byte:03o}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn sha256_file(p: &Path) -> Result<String, BaseError> {
    let mut f = std::fs::File::open(p).map_err(io(format!("reading {}", p.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(io(format!("reading {}", p.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::core::hex(&h.finalize()))
}

type Visit<'a> = dyn FnMut(&str, &std::fs::Metadata, &Path) -> Result<(), BaseError> + 'a;

/// Every entry below `dir` (not `dir` itself), depth first, links not followed, with its path
/// relative to `top` written `/a/b`.
fn walk(top: &Path, dir: &Path, f: &mut Visit) -> Result<(), BaseError> {
    let entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
    for e in entries {
        let e = e.map_err(io(format!("reading {}", dir.display())))?;
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).map_err(io(format!("reading {}", p.display())))?;
        let rel = format!("/{}", p.strip_prefix(top).unwrap_or(&p).to_string_lossy());
        f(&rel, &meta, &p)?;
        if meta.is_dir() {
            walk(top, &p, f)?;
        }
    }
    Ok(())
}

/// Moves a complete build (`work` with root/, boot/, manifest.txt) into place as `info`'s
/// version and makes it current.
pub fn publish(
    state_dir: &Path,
    boot_dir: &Path,
    work: &Path,
    info: &BaseInfo,
) -> Result<(), BaseError> {
    let text = toml::to_string(info).map_err(|e| BaseError::Invalid(e.to_string()))?;
    fsutil::write_atomic(&work.join("base.toml"), text.as_bytes(), 0o644)
        .map_err(io(format!("writing {}/base.toml", work.display())))?;
    let served = boot_bases_dir(boot_dir);
    let served_version = served.join(info.dir_name());
    std::fs::create_dir_all(&served_version)
        .map_err(io(format!("creating {}", served_version.display())))?;
    for n in BOOT_FILES {
        std::fs::rename(work.join("boot").join(n), served_version.join(n))
            .or_else(|_| {
                std::fs::copy(work.join("boot").join(n), served_version.join(n)).map(|_| ())
            })
            .map_err(io(format!("placing {}/{n}", served_version.display())))?;
    }
    let _ = std::fs::remove_dir_all(work.join("boot"));
    let dir = bases_dir(state_dir);
    let to = dir.join(info.dir_name());
    std::fs::rename(work, &to).map_err(io(format!(
        "renaming {} to {}",
        work.display(),
        to.display()
    )))?;
    set_current(&served, &info.name, info.version)?;
    set_current(&dir, &info.name, info.version)
}

/// Why a version may not be removed: the profiles that boot it and the hosts whose overlay
/// lies over it.
pub fn users(
    state_dir: &Path,
    inv: &crate::inventory::Inventory,
    info: &BaseInfo,
    mounted: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    for p in inv.profiles() {
        let Some(spec) = &p.base else { continue };
        if resolve(state_dir, spec).is_some_and(|b| b == *info) {
            out.push(format!("profile {}", p.name));
        }
    }
    for (host, base) in mounted {
        if *base == info.dir_name() {
            out.push(format!("host {host}'s overlay"));
        }
    }
    out
}

/// Removes a version (`name-vN`), refused while `users` is not empty; a name's current
/// version may go only when it is the last one (its links go with it).
pub fn remove(
    state_dir: &Path,
    boot_dir: &Path,
    what: &str,
    users: &[String],
) -> Result<BaseInfo, BaseError> {
    let (name, version) = crate::image::split_version(what);
    let Some(version) = version else {
        return Err(BaseError::Invalid(format!(
            "name a version to remove, e.g. {name}-v1 (`pxelator base list` shows them)"
        )));
    };
    let info = resolve(state_dir, what).ok_or_else(|| {
        BaseError::Invalid(format!("no base {what} (`pxelator base list` shows them)"))
    })?;
    if !users.is_empty() {
        return Err(BaseError::Invalid(format!(
            "base {what} is in use by {}; move them to another base first",
            users.join(", ")
        )));
    }
    let current = resolve(state_dir, name).is_some_and(|c| c.version == version);
    let others = versions(state_dir, name).into_iter().any(|v| v != version);
    if current && others {
        return Err(BaseError::Invalid(format!(
            "base {what} is {name}'s current version; build or promote a newer one first"
        )));
    }
    let dir = bases_dir(state_dir).join(what);
    // Renamed away first, so a half-removed tree is never taken for a base.
    let gone = bases_dir(state_dir).join(format!(".remove-{what}-{}", std::process::id()));
    std::fs::rename(&dir, &gone).map_err(io(format!("removing {}", dir.display())))?;
    std::fs::remove_dir_all(&gone).map_err(io(format!("removing {}", gone.display())))?;
    let served = boot_bases_dir(boot_dir).join(what);
    let _ = std::fs::remove_dir_all(&served);
    if current {
        for dir in [bases_dir(state_dir), boot_bases_dir(boot_dir)] {
            let _ = crate::image::point_current(&dir, name, None);
        }
    }
    Ok(info)
}

/// `overlay promote`: a new version of `to` made of `from` (a built version) plus the chosen
/// paths of a host's upper directory (`upper`, read as overlayfs does: whiteouts delete,
/// opaque directories replace), built beside the bases and published like a build. The base
/// in use is never touched: its files are hard-linked into the new tree and a promoted path
/// is written as a new file there.
pub fn promote(
    state_dir: &Path,
    boot_dir: &Path,
    from: &BaseInfo,
    to: &str,
    upper: &Path,
    host: &str,
    paths: &[String],
) -> Result<BaseInfo, BaseError> {
    if !crate::image::valid_name(to) {
        return Err(BaseError::Invalid(format!(
            "{to:?} is not a base name: lower-case letters, digits, '.', '_' and '-', not ending in -vN"
        )));
    }
    if paths.is_empty() {
        return Err(BaseError::Invalid(
            "name the paths to promote, e.g. --paths /etc/motd".into(),
        ));
    }
    for p in paths {
        if !valid_root_path(p) {
            return Err(BaseError::Invalid(format!(
                "{p:?}: an absolute path inside the root such as /etc/motd"
            )));
        }
        if std::fs::symlink_metadata(upper.join(&p[1..])).is_err() {
            return Err(BaseError::Invalid(format!(
                "{host} did not change {p} (it is not in its overlay; `pxelator overlay diff {host}` lists what it changed)"
            )));
        }
    }
    let dir = bases_dir(state_dir);
    let lock = fsutil::lock_exclusive(&dir.join(".lock"))
        .map_err(io(format!("locking {}", dir.display())))?;
    let version = versions(state_dir, to).last().copied().unwrap_or(0) + 1;
    let work = dir.join(format!(".build-{to}-v{version}"));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io(format!("removing {}", work.display())))?;
    }
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let root = work.join("root");
    let out = Command::new("cp")
        .arg("-a")
        .arg("--link")
        .arg(root_dir(state_dir, from))
        .arg(&root)
        .output()
        .map_err(io("running cp"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(BaseError::Invalid(format!(
            "linking {} into a new tree failed: {}",
            from.dir_name(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    for p in paths {
        if let Err(e) = promote_path(upper, &root, &p[1..]) {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    }
    let boot = work.join("boot");
    std::fs::create_dir_all(&boot).map_err(io(format!("creating {}", boot.display())))?;
    let served = boot_bases_dir(boot_dir).join(from.dir_name());
    for n in BOOT_FILES {
        std::fs::copy(served.join(n), boot.join(n))
            .map_err(io(format!("copying {}/{n}", served.display())))?;
    }
    let (files, bytes) = write_manifest(&root, &work.join("manifest.txt"))?;
    let info = BaseInfo {
        name: to.to_owned(),
        version,
        built: crate::clock::rfc3339(crate::clock::unix_now()),
        suite: from.suite.clone(),
        packages: from.packages.clone(),
        recipe: from.recipe.clone(),
        kernel: from.kernel.clone(),
        files,
        bytes,
        ignore: from.ignore.clone(),
        promoted_from: Some(format!("{} {host}:{}", from.dir_name(), paths.join(","))),
    };
    publish(state_dir, boot_dir, &work, &info)?;
    drop(lock);
    Ok(info)
}

/// Applies one path of an upper directory to a root tree as overlayfs would show it.
fn promote_path(upper: &Path, root: &Path, rel: &str) -> Result<(), BaseError> {
    // Parents: real directories in the new tree (made like the upper's when missing), never
    // a link that could send the write elsewhere.
    let comps: Vec<&str> = rel.split('/').collect();
    let mut at = root.to_path_buf();
    let mut up = upper.to_path_buf();
    for c in &comps[..comps.len() - 1] {
        at.push(c);
        up.push(c);
        // The host owns its upper: a link there must not lead the copy to the server's files.
        if !std::fs::symlink_metadata(&up).is_ok_and(|m| m.is_dir()) {
            return Err(BaseError::Invalid(format!(
                "/{rel}: {} is not a directory in the host's overlay (a link?); promote the path it really has",
                up.display()
            )));
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BaseError::Invalid(format!(
                    "/{rel}: {} in the base is not a directory",
                    at.display()
                )))
            }
            Err(_) => copy_entry(&up, &at, false)?,
        }
    }
    apply(&upper.join(rel), &root.join(rel))
}

fn remove_any(p: &Path) -> Result<(), BaseError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    }
    .map_err(io(format!("removing {}", p.display())))
}

/// Makes `to` what the upper entry `from` says, recursively for directories.
fn apply(from: &Path, to: &Path) -> Result<(), BaseError> {
    let m = std::fs::symlink_metadata(from).map_err(io(format!("reading {}", from.display())))?;
    if crate::overlay::is_whiteout(&m) {
        return remove_any(to);
    }
    if m.is_dir() {
        let mut buf = [0u8; 8];
        let opaque = matches!(
            rustix::fs::lgetxattr(from, "trusted.overlay.opaque", &mut buf),
            Ok(n) if &buf[..n] == b"y"
        );
        let is_dir = std::fs::symlink_metadata(to).is_ok_and(|t| t.is_dir());
        if opaque || !is_dir {
            remove_any(to)?;
        }
        copy_entry(from, to, is_dir && !opaque)?;
        for e in std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))? {
            let e = e.map_err(io(format!("reading {}", from.display())))?;
            apply(&e.path(), &to.join(e.file_name()))?;
        }
        return Ok(());
    }
    remove_any(to)?;
    copy_entry(from, to, false)
}

/// Creates `to` like `from` (a directory, a regular file's bytes, a link, a fifo or device is
/// refused) with its mode and owner; `exists`: a directory already there, only its mode and
/// owner set.
pub(crate) fn copy_entry(from: &Path, to: &Path, exists: bool) -> Result<(), BaseError> {
    let m = std::fs::symlink_metadata(from).map_err(io(format!("reading {}", from.display())))?;
    let ft = m.file_type();
    if ft.is_dir() {
        if !exists {
            std::fs::create_dir(to).map_err(io(format!("creating {}", to.display())))?;
        }
    } else if ft.is_file() {
        // Read without following a link the host may have put there since it was looked at.
        let (dir, name) = (
            from.parent().unwrap_or(from),
            from.file_name().unwrap_or_default(),
        );
        let mut src = crate::overlay::open_beneath(dir, &name.to_string_lossy())
            .map_err(io(format!("opening {}", from.display())))?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(io(format!("creating {}", to.display())))?;
        std::io::copy(&mut src, &mut dst).map_err(io(format!("copying {}", from.display())))?;
    } else if ft.is_symlink() {
        let t = std::fs::read_link(from).map_err(io(format!("reading {}", from.display())))?;
        std::os::unix::fs::symlink(t, to).map_err(io(format!("linking {}", to.display())))?;
    } else {
        return Err(BaseError::Invalid(format!(
            "{}: a device, fifo or socket cannot be promoted into a base",
            from.display()
        )));
    }
    std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid()))
        .map_err(io(format!("chown {}", to.display())))?;
    if !ft.is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io(format!("chmod {}", to.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laid(path: &str, content: &[u8], executable: bool, symlink: bool) -> LaidFile {
        LaidFile {
            path: path.into(),
            content: content.to_vec(),
            executable,
            symlink,
        }
    }

    fn def(text: &str) -> Result<BaseDef, BaseError> {
        BaseDef::parse("debian", "overlay/debian.toml", text.as_bytes(), Vec::new())
    }

    #[test]
    fn definition_defaults_and_always_included_packages() {
        let d = def("packages = [\"openssh-server\", \"kmod\"]\n").unwrap();
        assert_eq!(d.suite, "bookworm");
        assert!(d.packages.contains(&"openssh-server".to_owned()));
        assert!(d.packages.contains(&"linux-image-amd64".to_owned()));
        assert_eq!(d.packages.iter().filter(|p| *p == "kmod").count(), 1);
        assert!(d.ignore.contains(&"/var/log".to_owned()));
    }

    #[test]
    fn definition_refuses_what_could_reach_a_command_line() {
        for (text, names) in [
            ("packages = [\"vim; rm -rf /\"]", "packages"),
            ("packages = [\"--help\"]", "packages"),
            ("mirror = \"http://x/ main\\ndeb http://evil\"", "mirror"),
            ("mirror = \"ftp://x\"", "mirror"),
            ("suite = \"../../x\"", "suite"),
            ("ignore = [\"var/log\"]", "ignore"),
            ("ignore = [\"/var/../etc\"]", "ignore"),
            ("colour = \"blue\"", "colour"),
        ] {
            let e = def(text).unwrap_err().to_string();
            assert!(e.contains("overlay/debian.toml"), "{text}: {e}");
            assert!(e.contains(names), "{text}: {e}");
        }
        assert!(BaseDef::parse("../x", "overlay/x.toml", b"", Vec::new()).is_err());
        assert!(BaseDef::parse("debian-v2", "overlay/x.toml", b"", Vec::new()).is_err());
    }

    #[test]
    fn laid_in_paths_stay_inside_the_root() {
        for p in ["/etc/../../x", "etc/x", "/etc//x", "/./x"] {
            let f = laid(p, b"x", false, false);
            let e = BaseDef::parse("debian", "overlay/debian.toml", b"", vec![f]).unwrap_err();
            assert!(e.to_string().contains("not a plain path"), "{p}: {e}");
        }
    }

    #[test]
    fn a_laid_in_file_does_not_follow_a_link_out_of_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join(".build-debian-v1/root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/evil")).unwrap();
        let f = laid("/etc/evil/passwd", b"x", false, false);
        let e = lay_in(&root, &f).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        assert!(!outside.join("passwd").exists());
        let ok = laid("/usr/local/bin/hello", b"#!/bin/sh\n", true, false);
        lay_in(&root, &ok).unwrap();
        let m = std::fs::metadata(root.join("usr/local/bin/hello")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        let m = std::fs::metadata(root.join("usr/local")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        // A link is laid in as a link (its target is the host's business), and no later
        // file is written through it.
        let link = laid(
            "/etc/wants/unit.service",
            b"/etc/systemd/system/unit.service",
            false,
            true,
        );
        lay_in(&root, &link).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("etc/wants/unit.service")).unwrap(),
            Path::new("/etc/systemd/system/unit.service")
        );
        let through = laid("/etc/evil", b"x", false, false);
        assert!(lay_in(&root, &through).is_err());
        assert!(!outside.join("x").exists());
    }

    #[test]
    fn hash_follows_every_input() {
        let a = def("").unwrap();
        let mut b = a.clone();
        b.files.push(laid("/etc/motd", b"hi", false, false));
        let mut c = b.clone();
        c.files[0].executable = true;
        let d = def("packages = [\"less\"]").unwrap();
        let hs = [a.hash(), b.hash(), c.hash(), d.hash()];
        for i in 0..hs.len() {
            for j in i + 1..hs.len() {
                assert_ne!(hs[i], hs[j]);
            }
        }
        assert_eq!(a.hash(), def("").unwrap().hash());
    }

    #[test]
    fn manifest_lists_every_entry_with_checksums() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/motd"), b"hello\n").unwrap();
        std::fs::write(r.join("etc/odd name\n"), b"").unwrap();
        std::os::unix::fs::symlink("motd", r.join("etc/link")).unwrap();
        let (n, bytes) = write_manifest(&r, &t.path().join("m.txt")).unwrap();
        assert_eq!((n, bytes), (4, 6));
        let m = std::fs::read_to_string(t.path().join("m.txt")).unwrap();
        assert!(
            m.contains("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 100644")
        );
        assert!(m.contains("/etc/link -> motd\n"));
        assert!(m.contains("/etc/odd\\040name\\012\n"));
        assert_eq!(m.lines().count(), 4);
    }

    fn fake_build(state: &Path, boot: &Path, name: &str) -> BaseInfo {
        let version = versions(state, name).last().copied().unwrap_or(0) + 1;
        let work = bases_dir(state).join(format!(".build-{name}-v{version}"));
        std::fs::create_dir_all(work.join("root/etc")).unwrap();
        std::fs::create_dir_all(work.join("boot")).unwrap();
        for n in BOOT_FILES {
            std::fs::write(work.join("boot").join(n), n).unwrap();
        }
        let info = BaseInfo {
            name: name.into(),
            version,
            built: "2026-12-01T00:00:00Z".into(),
            suite: "bookworm".into(),
            packages: vec![],
            recipe: "r".into(),
            kernel: "6.1".into(),
            files: 1,
            bytes: 0,
            ignore: vec![],
            promoted_from: None,
        };
        publish(state, boot, &work, &info).unwrap();
        info
    }

    #[test]
    fn promote_applies_chosen_paths_and_leaves_the_old_version_alone() {
        let t = tempfile::tempdir().unwrap();
        let (state, boot) = (t.path().join("state"), t.path().join("boot"));
        let v1 = fake_build(&state, &boot, "deb");
        let r1 = root_dir(&state, &v1);
        std::fs::write(r1.join("etc/motd"), b"base motd\n").unwrap();
        std::fs::write(r1.join("etc/issue.net"), b"Debian\n").unwrap();
        std::fs::write(r1.join("etc/other"), b"other\n").unwrap();
        let upper = t.path().join("upper");
        let promote_paths = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            promote(&state, &boot, &v1, "deb", &upper, "ws1", &paths)
        };
        std::fs::create_dir_all(upper.join("etc/new.d")).unwrap();
        std::fs::write(upper.join("etc/motd"), b"host motd\n").unwrap();
        std::fs::write(upper.join("etc/other"), b"not promoted\n").unwrap();
        std::fs::write(upper.join("etc/new.d/conf"), b"new\n").unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/issue.net"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let v2 = promote_paths(&["/etc/motd", "/etc/issue.net", "/etc/new.d"]).unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(
            v2.promoted_from.as_deref(),
            Some("deb-v1 ws1:/etc/motd,/etc/issue.net,/etc/new.d")
        );
        let r2 = root_dir(&state, &v2);
        assert_eq!(std::fs::read(r2.join("etc/motd")).unwrap(), b"host motd\n");
        assert!(
            !r2.join("etc/issue.net").exists(),
            "the whiteout deleted it"
        );
        assert_eq!(std::fs::read(r2.join("etc/new.d/conf")).unwrap(), b"new\n");
        assert_eq!(
            std::fs::read(r2.join("etc/other")).unwrap(),
            b"other\n",
            "not chosen"
        );
        // The old version is as it was, and the new one is current.
        assert_eq!(std::fs::read(r1.join("etc/motd")).unwrap(), b"base motd\n");
        assert!(r1.join("etc/issue.net").exists());
        assert_eq!(resolve(&state, "deb").unwrap().version, 2);
        assert!(boot.join("bases/deb-v2/vmlinuz").exists());
        // A path the host did not change, or one outside the root, is refused.
        let e = promote_paths(&["/etc/passwd"]).unwrap_err();
        assert!(
            e.to_string().contains("ws1 did not change /etc/passwd"),
            "{e}"
        );
        assert!(promote_paths(&["/etc/../x"]).is_err());
        assert_eq!(
            versions(&state, "deb"),
            vec![1, 2],
            "a refused promote leaves nothing"
        );
    }

    /// A host is root in its own overlay: a link it made must not turn a promote into a read
    /// or a write of the server's own files.
    #[test]
    fn promote_follows_no_link_the_host_made() {
        let t = tempfile::tempdir().unwrap();
        let (state, boot) = (t.path().join("state"), t.path().join("boot"));
        let v1 = fake_build(&state, &boot, "deb");
        let outside = t.path().join("server-secrets");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("shadow"), b"root:$6$secret\n").unwrap();
        let upper = t.path().join("upper");
        let promote_paths = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            promote(&state, &boot, &v1, "deb", &upper, "ws1", &paths)
        };
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("etc/evil")).unwrap();
        std::os::unix::fs::symlink(outside.join("shadow"), upper.join("etc/shadow-link")).unwrap();
        let e = promote_paths(&["/etc/evil/shadow"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a directory in the host's overlay"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(outside.join("shadow")).unwrap(),
            b"root:$6$secret\n"
        );
        // A link itself is promoted as a link, never as the content it points to.
        let v2 = promote_paths(&["/etc/shadow-link"]).unwrap();
        let p = root_dir(&state, &v2).join("etc/shadow-link");
        assert!(std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        // And the diff of a "changed file" that is now a link shows nothing of its target.
        std::fs::write(root_dir(&state, &v1).join("etc/shadow-link"), b"x\n").unwrap();
        assert_eq!(
            crate::overlay::text_diff(&root_dir(&state, &v1), &upper, "etc/shadow-link"),
            None
        );
    }

    #[test]
    fn versions_current_and_removal_rules() {
        let t = tempfile::tempdir().unwrap();
        let (state, boot) = (t.path().join("state"), t.path().join("boot"));
        let v1 = fake_build(&state, &boot, "deb");
        let v2 = fake_build(&state, &boot, "deb");
        assert_eq!(versions(&state, "deb"), vec![1, 2]);
        assert_eq!(resolve(&state, "deb").unwrap(), v2);
        assert_eq!(resolve(&state, "deb-v1").unwrap(), v1);
        assert!(resolve(&state, "deb-v3").is_none());
        assert_eq!(
            std::fs::read(boot.join("bases/deb/vmlinuz")).unwrap(),
            b"vmlinuz"
        );
        let l = list(&state);
        assert_eq!(l.len(), 2);
        assert!(!l[0].1 && l[1].1);
        // In use, current with older ones left, or no version named: refused.
        let e = remove(&state, &boot, "deb-v1", &["profile p".into()]).unwrap_err();
        assert!(e.to_string().contains("in use by profile p"), "{e}");
        let e = remove(&state, &boot, "deb-v2", &[]).unwrap_err();
        assert!(e.to_string().contains("current version"), "{e}");
        assert!(remove(&state, &boot, "deb", &[]).is_err());
        remove(&state, &boot, "deb-v1", &[]).unwrap();
        assert!(!bases_dir(&state).join("deb-v1").exists());
        assert!(!boot.join("bases/deb-v1").exists());
        // The last version may go, links and all.
        remove(&state, &boot, "deb-v2", &[]).unwrap();
        assert!(resolve(&state, "deb").is_none());
        assert!(std::fs::symlink_metadata(boot.join("bases/deb")).is_err());
    }
}
