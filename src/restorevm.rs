//! `pxelator restore-vm HOST@REV --as NEWNAME --ip IP`: a machine booted from a backup. Its
//! root is a base (the one an nfsroot profile names) with, as its overlay, the host files the
//! conf repo holds for HOST at that revision (`hosts/HOST/…`, modes and owners from
//! `hosts/HOST.meta`); what names the old machine is rewritten so the copy never clashes with
//! it: `/etc/hostname`, the old name and address in text files under `/etc`, and the
//! machine-id (emptied: the copy makes its own). NEWNAME is registered (a commit) with a MAC
//! of its own; the daemon mounts and exports its root like any other.
use crate::config::Config;
use crate::confrepo::{Author, ConfRepo};
use crate::core::mac::Mac;
use crate::inventory::{self, BootKind};
use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What was restored, for the CLI to print and the event to record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RestoredVm {
    pub host: String,
    /// The commit the files came from (short id).
    pub rev: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub profile: String,
    pub base: String,
    pub files: usize,
    /// Files whose content was rewritten (old name or address → new).
    pub rewritten: Vec<String>,
    pub commit: Option<String>,
    /// With `--pool`: the RBD image (`pxelator/vm-NAME`) holding its root filesystem, and the
    /// base's kernel and initramfs it boots with.
    pub rbd: Option<RbdDisk>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RbdDisk {
    pub image: String,
    pub conf: std::path::PathBuf,
    pub kernel: std::path::PathBuf,
    pub initrd: std::path::PathBuf,
    pub bytes: u64,
}

/// Replaces `old` by `new` where it stands as a whole name or address: not inside a longer
/// word (`ws1` is not touched in `ws10`, `10.0.0.5` not in `10.0.0.50`).
pub fn replace_word(text: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        return text.to_owned();
    }
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(old) {
        let before = rest[..i].chars().next_back().or(prev);
        let after_str = &rest[i + old.len()..];
        let after = after_str.chars().next();
        // A '.' and a digit continue an address; a '.' and a letter start the domain of a
        // name (`ws1.lab.test` is ws1's).
        let continues = match after {
            Some('.') => after_str[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit()),
            Some(c) => part(c),
            None => false,
        };
        let starts_inside = before.is_some_and(|c| part(c) || c == '.');
        out.push_str(&rest[..i]);
        if starts_inside || continues {
            out.push_str(old);
        } else {
            out.push_str(new);
        }
        prev = old.chars().next_back();
        rest = after_str;
    }
    out.push_str(rest);
    out
}

/// A MAC for a restored machine: locally administered QEMU range 52:54:00, three bytes from
/// the name, moved on while another machine has it.
fn new_mac(name: &str, inv: &inventory::Inventory) -> Mac {
    use sha2::Digest;
    let h = sha2::Sha256::digest(name.as_bytes());
    let mut n = u32::from_be_bytes([0, h[0], h[1], h[2]]);
    loop {
        let b = n.to_be_bytes();
        let mac = Mac([0x52, 0x54, 0x00, b[1], b[2], b[3]]);
        if inv.by_mac(&mac).is_none() {
            return mac;
        }
        n = n.wrapping_add(1) & 0xff_ffff;
    }
}

/// Creates the directories of `rel`'s parents under `upper` as the base has them (mode,
/// owner), so the copy shows no change to them; 0755 root where the base has none.
fn make_parents(upper: &Path, lower: &Path, rel: &str) -> anyhow::Result<()> {
    let comps: Vec<&str> = rel.split('/').collect();
    let (mut up, mut low) = (upper.to_path_buf(), lower.to_path_buf());
    for c in &comps[..comps.len() - 1] {
        up.push(c);
        low.push(c);
        if std::fs::symlink_metadata(&up).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        match std::fs::symlink_metadata(&low) {
            Ok(m) if m.is_dir() => crate::base::copy_entry(&low, &up, false)?,
            Ok(_) => bail!(
                "/{rel}: {} is not a directory in the base (a link?); the backup cannot be laid over it",
                low.display()
            ),
            Err(_) => {
                std::fs::create_dir(&up).with_context(|| format!("creating {}", up.display()))?;
                std::os::unix::fs::lchown(&up, Some(0), Some(0))?;
                std::fs::set_permissions(&up, std::fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    Ok(())
}

/// Restores `spec` (`HOST@REV`, REV a commit or a date; HEAD without one) as a new machine.
pub fn restore_vm(
    cfg: &Config,
    spec: &str,
    name: &str,
    ip: Ipv4Addr,
    profile: Option<&str>,
    pool: bool,
    author: &Author,
) -> anyhow::Result<RestoredVm> {
    let (host, rev) = crate::confrepo::split_at_rev(spec);
    let rev = rev.unwrap_or("HEAD");
    inventory::check_hostname(host).map_err(anyhow::Error::msg)?;
    inventory::check_hostname(name).map_err(anyhow::Error::msg)?;
    let repo = ConfRepo::open(&cfg.conf_repo)?.with_context(|| {
        format!(
            "{} is not a git repository: no host files were ever pulled into it",
            cfg.conf_repo.display()
        )
    })?;
    let id = repo.resolve(rev)?;
    let short = crate::confrepo::short(id);
    let dir = format!("hosts/{host}");
    let files = repo.files_with_modes(id, &dir)?;
    if files.is_empty() {
        bail!("the conf repo has no files of {host} at {rev} ({short}); `pxelator history log {host}:/` shows its pulls");
    }
    let meta = String::from_utf8_lossy(
        &repo
            .cat(&format!("hosts/{host}.meta"), &short)
            .unwrap_or_default(),
    )
    .into_owned();
    let inv = crate::confrepo::current_inventory(cfg).0;
    if inv
        .machines()
        .iter()
        .any(|m| m.hostname.as_deref() == Some(name))
    {
        bail!("a machine named {name} exists already; restore as another name");
    }
    if let Some(m) = inv.by_ip(&ip) {
        bail!(
            "{ip} is {}'s address ({}); give the restored machine a free one",
            m.hostname.as_deref().unwrap_or("another machine"),
            m.source.display()
        );
    }
    let profile = match profile {
        Some(p) => inv
            .profile(p)
            .filter(|p| p.boot == BootKind::Nfsroot)
            .with_context(|| {
                format!("profile {p} is not an nfsroot profile (boot = \"nfsroot\", base = …)")
            })?,
        None => {
            let nfs: Vec<_> = inv
                .profiles()
                .filter(|p| p.boot == BootKind::Nfsroot)
                .collect();
            match nfs.as_slice() {
                [one] => *one,
                [] => bail!("no nfsroot profile to boot the restored machine with: add one (boot = \"nfsroot\", base = \"NAME\")"),
                _ => bail!(
                    "several nfsroot profiles ({}): choose one with --profile",
                    nfs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let base_spec = profile.base.clone().unwrap_or_default();
    let base = crate::base::resolve(&cfg.state_dir, &base_spec).with_context(|| {
        format!(
            "base {base_spec:?} of profile {} is not built (`pxelator base build`)",
            profile.name
        )
    })?;
    let lower = crate::base::root_dir(&cfg.state_dir, &base);
    let d = crate::nfsroot::host_dirs(&cfg.state_dir, name);
    if d.dir.exists() {
        bail!(
            "{} exists: {name} had a network root before; restore as another name or remove it",
            d.dir.display()
        );
    }
    let old = inv
        .machines()
        .iter()
        .find(|m| m.hostname.as_deref() == Some(host));
    let old_ip = old.and_then(|m| m.ip).map(|i| i.to_string());
    let mac = new_mac(name, &inv);
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&d.upper)
        .with_context(|| format!("creating {}", d.upper.display()))?;
    let _ = std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o700));
    let mut rewritten = Vec::new();
    let mut lay = || -> anyhow::Result<usize> {
        let mut n = 0;
        for f in &files {
            let rel = &f.path[dir.len() + 1..];
            if !crate::base::valid_root_path(&format!("/{rel}")) {
                bail!("{}: not a plain path", f.path);
            }
            if rel == "var/lib/dbus/machine-id" {
                continue;
            }
            make_parents(&d.upper, &lower, rel)?;
            let at = d.upper.join(rel);
            let data = repo.blob(f.id)?;
            if f.symlink {
                std::os::unix::fs::symlink(
                    std::ffi::OsStr::new(&*String::from_utf8_lossy(&data)),
                    &at,
                )
                .with_context(|| format!("linking {}", at.display()))?;
                n += 1;
                continue;
            }
            let data = match rel {
                "etc/hostname" => format!("{name}\n").into_bytes(),
                // Empty: the copy makes its own at its first boot.
                "etc/machine-id" => Vec::new(),
                _ if rel.starts_with("etc/")
                    && std::str::from_utf8(&data).is_ok()
                    && !data.contains(&0) =>
                {
                    let t = std::str::from_utf8(&data).unwrap_or_default();
                    let mut new = replace_word(t, host, name);
                    if let Some(o) = &old_ip {
                        new = replace_word(&new, o, &ip.to_string());
                    }
                    if new != t {
                        rewritten.push(format!("/{rel}"));
                    }
                    new.into_bytes()
                }
                _ => data,
            };
            std::fs::write(&at, &data).with_context(|| format!("writing {}", at.display()))?;
            let (mode, uid, gid) = crate::backup::mode_and_owner(&meta, &format!("/{rel}"))
                .unwrap_or((if f.executable { 0o755 } else { 0o644 }, 0, 0));
            std::os::unix::fs::lchown(&at, Some(uid as u32), Some(gid as u32))?;
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))?;
            n += 1;
        }
        Ok(n)
    };
    let laid = match lay() {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&d.dir);
            return Err(e);
        }
    };
    // With the pool: the base and the laid files become one filesystem on an RBD image, the
    // machine's own disk; the upper directory was only the way there.
    let rbd = if pool {
        let made = rbd_disk(cfg, &base, &lower, &d.upper, name);
        let _ = std::fs::remove_dir_all(&d.dir);
        Some(made?)
    } else {
        None
    };
    let spec = inventory::edit::HostSpec {
        name: Some(name.to_owned()),
        mac: Some(mac),
        ip: Some(ip),
        // A machine with its root on RBD is started with its disk, not netbooted.
        profile: (!pool).then(|| profile.name.clone()),
        params: rbd
            .iter()
            .map(|r| format!("rbd_disk={}", r.image))
            .collect(),
        ..Default::default()
    };
    let why = format!(
        " (restored from {host}@{short} over base {})",
        base.dir_name()
    );
    let committed = match crate::commands::host_add_because(cfg, &spec, author, &why) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&d.dir);
            return Err(e.context(format!("registering {name}")));
        }
    };
    Ok(RestoredVm {
        host: host.to_owned(),
        rev: short,
        name: name.to_owned(),
        ip,
        mac,
        profile: profile.name.clone(),
        base: base.dir_name(),
        files: laid,
        rewritten,
        commit: committed.commit.clone(),
        rbd,
    })
}

/// The restored root as an RBD image `pxelator/vm-NAME`: the base with `upper` laid over it
/// (a read-only overlay mount: nothing is copied), written into an ext4 filesystem image by
/// `mkfs.ext4 -d`, imported with `rbd import`.
fn rbd_disk(
    cfg: &Config,
    base: &crate::base::BaseInfo,
    lower: &Path,
    upper: &Path,
    name: &str,
) -> anyhow::Result<RbdDisk> {
    let pool = crate::pool::require(cfg)?;
    let image = format!("{}/vm-{name}", crate::core::pool::RBD_POOL);
    let work = cfg.state_dir.join("restore-vm").join(name);
    let _ = std::fs::remove_dir_all(&work);
    let merged = work.join("merged");
    std::fs::create_dir_all(&merged).with_context(|| format!("creating {}", merged.display()))?;
    for p in [upper, lower] {
        if p.to_str().is_none_or(|s| s.contains([',', ':', '\\'])) {
            bail!(
                "{}: an overlay mount cannot name a path with ',', ':' or '\\'; choose a plainer state_dir",
                p.display()
            );
        }
    }
    let opts = format!("lowerdir={}:{}", upper.display(), lower.display());
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .with_context(|| format!("mounting the restored root at {}", merged.display()))?;
    let file = work.join("root.ext4");
    // The base's size, half again for growth, and room for the filesystem's own tables.
    let bytes = (base.bytes + base.bytes / 2 + (256 << 20)).next_multiple_of(1 << 20);
    // Paths under state_dir, checked above to be plain UTF-8.
    let made = (|| -> Result<String, crate::pool::PoolError> {
        let size = format!("{}k", bytes >> 10);
        let (merged_s, file_s) = (merged.to_string_lossy(), file.to_string_lossy());
        crate::pool::tool(
            "mkfs.ext4",
            &["-q", "-F", "-L", "root", "-d", &merged_s, &file_s, &size],
        )?;
        crate::pool::tool(
            "rbd",
            &[
                "-c",
                &pool.paths.conf().to_string_lossy(),
                "import",
                &file_s,
                &image,
            ],
        )
    })();
    let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
    made.with_context(|| format!("making {name}'s disk {image}"))?;
    let boot = crate::base::boot_dir_of(&cfg.boot_dir, base);
    Ok(RbdDisk {
        image,
        conf: pool.paths.conf(),
        kernel: boot.join("vmlinuz"),
        initrd: boot.join("initrd.img"),
        bytes,
    })
}

/// A QEMU command line for the restored machine on `bridge`: netbooted, or with `--pool` its
/// disk on RBD (QEMU's rbd driver, as the pool's admin) and the base's kernel.
pub fn qemu_command(r: &RestoredVm, bridge: &str) -> String {
    let net = format!(
        "-netdev bridge,id=n0,br={bridge} -device e1000,netdev=n0,mac={}",
        r.mac
    );
    match &r.rbd {
        None => format!(
            "qemu-system-x86_64 -m 1024 -nodefaults -nographic -serial mon:stdio -boot n {net}"
        ),
        Some(d) => format!(
            "qemu-system-x86_64 -m 1024 -nodefaults -nographic -serial mon:stdio -kernel {} -initrd {} -append 'root=/dev/vda rw boot=local console=ttyS0' -drive format=raw,if=virtio,file=rbd:{}:conf={}:id=admin {net}",
            d.kernel.display(),
            d.initrd.display(),
            d.image,
            d.conf.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_replaced_only_whole() {
        let t = "127.0.1.1 ws1 ws1.lab.test\n10.0.0.5 ws1\n10.0.0.50 ws10 my-ws1 ws1_x\naddress 10.0.0.5\n";
        let a = replace_word(t, "ws1", "ws9");
        assert_eq!(
            a,
            "127.0.1.1 ws9 ws9.lab.test\n10.0.0.5 ws9\n10.0.0.50 ws10 my-ws1 ws1_x\naddress 10.0.0.5\n"
        );
        let b = replace_word(&a, "10.0.0.5", "10.0.0.9");
        assert!(
            b.contains("10.0.0.9 ws9\n") && b.contains("10.0.0.50 ws10"),
            "{b}"
        );
        assert!(b.ends_with("address 10.0.0.9\n"));
        assert_eq!(replace_word("x", "", "y"), "x");
    }
}
