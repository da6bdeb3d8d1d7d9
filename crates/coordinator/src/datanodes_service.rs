//! `leasehold.v1.DataNodes`: validate, find the current term's state, call it, map the answer.

use std::sync::Arc;

use leasehold::v1::data_nodes_server::DataNodes;
use leasehold::v1::{
    BarrierRequest, BarrierResponse, DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse,
    KeepAliveRequest, KeepAliveResponse, ListDataNodesRequest, ListDataNodesResponse, RegisterRequest,
    RegisterResponse, RemoveDataNodeRequest, RemoveDataNodeResponse,
};
use leasehold_core::name::validate_id;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::ha::Ha;
use crate::metadata_keeper::MetadataKeeper;
use crate::metadata_leader::{Carry, MetadataError, MetadataLeader, Registration};
use crate::metrics;
use crate::propagator::{Mode, Propagator};
use crate::status::invalid_argument;

/// The `DataNodes` service of one coordinator.
#[derive(Debug, Clone)]
pub struct DataNodesService {
    ha: Ha,
    keeper: MetadataKeeper,
    propagator: Arc<Propagator>,
}

const MAX_ADDRESS_LEN: usize = 255;
const MAX_INCARNATION_LEN: usize = 64;

fn validate_node(node_id: &str, incarnation: &str) -> Result<(), Status> {
    validate_id("node id", node_id).map_err(|error| invalid_argument("node_id", error.to_string()))?;
    if incarnation.is_empty()
        || incarnation.len() > MAX_INCARNATION_LEN
        || !incarnation.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(invalid_argument("incarnation", "incarnation must be 1 to 64 letters, digits or dashes"));
    }
    Ok(())
}

impl DataNodesService {
    /// The service over `ha`'s terms, as loaded by `keeper`.
    pub fn new(ha: Ha, keeper: MetadataKeeper, propagator: Arc<Propagator>) -> Self {
        Self { ha, keeper, propagator }
    }

    fn leader(&self) -> Result<Arc<MetadataLeader>, Status> {
        self.keeper.active(&self.ha)
    }
}

/// One KeepAlive message's answer: the unary heartbeat's, never carrying a snapshot.
fn keep_alive_answer(leader: &MetadataLeader, ha: &Ha, message: KeepAliveRequest) -> Result<KeepAliveResponse, Status> {
    let request =
        message.heartbeat.ok_or_else(|| invalid_argument("heartbeat", "every message carries a heartbeat"))?;
    validate_node(&request.node_id, &request.incarnation)?;
    let heartbeat = leader.heartbeat_carrying(&request, || ha.grants_until(), Carry::NoSnapshot)?;
    Ok(KeepAliveResponse { sequence: message.sequence, heartbeat: Some(heartbeat) })
}

/// The answers of one KeepAlive stream.
pub type KeepAliveAnswers =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<KeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DataNodes for DataNodesService {
    type KeepAliveStream = KeepAliveAnswers;

    async fn keep_alive(
        &self,
        request: Request<Streaming<KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        if crate::failpoint::armed(crate::failpoint::KEEP_ALIVE_UNIMPLEMENTED) {
            return metrics::record("KeepAlive", Err(Status::unimplemented("KeepAlive is off (failpoint)")));
        }
        let leader = metrics::record("KeepAlive", self.leader())?;
        let mut inbound = request.into_inner();
        let (answers, stream) = mpsc::channel(4);
        let (ha, keeper) = (self.ha.clone(), self.keeper.clone());
        // Messages are answered one at a time, in order: an answer always echoes a request
        // received before its version was chosen, exactly as a unary call's would.
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    // The term ended (or its state is being reloaded): every stream closes, so
                    // agents find the leader again.
                    _ = leader.token().cancelled() => {
                        let status = keeper.active(&ha).err().unwrap_or_else(|| MetadataError::TermEnded { term: leader.term() }.into());
                        let _ = answers.send(Err(status)).await;
                        return;
                    }
                    message = inbound.message() => message,
                };
                // The agent closed its side, or the stream broke.
                let Ok(Some(message)) = message else { return };
                let started = std::time::Instant::now();
                let answer = keep_alive_answer(&leader, &ha, message);
                metrics::heartbeat(answer.is_ok(), started.elapsed());
                let refused = answer.is_err();
                if answers.send(answer).await.is_err() || refused {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }

    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<RegisterResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            validate_node(&request.node_id, &request.incarnation)?;
            if request.address.is_empty()
                || request.address.len() > MAX_ADDRESS_LEN
                || request.address.contains("://")
                || !request.address.contains(':')
            {
                return Err(invalid_argument("address", "address must be HOST:PORT"));
            }
            leasehold_core::buckets::validate_memberships("pools", &request.pools)
                .map_err(|error| leasehold::status::status_of(&error))?;
            for (field, id) in [("resource_id", &request.resource_id), ("attempt_id", &request.attempt_id)] {
                if !id.is_empty() {
                    leasehold_core::keeper::validate_resource_name(field, id)
                        .map_err(|message| invalid_argument(field, &message))?;
                }
            }
            if request.resource_id.is_empty() && !request.attempt_id.is_empty() {
                return Err(invalid_argument("attempt_id", "an attempt id needs a resource id"));
            }
            let leader = self.leader()?;
            leader
                .register(&Registration {
                    node_id: &request.node_id,
                    incarnation: &request.incarnation,
                    address: &request.address,
                    pools: &request.pools,
                    resource_id: &request.resource_id,
                    attempt_id: &request.attempt_id,
                })
                .await?;
            Ok(Response::new(RegisterResponse {
                term: leader.term(),
                leader_node_id: leader.leader_node_id().to_owned(),
            }))
        }
        .await;
        metrics::record("Register", result)
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let started = std::time::Instant::now();
        let result = async {
            let request = request.into_inner();
            validate_node(&request.node_id, &request.incarnation)?;
            let leader = self.leader()?;
            // An agent that resyncs is answered with the whole catalog: copied on a blocking
            // thread, so that a large catalog holds up no renewal queued on the runtime's
            // workers. (The grant is recorded when it runs: later, so only more cautious.)
            let answer = if leader.asks_for_snapshot(&request) {
                let ha = self.ha.clone();
                tokio::task::spawn_blocking(move || leader.heartbeat(&request, || ha.grants_until()))
                    .await
                    .map_err(|error| Status::internal(format!("answering a resync: {error}")))?
            } else {
                leader.heartbeat(&request, || self.ha.grants_until())
            };
            Ok(Response::new(answer?))
        }
        .await;
        metrics::heartbeat(result.is_ok(), started.elapsed());
        metrics::record("Heartbeat", result)
    }

    async fn deregister(&self, request: Request<DeregisterRequest>) -> Result<Response<DeregisterResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            validate_node(&request.node_id, &request.incarnation)?;
            let leader = self.leader()?;
            leader
                .deregister(&request.node_id, &request.incarnation, request.buckets_released, request.released)
                .await?;
            Ok(Response::new(DeregisterResponse {}))
        }
        .await;
        metrics::record("Deregister", result)
    }

    async fn remove_data_node(
        &self,
        request: Request<RemoveDataNodeRequest>,
    ) -> Result<Response<RemoveDataNodeResponse>, Status> {
        let result = async {
            let node_id = &request.get_ref().node_id;
            validate_id("node id", node_id).map_err(|error| invalid_argument("node_id", error.to_string()))?;
            let leader = self.leader()?;
            let incarnation = leader.remove(node_id).await?;
            Ok(Response::new(RemoveDataNodeResponse { incarnation }))
        }
        .await;
        metrics::record("RemoveDataNode", result)
    }

    async fn list_data_nodes(
        &self,
        _request: Request<ListDataNodesRequest>,
    ) -> Result<Response<ListDataNodesResponse>, Status> {
        let result = (|| {
            let leader = self.leader()?;
            let (nodes, version) = leader.statuses();
            Ok(Response::new(ListDataNodesResponse {
                nodes,
                version,
                fence_ms: leader.fence().as_millis() as u64,
                proceed_after_ms: leader.proceed_after().as_millis() as u64,
            }))
        })();
        metrics::record("ListDataNodes", result)
    }

    async fn barrier(&self, _request: Request<BarrierRequest>) -> Result<Response<BarrierResponse>, Status> {
        let result = async {
            let leader = self.leader()?;
            let version = leader.publish_barrier().await?;
            let outcome = self.propagator.broadcast(&leader, version, Mode::Reversible).await?;
            Ok(Response::new(BarrierResponse {
                version: outcome.version,
                acknowledged: outcome.acknowledged,
                fenced: outcome.fenced,
                waited_ms: outcome.waited.as_millis() as u64,
            }))
        }
        .await;
        metrics::record("Barrier", result)
    }
}
