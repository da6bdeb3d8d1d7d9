//! Failover time of the real binary: SIGKILL the leader of three coordinators 20 times, and
//! stop it gracefully (SIGTERM) 20 times, at `ha.lease-ttl = 2s`. Each trial measures from the
//! signal to the moment a new leader publishes itself as leader: every other coordinator has a
//! `WatchLeader` stream open before the signal, and the first one to report *itself* leader
//! of a later term ends the trial. A stream pushes the change as the node makes it, so the
//! resolution is the loopback delivery of one message, not a polling interval.
//!
//!   cargo bench -p leasehold-benches --bench failover
//!
//! A SIGKILL cannot release the lease: the successor waits for the lease time left at the
//! kill, which this bench reads from the lease row just before the kill (the store's clock).
//! Each kill lands at a random point of the renew cycle, as a crash would, rather than right
//! after the previous handoff. A graceful trial is broken down from the JSON logs of the two
//! processes (the same machine's wall clock).
//!
//! LEASEHOLD_BENCH_STORE=postgres or mysql uses LEASEHOLD_TEST_POSTGRES_URL / _MYSQL_URL
//! instead of a SQLite file; LEASEHOLD_BENCH_TRIALS sets the trials per kind (default 20).

use std::time::{Duration, SystemTime};

use leasehold::v1::WatchLeaderRequest;
use leasehold::v1::cluster_client::ClusterClient;
use leasehold_benches::{Samples, millis};
use leasehold_store::{Store, StoreOptions};
use leasehold_tests::store::Kind;
use leasehold_tests::{TestCluster, TestStore};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Endpoint;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
const NODES: [&str; 3] = ["c1", "c2", "c3"];
const TTL: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(666);

fn report(label: &str, samples: &Samples) {
    println!(
        "| {label} | {} | {} | {} | {} | {} |",
        samples.len(),
        millis(samples.quantile(0.0)),
        millis(samples.quantile(0.5)),
        millis(samples.quantile(0.99)),
        millis(samples.max())
    );
}

/// Opens a `WatchLeader` stream on every running node but `leader` and returns, once each
/// has delivered its first message (so each is open before the signal), a receiver of
/// `(node id, term, when)` for the first node that reports itself leader above `term`.
async fn watch_for_successor(
    cluster: &mut TestCluster,
    leader: &str,
    term: u64,
) -> mpsc::UnboundedReceiver<(String, u64, Instant)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    for (node_id, address) in cluster.endpoints() {
        if node_id == leader {
            continue;
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}")).expect("an address").tcp_nodelay(true);
        let channel = endpoint.connect().await.expect("connecting to a coordinator");
        let mut stream = ClusterClient::new(channel)
            .watch_leader(WatchLeaderRequest {})
            .await
            .expect("opening WatchLeader")
            .into_inner();
        stream.message().await.expect("the first WatchLeader message");
        let sender = sender.clone();
        tokio::spawn(async move {
            while let Ok(Some(info)) = stream.message().await {
                if info.known && info.node_id == node_id && info.term > term {
                    let _ = sender.send((node_id, info.term, Instant::now()));
                    return;
                }
            }
        });
    }
    receiver
}

/// How long the lease row says the lease has left now, on the store's clock.
async fn lease_left(store: &Store, cluster: &str) -> Duration {
    let view = store.run("read lease", async |db| db.read_lease(cluster).await).await.expect("reading the lease");
    Duration::from_millis(view.remaining_ms().max(0).unsigned_abs())
}

/// The wall-clock time of a JSON log event.
fn logged_at(event: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(event["timestamp"].as_str()?).ok()
}

/// The offsets from `signalled` of the stages of one graceful handoff, from both logs.
struct Stages {
    names: Vec<&'static str>,
    samples: Vec<Samples>,
}

impl Stages {
    const OLD: [(&'static str, &'static str); 4] = [
        (
            "signal handled",
            "shutting down: stepping down, releasing the lease, draining requests (signal again to stop at once)",
        ),
        ("stepped down", "stepped down"),
        ("lease released (commit)", "released the lease so that a successor can take over at once"),
        ("successor told (answer)", "told the successor that the lease is free"),
    ];
    const NEW: [(&'static str, &'static str); 2] = [
        ("successor woken", "woken by a lease release notice; re-reading the lease"),
        ("successor became leader (acquire committed)", "became leader"),
    ];

    fn new() -> Self {
        let names: Vec<_> = Self::OLD.iter().chain(Self::NEW.iter()).map(|(name, _)| *name).collect();
        let samples = vec![Samples::default(); names.len()];
        Stages { names, samples }
    }

    fn record(&mut self, old: &leasehold_tests::Node, new: &leasehold_tests::Node, signalled: SystemTime) {
        let stages = Self::OLD.iter().map(|stage| (old, stage)).chain(Self::NEW.iter().map(|stage| (new, stage)));
        for (index, (node, (_, message))) in stages.enumerate() {
            // The first such event after the signal: the successor may have logged earlier ones.
            let at = node.events(message).iter().filter_map(logged_at).filter(|at| *at >= signalled).min();
            if let Some(at) = at {
                self.samples[index].push(at.duration_since(signalled).unwrap_or_default());
            }
        }
    }

    fn print(&self) {
        println!("\ngraceful handoff, stage reached after the signal (from the processes' JSON logs)");
        println!("| stage | trials | p50 ms | max ms |");
        println!("| --- | ---: | ---: | ---: |");
        for (name, samples) in self.names.iter().zip(&self.samples) {
            println!(
                "| {name} | {} | {:.1} | {:.1} |",
                samples.len(),
                samples.quantile(0.5).as_secs_f64() * 1e3,
                samples.max().as_secs_f64() * 1e3
            );
        }
    }
}

async fn trials(kind: Kind, count: usize) {
    let store = TestStore::of(kind).expect("the chosen store");
    let lease_store = Store::connect(StoreOptions::new(store.url.clone())).await.expect("connecting to the store");
    let mut cluster = TestCluster::new(BIN, store);
    cluster.timings.lease_ttl = TTL;
    cluster.timings.renew_interval = RENEW;
    cluster.timings.store_timeout = Duration::from_millis(300);
    for node_id in NODES {
        cluster.start(node_id, &[], &[]).await;
    }
    let (_, mut term) = cluster.leader(Duration::from_secs(20)).await;
    let mut killed = Samples::default();
    let mut left_at_kill = Samples::default();
    let mut after_expiry = Samples::default();
    let mut stopped = Samples::default();
    let mut killed_polled = Samples::default();
    let mut stopped_polled = Samples::default();
    let mut stages = Stages::new();
    for trial in 0..count * 2 {
        let graceful = trial % 2 == 1;
        let (leader, _) = cluster.leader(Duration::from_secs(20)).await;
        let mut successor = watch_for_successor(&mut cluster, &leader, term).await;
        let mut left = Duration::ZERO;
        let (signalled, signalled_wall) = if graceful {
            let at = (Instant::now(), SystemTime::now());
            cluster.node(&leader).terminate();
            at
        } else {
            // A crash is not timed to the renew cycle: land anywhere in it.
            let offset = RENEW.mul_f64(rand::random::<f64>());
            tokio::time::sleep(offset).await;
            let read_at = Instant::now();
            let read = lease_left(&lease_store, &cluster.cluster).await;
            let at = (Instant::now(), SystemTime::now());
            cluster.node_mut(&leader).kill();
            left = read.saturating_sub(at.0 - read_at);
            left_at_kill.push(left);
            at
        };
        // The previous measure runs alongside: `GetHaState` on every node every 20 ms, which
        // also checks that exactly one node leads the new term.
        let (watched, polled) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(20), successor.recv()),
            cluster.leader_above(term, Duration::from_secs(20)),
        );
        let (new_leader, new_term, seen) =
            watched.expect("a successor within 20 s").expect("a watcher reports the successor");
        assert_eq!((polled.0.as_str(), polled.1), (new_leader.as_str(), new_term));
        let took = seen - signalled;
        term = new_term;
        if graceful {
            stopped.push(took);
            stopped_polled.push(polled.2 - signalled);
        } else {
            killed.push(took);
            killed_polled.push(polled.2 - signalled);
            after_expiry.push(took.saturating_sub(left));
        }
        // Bring the old leader back (a crashed id waits out one TTL before it may restart).
        cluster.node_mut(&leader).wait_exit(Duration::from_secs(10)).await;
        if graceful {
            stages.record(cluster.node(&leader), cluster.node(&new_leader), signalled_wall);
        }
        cluster.start(&leader, &[], &[]).await;
        eprint!(".");
    }
    println!("\n{kind:?} store, lease-ttl 2s, renew-interval 666ms, 3 coordinators");
    println!("| stop | trials | min ms | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    report("SIGKILL", &killed);
    report("SIGKILL: lease left at the kill", &left_at_kill);
    report("SIGKILL: failover minus lease left", &after_expiry);
    report("SIGTERM (graceful)", &stopped);
    report("SIGKILL, polled GetHaState every 20 ms", &killed_polled);
    report("SIGTERM, polled GetHaState every 20 ms", &stopped_polled);
    stages.print();
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let kind = match std::env::var("LEASEHOLD_BENCH_STORE").as_deref() {
        Ok("postgres") => Kind::Postgres,
        Ok("mysql") => Kind::MySql,
        _ => Kind::Sqlite,
    };
    let count = std::env::var("LEASEHOLD_BENCH_TRIALS").ok().and_then(|value| value.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(trials(kind, count));
}
