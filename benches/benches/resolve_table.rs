//! `Agent::resolve_table` (an owned table) and `Agent::with_table` (a borrowed one) per call: a
//! table the cache holds under a valid lease, and fenced, on one thread and with three other
//! threads reading the same way at the same time, against a plain `BTreeMap` lookup measured
//! in the same run.
//!
//!   cargo bench -p leasehold-benches --bench resolve_table
//!
//! The valid case needs a lease, so a real coordinator is started and an embedded agent
//! heartbeats to it while the bench runs.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use leasehold_agent::agent::AcceptAll;
use leasehold_agent::{Agent, AgentConfig, AgentEvent};
use leasehold_tests::requests::{catalog_at, create_database, create_table};
use leasehold_tests::{TestCluster, TestStore, eventually};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");

struct Setup {
    _runtime: tokio::runtime::Runtime,
    _cluster: TestCluster,
    _shutdown: tokio_util::sync::DropGuard,
    valid: Agent,
    fenced: Agent,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let shutdown = CancellationToken::new();
    let (cluster, valid) = runtime.block_on(async {
        let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
        cluster.start("c1", &[], &[]).await;
        cluster.leader(Duration::from_secs(20)).await;
        let address = cluster.node("c1").grpc.clone();
        // The valid case reads a table the cache holds: the path a serving node takes.
        let mut catalog = catalog_at(&address);
        // A new leader answers LEADER_STARTING until it has loaded its state: retry (with a
        // request id, so that a retry is the same request) until it accepts the DDL.
        eventually("the leader accepts DDL", Duration::from_secs(20), || {
            let mut catalog = catalog.clone();
            async move { catalog.create_database(create_database("db", "bench-db")).await.ok() }
        })
        .await;
        catalog.create_table(create_table("db", "t", "")).await.expect("create table");
        let config = AgentConfig::new("bench1", vec![address], "127.0.0.1:9");
        let agent = Agent::new(config, Arc::new(AcceptAll));
        let mut events = agent.subscribe();
        tokio::spawn(agent.clone().run(shutdown.clone()));
        loop {
            if let Ok(AgentEvent::Unfenced { .. }) = events.recv().await {
                break;
            }
        }
        agent.resolve_table("db", "t").expect("the agent serves the table");
        (cluster, agent)
    });
    let fenced = Agent::new(AgentConfig::new("bench2", vec!["127.0.0.1:9".into()], "127.0.0.1:9"), Arc::new(AcceptAll));
    Setup { _runtime: runtime, _cluster: cluster, _shutdown: shutdown.drop_guard(), valid, fenced }
}

/// One read through `with_table`, touching the schema as a reader would.
fn borrow(agent: &Agent) {
    black_box(agent.with_table(black_box("db"), black_box("t"), |table| table.schema.created_version)).ok();
}

/// Runs `read` in three background threads while `body` measures.
fn contended<R: Fn() + Send + Sync + 'static>(read: Arc<R>, body: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (read, stop) = (read.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    read();
                }
            })
        })
        .collect();
    body();
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|thread| thread.join().unwrap());
}

/// The calling thread's CPU time. Time it spent descheduled does not count, so a row with more
/// busy threads than cores measures what the readers cost each other (a cache line moving
/// between cores), not the share of the cores the thread got.
fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// Measures `read` twice: per call in wall time (`name`), and per call in the measuring
/// thread's CPU time (`name, thread CPU`).
fn both_clocks(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, read: impl Fn()) {
    group.bench_function(name, |b| b.iter(&read));
    group.bench_function(format!("{name}, thread CPU"), |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            (0..iters).for_each(|_| read());
            thread_cpu_time() - start
        })
    });
}

fn resolve_table(c: &mut Criterion) {
    let setup = setup();
    let map: BTreeMap<String, BTreeMap<String, u64>> =
        (0..8).map(|d| (format!("db{d}"), (0..8).map(|t| (format!("t{t}"), t)).collect())).collect();
    let mut group = c.benchmark_group("resolve_table");
    both_clocks(&mut group, "baseline: nested BTreeMap lookup", || {
        black_box(map.get(black_box("db3")).and_then(|tables| tables.get(black_box("t5"))));
    });
    let (valid, fenced) = (setup.valid.clone(), setup.fenced.clone());
    let resolve = |agent: &Agent| {
        black_box(agent.resolve_table(black_box("db"), black_box("t"))).ok();
    };
    both_clocks(&mut group, "valid lease", || resolve(&valid));
    both_clocks(&mut group, "with_table, valid lease", || borrow(&valid));
    both_clocks(&mut group, "fenced", || resolve(&fenced));
    let others = |agent: &Agent, read: fn(&Agent)| {
        let agent = agent.clone();
        Arc::new(move || read(&agent))
    };
    contended(others(&valid, resolve), || {
        both_clocks(&mut group, "valid lease, 3 other readers", || resolve(&valid));
    });
    contended(others(&valid, borrow), || {
        both_clocks(&mut group, "with_table, valid lease, 3 other readers", || borrow(&valid));
    });
    contended(others(&fenced, resolve), || {
        both_clocks(&mut group, "fenced, 3 other readers", || resolve(&fenced));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = resolve_table
}
criterion_main!(benches);
