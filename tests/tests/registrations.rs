//! Data-node registrations are group-committed: the registrations that arrive while the
//! leader is busy are written in one term-guarded transaction per batch, and each is answered as if it
//! had been written alone. Against the real binary on loopback; a barrier held at the
//! publication lock by a failpoint makes the registrations queue up behind it, so that the
//! batch they form is known.

use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{DataNodeStatus, DeregisterRequest, ListDataNodesRequest, RegisterRequest};
use leasehold_tests::agents::barrier;
use leasehold_tests::store::Kind;
use leasehold_tests::{LeaseSettings, TestCluster, TestStore, eventually, phase, serial};
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
/// The first change's transaction holds the publication lock this long (ms), so that the
/// registrations sent meanwhile queue up behind it.
const HOLD_MS: u64 = 5000;
const COMMITTED: &str = "leasehold_datanodes_registration_batches_total{result=\"committed\"}";
const FAILED: &str = "leasehold_datanodes_registration_batches_total{result=\"failed\"}";
const QUEUED: &str = "leasehold_datanodes_registrations_queued";

/// The value of `series` (name and labels) on a Prometheus text page; `None` when absent.
fn value(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok()).map(|value| value as u64)
}

fn registration(node_id: &str, incarnation: &str) -> RegisterRequest {
    RegisterRequest {
        node_id: node_id.into(),
        incarnation: incarnation.into(),
        address: "127.0.0.1:9".into(),
        ..Default::default()
    }
}

/// One coordinator whose first change holds the publication lock for [`HOLD_MS`].
struct Lab {
    cluster: TestCluster,
    channel: Channel,
}

impl Lab {
    async fn start(kind: Kind) -> Option<Lab> {
        let mut cluster = TestCluster::new(BIN, TestStore::of(kind)?);
        let failpoint = format!("publish::holding-lock=1*return({HOLD_MS})");
        cluster.start("c1", &[], &[("LEASEHOLD_FAILPOINTS", &failpoint)]).await;
        cluster.leader(Duration::from_secs(20)).await;
        let address = cluster.node("c1").grpc.clone();
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .expect("address")
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        let lab = Lab { cluster, channel };
        eventually("the leader has loaded its state", Duration::from_secs(20), || async {
            lab.client().list_data_nodes(ListDataNodesRequest {}).await.ok()
        })
        .await;
        Some(lab)
    }

    fn client(&self) -> DataNodesClient<Channel> {
        DataNodesClient::new(self.channel.clone())
    }

    async fn metrics(&self) -> String {
        self.cluster.node("c1").scrape_metrics().await.expect("the coordinator serves metrics")
    }

    async fn listed(&self) -> Vec<DataNodeStatus> {
        self.client().list_data_nodes(ListDataNodesRequest {}).await.expect("a listing").into_inner().nodes
    }

    /// Starts a barrier, which holds the publication lock for [`HOLD_MS`] once it has it.
    async fn hold_publication_lock(&self) -> tokio::task::JoinHandle<()> {
        let address = self.cluster.node("c1").grpc.clone();
        let held = tokio::spawn(async move {
            barrier(&address, &LeaseSettings::default()).await.expect("the barrier returns once released");
        });
        self.cluster.node("c1").wait_events("failpoint reached: pausing", 1, Duration::from_secs(10)).await;
        held
    }

    /// Sends `requests` at once; answers them in the same order.
    async fn register_all(&self, requests: Vec<RegisterRequest>) -> Vec<Result<(), Status>> {
        let mut sent = JoinSet::new();
        for (index, request) in requests.into_iter().enumerate() {
            let mut client = self.client();
            sent.spawn(async move { (index, client.register(request).await.map(drop)) });
        }
        let count = sent.len();
        // Every one of them queues behind the held lock before any is written.
        eventually(&format!("{count} registrations queued"), Duration::from_millis(HOLD_MS - 1000), || async {
            (value(&self.metrics().await, QUEUED) == Some(count as u64)).then_some(())
        })
        .await;
        let mut answers: Vec<_> = sent.join_all().await;
        answers.sort_by_key(|(index, _)| *index);
        answers.into_iter().map(|(_, answer)| answer).collect()
    }
}

async fn many_registrations_commit_in_a_few_transactions(kind: Kind) {
    let _serial = serial().await;
    let Some(lab) = Lab::start(kind).await else { return };
    let before = lab.metrics().await;

    phase("200 agents register while a change holds the publication lock");
    let held = lab.hold_publication_lock().await;
    let requests = (0..200).map(|i| registration(&format!("dn-{i:03}"), &format!("inc-{i:03}"))).collect();
    let answers = lab.register_all(requests).await;
    held.await.expect("the barrier");
    for (index, answer) in answers.iter().enumerate() {
        assert!(answer.is_ok(), "registration {index}: {answer:?}");
    }

    phase("all 200 are listed as registered, written in a few transactions");
    let listed = lab.listed().await;
    let registered = listed.iter().filter(|node| node.registered && node.node_id.starts_with("dn-")).count();
    assert_eq!(registered, 200, "{listed:?}");
    let after = lab.metrics().await;
    let committed = value(&after, COMMITTED).unwrap_or(0) - value(&before, COMMITTED).unwrap_or(0);
    eprintln!("200 registrations in {committed} transactions");
    // One batch takes them all, unless its 50 ms budget for statements cuts it short (a slow,
    // shared machine): then the next batches take the rest, still many per transaction.
    assert!((1..=20).contains(&committed), "200 queued registrations, {committed} transactions: {after}");
    assert_eq!(value(&after, FAILED), Some(0), "{after}");
    assert_eq!(value(&after, "leasehold_datanodes_registration_batch_size_sum"), Some(200), "{after}");
    assert_eq!(value(&after, "leasehold_datanodes_registered"), Some(200), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_registrations_commit_in_a_few_transactions_on_sqlite() {
    many_registrations_commit_in_a_few_transactions(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_registrations_commit_in_a_few_transactions_on_postgres() {
    many_registrations_commit_in_a_few_transactions(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_registrations_commit_in_a_few_transactions_on_mysql() {
    many_registrations_commit_in_a_few_transactions(Kind::MySql).await;
}

/// In one batch: a retired incarnation is refused, a node naming a resource that does not
/// exist is refused, and a node registering twice is written twice, one after the other;
/// the good registrations around them are written all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_in_a_batch_fails_only_its_own_registration() {
    let _serial = serial().await;
    let lab = Lab::start(Kind::Sqlite).await.expect("SQLite");

    phase("retire one incarnation before the batch");
    let mut client = lab.client();
    client.register(registration("late", "i-late")).await.expect("registered");
    let request = DeregisterRequest { node_id: "late".into(), incarnation: "i-late".into(), ..Default::default() };
    client.deregister(request).await.expect("deregistered");
    let before = lab.metrics().await;

    phase("queue 50 good registrations with the retired one, a missing resource and a node twice");
    let held = lab.hold_publication_lock().await;
    let mut requests: Vec<_> = (0..50).map(|i| registration(&format!("ok-{i:02}"), &format!("inc-{i:02}"))).collect();
    requests.push(registration("late", "i-late"));
    requests.push(RegisterRequest { resource_id: "no-such-resource".into(), ..registration("res", "i-res") });
    requests.push(registration("twice", "i-one"));
    requests.push(registration("twice", "i-two"));
    let answers = lab.register_all(requests).await;
    held.await.expect("the barrier");

    phase("only the refused ones fail");
    for (index, answer) in answers[..50].iter().enumerate() {
        assert!(answer.is_ok(), "registration {index}: {answer:?}");
    }
    let retired = answers[50].as_ref().expect_err("the retired incarnation is refused");
    assert_eq!(retired.code(), Code::FailedPrecondition, "{retired:?}");
    assert_eq!(error_reason(retired).as_deref(), Some(reason::INCARNATION_RETIRED));
    let missing = answers[51].as_ref().expect_err("a missing resource is refused");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(answers[52].is_ok() && answers[53].is_ok(), "{:?}", &answers[52..]);

    phase("the listing shows exactly the written ones; the node that came twice, as the later one");
    let listed = lab.listed().await;
    let registered: Vec<_> = listed.iter().filter(|node| node.registered).collect();
    assert_eq!(registered.iter().filter(|node| node.node_id.starts_with("ok-")).count(), 50, "{listed:?}");
    assert!(!registered.iter().any(|node| node.node_id == "late" || node.node_id == "res"), "{listed:?}");
    let twice: Vec<_> = registered.iter().filter(|node| node.node_id == "twice").collect();
    assert_eq!(twice.len(), 1, "{listed:?}");
    // The later one replaced the earlier, as if they had come one after the other. (The
    // replaced incarnation never held a lease, so its tombstone is settled and not listed.)
    let replaced =
        lab.cluster.node("c1").events("data node re-registered; the old incarnation counts until it has fenced");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    let earlier = if twice[0].incarnation == "i-two" { "i-one" } else { "i-two" };
    assert_eq!(replaced[0]["node_id"], "twice", "{replaced:?}");
    assert_eq!(replaced[0]["incarnation"], twice[0].incarnation.as_str(), "{replaced:?}");
    assert_eq!(replaced[0]["replaced"], earlier, "{replaced:?}");
    let after = lab.metrics().await;
    let committed = value(&after, COMMITTED).unwrap_or(0) - value(&before, COMMITTED).unwrap_or(0);
    // The second registration of `twice` waits for the first's batch, in a later one.
    assert!((2..=20).contains(&committed), "54 registrations, {committed} transactions: {after}");
    assert_eq!(value(&after, FAILED), Some(0), "{after}");
}
