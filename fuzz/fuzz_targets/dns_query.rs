//! Any datagram → core::dns::decide (the DNS service's whole query path but the sockets) and
//! the reply's encoding: what every machine on the segment can send. Never panics; a reply
//! decodes again with the query's ID and fits 512 bytes or the asker's EDNS size (≤ 1232);
//! a command runs only for an asker inside dns.command_from and only for a known machine.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::config::DnsConfig;
use pxelator::core::dns::{decide, encode, Command, Decision, Zone, MAX_UDP};
use pxelator::inventory::{Inventory, Machine};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

fn setup() -> &'static (Zone, DnsConfig) {
    static S: OnceLock<(Zone, DnsConfig)> = OnceLock::new();
    S.get_or_init(|| {
        let machines = (1..=20u8)
            .map(|i| Machine {
                mac: pxelator::core::mac::Mac([0x52, 0x54, 0, 0, 0, i]),
                ip: Some(Ipv4Addr::new(10, 77, 1, 30 + i)),
                hostname: Some(format!("kiosk{i}")),
                profile: None,
                args: None,
                params: [("group".to_string(), format!("g{}", i % 3))].into(),
                source: "machines/k.toml".into(),
                registered: None,
            })
            .collect();
        let inv = Inventory::build(machines, vec![], &mut vec![]);
        let zone = Zone::build(&inv, Ipv4Addr::new(10, 77, 1, 1), 1_700_000_000);
        let policy = DnsConfig {
            interfaces: vec!["br0".into()],
            port: 53,
            domains: vec!["lab.test".into(), "b.lab.test".into()],
            reverse: vec![(Ipv4Addr::new(10, 77, 1, 0), 24)],
            upstreams: vec!["10.0.0.53:53".parse().unwrap()],
            ttl: 60,
            commands: vec![Command::Wake, Command::Netboot],
            command_from: vec![(Ipv4Addr::new(10, 77, 1, 0), 26)],
            command_per_minute: 6,
        };
        (zone, policy)
    })
}

fuzz_target!(|data: &[u8]| {
    let (zone, policy) = setup();
    // The asker: inside or outside the command networks, by the first byte.
    let peer = IpAddr::V4(Ipv4Addr::new(10, 77, 1, data.first().copied().unwrap_or(0)));
    let allowed = data.first().is_some_and(|b| *b < 64);
    let packet = data.get(1..).unwrap_or_default();
    let reply = match decide(packet, peer, zone, policy) {
        Decision::Drop { .. } => return,
        Decision::Forward { name, .. } => {
            let ours = |d: &String| name == *d || name.ends_with(&format!(".{d}"));
            assert!(!policy.domains.iter().any(ours), "{name}");
            return;
        }
        Decision::Command { command, host, target, reply } => {
            assert!(allowed, "a command from {peer}");
            assert!(policy.commands.contains(&command));
            assert_eq!(zone.host(&host).map(|h| h.mac), Some(target.mac));
            reply
        }
        Decision::Reply(r) | Decision::Refused { reply: r, .. } => r,
    };
    let bytes = encode(&reply);
    assert!(bytes.len() <= usize::from(MAX_UDP), "{} bytes", bytes.len());
    let back = hickory_proto::op::Message::from_vec(&bytes).expect("our reply decodes");
    assert_eq!(back.metadata.id, u16::from_be_bytes([packet[0], packet[1]]));
});
