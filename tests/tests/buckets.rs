//! Bucket ownership against the real binary: a pool over agents wired through chaos proxies,
//! with a checker sampling every agent's ownership every 20 ms. Each scenario checks the
//! timing it names, and the checker that no bucket ever had two owners.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::assignments_client::AssignmentsClient;
use leasehold::v1::ownership_event;
use leasehold::v1::{Assignment, CreatePoolRequest, GetAssignmentRequest, GetOwnershipRequest};
use leasehold_tests::ownership::OwnershipChecker;
use leasehold_tests::process::channel;
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab as Lab, TestAgent, eventually, phase, serial};
use tokio::time::Instant;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const POOL: &str = "work";
const IN_POOL: &[(&str, &str)] = &[("LEASEHOLD_AGENT_POOLS", POOL)];

async fn assignment(leader: &str) -> Option<Assignment> {
    let request = GetAssignmentRequest { pool: POOL.into() };
    AssignmentsClient::new(channel(leader)).get_assignment(request).await.ok().map(|answer| answer.into_inner())
}

/// Bucket → owner (node id) of the buckets granted and not being revoked.
fn owners(assignment: &Assignment) -> BTreeMap<u32, String> {
    assignment
        .members
        .iter()
        .flat_map(|member| member.buckets.iter().map(|owned| (owned.bucket, member.node_id.clone())))
        .collect()
}

/// The assignment once it is settled and balanced over exactly `members`, each holding its
/// share of `buckets` (and every agent's own answer agreeing).
async fn balanced(lab: &Lab, leader: &str, members: &[&str], buckets: usize) -> Assignment {
    let what = format!("{buckets} buckets balanced over {members:?}");
    eventually(&what, Duration::from_secs(30), || async move {
        let assignment = assignment(leader).await?;
        let owners = owners(&assignment);
        if !assignment.revoking.is_empty() || !assignment.unowned.is_empty() || owners.len() != buckets {
            return None;
        }
        let (base, larger) = (buckets / members.len(), buckets % members.len());
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for owner in owners.values() {
            *counts.entry(owner.as_str()).or_default() += 1;
        }
        let shares_ok = counts.len() == members.len()
            && members
                .iter()
                .all(|member| counts.get(member).is_some_and(|count| *count == base || *count == base + 1))
            && counts.values().filter(|count| **count == base + 1).count() == larger;
        if !shares_ok {
            return None;
        }
        for member in members {
            let agent = lab.agent(member);
            let owned = agent.client().get_ownership(GetOwnershipRequest { pool: POOL.into() }).await.ok()?;
            if owned.into_inner().buckets.len() != counts[member] {
                return None;
            }
        }
        Some(assignment)
    })
    .await
}

async fn buckets_move_minimally_and_only_once_their_owner_has_provably_fenced(kind: Kind) {
    let _serial = serial().await;
    // The offline timeout at its floor, T_proceed: a silent member's buckets move as soon as
    // the rule allows.
    let proceed_after = leasehold_tests::LeaseSettings::default().proceed_after();
    let offline = format!("{}ms", proceed_after.as_millis() + 1);
    let env = [("LEASEHOLD_ASSIGN__OFFLINE_TIMEOUT", offline.as_str())];
    let agents: Vec<(&str, &[(&str, &str)])> =
        ["dn1", "dn2", "dn3", "dn4"].iter().map(|name| (*name, IN_POOL)).collect();
    let Some(mut lab) = Lab::start(BIN, kind, 1, &env, &agents).await else { return };
    let leader = lab.leader_address().await;
    let mut checker = OwnershipChecker::new(POOL);
    for agent in &lab.agents {
        checker.watch(&agent.node.node_id, &agent.node.grpc);
    }

    phase("a pool of 64 buckets over 4 agents");
    let mut pools = AssignmentsClient::new(channel(&leader));
    let created = pools.create_pool(CreatePoolRequest { name: POOL.into(), bucket_count: 64 }).await.unwrap();
    assert_eq!(created.into_inner().bucket_count, 64);
    let again = pools.create_pool(CreatePoolRequest { name: POOL.into(), bucket_count: 8 }).await.unwrap_err();
    assert_eq!((again.code(), error_reason(&again).as_deref()), (Code::AlreadyExists, Some(reason::ALREADY_EXISTS)));
    for (name, bucket_count, field) in
        [("big", 65_537, "bucket_count"), ("select", 8, "name"), ("a-b", 8, "name"), ("", 8, "name")]
    {
        let refused = pools.create_pool(CreatePoolRequest { name: name.into(), bucket_count }).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{name} / {bucket_count}: {refused:?}");
        assert!(refused.message().starts_with(field), "{refused:?}");
    }
    let unknown = pools.get_assignment(GetAssignmentRequest { pool: "nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let listed = pools.list_pools(leasehold::v1::ListPoolsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        listed.pools.iter().map(|pool| pool.name.as_str()).collect::<Vec<_>>(),
        [POOL],
        "nothing else was created"
    );
    let four = balanced(&lab, &leader, &["dn1", "dn2", "dn3", "dn4"], 64).await;

    phase("a fifth agent joins: exactly the minimal number of buckets move to it");
    let joined_at = Instant::now();
    let dn5 = TestAgent::start(&mut lab.cluster, "dn5", IN_POOL).await;
    checker.watch("dn5", &dn5.node.grpc);
    lab.agents.push(dn5);
    let five = balanced(&lab, &leader, &["dn1", "dn2", "dn3", "dn4", "dn5"], 64).await;
    eprintln!("dn5 owned its share {:?} after it started", joined_at.elapsed());
    let (before, after) = (owners(&four), owners(&five));
    let moved: Vec<u32> =
        after.iter().filter(|(bucket, owner)| before.get(bucket) != Some(owner)).map(|(b, _)| *b).collect();
    // 16 each over 4 → 13, 13, 13, 13, 12: three leave each old member, 12 in all.
    assert_eq!(moved.len(), 12, "moved {moved:?}");
    assert!(moved.iter().all(|bucket| after[bucket] == "dn5"), "only to the newcomer");
    let metrics = eventually("the metrics show dn5's share", Duration::from_secs(10), || async {
        let metrics = lab.cluster.node("c1").scrape_metrics().await?;
        let owned = metrics.lines().any(|line| {
            line.starts_with("leasehold_bucket_owned{") && line.contains("\"dn5\"") && line.ends_with(" 12")
        });
        owned.then_some(metrics)
    })
    .await;
    assert!(metrics.contains("leasehold_bucket_handoff_duration_seconds_count{pool=\"work\"} 12"), "{metrics}");
    assert!(metrics.contains("leasehold_bucket_moves_total{"), "{metrics}");

    phase("SIGKILL dn1: its buckets move only once it has provably fenced");
    let dn1_buckets: Vec<u32> = after.iter().filter(|(_, owner)| *owner == "dn1").map(|(bucket, _)| *bucket).collect();
    let index = lab.agents.iter().position(|agent| agent.node.node_id == "dn1").unwrap();
    let killed_at = Instant::now();
    lab.agents[index].node.kill();
    let removed = lab.agents.remove(index);
    balanced(&lab, &leader, &["dn2", "dn3", "dn4", "dn5"], 64).await;
    // dn1's last heartbeat arrived at most one interval (and its timeout) before the kill.
    let lease = lab.lease;
    let earliest = killed_at + proceed_after - lease.heartbeat_interval - lease.heartbeat_timeout;
    let first_regrant = checker.first_owned_by_another("dn1", &dn1_buckets, killed_at).await;
    eprintln!("dn1's buckets owned again {:?} after the kill (T_proceed {proceed_after:?})", first_regrant - killed_at);
    assert!(
        first_regrant >= earliest,
        "a bucket of dn1 was owned again {:?} after the kill",
        first_regrant - killed_at
    );
    drop(removed);

    phase("SIGSTOP dn2 past its fence; once resumed it owns nothing until it is granted buckets again");
    let dn2 = lab.agent("dn2");
    // A sidecar watching dn2 hears, once it is resumed, that it fenced and lost each bucket.
    let mut events =
        dn2.client().watch_ownership(GetOwnershipRequest { pool: POOL.into() }).await.unwrap().into_inner();
    let held = dn2.client().get_ownership(GetOwnershipRequest { pool: POOL.into() }).await.unwrap().into_inner();
    let held: BTreeSet<(u32, u64)> = held.buckets.iter().map(|owned| (owned.bucket, owned.epoch)).collect();
    assert!(!held.is_empty(), "dn2 owns its share before the pause");
    dn2.node.pause();
    balanced(&lab, &leader, &["dn3", "dn4", "dn5"], 64).await;
    dn2.node.resume();
    let (mut fenced, mut revoked) = (false, BTreeSet::new());
    while !held.is_subset(&revoked) {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .unwrap_or_else(|_| panic!("the watch heard {revoked:?} revoked of {held:?} (fenced: {fenced})"))
            .unwrap()
            .expect("the watch goes on");
        match event.kind() {
            ownership_event::Kind::Fenced => fenced = true,
            ownership_event::Kind::Revoked => {
                assert!(fenced, "a revoke came before the fence: {event:?}");
                revoked.insert((event.bucket, event.epoch));
            }
            _ => {}
        }
    }
    let first = dn2.client().get_ownership(GetOwnershipRequest { pool: POOL.into() }).await;
    match first {
        Err(status) => assert_eq!(error_reason(&status).as_deref(), Some(reason::FENCED), "{status:?}"),
        Ok(owned) => assert!(owned.get_ref().buckets.is_empty(), "a resumed agent owned {owned:?}"),
    }
    balanced(&lab, &leader, &["dn2", "dn3", "dn4", "dn5"], 64).await;

    let samples = checker.finish().await;
    eprintln!("{samples} ownership samples checked");
    assert!(samples > 500, "only {samples} samples");
}

mod buckets_move_minimally_and_only_once_their_owner_has_provably_fenced {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::buckets_move_minimally_and_only_once_their_owner_has_provably_fenced(Kind::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::buckets_move_minimally_and_only_once_their_owner_has_provably_fenced(Kind::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        super::buckets_move_minimally_and_only_once_their_owner_has_provably_fenced(Kind::MySql).await
    }
}

/// `ctl` with `--output json`; the JSON, or the exit status and stderr.
async fn ctl(endpoints: &str, args: &[&str]) -> Result<serde_json::Value, (i32, String)> {
    leasehold_tests::ctl::json(BIN, endpoints, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_creates_shows_rebalances_and_deletes_pools() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", IN_POOL), ("dn2", IN_POOL)]).await.unwrap();
    let endpoints = lab.cluster.endpoints().into_iter().map(|(_, address)| address).collect::<Vec<_>>().join(",");
    let endpoints = endpoints.as_str();
    // A sidecar's view: dn1's ownership events, from before the pool exists.
    let mut events = lab
        .agent("dn1")
        .client()
        .watch_ownership(GetOwnershipRequest { pool: POOL.into() })
        .await
        .unwrap()
        .into_inner();

    let created = ctl(endpoints, &["buckets", "create-pool", POOL, "--buckets", "6"]).await.unwrap();
    assert_eq!((created["name"].as_str(), created["bucket_count"].as_u64()), (Some(POOL), Some(6)), "{created}");
    let (code, stderr) = ctl(endpoints, &["buckets", "create-pool", POOL]).await.unwrap_err();
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
    let pools = ctl(endpoints, &["buckets", "pools"]).await.unwrap();
    assert_eq!(pools["pools"].as_array().unwrap().len(), 1, "{pools}");

    let shown = eventually("both members own 3 buckets", Duration::from_secs(15), || async move {
        let shown = ctl(endpoints, &["buckets", "show", POOL]).await.ok()?;
        let members = shown["members"].as_array()?;
        (members.len() == 2 && members.iter().all(|member| member["buckets"].as_array().map(Vec::len) == Some(3)))
            .then_some(shown)
    })
    .await;
    assert!(shown["unowned"].as_array().unwrap().is_empty(), "{shown}");
    let mut granted = Vec::new();
    while granted.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(event.kind(), ownership_event::Kind::Granted, "{event:?}");
        granted.push(event.bucket);
    }
    let dn1_owned: Vec<u32> =
        shown["members"].as_array().unwrap().iter().find(|member| member["node_id"] == "dn1").unwrap()["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|owned| owned["bucket"].as_u64().unwrap() as u32)
            .collect();
    granted.sort_unstable();
    assert_eq!(granted, dn1_owned, "the watch saw dn1's grants");
    let watched = tokio::process::Command::new(BIN)
        .args(["ctl", "--endpoints", endpoints, "--output", "json", "buckets", "watch", POOL, "--count", "1"])
        .output()
        .await
        .unwrap();
    assert!(watched.status.success(), "{watched:?}");
    let line: serde_json::Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(line["members"], shown["members"], "the watch starts with the assignment now");
    let rebalanced = ctl(endpoints, &["buckets", "rebalance", POOL]).await.unwrap();
    assert_eq!(rebalanced["members"], shown["members"], "a balanced pool does not move");
    let table = leasehold_tests::ctl::table(BIN, endpoints, &["buckets", "show", POOL]).await;
    assert!(table.contains("MEMBER") && table.contains("dn1") && table.contains("live"), "{table}");

    ctl(endpoints, &["buckets", "delete-pool", POOL]).await.unwrap();
    let dn1 = lab.agent("dn1");
    eventually("dn1 owns nothing once the pool is deleted", Duration::from_secs(10), || async move {
        let owned = dn1.client().get_ownership(GetOwnershipRequest { pool: POOL.into() }).await.ok()?;
        owned.into_inner().buckets.is_empty().then_some(())
    })
    .await;
    eventually("the pool goes once every bucket is released", Duration::from_secs(10), || async move {
        let pools = ctl(endpoints, &["buckets", "pools"]).await.ok()?;
        pools["pools"].as_array()?.is_empty().then_some(())
    })
    .await;
    let (code, _) = ctl(endpoints, &["buckets", "show", POOL]).await.unwrap_err();
    assert_ne!(code, 0, "an unknown pool is an error");

    // Created again under the name, the pool carries on from its epochs: a fencing token
    // never goes back.
    ctl(endpoints, &["buckets", "create-pool", POOL, "--buckets", "6"]).await.unwrap();
    let again = eventually("the new pool is granted", Duration::from_secs(15), || async move {
        let shown = ctl(endpoints, &["buckets", "show", POOL]).await.ok()?;
        let owned: usize =
            shown["members"].as_array()?.iter().map(|member| member["buckets"].as_array().map_or(0, Vec::len)).sum();
        (owned == 6).then_some(shown)
    })
    .await;
    let epochs: Vec<u64> = again["members"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|member| member["buckets"].as_array().unwrap().iter().map(|owned| owned["epoch"].as_u64().unwrap()))
        .collect();
    assert!(epochs.iter().all(|epoch| *epoch >= 2), "epochs went back: {epochs:?}");
}

/// `coordinators` coordinators (with `env`) on SQLite and dn1..dn3 in a pool of 12 buckets,
/// balanced, with a checker watching every agent; the lab, the checker, the leader's address
/// and the assignment.
async fn pool_of_three(coordinators: usize, env: &[(&str, &str)]) -> (Lab, OwnershipChecker, String, Assignment) {
    let agents: Vec<(&str, &[(&str, &str)])> = ["dn1", "dn2", "dn3"].iter().map(|name| (*name, IN_POOL)).collect();
    let mut lab = Lab::start(BIN, Kind::Sqlite, coordinators, env, &agents).await.unwrap();
    let mut checker = OwnershipChecker::new(POOL);
    for agent in &lab.agents {
        checker.watch(&agent.node.node_id, &agent.node.grpc);
    }
    let leader = lab.leader_address().await;
    AssignmentsClient::new(channel(&leader))
        .create_pool(CreatePoolRequest { name: POOL.into(), bucket_count: 12 })
        .await
        .unwrap();
    let assignment = balanced(&lab, &leader, &["dn1", "dn2", "dn3"], 12).await;
    (lab, checker, leader, assignment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_a_handoff_its_killed_predecessor_began() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "assign::after-revoke=1*return(3000)")];
    let (mut lab, mut checker, leader, _) = pool_of_three(3, &env).await;

    phase("dn4 joins; the leader publishes the revokes and is held before granting them; SIGKILL it");
    let (first, term) = lab.cluster.leader(leasehold_tests::lab::ELECTION).await;
    let dn4 = TestAgent::start(&mut lab.cluster, "dn4", IN_POOL).await;
    checker.watch("dn4", &dn4.node.grpc);
    lab.agents.push(dn4);
    let held = lab.cluster.node(&first).wait_events("failpoint reached: pausing", 1, Duration::from_secs(20)).await;
    assert_eq!(held[0]["failpoint"], "assign::after-revoke");
    let in_flight = assignment(&leader).await.expect("the held leader still answers");
    assert_eq!(in_flight.revoking.len(), 3, "one revoke from each old member: {in_flight:?}");
    lab.cluster.node_mut(&first).kill();
    let killed_at = Instant::now();

    phase("the successor loads the unsettled revokes and finishes the handoff");
    lab.cluster.leader_above(term, leasehold_tests::lab::ELECTION).await;
    let leader = lab.cluster.leader_address().await;
    let four = balanced(&lab, &leader, &["dn1", "dn2", "dn3", "dn4"], 12).await;
    let moved: Vec<u32> = in_flight.revoking.iter().map(|moving| moving.bucket).collect();
    assert!(moved.iter().all(|bucket| owners(&four)[bucket] == "dn4"), "the revoked buckets went to dn4: {four:?}");
    let early = checker
        .samples()
        .iter()
        .any(|sample| sample.agent == "dn4" && sample.sent < killed_at && !sample.owned.is_empty());
    assert!(!early, "dn4 was granted a bucket before the kill: the handoff was not in flight");
    let samples = checker.finish().await;
    eprintln!("{samples} ownership samples checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_answers_are_lost_keeps_its_buckets_from_anyone_until_it_has_fenced() {
    let _serial = serial().await;
    let proceed_after = leasehold_tests::LeaseSettings::default().proceed_after();
    let offline = format!("{}ms", proceed_after.as_millis() + 1);
    let env = [("LEASEHOLD_ASSIGN__OFFLINE_TIMEOUT", offline.as_str())];
    let (lab, checker, leader, three) = pool_of_three(1, &env).await;
    let dn1_buckets: Vec<u32> = owners(&three).iter().filter(|(_, owner)| *owner == "dn1").map(|(b, _)| *b).collect();

    phase("dn1's heartbeats still arrive, their answers are lost; something is published");
    let dn1 = lab.agent("dn1");
    let cut_at = Instant::now();
    dn1.heartbeat_responses(leasehold_chaos::Fault::Drop);
    let barrier = {
        let (leader, lease) = (leader.clone(), lab.lease);
        tokio::spawn(async move { leasehold_tests::agents::barrier(&leader, &lease).await })
    };
    balanced(&lab, &leader, &["dn2", "dn3"], 12).await;
    let first_regrant = checker.first_owned_by_another("dn1", &dn1_buckets, cut_at).await;
    eprintln!("dn1's buckets owned again {:?} after its answers were cut", first_regrant - cut_at);
    assert!(first_regrant >= cut_at + proceed_after, "owned again after only {:?}", first_regrant - cut_at);
    barrier.await.unwrap().expect("the barrier waits dn1 out");

    phase("healed, dn1 resyncs and gets its share back");
    dn1.heartbeat_responses(leasehold_chaos::Fault::Pass);
    balanced(&lab, &leader, &["dn1", "dn2", "dn3"], 12).await;
    let samples = checker.finish().await;
    eprintln!("{samples} ownership samples checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopping_gracefully_gives_its_buckets_up_at_once() {
    let _serial = serial().await;
    let (lab, checker, leader, _) = pool_of_three(1, &[]).await;

    phase("SIGTERM dn1: it releases its buckets and deregisters; they move without waiting for its fence");
    let stopped_at = Instant::now();
    lab.agent("dn1").node.terminate();
    balanced(&lab, &leader, &["dn2", "dn3"], 12).await;
    let moved_after = stopped_at.elapsed();
    eprintln!("dn1's buckets moved {moved_after:?} after its SIGTERM");
    let proceed_after = lab.lease.proceed_after();
    assert!(moved_after < proceed_after, "moved only after {moved_after:?}, as if dn1 had been waited out");
    let given_up = lab.agent("dn1").node.events("bucket given up before stopping");
    assert_eq!(given_up.len(), 4, "dn1 released its 4 buckets before deregistering");
    let samples = checker.finish().await;
    eprintln!("{samples} ownership samples checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_in_the_configuration_is_created_by_the_leader() {
    let _serial = serial().await;
    let dir = std::env::temp_dir().join("leasehold-tests").join(format!("pools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("coordinator.toml");
    std::fs::write(&config, format!("[[assign.pools]]\nname = \"{POOL}\"\nbucket-count = 6\n")).unwrap();
    let mut cluster = leasehold_tests::TestCluster::new(BIN, leasehold_tests::TestStore::sqlite());
    cluster.timings.lease = Some(leasehold_tests::LeaseSettings::default());
    cluster.start("c1", &["--config", config.to_str().unwrap()], &[]).await;
    cluster.leader(leasehold_tests::lab::ELECTION).await;
    let dn1 = TestAgent::start(&mut cluster, "dn1", IN_POOL).await;
    let dn2 = TestAgent::start(&mut cluster, "dn2", IN_POOL).await;
    let leader = cluster.node("c1").grpc.clone();
    let leader = leader.as_str();
    eventually("the configured pool is balanced over dn1 and dn2", Duration::from_secs(20), || async move {
        let assignment = assignment(leader).await?;
        let pool = assignment.pool.clone()?;
        let counts: Vec<usize> = assignment.members.iter().map(|member| member.buckets.len()).collect();
        (pool.bucket_count == 6 && counts == [3, 3]).then_some(())
    })
    .await;
    phase("a hot standby answers GetAssignment from the store");
    cluster.start("c2", &["--ha-mode", "hot-standby"], &[]).await;
    let standby = cluster.node("c2").grpc.clone();
    let standby = standby.as_str();
    eventually("the hot standby shows the leader's buckets", Duration::from_secs(20), || async move {
        let (from_leader, from_standby) = (assignment(leader).await?, assignment(standby).await?);
        let buckets = |assignment: &Assignment| {
            assignment.members.iter().map(|member| (member.node_id.clone(), member.buckets.clone())).collect::<Vec<_>>()
        };
        (buckets(&from_leader) == buckets(&from_standby) && !from_standby.members.iter().any(|member| member.live))
            .then_some(())
    })
    .await;
    for agent in [&dn1, &dn2] {
        eventually(&format!("{} owns its 3 buckets", agent.node.node_id), Duration::from_secs(10), || async move {
            let owned = agent.client().get_ownership(GetOwnershipRequest { pool: POOL.into() }).await.ok()?;
            (owned.into_inner().buckets.len() == 3).then_some(())
        })
        .await;
    }
}
