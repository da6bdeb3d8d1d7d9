//! Binding, the metrics recorder, signals, and the coordinator's run.

use std::sync::Arc;

use anyhow::Context;
use leasehold_coordinator::http::RenderMetrics;
use leasehold_coordinator::{CoordinatorConfig, Listeners};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::args::AgentArgs;

/// Installs the process-wide Prometheus recorder and returns its renderer.
fn install_metrics() -> anyhow::Result<RenderMetrics> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    leasehold_coordinator::metrics::describe();
    Ok(Arc::new(move || handle.render()))
}

async fn bind(flag: &str, address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("--{flag} {address}: cannot listen"))
}

/// Cancels the returned token at the first SIGTERM or Ctrl-C; a second one ends the process
/// at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down: stepping down, releasing the lease, draining requests (signal again to stop at once)");
        token.cancel();
        wait_for_signal().await;
        warn!("second signal: stopping at once");
        std::process::exit(130);
    });
    shutdown
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Binds the configured listeners.
pub async fn listeners(config: &CoordinatorConfig) -> anyhow::Result<Listeners> {
    let grpc = bind("listen", &config.listen).await?;
    let metrics = if config.metrics_listen.is_empty() {
        None
    } else {
        Some((bind("metrics-listen", &config.metrics_listen).await?, install_metrics()?))
    };
    Ok(Listeners { grpc, metrics })
}

/// `leasehold agent`: runs until SIGTERM or Ctrl-C, then deregisters.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    leasehold_coordinator::failpoint::init_from_env()
        .map_err(|error| anyhow::anyhow!("LEASEHOLD_FAILPOINTS: {error}"))?;
    let grpc = bind("listen", &args.listen).await?;
    let metrics = if args.metrics_listen.is_empty() {
        None
    } else {
        let listener = bind("metrics-listen", &args.metrics_listen).await?;
        let address = listener.local_addr()?.to_string();
        let render = install_metrics()?;
        leasehold_agent::metrics::describe();
        let shutdown = CancellationToken::new();
        tokio::spawn(leasehold_coordinator::http::serve_metrics(listener, render, shutdown));
        Some(address)
    };
    let mut config =
        leasehold_agent::AgentConfig::new(args.node_id, args.coordinators, args.advertise_address.unwrap_or_default());
    config.heartbeat_interval = args.heartbeat_interval;
    config.heartbeat_timeout = args.heartbeat_timeout;
    config.pools = args.pools;
    config.resource_id = args.resource_id.unwrap_or_default();
    config.attempt_id = args.attempt_id.unwrap_or_default();
    let shutdown = shutdown_on_signals();
    leasehold_agent::server::run(config, grpc, metrics, shutdown).await?;
    Ok(())
}

/// `leasehold coordinator`: runs until SIGTERM or Ctrl-C.
pub async fn coordinator(config: CoordinatorConfig) -> anyhow::Result<()> {
    leasehold_coordinator::failpoint::init_from_env()
        .map_err(|error| anyhow::anyhow!("LEASEHOLD_FAILPOINTS: {error}"))?;
    let listeners = listeners(&config).await?;
    let shutdown = shutdown_on_signals();
    leasehold_coordinator::run(config, listeners, shutdown).await?;
    Ok(())
}
