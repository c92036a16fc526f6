//! Optional IPv6 router-advertisement responder for netboot speed.
//!
//! iPXE configures IPv6 and IPv4 in parallel and waits (~13 s) for a router advertisement
//! before it moves on, even when DHCPv4 answered at once. On an IPv4-only netboot segment, an RA
//! that announces nothing (router lifetime 0: "not a default router"; M = O = 0; no prefix) lets
//! it finish immediately (RFC 4861 §4.2, §6.2.3). Off by default: on a segment with a real IPv6
//! router, leave the advertising to it.
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv6Addr, SocketAddrV6};
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The advertisement: cur hop limit 64, no flags, router lifetime 0, reachable/retrans 0.
/// The checksum is left 0: Linux fills it in for raw ICMPv6 sockets.
pub fn empty_advertisement() -> [u8; 16] {
    [
        ICMPV6_ROUTER_ADVERTISEMENT,
        0,
        0,
        0,
        64,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

/// Interface index by name, as seen from this process's network namespace (sysfs may show
/// another namespace's interfaces).
pub fn ifindex(iface: &str) -> std::io::Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("interface {iface:?}: {e}"),
        )
    })
}

/// Opens the raw ICMPv6 socket for one interface (needs root or CAP_NET_RAW).
pub fn bind(iface: &str) -> std::io::Result<(AsyncFd<Socket>, u32)> {
    let idx = ifindex(iface)?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(iface.as_bytes()))?;
    // RFC 4861 §6.1.2: neighbour discovery packets must carry hop limit 255.
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_if_v6(idx)?;
    s.join_multicast_v6(&ALL_ROUTERS, idx)?;
    s.set_nonblocking(true)?;
    // SAFETY: the Socket owns its descriptor, keeps it open until dropped (which the AsyncFd
    // does first) and as_raw_fd always returns that same descriptor.
    let fd = unsafe { AsyncFd::register(s) }.map_err(std::io::Error::from)?;
    Ok((fd, idx))
}

/// Sends one unsolicited advertisement, then one per router solicitation received.
pub async fn run(iface: String, sock: AsyncFd<Socket>, idx: u32, cancel: CancellationToken) {
    let dest = SocketAddrV6::new(ALL_NODES, 0, 0, idx);
    let ra = empty_advertisement();
    let send = |s: &Socket| s.send_to(&ra, &dest.into());
    if let Err(e) = send(sock.get_ref()) {
        warn!(iface, "router advertisement: {e}");
    }
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let mut guard = tokio::select! {
            _ = cancel.cancelled() => break,
            g = sock.readable() => match g { Ok(g) => g, Err(e) => { warn!(iface, "ra: {e}"); break; } },
        };
        match guard.try_io(|s| s.get_ref().recv_from(&mut buf)) {
            Ok(Ok((n, _))) if n >= 1 => {
                // SAFETY: recv_from initialised the first n bytes.
                let first = unsafe { buf[0].assume_init() };
                if first == ICMPV6_ROUTER_SOLICITATION {
                    debug!(iface, "router solicitation answered");
                    if let Err(e) = send(sock.get_ref()) {
                        warn!(iface, "router advertisement: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn advertisement_announces_nothing() {
        let ra = super::empty_advertisement();
        assert_eq!(ra[0], 134, "type RA");
        assert_eq!(ra[5] & 0xc0, 0, "M and O flags clear");
        assert_eq!(
            u16::from_be_bytes([ra[6], ra[7]]),
            0,
            "router lifetime 0: not a default router"
        );
    }
}
