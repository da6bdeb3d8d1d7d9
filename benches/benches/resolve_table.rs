//! `Agent::resolve_table` (an owned table) and `Agent::with_table` (a borrowed one) per call: a
//! table the cache holds under a valid lease, and fenced, on one thread and with three other
//! threads reading the same way at the same time, against a plain `BTreeMap` lookup measured
//! in the same run.
//!
//!   cargo bench -p leasehold-benches --bench resolve_table
//!
//! The valid case needs a lease, so a real coordinator is started and an embedded agent
//! heartbeats to it while the bench runs.
//!
//! After the criterion rows, a second table runs 1, 2 and 4 reader threads for a fixed time
//! each and counts every call of every thread: the CPU time all readers spent per call
//! (`CLOCK_THREAD_CPUTIME_ID`, summed over the threads) is what a read costs, however many
//! threads share the cores, and it grows with the readers only if they contend on shared
//! memory. Calls per second of all readers together and the cores they got (their CPU time
//! over the wall time) are printed beside it: CPU time per call is wall time per call per core
//! the readers actually had, so a busy shared machine does not inflate it. The kinds are interleaved round by
//! round and the medians of the rounds are printed (LEASEHOLD_BENCH_ROUNDS, default 5, of
//! LEASEHOLD_BENCH_ROUND_MS, default 1000 ms, per kind and thread count).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use leasehold_agent::agent::AcceptAll;
use leasehold_agent::{Agent, AgentConfig, AgentEvent};
use leasehold_benches::env_or;
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

type Lookup = BTreeMap<String, BTreeMap<String, u64>>;

fn lookup_map() -> Lookup {
    (0..8).map(|d| (format!("db{d}"), (0..8).map(|t| (format!("t{t}"), t)).collect())).collect()
}

fn baseline(map: &Lookup) {
    black_box(map.get(black_box("db3")).and_then(|tables| tables.get(black_box("t5"))));
}

fn resolve(agent: &Agent) {
    black_box(agent.resolve_table(black_box("db"), black_box("t"))).ok();
}

fn resolve_table(c: &mut Criterion, setup: &Setup) {
    let map = lookup_map();
    let mut group = c.benchmark_group("resolve_table");
    both_clocks(&mut group, "baseline: nested BTreeMap lookup", || baseline(&map));
    let (valid, fenced) = (setup.valid.clone(), setup.fenced.clone());
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

/// One read, shared by the reader threads.
type Read = Arc<dyn Fn() + Send + Sync>;

/// What `threads` readers did in one timed run: calls, and CPU time, summed over the threads.
#[derive(Debug, Clone, Copy)]
struct ReadersRun {
    calls: u64,
    cpu: Duration,
    wall: Duration,
}

/// Runs `read` on `threads` threads for `duration`, all started together, counting every call.
fn run_readers(threads: usize, duration: Duration, read: &Read) -> ReadersRun {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let totals = Arc::new(Mutex::new((0u64, Duration::ZERO)));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (read, stop, start, totals) = (read.clone(), stop.clone(), start.clone(), totals.clone());
            std::thread::spawn(move || {
                start.wait();
                let cpu_at_start = thread_cpu_time();
                let mut calls = 0u64;
                // The flag is checked once per batch, so that it costs nothing per call.
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        read();
                    }
                    calls += 256;
                }
                let cpu = thread_cpu_time() - cpu_at_start;
                let mut totals = totals.lock().unwrap();
                totals.0 += calls;
                totals.1 += cpu;
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().for_each(|handle| handle.join().unwrap());
    let wall = started.elapsed();
    let (calls, cpu) = *totals.lock().unwrap();
    ReadersRun { calls, cpu, wall }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The readers table: 1, 2 and 4 threads, every kind interleaved round by round.
fn readers(setup: &Setup) {
    let rounds: usize = env_or("LEASEHOLD_BENCH_ROUNDS", 5);
    let duration = Duration::from_millis(env_or("LEASEHOLD_BENCH_ROUND_MS", 1000));
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let map = Arc::new(lookup_map());
    let valid = setup.valid.clone();
    let kinds: Vec<(&str, Read)> = vec![
        ("baseline: nested BTreeMap lookup", Arc::new(move || baseline(&map))),
        ("with_table, valid lease", {
            let valid = valid.clone();
            Arc::new(move || borrow(&valid))
        }),
        ("resolve_table, valid lease", Arc::new(move || resolve(&valid))),
    ];
    let thread_counts = [1, 2, 4];
    let mut runs = vec![vec![Vec::new(); thread_counts.len()]; kinds.len()];
    for _ in 0..rounds {
        for (t, threads) in thread_counts.iter().enumerate() {
            for (k, (_, read)) in kinds.iter().enumerate() {
                runs[k][t].push(run_readers(*threads, duration, read));
            }
        }
    }
    println!("\nreaders on {cores} cores: {rounds} rounds of {} ms per row, medians", duration.as_millis());
    println!(
        "| case | readers | calls/s, all readers | cores the readers got | CPU ns per call | ratio to baseline | ratio to 1 reader |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let cpu_per_call = |run: &ReadersRun| run.cpu.as_secs_f64() * 1e9 / run.calls as f64;
    for (k, (name, _)) in kinds.iter().enumerate() {
        for (t, threads) in thread_counts.iter().enumerate() {
            let per_call = median(runs[k][t].iter().map(cpu_per_call).collect());
            let baseline = median(runs[0][t].iter().map(cpu_per_call).collect());
            let alone = median(runs[k][0].iter().map(cpu_per_call).collect());
            let rate = median(runs[k][t].iter().map(|run| run.calls as f64 / run.wall.as_secs_f64()).collect());
            // How many cores' worth of time the readers had: below `min(readers, cores)` when
            // other work shares the machine, which is why time per call is read in CPU time.
            let got = median(runs[k][t].iter().map(|run| run.cpu.as_secs_f64() / run.wall.as_secs_f64()).collect());
            println!(
                "| {name} | {threads} | {rate:.0} | {got:.2} | {per_call:.1} | {:.2} | {:.2} |",
                per_call / baseline,
                per_call / alone
            );
        }
    }
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let setup = setup();
    resolve_table(&mut criterion, &setup);
    // Under `cargo test --benches` criterion runs each row once; the timed table is skipped.
    if measuring {
        readers(&setup);
    }
    criterion.final_summary();
}
