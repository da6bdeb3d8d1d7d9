//! The one `leasehold` binary: `coordinator`, `agent`, `ctl` and `dev`.
//!
//! # Layout
//! - [`args`]: the command line (clap), with the help text that teaches.
//! - [`settings`]: defaults, then the TOML file, then `LEASEHOLD_*` variables, then flags,
//!   for the coordinator and (`LEASEHOLD_AGENT_*`) the agent.
//! - [`logging`]: text or JSON logs on stderr.
//! - [`serve`]: listeners, metrics recorder, signals, and the coordinator's run.
//! - [`ctl`]: the admin client; `ctl_catalog`, `ctl_buckets` and `ctl_resources` its
//!   catalog, bucket and resource-keeper commands; [`output`] what they print.
//! - [`dev`]: a coordinator on embedded SQLite for a first look.

pub mod args;
pub mod ctl;
mod ctl_buckets;
mod ctl_catalog;
mod ctl_resources;
pub mod dev;
pub mod logging;
pub mod output;
pub mod serve;
pub mod settings;

use std::process::ExitCode;

use clap::Parser;

use leasehold_coordinator::config::LogFormat;

use crate::args::{Cli, Command};

/// Runs the command line of this process and returns its exit code. Both the `leasehold`
/// binary and the test binary call this, so the tests run exactly what users run.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let format = cli.log.log_format;
    let level = cli.log.log_level.as_deref();
    match cli.command {
        Command::Coordinator(args) => {
            let config = settings::load_coordinator_config(&args)?;
            if args.print_config {
                print!("{}", settings::to_toml(&config)?);
                return Ok(ExitCode::SUCCESS);
            }
            logging::init(format.unwrap_or(config.log.format), level.unwrap_or(&config.log.level))?;
            runtime.block_on(serve::coordinator(config)).map(|()| ExitCode::SUCCESS)
        }
        Command::Agent(args) => {
            let config = settings::load_agent_config(&args)?;
            if args.print_config {
                print!("{}", settings::agent_to_toml(&config)?);
                return Ok(ExitCode::SUCCESS);
            }
            logging::init(format.unwrap_or(config.log.format), level.unwrap_or(&config.log.level))?;
            runtime.block_on(serve::agent(config.agent)).map(|()| ExitCode::SUCCESS)
        }
        Command::Ctl(args) => {
            logging::init(format.unwrap_or(LogFormat::Text), level.unwrap_or("warn"))?;
            let output = args.output;
            // ctl's failures say what failed in their exit code, and in JSON when asked.
            let done = runtime.block_on(ctl::run(args));
            Ok(done.map_or_else(|error| ctl::report(&error, output), |()| ExitCode::SUCCESS))
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "leasehold", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            logging::init(format.unwrap_or(LogFormat::Text), level.unwrap_or("info"))?;
            runtime.block_on(dev::run(args)).map(|()| ExitCode::SUCCESS)
        }
    }
}
