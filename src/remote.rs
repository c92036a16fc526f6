//! Commands and recipes on many machines at once, over the one ssh runner ([`crate::ssh`]):
//! `pxelator run TARGETS -- COMMAND`, `pxelator recipe check|apply|capture|list`, and the
//! daemon's scheduled checks of `recipes.toml` ([`crate::core::recipe`] decides; this module
//! reaches hosts). Connections are multiplexed (`state_dir/ssh/mux`, 0700): a repeat run reuses
//! the master connection the first one left, so it does not pay the handshake again. Every host
//! has its own deadline and its own thread (at most [`MAX_PARALLEL`] at once), so a slow or dead
//! host never holds the others up.
use crate::backup::HostPlan;
use crate::config::Config;
use crate::core::event::{Event, RunResult};
use crate::core::recipe::{self, Mode, Outcome, Recipe};
use crate::inventory::Inventory;
use crate::ssh::{Ran, Ssh, SshError};
use anyhow::{bail, Context};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Hosts reached at once.
pub const MAX_PARALLEL: usize = 64;
/// What a host's answer may be; more is cut (and said).
pub const MAX_OUTPUT: u64 = 1 << 20;

/// The recipes that ship with pxelator (`recipes/` in the project). A site's own, committed as
/// `recipes/NAME.sh` in the conf repo, win over these.
pub const BUILTIN: &[(&str, &str)] = &[
    ("line-in-file", include_str!("../recipes/line-in-file.sh")),
    (
        "package-installed",
        include_str!("../recipes/package-installed.sh"),
    ),
    (
        "service-enabled",
        include_str!("../recipes/service-enabled.sh"),
    ),
    (
        "file-like-host",
        include_str!("../recipes/file-like-host.sh"),
    ),
];

/// The host names `specs` name: each a hostname, MAC or IP of the inventory, a group (machines
/// whose param `group` is it), or a host or `[group.NAME]` of backup.toml; comma lists allowed.
/// In the order given, each once.
pub fn resolve(
    settings: &crate::backup::SshSettings,
    inv: &Inventory,
    specs: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for spec in specs.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if spec.is_empty() {
            continue;
        }
        let names: Vec<String> = if let Ok(ms) = crate::power::targets(inv, spec) {
            ms.iter()
                .map(|m| {
                    m.hostname.clone().with_context(|| {
                        format!("machine {} ({spec}) has no hostname; give it one with `pxelator host edit {} --name NAME`", m.mac, m.mac)
                    })
                })
                .collect::<anyhow::Result<_>>()?
        } else if let Some(hosts) = settings.group(spec) {
            hosts.to_vec()
        } else if settings.lists(spec) {
            vec![spec.to_owned()]
        } else {
            bail!("{spec:?} is no machine, group or backup.toml host (see `pxelator host list`)");
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        bail!("no hosts named: give a machine, a group, or a comma list");
    }
    Ok(out)
}

/// The machines `specs` name ([`resolve`]) and how to reach each (backup.toml's settings, else
/// the inventory's address and the default key), with multiplexed connections; backup.toml is
/// read once for both.
pub fn targets(cfg: &Config, inv: &Inventory, specs: &[String]) -> anyhow::Result<Vec<Ssh>> {
    let settings = crate::backup::SshSettings::load(cfg)?;
    let names = resolve(&settings, inv, specs)?;
    let known = crate::backup::known_hosts(cfg);
    let mux = cfg.state_dir.join("ssh/mux");
    Ok(settings
        .connections(cfg, inv, &names)?
        .iter()
        .map(|p: &HostPlan| Ssh {
            mux_dir: Some(mux.clone()),
            ..p.ssh(&known)
        })
        .collect())
}

/// One host's answer to `pxelator run`.
#[derive(Debug, Clone, Serialize)]
pub struct HostRun {
    pub host: String,
    /// ok (exit 0), failed (another exit), unreachable, timeout, host_key_changed.
    pub outcome: String,
    pub exit: Option<i32>,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    /// The output was longer than [`MAX_OUTPUT`] and was cut.
    pub truncated: bool,
    /// Why ssh could not run it (unreachable, timeout, changed key).
    pub error: Option<String>,
}

impl HostRun {
    fn from(host: &str, took: Duration, r: Result<Ran, SshError>) -> HostRun {
        let duration_ms = took.as_millis() as u64;
        match r {
            Ok(ran) => HostRun {
                host: host.to_owned(),
                outcome: if ran.code == 0 { "ok" } else { "failed" }.into(),
                exit: Some(ran.code),
                duration_ms,
                stdout: String::from_utf8_lossy(&ran.stdout).into_owned(),
                stderr: ran.stderr,
                truncated: ran.truncated,
                error: None,
            },
            Err(e) => HostRun {
                host: host.to_owned(),
                outcome: match e {
                    SshError::TimedOut { .. } => "timeout",
                    SshError::HostKeyChanged { .. } => "host_key_changed",
                    _ => "unreachable",
                }
                .into(),
                exit: None,
                duration_ms,
                stdout: String::new(),
                stderr: String::new(),
                truncated: false,
                error: Some(e.to_string()),
            },
        }
    }

    /// The first `n` lines of what it said (stdout, else stderr, else the error).
    pub fn first_lines(&self, n: usize) -> String {
        let text = [
            self.error.as_deref().unwrap_or(""),
            &self.stdout,
            &self.stderr,
        ]
        .into_iter()
        .find(|t| !t.trim().is_empty())
        .unwrap_or("");
        text.lines().take(n).collect::<Vec<_>>().join(" | ")
    }
}

/// Runs `f` for every host at once (at most [`MAX_PARALLEL`] threads), calling `done` as each
/// finishes (the live table); results in the hosts' order.
fn each_host<T: Send>(
    hosts: &[Ssh],
    f: &(dyn Fn(&Ssh) -> T + Sync),
    done: &(dyn Fn(&T) + Sync),
) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        hosts.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..hosts.len().min(MAX_PARALLEL) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(h) = hosts.get(i) else { break };
                let r = f(h);
                done(&r);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every host ran")
        })
        .collect()
}

/// `pxelator run`: `command` (the words the admin typed, joined by spaces as ssh does) on every
/// host at once, each cut off after `timeout`; `done` sees each host as it finishes. The run is
/// one `run_finished` event through `emit`.
pub fn run(
    hosts: &[Ssh],
    command: &str,
    timeout: Duration,
    user: &str,
    emit: &dyn Fn(Event),
    done: &(dyn Fn(&HostRun) + Sync),
) -> Vec<HostRun> {
    let start = Instant::now();
    let results = each_host(
        hosts,
        &|ssh| {
            let t = Instant::now();
            let r = ssh.exec("the command", command, None, MAX_OUTPUT, timeout);
            HostRun::from(&ssh.name, t.elapsed(), r)
        },
        done,
    );
    emit(Event::RunFinished {
        user: user.to_owned(),
        command: command.to_owned(),
        targets: hosts.iter().map(|h| h.name.clone()).collect(),
        results: results
            .iter()
            .map(|r| RunResult {
                host: r.host.clone(),
                outcome: r.outcome.clone(),
                exit: r.exit,
                duration_ms: r.duration_ms,
            })
            .collect(),
        duration_ms: start.elapsed().as_millis() as u64,
    });
    results
}

/// A recipe by name: the conf repo's committed `recipes/NAME.sh`, else a built-in one.
pub fn load_recipe(cfg: &Config, name: &str) -> anyhow::Result<Recipe> {
    recipe::check_name(name).map_err(anyhow::Error::msg)?;
    let rel = format!("recipes/{name}.sh");
    let text = match crate::confrepo::read_current(&cfg.conf_repo, &rel)? {
        Some(b) => String::from_utf8(b)
            .map_err(|_| anyhow::anyhow!("{rel} in the conf repo is not UTF-8 text"))?,
        None => match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => (*t).to_owned(),
            None => bail!(
                "no recipe {name}: not in the conf repo's recipes/ nor built in (see `pxelator recipe list`)"
            ),
        },
    };
    recipe::parse(name, &text).map_err(anyhow::Error::msg)
}

/// One entry of `recipe list`: where it comes from, and the recipe or why it cannot be used
/// (a broken site recipe is listed with its error, not hidden, and does not hide the others).
pub struct Listed {
    pub name: String,
    pub from: &'static str,
    pub recipe: Result<Recipe, String>,
}

/// Every recipe: the site's (conf repo, committed) and the built-in ones it does not replace.
pub fn list_recipes(cfg: &Config) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let repo = crate::confrepo::ConfRepo::open(&cfg.conf_repo)?;
    if let Some((repo, head)) = repo.and_then(|r| r.head().transpose().map(|h| (r, h))) {
        for (path, _) in repo.files(head?, "recipes/")? {
            let Some(n) = path
                .strip_prefix("recipes/")
                .and_then(|p| p.strip_suffix(".sh"))
            else {
                continue;
            };
            out.push(Listed {
                name: n.to_owned(),
                from: "conf repo",
                recipe: load_recipe(cfg, n).map_err(|e| format!("{e:#}")),
            });
        }
    }
    for (n, t) in BUILTIN {
        if !out.iter().any(|l| l.name == *n) {
            out.push(Listed {
                name: (*n).to_owned(),
                from: "built in",
                recipe: recipe::parse(n, t),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One host's recipe result.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecipe {
    pub host: String,
    pub outcome: Outcome,
    pub message: Option<String>,
    pub duration_ms: u64,
    /// What the recipe printed (check's and apply's output).
    pub output: String,
}

/// How long one host's check → apply → check may take.
pub const RECIPE_TIMEOUT: Duration = Duration::from_secs(300);

/// `recipe check|apply`: the recipe (its parameters bound) on every host at once; one
/// `recipe_result` event per host.
pub fn recipe_run(
    hosts: &[Ssh],
    recipe: &Recipe,
    params: &BTreeMap<String, String>,
    mode: Mode,
    user: &str,
    emit: &(dyn Fn(Event) + Sync),
    done: &(dyn Fn(&HostRecipe) + Sync),
) -> anyhow::Result<Vec<HostRecipe>> {
    let bound = recipe::bind(recipe, params).map_err(anyhow::Error::msg)?;
    let script = recipe::remote_script(recipe, &bound, mode);
    let mode_name = match mode {
        Mode::Check => "check",
        Mode::Apply => "apply",
    };
    Ok(each_host(
        hosts,
        &|ssh| {
            let t = Instant::now();
            let r = ssh.exec(
                &format!("recipe {}", recipe.name),
                "sh -s",
                Some(script.clone().into_bytes()),
                MAX_OUTPUT,
                RECIPE_TIMEOUT,
            );
            let duration_ms = t.elapsed().as_millis() as u64;
            let (outcome, message, output) = match r {
                Ok(ran) => {
                    let (o, m) = recipe::outcome(mode, ran.code);
                    let mut out = String::from_utf8_lossy(&ran.stdout).into_owned();
                    out.push_str(&ran.stderr);
                    let m = m.map(|m| match out.trim().lines().last() {
                        Some(l) => format!("{m}: {l}"),
                        None => m,
                    });
                    (o, m, out)
                }
                Err(e) => (Outcome::Failed, Some(e.to_string()), String::new()),
            };
            emit(Event::RecipeResult {
                recipe: recipe.name.clone(),
                host: ssh.name.clone(),
                mode: mode_name.into(),
                outcome: outcome.name().into(),
                user: user.to_owned(),
                message: message.clone(),
                duration_ms,
            });
            HostRecipe {
                host: ssh.name.clone(),
                outcome,
                message,
                duration_ms,
                output,
            }
        },
        done,
    ))
}

/// `recipes.toml` from the conf repo (None when there is none); errors name the file and line.
pub fn load_assignments(cfg: &Config) -> anyhow::Result<Option<recipe::Assignments>> {
    let Some(bytes) = crate::confrepo::read_current(&cfg.conf_repo, "recipes.toml")? else {
        return Ok(None);
    };
    let file = cfg.conf_repo.join("recipes.toml");
    let a: recipe::Assignments = crate::tomlfile::parse(&file, &String::from_utf8_lossy(&bytes))
        .map_err(|e| {
            anyhow::anyhow!(
                "{}{}: {}",
                file.display(),
                e.line.map(|l| format!(":{l}")).unwrap_or_default(),
                e.message
            )
        })?;
    Ok(Some(a))
}

/// One round of the assignments (the daemon's schedule, and `recipe check-assigned`): each
/// assignment's recipe checked — or applied, where it says `apply = true` — on its machines.
/// Results are `recipe_result` events with user `schedule` (drift: outcome `drift`). An
/// assignment that cannot run (unknown recipe or machine, missing parameter) is reported as a
/// failed result for each name it lists and does not stop the others.
pub fn check_assignments(
    cfg: &Config,
    inv: &Inventory,
    a: &recipe::Assignments,
    user: &str,
    emit: &(dyn Fn(Event) + Sync),
) -> Vec<(String, HostRecipe)> {
    let mut out = Vec::new();
    for asg in &a.assign {
        let mode = if asg.apply { Mode::Apply } else { Mode::Check };
        let prepared = load_recipe(cfg, &asg.recipe).and_then(|r| {
            let hosts = targets(cfg, inv, &asg.to)?;
            recipe::bind(&r, &asg.params).map_err(anyhow::Error::msg)?;
            Ok((r, hosts))
        });
        match prepared {
            Ok((r, hosts)) => {
                match recipe_run(&hosts, &r, &asg.params, mode, user, emit, &|_| {}) {
                    Ok(rs) => out.extend(rs.into_iter().map(|h| (r.name.clone(), h))),
                    Err(e) => tracing::warn!("recipes.toml: {e}"),
                }
            }
            Err(e) => {
                for to in &asg.to {
                    let message = Some(format!("recipes.toml: {e:#}"));
                    emit(Event::RecipeResult {
                        recipe: asg.recipe.clone(),
                        host: to.clone(),
                        mode: "check".into(),
                        outcome: "failed".into(),
                        user: user.to_owned(),
                        message: message.clone(),
                        duration_ms: 0,
                    });
                    out.push((
                        asg.recipe.clone(),
                        HostRecipe {
                            host: to.clone(),
                            outcome: Outcome::Failed,
                            message,
                            duration_ms: 0,
                            output: String::new(),
                        },
                    ));
                }
            }
        }
    }
    out
}

/// Where `recipe capture` takes the file from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFrom {
    /// Host-file backups (`hosts/HOST/…` in the conf repo), at a revision or date.
    Backups,
    /// The host's network-root overlay as it is now (a file the host changed or made).
    Overlay,
}

/// A file the host changed in its network root's overlay (its upper directory): content (at
/// most [`recipe::MAX_CAPTURED_BYTES`] + 1 bytes read) and mode. Opened beneath the upper
/// directory without following links; a deletion (whiteout) or a directory is refused.
fn overlay_file(cfg: &Config, host: &str, rel: &str) -> anyhow::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let d = crate::nfsroot::host_dirs(&cfg.state_dir, host);
    if crate::nfsroot::host_base(&cfg.state_dir, host).is_none() {
        bail!(
            "{host} has no overlay (under {}): only a host booting a network root has one",
            d.dir.display()
        );
    }
    let f = crate::overlay::open_beneath(&d.upper, rel).map_err(|e| {
        anyhow::anyhow!("{host}:/{rel} is not a change in {host}'s overlay ({e}); `pxelator overlay diff {host}` lists them")
    })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        bail!("{host}:/{rel} in {host}'s overlay is not a file (a deletion or a directory)");
    }
    let mut content = Vec::new();
    f.take(recipe::MAX_CAPTURED_BYTES as u64 + 1)
        .read_to_end(&mut content)?;
    Ok((content, meta.mode() & 0o7777))
}

/// `recipe capture HOST:/path[@REV] --as NAME`: the file as pulled by host-file backups (at
/// REV, default HEAD; mode from the host's .meta), or as the host's overlay holds it now, made
/// into `recipes/NAME.sh` in the conf repo, committed by `author`.
pub fn capture(
    cfg: &Config,
    spec: &str,
    from: CaptureFrom,
    name: &str,
    author: &crate::confrepo::Author,
    emit: &dyn Fn(Event),
) -> anyhow::Result<crate::commands::Committed> {
    recipe::check_name(name).map_err(anyhow::Error::msg)?;
    if BUILTIN.iter().any(|(n, _)| *n == name) {
        bail!("{name} is a built-in recipe's name; choose another with --as");
    }
    let (target, rev) = crate::confrepo::split_at_rev(spec);
    let (host, path) = target
        .split_once(':')
        .context("expected HOST:/path[@REV|@DATE], e.g. kiosk1:/etc/motd@2026-11-20")?;
    crate::inventory::check_hostname(host).map_err(anyhow::Error::msg)?;
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        bail!("{path:?}: an absolute path on {host}, without `..`");
    }
    let repo = crate::confrepo::ConfRepo::open(&cfg.conf_repo)?
        .with_context(|| format!("{} is not a git repository", cfg.conf_repo.display()))?;
    let rel = path.trim_start_matches('/');
    let (rev, content, mode) = match from {
        CaptureFrom::Backups => {
            let rev = rev.unwrap_or("HEAD");
            let content = repo
                .cat(&format!("hosts/{host}/{rel}"), rev)
                .with_context(|| {
                    format!("{host}:{path}@{rev} is not in the host-file backups (`pxelator backup status`; backup.toml lists what is pulled)")
                })?;
            let meta = repo
                .cat(&format!("hosts/{host}.meta"), rev)
                .unwrap_or_default();
            let mode = crate::backup::mode_and_owner(&String::from_utf8_lossy(&meta), path)
                .map(|(m, _, _)| m);
            (rev, content, mode)
        }
        CaptureFrom::Overlay => {
            if let Some(r) = rev {
                bail!("a network root's overlay has no revisions (@{r}): capture it as it is now, without @");
            }
            let (content, mode) = overlay_file(cfg, host, rel)?;
            ("overlay", content, Some(mode))
        }
    };
    let text = recipe::file_recipe(&format!("{host}:{path}@{rev}"), path, mode, &content)
        .map_err(anyhow::Error::msg)?;
    recipe::parse(name, &text).map_err(anyhow::Error::msg)?;
    let rel_recipe = format!("recipes/{name}.sh");
    let commit = repo.commit(
        &[crate::confrepo::Change::Write(
            rel_recipe,
            text.into_bytes(),
        )],
        author,
        &format!("recipe {name}: {path} as on {host} at {rev}"),
    )?;
    let commit = commit.map(|c| c.to_string());
    let who = format!("{} <{}>", author.name, author.email);
    emit(Event::RecipeCaptured {
        recipe: name.to_owned(),
        from: format!("{host}:{path}@{rev}"),
        user: who.clone(),
        commit: commit.clone(),
    });
    Ok(crate::commands::Committed {
        message: format!("recipe {name} made from {host}:{path}@{rev}"),
        commit,
        author: who,
    })
}

/// Results kept per host by `recipe status`: the newest this many recipe_result events.
pub const STATUS_EVENTS: u64 = 2000;

/// The audit filter for recipe results of `hosts` (all hosts when empty).
pub fn status_filter(hosts: &[String]) -> serde_json::Value {
    if hosts.is_empty() {
        serde_json::json!({"kind": "recipe_result"})
    } else {
        serde_json::json!({"kind": "recipe_result", "host": {"$in": hosts}})
    }
}

/// `recipe status [TARGETS]`: the newest result of each recipe on each host, from the audit
/// store (the daemon's scheduled checks and admins' runs alike).
pub fn recipe_status(
    cfg: &Config,
    inv: &Inventory,
    targets: &[String],
) -> anyhow::Result<Vec<recipe::Latest>> {
    let hosts = if targets.is_empty() {
        Vec::new()
    } else {
        resolve(&crate::backup::SshSettings::load(cfg)?, inv, targets)?
    };
    let audit = cfg
        .audit
        .as_ref()
        .context("the audit store is off ([audit] enabled = false): results are kept there")?;
    let events = crate::audit::open_store(audit)?.find(
        &status_filter(&hosts),
        Some(&serde_json::json!({"time": -1})),
        Some(STATUS_EVENTS),
    )?;
    Ok(recipe::latest(&events))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped recipe declares itself, has check and apply, and is valid sh.
    #[test]
    fn builtin_recipes_parse_and_are_valid_sh() {
        for (name, text) in BUILTIN {
            let r = recipe::parse(name, text).unwrap();
            assert!(!r.about.is_empty());
            let o = std::process::Command::new("sh")
                .args(["-n", "-c", text])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    #[test]
    fn first_lines_prefer_the_error_then_stdout() {
        let h = HostRun {
            host: "k".into(),
            outcome: "ok".into(),
            exit: Some(0),
            duration_ms: 1,
            stdout: "a\nb\nc\n".into(),
            stderr: "warn\n".into(),
            truncated: false,
            error: None,
        };
        assert_eq!(h.first_lines(2), "a | b");
        let e = HostRun {
            error: Some("k (1.2.3.4:22): cannot connect".into()),
            ..h
        };
        assert_eq!(e.first_lines(2), "k (1.2.3.4:22): cannot connect");
    }
}
