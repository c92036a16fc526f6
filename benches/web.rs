//! Web UI page cost (issue 12: overview with 1 000 machines and 10 M audit events < 150 ms
//! server time, machine page < 100 ms, each page < 150 KB transferred). The real daemon on
//! loopback, 1 000 machines committed, the embedded audit store filled with
//! $PXELATOR_BENCH_EVENTS events (default 10 000 000; DHCP, TFTP and HTTP events spread over the
//! machines and 30 days). Each page is fetched 20 times over HTTP/1.1 with a viewer's API token
//! and `Accept-Encoding: gzip`; the table gives median and worst time and the bytes transferred.
//! Plain `main` (harness = false): `cargo bench --bench web`.
use pxelator::audit::{open_store, Record};
use pxelator::confrepo::{Author, Change, ConfRepo};
use pxelator::core::event::Event;
use pxelator::core::mac::Mac;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const MACHINES: u32 = 1000;

fn mac(n: u32) -> Mac {
    Mac([0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, (n >> 8) as u8, n as u8)
}

fn fetch(port: u16, path: &str, token: &str) -> (Duration, usize, u16) {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let took = t.elapsed();
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    let status = std::str::from_utf8(&buf[..head_end.min(20)])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (took, buf.len(), status)
}

fn main() {
    let events: u64 = std::env::var("PXELATOR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    std::fs::create_dir_all(base.join("boot")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg_path = base.join("pxelator.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "conf_repo = \"{0}/conf-repo\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\n\
             server_ip = \"10.64.0.1\"\n[dhcp]\nmode = \"off\"\n[tftp]\nenabled = false\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n",
            base.display()
        ),
    )
    .unwrap();
    let cfg = pxelator::config::Config::load(&cfg_path).unwrap();
    let author = Author::parse("bench <bench@example.org>");
    let repo = ConfRepo::open_or_init(&cfg.conf_repo, &author).unwrap();
    let changes: Vec<Change> = (1..=MACHINES)
        .map(|n| {
            Change::Write(
                format!("machines/m{n:04}.toml"),
                format!(
                    "mac = \"{}\"\nip = \"{}\"\nhostname = \"m{n:04}\"\nprofile = \"kiosk\"\n[params]\ngroup = \"room{}\"\nhomepage = \"http://opac.example/?k={n}\"\n",
                    mac(n),
                    ip(n),
                    n % 12
                )
                .into_bytes(),
            )
        })
        .collect();
    repo.commit(&changes, &author, "1000 machines").unwrap();

    // The audit store: events spread over the machines and the last 30 days.
    let t = Instant::now();
    let audit = cfg.audit.clone().expect("auditing on by default");
    let mut store = open_store(&audit).unwrap();
    store.prepare().unwrap();
    let now = pxelator::clock::unix_now_ms();
    let span = 30 * 24 * 3600 * 1000i64;
    let batch = 20_000u64;
    let mut seq = 0u64;
    while seq < events {
        let rows: Vec<Record> = (seq..(seq + batch).min(events))
            .map(|i| {
                let n = (i % MACHINES as u64) as u32 + 1;
                let when = now - span + (i as i64 * span / events as i64);
                let peer = SocketAddr::from((ip(n), 2000 + (i % 1000) as u16));
                let e = match i % 3 {
                    0 => Event::DhcpReply {
                        reply: "ack".into(),
                        mac: mac(n),
                        ip: Some(ip(n)),
                        xid: i as u32,
                        iface: "eth0".into(),
                        host: Some(format!("m{n:04}")),
                        file: Some("snponly.efi".into()),
                    },
                    1 => Event::TftpFinished {
                        peer,
                        file: "snponly.efi".into(),
                        bytes: 200_000,
                        duration_ms: 300,
                    },
                    _ => Event::HttpServed {
                        peer,
                        file: "/files/k/vmlinuz".into(),
                        status: 200,
                        bytes: Some(8_000_000),
                        mac: Some(mac(n)),
                        user: None,
                    },
                };
                Record::from_event(&e, when, i)
            })
            .collect();
        store.insert(&rows).unwrap();
        seq += batch;
    }
    drop(store);
    let fill = t.elapsed();

    let users_path = pxelator::auth::users_path(&cfg.state_dir);
    let mut users = pxelator::auth::Users::load(&users_path).unwrap();
    users
        .add(
            "bench",
            pxelator::core::access::Role::Viewer,
            "bench-password-1",
        )
        .unwrap();
    let token = users
        .new_token("bench", "bench", "2026-11-30T00:00:00Z")
        .unwrap();
    users.save().unwrap();

    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_pxelator"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(base.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let up = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "the daemon did not listen: {}",
        std::fs::read_to_string(base.join("daemon.log")).unwrap_or_default()
    );
    // Let the start-up seeding of the last-seen table (aggregates over the store) finish.
    let seeded = (0..1200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(base.join("daemon.log"))
            .unwrap_or_default()
            .contains("last-seen table seeded")
    });
    let seed_note = if seeded {
        "seeded"
    } else {
        "not seeded within 120 s"
    };

    println!("web UI pages: {MACHINES} machines, {events} audit events (filled in {:.0} s; last-seen table {seed_note})", fill.as_secs_f64());
    println!("| page | median ms | worst ms | bytes transferred (gzip) | status |");
    println!("|---|---|---|---|---|");
    for (name, path) in [
        ("overview", "/ui/".to_string()),
        ("overview, filtered", "/ui/?q=room3".to_string()),
        ("machine page", "/ui/machines/m0500".to_string()),
        ("machine history", "/ui/machines/m0500/history".to_string()),
        ("groups and power", "/ui/groups".to_string()),
        ("images", "/ui/images".to_string()),
        ("graphs, last day", "/ui/graphs".to_string()),
        ("graphs, last 7 days", "/ui/graphs?days=7".to_string()),
        ("health", "/ui/health".to_string()),
        (
            "audit explorer, everything (100 rows)",
            "/ui/audit".to_string(),
        ),
        (
            "audit explorer (100 rows)",
            "/ui/audit?filter=%7B%22kind%22%3A%22tftp_finished%22%7D".to_string(),
        ),
    ] {
        let _ = fetch(port, &path, &token); // warm
        let mut times: Vec<Duration> = Vec::new();
        let mut size = 0;
        let mut status = 0;
        for _ in 0..20 {
            let (t, b, s) = fetch(port, &path, &token);
            times.push(t);
            size = b;
            status = s;
        }
        times.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {size} | {status} |",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}
