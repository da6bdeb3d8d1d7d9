//! Heartbeats one coordinator sustains from 1k, 5k and 10k simulated agents at a 1 s interval:
//! achieved rate, p50/p99 latency (and its ratio to a plain gRPC health check measured in the
//! same run), the coordinator's CPU, and its memory per registered agent.
//!
//!   cargo bench -p leasehold-benches --bench heartbeats
//!
//! LEASEHOLD_BENCH_AGENTS sets the fleet sizes (default 1000,5000,10000);
//! LEASEHOLD_BENCH_SECONDS the measured seconds per size (default 10).

use std::time::{Duration, Instant};

use leasehold_benches::fleet::{Fleet, MockAgents, cpu_seconds, rss_bytes};
use leasehold_benches::{env_list, env_or, floor, micros};
use leasehold_tests::{TestCluster, TestStore};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");

async fn run(size: usize, seconds: u64) {
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &[], &[]).await;
    cluster.leader(Duration::from_secs(20)).await;
    let node = cluster.node("c1");
    let (address, pid) = (node.grpc.clone(), node.pid());
    let mock = MockAgents::default().serve().await;
    let fleet = Fleet::new(&address, size, 8);
    let rss_before = rss_bytes(pid);
    let registering = Instant::now();
    fleet.register_all(&mock, 8).await;
    let registered_in = registering.elapsed();
    // One warm-up pass, so that every agent holds a lease before measuring.
    fleet.heartbeat(Duration::from_secs(1), Duration::from_secs(2)).await;
    let cpu_before = cpu_seconds(pid);
    // The baseline runs beside the load, so that both see the same machine.
    let probes = (seconds * 1000 / 12) as usize;
    let baseline = tokio::spawn({
        let address = address.clone();
        async move { floor::probe(&address, probes, Duration::from_millis(10)).await }
    });
    let run = fleet.heartbeat(Duration::from_secs(1), Duration::from_secs(seconds)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let baseline = baseline.await.expect("the probe");
    let rss_after = rss_bytes(pid);
    let rate = run.answered as f64 / run.elapsed.as_secs_f64();
    println!(
        "| {size} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.1} |",
        rate,
        run.failed,
        micros(run.latency.quantile(0.5)),
        micros(run.latency.quantile(0.99)),
        run.latency.quantile(0.99).as_secs_f64() / baseline.quantile(0.99).as_secs_f64().max(1e-9),
        100.0 * cpu / run.elapsed.as_secs_f64(),
        (rss_after.saturating_sub(rss_before)) as f64 / size as f64,
        registered_in.as_secs_f64(),
    );
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let sizes: Vec<usize> =
        env_list("LEASEHOLD_BENCH_AGENTS", "1000,5000,10000").iter().filter_map(|size| size.parse().ok()).collect();
    let seconds = env_or("LEASEHOLD_BENCH_SECONDS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "| agents | heartbeats/s | failed | p50 µs | p99 µs | p99 / GetHaState p99 | coordinator CPU % | RSS bytes per agent | registration s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for size in sizes {
        runtime.block_on(run(size, seconds));
    }
}
