//! Leasehold's SQL store: SQLite (embedded, the default), PostgreSQL and MySQL/MariaDB
//! behind one API.
//!
//! Every call has its own timeout, and a connection whose statement was cancelled is closed,
//! never returned to the pool. Expiry is judged on the store's clock with millisecond
//! resolution; the coordinators' own safety bounds are measured on their monotonic clocks.
//!
//! # Layout
//! - [`Store`]: the pool, connect, migrations, and [`Store::run`], which lends a [`Db`] on the
//!   pool under the call timeout.
//! - [`db`]: [`Db`], a connection and the statements, on which every store call is written
//!   once; the modules below add the calls of their tables.
//! - [`backend`]: the three dialects and every statement, rendered once per backend.
//! - [`lease`]: the coordinator lease row (`ha_lease`): read, acquire, renew, release.
//! - [`guard`]: term-guarded write transactions, the fence every metadata write goes through.
//! - [`nodes`]: the coordinator registry (`ha_nodes`).
//! - [`metadata`]: the change log and its version counter, data nodes, cluster settings.
//! - [`catalog`]: catalog objects and persisted DDL procedures.
//! - [`stored`]: [`Stored`], a step, state or kind as read, kept as text when this version
//!   does not know it.
//! - [`buckets`]: bucket pools and who owns each bucket.
//! - [`resources`]: the resource keeper's groups and resources.
//! - [`session`]: the HA loop's dedicated connection.
//! - [`migrate`]: embedded, numbered migrations per backend.
//! - [`secret`]: the store password: redacted wherever it is shown, read from a file when
//!   kept out of the URL.

pub mod backend;
pub mod buckets;
pub mod catalog;
pub mod db;
pub mod error;
pub mod guard;
pub mod lease;
pub mod metadata;
pub mod migrate;
pub mod nodes;
pub mod resources;
pub mod secret;
pub mod session;
mod store;
pub mod stored;
pub mod types;

pub use backend::Backend;
pub use buckets::{AssignmentRow, PoolRow};
pub use catalog::{ProcedureRow, StoredObject};
pub use db::{Db, Guarded, Unguarded};
pub use error::StoreError;
pub use guard::GuardedTx;
pub use metadata::{DataNodeRow, StoredChange};
pub use migrate::MigrationSet;
pub use nodes::{NodeList, NodeRegistration, NodeRow, NodeSnapshot};
pub use resources::{GroupRow, ResourceRow};
pub use secret::{password_file_conflict, redact_url};
pub use session::LeaseSession;
pub use store::{Store, StoreOptions, new_incarnation};
pub use stored::{Stored, StoredName, UnknownName};
pub use types::{LeaseHolder, LeaseView, TermGuard, WriteGuard};

/// Runs a conditional update and says whether it changed exactly one row: the answer every
/// fencing, claim and refresh statement needs.
/// A count or version as the stores keep it (a signed 64-bit integer), capped at `i64::MAX`.
pub(crate) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A count or version read from a store; a negative value (never written) reads as 0.
pub(crate) fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) async fn changes_one(
    query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    conn: &mut sqlx::AnyConnection,
) -> Result<bool, crate::error::StoreError> {
    Ok(query.execute(conn).await?.rows_affected() == 1)
}

/// Runs `statement` bound to (cluster, node id, incarnation), in that order, and says
/// whether it changed exactly one row: retiring, stopping, forgetting or marking one
/// incarnation.
pub(crate) async fn changes_incarnation(
    conn: &mut sqlx::AnyConnection,
    statement: &std::sync::Arc<str>,
    cluster: &str,
    node_id: &str,
    incarnation: &str,
) -> Result<bool, crate::error::StoreError> {
    let query = sqlx::query(sqlx::AssertSqlSafe(statement.clone())).bind(cluster).bind(node_id).bind(incarnation);
    changes_one(query, conn).await
}
