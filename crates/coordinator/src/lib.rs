//! The Leasehold coordinator: HA election over a SQL lease row and the gRPC services.
//!
//! # Layout
//! - [`server`]: `run(config, listeners, shutdown)`: store, registration, election, gRPC.
//! - [`ha`]: the HA container: registration, follower and leader loops, step-down, modes.
//! - [`cluster_service`]: `leasehold.v1.Cluster`, a thin translation onto [`ha::Ha`].
//! - [`metadata_leader`]: one term's data-node lease state: registry, contacts, change log.
//! - [`metadata_keeper`]: loads that state for every term this node leads.
//! - [`propagator`]: pushes a version to the agents and asks the verdict after each round.
//! - [`datanodes_service`]: `leasehold.v1.DataNodes`, a thin translation onto the above.
//! - [`procedure_runner`]: DDL as persisted procedures, and their resumption on a new leader.
//! - [`locks`]: the hierarchical DDL locks.
//! - [`catalog_service`]: `leasehold.v1.Catalog` and `leasehold.v1.Procedures`.
//! - [`assignments_service`]: `leasehold.v1.Assignments`: bucket pools; the assigner loop keeps them balanced.
//! - [`resource_keeper`]: the leader's loop that restarts dead resources and fills groups;
//!   [`container_runner`]: starts and stops this host's processes; [`resources_service`]:
//!   `leasehold.v1.Resources`.
//! - [`admission`]: the shared budget of calls in flight; lease renewals bypass it.
//! - [`status`]: errors to gRPC statuses with stable `ErrorInfo` reasons, in one place.
//! - [`config`]: the configuration tree and its validation.
//! - [`container`]: what starts and stops the resource keeper's processes (`local`, `external`).
//! - [`metrics`]: metric names and helpers; [`process_metrics`]: the process's own, read at
//!   scrape time; [`http`]: `/metrics` and the probes `/healthz` and `/readyz`;
//!   [`status_page`]: `/` and `/api/v1/status` beside them, what this node knows of the cluster.
//! - [`health`]: which services the gRPC health service reports SERVING, by role and mode.
//! - [`failpoint`]: fault-injection points for tests (compiled in with `failpoints`).

pub mod admission;
mod assigner;
pub mod assignments_service;
pub mod catalog_service;
pub mod cluster_service;
pub mod config;
pub mod container;
pub mod container_runner;
pub mod convert;
pub mod datanodes_service;
pub mod failpoint;
pub mod ha;
pub mod health;
pub mod http;
pub mod locks;
pub mod metadata_keeper;
pub mod metadata_leader;
pub mod metrics;
pub mod procedure_runner;
pub mod process_metrics;
pub mod propagator;
pub mod resource_keeper;
pub mod resources_service;
pub mod server;
pub mod status;
pub mod status_page;

pub use config::CoordinatorConfig;
pub use server::{Listeners, RunError, run};
