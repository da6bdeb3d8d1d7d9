//! Barrier latency to 10, 100 and 1000 simulated agents that hold leases (they heartbeat every
//! second) and acknowledge pushes at once: p50 and p99 over repeated barriers, each as a ratio
//! to a plain unary call on the same coordinator measured in the same run.
//!
//!   cargo bench -p leasehold-benches --bench barrier
//!
//! LEASEHOLD_BENCH_AGENTS sets the fleet sizes (default 10,100,1000);
//! LEASEHOLD_BENCH_BARRIERS the barriers per size (default 50).

use std::time::{Duration, Instant};

use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{BarrierRequest, GetHaStateRequest};
use leasehold_benches::fleet::{Fleet, MockAgents};
use leasehold_benches::{Samples, micros};
use leasehold_tests::{TestCluster, TestStore};
use tonic::transport::Endpoint;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");

async fn run(size: usize, barriers: usize) {
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &[], &[]).await;
    cluster.leader(Duration::from_secs(20)).await;
    let address = cluster.node("c1").grpc.clone();
    let mock = MockAgents::default().serve().await;
    let fleet = Fleet::new(&address, size, 4);
    let heartbeats = fleet.start_leased(&mock).await;

    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("address")
        .timeout(Duration::from_secs(60))
        .connect_lazy();
    let mut data_nodes = DataNodesClient::new(channel.clone());
    let mut cluster_client = ClusterClient::new(channel);
    let mut latency = Samples::default();
    let mut baseline = Samples::default();
    for _ in 0..barriers {
        let at = Instant::now();
        cluster_client.get_ha_state(GetHaStateRequest {}).await.expect("a probe");
        baseline.push(at.elapsed());
        let at = Instant::now();
        let answer = data_nodes.barrier(BarrierRequest {}).await.expect("a barrier").into_inner();
        latency.push(at.elapsed());
        if std::env::var("LEASEHOLD_BENCH_VERBOSE").is_ok() {
            eprintln!("barrier {:?} total, {} ms from publication to verdict", at.elapsed(), answer.waited_ms);
        }
        assert!(answer.fenced.is_empty(), "a simulated agent was waited out: {answer:?}");
    }
    heartbeats.abort();
    println!(
        "| {size} | {} | {} | {} | {:.0} | {:.0} |",
        barriers,
        micros(latency.quantile(0.5)),
        micros(latency.quantile(0.99)),
        latency.quantile(0.5).as_secs_f64() / baseline.quantile(0.5).as_secs_f64().max(1e-9),
        latency.quantile(0.99).as_secs_f64() / baseline.quantile(0.99).as_secs_f64().max(1e-9),
    );
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("LEASEHOLD_BENCH_AGENTS")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let barriers = std::env::var("LEASEHOLD_BENCH_BARRIERS").ok().and_then(|value| value.parse().ok()).unwrap_or(50);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("| agents | barriers | p50 µs | p99 µs | p50 / GetHaState p50 | p99 / GetHaState p99 |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for size in sizes {
        runtime.block_on(run(size, barriers));
    }
}
