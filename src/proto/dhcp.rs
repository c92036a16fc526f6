//! DHCPv4/BOOTP wire format on top of `dhcproto` (a codec only): decode a request into
//! [`DhcpRequest`], encode a [`Reply`] as a BOOTREPLY. Replies are padded to the 300-byte BOOTP
//! minimum (RFC 1542 §3.1.1 relays and old PXE ROMs drop shorter ones); dhcproto does not pad.
use crate::core::boot::ClientKind;
use crate::core::dhcp::{DhcpRequest, Reply, ReplyKind, RequestKind};
use crate::core::mac::Mac;
use dhcproto::v4::{self, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::Ipv4Addr;

/// Minimum BOOTP message length.
pub const BOOTP_MIN_LEN: usize = 300;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("not a DHCP/BOOTP message: {0}")]
    Malformed(String),
    #[error("op {0} is not BOOTREQUEST (a server only answers requests)")]
    NotRequest(u8),
    #[error("hardware type {htype:?} / length {hlen} is not Ethernet (6-byte MAC)")]
    NotEthernet { htype: String, hlen: u8 },
}

/// Decodes a request. The original message is returned too: replies copy fields from it.
pub fn decode_request(bytes: &[u8], iface: &str) -> Result<(DhcpRequest, Message), DecodeError> {
    check_fixed_lengths(bytes)?;
    let msg = Message::decode(&mut Decoder::new(bytes))
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(DecodeError::NotRequest(u8::from(msg.opcode())));
    }
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(DecodeError::NotEthernet {
            htype: format!("{:?}", msg.htype()),
            hlen: msg.hlen(),
        });
    }
    let mac = Mac::from_slice(msg.chaddr())
        .ok_or_else(|| DecodeError::Malformed("chaddr shorter than 6 bytes".into()))?;
    let opts = msg.opts();
    let kind = match opts.msg_type() {
        None => RequestKind::Bootp,
        Some(MessageType::Discover) => RequestKind::Discover,
        Some(MessageType::Request) => RequestKind::Request,
        Some(MessageType::Decline) => RequestKind::Decline,
        Some(MessageType::Release) => RequestKind::Release,
        Some(MessageType::Inform) => RequestKind::Inform,
        Some(other) => RequestKind::Other(u8::from(other)),
    };
    let requested_ip = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let pxe = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => {
            v.starts_with(b"PXEClient") || v.starts_with(b"HTTPClient")
        }
        _ => false,
    };
    let ipxe = match opts.get(OptionCode::UserClass) {
        // RFC 3004 wants length-prefixed entries; iPXE sends the bare string "iPXE".
        Some(DhcpOption::UserClass(v)) => v == b"iPXE" || v.get(1..) == Some(b"iPXE".as_slice()),
        _ => false,
    };
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
        _ => None,
    };
    Ok((
        DhcpRequest {
            kind,
            xid: msg.xid(),
            mac,
            broadcast: msg.flags().broadcast(),
            ciaddr: msg.ciaddr(),
            giaddr: msg.giaddr(),
            requested_ip,
            server_id,
            client: ClientKind { pxe, ipxe, arch },
            iface: iface.to_owned(),
        },
        msg,
    ))
}

/// dhcproto only `debug_assert!`s the length of a few fixed-size options, so a hostile packet
/// panics a debug build (found by the `decoder_never_panics` property test). Check them first.
fn check_fixed_lengths(bytes: &[u8]) -> Result<(), DecodeError> {
    const OPTIONS_START: usize = 240; // 236-byte header + 4-byte magic cookie
    let mut i = OPTIONS_START;
    while i < bytes.len() {
        let code = bytes[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = bytes.get(i + 1) else { break };
        let ok = match code {
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            152..=155 => len == 4,
            _ => true,
        };
        if !ok {
            return Err(DecodeError::Malformed(format!(
                "option {code} has invalid length {len}"
            )));
        }
        i += 2 + usize::from(len);
    }
    Ok(())
}

/// Encodes `reply` as the answer to `req`.
pub fn encode_reply(req: &Message, reply: &Reply) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_xid(req.xid())
        .set_chaddr(req.chaddr())
        .set_giaddr(req.giaddr())
        .set_yiaddr(reply.yiaddr)
        .set_siaddr(reply.siaddr)
        .set_flags(if reply.broadcast {
            Flags::default().set_broadcast()
        } else {
            Flags::default()
        });
    if reply.kind == ReplyKind::Ack && reply.yiaddr.is_unspecified() {
        // DHCPINFORM reply: the client keeps its address.
        m.set_ciaddr(req.ciaddr());
    }
    if let Some(file) = &reply.file {
        if file.len() < 128 {
            m.set_fname_str(file);
        }
    }
    let o = m.opts_mut();
    match reply.kind {
        ReplyKind::Offer => o.insert(DhcpOption::MessageType(MessageType::Offer)),
        ReplyKind::Ack => o.insert(DhcpOption::MessageType(MessageType::Ack)),
        ReplyKind::Nak => o.insert(DhcpOption::MessageType(MessageType::Nak)),
        ReplyKind::Bootp => None,
    };
    if reply.kind != ReplyKind::Bootp {
        o.insert(DhcpOption::ServerIdentifier(reply.server_id));
    }
    if let Some(secs) = reply.lease_secs {
        o.insert(DhcpOption::AddressLeaseTime(secs));
        o.insert(DhcpOption::Renewal(secs / 2));
        o.insert(DhcpOption::Rebinding(secs / 8 * 7));
    }
    if let Some(mask) = reply.mask {
        o.insert(DhcpOption::SubnetMask(mask));
    }
    if let Some(r) = reply.router {
        o.insert(DhcpOption::Router(vec![r]));
    }
    if !reply.dns.is_empty() {
        o.insert(DhcpOption::DomainNameServer(reply.dns.clone()));
    }
    if let Some(d) = &reply.domain {
        o.insert(DhcpOption::DomainName(d.clone()));
    }
    if let Some(h) = &reply.hostname {
        o.insert(DhcpOption::Hostname(h.clone()));
    }
    if let Some(msg) = &reply.message {
        o.insert(DhcpOption::Message(msg.clone()));
    }
    if let Some(file) = &reply.file {
        o.insert(DhcpOption::TFTPServerName(
            reply.siaddr.to_string().into_bytes(),
        ));
        o.insert(DhcpOption::BootfileName(file.clone().into_bytes()));
    }
    if reply.pxe {
        o.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        // PXE spec option 43 sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: boot the file named
        // in this reply, no boot-server discovery.
        o.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
    }
    // RFC 3046 §2.2: relay agent information is echoed back unchanged.
    if let Some(ri @ DhcpOption::RelayAgentInformation(_)) =
        req.opts().get(OptionCode::RelayAgentInformation)
    {
        if !req.giaddr().is_unspecified() {
            o.insert(ri.clone());
        }
    }
    let mut buf = Vec::with_capacity(BOOTP_MIN_LEN + 64);
    m.encode(&mut Encoder::new(&mut buf))
        .expect("encoding a well-formed reply into a Vec cannot fail");
    if buf.len() < BOOTP_MIN_LEN {
        buf.resize(BOOTP_MIN_LEN, 0);
    }
    buf
}

/// Builds a client request (used by tests, benchmarks and the fuzz corpus).
pub fn build_request(
    kind: Option<MessageType>,
    mac: Mac,
    xid: u32,
    extra: Vec<DhcpOption>,
) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_chaddr(&mac.0);
    if let Some(k) = kind {
        m.opts_mut().insert(DhcpOption::MessageType(k));
    }
    for o in extra {
        m.opts_mut().insert(o);
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).expect("encode");
    if buf.len() < BOOTP_MIN_LEN {
        buf.resize(BOOTP_MIN_LEN, 0);
    }
    buf
}

/// Decodes any message (for tests): op, yiaddr, message type and options.
pub fn decode_any(bytes: &[u8]) -> Option<Message> {
    Message::decode(&mut Decoder::new(bytes)).ok()
}

pub use v4::Architecture;

/// Address helper used by tests to read option 54 from a reply.
pub fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dhcp::ReplyKind;
    use proptest::prelude::*;
    use std::net::SocketAddrV4;

    const MAC: Mac = Mac([0x52, 0x54, 0, 1, 2, 3]);

    #[test]
    fn decodes_pxe_discover_fields() {
        let bytes = build_request(
            Some(MessageType::Discover),
            MAC,
            0xdead,
            vec![
                DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
                DhcpOption::ClientSystemArchitecture(Architecture(7)),
                DhcpOption::UserClass(b"iPXE".to_vec()),
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 5)),
            ],
        );
        let (r, _) = decode_request(&bytes, "br0").unwrap();
        assert_eq!(r.kind, RequestKind::Discover);
        assert_eq!(r.mac, MAC);
        assert_eq!(r.xid, 0xdead);
        assert_eq!(
            r.client,
            ClientKind {
                pxe: true,
                ipxe: true,
                arch: Some(7)
            }
        );
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
    }

    #[test]
    fn bootp_without_option_53_decodes_as_bootp() {
        let bytes = build_request(None, MAC, 1, vec![]);
        assert_eq!(
            decode_request(&bytes, "x").unwrap().0.kind,
            RequestKind::Bootp
        );
    }

    #[test]
    fn rejects_replies_short_packets_and_non_ethernet() {
        assert!(matches!(
            decode_request(&[0u8; 100], "x"),
            Err(DecodeError::Malformed(_))
        ));
        let mut bytes = build_request(Some(MessageType::Discover), MAC, 1, vec![]);
        bytes[0] = 2;
        assert_eq!(
            decode_request(&bytes, "x").unwrap_err(),
            DecodeError::NotRequest(2)
        );
        let mut bytes = build_request(Some(MessageType::Discover), MAC, 1, vec![]);
        bytes[2] = 16;
        assert!(matches!(
            decode_request(&bytes, "x"),
            Err(DecodeError::NotEthernet { .. })
        ));
    }

    fn sample_reply(kind: ReplyKind) -> Reply {
        Reply {
            kind,
            yiaddr: Ipv4Addr::new(10, 77, 1, 100),
            siaddr: Ipv4Addr::new(10, 77, 1, 1),
            server_id: Ipv4Addr::new(10, 77, 1, 1),
            file: Some("undionly.kpxe".into()),
            lease_secs: Some(600),
            mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: Some(Ipv4Addr::new(10, 77, 1, 1)),
            dns: vec![Ipv4Addr::new(10, 77, 1, 1)],
            domain: Some("lab".into()),
            hostname: Some("kiosk1".into()),
            pxe: true,
            message: None,
            broadcast: true,
            dest: SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
        }
    }

    #[test]
    fn reply_is_padded_and_carries_boot_fields() {
        let (_, req) = decode_request(
            &build_request(Some(MessageType::Discover), MAC, 9, vec![]),
            "x",
        )
        .unwrap();
        let bytes = encode_reply(&req, &sample_reply(ReplyKind::Offer));
        assert!(bytes.len() >= BOOTP_MIN_LEN);
        let m = decode_any(&bytes).unwrap();
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.xid(), 9);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 77, 1, 100));
        assert_eq!(m.siaddr(), Ipv4Addr::new(10, 77, 1, 1));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(server_id(&m), Some(Ipv4Addr::new(10, 77, 1, 1)));
        assert!(m.flags().broadcast());
        let file = m.fname().unwrap();
        assert!(file.starts_with(b"undionly.kpxe"));
    }

    #[test]
    fn relay_agent_information_is_echoed_only_for_relayed_requests() {
        use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
        let mut info = RelayAgentInformation::default();
        info.insert(RelayInfo::AgentCircuitId(b"port7".to_vec()));
        let opt82 = DhcpOption::RelayAgentInformation(info);
        let bytes = build_request(Some(MessageType::Discover), MAC, 9, vec![opt82.clone()]);
        let (_, mut req) = decode_request(&bytes, "x").unwrap();
        let direct = decode_any(&encode_reply(&req, &sample_reply(ReplyKind::Offer))).unwrap();
        assert!(direct
            .opts()
            .get(OptionCode::RelayAgentInformation)
            .is_none());
        req.set_giaddr(Ipv4Addr::new(10, 88, 0, 1));
        let relayed = decode_any(&encode_reply(&req, &sample_reply(ReplyKind::Offer))).unwrap();
        assert_eq!(
            relayed.opts().get(OptionCode::RelayAgentInformation),
            Some(&opt82)
        );
        assert_eq!(relayed.giaddr(), Ipv4Addr::new(10, 88, 0, 1));
    }

    #[test]
    fn bootp_reply_has_no_dhcp_message_type() {
        let (_, req) = decode_request(&build_request(None, MAC, 9, vec![]), "x").unwrap();
        let m = decode_any(&encode_reply(&req, &sample_reply(ReplyKind::Bootp))).unwrap();
        assert_eq!(m.opts().msg_type(), None);
    }

    /// Found by `decoder_never_panics`: option 94 with a length other than 3 hit a
    /// `debug_assert!` inside dhcproto.
    #[test]
    fn regression_option_94_with_bad_length_is_rejected_not_a_panic() {
        let mut bytes = build_request(Some(MessageType::Discover), MAC, 1, vec![]);
        let end = bytes.iter().rposition(|&b| b == 255).unwrap();
        bytes.splice(end..end, [94u8, 1, 0]);
        let e = decode_request(&bytes, "x").unwrap_err();
        assert!(e.to_string().contains("option 94"), "{e}");
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_request(&bytes, "fuzz");
        }

        #[test]
        fn mutated_valid_requests_never_panic(pos in 0usize..300, val in any::<u8>(), extra in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = build_request(Some(MessageType::Request), MAC, 1, vec![DhcpOption::ClassIdentifier(b"PXEClient".to_vec())]);
            bytes[pos] = val;
            bytes.extend(extra);
            let _ = decode_request(&bytes, "fuzz");
        }

        #[test]
        fn request_fields_round_trip(xid in any::<u32>(), mac in any::<[u8; 6]>(), arch in 0u16..20, ip in any::<[u8; 4]>()) {
            let bytes = build_request(Some(MessageType::Request), Mac(mac), xid, vec![
                DhcpOption::ClientSystemArchitecture(Architecture(arch)),
                DhcpOption::RequestedIpAddress(Ipv4Addr::from(ip)),
            ]);
            let (r, _) = decode_request(&bytes, "p").unwrap();
            prop_assert_eq!(r.xid, xid);
            prop_assert_eq!(r.mac, Mac(mac));
            prop_assert_eq!(r.client.arch, Some(arch));
            prop_assert_eq!(r.requested_ip, Some(Ipv4Addr::from(ip)));
        }
    }
}
