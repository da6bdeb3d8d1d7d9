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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leasehold::status::{error_reason, reason};
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    CreateDatabaseRequest, CreateTableRequest, DeregisterRequest, DropTableRequest, GetSnapshotRequest,
    GetTableRequest, ListTablesRequest, RegisterRequest,
};
use leasehold_benches::fleet::{Fleet, MockAgents, cpu_seconds};
use leasehold_benches::{connect, env_list, env_or, micros, pin};
use leasehold_core::timing::{default_renew_interval, default_store_timeout};
use leasehold_tests::requests::create_table;
use leasehold_tests::{TestCluster, TestStore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tonic::{Code, Status};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// What the flood sends by default (`LEASEHOLD_BENCH_FLOOD` picks some).
const FLOOD_KINDS: &str = "reads,ddl,registrations";
/// Set in the flood process: the coordinator to flood.
const FLOOD_ADDRESS: &str = "LEASEHOLD_BENCH_FLOOD_ADDRESS";

/// What the flood's calls came back with.
#[derive(Default)]
struct Outcomes {
    answered: AtomicU64,
    shed: AtomicU64,
    failed: AtomicU64,
}

impl Outcomes {
    fn count<T>(&self, outcome: Result<Result<T, Status>, tokio::time::error::Elapsed>) {
        let counter = match &outcome {
            Ok(Ok(_)) => &self.answered,
            Ok(Err(status)) if error_reason(status).as_deref() == Some(reason::OVERLOADED) => &self.shed,
            Ok(Err(status)) if matches!(status.code(), Code::AlreadyExists | Code::NotFound | Code::Aborted) => {
                &self.answered
            }
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The flood process: floods `address` for `seconds`, prints what it saw and exits.
async fn flood(address: String, seconds: u64, kinds: &[String]) {
    let wants = |kind: &str| kinds.iter().any(|wanted| wanted == kind);
    let outcomes = Arc::new(Outcomes::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let connections = connect(&address, 16, CALL_DEADLINE).await;
    let mut tasks = JoinSet::new();
    for reader in 0..if wants("reads") { 96 } else { 0 } {
        let (mut catalog, outcomes) = (CatalogClient::new(connections[reader % 16].clone()), outcomes.clone());
        tasks.spawn(async move {
            let mut round = 0_usize;
            while Instant::now() < until {
                round += 1;
                match round % 3 {
                    0 => {
                        let request = GetTableRequest { database: "flood".into(), name: format!("t{}", round % 20) };
                        outcomes.count(timeout(CALL_DEADLINE, catalog.get_table(request)).await);
                    }
                    1 => {
                        let request = ListTablesRequest { database: "flood".into() };
                        outcomes.count(timeout(CALL_DEADLINE, catalog.list_tables(request)).await);
                    }
                    _ => {
                        let request = GetSnapshotRequest::default();
                        outcomes.count(timeout(CALL_DEADLINE, catalog.get_snapshot(request)).await);
                    }
                }
            }
        });
    }
    for (client, connection) in connections.iter().take(if wants("ddl") { 4 } else { 0 }).enumerate() {
        let (mut catalog, outcomes) = (CatalogClient::new(connection.clone()), outcomes.clone());
        tasks.spawn(async move {
            let table = format!("ddl{client}");
            while Instant::now() < until {
                outcomes.count(timeout(CALL_DEADLINE, catalog.create_table(create_table("flood", &table, ""))).await);
                let drop = DropTableRequest { database: "flood".into(), name: table.clone(), ..Default::default() };
                outcomes.count(timeout(CALL_DEADLINE, catalog.drop_table(drop)).await);
            }
        });
    }
    for (registrant, connection) in connections.iter().take(if wants("registrations") { 8 } else { 0 }).enumerate() {
        let (mut nodes, outcomes) = (DataNodesClient::new(connection.clone()), outcomes.clone());
        tasks.spawn(async move {
            let mut round = 0;
            while Instant::now() < until {
                round += 1;
                let (node_id, incarnation) = (format!("flood-{registrant}"), format!("i{round}"));
                let register = RegisterRequest {
                    node_id: node_id.clone(),
                    address: "127.0.0.1:9".into(),
                    incarnation: incarnation.clone(),
                    ..Default::default()
                };
                outcomes.count(timeout(CALL_DEADLINE, nodes.register(register)).await);
                let deregister = DeregisterRequest { node_id, incarnation, ..Default::default() };
                outcomes.count(timeout(CALL_DEADLINE, nodes.deregister(deregister)).await);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    println!(
        "flood: {} answered, {} shed, {} failed",
        outcomes.answered.load(Ordering::Relaxed),
        outcomes.shed.load(Ordering::Relaxed),
        outcomes.failed.load(Ordering::Relaxed)
    );
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
    let mut catalog = CatalogClient::new(connect(&address, 1, CALL_DEADLINE).await.remove(0));
    let started = Instant::now();
    while let Err(status) =
        catalog.create_database(CreateDatabaseRequest { name: "flood".into(), ..Default::default() }).await
    {
        assert!(status.code() == Code::Unavailable && started.elapsed() < Duration::from_secs(30), "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for index in 0..20 {
        let request: CreateTableRequest = create_table("flood", &format!("t{index}"), "");
        catalog.create_table(request).await.expect("create table");
    }
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
