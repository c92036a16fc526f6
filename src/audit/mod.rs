//! The audit store: every event on the bus becomes one queryable document, in the embedded
//! SQLite file (default) or in MongoDB (`audit.url`). Only this module touches a store.
//!
//! - [`AuditStore`]: what a backend does (insert, find, aggregate, last-seen, explain, prune);
//!   [`sqlite::SqliteStore`] and [`mongo::MongoStore`] implement it with one query language
//!   ([`query`]: MongoDB-style filters and pipelines, validated the same way for both).
//! - [`writer`]: drains the bus's audit queue; protocol tasks never wait on the store. Batches
//!   go to a store thread through a small bounded channel; when that is full or the store
//!   fails, they go to the on-disk [`spool`] and are replayed in order when the store returns.
//!   Every record carries a unique id ([`record_id`]), and both stores ignore an id they
//!   already hold, so a replay never writes an event twice.
//! - [`migrate`]: CouchDB dump import, JSON lines and mongorestore-compatible BSON export.
//!
//! Embedded schema (readable with the stock `sqlite3` CLI):
//! `events(id, time_ms, source, kind, mac, ip, host, doc)` with `doc` the event as JSON.
pub mod migrate;
pub mod mongo;
pub mod query;
pub mod rollup;
pub mod spool;
pub mod sqlite;
pub mod writer;

use crate::config::{AuditBackend, AuditConfig};
use crate::core::event::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store {path}: {source} (check audit.path in the config and that the directory is writable)")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("audit store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("audit store {url}: {source} (check audit.url and that MongoDB is reachable)")]
    Mongo {
        url: String,
        source: Box<mongodb::error::Error>,
    },
    #[error(transparent)]
    Query(#[from] query::QueryError),
    #[error("{0:?} is neither a MAC, an IPv4 address nor a hostname")]
    BadWho(String),
    #[error("audit spool {path}: {source} (check audit.spool_dir and free disk space)")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit spool {path} is full ({max_mb} MiB): the audit store has been away too long; events are dropped and counted until it is back (raise [audit] spool_max_mb or free the store)")]
    SpoolFull { path: PathBuf, max_mb: u64 },
    #[error("{0}")]
    Other(String),
}

/// A backend of the audit store. Queries take the shared query language of [`query`].
pub trait AuditStore: Send {
    /// Creates the collection/table and indexes; called before the first insert and again
    /// after a failure (MongoDB may be unreachable at start).
    fn prepare(&mut self) -> Result<(), AuditError>;
    /// Stores records; a record whose id is already stored is skipped (replays are safe).
    fn insert(&mut self, rows: &[Record]) -> Result<usize, AuditError>;
    /// Deletes events older than `before_ms`; returns how many went.
    fn prune(&mut self, before_ms: i64) -> Result<u64, AuditError>;
    /// Deletes rollup rows of buckets that start before `before_ms` (their own retention,
    /// longer than the events'); how many. Stores without rollups have none.
    fn prune_rollups(&mut self, _before_ms: i64) -> Result<u64, AuditError> {
        Ok(0)
    }
    fn count(&self) -> Result<u64, AuditError>;
    /// Documents matching a filter, each with `time` (RFC 3339), `time_ms`, `source`, `kind`
    /// and the (enriched) `mac`/`ip`/`host` beside the event's own fields, handed to `f` as the
    /// backend's cursor yields them; `f` returning an error stops the query (the reader went
    /// away).
    fn find_each(
        &self,
        filter: &Value,
        sort: Option<&Value>,
        limit: Option<u64>,
        f: &mut dyn FnMut(Value) -> Result<(), AuditError>,
    ) -> Result<(), AuditError>;
    /// [`AuditStore::find_each`], collected.
    fn find(
        &self,
        filter: &Value,
        sort: Option<&Value>,
        limit: Option<u64>,
    ) -> Result<Vec<Value>, AuditError> {
        let mut out = Vec::new();
        self.find_each(filter, sort, limit, &mut |d| {
            out.push(d);
            Ok(())
        })?;
        Ok(out)
    }
    /// Runs an aggregation pipeline; one document per group.
    fn aggregate(&self, pipeline: &Value) -> Result<Vec<Value>, AuditError>;
    /// Which index the query would use, in the backend's words.
    fn explain(&self, filter: &Value, sort: Option<&Value>) -> Result<Vec<String>, AuditError>;
    /// Which index an aggregation pipeline would use.
    fn explain_aggregate(&self, pipeline: &Value) -> Result<Vec<String>, AuditError>;
    /// Every document in time order with its record id, for export.
    fn scan(
        &self,
        f: &mut dyn FnMut(i64, Value) -> Result<(), AuditError>,
    ) -> Result<(), AuditError>;

    /// The latest event for a MAC, an IPv4 address or a hostname (uses that field's index).
    fn last_seen(&self, who: &str) -> Result<Option<Value>, AuditError> {
        let filter = who_filter(who)?;
        Ok(self
            .find(&filter, Some(&serde_json::json!({"time": -1})), Some(1))?
            .into_iter()
            .next())
    }
}

/// `{"mac": …}`, `{"ip": …}` or `{"host": …}` for a MAC (any notation), an IPv4 address or a
/// hostname.
pub fn who_filter(who: &str) -> Result<Value, AuditError> {
    use crate::core::mac::Mac;
    if let Ok(m) = who.parse::<Mac>() {
        return Ok(serde_json::json!({ "mac": m.to_string() }));
    }
    if who.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(serde_json::json!({ "ip": who }));
    }
    if !who.is_empty()
        && who
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Ok(serde_json::json!({ "host": who }));
    }
    Err(AuditError::BadWho(who.to_owned()))
}

/// Opens the configured store for writing (the daemon, imports).
pub fn open_store(cfg: &AuditConfig) -> Result<Box<dyn AuditStore>, AuditError> {
    Ok(match &cfg.backend {
        AuditBackend::Sqlite(p) => Box::new(sqlite::SqliteStore::open(p, &cfg.indexes)?),
        AuditBackend::Mongo(u) => Box::new(mongo::MongoStore::open(u, &cfg.indexes)?),
    })
}

/// Opens the configured store for queries (CLI, HTTP API) while the daemon writes.
pub fn open_reader(cfg: &AuditConfig) -> Result<Box<dyn AuditStore>, AuditError> {
    open_bounded_reader(cfg, None)
}

/// A reader whose queries stop (with an error) once `stop` says so — checked every few
/// thousand SQLite steps: a deadline, or the client that asked having gone away. (MongoDB
/// readers are not interrupted this way.)
pub fn open_bounded_reader(
    cfg: &AuditConfig,
    stop: Option<Box<dyn FnMut() -> bool + Send>>,
) -> Result<Box<dyn AuditStore>, AuditError> {
    Ok(match &cfg.backend {
        AuditBackend::Sqlite(p) => {
            let mut s = sqlite::SqliteStore::open_read_only(p)?;
            if let Some(stop) = stop {
                s.interrupt_when(stop)?;
            }
            Box::new(s)
        }
        AuditBackend::Mongo(u) => {
            let s = mongo::MongoStore::open(u, &[])?;
            Box::new(match stop {
                // MongoDB runs the query on its side: it gets the deadline as maxTimeMS; a
                // reader that goes away stops the cursor at its next document.
                Some(_) => s.with_max_time(QUERY_TIME),
                None => s,
            })
        }
    })
}

/// How long one bounded audit query may run (the API's readers).
pub const QUERY_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The fields of a configured index: `"rtt"` → (rtt, time), `"kind,ip,rtt"` → exactly those.
/// Also the index's name: `events_by_rtt`, `events_by_kind_ip_rtt`.
pub fn index_spec(spec: &str) -> (String, Vec<String>) {
    let mut fields: Vec<String> = spec.split(',').map(|f| f.trim().to_owned()).collect();
    let name = format!("events_by_{}", fields.join("_").replace('.', "_"));
    if fields.len() == 1 {
        fields.push("time".into());
    }
    (name, fields)
}

/// Stores events emitted outside the daemon (CLI runs: backups, restores) directly; if the
/// store cannot take them now, they go to the spool, which the daemon replays.
pub fn record_events(cfg: &AuditConfig, events: &[Event]) -> Result<(), AuditError> {
    if events.is_empty() {
        return Ok(());
    }
    let now = crate::clock::unix_now_ms();
    // A random sequence so ids do not collide with the daemon's own in the same millisecond.
    let base = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    };
    let rows: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Record::from_event(e, now, base.wrapping_add(i as u64)))
        .collect();
    let stored = open_store(cfg).and_then(|mut s| {
        s.prepare()?;
        s.insert(&rows)
    });
    match stored {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!("{e}; the events wait in the spool for the daemon");
            spool::Spool::open(&cfg.spool_dir)?
                .with_cap(cfg.spool_max_bytes)
                .push(&rows)
        }
    }
}

/// A record id: emit time in the high bits, a per-process sequence in the low 20, so ids sort
/// by time and one id names one event even across restarts and spool replays.
pub fn record_id(time_ms: i64, seq: u64) -> i64 {
    (time_ms << 20) | (seq & 0xF_FFFF) as i64
}

/// One stored document: the indexed columns plus the full event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: i64,
    pub time_ms: i64,
    pub source: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub host: Option<String>,
    pub doc: Value,
}

pub fn source_of(e: &Event) -> &'static str {
    match e {
        Event::DhcpReply { .. }
        | Event::DhcpIgnored { .. }
        | Event::LeaseReleased { .. }
        | Event::LeaseDeclined { .. }
        | Event::MachineRegistered { .. }
        | Event::MachineReclaimed { .. }
        | Event::RegistrationLimited { .. } => "dhcp",
        Event::PacketRejected { proto, .. }
        | Event::HandlerPanicked { proto, .. }
        | Event::Suppressed { proto, .. } => proto,
        Event::TftpStarted { .. } | Event::TftpFinished { .. } | Event::TftpFailed { .. } => "tftp",
        Event::DnsAnswered { .. } | Event::DnsCommand { .. } | Event::DnsRefused { .. } => "dns",
        Event::Ping { .. } | Event::MachineState { .. } | Event::AlertSent { .. } => "monitor",
        Event::CaptureTaken { .. } => "capture",
        Event::RunFinished { .. } | Event::RecipeResult { .. } | Event::RecipeCaptured { .. } => {
            "remote"
        }
        Event::HttpServed { .. } | Event::AuthFailed { .. } | Event::BootScriptRefused { .. } => {
            "http"
        }
        Event::InventoryLoaded { .. } | Event::InventoryProblem { .. } => "inventory",
        Event::ConfigCommitted { .. } | Event::ConfigRefused { .. } => "config",
        Event::KioskBooted { .. } => "kiosk",
        Event::NextBootSet { .. } | Event::NextBootUsed { .. } => "boot",
        Event::ImageImported { .. } => "image",
        Event::BaseBuilt { .. }
        | Event::BaseRemoved { .. }
        | Event::NfsrootMounted { .. }
        | Event::NfsrootUnmounted { .. }
        | Event::NfsServerStarted { .. }
        | Event::NfsrootProblem { .. }
        | Event::BasePromoted { .. }
        | Event::OverlaySnapshot { .. }
        | Event::OverlayResetRequested { .. }
        | Event::OverlayReset { .. }
        | Event::OverlayRebased { .. }
        | Event::RestoredVm { .. } => "nfsroot",
        Event::ApplianceSlotWritten { .. }
        | Event::ApplianceUpdated { .. }
        | Event::ApplianceUpdateFailed { .. }
        | Event::ApplianceRolledBack { .. } => "appliance",
        Event::Syslog { .. } => "syslog",
        Event::PoolInitialized { .. }
        | Event::PoolDaemonStarted { .. }
        | Event::PoolJoined { .. }
        | Event::PoolJoinRefused { .. }
        | Event::PoolHealth { .. }
        | Event::OsdUp { .. }
        | Event::OsdDown { .. }
        | Event::NooutSet { .. }
        | Event::NooutCleared { .. }
        | Event::OsdMarkedOut { .. }
        | Event::OsdMarkedIn { .. }
        | Event::OsdRemoved { .. }
        | Event::PoolCopyStored { .. }
        | Event::PoolProblem { .. } => "pool",
        Event::PowerRequested { .. }
        | Event::PowerFailed { .. }
        | Event::PowerMissed { .. }
        | Event::PowerStateSeen { .. } => "power",
        Event::BackupPulled { .. } | Event::BackupFailed { .. } | Event::BackupRestored { .. } => {
            "backup"
        }
    }
}

impl Record {
    pub fn from_event(e: &Event, time_ms: i64, seq: u64) -> Record {
        let mut doc = serde_json::to_value(e).unwrap_or(Value::Null);
        // Absent and null mean the same in queries on both stores: keep only the former.
        if let Value::Object(m) = &mut doc {
            m.retain(|_, v| !v.is_null());
        }
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        // TFTP and HTTP know the peer's address, not its MAC: index the peer IP.
        let ip = text("ip")
            .or_else(|| text("peer").and_then(|p| p.rsplit_once(':').map(|(ip, _)| ip.to_owned())));
        Record {
            id: record_id(time_ms, seq),
            time_ms,
            source: Cow::Borrowed(source_of(e)),
            kind: Cow::Borrowed(e.kind()),
            mac: text("mac"),
            ip,
            host: text("host"),
            doc,
        }
    }
}

/// Fills in `mac` (and `host`) of records that only know an IP, from the latest DHCP ACK for
/// that IP: so "everything about this MAC" includes its TFTP and HTTP traffic.
#[derive(Debug, Default)]
pub struct Enricher {
    by_ip: HashMap<String, (String, Option<String>)>,
}

impl Enricher {
    pub fn enrich(&mut self, r: &mut Record) {
        if r.kind == "dhcp_reply" && r.doc.get("reply").and_then(Value::as_str) == Some("ack") {
            if let (Some(ip), Some(mac)) = (&r.ip, &r.mac) {
                self.by_ip.insert(ip.clone(), (mac.clone(), r.host.clone()));
            }
        }
        if r.mac.is_none() {
            if let Some((mac, host)) = r.ip.as_ref().and_then(|ip| self.by_ip.get(ip)) {
                r.mac = Some(mac.clone());
                if r.host.is_none() {
                    r.host = host.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mac::Mac;
    use std::net::Ipv4Addr;

    #[test]
    fn tftp_record_gets_mac_and_host_from_earlier_ack() {
        let mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let ack = Event::DhcpReply {
            reply: "ack".into(),
            mac,
            ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
            xid: 1,
            iface: "br0".into(),
            host: Some("kiosk1".into()),
            file: None,
        };
        let tftp = Event::TftpFinished {
            peer: "10.0.0.5:2000".parse().unwrap(),
            file: "undionly.kpxe".into(),
            bytes: 10,
            duration_ms: 1,
        };
        let mut e = Enricher::default();
        let mut a = Record::from_event(&ack, 1, 0);
        e.enrich(&mut a);
        let mut t = Record::from_event(&tftp, 2, 1);
        assert_eq!(
            (t.source.as_ref(), t.ip.as_deref(), t.mac.as_deref()),
            ("tftp", Some("10.0.0.5"), None)
        );
        e.enrich(&mut t);
        assert_eq!(t.mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(t.host.as_deref(), Some("kiosk1"));
    }
}
