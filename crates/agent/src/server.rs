//! The sidecar: an agent and its gRPC service, ended by one shutdown token.

use std::sync::Arc;

use leasehold::serving::{self, with_health_and_reflection};
use leasehold::v1::agent_server::AgentServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tracing::info;

use crate::agent::{AcceptAll, Agent};
use crate::config::AgentConfig;
use crate::service::AgentService;

/// The largest message the agent accepts (bytes).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why the sidecar could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentRunError {
    /// A setting is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] leasehold::serving::ReflectionError),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The leader refused this process for good: another start attempt of its resource
    /// serves the node id now, or the resource is being cleaned up.
    #[error("refused by the leader for good: {0}")]
    Superseded(String),
}

/// Runs an agent serving `leasehold.v1.Agent` on `grpc` until `shutdown`.
/// `config.advertise_address` may be empty: the bound address is used then.
pub async fn run(
    mut config: AgentConfig,
    grpc: TcpListener,
    metrics: Option<String>,
    shutdown: CancellationToken,
) -> Result<(), AgentRunError> {
    let bound = grpc.local_addr()?;
    if config.advertise_address.is_empty() {
        if bound.ip().is_unspecified() {
            return Err(AgentRunError::Config(format!("--listen {bound} cannot be dialed; set --advertise-address")));
        }
        config.advertise_address = bound.to_string();
    }
    config.validate().map_err(AgentRunError::Config)?;
    let (agent, heartbeats) = Agent::start(config.clone(), Arc::new(AcceptAll), shutdown.clone());
    // Heartbeats end early only when the leader refused this process for good: stop serving.
    let heartbeats = tokio::spawn({
        let (agent, shutdown) = (agent.clone(), shutdown.clone());
        async move {
            let _ = heartbeats.await;
            if agent.superseded().is_some() {
                shutdown.cancel();
            }
        }
    });
    serve(agent.clone(), grpc, metrics, shutdown).await?;
    let _ = heartbeats.await;
    if let Some(why) = agent.superseded() {
        return Err(AgentRunError::Superseded(why.to_owned()));
    }
    info!(node_id = %config.node_id, "agent stopped");
    Ok(())
}

/// Serves `agent`'s gRPC service (with health and reflection) on `grpc` until `shutdown`.
pub async fn serve(
    agent: Agent,
    grpc: TcpListener,
    metrics: Option<String>,
    shutdown: CancellationToken,
) -> Result<(), AgentRunError> {
    let bound = grpc.local_addr()?;
    let config = agent.config().clone();
    info!(
        node_id = %config.node_id,
        incarnation = %agent.incarnation(),
        grpc = %bound,
        advertised = %config.advertise_address,
        metrics = %metrics.unwrap_or_else(|| "off".into()),
        coordinators = %config.coordinators.join(","),
        "agent serving"
    );
    let services = [<AgentServer<AgentService> as NamedService>::NAME];
    with_health_and_reflection(&mut serving::builder(), &services)
        .await?
        .add_service(
            AgentServer::new(AgentService::new(agent))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpIncoming::from(grpc).with_nodelay(Some(true)), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
