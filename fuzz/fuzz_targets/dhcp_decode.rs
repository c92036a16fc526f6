//! Any bytes → DHCP request decoder → (if it decodes) decide + encode a reply. Must never panic,
//! and a decoded request's reply must decode again as a BOOTREPLY with the same xid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::core::dhcp::{decide, Decision};
use pxelator::core::leases::Leases;
use pxelator::inventory::Inventory;
use pxelator::proto::dhcp::{decode_any, decode_request, encode_reply};

fuzz_target!(|data: &[u8]| {
    let Ok((req, msg)) = decode_request(data, "fuzz") else {
        return;
    };
    let net = pxelator::config::Config::parse(
        std::path::Path::new("fuzz.toml"),
        "conf_repo = \"/nonexistent\"\nstate_dir = \"/nonexistent\"\nboot_dir = \"/nonexistent\"\nserver_ip = \"10.0.0.1\"\n[dhcp]\ninterfaces = [\"x\"]\n[[subnet]]\nnetwork = \"10.0.0.0/8\"\npool = [\"10.0.1.0\", \"10.0.1.255\"]\n",
    )
    .expect("fuzz config")
    .dhcp
    .net;
    if let Decision::Reply { reply, .. } = decide(
        &req,
        &Inventory::default(),
        &Leases::default(),
        &net,
        1_000_000,
    ) {
        let bytes = encode_reply(&msg, &reply);
        let back = decode_any(&bytes).expect("our own reply must decode");
        assert_eq!(back.xid(), req.xid);
    }
});
