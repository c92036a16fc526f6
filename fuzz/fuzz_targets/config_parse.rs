//! Any text → the daemon's config loader (`pxelator.toml`, `check-config`): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pxelator::config::Config::parse(std::path::Path::new("fuzz.toml"), text);
    }
});
