//! The nemesis in CI: a few seeded schedules per backend, each 30 s of faults over three
//! coordinators and four agents, healed and checked. The three backends run at the same time,
//! as the long runs do (two or three schedules at once), so that CI affords schedules of that
//! length. `LEASEHOLD_NEMESIS_SEEDS` (a comma list, run on every backend) and
//! `LEASEHOLD_NEMESIS_SECONDS` replace the defaults, to replay a failing seed here; longer runs
//! belong to the `nemesis` binary (docs/RELIABILITY.md).

use std::time::Duration;

use leasehold_tests::nemesis::{self, Config, Report};
use leasehold_tests::serial;
use leasehold_tests::store::Kind;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("LEASEHOLD_NEMESIS_SEEDS") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|seed| seed.trim().parse().expect("LEASEHOLD_NEMESIS_SEEDS: numbers")).collect()
        }
        _ => defaults.to_vec(),
    }
}

fn seconds() -> u64 {
    std::env::var("LEASEHOLD_NEMESIS_SECONDS").ok().and_then(|value| value.parse().ok()).unwrap_or(30)
}

/// The run checked something: faults were injected, DDL committed, reads were served, buckets
/// were sampled, and a leader was seen.
fn assert_checked_something(report: &Report) {
    let counts = report.operations_by_outcome();
    let count = |key: &str| counts.get(key).copied().unwrap_or(0);
    assert!(!report.schedule.is_empty(), "no fault was injected");
    // The heal's fresh DDL is one; the clients committed at least one more.
    assert!(count("ddl ok") >= 2, "too few DDL committed to check anything: {counts:?}");
    assert!(count("resolve ok") >= 100, "too few reads were served to check anything: {counts:?}");
    assert!(report.ownership_samples > 0 && report.terms > 0, "{}", report.summary());
}

async fn schedules_keep_every_promise(kind: Kind, defaults: &[u64]) {
    for seed in seeds(defaults) {
        let config =
            Config { binary: BIN.to_owned(), store: kind, seed, length: Duration::from_secs(seconds()), agents: 4 };
        let Some(report) = nemesis::run(&config).await else { return };
        eprint!("{}", report.summary());
        if !report.violations.is_empty() {
            let path = std::env::temp_dir().join(format!("nemesis-{kind:?}-{seed}.jsonl").to_lowercase());
            let written = report.write_history(&path).map(|()| path.display().to_string());
            panic!("seed {seed} on {kind:?} broke a promise (history: {written:?}):\n{}", report.summary());
        }
        assert_checked_something(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedules_on_every_backend_keep_every_promise() {
    let _serial = serial().await;
    // A failing backend panics here, which ends the test and drops the other clusters, whose
    // processes are killed as they are dropped.
    tokio::join!(
        schedules_keep_every_promise(Kind::Sqlite, &[101, 102]),
        schedules_keep_every_promise(Kind::Postgres, &[201, 202]),
        schedules_keep_every_promise(Kind::MySql, &[301, 302]),
    );
}
