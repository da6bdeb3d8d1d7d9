//! Bucket reaction times of the real binary: one coordinator on SQLite and four agent
//! processes in a pool of 64 buckets, a 1 s heartbeat, a 3 s fence, and the offline timeout at
//! its floor, `T_proceed` (+ 1 ms). Each repeat:
//!
//! - **join**: a fifth agent process is started; measured from its spawn until its own
//!   `GetOwnership` answers its share (⌊64/5⌋ = 12 buckets), and until the leader's assignment
//!   is balanced over the five with nothing in flight;
//! - **SIGKILL**: that agent is killed; the leader's `ListDataNodes` (its `silent_ms`) gives the
//!   instant it last heard from it, and the time is measured from there until every bucket it
//!   held is owned, in their own `GetOwnership`, by the four others. Reported as
//!   `offline-timeout + N ms`.
//!
//! Alongside, in the same run: a plain `GetHaState` round trip and a `Barrier` (one broadcast
//! to the four agents, through their proxies). Polls every 5 ms, so add up to ~5 ms of
//! resolution. Loopback only; every wait has a deadline, and the run stops by itself.
//!
//!   cargo bench -p leasehold-benches --bench bucket_reaction
//!
//! `LEASEHOLD_BENCH_REPEATS` sets the repeats (default 5).

use std::collections::BTreeSet;
use std::time::Duration;

use leasehold::v1::assignments_client::AssignmentsClient;
use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::{
    CreatePoolRequest, GetAssignmentRequest, GetHaStateRequest, GetOwnershipRequest, ListDataNodesRequest,
};
use leasehold_benches::Samples;
use leasehold_tests::process::channel;
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab, TestAgent, eventually};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-bench-node");
const POOL: &str = "work";
const BUCKETS: u32 = 64;
const IN_POOL: &[(&str, &str)] = &[("LEASEHOLD_AGENT_POOLS", POOL)];
/// How often a condition is polled while a reaction is timed.
const POLL: Duration = Duration::from_millis(5);
/// The longest any one reaction may take before the run fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every [`POLL`] until it holds; the instant it was first seen to hold.
async fn until<F, Fut>(what: &str, mut check: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if check().await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out after {DEADLINE:?} waiting for: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// The buckets `agent` owns now, by its own answer (none when it does not answer).
async fn owned(agent: &TestAgent) -> BTreeSet<u32> {
    match agent.client().get_ownership(GetOwnershipRequest { pool: POOL.into() }).await {
        Ok(answer) => answer.into_inner().buckets.iter().map(|owned| owned.bucket).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Whether the leader's assignment is settled and balanced over exactly `members` live ones.
async fn balanced(leader: &str, members: usize) -> bool {
    let request = GetAssignmentRequest { pool: POOL.into() };
    let Ok(answer) = AssignmentsClient::new(channel(leader)).get_assignment(request).await else { return false };
    let assignment = answer.into_inner();
    let holding: Vec<usize> =
        assignment.members.iter().map(|member| member.buckets.len()).filter(|count| *count > 0).collect();
    let (low, high) = (BUCKETS as usize / members, (BUCKETS as usize).div_ceil(members));
    assignment.revoking.is_empty()
        && assignment.unowned.is_empty()
        && holding.len() == members
        && holding.iter().all(|count| (low..=high).contains(count))
}

/// A table row: the count, then min, median and max in `unit`.
fn row(label: &str, samples: &Samples, unit: impl Fn(Duration) -> String) {
    let spread = [samples.quantile(0.0), samples.quantile(0.5), samples.max()].map(unit);
    println!("| {label} | {} | {} |", samples.len(), spread.join(" | "));
}

fn ms(duration: Duration) -> String {
    format!("{:.0}", duration.as_secs_f64() * 1e3)
}

fn ms_fine(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1e3)
}

async fn run(repeats: usize) {
    let lease = leasehold_tests::LeaseSettings::default();
    let offline_timeout = lease.proceed_after() + Duration::from_millis(1);
    let offline = format!("{}ms", offline_timeout.as_millis());
    let env = [("LEASEHOLD_ASSIGN__OFFLINE_TIMEOUT", offline.as_str())];
    let members: Vec<(&str, &[(&str, &str)])> =
        ["dn1", "dn2", "dn3", "dn4"].iter().map(|name| (*name, IN_POOL)).collect();
    let mut lab = AgentLab::start(BIN, Kind::Sqlite, 1, &env, &members).await.expect("a SQLite store");
    let leader = lab.leader_address().await;
    AssignmentsClient::new(channel(&leader))
        .create_pool(CreatePoolRequest { name: POOL.into(), bucket_count: BUCKETS })
        .await
        .expect("the pool");
    until("the pool is balanced over 4", || balanced(&leader, 4)).await;

    let (mut started, mut share, mut settled) = (Samples::default(), Samples::default(), Samples::default());
    let (mut after_kill, mut after_contact, mut beyond_timeout) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut probe, mut barrier) = (Samples::default(), Samples::default());
    let mut cluster = ClusterClient::new(channel(&leader));
    for repeat in 0..repeats {
        for _ in 0..10 {
            let at = Instant::now();
            cluster.get_ha_state(GetHaStateRequest {}).await.expect("a probe");
            probe.push(at.elapsed());
            let at = Instant::now();
            let answer = leasehold_tests::agents::barrier(&leader, &lab.lease).await.expect("a barrier");
            barrier.push(at.elapsed());
            // The agents killed by earlier repeats have long fenced; a live one must answer.
            assert!(answer.fenced.iter().all(|node| node.starts_with('j')), "a member was waited out: {answer:?}");
        }

        let name = format!("j{repeat}");
        let spawned = Instant::now();
        let joiner = TestAgent::start(&mut lab.cluster, &name, IN_POOL).await;
        started.push(spawned.elapsed());
        let owns_share =
            until("the joiner owns its share", || async { owned(&joiner).await.len() >= BUCKETS as usize / 5 }).await;
        share.push(owns_share - spawned);
        let balanced_at = until("the pool is balanced over 5", || balanced(&leader, 5)).await;
        settled.push(balanced_at - spawned);

        let held = owned(&joiner).await;
        let mut joiner = joiner;
        let killed_at = Instant::now();
        joiner.node.kill();
        let silent = eventually("the leader reports the killed agent's silence", DEADLINE, || async {
            let nodes = leasehold_tests::agents::data_nodes(&leader, &lab.lease)
                .list_data_nodes(ListDataNodesRequest {})
                .await
                .ok()?
                .into_inner();
            let node = nodes.nodes.iter().find(|node| node.node_id == name && node.registered)?;
            Some(Duration::from_millis(node.silent_ms.max(0) as u64))
        })
        .await;
        // Read right after the kill: the silence it reports is the time since its last
        // heartbeat, to the millisecond, as the leader counts it.
        let last_contact = Instant::now() - silent;
        let others = &lab.agents;
        let owned_again = until("the killed agent's buckets are owned again", || async {
            let mut now_owned = BTreeSet::new();
            for agent in others {
                now_owned.extend(owned(agent).await);
            }
            held.is_subset(&now_owned)
        })
        .await;
        after_kill.push(owned_again - killed_at);
        after_contact.push(owned_again - last_contact);
        beyond_timeout.push((owned_again - last_contact).saturating_sub(offline_timeout));
        until("the pool is balanced over 4 again", || balanced(&leader, 4)).await;
        eprintln!(
            "repeat {repeat}: share {:?} after spawn; killed {:?} after its last contact, its {} buckets owned again {:?} after it",
            owns_share - spawned,
            killed_at - last_contact,
            held.len(),
            owned_again - last_contact
        );
    }

    println!(
        "\n1 coordinator on SQLite, 4 agents + 1 joining, pool of {BUCKETS}; heartbeat {:?}, fence {:?}, offline timeout {:?} (T_proceed + 1 ms)",
        lease.heartbeat_interval, lease.fence, offline_timeout
    );
    println!("| measured | n | min ms | median ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row("baseline: `GetHaState` round trip", &probe, ms_fine);
    row("baseline: `Barrier` (one broadcast to 4 agents)", &barrier, ms_fine);
    row("join: agent process spawned → serving gRPC", &started, ms);
    row("join: spawned → the joiner owns its share (12)", &share, ms);
    row("join: spawned → assignment balanced over 5, nothing in flight", &settled, ms);
    row("SIGKILL: kill → its buckets owned again", &after_kill, ms);
    row("SIGKILL: last contact → its buckets owned again", &after_contact, ms);
    row("SIGKILL: last contact → owned again, minus the offline timeout (N)", &beyond_timeout, ms);
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let repeats = std::env::var("LEASEHOLD_BENCH_REPEATS").ok().and_then(|value| value.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(repeats));
}
