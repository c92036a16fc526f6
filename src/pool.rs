//! The storage pool (Ceph), the I/O: `pool init` makes the cluster (mon, mgr with its
//! Dashboard, the appliance's own OSD) under `<state_dir>/pool/`; the daemon keeps those
//! daemons running and, every round, reads the OSDs through the mgr's Dashboard REST API and
//! carries out what [`crate::core::pool::keep`] decides (clear `noout` once a machine is back,
//! mark out one missing past its grace). Members (machines with a `pool_disk` param) fetch
//! their OSD's join material over HTTP with a per-host token; `before_power_off` sets `noout`
//! on their OSDs before a scheduled power-off.
//!
//! What the Dashboard API offers is done through it (OSD list, health, flags, mark out/in,
//! pool create and usage). The rest has no API in Ceph 16 and runs the Ceph tools
//! with arguments, never a shell line: the first mon (`monmaptool`, `ceph-mon --mkfs`), the
//! CRUSH rule (`crushtool`), cephx entities (`ceph auth`, `ceph osd new`), and `osd purge`
//! (the Dashboard's purge answers 500 on 16.2.15).
use crate::config::Config;
use crate::core::event::Event;
use crate::core::pool::{self as decide, Cluster, Member, OsdIdentity, OsdView, Tracked};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no storage pool on this appliance ({0} is missing): make one with `pxelator pool init --disk DEVICE`")]
    NotInitialized(PathBuf),
    #[error("{0}")]
    Msg(String),
    #[error("the pool's Dashboard API at {url}: {reason}")]
    Api { url: String, reason: String },
}

fn msg(s: impl Into<String>) -> PoolError {
    PoolError::Msg(s.into())
}

/// Where everything of the cluster lives: `<state_dir>/pool/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Paths {
        Paths {
            dir: state_dir.join("pool"),
        }
    }
    pub fn conf(&self) -> PathBuf {
        self.dir.join("ceph.conf")
    }
    pub fn info(&self) -> PathBuf {
        self.dir.join("pool.toml")
    }
    fn dashboard_secret(&self) -> PathBuf {
        self.dir.join("dashboard.secret")
    }
    fn join_key(&self) -> PathBuf {
        self.dir.join("join.key")
    }
    fn keeper(&self) -> PathBuf {
        self.dir.join("keeper.json")
    }
    fn host_file(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(format!("{host}.toml"))
    }
    fn pidfile(&self, name: &str) -> PathBuf {
        self.dir.join("run").join(format!("{name}.pid"))
    }
    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("log").join(format!("ceph-{name}.log"))
    }
}

/// What `pool init` decided, kept in `<state_dir>/pool/pool.toml`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolInfo {
    pub fsid: String,
    /// The appliance's name in the cluster (its mon, mgr and CRUSH host).
    pub name: String,
    pub mon_ip: Ipv4Addr,
    pub public_network: String,
    /// The appliance's own OSD and its disk.
    pub osd: u32,
    pub disk: PathBuf,
    pub created: String,
    /// Who starts and restarts the appliance's daemons.
    #[serde(default)]
    pub supervisor: Supervisor,
    /// False while `pool init` is still making the cluster (the daemons may already run).
    #[serde(default = "ready_default")]
    pub ready: bool,
}

fn ready_default() -> bool {
    true
}

/// Who starts and restarts the appliance's mon, mgr and OSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    /// pxelator's pool keeper (a lab, or a machine without systemd): forked daemons found by
    /// their pidfiles.
    #[default]
    Pxelator,
    /// systemd, through the appliance image's units `pxelator-ceph-{mon,mgr,osd}.service`
    /// (each runs `pxelator pool daemon KIND`); chosen by `pool init` when systemd runs and
    /// those units are installed.
    Systemd,
}

impl Supervisor {
    /// The one for a pool made now on this machine.
    fn here() -> Supervisor {
        let systemd = Path::new("/run/systemd/system").is_dir();
        let units = Command::new("systemctl")
            .args(["cat", "--quiet", &unit_name("mon")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if systemd && units {
            Supervisor::Systemd
        } else {
            Supervisor::Pxelator
        }
    }
}

/// The systemd unit of one kind of the appliance's daemons (image/appliance/root/etc/systemd).
pub fn unit_name(kind: &str) -> String {
    format!("pxelator-ceph-{kind}.service")
}

/// The pool, when this appliance has one.
#[derive(Debug, Clone)]
pub struct Pool {
    pub paths: Paths,
    pub info: PoolInfo,
}

/// The pool of this appliance, or None when `pool init` was never run.
pub fn open(cfg: &Config) -> Result<Option<Pool>, PoolError> {
    Ok(open_any(cfg)?.filter(|p| p.info.ready))
}

/// The pool, also one `pool init` is still making.
fn open_any(cfg: &Config) -> Result<Option<Pool>, PoolError> {
    let paths = Paths::new(&cfg.state_dir);
    let f = paths.info();
    if !f.exists() {
        return Ok(None);
    }
    let info: PoolInfo = crate::tomlfile::read(&f).map_err(|e| msg(e.to_string()))?;
    Ok(Some(Pool { paths, info }))
}

/// [`open`], with a missing pool an error that says how to make one.
pub fn require(cfg: &Config) -> Result<Pool, PoolError> {
    open(cfg)?.ok_or_else(|| PoolError::NotInitialized(Paths::new(&cfg.state_dir).info()))
}

fn cluster(cfg: &Config, info: &PoolInfo) -> Cluster {
    Cluster {
        fsid: info.fsid.clone(),
        mon_ip: info.mon_ip,
        public_network: info.public_network.clone(),
        sizes: cfg.pool.sizes.clone(),
        extra: cfg.pool.ceph_options.clone(),
    }
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

fn new_secret() -> String {
    let now = crate::clock::unix_now().min(u32::MAX as u64) as u32;
    decide::cephx_secret(random16(), now)
}

/// Runs a tool with arguments (no shell); its stdout, or an error naming what ran and what it
/// said. The pool's Ceph tools, and restore-vm's mkfs.ext4.
pub(crate) fn tool(program: &str, args: &[&str]) -> Result<String, PoolError> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            msg(format!(
                "running {program}: {e} (is it installed? the pool's tools come with ceph-mon, ceph-mgr, ceph-mgr-dashboard, ceph-osd and ceph-common)"
            ))
        })?;
    if !out.status.success() {
        return Err(msg(format!(
            "{program} {} exited {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ceph` with the pool's admin configuration, bounded in time.
fn ceph(paths: &Paths, args: &[&str]) -> Result<String, PoolError> {
    let conf = paths.conf();
    let conf = conf.to_string_lossy();
    let mut all = vec!["-c", &conf, "--connect-timeout", "30"];
    all.extend_from_slice(args);
    tool("ceph", &all)
}

/// One of the appliance's Ceph daemons.
struct Daemon {
    kind: &'static str,
    id: String,
}

impl Daemon {
    fn name(&self) -> String {
        format!("{}.{}", self.kind, self.id)
    }
    fn program(&self) -> String {
        format!("ceph-{}", self.kind)
    }
    /// Its arguments; `foreground` under systemd (the unit's main process is the daemon).
    fn args(&self, paths: &Paths, foreground: bool) -> Vec<String> {
        let mut a = vec![
            "-c".to_owned(),
            paths.conf().to_string_lossy().into_owned(),
            "-i".to_owned(),
            self.id.clone(),
        ];
        if foreground {
            a.insert(0, "-f".to_owned());
        }
        a
    }
    /// Its PID: under systemd its unit's main process, else the live process of its program
    /// its pidfile names.
    fn pid(&self, paths: &Paths, sup: Supervisor) -> Option<i32> {
        let pid: i32 = match sup {
            Supervisor::Systemd => tool(
                "systemctl",
                &[
                    "show",
                    "--property=MainPID",
                    "--value",
                    &unit_name(self.kind),
                ],
            )
            .ok()?
            .trim()
            .parse()
            .ok()?,
            Supervisor::Pxelator => std::fs::read_to_string(paths.pidfile(&self.name()))
                .ok()?
                .trim()
                .parse()
                .ok()?,
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (pid > 0 && comm.trim() == self.program()).then_some(pid)
    }
    /// Starts it: forked (Ceph daemons fork into the background and write their pidfile), or
    /// its systemd unit.
    fn start(&self, paths: &Paths, sup: Supervisor) -> Result<i32, PoolError> {
        match sup {
            Supervisor::Pxelator => {
                let _ = std::fs::remove_file(paths.pidfile(&self.name()));
                let args = self.args(paths, false);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                tool(&self.program(), &args)?;
            }
            Supervisor::Systemd => {
                tool("systemctl", &["start", &unit_name(self.kind)])?;
            }
        }
        for _ in 0..100 {
            if let Some(pid) = self.pid(paths, sup) {
                return Ok(pid);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(msg(format!(
            "{} is not running 10 s after its start; see {}{}",
            self.name(),
            paths.log(&self.name()).display(),
            match sup {
                Supervisor::Systemd => format!(" and `journalctl -u {}`", unit_name(self.kind)),
                Supervisor::Pxelator => String::new(),
            }
        )))
    }
    fn stop(&self, paths: &Paths, sup: Supervisor) {
        if sup == Supervisor::Systemd {
            let _ = tool("systemctl", &["stop", &unit_name(self.kind)]);
            return;
        }
        let Some(pid) = self.pid(paths, sup) else {
            return;
        };
        let p = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if self.pid(paths, sup).is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    }
}

fn daemons(info: &PoolInfo) -> [Daemon; 3] {
    [
        Daemon {
            kind: "mon",
            id: info.name.clone(),
        },
        Daemon {
            kind: "mgr",
            id: info.name.clone(),
        },
        Daemon {
            kind: "osd",
            id: info.osd.to_string(),
        },
    ]
}

/// Starts whichever of the appliance's daemons is not running: (name, pid) of each started.
/// Under systemd nothing: its units restart them.
pub fn ensure_running(pool: &Pool) -> Result<Vec<(String, i32)>, PoolError> {
    let mut started = Vec::new();
    if pool.info.supervisor == Supervisor::Systemd {
        return Ok(started);
    }
    for d in daemons(&pool.info) {
        if d.pid(&pool.paths, pool.info.supervisor).is_none() {
            started.push((d.name(), d.start(&pool.paths, pool.info.supervisor)?));
        }
    }
    Ok(started)
}

/// Stops the appliance's daemons (OSD first, mon last).
pub fn stop(pool: &Pool) {
    for d in daemons(&pool.info).iter().rev() {
        d.stop(&pool.paths, pool.info.supervisor);
    }
}

/// `pxelator pool daemon KIND` (the appliance's systemd units): the program and arguments of
/// the appliance's daemon KIND (mon, mgr, osd) in the foreground, to be exec'd. An error when
/// this machine has no pool or its pool is not run by systemd (the unit then does not start).
pub fn daemon_command(cfg: &Config, kind: &str) -> Result<(String, Vec<String>), PoolError> {
    let pool = open_any(cfg)?
        .ok_or_else(|| PoolError::NotInitialized(Paths::new(&cfg.state_dir).info()))?;
    if pool.info.supervisor != Supervisor::Systemd {
        return Err(msg(format!(
            "the pool in {} is run by pxelator's keeper, not by systemd (supervisor = \"pxelator\" in {})",
            pool.paths.dir.display(),
            pool.paths.info().display()
        )));
    }
    let d = daemons(&pool.info)
        .into_iter()
        .find(|d| d.kind == kind)
        .ok_or_else(|| msg(format!("no pool daemon {kind:?}: give mon, mgr or osd")))?;
    Ok((d.program(), d.args(&pool.paths, true)))
}

/// Refuses a disk that holds something: a mounted one, or one whose first MiB is not zeros
/// (an old filesystem, a partition table, another cluster's OSD).
fn check_blank(disk: &Path) -> Result<(), PoolError> {
    use std::io::Read;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let d = disk.to_string_lossy();
    if mounts.lines().any(|l| l.split(' ').next() == Some(&*d)) {
        return Err(msg(format!(
            "{d} is mounted; give the pool a disk nothing uses"
        )));
    }
    let mut f = std::fs::File::open(disk).map_err(|e| {
        msg(format!(
            "{d}: {e} (give an existing block device or file; for a lab, `truncate -s 4G FILE`)"
        ))
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(msg(format!("{d}: {e}"))),
        }
    }
    if buf[..n].iter().any(|&b| b != 0) {
        return Err(msg(format!(
            "{d} is not blank (its first MiB holds data: a filesystem, partition table or old OSD?); pxelator never overwrites data: wipe it yourself (wipefs -a {d}; dd if=/dev/zero of={d} bs=1M count=1) if it is meant for the pool"
        )));
    }
    Ok(())
}

/// The cluster's keyrings are written here directly (a keyring is a small INI file).
fn keyring(entity: &str, key: &str, caps: &[(&str, &str)]) -> String {
    let mut s = format!("[{entity}]\n\tkey = {key}\n");
    for (what, cap) in caps {
        s.push_str(&format!("\tcaps {what} = \"{cap}\"\n"));
    }
    s
}

/// `pxelator pool init`: makes the cluster. `disk` is the appliance's own OSD (an explicit
/// device or file, blank); `name` its name in the cluster. `say` reports each step.
pub fn init(
    cfg: &Config,
    disk: &Path,
    name: &str,
    say: &dyn Fn(&str),
) -> Result<PoolInfo, PoolError> {
    let paths = Paths::new(&cfg.state_dir);
    if open(cfg)?.is_some() {
        return Err(msg(format!(
            "{} exists: this appliance already has a pool (see `pxelator pool status`)",
            paths.info().display()
        )));
    }
    crate::inventory::check_hostname(name).map_err(|e| msg(format!("pool name: {e}")))?;
    let disk_s = disk.to_string_lossy().into_owned();
    decide::check_disk(&disk_s).map_err(msg)?;
    check_blank(disk)?;
    let subnet = cfg
        .dhcp
        .net
        .subnets
        .iter()
        .find(|s| s.contains(cfg.server_ip))
        .ok_or_else(|| {
            msg(format!(
                "no [[subnet]] holds server_ip {}: the pool's network is the appliance's segment",
                cfg.server_ip
            ))
        })?;
    let info = PoolInfo {
        fsid: decide::uuid_v4(random16()),
        name: name.to_owned(),
        mon_ip: cfg.server_ip,
        public_network: format!("{}/{}", subnet.network, subnet.prefix),
        osd: 0,
        disk: disk.to_owned(),
        created: crate::clock::rfc3339(crate::clock::unix_now()),
        supervisor: Supervisor::here(),
        ready: false,
    };
    // A half-made pool from an earlier failed init is moved aside, never reused.
    if let Ok(Some(old)) = open_any(cfg) {
        stop(&old);
    }
    if paths.dir.exists() {
        let aside = paths
            .dir
            .with_file_name(format!("pool.failed-{}", crate::clock::unix_now()));
        std::fs::rename(&paths.dir, &aside)
            .map_err(|e| msg(format!("{}: {e}", aside.display())))?;
        say(&format!(
            "an unfinished pool was moved to {}",
            aside.display()
        ));
    }
    for sub in ["", "mon", "mgr", "osd", "run", "log", "crash", "hosts"] {
        let d = paths.dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| msg(format!("{}: {e}", d.display())))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
    }
    let made = make(cfg, &paths, info.clone(), say);
    if made.is_err() {
        // Nothing of a failed init keeps running; its directory is moved aside by the next.
        stop(&Pool { paths, info });
    }
    made
}

/// [`init`]'s steps, in a fresh `<state_dir>/pool/`.
fn make(
    cfg: &Config,
    paths: &Paths,
    info: PoolInfo,
    say: &dyn Fn(&str),
) -> Result<PoolInfo, PoolError> {
    let paths = paths.clone();
    let name = info.name.as_str();
    let disk = info.disk.clone();
    let sup = info.supervisor;
    let dir = paths.dir.to_string_lossy().into_owned();
    let c = cluster(cfg, &info);
    let write = |p: PathBuf, text: &str| {
        crate::fsutil::write_private(&p, text.as_bytes())
            .map_err(|e| msg(format!("{}: {e}", p.display())))
    };
    write(paths.conf(), &decide::appliance_conf(&c, &dir, name))?;
    let admin = keyring(
        "client.admin",
        &new_secret(),
        &[
            ("mon", "allow *"),
            ("osd", "allow *"),
            ("mds", "allow *"),
            ("mgr", "allow *"),
        ],
    );
    write(paths.dir.join("admin.keyring"), &admin)?;
    let mon_keyring = format!(
        "{}{admin}",
        keyring("mon.", &new_secret(), &[("mon", "allow *")])
    );
    let mon_kr = paths.dir.join("mon.keyring");
    write(mon_kr.clone(), &mon_keyring)?;
    let random = crate::auth::random_hex(24);
    write(paths.dashboard_secret(), &random)?;
    write(paths.join_key(), &crate::auth::random_hex(32))?;
    let write_info = |info: &PoolInfo| {
        let text = toml::to_string(info).map_err(|e| msg(e.to_string()))?;
        write(paths.info(), &text)
    };
    write_info(&info)?;
    if sup == Supervisor::Systemd {
        say("the daemons run under systemd (pxelator-ceph-mon, -mgr, -osd)");
    }

    say("making the monitor");
    let monmap = paths.dir.join("monmap");
    let addrs = decide::mon_host(info.mon_ip);
    tool(
        "monmaptool",
        &[
            "--create",
            "--addv",
            name,
            &addrs,
            "--fsid",
            &info.fsid,
            &monmap.to_string_lossy(),
        ],
    )?;
    let conf = paths.conf().to_string_lossy().into_owned();
    tool(
        "ceph-mon",
        &[
            "-c",
            &conf,
            "--mkfs",
            "-i",
            name,
            "--monmap",
            &monmap.to_string_lossy(),
            "--keyring",
            &mon_kr.to_string_lossy(),
        ],
    )?;
    let _ = std::fs::remove_file(&mon_kr);
    let [mon, mgr, osd] = daemons(&info);
    mon.start(&paths, sup)?;
    ceph(&paths, &["mon", "enable-msgr2"])?;

    say("placing copies: one on the appliance, the others on kiosks (CRUSH rule appliance_first)");
    ceph(
        &paths,
        &["osd", "crush", "add-bucket", decide::APPLIANCE_ROOT, "root"],
    )?;
    let rule_id = install_rule(&paths)?;
    ceph(
        &paths,
        &[
            "config",
            "set",
            "global",
            "osd_pool_default_crush_rule",
            &rule_id.to_string(),
        ],
    )?;

    say("making the manager and its Dashboard API (127.0.0.1 only)");
    let mgr_kr = paths.dir.join("mgr").join("keyring");
    ceph(
        &paths,
        &[
            "auth",
            "get-or-create",
            &format!("mgr.{name}"),
            "mon",
            "allow profile mgr",
            "osd",
            "allow *",
            "mds",
            "allow *",
            "-o",
            &mgr_kr.to_string_lossy(),
        ],
    )?;
    mgr.start(&paths, sup)?;
    retry(60, || {
        ceph(&paths, &["mgr", "module", "enable", "dashboard"])
    })?;
    for (k, v) in [
        ("mgr/dashboard/ssl", "false".to_owned()),
        ("mgr/dashboard/server_addr", "127.0.0.1".to_owned()),
        (
            "mgr/dashboard/server_port",
            cfg.pool.dashboard_port.to_string(),
        ),
    ] {
        ceph(&paths, &["config", "set", "mgr", k, &v])?;
    }
    // The module reads its address at start: restart it with the settings above.
    ceph(&paths, &["mgr", "module", "disable", "dashboard"])?;
    ceph(&paths, &["mgr", "module", "enable", "dashboard"])?;
    let secret_file = paths.dashboard_secret().to_string_lossy().into_owned();
    retry(60, || {
        ceph(
            &paths,
            &[
                "dashboard",
                "ac-user-create",
                "pxelator",
                "-i",
                &secret_file,
                "administrator",
            ],
        )
    })?;

    say("making the appliance's own OSD");
    let ident = OsdIdentity {
        id: 0,
        uuid: decide::uuid_v4(random16()),
        secret: new_secret(),
    };
    let id = osd_new(&paths, &ident)?;
    let info = PoolInfo { osd: id, ..info };
    write_info(&info)?;
    let osd_dir = paths.dir.join("osd");
    write(
        osd_dir.join("keyring"),
        &keyring(&format!("osd.{id}"), &ident.secret, &[]),
    )?;
    std::os::unix::fs::symlink(&disk, osd_dir.join("block"))
        .map_err(|e| msg(format!("{}: {e}", osd_dir.display())))?;
    tool(
        "ceph-osd",
        &[
            "-c",
            &conf,
            "--mkfs",
            "-i",
            &id.to_string(),
            "--osd-uuid",
            &ident.uuid,
            "--osd-objectstore",
            "bluestore",
            "--monmap",
            &monmap.to_string_lossy(),
        ],
    )?;
    let osd = Daemon {
        id: id.to_string(),
        ..osd
    };
    osd.start(&paths, sup)?;

    say("making the RBD pool for VM disks and snapshot copies");
    let pool = Pool {
        paths: paths.clone(),
        info: info.clone(),
    };
    let api = retry(60, || Api::connect(cfg, &pool))?;
    api.create_rbd_pool(cfg.pool.pg_num)?;
    retry(60, || {
        tool("rbd", &["-c", &conf, "pool", "init", decide::RBD_POOL])
    })?;
    let info = PoolInfo {
        ready: true,
        ..info
    };
    write_info(&info)?;
    Ok(info)
}

/// Calls `f` until it succeeds, once a second, at most `secs` times; the last error.
fn retry<T>(secs: u32, mut f: impl FnMut() -> Result<T, PoolError>) -> Result<T, PoolError> {
    let mut last = None;
    for _ in 0..secs.max(1) {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last.expect("tried at least once"))
}

/// Adds the appliance_first rule to the CRUSH map (decompile, append, compile, set); its id.
fn install_rule(paths: &Paths) -> Result<u32, PoolError> {
    let bin = paths.dir.join("crushmap.bin");
    let txt = paths.dir.join("crushmap.txt");
    ceph(paths, &["osd", "getcrushmap", "-o", &bin.to_string_lossy()])?;
    tool(
        "crushtool",
        &["-d", &bin.to_string_lossy(), "-o", &txt.to_string_lossy()],
    )?;
    let map = std::fs::read_to_string(&txt).map_err(|e| msg(format!("{}: {e}", txt.display())))?;
    let next_id = map
        .lines()
        .filter_map(|l| l.trim().strip_prefix("id "))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .max()
        .map_or(0, |m| m + 1) as u32;
    let rule = decide::crush_rule(next_id);
    let map = match map.find("# end crush map") {
        Some(at) => format!("{}{rule}\n{}", &map[..at], &map[at..]),
        None => format!("{map}\n{rule}"),
    };
    std::fs::write(&txt, map).map_err(|e| msg(format!("{}: {e}", txt.display())))?;
    tool(
        "crushtool",
        &["-c", &txt.to_string_lossy(), "-o", &bin.to_string_lossy()],
    )?;
    ceph(paths, &["osd", "setcrushmap", "-i", &bin.to_string_lossy()])?;
    let _ = std::fs::remove_file(&bin);
    let _ = std::fs::remove_file(&txt);
    let dump = ceph(
        paths,
        &[
            "osd",
            "crush",
            "rule",
            "dump",
            decide::RULE,
            "--format",
            "json",
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&dump).map_err(|e| msg(e.to_string()))?;
    v.get("rule_id")
        .and_then(serde_json::Value::as_u64)
        .map(|n| n as u32)
        .ok_or_else(|| msg(format!("crush rule dump gave no rule_id: {dump}")))
}

/// `ceph osd new`: an OSD id for this uuid with this cephx secret (the same id again for the
/// same uuid).
fn osd_new(paths: &Paths, ident: &OsdIdentity) -> Result<u32, PoolError> {
    let secret_json = paths.dir.join(format!("osd-new.{}.json", ident.uuid));
    crate::fsutil::write_private(
        &secret_json,
        serde_json::json!({ "cephx_secret": ident.secret })
            .to_string()
            .as_bytes(),
    )
    .map_err(|e| msg(format!("{}: {e}", secret_json.display())))?;
    let out = ceph(
        paths,
        &[
            "osd",
            "new",
            &ident.uuid,
            "-i",
            &secret_json.to_string_lossy(),
        ],
    );
    let _ = std::fs::remove_file(&secret_json);
    out?.trim()
        .parse()
        .map_err(|_| msg("ceph osd new did not print an OSD id"))
}

/// The mgr's Dashboard REST API (on 127.0.0.1), logged in as pxelator's own user.
pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

const ACCEPT: &str = "application/vnd.ceph.api.v1.0+json";

impl Api {
    /// Logs in (`POST /api/auth`) with the password `pool init` made.
    pub fn connect(cfg: &Config, pool: &Pool) -> Result<Api, PoolError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let base = format!("http://127.0.0.1:{}", cfg.pool.dashboard_port);
        let password =
            crate::fsutil::read_secret(&pool.paths.dashboard_secret()).map_err(PoolError::Msg)?;
        let mut api = Api {
            agent,
            base,
            token: String::new(),
        };
        let v = api.call(
            "POST",
            "/api/auth",
            Some(serde_json::json!({"username": "pxelator", "password": password})),
        )?;
        api.token = v
            .get("token")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| PoolError::Api {
                url: format!("{}/api/auth", api.base),
                reason: "the answer has no token".into(),
            })?
            .to_owned();
        Ok(api)
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, PoolError> {
        self.call_version(method, path, body, ACCEPT)
    }

    /// [`Api::call`] for an endpoint of another API version (`accept`, e.g. the RBD image
    /// list is 2.0 in Ceph 16).
    fn call_version(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        accept: &str,
    ) -> Result<serde_json::Value, PoolError> {
        let url = format!("{}{path}", self.base);
        let err = |reason: String| PoolError::Api {
            url: url.clone(),
            reason,
        };
        let auth = format!("Bearer {}", self.token);
        let res = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Accept", accept)
                .header("Authorization", &auth)
                .call(),
            (m, b) => {
                let b = b.unwrap_or(serde_json::Value::Null).to_string();
                let req = match m {
                    "POST" => self.agent.post(&url),
                    _ => self.agent.put(&url),
                };
                req.header("Accept", accept)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(b)
            }
        };
        let mut resp = res.map_err(|e| {
            err(format!(
                "{e} (is the pool's mgr running? `pxelator pool status`; its log is under {})",
                "<state_dir>/pool/log"
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| err(format!("reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(300).collect());
            return Err(err(format!("{method} answered {status}: {detail}")));
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON ({e})")))
    }

    /// Every OSD: id, CRUSH host, up, in, bytes used and total.
    pub fn osds(&self) -> Result<Vec<OsdInfo>, PoolError> {
        let v = self.call("GET", "/api/osd", None)?;
        let list = v.as_array().cloned().unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|o| {
                let id = o.get("osd")?.as_u64()? as u32;
                let flag = |k: &str| o.get(k).and_then(serde_json::Value::as_u64) == Some(1);
                let statfs = o.pointer("/osd_stats/statfs");
                let num = |k: &str| {
                    statfs
                        .and_then(|s| s.get(k))
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                };
                Some(OsdInfo {
                    view: OsdView {
                        id,
                        host: o
                            .pointer("/host/name")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?")
                            .to_owned(),
                        up: flag("up"),
                        is_in: flag("in"),
                        noout: o
                            .get("state")
                            .and_then(serde_json::Value::as_array)
                            .is_some_and(|st| st.iter().any(|x| x.as_str() == Some("noout"))),
                    },
                    total: num("total"),
                    used: num("total").saturating_sub(num("available")),
                })
            })
            .collect())
    }

    /// HEALTH_OK / HEALTH_WARN / HEALTH_ERR and each check's message.
    pub fn health(&self) -> Result<Health, PoolError> {
        let v = self.call("GET", "/api/health/minimal", None)?;
        let status = v
            .pointer("/health/status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let checks = v
            .pointer("/health/checks")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let t = c.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                        let m = c
                            .pointer("/summary/message")
                            .and_then(|t| t.as_str())
                            .unwrap_or("");
                        format!("{t}: {m}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        let recovering = v
            .pointer("/client_perf/recovering_bytes_per_sec")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(Health {
            status,
            checks,
            recovering_bytes_per_sec: recovering,
        })
    }

    /// Sets or clears `noout` on exactly these OSDs.
    pub fn set_noout(&self, ids: &[u32], on: bool) -> Result<(), PoolError> {
        self.call(
            "PUT",
            "/api/osd/flags/individual",
            Some(serde_json::json!({"flags": {"noout": on}, "ids": ids})),
        )
        .map(drop)
    }

    /// The OSDs carrying an individual `noout`.
    pub fn noout(&self) -> Result<BTreeSet<u32>, PoolError> {
        let v = self.call("GET", "/api/osd/flags/individual", None)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|o| {
                        o.get("flags")
                            .and_then(|f| f.as_array())
                            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("noout")))
                    })
                    .filter_map(|o| o.get("osd").and_then(|i| i.as_u64()).map(|i| i as u32))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Marks an OSD out or in.
    pub fn mark(&self, id: u32, action: &str) -> Result<(), PoolError> {
        self.call(
            "PUT",
            &format!("/api/osd/{id}/mark"),
            Some(serde_json::json!({ "action": action })),
        )
        .map(drop)
    }

    /// Whether the OSD's data has copies elsewhere (it can be removed without loss).
    pub fn safe_to_destroy(&self, id: u32) -> Result<bool, PoolError> {
        let v = self.call("GET", &format!("/api/osd/safe_to_destroy?ids={id}"), None)?;
        Ok(v.get("is_safe_to_destroy").and_then(|b| b.as_bool()) == Some(true))
    }

    fn create_rbd_pool(&self, pg_num: u32) -> Result<(), PoolError> {
        self.call(
            "POST",
            "/api/pool",
            Some(serde_json::json!({
                "pool": decide::RBD_POOL,
                "pool_type": "replicated",
                "pg_num": pg_num,
                "size": 3,
                "min_size": 1,
                "rule_name": decide::RULE,
                "application_metadata": ["rbd"],
            })),
        )
        .map(drop)
    }

    /// Each pool: name, bytes stored, objects, replicas.
    pub fn pools(&self) -> Result<Vec<PoolUsage>, PoolError> {
        let v = self.call("GET", "/api/pool?stats=true", None)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|p| PoolUsage {
                        name: p
                            .get("pool_name")
                            .and_then(|n| n.as_str())
                            .unwrap_or("?")
                            .to_owned(),
                        size: p.get("size").and_then(|n| n.as_u64()).unwrap_or(0) as u32,
                        min_size: p.get("min_size").and_then(|n| n.as_u64()).unwrap_or(0) as u32,
                        stored: p
                            .pointer("/stats/stored/latest")
                            .and_then(|n| n.as_u64())
                            .unwrap_or(0),
                        objects: p
                            .pointer("/stats/objects/latest")
                            .and_then(|n| n.as_u64())
                            .unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// One OSD as `pool status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OsdInfo {
    #[serde(flatten)]
    pub view: OsdView,
    pub used: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Health {
    pub status: String,
    pub checks: Vec<String>,
    pub recovering_bytes_per_sec: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolUsage {
    pub name: String,
    pub size: u32,
    pub min_size: u32,
    pub stored: u64,
    pub objects: u64,
}

/// What `pool status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub fsid: String,
    /// Who runs the appliance's mon, mgr and OSD.
    pub supervisor: Supervisor,
    pub health: Health,
    pub osds: Vec<OsdInfo>,
    /// OSDs carrying pxelator's noout (machines switched off by a schedule).
    pub noout: Vec<u32>,
    /// Machines with a pool_disk that have not joined yet.
    pub waiting: Vec<String>,
    pub problems: Vec<String>,
}

pub fn status(cfg: &Config, inv: &crate::inventory::Inventory) -> Result<Status, PoolError> {
    let pool = require(cfg)?;
    let api = Api::connect(cfg, &pool)?;
    let osds = api.osds()?;
    let (members, problems) = decide::members(inv);
    let joined: BTreeSet<&str> = osds.iter().map(|o| o.view.host.as_str()).collect();
    Ok(Status {
        fsid: pool.info.fsid.clone(),
        supervisor: pool.info.supervisor,
        health: api.health()?,
        noout: api.noout()?.into_iter().collect(),
        waiting: members
            .iter()
            .filter(|m| !joined.contains(m.host.as_str()))
            .map(|m| m.host.clone())
            .collect(),
        osds,
        problems,
    })
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The token in a member's boot script that lets it fetch its join material: an HMAC of its
/// hostname under the pool's join key (so it needs no state per host, and `join.key`
/// replaced revokes every token).
pub fn join_token(pool: &Pool, host: &str) -> Result<String, PoolError> {
    use hmac::{KeyInit, Mac};
    let key = crate::fsutil::read_secret(&pool.paths.join_key()).map_err(PoolError::Msg)?;
    let mut m = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    m.update(b"pxelator pool join\0");
    m.update(host.as_bytes());
    Ok(crate::proto::hex(&m.finalize().into_bytes()[..20]))
}

/// The kernel argument that tells a member's live system where its join material is, for a
/// machine with a pool_disk, when this appliance has a pool.
pub fn boot_arg(
    cfg: &Config,
    m: Option<&crate::inventory::Machine>,
    http_base: &str,
) -> Option<String> {
    let member = decide::member(m?)?;
    let pool = open(cfg).ok()??;
    let token = join_token(&pool, &member.host).ok()?;
    Some(format!(
        "pxelator.pool={http_base}/pool/join/{}/{token}",
        member.host
    ))
}

/// Why a join request is refused: said to the asker and recorded.
#[derive(Debug)]
pub struct Refusal(pub String);

/// The join material for `host` asked from `peer` with `token`: its OSD's ceph.conf (made,
/// with its OSD, the first time). Only a member with that address and token gets it.
pub fn join_material(
    cfg: &Config,
    inv: &crate::inventory::Inventory,
    host: &str,
    peer: Ipv4Addr,
    token: &str,
) -> Result<(String, u32, bool), Refusal> {
    let pool = match open(cfg) {
        Ok(Some(p)) => p,
        Ok(None) => return Err(Refusal("this appliance has no pool".into())),
        Err(e) => return Err(Refusal(e.to_string())),
    };
    let expected = join_token(&pool, host).map_err(|e| Refusal(e.to_string()))?;
    // Compared in constant time: the token is a secret.
    let same = expected.len() == token.len()
        && expected
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0;
    if !same {
        return Err(Refusal(format!("wrong join token for {host}")));
    }
    let Some(member) = inv
        .machines()
        .iter()
        .filter(|m| m.hostname.as_deref() == Some(host))
        .find_map(decide::member)
    else {
        return Err(Refusal(format!(
            "{host} has no pool_disk param (or no ip) in the inventory"
        )));
    };
    if member.ip != peer {
        return Err(Refusal(format!(
            "{host}'s join material is for {}, not {peer}",
            member.ip
        )));
    }
    let (ident, created) = osd_for(&pool, &member).map_err(|e| Refusal(e.to_string()))?;
    Ok((
        decide::kiosk_conf(&cluster(cfg, &pool.info), &member, &ident),
        ident.id,
        created,
    ))
}

/// A member's OSD identity (`hosts/<host>.toml`), made with `ceph osd new` the first time.
fn osd_for(pool: &Pool, m: &Member) -> Result<(OsdIdentity, bool), PoolError> {
    let f = pool.paths.host_file(&m.host);
    let _lock = crate::fsutil::lock_exclusive(&pool.paths.dir.join("hosts.lock"))
        .map_err(|e| msg(format!("locking the pool's hosts: {e}")))?;
    if f.exists() {
        let id: OsdIdentity = crate::tomlfile::read(&f).map_err(|e| msg(e.to_string()))?;
        return Ok((id, false));
    }
    let mut ident = OsdIdentity {
        id: 0,
        uuid: decide::uuid_v4(random16()),
        secret: new_secret(),
    };
    ident.id = osd_new(&pool.paths, &ident)?;
    let text = toml::to_string(&ident).map_err(|e| msg(e.to_string()))?;
    let _ = std::fs::create_dir_all(f.parent().expect("hosts/ has a parent"));
    crate::fsutil::write_private(&f, text.as_bytes())
        .map_err(|e| msg(format!("{}: {e}", f.display())))?;
    Ok((ident, true))
}

/// The keeper's memory, read and written under one lock (the power scheduler adds to it).
fn with_tracked<T>(
    pool: &Pool,
    f: impl FnOnce(&mut Tracked) -> Result<T, PoolError>,
) -> Result<T, PoolError> {
    let _lock = crate::fsutil::lock_exclusive(&pool.paths.dir.join("keeper.lock"))
        .map_err(|e| msg(format!("locking the pool keeper's state: {e}")))?;
    let file = pool.paths.keeper();
    let mut t: Tracked = match std::fs::read_to_string(&file) {
        Ok(s) => serde_json::from_str(&s).map_err(|e| {
            msg(format!(
                "{}: {e}; remove it to start afresh",
                file.display()
            ))
        })?,
        Err(_) => Tracked::default(),
    };
    let out = f(&mut t)?;
    let text = serde_json::to_string_pretty(&t).map_err(|e| msg(e.to_string()))?;
    crate::fsutil::write_atomic(&file, text.as_bytes(), 0o600)
        .map_err(|e| msg(format!("{}: {e}", file.display())))?;
    Ok(out)
}

/// Before machines `who` names are switched off by a schedule: `noout` on exactly their OSDs,
/// so the cluster waits for them instead of copying their data elsewhere. None when there is
/// no pool or none of them holds an OSD.
pub fn before_power_off(
    cfg: &Config,
    inv: &crate::inventory::Inventory,
    who: &str,
) -> Result<Option<Event>, PoolError> {
    let Some(pool) = open(cfg)? else {
        return Ok(None);
    };
    let hosts: BTreeSet<String> = match crate::power::targets(inv, who) {
        Ok(ms) => ms.iter().filter_map(|m| m.hostname.clone()).collect(),
        Err(_) => return Ok(None),
    };
    let api = Api::connect(cfg, &pool)?;
    let osds: Vec<OsdView> = api.osds()?.into_iter().map(|o| o.view).collect();
    let chosen = decide::noout_for(&osds, &hosts);
    if chosen.is_empty() {
        return Ok(None);
    }
    let ids: Vec<u32> = chosen.iter().map(|o| o.id).collect();
    let now = crate::clock::unix_now() as i64;
    with_tracked(&pool, |t| {
        api.set_noout(&ids, true)?;
        for id in &ids {
            t.noout.insert(*id, now);
        }
        Ok(())
    })?;
    Ok(Some(Event::NooutSet {
        target: who.to_owned(),
        osds: ids,
        hosts: chosen.iter().map(|o| o.host.clone()).collect(),
    }))
}

/// The keeper's memory between rounds: the last health it reported (only changes are
/// events) and its Dashboard session (logged in again when a call fails).
#[derive(Default)]
pub struct KeeperMemory {
    pub health: Option<(String, Vec<String>)>,
    api: Option<Api>,
}

/// One round of the keeper: daemons running, then the decision on the OSDs carried out.
pub fn keep_round(cfg: &Config, mem: &mut KeeperMemory) -> Result<Vec<Event>, PoolError> {
    let Some(pool) = open(cfg)? else {
        return Ok(Vec::new());
    };
    let mut events: Vec<Event> = ensure_running(&pool)?
        .into_iter()
        .map(|(daemon, pid)| Event::PoolDaemonStarted { daemon, pid })
        .collect();
    let api = match mem.api.take() {
        Some(a) => a,
        None => Api::connect(cfg, &pool)?,
    };
    let osds: Vec<OsdView> = api.osds()?.into_iter().map(|o| o.view).collect();
    let now = crate::clock::unix_now() as i64;
    let steps = with_tracked(&pool, |t| {
        let (steps, next) = decide::keep(&osds, t, now, cfg.pool.grace_secs);
        *t = next;
        Ok(steps)
    })?;
    for s in steps {
        use decide::Step;
        let done = match &s {
            Step::Up { id, host } => Ok(Some(Event::OsdUp {
                osd: *id,
                host: host.clone(),
            })),
            Step::Down { id, host } => Ok(Some(Event::OsdDown {
                osd: *id,
                host: host.clone(),
            })),
            // Asked every round until the flag is seen gone (then NooutGone is the event).
            Step::ClearNoout { id, .. } => api.set_noout(&[*id], false).map(|()| None),
            Step::NooutGone { id, host } => Ok(Some(Event::NooutCleared {
                osd: *id,
                host: host.clone(),
            })),
            Step::MarkOut {
                id,
                host,
                down_secs,
            } => api.mark(*id, "out").map(|()| {
                Some(Event::OsdMarkedOut {
                    osd: *id,
                    host: host.clone(),
                    reason: "grace".into(),
                    down_secs: Some(*down_secs),
                })
            }),
            Step::MarkIn { id, host } => api.mark(*id, "in").map(|()| {
                Some(Event::OsdMarkedIn {
                    osd: *id,
                    host: host.clone(),
                })
            }),
        };
        match done {
            Ok(e) => events.extend(e),
            Err(e) => events.push(Event::PoolProblem {
                message: format!("{s:?}: {e}"),
            }),
        }
    }
    let h = api.health()?;
    let now_health = (h.status.clone(), h.checks.clone());
    if mem.health.as_ref() != Some(&now_health) {
        events.push(Event::PoolHealth {
            status: h.status,
            checks: h.checks,
        });
        mem.health = Some(now_health);
    }
    mem.api = Some(api);
    Ok(events)
}

fn osd_of(api: &Api, host: &str) -> Result<OsdView, PoolError> {
    api.osds()?
        .into_iter()
        .map(|o| o.view)
        .find(|o| o.host == host)
        .ok_or_else(|| {
            msg(format!(
                "{host} holds no OSD in the pool (see `pxelator pool status`)"
            ))
        })
}

/// `pxelator pool drain HOST`: marks its OSD out for good (the keeper never marks it in);
/// its data is copied to the others. `pool rm HOST` once that is done.
pub fn drain(cfg: &Config, host: &str) -> Result<Event, PoolError> {
    let pool = require(cfg)?;
    let api = Api::connect(cfg, &pool)?;
    let o = osd_of(&api, host)?;
    with_tracked(&pool, |t| {
        t.drained.insert(o.id);
        t.noout.remove(&o.id);
        Ok(())
    })?;
    let _ = api.set_noout(&[o.id], false);
    api.mark(o.id, "out")?;
    Ok(Event::OsdMarkedOut {
        osd: o.id,
        host: host.to_owned(),
        reason: "drain".into(),
        down_secs: None,
    })
}

/// `pxelator pool rm HOST`: purges its OSD once its data has copies elsewhere (refused before,
/// unless `force`), removes its CRUSH host and forgets its identity (its next boot would join
/// afresh only if its pool_disk param is still there: remove that first).
pub fn remove(cfg: &Config, host: &str, force: bool) -> Result<Event, PoolError> {
    let pool = require(cfg)?;
    if host == pool.info.name {
        return Err(msg(format!(
            "{host} is the appliance itself; its OSD holds the copy every pool keeps here"
        )));
    }
    let api = Api::connect(cfg, &pool)?;
    let o = osd_of(&api, host)?;
    if !force && !api.safe_to_destroy(o.id)? {
        return Err(msg(format!(
            "osd.{} ({host}) still holds the only copies of some data: `pxelator pool drain {host}`, wait until `pxelator pool status` shows HEALTH_OK, then remove it (or --force to lose them)",
            o.id
        )));
    }
    if o.up && !force {
        return Err(msg(format!(
            "osd.{} on {host} is still running: remove {host}'s pool_disk param and reboot it (or switch it off), then `pxelator pool rm {host}` (--force marks it down and removes it anyway)",
            o.id
        )));
    }
    if o.is_in {
        api.mark(o.id, "out")?;
    }
    if o.up {
        api.mark(o.id, "down")?;
    }
    // The Dashboard's POST /api/osd/{id}/purge answers 500 on Ceph 16.2.15 (seen in the lab):
    // the mon command it wraps, run by the ceph tool.
    ceph(
        &pool.paths,
        &["osd", "purge", &o.id.to_string(), "--yes-i-really-mean-it"],
    )?;
    let _ = ceph(&pool.paths, &["osd", "crush", "rm", host]);
    let _ = std::fs::remove_file(pool.paths.host_file(host));
    with_tracked(&pool, |t| {
        t.drained.remove(&o.id);
        t.noout.remove(&o.id);
        Ok(())
    })?;
    Ok(Event::OsdRemoved {
        osd: o.id,
        host: host.to_owned(),
    })
}

/// The RADOS namespace of the pxelator pool holding copies of files the appliance keeps
/// (overlay snapshots), as objects named `<kind>/<file name>`.
pub const COPIES_NS: &str = "copies";

/// Copies `file` into the pool as `<kind>/<its name>` (an offsite copy: the pool spans the
/// kiosks' disks too); the object's name, or None when the appliance has no pool.
pub fn store_copy(cfg: &Config, kind: &str, file: &Path) -> Result<Option<String>, PoolError> {
    let Some(pool) = open(cfg)? else {
        return Ok(None);
    };
    let base = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| msg(format!("{}: not a plain file name", file.display())))?;
    let name = format!("{kind}/{base}");
    tool(
        "rados",
        &[
            "-c",
            &pool.paths.conf().to_string_lossy(),
            "-p",
            decide::RBD_POOL,
            "-N",
            COPIES_NS,
            "put",
            &name,
            &file.to_string_lossy(),
        ],
    )?;
    Ok(Some(name))
}

/// Copies of the conf repo kept in the pool: one per day (the day's last), the newest kept.
const CONF_BUNDLES_KEPT: usize = 14;

/// After backups that committed: the whole conf repo (host files, inventory and their
/// history) as a git bundle into the pool, `conf-repo/<date>.bundle` (the day's last copy
/// replaces its earlier ones; the newest [`CONF_BUNDLES_KEPT`] days are kept). None without a
/// pool. The event says what was written.
pub fn store_conf_bundle(cfg: &Config) -> Result<Option<Event>, PoolError> {
    let Some(pool) = open(cfg)? else {
        return Ok(None);
    };
    let day = &crate::clock::rfc3339(crate::clock::unix_now())[..10];
    let dir = pool.paths.dir.join("run");
    let file = dir.join(format!("{day}.bundle"));
    let _ = std::fs::remove_file(&file);
    tool(
        "git",
        &[
            "-C",
            &cfg.conf_repo.to_string_lossy(),
            "bundle",
            "create",
            "--quiet",
            &file.to_string_lossy(),
            "--all",
        ],
    )?;
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let stored = store_copy(cfg, "conf-repo", &file);
    let _ = std::fs::remove_file(&file);
    let object = stored?.unwrap_or_default();
    let conf = pool.paths.conf().to_string_lossy().into_owned();
    let rados = |args: &[&str]| {
        let mut all = vec!["-c", &conf, "-p", decide::RBD_POOL, "-N", COPIES_NS];
        all.extend_from_slice(args);
        tool("rados", &all)
    };
    let mut bundles: Vec<String> = rados(&["ls"])?
        .lines()
        .filter(|l| l.starts_with("conf-repo/") && l.ends_with(".bundle"))
        .map(str::to_owned)
        .collect();
    bundles.sort();
    let old = bundles.len().saturating_sub(CONF_BUNDLES_KEPT);
    for b in &bundles[..old] {
        rados(&["rm", b])?;
    }
    Ok(Some(Event::PoolCopyStored {
        what: "conf-repo".into(),
        object,
        bytes,
    }))
}

/// What is where (`pool usage`): each pool, the RBD images (VM disks) and the copies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub pools: Vec<PoolUsage>,
    /// `pool/image` and its provisioned size.
    pub images: Vec<(String, u64)>,
    /// Objects in the copies namespace and their sizes (at most 10 000 listed).
    pub copies: Vec<(String, u64)>,
}

pub fn usage(cfg: &Config) -> Result<Usage, PoolError> {
    let pool = require(cfg)?;
    let api = Api::connect(cfg, &pool)?;
    let pools = api.pools()?;
    let v = api.call_version(
        "GET",
        "/api/block/image",
        None,
        "application/vnd.ceph.api.v2.0+json",
    )?;
    let mut images = Vec::new();
    // Per pool {"pool_name", "value": [images]}; a flat list of images also read.
    for group in v.as_array().into_iter().flatten() {
        let inner = group.get("value").and_then(|x| x.as_array());
        for img in inner
            .map(|a| a.iter().collect::<Vec<_>>())
            .unwrap_or_else(|| vec![group])
        {
            if img.get("name").is_none() {
                continue;
            }
            let name = img.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            let p = img.get("pool_name").and_then(|n| n.as_str()).unwrap_or("?");
            let size = img.get("size").and_then(|n| n.as_u64()).unwrap_or(0);
            images.push((format!("{p}/{name}"), size));
        }
    }
    images.sort();
    let conf = pool.paths.conf().to_string_lossy().into_owned();
    let listed = tool(
        "rados",
        &["-c", &conf, "-p", decide::RBD_POOL, "-N", COPIES_NS, "ls"],
    )?;
    let mut copies = Vec::new();
    for name in listed.lines().take(10_000) {
        // "<pool>/<name> mtime …, size N"
        let stat = tool(
            "rados",
            &[
                "-c",
                &conf,
                "-p",
                decide::RBD_POOL,
                "-N",
                COPIES_NS,
                "stat",
                name,
            ],
        )?;
        let size = stat
            .rsplit("size ")
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        copies.push((name.to_owned(), size));
    }
    copies.sort();
    Ok(Usage {
        pools,
        images,
        copies,
    })
}

/// The join script members run at boot (served at `/pool/join.sh`).
pub const JOIN_SCRIPT: &str = include_str!("pool-join.sh");
