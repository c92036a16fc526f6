//! Static boot files over HTTP (`/files/…`), the decisions: whether a request is one the
//! zero-copy path serves, which file its path names, which bytes of it go out (Range, RFC 9110
//! §14), whether the client's copy is current (If-None-Match, If-Modified-Since, If-Range),
//! and the response head. Bytes in, decisions out: the socket side (the request head read,
//! `sendfile(2)` from the page cache, the audit event) is `services::files`.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The URL prefix of the boot directory.
pub const PREFIX: &str = "/files/";
/// A request head longer than this is not ours (the router answers it, or refuses it).
pub const MAX_HEAD: usize = 16 * 1024;
/// Header fields at most in a request head.
const MAX_FIELDS: usize = 64;

/// A request head, as far as a file request needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// HTTP/1.`minor`.
    pub minor: u8,
    /// Bytes of the buffer the head took.
    pub len: usize,
    /// The connection stays open after the response (HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// It announces a body (Content-Length other than 0, or Transfer-Encoding).
    pub has_body: bool,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

/// What the bytes read so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A whole head.
    Done(Head),
    /// Not an HTTP/1 request head this path reads (the router gets it, and answers).
    Other,
    /// No end of the head within [`MAX_HEAD`] bytes: answered 431, the connection closed.
    TooLarge,
}

/// Reads a request head from the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::TooLarge
        }
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    let mut head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        minor,
        len,
        keep_alive: minor >= 1,
        has_body: false,
        range: None,
        if_range: None,
        if_none_match: None,
        if_modified_since: None,
    };
    for f in req.headers.iter() {
        let Ok(value) = std::str::from_utf8(f.value) else {
            continue;
        };
        let value = value.trim();
        let name = f.name.to_ascii_lowercase();
        match name.as_str() {
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && minor == 0 {
                        head.keep_alive = true;
                    }
                }
            }
            "content-length" => head.has_body |= value != "0",
            "transfer-encoding" => head.has_body = true,
            "range" => head.range = Some(value.to_owned()),
            "if-range" => head.if_range = Some(value.to_owned()),
            "if-none-match" => head.if_none_match = Some(value.to_owned()),
            "if-modified-since" => head.if_modified_since = Some(value.to_owned()),
            _ => {}
        }
    }
    Parsed::Done(head)
}

/// The zero-copy path serves GET and HEAD of `/files/…` without a body; the router answers
/// everything else (and every request after it on that connection).
pub fn is_file_request(h: &Head) -> bool {
    matches!(h.method.as_str(), "GET" | "HEAD") && h.target.starts_with(PREFIX) && !h.has_body
}

/// The request target → the file's path under the boot directory: percent-decoded UTF-8, the
/// query dropped; None (404) for an empty, `.` or `..` component, a NUL or a backslash. (The
/// file is then opened beneath the boot directory, so no link leads out of it either.)
pub fn relative_path(target: &str) -> Option<String> {
    let path = target.split('?').next()?;
    let rest = path.strip_prefix(PREFIX)?;
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    if decoded.is_empty()
        || decoded.contains(['\0', '\\'])
        || decoded
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    Some(decoded.into_owned())
}

/// What is known of the file from its open descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub len: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    pub ino: u64,
}

/// The strong validator: inode, length and mtime (a rewritten or replaced file gets a new one).
pub fn etag(m: &FileMeta) -> String {
    format!("\"{:x}-{:x}-{:x}\"", m.ino, m.len, m.mtime)
}

fn http_date(secs: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

fn parse_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Which answer a GET/HEAD for an existing file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, the whole file.
    Whole,
    /// 206, bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 304: the client's copy is current.
    NotModified,
    /// 416: the range starts past the end.
    Unsatisfiable,
}

/// RFC 9110 §13.2.2's order: If-None-Match (else If-Modified-Since) first, then Range, which
/// If-Range may turn off. One range is served; a list of ranges gets the whole file (which
/// the RFC allows), a malformed Range is ignored.
pub fn decide(h: &Head, m: &FileMeta) -> Answer {
    let tag = etag(m);
    if let Some(inm) = &h.if_none_match {
        // Weak comparison (§8.8.3.2): W/ prefixes do not matter here.
        let same = |t: &str| t.trim().trim_start_matches("W/") == tag;
        if inm.trim() == "*" || inm.split(',').any(same) {
            return Answer::NotModified;
        }
    } else if let Some(since) = h.if_modified_since.as_deref().and_then(parse_date) {
        if m.mtime <= since {
            return Answer::NotModified;
        }
    }
    let Some(range) = &h.range else {
        return Answer::Whole;
    };
    if let Some(ir) = &h.if_range {
        let ir = ir.trim();
        // A strong validator must match exactly; a date only if it is the file's mtime.
        let current = if ir.starts_with('"') {
            ir == tag
        } else {
            parse_date(ir) == Some(m.mtime)
        };
        if !current {
            return Answer::Whole;
        }
    }
    match byte_range(range, m.len) {
        RangeSpec::Ignore => Answer::Whole,
        RangeSpec::Unsatisfiable => Answer::Unsatisfiable,
        RangeSpec::Bytes(start, end) => Answer::Part { start, end },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Ignore,
    Unsatisfiable,
    Bytes(u64, u64),
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a file of `len` bytes.
fn byte_range(value: &str, len: u64) -> RangeSpec {
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeSpec::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            None => RangeSpec::Ignore,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Bytes(len.saturating_sub(n), len - 1),
        },
        (a, "") => match num(a) {
            None => RangeSpec::Ignore,
            Some(a) if a >= len => RangeSpec::Unsatisfiable,
            Some(a) => RangeSpec::Bytes(a, len - 1),
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeSpec::Unsatisfiable
                } else {
                    RangeSpec::Bytes(a, b.min(len - 1))
                }
            }
            _ => RangeSpec::Ignore,
        },
    }
}

/// The response to send: its head, and which bytes of the file follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    /// File bytes `(offset, count)` after the head (none for HEAD, 304, 416).
    pub body: Option<(u64, u64)>,
    /// The Content-Length announced (what the audit records as bytes).
    pub length: u64,
}

/// The reply to `h` for a file of `meta`, named `rel` (its type from the extension).
pub fn reply(h: &Head, rel: &str, meta: &FileMeta, now: SystemTime) -> Reply {
    let answer = decide(h, meta);
    let (status, reason, range, length) = match answer {
        Answer::Whole => (200, "OK", (meta.len > 0).then_some((0, meta.len)), meta.len),
        Answer::Part { start, end } => (
            206,
            "Partial Content",
            Some((start, end - start + 1)),
            end - start + 1,
        ),
        Answer::NotModified => (304, "Not Modified", None, 0),
        Answer::Unsatisfiable => (416, "Range Not Satisfiable", None, 0),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nDate: {}\r\nServer: pxelator\r\nAccept-Ranges: bytes\r\nETag: {}\r\nLast-Modified: {}\r\n",
        httpdate::fmt_http_date(now),
        etag(meta),
        http_date(meta.mtime),
    );
    match answer {
        Answer::Part { start, end } => head.push_str(&format!(
            "Content-Range: bytes {start}-{end}/{}\r\n",
            meta.len
        )),
        Answer::Unsatisfiable => head.push_str(&format!("Content-Range: bytes */{}\r\n", meta.len)),
        _ => {}
    }
    if status != 304 {
        let mime = mime_guess::from_path(rel).first_or_octet_stream();
        head.push_str(&format!(
            "Content-Type: {mime}\r\nContent-Length: {length}\r\n"
        ));
    }
    head.push_str(if h.keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let body = if h.method == "HEAD" { None } else { range };
    Reply {
        status,
        head,
        body: body.filter(|(_, n)| *n > 0),
        length,
    }
}

/// A short error reply (404 and the like), its text naming the fix.
pub fn error_reply(h: &Head, status: u16, reason: &str, text: &str) -> Reply {
    plain_reply(status, reason, text, h.method != "HEAD", h.keep_alive)
}

/// The reply to a head that did not end within [`MAX_HEAD`] bytes; the connection closes.
pub fn too_large_reply() -> Reply {
    plain_reply(
        431,
        "Request Header Fields Too Large",
        &format!("request head over {MAX_HEAD} bytes\n"),
        true,
        false,
    )
}

fn plain_reply(status: u16, reason: &str, text: &str, with_body: bool, keep_alive: bool) -> Reply {
    Reply {
        status,
        head: format!(
            "HTTP/1.1 {status} {reason}\r\nServer: pxelator\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{}",
            text.len(),
            if keep_alive { "keep-alive" } else { "close" },
            if with_body { text } else { "" }
        ),
        body: None,
        length: text.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(extra: &str) -> Head {
        let raw = format!("GET /files/k/vmlinuz HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        match parse_head(raw.as_bytes()) {
            Parsed::Done(h) => h,
            other => panic!("{other:?}"),
        }
    }
    const META: FileMeta = FileMeta {
        len: 1000,
        mtime: 1_700_000_000,
        ino: 42,
    };

    #[test]
    fn heads_parse_and_route() {
        assert_eq!(parse_head(b"GET /files/a HTTP/1.1\r\nHo"), Parsed::Partial);
        assert_eq!(parse_head(b"\x16\x03\x01 tls"), Parsed::Other);
        let h = head("Connection: close\r\n");
        assert!(is_file_request(&h) && !h.keep_alive);
        assert!(head("").keep_alive);
        let Parsed::Done(h10) = parse_head(b"GET /files/a HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!h10.keep_alive);
        let Parsed::Done(post) =
            parse_head(b"POST /files/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        else {
            panic!()
        };
        assert!(!is_file_request(&post) && post.has_body);
        let Parsed::Done(api) = parse_head(b"GET /api/whoami HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert!(!is_file_request(&api));
        // A head that never ends is not read past MAX_HEAD.
        let long = format!("GET /files/a HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(long.as_bytes()), Parsed::TooLarge);
    }

    #[test]
    fn paths_stay_in_the_boot_directory() {
        assert_eq!(
            relative_path("/files/k/vmlinuz").as_deref(),
            Some("k/vmlinuz")
        );
        assert_eq!(relative_path("/files/a%20b?x=1").as_deref(), Some("a b"));
        for bad in [
            "/files/",
            "/files/../etc/passwd",
            "/files/%2e%2e/etc/passwd",
            "/files/k/..%2f..%2fetc",
            "/files//etc/passwd",
            "/files/%2fetc/passwd",
            "/files/a%00b",
            "/files/a\\..\\b",
            "/files/%ff",
            "/files/./a",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(decide(&head(""), &META), Answer::Whole);
        let part = |r: &str| decide(&head(&format!("Range: {r}\r\n")), &META);
        assert_eq!(part("bytes=0-99"), Answer::Part { start: 0, end: 99 });
        assert_eq!(
            part("bytes=900-"),
            Answer::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            part("bytes=-100"),
            Answer::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(part("bytes=-5000"), Answer::Part { start: 0, end: 999 });
        assert_eq!(
            part("bytes=990-5000"),
            Answer::Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(part("bytes=1000-"), Answer::Unsatisfiable);
        assert_eq!(part("bytes=-0"), Answer::Unsatisfiable);
        // Ignored: malformed, reversed, lists, other units, overflow.
        for r in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=99999999999999999999999-",
            "bytes=-",
            "bytes",
        ] {
            assert_eq!(part(r), Answer::Whole, "{r}");
        }
    }

    #[test]
    fn conditionals() {
        let tag = etag(&META);
        let d = |extra: String| decide(&head(&extra), &META);
        assert_eq!(d(format!("If-None-Match: {tag}\r\n")), Answer::NotModified);
        assert_eq!(
            d(format!("If-None-Match: \"x\", W/{tag}\r\n")),
            Answer::NotModified
        );
        assert_eq!(d("If-None-Match: \"other\"\r\n".into()), Answer::Whole);
        let at = http_date(META.mtime);
        let before = http_date(META.mtime - 1);
        assert_eq!(
            d(format!("If-Modified-Since: {at}\r\n")),
            Answer::NotModified
        );
        assert_eq!(d(format!("If-Modified-Since: {before}\r\n")), Answer::Whole);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            d(format!(
                "If-None-Match: \"other\"\r\nIf-Modified-Since: {at}\r\n"
            )),
            Answer::Whole
        );
        // If-Range: the range only while the validator is current.
        assert_eq!(
            d(format!("Range: bytes=0-9\r\nIf-Range: {tag}\r\n")),
            Answer::Part { start: 0, end: 9 }
        );
        assert_eq!(
            d("Range: bytes=0-9\r\nIf-Range: \"old\"\r\n".into()),
            Answer::Whole
        );
        assert_eq!(
            d(format!("Range: bytes=0-9\r\nIf-Range: {before}\r\n")),
            Answer::Whole
        );
    }

    #[test]
    fn replies() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let r = reply(&head("Range: bytes=10-19\r\n"), "k/vmlinuz", &META, now);
        assert_eq!((r.status, r.body, r.length), (206, Some((10, 10)), 10));
        assert!(r.head.contains("\r\nContent-Range: bytes 10-19/1000\r\n"));
        assert!(r.head.contains("\r\nContent-Length: 10\r\n"));
        assert!(r.head.ends_with("Connection: keep-alive\r\n\r\n"));
        let r = reply(&head(""), "live/filesystem.squashfs", &META, now);
        assert_eq!((r.status, r.body), (200, Some((0, 1000))));
        let mut hd = head("");
        hd.method = "HEAD".into();
        let r = reply(&hd, "a.txt", &META, now);
        assert_eq!((r.status, r.body, r.length), (200, None, 1000));
        assert!(r.head.contains("Content-Type: text/plain"));
        let r = reply(&head("Range: bytes=5000-\r\n"), "a", &META, now);
        assert_eq!((r.status, r.body), (416, None));
        assert!(r.head.contains("Content-Range: bytes */1000\r\n"));
        let tag = etag(&META);
        let r = reply(&head(&format!("If-None-Match: {tag}\r\n")), "a", &META, now);
        assert_eq!((r.status, r.body), (304, None));
        assert!(!r.head.contains("Content-Length"));
        let empty = FileMeta { len: 0, ..META };
        let r = reply(&head(""), "a", &empty, now);
        assert_eq!((r.status, r.body, r.length), (200, None, 0));
    }
}
