//! Binding, the metrics recorder, signals, and the coordinator's run.

use std::sync::Arc;

use anyhow::Context;
use leasehold::serving::Readiness;
use leasehold_coordinator::http::RenderMetrics;
use leasehold_coordinator::{CoordinatorConfig, Listeners};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::settings::AgentSettings;

/// The version and commit this binary was built from, for `leasehold_build_info`. The
/// commit comes from `LEASEHOLD_BUILD_COMMIT` at build time (a release build sets it); a
/// plain `cargo build` says `unknown`.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// See [`BUILD_VERSION`].
pub const BUILD_COMMIT: &str = match option_env!("LEASEHOLD_BUILD_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// Bucket bounds for a `*_seconds` histogram that has none of its own.
const DEFAULT_SECONDS_BUCKETS: &[f64] = leasehold_coordinator::metrics::STORE_CALLS;

/// The Prometheus recorder every node uses: real histograms (never summaries), with each
/// histogram's own buckets, and a default for any other `*_seconds` metric.
fn recorder_builder() -> anyhow::Result<PrometheusBuilder> {
    let tables =
        leasehold_coordinator::metrics::HISTOGRAM_BUCKETS.iter().chain(leasehold_agent::metrics::HISTOGRAM_BUCKETS);
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in tables {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)?;
    }
    Ok(builder.set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DEFAULT_SECONDS_BUCKETS)?)
}

/// Installs the process-wide Prometheus recorder, lets `describe` register the node's
/// metrics, and returns the renderer, which adds the process metrics read at scrape time.
fn install_metrics(describe: fn()) -> anyhow::Result<RenderMetrics> {
    let recorder = recorder_builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    metrics::describe_gauge!(BUILD_INFO, "The version and commit of this build; always 1");
    metrics::gauge!(BUILD_INFO, "version" => BUILD_VERSION, "commit" => BUILD_COMMIT).set(1.0);
    describe();
    Ok(Arc::new(move || {
        let mut text = handle.render();
        leasehold_coordinator::process_metrics::render_into(&mut text);
        text
    }))
}

/// The build's version and commit, as labels of a gauge at 1.
const BUILD_INFO: &str = "leasehold_build_info";

async fn bind(flag: &str, address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("--{flag} {address}: cannot listen"))
}

/// Cancels the returned token at the first SIGTERM or Ctrl-C; a second one ends the process
/// at once.
pub fn shutdown_on_signals() -> CancellationToken {
    ignore_hangups();
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

/// SIGHUP would end the process by default; nothing is reloaded, so it is logged and ignored.
#[cfg(unix)]
fn ignore_hangups() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler; SIGHUP will stop the process");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            info!("SIGHUP ignored: the configuration is read once, at start; restart to change it");
        }
    });
}

#[cfg(not(unix))]
fn ignore_hangups() {}

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
        Some((
            bind("metrics-listen", &config.metrics_listen).await?,
            install_metrics(leasehold_coordinator::metrics::describe)?,
        ))
    };
    Ok(Listeners { grpc, metrics })
}

/// `leasehold agent`: runs until SIGTERM or Ctrl-C, then deregisters.
pub async fn agent(settings: AgentSettings) -> anyhow::Result<()> {
    leasehold_coordinator::failpoint::init_from_env()
        .map_err(|error| anyhow::anyhow!("LEASEHOLD_FAILPOINTS: {error}"))?;
    let grpc = bind("listen", &settings.listen).await?;
    let ready = Readiness::new();
    let metrics = if settings.metrics_listen.is_empty() {
        None
    } else {
        let listener = bind("metrics-listen", &settings.metrics_listen).await?;
        let address = listener.local_addr()?.to_string();
        let render = install_metrics(leasehold_agent::metrics::describe)?;
        let shutdown = CancellationToken::new();
        tokio::spawn(leasehold_coordinator::http::serve_metrics(listener, render, ready.clone(), shutdown));
        Some(address)
    };
    let shutdown = shutdown_on_signals();
    leasehold_agent::server::run(settings.agent_config(), grpc, metrics, ready, shutdown).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `*_seconds` metric of both kinds of node is a histogram with `_bucket` series;
    /// a heartbeat's buckets go below a millisecond and a DDL's past T_proceed.
    #[test]
    fn every_seconds_metric_is_a_histogram_with_buckets_that_suit_it() {
        let recorder = recorder_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        let names: Vec<&str> = leasehold_coordinator::metrics::HISTOGRAM_BUCKETS
            .iter()
            .chain(leasehold_agent::metrics::HISTOGRAM_BUCKETS)
            .map(|(name, _)| *name)
            .chain(["leasehold_some_future_duration_seconds"])
            .collect();
        metrics::with_local_recorder(&recorder, || {
            for name in &names {
                metrics::histogram!(*name).record(0.0002);
            }
        });
        let text = handle.render();
        for name in names.iter().filter(|name| name.ends_with("_seconds")) {
            assert!(text.contains(&format!("# TYPE {name} histogram")), "{name}:\n{text}");
            assert!(text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 1")), "{name}:\n{text}");
            assert!(!text.contains(&format!("{name}{{quantile=")), "{name} is a summary:\n{text}");
        }
        let heartbeat = leasehold_coordinator::metrics::HEARTBEAT_SECONDS;
        assert!(text.contains(&format!("{heartbeat}_bucket{{le=\"0.00025\"}} 1")), "{text}");
        assert!(text.contains(&format!("{heartbeat}_bucket{{le=\"0.0001\"}} 0")), "{text}");
        let procedure = leasehold_coordinator::metrics::PROCEDURE_SECONDS;
        assert!(text.contains(&format!("{procedure}_bucket{{le=\"30\"}} 1")), "{text}");
    }
}
