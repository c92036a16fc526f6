//! The audit store: every event on the bus becomes one queryable document. Only this module
//! touches a store. Protocol tasks never wait on it: the writer drains its own unbounded queue
//! from the bus (`Bus::audit_queue`) and writes in batches, so nothing is dropped when the store
//! is slow; memory absorbs the backlog. A failed insert (disk full, file locked) is logged and
//! that batch is lost: the on-disk spool that would keep it is still to come.
//!
//! Embedded default: SQLite (WAL) at `audit.path`, readable with the stock `sqlite3` CLI:
//! `events(id, time_ms, source, kind, mac, ip, host, doc)` with `doc` the event as JSON.
pub mod query;
pub mod sqlite;

use crate::core::event::Event;
use crate::events::Stamped;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store {path}: {source} (check audit.path in the config and that the directory is writable)")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("audit store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Query(#[from] query::QueryError),
    #[error("{0:?} is neither a MAC, an IPv4 address nor a hostname")]
    BadWho(String),
}

/// One stored document: the indexed columns plus the full event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time_ms: i64,
    pub source: &'static str,
    pub kind: &'static str,
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub host: Option<String>,
    pub doc: Value,
}

fn source_of(e: &Event) -> &'static str {
    match e {
        Event::DhcpReply { .. }
        | Event::DhcpIgnored { .. }
        | Event::LeaseReleased { .. }
        | Event::LeaseDeclined { .. }
        | Event::MachineRegistered { .. } => "dhcp",
        Event::PacketRejected { proto, .. } => proto,
        Event::TftpStarted { .. } | Event::TftpFinished { .. } | Event::TftpFailed { .. } => "tftp",
        Event::HttpServed { .. } => "http",
        Event::InventoryLoaded { .. } | Event::InventoryProblem { .. } => "inventory",
    }
}

impl Record {
    pub fn from_event(e: &Event, time_ms: i64) -> Record {
        let doc = serde_json::to_value(e).unwrap_or(Value::Null);
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        // TFTP and HTTP know the peer's address, not its MAC: index the peer IP.
        let ip = text("ip")
            .or_else(|| text("peer").and_then(|p| p.rsplit_once(':').map(|(ip, _)| ip.to_owned())));
        Record {
            time_ms,
            source: source_of(e),
            kind: e.kind(),
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

/// Drains the bus's audit queue and writes batches (≤ 1000 events or 100 ms) to the store;
/// with `max_age`, deletes older events once an hour. On cancel it stores everything already
/// queued before returning.
pub async fn run_writer(
    mut queue: UnboundedReceiver<Arc<Stamped>>,
    store: Arc<Mutex<sqlite::SqliteStore>>,
    max_age: Option<Duration>,
    cancel: CancellationToken,
) {
    let mut enricher = Enricher::default();
    let mut batch: Vec<Record> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_prune = tokio::time::Instant::now();
    let mut push = |s: &Stamped, batch: &mut Vec<Record>| {
        let mut rec = Record::from_event(&s.event, s.time_ms);
        enricher.enrich(&mut rec);
        batch.push(rec);
    };
    loop {
        let stopping = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tick.tick() => false,
            r = queue.recv() => match r {
                Some(s) => {
                    push(&s, &mut batch);
                    // Take whatever else is already queued, up to a batch.
                    while batch.len() < 1000 {
                        match queue.try_recv() {
                            Ok(s) => push(&s, &mut batch),
                            Err(_) => break,
                        }
                    }
                    false
                }
                None => true,
            },
        };
        if stopping {
            while let Ok(s) = queue.try_recv() {
                push(&s, &mut batch);
            }
        }
        if !batch.is_empty() && (stopping || batch.len() >= 1000 || tick_due(&batch)) {
            let rows = std::mem::take(&mut batch);
            let st = store.clone();
            let res =
                tokio::task::spawn_blocking(move || st.lock().expect("audit lock").insert(&rows))
                    .await;
            match res {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!("{e}"),
                Err(e) => warn!("audit writer: {e}"),
            }
        }
        if let Some(age) = max_age {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += Duration::from_secs(3600);
                let cutoff = crate::services::unix_now_ms() - age.as_millis() as i64;
                let st = store.clone();
                match tokio::task::spawn_blocking(move || {
                    st.lock().expect("audit lock").prune(cutoff)
                })
                .await
                {
                    Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "audit retention"),
                    Ok(Err(e)) => warn!("audit retention: {e}"),
                    _ => {}
                }
            }
        }
        if stopping {
            break;
        }
    }
}

/// A batch is written when full, on shutdown, or when its oldest event is 100 ms old.
fn tick_due(batch: &[Record]) -> bool {
    batch
        .first()
        .is_some_and(|r| crate::services::unix_now_ms() - r.time_ms >= 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mac::Mac;
    use std::net::Ipv4Addr;

    /// Issue 5: the count of stored events equals the count emitted, under a burst far faster
    /// than SQLite commits, including events still queued at shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_emitted_event_is_stored_under_a_burst() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.db");
        let store = Arc::new(Mutex::new(sqlite::SqliteStore::open(&path).unwrap()));
        let bus = crate::events::Bus::new(16);
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(run_writer(
            bus.audit_queue().unwrap(),
            store.clone(),
            None,
            cancel.clone(),
        ));
        let n = 100_000u32;
        for i in 0..n {
            bus.emit(Event::TftpStarted {
                peer: "10.0.0.1:1000".parse().unwrap(),
                file: format!("f{i}"),
                blksize: 512,
                windowsize: 1,
                tsize: None,
            });
        }
        cancel.cancel();
        writer.await.unwrap();
        assert_eq!(bus.emitted(), u64::from(n));
        assert_eq!(store.lock().unwrap().count().unwrap(), u64::from(n));
        assert!(bus.audit_queue().is_none(), "the queue can be taken once");
    }

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
        let mut a = Record::from_event(&ack, 1);
        e.enrich(&mut a);
        let mut t = Record::from_event(&tftp, 2);
        assert_eq!(
            (t.source, t.ip.as_deref(), t.mac.as_deref()),
            ("tftp", Some("10.0.0.5"), None)
        );
        e.enrich(&mut t);
        assert_eq!(t.mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(t.host.as_deref(), Some("kiosk1"));
    }
}
