//! Power control: Intel AMT where a machine has one (its `amt` param; credentials in
//! power.toml `[amt]`), otherwise Wake-on-LAN to switch on and an ssh command to switch off.
//!
//! A magic packet is 6 × 0xff then the MAC 16 times (AMD's Magic Packet spec), sent over UDP
//! (port 9, "discard") to the directed broadcast address of the machine's subnet: the local
//! segment's broadcast for machines on the server's own subnet, and for a relayed segment the
//! broadcast of that subnet, which its router forwards when directed broadcasts are allowed
//! there (`ip forward-protocol udp 9` / `ip directed-broadcast` on most routers).
pub mod amt;
pub mod amt_tls;
pub mod schedule;

use crate::config::NetConfig;
use crate::core::mac::Mac;
use crate::inventory::{Inventory, Machine};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PowerError {
    #[error("{who:?} is neither a machine (hostname, MAC, IP) nor a group (a machine param group = \"…\"); `pxelator host list` shows the machines")]
    NoSuchTarget { who: String },
    #[error("{host}: {ip} is in no [[subnet]] of the config, so there is no broadcast address to wake it through; add that subnet")]
    NoSubnet { host: String, ip: Ipv4Addr },
}

/// The magic packet for `mac`.
pub fn magic_packet(mac: &Mac) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for i in 0..16 {
        p[6 + i * 6..12 + i * 6].copy_from_slice(&mac.0);
    }
    p
}

/// Where a machine's magic packet goes: the broadcast address of the configured subnet that
/// contains its IP, or of the server's own subnet when it has no IP.
pub fn wol_target(net: &NetConfig, m: &Machine) -> Result<Ipv4Addr, PowerError> {
    let ip = m.ip.unwrap_or(net.server_ip);
    net.subnets
        .iter()
        .find(|s| s.contains(ip))
        .map(|s| s.broadcast())
        .ok_or_else(|| PowerError::NoSubnet { host: label(m), ip })
}

pub fn label(m: &Machine) -> String {
    m.hostname.clone().unwrap_or_else(|| m.mac.to_string())
}

/// The machines `who` names: a hostname, MAC or IP, or every machine whose `group` param is
/// `who` (sorted by name).
pub fn targets<'a>(inv: &'a Inventory, who: &str) -> Result<Vec<&'a Machine>, PowerError> {
    if let Some(m) = crate::inventory::edit::find(inv, who) {
        return Ok(vec![m]);
    }
    let mut group: Vec<&Machine> = inv
        .machines()
        .iter()
        .filter(|m| m.params.get("group").map(String::as_str) == Some(who))
        .collect();
    if group.is_empty() {
        return Err(PowerError::NoSuchTarget {
            who: who.to_owned(),
        });
    }
    group.sort_by_key(|m| label(m));
    Ok(group)
}

/// Sends one magic packet for `mac` to `target:port`, from `source` (the server's address on
/// that segment).
pub fn send_wol(source: Ipv4Addr, mac: &Mac, target: Ipv4Addr, port: u16) -> std::io::Result<()> {
    let sock = UdpSocket::bind(SocketAddrV4::new(source, 0))?;
    sock.set_broadcast(true)?;
    sock.send_to(&magic_packet(mac), SocketAddrV4::new(target, port))?;
    Ok(())
}

/// Reads `power.toml` from the conf repo (None when there is none). Errors name the file.
pub fn load_schedules(cfg: &crate::config::Config) -> Result<Option<schedule::Schedules>, String> {
    let path = cfg.conf_repo.join("power.toml");
    // Committed, like the inventory (confrepo::read_current).
    match crate::confrepo::read_current(&cfg.conf_repo, "power.toml") {
        Ok(Some(bytes)) => schedule::parse(
            &String::from_utf8_lossy(&bytes),
            jiff::tz::TimeZone::system(),
        )
        .map(|mut s| {
            if let Some(a) = &mut s.amt {
                a.known_certs = Some(cfg.state_dir.join("amt/known_certs"));
            }
            Some(s)
        })
        .map_err(|e| format!("{}: {e}", path.display())),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Switches a machine off by running the `[ssh]` command of power.toml on it (host key pinned
/// like host-file pulls).
pub fn off_by_ssh(
    cfg: &crate::config::Config,
    m: &Machine,
    ssh: &schedule::SshOff,
) -> Result<String, String> {
    let host = label(m);
    let Some(ip) = m.ip else {
        return Err(format!("{host}: no IP in the inventory to ssh to"));
    };
    let plan = crate::backup::HostPlan {
        name: host.clone(),
        address: ip.to_string(),
        port: ssh.port.unwrap_or(22),
        user: ssh.user.clone().unwrap_or_else(|| "root".into()),
        key: ssh
            .key
            .clone()
            .unwrap_or_else(|| cfg.state_dir.join("ssh/id_ed25519")),
        paths: vec![],
        exclude: vec![],
        include_secrets: vec![],
        schedule: None,
    };
    let command = ssh
        .command
        .clone()
        .unwrap_or_else(|| "systemctl poweroff || poweroff".into());
    let known = crate::backup::known_hosts(cfg);
    // A machine that powers off may drop the connection (255) after accepting the command;
    // that is reported as such, not as success.
    plan.ssh(&known)
        .run(
            &format!("power-off command `{command}`"),
            &command,
            None,
            64 * 1024,
            OFF_TIMEOUT,
        )
        .map_err(|e| e.to_string())?;
    Ok(format!("ssh {}@{ip}", plan.user))
}

/// How long a power-off command may take over ssh.
const OFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How power actions reach machines: power.toml's `[ssh]` and `[amt]`, and the WoL port.
#[derive(Clone, Copy, Default)]
pub struct Methods<'a> {
    pub ssh: Option<&'a schedule::SshOff>,
    pub amt: Option<&'a amt::AmtConfig>,
    pub wol_port: u16,
}

impl<'a> Methods<'a> {
    /// The methods power.toml sets; the Wake-on-LAN port is `port`, else power.toml's
    /// `wol_port`, else 9.
    pub fn from(s: Option<&'a schedule::Schedules>, port: Option<u16>) -> Methods<'a> {
        Methods {
            ssh: s.and_then(|s| s.ssh.as_ref()),
            amt: s.and_then(|s| s.amt.as_ref()),
            wol_port: port.or(s.and_then(|s| s.wol_port)).unwrap_or(9),
        }
    }
}

/// Where a machine's AMT listens, from its `amt` param: "yes" means its inventory IP,
/// otherwise "host" or "host:port". None when it has no AMT.
pub fn amt_address(m: &Machine) -> Option<Result<String, String>> {
    let v = m.params.get("amt")?;
    Some(match v.as_str() {
        "no" | "false" | "" => return None,
        "yes" | "true" => m.ip.map(|ip| ip.to_string()).ok_or_else(|| {
            format!(
                "{}: amt = {v:?} but no IP in the inventory; give the AMT address instead (amt = \"10.0.0.5\")",
                label(m)
            )
        }),
        addr => Ok(addr.to_owned()),
    })
}

/// The AMT client for a machine with an `amt` param; Err when it has one but cannot be used.
fn amt_client(m: &Machine, how: &Methods) -> Option<Result<amt::Client, String>> {
    let addr = amt_address(m)?;
    Some(addr.and_then(|a| {
        let cfg = how.amt.ok_or_else(|| {
            format!(
                "{}: amt = {a:?} but power.toml has no [amt] with the credentials (user, password_file)",
                label(m)
            )
        })?;
        amt::Client::new(&a, cfg).map_err(|e| e.to_string())
    }))
}

/// Carries out `action` on every machine `who` names; one event per machine. AMT when the
/// machine has it; otherwise on = Wake-on-LAN, off = the `[ssh]` command, reset = refused.
pub fn act(
    cfg: &crate::config::Config,
    inv: &Inventory,
    who: &str,
    action: schedule::Action,
    how: &Methods,
) -> Result<Vec<crate::core::event::Event>, PowerError> {
    use crate::core::event::Event;
    use schedule::Action;
    let port = how.wol_port;
    let mut events = Vec::new();
    for m in targets(inv, who)? {
        let host = label(m);
        let res = match (action, amt_client(m, how)) {
            (_, Some(Err(e))) => Err(e),
            (_, Some(Ok(c))) => {
                let change = match action {
                    Action::On => amt::Change::On,
                    Action::Off => amt::Change::Off,
                    Action::Reset => amt::Change::Reset,
                };
                c.change(change)
                    .map(|()| ("amt", c.url.clone()))
                    .map_err(|e| e.to_string())
            }
            (Action::On, None) => wol_target(&cfg.dhcp.net, m)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    send_wol(cfg.server_ip, &m.mac, t, port)
                        .map(|()| ("wol", format!("{t}:{port}")))
                        .map_err(|e| format!("sending from {} to {t}:{port}: {e}", cfg.server_ip))
                }),
            (Action::Off, None) => match how.ssh {
                Some(s) => off_by_ssh(cfg, m, s).map(|t| ("ssh", t)),
                None => Err(
                    "no way to switch it off: give it an amt param (and [amt] in power.toml) or add [ssh] to power.toml"
                        .into(),
                ),
            },
            (Action::Reset, None) => Err(
                "reset needs Intel AMT: set its amt param (amt = \"yes\" or the AMT address) and [amt] in power.toml"
                    .into(),
            ),
        };
        events.push(match res {
            Ok((method, target)) => Event::PowerRequested {
                host,
                mac: m.mac,
                action: action.as_str().into(),
                method: method.into(),
                target,
            },
            Err(reason) => Event::PowerFailed {
                host,
                action: action.as_str().into(),
                reason,
            },
        });
    }
    Ok(events)
}

/// Why a power request could not start (before any machine was tried).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Target(#[from] PowerError),
    #[error("{0}")]
    PowerToml(String),
}

/// The operation the CLI's `power on|off|reset|status` and the web UI share: `action` (None:
/// read the state) on every machine each name in `who` names, with the methods power.toml
/// sets; one event per machine, in order. `port` overrides the Wake-on-LAN port.
pub fn request(
    cfg: &crate::config::Config,
    inv: &Inventory,
    who: &[String],
    action: Option<schedule::Action>,
    port: Option<u16>,
) -> Result<Vec<crate::core::event::Event>, RequestError> {
    let sched = load_schedules(cfg).map_err(RequestError::PowerToml)?;
    let how = Methods::from(sched.as_ref(), port);
    let mut events = Vec::new();
    for w in who {
        events.extend(match action {
            Some(a) => act(cfg, inv, w, a, &how)?,
            None => status(inv, w, &how)?,
        });
    }
    Ok(events)
}

/// Reads the power state of every machine `who` names (AMT only); one event per machine.
pub fn status(
    inv: &Inventory,
    who: &str,
    how: &Methods,
) -> Result<Vec<crate::core::event::Event>, PowerError> {
    use crate::core::event::Event;
    let mut events = Vec::new();
    for m in targets(inv, who)? {
        let host = label(m);
        let res = match amt_client(m, how) {
            None => Err("no way to read its power state: it has no amt param (power state is read from Intel AMT)".to_owned()),
            Some(Err(e)) => Err(e),
            Some(Ok(c)) => c
                .power_state()
                .map(|v| (v, c.url.clone()))
                .map_err(|e| e.to_string()),
        };
        events.push(match res {
            Ok((value, target)) => Event::PowerStateSeen {
                host,
                mac: m.mac,
                state: amt::state_name(value).into(),
                value,
                target,
            },
            Err(reason) => Event::PowerFailed {
                host,
                action: "status".into(),
                reason,
            },
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Subnet;

    fn net() -> NetConfig {
        let sub = |n: [u8; 4], p| Subnet {
            network: Ipv4Addr::from(n),
            prefix: p,
            pool: None,
            router: None,
            dns: vec![],
            domain: None,
            lease_secs: 600,
        };
        NetConfig {
            server_ip: Ipv4Addr::new(10, 77, 1, 1),
            subnets: vec![sub([10, 77, 1, 0], 24), sub([10, 88, 0, 0], 16)],
            bios_loader: String::new(),
            uefi_loader: String::new(),
            http_base: String::new(),
        }
    }

    fn machine(ip: Option<[u8; 4]>) -> Machine {
        Machine {
            mac: "52:54:00:12:34:56".parse().unwrap(),
            ip: ip.map(Ipv4Addr::from),
            hostname: Some("kiosk1".into()),
            profile: None,
            args: None,
            params: Default::default(),
            source: "machines/kiosk1.toml".into(),
            registered: None,
        }
    }

    #[test]
    fn magic_packet_is_sync_then_sixteen_macs() {
        let p = magic_packet(&"52:54:00:12:34:56".parse().unwrap());
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(
                &p[6 + 6 * i..12 + 6 * i],
                &[0x52, 0x54, 0, 0x12, 0x34, 0x56]
            );
        }
    }

    #[test]
    fn directed_broadcast_of_the_machines_subnet() {
        let n = net();
        assert_eq!(
            wol_target(&n, &machine(Some([10, 77, 1, 11]))).unwrap(),
            Ipv4Addr::new(10, 77, 1, 255)
        );
        assert_eq!(
            wol_target(&n, &machine(Some([10, 88, 3, 4]))).unwrap(),
            Ipv4Addr::new(10, 88, 255, 255),
            "a relayed segment: its own broadcast, for the router to forward"
        );
        assert_eq!(
            wol_target(&n, &machine(None)).unwrap(),
            Ipv4Addr::new(10, 77, 1, 255)
        );
        let e = wol_target(&n, &machine(Some([192, 168, 1, 5]))).unwrap_err();
        assert!(e.to_string().contains("add that subnet"), "{e}");
    }
}
