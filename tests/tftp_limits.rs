//! Issue 10: TFTP slots could be held for ~25 minutes (client-chosen timeout 255 s × retries)
//! and one address could take all 512. Now: at most 8 transfers per client address, a
//! requested timeout above 5 s is not acknowledged, and a transfer without progress ends.
//! The daemon runs on loopback only (TFTP on 127.0.0.1, DHCP off).
use std::net::UdpSocket;
use std::time::Duration;

mod common;
use common::{free_port, loopback_config_with, within, Daemon};

fn rrq(file: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in [file, "octet"] {
        p.extend(s.as_bytes());
        p.push(0);
    }
    for (k, v) in opts {
        p.extend(k.as_bytes());
        p.push(0);
        p.extend(v.as_bytes());
        p.push(0);
    }
    p
}

/// The first packet the server sends back to `s`: (opcode, the rest).
fn first_answer(s: &UdpSocket) -> (u16, Vec<u8>) {
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("an answer");
    (u16::from_be_bytes([buf[0], buf[1]]), buf[2..n].to_vec())
}

#[test]
fn one_address_gets_at_most_8_transfers_and_no_long_timeouts() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let (http, tftp) = (free_port(), free_port());
    let cfg = loopback_config_with(
        base,
        http,
        &format!("[tftp]\nlisten = \"127.0.0.1:{tftp}\"\n"),
    );
    std::fs::write(base.join("boot/big.bin"), vec![7u8; 1 << 20]).unwrap();
    let log = base.join("daemon.log");
    let _daemon = Daemon::start(&cfg, &log);
    let up = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("pxelator ready")
    };
    assert!(
        within(Duration::from_secs(20), up).is_some(),
        "daemon did not start"
    );

    // Ten clients on one address ask and never ACK: eight transfers start, two are refused.
    let socks: Vec<UdpSocket> = (0..10)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    let mut data = 0;
    let mut refused = 0;
    for s in &socks {
        s.send_to(&rrq("big.bin", &[]), ("127.0.0.1", tftp))
            .unwrap();
        match first_answer(s) {
            (3, _) => data += 1,
            (5, rest) if String::from_utf8_lossy(&rest).contains("too many transfers") => {
                refused += 1
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((data, refused), (8, 2));
    // Another address is not affected.
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other
        .send_to(&rrq("big.bin", &[]), ("127.0.0.1", tftp))
        .unwrap();
    assert_eq!(first_answer(&other).0, 3);

    // timeout=255 is not acknowledged (the OACK carries the other options only).
    let t = UdpSocket::bind("127.0.0.3:0").unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.send_to(
        &rrq("big.bin", &[("timeout", "255"), ("blksize", "1468")]),
        ("127.0.0.1", tftp),
    )
    .unwrap();
    let (op, rest) = first_answer(&t);
    let oack = String::from_utf8_lossy(&rest).into_owned();
    assert_eq!(op, 6, "{oack}");
    assert!(
        oack.contains("blksize") && !oack.contains("timeout"),
        "{oack:?}"
    );

    // The silent clients' transfers end after their retries and free the address's slots.
    let freed = within(Duration::from_secs(30), || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(&rrq("big.bin", &[]), ("127.0.0.1", tftp))
            .unwrap();
        first_answer(&s).0 == 3
    });
    assert!(
        freed.is_some(),
        "slots of silent transfers were never freed"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("transfers from 127.0.0.1 already running"),
        "refusal recorded"
    );
}
