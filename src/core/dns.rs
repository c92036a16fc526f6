//! DNS decisions: the inventory as a zone — an A record for every machine with a hostname and
//! an address (`<hostname>.<domain>`), the members of a group under the group's name
//! (`<group>.<domain>`, one A record each), PTR records under `in-addr.arpa` for the
//! configured subnets — and the command names: `<command>.<hostname>.<domain>` asks the
//! appliance to do something for that machine (wake it, or set its next boot once), so a
//! machine that has only `ping` can still ask.
//!
//! [`decide`] takes one query's bytes, the asker's address, the zone and the policy and says
//! what to do: answer, run a command, refuse, or forward. It does no I/O: the service
//! (`services::dns`) does the sockets, the forwarding, the rate limits and the commands' effects.
use crate::config::DnsConfig;
use crate::core::mac::Mac;
use crate::inventory::Inventory;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

/// A command a DNS name can carry (`wake.kiosk7.<domain>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    /// Power the machine on (Wake-on-LAN, or AMT where it has it).
    Wake,
    /// Its next boot (once) is from the network.
    Netboot,
    /// Its next boot (once) is from its local disk.
    Local,
}

impl Command {
    pub const ALL: [Command; 3] = [Command::Wake, Command::Netboot, Command::Local];
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Wake => "wake",
            Command::Netboot => "netboot",
            Command::Local => "local",
        }
    }
    pub fn parse(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A machine the zone names.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneHost {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// The inventory as DNS sees it; built again at every inventory load ([`Zone::build`]).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// hostname (lower case) → machine.
    hosts: HashMap<String, ZoneHost>,
    /// group name (lower case) → its members' addresses, sorted.
    groups: HashMap<String, Vec<Ipv4Addr>>,
    /// address → hostname (lower case).
    ptr: HashMap<Ipv4Addr, String>,
    /// SOA serial: when this zone was built (unix seconds, as u32).
    serial: u32,
}

impl Zone {
    /// The zone of an inventory: machines with both a hostname and an address; a hostname
    /// that is also a group's name stays the machine's (the group is not reachable by name).
    pub fn build(inv: &Inventory, server_ip: Ipv4Addr, now: i64) -> Zone {
        let mut z = Zone {
            serial: u32::try_from(now.max(0)).unwrap_or(u32::MAX),
            ..Zone::default()
        };
        let mut groups: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for m in inv.machines() {
            let (Some(name), Some(ip)) = (m.hostname.as_deref(), m.ip) else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            z.ptr.entry(ip).or_insert_with(|| name.clone());
            z.hosts.entry(name).or_insert(ZoneHost { ip, mac: m.mac });
            if let Some(g) = m.params.get("group") {
                groups.entry(g.to_ascii_lowercase()).or_default().push(ip);
            }
        }
        // The appliance itself, unless a machine took the name.
        z.hosts.entry("pxelator".into()).or_insert(ZoneHost {
            ip: server_ip,
            mac: Mac([0; 6]),
        });
        z.ptr.entry(server_ip).or_insert_with(|| "pxelator".into());
        for (g, mut ips) in groups {
            if z.hosts.contains_key(&g) {
                continue;
            }
            ips.sort();
            ips.dedup();
            z.groups.insert(g, ips);
        }
        z
    }

    pub fn host(&self, name: &str) -> Option<&ZoneHost> {
        self.hosts.get(name)
    }
    pub fn len(&self) -> usize {
        self.hosts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send this reply (answered from the zone, or an error: FORMERR, NOTIMP, NXDOMAIN).
    Reply(Answered),
    /// A command name asked from an allowed address: carry out `command` for `host`, then send
    /// `reply` (its A record, TTL 0), or [`refusal`] of `query` if it may not run now (rate).
    Command {
        command: Command,
        host: String,
        target: ZoneHost,
        reply: Answered,
    },
    /// Refused (a command not enabled or from an address not allowed; a name outside the
    /// zone with no upstream): send `reply` (REFUSED) and record why.
    Refused { reply: Answered, reason: String },
    /// Not the zone's: forward the datagram to an upstream.
    Forward { name: String, qtype: String },
    /// Not a query (a response, or too short to answer): nothing is sent.
    Drop { reason: String },
}

/// A reply and what it was, for the audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub msg: Message,
    pub name: String,
    pub qtype: String,
    /// The most bytes the asker takes over UDP: 512, or its EDNS size up to [`MAX_UDP`].
    pub limit: u16,
}

impl Answered {
    pub fn rcode(&self) -> &'static str {
        rcode_name(self.msg.metadata.response_code)
    }
}

pub fn rcode_name(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

/// TTL of the answers of command names: never cached, so the next ping asks again.
pub const COMMAND_TTL: u32 = 0;

/// The name of `q` in lower case without the final dot.
fn lower(name: &Name) -> String {
    let mut s = name.to_ascii().to_ascii_lowercase();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// One datagram from `peer` → what to do.
pub fn decide(packet: &[u8], peer: IpAddr, zone: &Zone, policy: &DnsConfig) -> Decision {
    if packet.len() < 12 {
        return Decision::Drop {
            reason: format!("{} bytes, shorter than a DNS header", packet.len()),
        };
    }
    if packet[2] & 0x80 != 0 {
        return Decision::Drop {
            reason: "a response, not a query".into(),
        };
    }
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(e) => {
            // Answer FORMERR with the ID, as a resolver expects; nothing of the rest is echoed.
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            let mut msg = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            msg.metadata.message_type = MessageType::Response;
            return Decision::Reply(Answered {
                msg,
                name: String::new(),
                qtype: format!("undecodable: {e}"),
                limit: 512,
            });
        }
    };
    let (name, qtype) = match req.queries.as_slice() {
        [q] => (lower(q.name()), q.query_type()),
        _ => {
            return Decision::Reply(error(
                &req,
                ResponseCode::FormErr,
                String::new(),
                String::new(),
            ))
        }
    };
    let qtype_s = qtype.to_string();
    if req.metadata.op_code != OpCode::Query || req.queries[0].query_class() != DNSClass::IN {
        return Decision::Reply(error(&req, ResponseCode::NotImp, name, qtype_s));
    }
    // Our own domains: the longest that matches.
    if let Some(domain) = policy
        .domains
        .iter()
        .filter(|d| name == **d || name.ends_with(&format!(".{d}")))
        .max_by_key(|d| d.len())
    {
        let rest = name[..name.len() - domain.len()].trim_end_matches('.');
        let at = Asked {
            req: &req,
            domain,
            zone,
            policy,
        };
        return answer_in_domain(&at, rest, &name, qtype, peer);
    }
    if let Some(ip) = reverse_v4(&name) {
        if policy
            .reverse
            .iter()
            .any(|(net, len)| in_net(ip, *net, *len))
        {
            let at = Asked {
                req: &req,
                domain: &policy.domains[0],
                zone,
                policy,
            };
            let reply = match zone.ptr.get(&ip) {
                Some(host) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
                    let target = fqdn(&format!("{host}.{}", policy.domains[0]));
                    let rec = Record::from_rdata(
                        req.queries[0].name().clone(),
                        policy.ttl,
                        RData::PTR(PTR(target)),
                    );
                    found(&req, vec![rec], &name, qtype_s)
                }
                Some(_) => at.negative(ResponseCode::NoError, name, qtype_s),
                None => at.negative(ResponseCode::NXDomain, name, qtype_s),
            };
            return Decision::Reply(reply);
        }
    }
    if policy.upstreams.is_empty() {
        let reason = format!(
            "{name} is outside {} and no dns.upstreams are set to forward it to",
            policy.domains.join(", ")
        );
        return Decision::Refused {
            reply: error(&req, ResponseCode::Refused, name, qtype_s),
            reason,
        };
    }
    Decision::Forward {
        name,
        qtype: qtype_s,
    }
}

fn answer_in_domain(
    at: &Asked,
    rest: &str,
    name: &str,
    qtype: RecordType,
    peer: IpAddr,
) -> Decision {
    let Asked {
        req,
        domain,
        zone,
        policy,
    } = *at;
    let qtype_s = qtype.to_string();
    let qname = req.queries[0].name().clone();
    let a = |ip: Ipv4Addr, ttl: u32| Record::from_rdata(qname.clone(), ttl, RData::A(A(ip)));
    let wants_a = matches!(qtype, RecordType::A | RecordType::ANY);
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    let reply = match labels.as_slice() {
        [] => {
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                let rec = Record::from_rdata(qname.clone(), policy.ttl, soa(domain, zone, policy));
                found(req, vec![rec], name, qtype_s)
            } else {
                at.negative(ResponseCode::NoError, name.into(), qtype_s)
            }
        }
        [host] => {
            if let Some(h) = zone.hosts.get(*host) {
                if wants_a {
                    found(req, vec![a(h.ip, policy.ttl)], name, qtype_s)
                } else {
                    at.negative(ResponseCode::NoError, name.into(), qtype_s)
                }
            } else if let Some(ips) = zone.groups.get(*host) {
                if wants_a {
                    let recs = ips.iter().map(|ip| a(*ip, policy.ttl)).collect();
                    found(req, recs, name, qtype_s)
                } else {
                    at.negative(ResponseCode::NoError, name.into(), qtype_s)
                }
            } else {
                at.negative(ResponseCode::NXDomain, name.into(), qtype_s)
            }
        }
        [cmd, host] if Command::parse(cmd).is_some() => {
            let command = Command::parse(cmd).expect("checked");
            let Some(h) = zone.hosts.get(*host).filter(|_| *host != "pxelator") else {
                return Decision::Reply(at.negative(ResponseCode::NXDomain, name.into(), qtype_s));
            };
            if !policy.commands.contains(&command) {
                return Decision::Refused {
                    reply: error(req, ResponseCode::Refused, name.into(), qtype_s),
                    reason: format!(
                        "the command {cmd} is not enabled (add \"{cmd}\" to dns.commands)"
                    ),
                };
            }
            let allowed = match peer {
                IpAddr::V4(ip) => policy.command_from.iter().any(|(n, l)| in_net(ip, *n, *l)),
                IpAddr::V6(_) => false,
            };
            if !allowed {
                return Decision::Refused {
                    reply: error(req, ResponseCode::Refused, name.into(), qtype_s),
                    reason: format!(
                        "{peer} may not send commands (it is in none of dns.command_from)"
                    ),
                };
            }
            if !wants_a {
                // A resolver asks AAAA beside A: that one answers empty and does nothing.
                return Decision::Reply(at.negative(ResponseCode::NoError, name.into(), qtype_s));
            }
            return Decision::Command {
                command,
                host: (*host).to_owned(),
                target: h.clone(),
                reply: found(req, vec![a(h.ip, COMMAND_TTL)], name, qtype_s),
            };
        }
        _ => at.negative(ResponseCode::NXDomain, name.into(), qtype_s),
    };
    Decision::Reply(reply)
}

/// SERVFAIL for the query `query` (no upstream answered, too many waiting): its ID and
/// question echoed as far as it decodes.
pub fn servfail(query: &[u8], name: String, qtype: String) -> Answered {
    match Message::from_vec(query) {
        Ok(req) => error(&req, ResponseCode::ServFail, name, qtype),
        Err(_) => Answered {
            msg: Message::error_msg(0, OpCode::Query, ResponseCode::ServFail),
            name,
            qtype,
            limit: 512,
        },
    }
}

/// `reply` of a command turned into REFUSED (the service's rate limit said no).
pub fn refusal(reply: &Answered) -> Answered {
    let mut msg = reply.msg.clone();
    msg.answers.clear();
    msg.metadata.response_code = ResponseCode::Refused;
    Answered {
        msg,
        name: reply.name.clone(),
        qtype: reply.qtype.clone(),
        limit: reply.limit,
    }
}

fn fqdn(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap_or_default();
    n.set_fqdn(true);
    n
}

fn soa(domain: &str, zone: &Zone, policy: &DnsConfig) -> RData {
    RData::SOA(SOA::new(
        fqdn(&format!("pxelator.{domain}")),
        fqdn(&format!("hostmaster.{domain}")),
        zone.serial,
        3600,
        600,
        86400,
        policy.ttl,
    ))
}

/// The response skeleton: ID, opcode, RD copied; the question echoed; EDNS answered when asked.
fn response(req: &Message, code: ResponseCode, authoritative: bool) -> Message {
    let mut msg = Message::response(req.metadata.id, req.metadata.op_code);
    msg.metadata.recursion_desired = req.metadata.recursion_desired;
    msg.metadata.recursion_available = false;
    msg.metadata.authoritative = authoritative;
    msg.metadata.response_code = code;
    msg.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP);
        msg.set_edns(e);
    }
    msg
}

fn error(req: &Message, code: ResponseCode, name: String, qtype: String) -> Answered {
    Answered {
        msg: response(req, code, false),
        name,
        qtype,
        limit: udp_limit(req),
    }
}

/// What `req`'s asker takes over UDP (RFC 6891: at least 512).
pub fn udp_limit(req: &Message) -> u16 {
    req.edns
        .as_ref()
        .map_or(512, |e| e.max_payload())
        .clamp(512, MAX_UDP)
}

fn found(req: &Message, recs: Vec<Record>, name: &str, qtype: String) -> Answered {
    let mut msg = response(req, ResponseCode::NoError, true);
    msg.add_answers(recs);
    Answered {
        msg,
        name: name.into(),
        qtype,
        limit: udp_limit(req),
    }
}

/// One query in one of our domains (or reverse zones): what its negative answers need.
#[derive(Clone, Copy)]
struct Asked<'a> {
    req: &'a Message,
    domain: &'a str,
    zone: &'a Zone,
    policy: &'a DnsConfig,
}

impl Asked<'_> {
    /// NXDOMAIN, or NOERROR with no records (NODATA), with the SOA in the authority section
    /// so resolvers cache the negative answer (RFC 2308).
    fn negative(&self, code: ResponseCode, name: String, qtype: String) -> Answered {
        let mut msg = response(self.req, code, true);
        let apex = if reverse_v4(&name).is_some() {
            fqdn(&name)
        } else {
            fqdn(self.domain)
        };
        msg.authorities.push(Record::from_rdata(
            apex,
            self.policy.ttl,
            soa(self.domain, self.zone, self.policy),
        ));
        Answered {
            msg,
            name,
            qtype,
            limit: udp_limit(self.req),
        }
    }
}

/// What pxelator accepts over UDP (and says in its EDNS answer).
pub const MAX_UDP: u16 = 1232;

/// The reply's bytes, no longer than the asker can take ([`Answered::limit`]): a longer one
/// goes out truncated (TC set, no records) so the asker retries.
pub fn encode(reply: &Answered) -> Vec<u8> {
    match reply.msg.to_vec() {
        Ok(b) if b.len() <= usize::from(reply.limit) => b,
        _ => {
            let mut t = reply.msg.truncate();
            t.metadata.message_type = MessageType::Response;
            t.to_vec().unwrap_or_default()
        }
    }
}

/// `d.c.b.a.in-addr.arpa` → a.b.c.d.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut o = rest.split('.').map(|p| p.parse::<u8>().ok());
    let (d, c, b, a) = (o.next()??, o.next()??, o.next()??, o.next()??);
    o.next().is_none().then_some(Ipv4Addr::new(a, b, c, d))
}

pub fn in_net(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// A query for tests and the load tool: `name` of type `qtype`, with `id`.
pub fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(fqdn(name), qtype));
    m.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Machine;

    fn machine(mac: u8, ip: [u8; 4], host: &str, group: Option<&str>) -> Machine {
        Machine {
            mac: Mac([0x52, 0x54, 0, 0, 0, mac]),
            ip: Some(ip.into()),
            hostname: Some(host.into()),
            profile: None,
            args: None,
            params: group
                .map(|g| [("group".to_string(), g.to_string())].into())
                .unwrap_or_default(),
            source: "machines/x.toml".into(),
            registered: None,
        }
    }

    fn setup() -> (Zone, DnsConfig) {
        let inv = Inventory::build(
            vec![
                machine(1, [10, 77, 1, 31], "kiosk1", Some("reading-room")),
                machine(2, [10, 77, 1, 32], "Kiosk2", Some("reading-room")),
                machine(3, [10, 77, 1, 33], "office1", None),
            ],
            vec![],
            &mut vec![],
        );
        let zone = Zone::build(&inv, Ipv4Addr::new(10, 77, 1, 1), 1_700_000_000);
        let policy = DnsConfig {
            interfaces: vec!["br0".into()],
            port: 53,
            domains: vec!["lab.test".into()],
            reverse: vec![(Ipv4Addr::new(10, 77, 1, 0), 24)],
            upstreams: vec![],
            ttl: 60,
            commands: vec![Command::Wake],
            command_from: vec![(Ipv4Addr::new(10, 77, 1, 0), 24)],
            command_per_minute: 6,
        };
        (zone, policy)
    }

    const INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 1, 50));
    const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 5));

    fn reply(d: Decision) -> Answered {
        match d {
            Decision::Reply(a) => a,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hosts_groups_and_reverse_answer_from_the_inventory() {
        let (z, p) = setup();
        let q = |n: &str, t| reply(decide(&query_bytes(7, n, t), INSIDE, &z, &p));
        let a = q("kiosk1.lab.test", RecordType::A);
        assert_eq!(a.msg.metadata.id, 7);
        assert!(a.msg.metadata.authoritative);
        assert_eq!(a_records(&a.msg), vec![Ipv4Addr::new(10, 77, 1, 31)]);
        // Case does not matter, on either side.
        let a = q("KIOSK2.Lab.Test", RecordType::A);
        assert_eq!(a_records(&a.msg), vec![Ipv4Addr::new(10, 77, 1, 32)]);
        let g = q("reading-room.lab.test", RecordType::A);
        assert_eq!(a_records(&g.msg).len(), 2);
        let ptr = q("33.1.77.10.in-addr.arpa", RecordType::PTR);
        match &ptr.msg.answers[0].data {
            RData::PTR(PTR(n)) => assert_eq!(n.to_ascii(), "office1.lab.test."),
            other => panic!("{other:?}"),
        }
        let nx = q("nobody.lab.test", RecordType::A);
        assert_eq!(nx.rcode(), "NXDOMAIN");
        assert_eq!(nx.msg.authorities.len(), 1, "SOA for negative caching");
        let nx = q("99.1.77.10.in-addr.arpa", RecordType::PTR);
        assert_eq!(nx.rcode(), "NXDOMAIN");
        let empty = q("kiosk1.lab.test", RecordType::AAAA);
        assert_eq!((empty.rcode(), empty.msg.answers.len()), ("NOERROR", 0));
        let me = q("pxelator.lab.test", RecordType::A);
        assert_eq!(a_records(&me.msg), vec![Ipv4Addr::new(10, 77, 1, 1)]);
    }

    #[test]
    fn outside_names_forward_or_are_refused_without_upstreams() {
        let (z, mut p) = setup();
        let d = decide(
            &query_bytes(1, "example.org", RecordType::A),
            INSIDE,
            &z,
            &p,
        );
        assert!(matches!(d, Decision::Refused { .. }), "{d:?}");
        p.upstreams = vec!["10.0.0.53:53".parse().unwrap()];
        let d = decide(
            &query_bytes(1, "example.org", RecordType::A),
            INSIDE,
            &z,
            &p,
        );
        assert_eq!(
            d,
            Decision::Forward {
                name: "example.org".into(),
                qtype: "A".into()
            }
        );
        // Reverse names outside the configured subnets are not ours either.
        let d = decide(
            &query_bytes(1, "1.0.0.10.in-addr.arpa", RecordType::PTR),
            INSIDE,
            &z,
            &p,
        );
        assert!(matches!(d, Decision::Forward { .. }), "{d:?}");
    }

    #[test]
    fn commands_only_enabled_only_from_allowed_networks() {
        let (z, p) = setup();
        let d = decide(
            &query_bytes(9, "wake.kiosk1.lab.test", RecordType::A),
            INSIDE,
            &z,
            &p,
        );
        match d {
            Decision::Command {
                command,
                host,
                target,
                reply,
            } => {
                assert_eq!((command, host.as_str()), (Command::Wake, "kiosk1"));
                assert_eq!(target.mac, Mac([0x52, 0x54, 0, 0, 0, 1]));
                assert_eq!(reply.msg.answers[0].ttl, COMMAND_TTL);
                assert_eq!(a_records(&reply.msg), vec![Ipv4Addr::new(10, 77, 1, 31)]);
                assert_eq!(refusal(&reply).rcode(), "REFUSED");
            }
            other => panic!("{other:?}"),
        }
        let d = decide(
            &query_bytes(9, "wake.kiosk1.lab.test", RecordType::A),
            OUTSIDE,
            &z,
            &p,
        );
        match d {
            Decision::Refused { reply, reason } => {
                assert_eq!(reply.rcode(), "REFUSED");
                assert!(reason.contains("dns.command_from"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let d = decide(
            &query_bytes(9, "netboot.kiosk1.lab.test", RecordType::A),
            INSIDE,
            &z,
            &p,
        );
        assert!(
            matches!(&d, Decision::Refused { reason, .. } if reason.contains("not enabled")),
            "{d:?}"
        );
        // AAAA beside A does nothing; an unknown machine is NXDOMAIN; the appliance is no target.
        let d = decide(
            &query_bytes(9, "wake.kiosk1.lab.test", RecordType::AAAA),
            INSIDE,
            &z,
            &p,
        );
        assert_eq!(reply(d).msg.answers.len(), 0);
        for n in ["wake.nobody.lab.test", "wake.pxelator.lab.test"] {
            let d = decide(&query_bytes(9, n, RecordType::A), INSIDE, &z, &p);
            assert_eq!(reply(d).rcode(), "NXDOMAIN", "{n}");
        }
    }

    #[test]
    fn garbage_gets_formerr_or_nothing_and_big_answers_truncate() {
        let (z, p) = setup();
        assert!(matches!(
            decide(&[0; 5], INSIDE, &z, &p),
            Decision::Drop { .. }
        ));
        let mut resp = query_bytes(3, "kiosk1.lab.test", RecordType::A);
        resp[2] |= 0x80;
        assert!(matches!(
            decide(&resp, INSIDE, &z, &p),
            Decision::Drop { .. }
        ));
        let mut bad = query_bytes(3, "kiosk1.lab.test", RecordType::A);
        bad.truncate(20);
        let r = reply(decide(&bad, INSIDE, &z, &p));
        assert_eq!((r.rcode(), r.msg.metadata.id), ("FORMERR", 3));
        // A group of 100 machines does not fit 512 bytes: TC set, no records.
        let many: Vec<Machine> = (0..100u8)
            .map(|i| machine(i, [10, 77, 1, i + 2], &format!("k{i}"), Some("big")))
            .collect();
        let z = Zone::build(
            &Inventory::build(many, vec![], &mut vec![]),
            Ipv4Addr::new(10, 77, 1, 1),
            0,
        );
        let q = query_bytes(4, "big.lab.test", RecordType::A);
        let r = reply(decide(&q, INSIDE, &z, &p));
        assert_eq!(r.msg.answers.len(), 100);
        let bytes = encode(&r);
        let back = Message::from_vec(&bytes).unwrap();
        assert!(bytes.len() <= 512 && back.metadata.truncation && back.answers.is_empty());
        assert_eq!(back.metadata.id, 4);
    }
}
