//! Data-node metadata leases under faults, against the real binary: agents wired through
//! chaos proxies, a 1 s heartbeat and a 3 s fence. Each scenario checks the promise — after a
//! barrier returns, no agent serves an older version — as well as the timing it names.

use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::{AgentLeaseState, DeregisterRequest, ListDataNodesRequest, RegisterRequest};
use leasehold_chaos::Fault;
use leasehold_tests::agents::{barrier, data_nodes};
use leasehold_tests::lab::ELECTION;
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab as Lab, Deadline, TestAgent, eventually, phase, serial};
use tokio::time::Instant;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_over_five_healthy_agents_returns_after_their_acks() {
    let _serial = serial().await;
    let names = ["dn1", "dn2", "dn3", "dn4", "dn5"];
    let agents: Vec<(&str, &[(&str, &str)])> = names.iter().map(|name| (*name, &[][..])).collect();
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &agents).await.unwrap();
    let leader = lab.leader_address().await;
    let answer = barrier(&leader, &lab.lease).await.expect("the barrier returns");
    eprintln!("barrier over 5 healthy agents: {} ms", answer.waited_ms);
    assert_eq!(answer.acknowledged.len(), 5, "{answer:?}");
    assert!(answer.fenced.is_empty(), "{answer:?}");
    assert!(Duration::from_millis(answer.waited_ms) < lab.lease.proceed_after() / 4, "{answer:?}");
    for agent in &lab.agents {
        assert_eq!(agent.lease().await.unwrap().applied_version, answer.version);
    }
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_agent_fences_and_the_barrier_waits_it_out() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[]), ("dn3", &[])]).await.unwrap();
    let leader = lab.leader_address().await;

    phase("blackhole dn3: heartbeats and pushes vanish, connections stay open");
    lab.agent("dn3").partition();
    let cut_at = Instant::now();
    let barrier_task = {
        let (leader, lease) = (leader.clone(), lab.lease);
        tokio::spawn(async move { barrier(&leader, &lease).await })
    };

    let dn3 = lab.agent("dn3");
    let fenced_at = eventually("dn3 fences", Duration::from_secs(15), || async move {
        dn3.is(AgentLeaseState::Fenced).await.then(Instant::now)
    })
    .await;
    let to_fence = fenced_at - cut_at;
    eprintln!("dn3 fenced {to_fence:?} after the blackhole");
    assert!(to_fence <= lab.lease.fence + Duration::from_millis(500), "fenced only after {to_fence:?}");
    assert_eq!(error_reason(&dn3.read().await.unwrap_err()).as_deref(), Some(reason::FENCED));

    let answer = barrier_task.await.unwrap().expect("the barrier proceeds");
    let returned_at = Instant::now();
    assert_eq!(answer.fenced.len(), 1, "{answer:?}");
    assert!(answer.fenced[0].starts_with("dn3/"), "{answer:?}");
    let listed = data_nodes(&leader, &lab.lease).list_data_nodes(ListDataNodesRequest {}).await.unwrap().into_inner();
    let silent = listed.nodes.iter().find(|node| node.node_id == "dn3").unwrap().silent_ms as u64;
    let proceed = lab.lease.proceed_after().as_millis() as u64;
    eprintln!(
        "barrier with dn3 blackholed: waited {} ms; dn3 silent {silent} ms; T_proceed {proceed} ms; {:?} after the cut",
        answer.waited_ms,
        returned_at - cut_at
    );
    assert!(silent >= proceed, "proceeded when dn3 was silent for only {silent} ms");
    assert!(silent <= proceed + 1500, "proceeded only {silent} ms after dn3's last contact");
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pushes_dropped_an_agent_converges_through_heartbeats_without_fencing() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let leader = lab.leader_address().await;
    lab.agent("dn2").pushes(Fault::Drop);
    let answer = barrier(&leader, &lab.lease).await.expect("the barrier returns");
    eprintln!("barrier with dn2's pushes dropped: {} ms", answer.waited_ms);
    assert_eq!(answer.acknowledged.len(), 2, "{answer:?}");
    assert!(
        Duration::from_millis(answer.waited_ms) <= lab.lease.heartbeat_interval + Duration::from_millis(700),
        "{answer:?}"
    );
    let dn2 = lab.agent("dn2").lease().await.unwrap();
    assert_eq!((dn2.state, dn2.fences, dn2.applied_version), (AgentLeaseState::Normal as i32, 0, answer.version));
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_heartbeat_answers_dropped_an_agent_fences_and_the_barrier_proceeds_t_proceed_after_publication() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let leader = lab.leader_address().await;

    phase("dn2's heartbeats still arrive, but no answer and no push gets through");
    lab.agent("dn2").heartbeat_responses(Fault::Drop);
    lab.agent("dn2").pushes(Fault::Drop);
    let dn2 = lab.agent("dn2");
    eventually(
        "dn2 fences",
        Duration::from_secs(15),
        || async move { dn2.is(AgentLeaseState::Fenced).await.then_some(()) },
    )
    .await;

    let answer = barrier(&leader, &lab.lease).await.expect("the barrier proceeds");
    let waited = Duration::from_millis(answer.waited_ms);
    let proceed = lab.lease.proceed_after();
    eprintln!("barrier with dn2's answers dropped: waited {waited:?}, T_proceed {proceed:?}");
    assert!(answer.fenced.iter().any(|node| node.starts_with("dn2/")), "{answer:?}");
    // dn2's last heartbeat before the publication arrived at most one interval earlier.
    assert!(waited + lab.lease.heartbeat_interval >= proceed, "proceeded after only {waited:?}");
    assert!(waited <= proceed + Duration::from_millis(1000), "proceeded only after {waited:?}");
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_apply_fails_the_barrier_at_once() {
    let _serial = serial().await;
    let refuse: &[(&str, &str)] = &[("LEASEHOLD_FAILPOINTS", "agent::cannot-apply=return")];
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", refuse)]).await.unwrap();
    let leader = lab.leader_address().await;
    let started = Instant::now();
    let refused = barrier(&leader, &lab.lease).await.expect_err("the barrier fails");
    let took = started.elapsed();
    eprintln!("barrier refused by dn2 in {took:?}");
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert_eq!(error_reason(&refused).as_deref(), Some(reason::BROADCAST_FAILED));
    assert!(refused.message().contains("dn2/"), "{refused:?}");
    assert!(took < Duration::from_secs(2), "failing took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_refuses_its_first_read_then_resyncs() {
    let _serial = serial().await;
    let lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[])]).await.unwrap();
    let dn1 = lab.agent("dn1");

    phase("SIGSTOP dn1 until the leader has not heard from it for longer than the fence");
    dn1.node.pause();
    let leader = lab.cluster.node("c1").grpc.clone();
    let fence_ms = lab.lease.fence.as_millis() as i64;
    eventually("dn1 is silent past its fence", Duration::from_secs(15), || {
        let mut client = data_nodes(&leader, &lab.lease);
        async move {
            let listed = client.list_data_nodes(ListDataNodesRequest {}).await.ok()?.into_inner();
            listed.nodes.iter().any(|node| node.node_id == "dn1" && node.silent_ms > fence_ms + 500).then_some(())
        }
    })
    .await;
    // Answers to its heartbeats now arrive after their deadline: only the read can run first.
    dn1.heartbeat_responses(Fault::Delay(Duration::from_millis(800)));
    let read = {
        let mut client = dn1.client();
        tokio::spawn(async move {
            let request = leasehold::v1::ResolveTableRequest { database: "db".into(), table: "t".into() };
            client.resolve_table(request).await
        })
    };
    dn1.node.resume();
    let first = read.await.unwrap().expect_err("the first read after resuming is refused");
    assert_eq!(error_reason(&first).as_deref(), Some(reason::FENCED), "{first:?}");

    phase("it resyncs and serves again");
    dn1.heartbeat_responses(Fault::Pass);
    eventually("dn1 serves again", Duration::from_secs(15), || async move { dn1.read().await.ok() }).await;
    let lease = dn1.lease().await.unwrap();
    assert_eq!((lease.state, lease.fences), (AgentLeaseState::Normal as i32, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_failover_keeps_every_agent_lease() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 3, &[], &[("dn1", &[]), ("dn2", &[]), ("dn3", &[])]).await.unwrap();
    let (old, term) = lab.cluster.leader(ELECTION).await;

    phase(&format!("SIGKILL the leader {old}"));
    lab.cluster.node_mut(&old).kill();
    let (new, new_term, _) = lab.cluster.leader_above(term, ELECTION).await;
    for agent in &lab.agents {
        let new = new.clone();
        eventually(&format!("{} follows {new}", agent.node.node_id), Duration::from_secs(15), || {
            let new = new.clone();
            async move { agent.lease().await.ok().filter(|lease| lease.leader_node_id == new && lease.term == new_term) }
        })
        .await;
    }
    let address = lab.cluster.node(&new).grpc.clone();
    let answer = barrier(&address, &lab.lease).await.expect("the barrier on the new leader returns");
    eprintln!("barrier on the new leader after a failover: {} ms", answer.waited_ms);
    assert_eq!(answer.acknowledged.len(), 3, "{answer:?}");
    for agent in &lab.agents {
        let lease = agent.lease().await.unwrap();
        assert_eq!(lease.fences, 0, "{} fenced during the failover", agent.node.node_id);
    }
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_an_unreachable_agent_is_waited_out_in_t_proceed_plus_one_lease() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 3, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let (old, term) = lab.cluster.leader(ELECTION).await;

    phase("partition dn2, then SIGKILL the leader");
    lab.agent("dn2").partition();
    lab.cluster.node_mut(&old).kill();
    let (new, _, promoted_seen) = lab.cluster.leader_above(term, ELECTION).await;
    let address = lab.cluster.node(&new).grpc.clone();
    let starting = Deadline::new("the new leader loads its data-node state", Duration::from_secs(10));
    let answer = loop {
        match barrier(&address, &lab.lease).await {
            Ok(answer) => break answer,
            Err(status) if error_reason(&status).as_deref() == Some(reason::LEADER_STARTING) => starting.tick().await,
            Err(status) => panic!("{status:?}"),
        }
    };
    let since_promotion = promoted_seen.elapsed();
    let bound = lab.lease.proceed_after() + lab.cluster.timings.lease_ttl + Duration::from_secs(1);
    eprintln!(
        "barrier after a failover with dn2 unreachable: waited {} ms; {since_promotion:?} after the promotion was seen (bound {bound:?})",
        answer.waited_ms
    );
    assert!(answer.fenced.iter().any(|node| node.starts_with("dn2/")), "{answer:?}");
    assert!(since_promotion <= bound, "waited {since_promotion:?} after the promotion");
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistered_agent_behind_a_partition_blocks_until_settled() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let leader = lab.leader_address().await;
    let dn2 = lab.agent("dn2");
    let incarnation = dn2.lease().await.unwrap().incarnation;

    phase("partition dn2, then deregister it while it still runs");
    dn2.partition();
    let cut_at = Instant::now();
    data_nodes(&leader, &lab.lease)
        .deregister(DeregisterRequest { node_id: "dn2".into(), incarnation, buckets_released: false, released: false })
        .await
        .expect("deregistered");
    let answer = barrier(&leader, &lab.lease).await.expect("the barrier proceeds");
    let took = cut_at.elapsed();
    eprintln!(
        "barrier with a deregistered, partitioned dn2: {} ms after publication, {took:?} after the cut",
        answer.waited_ms
    );
    assert!(answer.fenced.iter().any(|node| node.starts_with("dn2/")), "the tombstone still counted: {answer:?}");
    assert!(took + lab.lease.heartbeat_interval >= lab.lease.proceed_after(), "proceeded after only {took:?}");
    // The promise: dn2 never serves the predecessor once the barrier returned.
    let read = dn2.read().await;
    assert!(matches!(&read, Err(status) if error_reason(status).as_deref() == Some(reason::FENCED)), "{read:?}");
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistered_agent_still_counts_after_a_leader_failover() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 2, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let (leader, term) = lab.cluster.leader(ELECTION).await;
    let address = lab.cluster.node(&leader).grpc.clone();
    let incarnation = lab.agent("dn2").lease().await.unwrap().incarnation;

    phase("partition dn2, deregister it, then SIGKILL the leader before dn2 has fenced");
    lab.agent("dn2").partition();
    let cut_at = Instant::now();
    data_nodes(&address, &lab.lease)
        .deregister(DeregisterRequest { node_id: "dn2".into(), incarnation, buckets_released: false, released: false })
        .await
        .expect("deregistered");
    lab.cluster.node_mut(&leader).kill();
    let (successor, _, _) = lab.cluster.leader_above(term, ELECTION).await;
    let successor = lab.cluster.node(&successor).grpc.clone();
    let listed = data_nodes(&successor, &lab.lease)
        .list_data_nodes(ListDataNodesRequest {})
        .await
        .expect("the new leader lists its data nodes")
        .into_inner();
    let tombstone = listed.nodes.iter().find(|node| node.node_id == "dn2" && !node.registered);
    let tombstone = tombstone.unwrap_or_else(|| panic!("the new leader lists dn2's tombstone: {listed:?}"));
    assert_eq!(
        (tombstone.departure.as_str(), tombstone.silent_ms),
        ("left", -1),
        "it deregistered, and this leader never heard from it: {tombstone:?}"
    );
    let answer = barrier(&successor, &lab.lease).await.expect("the barrier proceeds at the new leader");
    let took = cut_at.elapsed();
    eprintln!("barrier at the new leader with a deregistered, partitioned dn2: {took:?} after the cut");
    assert!(
        answer.fenced.iter().any(|node| node.starts_with("dn2/")),
        "the new leader counted the tombstone: {answer:?}"
    );
    assert!(took + lab.lease.heartbeat_interval >= lab.lease.proceed_after(), "proceeded after only {took:?}");
    let read = lab.agent("dn2").read().await;
    assert!(matches!(&read, Err(status) if error_reason(status).as_deref() == Some(reason::FENCED)), "{read:?}");
    lab.assert_nobody_serves_below(answer.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_starts_fenced_and_resyncs() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[])]).await.unwrap();
    let leader = lab.leader_address().await;
    let first = barrier(&leader, &lab.lease).await.expect("a first barrier");
    let old_incarnation = lab.agents[0].lease().await.unwrap().incarnation;

    phase("SIGKILL dn1 and start it again");
    lab.agents[0].node.kill();
    lab.agents.clear();
    let restarted = TestAgent::start(&mut lab.cluster, "dn1", &[]).await;
    let lease = restarted.lease().await.unwrap();
    assert_ne!(lease.incarnation, old_incarnation);
    // A new incarnation holds no lease until its first resync has been applied: its first
    // read is refused, or, when the resync already landed, serves the resynced version. One
    // observation decides (the agent may resync between two calls).
    match restarted.read().await {
        Err(status) => assert_eq!(error_reason(&status).as_deref(), Some(reason::FENCED), "{status:?}"),
        Ok(served) => assert_eq!(served, first.version, "a lease without the resync"),
    }
    eventually("dn1 resyncs", Duration::from_secs(15), || async {
        restarted.is(AgentLeaseState::Normal).await.then_some(())
    })
    .await;
    assert_eq!(restarted.lease().await.unwrap().applied_version, first.version);
    let events =
        restarted.node.wait_events("lease valid: serving again after a resync", 1, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1, "the first lease came with a resync");

    let listed = data_nodes(&leader, &lab.lease).list_data_nodes(ListDataNodesRequest {}).await.unwrap().into_inner();
    assert!(
        listed.nodes.iter().any(|node| node.incarnation == old_incarnation && !node.registered),
        "the old incarnation is a tombstone: {listed:?}"
    );
    lab.agents.push(restarted);
    let second = barrier(&leader, &lab.lease).await.expect("a second barrier");
    lab.assert_nobody_serves_below(second.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_fence_is_lowered_a_broadcast_to_a_node_whose_answers_are_lost_still_settles() {
    let _serial = serial().await;
    let mut cluster = leasehold_tests::TestCluster::new(BIN, leasehold_tests::TestStore::sqlite());
    let large = leasehold_tests::LeaseSettings { fence: Duration::from_secs(12), ..Default::default() };
    cluster.timings.lease = Some(large);
    phase("a coordinator grants a 12 s fence; dn1 holds a lease under it");
    cluster.start("c1", &[], &[]).await;
    cluster.leader(ELECTION).await;
    let dn1 = TestAgent::start_leased(&mut cluster, "dn1", &[]).await;

    phase("dn1's heartbeats still arrive, but no answer and no push gets through");
    dn1.heartbeat_responses(Fault::Drop);
    dn1.pushes(Fault::Drop);

    phase("the coordinator restarts with the fence lowered to 3 s");
    cluster.node_mut("c1").kill();
    let small = leasehold_tests::LeaseSettings { fence: Duration::from_secs(3), ..large };
    cluster.timings.lease = Some(small);
    cluster.start("c1", &[], &[]).await;
    let leader = cluster.leader_address().await;
    dn1.heartbeat_proxies[0].retarget(leader.parse().unwrap());

    // T_proceed follows the largest fence ever granted (12 s), more than the default budget
    // computed from the configured 3 s fence: the broadcast must not run over budget.
    let answer = barrier(&leader, &large).await.expect("the barrier proceeds");
    let waited = Duration::from_millis(answer.waited_ms);
    let floor = cluster.timings.lease_ttl.mul_f64(1.01 / 0.99);
    let bound = floor + large.proceed_after() + large.heartbeat_interval;
    eprintln!("barrier after the fence was lowered: waited {waited:?}, bound {bound:?}");
    assert!(answer.fenced.iter().any(|node| node.starts_with("dn1/")), "{answer:?}");
    assert!(waited + large.heartbeat_interval >= large.proceed_after(), "proceeded after only {waited:?}");
    assert!(waited <= bound, "proceeded only after {waited:?}");
}

/// A broadcast a procedure retries (its first try ran over budget) waits on the stale bounds
/// of the version's first publication. Taken again at the retry, the bound of a node whose
/// heartbeats arrive but whose answers are lost had moved with every heartbeat, so each try
/// waited a whole T_proceed afresh: after a fence was lowered, a DDL retried for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_broadcast_keeps_the_stale_bounds_of_its_first_publication() {
    let _serial = serial().await;
    let mut cluster = leasehold_tests::TestCluster::new(BIN, leasehold_tests::TestStore::sqlite());
    let lease = leasehold_tests::LeaseSettings::default();
    cluster.timings.lease = Some(lease);
    // The first try gives up after 2.5 s, before the node it waits for is settled (T_proceed
    // after its last contact before the publication, at most one heartbeat earlier).
    let cut = Duration::from_millis(2500);
    assert!(cut + lease.heartbeat_interval < lease.proceed_after());
    let spec = format!("broadcast::budget-cut=1*return({})", cut.as_millis());
    phase("one coordinator whose first broadcast runs over a cut budget; dn1 holds a lease");
    cluster.start("c1", &[], &[("LEASEHOLD_FAILPOINTS", spec.as_str())]).await;
    cluster.leader(ELECTION).await;
    let dn1 = TestAgent::start_leased(&mut cluster, "dn1", &[]).await;

    phase("dn1's heartbeats still arrive, but no answer and no push gets through");
    dn1.heartbeat_responses(Fault::Drop);
    dn1.pushes(Fault::Drop);

    phase("a create database: its prepare's broadcast runs over, and the procedure retries it");
    let leader = cluster.leader_address().await;
    let mut catalog = leasehold_tests::requests::catalog_at(&leader);
    let created = catalog.create_database(leasehold_tests::requests::create_database("db", "make-db")).await;
    let prepare = created.expect("the create database proceeds").into_inner().procedure_id;
    let node = cluster.node("c1");
    let waited_ms = |message: &str| -> Vec<u64> {
        node.events(message)
            .iter()
            .filter(|event| event["version"].as_u64() == Some(prepare))
            .filter_map(|event| event["waited_ms"].as_u64())
            .collect()
    };
    let (over, settled) = (waited_ms("broadcast failed"), waited_ms("broadcast settled: proceed"));
    assert_eq!((over.len(), settled.len()), (1, 1), "one try over budget, one that settled");
    // Both tries together wait one T_proceed from the publication (plus the retry's pause
    // and some scheduling), not one T_proceed per try, which would be at least cut + 2.5 s.
    let both = Duration::from_millis(over[0] + settled[0]);
    eprintln!(
        "the prepare's broadcast: {over:?} over budget, then {settled:?} to settle; T_proceed {:?}",
        lease.proceed_after()
    );
    assert!(both <= lease.proceed_after() + Duration::from_millis(700), "the retry waited afresh: {both:?}");
}

/// A new leader's promotion floor is the longest any earlier leader's grants may outlast its
/// coordinator lease, as recorded in the store, not its own: a leader with a 1 s TTL taking
/// over from one with a 3 s TTL waits the 3 s one out before it counts a silent node settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_waits_out_the_longest_ttl_any_earlier_leader_used() {
    let _serial = serial().await;
    let mut cluster = leasehold_tests::TestCluster::new(BIN, leasehold_tests::TestStore::sqlite());
    // The fence must outlast a failover of the longer lease.
    let lease = leasehold_tests::LeaseSettings { fence: Duration::from_secs(6), ..Default::default() };
    cluster.timings.lease = Some(lease);
    let (long, short) = (Duration::from_secs(3), cluster.timings.lease_ttl);
    cluster.timings.lease_ttl = long;
    phase("c1 leads with a 3 s coordinator lease; dn1 holds a lease from it");
    cluster.start("c1", &[], &[]).await;
    let (_, term) = cluster.leader(ELECTION).await;
    let dn1 = TestAgent::start_leased(&mut cluster, "dn1", &[]).await;

    phase("c1 is killed; c2, with a 1 s lease, takes over once c1's lease expired");
    cluster.node_mut("c1").kill();
    cluster.timings.lease_ttl = short;
    cluster.start("c2", &[], &[]).await;
    let (leader, _, seen) = cluster.leader_above(term, ELECTION + long).await;
    assert_eq!(leader, "c2");
    let address = cluster.node("c2").grpc.clone();
    dn1.heartbeat_proxies[0].retarget(address.parse().unwrap());
    dn1.heartbeat_responses(Fault::Drop);
    dn1.pushes(Fault::Drop);

    let stretched = |ttl: Duration| ttl.mul_f64(1.01 / 0.99);
    let loaded = cluster.node("c2").wait_events("data-node leases: leader state loaded", 1, ELECTION).await;
    let floor = Duration::from_millis(loaded[0]["earlier_grants_ms"].as_u64().expect("the floor is logged"));
    assert!(floor >= stretched(long), "c2 uses a floor of {floor:?}, below c1's {:?}", stretched(long));

    phase("a barrier on c2 waits for dn1 until c1's longest grant has provably ended");
    let started = Instant::now();
    let answer = barrier(&address, &lease).await.expect("the barrier proceeds");
    let waited = Duration::from_millis(answer.waited_ms) + (started - seen);
    eprintln!("c2's floor {floor:?}; the barrier waited {:?} ({waited:?} since c2 was seen leading)", answer.waited_ms);
    assert!(answer.fenced.iter().any(|node| node.starts_with("dn1/")), "{answer:?}");
    // From c2's promotion: its floor plus T_proceed. With c2's own TTL as the floor it would
    // be two seconds less.
    let midway = stretched(short) + (stretched(long) - stretched(short)) / 2 + lease.proceed_after();
    assert!(waited >= midway, "the barrier proceeded {waited:?} after c2's promotion, before {midway:?}");
}

/// An incarnation silent for `datanodes.evict-after` is evicted: a broadcast after a failover
/// no longer waits the promotion floor and T_proceed for it, and when the agent comes back
/// it is told its incarnation was retired and starts a new one instead of looping. A
/// registration that arrives after its incarnation's deregistration is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_incarnation_is_evicted_and_comes_back_as_a_new_one() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_DATANODES__EVICT_AFTER", "5s")];
    let Some(mut lab) = Lab::start(BIN, Kind::Sqlite, 2, &env, &[("dn1", &[]), ("dn2", &[])]).await else { return };
    let (leader, term) = lab.cluster.leader(ELECTION).await;
    let retired = lab.agents[1].lease().await.expect("dn2 answers").incarnation;

    phase("SIGSTOP dn2 until the leader evicts it and forgets its settled tombstone");
    lab.agents[1].node.pause();
    let node = lab.cluster.node(&leader);
    let evicted =
        "data node evicted: silent past datanodes.evict-after; it is told to start a new incarnation if it comes back";
    let events = node.wait_events(evicted, 1, Duration::from_secs(15)).await;
    assert!(events[0]["node"].as_str().is_some_and(|node| node.starts_with("dn2/")), "{events:?}");
    // No other incarnation was ever retired here: the first sweep is the one that forgets it.
    node.wait_events("settled tombstones forgotten", 1, Duration::from_secs(10)).await;

    phase("after a failover, a barrier does not wait for the evicted incarnation");
    lab.cluster.node_mut(&leader).kill();
    let (successor, _, _) = lab.cluster.leader_above(term, ELECTION).await;
    let address = lab.cluster.node(&successor).grpc.clone();
    let answer = barrier(&address, &lab.lease).await.expect("the barrier proceeds");
    assert!(answer.fenced.is_empty() && answer.acknowledged.iter().all(|node| node.starts_with("dn1/")), "{answer:?}");
    let floor = lab.cluster.timings.lease_ttl.mul_f64(1.01 / 0.99);
    assert!(Duration::from_millis(answer.waited_ms) < floor + lab.lease.proceed_after(), "{answer:?}");

    phase("SIGCONT dn2: told its incarnation was retired, it registers as a new one");
    lab.agents[1].node.resume();
    let dn2 = &lab.agents[1];
    let lease = eventually("dn2 holds a lease again", Duration::from_secs(20), || async move {
        dn2.lease().await.ok().filter(|lease| lease.state == AgentLeaseState::Normal as i32)
    })
    .await;
    assert_ne!(lease.incarnation, retired, "dn2 came back under a new incarnation");
    let events = lab.agents[1].node.events("the leader retired this incarnation; registering as a new one");
    assert_eq!(events.len(), 1, "one new incarnation, no loop: {events:?}");

    phase("a registration delayed past its deregistration does not revive the incarnation");
    let mut client = data_nodes(&address, &lab.lease);
    let register = RegisterRequest {
        node_id: "late".into(),
        address: "127.0.0.1:9".into(),
        incarnation: "i-late".into(),
        pools: Vec::new(),
        ..Default::default()
    };
    client.register(register.clone()).await.expect("registered");
    client
        .deregister(DeregisterRequest {
            node_id: "late".into(),
            incarnation: "i-late".into(),
            buckets_released: false,
            released: false,
        })
        .await
        .expect("deregistered");
    let refused = client.register(register).await.expect_err("the retired incarnation is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(error_reason(&refused).as_deref(), Some(reason::INCARNATION_RETIRED));
}

/// `leasehold ctl ARGS…`: its exit status, stdout and stderr.
async fn ctl_run(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    let output = tokio::process::Command::new(BIN).args(&all).output().await.expect("running ctl");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `leasehold ctl --endpoints ENDPOINTS --output json ARGS…`, which must succeed: its JSON.
async fn ctl_json(endpoints: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--endpoints", endpoints, "--output", "json"];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = ctl_run(&all).await;
    assert!(status.success(), "ctl {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("ctl {args:?} printed no JSON ({error}): {stdout}"))
}

/// `ctl datanodes remove`: refused while the node may hold a lease, then it retires the dead
/// node's incarnation, which the leader forgets once it has provably fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_data_node_is_removed_by_hand_and_a_live_one_is_not() {
    let _serial = serial().await;
    let Some(mut lab) = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[])]).await else { return };
    lab.cluster.leader(ELECTION).await;
    let endpoints = lab.cluster.node("c1").grpc.clone();
    let listed = async |node_id: &str| -> bool {
        let list = ctl_json(&endpoints, &["datanodes", "list"]).await;
        list["nodes"].as_array().unwrap().iter().any(|node| node["node_id"] == node_id)
    };

    phase("a live data node is refused: exit 5, NODE_LIVE; an unknown one: exit 4");
    let (status, _, stderr) = ctl_run(&["--endpoints", &endpoints, "-w", "json", "datanodes", "remove", "dn2"]).await;
    assert_eq!(status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("NODE_LIVE"), "{stderr}");
    let (status, _, stderr) = ctl_run(&["--endpoints", &endpoints, "datanodes", "remove", "dn9"]).await;
    assert_eq!(status.code(), Some(4), "{stderr}");

    phase("killed, dn2 is removed once the leader knows it has fenced, and then gone");
    lab.agents[1].node.kill();
    let removed = eventually("dn2 may be removed", ELECTION, || async {
        let (status, stdout, _) =
            ctl_run(&["--endpoints", &endpoints, "-w", "json", "datanodes", "remove", "dn2"]).await;
        status.success().then(|| serde_json::from_str::<serde_json::Value>(&stdout).unwrap())
    })
    .await;
    assert_eq!(removed["removed"], "dn2", "{removed}");
    eventually("dn2 is no longer listed", ELECTION, || async { (!listed("dn2").await).then_some(()) }).await;
    assert!(listed("dn1").await, "dn1 stays");
    let barrier = ctl_json(&endpoints, &["datanodes", "barrier"]).await;
    assert!(barrier["fenced"].as_array().unwrap().is_empty(), "nothing is waited out: {barrier}");
}

/// Every operator command of `ctl` (`ha leader|state|states|priority|set-priority|set-state`,
/// `datanodes list|barrier`, `agent lease`) against a real cluster, in JSON and as tables, and
/// the exit status and one-line error of a refused or unreachable call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_operator_commands_work_end_to_end() {
    let _serial = serial().await;
    let Some(mut lab) = Lab::start(BIN, Kind::Sqlite, 2, &[], &[("dn1", &[])]).await else { return };
    let (leader, term) = lab.cluster.leader(ELECTION).await;
    let follower = if leader == "c1" { "c2" } else { "c1" };
    let (leader_address, follower_address) =
        (lab.cluster.node(&leader).grpc.clone(), lab.cluster.node(follower).grpc.clone());
    let endpoints = format!("{leader_address},{follower_address}");
    let agent = lab.agents[0].node.grpc.clone();

    phase("ha leader, state and states");
    let answer = ctl_json(&endpoints, &["ha", "leader"]).await;
    assert_eq!((answer["node_id"].as_str(), answer["term"].as_u64()), (Some(leader.as_str()), Some(term)), "{answer}");
    let states = ctl_json(&endpoints, &["ha", "state"]).await;
    let roles: Vec<&str> = states.as_array().unwrap().iter().filter_map(|s| s["state"]["role"].as_str()).collect();
    assert_eq!(roles.len(), 2, "{states}");
    let registry = ctl_json(&endpoints, &["ha", "states"]).await;
    assert_eq!(registry["nodes"].as_array().map(Vec::len), Some(2), "{registry}");

    phase("ha priority and set-priority: a follower is changed only when asked to");
    let (status, _, stderr) =
        ctl_run(&["--endpoints", &endpoints, "ha", "set-priority", "7", "--node", &follower_address]).await;
    assert!(!status.success() && stderr.starts_with("error:"), "{status:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let changed =
        ctl_json(&endpoints, &["ha", "set-priority", "7", "--node", &follower_address, "--allow-non-leader"]).await;
    assert_eq!((changed["previous_priority"].as_i64(), changed["priority"].as_i64()), (Some(0), Some(7)), "{changed}");
    let priority = ctl_json(&endpoints, &["ha", "priority", "--node", &follower_address]).await;
    assert_eq!(priority["priority"].as_i64(), Some(7), "{priority}");

    phase("ha set-state: the follower becomes a hot standby");
    let changed =
        ctl_json(&endpoints, &["ha", "set-state", "hot-standby", "--node", &follower_address, "--allow-non-leader"])
            .await;
    assert_eq!(
        (changed["previous_mode"].as_str(), changed["state"]["mode"].as_str()),
        (Some("HA_MODE_AUTO"), Some("HA_MODE_HOT_STANDBY")),
        "{changed}"
    );
    let (status, _, stderr) = ctl_run(&["--endpoints", &endpoints, "ha", "set-state", "leader"]).await;
    assert_eq!(status.code(), Some(2), "a bad mode is a usage error: {stderr}");

    phase("datanodes list and barrier, agent lease");
    let listed = ctl_json(&endpoints, &["datanodes", "list"]).await;
    let nodes = listed["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|node| node["node_id"] == "dn1" && node["registered"] == true), "{listed}");
    let barrier = ctl_json(&endpoints, &["datanodes", "barrier"]).await;
    let acknowledged = barrier["acknowledged"].as_array().unwrap();
    assert!(acknowledged.iter().any(|node| node.as_str().is_some_and(|node| node.starts_with("dn1/"))), "{barrier}");
    let lease = ctl_json(&endpoints, &["agent", "lease", "--agent", &agent]).await;
    assert_eq!(
        (lease["node_id"].as_str(), lease["state"].as_str()),
        (Some("dn1"), Some("AGENT_LEASE_STATE_NORMAL")),
        "{lease}"
    );
    assert!(lease["applied_version"].as_u64() >= barrier["version"].as_u64(), "{lease} after {barrier}");
    let (status, table, _) = ctl_run(&["--endpoints", &endpoints, "datanodes", "list"]).await;
    assert!(status.success() && table.starts_with("NODE") && table.contains("dn1"), "{table}");

    phase("every endpoint: its priority, its status, its health");
    let priorities = ctl_json(&endpoints, &["ha", "priority"]).await;
    let priorities: Vec<(&str, i64)> = priorities
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|answer| Some((answer["node"].as_str()?, answer["priority"].as_i64()?)))
        .collect();
    assert_eq!(priorities, [(leader_address.as_str(), 0), (follower_address.as_str(), 7)]);
    let status = ctl_json(&endpoints, &["endpoint", "status"]).await;
    let roles: Vec<&str> = status.as_array().unwrap().iter().filter_map(|s| s["state"]["role"].as_str()).collect();
    assert_eq!(roles, ["HA_ROLE_LEADER", "HA_ROLE_FOLLOWER"], "{status}");
    for answer in status.as_array().unwrap() {
        assert_eq!(answer["state"]["store_backend"], "sqlite", "{answer}");
        assert_eq!(answer["state"]["version"], env!("CARGO_PKG_VERSION"), "{answer}");
        assert!(answer["took_ms"].as_f64().is_some(), "{answer}");
    }
    let health = ctl_json(&endpoints, &["endpoint", "health"]).await;
    assert!(health.as_array().unwrap().iter().all(|answer| answer["healthy"] == true), "{health}");
    let (status, stdout, _) =
        ctl_run(&["endpoint", "health", "--endpoints", &format!("{endpoints},127.0.0.1:1")]).await;
    assert_eq!(status.code(), Some(3), "one endpoint is down: {stdout}");
    assert!(stdout.contains("127.0.0.1:1") && stdout.contains("false"), "{stdout}");

    phase("global flags after the command, and the endpoints from LEASEHOLD_ENDPOINTS");
    let output = tokio::process::Command::new(BIN)
        .args(["ctl", "ha", "leader", "-w", "json"])
        .env("LEASEHOLD_ENDPOINTS", &endpoints)
        .output()
        .await
        .expect("running ctl");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(answer["node_id"].as_str(), Some(leader.as_str()), "{answer}");

    phase("refusals: their exit code, and a JSON error under --output json");
    let (status, _, stderr) =
        ctl_run(&["table", "get", "nodb", "missing", "--endpoints", &endpoints, "--output", "json"]).await;
    assert_eq!(status.code(), Some(4), "not found: {stderr}");
    let error: serde_json::Value = serde_json::from_str(stderr.trim()).expect("a JSON error");
    assert_eq!((error["code"].as_str(), error["reason"].as_str()), (Some("NOT_FOUND"), Some("NOT_FOUND")), "{error}");
    assert!(error["message"].as_str().is_some_and(|message| message.contains("missing")), "{error}");

    phase("an unreachable cluster: the endpoint named at once, exit 3, one error line");
    let (status, _, stderr) =
        ctl_run(&["--endpoints", "127.0.0.1:1", "--dial-timeout", "1s", "--timeout", "60s", "ha", "leader"]).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.starts_with("error:") && stderr.lines().count() == 1, "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "names the endpoint: {stderr}");
}

/// T_proceed follows the largest fence any leader ever granted, not the fence of the leader
/// in office: after a leader granting 6 s fences, a successor configured with 3 s still waits
/// out a silent node for the 6 s one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_with_a_smaller_fence_waits_for_the_largest_fence_ever_granted() {
    let _serial = serial().await;
    let mut cluster = leasehold_tests::TestCluster::new(BIN, leasehold_tests::TestStore::sqlite());
    let large = leasehold_tests::LeaseSettings { fence: Duration::from_secs(6), ..Default::default() };
    let small = leasehold_tests::LeaseSettings { fence: Duration::from_secs(3), ..large };
    phase("c1 grants 6 s fences");
    cluster.timings.lease = Some(large);
    cluster.start("c1", &[], &[]).await;
    let (_, term) = cluster.leader(ELECTION).await;
    phase("c2, configured with 3 s, takes over");
    cluster.timings.lease = Some(small);
    cluster.start("c2", &[], &[]).await;
    cluster.node_mut("c1").kill();
    let (leader, _, _) = cluster.leader_above(term, ELECTION).await;
    assert_eq!(leader, "c2");
    let address = cluster.node("c2").grpc.clone();
    let listed = eventually("c2 serves the data-node state", Duration::from_secs(15), || {
        let mut client = data_nodes(&address, &small);
        async move { client.list_data_nodes(ListDataNodesRequest {}).await.ok().map(|answer| answer.into_inner()) }
    })
    .await;
    assert_eq!(listed.fence_ms, 3000, "c2 grants its own fence");
    let expected = large.proceed_after();
    let proceed_after = Duration::from_millis(listed.proceed_after_ms);
    assert!(
        proceed_after + Duration::from_millis(1) >= expected && proceed_after <= expected + Duration::from_millis(1),
        "T_proceed {proceed_after:?}, expected the 6 s fence's {expected:?}"
    );
}

/// The value of the counter `name{labels}` in a Prometheus text page (0 when absent).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

const KEEP_ALIVE_OPENED: &str = "leasehold_grpc_requests_total{method=\"KeepAlive\",code=\"OK\"}";
const UNARY_HEARTBEATS: &str = "leasehold_grpc_requests_total{method=\"Heartbeat\",code=\"OK\"}";
const GRANTED: &str = "leasehold_datanodes_heartbeats_total{result=\"granted\"}";

/// Waits until the leader has granted `more` heartbeats beyond what `metrics` shows; answers
/// the page then.
async fn after_more_heartbeats(lab: &Lab, metrics: &str, more: u64) -> String {
    let before = counter(metrics, GRANTED);
    eventually(&format!("{more} more heartbeats granted"), Duration::from_secs(20), || async move {
        let now = lab.cluster.node("c1").scrape_metrics().await?;
        (counter(&now, GRANTED) >= before + more).then_some(now)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_renew_on_one_keep_alive_stream_each() {
    let _serial = serial().await;
    let lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let first = lab.cluster.node("c1").scrape_metrics().await.expect("metrics");
    let later = after_more_heartbeats(&lab, &first, 8).await;
    phase("the renewals went on the streams: no new unary heartbeat, no new stream");
    assert_eq!(counter(&later, KEEP_ALIVE_OPENED), 2, "one stream per agent: {later}");
    assert_eq!(counter(&later, UNARY_HEARTBEATS), counter(&first, UNARY_HEARTBEATS), "{later}");
    for agent in &lab.agents {
        assert!(agent.is(AgentLeaseState::Normal).await);
    }
    let answer = barrier(&lab.cluster.node("c1").grpc, &lab.lease).await.expect("a barrier");
    assert_eq!(answer.acknowledged.len(), 2, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_falls_back_to_unary_heartbeats_against_a_coordinator_without_keep_alive() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "datanodes::keep-alive-unimplemented=return")];
    let lab = Lab::start(BIN, Kind::Sqlite, 1, &env, &[("dn1", &[])]).await.unwrap();
    let first = lab.cluster.node("c1").scrape_metrics().await.expect("metrics");
    let later = after_more_heartbeats(&lab, &first, 4).await;
    let tried = "leasehold_grpc_requests_total{method=\"KeepAlive\",code=\"UNIMPLEMENTED\"}";
    assert_eq!(counter(&later, tried), 1, "the stream is tried once: {later}");
    assert!(counter(&later, UNARY_HEARTBEATS) >= counter(&first, UNARY_HEARTBEATS) + 4, "{later}");
    assert!(lab.agent("dn1").is(AgentLeaseState::Normal).await);
}

/// A change that holds the publication lock for 5 s (a slow DDL, say) holds up no heartbeat:
/// heartbeats take only the short state lock, never the publication mutex, the store or a DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_go_on_while_a_change_holds_the_publication_lock() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "publish::holding-lock=1*return(5000)")];
    let lab = Lab::start(BIN, Kind::Sqlite, 1, &env, &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let leader = lab.cluster.node("c1").grpc.clone();
    phase("a barrier takes the publication lock and is held there for 5 s");
    let held_at = Instant::now();
    let barrier_task = {
        let (leader, lease) = (leader.clone(), lab.lease);
        tokio::spawn(async move { barrier(&leader, &lease).await })
    };
    lab.cluster.node("c1").wait_events("failpoint reached: pausing", 1, Duration::from_secs(10)).await;
    let mut samples = 0;
    let mut longest_silence = 0;
    while held_at.elapsed() < Duration::from_millis(4500) {
        let listed =
            data_nodes(&leader, &lab.lease).list_data_nodes(ListDataNodesRequest {}).await.unwrap().into_inner();
        for node in listed.nodes.iter().filter(|node| node.registered) {
            longest_silence = longest_silence.max(node.silent_ms);
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("while the lock was held: {samples} samples, longest silence {longest_silence} ms");
    assert!(samples >= 20, "{samples}");
    // Heartbeats every second: a node is never silent for much more than one interval.
    let bound = lab.lease.heartbeat_interval.as_millis() as i64 + 700;
    assert!(longest_silence < bound, "a heartbeat waited: silent {longest_silence} ms");
    for agent in &lab.agents {
        assert!(agent.is(AgentLeaseState::Normal).await);
    }
    let answer = barrier_task.await.unwrap().expect("the barrier returns once released");
    assert!(held_at.elapsed() >= Duration::from_millis(5000), "the failpoint held the change");
    assert_eq!(answer.acknowledged.len(), 2, "{answer:?}");
}
