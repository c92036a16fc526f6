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
    #[arg(
        long = "config",
        short = 'c',
        env = "PXELATOR_CONFIG",
        default_value = "/etc/pxelator/pxelator.toml"
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
    /// Query the audit store (every DHCP, TFTP, HTTP and inventory event).
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
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

/// Exit codes: 64 bad config (EX_USAGE), 65 inventory problems (EX_DATAERR), 1 runtime failure.
fn main() -> ExitCode {
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
        Cmd::Audit {
            config: ConfigArg { path: config },
            cmd,
        } => match audit(&config, cmd) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(2),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
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
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
