//! Socket tasks. Each receives bytes, decodes with `proto`, asks `core` for a decision, sends the
//! answer and emits events. They read the inventory through a `watch` channel, so a reload
//! swaps it atomically without interrupting anything in flight.
pub mod api_auth;
pub mod contain;
pub mod dhcp;
pub mod dns;
pub mod files;
pub mod flood;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod ping;
pub mod ra;
pub mod syslog;
pub mod tftp;

use crate::inventory::Inventory;
use tokio::sync::watch;

/// The current inventory, replaced wholesale on reload.
pub type InventoryRx = watch::Receiver<Inventory>;

/// A UDP socket on `port` of every address, answering only what arrives on `iface`
/// (SO_BINDTODEVICE): DHCP and DNS are never answered on interfaces not configured.
pub fn bind_udp_to_device(
    what: &str,
    iface: &str,
    port: u16,
    broadcast: bool,
) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(broadcast)?;
    s.bind_device(Some(iface.as_bytes())).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind {what} to interface {iface:?}: {e} (does it exist? is pxelator root or CAP_NET_RAW?)"))
    })?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}
