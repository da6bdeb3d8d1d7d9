//! Lease renewals, closed loop, in the shape of etcd's `benchmark lease-keepalive`: `conns`
//! HTTP/2 connections carry `streams` simulated agents in all (etcd's `--conns` and
//! `--clients`), each renewing as fast as its answers come back. Three modes, measured one
//! after the other for every row and repeat, against one coordinator (SQLite, default timings)
//! on the same connections:
//!
//! - **Heartbeat**: the unary call, one HTTP/2 stream per renewal;
//! - **KeepAlive**: one long-lived stream per agent; send, await the answer echoing that
//!   sequence number, send the next;
//! - **GetHaState**: the gRPC floor, a unary call that does no work of its own.
//!
//! Per row: operations per second, p50 and p99 latency, and the coordinator's CPU-seconds per
//! 1000 operations (from `/proc`, over the measured window). The issue gates on server cost, so
//! the ratios compare operations per coordinator CPU-second: KeepAlive over Heartbeat, and
//! Heartbeat over GetHaState (1.0 would mean a renewal costs the server no more than the floor).
//! Ratios are taken within each repeat, then the median of each figure is reported. The load
//! generator shares the machine with the coordinator, so closed-loop rates compare the client
//! stacks as much as the server.
//!
//!   cargo bench -p leasehold-benches --bench renewals
//!
//! LEASEHOLD_BENCH_SHAPES sets the rows as `CONNSxSTREAMS` (default `1x1,8x64,8x256,8x1024`);
//! LEASEHOLD_BENCH_SECONDS the measured seconds per mode (default 8); LEASEHOLD_BENCH_REPEATS
//! the repeats (default 3). The coordinator admits 200 HTTP/2 streams per connection (hyper's
//! default), so a row needs `streams / conns ≤ 200`. Loopback only; every call has a deadline,
//! and the run stops by itself.

use std::time::{Duration, Instant};

use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{HeartbeatRequest, HeartbeatResponse, KeepAliveRequest, KeepAliveResponse};
use leasehold_benches::fleet::{Fleet, MockAgents, cpu_seconds};
use leasehold_benches::{Samples, env_list, env_or, floor, micros};
use leasehold_tests::{TestCluster, TestStore};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
/// The longest one renewal (or opening a connection or a stream) may take before the run fails.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// The most KeepAlive streams the coordinator admits on one connection (hyper's default).
const STREAMS_PER_CONNECTION: usize = 200;

/// What a simulated agent calls; the discriminant is the mode's slot in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Heartbeat = 0,
    KeepAlive = 1,
    GetHaState = 2,
}

const MODES: [Mode; 3] = [Mode::Heartbeat, Mode::KeepAlive, Mode::GetHaState];

#[derive(Debug, Clone, Copy)]
struct Shape {
    conns: usize,
    streams: usize,
}

impl Shape {
    fn parse(text: &str) -> Shape {
        let parsed = text.trim().split_once('x').and_then(|(conns, streams)| {
            Some(Shape { conns: conns.trim().parse().ok()?, streams: streams.trim().parse().ok()? })
        });
        let shape = parsed.unwrap_or_else(|| panic!("LEASEHOLD_BENCH_SHAPES: {text:?} is not CONNSxSTREAMS"));
        assert!(
            shape.conns >= 1 && shape.streams >= shape.conns,
            "LEASEHOLD_BENCH_SHAPES: {text:?} needs at least one stream per connection"
        );
        assert!(
            shape.streams.div_ceil(shape.conns) <= STREAMS_PER_CONNECTION,
            "LEASEHOLD_BENCH_SHAPES: {text:?} puts more than {STREAMS_PER_CONNECTION} streams on a connection"
        );
        shape
    }
}

/// One simulated agent's caller in one mode, its connection already chosen.
enum Caller {
    Heartbeat {
        client: DataNodesClient<Channel>,
        request: HeartbeatRequest,
    },
    KeepAlive {
        outgoing: mpsc::Sender<KeepAliveRequest>,
        answers: Streaming<KeepAliveResponse>,
        sequence: u64,
        request: HeartbeatRequest,
    },
    GetHaState {
        client: ClusterClient<Channel>,
    },
}

/// The agent's next heartbeat takes what the answer says its cache now holds.
fn follow(request: &mut HeartbeatRequest, answer: &HeartbeatResponse) -> Result<(), Status> {
    if answer.resync {
        return Err(Status::failed_precondition("the coordinator asked for a resync"));
    }
    request.applied_version = request.applied_version.max(answer.version);
    if request.store_epoch != answer.store_epoch {
        request.store_epoch.clone_from(&answer.store_epoch);
    }
    Ok(())
}

impl Caller {
    /// The caller for `mode`; a KeepAlive caller has opened its stream and had one answer.
    async fn open(mode: Mode, channel: Channel, request: HeartbeatRequest) -> Result<Caller, Status> {
        let mut caller = match mode {
            Mode::Heartbeat => Caller::Heartbeat { client: DataNodesClient::new(channel), request },
            Mode::GetHaState => Caller::GetHaState { client: ClusterClient::new(channel) },
            Mode::KeepAlive => {
                let (outgoing, requests) = mpsc::channel(1);
                let answers =
                    DataNodesClient::new(channel).keep_alive(ReceiverStream::new(requests)).await?.into_inner();
                Caller::KeepAlive { outgoing, answers, sequence: 0, request }
            }
        };
        caller.call().await?;
        Ok(caller)
    }

    /// One operation, answered.
    async fn call(&mut self) -> Result<(), Status> {
        match self {
            Caller::Heartbeat { client, request } => {
                let answer = client.heartbeat(request.clone()).await?.into_inner();
                follow(request, &answer)
            }
            Caller::KeepAlive { outgoing, answers, sequence, request } => {
                *sequence += 1;
                let message = KeepAliveRequest { sequence: *sequence, heartbeat: Some(request.clone()) };
                outgoing.send(message).await.map_err(|_| Status::aborted("the stream's sender closed"))?;
                let answer = answers.message().await?.ok_or_else(|| Status::aborted("the stream ended"))?;
                if answer.sequence != *sequence {
                    return Err(Status::internal(format!("answer {} to request {sequence}", answer.sequence)));
                }
                follow(request, &answer.heartbeat.unwrap_or_default())
            }
            Caller::GetHaState { client } => floor::call(client).await.map(drop),
        }
    }
}

/// What one closed-loop caller saw.
#[derive(Default)]
struct Tally {
    latency: Samples,
    failed: u64,
}

/// Calls back to back until `until`; stops at the first failure, which the tally counts.
async fn closed_loop(mut caller: Caller, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let at = Instant::now();
        match timeout(CALL_DEADLINE, caller.call()).await {
            Ok(Ok(())) => tally.latency.push(at.elapsed()),
            _ => {
                tally.failed += 1;
                break;
            }
        }
    }
    tally
}

/// One mode over one row.
#[derive(Debug, Clone, Copy)]
struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Coordinator CPU-seconds per 1000 operations.
    cpu_per_1000: f64,
    /// Operations per coordinator CPU-second.
    per_cpu_second: f64,
    failed: u64,
}

/// Runs `mode` for `seconds` with agent `i` on `channels[i % conns]`.
async fn measure(mode: Mode, pid: u32, channels: &[Channel], requests: &[HeartbeatRequest], seconds: u64) -> Measured {
    // Every connection and stream is opened (and answered once) before the clock starts.
    let mut opening = JoinSet::new();
    for (index, request) in requests.iter().enumerate() {
        let (channel, request) = (channels[index % channels.len()].clone(), request.clone());
        opening.spawn(async move { timeout(CALL_DEADLINE, Caller::open(mode, channel, request)).await });
    }
    let mut callers = Vec::with_capacity(requests.len());
    while let Some(opened) = opening.join_next().await {
        match opened.expect("an opening task") {
            Ok(Ok(caller)) => callers.push(caller),
            Ok(Err(status)) => panic!("{mode:?}: opening a caller failed: {status:?}"),
            Err(_) => panic!("{mode:?}: opening a caller took more than {CALL_DEADLINE:?}"),
        }
    }
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut running = JoinSet::new();
    for caller in callers {
        running.spawn(closed_loop(caller, until));
    }
    // Each caller stops by `until` plus one bounded call.
    let mut latency = Samples::default();
    let mut failed = 0;
    while let Some(tally) = running.join_next().await {
        let tally = tally.expect("a caller");
        latency.merge(tally.latency);
        failed += tally.failed;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    let ops = latency.len() as f64;
    Measured {
        per_second: ops / elapsed.as_secs_f64(),
        p50: latency.quantile(0.5),
        p99: latency.quantile(0.99),
        cpu_per_1000: 1000.0 * cpu / ops.max(1.0),
        // /proc counts in 10 ms ticks: a window too short to register one is not a ratio.
        per_cpu_second: if cpu > 0.0 { ops / cpu } else { f64::NAN },
        failed,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_duration(values: impl Iterator<Item = Duration>) -> Duration {
    Duration::from_secs_f64(median(values.map(|value| value.as_secs_f64()).collect()))
}

/// `conns` connections to `address`, each connected before it is used.
async fn connect(address: &str, conns: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(conns);
    for _ in 0..conns {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .expect("address")
            .tcp_nodelay(true)
            .connect_timeout(CALL_DEADLINE);
        channels.push(timeout(CALL_DEADLINE, endpoint.connect()).await.expect("connecting").expect("a connection"));
    }
    channels
}

async fn row(shape: Shape, pid: u32, address: &str, requests: &[HeartbeatRequest], seconds: u64, repeats: usize) {
    let channels = connect(address, shape.conns).await;
    let requests = &requests[..shape.streams];
    let mut runs: Vec<[Measured; 3]> = Vec::with_capacity(repeats);
    for repeat in 0..repeats {
        // The order rotates from repeat to repeat, so no mode always runs on a warmer machine.
        let mut measured = [None; 3];
        for offset in 0..MODES.len() {
            let mode = MODES[(repeat + offset) % MODES.len()];
            measured[mode as usize] = Some(measure(mode, pid, &channels, requests, seconds).await);
        }
        runs.push(measured.map(|measured| measured.expect("every mode ran")));
    }
    let mut cells = vec![format!("{} × {}", shape.conns, shape.streams)];
    for slot in 0..MODES.len() {
        let of = |figure: fn(&Measured) -> f64| median(runs.iter().map(|run| figure(&run[slot])).collect());
        cells.push(format!("{:.0}", of(|m| m.per_second)));
        cells.push(micros(median_duration(runs.iter().map(|run| run[slot].p50))));
        cells.push(micros(median_duration(runs.iter().map(|run| run[slot].p99))));
        cells.push(format!("{:.4}", of(|m| m.cpu_per_1000)));
    }
    let ratio = |over: Mode, under: Mode| {
        median(runs.iter().map(|run| run[over as usize].per_cpu_second / run[under as usize].per_cpu_second).collect())
    };
    cells.push(format!("{:.2}", ratio(Mode::KeepAlive, Mode::Heartbeat)));
    cells.push(format!("{:.2}", ratio(Mode::Heartbeat, Mode::GetHaState)));
    cells.push(runs.iter().flatten().map(|measured| measured.failed).sum::<u64>().to_string());
    println!("| {} |", cells.join(" | "));
}

/// Whether an `etcd` executable is on `PATH`.
fn etcd_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|directory| directory.join("etcd").is_file()))
}

async fn run(shapes: &[Shape], seconds: u64, repeats: usize) {
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &[], &[]).await;
    cluster.leader(Duration::from_secs(20)).await;
    let node = cluster.node("c1");
    let (address, pid) = (node.grpc.clone(), node.pid());
    let mock = MockAgents::default().serve().await;
    let agents = shapes.iter().map(|shape| shape.streams).max().unwrap_or(0);
    let fleet = Fleet::new(&address, agents, 8);
    fleet.register_all(&mock, 8).await;
    // One unary heartbeat per agent, so each holds a lease and its cache the current version:
    // no renewal in the measured windows asks for a resync.
    let mut client = DataNodesClient::new(connect(&address, 1).await.remove(0));
    let mut requests = Vec::with_capacity(agents);
    for node in fleet.nodes.iter() {
        let mut request = HeartbeatRequest {
            node_id: node.node_id.clone(),
            incarnation: node.incarnation.clone(),
            ..Default::default()
        };
        let answer = timeout(CALL_DEADLINE, client.heartbeat(request.clone()))
            .await
            .expect("a first heartbeat in time")
            .expect("a first heartbeat")
            .into_inner();
        request.store_epoch = answer.store_epoch;
        request.applied_version = answer.version;
        requests.push(request);
    }
    println!(
        "| conns × streams \
         | Heartbeat /s | p50 µs | p99 µs | CPU-s per 1000 \
         | KeepAlive /s | p50 µs | p99 µs | CPU-s per 1000 \
         | GetHaState /s | p50 µs | p99 µs | CPU-s per 1000 \
         | ops per server CPU-s: KeepAlive / Heartbeat | Heartbeat / GetHaState | failed |"
    );
    println!("| --- |{}", " ---: |".repeat(15));
    for &shape in shapes {
        row(shape, pid, &address, &requests, seconds, repeats).await;
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let shapes: Vec<Shape> =
        env_list("LEASEHOLD_BENCH_SHAPES", "1x1,8x64,8x256,8x1024").iter().map(|shape| Shape::parse(shape)).collect();
    let seconds = env_or("LEASEHOLD_BENCH_SECONDS", 8u64);
    let repeats = env_or("LEASEHOLD_BENCH_REPEATS", 3usize).max(1);
    if etcd_installed() {
        println!("etcd is installed, but this bench does not run etcd's LeaseKeepAlive yet: Leasehold only");
    } else {
        println!("etcd skipped: no `etcd` on PATH (Debian's etcd-server package)");
    }
    println!("{seconds} s per mode, {repeats} repeats, medians; one coordinator on SQLite");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(run(&shapes, seconds, repeats));
}
