//! Any bytes → a backup pull's tar stream (what a host's `tar --create` sends back over ssh,
//! under the control of whoever uses that host). Never panics; no file over the cap is read;
//! no path with `..` or `.git` is kept.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::backup::read_archive;

const CAP: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let (pulled, _) = read_archive(data, &[], CAP);
    for (path, bytes) in &pulled.files {
        assert!(bytes.len() as u64 <= CAP);
        assert!(!path.split('/').any(|c| c == ".." || c == ".git"), "{path}");
    }
    for path in pulled.meta.keys() {
        assert!(!path.split('/').any(|c| c == ".." || c == ".git"), "{path}");
    }
});
