//! `pxelator appliance update` on files instead of disks, with the real tools on both sides:
//! the "image" is a GPT disk made by sgdisk whose sys-a partition is an ext4 made by
//! mkfs.ext4 -d (holding /version); GRUB's environment block is made and read back by
//! grub-editenv; the target slot is a plain file. Checks what lands, what GRUB will read, and
//! that a damaged, oversized or foreign image leaves the running system's boot untouched.
//! (The whole update → trial boot → confirm/rollback cycle runs in QEMU: scripts/test-appliance.)
use pxelator::appliance::{self, Layout};
use pxelator::core::slots::{self, Confirm, Slot};
use std::path::Path;
use std::process::Command;

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/setup installs it)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An appliance image: 1 MiB gap, then sys-a (8 MiB, ext4 with /version), then "data".
fn make_image(dir: &Path, version: &str) -> std::path::PathBuf {
    let slot_dir = dir.join(format!("slot-{version}"));
    std::fs::create_dir_all(&slot_dir).unwrap();
    std::fs::write(slot_dir.join("version"), format!("{version}\n")).unwrap();
    std::fs::write(slot_dir.join("payload"), version.repeat(50_000)).unwrap();
    let part = dir.join(format!("sys-{version}.ext4"));
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "PXL-SYS-A",
            "-d",
            slot_dir.to_str().unwrap(),
            part.to_str().unwrap(),
            "8M",
        ],
    );
    let img = dir.join(format!("pxelator-appliance-{version}.img"));
    let _ = std::fs::remove_file(&img);
    sh("truncate", &["-s", "12M", img.to_str().unwrap()]);
    sh(
        "sgdisk",
        &[
            "-n",
            "1:1M:+8M",
            "-c",
            "1:sys-a",
            "-n",
            "2:9M:+2M",
            "-c",
            "2:data",
            img.to_str().unwrap(),
        ],
    );
    sh(
        "dd",
        &[
            &format!("if={}", part.display()),
            &format!("of={}", img.display()),
            "bs=1M",
            "seek=1",
            "conv=notrunc",
            "status=none",
        ],
    );
    img
}

fn sha256(p: &Path) -> String {
    sh("sha256sum", &[p.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A scratch appliance: ESP with a grubenv (grub-editenv), slots as files, running system A.
fn appliance(dir: &Path) -> Layout {
    let esp = dir.join("esp");
    std::fs::create_dir_all(esp.join("grub")).unwrap();
    let env = esp.join("grub/grubenv");
    sh("grub-editenv", &[env.to_str().unwrap(), "create"]);
    sh(
        "grub-editenv",
        &[env.to_str().unwrap(), "set", "slot=A", "version_A=v1"],
    );
    let parts = dir.join("by-partlabel");
    std::fs::create_dir_all(&parts).unwrap();
    for p in ["sys-a", "sys-b"] {
        let f = std::fs::File::create(parts.join(p)).unwrap();
        f.set_len(8 << 20).unwrap();
    }
    std::fs::write(
        dir.join("cmdline"),
        "boot=live quiet pxelator.slot=A console=ttyS0\n",
    )
    .unwrap();
    Layout {
        esp,
        partitions: parts,
        cmdline: dir.join("cmdline"),
    }
}

fn grub_vars(l: &Layout) -> String {
    sh(
        "grub-editenv",
        &[l.esp.join("grub/grubenv").to_str().unwrap(), "list"],
    )
}

#[test]
fn update_writes_the_inactive_slot_and_sets_one_trial_boot_grub_can_read() {
    let d = tempfile::tempdir().unwrap();
    let l = appliance(d.path());
    let img = make_image(d.path(), "v2");
    // Compressed, as shipped; the checksum is the raw image's, from the manifest beside it.
    sh("zstd", &["-q", "-k", img.to_str().unwrap()]);
    let zst = d.path().join("pxelator-appliance-v2.img.zst");
    std::fs::write(
        d.path().join("manifest.txt"),
        format!(
            "pxelator v2\nsha256 {} pxelator-appliance-v2.img\n",
            sha256(&img)
        ),
    )
    .unwrap();
    let expected = appliance::expected_sha256(&zst, None).unwrap();
    let mut last = (0, 0);
    let u = appliance::update(&l, &zst, &expected, &mut |a, b| last = (a, b)).unwrap();
    assert_eq!(
        (u.slot.as_str(), u.version.as_str(), u.bytes),
        ("B", "v2", 8 << 20)
    );
    assert_eq!(last, (8 << 20, 8 << 20), "progress reached the end");
    // The slot now holds the image's sys-a, relabelled for slot B.
    assert_eq!(
        sh("e2label", &[l.slot_device(Slot::B).to_str().unwrap()]).trim(),
        "PXL-SYS-B"
    );
    assert!(sh(
        "debugfs",
        &[
            "-R",
            "cat /payload",
            l.slot_device(Slot::B).to_str().unwrap()
        ]
    )
    .starts_with("v2v2v2"));
    // What GRUB will read: B on trial, A still committed.
    let vars = grub_vars(&l);
    for want in ["slot=A", "try_slot=B", "version_B=v2", "version_A=v1"] {
        assert!(vars.lines().any(|l| l == want), "{want} not in:\n{vars}");
    }
    assert!(vars.lines().any(|l| l == "tried="), "{vars}");
    assert_eq!(
        std::fs::metadata(l.esp.join("grub/grubenv")).unwrap().len(),
        1024
    );
    // A runs and stays committed; B waits for its one trial boot.
    let s = appliance::status(&l, "v1").unwrap();
    assert_eq!(
        (
            s.running_slot.as_str(),
            s.committed_slot.as_str(),
            s.trial_slot.as_deref()
        ),
        ("A", "A", Some("B"))
    );
}

#[test]
fn a_damaged_or_foreign_image_leaves_the_other_slot_unbootable_and_the_running_one_committed() {
    let d = tempfile::tempdir().unwrap();
    let l = appliance(d.path());
    let img = make_image(d.path(), "v3");
    let good = sha256(&img);
    // One byte flipped inside the system partition after the manifest was made.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[(1 << 20) + 5 * 4096] ^= 0x40;
    std::fs::write(&img, &bytes).unwrap();
    let err = appliance::update(&l, &img, &good, &mut |_, _| {}).unwrap_err();
    assert!(
        err.contains("sha256") && err.contains("system B was left unbootable"),
        "{err}"
    );
    let vars = grub_vars(&l);
    assert!(
        vars.lines().any(|l| l == "slot=A") && vars.lines().any(|l| l == "try_slot="),
        "{vars}"
    );
    assert!(
        vars.lines().any(|l| l == "version_B="),
        "a half-written slot is not offered for rollback:\n{vars}"
    );
    assert!(appliance::rollback(&l)
        .unwrap_err()
        .contains("holds no system"));

    // Not a GPT disk at all.
    let junk = d.path().join("junk.img");
    std::fs::write(&junk, vec![7u8; 64 << 10]).unwrap();
    let err = appliance::update(&l, &junk, &good, &mut |_, _| {}).unwrap_err();
    assert!(err.contains("not a GPT disk image"), "{err}");

    // A table whose sys-a claims to start inside the table's own sectors (LBA 2): refused, not a
    // negative skip. Made with sgdisk, then that entry's first LBA rewritten and both CRC32s
    // recomputed (python3's zlib), so only the start is wrong.
    let inside = d.path().join("inside.img");
    sh("truncate", &["-s", "4M", inside.to_str().unwrap()]);
    sh(
        "sgdisk",
        &[
            "-a",
            "1",
            "-n",
            "1:34:+1M",
            "-c",
            "1:sys-a",
            inside.to_str().unwrap(),
        ],
    );
    let patch = "import sys,struct,zlib\n\
f=open(sys.argv[1],'r+b');d=bytearray(f.read(34*512))\n\
struct.pack_into('<Q',d,1024+32,2)\n\
struct.pack_into('<I',d,512+88,zlib.crc32(bytes(d[1024:1024+128*128])))\n\
struct.pack_into('<I',d,512+16,0);struct.pack_into('<I',d,512+16,zlib.crc32(bytes(d[512:512+92])))\n\
f.seek(0);f.write(d)\n";
    sh("python3", &["-c", patch, inside.to_str().unwrap()]);
    let err = appliance::update(&l, &inside, &good, &mut |_, _| {}).unwrap_err();
    assert!(err.contains("inside the partition table"), "{err}");

    // A system partition bigger than the slot.
    let small = l.slot_device(Slot::B);
    std::fs::File::options()
        .write(true)
        .open(&small)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let img2 = make_image(d.path(), "v4");
    let err = appliance::update(&l, &img2, &sha256(&img2), &mut |_, _| {}).unwrap_err();
    assert!(err.contains("has room for 4194304"), "{err}");
}

#[test]
fn trial_then_confirm_commits_and_a_failed_trial_is_rolled_back_by_grubs_rule() {
    let d = tempfile::tempdir().unwrap();
    let l = appliance(d.path());
    let img = make_image(d.path(), "v5");
    appliance::update(&l, &img, &sha256(&img), &mut |_, _| {}).unwrap();
    // What grub.cfg does on the next boot (its lines, applied with grub-editenv):
    let env = l.esp.join("grub/grubenv");
    sh("grub-editenv", &[env.to_str().unwrap(), "set", "tried=1"]);
    std::fs::write(&l.cmdline, "pxelator.slot=B\n").unwrap();
    let state = l.read_state().unwrap();
    let Confirm::Record(next, _) = slots::confirm(&state, Slot::B, Ok(())) else {
        panic!("{state:?}")
    };
    l.write_state(&next).unwrap();
    let vars = grub_vars(&l);
    assert!(
        vars.lines().any(|l| l == "slot=B") && vars.lines().any(|l| l == "try_slot="),
        "{vars}"
    );
    // Rollback to A (v1) from B.
    assert_eq!(appliance::rollback(&l).unwrap(), Slot::A);
    assert!(grub_vars(&l).lines().any(|l| l == "slot=A"));
}
