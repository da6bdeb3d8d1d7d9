//! Lease renewals under a flood of other work, against the real binary: readers, DDL clients
//! and registrations hammer the leader from many connections for longer than the fence, and
//! no healthy agent may lose its lease meanwhile (etcd #18069 is the counter-example: an
//! overloaded server let leases expire). Renewals bypass the coordinator's budget of calls in
//! flight; every other call beyond it is shed with `UNAVAILABLE` / `OVERLOADED`.

use std::time::Duration;

use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{AgentLeaseState, ListDataNodesRequest};
use leasehold_tests::flood::{self, Flood, Outcomes};
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab as Lab, never, phase, serial};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
/// Longer than the lab's 3 s fence: a lease left unrenewed would expire within it.
const FLOOD: Duration = Duration::from_secs(6);

fn channel(address: &str) -> Channel {
    Endpoint::from_shared(format!("http://{address}")).expect("address").connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reads_ddl_and_registrations_expires_no_healthy_lease() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[]), ("dn3", &[])]).await.unwrap();
    let leader = lab.leader_address().await;
    flood::prepare(channel(&leader)).await;

    phase("flood the leader from 16 connections: 96 readers, 4 DDL clients, 8 registrants");
    let until = Instant::now() + FLOOD;
    let connections: Vec<Channel> = (0..16).map(|_| channel(&leader)).collect();
    let flooding =
        tokio::spawn(
            async move { Flood { readers: 96, ddl_clients: 4, registrants: 8 }.run(&connections, until).await },
        );

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
    let Outcomes { answered, shed, failed } = flooding.await.expect("the flood");
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
