//! CLI entry: parses arguments and dispatches; all work happens in the library.
use clap::{Parser, Subcommand};
use pxelator::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pxelator",
    version,
    about = "Network-boot appliance: DHCP/PXE, TFTP and HTTP from an inventory of plain files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the config file is (shared by every subcommand).
#[derive(clap::Args)]
struct ConfigArg {
    /// The config file; accepted before or after the verb (`host add … --config F`).
    #[arg(
        id = "config_file",
        long = "config",
        short = 'c',
        env = "PXELATOR_CONFIG",
        default_value = "/etc/pxelator/pxelator.toml",
        global = true
    )]
    path: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the config and the inventory it points to, then exit.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Add, list, show, edit and remove machines; every change is a git commit in the conf repo.
    Host {
        #[command(flatten)]
        config: ConfigArg,
        /// Commit author, "Name <email>" (default: the invoking user, or $SUDO_USER).
        #[arg(long, global = true)]
        author: Option<String>,
        #[command(subcommand)]
        cmd: HostCmd,
    },
    /// Group defaults (groups/<name>.toml): params every machine with param group = NAME gets
    /// unless it sets its own.
    Group {
        #[command(flatten)]
        config: ConfigArg,
        /// Commit author, "Name <email>" (default: the invoking user, or $SUDO_USER).
        #[arg(long, global = true)]
        author: Option<String>,
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// History of any file in the conf repo (`host:/path` for pulled host files): log, diff,
    /// the content as of a revision or date, and restoring it.
    History {
        #[command(flatten)]
        config: ConfigArg,
        /// Commit author for revert, "Name <email>" (default: the invoking user).
        #[arg(long, global = true)]
        author: Option<String>,
        #[command(subcommand)]
        cmd: HistoryCmd,
    },
    /// Pull host files over ssh into the conf repo (backup.toml says which), see their
    /// status, restore one from any revision or date.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// Commit author for pulls (default: the invoking user).
        #[arg(long, global = true)]
        author: Option<String>,
        #[command(subcommand)]
        cmd: BackupCmd,
    },
    /// Power control: Intel AMT where a machine has it (param amt), else `on` by Wake-on-LAN
    /// and `off` by a command over ssh; schedules in power.toml are run by the daemon.
    Power {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: PowerCmd,
    },
    /// Live images (Debian Live, Webconverger): import an ISO or a directory, list, remove.
    Image {
        #[command(flatten)]
        config: ConfigArg,
        /// Commit author for `image use`, "Name <email>" (default: the invoking user).
        #[arg(long, global = true)]
        author: Option<String>,
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Bases for writable network roots: build a version from overlay/NAME.toml, list, remove.
    Base {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: BaseCmd,
    },
    /// The storage pool (Ceph): make it, see it, retire a member.
    Pool {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: PoolCmd,
    },
    /// Hosts' writable network roots: what a host changed against its base.
    Overlay {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: OverlayCmd,
    },
    /// Boot a new machine from a backup: a base plus HOST's pulled files at REV (a commit or
    /// a date), renamed NEWNAME with address IP (hostname, address and machine-id rewritten),
    /// registered with an nfsroot profile (a commit).
    RestoreVm {
        #[command(flatten)]
        config: ConfigArg,
        /// HOST@REV, e.g. kiosk1@2026-11-30 or kiosk1@3f2a9c1 (HEAD without @).
        spec: String,
        #[arg(long = "as")]
        name: String,
        #[arg(long)]
        ip: std::net::Ipv4Addr,
        /// The nfsroot profile it boots (default: the only one).
        #[arg(long)]
        profile: Option<String>,
        /// Also print a QEMU command line that starts it.
        #[arg(long)]
        qemu: bool,
        /// Put its root on an RBD image in the storage pool (`pxelator/vm-NAME`, an ext4
        /// filesystem) instead of a network root: the machine boots with its disk there.
        #[arg(long)]
        pool: bool,
        /// Commit author, "Name <email>" (default: the invoking user).
        #[arg(long)]
        author: Option<String>,
    },
    /// Capture one interface's packets (of a machine, or all) into a pcap file that tcpdump
    /// and Wireshark read; ends after --secs and/or --packets (and --max-mb).
    Capture {
        #[command(flatten)]
        config: ConfigArg,
        /// The interface (default: the first of dhcp.interfaces).
        #[arg(long)]
        iface: Option<String>,
        /// Only this machine's packets (its MAC and address): hostname, MAC or IP.
        #[arg(long)]
        host: Option<String>,
        /// Only frames from/to this MAC (and DHCP messages for it).
        #[arg(long)]
        mac: Option<pxelator::core::mac::Mac>,
        /// Only packets from/to this IPv4 address (and ARP about it).
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// Stop after this many seconds (at most 3600).
        #[arg(long)]
        secs: Option<u64>,
        /// Stop after this many packets.
        #[arg(long)]
        packets: Option<u64>,
        /// Stop before the file passes this size (MiB, default 100).
        #[arg(long = "max-mb")]
        max_mb: Option<u64>,
        /// The pcap file to write (mode 0600: it holds the segment's traffic).
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Run a command on machines at once over ssh (pinned host keys; connections kept open for
    /// the next run): `pxelator run reading-room -- uptime`. A table row per host as it
    /// finishes (exit code, time, first lines); exit 2 if any host failed.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Machines: hostnames, MACs, IPs, groups (param group), backup.toml hosts or groups;
        /// comma lists too.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Seconds each host may take; then it is cut off and reported.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Every host's whole output after the table.
        #[arg(long)]
        full: bool,
        /// A JSON array (host, outcome, exit, duration_ms, stdout, stderr, error) instead.
        #[arg(long)]
        json: bool,
        /// Who ran it, for the audit trail (default: the invoking user, or $SUDO_USER).
        #[arg(long)]
        author: Option<String>,
        /// The command, after `--`, as you would type it to ssh.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Recipes: small sh scripts with check and apply (recipes/ in the conf repo, and built-in
    /// ones); check, apply only where the check fails, capture one from a host file's history.
    Recipe {
        #[command(flatten)]
        config: ConfigArg,
        /// Who acts, for commits and the audit trail (default: the invoking user).
        #[arg(long, global = true)]
        author: Option<String>,
        #[command(subcommand)]
        cmd: RecipeCmd,
    },
    /// The DHCP server's leases (address, MAC, hostname, state, expiry), from its journal.
    Leases {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Query the audit store (every DHCP, TFTP, HTTP and inventory event).
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Users of the API and web UI (roles viewer, operator, admin) and their API tokens,
    /// kept in <state_dir>/users.toml (mode 0600, outside git).
    User {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Sets up a new installation from a setup.toml (what the appliance does on first boot
    /// with the one on PXL-SETUP): config, network file, git conf repo, admin user, ssh key
    /// and boot loaders, all under --root.
    Setup {
        /// The setup file (see image/appliance/setup.toml.example).
        #[arg(
            long,
            required_unless_present = "interactive",
            conflicts_with = "interactive"
        )]
        file: Option<PathBuf>,
        /// Ask the questions on the terminal instead (defaults detected from the NICs).
        #[arg(long)]
        interactive: bool,
        /// Where everything goes (the appliance's data partition).
        #[arg(long, default_value = "/var/lib/pxelator")]
        root: PathBuf,
    },
    /// The appliance's A/B system slots: status, update from an image (booted once on trial,
    /// back to the old system by itself if the new one fails its health check), rollback.
    Appliance {
        #[command(flatten)]
        config: ConfigArg,
        /// The mounted ESP holding GRUB's environment block (grub/grubenv).
        #[arg(long, default_value = "/boot/efi", global = true)]
        esp: PathBuf,
        #[command(subcommand)]
        cmd: ApplianceCmd,
    },
}

#[derive(Subcommand)]
enum ApplianceCmd {
    /// The running and committed system, a pending trial, the last rollback, both versions.
    Status,
    /// Write IMAGE (pxelator-appliance-<version>.img or .img.zst) into the inactive slot,
    /// check its sha256 (from --sha256 or the manifest.txt beside it) and boot it once on trial.
    Update {
        image: PathBuf,
        #[arg(long)]
        sha256: Option<String>,
        /// Reboot into the new system right away.
        #[arg(long)]
        reboot: bool,
    },
    /// Make the other slot's system the committed one (it boots next).
    Rollback {
        #[arg(long)]
        reboot: bool,
    },
    /// The boot-time health check (run by pxelator-health.service): on a trial boot, wait up
    /// to --wait seconds for the daemon to be healthy, then commit the new system, or record
    /// the failure and reboot so GRUB returns to the old one.
    Confirm {
        #[arg(long, default_value_t = 180)]
        wait: u64,
        /// Reboot when the trial fails (what the service does; off for a manual check).
        #[arg(long)]
        reboot_on_failure: bool,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from standard input (one line).
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: pxelator::auth::Role,
    },
    /// Set a user's password (read from standard input, one line).
    Passwd { name: String },
    /// Set the e-mail address of a user's commits from the web UI (default NAME@this-host).
    Email { name: String, email: String },
    /// Change a user's role (their browser sessions end).
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: pxelator::auth::Role,
    },
    /// Remove a user (their tokens and sessions with them).
    Rm { name: String },
    /// List users, roles and token labels (never a hash).
    List,
    /// Make an API token for scripts (`Authorization: Bearer …`); printed once.
    Token {
        name: String,
        #[arg(long, default_value = "default")]
        label: String,
    },
    /// Revoke a user's tokens with this label.
    Revoke {
        name: String,
        #[arg(long)]
        label: String,
    },
}

fn parse_role(s: &str) -> Result<pxelator::auth::Role, String> {
    s.parse()
}

/// One line from standard input (a prompt on stderr when it is a terminal; no echo is not
/// attempted — pipe the password in for scripts).
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!(
            "password (at least {} characters): ",
            pxelator::auth::MIN_PASSWORD
        );
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn user(config: &std::path::Path, cmd: UserCmd) -> anyhow::Result<bool> {
    use pxelator::auth::{users_path, Users};
    let cfg = Config::load(config)?;
    let path = users_path(&cfg.state_dir);
    let mut users = Users::load(&path)?;
    match cmd {
        UserCmd::Add { name, role } => {
            users.add(&name, role, &read_password()?)?;
            users.save()?;
            println!("added {name} ({})", role.name());
        }
        UserCmd::Email { name, email } => {
            users.set_email(&name, &email)?;
            users.save()?;
            println!("{name}'s commits are authored as {name} <{email}>");
        }
        UserCmd::Passwd { name } => {
            users.passwd(&name, &read_password()?)?;
            users.save()?;
            println!("password of {name} changed");
        }
        UserCmd::Role { name, role } => {
            users.set_role(&name, role)?;
            users.save()?;
            println!("{name} is now a {}", role.name());
        }
        UserCmd::Rm { name } => {
            users.remove(&name)?;
            users.save()?;
            println!("removed {name}");
        }
        UserCmd::List => {
            for u in users.list() {
                println!(
                    "{:<20} {:<9} tokens: {}",
                    u.name,
                    u.role.name(),
                    u.tokens.join(", ")
                );
            }
        }
        UserCmd::Token { name, label } => {
            let now = pxelator::clock::rfc3339(pxelator::clock::unix_now());
            let token = users.new_token(&name, &label, &now)?;
            users.save()?;
            eprintln!("token {label:?} for {name}; shown once, keep it secret:");
            println!("{token}");
        }
        UserCmd::Revoke { name, label } => {
            let n = users.revoke_token(&name, &label)?;
            users.save()?;
            println!("revoked {n} token(s) of {name} labelled {label:?}");
            return Ok(n > 0);
        }
    }
    Ok(true)
}

/// What `host add|edit` sets.
#[derive(clap::Args)]
struct HostArgs {
    #[arg(long)]
    mac: Option<pxelator::core::mac::Mac>,
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// Boot profile (profiles/<name>.toml).
    #[arg(long)]
    profile: Option<String>,
    /// Extra kernel arguments.
    #[arg(long)]
    args: Option<String>,
    /// KEY=VALUE for [params] (repeatable), e.g. --param homepage=http://lib.example/
    #[arg(long = "param")]
    params: Vec<String>,
}

#[derive(Subcommand)]
enum HostCmd {
    /// Add machines/<NAME>.toml (refused if the MAC, IP or name is taken).
    Add {
        /// The hostname (or give it as --name).
        #[arg(required_unless_present = "name_flag", conflicts_with = "name_flag")]
        name: Option<String>,
        #[arg(long = "name", id = "name_flag")]
        name_flag: Option<String>,
        #[command(flatten)]
        set: HostArgs,
    },
    /// One line per machine.
    List,
    /// A machine's file (by hostname, MAC or IP).
    Show { who: String },
    /// Change a machine (by hostname, MAC or IP).
    Edit {
        who: String,
        /// New hostname.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        set: HostArgs,
        /// Remove a [params] key (repeatable).
        #[arg(long = "unset-param")]
        unset: Vec<String>,
        /// Keep a machine that registered itself (no longer reclaimed, out of the approval queue).
        #[arg(long)]
        approve: bool,
    },
    /// Remove a machine (by hostname, MAC or IP).
    Rm { who: String },
    /// What the machine boots next, once: its local disk, or the network (its profile, or the
    /// default profile when its own boots the local disk); `clear` removes the override.
    NextBoot {
        who: String,
        /// local, netboot or clear.
        next: String,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Set or remove defaults: --param KEY=VALUE, --unset-param KEY (one commit).
    Edit {
        name: String,
        #[arg(long = "param")]
        params: Vec<String>,
        #[arg(long = "unset-param")]
        unset: Vec<String>,
    },
}

fn group(config: &std::path::Path, who: Option<&str>, cmd: GroupCmd) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    match cmd {
        GroupCmd::Edit {
            name,
            params,
            unset,
        } => println!(
            "{}",
            pxelator::commands::group_edit(&cfg, &name, &params, &unset, &author(who))?
        ),
    }
    Ok(())
}

#[derive(Subcommand)]
enum HistoryCmd {
    /// Commits that changed PATH (all commits without PATH), newest first.
    Log {
        path: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Unified diff of PATH: its last change; or FROM → HEAD; or FROM → TO (revisions or dates).
    Diff {
        path: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// PATH@REV or PATH@DATE (default HEAD) to stdout.
    Cat { spec: String },
    /// Restore PATH@REV (or @DATE) with a new commit.
    Revert { spec: String },
}

fn spec(
    name: Option<String>,
    a: HostArgs,
    unset: Vec<String>,
    approve: bool,
) -> pxelator::inventory::edit::HostSpec {
    pxelator::inventory::edit::HostSpec {
        name,
        mac: a.mac,
        ip: a.ip,
        profile: a.profile,
        args: a.args,
        params: a.params,
        unset,
        approve,
    }
}

fn author(flag: Option<&str>) -> pxelator::confrepo::Author {
    flag.map(pxelator::confrepo::Author::parse)
        .unwrap_or_else(pxelator::confrepo::Author::invoking_user)
}

fn host(config: &std::path::Path, who: Option<&str>, cmd: HostCmd) -> anyhow::Result<()> {
    use pxelator::commands as c;
    let cfg = Config::load(config)?;
    let a = author(who);
    let out = match cmd {
        HostCmd::Add {
            name,
            name_flag,
            set,
        } => c::host_add(&cfg, &spec(name.or(name_flag), set, vec![], false), &a)?.to_string(),
        HostCmd::List => c::host_table(&c::host_list(&cfg)),
        HostCmd::Show { who } => c::host_show(&cfg, &who)?,
        HostCmd::Edit {
            who,
            name,
            set,
            unset,
            approve,
        } => c::host_edit(&cfg, &who, &spec(name, set, unset, approve), &a)?.to_string(),
        HostCmd::Rm { who } => c::host_rm(&cfg, &who, &a)?.to_string(),
        HostCmd::NextBoot { who, next } => {
            let next = match next.as_str() {
                "clear" => None,
                n => Some(n.parse().map_err(anyhow::Error::msg)?),
            };
            let e = c::host_next_boot(&cfg, &who, next, &a.name)?;
            if let Some(audit) = &cfg.audit {
                pxelator::audit::record_events(audit, std::slice::from_ref(&e))?;
            }
            match (&e, next) {
                (pxelator::core::event::Event::NextBootSet { host, mac, .. }, Some(n)) => format!(
                    "{} ({mac}) boots {} once, at its next boot",
                    host.as_deref().unwrap_or("(no name)"),
                    if n == pxelator::core::boot::NextBoot::Local {
                        "its local disk"
                    } else {
                        "from the network"
                    }
                ),
                _ => format!("{who}: no one-time boot override"),
            }
        }
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn history(config: &std::path::Path, who: Option<&str>, cmd: HistoryCmd) -> anyhow::Result<()> {
    use pxelator::commands as c;
    use std::io::Write;
    let cfg = Config::load(config)?;
    let out = match cmd {
        HistoryCmd::Log { path, limit, json } => {
            let log = c::history_log(&cfg, path.as_deref(), limit)?;
            if json {
                serde_json::to_string_pretty(&log)? + "\n"
            } else {
                c::log_text(&log)
            }
        }
        HistoryCmd::Diff { path, from, to } => {
            c::history_diff(&cfg, &path, from.as_deref(), to.as_deref())?
        }
        HistoryCmd::Cat { spec } => {
            std::io::stdout().write_all(&c::history_cat(&cfg, &spec)?)?;
            return Ok(());
        }
        HistoryCmd::Revert { spec } => {
            format!("{}\n", c::history_revert(&cfg, &spec, &author(who))?)
        }
    };
    print!("{out}");
    Ok(())
}

#[derive(Subcommand)]
enum BackupCmd {
    /// Pull now: the named hosts, or all in backup.toml.
    Run { hosts: Vec<String> },
    /// The last result of every host.
    Status,
    /// Write HOST:PATH back as of @REV or @DATE (default HEAD), over ssh.
    Restore {
        spec: String,
        /// Only show what would change on the host.
        #[arg(long)]
        dry_run: bool,
    },
}

fn backup(config: &std::path::Path, who: Option<&str>, cmd: BackupCmd) -> anyhow::Result<bool> {
    use anyhow::Context;
    use pxelator::backup as b;
    let cfg = Config::load(config)?;
    let inv = pxelator::confrepo::current_inventory(&cfg).0;
    let events = std::sync::Mutex::new(Vec::new());
    let emit = |e: pxelator::core::event::Event| events.lock().expect("events").push(e);
    let mut failure = None;
    let ok = match cmd {
        BackupCmd::Run { hosts } => {
            let plans = b::load_plans(&cfg, &inv)?;
            if plans.hosts.is_empty() {
                anyhow::bail!(
                    "no hosts to pull: list them in {}/backup.toml, e.g. [host.kiosk1]",
                    cfg.conf_repo.display()
                );
            }
            let results =
                pxelator::commands::backup_run(&cfg, &plans, &hosts, &author(who), &emit)?;
            for r in &results {
                println!(
                    "{:<20} {} {}",
                    r.host,
                    if r.ok { "ok  " } else { "FAIL" },
                    r.message
                );
            }
            results.iter().all(|r| r.ok)
        }
        BackupCmd::Status => {
            for r in b::load_status(&cfg) {
                println!(
                    "{:<20} {} {} {}",
                    r.host,
                    pxelator::clock::rfc3339(r.time),
                    if r.ok { "ok  " } else { "FAIL" },
                    r.message
                );
            }
            true
        }
        BackupCmd::Restore { spec, dry_run } => {
            let (target, rev) = pxelator::confrepo::split_at_rev(&spec);
            let (host, path) = target
                .split_once(':')
                .context("expected HOST:/path[@REV|@DATE], e.g. kiosk1:/etc/hosts@2026-11-20")?;
            let out = b::restore_host_file(
                &cfg,
                &inv,
                host,
                path,
                rev.unwrap_or("HEAD"),
                dry_run,
                &emit,
            );
            match out {
                Ok(out) => {
                    print!("{out}");
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        }
    };
    if let Some(a) = &cfg.audit {
        pxelator::audit::record_events(a, &events.into_inner().expect("events"))?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(ok)
}

/// A recipe, the machines it runs on, its parameters.
#[derive(clap::Args)]
struct RecipeOn {
    name: String,
    #[arg(required = true)]
    targets: Vec<String>,
    /// A parameter, NAME=VALUE (repeat for more).
    #[arg(long = "param")]
    params: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum RecipeCmd {
    /// The recipes there are (the conf repo's and the built-in ones) and their parameters.
    List,
    /// A recipe's script.
    Show { name: String },
    /// Check a recipe on machines: `ok` or `drift` per host (nothing is changed); exit 2 if
    /// any host drifted or failed.
    Check(RecipeOn),
    /// Check, apply where the check fails, check again: `ok`, `fixed` or `failed` per host;
    /// exit 2 if any failed.
    Apply(RecipeOn),
    /// Make a recipe from a file in the host-file backups: HOST:/path[@REV|@DATE] becomes
    /// recipes/NAME.sh (a commit) that makes that file so on other machines.
    Capture {
        spec: String,
        #[arg(long = "as")]
        name: String,
        /// Take the file from the host's network-root overlay as it is now (a file it changed),
        /// not from its backups.
        #[arg(long)]
        overlay: bool,
    },
    /// Check recipes.toml's assignments now (what the daemon does on its schedule).
    Assigned,
    /// The newest result of each recipe on each machine (the daemon's checks and admins' runs),
    /// from the audit store; all machines, or the ones named.
    Status {
        targets: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

fn recipe_rows(rows: &[pxelator::remote::HostRecipe], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    }
    Ok(())
}

fn print_recipe_row(r: &pxelator::remote::HostRecipe) {
    println!(
        "{:<20} {:<7} {:>7.1}s  {}",
        r.host,
        r.outcome.name(),
        r.duration_ms as f64 / 1000.0,
        r.message.as_deref().unwrap_or("")
    );
}

/// `recipe check|apply NAME TARGETS --param …`: rows as hosts finish (or JSON at the end);
/// true when every host is ok (check) or ok/fixed (apply).
fn recipe_on(
    cfg: &Config,
    inv: &pxelator::inventory::Inventory,
    on: &RecipeOn,
    mode: pxelator::core::recipe::Mode,
    user: &str,
    emit: &(dyn Fn(pxelator::core::event::Event) + Sync),
) -> anyhow::Result<bool> {
    use pxelator::core::recipe::{self, Mode, Outcome};
    use pxelator::remote as r;
    let json = on.json;
    let rec = r::load_recipe(cfg, &on.name)?;
    let given = recipe::parse_params(&on.params).map_err(anyhow::Error::msg)?;
    // Parameters are checked before any host is reached.
    recipe::bind(&rec, &given).map_err(anyhow::Error::msg)?;
    let hosts = r::targets(cfg, inv, &on.targets)?;
    let rows = r::recipe_run(&hosts, &rec, &given, mode, user, emit, &|row| {
        if !json {
            print_recipe_row(row)
        }
    })?;
    recipe_rows(&rows, json)?;
    Ok(rows.iter().all(|h| match mode {
        Mode::Check => h.outcome == Outcome::Ok,
        Mode::Apply => matches!(h.outcome, Outcome::Ok | Outcome::Fixed),
    }))
}

/// `pxelator run`: the live table (or JSON), the run_finished event into the audit store;
/// true when every host exited 0.
fn run_cmd(
    config: &std::path::Path,
    targets: &[String],
    command: &[String],
    timeout: std::time::Duration,
    (full, json): (bool, bool),
    a: &pxelator::confrepo::Author,
) -> anyhow::Result<bool> {
    use pxelator::remote as r;
    let cfg = Config::load(config)?;
    let inv = pxelator::confrepo::current_inventory(&cfg).0;
    let hosts = r::targets(&cfg, &inv, targets)?;
    let events = std::sync::Mutex::new(Vec::new());
    let emit = |e: pxelator::core::event::Event| events.lock().expect("events").push(e);
    if !json {
        println!(
            "{:<20} {:<16} {:>5} {:>8}  OUTPUT",
            "HOST", "RESULT", "EXIT", "TIME"
        );
    }
    let rows = r::run(
        &hosts,
        &command.join(" "),
        timeout,
        &format!("{} <{}>", a.name, a.email),
        &emit,
        &|h| {
            if !json {
                println!(
                    "{:<20} {:<16} {:>5} {:>7.2}s  {}",
                    h.host,
                    h.outcome,
                    h.exit.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    h.duration_ms as f64 / 1000.0,
                    h.first_lines(2)
                );
            }
        },
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if full {
        for h in &rows {
            println!("\n== {} ({}) ==", h.host, h.outcome);
            print!("{}", h.stdout);
            if !h.stderr.is_empty() {
                print!("-- stderr --\n{}", h.stderr);
            }
            if h.truncated {
                println!("-- cut after {} bytes --", r::MAX_OUTPUT);
            }
        }
    }
    if let Some(au) = &cfg.audit {
        pxelator::audit::record_events(au, &events.into_inner().expect("events"))?;
    }
    Ok(rows.iter().all(|h| h.outcome == "ok"))
}

fn recipe_cmd(
    config: &std::path::Path,
    a: &pxelator::confrepo::Author,
    cmd: RecipeCmd,
) -> anyhow::Result<bool> {
    use pxelator::core::recipe::{Mode, Outcome};
    use pxelator::remote as r;
    let cfg = Config::load(config)?;
    let inv = pxelator::confrepo::current_inventory(&cfg).0;
    let user = format!("{} <{}>", a.name, a.email);
    let events = std::sync::Mutex::new(Vec::new());
    let emit = |e: pxelator::core::event::Event| events.lock().expect("events").push(e);
    let ok = match cmd {
        RecipeCmd::List => {
            let listed = r::list_recipes(&cfg)?;
            for l in &listed {
                let rec = match &l.recipe {
                    Ok(rec) => rec,
                    Err(e) => {
                        println!("{:<24} {:<10} UNUSABLE: {e}", l.name, l.from);
                        continue;
                    }
                };
                println!("{:<24} {:<10} {}", l.name, l.from, rec.about);
                for p in &rec.params {
                    let d = p
                        .default
                        .as_deref()
                        .map(|d| format!(" (default {d})"))
                        .unwrap_or_default();
                    println!("{:<24}   --param {}=…  {}{d}", "", p.name, p.about);
                }
            }
            listed.iter().all(|l| l.recipe.is_ok())
        }
        RecipeCmd::Show { name } => {
            print!("{}", r::load_recipe(&cfg, &name)?.script);
            true
        }
        RecipeCmd::Check(on) => recipe_on(&cfg, &inv, &on, Mode::Check, &user, &emit)?,
        RecipeCmd::Apply(on) => recipe_on(&cfg, &inv, &on, Mode::Apply, &user, &emit)?,
        RecipeCmd::Capture {
            spec,
            name,
            overlay,
        } => {
            let from = if overlay {
                r::CaptureFrom::Overlay
            } else {
                r::CaptureFrom::Backups
            };
            let c = r::capture(&cfg, &spec, from, &name, a, &emit)?;
            println!("{c}");
            true
        }
        RecipeCmd::Status { targets, json } => {
            let rows = r::recipe_status(&cfg, &inv, &targets)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for l in &rows {
                    println!(
                        "{:<20} {:<20} {:<7} {:<29} {:<10} {}",
                        l.host,
                        l.recipe,
                        l.outcome,
                        l.time,
                        l.user,
                        l.message.as_deref().unwrap_or("")
                    );
                }
            }
            true
        }
        RecipeCmd::Assigned => {
            let Some(asg) = r::load_assignments(&cfg)? else {
                anyhow::bail!(
                    "no recipes.toml in {}: nothing is assigned",
                    cfg.conf_repo.display()
                );
            };
            let rows = r::check_assignments(&cfg, &inv, &asg, &user, &emit);
            for (rec, h) in &rows {
                print!("{rec:<20} ");
                print_recipe_row(h);
            }
            rows.iter()
                .all(|(_, h)| matches!(h.outcome, Outcome::Ok | Outcome::Fixed))
        }
    };
    if let Some(au) = &cfg.audit {
        pxelator::audit::record_events(au, &events.into_inner().expect("events"))?;
    }
    Ok(ok)
}

#[derive(Subcommand)]
enum PowerCmd {
    /// Switch machines on (hostname, MAC, IP, or a group: machines with param group = "NAME"):
    /// by Intel AMT when the machine has an amt param, else by a Wake-on-LAN magic packet to
    /// its subnet's broadcast address.
    On {
        #[arg(required = true)]
        who: Vec<String>,
        /// Wake-on-LAN UDP port (default: power.toml's wol_port, else 9; some cards listen on 7).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Switch machines off: by Intel AMT, else with the [ssh] command of power.toml.
    Off {
        #[arg(required = true)]
        who: Vec<String>,
    },
    /// Reset machines (Intel AMT master bus reset).
    Reset {
        #[arg(required = true)]
        who: Vec<String>,
    },
    /// Read machines' power state (Intel AMT).
    Status {
        #[arg(required = true)]
        who: Vec<String>,
    },
}

fn power(config: &std::path::Path, cmd: PowerCmd) -> anyhow::Result<bool> {
    use pxelator::core::event::Event;
    use pxelator::power::{self, schedule::Action};
    let cfg = Config::load(config)?;
    let inv = pxelator::confrepo::current_inventory(&cfg).0;
    let (who, action, port) = match cmd {
        PowerCmd::On { who, port } => (who, Some(Action::On), port),
        PowerCmd::Off { who } => (who, Some(Action::Off), None),
        PowerCmd::Reset { who } => (who, Some(Action::Reset), None),
        PowerCmd::Status { who } => (who, None, None),
    };
    let events = power::request(&cfg, &inv, &who, action, port)?;
    let mut ok = true;
    for e in &events {
        match e {
            Event::PowerRequested {
                host,
                mac,
                action,
                method,
                target,
            } => println!("{host} ({mac}): {action} by {method} via {target}"),
            Event::PowerStateSeen {
                host,
                mac,
                state,
                value,
                target,
            } => println!("{host} ({mac}): {state} (PowerState {value}, from {target})"),
            Event::PowerFailed { host, reason, .. } => {
                ok = false;
                eprintln!("{host}: {reason}");
            }
            _ => {}
        }
    }
    if let Some(a) = &cfg.audit {
        pxelator::audit::record_events(a, &events)?;
    }
    Ok(ok)
}

/// Records what a CLI command did in the audit store (when there is one).
fn record(cfg: &Config, events: &[pxelator::core::event::Event]) -> anyhow::Result<()> {
    if let Some(a) = &cfg.audit {
        pxelator::audit::record_events(a, events)?;
    }
    Ok(())
}

fn restore_vm(
    config: &std::path::Path,
    spec: &str,
    name: &str,
    ip: std::net::Ipv4Addr,
    profile: Option<&str>,
    (qemu, pool): (bool, bool),
    author: &pxelator::confrepo::Author,
) -> anyhow::Result<bool> {
    let cfg = Config::load(config)?;
    let r = pxelator::restorevm::restore_vm(&cfg, spec, name, ip, profile, pool, author)?;
    if let Some(d) = &r.rbd {
        println!(
            "its root filesystem is the RBD image {} ({} MB)",
            d.image,
            d.bytes >> 20
        );
    }
    println!(
        "{} as of {}: {} files over base {} as {} ({}, {}), profile {}",
        r.host, r.rev, r.files, r.base, r.name, r.ip, r.mac, r.profile
    );
    if !r.rewritten.is_empty() {
        println!(
            "rewritten for the new name and address: {}",
            r.rewritten.join(", ")
        );
    }
    println!(
        "registered {} (commit {}); it netboots its root once the daemon has mounted it (a few seconds)",
        r.name,
        r.commit.as_deref().unwrap_or("none")
    );
    if qemu {
        let bridge = cfg
            .dhcp
            .interfaces
            .first()
            .cloned()
            .unwrap_or_else(|| "br0".into());
        println!("{}", pxelator::restorevm::qemu_command(&r, &bridge));
    }
    record(
        &cfg,
        &[pxelator::core::event::Event::RestoredVm {
            host: r.host.clone(),
            rev: r.rev.clone(),
            name: r.name.clone(),
            ip: r.ip,
            mac: r.mac,
            files: r.files,
        }],
    )?;
    Ok(true)
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Make the pool: mon, mgr (Dashboard API on 127.0.0.1) and the appliance's own OSD on
    /// DISK (a blank device or file; pxelator never takes a disk nobody named).
    Init {
        #[arg(long)]
        disk: std::path::PathBuf,
        /// The appliance's name in the cluster.
        #[arg(long, default_value = "appliance")]
        name: String,
    },
    /// Health, OSDs by host (up/in, usage), members not joined yet, noout flags.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// What is where: each pool's replicas, bytes and objects.
    Usage {
        #[arg(long)]
        json: bool,
    },
    /// Retire a member: mark its OSD out for good; its data is copied to the others.
    Drain { host: String },
    /// Remove a drained member's OSD (refused while it holds the only copy of any data).
    Rm {
        host: String,
        #[arg(long)]
        force: bool,
    },
    /// Print the join script a member's live system runs at boot (also at /pool/join.sh).
    JoinScript,
    /// Run the appliance's Ceph daemon KIND (mon, mgr or osd) in the foreground: what the
    /// image's units pxelator-ceph-KIND.service start. With --check only say whether it would
    /// (exit status 1, which makes the unit's ExecCondition skip it, when this machine has no
    /// pool or pxelator's keeper runs its daemons).
    Daemon {
        kind: String,
        #[arg(long)]
        check: bool,
    },
}

fn pool(config: &std::path::Path, cmd: PoolCmd) -> anyhow::Result<bool> {
    use pxelator::core::event::Event;
    let cfg = Config::load(config)?;
    let events = match cmd {
        PoolCmd::Daemon { kind, check } => {
            let (program, args) = pxelator::pool::daemon_command(&cfg, &kind)?;
            if check {
                println!("{program} {}", args.join(" "));
                return Ok(true);
            }
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new(&program).args(&args).exec();
            anyhow::bail!("running {program}: {e} (is ceph-{kind} installed?)");
        }
        PoolCmd::Init { disk, name } => {
            let info = pxelator::pool::init(&cfg, &disk, &name, &|s| eprintln!("pool init: {s}"))?;
            println!(
                "pool {} made: mon and mgr {} on {}, osd.{} on {}; members join when they boot with a pool_disk param",
                info.fsid,
                info.name,
                info.mon_ip,
                info.osd,
                info.disk.display()
            );
            vec![Event::PoolInitialized {
                fsid: info.fsid,
                osd: info.osd,
                disk: info.disk,
            }]
        }
        PoolCmd::Status { json } => {
            let inv = pxelator::confrepo::current_inventory(&cfg).0;
            let st = pxelator::pool::status(&cfg, &inv)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!(
                    "pool {}: {} (daemons run by {})",
                    st.fsid,
                    st.health.status,
                    match st.supervisor {
                        pxelator::pool::Supervisor::Systemd => "systemd",
                        pxelator::pool::Supervisor::Pxelator => "pxelator",
                    }
                );
                for c in &st.health.checks {
                    println!("  {c}");
                }
                println!(
                    "{:<20} {:>5} {:>4} {:>4} {:>10} {:>10}  flags",
                    "host", "osd", "up", "in", "used MB", "size MB"
                );
                for o in &st.osds {
                    println!(
                        "{:<20} {:>5} {:>4} {:>4} {:>10} {:>10}  {}",
                        o.view.host,
                        o.view.id,
                        if o.view.up { "up" } else { "down" },
                        if o.view.is_in { "in" } else { "out" },
                        o.used >> 20,
                        o.total >> 20,
                        if st.noout.contains(&o.view.id) {
                            "noout"
                        } else {
                            ""
                        }
                    );
                }
                for h in &st.waiting {
                    println!(
                        "{h:<20}     -  not joined yet (pool_disk set; it joins when it boots)"
                    );
                }
                for p in &st.problems {
                    println!("problem: {p}");
                }
            }
            Vec::new()
        }
        PoolCmd::Usage { json } => {
            let u = pxelator::pool::usage(&cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&u)?);
            } else {
                for p in &u.pools {
                    println!(
                        "pool {:<20} {} copies (min {})  {:>10} MB stored  {} objects",
                        p.name,
                        p.size,
                        p.min_size,
                        p.stored >> 20,
                        p.objects
                    );
                }
                for (name, bytes) in &u.images {
                    println!("image {name:<40} {:>10} MB (VM disk)", bytes >> 20);
                }
                for (name, bytes) in &u.copies {
                    println!("copy  {name:<40} {:>10} MB", bytes.div_ceil(1 << 20));
                }
            }
            Vec::new()
        }
        PoolCmd::Drain { host } => {
            let e = pxelator::pool::drain(&cfg, &host)?;
            println!("{host}'s OSD is out; its data is being copied to the others (watch `pxelator pool status` for HEALTH_OK, then `pxelator pool rm {host}`)");
            vec![e]
        }
        PoolCmd::Rm { host, force } => {
            let e = pxelator::pool::remove(&cfg, &host, force)?;
            println!("{host}'s OSD removed from the pool; remove its pool_disk param so it does not join again");
            vec![e]
        }
        PoolCmd::JoinScript => {
            print!("{}", pxelator::pool::JOIN_SCRIPT);
            Vec::new()
        }
    };
    record(&cfg, &events)?;
    Ok(true)
}

#[derive(Subcommand)]
enum BaseCmd {
    /// Build the next version of NAME from overlay/NAME.toml (and the files under
    /// overlay/NAME/) as committed in the conf repo, with mmdebstrap; it becomes current.
    Build { name: String },
    /// Built versions; "*" marks the current one of each name.
    List,
    /// Remove NAME-vN (refused while a profile boots it or a host's overlay lies over it).
    Rm { version: String },
}

fn base(config: &std::path::Path, cmd: BaseCmd) -> anyhow::Result<bool> {
    let cfg = Config::load(config)?;
    let events = match cmd {
        BaseCmd::Build { name } => {
            let (info, event) = pxelator::commands::base_build(&cfg, &name, &|step| {
                eprintln!("base {name}: {step}")
            })?;
            println!(
                "built {} ({} packages, kernel {}, {} entries, {} MB) in {}",
                info.dir_name(),
                info.packages.len(),
                info.kernel,
                info.files,
                info.bytes.div_ceil(1 << 20),
                pxelator::base::root_dir(&cfg.state_dir, &info).display()
            );
            println!(
                "a profile boots it with boot = \"nfsroot\" and base = \"{}\" (current version) or \"{}\"",
                info.name,
                info.dir_name()
            );
            vec![event]
        }
        BaseCmd::List => {
            let inv = pxelator::confrepo::current_inventory(&cfg).0;
            for (i, current, users) in pxelator::commands::base_list(&cfg, &inv) {
                println!(
                    "{} {:<28} {:>6} MB  {}  {} packages  kernel {}  recipe {}{}{}",
                    if current { "*" } else { " " },
                    i.dir_name(),
                    i.bytes.div_ceil(1 << 20),
                    i.built,
                    i.packages.len(),
                    i.kernel,
                    &i.recipe[..12.min(i.recipe.len())],
                    i.promoted_from
                        .as_deref()
                        .map(|p| format!("  promoted from {p}"))
                        .unwrap_or_default(),
                    if users.is_empty() {
                        String::new()
                    } else {
                        format!("  (used by {})", users.join(", "))
                    }
                );
            }
            Vec::new()
        }
        BaseCmd::Rm { version } => {
            let event = pxelator::commands::base_remove(&cfg, &version)?;
            println!("removed base {version}");
            vec![event]
        }
    };
    record(&cfg, &events)?;
    Ok(true)
}

#[derive(Subcommand)]
enum OverlayCmd {
    /// Files HOST added, changed and deleted against its base, with diffs of changed text
    /// files. What the system writes by itself (logs, caches, machine-id; the base's `ignore`)
    /// is left out unless --all.
    Diff {
        host: String,
        #[arg(long)]
        all: bool,
        /// Only the list of paths, no content diffs.
        #[arg(long)]
        names: bool,
    },
    /// A new version of base NAME: the base HOST's overlay lies over plus the chosen paths of
    /// its overlay (built offline; hosts following NAME move onto it at their next boot).
    Promote {
        host: String,
        /// Absolute paths, comma-separated or repeated: --paths /etc/motd,/etc/ssh/sshd_config
        #[arg(long, value_delimiter = ',', required = true)]
        paths: Vec<String>,
        #[arg(long)]
        to: String,
    },
    /// Write HOST's overlay to a tar (owners, modes, xattrs, whiteouts) and list it.
    Snapshot { host: String },
    /// HOST's snapshots; with --remove NAME, delete that one.
    Snapshots {
        host: String,
        #[arg(long)]
        remove: Option<String>,
    },
    /// Start HOST's overlay again from its base at its next boot (the old one kept as a
    /// snapshot).
    Reset { host: String },
    /// Delete the overlay of a host that no longer boots a network root (snapshots stay).
    Rm { host: String },
}

fn overlay(config: &std::path::Path, cmd: OverlayCmd) -> anyhow::Result<bool> {
    let cfg = Config::load(config)?;
    let events = match cmd {
        OverlayCmd::Diff { host, all, names } => {
            let d = pxelator::commands::overlay_diff(&cfg, &host, all)?;
            println!("# {} over base {}", d.host, d.base);
            for c in &d.changes {
                let mark = match c.kind {
                    pxelator::overlay::ChangeKind::Added => "A",
                    pxelator::overlay::ChangeKind::Changed => "M",
                    pxelator::overlay::ChangeKind::Deleted => "D",
                };
                let slash = if c.entry == pxelator::overlay::EntryKind::Dir {
                    "/"
                } else {
                    ""
                };
                match &c.detail {
                    Some(det) => println!("{mark} /{}{slash}  ({det})", c.path),
                    None => println!("{mark} /{}{slash}", c.path),
                }
            }
            if d.hidden > 0 {
                println!(
                    "# {} more under the base's ignored paths (--all shows them)",
                    d.hidden
                );
            }
            if !names {
                for (_, text) in &d.diffs {
                    print!("{text}");
                }
            }
            Vec::new()
        }
        OverlayCmd::Promote { host, paths, to } => {
            let p = pxelator::commands::overlay_promote(
                &cfg,
                &host,
                &paths,
                &to,
                &pxelator::confrepo::Author::invoking_user(),
            )?;
            println!(
                "promoted {} of {host} into {} ({} entries); hosts on {} move onto it at their next boot",
                paths.join(", "),
                p.info.dir_name(),
                p.info.files,
                p.info.name
            );
            match &p.committed {
                Some(c) => println!("{c}"),
                None => println!(
                    "(no overlay/{to}.toml in the conf repo: the promoted files are in {} only)",
                    p.info.dir_name()
                ),
            }
            if !p.not_recorded.is_empty() {
                println!(
                    "in {} but not in the conf repo (links, special or large files): {}",
                    p.info.dir_name(),
                    p.not_recorded.join(", ")
                );
            }
            vec![p.event]
        }
        OverlayCmd::Snapshot { host } => {
            let (file, event) = pxelator::commands::overlay_snapshot(&cfg, &host)?;
            println!("{}", file.display());
            if let pxelator::core::event::Event::OverlaySnapshot {
                pool_copy: Some(c), ..
            } = &event
            {
                println!("copied into the storage pool as {c}");
            }
            vec![event]
        }
        OverlayCmd::Snapshots {
            host,
            remove: Some(name),
        } => {
            let gone = pxelator::nfsroot::remove_snapshot(&cfg.state_dir, &host, &name)
                .map_err(anyhow::Error::msg)?;
            println!("removed {}", gone.display());
            Vec::new()
        }
        OverlayCmd::Snapshots { host, remove: None } => {
            for (file, bytes) in pxelator::nfsroot::snapshots(&cfg.state_dir, &host) {
                println!("{:>12} bytes  {}", bytes, file.display());
            }
            Vec::new()
        }
        OverlayCmd::Rm { host } => {
            let inv = pxelator::confrepo::current_inventory(&cfg).0;
            pxelator::nfsroot::remove_overlay(&cfg.state_dir, &inv, &host)
                .map_err(anyhow::Error::msg)?;
            println!("removed {host}'s overlay (its snapshots stay)");
            Vec::new()
        }
        OverlayCmd::Reset { host } => {
            let event = pxelator::commands::overlay_reset(&cfg, &host)?;
            println!("{host}'s overlay starts again from its base when it next boots (the old one is kept as a snapshot)");
            vec![event]
        }
    };
    record(&cfg, &events)?;
    Ok(true)
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Take kernel, initrd and squashfs out of a live ISO (or a directory holding them, or
    /// their live/ subdirectory) and store them as the next version of NAME, made current.
    Import {
        source: PathBuf,
        /// Default: the file name without .iso.
        #[arg(long)]
        name: Option<String>,
    },
    /// Stored images and versions; "*" marks the current one of each name.
    List,
    /// Remove NAME-vN, or every version of NAME (refused while a profile boots it).
    Rm {
        image: String,
        /// Remove even when a profile boots it.
        #[arg(long)]
        force: bool,
    },
    /// Make PROFILE boot IMAGE: NAME follows its current version, NAME-vN pins one (a commit).
    Use { profile: String, image: String },
}

fn image(config: &std::path::Path, who: Option<&str>, cmd: ImageCmd) -> anyhow::Result<bool> {
    use pxelator::image;
    let cfg = Config::load(config)?;
    match cmd {
        ImageCmd::Import { source, name } => {
            let name = name.unwrap_or_else(|| image::default_name(&source));
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar.set_message(format!("importing {name}"));
            let res = image::import(&cfg.boot_dir, &source, &name, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let info = res?;
            let dir = image::images_dir(&cfg.boot_dir).join(info.dir_name());
            println!(
                "imported {} as {} ({})",
                source.display(),
                info.dir_name(),
                dir.display()
            );
            for f in &info.files {
                println!(
                    "  {:<20} {:>12} bytes  sha256 {}  from {}",
                    f.name, f.size, f.sha256, f.from
                );
            }
            println!(
                "a profile uses it with image = \"{}\" (current version) or \"{}\"",
                info.name,
                info.dir_name()
            );
            if let Some(a) = &cfg.audit {
                pxelator::audit::record_events(
                    a,
                    &[pxelator::core::event::Event::ImageImported {
                        name: info.name.clone(),
                        version: info.version,
                        source: info.source.clone(),
                        squashfs_sha256: info.squashfs_sha256().to_owned(),
                    }],
                )?;
            }
        }
        ImageCmd::List => {
            let inv = pxelator::confrepo::current_inventory(&cfg).0;
            for (i, current, users) in pxelator::commands::image_list(&cfg.boot_dir, &inv) {
                let size: u64 = i.files.iter().map(|f| f.size).sum();
                let sha = i.squashfs_sha256();
                let sha = &sha[..16.min(sha.len())];
                println!(
                    "{} {:<32} {:>6} MB  {}  squashfs sha256 {}…  from {}{}",
                    if current { "*" } else { " " },
                    i.dir_name(),
                    size.div_ceil(1 << 20),
                    i.imported,
                    sha,
                    i.source,
                    if users.is_empty() {
                        String::new()
                    } else {
                        format!("  (profiles: {})", users.join(", "))
                    }
                );
            }
        }
        ImageCmd::Rm { image: what, force } => {
            for d in pxelator::commands::image_remove(&cfg, &what, force)? {
                println!("removed {d}");
            }
        }
        ImageCmd::Use { profile, image } => {
            println!(
                "{}",
                pxelator::commands::profile_use_image(&cfg, &profile, &image, &author(who))?
            );
        }
    }
    Ok(true)
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Events matching a MongoDB-style filter, as JSON lines, e.g. '{"mac": "52:54:00:12:34:56"}'.
    Find {
        filter: String,
        /// e.g. '{"time": -1}'
        #[arg(long)]
        sort: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        /// Print the query plan (which index is used) instead of results.
        #[arg(long)]
        explain: bool,
    },
    /// Aggregation pipeline, e.g. '[{"$match": {"kind": "tftp_finished"}},
    /// {"$group": {"_id": "$ip", "avg_ms": {"$avg": "$duration_ms"}}}]'.
    Aggregate {
        pipeline: String,
        /// Print the query plan (which index is used) instead of results.
        #[arg(long)]
        explain: bool,
    },
    /// The latest event for a MAC, an IPv4 address or a hostname.
    LastSeen { who: String },
    /// Number of stored events.
    Count,
    /// Import a CouchDB dump (the JSON of GET /<db>/_all_docs?include_docs=true).
    ImportCouchdb { dump: PathBuf },
    /// Write every event, in time order, as JSON lines or as BSON for mongorestore.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: pxelator::audit::migrate::ExportFormat,
        /// Output file ("-" for stdout).
        #[arg(long, short, default_value = "-")]
        out: PathBuf,
    },
}

fn capture(
    config: &std::path::Path,
    req: &pxelator::commands::CaptureRequest,
    output: &std::path::Path,
) -> anyhow::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let cfg = Config::load(config)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    let (s, event) = pxelator::commands::capture(
        &cfg,
        req,
        std::io::BufWriter::new(file),
        &user,
        &output.display().to_string(),
    )?;
    record(&cfg, std::slice::from_ref(&event))?;
    eprintln!(
        "{}: {} packets, {} bytes in {:.1} s ({} frames seen; stopped by {})",
        output.display(),
        s.packets,
        s.bytes,
        s.secs,
        s.seen,
        s.stopped_by
    );
    Ok(true)
}

fn leases(config: &std::path::Path, json: bool) -> anyhow::Result<bool> {
    let rows = pxelator::commands::leases(&Config::load(config)?)?;
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(true);
    }
    println!(
        "{:<15}  {:<17}  {:<20}  {:<8}  EXPIRES",
        "IP", "MAC", "HOSTNAME", "STATE"
    );
    for r in &rows {
        println!(
            "{:<15}  {:<17}  {:<20}  {:<8}  {}",
            r.ip.to_string(),
            r.mac.to_string(),
            r.hostname.as_deref().unwrap_or("-"),
            r.state,
            r.expires_at
        );
    }
    Ok(true)
}

fn audit(config: &std::path::Path, cmd: AuditCmd) -> anyhow::Result<bool> {
    use anyhow::Context;
    let cfg = Config::load(config)?;
    let audit = cfg
        .audit
        .context("auditing is off in this config ([audit] enabled = false)")?;
    if let AuditCmd::ImportCouchdb { dump } = &cmd {
        let mut store = pxelator::audit::open_store(&audit)?;
        store.prepare()?;
        let start = std::time::Instant::now();
        let r = pxelator::audit::migrate::import_couchdb(dump, &mut *store)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{}: imported {} documents in {secs:.1} s ({:.0}/s), skipped {} design documents, rejected {}",
            dump.display(),
            r.imported,
            r.imported as f64 / secs.max(1e-9),
            r.skipped_design,
            r.rejected
        );
        if let Some(f) = r.rejected_file {
            eprintln!("rejected rows and why: {}", f.display());
            return Ok(false);
        }
        return Ok(true);
    }
    // A fresh install has no store file until the daemon has run: nothing was recorded, which
    // is an answer, not an error.
    if let pxelator::config::AuditBackend::Sqlite(path) = &audit.backend {
        if !path.exists() {
            let why = format!(
                "nothing recorded yet ({} does not exist; pxelator serve creates it)",
                path.display()
            );
            match &cmd {
                AuditCmd::LastSeen { who } => {
                    eprintln!("{who}: never seen: {why}");
                    return Ok(false);
                }
                AuditCmd::Count => {
                    println!("0");
                    return Ok(true);
                }
                AuditCmd::Find { .. } | AuditCmd::Aggregate { .. } => {
                    eprintln!("{why}");
                    return Ok(true);
                }
                _ => {}
            }
        }
    }
    let store = pxelator::audit::open_reader(&audit)?;
    let json = |what: &str, s: &str| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(s).with_context(|| format!("{what} {s:?} is not valid JSON"))
    };
    match cmd {
        AuditCmd::Find {
            filter,
            sort,
            limit,
            explain,
        } => {
            let f = json("filter", &filter)?;
            let s = sort.as_deref().map(|s| json("sort", s)).transpose()?;
            if explain {
                for line in store.explain(&f, s.as_ref())? {
                    println!("{line}");
                }
                return Ok(true);
            }
            for doc in store.find(&f, s.as_ref(), limit)? {
                println!("{doc}");
            }
            Ok(true)
        }
        AuditCmd::Aggregate { pipeline, explain } => {
            let p = json("pipeline", &pipeline)?;
            if explain {
                for line in store.explain_aggregate(&p)? {
                    println!("{line}");
                }
                return Ok(true);
            }
            for doc in store.aggregate(&p)? {
                println!("{doc}");
            }
            Ok(true)
        }
        AuditCmd::LastSeen { who } => match store.last_seen(&who)? {
            Some(doc) => {
                println!("{doc}");
                Ok(true)
            }
            None => {
                eprintln!("{who}: never seen");
                Ok(false)
            }
        },
        AuditCmd::Count => {
            println!("{}", store.count()?);
            Ok(true)
        }
        AuditCmd::Export { format, out } => {
            let n = if out.as_os_str() == "-" {
                let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                pxelator::audit::migrate::export(&*store, format, &mut w)?
            } else {
                let f = std::fs::File::create(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                let mut w = std::io::BufWriter::new(f);
                pxelator::audit::migrate::export(&*store, format, &mut w)?
            };
            eprintln!("exported {n} events");
            Ok(true)
        }
        AuditCmd::ImportCouchdb { .. } => unreachable!("handled above"),
    }
}

/// 0 done; 2 done, but something it acted on failed (a host, a machine) or was not found;
/// 1 the command itself failed (the error is printed).
/// `pxelator setup`: one line per thing made, or the reason nothing was.
/// A line from `input` with the terminal's echo off when it is one (a password).
fn read_secret(input: &mut dyn std::io::BufRead) -> std::io::Result<Option<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let saved = if stdin.is_terminal() {
        tcgetattr(&stdin).ok()
    } else {
        None
    };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let n = input.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
    }
    Ok((n? > 0).then(|| line.trim_end_matches(['\n', '\r']).to_owned()))
}

fn setup_interactive(root: &std::path::Path) -> anyhow::Result<bool> {
    use pxelator::setup;
    let present = setup::interface_addresses();
    let names: Vec<String> = present.iter().map(|(n, _)| n.clone()).collect();
    let suggestion = setup::ask::suggest(&present).map_err(anyhow::Error::msg)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let file = match setup::ask::ask(&mut input, &mut out, &names, &suggestion, &mut read_secret) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    report_setup(setup::apply(&file, root, &names), "the answers")
}

fn setup(file: &std::path::Path, root: &std::path::Path) -> anyhow::Result<bool> {
    let s: pxelator::setup::SetupFile = pxelator::tomlfile::read(file)?;
    report_setup(
        pxelator::setup::apply(&s, root, &pxelator::setup::interfaces()),
        &file.display().to_string(),
    )
}

fn report_setup(
    res: Result<pxelator::setup::SetupDone, String>,
    from: &str,
) -> anyhow::Result<bool> {
    match res {
        Ok(done) => {
            println!("config: {}", done.config.display());
            println!(
                "serving on {} as {} ({})",
                done.interface, done.server_ip, done.network
            );
            println!("admin user: {}", done.admin);
            println!("boot loaders: {}", done.boot_files.join(" "));
            if let Some(c) = &done.conf_commit {
                println!("conf repo: first commit {}", &c[..12.min(c.len())]);
            }
            Ok(true)
        }
        Err(e) => {
            eprintln!("error: {from}: {e}");
            Ok(false)
        }
    }
}

fn appliance(config: &std::path::Path, esp: PathBuf, cmd: ApplianceCmd) -> anyhow::Result<bool> {
    use pxelator::appliance::{self, Confirmed, Layout};
    let layout = Layout {
        esp,
        ..Layout::default()
    };
    let reboot = || {
        println!("rebooting");
        std::process::Command::new("systemctl")
            .arg("reboot")
            .status()
            .map(|_| ())
    };
    match cmd {
        ApplianceCmd::Status => {
            let running =
                std::fs::read_to_string("/etc/pxelator-appliance-version").unwrap_or_default();
            let s = appliance::status(&layout, running.trim()).map_err(anyhow::Error::msg)?;
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            println!(
                "running:    system {} ({})",
                s.running_slot, s.running_version
            );
            println!("committed:  system {}", s.committed_slot);
            println!("on trial:   {}", opt(&s.trial_slot));
            println!("rolled back from: {}", opt(&s.last_failed_slot));
            println!("system A:   {}", opt(&s.version_a));
            println!("system B:   {}", opt(&s.version_b));
            Ok(true)
        }
        ApplianceCmd::Update {
            image,
            sha256,
            reboot: now,
        } => {
            let expected = appliance::expected_sha256(&image, sha256.as_deref())
                .map_err(anyhow::Error::msg)?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar.set_message(format!("writing {}", image.display()));
            let res = appliance::update(&layout, &image, &expected, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let u = res.map_err(anyhow::Error::msg)?;
            println!(
                "system {} now holds {} ({} bytes, image sha256 {}); it boots once on trial at the next reboot, \
                 and the appliance returns to the running system by itself if it fails its health check",
                u.slot, u.version, u.bytes, u.image_sha256
            );
            if let Ok(cfg) = Config::load(config) {
                if let Some(a) = &cfg.audit {
                    pxelator::audit::record_events(a, &[appliance::written_event(&u)])?;
                }
            }
            if now {
                reboot()?;
            }
            Ok(true)
        }
        ApplianceCmd::Rollback { reboot: now } => {
            let slot = appliance::rollback(&layout).map_err(anyhow::Error::msg)?;
            println!("system {slot} is committed: it boots next");
            if now {
                reboot()?;
            }
            Ok(true)
        }
        ApplianceCmd::Confirm {
            wait,
            reboot_on_failure,
        } => {
            match appliance::confirm(&layout, config, std::time::Duration::from_secs(wait))
                .map_err(anyhow::Error::msg)?
            {
                Confirmed::Nothing => println!("appliance: nothing to confirm"),
                Confirmed::Recorded(ev) => println!("appliance: {}", serde_json::to_string(&ev)?),
                Confirmed::Failed(ev) => {
                    println!("appliance: {}", serde_json::to_string(&ev)?);
                    if reboot_on_failure {
                        reboot()?;
                    }
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// An error and its causes on one line, each cause once: most of pxelator's errors already
/// name their cause in their own message, and anyhow's `{:#}` printed it a second time.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn exit_code(r: anyhow::Result<bool>) -> ExitCode {
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// Exit codes: 64 bad config (EX_USAGE), 65 inventory problems (EX_DATAERR), 1 runtime failure.
fn main() -> ExitCode {
    // Everything pxelator creates — state, audit store, lease journal, pulled host files in
    // the conf repo, keys — is for root's eyes only (issue 10).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Cmd::CheckConfig {
            config: ConfigArg { path: config },
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(64);
                }
            };
            let (inv, problems) = pxelator::inventory::load(&cfg.conf_repo, cfg.server_ip, None);
            for p in &problems {
                eprintln!("{p}");
            }
            println!(
                "{}: ok; inventory {}: {} machines, {} profiles, {} problems",
                config.display(),
                cfg.conf_repo.display(),
                inv.machines().len(),
                inv.profiles().count(),
                problems.len()
            );
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(65)
            }
        }
        Cmd::Host {
            config: ConfigArg { path: config },
            author,
            cmd,
        } => exit_code(host(&config, author.as_deref(), cmd).map(|()| true)),
        Cmd::Group {
            config: ConfigArg { path: config },
            author,
            cmd,
        } => exit_code(group(&config, author.as_deref(), cmd).map(|()| true)),
        Cmd::History {
            config: ConfigArg { path: config },
            author,
            cmd,
        } => exit_code(history(&config, author.as_deref(), cmd).map(|()| true)),
        Cmd::Backup {
            config: ConfigArg { path: config },
            author,
            cmd,
        } => exit_code(backup(&config, author.as_deref(), cmd)),
        Cmd::Power {
            config: ConfigArg { path: config },
            cmd,
        } => exit_code(power(&config, cmd)),
        Cmd::Image {
            config: ConfigArg { path: config },
            author,
            cmd,
        } => exit_code(image(&config, author.as_deref(), cmd)),
        Cmd::Audit {
            config: ConfigArg { path: config },
            cmd,
        } => exit_code(audit(&config, cmd)),
        Cmd::Leases {
            config: ConfigArg { path: config },
            json,
        } => exit_code(leases(&config, json)),
        Cmd::Run {
            config: ConfigArg { path: config },
            targets,
            timeout,
            full,
            json,
            author: who,
            command,
        } => exit_code(run_cmd(
            &config,
            &targets,
            &command,
            std::time::Duration::from_secs(timeout.max(1)),
            (full, json),
            &author(who.as_deref()),
        )),
        Cmd::Recipe {
            config: ConfigArg { path: config },
            author: who,
            cmd,
        } => exit_code(recipe_cmd(&config, &author(who.as_deref()), cmd)),
        Cmd::Capture {
            config: ConfigArg { path: config },
            iface,
            host,
            mac,
            ip,
            secs,
            packets,
            max_mb,
            output,
        } => exit_code(capture(
            &config,
            &pxelator::commands::CaptureRequest {
                iface,
                host,
                mac,
                ip,
                secs,
                packets,
                max_mb,
            },
            &output,
        )),
        Cmd::Base {
            config: ConfigArg { path: config },
            cmd,
        } => exit_code(base(&config, cmd)),
        Cmd::Pool {
            config: ConfigArg { path: config },
            cmd,
        } => exit_code(pool(&config, cmd)),
        Cmd::RestoreVm {
            config: ConfigArg { path: config },
            spec,
            name,
            ip,
            profile,
            qemu,
            pool,
            author: who,
        } => exit_code(restore_vm(
            &config,
            &spec,
            &name,
            ip,
            profile.as_deref(),
            (qemu, pool),
            &author(who.as_deref()),
        )),
        Cmd::Overlay {
            config: ConfigArg { path: config },
            cmd,
        } => exit_code(overlay(&config, cmd)),
        Cmd::User {
            config: ConfigArg { path: config },
            cmd,
        } => exit_code(user(&config, cmd)),
        Cmd::Setup {
            file,
            interactive,
            root,
        } => exit_code(match file {
            Some(f) if !interactive => setup(&f, &root),
            _ => setup_interactive(&root),
        }),
        Cmd::Appliance {
            config: ConfigArg { path: config },
            esp,
            cmd,
        } => exit_code(appliance(&config, esp, cmd)),
        Cmd::Serve {
            config: ConfigArg { path: config },
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(64);
                }
            };
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(pxelator::app::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", error_text(&e));
                    ExitCode::from(1)
                }
            }
        }
    }
}
