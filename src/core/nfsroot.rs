//! Writable network roots, the decisions: which machines get a root over NFS (their profile
//! says `boot = "nfsroot"`), the stable export id of each, the NFS server's configuration
//! (nfs-ganesha: one export per host, to that host's address only) and the kernel arguments
//! that mount it. Pure: `nfsroot` (the I/O half) mounts, writes and signals.
use crate::core::mac::Mac;
use crate::inventory::{BootKind, Inventory, Machine};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// A host whose root is served over NFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub host: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// The profile's `base` ("name" for its current version, or "name-vN").
    pub base: String,
    pub profile: String,
}

/// The NFS path a host mounts its root from (ganesha's pseudo path, also used for NFSv3
/// mounts).
pub fn pseudo_path(host: &str) -> String {
    format!("/hosts/{host}")
}

/// The machines booting an nfsroot profile, and a line for each that cannot (no fixed address
/// or host name: its export is bound to its address, its overlay to its name).
pub fn wanted(inv: &Inventory) -> (Vec<Root>, Vec<String>) {
    let mut roots = Vec::new();
    let mut problems = Vec::new();
    for m in inv.machines() {
        let Some(p) = inv.profile_for(Some(m)) else {
            continue;
        };
        if p.boot != BootKind::Nfsroot {
            continue;
        }
        let Some(base) = &p.base else { continue };
        match (&m.hostname, m.ip) {
            (Some(h), Some(ip)) => roots.push(Root {
                host: h.clone(),
                mac: m.mac,
                ip,
                base: base.clone(),
                profile: p.name.clone(),
            }),
            _ => problems.push(format!(
                "{}: profile {} boots an NFS root, which needs the machine's hostname and ip; set both",
                m.source.display(),
                p.name
            )),
        }
    }
    // Two machines with one name would share an overlay: the first keeps it.
    roots.sort_by(|a, b| a.host.cmp(&b.host).then(a.mac.0.cmp(&b.mac.0)));
    let mut out: Vec<Root> = Vec::with_capacity(roots.len());
    for r in roots {
        if let Some(prev) = out.last().filter(|p| p.host == r.host) {
            problems.push(format!(
                "machines {} and {} are both named {}; an NFS root belongs to one host name, so {} gets none",
                prev.mac, r.mac, r.host, r.mac
            ));
            continue;
        }
        out.push(r);
    }
    (out, problems)
}

/// Export ids by host: kept for hosts that had one (ganesha refuses to change the path of a
/// live export id), the next free id for a new host. Ids of hosts no longer wanted are given
/// up. None when all 65 534 are taken.
pub fn assign_ids(prev: &BTreeMap<String, u16>, hosts: &[&str]) -> Option<BTreeMap<String, u16>> {
    let mut out: BTreeMap<String, u16> = hosts
        .iter()
        .filter_map(|h| prev.get(*h).map(|id| ((*h).to_owned(), *id)))
        .collect();
    let mut used: std::collections::BTreeSet<u16> = out.values().copied().collect();
    // Prefer ids above every id ever seen, so an id freed a moment ago is not reused at once.
    let mut next = prev
        .values()
        .chain(out.values())
        .max()
        .copied()
        .unwrap_or(0);
    for h in hosts {
        if out.contains_key(*h) {
            continue;
        }
        let id = (1..=u16::MAX - 1)
            .map(|i| ((u32::from(next) + i as u32 - 1) % (u16::MAX as u32 - 1) + 1) as u16)
            .find(|id| !used.contains(id))?;
        used.insert(id);
        next = id;
        out.insert((*h).to_owned(), id);
    }
    Some(out)
}

/// A path as a ganesha config string: refused when it holds a quote, a backslash or a
/// control character (it could end the string and add a block).
fn quoted(p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", p.display()))?;
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(format!(
            "{s:?}: the NFS server's configuration cannot hold a path with quotes, backslashes or control characters; choose a plainer state_dir"
        ));
    }
    Ok(format!("\"{s}\""))
}

/// The nfs-ganesha configuration for `roots` with their export ids: NFSv3 (what Debian's
/// initramfs mounts) over TCP, each host's merged overlay `overlays/<host>/root` exported at
/// `/hosts/<host>` to that host's address only, read-write, root not squashed (it is a
/// root filesystem). Nothing else is exported; NLM and RQUOTA are off.
pub fn ganesha_config(
    roots: &[Root],
    ids: &BTreeMap<String, u16>,
    overlays_dir: &Path,
) -> Result<String, String> {
    let mut s = String::from(
        "# Written by pxelator from the inventory (machines whose profile boots an nfsroot).\n\
         # Edits are overwritten.\n\
         NFS_CORE_PARAM {\n  Protocols = 3;\n  Mount_Path_Pseudo = true;\n  Enable_NLM = false;\n  Enable_RQUOTA = false;\n}\n\
         NFSV4 { Graceless = true; }\n\
         EXPORT_DEFAULTS { Access_Type = None; }\n\
         LOG { Default_Log_Level = EVENT; }\n",
    );
    for r in roots {
        crate::inventory::check_hostname(&r.host)?;
        let id = ids
            .get(&r.host)
            .ok_or_else(|| format!("no export id for {}", r.host))?;
        let path = quoted(&overlays_dir.join(&r.host).join("root"))?;
        s.push_str(&format!(
            "EXPORT {{\n  Export_Id = {id};\n  Path = {path};\n  Pseudo = \"{}\";\n  Protocols = 3;\n  Transports = TCP;\n  Access_Type = None;\n  Squash = No_Root_Squash;\n  SecType = sys;\n  FSAL {{ Name = VFS; }}\n  CLIENT {{ Clients = {}; Access_Type = RW; }}\n}}\n",
            pseudo_path(&r.host),
            r.ip
        ));
    }
    Ok(s)
}

/// Kernel arguments that mount `m`'s root over NFS from the server that answered its DHCP
/// (iPXE's `${next-server}`), with its fixed address and host name (`ip=`; iPXE fills in the
/// gateway and netmask it was given). A hard mount: a restarting server stalls the host, it
/// does not fail its writes. None when the machine lacks an address or a name.
pub fn kernel_args(m: &Machine) -> Option<String> {
    let host = m.hostname.as_deref()?;
    let ip = m.ip?;
    crate::inventory::check_hostname(host).ok()?;
    Some(format!(
        "boot=nfs root=/dev/nfs nfsroot=${{next-server}}:{},tcp,hard ip={ip}::${{gateway}}:${{netmask}}:{host}::off rw",
        pseudo_path(host)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn inv(files: &[(&str, &str)]) -> Inventory {
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let f = t.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        let (inv, problems) = crate::inventory::load(t.path(), Ipv4Addr::new(10, 77, 1, 1), None);
        assert!(problems.is_empty(), "{problems:?}");
        inv
    }

    const PROFILE: (&str, &str) = (
        "profiles/nfs.toml",
        "boot = \"nfsroot\"\nbase = \"debian\"\n",
    );

    #[test]
    fn machines_with_an_nfsroot_profile_need_name_and_address() {
        let inv = inv(&[
            PROFILE,
            ("profiles/other.toml", "boot = \"ipxe\"\nkernel = \"k\"\n"),
            ("machines/a.toml", "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.20\"\nhostname = \"ws1\"\nprofile = \"nfs\"\n"),
            ("machines/b.toml", "mac = \"52:54:00:00:00:02\"\nhostname = \"ws2\"\nprofile = \"nfs\"\n"),
            ("machines/c.toml", "mac = \"52:54:00:00:00:03\"\nip = \"10.77.1.22\"\nhostname = \"ws3\"\nprofile = \"other\"\n"),
        ]);
        let (roots, problems) = wanted(&inv);
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].host, "ws1");
        assert_eq!(roots[0].base, "debian");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("machines/b.toml") && problems[0].contains("set both"));
    }

    #[test]
    fn two_machines_with_one_name_do_not_share_an_overlay() {
        let inv = inv(&[
            PROFILE,
            ("machines/a.toml", "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.20\"\nhostname = \"ws1\"\nprofile = \"nfs\"\n"),
            ("machines/b.toml", "mac = \"52:54:00:00:00:02\"\nip = \"10.77.1.21\"\nhostname = \"ws1\"\nprofile = \"nfs\"\n"),
        ]);
        let (roots, problems) = wanted(&inv);
        assert_eq!(roots.len(), 1);
        assert!(problems[0].contains("both named ws1"), "{problems:?}");
    }

    #[test]
    fn export_ids_are_stable_and_never_taken_twice() {
        let a = assign_ids(&BTreeMap::new(), &["a", "b"]).unwrap();
        assert_eq!(a["a"], 1);
        assert_eq!(a["b"], 2);
        let b = assign_ids(&a, &["b", "c"]).unwrap();
        assert_eq!(b["b"], 2);
        assert_eq!(b["c"], 3);
        assert!(!b.contains_key("a"));
        let full: BTreeMap<String, u16> = (1..=65534u16).map(|i| (format!("h{i}"), i)).collect();
        let names: Vec<String> = full.keys().cloned().collect();
        let mut hosts: Vec<&str> = names.iter().map(String::as_str).collect();
        hosts.push("new");
        assert!(assign_ids(&full, &hosts).is_none());
        hosts.retain(|h| *h != "h7");
        assert_eq!(assign_ids(&full, &hosts).unwrap()["new"], 7);
    }

    fn root(host: &str) -> Root {
        Root {
            host: host.into(),
            mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 77, 1, 20),
            base: "debian".into(),
            profile: "nfs".into(),
        }
    }

    #[test]
    fn each_export_is_for_its_host_address_only() {
        let ids = assign_ids(&BTreeMap::new(), &["ws1"]).unwrap();
        let c = ganesha_config(
            &[root("ws1")],
            &ids,
            &PathBuf::from("/var/lib/pxelator/overlays"),
        )
        .unwrap();
        assert!(
            c.contains("Path = \"/var/lib/pxelator/overlays/ws1/root\";"),
            "{c}"
        );
        assert!(c.contains("Pseudo = \"/hosts/ws1\";"));
        assert!(c.contains("CLIENT { Clients = 10.77.1.20; Access_Type = RW; }"));
        assert!(c.contains("EXPORT_DEFAULTS { Access_Type = None; }"));
        assert_eq!(c.matches("EXPORT {").count(), 1);
    }

    #[test]
    fn a_path_or_name_that_could_add_a_block_is_refused() {
        let ids = assign_ids(&BTreeMap::new(), &["ws1", "a\"b"]).unwrap();
        let e = ganesha_config(
            &[root("ws1")],
            &ids,
            &PathBuf::from("/x\";} EXPORT {Path=\"/"),
        )
        .unwrap_err();
        assert!(e.contains("plainer state_dir"), "{e}");
        assert!(ganesha_config(&[root("a\"b")], &ids, &PathBuf::from("/x")).is_err());
    }

    #[test]
    fn kernel_arguments_mount_the_hosts_own_export() {
        let inv = inv(&[
            PROFILE,
            ("machines/a.toml", "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.20\"\nhostname = \"ws1\"\nprofile = \"nfs\"\n"),
        ]);
        let a = kernel_args(&inv.machines()[0]).unwrap();
        assert_eq!(
            a,
            "boot=nfs root=/dev/nfs nfsroot=${next-server}:/hosts/ws1,tcp,hard ip=10.77.1.20::${gateway}:${netmask}:ws1::off rw"
        );
    }
}
