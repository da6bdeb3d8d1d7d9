//! DDL latency and throughput against one coordinator with simulated agents that hold leases
//! (they heartbeat every second) and acknowledge pushes at once.
//!
//!   cargo bench -p leasehold-benches --bench ddl
//!
//! Three parts, each printed as a Markdown table:
//! - latency (p50, p99) of create table, add column and drop table with 10 and 100 agents, on
//!   SQLite and (when `LEASEHOLD_TEST_POSTGRES_URL` is set) PostgreSQL, as ratios to a plain
//!   `GetHaState` call and to one `Barrier` (one broadcast) measured in the same run;
//! - sustained create-then-drop table pairs per second, from one client and from four clients
//!   working on different tables;
//! - create table while one data node is unreachable (it heartbeated once, just before, and its
//!   push endpoint never answers): the total time against `T_proceed`, its floor.
//!
//! `LEASEHOLD_BENCH_AGENTS` sets the fleet sizes (default 10,100); `LEASEHOLD_BENCH_DDL` the
//! DDL of each kind per size (default 40); `LEASEHOLD_BENCH_SECONDS` the length of each
//! throughput run (default 10); `LEASEHOLD_BENCH_DARK` the unreachable-node trials (default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leasehold::v1::alter_table_request::Action;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    AlterTableRequest, BarrierRequest, ColumnCategory, CreateDatabaseRequest, CreateTableRequest, DataType,
    DropTableRequest, GetHaStateRequest,
};
use leasehold_benches::fleet::{Fleet, HeartbeatRun, MockAgents, blackhole};
use leasehold_benches::{Samples, millis};
use leasehold_tests::requests::column;
use leasehold_tests::store::Kind;
use leasehold_tests::{LeaseSettings, TestCluster, TestStore};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn create_table(name: &str) -> CreateTableRequest {
    CreateTableRequest {
        database: "bench".into(),
        name: name.into(),
        columns: vec![
            column("time", DataType::Timestamp, ColumnCategory::Time),
            column("host", DataType::Text, ColumnCategory::Tag),
            column("v", DataType::Double, ColumnCategory::Field),
        ],
        ttl_ms: 0,
        properties: Default::default(),
        comment: String::new(),
        request_id: String::new(),
    }
}

fn add_column(table: &str) -> AlterTableRequest {
    AlterTableRequest {
        database: "bench".into(),
        name: table.into(),
        action: Some(Action::AddColumn(column("w", DataType::Int64, ColumnCategory::Field))),
        request_id: String::new(),
    }
}

fn drop_table(name: &str) -> DropTableRequest {
    DropTableRequest { database: "bench".into(), name: name.into(), request_id: String::new() }
}

/// One coordinator on `kind` with `size` simulated agents heartbeating, and the database
/// `bench`.
struct Lab {
    cluster: TestCluster,
    channel: Channel,
    address: String,
    heartbeats: JoinHandle<HeartbeatRun>,
}

impl Lab {
    async fn start(kind: Kind, size: usize) -> Option<Lab> {
        let mut cluster = TestCluster::new(BIN, TestStore::of(kind)?);
        cluster.timings.lease = Some(LeaseSettings::default());
        cluster.start("c1", &[], &[]).await;
        cluster.leader(Duration::from_secs(20)).await;
        let address = cluster.node("c1").grpc.clone();
        let mock = MockAgents::default().serve().await;
        let fleet = Fleet::new(&address, size, 4);
        let heartbeats = fleet.start_leased(&mock).await;
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .expect("address")
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_lazy();
        let database = CreateDatabaseRequest {
            name: "bench".into(),
            ttl_ms: 0,
            properties: Default::default(),
            request_id: String::new(),
        };
        CatalogClient::new(channel.clone()).create_database(database).await.expect("the bench database");
        Some(Lab { cluster, channel, address, heartbeats })
    }

    fn catalog(&self) -> CatalogClient<Channel> {
        CatalogClient::new(self.channel.clone())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

async fn latency(kind: Kind, size: usize, count: usize) {
    let Some(lab) = Lab::start(kind, size).await else {
        eprintln!("{kind:?}: skipped (no URL set)");
        return;
    };
    let mut catalog = lab.catalog();
    let mut cluster = ClusterClient::new(lab.channel.clone());
    let mut data_nodes = DataNodesClient::new(lab.channel.clone());
    let (mut probe, mut barrier, mut create, mut alter, mut drop) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default(), Samples::default());
    for index in 0..count + 3 {
        let name = format!("t{index}");
        let timed = |samples: &mut Samples, at: Instant| {
            // The first three rounds warm connections and caches up.
            if index >= 3 {
                samples.push(at.elapsed());
            }
        };
        let at = Instant::now();
        cluster.get_ha_state(GetHaStateRequest {}).await.expect("a probe");
        timed(&mut probe, at);
        let at = Instant::now();
        let answer = data_nodes.barrier(BarrierRequest {}).await.expect("a barrier").into_inner();
        timed(&mut barrier, at);
        assert!(answer.fenced.is_empty(), "a simulated agent was waited out: {answer:?}");
        let at = Instant::now();
        catalog.create_table(create_table(&name)).await.expect("create table");
        timed(&mut create, at);
        let at = Instant::now();
        catalog.alter_table(add_column(&name)).await.expect("add column");
        timed(&mut alter, at);
        let at = Instant::now();
        let answer = catalog.drop_table(drop_table(&name)).await.expect("drop table").into_inner();
        timed(&mut drop, at);
        assert!(answer.fenced.is_empty(), "a simulated agent was waited out: {answer:?}");
    }
    let ratio = |samples: &Samples, base: &Samples, q: f64| {
        samples.quantile(q).as_secs_f64() / base.quantile(q).as_secs_f64().max(1e-9)
    };
    for (name, samples) in
        [("barrier", &barrier), ("create table", &create), ("add column", &alter), ("drop table", &drop)]
    {
        println!(
            "| {kind:?} | {size} | {name} | {} | {:.2} | {:.2} | {:.0} | {:.2} |",
            samples.len(),
            samples.quantile(0.5).as_secs_f64() * 1e3,
            samples.quantile(0.99).as_secs_f64() * 1e3,
            ratio(samples, &probe, 0.5),
            ratio(samples, &barrier, 0.5),
        );
    }
    println!(
        "| {kind:?} | {size} | GetHaState | {} | {:.2} | {:.2} | 1 | |",
        probe.len(),
        probe.quantile(0.5).as_secs_f64() * 1e3,
        probe.quantile(0.99).as_secs_f64() * 1e3,
    );
}

async fn throughput(kind: Kind, clients: usize, seconds: u64) {
    let Some(lab) = Lab::start(kind, 10).await else { return };
    let pairs = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let (mut catalog, pairs) = (lab.catalog(), pairs.clone());
            tokio::spawn(async move {
                let mut round = 0;
                while Instant::now() < deadline {
                    let name = format!("c{client}_r{round}");
                    catalog.create_table(create_table(&name)).await.expect("create table");
                    catalog.drop_table(drop_table(&name)).await.expect("drop table");
                    pairs.fetch_add(1, Ordering::Relaxed);
                    round += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    for worker in workers {
        worker.await.expect("a worker");
    }
    let done = pairs.load(Ordering::Relaxed);
    println!(
        "| {kind:?} | {clients} | {done} | {:.1} | {:.1} |",
        done as f64 / started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
}

async fn unreachable(trials: usize) {
    let lab = Lab::start(Kind::Sqlite, 10).await.expect("SQLite is always there");
    let lease = lab.cluster.timings.lease.expect("lease settings");
    let floor = lease.proceed_after();
    let dark_push = blackhole().await;
    let mut catalog = lab.catalog();
    for trial in 0..trials {
        // A fresh node that holds a lease, then goes silent: its last contact is now.
        let dark = Fleet::named(&lab.address, &format!("dark{trial}"), 1, 1);
        dark.register_all(&dark_push, 1).await;
        let contact = Instant::now();
        dark.beat(0).await.expect("the dark node's only heartbeat");
        let name = format!("dark_t{trial}");
        let at = Instant::now();
        let answer = catalog.create_table(create_table(&name)).await.expect("create table").into_inner();
        let took = at.elapsed();
        let since_contact = contact.elapsed();
        let dark_id = &dark.nodes[0].node_id;
        assert!(
            answer.fenced.iter().any(|node| node.starts_with(dark_id.as_str())),
            "{dark_id} is waited out: {answer:?}"
        );
        let at = Instant::now();
        catalog.drop_table(drop_table(&name)).await.expect("drop table");
        let next = at.elapsed();
        println!(
            "| {trial} | {} | {} | {} | {:.3} | {} |",
            millis(took),
            millis(since_contact),
            millis(floor),
            since_contact.as_secs_f64() / floor.as_secs_f64(),
            millis(next),
        );
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("LEASEHOLD_BENCH_AGENTS")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let count = setting("LEASEHOLD_BENCH_DDL", 40) as usize;
    let seconds = setting("LEASEHOLD_BENCH_SECONDS", 10);
    let trials = setting("LEASEHOLD_BENCH_DARK", 5) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    println!("DDL latency\n");
    println!("| store | agents | call | n | p50 ms | p99 ms | p50 / GetHaState p50 | p50 / Barrier p50 |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for kind in [Kind::Sqlite, Kind::Postgres] {
        for &size in &sizes {
            runtime.block_on(latency(kind, size, count));
        }
    }

    println!("\nSustained create-then-drop pairs (10 agents)\n");
    println!("| store | clients | pairs | pairs/s | seconds |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for kind in [Kind::Sqlite, Kind::Postgres] {
        for clients in [1, 4] {
            runtime.block_on(throughput(kind, clients, seconds));
        }
    }

    println!("\nCreate table with one unreachable data node (SQLite, 10 healthy agents)\n");
    println!("| trial | create ms | since its last heartbeat ms | T_proceed ms | ratio | next drop ms |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    runtime.block_on(unreachable(trials));
}
