//! DHCP socket task: one UDP socket per configured interface, bound to that device
//! (SO_BINDTODEVICE) so nothing arriving elsewhere is ever answered.
use super::contain::{contain, failpoint};
use super::journal::Journal;
use super::InventoryRx;
use crate::clock::{rfc3339, unix_now};
use crate::config::DhcpConfig;
use crate::core::dhcp::{decide, decide_proxy, Decision, RequestKind};
use crate::core::event::Event;
use crate::core::leases::{LeaseChange, Leases};
use crate::events::Bus;
use crate::inventory::register;
use crate::proto::dhcp::{decode_request, encode_reply};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Lease state shared by the interface tasks; the journal write and the in-memory update
/// happen under one lock so they can never disagree.
pub struct LeaseDb {
    pub leases: Leases,
    pub journal: Journal,
}

pub struct DhcpService {
    pub cfg: DhcpConfig,
    pub conf_repo: PathBuf,
    /// Some exactly in server mode; None makes this service a proxy (no addresses handed out).
    pub db: Option<Arc<Mutex<LeaseDb>>>,
    pub inventory: InventoryRx,
    pub bus: Bus,
    /// New registrations in the current minute (`[dhcp] register_per_minute`).
    pub registrations: Mutex<Window>,
    /// Undecodable packets, recorded under a per-source limit.
    pub rejections: super::flood::Rejections,
}

/// A one-minute counting window: how many things happened since `start`.
#[derive(Debug, Default)]
pub struct Window {
    start: u64,
    count: u32,
}

impl Window {
    /// Counts one more at `now` (Unix seconds); whether it is within `limit` this minute.
    /// The first refusal of a minute is reported as `Refused(true)`.
    pub fn admit(&mut self, now: u64, limit: u32) -> Admit {
        if now >= self.start + 60 {
            *self = Window {
                start: now,
                count: 0,
            };
        }
        self.count = self.count.saturating_add(1);
        match self.count.checked_sub(limit) {
            None | Some(0) => Admit::Yes,
            Some(over) => Admit::Refused { first: over == 1 },
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    Refused { first: bool },
}

/// The proxyDHCP port where PXE clients send their boot-server REQUEST.
pub const PROXY_PORT: u16 = 4011;

/// Binds the DHCP socket for one interface.
pub fn bind(iface: &str, port: u16) -> std::io::Result<UdpSocket> {
    super::bind_udp_to_device("DHCP", iface, port, true)
}

impl DhcpService {
    pub async fn run(self: Arc<Self>, iface: String, sock: UdpSocket, cancel: CancellationToken) {
        let on_4011 = sock.local_addr().is_ok_and(|a| a.port() == PROXY_PORT);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => { warn!(iface, "dhcp recv: {e}"); continue; }
                },
            };
            let packet = &buf[..n];
            let answer = contain(&self.bus, "dhcp", peer, packet, || {
                self.handle(&iface, packet, peer, on_4011)
            });
            if let Some((bytes, dest)) = answer.flatten() {
                if let Err(e) = sock.send_to(&bytes, SocketAddr::V4(dest)).await {
                    warn!(iface, %dest, "dhcp send: {e}");
                }
            }
        }
    }

    /// Decode → decide → persist → encode. Returns the reply and its destination.
    pub fn handle(
        &self,
        iface: &str,
        bytes: &[u8],
        peer: SocketAddr,
        on_4011: bool,
    ) -> Option<(Vec<u8>, SocketAddrV4)> {
        let (req, msg) = match decode_request(bytes, iface) {
            Ok(x) => x,
            Err(e) => {
                // Our own and other servers' replies arrive on port 67 too; they are not errors.
                if !matches!(e, crate::proto::dhcp::DecodeError::NotRequest(2)) {
                    let ev = Event::PacketRejected {
                        proto: "dhcp",
                        peer,
                        iface: iface.into(),
                        bytes: bytes.len(),
                        reason: e.to_string(),
                    };
                    self.rejections.record(&self.bus, peer.ip(), ev);
                }
                return None;
            }
        };
        if failpoint::is("dhcp-panic-mac", &req.mac.to_string()) {
            panic!("failpoint dhcp-panic-mac hit for {}", req.mac);
        }
        let now = unix_now();
        let inv = self.inventory.borrow().clone();
        // The lease DB exists exactly when this is a full server; without one we are a proxy.
        let decision = if let Some(db) = &self.db {
            // Poisoned only if a handler panicked while holding it (caught by `contain`);
            // `decide` changes nothing, so a panic there leaves the leases as they were.
            let mut db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let d = decide(&req, &inv, &db.leases, &self.cfg.net, now);
            let change = match &d {
                Decision::Reply { change, .. } | Decision::Ignore { change, .. } => change.clone(),
                Decision::Update { change } => Some(change.clone()),
            };
            if let Some(c) = change {
                if c.is_durable() {
                    if let Err(e) = db.journal.append(&c) {
                        // Without a durable record we must not promise the address.
                        warn!("{e}");
                        self.bus.emit(Event::DhcpIgnored {
                            request: kind_name(req.kind),
                            mac: req.mac,
                            xid: req.xid,
                            iface: iface.into(),
                            reason: e.to_string(),
                        });
                        return None;
                    }
                }
                db.leases.apply(&c);
            }
            d
        } else {
            let SocketAddr::V4(peer4) = peer else {
                return None;
            };
            decide_proxy(&req, &inv, &self.cfg.net, on_4011, peer4)
        };
        match decision {
            Decision::Reply {
                reply, new_machine, ..
            } => {
                if new_machine && self.cfg.register_unknown {
                    self.register(&req.mac, reply.yiaddr, now);
                }
                self.bus.emit(Event::DhcpReply {
                    reply: reply.kind.name().into(),
                    mac: req.mac,
                    ip: (!reply.yiaddr.is_unspecified()).then_some(reply.yiaddr),
                    xid: req.xid,
                    iface: iface.into(),
                    host: reply.hostname.clone(),
                    file: reply.file.clone(),
                });
                Some((encode_reply(&msg, &reply), reply.dest))
            }
            Decision::Update { change } => {
                match change {
                    LeaseChange::Release { mac, ip } => self.bus.emit(Event::LeaseReleased {
                        mac,
                        ip,
                        iface: iface.into(),
                    }),
                    LeaseChange::Decline { mac, ip, .. } => self.bus.emit(Event::LeaseDeclined {
                        mac,
                        ip,
                        iface: iface.into(),
                    }),
                    _ => {}
                }
                None
            }
            Decision::Ignore { reason, .. } => {
                self.bus.emit(Event::DhcpIgnored {
                    request: kind_name(req.kind),
                    mac: req.mac,
                    xid: req.xid,
                    iface: iface.into(),
                    reason,
                });
                None
            }
        }
    }

    fn register(&self, mac: &crate::core::mac::Mac, ip: Ipv4Addr, now: u64) {
        let limit = self.cfg.register_per_minute;
        let admit = self
            .registrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(now, limit);
        if let Admit::Refused { first } = admit {
            if first {
                warn!(%mac, limit, "registration cap reached this minute; new MACs get leases only");
                self.bus.emit(Event::RegistrationLimited {
                    mac: *mac,
                    ip,
                    limit,
                });
            }
            return;
        }
        match register::write_machine(&self.conf_repo, mac, ip, &rfc3339(now)) {
            Ok(Some(path)) => {
                info!(%mac, %ip, path = %path.display(), "registered new machine");
                commit_registration(&self.conf_repo, &path, mac, ip);
                self.bus.emit(Event::MachineRegistered {
                    mac: *mac,
                    ip,
                    host: register::default_hostname(mac),
                    path,
                });
            }
            Ok(None) => {}
            Err(e) => {
                warn!(%mac, "cannot write machine file under {}: {e}", self.conf_repo.display())
            }
        }
    }
}

/// In a git conf repo, the registration is one commit by `pxelator <hostname>` (off the
/// async threads; a failure is logged and the file stays, to be committed by hand).
fn commit_registration(
    root: &std::path::Path,
    path: &std::path::Path,
    mac: &crate::core::mac::Mac,
    ip: Ipv4Addr,
) {
    let (root, path, mac) = (root.to_owned(), path.to_owned(), *mac);
    tokio::task::spawn_blocking(move || {
        use crate::confrepo::{Author, Change, ConfRepo};
        let repo = match ConfRepo::open(&root) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => return warn!("{e}"),
        };
        let Ok(rel) = path.strip_prefix(&root) else {
            return;
        };
        let Ok(data) = std::fs::read(&path) else {
            return;
        };
        let msg = format!(
            "Register {mac} as {} at {ip} (first DHCP request from an unknown MAC)",
            register::default_hostname(&mac)
        );
        let change = Change::Write(rel.to_string_lossy().into_owned(), data);
        if let Err(e) = repo.commit(&[change], &Author::daemon(), &msg) {
            warn!("{e}; {} stays uncommitted", path.display());
        }
    });
}

fn kind_name(k: RequestKind) -> String {
    match k {
        RequestKind::Bootp => "bootrequest".into(),
        RequestKind::Discover => "discover".into(),
        RequestKind::Request => "request".into(),
        RequestKind::Decline => "decline".into(),
        RequestKind::Release => "release".into(),
        RequestKind::Inform => "inform".into(),
        RequestKind::Other(n) => format!("type-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_window_admits_limit_a_minute_and_reports_the_first_refusal() {
        let mut w = Window::default();
        for _ in 0..3 {
            assert_eq!(w.admit(100, 3), Admit::Yes);
        }
        assert_eq!(w.admit(110, 3), Admit::Refused { first: true });
        assert_eq!(w.admit(120, 3), Admit::Refused { first: false });
        assert_eq!(w.admit(159, 3), Admit::Refused { first: false });
        assert_eq!(w.admit(160, 3), Admit::Yes, "a new minute");
        assert_eq!(
            Window::default().admit(0, 0),
            Admit::Refused { first: true }
        );
    }
}
