//! How far one coordinator goes: `agents` simulated data nodes, each renewing once a second
//! over its own KeepAlive stream (open loop: every agent sends at fixed instants, spread evenly
//! over the second, whatever the answers do), against a catalog of `tables` tables of
//! `columns` columns. Two measured windows:
//!
//! - **steady**: renewals alone;
//! - **resync**: the same renewals while one more agent asks for a full resync (a unary
//!   Heartbeat with `needs_resync`, answered with the whole catalog) once a second.
//!
//! Per window: renewals sent and answered, failures (an answer missing within 1 s, or an
//! error), p50 / p99 / max latency measured from each renewal's scheduled send instant (so a
//! stalled loop counts against the coordinator, not for it), and the coordinator's CPU-seconds
//! per 1000 renewals. Memory: the coordinator's resident set with the empty catalog, with the
//! catalog loaded, and with every agent registered and streaming, per table and per agent.
//!
//!   taskset -c 1 cargo bench -p leasehold-benches --bench scale
//!
//! Run under `taskset -c 1`, the bench pins the coordinator to core 0 (`taskset -a -p`) and
//! itself to core 1, so that the load generator and the server each have one core; without
//! `taskset` installed both share the machine and the bench says so.
//!
//! The catalog is seeded in the store, not by DDL (100 000 creates would take minutes): the
//! coordinator creates one table of `columns` columns by DDL, stops, the bench writes copies
//! of that row under other names at the same version, and the coordinator starts again and
//! loads them as it would after any restart.
//!
//! LEASEHOLD_BENCH_AGENTS (default 50000), LEASEHOLD_BENCH_TABLES (default 100000),
//! LEASEHOLD_BENCH_COLUMNS (default 10), LEASEHOLD_BENCH_SECONDS per window (default 20).
//! Loopback only; every call has a deadline and the run stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    ColumnCategory, ColumnDefinition, CreateDatabaseRequest, CreateTableRequest, DataType, GetTableRequest,
    HeartbeatRequest, KeepAliveRequest, KeepAliveResponse, Table,
};
use leasehold_benches::fleet::{Fleet, MockAgents, cpu_seconds, rss_bytes};
use leasehold_benches::{Samples, env_or, micros, pin};
use leasehold_core::timing::{default_renew_interval, default_store_timeout};
use leasehold_store::{Store, StoreOptions, StoredObject, WriteGuard};
use leasehold_tests::{TestCluster, TestStore};
use prost::Message;
use prost::bytes::Buf;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
/// How often every agent renews.
const INTERVAL: Duration = Duration::from_secs(1);
/// A renewal not answered within this counts as failed (the unary heartbeat's deadline).
const ANSWER_DEADLINE: Duration = Duration::from_secs(1);
/// The most streams on one connection (hyper's default `max_concurrent_streams`).
const STREAMS_PER_CONNECTION: usize = 200;
/// Streams opened at once while the fleet connects.
const OPENING_IN_PARALLEL: usize = 256;

/// What every window's renewals saw, shared by the agents' tasks.
#[derive(Default)]
struct Window {
    /// Set while the window measures.
    open: AtomicBool,
    sent: AtomicU64,
    failed: AtomicU64,
    latency: std::sync::Mutex<Samples>,
}

/// One agent's stream: sends at `phase + k·INTERVAL`, awaits each answer, and records it in
/// the window open at the time; stops at `until` or at its first failure.
async fn renew(
    channel: Channel,
    mut request: HeartbeatRequest,
    phase: Duration,
    until: Instant,
    window: Arc<std::sync::Mutex<Arc<Window>>>,
    opened: Arc<AtomicU64>,
) {
    let (outgoing, requests) = mpsc::channel(1);
    let mut sequence = 1;
    let first = KeepAliveRequest { sequence, heartbeat: Some(request.clone()) };
    outgoing.try_send(first).expect("an empty channel");
    let mut client = DataNodesClient::new(channel);
    let opening = client.keep_alive(ReceiverStream::new(requests));
    let mut answers: Streaming<KeepAliveResponse> = match timeout(Duration::from_secs(30), opening).await {
        Ok(Ok(response)) => response.into_inner(),
        other => panic!("opening a KeepAlive stream: {:?}", other.map(|result| result.map(drop))),
    };
    match timeout(Duration::from_secs(30), answers.message()).await {
        Ok(Ok(Some(answer))) => follow(&mut request, &answer),
        other => panic!("the first KeepAlive answer: {:?}", other.map(|result| result.map(drop))),
    }
    opened.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now() + phase;
    let mut due = start;
    while due < until {
        tokio::time::sleep_until(due.into()).await;
        let current = window.lock().expect("window").clone();
        let measuring = current.open.load(Ordering::Relaxed);
        sequence += 1;
        let message = KeepAliveRequest { sequence, heartbeat: Some(request.clone()) };
        let answered = async {
            outgoing.send(message).await.ok()?;
            loop {
                let answer = answers.message().await.ok()??;
                if answer.sequence == sequence {
                    return Some(answer);
                }
            }
        };
        let outcome = timeout(ANSWER_DEADLINE, answered).await.ok().flatten();
        if measuring {
            current.sent.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Some(answer) => {
                if measuring {
                    current.latency.lock().expect("samples").push(due.elapsed());
                }
                follow(&mut request, &answer);
            }
            None => {
                if measuring {
                    current.failed.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
        due += INTERVAL;
    }
}

fn follow(request: &mut HeartbeatRequest, answer: &KeepAliveResponse) {
    let heartbeat = answer.heartbeat.clone().unwrap_or_default();
    request.applied_version = request.applied_version.max(heartbeat.version);
    request.store_epoch = heartbeat.store_epoch;
}

/// A client codec that sends a heartbeat and only counts the answer's bytes: the resyncing
/// agent shares the load generator's core, and decoding a whole catalog there would measure
/// the generator, not the coordinator.
struct CountingCodec;

impl Codec for CountingCodec {
    type Encode = HeartbeatRequest;
    type Decode = usize;
    type Encoder = RequestEncoder;
    type Decoder = ByteCounter;

    fn encoder(&mut self) -> RequestEncoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> ByteCounter {
        ByteCounter
    }
}

struct RequestEncoder;

impl Encoder for RequestEncoder {
    type Item = HeartbeatRequest;
    type Error = tonic::Status;

    fn encode(&mut self, item: HeartbeatRequest, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst).map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

struct ByteCounter;

impl Decoder for ByteCounter {
    type Item = usize;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, tonic::Status> {
        let length = src.remaining();
        src.advance(length);
        Ok(Some(length))
    }
}

/// Seeds `tables` tables like `template` (database `scale`) at the template's version.
async fn seed(url: &str, cluster: &str, tables: usize) {
    let mut options = StoreOptions::new(url);
    options.call_timeout = Duration::from_secs(300);
    let store = Store::connect(options).await.expect("the store");
    let objects = store.run("list objects", async |db| db.list_objects(cluster).await).await.expect("objects");
    let template = objects.iter().find(|object| object.kind == "table").expect("the template table");
    let table = Table::decode(template.payload.as_slice()).expect("a table row");
    let mut tx = store.begin_guarded(&WriteGuard::Standalone).await.expect("a transaction");
    tx.run(async |db| {
        for index in 1..tables {
            let name = format!("t{index:06}");
            let copy = Table { name: name.clone(), ..table.clone() };
            let object = StoredObject {
                kind: "table".into(),
                database: template.database.clone(),
                name,
                payload: copy.encode_to_vec(),
                version: template.version,
            };
            db.put_object(cluster, &object).await?;
        }
        Ok(())
    })
    .await
    .expect("writing the tables");
    tx.commit().await.expect("commit");
    store.close().await;
}

async fn run(agents: usize, tables: usize, columns: usize, seconds: u64) {
    let store = TestStore::sqlite();
    let url = store.url.clone();
    let mut cluster = TestCluster::new(BIN, store);
    // The coordinator lease at its production defaults, not the tests' short ones.
    let lease_ttl = Duration::from_secs(6);
    cluster.timings.lease_ttl = lease_ttl;
    cluster.timings.renew_interval = default_renew_interval(lease_ttl);
    cluster.timings.store_timeout = default_store_timeout(lease_ttl);
    let cluster_name = cluster.cluster.clone();
    // Loading the whole catalog is one store call.
    let env = [("LEASEHOLD_STORE__CALL_TIMEOUT", "30s")];
    cluster.start("c1", &[], &env).await;
    cluster.leader(Duration::from_secs(20)).await;
    let address = cluster.node("c1").grpc.clone();

    // The template: one table of `columns` columns, by DDL.
    let mut catalog = CatalogClient::new(Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy());
    let database = CreateDatabaseRequest { name: "scale".into(), ..Default::default() };
    // The new leader answers UNAVAILABLE until it has loaded its state.
    let started = Instant::now();
    while let Err(status) = catalog.create_database(database.clone()).await {
        assert!(
            status.code() == tonic::Code::Unavailable && started.elapsed() < Duration::from_secs(30),
            "create database: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let definitions = (0..columns)
        .map(|index| ColumnDefinition {
            name: if index == 0 { "time".into() } else { format!("c{index}") },
            data_type: if index == 0 { DataType::Timestamp } else { DataType::Double } as i32,
            category: if index == 0 { ColumnCategory::Time } else { ColumnCategory::Field } as i32,
            comment: String::new(),
        })
        .collect();
    let template = CreateTableRequest {
        database: "scale".into(),
        name: "t000000".into(),
        columns: definitions,
        ..Default::default()
    };
    catalog.create_table(template).await.expect("create the template table");
    let rss_empty = rss_bytes(cluster.node("c1").pid());

    // The rest of the catalog, written while the coordinator is stopped.
    cluster.node("c1").terminate();
    cluster.node_mut("c1").wait_exit(Duration::from_secs(20)).await.expect("the coordinator stops");
    let seeding = Instant::now();
    seed(&url, &cluster_name, tables).await;
    let seeded_in = seeding.elapsed();
    let loading = Instant::now();
    cluster.restart_in_place("c1", &env).await;
    cluster.leader(Duration::from_secs(120)).await;
    // The leader answers reads once its state (the whole catalog) is loaded.
    let last = GetTableRequest { database: "scale".into(), name: format!("t{:06}", tables - 1) };
    while catalog.get_table(last.clone()).await.is_err() {
        assert!(loading.elapsed() < Duration::from_secs(120), "the catalog did not load within 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let loaded_in = loading.elapsed();
    let pid = cluster.node("c1").pid();
    let pinned = pin(pid, 0) && pin(std::process::id(), 1);
    let rss_catalog = rss_bytes(pid);

    // The fleet: registered (8 at a time), then one stream each.
    let mock = MockAgents::default().serve().await;
    let fleet = Fleet::new(&address, agents, 8);
    let registering = Instant::now();
    fleet.register_all(&mock, 64).await;
    let registered_in = registering.elapsed();
    let connections: Vec<Channel> = (0..agents.div_ceil(STREAMS_PER_CONNECTION))
        .map(|_| {
            Endpoint::from_shared(format!("http://{address}"))
                .unwrap()
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .connect_lazy()
        })
        .collect();
    let window = Arc::new(std::sync::Mutex::new(Arc::new(Window::default())));
    let opened = Arc::new(AtomicU64::new(0));
    let warm_up = Duration::from_secs(3);
    let until = Instant::now() + Duration::from_secs(600);
    let mut streams = JoinSet::new();
    let opening = Instant::now();
    for (index, node) in fleet.nodes.iter().enumerate() {
        while opened.load(Ordering::Relaxed) + (OPENING_IN_PARALLEL as u64) <= index as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(opening.elapsed() < Duration::from_secs(300), "opening the streams took more than 300 s");
        }
        let request = HeartbeatRequest {
            node_id: node.node_id.clone(),
            incarnation: node.incarnation.clone(),
            ..Default::default()
        };
        let phase = INTERVAL * index as u32 / agents as u32;
        streams.spawn(renew(
            connections[index / STREAMS_PER_CONNECTION].clone(),
            request,
            phase,
            until,
            window.clone(),
            opened.clone(),
        ));
    }
    while opened.load(Ordering::Relaxed) < agents as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(opening.elapsed() < Duration::from_secs(300), "opening the streams took more than 300 s");
    }
    let opened_in = opening.elapsed();
    tokio::time::sleep(warm_up).await;
    let rss_fleet = rss_bytes(pid);

    println!(
        "agents {agents}, tables {tables} × {columns} columns; pinned: {}; seeded in {:.1} s, loaded in {:.1} s, \
         registered in {:.1} s, streams opened in {:.1} s",
        if pinned { "coordinator core 0, load generator core 1" } else { "no (taskset missing)" },
        seeded_in.as_secs_f64(),
        loaded_in.as_secs_f64(),
        registered_in.as_secs_f64(),
        opened_in.as_secs_f64(),
    );
    println!(
        "coordinator RSS: empty catalog {:.0} MiB, with the catalog {:.0} MiB ({:.0} bytes per table), \
         with the fleet {:.0} MiB ({:.0} bytes per agent)",
        rss_empty as f64 / 1048576.0,
        rss_catalog as f64 / 1048576.0,
        rss_catalog.saturating_sub(rss_empty) as f64 / tables as f64,
        rss_fleet as f64 / 1048576.0,
        rss_fleet.saturating_sub(rss_catalog) as f64 / agents as f64,
    );
    println!();
    println!(
        "| window | renewals/s | failed | p50 µs | p99 µs | max µs | coordinator CPU ms per 1000 | resyncs | resync p50 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");

    let (_, first_term) = cluster.leader(Duration::from_secs(10)).await;
    let mut steady_p99 = Duration::ZERO;
    let resync_bytes = Arc::new(AtomicU64::new(0));
    for resyncing in [false, true] {
        let measured = Arc::new(Window::default());
        *window.lock().expect("window") = measured.clone();
        let resyncs = resyncing.then(|| {
            let (fleet, mock, stop) = (Fleet::named(&address, "resync", 1, 1), mock.clone(), measured.clone());
            let (address, resync_bytes) = (address.clone(), resync_bytes.clone());
            tokio::spawn(async move {
                fleet.register_all(&mock, 1).await;
                let channel = Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy();
                let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
                let node = &fleet.nodes[0];
                let mut latency = Samples::default();
                while !stop.open.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                while stop.open.load(Ordering::Relaxed) {
                    let next = Instant::now() + INTERVAL;
                    let request = HeartbeatRequest {
                        node_id: node.node_id.clone(),
                        incarnation: node.incarnation.clone(),
                        needs_resync: true,
                        ..Default::default()
                    };
                    let at = Instant::now();
                    let path = PathAndQuery::from_static("/leasehold.v1.DataNodes/Heartbeat");
                    let answered = async {
                        client.ready().await.map_err(|error| tonic::Status::unavailable(error.to_string()))?;
                        client.unary(tonic::Request::new(request), path, CountingCodec).await
                    };
                    match timeout(Duration::from_secs(30), answered).await {
                        Ok(Ok(answer)) => {
                            // The answer carries the whole catalog: far more than a bare grant.
                            assert!(*answer.get_ref() > 10 * tables, "a resync answers with the snapshot");
                            resync_bytes.store(*answer.get_ref() as u64, Ordering::Relaxed);
                        }
                        failed => {
                            eprintln!("a resync failed: {:?}", failed.map(|answer| answer.map(drop)));
                            tokio::time::sleep_until(next.into()).await;
                            continue;
                        }
                    }
                    latency.push(at.elapsed());
                    tokio::time::sleep_until(next.into()).await;
                }
                latency
            })
        });
        let cpu_before = cpu_seconds(pid);
        let started = Instant::now();
        measured.open.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        measured.open.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let cpu = cpu_seconds(pid) - cpu_before;
        let resync_latency = match resyncs {
            Some(task) => Some(task.await.expect("the resyncing agent")),
            None => None,
        };
        // Renewals in flight at the close finish within their deadline.
        tokio::time::sleep(ANSWER_DEADLINE).await;
        let latency = std::mem::take(&mut *measured.latency.lock().expect("samples"));
        let (sent, failed) = (measured.sent.load(Ordering::Relaxed), measured.failed.load(Ordering::Relaxed));
        let p99 = latency.quantile(0.99);
        if !resyncing {
            steady_p99 = p99;
        }
        println!(
            "| {} | {:.0} | {failed} | {} | {} | {} | {:.2} | {} | {} |",
            if resyncing { "resync" } else { "steady" },
            sent as f64 / elapsed.as_secs_f64(),
            micros(latency.quantile(0.5)),
            micros(p99),
            micros(latency.max()),
            1000.0 * cpu / latency.len().max(1) as f64 * 1000.0,
            resync_latency.as_ref().map_or("".into(), |samples| samples.len().to_string()),
            resync_latency
                .as_ref()
                .map_or("".into(), |samples| format!("{:.1}", samples.quantile(0.5).as_secs_f64() * 1000.0)),
        );
        if resyncing {
            println!();
            println!("resync window p99 / steady p99: {:.2}", p99.as_secs_f64() / steady_p99.as_secs_f64().max(1e-9));
        }
    }
    println!("a resync answer: {:.1} MiB", resync_bytes.load(Ordering::Relaxed) as f64 / 1048576.0);
    let (_, last_term) = cluster.leader(Duration::from_secs(30)).await;
    println!("leader's term: {first_term} before the windows, {last_term} after (a change means it stepped down)");
    streams.abort_all();
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let agents = env_or("LEASEHOLD_BENCH_AGENTS", 50_000);
    let tables = env_or("LEASEHOLD_BENCH_TABLES", 100_000);
    let columns = env_or("LEASEHOLD_BENCH_COLUMNS", 10);
    let seconds = env_or("LEASEHOLD_BENCH_SECONDS", 20);
    // One worker: the load generator gets one core.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(run(agents, tables, columns, seconds));
}
