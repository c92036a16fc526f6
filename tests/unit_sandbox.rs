//! Issue 10: the shipped systemd units are sandboxed. `systemd-analyze security --offline`
//! rates a unit file without systemd running; the exposure must stay at or below 4.0 (the
//! daemon's was 9.6 "UNSAFE" with no sandboxing). Issue 14 added the storage pool's units
//! (the appliance's Ceph mon, mgr and OSD), rated the same way.
use std::process::Command;

/// The exposure level systemd-analyze gives the unit file at `path` (relative to the crate).
fn exposure(path: &str) -> f64 {
    let unit = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let name = path.rsplit('/').next().unwrap();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", &unit])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("systemd-analyze runs (scripts/setup installs systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split(&format!("Overall exposure level for {name}: "))
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level for {name} in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security exposure of {name}: {level}");
    level
}

#[test]
fn shipped_unit_exposure_is_at_most_4() {
    let level = exposure("image/pxelator.service");
    assert!(level <= 4.0, "exposure {level} > 4.0");
}

/// systemd implements RestrictSUIDSGID= with a seccomp rule that answers ENOSYS for openat2,
/// which /files and the network roots open files with (RESOLVE_BENEATH): the appliance's
/// daemon then served 404 for every boot file (test-appliance, session 10).
#[test]
fn shipped_unit_leaves_openat2_usable() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("image/pxelator.service"),
    )
    .unwrap();
    assert!(
        !unit
            .lines()
            .any(|l| l.trim_start().starts_with("RestrictSUIDSGID=") && !l.contains("=no")),
        "RestrictSUIDSGID= would make openat2 fail with ENOSYS"
    );
}

#[test]
fn pool_units_exposure_is_at_most_4() {
    for kind in ["mon", "mgr", "osd"] {
        let level = exposure(&format!(
            "image/appliance/root/etc/systemd/system/pxelator-ceph-{kind}.service"
        ));
        assert!(level <= 4.0, "pxelator-ceph-{kind}: exposure {level} > 4.0");
    }
}

/// The units start what `pxelator pool daemon KIND` runs, and only when it says so.
#[test]
fn pool_units_run_pxelator_pool_daemon() {
    for kind in ["mon", "mgr", "osd"] {
        let text = std::fs::read_to_string(format!(
            "{}/image/appliance/root/etc/systemd/system/pxelator-ceph-{kind}.service",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert!(text.contains(&format!(
            "\nExecCondition=/usr/local/bin/pxelator pool daemon {kind} --check "
        )));
        assert!(text.contains(&format!(
            "\nExecStart=/usr/local/bin/pxelator pool daemon {kind} --config "
        )));
    }
}
