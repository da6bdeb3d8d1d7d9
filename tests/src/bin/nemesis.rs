//! The nemesis as a command: runs seeded fault schedules against a whole cluster of real
//! processes, prints a summary of each, writes the history as JSON lines, and exits non-zero
//! when any promise was broken. A failing seed replays the same schedule.
//!
//! The cluster's coordinators and agents run from this same executable: started with a node's
//! arguments (which begin with `--log-format`, a flag the nemesis itself never takes), it is
//! that node, failpoints compiled in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use leasehold_tests::nemesis::{self, Config};
use leasehold_tests::store::Kind;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Store {
    /// A SQLite file of the run's own (store faults come from failpoints).
    Sqlite,
    /// The database `LEASEHOLD_TEST_POSTGRES_URL` names (each run uses a cluster name of its own).
    Postgres,
    /// The database `LEASEHOLD_TEST_MYSQL_URL` names.
    Mysql,
}

/// Injects a seeded schedule of faults (SIGKILL, SIGSTOP, partitions both ways and one way,
/// delays, resets, store outages) into three coordinators and a few agents while DDL clients,
/// readers and barriers run, heals, and checks every promise over the recorded history.
///
/// Example: `cargo run -p leasehold-tests --bin nemesis -- --store postgres --seed 7 --seconds 300`
#[derive(Debug, Parser)]
#[command(name = "nemesis", version)]
struct Args {
    /// The store the coordinators share.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: Store,
    /// The first seed; the same seed replays the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many seeds to run, one after another from `--seed` up.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Seconds of faults per run (the heal and the checks follow).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// How many agents.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Where to write each run's history as JSON lines (`<dir>/nemesis-<store>-<seed>.jsonl`).
    #[arg(long, default_value = ".")]
    history_dir: PathBuf,
    /// Run nothing: check these written histories again with the checkers that need nothing but
    /// the history (stale reads, DDL answers).
    #[arg(long, value_name = "HISTORY.jsonl", num_args = 1..)]
    recheck: Vec<PathBuf>,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--log-format") {
        let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        return leasehold_cli::main_entry();
    }
    let args = Args::parse();
    if !args.recheck.is_empty() {
        let mut broken = false;
        for path in &args.recheck {
            match nemesis::recheck(path) {
                Ok((ops, violations)) => {
                    eprintln!("{}: {ops} operations, {} violation(s)", path.display(), violations.len());
                    violations.iter().for_each(|violation| eprintln!("  - {violation}"));
                    broken |= !violations.is_empty();
                }
                Err(error) => {
                    eprintln!("nemesis: reading {}: {error}", path.display());
                    broken = true;
                }
            }
        }
        return if broken { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let binary = match std::env::current_exe() {
        Ok(path) => path.display().to_string(),
        Err(error) => {
            eprintln!("nemesis: cannot find its own executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    let store = match args.store {
        Store::Sqlite => Kind::Sqlite,
        Store::Postgres => Kind::Postgres,
        Store::Mysql => Kind::MySql,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let mut failed = Vec::new();
    for seed in args.seed..args.seed + args.runs {
        let config = Config {
            binary: binary.clone(),
            store,
            seed,
            length: Duration::from_secs(args.seconds),
            agents: args.agents,
        };
        let Some(report) = runtime.block_on(nemesis::run(&config)) else {
            eprintln!("nemesis: the {store:?} store is not configured (see --help)");
            return ExitCode::from(2);
        };
        let path = args.history_dir.join(format!("nemesis-{:?}-{seed}.jsonl", store).to_lowercase());
        if let Err(error) = report.write_history(&path) {
            eprintln!("nemesis: writing {}: {error}", path.display());
        }
        eprint!("{}", report.summary());
        eprintln!("history: {}", path.display());
        if !report.violations.is_empty() {
            failed.push(seed);
        }
    }
    if failed.is_empty() {
        eprintln!("nemesis: {} run(s), no violation", args.runs);
        ExitCode::SUCCESS
    } else {
        eprintln!("nemesis: violations in seed(s) {failed:?}; replay one with --seed N --runs 1");
        ExitCode::FAILURE
    }
}
