//! Packet capture decisions: which frames belong to a machine (by MAC, by IPv4 address, or
//! both), and the bounds of a capture. Pure; `crate::capture` reads the interface and writes
//! the pcap.
use super::mac::Mac;
use std::net::Ipv4Addr;

/// Which frames a capture keeps: all (both None), or those of a machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub mac: Option<Mac>,
    pub ip: Option<Ipv4Addr>,
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.mac, self.ip) {
            (None, None) => write!(f, "all"),
            (Some(m), None) => write!(f, "mac {m}"),
            (None, Some(i)) => write!(f, "ip {i}"),
            (Some(m), Some(i)) => write!(f, "mac {m} or ip {i}"),
        }
    }
}

/// Hard bounds of one capture (whatever is asked, the file and the time stay bounded).
pub const MAX_SECS: u64 = 3600;
pub const MAX_PACKETS: u64 = 1_000_000;
pub const MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub secs: u64,
    pub packets: u64,
    /// Bytes of the pcap file (headers included).
    pub bytes: u64,
}

impl Limits {
    /// `secs`/`packets`/`max_mb` as asked → bounds, or what is wrong. With neither `secs` nor
    /// `packets` the capture is refused: it must end by itself.
    pub fn new(
        secs: Option<u64>,
        packets: Option<u64>,
        max_mb: Option<u64>,
    ) -> Result<Limits, String> {
        if secs.is_none() && packets.is_none() {
            return Err("say when the capture ends: --secs N and/or --packets N".into());
        }
        if secs.is_some_and(|s| s == 0 || s > MAX_SECS) {
            return Err(format!("--secs: give 1..={MAX_SECS}"));
        }
        if packets.is_some_and(|p| p == 0 || p > MAX_PACKETS) {
            return Err(format!("--packets: give 1..={MAX_PACKETS}"));
        }
        let bytes = max_mb.unwrap_or(100).saturating_mul(1 << 20);
        if bytes == 0 || bytes > MAX_BYTES {
            return Err(format!("--max-mb: give 1..={}", MAX_BYTES >> 20));
        }
        Ok(Limits {
            secs: secs.unwrap_or(MAX_SECS),
            packets: packets.unwrap_or(MAX_PACKETS),
            bytes,
        })
    }
}

/// A Linux interface name: 1–15 bytes, no '/', no whitespace.
pub fn check_iface(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not an interface name (e.g. br0)"))
    }
}

/// Whether `frame` (Ethernet) belongs to what `f` asks for: a MAC matches the Ethernet source
/// or destination, or the client hardware address of a DHCP/BOOTP message (replies a server
/// broadcasts to a client); an address matches the IPv4 source or destination, or an ARP
/// message's sender or target.
pub fn matches(f: &Filter, frame: &[u8]) -> bool {
    if f.mac.is_none() && f.ip.is_none() {
        return true;
    }
    if frame.len() < 14 {
        return false;
    }
    if let Some(Mac(m)) = f.mac {
        if frame[0..6] == m || frame[6..12] == m {
            return true;
        }
    }
    let (ethertype, l3) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x8100 if frame.len() >= 18 => (u16::from_be_bytes([frame[16], frame[17]]), &frame[18..]),
        t => (t, &frame[14..]),
    };
    match ethertype {
        0x0800 if l3.len() >= 20 => {
            let (src, dst) = (&l3[12..16], &l3[16..20]);
            if f.ip
                .is_some_and(|ip| ip.octets() == src || ip.octets() == dst)
            {
                return true;
            }
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let udp = l3.get(ihl..).unwrap_or_default();
            if l3[9] != 17 || udp.len() < 8 {
                return false;
            }
            let (sport, dport) = (
                u16::from_be_bytes([udp[0], udp[1]]),
                u16::from_be_bytes([udp[2], udp[3]]),
            );
            let bootp = [67u16, 68, 4011].iter().any(|p| *p == sport || *p == dport);
            // BOOTP: chaddr at offset 28 of the message, after the 8-byte UDP header.
            bootp
                && f.mac
                    .is_some_and(|Mac(m)| udp.get(8 + 28..8 + 34) == Some(&m[..]))
        }
        0x0806 if l3.len() >= 28 => {
            f.ip.is_some_and(|ip| l3[14..18] == ip.octets() || l3[24..28] == ip.octets())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([0x52, 0x54, 0, 0x19, 0, 1]);

    fn udp_frame(
        eth_dst: [u8; 6],
        eth_src: [u8; 6],
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(eth_dst);
        f.extend(eth_src);
        f.extend([0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend(src);
        ip.extend(dst);
        f.extend(ip);
        f.extend(sport.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend([0, 0, 0, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn a_machines_frames_by_mac_ip_and_dhcp_chaddr() {
        let other = [0x52, 0x54, 0, 0, 0, 9];
        let bcast = [0xff; 6];
        let mut bootp = vec![0u8; 240];
        bootp[28..34].copy_from_slice(&M.0);
        // A broadcast OFFER from the server to M: neither Ethernet address is M's.
        let offer = udp_frame(bcast, other, [10, 0, 0, 1], [255; 4], 67, 68, &bootp);
        let by_mac = Filter {
            mac: Some(M),
            ip: None,
        };
        assert!(matches(&by_mac, &offer));
        let unrelated = udp_frame(bcast, other, [10, 0, 0, 1], [255; 4], 67, 68, &[0u8; 240]);
        assert!(!matches(&by_mac, &unrelated));
        let from_m = udp_frame(other, M.0, [10, 0, 0, 5], [10, 0, 0, 1], 5000, 53, b"");
        assert!(matches(&by_mac, &from_m));
        let by_ip = Filter {
            mac: None,
            ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
        };
        assert!(matches(&by_ip, &from_m));
        assert!(!matches(&by_ip, &unrelated));
        assert!(matches(&Filter::default(), &unrelated));
        // Truncated frames match nothing and do not panic.
        for n in 0..offer.len() {
            let _ = matches(&by_mac, &offer[..n]);
            let _ = matches(&by_ip, &offer[..n]);
        }
    }

    #[test]
    fn limits_are_bounded_and_must_end() {
        assert!(Limits::new(None, None, None).is_err());
        assert!(Limits::new(Some(0), None, None).is_err());
        assert!(Limits::new(Some(MAX_SECS + 1), None, None).is_err());
        assert!(Limits::new(None, Some(10), Some(2048)).is_err());
        let l = Limits::new(None, Some(10), None).unwrap();
        assert_eq!((l.secs, l.packets, l.bytes), (MAX_SECS, 10, 100 << 20));
        assert!(check_iface("br0").is_ok());
        for bad in ["", "../etc", "a b", "sixteen-chars-xx"] {
            assert!(check_iface(bad).is_err(), "{bad}");
        }
    }
}
