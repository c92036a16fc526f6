//! Any bytes → TFTP packet decoder; decoded packets re-encode and decode to the same value,
//! and option negotiation on any decoded RRQ stays within the RFC limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::proto::tftp::{negotiate, sanitize_path, Packet, MAX_BLKSIZE, MAX_WINDOWSIZE};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else { return };
    if let Packet::Rrq { file, options, .. } = &p {
        let n = negotiate(options, 1 << 20, MAX_BLKSIZE);
        assert!(n.blksize >= 8 && n.blksize <= MAX_BLKSIZE);
        assert!(n.windowsize >= 1 && n.windowsize <= MAX_WINDOWSIZE);
        if let Some(s) = sanitize_path(file) {
            assert!(!s.split('/').any(|c| c == ".." || c.is_empty()));
        }
    }
    // Case-folding of option names/modes means only the re-decoded form is a fixpoint.
    let again = Packet::decode(&p.encode()).expect("re-encoded packet decodes");
    assert_eq!(Packet::decode(&again.encode()).expect("fixpoint"), again);
});
