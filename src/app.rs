//! Supervision: validate config, load the inventory, bind every socket, then tell systemd we
//! are ready (sd_notify READY=1 only after all sockets are bound), ping the watchdog, reload
//! the inventory on SIGHUP and on file changes, and on SIGTERM stop accepting work and give
//! in-flight TFTP transfers a grace period.
use crate::clock::unix_now;
use crate::config::{Config, DhcpMode};
use crate::core::event::Event;
use crate::events::Bus;
use crate::inventory::{self, Inventory};
use crate::services::dhcp::{DhcpService, LeaseDb};
use crate::services::journal::Journal;
use crate::services::{http, tftp};
use anyhow::Context;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long in-flight transfers may finish after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// What [`load_inventory`] remembers between loads.
#[derive(Debug, Default)]
pub struct LoadState {
    /// The HEAD last loaded (new commits since are announced).
    pub last_head: Option<String>,
    /// The last load read the committed snapshot (so its machines may be reused).
    from_snapshot: bool,
}

/// Loads the inventory and reports each problem as an event (and so a log line). When the conf repo is a git repository, what is served is the
/// committed state (HEAD): new commits are announced as events, and files edited by hand but
/// not committed are reported (not served, never committed by us). Otherwise the files as
/// they are on disk.
pub fn load_inventory(
    cfg: &Config,
    previous: Option<&Inventory>,
    bus: &Bus,
    state: &mut LoadState,
) -> Inventory {
    let repo = match crate::confrepo::ConfRepo::open(&cfg.conf_repo) {
        Ok(r) => r,
        Err(e) => {
            warn!("{e}; serving the files on disk");
            None
        }
    };
    let snapshot = repo
        .as_ref()
        .and_then(|r| committed_snapshot(cfg, r, bus, &mut state.last_head));
    // Machine files the snapshot did not change are taken from `previous` unread, when that
    // came from the previous snapshot and no group file changed.
    let (inv, mut problems) = match snapshot {
        Some((snap, delta)) => {
            let reuse = state.from_snapshot
                && !delta.full
                && !delta.changed.iter().any(|p| p.starts_with("groups/"));
            let unchanged = |rel: &str| reuse && delta.unchanged(rel);
            state.from_snapshot = true;
            inventory::load_reusing(&snap, &cfg.conf_repo, cfg.server_ip, previous, &unchanged)
        }
        None => {
            state.from_snapshot = false;
            inventory::load(&cfg.conf_repo, cfg.server_ip, previous)
        }
    };
    if let Some(repo) = &repo {
        for p in repo.uncommitted(inventory::DIRS).unwrap_or_default() {
            problems.push(inventory::Problem {
                path: cfg.conf_repo.join(&p),
                line: None,
                message: format!(
                    "changed but not committed, so not served; commit it: git -C {} commit {p}",
                    cfg.conf_repo.display()
                ),
            });
        }
    }
    for p in &problems {
        warn!("{p}");
        bus.emit(Event::InventoryProblem {
            path: p.path.clone(),
            line: p.line,
            message: p.message.clone(),
        });
    }
    bus.emit(Event::InventoryLoaded {
        machines: inv.machines().len(),
        profiles: inv.profiles().count(),
        problems: problems.len(),
    });
    inv
}

/// Pulls host files when their `schedule` in backup.toml says so (checked every 5 s, in the
/// system time zone); one run at a time; events go on the bus. A run missed while the daemon
/// was down is made up once, and the log says so.
async fn backup_scheduler(
    cfg: Config,
    bus: Bus,
    inv: crate::services::InventoryRx,
    cancel: CancellationToken,
) {
    use crate::backup;
    let since = jiff::Timestamp::now();
    let tz = jiff::tz::TimeZone::system();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut warned: std::collections::HashSet<String> = Default::default();
    loop {
        tokio::select! { _ = cancel.cancelled() => break, _ = tick.tick() => {} }
        let c = cfg.clone();
        // The inventory the daemon serves (the committed one), as DHCP sees it.
        let inv = inv.borrow().clone();
        let loaded = tokio::task::spawn_blocking(move || {
            backup::load_plans(&c, &inv).map(|p| (p, backup::load_status(&c)))
        })
        .await;
        let (plans, status) = match loaded {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                if warned.insert(e.to_string()) {
                    warn!("{e}; scheduled pulls wait until it is fixed");
                }
                continue;
            }
            Err(_) => continue,
        };
        for p in &plans.hosts {
            if let Some(Err(e)) = p.schedule.as_deref().map(backup::parse_schedule) {
                if warned.insert(e.clone()) {
                    warn!(host = %p.name, "backup.toml: {e}");
                }
            }
        }
        let due = backup::due_hosts(&plans, &status, since, jiff::Timestamp::now(), &tz);
        if due.is_empty() {
            continue;
        }
        for (h, missed) in &due {
            if *missed {
                info!(host = %h, "pulling now: a scheduled pull was missed (the appliance was down or busy)");
            }
        }
        let hosts: Vec<String> = due.into_iter().map(|(h, _)| h).collect();
        let (c, b) = (cfg.clone(), bus.clone());
        let run = tokio::task::spawn_blocking(move || {
            crate::commands::backup_run(
                &c,
                &plans,
                &hosts,
                &crate::confrepo::Author::daemon(),
                &|e| b.emit(e),
            )
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = run => if let Ok(Err(e)) = r { warn!("scheduled pull: {e}") },
        }
    }
}

/// Checks recipes.toml's assignments every `interval_mins` (the first round soon after start,
/// and again whenever a commit changes them):
/// drift and fixes are `recipe_result` events with user `schedule`; one round at a time, off
/// the async threads. A broken recipes.toml is logged once per distinct error.
async fn recipe_scheduler(
    cfg: Config,
    bus: Bus,
    inv: crate::services::InventoryRx,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last: Option<i64> = None;
    // A changed recipes.toml (a new commit) is checked at once, not at the next interval.
    let mut checked: Option<crate::core::recipe::Assignments> = None;
    let mut warned: std::collections::HashSet<String> = Default::default();
    loop {
        tokio::select! { _ = cancel.cancelled() => break, _ = tick.tick() => {} }
        let c = cfg.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::remote::load_assignments(&c)).await;
        let a = match loaded {
            Ok(Ok(Some(a))) if !a.assign.is_empty() => a,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                if warned.insert(e.to_string()) {
                    warn!("{e:#}; recipe checks wait until it is fixed");
                }
                continue;
            }
            Err(_) => continue,
        };
        let now = crate::clock::unix_now() as i64;
        if checked.as_ref() == Some(&a) && !crate::core::recipe::due(last, now, a.interval_mins()) {
            continue;
        }
        last = Some(now);
        checked = Some(a.clone());
        let (c, b) = (cfg.clone(), bus.clone());
        let inv = inv.borrow().clone();
        let round = tokio::task::spawn_blocking(move || {
            let rows = crate::remote::check_assignments(&c, &inv, &a, "schedule", &|e| b.emit(e));
            let drift = rows
                .iter()
                .filter(|(_, h)| h.outcome != crate::core::recipe::Outcome::Ok)
                .count();
            (rows.len(), drift)
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = round => if let Ok((n, drift)) = r {
                info!(checked = n, not_ok = drift, "recipes.toml checked");
            },
        }
    }
}

/// The reclaimer's first check after start, then its period.
const RECLAIM_FIRST: Duration = Duration::from_secs(10);
const RECLAIM_EVERY: Duration = Duration::from_secs(3600);
/// Machines reclaimed at most per check (one commit).
const RECLAIM_MAX: usize = 200;

/// Gives back auto-registered machines nobody edited and nobody saw for `[dhcp]
/// reclaim_after_days` (decided by `core::reclaim::due`): one commit deleting their files,
/// one `machine_reclaimed` event each. A file with uncommitted edits is left alone.
async fn reclaimer(
    cfg: Config,
    bus: Bus,
    inv: crate::services::InventoryRx,
    db: Arc<Mutex<LeaseDb>>,
    cancel: CancellationToken,
) {
    let after = i64::from(cfg.dhcp.reclaim_after_days) * 86_400;
    let mut wait = RECLAIM_FIRST;
    loop {
        tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(wait) => {} }
        wait = RECLAIM_EVERY;
        let now = unix_now() as i64;
        let due = {
            let inv = inv.borrow().clone();
            let db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::core::reclaim::due(inv.machines(), &db.leases, now, after, RECLAIM_MAX)
        };
        if due.is_empty() {
            continue;
        }
        let c = cfg.clone();
        let res = tokio::task::spawn_blocking(move || reclaim_commit(&c, due)).await;
        match res {
            Ok(Ok(events)) => events.into_iter().for_each(|e| bus.emit(e)),
            Ok(Err(e)) => warn!("reclaiming auto-registered machines: {e}"),
            Err(e) => warn!("reclaiming auto-registered machines: {e}"),
        }
    }
}

fn reclaim_commit(
    cfg: &Config,
    due: Vec<crate::core::reclaim::Reclaim>,
) -> Result<Vec<Event>, String> {
    use crate::clock::rfc3339;
    use crate::confrepo::{Author, Change, ConfRepo};
    let repo = ConfRepo::open(&cfg.conf_repo).map_err(|e| e.to_string())?;
    let dirty = match &repo {
        Some(r) => r.uncommitted(&["machines"]).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let (due, edited): (Vec<_>, Vec<_>) = due.into_iter().partition(|r| !dirty.contains(&r.file));
    for r in &edited {
        info!(mac = %r.mac, file = %r.file, "not reclaimed: the file has uncommitted edits");
    }
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let days = cfg.dhcp.reclaim_after_days;
    let seen = |r: &crate::core::reclaim::Reclaim| rfc3339(r.last_seen.max(0) as u64);
    let line = |r: &crate::core::reclaim::Reclaim| {
        let ip = r.ip.map(|i| format!(", {i}")).unwrap_or_default();
        format!("{} ({}{ip}): not seen since {}", r.host, r.mac, seen(r))
    };
    let msg = match due.as_slice() {
        [one] => format!(
            "Reclaim {}\n\nAuto-registered and never edited; no lease for {days} days \
             ([dhcp] reclaim_after_days). Its address is free again; to keep a machine, \
             delete its registered line.\n",
            line(one)
        ),
        many => format!(
            "Reclaim {} auto-registered machines not seen for {days} days\n\n{}\n\nNever \
             edited; no lease for {days} days ([dhcp] reclaim_after_days). To keep a machine, \
             delete its registered line.\n",
            many.len(),
            many.iter().map(line).collect::<Vec<_>>().join("\n")
        ),
    };
    let commit = match &repo {
        Some(r) => {
            let changes: Vec<Change> = due.iter().map(|r| Change::Delete(r.file.clone())).collect();
            r.commit(&changes, &Author::daemon(), &msg)
                .map_err(|e| e.to_string())?
                .map(|id| id.to_string())
        }
        None => {
            for r in &due {
                let p = cfg.conf_repo.join(&r.file);
                if let Err(e) = std::fs::remove_file(&p) {
                    warn!("cannot reclaim {}: {e}", p.display());
                }
            }
            None
        }
    };
    Ok(due
        .iter()
        .map(|r| {
            info!(mac = %r.mac, host = %r.host, "reclaimed auto-registered machine");
            Event::MachineReclaimed {
                mac: r.mac,
                ip: r.ip,
                host: r.host.clone(),
                last_seen: seen(r),
                commit: commit.clone(),
            }
        })
        .collect())
}

/// Keeps hosts' network roots (mounts, NFS exports, the NFS server) in line with the
/// inventory: at start, after every reload, and every 10 s (a server that died is started
/// again).
async fn nfsroot_keeper(
    cfg: Config,
    bus: Bus,
    mut inv: crate::services::InventoryRx,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut reported: std::collections::BTreeSet<String> = Default::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            r = inv.changed() => if r.is_err() { break },
        }
        let snapshot = inv.borrow_and_update().clone();
        let c = cfg.clone();
        let Ok(rep) = tokio::task::spawn_blocking(move || {
            crate::nfsroot::sync(&c.state_dir, &c.nfsroot.ganesha, &snapshot)
        })
        .await
        else {
            continue;
        };
        for (host, ip, base) in rep.mounted {
            info!(host, base, "network root mounted and exported");
            bus.emit(Event::NfsrootMounted { host, ip, base });
        }
        for host in rep.unmounted {
            info!(host, "network root unmounted");
            bus.emit(Event::NfsrootUnmounted { host });
        }
        if let Some(pid) = rep.started {
            info!(pid, "NFS server started");
            bus.emit(Event::NfsServerStarted { pid });
        }
        let now: std::collections::BTreeSet<String> = rep.problems.into_iter().collect();
        for p in now.difference(&reported) {
            warn!("{p}");
            bus.emit(Event::NfsrootProblem { message: p.clone() });
        }
        reported = now;
    }
}

/// Keeps the storage pool (when `pool init` made one): its daemons on the appliance running,
/// `noout` cleared for machines that are back, members missing past the grace marked out,
/// health changes recorded. Every 10 s.
async fn pool_keeper(cfg: Config, bus: Bus, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut mem = crate::pool::KeeperMemory::default();
    let mut warned = String::new();
    loop {
        tokio::select! { _ = cancel.cancelled() => break, _ = tick.tick() => {} }
        let c = cfg.clone();
        let Ok((res, back)) = tokio::task::spawn_blocking(move || {
            let r = crate::pool::keep_round(&c, &mut mem);
            (r, mem)
        })
        .await
        else {
            break;
        };
        mem = back;
        match res {
            Ok(events) => {
                warned.clear();
                for e in events {
                    bus.emit(e);
                }
            }
            Err(e) => {
                let m = e.to_string();
                if m != warned {
                    warn!("pool: {m}");
                    bus.emit(Event::PoolProblem { message: m.clone() });
                    warned = m;
                }
            }
        }
    }
}

/// Runs power.toml's on/off schedules (checked every 2 s). The time of the last check is kept
/// in `state_dir/power-last-check`, so after downtime the latest missed action per target is
/// carried out once and the missed ones are reported (`power_missed`).
async fn power_scheduler(
    cfg: Config,
    bus: Bus,
    inv: crate::services::InventoryRx,
    cancel: CancellationToken,
) {
    use crate::power::{self, schedule};
    let state = cfg.state_dir.join("power-last-check");
    let mut last = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut warned = String::new();
    loop {
        tokio::select! { _ = cancel.cancelled() => break, _ = tick.tick() => {} }
        let now = jiff::Timestamp::now();
        let c = cfg.clone();
        let inv = inv.borrow().clone();
        let res = tokio::task::spawn_blocking(move || -> Result<Vec<Event>, String> {
            let Some(s) = power::load_schedules(&c)? else {
                return Ok(Vec::new());
            };
            let due = schedule::due(&s, last, now);
            if due.is_empty() {
                return Ok(Vec::new());
            }
            let mut events = Vec::new();
            for d in due {
                if !d.missed.is_empty() {
                    info!(target = %d.target, "scheduled power {} of {} done now; missed while down: {}", d.action.as_str(), d.at, d.missed.join(", "));
                    events.push(Event::PowerMissed {
                        target: d.target.clone(),
                        missed: d.missed.clone(),
                    });
                }
                // Machines holding the pool's OSDs: noout first, so the cluster waits for them.
                if d.action == schedule::Action::Off {
                    match crate::pool::before_power_off(&c, &inv, &d.target) {
                        Ok(Some(e)) => events.push(e),
                        Ok(None) => {}
                        Err(e) => events.push(Event::PoolProblem {
                            message: format!("noout before switching {} off: {e}; they are switched off anyway, and the cluster copies their data if they stay off past mon_osd_down_out_interval", d.target),
                        }),
                    }
                }
                match power::act(&c, &inv, &d.target, d.action, &power::Methods::from(Some(&s), None)) {
                    Ok(ev) => events.extend(ev),
                    Err(e) => events.push(Event::PowerFailed {
                        host: d.target.clone(),
                        action: d.action.as_str().into(),
                        reason: e.to_string(),
                    }),
                }
            }
            Ok(events)
        })
        .await;
        match res {
            Ok(Ok(events)) => {
                for e in events {
                    bus.emit(e);
                }
                last = now;
                let _ = std::fs::write(&state, format!("{}\n", now.as_second()));
            }
            Ok(Err(e)) => {
                if e != warned {
                    warn!("{e}; power schedules wait until it is fixed");
                    warned = e;
                }
            }
            Err(_) => {}
        }
    }
}

/// Writes HEAD's inventory files to `<state_dir>/conf-snapshot` and announces commits made
/// since `last_head`. None when the repository has no commit yet.
fn committed_snapshot(
    cfg: &Config,
    repo: &crate::confrepo::ConfRepo,
    bus: &Bus,
    last_head: &mut Option<String>,
) -> Option<(std::path::PathBuf, crate::confrepo::SnapshotDelta)> {
    let head = repo.head().ok().flatten()?;
    let head_s = head.to_string();
    if last_head.as_deref() != Some(head_s.as_str()) {
        let mut new = Vec::new();
        for e in repo.log(None, 50).unwrap_or_default() {
            if last_head.as_deref() == Some(e.commit.as_str()) {
                break;
            }
            new.push(e);
        }
        // On the first load only the current commit is announced, not all of history.
        if last_head.is_none() {
            new.truncate(1);
        }
        for e in new.into_iter().rev() {
            bus.emit(Event::ConfigCommitted {
                commit: e.commit,
                author: format!("{} <{}>", e.author, e.email),
                message: e.message,
            });
        }
        *last_head = Some(head_s);
    }
    let snap = cfg.state_dir.join("conf-snapshot");
    let full = crate::confrepo::SnapshotDelta {
        full: true,
        ..Default::default()
    };
    match repo.snapshot(head, inventory::DIRS, &snap) {
        Ok(delta) => Some((snap, delta)),
        Err(crate::confrepo::RepoError::UnsafeEntry { commit, entry, why }) => {
            warn!(%commit, ?entry, "commit refused: {why}; serving the last good snapshot");
            bus.emit(Event::ConfigRefused {
                commit,
                entry,
                reason: why.into(),
            });
            // The last good snapshot was left as it was; without one, nothing is served.
            snap.is_dir()
                .then_some(snap)
                .or_else(|| {
                    let empty = cfg.state_dir.join("conf-snapshot.empty");
                    std::fs::create_dir_all(&empty).ok().map(|()| empty)
                })
                .map(|p| (p, full))
        }
        Err(e) => {
            warn!("{e}; serving the files on disk");
            None
        }
    }
}

/// Feeds every event into the web UI's last-seen table and health summary.
async fn feed_web(
    mut rx: tokio::sync::broadcast::Receiver<Arc<crate::events::Stamped>>,
    seen: crate::web::SharedSeen,
    health: crate::web::SharedHealth,
    metrics: Arc<crate::services::metrics::Metrics>,
    cancel: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let got = tokio::select! {
            _ = cancel.cancelled() => return,
            r = rx.recv() => r,
        };
        match got {
            Ok(e) => {
                metrics.observe(&e.event);
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .observe(&e.event, e.time_ms);
                health
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .observe(&e.event, e.time_ms);
            }
            Err(RecvError::Lagged(n)) => metrics.missed(n),
            Err(RecvError::Closed) => return,
        }
    }
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let bus = Bus::default();
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let transfers = TaskTracker::new();
    tasks.spawn(bus.clone().run_logger());

    tftp::check_root(&cfg.boot_dir).map_err(anyhow::Error::msg)?;
    // The audit writer subscribes before anything can emit, so no event misses the store.
    let audit_stats = Arc::new(crate::audit::writer::WriterStats::default());
    if let Some(audit) = &cfg.audit {
        // Opening may block (the MongoDB driver's blocking API): not on an async thread.
        let store = {
            let a = audit.clone();
            tokio::task::spawn_blocking(move || crate::audit::open_store(&a)).await??
        };
        let spool =
            crate::audit::spool::Spool::open(&audit.spool_dir)?.with_cap(audit.spool_max_bytes);
        info!(store = ?audit.backend, spool = %audit.spool_dir.display(), "audit store open");
        let queue = bus
            .audit_queue()
            .expect("the audit queue is taken once, here");
        tasks.spawn(crate::audit::writer::run_writer(
            queue,
            store,
            spool,
            (audit.max_age, audit.rollup_max_age),
            audit_stats.clone(),
            cancel.clone(),
        ));
    }
    // The web UI's last-seen table: every event from now on, and what the store remembers.
    let seen = crate::web::SharedSeen::default();
    let health = crate::web::SharedHealth::default();
    let metrics = Arc::new(crate::services::metrics::Metrics::new());
    tasks.spawn(feed_web(
        bus.subscribe(),
        seen.clone(),
        health.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    if let Some(a) = cfg.audit.clone() {
        let s = seen.clone();
        tokio::task::spawn_blocking(move || match crate::web::seed(&s, &a) {
            Ok(n) => info!(entries = n, "last-seen table seeded from the audit store"),
            Err(e) => warn!("last-seen table not seeded from the audit store: {e}"),
        });
    }
    let pings = crate::services::metrics::SharedPings::default();
    let mut load_state = LoadState::default();
    let inv = load_inventory(&cfg, None, &bus, &mut load_state);
    let (inv_tx, inv_rx) = watch::channel(inv);

    // Bind everything before announcing readiness.
    let mut dhcp_socks = Vec::new();
    if cfg.dhcp.mode != DhcpMode::Off {
        let mut ports = vec![cfg.dhcp.port];
        if cfg.dhcp.mode == DhcpMode::Proxy {
            ports.push(crate::services::dhcp::PROXY_PORT);
        }
        for iface in &cfg.dhcp.interfaces {
            for &port in &ports {
                let s = crate::services::dhcp::bind(iface, port)
                    .with_context(|| format!("dhcp on {iface} port {port}"))?;
                info!(iface, port, mode = ?cfg.dhcp.mode, "dhcp listening");
                dhcp_socks.push((iface.clone(), s));
            }
        }
    }
    let mut ra_socks = Vec::new();
    if cfg.dhcp.mode != DhcpMode::Off && cfg.dhcp.ipv6_empty_ra {
        for iface in &cfg.dhcp.interfaces {
            let (s, idx) = crate::services::ra::bind(iface)
                .with_context(|| format!("ipv6_empty_ra on {iface}"))?;
            info!(
                iface,
                "answering IPv6 router solicitations with an empty advertisement"
            );
            ra_socks.push((iface.clone(), s, idx));
        }
    }
    let tftp_sock = if cfg.tftp.enabled {
        let s = tftp::bind(cfg.tftp.listen)
            .await
            .with_context(|| format!("tftp on {}", cfg.tftp.listen))?;
        info!(addr = %cfg.tftp.listen, "tftp listening");
        Some(s)
    } else {
        None
    };
    let syslog_sock = match cfg.syslog {
        Some(addr) => {
            let s = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("syslog on {addr}"))?;
            info!(%addr, "syslog listening");
            Some(s)
        }
        None => None,
    };
    let mut dns_socks = Vec::new();
    if let Some(d) = &cfg.dns {
        for iface in &d.interfaces {
            let s = crate::services::dns::bind(iface, d.port)
                .with_context(|| format!("dns on {iface} port {}", d.port))?;
            let t = crate::services::dns::bind_tcp(iface, d.port)
                .with_context(|| format!("dns (tcp) on {iface} port {}", d.port))?;
            info!(iface, port = d.port, domains = ?d.domains, "dns listening (udp, tcp)");
            dns_socks.push((iface.clone(), s, t));
        }
    }
    let http_listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("http on {}", cfg.http.listen))?;
    info!(addr = %cfg.http.listen, public = %cfg.http.public_url, "http listening");

    // Only a full server keeps leases; a proxy hands out no addresses.
    let db = if cfg.dhcp.mode == DhcpMode::Server {
        let (journal, leases, skipped) = Journal::open(
            &cfg.state_dir,
            unix_now(),
            u64::from(cfg.dhcp.reclaim_after_days.max(1)) * 86_400,
        )?;
        if skipped > 0 {
            warn!(
                skipped,
                "lease journal had unreadable lines (torn write after a crash?); they were dropped"
            );
        }
        info!(leases = leases.len(), "lease journal replayed");
        Some(Arc::new(Mutex::new(LeaseDb { leases, journal })))
    } else {
        None
    };
    if let Some(db) = db
        .clone()
        .filter(|_| cfg.dhcp.register_unknown && cfg.dhcp.reclaim_after_days > 0)
    {
        tasks.spawn(reclaimer(
            cfg.clone(),
            bus.clone(),
            inv_rx.clone(),
            db,
            cancel.clone(),
        ));
    }
    if !dhcp_socks.is_empty() {
        let svc = Arc::new(DhcpService {
            cfg: cfg.dhcp.clone(),
            conf_repo: cfg.conf_repo.clone(),
            db: db.clone(),
            inventory: inv_rx.clone(),
            bus: bus.clone(),
            registrations: Default::default(),
            rejections: crate::services::flood::Rejections::new("dhcp"),
        });
        for (iface, sock) in dhcp_socks {
            tasks.spawn(svc.clone().run(iface, sock, cancel.clone()));
        }
    }
    for (iface, sock, idx) in ra_socks {
        tasks.spawn(crate::services::ra::run(iface, sock, idx, cancel.clone()));
    }
    if let Some(db) = db.clone() {
        // fdatasync the journal once a second: write() already survives a killed process.
        let c = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! { _ = c.cancelled() => break, _ = tick.tick() => {} }
                if let Err(e) = db
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .journal
                    .sync()
                {
                    warn!("{e}");
                }
            }
        });
    }
    if !dns_socks.is_empty() {
        let svc = Arc::new(crate::services::dns::DnsService {
            cfg: Arc::new(cfg.clone()),
            zone: crate::services::dns::zones(inv_rx.clone(), &cfg, cancel.clone()),
            inventory: inv_rx.clone(),
            bus: bus.clone(),
        });
        for (iface, sock, tcp) in dns_socks {
            tasks.spawn(svc.clone().run(iface, sock, cancel.clone()));
            tasks.spawn(svc.clone().run_tcp(tcp, cancel.clone()));
        }
    }
    if let Some(sock) = syslog_sock {
        tasks.spawn(crate::services::syslog::run(
            sock,
            bus.clone(),
            cancel.clone(),
        ));
    }
    if let Some(sock) = tftp_sock {
        let svc = Arc::new(tftp::TftpService::new(
            cfg.boot_dir.clone(),
            cfg.tftp.clone(),
            inv_rx.clone(),
            bus.clone(),
            transfers.clone(),
        ));
        tasks.spawn(svc.run(sock, cancel.clone()));
    }
    {
        let state = http::HttpState {
            inventory: inv_rx.clone(),
            public_url: cfg.http.public_url.clone(),
            bus: bus.clone(),
            audit: cfg.audit.clone(),
            audit_stats: audit_stats.clone(),
            conf_repo: cfg.conf_repo.clone(),
            boot_dir: cfg.boot_dir.clone(),
            auth: Arc::new(http::AuthState::new(
                crate::auth::users_path(&cfg.state_dir),
                cfg.http.hosts.clone(),
                &cfg.http.public_url,
            )),
            leases: db.clone(),
            audit_slots: Arc::new(tokio::sync::Semaphore::new(http::AUDIT_QUERIES)),
            config: Arc::new(cfg.clone()),
            seen: seen.clone(),
            health: health.clone(),
            shutdown: cancel.clone(),
            metrics: metrics.clone(),
            pings: pings.clone(),
        };
        let app = http::router(state);
        let files = Arc::new(crate::services::files::Files {
            boot_dir: cfg.boot_dir.clone(),
            bus: bus.clone(),
        });
        tasks.spawn(crate::services::files::serve(
            http_listener,
            app,
            files,
            cancel.clone(),
        ));
    }

    match crate::backup::ensure_default_key(&cfg) {
        Ok(key) => info!(key = %key.display(), "ssh key for backups and power-off"),
        Err(e) => warn!("{e}; backups and ssh power-off will fail until it exists"),
    }
    tasks.spawn(backup_scheduler(
        cfg.clone(),
        bus.clone(),
        inv_rx.clone(),
        cancel.clone(),
    ));
    tasks.spawn(recipe_scheduler(
        cfg.clone(),
        bus.clone(),
        inv_rx.clone(),
        cancel.clone(),
    ));
    tasks.spawn(nfsroot_keeper(
        cfg.clone(),
        bus.clone(),
        inv_rx.clone(),
        cancel.clone(),
    ));
    tasks.spawn(pool_keeper(cfg.clone(), bus.clone(), cancel.clone()));
    if cfg.monitor.is_some() {
        tasks.spawn(crate::services::ping::run(
            Arc::new(cfg.clone()),
            inv_rx.clone(),
            bus.clone(),
            pings.clone(),
            cancel.clone(),
        ));
    }
    tasks.spawn(power_scheduler(
        cfg.clone(),
        bus.clone(),
        inv_rx.clone(),
        cancel.clone(),
    ));

    // Inventory reloads: SIGHUP or a change under conf_repo (debounced).
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<&'static str>(8);
    let _watcher = watch_files(&cfg.conf_repo, reload_tx.clone());
    {
        let cfg = cfg.clone();
        let bus = bus.clone();
        let c = cancel.clone();
        tasks.spawn(async move {
            loop {
                let why = tokio::select! { _ = c.cancelled() => break, w = reload_rx.recv() => match w { Some(w) => w, None => break } };
                // Let a burst of editor writes settle, then reload once.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let mut whys = vec![why];
                while let Ok(w) = reload_rx.try_recv() {
                    if !whys.contains(&w) {
                        whys.push(w);
                    }
                }
                let why = whys.join("+");
                let prev = inv_tx.borrow().clone();
                let inv = load_inventory(&cfg, Some(&prev), &bus, &mut load_state);
                info!(why, machines = inv.machines().len(), "inventory reloaded");
                inv_tx.send_replace(inv);
            }
        });
    }

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut watchdog_usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut watchdog_usec) && watchdog_usec > 0 {
        let c = cancel.clone();
        let every = Duration::from_micros(watchdog_usec / 2);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! { _ = c.cancelled() => break, _ = tick.tick() => {} }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    info!("pxelator ready");

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { let _ = reload_tx.try_send("SIGHUP"); }
        }
    }
    info!("stopping: no new requests; waiting up to {GRACE:?} for transfers in flight");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    transfers.close();
    if tokio::time::timeout(GRACE, transfers.wait()).await.is_err() {
        warn!("grace period over; abandoning unfinished transfers");
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
    Ok(())
}

fn watch_files(
    dir: &std::path::Path,
    tx: tokio::sync::mpsc::Sender<&'static str>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            // Temporary files and git's object churn are ours to ignore; a moved branch or
            // HEAD (a commit, made by anyone) is a change.
            let ours = ev.paths.iter().all(|p| {
                let in_git = p.components().any(|c| c.as_os_str() == ".git");
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if in_git {
                    let s = p.to_string_lossy();
                    let ref_moved = (s.contains("/.git/refs/heads/")
                        || name == "HEAD"
                        || name == "packed-refs")
                        && !name.ends_with(".lock");
                    !ref_moved
                } else {
                    name.starts_with('.') || name.ends_with(".pxelator-tmp")
                }
            });
            if !ours && !ev.kind.is_access() {
                let _ = tx.try_send("file change");
            }
        }
    })
    .map_err(|e| warn!("file watching unavailable ({e}); reload with SIGHUP"))
    .ok()?;
    if let Err(e) = w.watch(dir, RecursiveMode::Recursive) {
        warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
        return None;
    }
    Some(w)
}
