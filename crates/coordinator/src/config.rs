//! The coordinator's configuration: one struct tree, every field with a default, and
//! [`CoordinatorConfig::validate`] naming the key that is wrong.
//!
//! The CLI fills it from a TOML file, then `LEASEHOLD_*` environment variables, then flags.

mod resources;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use leasehold_core::lease_timing::LeaseTimings;
use leasehold_core::name::{validate_host_port, validate_id};
use leasehold_core::propagation::PropagationPlan;
use leasehold_core::timing::{default_renew_interval, default_store_timeout};
use leasehold_core::{HaMode, HaTimings};
use leasehold_store::{Backend, StoreOptions, password_file_conflict, redact_url};
use serde::{Deserialize, Serialize};

pub use self::resources::{
    AutoRestartConfig, ContainerConfig, ContainerKind, PLACEHOLDERS, ResourcesConfig, check_placeholders,
};

/// Everything a coordinator needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CoordinatorConfig {
    /// The stable id of this coordinator; keep it across restarts. Defaults to
    /// `coordinator-<port>` of the listen address.
    pub node_id: Option<String>,
    /// The cluster this coordinator belongs to; several clusters may share one store.
    pub cluster: String,
    /// The gRPC listen address.
    pub listen: String,
    /// The address other nodes and clients reach this coordinator at; defaults to the bound
    /// listen address (required when listening on 0.0.0.0 or ::).
    pub advertise_address: Option<String>,
    /// Where `/metrics`, the probes `/healthz` and `/readyz`, and the status page (`/`,
    /// `/api/v1/status`) listen; empty to disable.
    pub metrics_listen: String,
    /// The SQL store.
    pub store: StoreConfig,
    /// Leader election.
    pub ha: HaConfig,
    /// Data-node metadata leases.
    pub metadata: MetadataConfig,
    /// The data-node registry.
    pub datanodes: DataNodesConfig,
    /// The metadata change log.
    pub catalog: CatalogConfig,
    /// Broadcasts of changes to data nodes.
    pub broadcast: BroadcastConfig,
    /// `[assign]`
    pub assign: AssignConfig,
    /// `[resources]`: the resource keeper.
    pub resources: ResourcesConfig,
    /// `[containers.NAME]`: what starts and stops the keeper's processes.
    pub containers: BTreeMap<String, ContainerConfig>,
    /// Logging.
    pub log: LogConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            cluster: "default".to_owned(),
            listen: "127.0.0.1:7400".to_owned(),
            advertise_address: None,
            metrics_listen: "127.0.0.1:7490".to_owned(),
            store: StoreConfig::default(),
            ha: HaConfig::default(),
            metadata: MetadataConfig::default(),
            assign: AssignConfig::default(),
            resources: ResourcesConfig::default(),
            containers: BTreeMap::new(),
            datanodes: DataNodesConfig::default(),
            catalog: CatalogConfig::default(),
            broadcast: BroadcastConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `[store]`
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// `sqlite://PATH` (created if missing), `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` or
    /// `mysql://USER[:PASSWORD]@HOST[:PORT]/DB`. A password here must be percent-encoded;
    /// `password-file` keeps it out of the URL altogether.
    pub url: String,
    /// A file holding the store password (a trailing line break is ignored), read at start;
    /// the URL then has none. Not for SQLite.
    pub password_file: Option<PathBuf>,
    /// The limit on one store call outside the HA loop.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// How long a statement waits for a row lock.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// How long the server lets a session sit idle inside a transaction.
    #[serde(with = "humantime_serde")]
    pub idle_transaction_timeout: Duration,
    /// The most pooled connections.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let defaults = StoreOptions::new("sqlite://leasehold-data/leasehold.db");
        Self {
            url: defaults.url,
            password_file: defaults.password_file,
            call_timeout: defaults.call_timeout,
            lock_timeout: defaults.lock_timeout,
            idle_transaction_timeout: defaults.idle_transaction_timeout,
            max_connections: defaults.max_connections,
        }
    }
}

impl StoreConfig {
    /// The options the store is opened with.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            url: self.url.clone(),
            password_file: self.password_file.clone(),
            call_timeout: self.call_timeout,
            lock_timeout: self.lock_timeout,
            idle_transaction_timeout: self.idle_transaction_timeout,
            max_connections: self.max_connections,
        }
    }
}

// The store options' own `{:?}`, which shows the URL redacted.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.options().fmt(f)
    }
}

/// `[ha]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HaConfig {
    /// `auto`, `master`, `standby`, `hot-standby`, `hot-backup` or `disabled`.
    pub mode: HaMode,
    /// Election priority: after an expiry the highest-priority live candidate wins.
    pub priority: i32,
    /// How long an acquire or renewal keeps the lease, on the store's clock.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the leader renews; defaults to a third of the TTL.
    #[serde(with = "humantime_serde::option")]
    pub renew_interval: Option<Duration>,
    /// Subtracted from the leader's local hold.
    #[serde(with = "humantime_serde")]
    pub margin: Duration,
    /// The extra wait per rank after an expiry.
    #[serde(with = "humantime_serde")]
    pub priority_step: Duration,
    /// The limit on every store call of the HA loop; defaults to an eighth of the TTL, at
    /// most 500 ms, so that two renewals can fail before the leader's hold ends.
    #[serde(with = "humantime_serde::option")]
    pub store_timeout: Option<Duration>,
    /// How often a follower re-reads the lease row; bounds the takeover after a graceful
    /// release. Keep it at or below `priority-step` so that priority holds after a release.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for HaConfig {
    fn default() -> Self {
        let timings = HaTimings::default();
        Self {
            mode: HaMode::Auto,
            priority: 0,
            lease_ttl: timings.lease_ttl,
            renew_interval: None,
            margin: timings.margin,
            priority_step: timings.priority_step,
            store_timeout: None,
            poll_interval: timings.poll_interval,
        }
    }
}

/// `[metadata]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetadataConfig {
    /// The allowed clock-rate drift `ρ` of any clock (0.01 is 1%).
    pub clock_drift: f64,
    /// `T_fence`: how long a data node serves after the send time of its last successful
    /// heartbeat. It must exceed the coordinator failover time.
    #[serde(with = "humantime_serde")]
    pub lease_fence: Duration,
    /// How often data nodes heartbeat (the agents' own setting; validated here against the fence).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The deadline of one heartbeat, below the interval.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Added to the drift-stretched fence before a broadcast proceeds past a silent node.
    #[serde(with = "humantime_serde")]
    pub proceed_margin: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        let lease = LeaseTimings::default();
        Self {
            clock_drift: lease.clock_drift,
            lease_fence: lease.fence,
            heartbeat_interval: lease.heartbeat_interval,
            heartbeat_timeout: lease.heartbeat_timeout,
            proceed_margin: lease.proceed_margin,
        }
    }
}

/// `[datanodes]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataNodesConfig {
    /// An incarnation not heard from for this long is evicted: it no longer counts for
    /// broadcasts (it has long fenced), and when it comes back it is told to start a new
    /// incarnation. At least `T_proceed`.
    #[serde(with = "humantime_serde")]
    pub evict_after: Duration,
}

impl Default for DataNodesConfig {
    fn default() -> Self {
        Self { evict_after: Duration::from_secs(600) }
    }
}

/// `[assign]`: bucket pools and their assignment to data nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssignConfig {
    /// The number of buckets of a pool created without one (1 to 65536).
    pub bucket_count: u32,
    /// How often the leader runs an assignment pass over every pool, besides the pass that
    /// every membership change starts at once.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A pool member not heard from for this long is offline: its buckets are revoked (and
    /// move once it has provably fenced). At least `T_proceed`.
    #[serde(with = "humantime_serde")]
    pub offline_timeout: Duration,
    /// Pools every leader creates when the store lacks them (`[[assign.pools]]` with `name`
    /// and an optional `bucket-count`). Deleting one through the API lasts only until the
    /// next leader: remove it here too.
    pub pools: Vec<PoolConfig>,
}

/// `[[assign.pools]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolConfig {
    /// The pool's name.
    pub name: String,
    /// Its bucket count; `assign.bucket-count` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_count: Option<u32>,
}

impl Default for AssignConfig {
    fn default() -> Self {
        Self {
            bucket_count: leasehold_core::buckets::DEFAULT_BUCKET_COUNT,
            interval: Duration::from_secs(30),
            offline_timeout: Duration::from_secs(60),
            pools: Vec::new(),
        }
    }
}

/// `[catalog]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogConfig {
    /// How many changes the store and the leader keep; an agent further behind resyncs from
    /// a full snapshot.
    pub change_retention: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self { change_retention: 10_000 }
    }
}

/// `[broadcast]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BroadcastConfig {
    /// The pause after the first round of pushes; it doubles up to four times this.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// Give up (a bug) after this long. Defaults to `T_proceed` + `ha.lease-ttl` + 5 s.
    #[serde(with = "humantime_serde::option")]
    pub budget: Option<Duration>,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self { retry_interval: Duration::from_millis(500), budget: None }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `leasehold_coordinator=debug,info`; `RUST_LOG`
    /// wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".to_owned() }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration that cannot work: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// The key to change.
    pub key: String,
    /// What is wrong, with the numbers.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }
}

impl CoordinatorConfig {
    /// The HA timings, with the renew interval and the store timeout defaulted from the TTL.
    pub fn ha_timings(&self) -> HaTimings {
        HaTimings {
            lease_ttl: self.ha.lease_ttl,
            renew_interval: self.ha.renew_interval.unwrap_or(default_renew_interval(self.ha.lease_ttl)),
            margin: self.ha.margin,
            priority_step: self.ha.priority_step,
            store_timeout: self.ha.store_timeout.unwrap_or(default_store_timeout(self.ha.lease_ttl)),
            poll_interval: self.ha.poll_interval,
            clock_drift: self.metadata.clock_drift,
        }
    }

    /// The data-node lease timings.
    pub fn lease_timings(&self) -> LeaseTimings {
        LeaseTimings {
            fence: self.metadata.lease_fence,
            heartbeat_interval: self.metadata.heartbeat_interval,
            heartbeat_timeout: self.metadata.heartbeat_timeout,
            proceed_margin: self.metadata.proceed_margin,
            clock_drift: self.metadata.clock_drift,
        }
    }

    /// The broadcast plan for a cluster whose largest fence ever granted is `largest_fence`.
    pub fn propagation_plan(&self, largest_fence: Duration) -> PropagationPlan {
        let proceed_after = self.lease_timings().proceed_after(largest_fence);
        PropagationPlan {
            retry_interval: self.broadcast.retry_interval,
            max_retry_interval: self.broadcast.retry_interval * 4,
            budget: self.broadcast.budget.unwrap_or(proceed_after + self.ha.lease_ttl + Duration::from_secs(5)),
        }
    }

    /// The store options.
    pub fn store_options(&self) -> StoreOptions {
        self.store.options()
    }

    /// The node id, defaulted from the listen port.
    pub fn effective_node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let port = self.listen.rsplit(':').next().unwrap_or("7400");
            format!("coordinator-{port}")
        })
    }

    /// Checks every setting, naming the first key that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_id("node id", &self.effective_node_id())
            .map_err(|error| ConfigError::new("node-id", error.to_string()))?;
        validate_id("cluster name", &self.cluster).map_err(|error| ConfigError::new("cluster", error.to_string()))?;
        // Host names resolve when bound: `localhost:7400` is as good as `127.0.0.1:7400`.
        validate_host_port(&self.listen).map_err(|error| ConfigError::new("listen", error))?;
        if !self.metrics_listen.is_empty() {
            validate_host_port(&self.metrics_listen).map_err(|error| ConfigError::new("metrics-listen", error))?;
        }
        if let Some(address) = &self.advertise_address
            && (address.is_empty() || address.contains("://") || !address.contains(':'))
        {
            return Err(ConfigError::new("advertise-address", format!("{address:?} is not HOST:PORT")));
        }
        if Backend::of_url(&self.store.url).is_none() {
            return Err(ConfigError::new(
                "store.url",
                format!(
                    "{} has no known scheme; expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB",
                    redact_url(&self.store.url)
                ),
            ));
        }
        if self.store.password_file.is_some()
            && let Some(conflict) = password_file_conflict(&self.store.url)
        {
            return Err(ConfigError::new("store.password-file", conflict));
        }
        for (key, value) in [
            ("store.call-timeout", self.store.call_timeout),
            ("store.lock-timeout", self.store.lock_timeout),
            ("store.idle-transaction-timeout", self.store.idle_transaction_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be above zero"));
            }
        }
        if self.store.max_connections < 2 {
            return Err(ConfigError::new("store.max-connections", "must be at least 2"));
        }
        let ha = self.ha_timings();
        ha.validate().map_err(|error| ConfigError::new(error.key, error.message))?;
        self.lease_timings().validate(&ha).map_err(|error| ConfigError::new(error.key, error.message))?;
        let proceed_after = self.lease_timings().proceed_after(self.metadata.lease_fence);
        if self.datanodes.evict_after < proceed_after {
            return Err(ConfigError::new(
                "datanodes.evict-after",
                format!(
                    "{:?} is below T_proceed {proceed_after:?}: a node evicted sooner might still hold a lease",
                    self.datanodes.evict_after
                ),
            ));
        }
        if !(1..=leasehold_core::buckets::MAX_BUCKET_COUNT).contains(&self.assign.bucket_count) {
            return Err(ConfigError::new(
                "assign.bucket-count",
                format!(
                    "{} is not between 1 and {}",
                    self.assign.bucket_count,
                    leasehold_core::buckets::MAX_BUCKET_COUNT
                ),
            ));
        }
        for (index, pool) in self.assign.pools.iter().enumerate() {
            let key = format!("assign.pools[{index}]");
            leasehold_core::buckets::validate_pool_name(&format!("{key}.name"), &pool.name)
                .map_err(|error| ConfigError::new(&key, error.to_string()))?;
            if let Some(count) = pool.bucket_count {
                leasehold_core::buckets::validate_bucket_count(&format!("{key}.bucket-count"), count)
                    .map_err(|error| ConfigError::new(&key, error.to_string()))?;
            }
            if self.assign.pools[..index].iter().any(|earlier| earlier.name == pool.name) {
                return Err(ConfigError::new(&key, format!("pool {:?} is configured twice", pool.name)));
            }
        }
        if self.assign.interval.is_zero() {
            return Err(ConfigError::new("assign.interval", "must be above zero"));
        }
        if self.assign.offline_timeout < proceed_after {
            return Err(ConfigError::new(
                "assign.offline-timeout",
                format!(
                    "{:?} is below T_proceed {proceed_after:?}: a member counted offline sooner might still hold a lease",
                    self.assign.offline_timeout
                ),
            ));
        }
        self.resources.validate()?;
        resources::validate_containers(&self.containers)?;
        if let Some(budget) = self.broadcast.budget {
            // A verdict can need T_proceed after a publication, plus the promotion floor after a
            // failover: a smaller budget fails broadcasts that would have settled.
            let proceed_after = self.lease_timings().proceed_after(self.metadata.lease_fence);
            let needed = proceed_after + ha.lease_upper_bound();
            if budget < needed {
                return Err(ConfigError::new(
                    "broadcast.budget",
                    format!(
                        "{budget:?} is below what a broadcast's verdict can need: T_proceed {proceed_after:?} + the promotion floor {:?} = {needed:?}",
                        ha.lease_upper_bound()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
