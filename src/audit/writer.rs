//! The audit writer. Two halves so that a slow or absent store never holds anything up:
//!
//! - [`run_writer`] (async) drains the bus's audit queue continuously, enriches records and
//!   cuts batches (≤ 1000 events or 100 ms). It hands each batch to the store thread through a
//!   bounded channel of [`CHANNEL_BATCHES`]; when that is full it writes the batch to the spool.
//! - The store thread owns the [`AuditStore`]. While the spool holds anything, new batches are
//!   spooled behind it (order is kept by segment name); it replays the spool oldest first with
//!   backoff (1 s doubling to 5 s) and deletes a segment only after the store accepted it. A
//!   replay after a crash may offer a batch the store already holds; ids make that a no-op.
use super::spool::Spool;
use super::{AuditStore, Enricher, Record};
use crate::events::Stamped;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Batches in flight between the writer and the store thread before spooling starts.
pub const CHANNEL_BATCHES: usize = 4;
const BATCH: usize = 1000;
/// The most events the store thread puts in one transaction (fewer commits under load).
const COALESCE: usize = 50_000;

/// Counters for status output and tests.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events the store accepted.
    pub stored: AtomicU64,
    /// Events that went through the spool.
    pub spooled: AtomicU64,
    /// Events lost (a spool write AND the store failed): must stay 0.
    pub dropped: AtomicU64,
    /// Events waiting in the spool now: counted at start, then kept by push and replay, so
    /// `/api/audit/status` reads a counter instead of every spool file.
    pub spool_pending: AtomicU64,
    /// When the last "events dropped" error was logged (ms since start of the process), so a
    /// long outage logs one line every 10 s with the running total instead of one per batch.
    last_drop_log_ms: AtomicU64,
}

impl WriterStats {
    fn spooled_now(&self, n: usize) {
        self.spooled.fetch_add(n as u64, Ordering::Relaxed);
        self.spool_pending.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` events as lost and says so on the error log (at most every 10 s).
    fn drop_loudly(&self, n: usize, why: &super::AuditError) {
        let total = self.dropped.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let now = crate::clock::unix_now_ms().max(0) as u64;
        let last = self.last_drop_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .last_drop_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                events = n,
                dropped_total = total,
                "{why}; audit events DROPPED"
            );
        }
    }

    fn replayed(&self, n: usize) {
        let _ = self
            .spool_pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n as u64))
            });
    }
}

/// Drains `queue` until `cancel`, then stores (or spools) everything already queued. With
/// `max_age`, the store thread deletes older events once an hour; rollups older than
/// `rollup_max_age` likewise.
pub async fn run_writer(
    mut queue: UnboundedReceiver<Arc<Stamped>>,
    store: Box<dyn AuditStore>,
    spool: Spool,
    (max_age, rollup_max_age): (Option<Duration>, Duration),
    stats: Arc<WriterStats>,
    cancel: CancellationToken,
) {
    stats
        .spool_pending
        .store(spool.pending_events(), Ordering::Relaxed);
    let (tx, rx) = sync_channel::<Vec<Record>>(CHANNEL_BATCHES);
    let thread = {
        let (spool, stats) = (spool.clone(), stats.clone());
        std::thread::Builder::new()
            .name("audit-store".into())
            .spawn(move || store_thread(store, rx, spool, (max_age, rollup_max_age), stats))
            .expect("spawn audit store thread")
    };
    let mut enricher = Enricher::default();
    let mut batch: Vec<Record> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut push = |s: &Stamped, batch: &mut Vec<Record>| {
        let mut rec = Record::from_event(&s.event, s.time_ms, s.seq);
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
                    while batch.len() < BATCH {
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
                if batch.len() >= BATCH {
                    hand_over(&tx, &spool, &stats, std::mem::take(&mut batch));
                }
            }
        }
        if !batch.is_empty() && (stopping || batch.len() >= BATCH || tick_due(&batch)) {
            hand_over(&tx, &spool, &stats, std::mem::take(&mut batch));
        }
        if stopping {
            break;
        }
    }
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
}

/// Gives a batch to the store thread, or spools it when the thread is busy. If the spool
/// cannot take it either (full, or the disk fails) the batch is dropped and counted, loudly:
/// waiting here would stop the writer and let the bus queue grow without bound.
fn hand_over(
    tx: &std::sync::mpsc::SyncSender<Vec<Record>>,
    spool: &Spool,
    stats: &WriterStats,
    batch: Vec<Record>,
) {
    match tx.try_send(batch) {
        Ok(()) => {}
        Err(TrySendError::Full(batch)) => match spool.push(&batch) {
            Ok(()) => stats.spooled_now(batch.len()),
            Err(e) => stats.drop_loudly(batch.len(), &e),
        },
        Err(TrySendError::Disconnected(batch)) => {
            stats
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }
}

fn store_thread(
    mut store: Box<dyn AuditStore>,
    rx: Receiver<Vec<Record>>,
    spool: Spool,
    (max_age, rollup_max_age): (Option<Duration>, Duration),
    stats: Arc<WriterStats>,
) {
    let mut healthy = match store.prepare() {
        Ok(()) => true,
        Err(e) => {
            warn!(
                "{e}; events wait in {} until it is back",
                spool.dir().display()
            );
            false
        }
    };
    let mut backoff = Duration::from_secs(1);
    let mut next_try = Instant::now();
    let mut next_prune = Instant::now();
    loop {
        let (batch, closed) = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(mut b) => {
                // Batches that queued up while the store was busy go in one transaction.
                while b.len() < COALESCE {
                    match rx.try_recv() {
                        Ok(more) => b.extend(more),
                        Err(_) => break,
                    }
                }
                (Some(b), false)
            }
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => (None, true),
        };
        if let Some(b) = batch {
            if healthy && spool.is_empty() {
                match store.insert(&b) {
                    Ok(_) => {
                        stats.stored.fetch_add(b.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        warn!(
                            "{e}; events wait in {} until it is back",
                            spool.dir().display()
                        );
                        healthy = false;
                        next_try = Instant::now() + backoff;
                        spool_or_keep(&spool, &stats, &mut *store, b);
                    }
                }
            } else {
                spool_or_keep(&spool, &stats, &mut *store, b);
            }
        }
        if ((closed || Instant::now() >= next_try) && !spool.is_empty()) || (!healthy && closed) {
            let was_down = !healthy;
            healthy = replay(&mut *store, &spool, &stats);
            if healthy {
                backoff = Duration::from_secs(1);
                if was_down {
                    info!("audit store is back; spool replayed");
                }
            } else {
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            next_try = Instant::now() + backoff;
        }
        if healthy && Instant::now() >= next_prune {
            next_prune = Instant::now() + Duration::from_secs(3600);
            let now = crate::clock::unix_now_ms();
            if let Some(age) = max_age {
                match store.prune(now - age.as_millis() as i64) {
                    Ok(n) if n > 0 => info!(deleted = n, "audit retention"),
                    Ok(_) => {}
                    Err(e) => warn!("audit retention: {e}"),
                }
            }
            match store.prune_rollups(now - rollup_max_age.as_millis() as i64) {
                Ok(n) if n > 0 => info!(deleted = n, "audit rollup retention"),
                Ok(_) => {}
                Err(e) => warn!("audit rollup retention: {e}"),
            }
        }
        if closed {
            let left = spool.pending_events();
            if left > 0 {
                warn!(
                    events = left,
                    "audit store unavailable at shutdown; events stay in {} for the next start",
                    spool.dir().display()
                );
            }
            return;
        }
    }
}

/// Spools a batch. If the disk fails, keeps trying the store for a while; if the spool is
/// full (the store has been away long), tries the store once. Then the batch is dropped and
/// counted.
fn spool_or_keep(spool: &Spool, stats: &WriterStats, store: &mut dyn AuditStore, b: Vec<Record>) {
    match spool.push(&b) {
        Ok(()) => stats.spooled_now(b.len()),
        Err(e) => {
            let tries = if matches!(e, super::AuditError::SpoolFull { .. }) {
                1
            } else {
                30
            };
            for i in 0..tries {
                if store.insert(&b).is_ok() {
                    stats.stored.fetch_add(b.len() as u64, Ordering::Relaxed);
                    return;
                }
                if i + 1 < tries {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            stats.drop_loudly(b.len(), &e);
        }
    }
}

/// Stores spool segments oldest first; true when the spool is empty afterwards.
fn replay(store: &mut dyn AuditStore, spool: &Spool, stats: &WriterStats) -> bool {
    if let Err(e) = store.prepare() {
        warn!("{e}");
        return false;
    }
    // Bounded: a segment pushed while replaying is picked up by the next pass.
    for _pass in 0..1000 {
        let segs = match spool.segments() {
            Ok(s) => s,
            Err(e) => {
                warn!("{e}");
                return false;
            }
        };
        if segs.is_empty() {
            return true;
        }
        for seg in segs {
            let rows = match Spool::read(&seg) {
                Ok(r) => r,
                Err(e) => {
                    warn!("{e}");
                    return false;
                }
            };
            if let Err(e) = store.insert(&rows) {
                warn!("{e}");
                return false;
            }
            stats.stored.fetch_add(rows.len() as u64, Ordering::Relaxed);
            if let Err(e) = spool.remove(&seg) {
                warn!("{e}");
                return false;
            }
            stats.replayed(rows.len());
        }
    }
    spool.is_empty()
}

/// A batch is written when full, on shutdown, or when its oldest event is 100 ms old.
fn tick_due(batch: &[Record]) -> bool {
    batch
        .first()
        .is_some_and(|r| crate::clock::unix_now_ms() - r.time_ms >= 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sqlite::SqliteStore;
    use crate::core::event::Event;

    fn tftp(i: u32) -> Event {
        Event::TftpStarted {
            peer: "10.0.0.1:1000".parse().unwrap(),
            file: format!("f{i}"),
            blksize: 512,
            windowsize: 1,
            tsize: None,
        }
    }

    /// Issue 5: the count of stored events equals the count emitted, under a burst far faster
    /// than SQLite commits, including events still queued at shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_emitted_event_is_stored_under_a_burst() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.db");
        let store = Box::new(SqliteStore::open(&path, &[]).unwrap());
        let spool = Spool::open(&d.path().join("spool")).unwrap();
        let bus = crate::events::Bus::new(16);
        let cancel = CancellationToken::new();
        let stats = Arc::new(WriterStats::default());
        let writer = tokio::spawn(run_writer(
            bus.audit_queue().unwrap(),
            store,
            spool.clone(),
            (None, std::time::Duration::from_secs(3650 * 86400)),
            stats.clone(),
            cancel.clone(),
        ));
        let n = 100_000u32;
        for i in 0..n {
            bus.emit(tftp(i));
        }
        cancel.cancel();
        writer.await.unwrap();
        assert_eq!(bus.emitted(), u64::from(n));
        let reader = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(reader.count().unwrap(), u64::from(n));
        assert!(spool.is_empty());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        assert!(bus.audit_queue().is_none(), "the queue can be taken once");
    }

    /// Issue 10: /api/audit/status read every spool file; it reads this counter now.
    #[test]
    fn spool_pending_follows_pushes_and_replays() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(d.path()).unwrap();
        let stats = WriterStats::default();
        let mut store =
            crate::audit::sqlite::SqliteStore::open(&d.path().join("a.sqlite"), &[]).unwrap();
        let rows: Vec<Record> = (0..5)
            .map(|i| {
                let e = crate::core::event::Event::InventoryLoaded {
                    machines: i,
                    profiles: 0,
                    problems: 0,
                };
                Record::from_event(&e, 1_000 + i as i64, i as u64)
            })
            .collect();
        spool_or_keep(&spool, &stats, &mut store, rows);
        assert_eq!(stats.spool_pending.load(Ordering::Relaxed), 5);
        assert_eq!(
            spool.pending_events(),
            5,
            "the counter agrees with the files"
        );
        assert!(replay(&mut store, &spool, &stats));
        assert_eq!(stats.spool_pending.load(Ordering::Relaxed), 0);
        stats.replayed(3);
        assert_eq!(
            stats.spool_pending.load(Ordering::Relaxed),
            0,
            "never below zero"
        );
    }

    /// The same batch replayed (a crash between insert and segment removal) is stored once.
    #[test]
    fn replaying_a_stored_batch_writes_nothing_twice() {
        let d = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&d.path().join("a.db"), &[]).unwrap();
        let spool = Spool::open(&d.path().join("spool")).unwrap();
        let rows: Vec<Record> = (0..10)
            .map(|i| Record::from_event(&tftp(i), 1_000 + i64::from(i), u64::from(i)))
            .collect();
        store.insert(&rows).unwrap();
        spool.push(&rows).unwrap();
        let stats = WriterStats::default();
        assert!(replay(&mut store, &spool, &stats));
        assert_eq!(store.count().unwrap(), 10);
        assert!(spool.is_empty());
    }
}
