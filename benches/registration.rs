//! What one zero-touch registration costs as the inventory grows (issue 10: "indexing cost per
//! registration O(1)"): the commit the DHCP service makes, then the daemon's reload of the
//! committed inventory that the new HEAD triggers. Plain `main` (harness = false): prints a
//! table; `cargo bench --bench registration`. Sizes: machines already registered, and files
//! pulled into `hosts/` by backups (which the reload must not have to walk).
use pxelator::confrepo::{Author, Change, ConfRepo};
use pxelator::core::mac::Mac;
use std::time::{Duration, Instant};

fn machine(n: u32) -> (String, Vec<u8>) {
    let mac = Mac([0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    let ip = format!("10.{}.{}.{}", 64 + (n >> 16), (n >> 8) & 255, n & 255);
    (
        format!("machines/{}.toml", mac.dashed()),
        format!(
            "mac = \"{mac}\"\nip = \"{ip}\"\nhostname = \"{}\"\nregistered = \"2026-11-30T10:00:00Z\"\n",
            pxelator::inventory::register::default_hostname(&mac)
        )
        .into_bytes(),
    )
}

fn run(machines: u32, host_files: u32) -> (Duration, Duration) {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let root = base.join("conf-repo");
    std::fs::create_dir_all(base.join("boot")).unwrap();
    let cfg_path = base.join("pxelator.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "conf_repo = \"{0}/conf-repo\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\n\
             server_ip = \"10.64.0.1\"\n[dhcp]\nmode = \"off\"\n[tftp]\nenabled = false\n",
            base.display()
        ),
    )
    .unwrap();
    let cfg = pxelator::config::Config::load(&cfg_path).unwrap();
    let author = Author::parse("bench <bench@example.org>");
    let repo = ConfRepo::open_or_init(&root, &author).unwrap();
    let mut changes: Vec<Change> = (1..=machines)
        .map(|n| {
            let (p, d) = machine(n);
            Change::Write(p, d)
        })
        .collect();
    changes.extend((0..host_files).map(|i| {
        Change::Write(
            format!("hosts/kiosk{}/etc/file{}", i % 50, i),
            format!("line {i}\n").into_bytes(),
        )
    }));
    repo.commit(&changes, &author, "Seed").unwrap();
    // Files as old as a conf repo's usually are (a stat cache trusts no file changed < 2 s ago).
    std::thread::sleep(Duration::from_millis(2100));
    let bus = pxelator::events::Bus::default();
    let mut head = pxelator::app::LoadState::default();
    let mut inv = pxelator::app::load_inventory(&cfg, None, &bus, &mut head);
    assert_eq!(inv.machines().len(), machines as usize);
    let rounds = 5;
    let (mut commit, mut reload) = (Duration::ZERO, Duration::ZERO);
    for r in 0..rounds {
        let (p, data) = machine(machines + 1 + r);
        let t = Instant::now();
        repo.commit(&[Change::Write(p, data)], &author, "Register")
            .unwrap();
        commit += t.elapsed();
        let t = Instant::now();
        inv = pxelator::app::load_inventory(&cfg, Some(&inv), &bus, &mut head);
        reload += t.elapsed();
    }
    assert_eq!(inv.machines().len(), (machines + rounds) as usize);
    (commit / rounds, reload / rounds)
}

fn main() {
    println!("| machines | files in hosts/ | commit ms | reload ms |");
    println!("|---|---|---|---|");
    for (m, h) in [(100, 0), (1000, 0), (5000, 0), (1000, 20000)] {
        let (c, r) = run(m, h);
        println!(
            "| {m} | {h} | {:.1} | {:.1} |",
            c.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3
        );
    }
}
