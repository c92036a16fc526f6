//! The storage pool (Ceph), the decisions: which machines hold a disk for it (the explicit
//! `pool_disk` param), the configuration texts the appliance's daemons and a kiosk's OSD read,
//! the CRUSH rule that keeps one copy on the appliance, cephx secrets, and what the keeper does
//! about the OSDs it sees (clear `noout` once a machine is back, mark out one missing past its
//! grace, mark in again one that returns). Pure: `pool` (the I/O half) runs the daemons and
//! talks to the mgr's Dashboard API.
use crate::inventory::{Inventory, Machine};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The CRUSH root holding the appliance's own OSD; kiosks' OSDs live under `default`.
pub const APPLIANCE_ROOT: &str = "appliance-root";
/// The CRUSH rule every pool uses: first copy on the appliance, the others on kiosks.
pub const RULE: &str = "appliance_first";
/// The RBD pool pxelator keeps VM disks and snapshot copies in.
pub const RBD_POOL: &str = "pxelator";

/// A machine that gives a disk to the pool: its hostname and the disk its `pool_disk` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub host: String,
    pub ip: Ipv4Addr,
    pub disk: String,
}

/// Checks a `pool_disk` value: an absolute path of plain characters (a device such as
/// `/dev/sdb` or `/dev/disk/by-id/…`, or a file for a lab OSD), with no `..`.
pub fn check_disk(disk: &str) -> Result<(), String> {
    let plain = disk
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_.:+-".contains(&b));
    if !disk.starts_with('/') || !plain || disk.split('/').any(|c| c == "..") || disk.len() > 200 {
        return Err(format!(
            "pool_disk {disk:?} is not a plain absolute path such as /dev/sdb or /dev/disk/by-id/ata-…; letters, digits and /_.:+- only"
        ));
    }
    Ok(())
}

/// The machines with a `pool_disk` param, and a line for each that cannot join (no hostname or
/// address: its OSD is placed under its hostname, its join material served to its address).
pub fn members(inv: &Inventory) -> (Vec<Member>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for m in inv.machines() {
        let Some(disk) = m.params.get("pool_disk") else {
            continue;
        };
        match (&m.hostname, m.ip, check_disk(disk)) {
            (_, _, Err(e)) => problems.push(format!("{}: {e}", m.source.display())),
            (Some(h), Some(ip), Ok(())) => out.push(Member {
                host: h.clone(),
                ip,
                disk: disk.clone(),
            }),
            _ => problems.push(format!(
                "{}: pool_disk needs the machine's hostname and ip (its OSD is named by the one and served to the other); set both",
                m.source.display()
            )),
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out.dedup_by(|b, a| a.host == b.host);
    (out, problems)
}

/// The member record for one machine, if it has a usable `pool_disk`.
pub fn member(m: &Machine) -> Option<Member> {
    let disk = m.params.get("pool_disk")?;
    check_disk(disk).ok()?;
    Some(Member {
        host: m.hostname.clone()?,
        ip: m.ip?,
        disk: disk.clone(),
    })
}

/// The sizes the pool's daemons run with (bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Sizes {
    pub mon_memory_target: u64,
    pub appliance_osd_memory_target: u64,
    pub kiosk_osd_memory_target: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            mon_memory_target: 512 << 20,
            appliance_osd_memory_target: 1 << 30,
            kiosk_osd_memory_target: 896 << 20,
        }
    }
}

/// Everything the cluster's configuration is made from.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub fsid: String,
    /// The appliance's address on the segment: the mon listens there.
    pub mon_ip: Ipv4Addr,
    /// The segment, "a.b.c.0/len".
    pub public_network: String,
    pub sizes: Sizes,
    /// Extra `[global]` options from pxelator.toml's `[pool] ceph_options`.
    pub extra: BTreeMap<String, String>,
}

/// `mon_host` as both messenger versions.
pub fn mon_host(ip: Ipv4Addr) -> String {
    format!("[v2:{ip}:3300,v1:{ip}:6789]")
}

/// Checks an option name or value going into a ceph.conf: one line, no section or comment
/// syntax (the file is generated, never concatenated from raw input).
pub fn check_conf_word(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 200
        || s.chars()
            .any(|c| c.is_control() || matches!(c, '[' | ']' | '#' | ';' | '=' | '\\'))
    {
        return Err(format!(
            "ceph option text {s:?} must be one plain line without []#;=\\"
        ));
    }
    Ok(())
}

/// The `[global]` lines every daemon and client of the cluster needs (cephx everywhere).
fn global_section(c: &Cluster) -> String {
    format!(
        "[global]\nfsid = {}\nmon_host = {}\npublic_network = {}\n\
         auth_cluster_required = cephx\nauth_service_required = cephx\n\
         auth_client_required = cephx\nms_bind_ipv6 = false\n",
        c.fsid,
        mon_host(c.mon_ip),
        c.public_network
    )
}

/// The ceph.conf the appliance's mon, mgr, OSD and tools read. `dir` is `<state_dir>/pool`:
/// every path of the cluster lives there.
pub fn appliance_conf(c: &Cluster, dir: &str, appliance: &str) -> String {
    let mut s = format!(
        "# Written by pxelator pool init; the cluster's own settings live in its mon.\n\
         {global}\
         auth_allow_insecure_global_id_reclaim = false\n\
         osd_pool_default_size = 3\n\
         osd_pool_default_min_size = 1\n\
         osd_crush_chooseleaf_type = 1\n\
         mon_memory_target = {monmem}\n\
         mgr_disabled_modules = restful\n\
         # pxelator's keeper marks a missing member out after [pool] grace; the mon does not.\n\
         mon_osd_down_out_interval = 0\n\
         mon_warn_on_osd_down_out_interval_zero = false\n\
         run_dir = {dir}/run\n\
         admin_socket = {dir}/run/$cluster-$name.asok\n\
         pid_file = {dir}/run/$name.pid\n\
         log_file = {dir}/log/$cluster-$name.log\n\
         crash_dir = {dir}/crash\n",
        global = global_section(c),
        monmem = c.sizes.mon_memory_target,
    );
    for (k, v) in &c.extra {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s.push_str(&format!(
        "[client.admin]\nkeyring = {dir}/admin.keyring\n\
         [mon]\nmon_data = {dir}/mon\n\
         [mgr]\nmgr_data = {dir}/mgr\nkeyring = {dir}/mgr/keyring\n\
         [osd]\nosd_data = {dir}/osd\nkeyring = {dir}/osd/keyring\n\
         osd_memory_target = {osdmem}\n\
         crush_location = root={APPLIANCE_ROOT} host={appliance}\n",
        osdmem = c.sizes.appliance_osd_memory_target,
    ));
    s
}

/// One OSD's identity: its id in the cluster, its uuid (also in the disk's label), its cephx
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OsdIdentity {
    pub id: u32,
    pub uuid: String,
    pub secret: String,
}

/// What a kiosk fetches when it boots (`GET /pool/join/<host>/<token>`): a ceph.conf for its
/// one OSD, with that OSD's key and nothing else. The first line carries what the join script
/// needs, in a fixed form it checks: `# pxelator-osd id=N uuid=U disk=D`.
pub fn kiosk_conf(c: &Cluster, m: &Member, osd: &OsdIdentity) -> String {
    format!(
        "# pxelator-osd id={id} uuid={uuid} disk={disk}\n\
         {global}\
         [osd.{id}]\n\
         key = {secret}\n\
         osd_memory_target = {mem}\n\
         crush_location = root=default host={host}\n",
        id = osd.id,
        uuid = osd.uuid,
        disk = m.disk,
        global = global_section(c),
        secret = osd.secret,
        mem = c.sizes.kiosk_osd_memory_target,
        host = m.host,
    )
}

/// A cephx secret (what `ceph-authtool --gen-print-key` prints) from 16 random bytes and the
/// time it was made: type AES (1), created (seconds, nanoseconds), length, key; little-endian,
/// base64.
pub fn cephx_secret(random: [u8; 16], created_secs: u32) -> String {
    use base64::Engine;
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&created_secs.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(&random);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A uuid (version 4 layout) from 16 random bytes.
pub fn uuid_v4(mut r: [u8; 16]) -> String {
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    let h = super::hex(&r);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The CRUSH rule (text for `crushtool -c`) that puts a pool's first copy on the appliance's
/// OSD and the others on distinct kiosks: with every kiosk off, each object still has its
/// copy on the appliance, which (first in the acting set) is also the primary that serves it.
pub fn crush_rule(id: u32) -> String {
    format!(
        "rule {RULE} {{\n\tid {id}\n\ttype replicated\n\tmin_size 1\n\tmax_size 10\n\
         \tstep take {APPLIANCE_ROOT}\n\tstep chooseleaf firstn 1 type host\n\tstep emit\n\
         \tstep take default\n\tstep chooseleaf firstn -1 type host\n\tstep emit\n}}\n"
    )
}

/// One OSD as the keeper sees it (from the Dashboard API's `/api/osd`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OsdView {
    pub id: u32,
    /// The CRUSH host it sits under (a kiosk's hostname, or the appliance).
    pub host: String,
    pub up: bool,
    #[serde(rename = "in")]
    pub is_in: bool,
    /// It carries an individual `noout` flag now.
    pub noout: bool,
}

/// What the keeper remembers between its rounds (`<state_dir>/pool/keeper.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tracked {
    /// OSDs pxelator set `noout` on (before a scheduled power-off), with when (unix secs).
    #[serde(default)]
    pub noout: BTreeMap<u32, i64>,
    /// OSDs seen down, since when.
    #[serde(default)]
    pub down_since: BTreeMap<u32, i64>,
    /// OSDs pxelator marked out for being missing past the grace (marked in when they return).
    #[serde(default)]
    pub out_by_grace: BTreeSet<u32>,
    /// OSDs an admin drained (`pool drain`): never marked in by the keeper.
    #[serde(default)]
    pub drained: BTreeSet<u32>,
    /// Up state at the last round, for osd_up/osd_down events.
    #[serde(default)]
    pub was_up: BTreeMap<u32, bool>,
}

/// One thing the keeper does or reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The OSD came up (or was seen up for the first time after being down).
    Up {
        id: u32,
        host: String,
    },
    Down {
        id: u32,
        host: String,
    },
    /// Back up (or out): clear the `noout` set before its power-off. Asked again every round
    /// until the flag is seen gone: the mon has been seen to keep it when the clearing met
    /// the OSD's own boot.
    ClearNoout {
        id: u32,
        host: String,
    },
    /// The `noout` pxelator set is gone.
    NooutGone {
        id: u32,
        host: String,
    },
    /// Missing longer than the grace: mark it out so its data is copied elsewhere.
    MarkOut {
        id: u32,
        host: String,
        down_secs: i64,
    },
    /// Marked out by the grace and now back: mark it in.
    MarkIn {
        id: u32,
        host: String,
    },
}

/// The keeper's decision for one round: the OSDs now, what it remembered, the time and the
/// grace → the steps and what to remember. Noout stays on a machine that is down (that is its
/// purpose) until it returns or its grace runs out (then it is marked out, and an out OSD needs
/// no noout); pxelator forgets a noout it set only when the flag is seen gone.
pub fn keep(osds: &[OsdView], before: &Tracked, now: i64, grace_secs: i64) -> (Vec<Step>, Tracked) {
    let mut t = before.clone();
    let mut steps = Vec::new();
    let present: BTreeSet<u32> = osds.iter().map(|o| o.id).collect();
    // OSDs removed from the cluster are forgotten.
    t.noout.retain(|id, _| present.contains(id));
    t.down_since.retain(|id, _| present.contains(id));
    t.out_by_grace.retain(|id| present.contains(id));
    t.drained.retain(|id| present.contains(id));
    t.was_up.retain(|id, _| present.contains(id));
    for o in osds {
        let (id, host) = (o.id, o.host.clone());
        let was = t.was_up.insert(id, o.up);
        if o.up {
            t.down_since.remove(&id);
            if was == Some(false) {
                steps.push(Step::Up {
                    id,
                    host: host.clone(),
                });
            }
            if !o.is_in && t.out_by_grace.remove(&id) && !t.drained.contains(&id) {
                steps.push(Step::MarkIn {
                    id,
                    host: host.clone(),
                });
            }
        } else {
            if was != Some(false) {
                steps.push(Step::Down {
                    id,
                    host: host.clone(),
                });
            }
            let since = *t.down_since.entry(id).or_insert(now);
            let down_secs = now - since;
            if o.is_in && down_secs >= grace_secs && !t.drained.contains(&id) {
                t.out_by_grace.insert(id);
                steps.push(Step::MarkOut {
                    id,
                    host: host.clone(),
                    down_secs,
                });
            }
        }
        // Up again, or out for good: the noout set before its power-off has done its work.
        let marked_out = steps
            .iter()
            .any(|s| matches!(s, Step::MarkOut { id: i, .. } if *i == id));
        if t.noout.contains_key(&id) && (o.up || !o.is_in || marked_out) {
            if o.noout {
                steps.push(Step::ClearNoout { id, host });
            } else {
                t.noout.remove(&id);
                steps.push(Step::NooutGone { id, host });
            }
        }
    }
    (steps, t)
}

/// The OSDs of the machines about to be switched off (by hostname), which get `noout` first.
pub fn noout_for<'a>(osds: &'a [OsdView], hosts: &BTreeSet<String>) -> Vec<&'a OsdView> {
    osds.iter()
        .filter(|o| hosts.contains(&o.host) && o.is_in)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osd(id: u32, host: &str, up: bool, is_in: bool) -> OsdView {
        OsdView {
            id,
            host: host.into(),
            up,
            is_in,
            noout: false,
        }
    }

    fn flagged(mut o: OsdView) -> OsdView {
        o.noout = true;
        o
    }

    #[test]
    fn cephx_secret_has_cephs_layout() {
        // ceph-authtool keys start "AQ" (type 1, little-endian) and are 40 characters.
        let k = cephx_secret([7; 16], 1_796_095_324);
        assert_eq!(k.len(), 40);
        assert!(k.starts_with("AQ"), "{k}");
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&k)
            .unwrap();
        assert_eq!(&raw[10..12], &16u16.to_le_bytes());
        assert_eq!(&raw[12..], &[7; 16]);
    }

    #[test]
    fn uuid_is_version_4() {
        let u = uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    #[test]
    fn disk_paths_are_plain() {
        for ok in [
            "/dev/sdb",
            "/dev/disk/by-id/ata-WDC_WD10-1234:0",
            "/var/lib/lab/disk.img",
        ] {
            assert!(check_disk(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sdb",
            "/dev/sdb; rm -rf /",
            "/dev/../etc/passwd",
            "/dev/sd b",
            "/dev/$x",
            "",
        ] {
            assert!(check_disk(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conf_words_cannot_open_sections() {
        assert!(check_conf_word("mon_data_avail_warn").is_ok());
        for bad in ["a\nb", "[osd]", "x = y", "k#", ""] {
            assert!(check_conf_word(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn noout_is_cleared_when_back_and_kept_while_down() {
        let mut t = Tracked::default();
        t.noout.insert(1, 100);
        t.noout.insert(2, 100);
        t.was_up.insert(1, false);
        t.was_up.insert(2, false);
        let osds = [
            flagged(osd(1, "k1", true, true)),
            flagged(osd(2, "k2", false, true)),
        ];
        let (steps, t2) = keep(&osds, &t, 200, 3 * 86400);
        assert_eq!(
            steps,
            vec![
                Step::Up {
                    id: 1,
                    host: "k1".into()
                },
                Step::ClearNoout {
                    id: 1,
                    host: "k1".into()
                },
            ]
        );
        assert!(t2.noout.contains_key(&2), "a machine still off keeps noout");
        assert_eq!(t2.down_since.get(&2), Some(&200));
        // The flag survived the clearing (the mon kept it): asked again, remembered still.
        let (again, t3) = keep(&osds, &t2, 210, 3 * 86400);
        assert_eq!(
            again,
            vec![Step::ClearNoout {
                id: 1,
                host: "k1".into()
            }]
        );
        // Seen gone: forgotten, reported once.
        let osds = [osd(1, "k1", true, true), flagged(osd(2, "k2", false, true))];
        let (gone, t4) = keep(&osds, &t3, 220, 3 * 86400);
        assert_eq!(
            gone,
            vec![Step::NooutGone {
                id: 1,
                host: "k1".into()
            }]
        );
        assert!(!t4.noout.contains_key(&1));
        let (none, _) = keep(&osds, &t4, 230, 3 * 86400);
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn missing_past_grace_is_marked_out_once_and_in_when_back() {
        let grace = 3 * 86400;
        let osds_down = [osd(5, "k5", false, true)];
        let (s1, t1) = keep(&osds_down, &Tracked::default(), 1000, grace);
        // (Its noout, set at power-off, is cleared when it is marked out: see below.)
        assert_eq!(
            s1,
            vec![Step::Down {
                id: 5,
                host: "k5".into()
            }]
        );
        let (s2, t2) = keep(&osds_down, &t1, 1000 + grace - 1, grace);
        assert!(s2.is_empty(), "{s2:?}");
        let (s3, t3) = keep(&osds_down, &t2, 1000 + grace, grace);
        assert_eq!(
            s3,
            vec![Step::MarkOut {
                id: 5,
                host: "k5".into(),
                down_secs: grace
            }]
        );
        // Once out, nothing more is done while it stays away.
        let (s4, t4) = keep(&[osd(5, "k5", false, false)], &t3, 1000 + 2 * grace, grace);
        assert!(s4.is_empty(), "{s4:?}");
        let (s5, t5) = keep(&[osd(5, "k5", true, false)], &t4, 1000 + 3 * grace, grace);
        assert!(s5.contains(&Step::MarkIn {
            id: 5,
            host: "k5".into()
        }));
        assert!(t5.out_by_grace.is_empty());
    }

    #[test]
    fn marked_out_past_the_grace_its_noout_is_cleared() {
        let mut t = Tracked::default();
        t.noout.insert(7, 0);
        let (s, t2) = keep(&[flagged(osd(7, "k7", false, true))], &t, 100, 50);
        assert_eq!(
            s,
            vec![Step::Down {
                id: 7,
                host: "k7".into()
            }],
            "first seen down now: the grace counts from here, noout stays"
        );
        let (s, t3) = keep(&[flagged(osd(7, "k7", false, true))], &t2, 200, 50);
        assert_eq!(
            s,
            vec![
                Step::MarkOut {
                    id: 7,
                    host: "k7".into(),
                    down_secs: 100
                },
                Step::ClearNoout {
                    id: 7,
                    host: "k7".into()
                },
            ]
        );
        let (s, t4) = keep(&[osd(7, "k7", false, false)], &t3, 210, 50);
        assert_eq!(
            s,
            vec![Step::NooutGone {
                id: 7,
                host: "k7".into()
            }]
        );
        assert!(t4.noout.is_empty());
    }

    #[test]
    fn drained_osds_are_never_marked_in_or_counted() {
        let mut t = Tracked::default();
        t.drained.insert(3);
        t.out_by_grace.insert(3);
        let (s, _) = keep(&[osd(3, "k3", true, false)], &t, 10, 100);
        assert!(!s.iter().any(|x| matches!(x, Step::MarkIn { .. })), "{s:?}");
        let (s, _) = keep(&[osd(3, "k3", false, true)], &t, 1000, 100);
        assert!(
            !s.iter().any(|x| matches!(x, Step::MarkOut { .. })),
            "{s:?}"
        );
    }

    #[test]
    fn removed_osds_are_forgotten() {
        let mut t = Tracked::default();
        t.noout.insert(9, 1);
        t.down_since.insert(9, 1);
        let (_, t2) = keep(&[], &t, 10, 100);
        assert_eq!(t2, Tracked::default());
    }

    #[test]
    fn noout_goes_to_exactly_the_hosts_osds() {
        let osds = [
            osd(0, "appliance", true, true),
            osd(1, "k1", true, true),
            osd(2, "k2", true, true),
            osd(3, "k3", true, false),
        ];
        let hosts: BTreeSet<String> = ["k1", "k3"].iter().map(|s| s.to_string()).collect();
        let ids: Vec<u32> = noout_for(&osds, &hosts).iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![1], "out OSDs need no noout");
    }

    #[test]
    fn appliance_conf_keeps_every_path_under_its_dir_and_the_down_out_timer_off() {
        let mut extra = BTreeMap::new();
        extra.insert("mon_data_avail_warn".to_owned(), "1".to_owned());
        let c = Cluster {
            fsid: "f".into(),
            mon_ip: "10.0.0.1".parse().unwrap(),
            public_network: "10.0.0.0/24".into(),
            sizes: Sizes::default(),
            extra,
        };
        let s = appliance_conf(&c, "/s/pool", "appliance");
        for want in [
            "[global]\nfsid = f\nmon_host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789]\n",
            "auth_client_required = cephx\n",
            "osd_pool_default_min_size = 1\n",
            "mon_osd_down_out_interval = 0\n",
            "mon_data_avail_warn = 1\n",
            "[mon]\nmon_data = /s/pool/mon\n",
            "crush_location = root=appliance-root host=appliance\n",
        ] {
            assert!(s.contains(want), "{want:?} missing from:\n{s}");
        }
        for line in s.lines().filter(|l| l.contains("= /")) {
            assert!(
                line.contains("/s/pool/"),
                "a path outside the pool's dir: {line}"
            );
        }
    }

    #[test]
    fn kiosk_conf_carries_only_its_own_osd() {
        let c = Cluster {
            fsid: "f".into(),
            mon_ip: "10.0.0.1".parse().unwrap(),
            public_network: "10.0.0.0/24".into(),
            sizes: Sizes::default(),
            extra: BTreeMap::new(),
        };
        let m = Member {
            host: "k1".into(),
            ip: "10.0.0.11".parse().unwrap(),
            disk: "/dev/vdb".into(),
        };
        let s = kiosk_conf(
            &c,
            &m,
            &OsdIdentity {
                id: 4,
                uuid: "u".into(),
                secret: "AQk".into(),
            },
        );
        assert!(s.starts_with("# pxelator-osd id=4 uuid=u disk=/dev/vdb\n"));
        assert!(s.contains("[osd.4]\nkey = AQk\n"));
        assert!(s.contains("host=k1"));
        assert!(!s.contains("client.admin"));
        assert!(s.contains(&format!("osd_memory_target = {}", 896 << 20)));
    }
}
