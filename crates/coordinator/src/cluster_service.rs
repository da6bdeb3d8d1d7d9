//! `leasehold.v1.Cluster`: validate, call the HA container, map the answer. Nothing more.

use std::pin::Pin;

use leasehold::status::ALLOW_NON_LEADER_HEADER;
use leasehold::v1::cluster_server::Cluster;
use leasehold::v1::{
    GetHaStateRequest, GetLeaderRequest, GetLeaderResponse, GetPriorityRequest, GetPriorityResponse, HaNodeState,
    HaState, LeaderInfo, LeaseReleasedRequest, LeaseReleasedResponse, ListHaStatesRequest, ListHaStatesResponse,
    RemoveHaNodeRequest, RemoveHaNodeResponse, SetHaStateRequest, SetHaStateResponse, SetPriorityRequest,
    SetPriorityResponse, WatchLeaderRequest,
};
use leasehold_core::HaRole;
use leasehold_core::name::validate_id;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::convert::{mode_from_proto, mode_to_proto, role_to_proto};
use crate::ha::{Ha, HaView};
use crate::metrics;
use crate::status::{Refusal, invalid_argument};

/// The `Cluster` service of one coordinator.
#[derive(Debug, Clone)]
pub struct ClusterService {
    ha: Ha,
    shutdown: CancellationToken,
}

impl ClusterService {
    /// The service over `ha`; open `WatchLeader` streams end at `shutdown`.
    pub fn new(ha: Ha, shutdown: CancellationToken) -> Self {
        Self { ha, shutdown }
    }

    fn leader_info(&self, view: &HaView) -> LeaderInfo {
        let now = self.ha.clock().now();
        if view.role == HaRole::Standalone {
            // A stand-alone node is its own leader, without a lease or a term.
            let settings = self.ha.settings();
            return LeaderInfo {
                known: true,
                node_id: settings.node_id.clone(),
                address: settings.address.clone(),
                ..LeaderInfo::default()
            };
        }
        match &view.leader {
            Some(leader) => LeaderInfo {
                known: true,
                node_id: leader.node_id.clone(),
                address: leader.address.clone(),
                term: leader.term,
                lease_expires_at_ms: leader.lease_expires_at_ms,
                lease_remaining_ms: leader.remaining(now).as_millis() as i64,
            },
            None => LeaderInfo::default(),
        }
    }

    fn ha_state(&self, view: &HaView) -> HaState {
        let settings = self.ha.settings();
        let role = if view.role == HaRole::Leader { self.ha.role_now() } else { view.role };
        HaState {
            node_id: settings.node_id.clone(),
            address: settings.address.clone(),
            mode: mode_to_proto(view.mode) as i32,
            role: role_to_proto(role) as i32,
            priority: view.priority,
            term: view.term,
            leader_node_id: view.leader.as_ref().map(|leader| leader.node_id.clone()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store_backend: self.ha.store_backend().to_string(),
        }
    }

    /// Changing a node that is not the leader needs the override header (Brooklyn's guard
    /// against changing the wrong node by accident).
    fn check_change_allowed<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let view = self.ha.view();
        if self.ha.is_leader_now() || view.role == HaRole::Standalone {
            return Ok(());
        }
        let allowed = request
            .metadata()
            .get(ALLOW_NON_LEADER_HEADER)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NonLeaderChange {
                node_id: self.ha.settings().node_id.clone(),
                header: ALLOW_NON_LEADER_HEADER,
            }
            .into())
        }
    }
}

type LeaderStream = Pin<Box<dyn Stream<Item = Result<LeaderInfo, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn get_leader(&self, _request: Request<GetLeaderRequest>) -> Result<Response<GetLeaderResponse>, Status> {
        let leader = self.leader_info(&self.ha.view());
        metrics::record(
            "GetLeader",
            Ok(Response::new(GetLeaderResponse {
                leader: Some(leader),
                answered_by: self.ha.settings().node_id.clone(),
            })),
        )
    }

    type WatchLeaderStream = LeaderStream;

    async fn watch_leader(
        &self,
        _request: Request<WatchLeaderRequest>,
    ) -> Result<Response<Self::WatchLeaderStream>, Status> {
        let (sender, receiver) = mpsc::channel(8);
        let mut views = self.ha.subscribe();
        let service = self.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let info = service.leader_info(&views.borrow_and_update());
                let identity = (info.known, info.node_id.clone(), info.term);
                if last.as_ref() != Some(&identity) {
                    last = Some(identity);
                    if sender.send(Ok(info)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = views.changed() => if changed.is_err() { return },
                    _ = sender.closed() => return,
                    _ = service.shutdown.cancelled() => return,
                }
            }
        });
        metrics::record("WatchLeader", Ok(Response::new(Box::pin(ReceiverStream::new(receiver)) as LeaderStream)))
    }

    async fn get_ha_state(&self, _request: Request<GetHaStateRequest>) -> Result<Response<HaState>, Status> {
        metrics::record("GetHaState", Ok(Response::new(self.ha_state(&self.ha.view()))))
    }

    async fn set_ha_state(&self, request: Request<SetHaStateRequest>) -> Result<Response<SetHaStateResponse>, Status> {
        let result = async {
            self.check_change_allowed(&request)?;
            let requested = mode_from_proto(request.get_ref().mode).ok_or_else(|| {
                invalid_argument(
                    "mode",
                    format!(
                        "mode must be one of AUTO, MASTER, STANDBY, HOT_STANDBY, HOT_BACKUP, DISABLED; got {}",
                        request.get_ref().mode
                    ),
                )
            })?;
            let previous = self.ha.set_mode(requested).await?;
            Ok(Response::new(SetHaStateResponse {
                previous_mode: mode_to_proto(previous) as i32,
                state: Some(self.ha_state(&self.ha.view())),
            }))
        }
        .await;
        metrics::record("SetHaState", result)
    }

    async fn list_ha_states(
        &self,
        _request: Request<ListHaStatesRequest>,
    ) -> Result<Response<ListHaStatesResponse>, Status> {
        let result = async {
            let (nodes, term) = self.ha.listing().await?;
            let nodes = nodes
                .into_iter()
                .map(|node| HaNodeState {
                    node_id: node.node_id,
                    address: node.address,
                    mode: node.mode.map(mode_to_proto).unwrap_or_default() as i32,
                    role: role_to_proto(node.role) as i32,
                    priority: node.priority,
                    last_seen_ms_ago: node.last_seen_ms_ago,
                    alive: node.alive,
                    holds_lease: node.holds_lease,
                })
                .collect();
            Ok(Response::new(ListHaStatesResponse { nodes, term }))
        }
        .await;
        metrics::record("ListHaStates", result)
    }

    async fn remove_ha_node(
        &self,
        request: Request<RemoveHaNodeRequest>,
    ) -> Result<Response<RemoveHaNodeResponse>, Status> {
        let result = async {
            let node_id = &request.get_ref().node_id;
            validate_id("node id", node_id).map_err(|error| invalid_argument("node_id", error.to_string()))?;
            let (role, last_seen_ms_ago) = self.ha.remove_node(node_id).await?;
            Ok(Response::new(RemoveHaNodeResponse { role: role_to_proto(role) as i32, last_seen_ms_ago }))
        }
        .await;
        metrics::record("RemoveHaNode", result)
    }

    async fn get_priority(
        &self,
        _request: Request<GetPriorityRequest>,
    ) -> Result<Response<GetPriorityResponse>, Status> {
        metrics::record("GetPriority", Ok(Response::new(GetPriorityResponse { priority: self.ha.view().priority })))
    }

    async fn set_priority(
        &self,
        request: Request<SetPriorityRequest>,
    ) -> Result<Response<SetPriorityResponse>, Status> {
        let result = async {
            self.check_change_allowed(&request)?;
            let previous = self.ha.set_priority(request.get_ref().priority).await?;
            Ok(Response::new(SetPriorityResponse { previous_priority: previous }))
        }
        .await;
        metrics::record("SetPriority", result)
    }

    async fn lease_released(
        &self,
        request: Request<LeaseReleasedRequest>,
    ) -> Result<Response<LeaseReleasedResponse>, Status> {
        let LeaseReleasedRequest { term, from_node_id } = request.into_inner();
        let woken = self.ha.lease_released(term, &from_node_id);
        metrics::record("LeaseReleased", Ok(Response::new(LeaseReleasedResponse { woken })))
    }
}
