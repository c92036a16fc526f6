//! Panics stop here: the work done for one packet runs inside [`contain`], so a bug that
//! panics on some input (a decoder assertion, an index out of range) costs that packet, not the
//! service. The panic becomes an [`Event::HandlerPanicked`] carrying the packet, so the input
//! that found the bug is in the audit store to become a regression test.
//!
//! This relies on unwinding: the release profile must never set `panic = "abort"`
//! (`tests::release_profile_unwinds` keeps it so).
use crate::core::event::Event;
use crate::events::Bus;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How much of a packet a `handler_panicked` event keeps.
pub const PACKET_KEEP: usize = 512;

/// Runs `f` for one packet from `peer`; on a panic, emits `handler_panicked` and returns None.
///
/// `AssertUnwindSafe`: what `f` may leave half-done is shared state behind a `Mutex`, whose
/// users recover a poisoned lock deliberately (see `services::dhcp`), or nothing.
pub fn contain<T>(
    bus: &Bus,
    proto: &'static str,
    peer: SocketAddr,
    packet: &[u8],
    f: impl FnOnce() -> T,
) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            report(bus, proto, peer, packet, payload.as_ref());
            None
        }
    }
}

/// Records a caught panic (from [`contain`], or from a task's `JoinError`) with its packet.
pub fn report(
    bus: &Bus,
    proto: &'static str,
    peer: SocketAddr,
    packet: &[u8],
    payload: &(dyn std::any::Any + Send),
) {
    let message = panic_message(payload);
    tracing::error!(proto, %peer, "handler panicked: {message}; packet dropped, service goes on");
    bus.emit(Event::HandlerPanicked {
        proto,
        peer,
        bytes: packet.len(),
        packet: crate::proto::hex(&packet[..packet.len().min(PACKET_KEEP)]),
        message,
    });
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

/// Test hooks that make a handler panic on purpose, so a test can show the daemon survives it.
/// Set only through the environment of whoever starts the daemon (`PXELATOR_FAILPOINTS`,
/// e.g. `dhcp-panic-mac=52:54:00:de:ad:01`), read once; nothing a packet or request carries can
/// turn one on.
pub mod failpoint {
    use std::sync::OnceLock;

    fn table() -> &'static Vec<(String, String)> {
        static T: OnceLock<Vec<(String, String)>> = OnceLock::new();
        T.get_or_init(|| {
            std::env::var("PXELATOR_FAILPOINTS")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_ascii_lowercase()))
                .collect()
        })
    }

    /// Whether failpoint `name` is set to `value` (compared case-insensitively).
    pub fn is(name: &str, value: &str) -> bool {
        table()
            .iter()
            .any(|(k, v)| k == name && *v == value.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_event_and_the_caller_goes_on() {
        let bus = Bus::new(16);
        let mut rx = bus.subscribe();
        let peer: SocketAddr = "10.0.0.9:68".parse().unwrap();
        let big = vec![0xabu8; 2000];
        let r: Option<()> = contain(&bus, "dhcp", peer, &big, || panic!("boom {}", 42));
        assert!(r.is_none());
        match &rx.try_recv().unwrap().event {
            Event::HandlerPanicked {
                proto,
                bytes,
                packet,
                message,
                ..
            } => {
                assert_eq!(*proto, "dhcp");
                assert_eq!(*bytes, 2000);
                assert_eq!(packet.len(), PACKET_KEEP * 2);
                assert!(packet.starts_with("abab"));
                assert_eq!(message, "boom 42");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(contain(&bus, "dhcp", peer, &big, || 7), Some(7));
    }

    #[test]
    fn release_profile_unwinds() {
        let toml = include_str!("../../Cargo.toml");
        assert!(
            !toml.contains("panic = \"abort\"") && !toml.contains("panic=\"abort\""),
            "Cargo.toml sets panic = abort: services::contain could no longer keep a service up"
        );
    }
}
