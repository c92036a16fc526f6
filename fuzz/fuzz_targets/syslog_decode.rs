//! Any bytes → syslog decoder: never panics; what it accepts has a valid facility and
//! severity, and a message no longer than the datagram.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::proto::syslog::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse(data) {
        assert!(m.facility <= 23 && m.severity <= 7);
        assert!(m.message.len() <= data.len() * 3);
    }
});
