//! Syslog receiver: one UDP socket; each datagram is decoded by `proto::syslog` and becomes a
//! `syslog` event (the audit store keeps it with the sender's IP, so `audit find` and
//! `last-seen` see what a kiosk logged). Undecodable datagrams become `packet_rejected`.
//! Each source is rate-limited ([`PER_SOURCE_PER_SEC`]); what it sends beyond is dropped and
//! counted in one `suppressed` event per source per second.
use super::flood::Flood;
use crate::core::event::Event;
use crate::events::Bus;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Messages one source may have recorded a second, and in one burst. A kiosk logging as
/// usual sends a handful; more is a loop or a flood, and is counted, not stored.
pub const PER_SOURCE_PER_SEC: u32 = 100;
pub const BURST: u32 = 500;

pub async fn run(sock: UdpSocket, bus: Bus, cancel: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    let mut flood = Flood::new(PER_SOURCE_PER_SEC, BURST);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let (n, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                for (ip, count) in flood.drain() {
                    bus.emit(Event::Suppressed { proto: "syslog", what: "syslog", ip, count });
                }
                continue;
            }
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("syslog receive: {e}");
                    continue;
                }
            },
        };
        // Before any parsing: a flood costs a hash lookup per datagram.
        if !flood.allow(peer.ip(), crate::clock::unix_now_ms()) {
            continue;
        }
        let packet = &buf[..n];
        let Some(parsed) = super::contain::contain(&bus, "syslog", peer, packet, || {
            crate::proto::syslog::parse(packet)
        }) else {
            continue;
        };
        bus.emit(match parsed {
            Ok(m) => Event::Syslog {
                peer,
                facility: m.facility,
                severity: crate::proto::syslog::SEVERITIES[usize::from(m.severity)],
                host: m.host,
                app: m.app,
                message: m.message,
            },
            Err(reason) => Event::PacketRejected {
                proto: "syslog",
                peer,
                iface: String::new(),
                bytes: n,
                reason,
            },
        });
    }
}
