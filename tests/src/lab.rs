//! A lab for data-node scenarios: coordinators on one store and agents that all hold leases,
//! with the checks of the promise the scenarios share.

use std::collections::BTreeMap;
use std::time::Duration;

use leasehold_chaos::Proxy;

use leasehold::status::{error_reason, reason};
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::{AgentLeaseState, GetTableRequest, ListDatabasesRequest};
use leasehold::{Client, ClientOptions};
use tonic::transport::Channel;

use crate::agents::TestAgent;
use crate::cluster::{LeaseSettings, TestCluster};
use crate::phase;
use crate::poll::eventually;
use crate::requests::catalog_at;
use crate::store::{Kind, TestStore};

/// How long a scenario waits for a leader.
pub const ELECTION: Duration = Duration::from_secs(15);

/// Coordinators of `binary` and agents, every agent serving under the default test lease.
pub struct AgentLab {
    /// The coordinators.
    pub cluster: TestCluster,
    /// The agents, in the order given.
    pub agents: Vec<TestAgent>,
    /// The lease settings every coordinator and agent runs with.
    pub lease: LeaseSettings,
    /// Each coordinator's proxy to the store, when the lab was started behind them.
    pub store_proxies: BTreeMap<String, Proxy>,
}

fn column_names(table: &leasehold::v1::Table) -> Vec<String> {
    table.columns.iter().map(|column| column.name.clone()).collect()
}

impl AgentLab {
    /// Starts `coordinators` coordinators on a `kind` store (with `env`) and the `agents`
    /// (each with its own environment), and returns once every agent holds a lease and the
    /// leader serves the catalog; `None` when the store is not configured here.
    pub async fn start(
        binary: &'static str,
        kind: Kind,
        coordinators: usize,
        env: &[(&str, &str)],
        agents: &[(&str, &[(&str, &str)])],
    ) -> Option<AgentLab> {
        Self::start_with(binary, kind, coordinators, env, agents, false).await
    }

    /// As [`AgentLab::start`], with every coordinator reaching the (PostgreSQL or
    /// MySQL/MariaDB) store through a proxy of its own, so that a test can cut one coordinator
    /// from the store while agents and clients still reach it; `None` on SQLite.
    pub async fn start_behind_store_proxies(
        binary: &'static str,
        kind: Kind,
        coordinators: usize,
        env: &[(&str, &str)],
        agents: &[(&str, &[(&str, &str)])],
    ) -> Option<AgentLab> {
        Self::start_with(binary, kind, coordinators, env, agents, true).await
    }

    async fn start_with(
        binary: &'static str,
        kind: Kind,
        coordinators: usize,
        env: &[(&str, &str)],
        agents: &[(&str, &[(&str, &str)])],
        proxied: bool,
    ) -> Option<AgentLab> {
        let store = TestStore::of(kind)?;
        let mut store_proxies = BTreeMap::new();
        let mut cluster = TestCluster::new(binary, store);
        if proxied {
            for index in 1..=coordinators {
                let node_id = format!("c{index}");
                let (server, _) = cluster.store.routed_through(([127, 0, 0, 1], 1).into())?;
                let proxy = Proxy::start(server).await.expect("a store proxy");
                let (_, url) = cluster.store.routed_through(proxy.address())?;
                cluster.route_store(&node_id, url);
                store_proxies.insert(node_id, proxy);
            }
        }
        let lease = LeaseSettings::default();
        cluster.timings.lease = Some(lease);
        phase(&format!("start {coordinators} coordinator(s) on {kind:?} and {} agent(s)", agents.len()));
        for index in 1..=coordinators {
            cluster.start(&format!("c{index}"), &[], env).await;
        }
        cluster.leader(ELECTION).await;
        let mut started = Vec::new();
        for (node_id, env) in agents {
            started.push(TestAgent::start(&mut cluster, node_id, env).await);
        }
        for agent in &started {
            eventually(&format!("{} holds a lease", agent.node.node_id), Duration::from_secs(15), || async move {
                agent.is(AgentLeaseState::Normal).await.then_some(())
            })
            .await;
        }
        // A new leader answers LEADER_STARTING until it has loaded its state (catalog reads
        // may already be served from the store meanwhile): wait for a call only the loaded
        // state answers, so that the first DDL of a test is accepted.
        let leader = cluster.leader_address().await;
        eventually("the leader has loaded its state", Duration::from_secs(15), || {
            let mut catalog = catalog_at(&leader);
            let mut nodes = crate::agents::data_nodes(&leader, &lease);
            async move {
                catalog.list_databases(ListDatabasesRequest {}).await.ok()?;
                nodes.list_data_nodes(leasehold::v1::ListDataNodesRequest {}).await.ok().map(|_| ())
            }
        })
        .await;
        Some(AgentLab { cluster, agents: started, lease, store_proxies })
    }

    /// The agent `node_id`.
    pub fn agent(&self, node_id: &str) -> &TestAgent {
        self.agents.iter().find(|agent| agent.node.node_id == node_id).expect("an agent")
    }

    /// The leader's gRPC address, once there is one.
    pub async fn leader_address(&mut self) -> String {
        let (leader, _) = self.cluster.leader(ELECTION).await;
        self.cluster.node(&leader).grpc.clone()
    }

    /// A catalog client of the leader, once there is one.
    pub async fn leader(&mut self) -> CatalogClient<Channel> {
        catalog_at(&self.leader_address().await)
    }

    /// A client that finds the leader and retries while it moves.
    pub fn sdk(&mut self) -> Client {
        let endpoints: Vec<String> = self.cluster.endpoints().into_iter().map(|(_, address)| address).collect();
        Client::new(
            endpoints,
            ClientOptions {
                request_timeout: Duration::from_secs(60),
                retry_deadline: Duration::from_secs(60),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    /// The promise: every agent either refuses reads or serves at least `version`.
    pub async fn assert_nobody_serves_below(&self, version: u64) {
        for agent in &self.agents {
            match agent.read().await {
                Ok(served) => assert!(
                    served >= version,
                    "{} serves version {served} after {version} returned",
                    agent.node.node_id
                ),
                Err(status) => assert_eq!(
                    error_reason(&status).as_deref(),
                    Some(reason::FENCED),
                    "{}: {status:?}",
                    agent.node.node_id
                ),
            }
        }
    }

    /// Restarts agent `index` (SIGKILL, then a new process of the same node id) with `env`,
    /// once it holds a lease again.
    pub async fn restart_agent(&mut self, index: usize, env: &[(&str, &str)]) {
        let node_id = self.agents[index].node.node_id.clone();
        phase(&format!("{node_id} restarts with {env:?}"));
        self.agents[index].node.kill();
        self.agents[index] = TestAgent::start_leased(&mut self.cluster, &node_id, env).await;
    }

    /// The promise: every agent refuses (FENCED) or serves the table exactly as the catalog
    /// has it now (or its absence).
    pub async fn assert_agents_agree(&mut self, database: &str, table: &str, version: u64) {
        let mut client = self.leader().await;
        let expected = client
            .get_table(GetTableRequest { database: database.into(), name: table.into() })
            .await
            .map(|response| response.into_inner())
            .ok();
        for agent in &self.agents {
            match agent.resolve(database, table).await {
                Ok((served, schema)) => {
                    assert!(
                        served >= version,
                        "{} serves version {served} after {version} returned",
                        agent.node.node_id
                    );
                    match (&schema, &expected) {
                        (Some(schema), Some(expected)) => {
                            assert_eq!(
                                column_names(schema),
                                column_names(expected),
                                "{} serves other columns",
                                agent.node.node_id
                            );
                            assert_eq!(
                                schema.effective_ttl_ms, expected.effective_ttl_ms,
                                "{} serves another TTL",
                                agent.node.node_id
                            );
                        }
                        (None, None) => {}
                        (schema, expected) => panic!(
                            "{} serves {:?} while the catalog has {:?}",
                            agent.node.node_id,
                            schema.as_ref().map(column_names),
                            expected.as_ref().map(column_names)
                        ),
                    }
                }
                Err(status) => assert_eq!(
                    error_reason(&status).as_deref(),
                    Some(reason::FENCED),
                    "{}: {status:?}",
                    agent.node.node_id
                ),
            }
        }
    }

    /// Every agent that serves has at least `version` (for views, which agents do not resolve).
    pub async fn assert_agents_hold(&self, version: u64) {
        for agent in &self.agents {
            let lease = agent.lease().await.unwrap();
            if lease.state == AgentLeaseState::Normal as i32 {
                assert!(
                    lease.applied_version >= version,
                    "{} serves version {} after {version}",
                    agent.node.node_id,
                    lease.applied_version
                );
            }
        }
    }
}
