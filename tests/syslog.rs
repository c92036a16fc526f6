//! The syslog receiver against the stock `logger` (util-linux) on loopback: an RFC 5424
//! message (logger's default for a remote server, with structured data) and an RFC 3164 one
//! reach the audit store as `syslog` events with facility, severity, host, app and message,
//! queryable by the sender's IP; a datagram that is not syslog becomes `packet_rejected` with
//! the reason, and the daemon keeps receiving.
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{free_port, loopback_config_with, px, text, Daemon};

/// A daemon on loopback receiving syslog; (tempdir, config, log, syslog port, daemon).
fn start() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    u16,
    Daemon,
) {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let (http, sys) = (free_port(), free_port());
    let cfg = loopback_config_with(
        base,
        http,
        &format!("[tftp]\nenabled = false\n[syslog]\nlisten = \"127.0.0.1:{sys}\"\n"),
    );
    let log = base.join("daemon.log");
    let daemon = Daemon::start(&cfg, &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("syslog listening")
    {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    (d, cfg, log, sys, daemon)
}

#[test]
fn logger_messages_become_queryable_events() {
    if Command::new("logger").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "logger (util-linux) missing"
        );
        println!("SKIPPED: syslog test: logger not installed");
        return;
    }
    let (_d, cfg, log, sys, _daemon) = start();
    let logger = |extra: &[&str], msg: &str| {
        let o = Command::new("logger")
            .args(["--server", "127.0.0.1", "--port", &sys.to_string(), "--udp"])
            .args(extra)
            .arg(msg)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "logger: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    logger(
        &[
            "-t",
            "webc",
            "-p",
            "local0.warning",
            "--sd-id",
            "kiosk@32473",
            "--sd-param",
            "page=\"start\"",
        ],
        "page loaded: https://library.example/start",
    );
    logger(
        &["--rfc3164", "-t", "chromium", "-p", "user.err"],
        "crashed, restarting",
    );
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"GET / HTTP/1.0\r\n", ("127.0.0.1", sys))
        .unwrap();
    logger(&["-t", "after", "-p", "daemon.info"], "still listening");

    let find = |filter: &str| {
        text(&px(
            &cfg,
            &["audit", "find", filter, "--sort", r#"{"time_ms": 1}"#],
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = String::new();
    while Instant::now() < deadline {
        got = find(r#"{"kind": "syslog", "ip": "127.0.0.1"}"#);
        if got.lines().count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "{got}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let doc = |i: usize| serde_json::from_str::<serde_json::Value>(lines[i]).unwrap();
    let (a, b, c) = (doc(0), doc(1), doc(2));
    assert_eq!(a["app"], "webc");
    assert_eq!(
        (a["facility"].as_u64(), a["severity"].as_str()),
        (Some(16), Some("warning"))
    );
    assert_eq!(a["message"], "page loaded: https://library.example/start");
    assert!(a["host"].is_string(), "RFC 5424 names the sender: {a}");
    assert_eq!(b["app"], "chromium");
    assert_eq!(
        (b["facility"].as_u64(), b["severity"].as_str()),
        (Some(1), Some("err"))
    );
    assert_eq!(b["message"], "crashed, restarting");
    assert_eq!(c["message"], "still listening");
    let bad = find(r#"{"kind": "packet_rejected", "proto": "syslog"}"#);
    assert!(bad.contains("no <PRI> at the start"), "{bad}");
}

/// Issue 10: syslog and rejected packets became events with no limit. A flood from one
/// source for 5 s: the daemon's memory stays bounded, what it stores stays within the
/// per-source rate, and the dropped messages are counted in `suppressed` events.
#[test]
fn a_syslog_flood_is_rate_limited_and_counted() {
    let (_d, cfg, log, sys, daemon) = start();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = b"<13>Nov 30 12:00:00 kiosk9 flood: the same line again";
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(5) && sent < 2_000_000 {
        if s.send_to(msg, ("127.0.0.1", sys)).is_ok() {
            sent += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(2500));
    let stored = text(&px(&cfg, &["audit", "find", r#"{"kind": "syslog"}"#]))
        .lines()
        .count() as f64;
    let allowed = 500.0 + 100.0 * (secs + 1.0);
    println!("flood: sent {sent} datagrams in {secs:.1} s, {stored} stored (allowed {allowed})");
    assert!(sent > 10_000, "the flood was a flood: {sent}");
    assert!(stored <= allowed, "{stored} stored > {allowed}");
    assert!(stored >= 500.0, "the burst is stored: {stored}");
    let suppressed: u64 = text(&px(&cfg, &["audit", "find", r#"{"kind": "suppressed"}"#]))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["count"].as_u64())
        .sum();
    // Datagrams the kernel dropped on a full socket buffer never reach the limiter.
    assert!(
        suppressed > 0 && suppressed + stored as u64 <= sent,
        "suppressed {suppressed}"
    );
    let hwm_kb = common::vm_hwm_kb(daemon.pid()).unwrap();
    println!("daemon peak RSS (VmHWM) {hwm_kb} kB, suppressed {suppressed}");
    assert!(hwm_kb < 200 * 1024, "VmHWM {hwm_kb} kB");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("\"kind\":\"suppressed\""));
}
