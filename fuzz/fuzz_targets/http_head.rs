//! Any bytes → the zero-copy /files path's request head reader, path check and reply
//! (core::files): what every HTTP client on the segment can send before authentication.
//! Never panics; a path it accepts has no `..`/empty component and no NUL; a reply's body
//! range lies inside the file; a 206's Content-Range matches the bytes sent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::core::files::{parse_head, relative_path, reply, FileMeta, Parsed};

fuzz_target!(|data: &[u8]| {
    let Parsed::Done(h) = parse_head(data) else {
        return;
    };
    assert!(h.len <= data.len());
    if let Some(rel) = relative_path(&h.target) {
        assert!(!rel.split('/').any(|c| c.is_empty() || c == "." || c == ".."), "{rel}");
        assert!(!rel.contains('\0'));
    }
    // The file's length from the input's tail, so ranges meet short and long files.
    let len = data.iter().rev().take(4).fold(0u64, |a, &b| (a << 8) | u64::from(b)) % 5000;
    let meta = FileMeta { len, mtime: 1_700_000_000, ino: 7 };
    let r = reply(&h, "x.bin", &meta, std::time::UNIX_EPOCH);
    if let Some((start, count)) = r.body {
        assert!(count > 0 && start + count <= len, "{start}+{count} > {len}");
        assert_eq!(count, r.length);
    }
    if r.status == 206 {
        let (start, count) = r.body.unwrap_or((0, r.length));
        let want = format!("Content-Range: bytes {start}-{}/{len}\r\n", start + r.length - 1);
        assert!(r.head.contains(&want) || h.method == "HEAD", "{}", r.head);
        let _ = count;
    }
    assert!(r.head.ends_with("\r\n\r\n"));
});
