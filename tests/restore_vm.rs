//! Issue 13: `restore-vm` through the real CLI, without QEMU (scripts/test-nfsroot boots one).
//! A conf repo made with the stock git CLI holds two revisions of a host's pulled files (as
//! `backup run` lays them out: `hosts/<host>/…` and `hosts/<host>.meta`); a base version is on
//! disk. Restoring the first revision as a new machine lays exactly those files into its
//! overlay with their modes and owners, rewrites its identity (hostname, the old name and
//! address in /etc, machine-id) and registers it in one commit by the invoking user. Refused,
//! leaving nothing: an existing name, a taken address, a name that is no host name.
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

mod common;
use common::{git, px_as, text};

fn px(cfg: &Path, args: &[&str]) -> Output {
    px_as(cfg, "restore-admin", args)
}

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn restore_vm_lays_a_past_revision_over_a_base_as_a_new_machine() {
    let t = tempfile::tempdir().unwrap();
    let (repo, state) = (t.path().join("conf"), t.path().join("state"));
    std::fs::create_dir_all(t.path().join("boot")).unwrap();
    // A base version on disk as `base build` leaves it (only what restore-vm reads).
    let broot = state.join("bases/deb-v1/root");
    std::fs::create_dir_all(broot.join("etc")).unwrap();
    std::fs::create_dir_all(broot.join("srv")).unwrap();
    std::fs::set_permissions(broot.join("srv"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(
        state.join("bases/deb-v1/base.toml"),
        "name = \"deb\"\nversion = 1\nbuilt = \"2026-12-01T00:00:00Z\"\nsuite = \"bookworm\"\npackages = []\nrecipe = \"r\"\nkernel = \"6.1\"\nfiles = 1\nbytes = 0\nignore = []\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("deb-v1", state.join("bases/deb")).unwrap();
    write(
        &repo,
        "profiles/nfs.toml",
        "boot = \"nfsroot\"\nbase = \"deb\"\n",
    );
    write(
        &repo,
        "machines/oldhost.toml",
        "mac = \"52:54:00:00:00:50\"\nip = \"10.77.1.50\"\nhostname = \"oldhost\"\n",
    );
    write(
        &repo,
        "machines/other.toml",
        "mac = \"52:54:00:00:00:51\"\nip = \"10.77.1.51\"\nhostname = \"other\"\n",
    );
    write(&repo, "hosts/oldhost/etc/hostname", "oldhost\n");
    write(
        &repo,
        "hosts/oldhost/etc/hosts",
        "127.0.0.1 localhost\n10.77.1.50 oldhost oldhost.lab.test\n10.77.1.5 oldhost2\n",
    );
    write(
        &repo,
        "hosts/oldhost/etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    write(&repo, "hosts/oldhost/srv/app/config", "revision one\n");
    write(
        &repo,
        "hosts/oldhost.meta",
        "/etc/hostname\tf\t644\t0:0\t0\t\n/etc/hosts\tf\t644\t0:0\t0\t\n/etc/machine-id\tf\t444\t0:0\t0\t\n/srv/app/config\tf\t640\t0:33\t0\t\n",
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "Pull oldhost"]);
    let rev1 = git(&repo, &["rev-parse", "--short", "HEAD"])
        .trim()
        .to_owned();
    write(&repo, "hosts/oldhost/srv/app/config", "revision two\n");
    git(&repo, &["commit", "-q", "-am", "Pull oldhost again"]);
    let cfg = t.path().join("pxelator.toml");
    std::fs::write(
        &cfg,
        format!(
            "conf_repo = \"{0}/conf\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\nserver_ip = \"10.77.1.1\"\n[dhcp]\nmode = \"off\"\n",
            t.path().display()
        ),
    )
    .unwrap();

    // Refused, leaving nothing: a name or address already taken, a name that is no name.
    for (args, says) in [
        (
            vec!["--as", "other", "--ip", "10.77.1.60"],
            "exists already",
        ),
        (
            vec!["--as", "copy", "--ip", "10.77.1.51"],
            "is other's address",
        ),
        (
            vec!["--as", "../../etc", "--ip", "10.77.1.60"],
            "not a valid host name",
        ),
    ] {
        let spec = format!("oldhost@{rev1}");
        let mut a = vec!["restore-vm", spec.as_str()];
        a.extend(args);
        let o = px(&cfg, &a);
        assert!(!o.status.success(), "{a:?} was accepted");
        assert!(text(&o).contains(says), "{a:?}: {}", text(&o));
    }
    assert!(
        !state.join("overlays").exists()
            || std::fs::read_dir(state.join("overlays"))
                .unwrap()
                .next()
                .is_none()
    );

    let o = px(
        &cfg,
        &[
            "restore-vm",
            &format!("oldhost@{rev1}"),
            "--as",
            "copy",
            "--ip",
            "10.77.1.60",
            "--qemu",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("oldhost as of {rev1}")), "{out}");
    assert!(
        out.contains(": 4 files over base deb-v1 as copy (10.77.1.60"),
        "{out}"
    );
    assert!(
        out.contains("qemu-system-x86_64 ") && out.contains("br=br0"),
        "{out}"
    );
    let up = state.join("overlays/copy/upper");
    let read = |rel: &str| std::fs::read_to_string(up.join(rel)).unwrap();
    assert_eq!(read("etc/hostname"), "copy\n");
    assert_eq!(
        read("etc/hosts"),
        "127.0.0.1 localhost\n10.77.1.60 copy copy.lab.test\n10.77.1.5 oldhost2\n",
        "the old name and address, and only they, are the new ones"
    );
    assert_eq!(read("etc/machine-id"), "", "a new machine makes its own id");
    assert_eq!(
        read("srv/app/config"),
        "revision one\n",
        "the file as of that revision"
    );
    let m = std::fs::metadata(up.join("srv/app/config")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 33));
    // A parent the base has keeps the base's mode, so it is no change of the copy's.
    let srv = std::fs::metadata(up.join("srv")).unwrap();
    assert_eq!(srv.mode() & 0o7777, 0o750);
    // Registered in one commit by the one who ran it, saying where it came from.
    let log = git(&repo, &["log", "-n1", "--format=%an|%s"]);
    assert!(
        log.starts_with("restore-admin|Add host copy (restored from oldhost@"),
        "{log}"
    );
    let machine = std::fs::read_to_string(repo.join("machines/copy.toml")).unwrap();
    assert!(
        machine.contains("ip = \"10.77.1.60\"") && machine.contains("profile = \"nfs\""),
        "{machine}"
    );
    assert!(
        !machine.contains("52:54:00:00:00:50"),
        "a MAC of its own: {machine}"
    );
    // Again with the same name: refused, the first copy untouched.
    let o = px(
        &cfg,
        &[
            "restore-vm",
            "oldhost",
            "--as",
            "copy",
            "--ip",
            "10.77.1.61",
        ],
    );
    assert!(!o.status.success());
    assert_eq!(read("srv/app/config"), "revision one\n");
}
