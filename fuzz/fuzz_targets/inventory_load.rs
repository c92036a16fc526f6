//! Any bytes → one inventory file (the first byte picks which: a machine, a profile, a group
//! default, or the original layout's `mac`/`hostname`), loaded with the daemon's loader.
//! Never panics; every problem names a file under the conf repo.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::OnceLock;

const FILES: [&str; 5] = [
    "machines/m.toml",
    "profiles/p.toml",
    "groups/g.toml",
    "conf/10.0.0.1/10.0.0.5/mac",
    "conf/10.0.0.1/10.0.0.5/hostname",
];

fn root() -> &'static PathBuf {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let r = std::env::temp_dir().join(format!("pxelator-fuzz-inv-{}", std::process::id()));
        for f in FILES {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
        }
        std::fs::write(r.join("conf/10.0.0.1/10.0.0.5/mac"), "52:54:00:00:00:05\n").unwrap();
        r
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let root = root();
    let file = root.join(FILES[usize::from(pick) % FILES.len()]);
    let before = std::fs::read(&file).ok();
    std::fs::write(&file, body).unwrap();
    let (inv, problems) = pxelator::inventory::load(root, Ipv4Addr::new(10, 0, 0, 1), None);
    for p in &problems {
        assert!(p.to_string().contains(root.to_str().unwrap()), "{p}");
    }
    for m in inv.machines() {
        assert!(m.source.starts_with(root), "{}", m.source.display());
    }
    match before {
        Some(b) => std::fs::write(&file, b).unwrap(),
        None => std::fs::remove_file(&file).unwrap(),
    }
});
