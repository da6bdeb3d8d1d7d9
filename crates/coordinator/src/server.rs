//! Starting and stopping a coordinator: store, registration, election and gRPC, all ended by
//! one shutdown token.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use leasehold::serving::{self, Readiness, with_health_and_reflection};
use leasehold::v1::assignments_server::AssignmentsServer;
use leasehold::v1::catalog_server::CatalogServer;
use leasehold::v1::cluster_server::ClusterServer;
use leasehold::v1::data_nodes_server::DataNodesServer;
use leasehold::v1::procedures_server::ProceduresServer;
use leasehold::v1::resources_server::ResourcesServer;
use leasehold_core::BootClock;
use leasehold_store::{MigrationSet, Store, StoreError, new_incarnation};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::admission::AdmissionLayer;
use crate::assignments_service::AssignmentsService;
use crate::catalog_service::{CatalogService, ProceduresService};
use crate::cluster_service::ClusterService;
use crate::config::{ConfigError, CoordinatorConfig};
use crate::container::Containers;
use crate::container_runner::ContainerRunner;
use crate::datanodes_service::DataNodesService;
use crate::ha::{Ha, HaError, HaSettings};
use crate::health;
use crate::http::{self, RenderMetrics};
use crate::metadata_keeper::MetadataKeeper;
use crate::metadata_leader::LeaseSettings;
use crate::procedure_runner::ProcedureRunner;
use crate::propagator::Propagator;
use crate::resource_keeper::ResourceKeeper;
use crate::resources_service::ResourcesService;
use crate::status_page::{self, StatusPage};

/// The largest request or response message a coordinator accepts (bytes).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The largest answer that carries the whole catalog (a resync or a snapshot).
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;
/// The longest a unary call may take on the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent calls per client connection.
const CONCURRENCY_PER_CONNECTION: usize = 256;
/// Calls in flight at once across all connections, lease renewals not counted; more are shed
/// (see [`AdmissionLayer`]). Reads take microseconds and a DDL holds one slot while it waits
/// for its broadcasts, so this bounds the queue a renewal can find ahead of it, not the work.
const MAX_CALLS_IN_FLIGHT: usize = 512;

/// Where a coordinator listens. Binding is the caller's job, so tests can bind port 0 and
/// read the address back.
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// Prometheus `/metrics`, the probes `/healthz` and `/readyz` and the status page (`/`,
    /// `/api/v1/status`), with the function that renders the metrics.
    pub metrics: Option<(TcpListener, RenderMetrics)>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").field("grpc", &self.grpc.local_addr().ok()).finish()
    }
}

/// Why a coordinator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed at start.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Registration or election failed.
    #[error(transparent)]
    Ha(#[from] HaError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] leasehold::serving::ReflectionError),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The address other nodes reach this coordinator at.
fn advertised_address(config: &CoordinatorConfig, bound: SocketAddr) -> Result<String, ConfigError> {
    if let Some(address) = &config.advertise_address {
        return Ok(address.clone());
    }
    if bound.ip().is_unspecified() {
        return Err(ConfigError {
            key: "advertise-address".into(),
            message: format!("listen is {bound}, which other nodes cannot dial; set the address they should use"),
        });
    }
    Ok(bound.to_string())
}

/// Runs a coordinator until `shutdown` is cancelled (or until it cannot go on, in which case
/// it cancels `shutdown` itself and returns the reason).
pub async fn run(config: CoordinatorConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), RunError> {
    config.validate()?;
    let grpc_address = listeners.grpc.local_addr()?;
    let address = advertised_address(&config, grpc_address)?;
    let node_id = config.effective_node_id();
    let mode = config.ha.mode;

    // The probes answer from the start: live at once, ready once the store is migrated and
    // this node registered (see `docs/OPERATIONS.md`).
    let ready = Readiness::new();
    let http_stop = shutdown.child_token();
    let _http_stops_with_run = http_stop.clone().drop_guard();
    // The status page answers once there is something to show (see below).
    let status_page = Arc::new(OnceLock::new());
    let metrics_address = match listeners.metrics {
        Some((listener, render)) => {
            let metrics_address = listener.local_addr()?;
            let routes = http::probes(render, ready.clone()).merge(status_page::routes(status_page.clone()));
            tokio::spawn(http::serve(listener, routes, http_stop));
            Some(metrics_address)
        }
        None => None,
    };

    let store = Store::connect(config.store_options()).await?;
    info!(backend = %store.backend(), url = %store.redacted_url(), "connected to the store");
    match store.durability_warnings().await {
        Ok(warnings) => warnings.iter().for_each(|warning| warn!("{warning}")),
        Err(error) => warn!(%error, "could not check the store's durability settings"),
    }
    store.migrate(if mode.uses_lease() { MigrationSet::All } else { MigrationSet::WithoutHa }).await?;
    let store_epoch = store.run("store epoch", async |db| db.store_epoch(&config.cluster).await).await?;
    if mode.uses_lease() {
        store.run("create lease row", async |db| db.ensure_lease_row(&config.cluster).await).await?;
    }

    let settings = HaSettings {
        cluster: config.cluster.clone(),
        node_id: node_id.clone(),
        address: address.clone(),
        mode,
        priority: config.ha.priority,
        timings: config.ha_timings(),
    };
    let ha = Ha::new(settings, store.clone(), Arc::new(BootClock), new_incarnation());
    ha.register().await?;

    let lease = config.lease_timings();
    let lease_settings = LeaseSettings {
        timings: lease,
        retention: config.catalog.change_retention,
        evict_after: config.datanodes.evict_after,
        offline_after: config.assign.offline_timeout,
        assign_interval: config.assign.interval,
    };
    // The plan's budget assumes the configured fence is the largest; the verdict itself uses
    // the largest fence ever recorded in the store.
    let plan = config.propagation_plan(lease.fence);
    let propagator = Arc::new(Propagator::new(plan.clone(), lease.heartbeat_timeout));
    let runner = Arc::new(ProcedureRunner::new(propagator.clone(), plan.budget * 4));
    let pools = config
        .assign
        .pools
        .iter()
        .map(|pool| (pool.name.clone(), pool.bucket_count.unwrap_or(config.assign.bucket_count)))
        .collect();
    let containers = Containers::from_config(&config.containers);
    let restarts = &config.resources.auto_restart;
    let policy = leasehold_core::keeper::Policy {
        enabled: restarts.enabled,
        max_retries: restarts.max_retries,
        grace: restarts.grace_period,
    };
    let resource_keeper = Arc::new(ResourceKeeper::new(policy, restarts.interval, containers.clone()));
    let keeper = MetadataKeeper::with_pools(pools).with_resource_keeper(resource_keeper.clone());
    let page = StatusPage::new(ha.clone(), keeper.clone(), store.clone(), resource_keeper.clone());
    status_page.set(page).expect("the status page is built once");
    let container_runner = ContainerRunner {
        store: store.clone(),
        cluster: config.cluster.clone(),
        node_id: node_id.clone(),
        containers,
        intents: resource_keeper.intents.clone(),
    };
    tokio::spawn(container_runner.run(shutdown.clone()));
    let resources = ResourcesServer::new(ResourcesService::new(ha.clone(), keeper.clone(), resource_keeper))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_SNAPSHOT_BYTES);
    let keeper_task =
        tokio::spawn(keeper.clone().run(ha.clone(), store.clone(), lease_settings, runner.clone(), shutdown.clone()));
    let catalog = CatalogServer::new(CatalogService::new(ha.clone(), keeper.clone(), runner, store.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_SNAPSHOT_BYTES);
    let procedures = ProceduresServer::new(ProceduresService::new(ha.clone(), store.clone()));
    // A heartbeat answer may carry the whole catalog (a resync).
    let assignments = AssignmentsServer::new(AssignmentsService::new(
        ha.clone(),
        keeper.clone(),
        store.clone(),
        config.assign.bucket_count,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_SNAPSHOT_BYTES);
    let data_nodes = DataNodesServer::new(DataNodesService::new(ha.clone(), keeper, propagator))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_SNAPSHOT_BYTES);

    let cluster = ClusterServer::new(ClusterService::new(ha.clone(), shutdown.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut server = serving::builder()
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .tcp_nodelay(true)
        .layer(AdmissionLayer::new(MAX_CALLS_IN_FLIGHT));
    let view = ha.view();
    let (router, health) = with_health_and_reflection(&mut server, &health::statuses(view.role, view.mode)).await?;
    tokio::spawn(health::report(ha.clone(), health, shutdown.clone()));
    let grpc = router
        .add_service(cluster)
        .add_service(data_nodes)
        .add_service(catalog)
        .add_service(procedures)
        .add_service(assignments)
        .add_service(resources)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listeners.grpc).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );

    ready.set(true);
    info!(
        node_id = %node_id,
        grpc = %grpc_address,
        advertised = %address,
        metrics = %metrics_address.map(|address| address.to_string()).unwrap_or_else(|| "off".into()),
        cluster = %config.cluster,
        mode = %mode,
        backend = %store.backend(),
        store_epoch = %store_epoch,
        "coordinator serving"
    );

    let election = {
        let ha = ha.clone();
        let shutdown = shutdown.clone();
        async move {
            let result = ha.run(shutdown.clone()).await;
            if result.is_err() {
                shutdown.cancel();
            }
            result
        }
    };
    let (served, elected) = tokio::join!(grpc, election);
    let _ = keeper_task.await;
    store.close().await;
    elected?;
    served?;
    info!(node_id = %node_id, "coordinator stopped");
    Ok(())
}
