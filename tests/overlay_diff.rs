//! Issue 13, `overlay diff`: a real kernel overlayfs (mounted with the options pxelator's
//! network roots use: index=on, nfs_export=on) over a small base; changes made through the
//! merged view — a write, a new file in a new directory, a deletion (whiteout), a chmod
//! (metadata copy-up), a directory deleted and made again (opaque), a file opened for writing
//! and left as it was (copy-up, no change), a symlink retargeted — must come out of
//! `overlay::diff` exactly, and a text file's content diff must show the write. Needs root and
//! the overlay module; skipped loudly otherwise.
use pxelator::overlay::{self, ChangeKind, EntryKind};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn diff_of_a_real_overlay() {
    let d = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged) = (
        d.path().join("base"),
        d.path().join("upper"),
        d.path().join("work"),
        d.path().join("root"),
    );
    for p in [&upper, &work, &merged] {
        std::fs::create_dir_all(p).unwrap();
    }
    write(&lower.join("etc/motd"), "Welcome to the base\n");
    write(&lower.join("etc/hostname"), "base\n");
    write(&lower.join("etc/gone.conf"), "x\n");
    write(&lower.join("usr/bin/tool"), "#!/bin/sh\n");
    std::fs::set_permissions(
        lower.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(&lower.join("srv/data/a"), "a\n");
    write(&lower.join("srv/data/b"), "b\n");
    write(&lower.join("var/cache/old/x"), "x\n");
    std::os::unix::fs::symlink("motd", lower.join("etc/issue")).unwrap();

    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=on,nfs_export=on",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mount = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .output()
        .expect("mount(8)");
    if !mount.status.success() {
        let why = String::from_utf8_lossy(&mount.stderr);
        assert!(
            std::env::var_os("CI").is_none() || why.contains("permission denied"),
            "overlayfs mount failed: {why}"
        );
        println!(
            "SKIPPED: overlay diff test: cannot mount an overlayfs here ({})",
            why.trim()
        );
        return;
    }
    let m = Mounted(merged.clone());

    std::fs::write(merged.join("etc/motd"), "Welcome to kiosk7\n").unwrap();
    write(&merged.join("home/amy/notes.txt"), "mine\n");
    std::fs::remove_file(merged.join("etc/gone.conf")).unwrap();
    std::fs::set_permissions(
        merged.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::remove_dir_all(merged.join("srv/data")).unwrap();
    write(&merged.join("srv/data/c"), "c\n");
    std::fs::remove_dir_all(merged.join("var/cache/old")).unwrap();
    drop(
        std::fs::OpenOptions::new()
            .append(true)
            .open(merged.join("etc/hostname"))
            .unwrap(),
    );
    std::fs::remove_file(merged.join("etc/issue")).unwrap();
    std::os::unix::fs::symlink("hostname", merged.join("etc/issue")).unwrap();
    drop(m); // unmounted: the upper is read as it lies on the server's disk

    let changes = overlay::diff(&lower, &upper).unwrap();
    let got: Vec<(String, ChangeKind, EntryKind, Option<String>)> = changes
        .iter()
        .map(|c| (c.path.clone(), c.kind, c.entry, c.detail.clone()))
        .collect();
    use ChangeKind::*;
    use EntryKind::*;
    let want: Vec<(String, ChangeKind, EntryKind, Option<String>)> = vec![
        ("etc/gone.conf", Deleted, File, None),
        ("etc/issue", Changed, Symlink, Some("link target")),
        ("etc/motd", Changed, File, Some("content")),
        ("home", Added, Dir, None),
        ("home/amy", Added, Dir, None),
        ("home/amy/notes.txt", Added, File, None),
        ("srv/data/a", Deleted, File, None),
        ("srv/data/b", Deleted, File, None),
        ("srv/data/c", Added, File, None),
        ("usr/bin/tool", Changed, File, Some("mode 755 → 700")),
        ("var/cache/old", Deleted, Dir, None),
        ("var/cache/old/x", Deleted, File, None),
    ]
    .into_iter()
    .map(|(p, k, e, d)| (p.to_string(), k, e, d.map(str::to_string)))
    .collect();
    assert_eq!(got, want, "the upper holds: {:?}", list(&upper));
    assert!(
        std::fs::symlink_metadata(upper.join("etc/hostname")).is_ok(),
        "opened for writing: copied up, yet (same bytes) not a change"
    );

    let text = overlay::text_diff(&lower, &upper, "etc/motd").unwrap();
    assert!(
        text.contains("-Welcome to the base") && text.contains("+Welcome to kiosk7"),
        "{text}"
    );
    assert!(overlay::text_diff(&lower, &upper, "usr/bin/missing").is_none());
}

fn list(dir: &Path) -> Vec<String> {
    let o = Command::new("find")
        .arg(dir)
        .arg("-printf")
        .arg("%P %y\n")
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
