//! Syslog messages as kiosks and other machines send them over UDP (`log=host:port` on a
//! Webconverger kernel line, rsyslog, `logger --server`): RFC 5424 (`<PRI>1 TIMESTAMP HOST
//! APP PROCID MSGID SD MSG`) and the BSD format of RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST
//! TAG[pid]: MSG`). Bytes in, a [`SyslogMsg`] or a reason out; no I/O.

/// One received message.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogMsg {
    pub facility: u8,
    pub severity: u8,
    /// The sender's own name for itself, if it gave one.
    pub host: Option<String>,
    /// APP-NAME (5424) or TAG without `[pid]` (3164).
    pub app: Option<String>,
    pub message: String,
}

pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Syslog over UDP is at most one datagram; longer input is cut here.
const MAX_MESSAGE: usize = 8192;

fn nil(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_owned())
}

/// Parses one datagram.
pub fn parse(bytes: &[u8]) -> Result<SyslogMsg, String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_MESSAGE)]);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let rest = text
        .strip_prefix('<')
        .ok_or("no <PRI> at the start (not a syslog message)")?;
    let (pri, rest) = rest
        .split_once('>')
        .ok_or("unterminated <PRI> (expected <0>..<191>)")?;
    let pri: u8 = pri
        .parse()
        .ok()
        .filter(|p| *p <= 191 && !pri.is_empty() && pri.len() <= 3)
        .ok_or_else(|| format!("PRI {pri:?} is not 0..191"))?;
    let (facility, severity) = (pri / 8, pri % 8);
    if let Some(r) = rest.strip_prefix("1 ") {
        // RFC 5424: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
        let mut parts = r.splitn(6, ' ');
        let _time = parts.next();
        let host = parts.next().and_then(nil);
        let app = parts.next().and_then(nil);
        let _procid = parts.next();
        let _msgid = parts.next();
        let rest = parts.next().unwrap_or("");
        let message = skip_structured_data(rest);
        return Ok(SyslogMsg {
            facility,
            severity,
            host,
            app,
            message: message.trim_start_matches('\u{feff}').to_owned(),
        });
    }
    // RFC 3164: "Mmm dd hh:mm:ss " then HOSTNAME and TAG, both optional in practice.
    let mut r = rest;
    let b = r.as_bytes();
    if b.len() >= 16 && b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[15] == b' ' {
        // Byte positions: a timestamp of other characters is not cut in the middle of one.
        r = r.get(16..).unwrap_or(r);
    }
    let (host, r) = match r.split_once(' ') {
        // A host name has no ':' or '[' (that would be the tag).
        Some((h, rest)) if !h.contains([':', '[']) && !h.is_empty() => (Some(h.to_owned()), rest),
        _ => (None, r),
    };
    let (app, message) = match r.split_once(": ") {
        Some((tag, msg)) if !tag.contains(' ') && !tag.is_empty() => {
            let app = tag.split('[').next().unwrap_or(tag);
            (nil(app), msg)
        }
        _ => (None, r),
    };
    Ok(SyslogMsg {
        facility,
        severity,
        host,
        app,
        message: message.to_owned(),
    })
}

/// The MSG after RFC 5424 STRUCTURED-DATA ("-" or one or more `[…]` elements, `]` escaped
/// as `\]` inside).
fn skip_structured_data(s: &str) -> &str {
    if let Some(r) = s.strip_prefix('-') {
        return r.strip_prefix(' ').unwrap_or(r);
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        let mut escaped = false;
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' if !escaped => escaped = true,
                b']' if !escaped => break,
                _ => escaped = false,
            }
            i += 1;
        }
        i += 1;
    }
    let r = s.get(i.min(s.len())..).unwrap_or("");
    r.strip_prefix(' ').unwrap_or(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_as_logger_sends_it() {
        let m = parse(b"<132>1 2026-11-26T18:40:00.123456+00:00 kiosk7 webc 4242 - [timeQuality tzKnown=\"1\" isSynced=\"0\"] page loaded: https://lib.example/\n").unwrap();
        assert_eq!((m.facility, m.severity), (16, 4));
        assert_eq!(m.host.as_deref(), Some("kiosk7"));
        assert_eq!(m.app.as_deref(), Some("webc"));
        assert_eq!(m.message, "page loaded: https://lib.example/");
        let m = parse(b"<14>1 - - - - - -").unwrap();
        assert_eq!((m.host, m.app, m.message.as_str()), (None, None, ""));
    }

    #[test]
    fn rfc3164_with_and_without_header_parts() {
        let m = parse(b"<13>Nov 26 18:40:00 kiosk7 chromium[812]: crashed, restarting").unwrap();
        assert_eq!((m.facility, m.severity), (1, 5));
        assert_eq!(m.host.as_deref(), Some("kiosk7"));
        assert_eq!(m.app.as_deref(), Some("chromium"));
        assert_eq!(m.message, "crashed, restarting");
        let m = parse(b"<30>dhclient: DHCPACK from 10.77.1.1").unwrap();
        assert_eq!(m.host, None);
        assert_eq!(m.app.as_deref(), Some("dhclient"));
        assert_eq!(m.message, "DHCPACK from 10.77.1.1");
        // No tag: the first word is taken as the host (the BSD format cannot tell).
        let m = parse(b"<30>kiosk7 link up").unwrap();
        assert_eq!(
            (m.host.as_deref(), m.app, m.message.as_str()),
            (Some("kiosk7"), None, "link up")
        );
    }

    /// Found by the fuzzer: non-ASCII bytes where the BSD timestamp would be.
    #[test]
    fn multibyte_characters_in_the_header_do_not_panic() {
        let input = b"<0>><     \xd8                 \xe2\x0b\x08      @  \xe0\xdf\xdf\xdf\xe0\x00\x00\x021 ";
        assert!(parse(input).is_ok());
        assert!(parse("<13>Növ 26 18:40:00 kiosk7 x: y".as_bytes()).is_ok());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(parse(b"hello").unwrap_err().contains("no <PRI>"));
        assert!(parse(b"<200>x").unwrap_err().contains("not 0..191"));
        assert!(parse(b"<13").unwrap_err().contains("unterminated"));
        assert!(parse(b"<>x").unwrap_err().contains("not 0..191"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_refuse_without_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(m) = parse(&data) {
                proptest::prop_assert!(m.facility <= 23 && m.severity <= 7);
            }
        }

        #[test]
        fn pri_round_trips(f in 0u8..24, s in 0u8..8, msg in "[a-z ]{0,40}") {
            let m = parse(format!("<{}>1 - host app - - - {msg}", f * 8 + s).as_bytes()).unwrap();
            proptest::prop_assert_eq!((m.facility, m.severity), (f, s));
            proptest::prop_assert_eq!(m.message, msg);
        }
    }
}
