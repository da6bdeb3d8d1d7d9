//! The agent as a library embedded in a host process: the host reads through
//! `resolve_table` and hears of invalidations, fences and unfences through `subscribe`,
//! without polling. The coordinator is the real binary; the agent runs in this process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::alter_table_request::Action;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    BarrierRequest, ColumnCategory, DataType, DropTableRequest, GetTableRequest, ListDataNodesRequest,
};
use leasehold_agent::agent::AcceptAll;
use leasehold_agent::{Agent, AgentConfig, AgentEvent, AgentHost, ResolveError};
use leasehold_chaos::Proxy;
use leasehold_core::catalog::Catalog;
use leasehold_core::ddl::DataTarget;
use leasehold_tests::requests::{alter, catalog_at, column, create_database, create_table};
use leasehold_tests::{LeaseSettings, TestCluster, TestStore, eventually, phase, serial};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

/// The next event that matches, within `timeout`.
async fn next_event(
    events: &mut broadcast::Receiver<AgentEvent>,
    timeout: Duration,
    want: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    tokio::time::timeout(timeout, async {
        loop {
            match events.recv().await {
                Ok(event) if want(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("the agent's events ended"),
            }
        }
    })
    .await
    .expect("the expected event within the timeout")
}

/// A coordinator and an agent embedded in this process that reaches it through a proxy.
struct Embedded {
    _cluster: TestCluster,
    coordinator: String,
    proxy: Proxy,
    agent: Agent,
    events: broadcast::Receiver<AgentEvent>,
    shutdown: CancellationToken,
    listener: Option<TcpListener>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// Starts the coordinator and builds the agent `host1` with `host`, subscribed, not yet
    /// running.
    async fn new(lease: LeaseSettings, host: Arc<dyn AgentHost>) -> Embedded {
        let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
        cluster.timings.lease = Some(lease);
        cluster.start("c1", &[], &[]).await;
        cluster.leader(Duration::from_secs(15)).await;
        let coordinator = cluster.node("c1").grpc.clone();
        let proxy = Proxy::start(coordinator.parse().unwrap()).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config =
            AgentConfig::new("host1", vec![proxy.address().to_string()], listener.local_addr().unwrap().to_string());
        config.heartbeat_interval = lease.heartbeat_interval;
        config.heartbeat_timeout = lease.heartbeat_timeout;
        let agent = Agent::new(config, host);
        let events = agent.subscribe();
        let shutdown = CancellationToken::new();
        Embedded {
            _cluster: cluster,
            coordinator,
            proxy,
            agent,
            events,
            shutdown,
            listener: Some(listener),
            tasks: Vec::new(),
        }
    }

    /// Starts the agent's heartbeats and its server.
    fn run(&mut self) {
        let listener = self.listener.take().expect("run once");
        self.tasks.push(tokio::spawn(self.agent.clone().run(self.shutdown.clone())));
        let server = leasehold_agent::server::serve(
            self.agent.clone(),
            listener,
            None,
            leasehold::serving::Readiness::new(),
            self.shutdown.clone(),
        );
        self.tasks.push(tokio::spawn(async move { server.await.unwrap() }));
    }

    /// Stops the agent; both tasks end cleanly.
    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_agent_tells_its_host_about_changes_fences_and_unfences() {
    let _serial = serial().await;
    let lease = LeaseSettings::default();
    phase("embed an agent and subscribe before it starts");
    let mut lab = Embedded::new(lease, Arc::new(AcceptAll)).await;
    let agent = lab.agent.clone();
    assert_eq!(agent.resolve_table("db", "t"), Err(ResolveError::Fenced), "a new agent starts fenced");
    lab.run();
    let (proxy, coordinator, events) = (&lab.proxy, lab.coordinator.clone(), &mut lab.events);

    let unfenced =
        next_event(events, Duration::from_secs(10), |event| matches!(event, AgentEvent::Unfenced { .. })).await;
    assert_eq!(unfenced, AgentEvent::Unfenced { version: 0 });
    assert!(matches!(agent.resolve_table("db", "t"), Err(ResolveError::NotFound { version: 0, .. })));

    phase("a barrier reaches the host as an invalidation");
    let mut client = DataNodesClient::new(leasehold_tests::process::channel(&coordinator));
    let version = client.barrier(BarrierRequest {}).await.unwrap().into_inner().version;
    let applied = next_event(events, Duration::from_secs(5), |event| matches!(event, AgentEvent::Applied { .. })).await;
    assert_eq!(applied, AgentEvent::Applied { version });
    assert!(matches!(agent.resolve_table("db", "t"), Err(ResolveError::NotFound { version: v, .. }) if v == version));

    phase("cut the agent off: the host hears of the fence when it happens");
    proxy.blackhole();
    next_event(events, lease.fence + Duration::from_secs(2), |event| *event == AgentEvent::Fenced).await;
    assert_eq!(agent.resolve_table("db", "t"), Err(ResolveError::Fenced));

    phase("heal: it resyncs, and the host hears that it serves again");
    proxy.heal();
    let unfenced =
        next_event(events, Duration::from_secs(10), |event| matches!(event, AgentEvent::Unfenced { .. })).await;
    assert_eq!(unfenced, AgentEvent::Unfenced { version });

    lab.stop().await;
}

/// A host that stopped serving shuts its agent down: the agent answers nothing from then on,
/// and the leader forgets its incarnation at once. A barrier right after it waits for no one,
/// where a plain stop would have left a tombstone counted until it has provably fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_shut_down_by_its_host_is_forgotten_at_once() {
    let _serial = serial().await;
    let lease = LeaseSettings::default();
    let mut lab = Embedded::new(lease, Arc::new(AcceptAll)).await;
    let agent = lab.agent.clone();
    lab.run();
    next_event(&mut lab.events, Duration::from_secs(10), |event| matches!(event, AgentEvent::Unfenced { .. })).await;
    let incarnation = agent.incarnation();
    let mut client = DataNodesClient::new(leasehold_tests::process::channel(&lab.coordinator));
    let listed = client.list_data_nodes(ListDataNodesRequest {}).await.unwrap().into_inner();
    assert!(listed.nodes.iter().any(|node| node.incarnation == incarnation), "{listed:?}");

    phase("the host has stopped serving: it shuts the agent down");
    agent.shutdown().await;
    assert_eq!(agent.resolve_table("db", "t"), Err(ResolveError::Fenced), "it answers nothing more");
    let listed = client.list_data_nodes(ListDataNodesRequest {}).await.unwrap().into_inner();
    assert!(listed.nodes.iter().all(|node| node.incarnation != incarnation), "no tombstone is left: {listed:?}");
    let barrier = client.barrier(BarrierRequest {}).await.unwrap().into_inner();
    assert!(barrier.fenced.is_empty() && barrier.acknowledged.is_empty(), "nobody is waited for: {barrier:?}");
    assert!(
        Duration::from_millis(barrier.waited_ms) < lease.fence,
        "the barrier did not wait the agent out: {barrier:?}"
    );
    lab.stop().await;
}

/// The table `db.name` as the leader's catalog has it.
async fn get_table(coordinator: &str, name: &str) -> leasehold::v1::Table {
    let request = GetTableRequest { database: "db".into(), name: name.into() };
    catalog_at(coordinator).get_table(request).await.unwrap().into_inner()
}

/// A host that remembers every order to drop data and every catalog it was resynced to.
#[derive(Debug, Default)]
struct RecordingHost {
    drops: Mutex<Vec<DataTarget>>,
    resyncs: Mutex<Vec<Catalog>>,
}

impl AgentHost for RecordingHost {
    fn drop_data(&self, target: &DataTarget) -> Result<(), String> {
        self.drops.lock().unwrap().push(target.clone());
        Ok(())
    }

    fn resynced(&self, catalog: &Catalog) {
        self.resyncs.lock().unwrap().push(catalog.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_fenced_through_drops_and_recreations_has_the_old_data_dropped_at_the_resync() {
    let _serial = serial().await;
    let lease = LeaseSettings::default();
    let host = Arc::new(RecordingHost::default());
    let mut lab = Embedded::new(lease, host.clone()).await;
    lab.run();
    let (agent, proxy, coordinator, events) = (lab.agent.clone(), &lab.proxy, lab.coordinator.clone(), &mut lab.events);
    next_event(events, Duration::from_secs(10), |event| matches!(event, AgentEvent::Unfenced { .. })).await;
    assert_eq!(host.resyncs.lock().unwrap().len(), 1, "the first snapshot is a resync");

    phase("three tables, served");
    let mut catalog = catalog_at(&coordinator);
    catalog.create_database(create_database("db", "")).await.unwrap();
    for name in ["kept", "gone", "recreated"] {
        catalog.create_table(create_table("db", name, "")).await.unwrap();
    }
    let agent_ref = &agent;
    eventually("the agent serves the tables", Duration::from_secs(5), || async move {
        ["kept", "gone", "recreated"].iter().all(|name| agent_ref.resolve_table("db", name).is_ok()).then_some(())
    })
    .await;
    let old_gone = get_table(&coordinator, "gone").await;
    let old_recreated = get_table(&coordinator, "recreated").await;
    let old_kept = get_table(&coordinator, "kept").await;
    let old_v = old_kept.columns.iter().find(|column| column.name == "v").unwrap().created_version;
    assert!(old_gone.created_version > 0 && old_recreated.created_version > old_gone.created_version);

    phase("cut off and fenced, the agent misses a drop, a drop and create, a drop and add of a column");
    proxy.blackhole();
    next_event(events, lease.fence + Duration::from_secs(2), |event| *event == AgentEvent::Fenced).await;
    let drop = |name: &str| DropTableRequest { database: "db".into(), name: name.into(), request_id: String::new() };
    let dropped = catalog.drop_table(drop("gone")).await.unwrap().into_inner();
    assert!(dropped.fenced.iter().any(|node| node.starts_with("host1/")), "{dropped:?}");
    catalog.drop_table(drop("recreated")).await.unwrap();
    catalog.create_table(create_table("db", "recreated", "")).await.unwrap();
    catalog.alter_table(alter("db", "kept", Action::DropColumn("v".into()), "")).await.unwrap();
    let v = column("v", DataType::Double, ColumnCategory::Field);
    catalog.alter_table(alter("db", "kept", Action::AddColumn(v), "")).await.unwrap();
    assert!(host.drops.lock().unwrap().is_empty(), "a fenced agent hears no order to drop");

    phase("healed: the resync drops the old objects' data, and only theirs");
    proxy.heal();
    next_event(events, Duration::from_secs(10), |event| matches!(event, AgentEvent::Unfenced { .. })).await;
    let new_recreated = get_table(&coordinator, "recreated").await;
    let new_v =
        get_table(&coordinator, "kept").await.columns.iter().find(|column| column.name == "v").unwrap().created_version;
    assert!(new_recreated.created_version > old_recreated.created_version && new_v > old_v);
    assert_eq!(
        *host.drops.lock().unwrap(),
        [
            DataTarget::from_parts("db", "gone", "", old_gone.created_version),
            DataTarget::from_parts("db", "kept", "v", old_v),
            DataTarget::from_parts("db", "recreated", "", old_recreated.created_version),
        ]
    );
    let resyncs = host.resyncs.lock().unwrap().clone();
    assert_eq!(resyncs.len(), 2);
    let latest = resyncs.last().unwrap();
    assert!(latest.visible_table("db", "kept").is_some());
    assert!(latest.table("db", "gone").is_none(), "the dropped table is not in the resynced catalog");
    assert!(matches!(agent.resolve_table("db", "gone"), Err(ResolveError::NotFound { .. })));
    let served = agent.resolve_table("db", "recreated").unwrap().schema;
    assert_eq!(served.created_version, new_recreated.created_version, "the new table is served");
    let served_v = agent.resolve_table("db", "kept").unwrap().schema.columns.iter().find(|c| c.name == "v").cloned();
    assert_eq!(served_v.unwrap().created_version, new_v);

    lab.stop().await;
}

/// A host whose first deletion of data fails, as a busy disk would.
#[derive(Debug, Default)]
struct FailsFirstDrop {
    attempts: Mutex<u32>,
    drops: Mutex<Vec<DataTarget>>,
}

impl AgentHost for FailsFirstDrop {
    fn drop_data(&self, target: &DataTarget) -> Result<(), String> {
        let mut attempts = self.attempts.lock().unwrap();
        *attempts += 1;
        if *attempts == 1 {
            return Err("disk busy".into());
        }
        self.drops.lock().unwrap().push(target.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_data_delete_is_retried_before_the_drop_is_acknowledged() {
    let _serial = serial().await;
    let lease = LeaseSettings::default();
    let host = Arc::new(FailsFirstDrop::default());
    phase("an agent the leader cannot push to: every change reaches it in heartbeat answers");
    let mut lab = Embedded::new(lease, host.clone()).await;
    drop(lab.listener.take());
    lab.tasks.push(tokio::spawn(lab.agent.clone().run(lab.shutdown.clone())));
    let (agent, coordinator, events) = (lab.agent.clone(), lab.coordinator.clone(), &mut lab.events);
    next_event(events, Duration::from_secs(10), |event| matches!(event, AgentEvent::Unfenced { .. })).await;

    let mut catalog = catalog_at(&coordinator);
    catalog.create_database(create_database("db", "")).await.unwrap();
    catalog.create_table(create_table("db", "t", "")).await.unwrap();
    let agent_ref = &agent;
    eventually("the agent serves t", Duration::from_secs(5), || async move {
        agent_ref.resolve_table("db", "t").is_ok().then_some(())
    })
    .await;
    let created_version = get_table(&coordinator, "t").await.created_version;

    phase("drop t: the host fails the first delete, the agent resyncs onto a snapshot that still holds the marker");
    let request = DropTableRequest { database: "db".into(), name: "t".into(), request_id: String::new() };
    let dropped = catalog.drop_table(request).await.unwrap().into_inner();
    assert!(dropped.fenced.is_empty(), "the agent never fenced: {dropped:?}");
    assert_eq!(*host.attempts.lock().unwrap(), 2, "asked again after the refusal");
    assert_eq!(
        *host.drops.lock().unwrap(),
        [DataTarget::from_parts("db", "t", "", created_version)],
        "the DDL returned OK only once the data was deleted"
    );
    assert!(matches!(agent.resolve_table("db", "t"), Err(ResolveError::NotFound { .. })));
    lab.stop().await;
}
