//! Any bytes → an ISO 9660 image (the bytes from sector 16 on; the system area before it is
//! never read) → `Iso::open`, then every directory reachable within a bounded walk and the
//! first bytes of every file. Never panics; a damaged image is an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::image::iso::Iso;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("pxelator-fuzz-{}.iso", std::process::id()));
    let mut image = vec![0u8; 16 * 2048];
    image.extend_from_slice(data);
    std::fs::write(&path, &image).unwrap();
    let Ok(mut iso) = Iso::open(&path) else {
        return;
    };
    let Ok(Some(root)) = iso.lookup("") else {
        return;
    };
    let mut todo = vec![root];
    let mut visited = 0;
    while let Some(dir) = todo.pop() {
        visited += 1;
        if visited > 64 {
            break; // a directory that contains itself loops; the walk, not the reader, stops it
        }
        let Ok(entries) = iso.read_dir(&dir) else {
            continue;
        };
        for e in entries {
            if e.is_dir {
                todo.push(e);
            } else if let Ok(r) = iso.open_file(&e) {
                let mut buf = Vec::new();
                let _ = r.take(4096).read_to_end(&mut buf);
            }
        }
    }
});
