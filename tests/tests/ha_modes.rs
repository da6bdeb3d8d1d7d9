//! HA modes, priorities, node ids, the `Cluster` API, reflection, bad input, `ctl` and `dev`,
//! against the real binary: the mode and priority rules on SQLite, PostgreSQL and
//! MySQL/MariaDB, the rest on a SQLite file.

use std::time::Duration;

use leasehold::status::{ALLOW_NON_LEADER_HEADER, error_reason, reason, redirect_target};
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::{
    GetLeaderRequest, GetTableRequest, HaMode, HaRole, ListHaStatesRequest, SetHaStateRequest, SetPriorityRequest,
    SetPriorityResponse,
};
use leasehold::{Client, ClientOptions};
use leasehold_tests::process::channel;
use leasehold_tests::store::Kind;
use leasehold_tests::{Deadline, LeaderObserver, Node, TestCluster, TestStore, eventually, never, phase, serial};
use prost::Message;
use sqlx::Row;
use tokio_stream::StreamExt;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const ELECTION: Duration = Duration::from_secs(15);

fn sqlite_cluster() -> TestCluster {
    TestCluster::new(BIN, TestStore::sqlite())
}

/// A cluster on `kind`, or `None` when that backend is not configured (the store says so).
fn cluster_on(kind: Kind) -> Option<TestCluster> {
    TestStore::of(kind).map(|store| TestCluster::new(BIN, store))
}

/// Runs `scenario` once per backend, as three tests named `<name>::sqlite`, `::postgres`
/// and `::mysql`.
macro_rules! on_every_backend {
    ($($name:ident => $scenario:ident;)*) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { $scenario(Kind::Sqlite).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { $scenario(Kind::Postgres).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() { $scenario(Kind::MySql).await }
            }
        )*
    };
}

on_every_backend! {
    after_an_expiry_the_highest_priority_candidate_wins => highest_priority_wins;
    hot_backup_never_leads_even_when_alone => hot_backup_never_leads;
    master_takes_the_lease_at_start_or_exits_at_once => master_takes_the_lease_or_exits;
    disabled_runs_alone_without_ha_tables => disabled_runs_alone;
    a_duplicate_node_id_is_refused_and_a_crashed_one_restarts => duplicate_node_ids_are_refused;
    ha_state_changes_follow_the_brooklyn_rules => brooklyn_rules;
    bad_input_gets_clear_errors_and_changes_nothing => bad_input_is_refused;
    dead_coordinators_are_removed_and_live_ones_kept => dead_coordinators_are_removed_and_live_ones_kept;
}

fn with_override<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(ALLOW_NON_LEADER_HEADER, "true".parse().unwrap());
    request
}

async fn highest_priority_wins(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    phase("c1 (priority 1) starts alone and leads");
    cluster.start("c1", &["--priority", "1"], &[]).await;
    let (first, term) = cluster.leader(ELECTION).await;
    assert_eq!(first, "c1");

    phase("c2 (priority 10) and c3 (priority 5) join");
    cluster.start("c2", &["--priority", "10"], &[]).await;
    cluster.start("c3", &["--priority", "5"], &[]).await;
    let leader = cluster.node("c1").client();
    eventually("all three are alive in the registry", Duration::from_secs(10), || {
        let mut leader = leader.clone();
        async move {
            let listed = leader.list_ha_states(ListHaStatesRequest {}).await.ok()?.into_inner();
            (listed.nodes.iter().filter(|node| node.alive).count() == 3).then_some(())
        }
    })
    .await;

    phase("SIGKILL c1: priority 10 must win");
    cluster.node_mut("c1").kill();
    let (second, second_term, _) = cluster.leader_above(term, ELECTION).await;
    assert_eq!(second, "c2");

    phase("c1 comes back with priority 1; SIGKILL c2: priority 5 beats priority 1");
    cluster.start("c1", &["--priority", "1"], &[]).await;
    let leader = cluster.node("c2").client();
    eventually("c1 is alive again", Duration::from_secs(10), || {
        let mut leader = leader.clone();
        async move {
            let listed = leader.list_ha_states(ListHaStatesRequest {}).await.ok()?.into_inner();
            listed
                .nodes
                .iter()
                .any(|node| node.node_id == "c1" && node.alive && node.role == HaRole::Follower as i32)
                .then_some(())
        }
    })
    .await;
    cluster.node_mut("c2").kill();
    let (third, _, _) = cluster.leader_above(second_term, ELECTION).await;
    assert_eq!(third, "c3");
    cluster.terms_from_logs();
}

async fn hot_backup_never_leads(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    cluster.start("backup", &["--ha-mode", "hot-backup"], &[]).await;
    let node = cluster.node("backup");
    let period = cluster.timings.lease_ttl * 4;
    never("the hot-backup took the lease", period, || async move {
        node.state().await.is_ok_and(|state| state.role == HaRole::Leader as i32)
    })
    .await;
    let leader = node.client().get_leader(GetLeaderRequest {}).await.unwrap().into_inner().leader.unwrap();
    assert!(!leader.known, "{leader:?}");
    // It serves reads: the registry, with itself alive and nobody holding the lease.
    let listed = node.client().list_ha_states(ListHaStatesRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.nodes.len(), 1);
    assert!(listed.nodes[0].alive && !listed.nodes[0].holds_lease);
    assert!(cluster.node("backup").events("became leader").is_empty());
}

async fn master_takes_the_lease_or_exits(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    cluster.start("c1", &[], &[]).await;
    let (_, term) = cluster.leader(ELECTION).await;

    phase("a master cannot start while c1 holds a live lease");
    let mut master = cluster.spawn("m1", &["--ha-mode", "master"], &[]);
    let status = master.wait_exit(Duration::from_secs(10)).await.expect("the master exits at once");
    assert!(!status.success());
    assert!(master.output().contains("holds a live lease"), "{}", master.output());

    phase("with c1 gone and its lease expired, a master takes the lease at start");
    cluster.node_mut("c1").kill();
    let store = leasehold_store::Store::connect(leasehold_store::StoreOptions::new(&cluster.store.url)).await.unwrap();
    let deadline = Deadline::new("c1's lease expires on the store", Duration::from_secs(10));
    while !store.run("read lease", async |db| db.read_lease(&cluster.cluster).await).await.unwrap().is_expired() {
        deadline.tick().await;
    }
    cluster.start("m1", &["--ha-mode", "master"], &[]).await;
    let (leader, master_term, _) = cluster.leader_above(term, ELECTION).await;
    assert_eq!(leader, "m1");
    assert_eq!(master_term, term + 1);

    phase("the registry tells the killed c1 (lost) from c2, which shut down cleanly (stopped)");
    cluster.start("c2", &[], &[]).await;
    cluster.node("c2").terminate();
    cluster.node_mut("c2").wait_exit(Duration::from_secs(20)).await.expect("c2 stops on SIGTERM");
    let m1 = cluster.node("m1");
    let listed = m1.client().list_ha_states(ListHaStatesRequest {}).await.unwrap().into_inner();
    let role = |node_id: &str| listed.nodes.iter().find(|node| node.node_id == node_id).map(|node| node.role);
    assert_eq!(role("c1"), Some(HaRole::Lost as i32), "{listed:?}");
    assert_eq!(role("c2"), Some(HaRole::Stopped as i32), "{listed:?}");
    assert_eq!(role("m1"), Some(HaRole::Leader as i32), "{listed:?}");
}

async fn disabled_runs_alone(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    cluster.start("solo", &["--ha-mode", "disabled"], &[]).await;
    let node = cluster.node("solo");
    let state = node.state().await.unwrap();
    assert_eq!((state.role, state.mode), (HaRole::Standalone as i32, HaMode::Disabled as i32));
    let leader = node.client().get_leader(GetLeaderRequest {}).await.unwrap().into_inner().leader.unwrap();
    assert!(leader.known && leader.node_id == "solo" && leader.term == 0, "{leader:?}");
    let listed = node.client().list_ha_states(ListHaStatesRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.nodes.len(), 1);

    let error = node.client().set_ha_state(SetHaStateRequest { mode: HaMode::Auto as i32 }).await.unwrap_err();
    assert_eq!((error.code(), error_reason(&error).as_deref()), (Code::FailedPrecondition, Some(reason::MODE_FIXED)));

    if kind != Kind::Sqlite {
        // The other backends' test databases are shared with HA tests: nothing to inspect.
        return;
    }
    let mut conn = cluster.store.connect().await;
    let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    assert!(tables.contains(&"cluster_meta".to_owned()), "{tables:?}");
    assert!(!tables.iter().any(|table| table.starts_with("ha_")), "a disabled node created HA tables: {tables:?}");
}

async fn duplicate_node_ids_are_refused(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    cluster.start("c1", &[], &[]).await;

    phase("a second live process with the same id is refused");
    let mut duplicate = cluster.spawn("c1", &[], &[]);
    let status = duplicate.wait_exit(Duration::from_secs(15)).await.expect("the duplicate exits");
    assert!(!status.success());
    assert!(duplicate.output().contains("in use by another live coordinator"), "{}", duplicate.output());
    assert!(cluster.node_mut("c1").is_running(), "the original keeps running");

    phase("after a crash, the same id starts again");
    cluster.node_mut("c1").kill();
    cluster.start("c1", &[], &[]).await;
    cluster.leader(ELECTION).await;
}

async fn brooklyn_rules(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    for node_id in ["c1", "c2", "c3"] {
        cluster.start(node_id, &[], &[]).await;
    }
    let observer = LeaderObserver::start(cluster.endpoints());
    let (leader, term) = cluster.leader(ELECTION).await;
    let follower = ["c1", "c2", "c3"].into_iter().find(|id| *id != leader).unwrap().to_owned();
    let mut follower_client = cluster.node(&follower).client();
    let leader_address = cluster.node(&leader).grpc.clone();

    phase("changing a follower needs the override header");
    let denied = follower_client.set_ha_state(SetHaStateRequest { mode: HaMode::Standby as i32 }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&denied).as_deref(), Some(reason::NON_LEADER_CHANGE));
    let denied = follower_client.set_priority(SetPriorityRequest { priority: 3 }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let changed = follower_client
        .set_ha_state(with_override(SetHaStateRequest { mode: HaMode::Standby as i32 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.previous_mode, HaMode::Auto as i32);
    assert_eq!(changed.state.unwrap().mode, HaMode::Standby as i32);
    let changed =
        follower_client.set_priority(with_override(SetPriorityRequest { priority: 3 })).await.unwrap().into_inner();
    assert_eq!(changed.previous_priority, 0);

    phase("a standby serves no catalog reads: it redirects to the leader");
    let table = || GetTableRequest { database: "db".into(), name: "t".into() };
    let redirected = CatalogClient::new(channel(&cluster.node(&follower).grpc)).get_table(table()).await.unwrap_err();
    assert_eq!(redirected.code(), Code::Unavailable);
    assert_eq!(error_reason(&redirected).as_deref(), Some(reason::NOT_LEADER));
    assert_eq!(redirect_target(&redirected).as_deref(), Some(leader_address.as_str()));
    let sdk = Client::new([cluster.node(&follower).grpc.clone()], ClientOptions::default()).unwrap();
    let answered = sdk
        .call_leader(|channel| async move { CatalogClient::new(channel).get_table(table()).await })
        .await
        .expect_err("the leader has no such table");
    assert_eq!(answered.status().map(tonic::Status::code), Some(Code::NotFound), "the SDK followed the redirect");

    phase("every node answers ListHaStates, a standby too: it is about HA itself");
    let listed = follower_client.list_ha_states(ListHaStatesRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.nodes.len(), 3);
    assert!(
        listed
            .nodes
            .iter()
            .any(|node| node.node_id == follower && node.mode == HaMode::Standby as i32 && node.priority == 3)
    );

    phase("unknown and fixed modes are refused");
    let invalid = follower_client.set_ha_state(with_override(SetHaStateRequest { mode: 99 })).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let invalid = follower_client.set_ha_state(with_override(SetHaStateRequest { mode: 0 })).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fixed = follower_client
        .set_ha_state(with_override(SetHaStateRequest { mode: HaMode::Disabled as i32 }))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&fixed).as_deref(), Some(reason::MODE_FIXED));

    phase("demoting the leader hands the lease to a successor; WatchLeader reports it");
    let everyone: Vec<String> = cluster.endpoints().into_iter().map(|(_, address)| address).collect();
    let watcher = Client::new(everyone, ClientOptions::default()).unwrap();
    let mut changes = watcher.watch_leader();
    let current = tokio::time::timeout(Duration::from_secs(5), changes.next()).await.unwrap().unwrap();
    assert_eq!((current.node_id.as_str(), current.term), (leader.as_str(), term));
    let demoted = cluster
        .node(&leader)
        .client()
        .set_ha_state(SetHaStateRequest { mode: HaMode::HotStandby as i32 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(demoted.previous_mode, HaMode::Auto as i32);
    assert_ne!(demoted.state.unwrap().role, HaRole::Leader as i32);
    let (successor, successor_term, _) = cluster.leader_above(term, ELECTION).await;
    assert_ne!(successor, leader);
    let deadline = Deadline::new("WatchLeader reports the successor", Duration::from_secs(10));
    let next = loop {
        if let Ok(Some(change)) = tokio::time::timeout(Duration::from_millis(500), changes.next()).await
            && change.known
            && change.term == successor_term
        {
            break change;
        }
        deadline.tick().await;
    };
    assert_eq!(next.node_id, successor);

    phase("ctl prints the leader and the registry");
    let endpoints = cluster.endpoints().into_iter().map(|(_, address)| address).collect::<Vec<_>>().join(",");
    let output = ctl(&["--endpoints", &endpoints, "--output", "json", "ha", "states"]).await;
    let json: serde_json::Value = serde_json::from_str(&output).unwrap_or_else(|error| panic!("{error}: {output}"));
    assert_eq!(json["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(json["nodes"].as_array().unwrap().iter().filter(|node| node["holds_lease"] == true).count(), 1);
    let table = ctl(&["--endpoints", &endpoints, "ha", "leader"]).await;
    assert!(table.starts_with("LEADER") && table.contains(&successor), "{table}");
    observer.assert_one_leader_per_term();
}

async fn dead_coordinators_are_removed_and_live_ones_kept(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };
    for node_id in ["c1", "c2", "c3"] {
        cluster.start(node_id, &[], &[]).await;
    }
    cluster.leader(ELECTION).await;
    let endpoints = cluster.node_addresses().join(",");
    let role_of = async |node_id: &str| -> Option<String> {
        let states = leasehold_tests::ctl::json(BIN, &endpoints, &["ha", "states"]).await.ok()?;
        let nodes = states["nodes"].as_array()?.clone();
        nodes.iter().find(|node| node["node_id"] == node_id).map(|node| node["role"].as_str().unwrap_or("").to_owned())
    };

    phase("a live coordinator is not removed: exit 5, NODE_LIVE, and it stays listed");
    let (code, stderr) = leasehold_tests::ctl::json(BIN, &endpoints, &["ha", "remove", "c2"]).await.unwrap_err();
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("NODE_LIVE") && stderr.contains("c2"), "{stderr}");
    assert!(role_of("c2").await.is_some(), "c2 is still listed");
    let (code, stderr) = leasehold_tests::ctl::json(BIN, &endpoints, &["ha", "remove", "c9"]).await.unwrap_err();
    assert_eq!(code, 4, "an unknown id is not found: {stderr}");

    phase("a coordinator stopped cleanly, and one killed and lost, are removed");
    cluster.node("c2").terminate();
    cluster.node_mut("c2").wait_exit(Duration::from_secs(15)).await.expect("c2 stops");
    cluster.node_mut("c3").kill();
    eventually("c2 stopped and c3 lost", ELECTION, || async {
        (role_of("c2").await.as_deref() == Some("HA_ROLE_STOPPED")
            && role_of("c3").await.as_deref() == Some("HA_ROLE_LOST"))
        .then_some(())
    })
    .await;
    let removed = leasehold_tests::ctl::json(BIN, &endpoints, &["ha", "remove", "c2"]).await.expect("c2 removed");
    assert_eq!(removed["role"], "HA_ROLE_STOPPED", "{removed}");
    let removed = leasehold_tests::ctl::json(BIN, &endpoints, &["ha", "remove", "c3"]).await.expect("c3 removed");
    assert_eq!(removed["role"], "HA_ROLE_LOST", "{removed}");
    let states = leasehold_tests::ctl::json(BIN, &endpoints, &["ha", "states"]).await.expect("states");
    let listed: Vec<&str> =
        states["nodes"].as_array().unwrap().iter().filter_map(|node| node["node_id"].as_str()).collect();
    assert_eq!(listed, ["c1"], "{states}");

    phase("a removed id starts again and registers afresh");
    cluster.start("c2", &[], &[]).await;
    eventually("c2 listed again", ELECTION, || async { role_of("c2").await.filter(|role| role == "HA_ROLE_FOLLOWER") })
        .await;
}

async fn ctl(args: &[&str]) -> String {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    let output = tokio::process::Command::new(BIN).args(&all).output().await.expect("running ctl");
    assert!(output.status.success(), "ctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_health_and_metrics_work_without_proto_files() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha;

    let _serial = serial().await;
    let mut cluster = sqlite_cluster();
    cluster.start("c1", &[], &[]).await;
    cluster.leader(ELECTION).await;
    let node = cluster.node("c1");
    let channel = leasehold_tests::process::channel(&node.grpc);

    phase("reflection v1: list services, then describe leasehold.v1.Cluster");
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("leasehold.v1.Cluster".into())),
        },
    ];
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.iter().map(|service| service.name.as_str()).collect();
    for expected in ["leasehold.v1.Cluster", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a file descriptor");
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
    let service = file.service.iter().find(|service| service.name() == "Cluster").expect("the Cluster service");
    let methods: Vec<_> = service.method.iter().map(|method| method.name()).collect();
    assert!(
        methods.contains(&"GetLeader") && methods.contains(&"WatchLeader") && methods.contains(&"SetHaState"),
        "{methods:?}"
    );

    phase("reflection v1alpha answers too");
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        answer.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(_))
    ));

    phase("health says SERVING");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "leasehold.v1.Cluster"] {
        let answer =
            health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    phase("metrics show the leader and its renewals");
    eventually("the metrics show a leader that renews", Duration::from_secs(10), || async {
        let body = node.scrape_metrics().await?;
        [
            "leasehold_ha_is_leader 1",
            "leasehold_ha_term 1",
            "leasehold_ha_renewals_total{result=\"ok\"}",
            "leasehold_ha_renew_duration_seconds",
            "leasehold_ha_transitions_total{role=\"leader\",reason=\"acquired\"} 1",
        ]
        .iter()
        .all(|line| body.contains(line))
        .then_some(())
    })
    .await;
}

/// A message with the wrong wire type for `SetPriorityRequest.priority`, or an oversized one.
#[derive(Clone, PartialEq, prost::Message)]
struct Junk {
    #[prost(string, tag = "1")]
    priority: String,
    #[prost(bytes = "vec", tag = "15")]
    padding: Vec<u8>,
}

async fn send_junk(address: &str, junk: Junk) -> tonic::Status {
    let channel = leasehold_tests::process::channel(address);
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/leasehold.v1.Cluster/SetPriority");
    let codec = tonic_prost::ProstCodec::<Junk, SetPriorityResponse>::default();
    grpc.unary(tonic::Request::new(junk), path, codec).await.unwrap_err()
}

async fn bad_input_is_refused(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = cluster_on(kind) else { return };

    phase("bad flags and settings stop the start with one clear line");
    let cases: [(&[&str], &str); 6] = [
        (&["--ha-mode", "leader"], "expected one of auto, master"),
        (&["--store", "ftp://user:secret@host/x"], "store.url"),
        (&["--renew-interval", "600ms", "--lease-ttl", "1s"], "ha.renew-interval"),
        (&["--store", "postgres://leasehold:secret@127.0.0.1:1/none"], "cannot reach the postgres store"),
        (&["--node-id", "no spaces"], "node-id"),
        // A failover this slow would fence every data node: the default 15 s fence is refused.
        (&["--lease-ttl", "20s"], "metadata.lease-fence: 15s must exceed the coordinator failover time of 28.367s"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["coordinator", "--listen", "127.0.0.1:0", "--metrics-listen", ""];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|arg| arg.to_string()).collect();
        let mut node = Node::spawn(BIN, "bad", &all, &[]);
        let status = node.wait_exit(Duration::from_secs(15)).await.expect("a bad start exits");
        assert!(!status.success(), "{args:?} started");
        let output = node.output();
        assert!(output.contains(expected), "{args:?}: expected {expected:?} in:\n{output}");
        assert!(!output.contains("secret"), "{args:?} leaked a password:\n{output}");
        assert_eq!(output.lines().filter(|line| line.starts_with("error:")).count(), 1, "{output}");
    }

    phase("malformed and oversized requests are refused");
    cluster.start("c1", &[], &[]).await;
    cluster.leader(ELECTION).await;
    let address = cluster.node("c1").grpc.clone();
    let malformed = send_junk(&address, Junk { priority: "ten".into(), padding: Vec::new() }).await;
    assert_eq!(malformed.code(), Code::Internal, "{malformed:?}");
    assert!(malformed.message().contains("decode"), "{malformed:?}");
    let oversized = send_junk(&address, Junk { priority: String::new(), padding: vec![0; 2 * 1024 * 1024] }).await;
    assert_eq!(oversized.code(), Code::OutOfRange, "{oversized:?}");
    let state = cluster.node("c1").state().await.unwrap();
    assert_eq!(state.priority, 0, "a refused request changed the priority");
}

/// A host name is a listen address like any other, and SIGHUP is logged and ignored rather
/// than ending the process (its default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_listens_and_a_hangup_is_logged_and_ignored() {
    let _serial = serial().await;
    let mut cluster = sqlite_cluster();
    cluster.start("c1", &["--listen", "localhost:0"], &[]).await;
    cluster.leader(ELECTION).await;
    let node = cluster.node("c1");
    node.signal(rustix::process::Signal::HUP);
    node.wait_events("SIGHUP ignored: the configuration is read once, at start; restart to change it", 1, ELECTION)
        .await;
    let state = node.state().await.expect("it still answers");
    assert_eq!(state.role, HaRole::Leader as i32, "it still leads");
    assert!(cluster.node_mut("c1").is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_a_coordinator_and_stops_cleanly() {
    let _serial = serial().await;
    let store = TestStore::sqlite();
    let data_dir = store.url.trim_start_matches("sqlite://").trim_end_matches("/leasehold.db").to_owned();
    let args: Vec<String> = [
        "--log-format",
        "json",
        "dev",
        "--data-dir",
        &data_dir,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let mut dev = Node::spawn(BIN, "dev-coordinator", &args, &[]);
    dev.wait_serving(Duration::from_secs(20)).await;
    assert!(dev.output().contains("grpcurl -plaintext"), "{}", dev.output());
    let node = &dev;
    eventually("the dev coordinator leads", ELECTION, || async move {
        node.state().await.ok().filter(|state| state.role == HaRole::Leader as i32)
    })
    .await;
    let address = dev.grpc.clone();
    eventually("three agents hold leases", ELECTION, || {
        let address = address.clone();
        async move {
            let mut client =
                leasehold::v1::data_nodes_client::DataNodesClient::new(leasehold_tests::process::channel(&address));
            let listed = client.list_data_nodes(leasehold::v1::ListDataNodesRequest {}).await.ok()?.into_inner();
            let live = listed
                .nodes
                .iter()
                .filter(|node| node.status == leasehold::v1::DataNodeLeaseStatus::Live as i32)
                .count();
            (live == 3).then_some(())
        }
    })
    .await;
    phase("every agent serves the sample table demo.metrics");
    let agents: Vec<String> = dev
        .output()
        .lines()
        .filter(|line| line.trim_start().starts_with("agent ") && line.contains("(data node"))
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    assert_eq!(agents.len(), 3, "{}", dev.output());
    for agent in &agents {
        eventually(&format!("{agent} serves demo.metrics"), ELECTION, || async move {
            let mut client = leasehold::v1::agent_client::AgentClient::new(leasehold_tests::process::channel(agent));
            let request = leasehold::v1::ResolveTableRequest { database: "demo".into(), table: "metrics".into() };
            let schema = client.resolve_table(request).await.ok()?.into_inner().schema?;
            let names: Vec<String> = schema.columns.iter().map(|column| column.name.clone()).collect();
            (names == ["time", "host", "cpu"]).then_some(())
        })
        .await;
    }
    phase("the three agents share the sample bucket pool, 4 buckets each");
    for agent in &agents {
        eventually(&format!("{agent} owns 4 buckets of pool demo"), ELECTION, || async move {
            let mut client = leasehold::v1::agent_client::AgentClient::new(leasehold_tests::process::channel(agent));
            let request = leasehold::v1::GetOwnershipRequest { pool: "demo".into() };
            (client.get_ownership(request).await.ok()?.into_inner().buckets.len() == 4).then_some(())
        })
        .await;
    }
    phase("the agents are a group of the resource keeper: a SIGKILLed one runs again under its id");
    let resources = leasehold::v1::resources_client::ResourcesClient::new(leasehold_tests::process::channel(&address));
    let dn1 = |resources: leasehold::v1::resources_client::ResourcesClient<tonic::transport::Channel>| async move {
        let request = leasehold::v1::GetResourceRequest { id: "dn1".into() };
        resources.clone().get_resource(request).await.ok().map(|answer| answer.into_inner())
    };
    let first = dn1(resources.clone()).await.expect("dn1 is a resource");
    let pid: i32 = first.process.get("pid").and_then(|pid| pid.parse().ok()).expect("dn1's pid");
    // The test started this process (through dev's container).
    let _ =
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).expect("pid"), rustix::process::Signal::KILL);
    let again = eventually("dn1 restarted by the keeper", Duration::from_secs(60), || {
        let resources = resources.clone();
        async move {
            let resource = dn1(resources).await?;
            let new_pid = resource.process.get("pid").cloned().unwrap_or_default();
            (resource.live && new_pid != pid.to_string()).then_some(resource)
        }
    })
    .await;
    assert_eq!(again.attempts, 1, "{again:?}");
    let incarnations = eventually("three agents registered and live again", ELECTION, || {
        let address = address.clone();
        async move {
            let mut client =
                leasehold::v1::data_nodes_client::DataNodesClient::new(leasehold_tests::process::channel(&address));
            let listed = client.list_data_nodes(leasehold::v1::ListDataNodesRequest {}).await.ok()?.into_inner();
            let live: Vec<String> = listed
                .nodes
                .iter()
                .filter(|node| node.registered && node.status == leasehold::v1::DataNodeLeaseStatus::Live as i32)
                .map(|node| node.incarnation.clone())
                .collect();
            (live.len() == 3).then_some(live)
        }
    })
    .await;
    dev.terminate();
    // Each agent waits out the validity of the reads it answered (up to the fence), then
    // deregisters as released.
    let status = dev.wait_exit(Duration::from_secs(60)).await.expect("dev exits on SIGTERM");
    assert!(status.success(), "{status}");

    phase("dev again on the same data directory: the agents that stopped left no tombstone behind");
    let mut dev = Node::spawn(BIN, "dev-coordinator", &args, &[]);
    dev.wait_serving(Duration::from_secs(20)).await;
    let address = dev.grpc.clone();
    let listed = eventually("the new run's leader lists its data nodes", ELECTION, || {
        let address = address.clone();
        async move {
            let mut client =
                leasehold::v1::data_nodes_client::DataNodesClient::new(leasehold_tests::process::channel(&address));
            Some(client.list_data_nodes(leasehold::v1::ListDataNodesRequest {}).await.ok()?.into_inner())
        }
    })
    .await;
    let left: Vec<_> = listed.nodes.iter().filter(|node| incarnations.contains(&node.incarnation)).collect();
    assert!(left.is_empty(), "the stopped agents' incarnations are still counted: {left:?}");
    dev.terminate();
    let status = dev.wait_exit(Duration::from_secs(60)).await.expect("dev exits on SIGTERM");
    assert!(status.success(), "{status}");
}
