//! The event bus. Publishing never waits: the bus is a broadcast channel, and a subscriber that
//! falls behind loses the oldest events and is told how many (counted in `lagged`). The logger
//! subscriber writes one line per event with the fixed field names of [`Event`].
use crate::core::event::Event;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// An event with the wall-clock time it was emitted (unix milliseconds).
#[derive(Debug)]
pub struct Stamped {
    pub time_ms: i64,
    /// Emit order in this process (0, 1, 2, …).
    pub seq: u64,
    pub event: Event,
}

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Stamped>>,
    lagged: Arc<AtomicU64>,
    /// The audit writer's own queue: unbounded so publishers never block, but the writer drains
    /// it continuously (it never waits on the store: slow-store batches go to the disk spool).
    audit: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Arc<Stamped>>>>,
    emitted: Arc<AtomicU64>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(65536)
    }
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        let (tx, _) = broadcast::channel(capacity);
        Bus {
            tx,
            lagged: Arc::new(AtomicU64::new(0)),
            audit: Arc::new(std::sync::OnceLock::new()),
            emitted: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The lossless queue for the audit writer; None if it was already taken.
    pub fn audit_queue(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Arc<Stamped>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.audit.set(tx).ok().map(|()| rx)
    }

    /// Events published so far.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }
    /// Publishes an event; never blocks, works with no subscriber.
    pub fn emit(&self, event: Event) {
        let time_ms = crate::clock::unix_now_ms();
        let seq = self.emitted.fetch_add(1, Ordering::Relaxed);
        let stamped = Arc::new(Stamped {
            time_ms,
            seq,
            event,
        });
        if let Some(q) = self.audit.get() {
            let _ = q.send(stamped.clone());
        }
        let _ = self.tx.send(stamped);
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }
    /// Records events a subscriber missed.
    fn note_lagged(&self, n: u64) {
        self.lagged.fetch_add(n, Ordering::Relaxed);
    }
    /// Events a subscriber missed because it fell behind.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Logs every event as one line: `event kind=... {json}`. Ends when the bus closes.
    pub async fn run_logger(self) {
        let mut rx = self.subscribe();
        loop {
            match rx.recv().await {
                Ok(s) => {
                    let json = serde_json::to_string(&s.event).unwrap_or_default();
                    tracing::info!(target: "pxelator::event", kind = s.event.kind(), "{json}");
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.note_lagged(n);
                    tracing::warn!(
                        missed = n,
                        "event logger fell behind; events were not logged"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}
