//! Configuration: the TOML file is parsed once into [`RawConfig`] (unknown keys rejected) and
//! validated into [`Config`]. `pxelator check-config` runs exactly this code path.
//! This module never opens sockets or reads the inventory.

use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source} (is the path right? try `pxelator check-config --config FILE`)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(crate::tomlfile::TomlError),
    #[error("{path}: {key} = {value} is not valid: {why}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        why: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory holding the inventory (machines/, profiles/, conf/).
    pub conf_repo: PathBuf,
    /// Directory for runtime state (lease journal).
    pub state_dir: PathBuf,
    /// Directory of boot files served over TFTP and HTTP (kernels, loaders, initrds).
    pub boot_dir: PathBuf,
    /// The appliance's own address, given to clients as next-server / HTTP host.
    pub server_ip: Ipv4Addr,
    #[serde(default)]
    pub dhcp: RawDhcp,
    #[serde(default)]
    pub tftp: RawTftp,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<RawSubnet>,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub syslog: RawSyslog,
    #[serde(default)]
    pub nfsroot: RawNfsroot,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub monitor: RawMonitor,
}

/// `[monitor]`: ping every machine (or the groups named) and alert on changes. Off unless
/// `enabled = true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    pub enabled: Option<bool>,
    /// Seconds between two pings of a machine (default 10).
    pub interval_secs: Option<u32>,
    /// How long an answer is waited for (ms, default 1000).
    pub timeout_ms: Option<u32>,
    /// Only machines with one of these `group` params (default: every machine with an address).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Unanswered pings in a row before a machine is down (default 3); also how many slow
    /// ones make it slow.
    pub down_after: Option<u32>,
    /// Answered pings in a row before a down machine is up again (default 2).
    pub up_after: Option<u32>,
    /// Round trip (ms) over which an up machine counts as slow (default: no threshold).
    pub slow_ms: Option<f64>,
    /// URL an alert is POSTed to as JSON (host, ip, mac, state, reason, time).
    pub webhook: Option<String>,
    /// A program run for each alert (no shell), with PXELATOR_HOST, PXELATOR_IP,
    /// PXELATOR_MAC, PXELATOR_STATE and PXELATOR_REASON in its environment.
    pub command: Option<PathBuf>,
}

/// `[metrics]`: who may scrape `/metrics` without a token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Networks (CIDR) whose addresses may read /metrics without logging in, e.g. the
    /// Prometheus server's ["10.0.0.9/32"]. Everyone else needs a viewer's token.
    #[serde(default)]
    pub allow_from: Vec<String>,
}

/// `[dns]`: DNS from the inventory (A and PTR records, group names, command names), other
/// names forwarded to `upstreams`. Off unless `interfaces` names at least one interface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Interfaces to answer on (never all of them), e.g. ["br0"].
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// UDP port (default 53).
    pub port: Option<u16>,
    /// The domains the inventory's names live in (default: the subnets' `domain`s).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Resolvers other names are forwarded to, "a.b.c.d" or "a.b.c.d:port".
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// TTL of the inventory's records in seconds (default 60).
    pub ttl: Option<u32>,
    /// Command names that may run: "wake", "netboot", "local" (default none).
    #[serde(default)]
    pub commands: Vec<String>,
    /// Networks (CIDR) whose machines may send command names.
    #[serde(default)]
    pub command_from: Vec<String>,
    /// Commands one address may send a minute (default 6).
    pub command_per_minute: Option<u32>,
}

/// `[pool]`: the storage pool (Ceph) made by `pxelator pool init`; these are its sizes and the
/// keeper's grace. The cluster itself is in `<state_dir>/pool/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// How long a member may be missing before its OSD is marked out and its data copied
    /// elsewhere: "3d" (default), "12h", "30m", "90s".
    pub grace: Option<String>,
    /// osd_memory_target of a kiosk's OSD (MiB, at most 1024; default 896).
    pub kiosk_memory_mib: Option<u64>,
    /// osd_memory_target of the appliance's own OSD (MiB, default 1024).
    pub appliance_memory_mib: Option<u64>,
    /// mon_memory_target (MiB, default 512).
    pub mon_memory_mib: Option<u64>,
    /// The mgr's Dashboard API port, on 127.0.0.1 only (default 8441).
    pub dashboard_port: Option<u16>,
    /// Placement groups of the pxelator RBD pool (default 32).
    pub pg_num: Option<u32>,
    /// Extra `[global]` options for the cluster's ceph.conf (name = "value").
    #[serde(default)]
    pub ceph_options: std::collections::BTreeMap<String, String>,
}

/// `[nfsroot]`: writable network roots (profiles with `boot = "nfsroot"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNfsroot {
    /// The NFS server program (nfs-ganesha), default /usr/bin/ganesha.nfsd.
    pub ganesha: Option<PathBuf>,
    /// The program `pxelator base build` runs, default mmdebstrap (on PATH).
    pub mmdebstrap: Option<PathBuf>,
}

/// `[syslog]`: receive syslog over UDP (kiosks' `log=`). Off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyslog {
    /// e.g. "0.0.0.0:514"
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Store every event in the embedded store (default true).
    pub enabled: Option<bool>,
    /// SQLite file (default <state_dir>/audit.sqlite).
    pub path: Option<PathBuf>,
    /// `mongodb://host[:port]/[database]`: store in MongoDB instead of the embedded file
    /// (database defaults to "pxelator", collection "events").
    pub url: Option<String>,
    /// Delete events older than this many days (checked hourly); unset keeps everything.
    pub max_age_days: Option<u32>,
    /// Delete rollups (the hourly and per-minute aggregates) older than this many days
    /// (default 3650: trends for years after their events are gone).
    pub rollup_max_age_days: Option<u32>,
    /// Extra indexes on document fields: "rtt" becomes (rtt, time); "kind,ip,rtt" is a
    /// compound index on exactly those fields (it lets `avg(rtt)` by ip read only the index).
    #[serde(default)]
    pub indexes: Vec<String>,
    /// Where batches wait while the store is slow or unreachable (default <state_dir>/audit-spool).
    pub spool_dir: Option<PathBuf>,
    /// Most the spool may hold, in MiB (default 1024); beyond it events are dropped and counted.
    pub spool_max_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhcp {
    /// Interfaces to serve on (SO_BINDTODEVICE); requests arriving elsewhere are never answered.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// UDP port to listen on (67 in production; tests may move it).
    pub port: Option<u16>,
    /// "server" (default): addresses and boot files; "proxy": proxyDHCP as the PXE
    /// specification v2.1 defines it — boot files only, to PXE clients, on ports 67 and 4011,
    /// beside a DHCP server someone else runs; "off".
    pub mode: Option<String>,
    /// Write a machine file for every unknown MAC that gets a pool address.
    pub register_unknown: Option<bool>,
    /// At most this many new machines registered a minute (default 30); beyond it a MAC
    /// still gets its lease, and a `registration_limited` event says so.
    pub register_per_minute: Option<u32>,
    /// Remove an auto-registered machine that nobody edited and that held no lease for this
    /// many days (default 30; 0 keeps them forever). Checked hourly.
    pub reclaim_after_days: Option<u32>,
    /// Boot file for BIOS PXE ROMs that are not iPXE.
    pub bios_loader: Option<String>,
    /// Answer IPv6 router solicitations on the DHCP interfaces with an empty advertisement, so
    /// iPXE stops waiting ~13 s for IPv6 autoconfiguration. Only for segments with no IPv6 router.
    pub ipv6_empty_ra: Option<bool>,
    /// Boot file for UEFI x64 PXE firmware that is not iPXE.
    pub uefi_loader: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTftp {
    pub listen: Option<SocketAddr>,
    pub enabled: Option<bool>,
    /// Seconds between retransmissions when the client does not ask for a timeout.
    pub timeout_secs: Option<u8>,
    pub retries: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<SocketAddr>,
    /// How clients reach the HTTP server (default http://<server_ip>:<port>).
    pub public_url: Option<String>,
    /// Further names the API answers to in the Host header (besides server_ip, the
    /// public_url's host, localhost): a request for any other name is refused, so a web page
    /// that rebinds its own DNS name to the appliance cannot reach the API.
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    /// CIDR, e.g. "10.77.1.0/24".
    pub network: String,
    /// Inclusive dynamic range for unknown MACs, e.g. ["10.77.1.100", "10.77.1.199"].
    pub pool: Option<[Ipv4Addr; 2]>,
    pub router: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMode {
    Server,
    Proxy,
    Off,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub conf_repo: PathBuf,
    pub state_dir: PathBuf,
    pub boot_dir: PathBuf,
    pub server_ip: Ipv4Addr,
    pub dhcp: DhcpConfig,
    pub tftp: TftpConfig,
    pub http: HttpConfig,
    /// The audit store, or None when auditing is off.
    pub audit: Option<AuditConfig>,
    /// Where syslog is received, or None.
    pub syslog: Option<SocketAddr>,
    pub nfsroot: NfsrootConfig,
    pub pool: PoolConfig,
    /// None when `[dns]` names no interface.
    pub dns: Option<DnsConfig>,
    /// `[metrics] allow_from`: networks that read /metrics without a token.
    pub metrics_allow_from: Vec<(Ipv4Addr, u8)>,
    /// None unless `[monitor] enabled = true`.
    pub monitor: Option<MonitorConfig>,
}

/// `[monitor]`, validated (see [`RawMonitor`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub groups: Vec<String>,
    pub settings: crate::core::monitor::Settings,
    pub webhook: Option<String>,
    pub command: Option<PathBuf>,
}

/// `[dns]`, validated (see [`RawDns`]); also the policy [`crate::core::dns::decide`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub interfaces: Vec<String>,
    pub port: u16,
    /// Lower case, no final dot; at least one.
    pub domains: Vec<String>,
    /// The subnets whose reverse names (in-addr.arpa) are answered here.
    pub reverse: Vec<(Ipv4Addr, u8)>,
    pub upstreams: Vec<SocketAddr>,
    pub ttl: u32,
    pub commands: Vec<crate::core::dns::Command>,
    pub command_from: Vec<(Ipv4Addr, u8)>,
    pub command_per_minute: u32,
}

/// The validated `[pool]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub grace_secs: i64,
    pub sizes: crate::core::pool::Sizes,
    pub dashboard_port: u16,
    pub pg_num: u32,
    pub ceph_options: std::collections::BTreeMap<String, String>,
}

/// "3d", "12h", "30m", "90s" → seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct NfsrootConfig {
    pub ganesha: PathBuf,
    pub mmdebstrap: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuditBackend {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A MongoDB URL (`mongodb://…`).
    Mongo(String),
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub backend: AuditBackend,
    /// Events older than this are deleted (None: kept forever).
    pub max_age: Option<std::time::Duration>,
    /// Rollups older than this are deleted.
    pub rollup_max_age: std::time::Duration,
    /// Document fields to index (validated names).
    pub indexes: Vec<String>,
    pub spool_dir: PathBuf,
    /// Spool size cap in bytes.
    pub spool_max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct DhcpConfig {
    pub mode: DhcpMode,
    pub ipv6_empty_ra: bool,
    pub interfaces: Vec<String>,
    pub port: u16,
    pub register_unknown: bool,
    pub register_per_minute: u32,
    /// 0: never.
    pub reclaim_after_days: u32,
    pub net: NetConfig,
}

/// What the pure DHCP decision needs to know about the networks served.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub server_ip: Ipv4Addr,
    pub subnets: Vec<Subnet>,
    pub bios_loader: String,
    pub uefi_loader: String,
    pub http_base: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
}

impl Subnet {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & prefix_mask(self.prefix) == u32::from(self.network)
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !prefix_mask(self.prefix))
    }
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

#[derive(Debug, Clone)]
pub struct TftpConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub timeout_secs: u8,
    pub retries: u8,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    /// Host header values (lower case, no port) the API answers to.
    pub hosts: Vec<String>,
}

/// `host:port` or `[v6]:port` → the host part (as the Host header carries it).
pub fn host_without_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map_or(h, |(a, _)| &h[..a.len() + 1]);
    }
    h.rsplit_once(':').map_or(h, |(a, _)| a)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = crate::tomlfile::parse(path, text).map_err(ConfigError::Parse)?;
        raw.validate(path)
    }
}

impl RawConfig {
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: &str, value: &dyn std::fmt::Display, why: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            why: why.to_owned(),
        };
        let mode = match self.dhcp.mode.as_deref().unwrap_or("server") {
            "server" => DhcpMode::Server,
            "proxy" => DhcpMode::Proxy,
            "off" => DhcpMode::Off,
            other => {
                return Err(invalid(
                    "dhcp.mode",
                    &other,
                    "use \"server\", \"proxy\" or \"off\"",
                ))
            }
        };
        if mode != DhcpMode::Off && self.dhcp.interfaces.is_empty() {
            return Err(invalid(
                "dhcp.interfaces",
                &"[]",
                "name at least one interface to serve on (DHCP is never answered on all interfaces), or set dhcp.mode = \"off\"",
            ));
        }
        let mut subnets = Vec::new();
        for (i, s) in self.subnets.iter().enumerate() {
            let key = format!("subnet[{i}].network");
            let (net, prefix) = parse_cidr(&s.network)
                .ok_or_else(|| invalid(&key, &s.network, "expected a CIDR like 10.77.1.0/24"))?;
            let subnet = Subnet {
                network: net,
                prefix,
                pool: s.pool.map(|[a, b]| (a, b)),
                router: s.router,
                dns: s.dns.clone(),
                domain: s.domain.clone(),
                lease_secs: s.lease_secs.unwrap_or(3600),
            };
            if u32::from(net) & !prefix_mask(prefix) != 0 {
                return Err(invalid(
                    &key,
                    &s.network,
                    "host bits are set; use the network address",
                ));
            }
            if let Some((a, b)) = subnet.pool {
                let key = format!("subnet[{i}].pool");
                let shown = format!("[{a}, {b}]");
                if !subnet.contains(a) || !subnet.contains(b) {
                    return Err(invalid(
                        &key,
                        &shown,
                        &format!("both ends must lie inside {}", s.network),
                    ));
                }
                if u32::from(a) > u32::from(b) {
                    return Err(invalid(
                        &key,
                        &shown,
                        "the first address must not be above the second",
                    ));
                }
            }
            if subnet.lease_secs < 60 {
                return Err(invalid(
                    &format!("subnet[{i}].lease_secs"),
                    &subnet.lease_secs,
                    "use at least 60 seconds",
                ));
            }
            subnets.push(subnet);
        }
        if mode == DhcpMode::Server && subnets.is_empty() {
            return Err(invalid(
                "subnet",
                &"(none)",
                "add at least one [[subnet]] with network = \"a.b.c.d/len\"",
            ));
        }
        let tftp_listen = self
            .tftp
            .listen
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 69)));
        let http_listen = self
            .http
            .listen
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 80)));
        let public_url = match self.http.public_url {
            Some(u) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(invalid(
                        "http.public_url",
                        &u,
                        "must start with http:// or https://",
                    ));
                }
                u.trim_end_matches('/').to_owned()
            }
            None if http_listen.port() == 80 => format!("http://{}", self.server_ip),
            None => format!("http://{}:{}", self.server_ip, http_listen.port()),
        };
        let mut hosts = vec![
            self.server_ip.to_string(),
            "localhost".into(),
            "127.0.0.1".into(),
            "[::1]".into(),
        ];
        if !http_listen.ip().is_unspecified() {
            hosts.push(http_listen.ip().to_string());
        }
        let url_host = public_url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(rest))
            .map(host_without_port);
        hosts.extend(url_host.map(str::to_ascii_lowercase));
        for n in &self.http.names {
            if crate::inventory::check_hostname(n).is_err() && n.parse::<IpAddr>().is_err() {
                return Err(invalid(
                    "http.names",
                    n,
                    "must be host names or IP addresses",
                ));
            }
            hosts.push(n.to_ascii_lowercase());
        }
        hosts.sort();
        hosts.dedup();
        let timeout_secs = self.tftp.timeout_secs.unwrap_or(1);
        if timeout_secs == 0 {
            return Err(invalid("tftp.timeout_secs", &0, "use 1..=255"));
        }
        if self.audit.rollup_max_age_days == Some(0) {
            return Err(invalid(
                "audit.rollup_max_age_days",
                &0,
                "use at least 1 (default 3650)",
            ));
        }
        if self.audit.max_age_days == Some(0) {
            return Err(invalid(
                "audit.max_age_days",
                &0,
                "use at least 1, or remove the key to keep everything",
            ));
        }
        for spec in &self.audit.indexes {
            let bad = |f: &str| {
                f.is_empty()
                    || f.starts_with('.')
                    || !f
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            };
            if spec.split(',').map(str::trim).any(bad) {
                return Err(invalid(
                    "audit.indexes",
                    spec,
                    "a document field (letters, digits, '_' and '.'), or several joined by commas \
                     for a compound index: e.g. \"rtt\" or \"kind,ip,rtt\"",
                ));
            }
        }
        let backend = match (&self.audit.url, &self.audit.path) {
            (Some(u), Some(_)) => {
                return Err(invalid(
                    "audit.url",
                    u,
                    "set either audit.url (MongoDB) or audit.path (embedded), not both",
                ))
            }
            (Some(u), None) if u.starts_with("mongodb://") || u.starts_with("mongodb+srv://") => {
                AuditBackend::Mongo(u.clone())
            }
            (Some(u), None) => {
                return Err(invalid(
                    "audit.url",
                    u,
                    "expected mongodb://host[:port]/[database]; remove it for the embedded store",
                ))
            }
            (None, p) => AuditBackend::Sqlite(
                p.clone()
                    .unwrap_or_else(|| self.state_dir.join("audit.sqlite")),
            ),
        };
        let audit = self.audit.enabled.unwrap_or(true).then(|| AuditConfig {
            backend,
            max_age: self
                .audit
                .max_age_days
                .map(|d| std::time::Duration::from_secs(u64::from(d) * 86400)),
            rollup_max_age: std::time::Duration::from_secs(
                u64::from(self.audit.rollup_max_age_days.unwrap_or(3650)) * 86400,
            ),
            indexes: self.audit.indexes.clone(),
            spool_dir: self
                .audit
                .spool_dir
                .clone()
                .unwrap_or_else(|| self.state_dir.join("audit-spool")),
            spool_max_bytes: self
                .audit
                .spool_max_mb
                .map_or(crate::audit::spool::DEFAULT_MAX_BYTES, |mb| {
                    mb.saturating_mul(1 << 20)
                }),
        });
        let pool = {
            let p = &self.pool;
            let grace = p.grace.as_deref().unwrap_or("3d");
            let grace_secs = parse_duration(grace).ok_or_else(|| {
                invalid(
                    "pool.grace",
                    &grace,
                    "write a number and a unit: \"3d\", \"12h\", \"30m\" or \"90s\"",
                )
            })?;
            let mib = |key: &str, v: Option<u64>, default: u64, max: u64| {
                let v = v.unwrap_or(default);
                if !(64..=max).contains(&v) {
                    return Err(invalid(key, &v, &format!("give between 64 and {max} MiB")));
                }
                Ok(v << 20)
            };
            for (k, v) in &p.ceph_options {
                crate::core::pool::check_conf_word(k)
                    .and_then(|()| crate::core::pool::check_conf_word(v))
                    .map_err(|e| invalid(&format!("pool.ceph_options.{k}"), v, &e))?;
            }
            let pg_num = p.pg_num.unwrap_or(32);
            if !(1..=4096).contains(&pg_num) || !pg_num.is_power_of_two() {
                return Err(invalid(
                    "pool.pg_num",
                    &pg_num,
                    "give a power of two between 1 and 4096",
                ));
            }
            PoolConfig {
                grace_secs,
                sizes: crate::core::pool::Sizes {
                    // A kiosk lends its disk, not its memory: its OSD stays at or under 1 GiB.
                    kiosk_osd_memory_target: mib(
                        "pool.kiosk_memory_mib",
                        p.kiosk_memory_mib,
                        896,
                        1024,
                    )?,
                    appliance_osd_memory_target: mib(
                        "pool.appliance_memory_mib",
                        p.appliance_memory_mib,
                        1024,
                        16384,
                    )?,
                    mon_memory_target: mib("pool.mon_memory_mib", p.mon_memory_mib, 512, 16384)?,
                },
                dashboard_port: p.dashboard_port.unwrap_or(8441),
                pg_num,
                ceph_options: p.ceph_options.clone(),
            }
        };
        let dns = self.dns.validate(&subnets, &invalid)?;
        if dns.is_some() {
            // DHCP option 6: the appliance answers names, so subnets that name no resolver get it.
            for s in subnets.iter_mut().filter(|s| s.dns.is_empty()) {
                s.dns = vec![self.server_ip];
            }
        }
        let mut metrics_allow_from = Vec::new();
        for n in &self.metrics.allow_from {
            metrics_allow_from.push(parse_cidr(n).ok_or_else(|| {
                invalid(
                    "metrics.allow_from",
                    n,
                    "expected a CIDR like 10.0.0.9/32 (the Prometheus server)",
                )
            })?);
        }
        let monitor = match self.monitor.enabled {
            Some(true) => {
                let m = &self.monitor;
                let interval = m.interval_secs.unwrap_or(10);
                if !(1..=86_400).contains(&interval) {
                    return Err(invalid("monitor.interval_secs", &interval, "use 1..=86400"));
                }
                let timeout = m.timeout_ms.unwrap_or(1000);
                if !(10..=60_000).contains(&timeout)
                    || u64::from(timeout) > u64::from(interval) * 1000
                {
                    return Err(invalid(
                        "monitor.timeout_ms",
                        &timeout,
                        "use 10..=60000, and no more than interval_secs",
                    ));
                }
                if let Some(w) = &m.webhook {
                    if !(w.starts_with("http://") || w.starts_with("https://")) {
                        return Err(invalid(
                            "monitor.webhook",
                            w,
                            "must start with http:// or https://",
                        ));
                    }
                }
                if let Some(c) = &m.command {
                    if !c.is_absolute() {
                        return Err(invalid(
                            "monitor.command",
                            &c.display(),
                            "give the program's absolute path (it is run without a shell)",
                        ));
                    }
                }
                if m.slow_ms.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                    return Err(invalid(
                        "monitor.slow_ms",
                        &m.slow_ms.unwrap_or_default(),
                        "use a positive number of milliseconds",
                    ));
                }
                Some(MonitorConfig {
                    interval: std::time::Duration::from_secs(u64::from(interval)),
                    timeout: std::time::Duration::from_millis(u64::from(timeout)),
                    groups: m.groups.clone(),
                    settings: crate::core::monitor::Settings {
                        down_after: m.down_after.unwrap_or(3).clamp(1, 1000),
                        up_after: m.up_after.unwrap_or(2).clamp(1, 1000),
                        slow_ms: m.slow_ms,
                    },
                    webhook: m.webhook.clone(),
                    command: m.command.clone(),
                })
            }
            _ => None,
        };
        Ok(Config {
            dns,
            monitor,
            metrics_allow_from,
            audit,
            path: path.to_owned(),
            conf_repo: self.conf_repo,
            state_dir: self.state_dir,
            boot_dir: self.boot_dir,
            server_ip: self.server_ip,
            dhcp: DhcpConfig {
                mode,
                ipv6_empty_ra: self.dhcp.ipv6_empty_ra.unwrap_or(false),
                interfaces: self.dhcp.interfaces,
                port: self.dhcp.port.unwrap_or(67),
                register_unknown: self.dhcp.register_unknown.unwrap_or(true),
                register_per_minute: self.dhcp.register_per_minute.unwrap_or(30),
                reclaim_after_days: self.dhcp.reclaim_after_days.unwrap_or(30),
                net: NetConfig {
                    server_ip: self.server_ip,
                    subnets,
                    bios_loader: self
                        .dhcp
                        .bios_loader
                        .unwrap_or_else(|| "undionly.kpxe".into()),
                    uefi_loader: self
                        .dhcp
                        .uefi_loader
                        .unwrap_or_else(|| "snponly.efi".into()),
                    http_base: public_url.clone(),
                },
            },
            tftp: TftpConfig {
                enabled: self.tftp.enabled.unwrap_or(true),
                listen: tftp_listen,
                timeout_secs,
                retries: self.tftp.retries.unwrap_or(5),
            },
            http: HttpConfig {
                listen: http_listen,
                public_url,
                hosts,
            },
            syslog: self.syslog.listen,
            nfsroot: NfsrootConfig {
                ganesha: self
                    .nfsroot
                    .ganesha
                    .unwrap_or_else(|| "/usr/bin/ganesha.nfsd".into()),
                mmdebstrap: self
                    .nfsroot
                    .mmdebstrap
                    .unwrap_or_else(|| "mmdebstrap".into()),
            },
            pool,
        })
    }
}

impl RawDns {
    fn validate(
        &self,
        subnets: &[Subnet],
        invalid: &dyn Fn(&str, &dyn std::fmt::Display, &str) -> ConfigError,
    ) -> Result<Option<DnsConfig>, ConfigError> {
        if self.interfaces.is_empty() {
            return Ok(None);
        }
        let mut domains = if self.domains.is_empty() {
            subnets.iter().filter_map(|s| s.domain.clone()).collect()
        } else {
            self.domains.clone()
        };
        for d in &mut domains {
            *d = d.trim_end_matches('.').to_ascii_lowercase();
            let ok = !d.is_empty()
                && d.len() <= 200
                && d.split('.')
                    .all(|l| crate::inventory::check_hostname(l).is_ok());
            if !ok {
                return Err(invalid(
                    "dns.domains",
                    d,
                    "a domain is labels of letters, digits and '-' joined by dots, e.g. \"lab.example\"",
                ));
            }
        }
        domains.sort();
        domains.dedup();
        if domains.is_empty() {
            return Err(invalid(
                "dns.domains",
                &"[]",
                "name the inventory's domain (dns.domains = [\"lab.example\"]) or give a [[subnet]] a domain",
            ));
        }
        let mut upstreams = Vec::new();
        for u in &self.upstreams {
            let a = u
                .parse::<SocketAddr>()
                .or_else(|_| u.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| invalid("dns.upstreams", u, "give \"a.b.c.d\" or \"a.b.c.d:port\""))?;
            upstreams.push(a);
        }
        let mut commands = Vec::new();
        for c in &self.commands {
            commands.push(crate::core::dns::Command::parse(c).ok_or_else(|| {
                invalid("dns.commands", c, "use \"wake\", \"netboot\" or \"local\"")
            })?);
        }
        let mut command_from = Vec::new();
        for n in &self.command_from {
            command_from.push(parse_cidr(n).ok_or_else(|| {
                invalid("dns.command_from", n, "expected a CIDR like 10.77.1.0/24")
            })?);
        }
        if !commands.is_empty() && command_from.is_empty() {
            return Err(invalid(
                "dns.command_from",
                &"[]",
                "commands are accepted only from the networks named here: add e.g. \"10.77.1.0/24\", or remove dns.commands",
            ));
        }
        let per_minute = self.command_per_minute.unwrap_or(6);
        if per_minute == 0 {
            return Err(invalid(
                "dns.command_per_minute",
                &0,
                "use at least 1, or remove dns.commands to accept none",
            ));
        }
        Ok(Some(DnsConfig {
            interfaces: self.interfaces.clone(),
            port: self.port.unwrap_or(53),
            domains,
            reverse: subnets.iter().map(|s| (s.network, s.prefix)).collect(),
            upstreams,
            ttl: self.ttl.unwrap_or(60),
            commands,
            command_from,
            command_per_minute: per_minute,
        }))
    }
}

/// Parses "a.b.c.d/len".
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.trim().parse().ok()?;
    let len: u8 = len.trim().parse().ok()?;
    (len <= 32).then_some((ip, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
conf_repo = "/tmp/c"
state_dir = "/tmp/s"
boot_dir = "/tmp/b"
server_ip = "10.77.1.1"
[dhcp]
interfaces = ["br0"]
[[subnet]]
network = "10.77.1.0/24"
pool = ["10.77.1.100", "10.77.1.199"]
"#;

    #[test]
    fn good_config_validates_with_defaults() {
        let c = Config::parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(c.dhcp.port, 67);
        assert_eq!(c.http.public_url, "http://10.77.1.1");
        assert_eq!(
            c.dhcp.net.subnets[0].mask(),
            Ipv4Addr::new(255, 255, 255, 0)
        );
        assert!(c.dhcp.register_unknown);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let text = format!("{GOOD}\nbogus_key = 1\n");
        let e = Config::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus_key"), "{e}");
    }

    #[test]
    fn pool_outside_subnet_names_key_and_fix() {
        let text = GOOD.replace("10.77.1.199", "10.77.2.5");
        let e = Config::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("subnet[0].pool") && e.contains("inside 10.77.1.0/24"),
            "{e}"
        );
    }

    #[test]
    fn dhcp_without_interface_is_refused() {
        let text = GOOD.replace("interfaces = [\"br0\"]", "");
        let e = Config::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dhcp.interfaces"), "{e}");
    }

    #[test]
    fn cidr_host_bits_are_refused() {
        let text = GOOD.replace("10.77.1.0/24", "10.77.1.3/24");
        assert!(Config::parse(Path::new("t.toml"), &text).is_err());
    }

    #[test]
    fn dns_section_validates_and_names_what_to_fix() {
        let on = format!("{GOOD}\n[dns]\ninterfaces = [\"br0\"]\ndomains = [\"Lab.Example.\"]\nupstreams = [\"10.0.0.53\", \"10.0.0.54:5353\"]\n");
        let c = Config::parse(Path::new("t.toml"), &on).unwrap();
        let d = c.dns.as_ref().unwrap();
        assert_eq!(d.domains, vec!["lab.example".to_string()]);
        assert_eq!(d.upstreams[1], "10.0.0.54:5353".parse().unwrap());
        assert_eq!(d.reverse, vec![(Ipv4Addr::new(10, 77, 1, 0), 24)]);
        assert_eq!(
            c.dhcp.net.subnets[0].dns,
            vec![c.server_ip],
            "option 6 points at us"
        );
        assert!(Config::parse(Path::new("t.toml"), GOOD)
            .unwrap()
            .dns
            .is_none());
        let bad = |extra: &str| {
            Config::parse(Path::new("t.toml"), &format!("{on}{extra}"))
                .unwrap_err()
                .to_string()
        };
        let e = bad("commands = [\"wake\"]\n");
        assert!(e.contains("dns.command_from"), "{e}");
        let e = bad("commands = [\"reboot\"]\ncommand_from = [\"10.77.1.0/24\"]\n");
        assert!(e.contains("dns.commands") && e.contains("\"wake\""), "{e}");
        let no_domain = format!("{GOOD}\n[dns]\ninterfaces = [\"br0\"]\n");
        let e = Config::parse(Path::new("t.toml"), &no_domain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.domains"), "{e}");
    }
}
