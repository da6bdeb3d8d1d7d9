//! Several coordinators on one store.

use std::collections::BTreeMap;
use std::time::Duration;

use leasehold::v1::HaRole;
use leasehold_store::new_incarnation;
use tokio::time::Instant;

use crate::process::Node;
use crate::store::TestStore;

/// The HA timings the scenarios run with.
#[derive(Debug, Clone)]
pub struct Timings {
    /// `ha.lease-ttl`.
    pub lease_ttl: Duration,
    /// `ha.renew-interval`.
    pub renew_interval: Duration,
    /// `ha.store-timeout`.
    pub store_timeout: Duration,
    /// `ha.poll-interval`.
    pub poll_interval: Duration,
    /// `ha.priority-step`.
    pub priority_step: Duration,
    /// `ha.margin`.
    pub margin: Duration,
    /// Data-node lease settings, when the test runs agents.
    pub lease: Option<LeaseSettings>,
}

/// The data-node lease settings of a test.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// `metadata.lease-fence`.
    pub fence: Duration,
    /// `metadata.heartbeat-interval` (and the agents' `--heartbeat-interval`).
    pub heartbeat_interval: Duration,
    /// `metadata.heartbeat-timeout` (and the agents' `--heartbeat-timeout`).
    pub heartbeat_timeout: Duration,
    /// `metadata.proceed-margin`.
    pub proceed_margin: Duration,
    /// `broadcast.retry-interval`.
    pub retry_interval: Duration,
}

impl Default for LeaseSettings {
    /// A 1 s heartbeat and a 3 s fence, as the issue suggests.
    fn default() -> Self {
        Self {
            fence: Duration::from_secs(3),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_millis(300),
            proceed_margin: Duration::from_millis(500),
            retry_interval: Duration::from_millis(200),
        }
    }
}

impl LeaseSettings {
    /// `T_proceed` with the default drift of 1%.
    pub fn proceed_after(&self) -> Duration {
        self.fence.mul_f64(1.01 / 0.99) + self.proceed_margin
    }
}

impl Default for Timings {
    /// A 1 s lease, as the issue asks; every relation still holds on a loaded 2-core machine,
    /// and two renewals may fail at the store timeout before the hold ends.
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_millis(1000),
            renew_interval: Duration::from_millis(200),
            store_timeout: Duration::from_millis(200),
            poll_interval: Duration::from_millis(100),
            priority_step: Duration::from_millis(200),
            margin: Duration::from_millis(100),
            lease: None,
        }
    }
}

pub(crate) fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Coordinators of one test cluster, sharing one store.
pub struct TestCluster {
    binary: &'static str,
    /// The shared store.
    pub store: TestStore,
    /// The cluster name: fresh per test, so tests may share a database.
    pub cluster: String,
    /// The timings every node starts with.
    pub timings: Timings,
    nodes: BTreeMap<String, Node>,
    /// Store URLs of nodes that reach the store another way (through a proxy).
    store_routes: BTreeMap<String, String>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("cluster", &self.cluster).field("nodes", &self.nodes.keys()).finish()
    }
}

impl TestCluster {
    /// An empty cluster on `store`, running `binary`.
    pub fn new(binary: &'static str, store: TestStore) -> TestCluster {
        TestCluster {
            binary,
            store,
            cluster: format!("c{}", &new_incarnation()[..10]),
            timings: Timings::default(),
            nodes: BTreeMap::new(),
            store_routes: BTreeMap::new(),
        }
    }

    /// Makes `node_id` reach the store at `url` (the same database, another way: a proxy)
    /// from its next start on.
    pub fn route_store(&mut self, node_id: &str, url: String) {
        self.store_routes.insert(node_id.to_owned(), url);
    }

    /// The command line of a coordinator of this cluster, plus `extra`.
    pub fn coordinator_args(&self, node_id: &str, extra: &[&str]) -> Vec<String> {
        let store = self.store_routes.get(node_id).unwrap_or(&self.store.url);
        let mut args: Vec<String> = [
            "--log-format",
            "json",
            "coordinator",
            "--node-id",
            node_id,
            "--metrics-listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--cluster",
            &self.cluster,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        // Any free port, unless `extra` names the address.
        if !extra.contains(&"--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        args.push("--lease-ttl".into());
        args.push(millis(self.timings.lease_ttl));
        args.push("--renew-interval".into());
        args.push(millis(self.timings.renew_interval));
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    /// The environment of a coordinator of this cluster, plus `extra`.
    pub fn coordinator_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let t = &self.timings;
        let mut env = vec![
            ("LEASEHOLD_HA__STORE_TIMEOUT".to_owned(), millis(t.store_timeout)),
            ("LEASEHOLD_HA__POLL_INTERVAL".to_owned(), millis(t.poll_interval)),
            ("LEASEHOLD_HA__PRIORITY_STEP".to_owned(), millis(t.priority_step)),
            ("LEASEHOLD_HA__MARGIN".to_owned(), millis(t.margin)),
        ];
        if let Some(lease) = &t.lease {
            env.extend([
                ("LEASEHOLD_METADATA__LEASE_FENCE".to_owned(), millis(lease.fence)),
                ("LEASEHOLD_METADATA__HEARTBEAT_INTERVAL".to_owned(), millis(lease.heartbeat_interval)),
                ("LEASEHOLD_METADATA__HEARTBEAT_TIMEOUT".to_owned(), millis(lease.heartbeat_timeout)),
                ("LEASEHOLD_METADATA__PROCEED_MARGIN".to_owned(), millis(lease.proceed_margin)),
                ("LEASEHOLD_BROADCAST__RETRY_INTERVAL".to_owned(), millis(lease.retry_interval)),
            ]);
        }
        env.extend(extra.iter().map(|(key, value)| (key.to_string(), value.to_string())));
        env
    }

    /// The binary the cluster runs.
    pub fn binary(&self) -> &'static str {
        self.binary
    }

    /// Starts a coordinator without waiting for it (for starts that are meant to fail).
    pub fn spawn(&self, node_id: &str, args: &[&str], env: &[(&str, &str)]) -> Node {
        Node::spawn(self.binary, node_id, &self.coordinator_args(node_id, args), &self.coordinator_env(env))
    }

    /// Starts a coordinator and waits until it serves.
    pub async fn start(&mut self, node_id: &str, args: &[&str], env: &[(&str, &str)]) -> &Node {
        let mut node = self.spawn(node_id, args, env);
        node.wait_serving(Duration::from_secs(20)).await;
        if let Some(mut old) = self.nodes.insert(node_id.to_owned(), node) {
            old.kill();
        }
        &self.nodes[node_id]
    }

    /// Starts a stopped coordinator again on the address it listened on, so that agents and
    /// clients configured with that address reach it, as they would a restarted server.
    pub async fn restart_in_place(&mut self, node_id: &str, env: &[(&str, &str)]) -> &Node {
        let address = self.node(node_id).grpc.clone();
        self.start(node_id, &["--listen", &address], env).await
    }

    /// Starts a stopped coordinator again on the address it listened on, without waiting for it
    /// to serve, as a supervisor restarts a process: it may wait long for its store (a paused
    /// node holding SQLite's write lock, say), and the caller has other faults to end meanwhile.
    pub fn respawn_in_place(&mut self, node_id: &str, env: &[(&str, &str)]) {
        let address = self.node(node_id).grpc.clone();
        let mut node = self.spawn(node_id, &["--listen", &address], env);
        node.grpc = address;
        if let Some(mut old) = self.nodes.insert(node_id.to_owned(), node) {
            old.kill();
        }
    }

    /// A node of the cluster.
    pub fn node(&self, node_id: &str) -> &Node {
        self.nodes.get(node_id).unwrap_or_else(|| panic!("no node {node_id}"))
    }

    /// A node of the cluster, mutably (to signal or kill it).
    pub fn node_mut(&mut self, node_id: &str) -> &mut Node {
        self.nodes.get_mut(node_id).unwrap_or_else(|| panic!("no node {node_id}"))
    }

    /// `(node id, address)` of every node that was started and still runs.
    pub fn endpoints(&mut self) -> Vec<(String, String)> {
        self.nodes
            .values_mut()
            .filter_map(|node| node.is_running().then(|| (node.node_id.clone(), node.grpc.clone())))
            .collect()
    }

    /// The gRPC address of every node started so far, running or not, in node-id order.
    pub fn node_addresses(&self) -> Vec<String> {
        self.nodes.values().map(|node| node.grpc.clone()).collect()
    }

    /// The id of every node started so far, running or not.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Asks every running node for its state; returns `(node id, role, term)` of those that
    /// answered.
    pub async fn states(&mut self) -> Vec<(String, i32, u64)> {
        let mut answers = Vec::new();
        for (node_id, _) in self.endpoints() {
            if let Ok(state) = self.nodes[&node_id].state().await {
                answers.push((node_id, state.role, state.term));
            }
        }
        answers
    }

    /// Waits until exactly one running node reports itself leader with a term above
    /// `above_term`; returns its id, its term, and when it was first seen.
    pub async fn leader_above(&mut self, above_term: u64, timeout: Duration) -> (String, u64, Instant) {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.states().await;
            let leaders: Vec<_> =
                states.iter().filter(|(_, role, term)| *role == HaRole::Leader as i32 && *term > above_term).collect();
            if let [(node_id, _, term)] = leaders.as_slice() {
                return (node_id.clone(), *term, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "no single leader with a term above {above_term} within {timeout:?}; (node, role, term): {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address of the node that leads now.
    pub async fn leader_address(&mut self) -> String {
        let (leader, _) = self.leader(Duration::from_secs(15)).await;
        self.node(&leader).grpc.clone()
    }

    /// Waits until exactly one node leads.
    pub async fn leader(&mut self, timeout: Duration) -> (String, u64) {
        let (node_id, term, _) = self.leader_above(0, timeout).await;
        (node_id, term)
    }

    /// `(term, node id)` of every "became leader" event any node logged; panics if a term was
    /// taken twice.
    pub fn terms_from_logs(&self) -> BTreeMap<u64, String> {
        let mut terms = BTreeMap::new();
        for node in self.nodes.values() {
            for event in node.events("became leader") {
                let term = event["term"].as_u64().expect("term in the event");
                if let Some(other) = terms.insert(term, node.node_id.clone()) {
                    panic!("term {term} was acquired by both {other} and {}", node.node_id);
                }
            }
        }
        terms
    }
}
