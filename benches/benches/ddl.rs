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
//! After each latency table, where the time of each call went, read from the coordinator's own
//! log events (their timestamps and the broadcasts' `waited_us`) against the client's clock on
//! the same machine, and the CPU the coordinator and this process (the fleet and the client)
//! spent per round.
//!
//! `LEASEHOLD_BENCH_AGENTS` sets the fleet sizes (default 10,100,1000); `LEASEHOLD_BENCH_DDL` the
//! DDL of each kind per size (default 40); `LEASEHOLD_BENCH_SECONDS` the length of each
//! throughput run (default 10); `LEASEHOLD_BENCH_DARK` the unreachable-node trials (default 5);
//! `LEASEHOLD_BENCH_NODE` another build of the `leasehold` binary to run as the coordinator (to
//! compare two builds with the same load generator).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use leasehold::v1::alter_table_request::Action;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    AlterTableRequest, BarrierRequest, ColumnCategory, CreateDatabaseRequest, CreateTableRequest, DataType,
    DropTableRequest, GetHaStateRequest,
};
use leasehold_benches::fleet::{Fleet, HeartbeatRun, MockAgents, blackhole, cpu_seconds};
use leasehold_benches::{Samples, millis};
use leasehold_tests::requests::column;
use leasehold_tests::store::Kind;
use leasehold_tests::{LeaseSettings, TestCluster, TestStore};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");

/// The coordinator binary: this build's, or `LEASEHOLD_BENCH_NODE`.
fn node_binary() -> &'static str {
    match std::env::var("LEASEHOLD_BENCH_NODE") {
        Ok(path) if !path.is_empty() => Box::leak(path.into_boxed_str()),
        _ => BIN,
    }
}

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
        let mut cluster = TestCluster::new(node_binary(), TestStore::of(kind)?);
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

async fn latency(kind: Kind, size: usize, count: usize, phases: &std::sync::Mutex<Vec<Phases>>) {
    let Some(lab) = Lab::start(kind, size).await else {
        eprintln!("{kind:?}: skipped (no URL set)");
        return;
    };
    let mut catalog = lab.catalog();
    let mut cluster = ClusterClient::new(lab.channel.clone());
    let mut data_nodes = DataNodesClient::new(lab.channel.clone());
    let (mut probe, mut barrier, mut create, mut alter, mut drop) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default(), Samples::default());
    // Every timed call, to split its time with the coordinator's log events afterwards.
    let mut calls: Vec<Call> = Vec::new();
    let coordinator_pid = lab.cluster.node("c1").pid();
    let (mut cpu_coordinator, mut cpu_here) = (0.0, 0.0);
    for index in 0..count + 3 {
        let name = format!("t{index}");
        let timed = |samples: &mut Samples, at: Instant| {
            // The first three rounds warm connections and caches up.
            if index >= 3 {
                samples.push(at.elapsed());
            }
        };
        if index == 3 {
            (cpu_coordinator, cpu_here) = (cpu_seconds(coordinator_pid), cpu_seconds(std::process::id()));
        }
        let mut call = |what: &'static str, sent: f64, procedure: u64, version: u64| {
            if index >= 3 {
                calls.push(Call { what, sent, answered: wall(), procedure, version });
            }
        };
        let at = Instant::now();
        cluster.get_ha_state(GetHaStateRequest {}).await.expect("a probe");
        timed(&mut probe, at);
        let (at, sent) = (Instant::now(), wall());
        let answer = data_nodes.barrier(BarrierRequest {}).await.expect("a barrier").into_inner();
        timed(&mut barrier, at);
        call("barrier", sent, 0, answer.version);
        assert!(answer.fenced.is_empty(), "a simulated agent was waited out: {answer:?}");
        let (at, sent) = (Instant::now(), wall());
        let answer = catalog.create_table(create_table(&name)).await.expect("create table").into_inner();
        timed(&mut create, at);
        call("create table", sent, answer.procedure_id, answer.version);
        let (at, sent) = (Instant::now(), wall());
        let answer = catalog.alter_table(add_column(&name)).await.expect("add column").into_inner();
        timed(&mut alter, at);
        call("add column", sent, answer.procedure_id, answer.version);
        let (at, sent) = (Instant::now(), wall());
        let answer = catalog.drop_table(drop_table(&name)).await.expect("drop table").into_inner();
        timed(&mut drop, at);
        call("drop table", sent, answer.procedure_id, answer.version);
        assert!(answer.fenced.is_empty(), "a simulated agent was waited out: {answer:?}");
    }
    let rounds = count.max(1) as f64;
    let cpu_coordinator = (cpu_seconds(coordinator_pid) - cpu_coordinator) / rounds;
    let cpu_here = (cpu_seconds(std::process::id()) - cpu_here) / rounds;
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
    let node = lab.cluster.node("c1");
    phases.lock().expect("phases").push(Phases::of(kind, size, node, &calls, cpu_coordinator, cpu_here));
}

/// One timed call: its wall-clock instants (the coordinator logs on the same clock), and the
/// procedure and version its answer named.
struct Call {
    what: &'static str,
    sent: f64,
    answered: f64,
    procedure: u64,
    version: u64,
}

/// Seconds since the Unix epoch, now.
fn wall() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64())
}

/// Seconds since the Unix epoch of a log timestamp `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
fn parse_timestamp(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut date = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':');
    let (hours, minutes) = (time.next()?.parse::<f64>().ok()?, time.next()?.parse::<f64>().ok()?);
    let seconds = time.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days as f64 * 86_400.0 + hours * 3_600.0 + minutes * 60.0 + seconds)
}

/// Where the time of each kind of call went, medians over its calls, in milliseconds.
struct Phases {
    kind: Kind,
    size: usize,
    rows: Vec<(&'static str, usize, [f64; 6])>,
    cpu_coordinator: f64,
    cpu_here: f64,
}

impl Phases {
    /// Splits each call with the coordinator's events: its broadcasts ("broadcast settled:
    /// proceed", at the instant each settled, with how long it waited), the procedure's end
    /// ("DDL settled everywhere").
    fn of(
        kind: Kind,
        size: usize,
        node: &leasehold_tests::process::Node,
        calls: &[Call],
        cpu_coordinator: f64,
        cpu_here: f64,
    ) -> Phases {
        // version -> (settled at, waited seconds)
        let mut settled: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for event in node.events("broadcast settled: proceed") {
            let (Some(version), Some(at)) =
                (event["version"].as_u64(), event["timestamp"].as_str().and_then(parse_timestamp))
            else {
                continue;
            };
            // Builds before `waited_us` logged milliseconds only.
            let waited = event["waited_us"]
                .as_u64()
                .map(|us| us as f64 / 1e6)
                .or_else(|| event["waited_ms"].as_u64().map(|ms| ms as f64 / 1e3))
                .unwrap_or(0.0);
            settled.insert(version, (at, waited));
        }
        let mut finished: BTreeMap<u64, f64> = BTreeMap::new();
        for event in node.events("DDL settled everywhere") {
            if let (Some(procedure), Some(at)) =
                (event["procedure"].as_u64(), event["timestamp"].as_str().and_then(parse_timestamp))
            {
                finished.insert(procedure, at);
            }
        }
        let mut by_kind: BTreeMap<&'static str, Vec<[f64; 6]>> = BTreeMap::new();
        for call in calls {
            // A barrier broadcasts its own version; a procedure every version from its id (its
            // prepare) up to the one it answered with.
            let first = if call.procedure == 0 { call.version } else { call.procedure };
            let broadcasts: Vec<(f64, f64)> = settled.range(first..=call.version).map(|(_, value)| *value).collect();
            let Some(&(last_at, _)) = broadcasts.last() else { continue };
            let (first_at, first_waited) = broadcasts[0];
            let before = first_at - first_waited - call.sent;
            let waited: f64 = broadcasts.iter().map(|(_, waited)| waited).sum();
            let between: f64 = broadcasts.windows(2).map(|pair| (pair[1].0 - pair[1].1) - pair[0].0).sum();
            let end = finished.get(&call.procedure).copied().unwrap_or(last_at);
            let finish = end - last_at;
            let after = call.answered - end;
            let total = call.answered - call.sent;
            by_kind.entry(call.what).or_default().push([before, waited, between, finish, after, total]);
        }
        let rows = ["barrier", "create table", "add column", "drop table"]
            .into_iter()
            .filter_map(|what| {
                let samples = by_kind.get(what)?;
                let median = |column: usize| {
                    let mut values: Vec<f64> = samples.iter().map(|sample| sample[column]).collect();
                    values.sort_by(f64::total_cmp);
                    values[values.len() / 2] * 1e3
                };
                Some((what, samples.len(), [median(0), median(1), median(2), median(3), median(4), median(5)]))
            })
            .collect();
        Phases { kind, size, rows, cpu_coordinator, cpu_here }
    }

    fn print(&self) {
        for (what, n, [before, waited, between, finish, after, total]) in &self.rows {
            println!(
                "| {:?} | {} | {what} | {n} | {before:.2} | {waited:.2} | {between:.2} | {finish:.2} | {after:.2} | {total:.2} |",
                self.kind, self.size
            );
        }
        println!(
            "| {:?} | {} | CPU per round (coordinator / fleet and client) | | {:.2} / {:.2} | | | | | |",
            self.kind,
            self.size,
            self.cpu_coordinator * 1e3,
            self.cpu_here * 1e3
        );
    }
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
        .unwrap_or_else(|_| "10,100,1000".into())
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
    let phases = std::sync::Mutex::new(Vec::new());
    for kind in [Kind::Sqlite, Kind::Postgres] {
        for &size in &sizes {
            runtime.block_on(latency(kind, size, count, &phases));
        }
    }

    println!("\nWhere the time goes (medians, ms): before the first broadcast (the call, planning, the");
    println!("first transaction and its commit), in broadcasts, between broadcasts (the later steps'");
    println!("transactions), the procedure's finishing transaction, and the answer's way back\n");
    println!("| store | agents | call | n | before | broadcasts | between | finish | after | total |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for phases in phases.lock().expect("phases").iter() {
        phases.print();
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
