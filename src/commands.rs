//! The `host` and `history` operations the CLI and the web UI share: load the inventory,
//! decide the change with [`crate::inventory::edit`], commit it with [`crate::confrepo`].
//! Results are typed ([`Committed`], [`MachineRow`], [`confrepo::LogEntry`]); the CLI formats
//! them as text, the web UI as HTML.
use crate::config::Config;
use crate::confrepo::{self, Author, ConfRepo};
use crate::inventory::{self, edit, edit::HostSpec, Machine};
use anyhow::{bail, Context};
use std::fmt::Write;

/// The committed inventory (what the daemon serves), see [`confrepo::current_inventory`].
fn load(cfg: &Config) -> inventory::Inventory {
    confrepo::current_inventory(cfg).0
}

fn describe(spec: &HostSpec) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &spec.name {
        parts.push(format!("hostname {n}"));
    }
    if let Some(m) = spec.mac {
        parts.push(format!("mac {m}"));
    }
    if let Some(ip) = spec.ip {
        parts.push(format!("ip {ip}"));
    }
    if let Some(p) = &spec.profile {
        parts.push(format!("profile {p}"));
    }
    if let Some(a) = &spec.args {
        parts.push(format!("args {a:?}"));
    }
    for p in &spec.params {
        parts.push(format!("param {p}"));
    }
    for u in &spec.unset {
        parts.push(format!("unset param {u}"));
    }
    if spec.approve {
        parts.push("approved (registered by itself)".into());
    }
    parts.join(", ")
}

/// A change to the conf repo: its commit message, the commit (None: nothing changed), who.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Committed {
    pub message: String,
    pub commit: Option<String>,
    pub author: String,
}

impl std::fmt::Display for Committed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.commit {
            Some(c) => write!(
                f,
                "{}\ncommitted {} as {}",
                self.message,
                &c[..12.min(c.len())],
                self.author
            ),
            None => write!(f, "{}: nothing changed, no commit", self.message),
        }
    }
}

fn commit(
    cfg: &Config,
    author: &Author,
    changes: &[confrepo::Change],
    msg: &str,
) -> anyhow::Result<Committed> {
    let repo = ConfRepo::open_or_init(&cfg.conf_repo, author)?;
    let id = repo.commit(changes, author, msg)?;
    Ok(Committed {
        message: msg.to_string(),
        commit: id.map(|id| id.to_string()),
        author: format!("{} <{}>", author.name, author.email),
    })
}

pub fn host_add(cfg: &Config, spec: &HostSpec, author: &Author) -> anyhow::Result<Committed> {
    host_add_because(cfg, spec, author, "")
}

/// [`host_add`] with why in the commit message (e.g. "restored from kiosk1@3f2a9c1").
pub fn host_add_because(
    cfg: &Config,
    spec: &HostSpec,
    author: &Author,
    why: &str,
) -> anyhow::Result<Committed> {
    let change = edit::add(&load(cfg), &cfg.conf_repo, spec)?;
    let msg = format!(
        "Add host {}{}: {}",
        spec.name.as_deref().unwrap_or("?"),
        why,
        describe(&HostSpec {
            name: None,
            ..spec.clone()
        })
    );
    commit(cfg, author, &[change], &msg)
}

pub fn host_edit(
    cfg: &Config,
    who: &str,
    spec: &HostSpec,
    author: &Author,
) -> anyhow::Result<Committed> {
    let inv = load(cfg);
    let changes = edit::edit(&inv, &cfg.conf_repo, who, spec)?;
    if changes.is_empty() {
        bail!("nothing to change: give --name, --mac, --ip, --profile, --args, --param, --unset-param or --approve");
    }
    let name = edit::find(&inv, who)
        .and_then(|m| m.hostname.clone())
        .unwrap_or_else(|| who.to_owned());
    commit(
        cfg,
        author,
        &changes,
        &format!("Edit host {name}: {}", describe(spec)),
    )
}

pub fn host_rm(cfg: &Config, who: &str, author: &Author) -> anyhow::Result<Committed> {
    let (m, changes) = edit::remove(&load(cfg), &cfg.conf_repo, who)?;
    let msg = format!(
        "Remove host {} ({}{})",
        m.hostname.as_deref().unwrap_or("(no name)"),
        m.mac,
        m.ip.map(|ip| format!(", {ip}")).unwrap_or_default()
    );
    commit(cfg, author, &changes, &msg)
}

/// One machine as the host list shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MachineRow {
    pub hostname: Option<String>,
    pub mac: crate::core::mac::Mac,
    pub ip: Option<std::net::Ipv4Addr>,
    /// None: the machine boots with the profile named "default".
    pub profile: Option<String>,
    pub group: Option<String>,
    pub params: std::collections::BTreeMap<String, String>,
    /// The file under the conf repo it comes from.
    pub file: String,
    /// When it registered itself (unix seconds); None for machines written by hand.
    pub registered: Option<i64>,
}

impl MachineRow {
    /// How pages and links name it: its hostname, else its MAC.
    pub fn name(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.mac.to_string())
    }

    pub fn new(m: &Machine, root: &std::path::Path) -> MachineRow {
        MachineRow {
            hostname: m.hostname.clone(),
            mac: m.mac,
            ip: m.ip,
            profile: m.profile.clone(),
            group: m.params.get("group").cloned(),
            params: m.params.clone(),
            file: m
                .source
                .strip_prefix(root)
                .unwrap_or(&m.source)
                .display()
                .to_string(),
            registered: m.registered,
        }
    }
}

/// The machines of an inventory, by hostname then MAC.
pub fn machine_rows(inv: &inventory::Inventory, root: &std::path::Path) -> Vec<MachineRow> {
    let mut ms: Vec<&Machine> = inv.machines().iter().collect();
    ms.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.mac.0.cmp(&b.mac.0)));
    ms.into_iter().map(|m| MachineRow::new(m, root)).collect()
}

/// Every machine of the committed inventory, by hostname then MAC.
pub fn host_list(cfg: &Config) -> Vec<MachineRow> {
    machine_rows(&load(cfg), &cfg.conf_repo)
}

/// The machine a hostname, MAC or IP names.
pub fn host_get(cfg: &Config, who: &str) -> anyhow::Result<MachineRow> {
    let inv = load(cfg);
    let m = edit::find(&inv, who).ok_or_else(|| edit::EditError::NotFound(who.to_owned()))?;
    Ok(MachineRow::new(m, &cfg.conf_repo))
}

/// The host list as text (the CLI's `host list`).
pub fn host_table(rows: &[MachineRow]) -> String {
    let mut out = format!(
        "{:<20} {:<17} {:<15} {:<12} {}\n",
        "HOSTNAME", "MAC", "IP", "PROFILE", "FILE"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<17} {:<15} {:<12} {}",
            r.hostname.as_deref().unwrap_or("-"),
            r.mac,
            r.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            r.profile.as_deref().unwrap_or("(default)"),
            r.file
        );
    }
    out
}

pub fn host_show(cfg: &Config, who: &str) -> anyhow::Result<String> {
    let inv = load(cfg);
    let m = edit::find(&inv, who).ok_or_else(|| edit::EditError::NotFound(who.to_owned()))?;
    let mut out = format!("# {}\n", m.source.display());
    if m.source.is_dir() {
        for f in ["mac", "hostname", "profile", "args"] {
            if let Ok(v) = std::fs::read_to_string(m.source.join(f)) {
                let _ = writeln!(out, "{f}: {}", v.trim());
            }
        }
    } else {
        out.push_str(
            &std::fs::read_to_string(&m.source).with_context(|| m.source.display().to_string())?,
        );
    }
    Ok(out)
}

fn repo(cfg: &Config) -> anyhow::Result<ConfRepo> {
    ConfRepo::open(&cfg.conf_repo)?.with_context(|| {
        format!(
            "{} is not a git repository yet; the first `pxelator host add|edit|rm` creates it, or run `git init` there",
            cfg.conf_repo.display()
        )
    })
}

pub fn history_log(
    cfg: &Config,
    path: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<confrepo::LogEntry>> {
    let p = path.map(confrepo::repo_path).transpose()?;
    Ok(repo(cfg)?.log(p.as_deref(), limit)?)
}

/// A log as text (the CLI's `history log`).
pub fn log_text(log: &[confrepo::LogEntry]) -> String {
    let mut out = String::new();
    for e in log {
        let _ = writeln!(
            out,
            "{}  {}  {} <{}>\n    {}",
            &e.commit[..12],
            crate::clock::rfc3339(e.time.max(0) as u64),
            e.author,
            e.email,
            e.message.replace('\n', "\n    ")
        );
    }
    out
}

pub fn history_diff(
    cfg: &Config,
    path: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<String> {
    Ok(repo(cfg)?.diff(&confrepo::repo_path(path)?, from, to)?)
}

pub fn history_cat(cfg: &Config, spec: &str) -> anyhow::Result<Vec<u8>> {
    let (path, rev) = confrepo::split_at_rev(spec);
    Ok(repo(cfg)?.cat(&confrepo::repo_path(path)?, rev.unwrap_or("HEAD"))?)
}

/// Restores `spec` (PATH@REV or PATH@DATE) with a new commit; `commit` is None when the file
/// already has that content.
pub fn history_revert(cfg: &Config, spec: &str, author: &Author) -> anyhow::Result<Committed> {
    let (path, rev) = confrepo::split_at_rev(spec);
    let Some(rev) = rev else {
        bail!("{spec}: say which version to restore, e.g. {spec}@HEAD~1 or {spec}@2026-11-26");
    };
    let path = confrepo::repo_path(path)?;
    let id = repo(cfg)?.revert(&path, rev, author)?;
    Ok(Committed {
        message: format!("restored {path} as of {rev}"),
        commit: id.map(|id| id.to_string()),
        author: format!("{} <{}>", author.name, author.email),
    })
}

/// Makes `profile` boot `image` (`name` follows its current version, `name-vN` pins one), as
/// a commit by `author`. The web UI's images page and `pxelator image use` call this.
pub fn profile_use_image(
    cfg: &Config,
    profile: &str,
    image: &str,
    author: &Author,
) -> anyhow::Result<Committed> {
    let change = edit::profile_image(&load(cfg), &cfg.conf_repo, profile, image)?;
    commit(
        cfg,
        author,
        &[change],
        &format!("Profile {profile} boots image {image}"),
    )
}

/// Every stored image version with whether it is current and the profiles of `inv` that boot
/// it (the CLI passes the committed inventory, the web UI the one the daemon serves).
pub fn image_list(
    boot_dir: &std::path::Path,
    inv: &inventory::Inventory,
) -> Vec<(crate::image::ImageInfo, bool, Vec<String>)> {
    let stored = crate::image::list(boot_dir);
    let mut usage = crate::image::usage(
        &stored,
        inv.profiles()
            .filter_map(|p| p.image.as_deref().map(|i| (p.name.as_str(), i))),
    );
    stored
        .into_iter()
        .map(|(i, current)| {
            let users = usage.remove(&i.dir_name()).unwrap_or_default();
            (i, current, users)
        })
        .collect()
}

/// Removes `what` (`name-vN`, or every version of `name`) unless a profile boots one of those
/// versions (`force` removes anyway). Returns the removed directory names.
pub fn image_remove(cfg: &Config, what: &str, force: bool) -> anyhow::Result<Vec<String>> {
    let (name, version) = crate::image::split_version(what);
    if !force {
        let used: Vec<String> = image_list(&cfg.boot_dir, &load(cfg))
            .into_iter()
            .filter(|(i, _, users)| {
                i.name == name && version.is_none_or(|v| v == i.version) && !users.is_empty()
            })
            .map(|(i, _, users)| format!("{} (profile {})", i.dir_name(), users.join(", ")))
            .collect();
        if !used.is_empty() {
            bail!(
                "{what} is in use: {}; point those profiles at another version first (`pxelator image use PROFILE IMAGE`), or remove with --force",
                used.join("; ")
            );
        }
    }
    Ok(crate::image::remove(&cfg.boot_dir, what)?)
}

/// Sets (with None clears) the one-time boot override of the machine `who` names; the event
/// that records it. The web UI's "next boot" buttons and `pxelator host next-boot` call this.
pub fn host_next_boot(
    cfg: &Config,
    who: &str,
    next: Option<crate::core::boot::NextBoot>,
    user: &str,
) -> anyhow::Result<crate::core::event::Event> {
    let inv = load(cfg);
    let m = edit::find(&inv, who).ok_or_else(|| edit::EditError::NotFound(who.to_owned()))?;
    crate::nextboot::set(&cfg.state_dir, m.mac, next)?;
    Ok(crate::core::event::Event::NextBootSet {
        mac: m.mac,
        host: m.hostname.clone(),
        next: next.map(|n| n.name().to_string()),
        user: user.to_string(),
    })
}

/// Sets and removes defaults of a group (`groups/<group>.toml`) as a commit by `author`. The
/// web UI's groups page and `pxelator group edit` call this.
pub fn group_edit(
    cfg: &Config,
    group: &str,
    set: &[String],
    unset: &[String],
    author: &Author,
) -> anyhow::Result<Committed> {
    let change = edit::group(&cfg.conf_repo, group, set, unset)?;
    let mut what: Vec<String> = set.iter().map(|p| format!("param {p}")).collect();
    what.extend(unset.iter().map(|u| format!("unset param {u}")));
    commit(
        cfg,
        author,
        &[change],
        &format!("Edit group {group}: {}", what.join(", ")),
    )
}

/// `pxelator base build NAME`: the next version of the base `overlay/NAME.toml` defines (as
/// committed), made current; with the event that records it.
pub fn base_build(
    cfg: &Config,
    name: &str,
    report: crate::base::Report,
) -> anyhow::Result<(crate::base::BaseInfo, crate::core::event::Event)> {
    let def = crate::base::BaseDef::load(&cfg.conf_repo, name)?;
    let start = std::time::Instant::now();
    let info = crate::base::build(
        &cfg.state_dir,
        &cfg.boot_dir,
        &def,
        &cfg.nfsroot.mmdebstrap,
        report,
    )?;
    let event = crate::core::event::Event::BaseBuilt {
        name: info.name.clone(),
        version: info.version,
        recipe: info.recipe.clone(),
        packages: info.packages.len(),
        bytes: info.bytes,
        duration_ms: start.elapsed().as_millis() as u64,
    };
    Ok((info, event))
}

/// Every built base version with whether it is current and what uses it (profiles of `inv`,
/// hosts whose overlay lies over it).
pub fn base_list(
    cfg: &Config,
    inv: &inventory::Inventory,
) -> Vec<(crate::base::BaseInfo, bool, Vec<String>)> {
    let hosts = crate::nfsroot::hosts_with_overlays(&cfg.state_dir);
    crate::base::list(&cfg.state_dir)
        .into_iter()
        .map(|(i, current)| {
            let users = crate::base::users(&cfg.state_dir, inv, &i, &hosts);
            (i, current, users)
        })
        .collect()
}

/// Removes a base version (`name-vN`), refused while a profile boots it or a host's overlay
/// lies over it.
pub fn base_remove(cfg: &Config, what: &str) -> anyhow::Result<crate::core::event::Event> {
    let users = match crate::base::resolve(&cfg.state_dir, what) {
        Some(info) => crate::base::users(
            &cfg.state_dir,
            &load(cfg),
            &info,
            &crate::nfsroot::hosts_with_overlays(&cfg.state_dir),
        ),
        None => Vec::new(),
    };
    let info = crate::base::remove(&cfg.state_dir, &cfg.boot_dir, what, &users)?;
    Ok(crate::core::event::Event::BaseRemoved {
        name: info.name,
        version: info.version,
    })
}

/// What a host changed in its root: changes against the base its overlay lies over, those
/// under the base's ignored paths left out unless `all` (counted in `hidden`), and unified
/// diffs of changed text files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OverlayDiff {
    pub host: String,
    pub base: String,
    pub changes: Vec<crate::overlay::Change>,
    pub hidden: usize,
    /// Path → unified diff (changed text files only).
    pub diffs: Vec<(String, String)>,
}

/// A host's overlay directories and the base version it lies over.
fn host_overlay(
    cfg: &Config,
    host: &str,
) -> anyhow::Result<(crate::nfsroot::HostDirs, crate::base::BaseInfo)> {
    inventory::check_hostname(host).map_err(anyhow::Error::msg)?;
    let d = crate::nfsroot::host_dirs(&cfg.state_dir, host);
    let Some(base) = crate::nfsroot::host_base(&cfg.state_dir, host) else {
        bail!(
            "{host} has no overlay (under {}): it gets one when its profile boots an nfsroot and the daemon mounts it",
            d.dir.display()
        );
    };
    let info = crate::base::resolve(&cfg.state_dir, &base).with_context(|| {
        format!("{host}'s overlay lies over base {base}, which is not there any more")
    })?;
    Ok((d, info))
}

pub fn overlay_diff(cfg: &Config, host: &str, all: bool) -> anyhow::Result<OverlayDiff> {
    let (d, info) = host_overlay(cfg, host)?;
    let base = info.dir_name();
    let lower = crate::base::root_dir(&cfg.state_dir, &info);
    let every = crate::overlay::diff(&lower, &d.upper)?;
    let ignored = |p: &str| {
        info.ignore.iter().any(|ig| {
            let ig = ig.trim_start_matches('/');
            p == ig || p.strip_prefix(ig).is_some_and(|r| r.starts_with('/'))
        })
    };
    let total = every.len();
    let changes: Vec<crate::overlay::Change> = every
        .into_iter()
        .filter(|c| all || !ignored(&c.path))
        .collect();
    let diffs = changes
        .iter()
        .filter(|c| {
            c.kind == crate::overlay::ChangeKind::Changed
                && c.entry == crate::overlay::EntryKind::File
        })
        .filter_map(|c| {
            crate::overlay::text_diff(&lower, &d.upper, &c.path).map(|t| (c.path.clone(), t))
        })
        .collect();
    Ok(OverlayDiff {
        host: host.to_owned(),
        base,
        hidden: total - changes.len(),
        changes,
        diffs,
    })
}

/// `pxelator overlay promote HOST --paths … --to NAME`: a new version of NAME from the base
/// the host's overlay lies over plus the chosen paths of its overlay; hosts whose profile
/// follows NAME move onto it when they next boot.
pub fn overlay_promote(
    cfg: &Config,
    host: &str,
    paths: &[String],
    to: &str,
    author: &Author,
) -> anyhow::Result<Promoted> {
    let (d, from) = host_overlay(cfg, host)?;
    let info = crate::base::promote(
        &cfg.state_dir,
        &cfg.boot_dir,
        &from,
        to,
        &d.upper,
        host,
        paths,
    )?;
    let event = crate::core::event::Event::BasePromoted {
        name: info.name.clone(),
        version: info.version,
        from: from.dir_name(),
        host: host.to_owned(),
        paths: paths.to_vec(),
    };
    // In the conf repo too, when `to` has a definition there: its next build lays them in.
    let def = format!("overlay/{to}.toml");
    let (committed, not_recorded) = if confrepo::read_current(&cfg.conf_repo, &def)?.is_some() {
        let (changes, skipped) = promoted_changes(cfg, &d.upper, to, paths);
        let msg = format!(
            "Promote {host}:{} into base {to} ({})",
            paths.join(","),
            info.dir_name()
        );
        (Some(commit(cfg, author, &changes, &msg)?), skipped)
    } else {
        (None, Vec::new())
    };
    Ok(Promoted {
        info,
        event,
        committed,
        not_recorded,
    })
}

/// What `overlay promote` made: the base version, its event, the commit that records the
/// promoted files under `overlay/<to>/` (None when `to` has no definition in the conf repo),
/// and what that commit could not hold (links, special or large files).
pub struct Promoted {
    pub info: crate::base::BaseInfo,
    pub event: crate::core::event::Event,
    pub committed: Option<Committed>,
    pub not_recorded: Vec<String>,
}

/// What `overlay promote` records in the conf repo: the promoted regular files (at most
/// 1 MiB each, 1 000 in all) as `overlay/<to>/<path>`, so the next `base build <to>` lays them
/// in too; a deletion removes a file the definition laid in. Links, special files and larger
/// files stay only in the built version (named in the returned list).
fn promoted_changes(
    cfg: &Config,
    upper: &std::path::Path,
    to: &str,
    paths: &[String],
) -> (Vec<confrepo::Change>, Vec<String>) {
    const MAX_FILE: u64 = 1 << 20;
    const MAX_FILES: usize = 1000;
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    let mut stack: Vec<String> = paths
        .iter()
        .map(|p| p.trim_start_matches('/').to_owned())
        .collect();
    while let Some(rel) = stack.pop() {
        if changes.len() >= MAX_FILES {
            skipped.push(format!("/{rel} (more than {MAX_FILES} files)"));
            continue;
        }
        let at = upper.join(&rel);
        let Ok(m) = std::fs::symlink_metadata(&at) else {
            continue;
        };
        let repo_path = format!("overlay/{to}/{rel}");
        if m.is_dir() {
            for e in std::fs::read_dir(&at).into_iter().flatten().flatten() {
                stack.push(format!("{rel}/{}", e.file_name().to_string_lossy()));
            }
        } else if crate::overlay::is_whiteout(&m) {
            if confrepo::read_current(&cfg.conf_repo, &repo_path)
                .ok()
                .flatten()
                .is_some()
            {
                changes.push(confrepo::Change::Delete(repo_path));
            }
        } else if m.is_file() && m.len() <= MAX_FILE {
            use std::io::Read;
            let mut data = Vec::new();
            match crate::overlay::open_beneath(upper, &rel)
                .and_then(|f| f.take(MAX_FILE).read_to_end(&mut data))
            {
                Ok(_) => changes.push(confrepo::Change::Write(repo_path, data)),
                Err(_) => skipped.push(format!("/{rel}")),
            }
        } else {
            skipped.push(format!("/{rel}"));
        }
    }
    (changes, skipped)
}

/// Pulls hosts' files (`backup run`, and the daemon's schedule): [`crate::backup::run`], then,
/// when a pull committed and the appliance has a pool, the conf repo's offsite copy
/// ([`crate::pool::store_conf_bundle`]); a failed copy is a `pool_problem` event, the pulls
/// stand.
pub fn backup_run(
    cfg: &Config,
    plans: &crate::backup::Plans,
    hosts: &[String],
    author: &crate::confrepo::Author,
    emit: &dyn Fn(crate::core::event::Event),
) -> Result<Vec<crate::backup::HostResult>, crate::backup::BackupError> {
    let results = crate::backup::run(cfg, plans, hosts, author, emit)?;
    if results.iter().any(|r| r.commit.is_some()) {
        match crate::pool::store_conf_bundle(cfg) {
            Ok(Some(e)) => emit(e),
            Ok(None) => {}
            Err(e) => emit(crate::core::event::Event::PoolProblem {
                message: format!("copying the conf repo into the pool after backups: {e}"),
            }),
        }
    }
    Ok(results)
}

/// `pxelator overlay snapshot HOST`: the host's overlay as a tar; the file and its event.
pub fn overlay_snapshot(
    cfg: &Config,
    host: &str,
) -> anyhow::Result<(std::path::PathBuf, crate::core::event::Event)> {
    let base = crate::nfsroot::host_base(&cfg.state_dir, host).unwrap_or_default();
    let file = crate::nfsroot::snapshot(&cfg.state_dir, host).map_err(anyhow::Error::msg)?;
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    // An offsite copy: the pool spans the kiosks' disks as well as the appliance's.
    let pool_copy =
        crate::pool::store_copy(cfg, "overlay-snapshots", &file).with_context(|| {
            format!(
                "{} was written, but not copied into the pool",
                file.display()
            )
        })?;
    let event = crate::core::event::Event::OverlaySnapshot {
        host: host.to_owned(),
        base,
        file: file.clone(),
        bytes,
        pool_copy,
    };
    Ok((file, event))
}

/// `pxelator overlay reset HOST`: asked now, done when the host next boots.
pub fn overlay_reset(cfg: &Config, host: &str) -> anyhow::Result<crate::core::event::Event> {
    crate::nfsroot::request_reset(&cfg.state_dir, host).map_err(anyhow::Error::msg)?;
    Ok(crate::core::event::Event::OverlayResetRequested {
        host: host.to_owned(),
    })
}

/// The DHCP server's leases as the lease journal (`state_dir/leases.jsonl`) has them, named
/// from the inventory: `pxelator leases`. (The running daemon's `GET /api/leases` reads the
/// same leases from memory.) Read only; an absent journal is no leases.
pub fn leases(cfg: &Config) -> anyhow::Result<Vec<crate::core::leases::LeaseRow>> {
    let path = cfg.state_dir.join("leases.jsonl");
    let leases = match std::fs::File::open(&path) {
        Ok(f) => {
            crate::services::journal::replay(std::io::BufReader::new(f))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .0
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => bail!(
            "{}: {e} (is state_dir right in the config?)",
            path.display()
        ),
    };
    Ok(crate::core::leases::rows(
        &leases,
        &load(cfg),
        crate::clock::unix_now(),
    ))
}

/// What to capture: `pxelator capture` and `POST /api/capture` ask with this.
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    /// Default: the first of dhcp.interfaces.
    pub iface: Option<String>,
    /// A machine of the inventory (hostname, MAC or IP): its MAC and address.
    pub host: Option<String>,
    pub mac: Option<crate::core::mac::Mac>,
    pub ip: Option<std::net::Ipv4Addr>,
    pub secs: Option<u64>,
    pub packets: Option<u64>,
    pub max_mb: Option<u64>,
}

/// Takes a capture into `out` (a pcap); the summary and the `capture_taken` event
/// (`file`: where the pcap went, for the event).
pub fn capture(
    cfg: &Config,
    req: &CaptureRequest,
    out: impl std::io::Write,
    user: &str,
    file: &str,
) -> anyhow::Result<(crate::capture::Summary, crate::core::event::Event)> {
    let mut filter = crate::core::capture::Filter {
        mac: req.mac,
        ip: req.ip,
    };
    if let Some(who) = &req.host {
        let inv = load(cfg);
        let m = edit::find(&inv, who).ok_or_else(|| edit::EditError::NotFound(who.clone()))?;
        filter.mac = Some(m.mac);
        filter.ip = m.ip.or(filter.ip);
    }
    let limits = crate::core::capture::Limits::new(req.secs, req.packets, req.max_mb)
        .map_err(anyhow::Error::msg)?;
    let iface = match &req.iface {
        Some(i) => i.clone(),
        None => cfg.dhcp.interfaces.first().cloned().ok_or_else(|| {
            anyhow::anyhow!("no dhcp.interfaces in the config to default to: give --iface")
        })?,
    };
    let summary = crate::capture::capture(&iface, &filter, &limits, out)?;
    let event = crate::core::event::Event::CaptureTaken {
        iface,
        filter: filter.to_string(),
        packets: summary.packets,
        bytes: summary.bytes,
        secs: (summary.secs * 1000.0).round() / 1000.0,
        stopped_by: summary.stopped_by.into(),
        user: user.into(),
        file: file.into(),
    };
    Ok((summary, event))
}
