//! `backup.toml` → one [`HostPlan`] per host: defaults, groups and hosts merged, names,
//! users and addresses checked; which file names are secrets.
use super::*;

/// Settings shared by defaults, groups and hosts (all optional; see [`HostPlan`] for defaults).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub paths: Option<Vec<String>>,
    /// Extra paths or globs to leave out.
    pub exclude: Option<Vec<String>>,
    /// Secret paths to pull anyway (they are excluded by default).
    pub include_secrets: Option<Vec<String>>,
    /// Cron syntax, e.g. "0 3 * * *" (used by the daemon's scheduler).
    pub schedule: Option<String>,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    pub port: Option<u16>,
    /// Address to connect to (default: the machine's IP from the inventory, else the name).
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Group {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(flatten)]
    settings: Settings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupFile {
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    group: BTreeMap<String, Group>,
    #[serde(default)]
    host: BTreeMap<String, Settings>,
    /// Hosts pulled at once.
    concurrency: Option<usize>,
    /// Tries per host per run for a host that cannot be reached.
    attempts: Option<u32>,
    /// Seconds one host's pull may take before it is cut off (default 600).
    timeout_secs: Option<u64>,
    /// Largest file pulled, in MiB (default 64); larger ones are reported and never read.
    max_file_mb: Option<u64>,
}

/// Everything needed to pull one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPlan {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    pub include_secrets: Vec<String>,
    pub schedule: Option<String>,
}

/// The resolved `backup.toml`.
#[derive(Debug, Clone)]
pub struct Plans {
    pub hosts: Vec<HostPlan>,
    pub concurrency: usize,
    pub attempts: u32,
    /// One host's pull is cut off after this long (a hung host never holds a worker forever).
    pub timeout: Duration,
    /// Per-file cap (`max_file_mb`, default [`MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
}

pub(crate) fn merge(a: &Settings, b: &Settings) -> Settings {
    Settings {
        paths: b.paths.clone().or_else(|| a.paths.clone()),
        exclude: b.exclude.clone().or_else(|| a.exclude.clone()),
        include_secrets: b
            .include_secrets
            .clone()
            .or_else(|| a.include_secrets.clone()),
        schedule: b.schedule.clone().or_else(|| a.schedule.clone()),
        user: b.user.clone().or_else(|| a.user.clone()),
        key: b.key.clone().or_else(|| a.key.clone()),
        port: b.port.or(a.port),
        address: b.address.clone().or_else(|| a.address.clone()),
    }
}

/// Reads and parses `backup.toml` (committed, like the inventory; errors name `path:line`).
fn read_backup_file(cfg: &Config) -> Result<(PathBuf, BackupFile), BackupError> {
    let file = cfg.conf_repo.join("backup.toml");
    let text = match crate::confrepo::read_current(&cfg.conf_repo, "backup.toml") {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(None) => String::new(),
        Err(e) => {
            return Err(BackupError::Config {
                file,
                msg: e.to_string(),
            })
        }
    };
    let parsed: BackupFile =
        crate::tomlfile::parse(&file, &text).map_err(|e| BackupError::Config {
            file: match e.line {
                Some(l) => PathBuf::from(format!("{}:{l}", file.display())),
                None => file.clone(),
            },
            msg: e.message,
        })?;
    Ok((file, parsed))
}

impl BackupFile {
    /// Each listed host's settings from its groups and its own table (not yet the defaults).
    fn per_host(&self) -> BTreeMap<String, Settings> {
        let mut per_host: BTreeMap<String, Settings> = BTreeMap::new();
        for g in self.group.values() {
            for h in &g.hosts {
                let base = per_host.get(h).cloned().unwrap_or_default();
                per_host.insert(h.clone(), merge(&base, &g.settings));
            }
        }
        for (h, s) in &self.host {
            let base = per_host.get(h).cloned().unwrap_or_default();
            per_host.insert(h.clone(), merge(&base, s));
        }
        per_host
    }
}

/// One host's plan from its merged settings: name, user and address checked; the address
/// defaults to the inventory's IP for a machine of that hostname, else the name.
fn host_plan(
    cfg: &Config,
    file: &Path,
    inv: &crate::inventory::Inventory,
    name: &str,
    s: Settings,
) -> Result<HostPlan, BackupError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(BackupError::Config {
            file: file.to_owned(),
            msg: format!("host name {name:?}: letters, digits, '-' and '.' only"),
        });
    }
    let bad = |what: &str, v: &str, rule: &str| BackupError::Config {
        file: file.to_owned(),
        msg: format!("host {name}: {what} {v:?} {rule}"),
    };
    if let Some(u) = &s.user {
        // A user name goes into `ssh USER@HOST`: never an option, never two words.
        let ok = u.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && u.len() <= 32
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(bad("user", u, "is not a user name (letters, digits, '_', '.', '-'; starting with a letter or '_')"));
        }
    }
    if let Some(a) = &s.address {
        if crate::inventory::check_hostname(a).is_err() && a.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(
                "address",
                a,
                "is neither a host name nor an IP address",
            ));
        }
    }
    let address = s.address.clone().unwrap_or_else(|| {
        inv.machines()
            .iter()
            .find(|m| m.hostname.as_deref() == Some(name))
            .and_then(|m| m.ip)
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| name.to_owned())
    });
    Ok(HostPlan {
        address,
        port: s.port.unwrap_or(22),
        user: s.user.unwrap_or_else(|| "root".into()),
        key: s
            .key
            .unwrap_or_else(|| cfg.state_dir.join("ssh/id_ed25519")),
        paths: s.paths.unwrap_or_else(|| vec!["/etc".into()]),
        exclude: s.exclude.unwrap_or_default(),
        include_secrets: s.include_secrets.unwrap_or_default(),
        schedule: s.schedule,
        name: name.to_owned(),
    })
}

/// Reads `backup.toml` from the conf repo (errors name `path:line`). Hosts are resolved to
/// addresses through the inventory.
pub fn load_plans(cfg: &Config, inv: &crate::inventory::Inventory) -> Result<Plans, BackupError> {
    let (file, parsed) = read_backup_file(cfg)?;
    let mut hosts = Vec::new();
    for (name, s) in parsed.per_host() {
        let s = merge(&parsed.defaults, &s);
        hosts.push(host_plan(cfg, &file, inv, &name, s)?);
    }
    Ok(Plans {
        hosts,
        concurrency: parsed.concurrency.unwrap_or(8).max(1),
        attempts: parsed.attempts.unwrap_or(3).max(1),
        timeout: Duration::from_secs(parsed.timeout_secs.unwrap_or(600).max(1)),
        max_file_bytes: parsed
            .max_file_mb
            .map_or(MAX_FILE_BYTES, |mb| mb.max(1).saturating_mul(1 << 20)),
    })
}

/// `backup.toml` read once as the ssh settings of `pxelator run` and recipes: which hosts and
/// groups it names, and how to reach any machine.
pub struct SshSettings {
    file: PathBuf,
    parsed: BackupFile,
}

impl SshSettings {
    pub fn load(cfg: &Config) -> Result<SshSettings, BackupError> {
        let (file, parsed) = read_backup_file(cfg)?;
        Ok(SshSettings { file, parsed })
    }

    /// Its `[group.NAME]`s with their hosts.
    pub fn group(&self, name: &str) -> Option<&[String]> {
        self.parsed.group.get(name).map(|g| g.hosts.as_slice())
    }

    /// Does it list this host (in a group or its own table)?
    pub fn lists(&self, host: &str) -> bool {
        self.parsed.host.contains_key(host)
            || self
                .parsed
                .group
                .values()
                .any(|g| g.hosts.iter().any(|h| h == host))
    }

    /// How to reach `names` (already hostnames): the settings for hosts it lists (defaults,
    /// groups, host), and for the inventory's other machines its `[defaults]` with the
    /// machine's address.
    pub fn connections(
        &self,
        cfg: &Config,
        inv: &crate::inventory::Inventory,
        names: &[String],
    ) -> Result<Vec<HostPlan>, BackupError> {
        let per_host = self.parsed.per_host();
        names
            .iter()
            .map(|name| {
                let own = per_host.get(name).cloned().unwrap_or_default();
                host_plan(
                    cfg,
                    &self.file,
                    inv,
                    name,
                    merge(&self.parsed.defaults, &own),
                )
            })
            .collect()
    }
}

/// File names never pulled unless `include_secrets` lists them (globs with at most one `*`):
/// the remote `tar --exclude`s and the local [`is_secret`] check both come from this table.
pub(crate) const SECRET_NAMES: [&str; 12] = [
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "ssh_host_*_key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ecdsa_sk",
    "id_ed25519_sk",
    "*.key",
];

pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
        None => name == pattern,
    }
}

/// Is this (absolute) path a secret that is only pulled when listed explicitly? A secret
/// name ([`SECRET_NAMES`]) or anything under an `ssl/private` directory.
pub fn is_secret(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    SECRET_NAMES.iter().any(|p| name_matches(p, name))
        || path
            .split('/')
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["ssl", "private"])
}

/// `'…'` quoting for the remote shell; globs (`* ? [`) stay active when the path has only
/// plain characters besides them.
pub(crate) fn remote_word(p: &str) -> String {
    let plain = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+*?[]@%:=,".contains(c));
    if plain {
        p.to_owned()
    } else {
        format!("'{}'", p.replace('\'', "'\\''"))
    }
}

impl HostPlan {
    /// The ssh runner for this host (its key, port, user; host key pinned under its name).
    pub fn ssh(&self, known_hosts: &Path) -> crate::ssh::Ssh {
        crate::ssh::Ssh {
            name: self.name.clone(),
            address: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            key: self.key.clone(),
            known_hosts: known_hosts.to_owned(),
            mux_dir: None,
        }
    }
}

pub(crate) fn remote_word_quoted(p: &str) -> String {
    format!("'{}'", p.replace('\'', "'\\''"))
}
