//! Containers: what starts and stops the resource keeper's processes (DESIGN §7).
//!
//! A container is configured on the coordinators (`[containers.NAME]`). A `local` one spawns a
//! command on the host of the coordinator it names, and only that coordinator ever starts or
//! stops its processes; an `external` one belongs to something else (Kubernetes, systemd) and
//! opts out of restarts.

mod local;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use leasehold_core::keeper::Support;

pub use self::local::LocalContainer;
use crate::config::{ContainerConfig, ContainerKind};

/// A boxed future, so that containers of different kinds sit behind one trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a process is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The resource's id (also its data node's node id).
    pub resource_id: String,
    /// Its group.
    pub group: String,
    /// This start's attempt id; the data node presents it at registration.
    pub attempt_id: String,
    /// The group's properties overlaid by the resource's.
    pub properties: BTreeMap<String, String>,
    /// The coordinators' addresses, comma separated.
    pub coordinators: String,
}

/// What a container recorded of a process it started (`pid`, `pid_start`, `boot_id`, `log`):
/// enough to find exactly that process again, never another one that reused its pid.
pub type ProcessRecord = BTreeMap<String, String>;

/// Why a container could not start or stop a process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContainerError(pub String);

/// Something that starts and stops resource processes.
pub trait Container: Send + Sync + std::fmt::Debug {
    /// Starts a process for `launch`; answers what is needed to find it again.
    fn start<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<ProcessRecord, ContainerError>>;
    /// Stops the process `record` names, if it still runs: politely, then by force.
    fn stop<'a>(&'a self, record: &'a ProcessRecord) -> BoxFuture<'a, Result<(), ContainerError>>;
    /// Whether the process `record` names still runs (the same process, not a reused pid).
    fn is_alive(&self, record: &ProcessRecord) -> bool;
    /// Whether the keeper may start this container's processes again.
    fn supports_auto_restart(&self) -> bool;
    /// The coordinator that runs its processes, if Leasehold runs them at all.
    fn node(&self) -> Option<&str>;
}

/// A container whose processes are managed elsewhere: Leasehold never starts, restarts or
/// stops them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExternalContainer;

impl Container for ExternalContainer {
    fn start<'a>(&'a self, _launch: &'a Launch) -> BoxFuture<'a, Result<ProcessRecord, ContainerError>> {
        Box::pin(async { Err(ContainerError("an external container's processes are started elsewhere".into())) })
    }

    fn stop<'a>(&'a self, _record: &'a ProcessRecord) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(async { Ok(()) })
    }

    fn is_alive(&self, _record: &ProcessRecord) -> bool {
        false
    }

    fn supports_auto_restart(&self) -> bool {
        false
    }

    fn node(&self) -> Option<&str> {
        None
    }
}

/// Every configured container, by name.
#[derive(Debug, Clone, Default)]
pub struct Containers {
    by_name: BTreeMap<String, Arc<dyn Container>>,
}

impl Containers {
    /// The containers of the configuration.
    pub fn from_config(configs: &BTreeMap<String, ContainerConfig>) -> Self {
        let by_name = configs
            .iter()
            .map(|(name, config)| {
                let container: Arc<dyn Container> = match config.kind {
                    ContainerKind::Local => Arc::new(LocalContainer::new(config.clone())),
                    ContainerKind::External => Arc::new(ExternalContainer),
                };
                (name.clone(), container)
            })
            .collect();
        Self { by_name }
    }

    /// The container called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Container>> {
        self.by_name.get(name)
    }

    /// Whether a container called `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// What each container can do for the keeper.
    pub fn support(&self) -> BTreeMap<String, Support> {
        self.by_name
            .iter()
            .map(|(name, container)| {
                let support = if container.supports_auto_restart() { Support::Restarts } else { Support::OptedOut };
                (name.clone(), support)
            })
            .collect()
    }

    /// The names of the containers that coordinator `node_id` runs.
    pub fn run_by(&self, node_id: &str) -> Vec<String> {
        self.by_name
            .iter()
            .filter(|(_, container)| container.node() == Some(node_id))
            .map(|(name, _)| name.clone())
            .collect()
    }
}
