//! Syslog receiver: one UDP socket; each datagram is decoded by `proto::syslog` and becomes a
//! `syslog` event (the audit store keeps it with the sender's IP, so `audit find` and
//! `last-seen` see what a kiosk logged). Undecodable datagrams become `packet_rejected`.
use crate::core::event::Event;
use crate::events::Bus;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub async fn run(sock: UdpSocket, bus: Bus, cancel: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("syslog receive: {e}");
                    continue;
                }
            },
        };
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
