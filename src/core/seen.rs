//! When each machine was last seen, per protocol, and what that says about its state: the
//! segment overview's data. Fed with every event (the daemon subscribes it to the bus and seeds
//! it from the audit store at start); pure: events and `now` in, a table and states out.
use super::event::Event;
use super::mac::Mac;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Dhcp,
    Tftp,
    Http,
    Syslog,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Dhcp, Proto::Tftp, Proto::Http, Proto::Syslog];
    pub fn name(self) -> &'static str {
        match self {
            Proto::Dhcp => "DHCP",
            Proto::Tftp => "TFTP",
            Proto::Http => "HTTP",
            Proto::Syslog => "syslog",
        }
    }
    /// The audit store's `source` for this protocol.
    pub fn source(self) -> &'static str {
        match self {
            Proto::Dhcp => "dhcp",
            Proto::Tftp => "tftp",
            Proto::Http => "http",
            Proto::Syslog => "syslog",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Last-seen times (unix ms) per protocol, for a MAC or an IP.
pub type Times = [Option<i64>; 4];

/// How many keys the table holds at most (a flood of spoofed addresses cannot grow it further;
/// the oldest entries go first).
pub const MAX_KEYS: usize = 200_000;

#[derive(Debug, Default, Clone)]
pub struct LastSeen {
    by_mac: HashMap<Mac, Times>,
    by_ip: HashMap<Ipv4Addr, Times>,
}

fn bump(t: &mut Times, p: Proto, ms: i64) {
    let slot = &mut t[p.index()];
    if slot.is_none_or(|old| old < ms) {
        *slot = Some(ms);
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) => v.to_ipv4_mapped(),
    }
}

/// What an event says about a machine being seen: the protocol, its MAC and/or IP. Only what
/// a machine itself did counts: DHCP replies to it, files it fetched, syslog it sent (not the
/// pages a logged-in user asked for).
pub fn sighting(e: &Event) -> Option<(Proto, Option<Mac>, Option<Ipv4Addr>)> {
    Some(match e {
        Event::DhcpReply { mac, ip, .. } => (Proto::Dhcp, Some(*mac), *ip),
        Event::TftpStarted { peer, .. }
        | Event::TftpFinished { peer, .. }
        | Event::TftpFailed { peer, .. } => (Proto::Tftp, None, v4(peer.ip())),
        Event::HttpServed {
            peer,
            mac,
            user: None,
            ..
        } => (Proto::Http, *mac, v4(peer.ip())),
        Event::Syslog { peer, .. } => (Proto::Syslog, None, v4(peer.ip())),
        _ => return None,
    })
}

impl LastSeen {
    /// Takes one event into account (see [`sighting`]).
    pub fn observe(&mut self, e: &Event, time_ms: i64) {
        if let Some((proto, mac, ip)) = sighting(e) {
            self.record(proto, mac, ip, time_ms);
        }
    }

    /// Records a sighting (also how the table is seeded from the audit store).
    pub fn record(&mut self, proto: Proto, mac: Option<Mac>, ip: Option<Ipv4Addr>, time_ms: i64) {
        if self.by_mac.len() + self.by_ip.len() >= MAX_KEYS {
            self.evict();
        }
        if let Some(m) = mac {
            bump(self.by_mac.entry(m).or_default(), proto, time_ms);
        }
        if let Some(i) = ip {
            bump(self.by_ip.entry(i).or_default(), proto, time_ms);
        }
    }

    fn evict(&mut self) {
        let newest = |t: &Times| t.iter().flatten().copied().max().unwrap_or(0);
        let mut all: Vec<i64> = self
            .by_mac
            .values()
            .chain(self.by_ip.values())
            .map(newest)
            .collect();
        all.sort_unstable();
        let cut = all[all.len() / 4];
        self.by_mac.retain(|_, t| newest(t) > cut);
        self.by_ip.retain(|_, t| newest(t) > cut);
    }

    /// A machine's times: the later of what its MAC and its IP were seen doing.
    pub fn machine(&self, mac: Mac, ip: Option<Ipv4Addr>) -> Times {
        let mut t = self.by_mac.get(&mac).copied().unwrap_or_default();
        if let Some(other) = ip.and_then(|i| self.by_ip.get(&i)) {
            for p in Proto::ALL {
                if let Some(ms) = other[p.index()] {
                    bump(&mut t, p, ms);
                }
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.by_mac.len() + self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn at(t: &Times, p: Proto) -> Option<i64> {
    t[p.index()]
}

/// What the overview says a machine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A boot protocol within the last few minutes and nothing from the running system since.
    Booting(Proto),
    /// It sent syslog after its last boot step, recently.
    Up,
    /// Nothing recent.
    Quiet,
    /// Never seen.
    Unknown,
}

/// A boot step older than this no longer counts as booting.
pub const BOOTING_MS: i64 = 5 * 60 * 1000;
/// Syslog older than this no longer counts as up.
pub const UP_MS: i64 = 30 * 60 * 1000;

pub fn state(t: &Times, now_ms: i64) -> State {
    let boot = [Proto::Dhcp, Proto::Tftp, Proto::Http]
        .into_iter()
        .filter_map(|p| at(t, p).map(|ms| (ms, p)))
        .max();
    let sys = at(t, Proto::Syslog);
    match (boot, sys) {
        (None, None) => State::Unknown,
        (_, Some(s)) if boot.is_none_or(|(b, _)| s >= b) && now_ms - s <= UP_MS => State::Up,
        (Some((b, p)), _) if now_ms - b <= BOOTING_MS && sys.is_none_or(|s| s < b) => {
            State::Booting(p)
        }
        _ => State::Quiet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }

    #[test]
    fn per_protocol_and_joined_by_mac_and_ip() {
        let mut s = LastSeen::default();
        let ip: Ipv4Addr = "10.0.0.5".parse().unwrap();
        s.record(Proto::Dhcp, Some(mac(1)), Some(ip), 1_000);
        s.record(Proto::Tftp, None, Some(ip), 2_000);
        s.record(Proto::Dhcp, Some(mac(1)), Some(ip), 500);
        let t = s.machine(mac(1), Some(ip));
        assert_eq!(
            (
                at(&t, Proto::Dhcp),
                at(&t, Proto::Tftp),
                at(&t, Proto::Http)
            ),
            (Some(1_000), Some(2_000), None)
        );
        assert_eq!(at(&s.machine(mac(2), None), Proto::Dhcp), None);
    }

    #[test]
    fn states_follow_the_boot() {
        let m = 60_000;
        let mut t: Times = [None; 4];
        assert_eq!(state(&t, 0), State::Unknown);
        t[Proto::Dhcp.index()] = Some(0);
        t[Proto::Http.index()] = Some(m);
        assert_eq!(state(&t, 2 * m), State::Booting(Proto::Http));
        t[Proto::Syslog.index()] = Some(2 * m);
        assert_eq!(state(&t, 3 * m), State::Up);
        assert_eq!(state(&t, 2 * m + UP_MS + 1), State::Quiet);
        // A new boot after the last syslog: booting again.
        t[Proto::Dhcp.index()] = Some(40 * m);
        assert_eq!(state(&t, 41 * m), State::Booting(Proto::Dhcp));
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let mut s = LastSeen::default();
        for i in 0..(MAX_KEYS as u32 + 10_000) {
            s.record(Proto::Syslog, None, Some(Ipv4Addr::from(i)), i as i64);
        }
        assert!(s.len() <= MAX_KEYS);
        let newest = Ipv4Addr::from(MAX_KEYS as u32 + 9_999);
        assert!(
            at(&s.machine(mac(9), Some(newest)), Proto::Syslog).is_some(),
            "the newest are kept"
        );
    }
}
