//! The DHCPv4/BOOTP decision (RFC 2131, RFC 951/1542, PXE per RFC 4578): request + inventory +
//! leases + network config + now → what to send (if anything), the lease change to persist
//! first, and why a request was ignored. No I/O here.
use super::boot;
use super::leases::{LeaseChange, LeaseState, Leases, DECLINE_HOLD_SECS, OFFER_HOLD_SECS};
use super::mac::Mac;
use crate::config::{NetConfig, Subnet};
use crate::inventory::{Inventory, Machine};
use std::net::{Ipv4Addr, SocketAddrV4};

pub use crate::proto::dhcp::{DhcpRequest, Reply, ReplyKind, RequestKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Persist `change` (if any), then send `reply`. `new_machine` marks a pool address given to
    /// a MAC the inventory does not know (candidate for zero-touch registration).
    Reply {
        reply: Reply,
        change: Option<LeaseChange>,
        new_machine: bool,
    },
    /// Nothing to send, but state changes (RELEASE, DECLINE).
    Update { change: LeaseChange },
    /// Nothing to send; the reason is audited. A change may still apply (a client that chose
    /// another server frees our offer).
    Ignore {
        reason: String,
        change: Option<LeaseChange>,
    },
}

fn ignore(reason: impl Into<String>) -> Decision {
    Decision::Ignore {
        reason: reason.into(),
        change: None,
    }
}

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;

pub fn decide(
    req: &DhcpRequest,
    inv: &Inventory,
    leases: &Leases,
    net: &NetConfig,
    now: u64,
) -> Decision {
    let subnet = if req.giaddr.is_unspecified() {
        match net
            .subnets
            .iter()
            .find(|s| s.contains(net.server_ip))
            .or(net.subnets.first())
        {
            Some(s) => s,
            None => return ignore("no [[subnet]] is configured"),
        }
    } else {
        match net.subnets.iter().find(|s| s.contains(req.giaddr)) {
            Some(s) => s,
            None => {
                return ignore(format!(
                    "relayed via giaddr {} which lies in no configured subnet; add a [[subnet]] for that segment",
                    req.giaddr
                ))
            }
        }
    };
    let machine = inv.by_mac(&req.mac);
    match req.kind {
        RequestKind::Discover => match offerable(req, machine, inv, leases, subnet, net, now) {
            Ok(ip) => {
                let dynamic = !is_reserved(machine, ip);
                match reply(req, ReplyKind::Offer, ip, machine, inv, subnet, net) {
                    Ok(r) => Decision::Reply {
                        reply: r,
                        change: dynamic.then(|| LeaseChange::Offer { mac: req.mac, ip, until: now + OFFER_HOLD_SECS }),
                        new_machine: false,
                    },
                    Err(why) => ignore(why),
                }
            }
            Err(why) => ignore(why),
        },
        RequestKind::Request => decide_request(req, machine, inv, leases, subnet, net, now),
        RequestKind::Bootp => match machine.and_then(|m| m.ip) {
            Some(ip) if subnet.contains(ip) => match reply(req, ReplyKind::Bootp, ip, machine, inv, subnet, net) {
                Ok(r) => Decision::Reply { reply: r, change: None, new_machine: false },
                Err(why) => ignore(why),
            },
            Some(ip) => ignore(format!("BOOTP: reserved address {ip} is not in subnet {}/{}", subnet.network, subnet.prefix)),
            None => ignore("BOOTP from a MAC with no reserved address (BOOTP leases never expire): add the machine with an ip to the inventory"),
        },
        RequestKind::Decline => match (req.requested_ip, leases.by_mac(&req.mac)) {
            (Some(ip), Some(l)) if l.ip == ip => {
                Decision::Update { change: LeaseChange::Decline { mac: req.mac, ip, until: now + DECLINE_HOLD_SECS } }
            }
            _ => ignore("DECLINE for an address this MAC does not hold"),
        },
        RequestKind::Release => match leases.by_mac(&req.mac) {
            Some(l) if l.ip == req.ciaddr => Decision::Update { change: LeaseChange::Release { mac: req.mac, ip: l.ip } },
            _ => ignore(format!("RELEASE of {} which this MAC does not hold", req.ciaddr)),
        },
        RequestKind::Inform => {
            if req.ciaddr.is_unspecified() {
                return ignore("INFORM without ciaddr");
            }
            match reply(req, ReplyKind::Ack, Ipv4Addr::UNSPECIFIED, machine, inv, subnet, net) {
                Ok(mut r) => {
                    r.lease_secs = None;
                    Decision::Reply { reply: r, change: None, new_machine: false }
                }
                Err(why) => ignore(why),
            }
        }
        RequestKind::Other(t) => ignore(format!("message type {t} is not handled by a server")),
    }
}

/// proxyDHCP (PXE specification v2.1): another server assigns addresses; we only tell PXE
/// clients which boot file to load. DISCOVER on port 67 → OFFER without an address (broadcast);
/// REQUEST on port 4011 → ACK sent straight back to the requester (`peer`).
pub fn decide_proxy(
    req: &DhcpRequest,
    inv: &Inventory,
    net: &NetConfig,
    on_4011: bool,
    peer: SocketAddrV4,
) -> Decision {
    if !req.client.pxe && !req.client.ipxe {
        return ignore(
            "proxy mode answers PXE clients only (no option 60 \"PXEClient\" in this request)",
        );
    }
    let (kind, dest, broadcast) = match (req.kind, on_4011) {
        (RequestKind::Discover, false) => (
            ReplyKind::Offer,
            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
            true,
        ),
        (RequestKind::Request, true) => (ReplyKind::Ack, peer, false),
        (RequestKind::Request, false) => {
            return ignore("proxy mode: a REQUEST on port 67 is for the address server")
        }
        (k, _) => return ignore(format!("proxy mode does not answer {k:?}")),
    };
    let machine = inv.by_mac(&req.mac);
    match boot::boot_file(&req.client, inv.profile_for(machine), &req.mac, net) {
        Ok(Some(file)) => Decision::Reply {
            reply: Reply {
                siaddr: net.server_ip,
                file: Some(file),
                pxe: true,
                ..Reply::bare(kind, net.server_ip, dest, broadcast)
            },
            change: None,
            new_machine: false,
        },
        Ok(None) => ignore("no boot file for this client"),
        Err(why) => ignore(why),
    }
}

fn is_reserved(machine: Option<&Machine>, ip: Ipv4Addr) -> bool {
    machine.and_then(|m| m.ip) == Some(ip)
}

fn in_pool(subnet: &Subnet, ip: Ipv4Addr) -> bool {
    subnet
        .pool
        .is_some_and(|(a, b)| (u32::from(a)..=u32::from(b)).contains(&u32::from(ip)))
}

/// An address this MAC may use from the pool: inside the pool, not reserved in the inventory,
/// not one of the server's own, not held by anyone else.
fn pool_usable(
    ip: Ipv4Addr,
    mac: &Mac,
    inv: &Inventory,
    leases: &Leases,
    subnet: &Subnet,
    net: &NetConfig,
    now: u64,
) -> bool {
    in_pool(subnet, ip)
        && inv.by_ip(&ip).is_none_or(|m| m.mac == *mac)
        && ip != net.server_ip
        && Some(ip) != subnet.router
        && !leases.held_by_other(ip, mac, now)
}

fn offerable(
    req: &DhcpRequest,
    machine: Option<&Machine>,
    inv: &Inventory,
    leases: &Leases,
    subnet: &Subnet,
    net: &NetConfig,
    now: u64,
) -> Result<Ipv4Addr, String> {
    if let Some(ip) = machine.and_then(|m| m.ip) {
        return if subnet.contains(ip) {
            Ok(ip)
        } else {
            Err(format!(
                "reserved address {ip} (from {}) is not in subnet {}/{} where this request came from",
                machine.map(|m| m.source.display().to_string()).unwrap_or_default(),
                subnet.network,
                subnet.prefix
            ))
        };
    }
    let usable = |ip: Ipv4Addr| pool_usable(ip, &req.mac, inv, leases, subnet, net, now);
    if let Some(l) = leases.by_mac(&req.mac) {
        if l.state != LeaseState::Declined && usable(l.ip) {
            return Ok(l.ip);
        }
    }
    if let Some(ip) = req.requested_ip.filter(|ip| usable(*ip)) {
        return Ok(ip);
    }
    let Some((first, last)) = subnet.pool else {
        return Err(format!(
            "MAC {} is not in the inventory and subnet {}/{} has no pool; add the machine or a pool",
            req.mac, subnet.network, subnet.prefix
        ));
    };
    leases
        .free_in_pool(first, last, now, usable)
        .ok_or_else(|| format!("pool {first}-{last} is exhausted; widen it or shorten lease_secs"))
}

fn decide_request(
    req: &DhcpRequest,
    machine: Option<&Machine>,
    inv: &Inventory,
    leases: &Leases,
    subnet: &Subnet,
    net: &NetConfig,
    now: u64,
) -> Decision {
    if let Some(sid) = req.server_id {
        if sid != net.server_ip {
            let change = leases
                .by_mac(&req.mac)
                .filter(|l| l.state == LeaseState::Offered)
                .map(|l| LeaseChange::Release {
                    mac: req.mac,
                    ip: l.ip,
                });
            return Decision::Ignore {
                reason: format!("client chose server {sid}"),
                change,
            };
        }
    }
    let Some(requested) = req
        .requested_ip
        .or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr))
    else {
        return ignore("REQUEST names no address (neither option 50 nor ciaddr)");
    };
    let expected = if let Some(ip) = machine.and_then(|m| m.ip) {
        Some(ip)
    } else {
        match leases.by_mac(&req.mac) {
            Some(l) if l.state != LeaseState::Declined && l.until > now => Some(l.ip),
            // No record (lease expired or lost): grant what was asked if it is free for this MAC.
            _ => {
                pool_usable(requested, &req.mac, inv, leases, subnet, net, now).then_some(requested)
            }
        }
    };
    if expected == Some(requested) && subnet.contains(requested) {
        let lease = subnet.lease_secs;
        // A machine is written into the inventory only after a complete exchange: this MAC
        // was offered this address. A lone REQUEST (as a spoofer sends, one per MAC) gets
        // its lease, which expires, but never a permanent machine file (issue 10).
        let offered = leases
            .by_mac(&req.mac)
            .is_some_and(|l| l.state == LeaseState::Offered && l.ip == requested);
        match reply(req, ReplyKind::Ack, requested, machine, inv, subnet, net) {
            Ok(r) => Decision::Reply {
                reply: r,
                change: Some(LeaseChange::Bind {
                    mac: req.mac,
                    ip: requested,
                    until: now + u64::from(lease),
                }),
                new_machine: machine.is_none() && offered,
            },
            Err(why) => ignore(why),
        }
    } else {
        let why = match expected {
            Some(ip) => format!("requested {requested} but this MAC's address is {ip}"),
            None => format!("requested {requested} which is not available to this MAC"),
        };
        match reply(
            req,
            ReplyKind::Nak,
            Ipv4Addr::UNSPECIFIED,
            machine,
            inv,
            subnet,
            net,
        ) {
            Ok(mut r) => {
                r.message = Some(why);
                Decision::Reply {
                    reply: r,
                    change: None,
                    new_machine: false,
                }
            }
            Err(why) => ignore(why),
        }
    }
}

/// RFC 2131 §4.1: where a reply goes.
fn destination(req: &DhcpRequest, kind: ReplyKind) -> (SocketAddrV4, bool) {
    if !req.giaddr.is_unspecified() {
        return (
            SocketAddrV4::new(req.giaddr, SERVER_PORT),
            req.broadcast || kind == ReplyKind::Nak,
        );
    }
    if kind != ReplyKind::Nak && !req.ciaddr.is_unspecified() {
        return (SocketAddrV4::new(req.ciaddr, CLIENT_PORT), false);
    }
    // Unicast to a client without an address needs an ARP entry we cannot add portably;
    // broadcasting on the serving interface is what every client accepts.
    (SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT), true)
}

fn reply(
    req: &DhcpRequest,
    kind: ReplyKind,
    yiaddr: Ipv4Addr,
    machine: Option<&Machine>,
    inv: &Inventory,
    subnet: &Subnet,
    net: &NetConfig,
) -> Result<Reply, String> {
    let (dest, broadcast) = destination(req, kind);
    if kind == ReplyKind::Nak {
        return Ok(Reply::bare(kind, net.server_ip, dest, broadcast));
    }
    let file = boot::boot_file(&req.client, inv.profile_for(machine), &req.mac, net)?;
    Ok(Reply {
        kind,
        yiaddr,
        siaddr: if file.is_some() {
            net.server_ip
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        server_id: net.server_ip,
        file,
        lease_secs: (kind != ReplyKind::Bootp).then_some(subnet.lease_secs),
        mask: Some(subnet.mask()),
        router: subnet.router,
        dns: subnet.dns.clone(),
        domain: subnet.domain.clone(),
        hostname: machine.and_then(|m| m.hostname.clone()),
        pxe: req.client.pxe,
        message: None,
        broadcast,
        dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::boot::ClientKind;
    use crate::inventory::{BootKind, Profile};
    use std::path::PathBuf;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    const KNOWN: Mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
    const STRANGER: Mac = Mac([0x52, 0x54, 0, 0, 0, 0x99]);
    const RESERVED: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 11);

    fn net() -> NetConfig {
        NetConfig {
            server_ip: SERVER,
            subnets: vec![
                Subnet {
                    network: Ipv4Addr::new(10, 77, 1, 0),
                    prefix: 24,
                    pool: Some((Ipv4Addr::new(10, 77, 1, 100), Ipv4Addr::new(10, 77, 1, 102))),
                    router: Some(SERVER),
                    dns: vec![SERVER],
                    domain: Some("lab".into()),
                    lease_secs: 600,
                },
                Subnet {
                    network: Ipv4Addr::new(10, 88, 0, 0),
                    prefix: 16,
                    pool: Some((Ipv4Addr::new(10, 88, 1, 1), Ipv4Addr::new(10, 88, 1, 50))),
                    router: Some(Ipv4Addr::new(10, 88, 0, 1)),
                    dns: vec![],
                    domain: None,
                    lease_secs: 600,
                },
            ],
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "ipxe.efi".into(),
            http_base: "http://10.77.1.1".into(),
        }
    }

    fn inv() -> Inventory {
        let m = Machine {
            mac: KNOWN,
            ip: Some(RESERVED),
            hostname: Some("kiosk1".into()),
            profile: None,
            args: None,
            params: Default::default(),
            source: PathBuf::from("machines/kiosk1.toml"),
            registered: None,
        };
        let p = Profile {
            name: "default".into(),
            boot: BootKind::Ipxe,
            kernel: Some("vmlinuz".into()),
            initrd: None,
            args: String::new(),
            kiosk: false,
            squashfs: None,
            image: None,
            base: None,
            source: PathBuf::from("profiles/default.toml"),
        };
        Inventory::build(vec![m], vec![p], &mut vec![])
    }

    fn req(kind: RequestKind, mac: Mac) -> DhcpRequest {
        DhcpRequest {
            kind,
            xid: 7,
            mac,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            requested_ip: None,
            server_id: None,
            client: ClientKind::default(),
            iface: "br0".into(),
        }
    }

    fn offered_ip(d: &Decision) -> Ipv4Addr {
        match d {
            Decision::Reply { reply, .. } => reply.yiaddr,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Runs DISCOVER → OFFER → REQUEST → ACK for `mac`, applying changes like the service does.
    fn dora(leases: &mut Leases, mac: Mac, now: u64) -> Ipv4Addr {
        let d = decide(
            &req(RequestKind::Discover, mac),
            &inv(),
            leases,
            &net(),
            now,
        );
        let ip = offered_ip(&d);
        if let Decision::Reply {
            change: Some(c), ..
        } = &d
        {
            leases.apply(c);
        }
        let mut r = req(RequestKind::Request, mac);
        r.requested_ip = Some(ip);
        r.server_id = Some(SERVER);
        match decide(&r, &inv(), leases, &net(), now) {
            Decision::Reply {
                reply,
                change: Some(c),
                ..
            } => {
                assert_eq!(reply.kind, ReplyKind::Ack);
                leases.apply(&c);
            }
            other => panic!("expected ACK, got {other:?}"),
        }
        ip
    }

    #[test]
    fn known_mac_gets_its_reserved_address_with_options() {
        let d = decide(
            &req(RequestKind::Discover, KNOWN),
            &inv(),
            &Leases::default(),
            &net(),
            1000,
        );
        let Decision::Reply { reply, change, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(reply.kind, ReplyKind::Offer);
        assert_eq!(reply.yiaddr, RESERVED);
        assert_eq!(reply.hostname.as_deref(), Some("kiosk1"));
        assert_eq!(reply.mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert!(change.is_none(), "reservations need no offer hold");
        assert_eq!(reply.file, None, "a non-PXE client gets no boot file");
    }

    #[test]
    fn unknown_macs_get_distinct_pool_addresses_until_exhausted() {
        let mut leases = Leases::default();
        let mut seen = vec![];
        for n in 0..3 {
            seen.push(dora(&mut leases, Mac([2, 0, 0, 0, 0, n]), 1000));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
        let d = decide(
            &req(RequestKind::Discover, Mac([2, 0, 0, 0, 0, 9])),
            &inv(),
            &leases,
            &net(),
            1000,
        );
        assert!(
            matches!(&d, Decision::Ignore { reason, .. } if reason.contains("exhausted")),
            "{d:?}"
        );
        // After the leases expire the pool is usable again.
        let d = decide(
            &req(RequestKind::Discover, Mac([2, 0, 0, 0, 0, 9])),
            &inv(),
            &leases,
            &net(),
            1000 + 601,
        );
        offered_ip(&d);
    }

    #[test]
    fn same_mac_gets_same_pool_address_again() {
        let mut leases = Leases::default();
        let a = dora(&mut leases, STRANGER, 1000);
        let b = dora(&mut leases, STRANGER, 1100);
        assert_eq!(a, b);
    }

    #[test]
    fn ack_for_new_pool_mac_is_marked_for_registration() {
        let mut leases = Leases::default();
        let d = decide(
            &req(RequestKind::Discover, STRANGER),
            &inv(),
            &leases,
            &net(),
            1,
        );
        if let Decision::Reply {
            change: Some(c), ..
        } = &d
        {
            leases.apply(c);
        }
        let mut r = req(RequestKind::Request, STRANGER);
        r.requested_ip = Some(offered_ip(&d));
        let d = decide(&r, &inv(), &leases, &net(), 2);
        assert!(
            matches!(
                d,
                Decision::Reply {
                    new_machine: true,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    /// Issue 10: one spoofed REQUEST per MAC (no DISCOVER) got an ACK and a permanent
    /// machine file; ~100 packets used up a /24 for good. The lease is granted (it expires),
    /// the registration is not.
    #[test]
    fn a_lone_request_from_a_new_mac_is_leased_but_never_registered() {
        let mut r = req(RequestKind::Request, STRANGER);
        r.requested_ip = Some(Ipv4Addr::new(10, 77, 1, 101));
        let d = decide(&r, &inv(), &Leases::default(), &net(), 1);
        assert!(
            matches!(
                &d,
                Decision::Reply { reply, new_machine: false, change: Some(LeaseChange::Bind { .. }) }
                    if reply.kind == ReplyKind::Ack
            ),
            "{d:?}"
        );
    }

    #[test]
    fn request_for_someone_elses_address_is_naked_by_broadcast() {
        let mut r = req(RequestKind::Request, STRANGER);
        r.requested_ip = Some(RESERVED);
        let d = decide(&r, &inv(), &Leases::default(), &net(), 1);
        let Decision::Reply { reply, change, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(reply.kind, ReplyKind::Nak);
        assert!(change.is_none());
        assert_eq!(reply.dest.ip(), &Ipv4Addr::BROADCAST);
        assert!(reply.message.unwrap().contains("10.77.1.11"));
    }

    #[test]
    fn init_reboot_with_lost_lease_gets_the_free_address_back() {
        let mut r = req(RequestKind::Request, STRANGER);
        r.requested_ip = Some(Ipv4Addr::new(10, 77, 1, 101));
        let d = decide(&r, &inv(), &Leases::default(), &net(), 1);
        assert!(
            matches!(&d, Decision::Reply { reply, .. } if reply.kind == ReplyKind::Ack),
            "{d:?}"
        );
    }

    #[test]
    fn request_naming_another_server_frees_our_offer_silently() {
        let mut leases = Leases::default();
        let d = decide(
            &req(RequestKind::Discover, STRANGER),
            &inv(),
            &leases,
            &net(),
            1,
        );
        if let Decision::Reply {
            change: Some(c), ..
        } = &d
        {
            leases.apply(c);
        }
        let mut r = req(RequestKind::Request, STRANGER);
        r.server_id = Some(Ipv4Addr::new(10, 77, 1, 2));
        r.requested_ip = Some(offered_ip(&d));
        let d = decide(&r, &inv(), &leases, &net(), 2);
        assert!(
            matches!(
                d,
                Decision::Ignore {
                    change: Some(LeaseChange::Release { .. }),
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn relayed_request_uses_giaddr_subnet_and_replies_to_relay() {
        let mut r = req(RequestKind::Discover, STRANGER);
        r.giaddr = Ipv4Addr::new(10, 88, 0, 1);
        let d = decide(&r, &inv(), &Leases::default(), &net(), 1);
        let Decision::Reply { reply, .. } = d else {
            panic!("{d:?}")
        };
        assert!(
            Ipv4Addr::new(10, 88, 1, 1) <= reply.yiaddr
                && reply.yiaddr <= Ipv4Addr::new(10, 88, 1, 50)
        );
        assert_eq!(
            reply.dest,
            SocketAddrV4::new(Ipv4Addr::new(10, 88, 0, 1), 67)
        );
        assert_eq!(reply.mask, Some(Ipv4Addr::new(255, 255, 0, 0)));
    }

    #[test]
    fn relay_from_unknown_segment_is_ignored_with_fix() {
        let mut r = req(RequestKind::Discover, STRANGER);
        r.giaddr = Ipv4Addr::new(192, 0, 2, 1);
        let d = decide(&r, &inv(), &Leases::default(), &net(), 1);
        assert!(
            matches!(&d, Decision::Ignore { reason, .. } if reason.contains("add a [[subnet]]")),
            "{d:?}"
        );
    }

    #[test]
    fn known_mac_relayed_from_wrong_segment_is_ignored() {
        let mut r = req(RequestKind::Discover, KNOWN);
        r.giaddr = Ipv4Addr::new(10, 88, 0, 1);
        let d = decide(&r, &inv(), &Leases::default(), &net(), 1);
        assert!(
            matches!(&d, Decision::Ignore { reason, .. } if reason.contains("kiosk1.toml")),
            "{d:?}"
        );
    }

    #[test]
    fn bootp_answers_reserved_only() {
        let d = decide(
            &req(RequestKind::Bootp, KNOWN),
            &inv(),
            &Leases::default(),
            &net(),
            1,
        );
        assert!(
            matches!(&d, Decision::Reply { reply, .. } if reply.kind == ReplyKind::Bootp && reply.yiaddr == RESERVED && reply.lease_secs.is_none()),
            "{d:?}"
        );
        let d = decide(
            &req(RequestKind::Bootp, STRANGER),
            &inv(),
            &Leases::default(),
            &net(),
            1,
        );
        assert!(matches!(d, Decision::Ignore { .. }));
    }

    #[test]
    fn release_and_decline_update_state_without_reply() {
        let mut leases = Leases::default();
        let ip = dora(&mut leases, STRANGER, 1);
        let mut r = req(RequestKind::Decline, STRANGER);
        r.requested_ip = Some(ip);
        let d = decide(&r, &inv(), &leases, &net(), 2);
        let Decision::Update { change } = d else {
            panic!("{d:?}")
        };
        leases.apply(&change);
        // The declined address is not offered to anyone for a while.
        let d = decide(
            &req(RequestKind::Discover, KNOWN),
            &inv(),
            &leases,
            &net(),
            3,
        );
        assert_ne!(offered_ip(&d), ip);
        let d = decide(
            &req(RequestKind::Discover, STRANGER),
            &inv(),
            &leases,
            &net(),
            3,
        );
        assert_ne!(offered_ip(&d), ip);

        let mut leases = Leases::default();
        let ip = dora(&mut leases, STRANGER, 1);
        let mut r = req(RequestKind::Release, STRANGER);
        r.ciaddr = ip;
        let Decision::Update { change } = decide(&r, &inv(), &leases, &net(), 2) else {
            panic!()
        };
        leases.apply(&change);
        assert!(leases.is_empty());
    }

    #[test]
    fn inform_acks_to_ciaddr_without_address_or_lease() {
        let mut r = req(RequestKind::Inform, STRANGER);
        r.ciaddr = Ipv4Addr::new(10, 77, 1, 50);
        let Decision::Reply { reply, change, .. } =
            decide(&r, &inv(), &Leases::default(), &net(), 1)
        else {
            panic!()
        };
        assert_eq!(
            (reply.kind, reply.yiaddr, reply.lease_secs),
            (ReplyKind::Ack, Ipv4Addr::UNSPECIFIED, None)
        );
        assert_eq!(reply.dest, SocketAddrV4::new(r.ciaddr, 68));
        assert!(change.is_none());
    }

    #[test]
    fn pxe_client_gets_loader_and_next_server() {
        let mut r = req(RequestKind::Discover, KNOWN);
        r.client = ClientKind {
            pxe: true,
            ipxe: false,
            arch: Some(7),
        };
        let Decision::Reply { reply, .. } = decide(&r, &inv(), &Leases::default(), &net(), 1)
        else {
            panic!()
        };
        assert_eq!(reply.file.as_deref(), Some("ipxe.efi"));
        assert_eq!(reply.siaddr, SERVER);
        assert!(reply.pxe);
    }

    #[test]
    fn proxy_answers_pxe_discover_without_address_and_request_on_4011_to_sender() {
        let mut r = req(RequestKind::Discover, STRANGER);
        let peer = SocketAddrV4::new(Ipv4Addr::new(10, 77, 1, 150), 68);
        assert!(
            matches!(
                decide_proxy(&r, &inv(), &net(), false, peer),
                Decision::Ignore { .. }
            ),
            "non-PXE ignored"
        );
        r.client = ClientKind {
            pxe: true,
            ipxe: false,
            arch: Some(0),
        };
        let Decision::Reply { reply, change, .. } = decide_proxy(&r, &inv(), &net(), false, peer)
        else {
            panic!()
        };
        assert_eq!(
            (reply.kind, reply.yiaddr, reply.lease_secs),
            (ReplyKind::Offer, Ipv4Addr::UNSPECIFIED, None)
        );
        assert_eq!(reply.file.as_deref(), Some("undionly.kpxe"));
        assert_eq!(reply.dest.ip(), &Ipv4Addr::BROADCAST);
        assert!(reply.pxe && change.is_none());
        r.kind = RequestKind::Request;
        assert!(
            matches!(
                decide_proxy(&r, &inv(), &net(), false, peer),
                Decision::Ignore { .. }
            ),
            "REQUEST on 67 ignored"
        );
        let Decision::Reply { reply, .. } = decide_proxy(&r, &inv(), &net(), true, peer) else {
            panic!()
        };
        assert_eq!((reply.kind, reply.dest), (ReplyKind::Ack, peer));
    }

    #[test]
    fn pool_never_hands_out_server_router_or_reserved_addresses() {
        let mut n = net();
        n.subnets[0].pool = Some((Ipv4Addr::new(10, 77, 1, 1), Ipv4Addr::new(10, 77, 1, 12)));
        let mut leases = Leases::default();
        let mut got = vec![];
        for i in 0..12u8 {
            let d = decide(
                &req(RequestKind::Discover, Mac([2, 0, 0, 0, 1, i])),
                &inv(),
                &leases,
                &n,
                1,
            );
            match d {
                Decision::Reply {
                    reply,
                    change: Some(c),
                    ..
                } => {
                    leases.apply(&c);
                    got.push(reply.yiaddr);
                }
                _ => break,
            }
        }
        assert_eq!(
            got.len(),
            10,
            "12 addresses minus server/router .1 and reserved .11: {got:?}"
        );
        assert!(!got.contains(&SERVER) && !got.contains(&RESERVED));
    }
}
