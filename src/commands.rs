//! The `host` and `history` CLI verbs: load the inventory, decide the change with
//! [`crate::inventory::edit`], commit it with [`crate::confrepo`]. Output is returned as text
//! so the CLI only prints it.
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
    parts.join(", ")
}

fn commit(
    cfg: &Config,
    author: &Author,
    changes: &[confrepo::Change],
    msg: &str,
) -> anyhow::Result<String> {
    let repo = ConfRepo::open_or_init(&cfg.conf_repo, author)?;
    match repo.commit(changes, author, msg)? {
        Some(id) => Ok(format!(
            "{msg}\ncommitted {} as {} <{}>",
            confrepo::short(id),
            author.name,
            author.email
        )),
        None => Ok(format!("{msg}: nothing changed, no commit")),
    }
}

pub fn host_add(cfg: &Config, spec: &HostSpec, author: &Author) -> anyhow::Result<String> {
    let change = edit::add(&load(cfg), &cfg.conf_repo, spec)?;
    let msg = format!(
        "Add host {}: {}",
        spec.name.as_deref().unwrap_or("?"),
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
) -> anyhow::Result<String> {
    let inv = load(cfg);
    let changes = edit::edit(&inv, &cfg.conf_repo, who, spec)?;
    if changes.is_empty() {
        bail!("nothing to change: give --name, --mac, --ip, --profile, --args, --param or --unset-param");
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

pub fn host_rm(cfg: &Config, who: &str, author: &Author) -> anyhow::Result<String> {
    let (m, changes) = edit::remove(&load(cfg), &cfg.conf_repo, who)?;
    let msg = format!(
        "Remove host {} ({}{})",
        m.hostname.as_deref().unwrap_or("(no name)"),
        m.mac,
        m.ip.map(|ip| format!(", {ip}")).unwrap_or_default()
    );
    commit(cfg, author, &changes, &msg)
}

fn row(m: &Machine, root: &std::path::Path) -> String {
    format!(
        "{:<20} {:<17} {:<15} {:<12} {}",
        m.hostname.as_deref().unwrap_or("-"),
        m.mac,
        m.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        // No profile: the machine boots with the one named "default".
        m.profile.as_deref().unwrap_or("(default)"),
        m.source.strip_prefix(root).unwrap_or(&m.source).display()
    )
}

pub fn host_list(cfg: &Config) -> String {
    let inv = load(cfg);
    let mut out = format!(
        "{:<20} {:<17} {:<15} {:<12} {}\n",
        "HOSTNAME", "MAC", "IP", "PROFILE", "FILE"
    );
    let mut ms: Vec<&Machine> = inv.machines().iter().collect();
    ms.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.mac.0.cmp(&b.mac.0)));
    for m in ms {
        let _ = writeln!(out, "{}", row(m, &cfg.conf_repo));
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
    json: bool,
) -> anyhow::Result<String> {
    let p = path.map(confrepo::repo_path).transpose()?;
    let log = repo(cfg)?.log(p.as_deref(), limit)?;
    if json {
        return Ok(serde_json::to_string_pretty(&log)? + "\n");
    }
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
    Ok(out)
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

pub fn history_revert(cfg: &Config, spec: &str, author: &Author) -> anyhow::Result<String> {
    let (path, rev) = confrepo::split_at_rev(spec);
    let Some(rev) = rev else {
        bail!("{spec}: say which version to restore, e.g. {spec}@HEAD~1 or {spec}@2026-11-26");
    };
    let path = confrepo::repo_path(path)?;
    Ok(match repo(cfg)?.revert(&path, rev, author)? {
        Some(id) => format!(
            "restored {path} as of {rev}: commit {}",
            confrepo::short(id)
        ),
        None => format!("{path} already has its content of {rev}: no commit"),
    })
}
