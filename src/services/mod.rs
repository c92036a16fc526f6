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

/// A socket of `ty` on `port` of every address, taking only what arrives on `iface`
/// (SO_BINDTODEVICE): DHCP and DNS are never answered on interfaces not configured.
fn device_socket(
    what: &str,
    iface: &str,
    port: u16,
    ty: socket2::Type,
) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(iface.as_bytes())).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind {what} to interface {iface:?}: {e} (does it exist? is pxelator root or CAP_NET_RAW?)"))
    })?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A UDP socket answering only on `iface` (see [`device_socket`]).
pub fn bind_udp_to_device(
    what: &str,
    iface: &str,
    port: u16,
    broadcast: bool,
) -> std::io::Result<tokio::net::UdpSocket> {
    let s = device_socket(what, iface, port, socket2::Type::DGRAM)?;
    s.set_broadcast(broadcast)?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// A TCP listener accepting only on `iface` (see [`device_socket`]).
pub fn listen_tcp_on_device(
    what: &str,
    iface: &str,
    port: u16,
) -> std::io::Result<tokio::net::TcpListener> {
    let s = device_socket(what, iface, port, socket2::Type::STREAM)?;
    s.listen(128)?;
    tokio::net::TcpListener::from_std(s.into())
}
