//! Lease state as plain data. Decisions read it; the DHCP service applies [`LeaseChange`]s to
//! it after writing them to the durable journal. Times are unix seconds passed in by the caller.
use super::mac::Mac;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// How long an OFFER holds an address for the client that was offered it.
pub const OFFER_HOLD_SECS: u64 = 60;
/// How long an address declined by a client (RFC 2131 DECLINE: already in use) stays unused.
pub const DECLINE_HOLD_SECS: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Offered,
    Bound,
    /// Address reported in use by someone else; owned by nobody until `until`.
    Declined,
}

impl LeaseState {
    /// As `pxelator leases`, `/api/leases` and `/metrics` name it.
    pub fn name(self) -> &'static str {
        match self {
            LeaseState::Offered => "offered",
            LeaseState::Bound => "bound",
            LeaseState::Declined => "declined",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub state: LeaseState,
    pub until: u64,
}

impl Lease {
    /// The durable record that recreates this lease (None for an in-memory offer).
    pub fn as_change(&self) -> Option<LeaseChange> {
        let (mac, ip, until) = (self.mac, self.ip, self.until);
        match self.state {
            LeaseState::Bound => Some(LeaseChange::Bind { mac, ip, until }),
            LeaseState::Declined => Some(LeaseChange::Decline { mac, ip, until }),
            LeaseState::Offered => None,
        }
    }
}

/// A change decided by `core::dhcp`; also the record format of the lease journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum LeaseChange {
    Offer {
        mac: Mac,
        ip: Ipv4Addr,
        until: u64,
    },
    Bind {
        mac: Mac,
        ip: Ipv4Addr,
        until: u64,
    },
    Release {
        mac: Mac,
        ip: Ipv4Addr,
    },
    Decline {
        mac: Mac,
        ip: Ipv4Addr,
        until: u64,
    },
    /// Written by journal compaction: when this MAC's last lease ended, kept after the lease
    /// itself expired or was released, so reclaiming knows who was seen lately.
    Seen {
        mac: Mac,
        until: u64,
    },
}

impl LeaseChange {
    /// Offers are kept in memory only: losing one in a crash makes the client start over,
    /// never makes two clients share an address (a REQUEST for a lost offer is re-checked).
    pub fn is_durable(&self) -> bool {
        !matches!(self, LeaseChange::Offer { .. })
    }
}

#[derive(Debug, Default)]
pub struct Leases {
    by_ip: HashMap<Ipv4Addr, Lease>,
    by_mac: HashMap<Mac, Ipv4Addr>,
    /// Where the last pool scan stopped; a cache only, so pool allocation is amortised O(1).
    hint: Cell<u32>,
    /// The end of the last lease each MAC was bound with (survives expiry and release).
    seen: HashMap<Mac, u64>,
}

impl Leases {
    pub fn by_mac(&self, mac: &Mac) -> Option<&Lease> {
        self.by_mac
            .get(mac)
            .and_then(|ip| self.by_ip.get(ip))
            .filter(|l| l.mac == *mac)
    }
    pub fn by_ip(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(ip)
    }
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values()
    }

    /// When `mac`'s last bound lease ended (or ends), even if it expired or was released.
    pub fn last_seen(&self, mac: &Mac) -> Option<u64> {
        self.seen.get(mac).copied()
    }

    /// Every MAC with the end of its last bound lease.
    pub fn seen(&self) -> impl Iterator<Item = (&Mac, &u64)> {
        self.seen.iter()
    }

    fn saw(&mut self, mac: Mac, until: u64) {
        let t = self.seen.entry(mac).or_insert(until);
        *t = (*t).max(until);
    }

    /// True if `ip` is held (unexpired) by anyone other than `mac`.
    pub fn held_by_other(&self, ip: Ipv4Addr, mac: &Mac, now: u64) -> bool {
        self.by_ip
            .get(&ip)
            .is_some_and(|l| l.until > now && (l.mac != *mac || l.state == LeaseState::Declined))
    }

    pub fn apply(&mut self, change: &LeaseChange) {
        match *change {
            LeaseChange::Offer { mac, ip, until } => self.put(Lease {
                mac,
                ip,
                state: LeaseState::Offered,
                until,
            }),
            LeaseChange::Bind { mac, ip, until } => {
                self.saw(mac, until);
                self.put(Lease {
                    mac,
                    ip,
                    state: LeaseState::Bound,
                    until,
                })
            }
            LeaseChange::Seen { mac, until } => self.saw(mac, until),
            LeaseChange::Decline { mac, ip, until } => {
                self.by_mac.remove(&mac);
                self.by_ip.insert(
                    ip,
                    Lease {
                        mac,
                        ip,
                        state: LeaseState::Declined,
                        until,
                    },
                );
            }
            LeaseChange::Release { mac, ip } => {
                if self.by_ip.get(&ip).is_some_and(|l| l.mac == mac) {
                    self.by_ip.remove(&ip);
                }
                if self.by_mac.get(&mac) == Some(&ip) {
                    self.by_mac.remove(&mac);
                }
            }
        }
    }

    fn put(&mut self, lease: Lease) {
        if let Some(old_ip) = self.by_mac.insert(lease.mac, lease.ip) {
            if old_ip != lease.ip && self.by_ip.get(&old_ip).is_some_and(|l| l.mac == lease.mac) {
                self.by_ip.remove(&old_ip);
            }
        }
        if let Some(prev) = self.by_ip.insert(lease.ip, lease.clone()) {
            if prev.mac != lease.mac && self.by_mac.get(&prev.mac) == Some(&lease.ip) {
                self.by_mac.remove(&prev.mac);
            }
        }
    }

    /// First address of `[first, last]` (scanning from the last stop) that `usable` accepts and
    /// no unexpired lease holds.
    pub fn free_in_pool(
        &self,
        first: Ipv4Addr,
        last: Ipv4Addr,
        now: u64,
        usable: impl Fn(Ipv4Addr) -> bool,
    ) -> Option<Ipv4Addr> {
        let (a, b) = (u32::from(first), u32::from(last));
        let size = u64::from(b - a) + 1;
        let start = self.hint.get().clamp(a, b);
        for k in 0..size {
            let n = a + ((u64::from(start - a) + k) % size) as u32;
            let ip = Ipv4Addr::from(n);
            let taken = self.by_ip.get(&ip).is_some_and(|l| l.until > now);
            if !taken && usable(ip) {
                self.hint.set(if n == b { a } else { n + 1 });
                return Some(ip);
            }
        }
        None
    }
}

/// One lease as `pxelator leases` and `GET /api/leases` show it (what a dnsmasq leases file
/// says, and the state): sorted by address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseRow {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// The inventory's name for the MAC (None for a machine it does not know).
    pub hostname: Option<String>,
    /// "bound", "offered", "declined", or "expired" once `expires` is past.
    pub state: &'static str,
    /// Unix seconds, and the same as RFC 3339 (UTC).
    pub expires: u64,
    pub expires_at: String,
}

/// The rows of every lease held in `leases` at `now` (expired ones too, marked so).
pub fn rows(leases: &Leases, inv: &crate::inventory::Inventory, now: u64) -> Vec<LeaseRow> {
    let mut out: Vec<LeaseRow> = leases
        .iter()
        .map(|l| LeaseRow {
            ip: l.ip,
            mac: l.mac,
            hostname: inv.by_mac(&l.mac).and_then(|m| m.hostname.clone()),
            state: if l.until <= now {
                "expired"
            } else {
                l.state.name()
            },
            expires: l.until,
            expires_at: crate::clock::rfc3339(l.until),
        })
        .collect();
    out.sort_by_key(|r| r.ip);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }
    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

    #[test]
    fn rebinding_a_mac_moves_it_and_frees_the_old_address() {
        let mut l = Leases::default();
        l.apply(&LeaseChange::Bind {
            mac: mac(1),
            ip: A,
            until: 100,
        });
        l.apply(&LeaseChange::Bind {
            mac: mac(1),
            ip: B,
            until: 100,
        });
        assert!(l.by_ip(&A).is_none());
        assert_eq!(l.by_mac(&mac(1)).unwrap().ip, B);
    }

    #[test]
    fn pool_skips_held_and_unusable_and_reuses_expired() {
        let mut l = Leases::default();
        l.apply(&LeaseChange::Bind {
            mac: mac(1),
            ip: A,
            until: 100,
        });
        assert_eq!(l.free_in_pool(A, B, 50, |_| true), Some(B));
        assert_eq!(l.free_in_pool(A, B, 50, |ip| ip != B), None);
        assert_eq!(l.free_in_pool(A, B, 150, |ip| ip != B), Some(A));
    }

    #[test]
    fn rows_name_machines_sort_by_address_and_mark_expired() {
        let mut l = Leases::default();
        l.apply(&LeaseChange::Bind {
            mac: mac(2),
            ip: B,
            until: 100,
        });
        l.apply(&LeaseChange::Bind {
            mac: mac(1),
            ip: A,
            until: 300,
        });
        let m = crate::inventory::Machine {
            mac: mac(1),
            ip: Some(A),
            hostname: Some("k1".into()),
            profile: None,
            args: None,
            params: Default::default(),
            source: "machines/k1.toml".into(),
            registered: None,
        };
        let inv = crate::inventory::Inventory::build(vec![m], vec![], &mut vec![]);
        let r = rows(&l, &inv, 200);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].ip, r[0].hostname.as_deref(), r[0].state),
            (A, Some("k1"), "bound")
        );
        assert_eq!(
            (r[1].ip, r[1].hostname.as_deref(), r[1].state),
            (B, None, "expired")
        );
        assert_eq!(r[0].expires_at, "1970-01-01T00:05:00Z");
    }

    #[test]
    fn declined_address_is_held_by_nobody() {
        let mut l = Leases::default();
        l.apply(&LeaseChange::Decline {
            mac: mac(1),
            ip: A,
            until: 100,
        });
        assert!(l.held_by_other(A, &mac(1), 50));
        assert!(l.by_mac(&mac(1)).is_none());
        assert!(!l.held_by_other(A, &mac(1), 150));
    }

    #[test]
    fn release_only_drops_the_releasing_macs_lease() {
        let mut l = Leases::default();
        l.apply(&LeaseChange::Bind {
            mac: mac(1),
            ip: A,
            until: 100,
        });
        l.apply(&LeaseChange::Release { mac: mac(2), ip: A });
        assert!(l.by_ip(&A).is_some());
        l.apply(&LeaseChange::Release { mac: mac(1), ip: A });
        assert!(l.is_empty());
    }
}
