//! The resource keeper against the real binary: a `local` container that runs real
//! `leasehold agent` processes (and a command that always fails), SIGKILLs of resources and of
//! the leader, and the store as the record of every attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::resources_client::ResourcesClient;
use leasehold::v1::{
    CreateGroupRequest, CreateResourceRequest, GetResourceRequest, ListResourcesRequest, Resource, ResourceGroup,
};
use leasehold_store::{GroupRow, MigrationSet, Store, StoreOptions, WriteGuard};
use leasehold_tests::process::channel;
use leasehold_tests::store::Kind;
use leasehold_tests::{LeaseSettings, Node, TestCluster, TestStore, eventually, never, phase, serial};
use rustix::process::{Pid, Signal, kill_process};
use tokio::time::Instant;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
/// Between attempts, and before the first.
const GRACE: Duration = Duration::from_secs(2);
const RESTART_EVENT: &str = "restarting an orphaned resource: no live data node carries its id";
const STARTED_EVENT: &str = "resource process started";

/// A directory of the test's own, for the configuration and the resources' logs.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("leasehold-keeper-tests").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    dir
}

/// A coordinator configuration with the keeper on, a `local` container `agents` run by
/// `runner` that starts real agents, a `broken` one whose command exits at once, and an
/// `external` one.
fn write_config(dir: &Path, runner: &str, max_retries: u32) -> String {
    let lease = LeaseSettings::default();
    let agent = [
        BIN,
        "--log-format",
        "json",
        "agent",
        "--node-id",
        "{resource_id}",
        "--resource-id",
        "{resource_id}",
        "--attempt-id",
        "{attempt_id}",
        "--coordinators",
        "{coordinators}",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--heartbeat-interval",
        &format!("{}ms", lease.heartbeat_interval.as_millis()),
        "--heartbeat-timeout",
        &format!("{}ms", lease.heartbeat_timeout.as_millis()),
    ];
    let quoted = |parts: &[&str]| parts.iter().map(|part| format!("{part:?}")).collect::<Vec<_>>().join(", ");
    let logs = dir.join("logs");
    let config = format!(
        r#"
[resources.auto-restart]
enabled = true
max-retries = {max_retries}
grace-period = "{grace}ms"
interval = "200ms"

[containers.agents]
kind = "local"
node = "{runner}"
command = [{agent}]
log-directory = {logs:?}
stop-grace = "3s"

[containers.broken]
kind = "local"
node = "{runner}"
command = ["sh", "-c", "echo starting {{resource_id}} attempt {{attempt_id}}; exit 3"]
log-directory = {logs:?}

[containers.k8s]
kind = "external"
"#,
        grace = GRACE.as_millis(),
        agent = quoted(&agent),
    );
    let path = dir.join("coordinator.toml");
    std::fs::write(&path, config).expect("writing the configuration");
    path.display().to_string()
}

fn client(leader: &str) -> ResourcesClient<tonic::transport::Channel> {
    ResourcesClient::new(channel(leader))
}

/// Retries `call` while the leader answers UNAVAILABLE (it is still loading its state).
async fn until_served<F, Fut, T>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    eventually(what, Duration::from_secs(15), || {
        let answer = call();
        async move {
            match answer.await {
                Ok(answer) => Some(answer.into_inner()),
                Err(status) if status.code() == Code::Unavailable => None,
                Err(status) => panic!("{what}: {status:?}"),
            }
        }
    })
    .await
}

async fn create_group(leader: &str, name: &str, container: &str, min_members: u32) {
    let group = ResourceGroup { name: name.into(), container: container.into(), min_members, ..Default::default() };
    until_served("creating a group", || {
        let request = CreateGroupRequest { group: Some(group.clone()) };
        async move { client(leader).create_group(request).await }
    })
    .await;
}

async fn create_resource(leader: &str, id: &str, group: &str) {
    let request = CreateResourceRequest { id: id.into(), group: group.into(), ..Default::default() };
    until_served("creating a resource", || {
        let request = request.clone();
        async move { client(leader).create_resource(request).await }
    })
    .await;
}

/// The resource as the leader answers, `None` once it is gone (or the leader did not answer).
async fn resource(leader: &str, id: &str) -> Option<Resource> {
    client(leader).get_resource(GetResourceRequest { id: id.into() }).await.ok().map(|answer| answer.into_inner())
}

async fn is_gone(leader: &str, id: &str) -> bool {
    match client(leader).get_resource(GetResourceRequest { id: id.into() }).await {
        Err(status) => status.code() == Code::NotFound && error_reason(&status).as_deref() == Some(reason::NOT_FOUND),
        Ok(_) => false,
    }
}

fn pid_of(resource: &Resource) -> Option<i32> {
    resource.process.get("pid")?.parse().ok()
}

/// Waits until `id` runs under a live data node with a pid other than `not`; answers it.
async fn live(leader: &str, id: &str, not: Option<i32>, timeout: Duration) -> Resource {
    eventually(&format!("{id} live under a new process"), timeout, || async move {
        let resource = resource(leader, id).await?;
        (resource.live && pid_of(&resource).is_some() && pid_of(&resource) != not).then_some(resource)
    })
    .await
}

fn sigkill(pid: i32) {
    // The test started this process (through the coordinator's container).
    let _ = kill_process(Pid::from_raw(pid).expect("a pid"), Signal::KILL);
}

/// How long after its last contact a dead resource's data node stops counting as live.
fn offline_after() -> Duration {
    LeaseSettings::default().proceed_after()
}

async fn cluster_on(kind: Kind) -> Option<TestCluster> {
    let store = TestStore::of(kind)?;
    let mut cluster = TestCluster::new(BIN, store);
    cluster.timings.lease = Some(LeaseSettings::default());
    Some(cluster)
}

/// The restart events of `id` in `logs`, by attempt.
fn restarts(events: &[serde_json::Value], id: &str) -> Vec<u64> {
    events.iter().filter(|event| event["resource"] == id).filter_map(|event| event["attempt"].as_u64()).collect()
}

async fn a_killed_resource_is_started_again_under_its_id(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind).await else { return };
    let dir = test_dir(&format!("restart-{kind:?}"));
    let config = write_config(&dir, "c1", 3);
    cluster.start("c1", &["--config", &config], &[]).await;
    let leader = cluster.leader_address().await;

    phase("a resource of the local container starts and its data node registers under its id");
    create_group(&leader, "workers", "agents", 0).await;
    create_resource(&leader, "dn1", "workers").await;
    let first = live(&leader, "dn1", None, Duration::from_secs(30)).await;
    let first_pid = pid_of(&first).expect("a pid");
    assert_eq!(first.attempts, 0, "its first start is no restart");

    phase("a second process presenting another attempt of dn1 is refused at registration and exits");
    let stale = [
        "--log-format",
        "json",
        "agent",
        "--node-id",
        "dn1",
        "--resource-id",
        "dn1",
        "--attempt-id",
        "not-the-latest",
        "--coordinators",
        &leader,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
    ]
    .map(str::to_owned);
    let mut intruder = Node::spawn(BIN, "dn1-stale", &stale, &[]);
    let status = intruder.wait_exit(Duration::from_secs(15)).await.expect("the superseded process exits");
    assert!(!status.success(), "{status}");
    let output = intruder.output();
    assert!(output.contains("attempt not-the-latest was superseded by attempt"), "{output}");
    let still = resource(&leader, "dn1").await.expect("dn1");
    assert!(still.live && pid_of(&still) == Some(first_pid), "the running process keeps serving: {still:?}");

    phase("SIGKILL it: the keeper starts it again once it is an orphan for a grace period");
    let killed_at = Instant::now();
    sigkill(first_pid);
    let bound = offline_after() + GRACE + Duration::from_secs(15);
    let second = live(&leader, "dn1", Some(first_pid), bound).await;
    let took = killed_at.elapsed();
    eprintln!("dn1 was live again {took:?} after its SIGKILL (offline after {:?}, grace {GRACE:?})", offline_after());
    assert!(took >= GRACE, "restarted after only {took:?}, before its grace period");
    assert_eq!(second.attempts, 1);
    assert_eq!(second.start_time_ms, first.start_time_ms, "a restart keeps the start time");
    assert_ne!(second.attempt_id, first.attempt_id);
    let node = cluster.node("c1");
    assert_eq!(restarts(&node.events(RESTART_EVENT), "dn1"), [1], "one death, one restart");

    phase("it stays live: no second restart, and a grace period later its attempts start from 0 again");
    eventually("dn1's attempts reset", GRACE * 3 + Duration::from_secs(5), || async {
        resource(&leader, "dn1").await.filter(|resource| resource.attempts == 0 && resource.live).map(|_| ())
    })
    .await;
    assert_eq!(restarts(&node.events(RESTART_EVENT), "dn1"), [1]);
    if let Some(pid) = resource(&leader, "dn1").await.as_ref().and_then(pid_of) {
        sigkill(pid);
    }
}

async fn a_command_that_always_exits_is_given_up_after_max_retries() {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(Kind::Sqlite).await else { return };
    let dir = test_dir("broken");
    let config = write_config(&dir, "c1", 3);
    cluster.start("c1", &["--config", &config], &[]).await;
    let leader = cluster.leader_address().await;
    create_group(&leader, "broken", "broken", 0).await;
    let created_at = Instant::now();
    create_resource(&leader, "rb", "broken").await;

    phase("every attempt is recorded, spaced by the grace period on the store's clock");
    let mut attempts: BTreeMap<u32, i64> = BTreeMap::new();
    let deadline = Instant::now() + GRACE * 6 + Duration::from_secs(20);
    while !is_gone(&leader, "rb").await {
        assert!(Instant::now() < deadline, "rb was never cleaned up; attempts seen: {attempts:?}");
        if let Some(resource) = resource(&leader, "rb").await {
            attempts.insert(resource.attempts, resource.last_attempt_ms);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("rb given up {:?} after it was created; attempts seen: {attempts:?}", created_at.elapsed());
    let times: Vec<i64> = attempts.values().copied().collect();
    assert_eq!(attempts.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3], "its first start and 3 restarts");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= GRACE.as_millis() as i64, "attempts closer than the grace period: {times:?}");
    }
    let node = cluster.node("c1");
    node.wait_events(
        "resource cleaned up: stopped, its data node deregistered, its row deleted",
        1,
        Duration::from_secs(5),
    )
    .await;

    phase("then nothing: no attempt and no resource of that id any more");
    never("rb comes back", GRACE * 2, || async { !is_gone(&leader, "rb").await }).await;
    assert_eq!(restarts(&node.events(RESTART_EVENT), "rb"), [1, 2, 3], "exactly max-retries attempts");
    let log = std::fs::read_to_string(dir.join("logs").join("rb.log")).unwrap_or_default();
    assert_eq!(log.lines().filter(|line| line.starts_with("starting rb")).count(), 4, "{log}");
}

/// Writes a group and a resource that name a container no coordinator has (a container
/// removed from the configuration), as an earlier configuration would have left them.
async fn leave_a_row_for_a_removed_container(cluster: &TestCluster) {
    let store = Store::connect(StoreOptions::new(cluster.store.url.clone())).await.expect("connect");
    store.migrate(MigrationSet::All).await.expect("migrate");
    let group = GroupRow {
        name: "old".into(),
        container: "gone".into(),
        min_members: 0,
        properties: BTreeMap::new(),
        created_at_ms: 0,
    };
    let mut tx = store.begin_guarded(&WriteGuard::Standalone).await.expect("write");
    tx.run(async |db| {
        db.create_group(&cluster.cluster, &group).await?;
        db.create_resource(&cluster.cluster, "z1", "old", "gone", &BTreeMap::new(), "a0").await
    })
    .await
    .expect("rows written");
    tx.commit().await.expect("committed");
    store.close().await;
}

async fn opted_out_and_unknown_containers_are_warned_about_once_and_block_nothing() {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(Kind::Sqlite).await else { return };
    let dir = test_dir("opted-out");
    let config = write_config(&dir, "c1", 3);
    leave_a_row_for_a_removed_container(&cluster).await;
    cluster.start("c1", &["--config", &config], &[]).await;
    let leader = cluster.leader_address().await;

    phase("an external resource (never started here) and a live local one");
    create_group(&leader, "k8s", "k8s", 0).await;
    create_resource(&leader, "e1", "k8s").await;
    create_group(&leader, "workers", "agents", 0).await;
    create_resource(&leader, "dn1", "workers").await;
    let first = live(&leader, "dn1", None, Duration::from_secs(30)).await;

    phase("SIGKILL the local one: it is restarted although the other two orphans are never");
    sigkill(pid_of(&first).expect("a pid"));
    let bound = offline_after() + GRACE + Duration::from_secs(15);
    let again = live(&leader, "dn1", pid_of(&first), bound).await;
    assert_eq!(again.attempts, 1);
    let node = cluster.node("c1");
    let warned = node.events(
        "an orphaned resource is not restarted: its container is unknown or opted out of restarts; delete it or fix [containers]",
    );
    let mut warned: Vec<(String, String)> = warned
        .iter()
        .map(|event| {
            (event["resource"].as_str().unwrap_or("").to_owned(), event["reason"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    warned.sort();
    // Exactly once each, over every pass the keeper made meanwhile.
    assert_eq!(warned, [("e1".to_owned(), "opted_out".to_owned()), ("z1".to_owned(), "unknown_container".to_owned())]);
    for id in ["e1", "z1"] {
        let resource = resource(&leader, id).await.expect("still there");
        assert!(resource.orphan, "{resource:?}");
        assert_eq!(resource.attempts, 0, "{id} consumed no attempt");
        assert!(restarts(&node.events(RESTART_EVENT), id).is_empty());
    }
    assert_eq!(node.events(RESTART_EVENT).len(), 1);
    if let Some(pid) = pid_of(&again) {
        sigkill(pid);
    }
}

async fn a_group_below_its_minimum_is_filled_and_never_overfilled() {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(Kind::Sqlite).await else { return };
    let dir = test_dir("fill");
    let config = write_config(&dir, "c1", 3);
    cluster.start("c1", &["--config", &config], &[]).await;
    let leader = cluster.leader_address().await;

    phase("a group of 2 is filled with 2 new resources");
    create_group(&leader, "workers", "agents", 2).await;
    let list = || async {
        let request = ListResourcesRequest { group: "workers".into() };
        client(&leader).list_resources(request).await.ok().map(|answer| answer.into_inner().resources)
    };
    let members = eventually("2 live members", Duration::from_secs(30), || async {
        list().await.filter(|resources| resources.len() == 2 && resources.iter().all(|resource| resource.live))
    })
    .await;

    phase("SIGKILL one: it is restarted, and the group never holds a third while it is");
    let victim = members[0].clone();
    sigkill(pid_of(&victim).expect("a pid"));
    let deadline = Instant::now() + offline_after() + GRACE + Duration::from_secs(15);
    loop {
        let resources = list().await.unwrap_or_default();
        assert!(resources.len() <= 2, "overfilled: {resources:?}");
        let restarted = resources
            .iter()
            .any(|resource| resource.id == victim.id && resource.live && pid_of(resource) != pid_of(&victim));
        if restarted && resources.iter().all(|resource| resource.live) {
            break;
        }
        assert!(Instant::now() < deadline, "the group did not come back: {resources:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    never("a third member", GRACE, || async { list().await.is_some_and(|resources| resources.len() > 2) }).await;
    let node = cluster.node("c1");
    assert_eq!(node.events("provisioned a resource: the group is below its minimum").len(), 2);
    for resource in list().await.unwrap_or_default() {
        if let Some(pid) = pid_of(&resource) {
            sigkill(pid);
        }
    }
}

async fn the_successor_carries_on_the_attempt_count_after_a_leader_sigkill(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind).await else { return };
    let dir = test_dir(&format!("failover-{kind:?}"));
    // c2 runs the containers; c1 leads first and is killed between two attempts.
    let config = write_config(&dir, "c2", 4);
    cluster.start("c1", &["--config", &config], &[]).await;
    let (first_leader, term) = cluster.leader(Duration::from_secs(15)).await;
    assert_eq!(first_leader, "c1");
    cluster.start("c2", &["--config", &config], &[]).await;
    let leader = cluster.node("c1").grpc.clone();
    create_group(&leader, "broken", "broken", 0).await;
    create_resource(&leader, "rb", "broken").await;

    phase("attempt 1 is recorded by c1");
    eventually("attempt 1", GRACE * 3 + Duration::from_secs(10), || async {
        resource(&leader, "rb").await.filter(|resource| resource.attempts == 1).map(|_| ())
    })
    .await;
    cluster.node_mut("c1").kill();

    phase("c2 takes over and carries the count on to max-retries, then cleans up");
    let (successor, _, _) = cluster.leader_above(term, Duration::from_secs(15)).await;
    assert_eq!(successor, "c2");
    let leader = cluster.node("c2").grpc.clone();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + GRACE * 8 + Duration::from_secs(30);
    while !is_gone(&leader, "rb").await {
        assert!(Instant::now() < deadline, "rb was never cleaned up; attempts seen: {seen:?}");
        if let Some(resource) = resource(&leader, "rb").await {
            seen.insert(resource.attempts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!seen.contains(&0), "the successor started the count over: {seen:?}");
    let mut all: Vec<u64> = restarts(&cluster.node("c1").events(RESTART_EVENT), "rb");
    all.extend(restarts(&cluster.node("c2").events(RESTART_EVENT), "rb"));
    all.sort();
    assert_eq!(all, [1, 2, 3, 4], "each attempt once, across both leaders");
    let started = cluster.node("c2").events(STARTED_EVENT);
    let attempt_ids: Vec<&str> = started.iter().filter_map(|event| event["attempt"].as_str()).collect();
    let distinct: BTreeSet<&str> = attempt_ids.iter().copied().collect();
    assert_eq!(attempt_ids.len(), 5, "its first start and 4 restarts: {attempt_ids:?}");
    assert_eq!(distinct.len(), 5, "no attempt was started twice: {attempt_ids:?}");
}

mod a_killed_resource_is_started_again_under_its_id {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_killed_resource_is_started_again_under_its_id(Kind::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_killed_resource_is_started_again_under_its_id(Kind::Postgres).await
    }
}

mod the_successor_carries_on_the_attempt_count_after_a_leader_sigkill {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::the_successor_carries_on_the_attempt_count_after_a_leader_sigkill(Kind::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::the_successor_carries_on_the_attempt_count_after_a_leader_sigkill(Kind::Postgres).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_always_exits_is_given_up_after_exactly_max_retries() {
    a_command_that_always_exits_is_given_up_after_max_retries().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_and_an_unknown_container_are_warned_about_once_and_block_nothing() {
    opted_out_and_unknown_containers_are_warned_about_once_and_block_nothing().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_below_its_minimum_is_filled_and_never_overfilled_while_a_restart_is_in_flight() {
    a_group_below_its_minimum_is_filled_and_never_overfilled().await
}
