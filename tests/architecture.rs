//! The layers the code is built in (ARCHITECTURE.md), kept so by reading the sources: `proto`
//! (bytes ⇄ types) is a crate of its own that depends on nothing of pxelator; `core`
//! (decisions) uses nothing from `services`, `audit`, `app`, `backup`, `power` or `auth` (the
//! I/O layers); `audit` uses nothing from `services`.
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of the files under `src/<layer>` (and `src/<layer>.rs`) that name `crate::<module>`
/// for a forbidden module, as `file:line: text`.
fn uses(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    if src.join(layer).is_dir() {
        sources(&src.join(layer), &mut files);
    }
    if src.join(format!("{layer}.rs")).is_file() {
        files.push(src.join(format!("{layer}.rs")));
    }
    assert!(!files.is_empty(), "no sources for {layer}");
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for m in forbidden {
                let direct = format!("crate::{m}");
                let grouped = code.contains("crate::{") && code.contains(&format!("{m}::"));
                if code.contains(&direct) || grouped {
                    found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    found
}

const IO_LAYERS: &[&str] = &[
    "services", "audit", "app", "backup", "power", "auth", "confrepo",
];

#[test]
fn proto_is_a_crate_that_depends_on_nothing_of_pxelator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/proto");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    assert!(
        deps.lines()
            .all(|l| !l.trim_start().starts_with("pxelator")),
        "crates/proto must not depend on pxelator:\n{deps}"
    );
    let mut files = Vec::new();
    sources(&dir.join("src"), &mut files);
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code: Vec<&str> = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .filter(|l| l.contains("pxelator::") || l.contains("crate::core"))
            .collect();
        assert!(code.is_empty(), "{}: {code:?}", f.display());
    }
}

#[test]
fn core_stays_free_of_io_layers() {
    let bad = uses("core", IO_LAYERS);
    assert!(
        bad.is_empty(),
        "core must not use I/O layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn audit_does_not_use_services() {
    let bad = uses("audit", &["services", "app"]);
    assert!(
        bad.is_empty(),
        "audit must not use services:\n{}",
        bad.join("\n")
    );
}

/// The check itself finds what it is for (it would otherwise pass on anything).
#[test]
fn the_check_sees_a_forbidden_use() {
    assert!(!uses("services", &["core"]).is_empty());
}
