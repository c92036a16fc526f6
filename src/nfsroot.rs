//! Writable network roots, the I/O half: per host an overlayfs (the base version as lower,
//! `<state_dir>/overlays/<host>/{upper,work}` on the server's disk, `index=on,nfs_export=on` so
//! it can be exported and its file handles outlive a remount) mounted at
//! `overlays/<host>/root`, exported by nfs-ganesha to that host's address only. The decisions
//! are `core::nfsroot`'s; this module mounts (nix), writes the server's configuration and
//! starts or signals the server.
//!
//! Everything here survives a restart of the daemon: a mount already there with the right
//! lower is kept (so clients' file handles stay valid), a running server (its pidfile) is
//! adopted and told to reread its exports, not restarted.
use crate::core::nfsroot::{self, Root};
use crate::fsutil;
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn overlays_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("overlays")
}

fn nfs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("nfs")
}

/// Where one host's overlay lives.
#[derive(Debug, Clone)]
pub struct HostDirs {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub root: PathBuf,
    /// Text file: the base version (`name-vN`) the upper was last mounted over.
    pub base_file: PathBuf,
}

pub fn host_dirs(state_dir: &Path, host: &str) -> HostDirs {
    let dir = overlays_dir(state_dir).join(host);
    HostDirs {
        upper: dir.join("upper"),
        work: dir.join("work"),
        root: dir.join("root"),
        base_file: dir.join("base"),
        dir,
    }
}

/// The base version a host's overlay was last mounted over (None: never mounted).
pub fn host_base(state_dir: &Path, host: &str) -> Option<String> {
    let s = std::fs::read_to_string(host_dirs(state_dir, host).base_file).ok()?;
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Every host with an overlay directory and the base version it lies over.
pub fn hosts_with_overlays(state_dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(overlays_dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let host = e.file_name().into_string().ok()?;
            let base = host_base(state_dir, &host)?;
            Some((host, base))
        })
        .collect();
    out.sort();
    out
}

/// An overlay mount as /proc/self/mountinfo shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayMount {
    pub target: PathBuf,
    pub lowerdir: String,
    pub upperdir: String,
}

/// `\ooo` escapes of /proc/self/mountinfo undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The overlay mounts in a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<OverlayMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(target) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("overlay") {
            continue;
        }
        let opts = r.nth(1).unwrap_or("");
        let opt = |k: &str| {
            opts.split(',')
                .find_map(|o| o.strip_prefix(k))
                .map(unescape)
                .unwrap_or_default()
        };
        out.push(OverlayMount {
            target: PathBuf::from(unescape(target)),
            lowerdir: opt("lowerdir="),
            upperdir: opt("upperdir="),
        });
    }
    out
}

fn mounts() -> Vec<OverlayMount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// The overlay mounted at `target`, if any.
pub fn mounted_at(target: &Path) -> Option<OverlayMount> {
    find_mount(&mounts(), target).cloned()
}

/// The overlay mounted last at `target` in a list read once for many lookups.
fn find_mount<'a>(mounts: &'a [OverlayMount], target: &Path) -> Option<&'a OverlayMount> {
    mounts.iter().rev().find(|m| m.target == target)
}

/// Mounts a host's overlay over `lower` at its root directory (creating the directories, the
/// host's 0700: its upper holds its secrets).
pub fn mount_host(d: &HostDirs, lower: &Path, base: &str) -> Result<(), String> {
    for p in [&d.dir, &d.upper, &d.work, &d.root] {
        if !p.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(p)
                .map_err(|e| format!("creating {}: {e}", p.display()))?;
        }
    }
    if let Some(parent) = d.dir.parent() {
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
    }
    for p in [lower, &d.upper, &d.work] {
        if p.to_str().is_none_or(|s| s.contains([',', ':', '\\'])) {
            return Err(format!(
                "{}: an overlay mount cannot name a path with ',', ':' or '\\'; choose a plainer state_dir",
                p.display()
            ));
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=on,nfs_export=on",
        lower.display(),
        d.upper.display(),
        d.work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &d.root,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| {
        format!(
            "mounting the overlay of {} over base {base}: {e} (an upper used over another base is refused by the kernel: `pxelator overlay reset {}` starts it again from the base)",
            d.dir.display(),
            d.dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        )
    })?;
    fsutil::write_atomic(&d.base_file, format!("{base}\n").as_bytes(), 0o600)
        .map_err(|e| format!("writing {}: {e}", d.base_file.display()))
}

/// Unmounts a host's root (detached: a client still holding it keeps what it has open).
pub fn unmount_host(d: &HostDirs) -> Result<(), String> {
    if mounted_at(&d.root).is_none() {
        return Ok(());
    }
    nix::mount::umount2(&d.root, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| format!("unmounting {}: {e}", d.root.display()))
}

/// The NFS server pxelator runs.
#[derive(Debug, Clone)]
pub struct Server {
    pub program: PathBuf,
    pub conf: PathBuf,
    pub pidfile: PathBuf,
    pub log: PathBuf,
}

impl Server {
    pub fn new(state_dir: &Path, program: &Path) -> Server {
        let d = nfs_dir(state_dir);
        Server {
            program: program.to_owned(),
            conf: d.join("ganesha.conf"),
            pidfile: d.join("ganesha.pid"),
            log: d.join("ganesha.log"),
        }
    }

    /// The running server's PID (its pidfile names a live ganesha process).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.trim().starts_with("ganesha").then_some(pid)
    }

    /// Starts the server (it forks into the background and writes its pidfile); its PID.
    pub fn start(&self) -> Result<i32, String> {
        let _ = std::fs::remove_file(&self.pidfile);
        let status = std::process::Command::new(&self.program)
            .arg("-f")
            .arg(&self.conf)
            .arg("-L")
            .arg(&self.log)
            .arg("-p")
            .arg(&self.pidfile)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| {
                format!(
                    "starting the NFS server {}: {e} (install nfs-ganesha and nfs-ganesha-vfs)",
                    self.program.display()
                )
            })?;
        if !status.success() {
            return Err(format!(
                "the NFS server {} exited {status}; see {}",
                self.program.display(),
                self.log.display()
            ));
        }
        for _ in 0..100 {
            if let Some(pid) = self.pid() {
                return Ok(pid);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(format!(
            "the NFS server did not write {} within 5 s; see {}",
            self.pidfile.display(),
            self.log.display()
        ))
    }

    /// Tells the running server to reread its exports.
    pub fn reload(&self, pid: i32) -> Result<(), String> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .map_err(|e| format!("signalling the NFS server (pid {pid}): {e}"))
    }

    /// Stops the running server (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let p = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..50 {
            if self.pid().is_none() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    }
}

/// What one [`sync`] did and found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Hosts exported now, with the base version under each.
    pub exported: Vec<(String, String)>,
    /// Hosts whose overlay was mounted by this sync: name, address, base version.
    pub mounted: Vec<(String, std::net::Ipv4Addr, String)>,
    /// Hosts whose root was unmounted (no longer an nfsroot machine).
    pub unmounted: Vec<String>,
    /// Set when this sync started the NFS server.
    pub started: Option<i32>,
    /// Hosts whose profile's base has a newer version than their overlay lies over: they
    /// move onto it when they next boot.
    pub rebase_pending: Vec<(String, String)>,
    pub problems: Vec<String>,
}

/// Brings mounts, exports and the NFS server in line with the inventory.
pub fn sync(state_dir: &Path, program: &Path, inv: &crate::inventory::Inventory) -> SyncReport {
    let _turn = turn();
    sync_now(state_dir, program, inv)
}

fn sync_now(state_dir: &Path, program: &Path, inv: &crate::inventory::Inventory) -> SyncReport {
    let mut rep = SyncReport::default();
    let (roots, problems) = nfsroot::wanted(inv);
    rep.problems = problems;
    let mut live: Vec<Root> = Vec::new();
    // One read of the mount table for every host (a sync runs every 10 s).
    let mounted = mounts();
    for r in roots {
        let Some(info) = crate::base::resolve(state_dir, &r.base) else {
            rep.problems.push(format!(
                "profile {}: base {:?} is not built (`pxelator base build {}`), so {} has no root",
                r.profile,
                r.base,
                crate::image::split_version(&r.base).0,
                r.host
            ));
            continue;
        };
        let d = host_dirs(state_dir, &r.host);
        let lower = crate::base::root_dir(state_dir, &info);
        match find_mount(&mounted, &d.root) {
            Some(m) if Path::new(&m.lowerdir) == lower => {}
            Some(m) => {
                let on = host_base(state_dir, &r.host).unwrap_or_else(|| m.lowerdir.clone());
                rep.rebase_pending.push((r.host.clone(), info.dir_name()));
                // Stays exported over what it has until it boots again.
                rep.exported.push((r.host.clone(), on));
                live.push(r);
                continue;
            }
            None => {
                if let Err(e) = mount_host(&d, &lower, &info.dir_name()) {
                    rep.problems.push(format!("{}: {e}", r.host));
                    continue;
                }
                rep.mounted.push((r.host.clone(), r.ip, info.dir_name()));
            }
        }
        rep.exported.push((r.host.clone(), info.dir_name()));
        live.push(r);
    }
    export(state_dir, program, &live, &mut rep);
    rep
}

/// Every sync and boot preparation of this process takes turns: only one changes mounts and
/// the server's exports at a time.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the exports of `live` (mounted roots), starts the server or makes it reread them,
/// and unmounts roots under `overlays/` that are no longer exported.
fn export(state_dir: &Path, program: &Path, live: &[Root], rep: &mut SyncReport) {
    let server = Server::new(state_dir, program);
    let ids_path = nfs_dir(state_dir).join("export-ids.json");
    let prev: BTreeMap<String, u16> = std::fs::read(&ids_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let hosts: Vec<&str> = live.iter().map(|r| r.host.as_str()).collect();
    let Some(ids) = nfsroot::assign_ids(&prev, &hosts) else {
        rep.problems
            .push("more NFS roots than export ids (65 534)".into());
        return;
    };
    let conf = match nfsroot::ganesha_config(live, &ids, &overlays_dir(state_dir)) {
        Ok(c) => c,
        Err(e) => {
            rep.problems.push(e);
            return;
        }
    };
    if live.is_empty() && !server.conf.exists() {
        // No network roots here, now or before: nothing to write or start.
        return;
    }
    let dir = nfs_dir(state_dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        rep.problems
            .push(format!("creating {}: {e}", dir.display()));
        return;
    }
    if ids != prev {
        if let Err(e) = fsutil::write_atomic(
            &ids_path,
            &serde_json::to_vec(&ids).unwrap_or_default(),
            0o600,
        ) {
            rep.problems
                .push(format!("writing {}: {e}", ids_path.display()));
        }
    }
    let changed = std::fs::read(&server.conf).ok().as_deref() != Some(conf.as_bytes());
    if changed {
        if let Err(e) = fsutil::write_atomic(&server.conf, conf.as_bytes(), 0o600) {
            rep.problems
                .push(format!("writing {}: {e}", server.conf.display()));
            return;
        }
    }
    match server.pid() {
        Some(pid) if changed => {
            if let Err(e) = server.reload(pid) {
                rep.problems.push(e);
            }
        }
        Some(_) => {}
        None if live.is_empty() => {}
        None => match server.start() {
            Ok(pid) => rep.started = Some(pid),
            Err(e) => rep.problems.push(e),
        },
    }
    // Roots no longer exported: unmounted once the server has let go of them.
    let wanted: std::collections::BTreeSet<&str> = hosts.iter().copied().collect();
    let ours = overlays_dir(state_dir);
    let gone: Vec<String> = mounts()
        .iter()
        .filter_map(|m| {
            let mut comps = m.target.strip_prefix(&ours).ok()?.components();
            let (Some(host), Some(last), None) = (comps.next(), comps.next(), comps.next()) else {
                return None;
            };
            let host = host.as_os_str().to_string_lossy().into_owned();
            (last.as_os_str() == "root" && !wanted.contains(host.as_str())).then_some(host)
        })
        .collect();
    if !gone.is_empty() && changed && server.pid().is_some() {
        // Give the server a moment to drop the exports it was told to reread.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    for host in gone {
        match unmount_host(&host_dirs(state_dir, &host)) {
            Ok(()) => rep.unmounted.push(host),
            Err(e) => rep.problems.push(e),
        }
    }
}

/// A reset asked for with `pxelator overlay reset` and not done yet (at the host's next boot).
fn reset_flag(state_dir: &Path, host: &str) -> PathBuf {
    host_dirs(state_dir, host).dir.join("reset-requested")
}

/// Asks for `host`'s overlay to start again from its base when it next boots (its upper is
/// kept as a snapshot). Done at boot, when nothing uses the root.
pub fn request_reset(state_dir: &Path, host: &str) -> Result<(), String> {
    crate::inventory::check_hostname(host)?;
    let d = host_dirs(state_dir, host);
    if !d.upper.is_dir() {
        return Err(format!("{host} has no overlay under {}", d.dir.display()));
    }
    fsutil::write_atomic(&reset_flag(state_dir, host), b"", 0o600)
        .map_err(|e| format!("writing {}: {e}", reset_flag(state_dir, host).display()))
}

pub fn reset_requested(state_dir: &Path, host: &str) -> bool {
    reset_flag(state_dir, host).exists()
}

/// What [`prepare_boot`] did to a host's root before it booted.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Moved onto a newer base version: its changes kept.
    Rebased { from: String, to: String },
    /// Started again from the base; the old upper is in `snapshot`.
    Reset { base: String, snapshot: PathBuf },
}

/// Run when a host fetches its boot script (nothing uses its root now): a requested reset, or
/// a move onto the version its profile's base names now, is done, and the root exported
/// again. Ok(None) when nothing was pending (or the machine has no network root).
pub fn prepare_boot(
    state_dir: &Path,
    program: &Path,
    inv: &crate::inventory::Inventory,
    host: &str,
) -> Result<Option<Prepared>, String> {
    let _turn = turn();
    let (roots, _) = nfsroot::wanted(inv);
    let Some(r) = roots.iter().find(|r| r.host == host) else {
        return Ok(None);
    };
    let Some(info) = crate::base::resolve(state_dir, &r.base) else {
        return Ok(None);
    };
    let d = host_dirs(state_dir, host);
    let lower = crate::base::root_dir(state_dir, &info);
    let from = host_base(state_dir, host);
    let reset = reset_requested(state_dir, host);
    let rebase = from.as_deref().is_some_and(|f| f != info.dir_name());
    if !reset && !rebase {
        return Ok(None);
    }
    // Out of the server's exports first, then unmounted.
    let mounted = mounts();
    let others: Vec<Root> = roots
        .iter()
        .filter(|o| {
            o.host != host && find_mount(&mounted, &host_dirs(state_dir, &o.host).root).is_some()
        })
        .cloned()
        .collect();
    let mut rep = SyncReport::default();
    export(state_dir, program, &others, &mut rep);
    unmount_host(&d)?;
    let done = if reset {
        let snapshot = snapshot(state_dir, host)?;
        for p in [&d.upper, &d.work] {
            std::fs::remove_dir_all(p).map_err(|e| format!("emptying {}: {e}", p.display()))?;
        }
        let _ = std::fs::remove_file(reset_flag(state_dir, host));
        Prepared::Reset {
            base: info.dir_name(),
            snapshot,
        }
    } else {
        rebase_upper(&d)?;
        Prepared::Rebased {
            from: from.unwrap_or_default(),
            to: info.dir_name(),
        }
    };
    mount_host(&d, &lower, &info.dir_name())?;
    let rep = sync_now(state_dir, program, inv);
    if let Some(p) = rep.problems.into_iter().find(|p| p.contains(host)) {
        return Err(p);
    }
    Ok(Some(done))
}

/// Makes an upper directory fit to lie over another lower: the kernel binds an upper to the
/// lower it was made over (`trusted.overlay.origin` and friends), so those are removed, and
/// the work directory (with its index) is emptied. Whiteouts and opaque directories stay: the
/// host's deletions still hide what the new base has there.
fn rebase_upper(d: &HostDirs) -> Result<(), String> {
    const BOUND: [&str; 5] = [
        "trusted.overlay.origin",
        "trusted.overlay.impure",
        "trusted.overlay.nlink",
        "trusted.overlay.uuid",
        "trusted.overlay.metacopy",
    ];
    let mut n = 0usize;
    let mut stack = vec![d.upper.clone()];
    while let Some(p) = stack.pop() {
        n += 1;
        if n > crate::overlay::MAX_ENTRIES {
            return Err(format!(
                "{}: more than {} entries",
                d.upper.display(),
                crate::overlay::MAX_ENTRIES
            ));
        }
        for x in BOUND {
            match rustix::fs::lremovexattr(&p, x) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::NODATA => {}
                Err(e) => return Err(format!("{}: removing {x}: {e}", p.display())),
            }
        }
        let meta = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))? {
                stack.push(e.map_err(|e| format!("{}: {e}", p.display()))?.path());
            }
        }
    }
    std::fs::remove_dir_all(&d.work).map_err(|e| format!("emptying {}: {e}", d.work.display()))
}

/// Removes the overlay of a host that no longer boots a network root (upper, work, mount
/// point; its snapshots stay). Refused while the inventory gives it one or it is mounted.
pub fn remove_overlay(
    state_dir: &Path,
    inv: &crate::inventory::Inventory,
    host: &str,
) -> Result<(), String> {
    crate::inventory::check_hostname(host)?;
    if nfsroot::wanted(inv).0.iter().any(|r| r.host == host) {
        return Err(format!(
            "{host} boots a network root (its profile says nfsroot); give it another profile or remove the machine first"
        ));
    }
    let d = host_dirs(state_dir, host);
    if mounted_at(&d.root).is_some() {
        return Err(format!(
            "{}'s root is still mounted; the daemon unmounts it within seconds of the inventory change",
            host
        ));
    }
    if !d.dir.is_dir() {
        return Err(format!("{host} has no overlay under {}", d.dir.display()));
    }
    for p in [&d.upper, &d.work, &d.root] {
        if p.exists() {
            std::fs::remove_dir_all(p).map_err(|e| format!("removing {}: {e}", p.display()))?;
        }
    }
    for f in [&d.base_file, &reset_flag(state_dir, host)] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// Snapshots of a host's upper directory, oldest first, with their sizes.
pub fn snapshots(state_dir: &Path, host: &str) -> Vec<(PathBuf, u64)> {
    let dir = host_dirs(state_dir, host).dir.join("snapshots");
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar"))
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    v.sort();
    v
}

/// Deletes one snapshot of a host (a file name as [`snapshots`] lists it).
pub fn remove_snapshot(state_dir: &Path, host: &str, name: &str) -> Result<PathBuf, String> {
    crate::inventory::check_hostname(host)?;
    let ok = name.starts_with(&format!("{host}-"))
        && name.ends_with(".tar")
        && !name.contains('/')
        && !name.starts_with('.');
    let path = host_dirs(state_dir, host).dir.join("snapshots").join(name);
    if !ok || !path.is_file() {
        return Err(format!(
            "{host} has no snapshot {name:?} (`pxelator overlay snapshots {host}` lists them)"
        ));
    }
    std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    Ok(path)
}

/// Writes the host's upper directory as a tar (GNU tar: owners by number, modes, the
/// overlay's xattrs and whiteout devices kept; tar-rs writes no xattrs) under
/// `overlays/<host>/snapshots/`, 0600.
pub fn snapshot(state_dir: &Path, host: &str) -> Result<PathBuf, String> {
    crate::inventory::check_hostname(host)?;
    let d = host_dirs(state_dir, host);
    if !d.upper.is_dir() {
        return Err(format!("{host} has no overlay under {}", d.dir.display()));
    }
    let dir = d.dir.join("snapshots");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let file = dir.join(format!("{host}-{stamp}.tar"));
    let tmp = dir.join(format!(".{host}-{stamp}.tar.part"));
    let out = std::process::Command::new("tar")
        .arg("--create")
        .arg(format!("--file={}", tmp.display()))
        .args([
            "--xattrs",
            "--xattrs-include=trusted.*",
            "--numeric-owner",
            "--sparse",
        ])
        .arg("--directory")
        .arg(&d.upper)
        .arg(".")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running tar: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "tar of {} failed ({}): {}",
            d.upper.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, &file).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_overlays_with_escaped_paths() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
97 22 0:52 / /var/lib/pxelator/overlays/ws1/root rw,relatime shared:50 - overlay overlay rw,lowerdir=/var/lib/pxelator/bases/debian-v1/root,upperdir=/var/lib/pxelator/overlays/ws1/upper,workdir=/var/lib/pxelator/overlays/ws1/work,index=on,nfs_export=on
98 22 0:53 / /tmp/a\\040b rw - overlay overlay rw,lowerdir=/x\\040y,upperdir=/u,workdir=/w
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].target,
            PathBuf::from("/var/lib/pxelator/overlays/ws1/root")
        );
        assert_eq!(m[0].lowerdir, "/var/lib/pxelator/bases/debian-v1/root");
        assert_eq!(m[0].upperdir, "/var/lib/pxelator/overlays/ws1/upper");
        assert_eq!(m[1].target, PathBuf::from("/tmp/a b"));
        assert_eq!(m[1].lowerdir, "/x y");
    }
}
