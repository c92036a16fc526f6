//! DHCPv4/BOOTP wire format on top of `dhcproto` (a codec only): decode a request into
//! [`DhcpRequest`], encode a [`Reply`] as a BOOTREPLY. Replies are padded to the 300-byte BOOTP
//! minimum (RFC 1542 §3.1.1 relays and old PXE ROMs drop shorter ones); dhcproto does not pad.
use crate::mac::Mac;
use dhcproto::v4::{self, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::{Ipv4Addr, SocketAddrV4};

/// What the DHCP request says about the boot firmware.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientKind {
    /// Option 60 starts with "PXEClient" (or "HTTPClient").
    pub pxe: bool,
    /// Option 77 user class is "iPXE": the client runs iPXE and can fetch a script over HTTP.
    pub ipxe: bool,
    /// Option 93, first entry.
    pub arch: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// No option 53: plain BOOTP (RFC 951).
    Bootp,
    Discover,
    Request,
    Decline,
    Release,
    Inform,
    Other(u8),
}

/// The parts of a DHCP request that decisions look at (decoded here, decided on in
/// `pxelator::core::dhcp`).
#[derive(Debug, Clone)]
pub struct DhcpRequest {
    pub kind: RequestKind,
    pub xid: u32,
    pub mac: Mac,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    pub client: ClientKind,
    /// Interface the request arrived on.
    pub iface: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Offer,
    Ack,
    Nak,
    /// BOOTREPLY to a plain BOOTP request (no option 53).
    Bootp,
}

impl ReplyKind {
    pub fn name(self) -> &'static str {
        match self {
            ReplyKind::Offer => "offer",
            ReplyKind::Ack => "ack",
            ReplyKind::Nak => "nak",
            ReplyKind::Bootp => "bootreply",
        }
    }
}

/// Everything needed to encode a reply; `proto::dhcp::encode_reply` copies the rest
/// (chaddr, htype, flags, relay agent information) from the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub server_id: Ipv4Addr,
    pub file: Option<String>,
    pub lease_secs: Option<u32>,
    pub mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    /// Answer as a PXE server (option 60 "PXEClient", option 43 "boot from file").
    pub pxe: bool,
    pub message: Option<String>,
    pub broadcast: bool,
    pub dest: SocketAddrV4,
}

impl Reply {
    /// A reply with no address, boot file or options beyond the server identifier.
    pub fn bare(
        kind: ReplyKind,
        server_id: Ipv4Addr,
        dest: SocketAddrV4,
        broadcast: bool,
    ) -> Reply {
        Reply {
            kind,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            server_id,
            file: None,
            lease_secs: None,
            mask: None,
            router: None,
            dns: vec![],
            domain: None,
            hostname: None,
            pxe: false,
            message: None,
            broadcast,
            dest,
        }
    }
}

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
    check_options(bytes)?;
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

/// What dhcproto 0.15's `decode_inner` assumes about an option's length without checking it:
/// it `debug_assert!`s 80, 81, 94 and 152–155 (a panic in debug builds — every test and fuzz
/// run — and in release a silent misread); 151 must hold its status byte before the message.
/// Derived by reading that function, and kept complete by
/// `every_code_and_length_decodes_without_panic`, which feeds
/// every code with every length (0..=510, concatenated as RFC 3396 allows) to the decoder.
/// Codes not listed read from a sub-decoder bounded by the option's length, which returns an
/// error instead of reading past it.
fn length_ok(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,        // Rapid Commit (RFC 4039)
        81 => len >= 3,        // Client FQDN: flags, rcode1, rcode2, name (RFC 4702)
        94 => len == 3,        // Client Network Interface Identifier (RFC 4578)
        151 => len >= 1,       // Bulk Leasequery status code + message (RFC 6926)
        152..=155 => len == 4, // Bulk Leasequery times (RFC 6926)
        _ => true,
    }
}

/// Checks every option the way dhcproto will read it, before it does: in the options field
/// and, when option 52 (overload, RFC 2132 §9.3) says so, in `file` and `sname`. dhcproto joins
/// consecutive options with the same code into one (RFC 3396) — a Pad or another code in between
/// ends the run — so the length checked is the joined length, exactly as its decoder sees it.
fn check_options(bytes: &[u8]) -> Result<(), DecodeError> {
    const OPTIONS_START: usize = 240; // 236-byte header + 4-byte magic cookie
    const FILE: std::ops::Range<usize> = 108..236;
    const SNAME: std::ops::Range<usize> = 44..108;
    let overload = check_area(bytes.get(OPTIONS_START..).unwrap_or_default(), "options")?;
    if overload & 1 != 0 {
        check_area(bytes.get(FILE).unwrap_or_default(), "file (overloaded)")?;
    }
    if overload & 2 != 0 {
        check_area(bytes.get(SNAME).unwrap_or_default(), "sname (overloaded)")?;
    }
    Ok(())
}

/// Walks one option area; returns the value of option 52 found there (0 if none).
fn check_area(area: &[u8], name: &str) -> Result<u8, DecodeError> {
    let mut overload = 0;
    let mut i = 0;
    // The run being joined: its code and joined length.
    let mut run: Option<(u8, usize)> = None;
    let finish = |run: Option<(u8, usize)>| match run {
        Some((code, len)) if !length_ok(code, len) => Err(DecodeError::Malformed(format!(
            "option {code} in {name} has invalid length {len}"
        ))),
        _ => Ok(()),
    };
    while let Some(&code) = area.get(i) {
        if code == 0 || code == 255 {
            finish(run.take())?;
            if code == 255 {
                return Ok(overload);
            }
            i += 1;
            continue;
        }
        let Some(&len) = area.get(i + 1) else { break };
        let value = area.get(i + 2..i + 2 + usize::from(len));
        if code == 52 {
            overload = value.and_then(|v| v.first().copied()).unwrap_or(0);
        }
        run = match run {
            Some((c, joined)) if c == code => Some((c, joined + usize::from(len))),
            other => {
                finish(other)?;
                Some((code, usize::from(len)))
            }
        };
        if value.is_none() {
            break; // truncated: the decoder stops here with an error, not a panic
        }
        i += 2 + usize::from(len);
    }
    finish(run)?;
    Ok(overload)
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

    /// A request whose options area ends right after option 53, ready for more options.
    fn discover_without_end() -> Vec<u8> {
        let mut b = build_request(Some(MessageType::Discover), MAC, 1, vec![]);
        let end = b.iter().rposition(|&x| x == 255).unwrap();
        b.truncate(end);
        b
    }

    /// Closes the class of issue 16: dhcproto's decoder is fed every option code with every
    /// length up to two concatenated 255-byte parts (RFC 3396), with several value patterns;
    /// none may panic (tests run with debug assertions on, so dhcproto's `debug_assert!`s and
    /// length underflows would). Where a length is invalid, the decode is an error.
    #[test]
    fn every_code_and_length_decodes_without_panic() {
        let base = discover_without_end();
        let patterns: [fn(usize) -> u8; 3] = [|_| 0, |_| 0xff, |i| (i * 7 + 3) as u8];
        let mut panics = Vec::new();
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        for code in 1u8..=254 {
            for len in 0usize..=510 {
                for pat in patterns {
                    let mut b = base.clone();
                    let value: Vec<u8> = (0..len).map(pat).collect();
                    let mut parts = value.chunks(255).peekable();
                    if parts.peek().is_none() {
                        b.extend([code, 0]);
                    }
                    for part in parts {
                        b.extend([code, part.len() as u8]);
                        b.extend(part);
                    }
                    b.push(255);
                    let r = std::panic::catch_unwind(|| decode_request(&b, "x").map(|_| ()));
                    match r {
                        Err(_) => panics.push((code, len)),
                        Ok(Ok(())) => assert!(length_ok(code, len), "{code}/{len} accepted"),
                        Ok(Err(_)) => {}
                    }
                }
            }
        }
        std::panic::set_hook(hook);
        let mut by_code = std::collections::BTreeMap::<u8, Vec<usize>>::new();
        for (code, len) in panics {
            by_code.entry(code).or_default().push(len);
        }
        let report: Vec<String> = by_code
            .iter()
            .map(|(c, l)| format!("option {c}: {} lengths, first {}", l.len(), l[0]))
            .collect();
        assert!(report.is_empty(), "decoder panicked: {report:?}");
    }

    /// Issue 16: found by `cargo fuzz run dhcp_decode` after ~298 000 executions. Option 154 (Bulk Leasequery start time of state)
    /// appears twice in a row, 4 bytes each: dhcproto joins them (RFC 3396) into one 8-byte
    /// option and its `debug_assert!(len == 4)` fired. The old check looked at each part alone.
    #[test]
    fn regression_issue_16_concatenated_option_154_is_rejected_not_a_panic() {
        let hex = "6400006464ff020400000000007200000000000000000064641f6400000000e00000000064646c646c6464644d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d1fa064a0350100000000000002000000000000003d0000000000000000000000000000000000003d00000000000000000000000000000000003d0000000000001e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1f1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e0004007e00000000000004081e1e1e1e1e1e00000000000000000000000400009a0400006b009a0400006b0000000000000000000400006b00000000000004007e0064000300c8006400";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes.len(), 305);
        let e = decode_request(&bytes, "x").unwrap_err();
        assert!(e.to_string().contains("option 154"), "{e}");
        assert!(e.to_string().contains("length 8"), "{e}");
    }

    #[test]
    fn pad_between_equal_codes_ends_the_run() {
        // 152/4, Pad, 152/4: two separate options for dhcproto (the later one wins), both valid.
        let mut b = discover_without_end();
        b.extend([152, 4, 0, 0, 0, 1, 0, 152, 4, 0, 0, 0, 2, 255]);
        assert!(decode_request(&b, "x").is_ok());
        // 93/2 then 152/4 then 152/4: the joined 152 is 8 bytes.
        let mut b = discover_without_end();
        b.extend([93, 2, 0, 7, 152, 4, 0, 0, 0, 1, 152, 4, 0, 0, 0, 2, 255]);
        assert!(decode_request(&b, "x").is_err());
    }

    #[test]
    fn overloaded_file_and_sname_are_checked_too() {
        for (flag, range, area) in [(1u8, 108..236, "file"), (2, 44..108, "sname")] {
            let mut b = discover_without_end();
            b.extend([52, 1, flag, 255]);
            b[range.start..range.start + 4].copy_from_slice(&[80, 1, 0, 255]);
            let e = decode_request(&b, "x").unwrap_err();
            assert!(
                e.to_string().contains(&format!("option 80 in {area}")),
                "{e}"
            );
            // Without option 52 the same bytes are just a name and are not read as options.
            let mut plain = b.clone();
            let at = plain.len() - 4;
            plain[at..at + 3].copy_from_slice(&[0, 0, 0]);
            assert!(decode_request(&plain, "x").is_ok());
        }
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
