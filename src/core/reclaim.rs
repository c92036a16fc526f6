//! Which auto-registered machines to give back (issue 10): a machine that zero-touch
//! registration wrote (it has `registered = …`), that nobody has edited since (no profile,
//! arguments or parameters; the default hostname), and that has not held a lease for
//! `after_secs` is due to be removed from the inventory, freeing its address for good.
//! A machine someone touched is never reclaimed: delete its `registered` line to keep any other.
use super::leases::Leases;
use super::mac::Mac;
use crate::inventory::{register::default_hostname, Machine};
use std::net::Ipv4Addr;

/// One machine to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaim {
    pub mac: Mac,
    pub ip: Option<Ipv4Addr>,
    pub host: String,
    /// Repo-relative file to delete (`machines/<mac>.toml`).
    pub file: String,
    /// Unix seconds: the later of its registration and the end of its last lease.
    pub last_seen: i64,
}

/// Still exactly as registration wrote it (so no one has made it theirs).
fn untouched(m: &Machine) -> bool {
    m.registered.is_some()
        && m.profile.is_none()
        && m.args.is_none()
        && m.params.is_empty()
        && m.hostname.as_deref() == Some(default_hostname(&m.mac).as_str())
}

/// The machines due for reclaiming at `now` (unix seconds), oldest first, at most `max`.
pub fn due(
    machines: &[Machine],
    leases: &Leases,
    now: i64,
    after_secs: i64,
    max: usize,
) -> Vec<Reclaim> {
    let mut out: Vec<Reclaim> = machines
        .iter()
        .filter(|m| untouched(m))
        .filter_map(|m| {
            let file = format!("machines/{}.toml", m.mac.dashed());
            if !m.source.ends_with(&file) {
                return None;
            }
            let lease_end = leases
                .last_seen(&m.mac)
                .map_or(i64::MIN, |t| i64::try_from(t).unwrap_or(i64::MAX));
            let last_seen = m.registered?.max(lease_end);
            (now.saturating_sub(last_seen) >= after_secs).then(|| Reclaim {
                mac: m.mac,
                ip: m.ip,
                host: default_hostname(&m.mac),
                file,
                last_seen,
            })
        })
        .collect();
    out.sort_by_key(|r| (r.last_seen, r.mac.0));
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::leases::LeaseChange;
    use std::collections::BTreeMap;

    const DAY: i64 = 86_400;

    fn registered(n: u8, at: i64) -> Machine {
        let mac = Mac([0x52, 0x54, 0, 0, 0, n]);
        Machine {
            mac,
            ip: Some(Ipv4Addr::new(10, 77, 1, n)),
            hostname: Some(default_hostname(&mac)),
            profile: None,
            args: None,
            params: BTreeMap::new(),
            source: format!("/srv/conf/machines/{}.toml", mac.dashed()).into(),
            registered: Some(at),
        }
    }

    #[test]
    fn only_untouched_registrations_unseen_for_the_period_are_due() {
        let now = 100 * DAY;
        let old = registered(1, 10 * DAY);
        let recent = registered(2, 95 * DAY);
        let mut named = registered(3, 10 * DAY);
        named.hostname = Some("reading-room-3".into());
        let mut booted = registered(4, 10 * DAY);
        booted.profile = Some("kiosk".into());
        let mut by_hand = registered(5, 10 * DAY);
        by_hand.registered = None;
        let mut renamed_file = registered(6, 10 * DAY);
        renamed_file.source = "/srv/conf/machines/kiosk6.toml".into();
        let leased = registered(7, 10 * DAY);
        let mut leases = Leases::default();
        leases.apply(&LeaseChange::Bind {
            mac: leased.mac,
            ip: leased.ip.unwrap(),
            until: (90 * DAY) as u64,
        });
        let machines = [
            old.clone(),
            recent,
            named,
            booted,
            by_hand,
            renamed_file,
            leased,
        ];
        let due = due(&machines, &leases, now, 30 * DAY, 100);
        assert_eq!(
            due,
            vec![Reclaim {
                mac: old.mac,
                ip: old.ip,
                host: "host-000001".into(),
                file: "machines/52-54-00-00-00-01.toml".into(),
                last_seen: 10 * DAY,
            }]
        );
    }

    #[test]
    fn a_lease_that_ended_long_ago_does_not_keep_a_machine() {
        let m = registered(1, 10 * DAY);
        let mut leases = Leases::default();
        leases.apply(&LeaseChange::Bind {
            mac: m.mac,
            ip: m.ip.unwrap(),
            until: (20 * DAY) as u64,
        });
        assert!(due(std::slice::from_ref(&m), &leases, 49 * DAY, 30 * DAY, 10).is_empty());
        let d = due(&[m], &leases, 50 * DAY, 30 * DAY, 10);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].last_seen, 20 * DAY);
    }

    /// A lease that was released (or dropped by journal compaction once expired) still
    /// counts: the machine was seen then.
    #[test]
    fn a_released_lease_still_counts_as_seen() {
        let m = registered(1, 10 * DAY);
        let mut leases = Leases::default();
        let ip = m.ip.unwrap();
        leases.apply(&LeaseChange::Bind {
            mac: m.mac,
            ip,
            until: (80 * DAY) as u64,
        });
        leases.apply(&LeaseChange::Release { mac: m.mac, ip });
        assert!(leases.by_mac(&m.mac).is_none());
        assert!(due(std::slice::from_ref(&m), &leases, 100 * DAY, 30 * DAY, 10).is_empty());
        let mut compacted = Leases::default();
        compacted.apply(&LeaseChange::Seen {
            mac: m.mac,
            until: (80 * DAY) as u64,
        });
        assert!(due(&[m], &compacted, 100 * DAY, 30 * DAY, 10).is_empty());
    }

    #[test]
    fn at_most_max_oldest_first() {
        let ms: Vec<Machine> = (1..=5)
            .map(|n| registered(n, (10 - n as i64) * DAY))
            .collect();
        let d = due(&ms, &Leases::default(), 100 * DAY, DAY, 2);
        assert_eq!(d.iter().map(|r| r.mac.0[5]).collect::<Vec<_>>(), vec![5, 4]);
    }
}
