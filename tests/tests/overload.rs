//! Lease renewals under a flood of other work, against the real binary: readers, DDL clients
//! and registrations hammer the leader from many connections for longer than the fence, and
//! no healthy agent may lose its lease meanwhile (etcd #18069 is the counter-example: an
//! overloaded server let leases expire). Renewals bypass the coordinator's budget of calls in
//! flight; every other call beyond it is shed with `UNAVAILABLE` / `OVERLOADED`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    AgentLeaseState, DeregisterRequest, DropTableRequest, GetSnapshotRequest, GetTableRequest, ListDataNodesRequest,
    ListTablesRequest, RegisterRequest,
};
use leasehold_tests::requests::{create_database, create_table};
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab as Lab, never, phase, serial};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
/// Longer than the lab's 3 s fence: a lease left unrenewed would expire within it.
const FLOOD: Duration = Duration::from_secs(6);
/// The most one flood call may take before it counts as an error.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// What the flood's calls came back with.
#[derive(Default)]
struct Outcomes {
    answered: AtomicU64,
    shed: AtomicU64,
    /// Anything else: a refusal the flood did not expect, or a call past its deadline.
    failed: AtomicU64,
}

impl Outcomes {
    fn count<T>(&self, outcome: Result<Result<T, Status>, tokio::time::error::Elapsed>) {
        let counter = match &outcome {
            Ok(Ok(_)) => &self.answered,
            Ok(Err(status)) if status.code() == Code::Unavailable && is_overloaded(status) => &self.shed,
            // DDL clients race each other on the same names.
            Ok(Err(status)) if matches!(status.code(), Code::AlreadyExists | Code::NotFound | Code::Aborted) => {
                &self.answered
            }
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn is_overloaded(status: &Status) -> bool {
    error_reason(status).as_deref() == Some(reason::OVERLOADED)
}

fn channel(address: &str) -> Channel {
    Endpoint::from_shared(format!("http://{address}")).expect("address").connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reads_ddl_and_registrations_expires_no_healthy_lease() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[]), ("dn3", &[])]).await.unwrap();
    let leader = lab.leader_address().await;
    let mut catalog = CatalogClient::new(channel(&leader));
    catalog.create_database(create_database("flood", "")).await.expect("create database");
    for index in 0..20 {
        catalog.create_table(create_table("flood", &format!("t{index}"), "")).await.expect("create table");
    }

    phase("flood the leader from 16 connections: 96 readers, 4 DDL clients, 8 registrants");
    let outcomes = Arc::new(Outcomes::default());
    let until = Instant::now() + FLOOD;
    let connections: Vec<Channel> = (0..16).map(|_| channel(&leader)).collect();
    let mut flood = JoinSet::new();
    for reader in 0..96 {
        let (mut catalog, outcomes) = (CatalogClient::new(connections[reader % 16].clone()), outcomes.clone());
        flood.spawn(async move {
            let mut round = 0_usize;
            while Instant::now() < until {
                round += 1;
                match round % 3 {
                    0 => {
                        let request = GetTableRequest { database: "flood".into(), name: format!("t{}", round % 20) };
                        outcomes.count(timeout(CALL_DEADLINE, catalog.get_table(request)).await);
                    }
                    1 => {
                        let request = ListTablesRequest { database: "flood".into() };
                        outcomes.count(timeout(CALL_DEADLINE, catalog.list_tables(request)).await);
                    }
                    _ => outcomes
                        .count(timeout(CALL_DEADLINE, catalog.get_snapshot(GetSnapshotRequest::default())).await),
                }
            }
        });
    }
    for (client, connection) in connections.iter().take(4).enumerate() {
        let (mut catalog, outcomes) = (CatalogClient::new(connection.clone()), outcomes.clone());
        flood.spawn(async move {
            let table = format!("ddl{client}");
            while Instant::now() < until {
                outcomes.count(timeout(CALL_DEADLINE, catalog.create_table(create_table("flood", &table, ""))).await);
                let drop = DropTableRequest { database: "flood".into(), name: table.clone(), ..Default::default() };
                outcomes.count(timeout(CALL_DEADLINE, catalog.drop_table(drop)).await);
            }
        });
    }
    for (registrant, connection) in connections.iter().take(8).enumerate() {
        let (mut nodes, outcomes) = (DataNodesClient::new(connection.clone()), outcomes.clone());
        flood.spawn(async move {
            let mut round = 0;
            while Instant::now() < until {
                round += 1;
                // Each registers a node that never heartbeats, and deregisters it.
                let (node_id, incarnation) = (format!("flood-{registrant}"), format!("i{round}"));
                let register = RegisterRequest {
                    node_id: node_id.clone(),
                    address: "127.0.0.1:9".into(),
                    incarnation: incarnation.clone(),
                    ..Default::default()
                };
                outcomes.count(timeout(CALL_DEADLINE, nodes.register(register)).await);
                let deregister = DeregisterRequest { node_id, incarnation, ..Default::default() };
                outcomes.count(timeout(CALL_DEADLINE, nodes.deregister(deregister)).await);
            }
        });
    }

    // Throughout the flood, every agent holds its lease: one that lost it would fence.
    let agents = &lab.agents;
    never("an agent's lease expires under the flood", FLOOD, || async move {
        for agent in agents {
            if !agent.is(AgentLeaseState::Normal).await {
                eprintln!("{} left NORMAL: {:?}", agent.node.node_id, agent.lease().await);
                return true;
            }
        }
        false
    })
    .await;
    while let Some(done) = flood.join_next().await {
        done.expect("a flood task");
    }
    let (answered, shed, failed) = (
        outcomes.answered.load(Ordering::Relaxed),
        outcomes.shed.load(Ordering::Relaxed),
        outcomes.failed.load(Ordering::Relaxed),
    );
    eprintln!("flood: {answered} answered, {shed} shed, {failed} failed");
    assert!(answered > 1000, "the flood made too few calls to be one: {answered}");
    assert_eq!(failed, 0, "a flood call failed other than by being shed");

    // The leader heard from every agent within about one heartbeat interval to the end.
    let listed = DataNodesClient::new(channel(&leader))
        .list_data_nodes(ListDataNodesRequest {})
        .await
        .expect("list data nodes")
        .into_inner();
    let bound = lab.lease.heartbeat_interval.as_millis() as i64 + 700;
    for agent in &lab.agents {
        let node =
            listed.nodes.iter().find(|node| node.node_id == agent.node.node_id && node.registered).expect("registered");
        assert!(node.silent_ms < bound, "{} silent {} ms after the flood", agent.node.node_id, node.silent_ms);
    }
}
