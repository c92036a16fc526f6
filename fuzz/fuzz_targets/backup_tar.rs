//! Any bytes → a backup pull's tar stream (what a host's `tar --create` sends back over ssh,
//! under the control of whoever uses that host). Never panics; no file over the cap is read
//! (what is read is spilled to a temporary directory, removed after each input);
//! no path with `..` or `.git` is kept.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::backup::{read_archive, SpillDir};

const CAP: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join("pxelator-fuzz-spill");
    let spill = SpillDir::create(&root, "fuzz").expect("spill directory in the temp dir");
    let (pulled, _) = read_archive(data, &[], CAP, spill);
    for (path, f) in &pulled.files {
        assert!(f.size <= CAP);
        assert_eq!(std::fs::metadata(&f.spill).map(|m| m.len()).ok(), Some(f.size));
        assert!(!path.split('/').any(|c| c == ".." || c == ".git"), "{path}");
    }
    for path in pulled.meta.keys() {
        assert!(!path.split('/').any(|c| c == ".." || c == ".git"), "{path}");
    }
});
