//! A fleet of simulated data-node agents for load generation: registration, heartbeats at
//! a fixed interval spread evenly over time, and one mock `Agent` server that acknowledges
//! pushes for every simulated node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasehold::v1::agent_server::{Agent, AgentServer};
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    ApplyInvalidationRequest, ApplyInvalidationResponse, GetLeaseStateRequest, GetOwnershipRequest,
    GetOwnershipResponse, HeartbeatRequest, LeaseState, RegisterRequest, ResolveTableRequest, ResolveTableResponse,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::Samples;

/// One simulated agent.
#[derive(Debug)]
pub struct SimNode {
    /// Its node id.
    pub node_id: String,
    /// Its incarnation.
    pub incarnation: String,
    /// The version its (imaginary) cache holds.
    pub applied: AtomicU64,
    /// Whether a heartbeat was answered: it holds a lease.
    pub leased: AtomicBool,
}

/// The simulated agents and their connections to the coordinator.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The agents.
    pub nodes: Arc<Vec<SimNode>>,
    channels: Vec<Channel>,
    store_epoch: Arc<Mutex<String>>,
}

/// What a heartbeat run measured.
#[derive(Debug)]
pub struct HeartbeatRun {
    /// Heartbeats answered.
    pub answered: u64,
    /// Heartbeats that failed.
    pub failed: u64,
    /// Latency of answered heartbeats.
    pub latency: Samples,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Fleet {
    /// `count` simulated agents talking to `coordinator` over `connections` HTTP/2 connections.
    pub fn new(coordinator: &str, count: usize, connections: usize) -> Fleet {
        Fleet::named(coordinator, "sim", count, connections)
    }

    /// Like [`Fleet::new`], with node ids `{prefix}-00000`, `{prefix}-00001`, …
    pub fn named(coordinator: &str, prefix: &str, count: usize, connections: usize) -> Fleet {
        let channels = (0..connections.max(1))
            .map(|_| {
                Endpoint::from_shared(format!("http://{coordinator}"))
                    .expect("address")
                    .timeout(Duration::from_secs(10))
                    .tcp_nodelay(true)
                    .connect_lazy()
            })
            .collect();
        let nodes = (0..count)
            .map(|index| SimNode {
                node_id: format!("{prefix}-{index:05}"),
                incarnation: format!("{prefix}-inc-{index:05}"),
                applied: AtomicU64::new(0),
                leased: AtomicBool::new(false),
            })
            .collect();
        Fleet { nodes: Arc::new(nodes), channels, store_epoch: Arc::new(Mutex::new(String::new())) }
    }

    fn client(&self, index: usize) -> DataNodesClient<Channel> {
        DataNodesClient::new(self.channels[index % self.channels.len()].clone())
    }

    /// Registers every node with push address `address`, `parallel` at a time.
    pub async fn register_all(&self, address: &str, parallel: usize) {
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for worker in 0..parallel {
            let (fleet, next, address) = (self.clone(), next.clone(), address.to_owned());
            workers.push(tokio::spawn(async move {
                let mut client = fleet.client(worker);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(node) = fleet.nodes.get(index) else { return };
                    let request = RegisterRequest {
                        node_id: node.node_id.clone(),
                        address: address.clone(),
                        incarnation: node.incarnation.clone(),
                        pools: Vec::new(),
                        ..Default::default()
                    };
                    // The leader answers UNAVAILABLE while it loads its state after taking over.
                    let mut attempts = 0;
                    while let Err(status) = client.register(request.clone()).await {
                        attempts += 1;
                        assert!(
                            status.code() == tonic::Code::Unavailable && attempts < 100,
                            "registration: {status:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }));
        }
        for worker in workers {
            worker.await.expect("registration worker");
        }
    }

    /// One heartbeat of node `index`; its cache takes the answer's version.
    pub async fn beat(&self, index: usize) -> Result<(), Status> {
        let node = &self.nodes[index];
        let request = HeartbeatRequest {
            node_id: node.node_id.clone(),
            incarnation: node.incarnation.clone(),
            store_epoch: self.store_epoch.lock().expect("epoch").clone(),
            applied_version: node.applied.load(Ordering::Relaxed),
            needs_resync: false,
            refused: None,
        };
        let response = self.client(index).heartbeat(request).await?.into_inner();
        node.applied.fetch_max(response.version, Ordering::Relaxed);
        node.leased.store(true, Ordering::Relaxed);
        let mut epoch = self.store_epoch.lock().expect("epoch");
        if *epoch != response.store_epoch {
            *epoch = response.store_epoch;
        }
        Ok(())
    }

    /// Registers every node with push address `address`, heartbeats each once a second in
    /// the background (abort the task when done), and returns once every node holds a lease.
    pub async fn start_leased(&self, address: &str) -> tokio::task::JoinHandle<HeartbeatRun> {
        self.register_all(address, 8).await;
        let fleet = self.clone();
        let heartbeats =
            tokio::spawn(async move { fleet.heartbeat(Duration::from_secs(1), Duration::from_secs(3600)).await });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.nodes.iter().all(|node| node.leased.load(Ordering::Relaxed)) {
            assert!(Instant::now() < deadline, "not every simulated agent holds a lease after 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        heartbeats
    }

    /// Heartbeats every node once per `interval` for `duration`, spread evenly over time.
    pub async fn heartbeat(&self, interval: Duration, duration: Duration) -> HeartbeatRun {
        let count = self.nodes.len();
        let gap = interval / count.max(1) as u32;
        let started = Instant::now();
        let latency = Arc::new(Mutex::new(Samples::default()));
        let failed = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let mut sent = 0usize;
        let mut inflight = tokio::task::JoinSet::new();
        while started.elapsed() < duration {
            // Send every heartbeat that is due by now.
            let due = (started.elapsed().as_nanos() / gap.as_nanos().max(1)) as usize;
            while sent < due {
                let index = sent % count;
                sent += 1;
                let (fleet, latency, failed, answered) =
                    (self.clone(), latency.clone(), failed.clone(), answered.clone());
                inflight.spawn(async move {
                    let at = Instant::now();
                    match fleet.beat(index).await {
                        Ok(()) => {
                            latency.lock().expect("samples").push(at.elapsed());
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            while inflight.try_join_next().is_some() {}
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        while inflight.join_next().await.is_some() {}
        let latency = std::mem::take(&mut *latency.lock().expect("samples"));
        HeartbeatRun {
            answered: answered.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            latency,
            elapsed: started.elapsed(),
        }
    }
}

/// An `Agent` server that acknowledges every push for every simulated node.
#[derive(Debug, Clone, Default)]
pub struct MockAgents {
    applied: Arc<Mutex<HashMap<String, u64>>>,
}

#[tonic::async_trait]
impl Agent for MockAgents {
    async fn apply_invalidation(
        &self,
        request: Request<ApplyInvalidationRequest>,
    ) -> Result<Response<ApplyInvalidationResponse>, Status> {
        let request = request.into_inner();
        let newest = request.changes.iter().map(|change| change.version).max().unwrap_or(0);
        let mut applied = self.applied.lock().expect("applied");
        let version = applied.entry(request.incarnation).or_default();
        *version = (*version).max(newest);
        Ok(Response::new(ApplyInvalidationResponse { applied_version: *version }))
    }

    async fn get_lease_state(&self, _request: Request<GetLeaseStateRequest>) -> Result<Response<LeaseState>, Status> {
        Ok(Response::new(LeaseState::default()))
    }

    async fn resolve_table(
        &self,
        _request: Request<ResolveTableRequest>,
    ) -> Result<Response<ResolveTableResponse>, Status> {
        Err(Status::unimplemented("simulated agents hold no tables"))
    }

    async fn get_ownership(
        &self,
        _request: Request<GetOwnershipRequest>,
    ) -> Result<Response<GetOwnershipResponse>, Status> {
        Err(Status::unimplemented("simulated agents own no buckets"))
    }

    type WatchOwnershipStream = tokio_stream::Empty<Result<leasehold::v1::OwnershipEvent, Status>>;

    async fn watch_ownership(
        &self,
        _request: Request<GetOwnershipRequest>,
    ) -> Result<Response<Self::WatchOwnershipStream>, Status> {
        Err(Status::unimplemented("simulated agents own no buckets"))
    }
}

impl MockAgents {
    /// Serves on a free loopback port; returns the address.
    pub async fn serve(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
        let address = listener.local_addr().expect("its address").to_string();
        tokio::spawn(
            Server::builder()
                .add_service(AgentServer::new(self))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
        );
        address
    }
}

/// A loopback address that accepts connections and never answers: a data node whose push
/// endpoint is unreachable. Connections are held open until the process ends.
pub async fn blackhole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
    let address = listener.local_addr().expect("its address").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}

/// CPU seconds (user + system) a process has used so far, from `/proc`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of a process in bytes, from `/proc`.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
