//! Appliance setup (issue 11): `setup.toml` (from the PXL-SETUP partition, or given by hand)
//! becomes a working installation under one root directory — the data partition on the
//! appliance: `etc/pxelator.toml`, `etc/network/10-pxelator.network` (the server's own address,
//! for systemd-networkd), the git conf repo with a first commit, the admin user, the ssh key and
//! the boot loaders copied from Debian's ipxe/pxelinux packages. Checked whole before anything
//! is written; refuses to run over an existing installation.
pub mod ask;

use crate::confrepo::{Author, Change, ConfRepo};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// `setup.toml`, as an admin writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupFile {
    /// The interface facing the machines; "auto" (default): the only one besides `lo`, or the
    /// first in name order.
    #[serde(default)]
    pub interface: Option<String>,
    /// This server's address with its prefix, e.g. "10.77.1.1/24".
    pub address: String,
    /// Dynamic range for unknown machines.
    pub pool: Option<[Ipv4Addr; 2]>,
    pub router: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// The first admin user and password (hashed here; never stored as given).
    pub admin: String,
    pub admin_password: String,
    /// OpenSSH public keys allowed to log in as root on the appliance (its console over the
    /// network); none: console only.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
}

/// The key types an authorized_keys line may start with. Anything else (notably options such
/// as `command=` or `from=`) is refused: the file is written from a partition anyone holding
/// the disk can edit, and each line must be exactly one plain key.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The authorized_keys text for `keys`, each checked to be one plain public key.
pub fn authorized_keys(keys: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for (i, k) in keys.iter().enumerate() {
        let mut words = k.split(' ');
        let (kind, body) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let comment_ok = words.all(|w| w.bytes().all(|b| b.is_ascii_graphic()));
        let body_ok = body.len() >= 16
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if !SSH_KEY_TYPES.contains(&kind) || !body_ok || !comment_ok {
            return Err(format!(
                "ssh_authorized_keys[{i}]: not one OpenSSH public key (\"ssh-ed25519 AAAA… comment\" on one line, no options)"
            ));
        }
        out.push_str(k);
        out.push('\n');
    }
    Ok(out)
}

/// What [`apply`] did, for the console and the log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SetupDone {
    pub config: PathBuf,
    pub interface: String,
    pub server_ip: Ipv4Addr,
    pub network: String,
    pub admin: String,
    pub conf_commit: Option<String>,
    pub boot_files: Vec<String>,
}

/// Loaders copied into the boot directory (Debian paths), if present on this system.
pub const LOADERS: &[&str] = &[
    "/usr/lib/ipxe/undionly.kpxe",
    "/usr/lib/ipxe/snponly.efi",
    "/usr/lib/ipxe/ipxe.efi",
    "/usr/lib/PXELINUX/pxelinux.0",
    "/usr/lib/syslinux/modules/bios/ldlinux.c32",
];

/// `a.b.c.d/len` → (address, network address, prefix length).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, Ipv4Addr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("address = {s:?} needs a prefix length, like \"10.77.1.1/24\""))?;
    let ip: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("address = {s:?}: {a:?} is not an IPv4 address"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|n| (8..=30).contains(n))
        .ok_or_else(|| format!("address = {s:?}: prefix length must be 8 to 30"))?;
    let mask = u32::MAX << (32 - u32::from(len));
    Ok((ip, Ipv4Addr::from(u32::from(ip) & mask), len))
}

/// The interface to serve on: the named one, or for "auto" the only non-loopback one (the
/// first in name order if several).
pub fn pick_interface(asked: Option<&str>, present: &[String]) -> Result<String, String> {
    let candidates: Vec<&String> = present.iter().filter(|n| n.as_str() != "lo").collect();
    match asked.filter(|a| *a != "auto") {
        Some(name) if candidates.iter().any(|c| c.as_str() == name) => Ok(name.to_owned()),
        Some(name) => Err(format!(
            "interface = {name:?} does not exist here; present: {} (or use \"auto\")",
            candidates
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => candidates
            .first()
            .map(|s| s.to_string())
            .ok_or_else(|| "no network interface besides lo".into()),
    }
}

/// The files setup writes, as text (pure: checked values in, file contents out).
pub fn render(
    s: &SetupFile,
    root: &Path,
    interface: &str,
) -> Result<(String, String, Ipv4Addr), String> {
    let (ip, net, len) = parse_cidr(&s.address)?;
    if let Some([a, b]) = s.pool {
        let m = u32::MAX << (32 - u32::from(len));
        for p in [a, b] {
            if u32::from(p) & m != u32::from(net) {
                return Err(format!("pool address {p} is not in {net}/{len}"));
            }
        }
        if u32::from(a) > u32::from(b) || (u32::from(a)..=u32::from(b)).contains(&u32::from(ip)) {
            return Err(format!(
                "pool {a}..{b} must be ascending and must not hold this server's {ip}"
            ));
        }
    }
    let q = |v: &dyn std::fmt::Display| format!("\"{v}\"");
    let list = |v: &[Ipv4Addr]| v.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ");
    let mut cfg = format!(
        "# Written by `pxelator setup` from setup.toml; edit freely (pxelator check-config).\n\
         conf_repo = {}\nstate_dir = {}\nboot_dir = {}\nserver_ip = {}\n\n[dhcp]\ninterfaces = [{}]\n\n\
         [[subnet]]\nnetwork = \"{net}/{len}\"\n",
        q(&root.join("conf").display()),
        q(&root.join("state").display()),
        q(&root.join("boot").display()),
        q(&ip),
        q(&interface)
    );
    if let Some([a, b]) = s.pool {
        cfg.push_str(&format!("pool = [{}, {}]\n", q(&a), q(&b)));
    }
    if let Some(r) = s.router {
        cfg.push_str(&format!("router = {}\n", q(&r)));
    }
    if !s.dns.is_empty() {
        cfg.push_str(&format!("dns = [{}]\n", list(&s.dns)));
    }
    let mut network = format!(
        "# Written by `pxelator setup`: this appliance's own address.\n[Match]\nName={interface}\n\n\
         [Network]\nAddress={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        s.address
    );
    if let Some(r) = s.router {
        network.push_str(&format!("Gateway={r}\n"));
    }
    for d in &s.dns {
        network.push_str(&format!("DNS={d}\n"));
    }
    Ok((cfg, network, ip))
}

/// Applies `setup` under `root`; `interfaces` are the ones present on this machine.
pub fn apply(setup: &SetupFile, root: &Path, interfaces: &[String]) -> Result<SetupDone, String> {
    let etc = root.join("etc");
    let config = etc.join("pxelator.toml");
    if config.exists() {
        return Err(format!(
            "{} exists: this appliance is set up already (edit it, or remove it to start over)",
            config.display()
        ));
    }
    let interface = pick_interface(setup.interface.as_deref(), interfaces)?;
    let (cfg_text, network, ip) = render(setup, root, &interface)?;
    // The config is checked by the daemon's own parser before it is written.
    let cfg = crate::config::Config::parse(&config, &cfg_text).map_err(|e| e.to_string())?;
    // The admin's name and password are checked (and the password hashed) before anything
    // is written.
    let mut users = crate::auth::Users::load(&crate::auth::users_path(&cfg.state_dir))
        .map_err(|e| e.to_string())?;
    users
        .add(
            &setup.admin,
            crate::core::access::Role::Admin,
            &setup.admin_password,
        )
        .map_err(|e| e.to_string())?;
    let ssh_keys = authorized_keys(&setup.ssh_authorized_keys)?;
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e: std::io::Error| format!("{}: {e}", p.display())
    };
    for d in [&cfg.state_dir, &cfg.boot_dir, &cfg.conf_repo] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut boot_files = Vec::new();
    for l in LOADERS {
        let from = Path::new(l);
        if let Some(name) = from.file_name().filter(|_| from.is_file()) {
            let to = cfg.boot_dir.join(name);
            std::fs::copy(from, &to).map_err(io(&to))?;
            boot_files.push(name.to_string_lossy().into_owned());
        }
    }
    let net_file = etc.join("network/10-pxelator.network");
    crate::fsutil::write_atomic(&net_file, network.as_bytes(), 0o644).map_err(io(&net_file))?;
    users.save().map_err(|e| e.to_string())?;
    if !ssh_keys.is_empty() {
        let f = etc.join("ssh/authorized_keys");
        crate::fsutil::write_atomic(&f, ssh_keys.as_bytes(), 0o600).map_err(io(&f))?;
    }
    crate::backup::ensure_default_key(&cfg).map_err(|e| e.to_string())?;
    let author = Author::daemon();
    let repo = ConfRepo::open_or_init(&cfg.conf_repo, &author).map_err(|e| e.to_string())?;
    let readme = format!(
        "# pxelator conf repo\n\nMachines go in `machines/<name>.toml`, boot profiles in `profiles/`,\n\
         group defaults in `groups/`, host-file backups in `backup.toml`, power schedules in\n\
         `power.toml`. Every change is a commit; what is committed is what pxelator serves.\n\n\
         Set up on {} for {}/{} ({interface}).\n",
        crate::confrepo::host_name(),
        ip,
        setup.address.split('/').nth(1).unwrap_or("")
    );
    let commit = repo
        .commit(
            &[Change::Write("README.md".into(), readme.into_bytes())],
            &author,
            &format!("Set up pxelator on {ip} ({interface}) from setup.toml"),
        )
        .map_err(|e| e.to_string())?;
    // Written last: its presence means "set up" (the first-boot unit checks for it).
    crate::fsutil::write_atomic(&config, cfg_text.as_bytes(), 0o644).map_err(io(&config))?;
    Ok(SetupDone {
        config,
        interface,
        server_ip: ip,
        network: setup.address.clone(),
        admin: setup.admin.clone(),
        conf_commit: commit.map(|c| c.to_string()),
        boot_files,
    })
}

/// Each interface with its first IPv4 address as `a.b.c.d/len`, if it has one (for the
/// interactive setup's defaults).
pub fn interface_addresses() -> Vec<(String, Option<String>)> {
    let mut addrs: std::collections::BTreeMap<String, Option<String>> =
        interfaces().into_iter().map(|n| (n, None)).collect();
    if let Ok(list) = nix::ifaddrs::getifaddrs() {
        for ifa in list {
            let v4 = |a: Option<&nix::sys::socket::SockaddrStorage>| {
                a.and_then(|a| a.as_sockaddr_in()).map(|s| s.ip())
            };
            if let (Some(ip), Some(mask)) = (v4(ifa.address.as_ref()), v4(ifa.netmask.as_ref())) {
                let len = u32::from(mask).count_ones();
                let e = addrs.entry(ifa.interface_name.clone()).or_default();
                if e.is_none() {
                    *e = Some(format!("{ip}/{len}"));
                }
            }
        }
    }
    addrs.into_iter().collect()
}

/// The network interfaces of this machine (names under /sys/class/net), sorted.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(extra: &str) -> SetupFile {
        crate::tomlfile::parse(
            Path::new("setup.toml"),
            &format!(
                "address = \"10.77.1.1/24\"\npool = [\"10.77.1.100\", \"10.77.1.199\"]\n\
                 admin = \"admin\"\nadmin_password = \"library-pw-2026\"\n{extra}"
            ),
        )
        .unwrap()
    }

    #[test]
    fn ssh_keys_are_plain_keys_one_a_line() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@lib";
        assert_eq!(authorized_keys(&[key.into()]).unwrap(), format!("{key}\n"));
        for bad in [
            format!("command=\"sh\" {key}"),
            format!("{key}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6"),
            "ssh-ed25519".to_string(),
            "ssh-ed25519 not*base64*at*all".to_string(),
            format!("{key} \tx"),
        ] {
            let e = authorized_keys(std::slice::from_ref(&bad)).unwrap_err();
            assert!(e.contains("ssh_authorized_keys[0]"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn cidr_and_interface_choice() {
        assert_eq!(
            parse_cidr("10.77.1.1/24").unwrap(),
            (
                "10.77.1.1".parse().unwrap(),
                "10.77.1.0".parse().unwrap(),
                24
            )
        );
        assert!(parse_cidr("10.77.1.1")
            .unwrap_err()
            .contains("prefix length"));
        assert!(parse_cidr("10.77.1.1/31").is_err());
        let ifs = vec!["enp0s1".to_string(), "lo".into()];
        assert_eq!(pick_interface(None, &ifs).unwrap(), "enp0s1");
        assert_eq!(pick_interface(Some("auto"), &ifs).unwrap(), "enp0s1");
        let e = pick_interface(Some("eth0"), &ifs).unwrap_err();
        assert!(e.contains("present: enp0s1"), "{e}");
    }

    #[test]
    fn a_pool_outside_the_network_or_holding_the_server_is_refused() {
        let mut s = setup("");
        s.pool = Some([
            "10.77.2.100".parse().unwrap(),
            "10.77.2.199".parse().unwrap(),
        ]);
        let e = render(&s, Path::new("/d"), "eth0").unwrap_err();
        assert!(e.contains("not in 10.77.1.0/24"), "{e}");
        s.pool = Some(["10.77.1.1".parse().unwrap(), "10.77.1.9".parse().unwrap()]);
        assert!(render(&s, Path::new("/d"), "eth0").is_err());
    }

    /// setup.toml comes from a FAT partition anyone with the disk in hand can edit: its values
    /// reach the config and the networkd file only typed (addresses, names from the system),
    /// never as text that could add a line or a section.
    #[test]
    fn values_cannot_inject_lines_into_the_generated_files() {
        let d = tempfile::tempdir().unwrap();
        let mut s = setup("");
        s.address = "10.77.1.1/24\n[http]\nlisten = \"0.0.0.0:8080\"".into();
        assert!(render(&s, d.path(), "eth0").is_err());
        let mut s = setup("");
        s.interface = Some("eth0\"]\n[http]".into());
        let e = apply(&s, d.path(), &["eth0".into()]).unwrap_err();
        assert!(e.contains("does not exist here"), "{e}");
        let mut s = setup("");
        s.admin = "admin\nrole = \"admin\"".into();
        assert!(apply(&s, d.path(), &["eth0".into()]).is_err());
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert!(
            left.is_empty(),
            "nothing written for a refused setup: {left:?}"
        );
        let e = crate::tomlfile::parse::<SetupFile>(
            Path::new("setup.toml"),
            "address = \"10.77.1.1/24\"\nadmin = \"a\"\nadmin_password = \"x\"\ntimezone = \"UTC\"\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("setup.toml:4: unknown field `timezone`"),
            "{e}"
        );
    }

    #[test]
    fn applies_once_into_a_working_installation() {
        let d = tempfile::tempdir().unwrap();
        let s = setup("router = \"10.77.1.254\"\ndns = [\"10.77.1.254\"]\n");
        let done = apply(&s, d.path(), &["lo".into(), "ens3".into()]).unwrap();
        assert_eq!(done.interface, "ens3");
        let cfg = crate::config::Config::load(&done.config).unwrap();
        assert_eq!(cfg.server_ip, "10.77.1.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(cfg.dhcp.interfaces, ["ens3"]);
        let net =
            std::fs::read_to_string(d.path().join("etc/network/10-pxelator.network")).unwrap();
        assert!(
            net.contains("Name=ens3")
                && net.contains("Address=10.77.1.1/24")
                && net.contains("Gateway=10.77.1.254"),
            "{net}"
        );
        let users = crate::auth::Users::load(&crate::auth::users_path(&cfg.state_dir)).unwrap();
        assert_eq!(users.list()[0].name, "admin");
        let users_text = std::fs::read_to_string(crate::auth::users_path(&cfg.state_dir)).unwrap();
        assert!(
            !users_text.contains("library-pw-2026"),
            "the password is hashed"
        );
        assert!(cfg.state_dir.join("ssh/id_ed25519").is_file());
        let repo = ConfRepo::open(&cfg.conf_repo).unwrap().unwrap();
        assert_eq!(repo.log(None, 5).unwrap().len(), 1);
        let again = apply(&s, d.path(), &["ens3".into()]).unwrap_err();
        assert!(again.contains("set up already"), "{again}");
    }
}
