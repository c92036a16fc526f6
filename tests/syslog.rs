//! The syslog receiver against the stock `logger` (util-linux) on loopback: an RFC 5424
//! message (logger's default for a remote server, with structured data) and an RFC 3164 one
//! reach the audit store as `syslog` events with facility, severity, host, app and message,
//! queryable by the sender's IP; a datagram that is not syslog becomes `packet_rejected` with
//! the reason, and the daemon keeps receiving.
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{free_port, px, text, Daemon};

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
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    for dir in ["conf-repo", "boot"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    let (http, sys) = (free_port(), free_port());
    let cfg = base.join("pxelator.toml");
    std::fs::write(
        &cfg,
        format!(
            "conf_repo = \"{0}/conf-repo\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\nserver_ip = \"127.0.0.1\"\n\
             [dhcp]\nmode = \"off\"\n[tftp]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [syslog]\nlisten = \"127.0.0.1:{sys}\"\n",
            base.display()
        ),
    )
    .unwrap();
    let log = base.join("daemon.log");
    let _daemon = Daemon::start(&cfg, &log);
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
