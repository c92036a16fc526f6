//! The audit vocabulary: everything that happened, in one enum. Services emit these on the
//! event bus; logs and (later) the audit store use the same fixed field names:
//! `mac`, `ip`, `xid`, `iface`, `host`, `file`, `bytes`, `peer`.
use super::mac::Mac;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A DHCP/BOOTP reply was sent.
    DhcpReply {
        reply: String,
        mac: Mac,
        ip: Option<Ipv4Addr>,
        xid: u32,
        iface: String,
        host: Option<String>,
        file: Option<String>,
    },
    /// A DHCP request was deliberately not answered, and why.
    DhcpIgnored {
        request: String,
        mac: Mac,
        xid: u32,
        iface: String,
        reason: String,
    },
    LeaseReleased {
        mac: Mac,
        ip: Ipv4Addr,
        iface: String,
    },
    LeaseDeclined {
        mac: Mac,
        ip: Ipv4Addr,
        iface: String,
    },
    /// An unknown MAC got a pool address and was written into the inventory.
    MachineRegistered {
        mac: Mac,
        ip: Ipv4Addr,
        host: String,
        path: PathBuf,
    },
    /// A new machine that was not registered because `[dhcp] register_per_minute` were
    /// registered already this minute (it keeps its lease). One event per minute that hit
    /// the cap, for its first refused MAC.
    RegistrationLimited {
        mac: Mac,
        ip: Ipv4Addr,
        limit: u32,
    },
    /// An auto-registered machine nobody edited and nobody saw for `[dhcp]
    /// reclaim_after_days` was removed from the inventory (its file deleted in `commit`).
    MachineReclaimed {
        mac: Mac,
        ip: Option<Ipv4Addr>,
        host: String,
        /// RFC 3339: the later of its registration and the end of its last lease.
        last_seen: String,
        commit: Option<String>,
    },
    /// A commit in the conf repo, seen by the daemon (its own, the CLI's, or a hand commit).
    ConfigCommitted {
        commit: String,
        author: String,
        message: String,
    },
    /// A commit whose tree holds an entry that must never reach the disk (`..`, `.git`, a
    /// control character…): nothing of it is served, the last good snapshot is.
    ConfigRefused {
        commit: String,
        entry: String,
        reason: String,
    },
    /// Host files pulled over ssh into the conf repo (`commit` None: nothing changed).
    BackupPulled {
        host: String,
        files: usize,
        changed: usize,
        added: usize,
        removed: usize,
        commit: Option<String>,
        /// Files over the per-file cap, not read: "path (N bytes)".
        oversize: Vec<String>,
        /// From the first connection attempt to the pull's end (retries included).
        duration_ms: u64,
    },
    /// A pull or restore that failed (after `attempts` tries).
    BackupFailed {
        host: String,
        attempts: u32,
        reason: String,
    },
    /// A host file written back from history.
    BackupRestored {
        host: String,
        path: String,
        rev: String,
    },
    /// A kiosk fetched its boot script: which profile (image) and kernel arguments it boots.
    KioskBooted {
        mac: Mac,
        host: Option<String>,
        profile: String,
        /// The live image and version booted (`name-vN`), when the profile names one.
        image: Option<String>,
        args: String,
    },
    /// A one-time boot override set (`next`: "local" or "netboot"; None: cleared).
    NextBootSet {
        mac: Mac,
        host: Option<String>,
        next: Option<String>,
        user: String,
    },
    /// A one-time boot override used: the machine got its boot script (or pxelinux config)
    /// with it, and it is gone.
    NextBootUsed {
        mac: Mac,
        host: Option<String>,
        next: String,
    },
    /// A power action sent to a machine (`method`: "wol", "amt" or "ssh"; `target`: where it
    /// went).
    PowerRequested {
        host: String,
        mac: Mac,
        action: String,
        method: String,
        target: String,
    },
    /// A live image imported (`pxelator image import`): stored as `name-v<version>`.
    ImageImported {
        name: String,
        version: u32,
        source: String,
        squashfs_sha256: String,
    },
    /// `pxelator appliance update` wrote a system slot, to be booted once on trial.
    ApplianceSlotWritten {
        slot: String,
        version: String,
        sha256: String,
    },
    /// The trial boot of an updated slot passed its health check: it is now the system.
    ApplianceUpdated {
        slot: String,
        version: String,
        from_slot: String,
        from_version: String,
    },
    /// The trial boot of an updated slot failed its health check; the appliance reboots and
    /// GRUB returns to the previous slot.
    ApplianceUpdateFailed {
        slot: String,
        version: String,
        reason: String,
    },
    /// GRUB booted the previous slot because the trial of `failed_slot` never confirmed.
    ApplianceRolledBack {
        failed_slot: String,
        failed_version: String,
        slot: String,
        version: String,
    },
    /// A machine's power state as read from it (Intel AMT: `value` is the CIM PowerState).
    PowerStateSeen {
        host: String,
        mac: Mac,
        state: String,
        value: u16,
        target: String,
    },
    /// Scheduled power actions that were not carried out when due (the appliance was down);
    /// only the latest one per target is done afterwards.
    PowerMissed {
        target: String,
        missed: Vec<String>,
    },
    /// A power action that could not be carried out.
    PowerFailed {
        host: String,
        action: String,
        reason: String,
    },
    /// A syslog message received (`host`: the name the sender gave itself; the audit store
    /// adds the inventory's name for the sender's IP).
    Syslog {
        peer: SocketAddr,
        facility: u8,
        severity: &'static str,
        host: Option<String>,
        app: Option<String>,
        message: String,
    },
    /// A packet that could not be decoded (or was refused before any decision).
    PacketRejected {
        proto: &'static str,
        peer: SocketAddr,
        iface: String,
        bytes: usize,
        reason: String,
    },
    /// Events from one source dropped by its rate limit in the last second (`services::flood`):
    /// `what` is the kind that was dropped (`syslog`, `packet_rejected`).
    Suppressed {
        proto: &'static str,
        what: &'static str,
        ip: std::net::IpAddr,
        count: u64,
    },
    /// A protocol handler panicked on a packet; the panic was caught at the task boundary and
    /// the service went on. `packet` is the packet's first bytes in hex (at most 512 bytes).
    HandlerPanicked {
        proto: &'static str,
        peer: SocketAddr,
        bytes: usize,
        packet: String,
        message: String,
    },
    /// A DNS query answered (`via`: "inventory", "forwarded" or "error"; `rcode` as dig
    /// shows it). Each asker's queries are rate-limited as events (`suppressed`).
    DnsAnswered {
        peer: SocketAddr,
        name: String,
        qtype: String,
        rcode: String,
        via: &'static str,
    },
    /// A command name carried out (`wake.kiosk7.<domain>`): `outcome` "done" or why it failed.
    DnsCommand {
        peer: SocketAddr,
        command: String,
        host: String,
        mac: Mac,
        outcome: String,
    },
    /// A DNS query refused (a command not enabled, an asker not allowed, over its rate, no
    /// upstream for an outside name), and why.
    DnsRefused {
        peer: SocketAddr,
        name: String,
        reason: String,
    },
    /// One ping of a machine by the monitor: `rtt` in milliseconds, absent when it went
    /// unanswered (`lost`). "average ping rtt per ip" is `audit aggregate` over these.
    Ping {
        host: String,
        ip: Ipv4Addr,
        mac: Mac,
        #[serde(skip_serializing_if = "Option::is_none")]
        rtt: Option<f64>,
        lost: bool,
    },
    /// A machine's state as the ping monitor sees it changed: "up", "down", "slow" or
    /// "normal" (back under the slow threshold), and why.
    MachineState {
        host: String,
        ip: Ipv4Addr,
        mac: Mac,
        state: String,
        reason: String,
    },
    /// An alert for a machine's change delivered (`via`: "webhook" or "command"); `outcome`
    /// "sent", or why it was not.
    AlertSent {
        host: String,
        state: String,
        via: &'static str,
        outcome: String,
    },
    /// A packet capture taken (`pxelator capture`, `POST /api/capture`): where, of what, how
    /// much, why it stopped, who asked, and where the pcap went.
    CaptureTaken {
        iface: String,
        filter: String,
        packets: u64,
        bytes: u64,
        secs: f64,
        stopped_by: String,
        user: String,
        file: String,
    },
    TftpStarted {
        peer: SocketAddr,
        file: String,
        blksize: u16,
        windowsize: u16,
        tsize: Option<u64>,
    },
    TftpFinished {
        peer: SocketAddr,
        file: String,
        bytes: u64,
        duration_ms: u64,
    },
    TftpFailed {
        peer: SocketAddr,
        file: String,
        bytes: u64,
        reason: String,
    },
    HttpServed {
        peer: SocketAddr,
        file: String,
        status: u16,
        bytes: Option<u64>,
        mac: Option<Mac>,
        /// The authenticated user who made the request (API), if any.
        user: Option<String>,
    },
    /// A login or API credential that was refused (`user`: the name tried, if any).
    AuthFailed {
        peer: SocketAddr,
        user: Option<String>,
        reason: String,
    },
    /// `/boot/<mac>.ipxe` asked for by an address that does not hold that MAC's lease: the
    /// script (and the kernel arguments in it) is not given out.
    BootScriptRefused {
        peer: SocketAddr,
        mac: Mac,
        reason: String,
    },
    /// `pxelator base build` made a new version of a base for network roots.
    BaseBuilt {
        name: String,
        version: u32,
        recipe: String,
        packages: usize,
        bytes: u64,
        duration_ms: u64,
    },
    /// A base version was removed (`pxelator base rm`).
    BaseRemoved {
        name: String,
        version: u32,
    },
    /// A host's overlay root was mounted over a base version and exported to its address.
    NfsrootMounted {
        host: String,
        ip: Ipv4Addr,
        base: String,
    },
    /// A host's root was unmounted (it no longer boots an NFS root).
    NfsrootUnmounted {
        host: String,
    },
    /// The NFS server (nfs-ganesha) was started by pxelator.
    NfsServerStarted {
        pid: i32,
    },
    /// Something keeps a host from its NFS root (base not built, no address, mount refused…).
    NfsrootProblem {
        message: String,
    },
    /// `pxelator overlay promote`: a new base version from a base and a host's chosen changes.
    BasePromoted {
        name: String,
        version: u32,
        from: String,
        host: String,
        paths: Vec<String>,
    },
    /// A host's overlay (upper directory) was written to a tar.
    OverlaySnapshot {
        host: String,
        base: String,
        file: PathBuf,
        bytes: u64,
        /// Its copy in the storage pool (object name), when the appliance has a pool.
        pool_copy: Option<String>,
    },
    /// `pxelator overlay reset`: the host's overlay starts again from its base at its next boot.
    OverlayResetRequested {
        host: String,
    },
    /// Done as the host booted: its overlay started again from `base`, the old one kept in
    /// `snapshot`.
    OverlayReset {
        host: String,
        base: String,
        snapshot: PathBuf,
    },
    /// `pxelator restore-vm`: a new machine whose root is a base plus a host's backed-up
    /// files at a revision.
    RestoredVm {
        host: String,
        rev: String,
        name: String,
        ip: Ipv4Addr,
        mac: Mac,
        files: usize,
    },
    /// Done as the host booted: its overlay moved onto a newer version of its base.
    OverlayRebased {
        host: String,
        from: String,
        to: String,
    },
    /// `pxelator pool init` made the storage pool (Ceph) with the appliance's mon, mgr and OSD.
    PoolInitialized {
        fsid: String,
        osd: u32,
        disk: PathBuf,
    },
    /// pxelator started one of the pool's daemons on the appliance (mon, mgr, its OSD).
    PoolDaemonStarted {
        daemon: String,
        pid: i32,
    },
    /// A member fetched its OSD's join material; `created` when its OSD was made for it now.
    PoolJoined {
        host: String,
        osd: u32,
        peer: SocketAddr,
        created: bool,
    },
    /// A join request was refused (wrong address, wrong token, no pool_disk).
    PoolJoinRefused {
        host: String,
        peer: SocketAddr,
        reason: String,
    },
    /// The pool's health changed (HEALTH_OK, HEALTH_WARN, HEALTH_ERR) with its checks.
    PoolHealth {
        status: String,
        checks: Vec<String>,
    },
    OsdUp {
        osd: u32,
        host: String,
    },
    OsdDown {
        osd: u32,
        host: String,
    },
    /// `noout` set on these OSDs before their machines were switched off (power `target`).
    NooutSet {
        target: String,
        osds: Vec<u32>,
        hosts: Vec<String>,
    },
    /// A machine is back: the `noout` set before its power-off is cleared.
    NooutCleared {
        osd: u32,
        host: String,
    },
    /// An OSD marked out: its data is copied to the others (`reason`: grace, drain).
    OsdMarkedOut {
        osd: u32,
        host: String,
        reason: String,
        down_secs: Option<i64>,
    },
    /// An OSD marked out for being missing is back and marked in.
    OsdMarkedIn {
        osd: u32,
        host: String,
    },
    /// `pxelator pool rm`: the OSD was purged from the cluster.
    OsdRemoved {
        osd: u32,
        host: String,
    },
    /// An offsite copy written into the pool (RADOS namespace `copies`): after backups that
    /// committed, the conf repo (host files, inventory, history) as a git bundle.
    PoolCopyStored {
        what: String,
        object: String,
        bytes: u64,
    },
    /// Something keeps the pool from its work (a daemon that will not start, the API down…).
    PoolProblem {
        message: String,
    },
    /// `pxelator run`: one command on machines at once; who ran it and how each host ended.
    RunFinished {
        user: String,
        command: String,
        targets: Vec<String>,
        results: Vec<RunResult>,
        duration_ms: u64,
    },
    /// A recipe checked (and, in apply mode, applied) on one host: `outcome` ok, drift, fixed
    /// or failed; `user` is the admin, or `schedule` for the daemon's assignment checks.
    RecipeResult {
        recipe: String,
        host: String,
        mode: String,
        outcome: String,
        user: String,
        message: Option<String>,
        duration_ms: u64,
    },
    /// `recipe capture`: a recipe made from a host file's history, committed.
    RecipeCaptured {
        recipe: String,
        from: String,
        user: String,
        commit: Option<String>,
    },
    InventoryLoaded {
        machines: usize,
        profiles: usize,
        problems: usize,
    },
    InventoryProblem {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

impl Event {
    /// Short name of the event kind, as used in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DhcpReply { .. } => "dhcp_reply",
            Event::DhcpIgnored { .. } => "dhcp_ignored",
            Event::LeaseReleased { .. } => "lease_released",
            Event::LeaseDeclined { .. } => "lease_declined",
            Event::MachineRegistered { .. } => "machine_registered",
            Event::RegistrationLimited { .. } => "registration_limited",
            Event::MachineReclaimed { .. } => "machine_reclaimed",
            Event::ConfigCommitted { .. } => "config_committed",
            Event::ConfigRefused { .. } => "config_refused",
            Event::BackupPulled { .. } => "backup_pulled",
            Event::BackupFailed { .. } => "backup_failed",
            Event::BackupRestored { .. } => "backup_restored",
            Event::KioskBooted { .. } => "kiosk_booted",
            Event::NextBootSet { .. } => "next_boot_set",
            Event::NextBootUsed { .. } => "next_boot_used",
            Event::PowerRequested { .. } => "power_requested",
            Event::PowerFailed { .. } => "power_failed",
            Event::PowerStateSeen { .. } => "power_state_seen",
            Event::ImageImported { .. } => "image_imported",
            Event::ApplianceSlotWritten { .. } => "appliance_slot_written",
            Event::ApplianceUpdated { .. } => "appliance_updated",
            Event::ApplianceUpdateFailed { .. } => "appliance_update_failed",
            Event::ApplianceRolledBack { .. } => "appliance_rolled_back",
            Event::PowerMissed { .. } => "power_missed",
            Event::PacketRejected { .. } => "packet_rejected",
            Event::HandlerPanicked { .. } => "handler_panicked",
            Event::Suppressed { .. } => "suppressed",
            Event::Syslog { .. } => "syslog",
            Event::CaptureTaken { .. } => "capture_taken",
            Event::Ping { .. } => "ping",
            Event::MachineState { .. } => "machine_state",
            Event::AlertSent { .. } => "alert_sent",
            Event::RunFinished { .. } => "run_finished",
            Event::RecipeResult { .. } => "recipe_result",
            Event::RecipeCaptured { .. } => "recipe_captured",
            Event::DnsAnswered { .. } => "dns_answered",
            Event::DnsCommand { .. } => "dns_command",
            Event::DnsRefused { .. } => "dns_refused",
            Event::TftpStarted { .. } => "tftp_started",
            Event::TftpFinished { .. } => "tftp_finished",
            Event::TftpFailed { .. } => "tftp_failed",
            Event::HttpServed { .. } => "http_served",
            Event::AuthFailed { .. } => "auth_failed",
            Event::BootScriptRefused { .. } => "boot_script_refused",
            Event::BaseBuilt { .. } => "base_built",
            Event::BaseRemoved { .. } => "base_removed",
            Event::NfsrootMounted { .. } => "nfsroot_mounted",
            Event::NfsrootUnmounted { .. } => "nfsroot_unmounted",
            Event::NfsServerStarted { .. } => "nfs_server_started",
            Event::NfsrootProblem { .. } => "nfsroot_problem",
            Event::BasePromoted { .. } => "base_promoted",
            Event::OverlaySnapshot { .. } => "overlay_snapshot",
            Event::OverlayResetRequested { .. } => "overlay_reset_requested",
            Event::OverlayReset { .. } => "overlay_reset",
            Event::OverlayRebased { .. } => "overlay_rebased",
            Event::RestoredVm { .. } => "restored_vm",
            Event::PoolInitialized { .. } => "pool_initialized",
            Event::PoolDaemonStarted { .. } => "pool_daemon_started",
            Event::PoolJoined { .. } => "pool_joined",
            Event::PoolJoinRefused { .. } => "pool_join_refused",
            Event::PoolHealth { .. } => "pool_health",
            Event::OsdUp { .. } => "osd_up",
            Event::OsdDown { .. } => "osd_down",
            Event::NooutSet { .. } => "noout_set",
            Event::NooutCleared { .. } => "noout_cleared",
            Event::OsdMarkedOut { .. } => "osd_marked_out",
            Event::OsdMarkedIn { .. } => "osd_marked_in",
            Event::OsdRemoved { .. } => "osd_removed",
            Event::PoolCopyStored { .. } => "pool_copy_stored",
            Event::PoolProblem { .. } => "pool_problem",
            Event::InventoryLoaded { .. } => "inventory_loaded",
            Event::InventoryProblem { .. } => "inventory_problem",
        }
    }
}

/// How one host of a `pxelator run` ended: `outcome` ok (exit 0), failed (another exit),
/// unreachable, timeout or host_key_changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    pub host: String,
    pub outcome: String,
    pub exit: Option<i32>,
    pub duration_ms: u64,
}
