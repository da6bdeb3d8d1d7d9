//! The sidecar: an agent and its gRPC service, ended by one shutdown token.

use std::sync::Arc;

use leasehold::serving::{self, HealthReporter, Readiness, ServingStatus, with_health_and_reflection};
use leasehold::v1::AgentLeaseState;
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

/// Runs an agent serving `leasehold.v1.Agent` on `grpc` until `shutdown`, and marks `ready`
/// once it has loaded its state (see [`serve`]). `config.advertise_address` may be empty: the
/// bound address is used then.
pub async fn run(
    mut config: AgentConfig,
    grpc: TcpListener,
    metrics: Option<String>,
    ready: Readiness,
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
    // The heartbeats outlive the gRPC service: they end with `Agent::shutdown` below, once
    // nothing this sidecar answered is valid any more.
    let (agent, heartbeats) = Agent::start(config.clone(), Arc::new(AcceptAll), CancellationToken::new());
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
    let served = serve(agent.clone(), grpc, metrics, ready, shutdown).await;
    // The service answers no read any more. Every answer it gave told its reader how long it
    // stays valid: once that has run out, nothing this incarnation answered is in use, and it
    // may deregister as released. Until then it deregisters as it always did (its buckets move
    // at once; its cache counts as a tombstone), and the release follows.
    let wait = agent.answers_valid_for();
    if !wait.is_zero() && agent.superseded().is_none() {
        agent.stop().await;
        info!(
            wait_ms = wait.as_millis() as u64,
            "waiting out the validity of the answers given, then releasing this incarnation"
        );
        tokio::time::sleep(wait).await;
    }
    agent.shutdown().await;
    served?;
    let _ = heartbeats.await;
    if let Some(why) = agent.superseded() {
        return Err(AgentRunError::Superseded(why.to_owned()));
    }
    info!(node_id = %config.node_id, "agent stopped");
    Ok(())
}

/// `leasehold.v1.Agent`, as the health service names it.
pub const AGENT_SERVICE: &str = <AgentServer<AgentService> as NamedService>::NAME;

/// What the health service says of `leasehold.v1.Agent` in a lease state: SERVING only while
/// the lease is valid and the cache serves; NOT_SERVING while fenced or resyncing, when every
/// read would be refused.
pub fn agent_status(state: AgentLeaseState) -> ServingStatus {
    match state {
        AgentLeaseState::Normal => ServingStatus::Serving,
        _ => ServingStatus::NotServing,
    }
}

/// Serves `agent`'s gRPC service (with health and reflection) on `grpc` until `shutdown`.
/// The health of `leasehold.v1.Agent` follows the lease ([`agent_status`]); `ready` is set
/// once the agent has loaded its state (its first resync) and stays set: a later fence shows
/// in the health service and in `leasehold_agent_lease_valid`, not by hiding the agent.
pub async fn serve(
    agent: Agent,
    grpc: TcpListener,
    metrics: Option<String>,
    ready: Readiness,
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
    let status = agent_status(agent.lease_state().state());
    let (router, health) = with_health_and_reflection(&mut serving::builder(), &[(AGENT_SERVICE, status)]).await?;
    tokio::spawn(report(agent.clone(), health, ready, shutdown.clone()));
    router
        .add_service(
            AgentServer::new(AgentService::new(agent))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpIncoming::from(grpc).with_nodelay(Some(true)), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Keeps the health of `leasehold.v1.Agent` and `ready` in step with the lease until
/// `shutdown`: the state is read again at every event the agent announces (a fence, a resync,
/// an applied change), so a missed event costs nothing but a moment.
async fn report(agent: Agent, health: HealthReporter, ready: Readiness, shutdown: CancellationToken) {
    let mut events = agent.subscribe();
    loop {
        let state = agent.lease_state().state();
        if state == AgentLeaseState::Normal {
            ready.set(true);
        }
        health.set_service_status(AGENT_SERVICE, agent_status(state)).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.recv() => if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) { break },
        }
    }
    health.set_service_status(AGENT_SERVICE, ServingStatus::NotServing).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_serves_only_with_a_valid_lease() {
        assert_eq!(agent_status(AgentLeaseState::Normal), ServingStatus::Serving);
        for state in [AgentLeaseState::Fenced, AgentLeaseState::Resyncing, AgentLeaseState::Unspecified] {
            assert_eq!(agent_status(state), ServingStatus::NotServing, "{state:?}");
        }
    }

    #[test]
    fn the_health_service_names_the_agent_service() {
        assert_eq!(AGENT_SERVICE, "leasehold.v1.Agent");
    }
}
