//! Issue 5: the store is unavailable for 60 s under event load (embedded: the file is locked
//! by another connection; MongoDB: nothing listens at the URL until the outage ends). Events
//! keep being emitted throughout; afterwards the count of stored events equals the count
//! emitted, the spool is empty and nothing was dropped. The outage is real: the test also
//! checks that events went through the spool.
//!
//! PXELATOR_OUTAGE_SECS shortens the outage for a quick local run (default 60, as the issue
//! asks; scripts/test uses the default).
mod common;

use pxelator::audit::mongo::MongoStore;
use pxelator::audit::spool::Spool;
use pxelator::audit::sqlite::SqliteStore;
use pxelator::audit::writer::{run_writer, WriterStats};
use pxelator::audit::AuditStore;
use pxelator::core::event::Event;
use pxelator::events::Bus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("PXELATOR_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

fn event(i: u64) -> Event {
    Event::TftpFinished {
        peer: ([10, 77, 1, (i % 200) as u8 + 2], 2000).into(),
        file: format!("f{}", i % 17),
        bytes: i,
        duration_ms: i % 1000,
    }
}

/// Emits ~`rate` events per second for `secs`; returns how many.
async fn load(bus: Bus, rate: u64, dur: Duration) -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < dur {
        tick.tick().await;
        for _ in 0..rate / 100 {
            bus.emit(event(n));
            n += 1;
        }
    }
    n
}

/// Waits (bounded) until `count()` reaches `want`.
fn wait_for_count(count: &dyn Fn() -> u64, want: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let c = count();
        if c >= want || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_locked_for_the_outage_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("audit.sqlite");
    let store = SqliteStore::open(&path, &[]).unwrap();
    let spool = Spool::open(&d.path().join("spool")).unwrap();
    let bus = Bus::new(1024);
    let stats = Arc::new(WriterStats::default());
    let cancel = CancellationToken::new();
    let writer = tokio::spawn(run_writer(
        bus.audit_queue().unwrap(),
        Box::new(store),
        spool.clone(),
        (None, std::time::Duration::from_secs(3650 * 86400)),
        stats.clone(),
        cancel.clone(),
    ));
    // Another connection holds the write lock for the whole outage.
    let lock_path = path.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&lock_path).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(outage());
        c.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let emitted = load(bus.clone(), 2000, outage()).await;
    locker.join().unwrap();
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let stored = tokio::task::spawn_blocking(move || {
        wait_for_count(
            &|| reader.count().unwrap(),
            emitted,
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    cancel.cancel();
    writer.await.unwrap();
    println!(
        "embedded outage {:?}: emitted {emitted}, stored {stored}, spooled {}",
        outage(),
        stats.spooled.load(Ordering::Relaxed)
    );
    assert_eq!(bus.emitted(), emitted);
    assert_eq!(stored, emitted, "stored == emitted after the outage");
    assert!(
        stats.spooled.load(Ordering::Relaxed) > emitted / 2,
        "the outage was real: events went through the spool"
    );
    assert!(spool.is_empty(), "spool replayed completely");
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    let final_count = SqliteStore::open_read_only(&path).unwrap().count().unwrap();
    assert_eq!(final_count, emitted, "nothing written twice");
}

/// Every event the writer has answered for: stored, waiting in the spool, or dropped.
fn accounted(s: &WriterStats) -> u64 {
    s.stored.load(Ordering::Relaxed)
        + s.spool_pending.load(Ordering::Relaxed)
        + s.dropped.load(Ordering::Relaxed)
}

/// Issue 10: the spool had no size limit, and when it could not be written the writer blocked
/// while the bus queue grew. With a 256 KiB cap and the store locked throughout, the writer
/// keeps draining: every emitted event is stored, spooled or counted as dropped while the
/// outage lasts, the spool never passes its cap, and after the lock goes the spool replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_and_counts_instead_of_growing_or_blocking() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("audit.sqlite");
    let store = SqliteStore::open(&path, &[]).unwrap();
    let cap = 256 * 1024;
    let spool = Spool::open(&d.path().join("spool")).unwrap().with_cap(cap);
    let bus = Bus::new(1024);
    let stats = Arc::new(WriterStats::default());
    let cancel = CancellationToken::new();
    let writer = tokio::spawn(run_writer(
        bus.audit_queue().unwrap(),
        Box::new(store),
        spool.clone(),
        (None, std::time::Duration::from_secs(3650 * 86400)),
        stats.clone(),
        cancel.clone(),
    ));
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let lock_path = path.clone();
    let locker = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&lock_path).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(120));
        c.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let emitted = load(bus.clone(), 4000, Duration::from_secs(5)).await;
    // Still locked: the writer must account for every event without the store.
    let s2 = stats.clone();
    let seen = tokio::task::spawn_blocking(move || {
        wait_for_count(&|| accounted(&s2), emitted, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let dropped = stats.dropped.load(Ordering::Relaxed);
    println!(
        "spool cap {cap} B: emitted {emitted}, spool {} B holding {} events, dropped {dropped}",
        spool.bytes(),
        stats.spool_pending.load(Ordering::Relaxed)
    );
    assert_eq!(
        seen, emitted,
        "every event stored, spooled or counted while locked"
    );
    assert!(
        spool.bytes() <= cap,
        "spool {} B over its cap",
        spool.bytes()
    );
    assert!(
        dropped > 0,
        "the outage overflowed the cap, so some were dropped"
    );
    assert!(stats.spool_pending.load(Ordering::Relaxed) > 0);
    release_tx.send(()).unwrap();
    locker.join().unwrap();
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let want = emitted - dropped;
    let stored = tokio::task::spawn_blocking(move || {
        wait_for_count(&|| reader.count().unwrap(), want, Duration::from_secs(60))
    })
    .await
    .unwrap();
    cancel.cancel();
    writer.await.unwrap();
    assert_eq!(stored, want, "all that was not dropped is stored");
    assert_eq!(accounted(&stats), emitted);
    assert!(spool.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_unreachable_for_the_outage_loses_nothing() {
    let Some(bin) = common::nx_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nx-27017 missing; scripts/setup installs it"
        );
        println!("SKIPPED: MongoDB outage test: nx-27017 not installed (run scripts/setup)");
        return;
    };
    let port = common::free_port();
    let url = format!("mongodb://127.0.0.1:{port}/pxelator_outage");
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(&d.path().join("spool")).unwrap();
    let bus = Bus::new(1024);
    let stats = Arc::new(WriterStats::default());
    let cancel = CancellationToken::new();
    let writer = tokio::spawn(run_writer(
        bus.audit_queue().unwrap(),
        // The driver's blocking API must not run on an async thread.
        Box::new(tokio::task::block_in_place(|| {
            MongoStore::open(&url, &[]).unwrap()
        })),
        spool.clone(),
        (None, std::time::Duration::from_secs(3650 * 86400)),
        stats.clone(),
        cancel.clone(),
    ));
    // Nothing listens on the port during the outage.
    let emitted = load(bus.clone(), 1000, outage()).await;
    let nx = common::spawn_nx(&bin, port, d.path());
    let reader = tokio::task::block_in_place(|| MongoStore::open(&url, &[]).unwrap());
    let stored = tokio::task::spawn_blocking(move || {
        wait_for_count(
            &|| reader.count().unwrap_or(0),
            emitted,
            Duration::from_secs(180),
        )
    })
    .await
    .unwrap();
    cancel.cancel();
    writer.await.unwrap();
    println!(
        "mongodb outage {:?}: emitted {emitted}, stored {stored}, spooled {}",
        outage(),
        stats.spooled.load(Ordering::Relaxed)
    );
    assert_eq!(stored, emitted, "stored == emitted after the outage");
    assert!(stats.spooled.load(Ordering::Relaxed) >= emitted / 2);
    assert!(spool.is_empty());
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    let again = tokio::task::block_in_place(|| MongoStore::open(&url, &[]).unwrap().count());
    assert_eq!(again.unwrap(), emitted, "nothing written twice");
    drop(nx);
}
