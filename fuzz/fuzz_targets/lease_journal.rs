//! Any bytes → the lease journal replay (`state_dir/leases.jsonl`, read at every start).
//! Never panics; every line is either applied or counted as skipped.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::services::journal::replay;

fuzz_target!(|data: &[u8]| {
    let (_, skipped) = replay(data).expect("reading from memory cannot fail");
    assert!(skipped <= data.split(|&b| b == b'\n').count());
});
