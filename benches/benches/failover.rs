//! Failover time of the real binary: SIGKILL the leader of three coordinators 20 times, and
//! stop it gracefully (SIGTERM) 20 times, at `ha.lease-ttl = 2s`. Each trial measures from the
//! signal to the first moment a new leader answers `GetHaState` as leader (polled every
//! 20 ms, so add up to ~25 ms of resolution).
//!
//!   cargo bench -p leasehold-benches --bench failover
//!
//! LEASEHOLD_BENCH_STORE=postgres or mysql uses LEASEHOLD_TEST_POSTGRES_URL / _MYSQL_URL
//! instead of a SQLite file; LEASEHOLD_BENCH_TRIALS sets the trials per kind (default 20).

use std::time::Duration;

use leasehold_benches::{Samples, millis};
use leasehold_tests::store::Kind;
use leasehold_tests::{TestCluster, TestStore};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
const NODES: [&str; 3] = ["c1", "c2", "c3"];

fn report(label: &str, samples: &Samples) {
    println!(
        "| {label} | {} | {} | {} | {} |",
        samples.len(),
        millis(samples.quantile(0.5)),
        millis(samples.quantile(0.99)),
        millis(samples.max())
    );
}

async fn trials(kind: Kind, count: usize) {
    let store = TestStore::of(kind).expect("the chosen store");
    let mut cluster = TestCluster::new(BIN, store);
    cluster.timings.lease_ttl = Duration::from_secs(2);
    cluster.timings.renew_interval = Duration::from_millis(666);
    cluster.timings.store_timeout = Duration::from_millis(300);
    for node_id in NODES {
        cluster.start(node_id, &[], &[]).await;
    }
    let (_, mut term) = cluster.leader(Duration::from_secs(20)).await;
    let mut killed = Samples::default();
    let mut stopped = Samples::default();
    for trial in 0..count * 2 {
        let graceful = trial % 2 == 1;
        let (leader, _) = cluster.leader(Duration::from_secs(20)).await;
        let signalled = Instant::now();
        if graceful {
            cluster.node(&leader).terminate();
        } else {
            cluster.node_mut(&leader).kill();
        }
        let (_, new_term, seen) = cluster.leader_above(term, Duration::from_secs(20)).await;
        term = new_term;
        if graceful {
            stopped.push(seen - signalled);
        } else {
            killed.push(seen - signalled);
        }
        // Bring the old leader back (a crashed id waits out one TTL before it may restart).
        cluster.node_mut(&leader).wait_exit(Duration::from_secs(10)).await;
        cluster.start(&leader, &[], &[]).await;
        eprint!(".");
    }
    println!("\n{kind:?} store, lease-ttl 2s, renew-interval 666ms, 3 coordinators");
    println!("| stop | trials | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    report("SIGKILL", &killed);
    report("SIGTERM (graceful)", &stopped);
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let kind = match std::env::var("LEASEHOLD_BENCH_STORE").as_deref() {
        Ok("postgres") => Kind::Postgres,
        Ok("mysql") => Kind::MySql,
        _ => Kind::Sqlite,
    };
    let count = std::env::var("LEASEHOLD_BENCH_TRIALS").ok().and_then(|value| value.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(trials(kind, count));
}
