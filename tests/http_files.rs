//! Issue 15: `/files` on the zero-copy path (services::files: sendfile from the page cache),
//! driven by curl against a daemon on loopback. Range, conditional requests, keep-alive with a
//! hand-over to the router on the same connection, the audit trail, and the attacks: paths and
//! symlinks that lead out of the boot directory, heads that never end.
mod common;
use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let o = Command::new("curl")
        .args(["-s", "-S", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs (scripts/setup installs it)");
    (String::from_utf8_lossy(&o.stderr).into_owned(), o.stdout)
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

struct Lab {
    _tmp: tempfile::TempDir,
    cfg: std::path::PathBuf,
    port: u16,
    big: Vec<u8>,
    _daemon: Daemon,
}

fn lab() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let port = free_port();
    let cfg = loopback_config(base, port);
    let boot = base.join("boot");
    std::fs::create_dir_all(boot.join("live")).unwrap();
    // 3 MiB + 7 bytes of varied content: more than one sendfile chunk.
    let big: Vec<u8> = (0..(3 << 20) + 7u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(boot.join("live/filesystem.squashfs"), &big).unwrap();
    std::fs::write(boot.join("a b.txt"), "spaced\n").unwrap();
    std::fs::write(base.join("secret.txt"), "outside the boot directory\n").unwrap();
    // A link that stays inside is followed; links that lead out are not.
    std::os::unix::fs::symlink("live/filesystem.squashfs", boot.join("current.squashfs")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", boot.join("up.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", boot.join("passwd")).unwrap();
    std::os::unix::fs::symlink(base, boot.join("basedir")).unwrap();
    let daemon = Daemon::start(&cfg, &base.join("daemon.log"));
    wait_listening(port, Duration::from_secs(30), || {
        std::fs::read_to_string(base.join("daemon.log")).unwrap_or_default()
    });
    Lab {
        _tmp: tmp,
        cfg,
        port,
        big,
        _daemon: daemon,
    }
}

impl Lab {
    fn url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}{p}", self.port)
    }
}

#[test]
fn whole_files_ranges_and_conditional_requests() {
    let l = lab();
    let (err, body) = curl(&[&l.url("/files/live/filesystem.squashfs")]);
    assert_eq!(body.len(), l.big.len(), "{err}");
    assert_eq!(sha256(&body), sha256(&l.big));
    // Through a link that stays in the boot directory.
    let (_, body) = curl(&[&l.url("/files/current.squashfs")]);
    assert_eq!(sha256(&body), sha256(&l.big));
    let (_, body) = curl(&[&l.url("/files/a%20b.txt")]);
    assert_eq!(body, b"spaced\n");

    // Range: a middle slice across a chunk boundary, a suffix, an open end.
    let (_, body) = curl(&[
        "-r",
        "1048570-2097160",
        &l.url("/files/live/filesystem.squashfs"),
    ]);
    assert_eq!(body, &l.big[1048570..=2097160]);
    let (_, body) = curl(&["-r", "-100", &l.url("/files/live/filesystem.squashfs")]);
    assert_eq!(body, &l.big[l.big.len() - 100..]);
    let (_, head) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-r",
        "3145700-",
        &l.url("/files/live/filesystem.squashfs"),
    ]);
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(
        head.contains(&format!(
            "content-range: bytes 3145700-{}/{}",
            l.big.len() - 1,
            l.big.len()
        )),
        "{head}"
    );
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-r",
        "99999999-",
        &l.url("/files/live/filesystem.squashfs"),
    ]);
    assert_eq!(code, b"416");

    // Conditional: the ETag and Last-Modified of a first answer make the next one a 304.
    let (_, head) = curl(&["-I", &l.url("/files/live/filesystem.squashfs")]);
    let head = String::from_utf8_lossy(&head).into_owned();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(field("content-length"), l.big.len().to_string());
    let (etag, modified) = (field("etag"), field("last-modified"));
    let code = |extra: &str| {
        let (_, c) = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            extra,
            &l.url("/files/live/filesystem.squashfs"),
        ]);
        String::from_utf8(c).unwrap()
    };
    assert_eq!(code(&format!("If-None-Match: {etag}")), "304");
    assert_eq!(code(&format!("If-Modified-Since: {modified}")), "304");
    assert_eq!(code("If-None-Match: \"something-else\""), "200");
    assert_eq!(
        code("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"),
        "200"
    );
    // If-Range with a stale validator: the whole file, not the range.
    let (_, body) = curl(&[
        "-r",
        "0-9",
        "-H",
        "If-Range: \"stale\"",
        &l.url("/files/live/filesystem.squashfs"),
    ]);
    assert_eq!(body.len(), l.big.len());
}

#[test]
fn nothing_outside_the_boot_directory_is_served() {
    let l = lab();
    for path in [
        "/files/up.txt",
        "/files/passwd",
        "/files/basedir/secret.txt",
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/live/..%2f..%2fsecret.txt",
        "/files//etc/passwd",
        "/files/live",
        "/files/nonexistent",
    ] {
        let (err, out) = curl(&["--path-as-is", "-w", "\n%{http_code}", &l.url(path)]);
        let out = String::from_utf8_lossy(&out).into_owned();
        assert!(out.ends_with("\n404"), "{path}: {out} {err}");
        assert!(
            !out.contains("outside the boot directory\n") && !out.contains("root:"),
            "{path} leaked: {out}"
        );
    }
}

#[test]
fn keep_alive_then_the_router_on_the_same_connection() {
    let l = lab();
    // curl reuses one connection for two file requests.
    let (err, out) = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects} ",
        &l.url("/files/a%20b.txt"),
        &l.url("/files/live/filesystem.squashfs"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out), "1 0 ", "{err}");
    // A file, then an API call on the same connection: the router answers it (401, no
    // credentials) and closes the connection.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"GET /files/a%20b.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let all = String::from_utf8_lossy(&all);
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("\r\n\r\nspaced\nHTTP/1.1 401 "), "{all}");
    // The web UI and API still work on connections of their own.
    let r = request(l.port, "GET", "/healthz", &[], "").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
}

#[test]
fn a_head_that_never_ends_is_not_buffered() {
    let l = lab();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut head = b"GET /files/a%20b.txt HTTP/1.1\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 64 * 1024));
    // The server stops reading at its bound (16 KiB), answers 431 and closes: no file.
    let _ = s.write_all(&head);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{out}"
    );
    assert!(!out.contains("spaced"), "{out}");
}

#[test]
fn file_requests_are_in_the_audit_trail() {
    let l = lab();
    let (_, _) = curl(&["-r", "0-99", &l.url("/files/live/filesystem.squashfs")]);
    let (_, _) = curl(&[&l.url("/files/nonexistent")]);
    let found = within(Duration::from_secs(20), || {
        let o = px(&l.cfg, &["audit", "find", r#"{"kind": "http_served"}"#]);
        let t = text(&o);
        t.contains(r#""file":"/files/live/filesystem.squashfs","status":206,"bytes":100"#)
            && t.contains(r#""file":"/files/nonexistent","status":404"#)
    });
    assert!(
        found.is_some(),
        "{}",
        text(&px(
            &l.cfg,
            &["audit", "find", r#"{"kind": "http_served"}"#]
        ))
    );
}
