//! Registration at scale: a cold start of a fleet. `N` simulated agents, each with a node id
//! the coordinator has never seen, register with one coordinator at once over a few HTTP/2
//! connections; the run ends when every one is answered, and the coordinator is then asked to
//! list them (every one must be registered).
//!
//! Reported per store: the total seconds, registrations per second, p50 and p99 of one
//! registration, and how many store transactions the leader used for them (from its
//! `leasehold_datanodes_registration_batches_total`; absent before registrations were
//! batched). The baseline, measured in the same run on the same connections just before: `N`
//! plain `GetHaState` calls at the same concurrency, the gRPC floor; the ratio is the
//! registrations' total time over the floor's.
//!
//!   cargo bench -p leasehold-benches --bench registrations
//!
//! SQLite always; PostgreSQL and MariaDB/MySQL when `LEASEHOLD_TEST_POSTGRES_URL` /
//! `LEASEHOLD_TEST_MYSQL_URL` are set (else the row says skipped). `LEASEHOLD_BENCH_AGENTS`
//! sets `N` (default 10000); `LEASEHOLD_BENCH_CONNECTIONS` the connections (default 8);
//! `LEASEHOLD_BENCH_PARALLEL` how many registrations are in flight at once (default 0: all of
//! them). Loopback only; every call has a deadline, and the run stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{GetHaStateRequest, ListDataNodesRequest, RegisterRequest};
use leasehold_benches::fleet::MockAgents;
use leasehold_benches::{Samples, env_or, millis};
use leasehold_tests::store::Kind;
use leasehold_tests::{TestCluster, TestStore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
/// The longest one call may take before it counts as failed (the coordinator's own limit on a
/// unary call is 30 s).
const CALL_DEADLINE: Duration = Duration::from_secs(40);
/// The longest the coordinator may take to start leading and load its state.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Which call a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Register,
    GetHaState,
}

/// What one run of `N` calls measured.
struct Run {
    elapsed: Duration,
    latency: Samples,
    failed: usize,
    first_error: Option<tonic::Status>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Agent `index`'s registration: a node id the coordinator has never seen.
fn registration(index: usize, push_address: &str) -> RegisterRequest {
    RegisterRequest {
        node_id: format!("agent-{index:05}"),
        incarnation: format!("inc-{index:05}"),
        address: push_address.to_owned(),
        ..Default::default()
    }
}

/// `count` calls, `parallel` in flight at a time, call `i` on `channels[i % conns]`.
async fn measure(call: Call, channels: &[Channel], count: usize, parallel: usize, push_address: &str) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..parallel.min(count) {
        let (next, channels, push_address) = (next.clone(), channels.to_vec(), push_address.to_owned());
        workers.spawn(async move {
            let mut latency = Samples::default();
            let mut errors = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return (latency, errors);
                }
                let channel = channels[index % channels.len()].clone();
                let at = Instant::now();
                let answered = match call {
                    Call::Register => {
                        let request = registration(index, &push_address);
                        timeout(CALL_DEADLINE, DataNodesClient::new(channel).register(request))
                            .await
                            .map(|r| r.map(drop))
                    }
                    Call::GetHaState => {
                        timeout(CALL_DEADLINE, ClusterClient::new(channel).get_ha_state(GetHaStateRequest {}))
                            .await
                            .map(|r| r.map(drop))
                    }
                };
                match answered {
                    Ok(Ok(())) => latency.push(at.elapsed()),
                    Ok(Err(status)) => errors.push(status),
                    Err(_) => errors.push(tonic::Status::deadline_exceeded(format!("no answer in {CALL_DEADLINE:?}"))),
                }
            }
        });
    }
    let mut latency = Samples::default();
    let mut failed = 0;
    let mut first_error = None;
    while let Some(done) = workers.join_next().await {
        let (samples, errors) = done.expect("a worker");
        latency.merge(samples);
        failed += errors.len();
        if first_error.is_none() {
            first_error = errors.into_iter().next();
        }
    }
    Run { elapsed: started.elapsed(), latency, failed, first_error }
}

/// The value of the series `series` (name and labels) on a Prometheus text page.
fn series(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
}

fn seconds(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64())
}

/// One row: a fresh coordinator on `kind`, the floor, then the cold start.
async fn row(kind: Kind, count: usize, conns: usize, parallel: usize) {
    let label = format!("{kind:?}");
    let Some(store) = TestStore::of(kind) else {
        println!("| {label} | skipped: its URL is not set |{}", " |".repeat(14));
        return;
    };
    let mut cluster = TestCluster::new(BIN, store);
    cluster.start("c1", &[], &[]).await;
    cluster.leader(START_DEADLINE).await;
    let address = cluster.node("c1").grpc.clone();
    let channels = leasehold_benches::connect(&address, conns, CALL_DEADLINE).await;
    let mock = MockAgents::default().serve().await;
    // The leader answers UNAVAILABLE until its state is loaded: wait for it before the clock.
    let loaded = Instant::now() + START_DEADLINE;
    while DataNodesClient::new(channels[0].clone()).list_data_nodes(ListDataNodesRequest {}).await.is_err() {
        assert!(Instant::now() < loaded, "{label}: the leader did not load its state in {START_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = cluster.node("c1").scrape_metrics().await.unwrap_or_default();

    let floor = measure(Call::GetHaState, &channels, count, parallel, &mock).await;
    let registered = measure(Call::Register, &channels, count, parallel, &mock).await;

    let listed =
        timeout(CALL_DEADLINE, DataNodesClient::new(channels[0].clone()).list_data_nodes(ListDataNodesRequest {}))
            .await
            .expect("listing in time")
            .expect("a listing")
            .into_inner();
    let visible = listed.nodes.iter().filter(|node| node.registered).count();
    let after = cluster.node("c1").scrape_metrics().await.unwrap_or_default();
    let batches = "leasehold_datanodes_registration_batches_total{result=\"committed\"}";
    let transactions = match (series(&after, batches), series(&before, batches)) {
        (Some(after), before) => format!("{:.0}", after - before.unwrap_or(0.0)),
        (None, _) => "— (one per registration)".to_owned(),
    };
    if let Some(error) = &registered.first_error {
        eprintln!("{label}: a registration failed: {error:?}");
    }
    println!(
        "| {label} | {count} | {conns} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {:.1} | {transactions} | {visible} | {} |",
        if parallel >= count { "all".to_owned() } else { parallel.to_string() },
        seconds(registered.elapsed),
        registered.per_second(),
        millis(registered.latency.quantile(0.5)),
        millis(registered.latency.quantile(0.99)),
        seconds(floor.elapsed),
        floor.per_second(),
        millis(floor.latency.quantile(0.5)),
        millis(floor.latency.quantile(0.99)),
        registered.elapsed.as_secs_f64() / floor.elapsed.as_secs_f64(),
        registered.failed + floor.failed,
    );
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let count = env_or("LEASEHOLD_BENCH_AGENTS", 10_000usize).max(1);
    let conns = env_or("LEASEHOLD_BENCH_CONNECTIONS", 8usize).max(1);
    let parallel = match env_or("LEASEHOLD_BENCH_PARALLEL", 0usize) {
        0 => count,
        parallel => parallel,
    };
    println!("{count} agents with fresh node ids register at once; one coordinator per store, default settings");
    println!(
        "| store | agents | conns | in flight | register s | /s | p50 ms | p99 ms \
         | GetHaState s | /s | p50 ms | p99 ms | register / GetHaState | transactions | listed | failed |"
    );
    println!("| --- |{}", " ---: |".repeat(15));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        for kind in [Kind::Sqlite, Kind::Postgres, Kind::MySql] {
            row(kind, count, conns, parallel).await;
        }
    });
}
