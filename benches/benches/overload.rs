//! Heartbeat latency under a flood of other work: one coordinator (SQLite, production HA
//! timings) pinned to core 0, `agents` simulated agents heartbeating once a second (unary,
//! spread evenly), measured for `seconds` idle and then for `seconds` while a second process
//! (this bench, started again as the flood) hammers the same coordinator from 16 connections
//! with 96 readers (GetTable, ListTables, GetSnapshot), 4 DDL clients (create and drop a table)
//! and 8 registrants (register and deregister a node that never heartbeats). The flood runs in
//! its own process on core 1 beside the heartbeat sender, so that the sender, mostly idle, is
//! scheduled as soon as it wakes instead of queueing behind the flood's tasks.
//!
//!   taskset -c 1 cargo bench -p leasehold-benches --bench overload
//!
//! The target: the heartbeat p99 under the flood within 2× of its idle value, and no
//! heartbeat failed. LEASEHOLD_BENCH_AGENTS (default 2000), LEASEHOLD_BENCH_SECONDS (default
//! 10), LEASEHOLD_BENCH_FLOOD (default `reads,ddl,registrations`, any of them). Loopback only; every call has a deadline and the run stops by itself.

use std::time::Duration;

use leasehold_benches::fleet::{Fleet, MockAgents, cpu_seconds};
use leasehold_benches::{connect, env_list, env_or, micros, pin};
use leasehold_core::timing::{default_renew_interval, default_store_timeout};
use leasehold_tests::flood::{Flood, prepare};
use leasehold_tests::{TestCluster, TestStore};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// What the flood sends by default (`LEASEHOLD_BENCH_FLOOD` picks some).
const FLOOD_KINDS: &str = "reads,ddl,registrations";
/// Set in the flood process: the coordinator to flood.
const FLOOD_ADDRESS: &str = "LEASEHOLD_BENCH_FLOOD_ADDRESS";

/// The flood process: floods `address` for `seconds`, prints what it saw and exits.
async fn flood(address: String, seconds: u64, kinds: &[String]) {
    let wants = |kind: &str, count: usize| if kinds.iter().any(|wanted| wanted == kind) { count } else { 0 };
    let flood =
        Flood { readers: wants("reads", 96), ddl_clients: wants("ddl", 4), registrants: wants("registrations", 8) };
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let outcomes = flood.run(&connect(&address, 16, CALL_DEADLINE).await, until).await;
    println!("flood: {} answered, {} shed, {} failed", outcomes.answered, outcomes.shed, outcomes.failed);
}

async fn run(agents: usize, seconds: u64) {
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    let lease_ttl = Duration::from_secs(6);
    cluster.timings.lease_ttl = lease_ttl;
    cluster.timings.renew_interval = default_renew_interval(lease_ttl);
    cluster.timings.store_timeout = default_store_timeout(lease_ttl);
    cluster.start("c1", &[], &[]).await;
    cluster.leader(Duration::from_secs(20)).await;
    let (address, pid) = (cluster.node("c1").grpc.clone(), cluster.node("c1").pid());
    prepare(connect(&address, 1, CALL_DEADLINE).await.remove(0)).await;
    let pinned = pin(pid, 0) && pin(std::process::id(), 1);
    let mock = MockAgents::default().serve().await;
    let fleet = Fleet::new(&address, agents, 8);
    fleet.register_all(&mock, 8).await;
    fleet.heartbeat(Duration::from_secs(1), Duration::from_secs(2)).await;

    println!("agents {agents}, {seconds} s per window; pinned: {pinned}");
    println!("| window | heartbeats/s | failed | p50 µs | p99 µs | max µs | coordinator CPU % |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut idle_p99 = Duration::ZERO;
    for flooded in [false, true] {
        // The flood process starts first and runs a second longer than the window.
        let flooder = flooded.then(|| {
            let mut command = std::process::Command::new("taskset");
            command.args(["-c", "1"]).arg(std::env::current_exe().expect("this bench")).arg("--bench");
            command.env(FLOOD_ADDRESS, &address).env("LEASEHOLD_BENCH_SECONDS", (seconds + 2).to_string());
            command.stdout(std::process::Stdio::piped()).spawn().expect("the flood process")
        });
        if flooded {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let cpu_before = cpu_seconds(pid);
        let run = fleet.heartbeat(Duration::from_secs(1), Duration::from_secs(seconds)).await;
        let cpu = cpu_seconds(pid) - cpu_before;
        let p99 = run.latency.quantile(0.99);
        if !flooded {
            idle_p99 = p99;
        }
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.0} |",
            if flooded { "flooded" } else { "idle" },
            run.answered as f64 / run.elapsed.as_secs_f64(),
            run.failed,
            micros(run.latency.quantile(0.5)),
            micros(p99),
            micros(run.latency.max()),
            100.0 * cpu / run.elapsed.as_secs_f64(),
        );
        if let Some(flooder) = flooder {
            let output = flooder.wait_with_output().expect("the flood process ends");
            print!("{}", String::from_utf8_lossy(&output.stdout));
            println!("flooded p99 / idle p99: {:.2}", p99.as_secs_f64() / idle_p99.as_secs_f64().max(1e-9));
        }
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds = env_or("LEASEHOLD_BENCH_SECONDS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match std::env::var(FLOOD_ADDRESS) {
        Ok(address) => runtime.block_on(flood(address, seconds, &env_list("LEASEHOLD_BENCH_FLOOD", FLOOD_KINDS))),
        Err(_) => runtime.block_on(run(env_or("LEASEHOLD_BENCH_AGENTS", 2000), seconds)),
    }
}
