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

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Serve {
        #[arg(
            long,
            short,
            env = "PXELATOR_CONFIG",
            default_value = "/etc/pxelator/pxelator.toml"
        )]
        config: PathBuf,
    },
    /// Validate the config and the inventory it points to, then exit.
    CheckConfig {
        #[arg(
            long,
            short,
            env = "PXELATOR_CONFIG",
            default_value = "/etc/pxelator/pxelator.toml"
        )]
        config: PathBuf,
    },
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
        Cmd::CheckConfig { config } => {
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
        Cmd::Serve { config } => {
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
