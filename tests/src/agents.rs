//! Data-node agents for the scenarios, each wired through chaos proxies: one in front of
//! every coordinator for its heartbeats, and one in front of the agent for the leader's
//! pushes (the agent advertises the proxy's address).

use std::net::SocketAddr;
use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::agent_client::AgentClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    AgentLeaseState, BarrierRequest, BarrierResponse, GetLeaseStateRequest, LeaseState, ResolveTableRequest,
};
use leasehold_chaos::{Fault, Proxy};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::{LeaseSettings, TestCluster, millis};
use crate::process::{Node, channel};

/// An agent process and the proxies around it.
pub struct TestAgent {
    /// The process.
    pub node: Node,
    /// Between the agent and each coordinator (its heartbeats).
    pub heartbeat_proxies: Vec<Proxy>,
    /// Between the leader and the agent (pushes).
    pub push_proxy: Proxy,
}

impl std::fmt::Debug for TestAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAgent").field("node_id", &self.node.node_id).finish()
    }
}

impl TestAgent {
    /// Starts an agent of `cluster` and waits until it serves.
    pub async fn start(cluster: &mut TestCluster, node_id: &str, env: &[(&str, &str)]) -> TestAgent {
        TestAgent::start_listening(cluster, node_id, "", env).await
    }

    /// Starts an agent as [`TestAgent::start`] does, with its `/metrics`, `/healthz` and
    /// `/readyz` on a free port (`node.metrics`).
    pub async fn start_with_metrics(cluster: &mut TestCluster, node_id: &str, env: &[(&str, &str)]) -> TestAgent {
        TestAgent::start_listening(cluster, node_id, "127.0.0.1:0", env).await
    }

    async fn start_listening(
        cluster: &mut TestCluster,
        node_id: &str,
        metrics_listen: &str,
        env: &[(&str, &str)],
    ) -> TestAgent {
        let lease = cluster.timings.lease.unwrap_or_default();
        let mut heartbeat_proxies = Vec::new();
        // Every coordinator, down or not: one that is down now may lead later.
        for address in cluster.node_addresses() {
            let target: SocketAddr = address.parse().expect("a coordinator address");
            heartbeat_proxies.push(Proxy::start(target).await.expect("a heartbeat proxy"));
        }
        // Pushes go through this proxy; its target is set once the agent has bound its port.
        let placeholder: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        let push_proxy = Proxy::start(placeholder).await.expect("a push proxy");
        let coordinators: Vec<String> = heartbeat_proxies.iter().map(|proxy| proxy.address().to_string()).collect();
        let args: Vec<String> = [
            "--log-format",
            "json",
            "agent",
            "--node-id",
            node_id,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            metrics_listen,
            "--advertise-address",
            &push_proxy.address().to_string(),
            "--coordinators",
            &coordinators.join(","),
            "--heartbeat-interval",
            &millis(lease.heartbeat_interval),
            "--heartbeat-timeout",
            &millis(lease.heartbeat_timeout),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        let env: Vec<(String, String)> = env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        let mut node = Node::spawn(cluster.binary(), node_id, &args, &env);
        node.wait_serving(Duration::from_secs(20)).await;
        push_proxy.retarget(node.grpc.parse().expect("the agent's address"));
        TestAgent { node, heartbeat_proxies, push_proxy }
    }

    /// Starts `node_id` as [`TestAgent::start`] does, and waits until it holds a lease.
    pub async fn start_leased(cluster: &mut TestCluster, node_id: &str, env: &[(&str, &str)]) -> TestAgent {
        let agent = TestAgent::start(cluster, node_id, env).await;
        let leased = &agent;
        crate::poll::eventually(&format!("{node_id} holds a lease"), Duration::from_secs(20), || async move {
            leased.is(AgentLeaseState::Normal).await.then_some(())
        })
        .await;
        agent
    }

    /// A client of the agent itself, not through any proxy.
    pub fn client(&self) -> AgentClient<Channel> {
        AgentClient::new(channel(&self.node.grpc))
    }

    /// The agent's lease state.
    pub async fn lease(&self) -> Result<LeaseState, Status> {
        self.client().get_lease_state(GetLeaseStateRequest {}).await.map(|response| response.into_inner())
    }

    /// Whether the agent reports `state`.
    pub async fn is(&self, state: AgentLeaseState) -> bool {
        self.lease().await.is_ok_and(|lease| lease.state == state as i32)
    }

    /// A read through the agent's fenced cache: `Ok(version)` when it serves (the table is
    /// not there, so NOT_FOUND carries the version), the status when it refuses.
    pub async fn read(&self) -> Result<u64, Status> {
        self.resolve("db", "t").await.map(|(version, _)| version)
    }

    /// Resolves `database.table` through the agent's fenced cache: `Ok((version, Some(table)))`
    /// when it serves the table, `Ok((version, None))` when it serves and has no such table,
    /// the status when it refuses (FENCED).
    pub async fn resolve(&self, database: &str, table: &str) -> Result<(u64, Option<leasehold::v1::Table>), Status> {
        let request = ResolveTableRequest { database: database.into(), table: table.into() };
        match self.client().resolve_table(request).await {
            Ok(response) => {
                let response = response.into_inner();
                Ok((response.version, response.schema))
            }
            Err(status) if status.code() == tonic::Code::NotFound => Ok((not_found_version(&status), None)),
            Err(status) => Err(status),
        }
    }

    /// Cuts the agent off from every coordinator in both directions, keeping connections open.
    pub fn partition(&self) {
        for proxy in &self.heartbeat_proxies {
            proxy.blackhole();
        }
        self.push_proxy.blackhole();
    }

    /// Heals every proxy.
    pub fn heal(&self) {
        for proxy in &self.heartbeat_proxies {
            proxy.heal();
        }
        self.push_proxy.heal();
    }

    /// Sets the fault of heartbeat responses (coordinator → agent).
    pub fn heartbeat_responses(&self, fault: Fault) {
        for proxy in &self.heartbeat_proxies {
            proxy.responses(fault);
        }
    }

    /// Sets the fault of both directions of pushes.
    pub fn pushes(&self, fault: Fault) {
        self.push_proxy.set(fault, fault);
    }
}

/// The cache version a NOT_FOUND answer reports.
pub(crate) fn not_found_version(status: &Status) -> u64 {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get("version").and_then(|value| value.parse().ok()))
        .unwrap_or(0)
}

/// A `DataNodes` client with a timeout long enough for a barrier that waits nodes out.
pub fn data_nodes(address: &str, lease: &LeaseSettings) -> DataNodesClient<Channel> {
    let timeout = lease.proceed_after() * 3 + Duration::from_secs(10);
    let channel = Endpoint::from_shared(format!("http://{address}")).expect("address").timeout(timeout).connect_lazy();
    DataNodesClient::new(channel)
}

/// Runs a barrier on `address`; while a new leader is still loading its state
/// (`LEADER_STARTING`), asks again for up to 15 s.
pub async fn barrier(address: &str, lease: &LeaseSettings) -> Result<BarrierResponse, Status> {
    let deadline = crate::Deadline::new("the leader finishes loading its state", Duration::from_secs(15));
    loop {
        match data_nodes(address, lease).barrier(BarrierRequest {}).await {
            Err(status) if error_reason(&status).as_deref() == Some(reason::LEADER_STARTING) => {
                deadline.tick().await;
            }
            answer => return answer.map(|response| response.into_inner()),
        }
    }
}

/// The fault that cuts a direction.
pub const DROP: Fault = Fault::Drop;
