//! Issue 10: each registration made the daemon rewrite the whole inventory snapshot, walk every
//! pulled host file and parse every machine. Reloads are incremental now (the snapshot
//! rewrites only changed files; unchanged machine files are reused unread). This checks that
//! the shortcut never changes the outcome: after each commit of a sequence made with the
//! stock `git` CLI (add, edit, delete, group defaults, a broken file, an interrupted
//! snapshot), the daemon's incremental reload equals a full load of HEAD, and the snapshot
//! directory holds exactly HEAD's inventory files. Timing: `cargo bench --bench registration`.
mod common;
use common::git;
use pxelator::app::{load_inventory, LoadState};
use pxelator::events::Bus;
use std::path::Path;

fn write(repo: &Path, rel: &str, text: &str) {
    let p = repo.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn commit(repo: &Path, msg: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", msg]);
}

fn machine(n: u8, extra: &str) -> String {
    format!("mac = \"52:54:00:00:01:{n:02x}\"\nip = \"10.77.1.{n}\"\nhostname = \"m{n}\"\n{extra}")
}

/// Files under the inventory directories: in HEAD (git ls-tree) and in the snapshot.
fn same_files(repo: &Path, snap: &Path) {
    let mut head: Vec<String> = git(repo, &["ls-tree", "-r", "--name-only", "HEAD"])
        .lines()
        .filter(|p| {
            pxelator::inventory::DIRS
                .iter()
                .any(|d| p.starts_with(&format!("{d}/")))
        })
        .map(str::to_owned)
        .collect();
    head.sort();
    let mut got = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if !p.ends_with(".pxelator-ids") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(snap, snap, &mut got);
    got.sort();
    assert_eq!(got, head, "snapshot files");
    for p in &head {
        assert_eq!(
            std::fs::read(snap.join(p)).unwrap(),
            git(repo, &["show", &format!("HEAD:{p}")]).into_bytes(),
            "{p}"
        );
    }
}

#[test]
fn incremental_reloads_equal_full_loads() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let repo = base.join("conf-repo");
    let cfg_path = common::minimal_config(base, "10.77.1.1");
    let cfg = pxelator::config::Config::load(&cfg_path).unwrap();
    let snap = base.join("state/conf-snapshot");
    for n in 2..40 {
        write(&repo, &format!("machines/m{n}.toml"), &machine(n, ""));
    }
    write(&repo, "profiles/kiosk.toml", "boot = \"local\"\n");
    git(&repo, &["init", "-q"]);
    commit(&repo, "Seed");
    let bus = Bus::default();
    let mut events = bus.subscribe();
    let mut state = LoadState::default();
    let mut inv = load_inventory(&cfg, None, &bus, &mut state);
    assert_eq!(inv.machines().len(), 38);

    type Step = Box<dyn Fn(&Path)>;
    let steps: Vec<(&str, Step)> = vec![
        (
            "add",
            Box::new(|r| write(r, "machines/m50.toml", &machine(50, ""))),
        ),
        (
            "edit",
            Box::new(|r| write(r, "machines/m2.toml", &machine(2, "profile = \"kiosk\"\n"))),
        ),
        (
            "delete",
            Box::new(|r| std::fs::remove_file(r.join("machines/m3.toml")).unwrap()),
        ),
        (
            "group",
            Box::new(|r| {
                write(
                    r,
                    "groups/room.toml",
                    "[params]\nhomepage = \"https://a.example/\"\n",
                );
                write(
                    r,
                    "machines/m4.toml",
                    &machine(4, "[params]\ngroup = \"room\"\n"),
                );
            }),
        ),
        (
            "group edit",
            Box::new(|r| {
                write(
                    r,
                    "groups/room.toml",
                    "[params]\nhomepage = \"https://b.example/\"\n",
                )
            }),
        ),
        (
            "broken",
            Box::new(|r| write(r, "machines/m5.toml", "mac = \"not a mac\"\n")),
        ),
        (
            "other file",
            Box::new(|r| write(r, "profiles/live.toml", "boot = \"local\"\n")),
        ),
        (
            "interrupted snapshot",
            Box::new(|r| {
                // As if the daemon died mid-update: no manifest, a stray file.
                let snap = r.parent().unwrap().join("state/conf-snapshot");
                std::fs::remove_file(snap.join(".pxelator-ids")).unwrap();
                std::fs::write(snap.join("machines/stray.toml"), machine(99, "")).unwrap();
                write(r, "machines/m6.toml", &machine(6, "args = \"quiet\"\n"));
            }),
        ),
    ];
    for (name, step) in steps {
        step(&repo);
        commit(&repo, name);
        let prev = inv.clone();
        inv = load_inventory(&cfg, Some(&prev), &bus, &mut state);
        // The same load done the long way: a fresh snapshot of HEAD, every file parsed, with
        // the same previous inventory (a broken file keeps its last good version in both).
        let scratch = base.join(format!("scratch-{}", name.replace(' ', "-")));
        let r = pxelator::confrepo::ConfRepo::open(&repo).unwrap().unwrap();
        let delta = r
            .snapshot(
                r.head().unwrap().unwrap(),
                pxelator::inventory::DIRS,
                &scratch,
            )
            .unwrap();
        assert!(delta.full, "a new directory is a full snapshot");
        let (full, problems) =
            pxelator::inventory::load_named(&scratch, &repo, cfg.server_ip, Some(&prev));
        let mut a = inv.machines().to_vec();
        let mut b = full.machines().to_vec();
        a.sort_by_key(|m| m.mac.0);
        b.sort_by_key(|m| m.mac.0);
        let differ: Vec<_> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("{x:?}\n  vs {y:?}"))
            .collect();
        assert!(
            a.len() == b.len() && differ.is_empty(),
            "after {name}: incremental reload ({}) differs from a full load ({}): {differ:?}",
            a.len(),
            b.len()
        );
        same_files(&repo, &snap);
        // The daemon's reload reports what a full load reports, even for an unchanged file
        // (m5 stays broken through "other file").
        let mut reported = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let pxelator::core::event::Event::InventoryProblem { path, .. } = &e.event {
                reported.push(path.clone());
            }
        }
        let mut want: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        reported.sort();
        want.sort();
        assert_eq!(reported, want, "after {name}: problems reported");
        if name == "broken" || name == "other file" {
            assert!(
                want.iter().any(|p| p.ends_with("machines/m5.toml")),
                "{name}: {problems:?}"
            );
        }
    }
    let m4 = inv
        .machines()
        .iter()
        .find(|m| m.hostname.as_deref() == Some("m4"))
        .unwrap();
    assert_eq!(
        m4.params["homepage"], "https://b.example/",
        "group edit reached the machine"
    );
    assert!(inv
        .machines()
        .iter()
        .all(|m| m.hostname.as_deref() != Some("m99")));
}
