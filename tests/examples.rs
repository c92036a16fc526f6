//! The example config and conf-repo shipped in the repository stay valid.
use pxelator::config::Config;
use std::net::Ipv4Addr;
use std::path::Path;

#[test]
fn shipped_example_config_validates() {
    let c = Config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/image/pxelator.toml"
    )))
    .unwrap();
    assert_eq!(c.dhcp.interfaces, vec!["br0".to_string()]);
    assert_eq!(c.http.public_url, "http://10.77.1.1");
}

#[test]
fn shipped_example_inventory_loads_both_layouts_without_problems() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/conf-repo"));
    let (inv, problems) = pxelator::inventory::load(root, Ipv4Addr::new(10, 77, 1, 1), None);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(inv.machines().len(), 2);
    let seed = inv.by_ip(&Ipv4Addr::new(10, 77, 1, 12)).unwrap();
    assert_eq!(seed.hostname.as_deref(), Some("kiosk2"));
    assert_eq!(inv.profile_for(Some(seed)).unwrap().name, "local");
    let kiosk = inv.profile("live-kiosk").unwrap();
    assert_eq!(kiosk.kernel.as_deref(), Some("images/kiosk-live/vmlinuz"));
    assert!(kiosk.kiosk);
}

#[test]
fn shipped_example_power_schedule_parses() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf-repo/power.toml"))
            .unwrap();
    let s = pxelator::power::schedule::parse(&text, jiff::tz::TimeZone::UTC).unwrap();
    assert!(s.amt.is_some() && s.ssh.is_some());
}
