//! TFTP wire format (RFC 1350) with option extension (RFC 2347): blksize (RFC 2348),
//! timeout and tsize (RFC 2349), windowsize (RFC 7440). Decoding, encoding and the pure option
//! negotiation; the transfer loop lives in `services::tftp`.
use std::fmt;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// RFC 1350 error codes used here.
pub const ERR_NOT_DEFINED: u16 = 0;
pub const ERR_NOT_FOUND: u16 = 1;
pub const ERR_ACCESS: u16 = 2;
pub const ERR_ILLEGAL_OP: u16 = 4;
pub const ERR_UNKNOWN_TID: u16 = 5;
pub const ERR_OPTIONS: u16 = 8;

pub const DEFAULT_BLKSIZE: u16 = 512;
pub const MAX_BLKSIZE: u16 = 65464;
/// Largest window we agree to; more buys nothing on a LAN and costs memory per transfer.
pub const MAX_WINDOWSIZE: u16 = 64;
/// Largest retransmission timeout (seconds) we agree to. RFC 2349 lets a client ask for up to
/// 255 s; with retries that would hold a transfer slot for many minutes, so a larger request
/// is not acknowledged and the server's own timeout applies.
pub const MAX_TIMEOUT: u8 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Rrq {
        file: String,
        mode: String,
        options: Vec<(String, String)>,
    },
    Wrq {
        file: String,
        mode: String,
    },
    Data {
        block: u16,
        data: Vec<u8>,
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: String,
    },
    Oack {
        options: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {0} bytes is too short for TFTP")]
    TooShort(usize),
    #[error("unknown TFTP opcode {0}")]
    BadOpcode(u16),
    #[error("{0} is not NUL-terminated")]
    Unterminated(&'static str),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
}

fn take_str<'a>(rest: &mut &'a [u8], what: &'static str) -> Result<&'a str, DecodeError> {
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(DecodeError::Unterminated(what))?;
    let s = std::str::from_utf8(&rest[..nul]).map_err(|_| DecodeError::NotUtf8(what))?;
    *rest = &rest[nul + 1..];
    Ok(s)
}

fn take_options(mut rest: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let name = take_str(&mut rest, "option name")?;
        if rest.is_empty() {
            return Err(DecodeError::OptionWithoutValue(name.into()));
        }
        let value = take_str(&mut rest, "option value")?;
        out.push((name.to_ascii_lowercase(), value.to_owned()));
    }
    Ok(out)
}

impl Packet {
    pub fn decode(b: &[u8]) -> Result<Packet, DecodeError> {
        if b.len() < 4 {
            return Err(DecodeError::TooShort(b.len()));
        }
        let op = u16::from_be_bytes([b[0], b[1]]);
        let mut rest = &b[2..];
        match op {
            OP_RRQ | OP_WRQ => {
                let file = take_str(&mut rest, "file name")?.to_owned();
                let mode = take_str(&mut rest, "mode")?.to_ascii_lowercase();
                if op == OP_WRQ {
                    return Ok(Packet::Wrq { file, mode });
                }
                let options = take_options(rest)?;
                Ok(Packet::Rrq {
                    file,
                    mode,
                    options,
                })
            }
            OP_DATA => Ok(Packet::Data {
                block: u16::from_be_bytes([b[2], b[3]]),
                data: b[4..].to_vec(),
            }),
            OP_ACK => Ok(Packet::Ack {
                block: u16::from_be_bytes([b[2], b[3]]),
            }),
            OP_ERROR => {
                let code = u16::from_be_bytes([b[2], b[3]]);
                let mut rest = &b[4..];
                // Some clients omit the trailing NUL; accept the message anyway.
                let message = take_str(&mut rest, "error message")
                    .map(str::to_owned)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&b[4..]).into_owned());
                Ok(Packet::Error { code, message })
            }
            OP_OACK => Ok(Packet::Oack {
                options: take_options(rest)?,
            }),
            other => Err(DecodeError::BadOpcode(other)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let put_str = |v: &mut Vec<u8>, s: &str| {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        };
        match self {
            Packet::Rrq {
                file,
                mode,
                options,
            } => {
                v.extend_from_slice(&OP_RRQ.to_be_bytes());
                put_str(&mut v, file);
                put_str(&mut v, mode);
                for (k, val) in options {
                    put_str(&mut v, k);
                    put_str(&mut v, val);
                }
            }
            Packet::Wrq { file, mode } => {
                v.extend_from_slice(&OP_WRQ.to_be_bytes());
                put_str(&mut v, file);
                put_str(&mut v, mode);
            }
            Packet::Data { block, data } => {
                v.extend_from_slice(&OP_DATA.to_be_bytes());
                v.extend_from_slice(&block.to_be_bytes());
                v.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                v.extend_from_slice(&OP_ACK.to_be_bytes());
                v.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                v.extend_from_slice(&OP_ERROR.to_be_bytes());
                v.extend_from_slice(&code.to_be_bytes());
                put_str(&mut v, message);
            }
            Packet::Oack { options } => {
                v.extend_from_slice(&OP_OACK.to_be_bytes());
                for (k, val) in options {
                    put_str(&mut v, k);
                    put_str(&mut v, val);
                }
            }
        }
        v
    }
}

/// Writes a DATA header + payload into `buf` without allocating per block.
pub fn encode_data_into(buf: &mut Vec<u8>, block: u16, data: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&OP_DATA.to_be_bytes());
    buf.extend_from_slice(&block.to_be_bytes());
    buf.extend_from_slice(data);
}

/// The outcome of option negotiation for one read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    /// Retransmission timeout the client asked for (seconds), if any.
    pub timeout: Option<u8>,
    /// Options to acknowledge in an OACK, in the client's order; empty means no OACK.
    pub oack: Vec<(String, String)>,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blksize={} windowsize={}", self.blksize, self.windowsize)
    }
}

/// RFC 2347: the server acknowledges the options it accepts (possibly with reduced values) and
/// silently drops the others. Unparseable or out-of-range values drop the option.
pub fn negotiate(options: &[(String, String)], file_size: u64, max_blksize: u16) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: None,
        oack: Vec::new(),
    };
    for (name, value) in options {
        match name.as_str() {
            "blksize" => {
                if let Ok(v) = value.parse::<u32>() {
                    if v >= 8 {
                        n.blksize = v.min(u32::from(max_blksize.min(MAX_BLKSIZE))) as u16;
                        n.oack.push((name.clone(), n.blksize.to_string()));
                    }
                }
            }
            "windowsize" => {
                if let Ok(v) = value.parse::<u32>() {
                    if (1..=65535).contains(&v) {
                        n.windowsize = v.min(u32::from(MAX_WINDOWSIZE)) as u16;
                        n.oack.push((name.clone(), n.windowsize.to_string()));
                    }
                }
            }
            "timeout" => {
                if let Ok(v) = value.parse::<u8>() {
                    if (1..=MAX_TIMEOUT).contains(&v) {
                        n.timeout = Some(v);
                        n.oack.push((name.clone(), v.to_string()));
                    }
                }
            }
            "tsize" => n.oack.push((name.clone(), file_size.to_string())),
            _ => {}
        }
    }
    n
}

/// Maps a client path to a safe relative path: leading slashes and `\` separators (Windows
/// PXE clients) are normalised; `..`, empty names and NUL are refused.
pub fn sanitize_path(raw: &str) -> Option<String> {
    let p = raw.replace('\\', "/");
    let p = p.trim_start_matches('/');
    if p.is_empty() || p.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => continue,
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn rrq_with_options_round_trips() {
        let p = Packet::Rrq {
            file: "ipxe.efi".into(),
            mode: "octet".into(),
            options: opts(&[("blksize", "1468"), ("windowsize", "4"), ("tsize", "0")]),
        };
        assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn option_names_are_case_insensitive() {
        let mut b = vec![0, 1];
        b.extend_from_slice(b"f\0OCTET\0BLKSIZE\x001468\0");
        let Packet::Rrq { mode, options, .. } = Packet::decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(mode, "octet");
        assert_eq!(options, opts(&[("blksize", "1468")]));
    }

    #[test]
    fn negotiation_follows_the_rfcs() {
        let n = negotiate(
            &opts(&[
                ("blksize", "1468"),
                ("tsize", "0"),
                ("windowsize", "8"),
                ("timeout", "3"),
                ("bogus", "1"),
            ]),
            12345,
            65464,
        );
        assert_eq!((n.blksize, n.windowsize, n.timeout), (1468, 8, Some(3)));
        assert_eq!(
            n.oack,
            opts(&[
                ("blksize", "1468"),
                ("tsize", "12345"),
                ("windowsize", "8"),
                ("timeout", "3")
            ])
        );
        let n = negotiate(
            &opts(&[("blksize", "4"), ("windowsize", "0"), ("timeout", "0")]),
            1,
            65464,
        );
        assert_eq!((n.blksize, n.windowsize, n.timeout), (512, 1, None));
        assert!(n.oack.is_empty());
        // Issue 10: timeout 255 (x retries) held a slot for ~25 minutes; not acknowledged.
        let n = negotiate(&opts(&[("timeout", "255")]), 1, 65464);
        assert_eq!((n.timeout, n.oack.len()), (None, 0));
        let n = negotiate(&opts(&[("timeout", "5")]), 1, 65464);
        assert_eq!(n.timeout, Some(MAX_TIMEOUT));
        let n = negotiate(
            &opts(&[("blksize", "99999"), ("windowsize", "1000")]),
            1,
            1468,
        );
        assert_eq!((n.blksize, n.windowsize), (1468, MAX_WINDOWSIZE));
    }

    #[test]
    fn path_sanitising() {
        assert_eq!(
            sanitize_path("/pxelinux.cfg/default").as_deref(),
            Some("pxelinux.cfg/default")
        );
        assert_eq!(
            sanitize_path("\\boot\\x.efi").as_deref(),
            Some("boot/x.efi")
        );
        assert_eq!(sanitize_path("a/./b").as_deref(), Some("a/b"));
        for bad in ["", "/", "../etc/passwd", "a/../../x", "a/..", "..\\x"] {
            assert_eq!(sanitize_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_packets_give_typed_errors() {
        assert_eq!(Packet::decode(&[0, 1]), Err(DecodeError::TooShort(2)));
        assert_eq!(
            Packet::decode(&[0, 9, 0, 0]),
            Err(DecodeError::BadOpcode(9))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01file\0octet"),
            Err(DecodeError::Unterminated("mode"))
        );
        assert!(matches!(
            Packet::decode(b"\x00\x01f\0octet\0blksize\0"),
            Err(DecodeError::OptionWithoutValue(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Packet::decode(&b);
        }

        #[test]
        fn data_and_ack_round_trip(block in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let p = Packet::Data { block, data };
            prop_assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
            let a = Packet::Ack { block };
            prop_assert_eq!(Packet::decode(&a.encode()).unwrap(), a);
        }

        #[test]
        fn sanitized_paths_never_escape(raw in "[a-z./\\\\]{0,20}") {
            if let Some(p) = sanitize_path(&raw) {
                prop_assert!(!p.split('/').any(|c| c == ".." || c.is_empty()));
                prop_assert!(!p.starts_with('/'));
            }
        }
    }
}
