//! [`Db`]: one connection and the backend's statements, on which every store call is written
//! once.
//!
//! A `Db` is only ever lent out, already bounded by its call's deadline: by [`Store::run`] on a
//! pool connection, by [`LeaseSession::run`] on the HA loop's own connection, and by
//! [`GuardedTx::run`] inside a term-guarded transaction. The calls that write metadata exist
//! only on `Db<'_, Guarded>`, so nothing can make them outside the fence.
//!
//! [`Store::run`]: crate::Store::run
//! [`LeaseSession::run`]: crate::LeaseSession::run
//! [`GuardedTx::run`]: crate::GuardedTx::run

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::backend::{Backend, Statements};
use crate::error::StoreError;

/// A connection, the backend's statements, and whether the calls run behind the term guard.
/// The calls themselves are grouped by table in [`crate::lease`], [`crate::nodes`],
/// [`crate::metadata`], [`crate::catalog`] and [`crate::buckets`].
pub struct Db<'c, F = Unguarded> {
    pub(crate) conn: &'c mut AnyConnection,
    pub(crate) sql: &'c Statements,
    pub(crate) backend: Backend,
    pub(crate) fence: F,
}

/// A [`Db`] outside any guarded transaction: reads, the lease row and the node registry.
#[derive(Debug, Clone, Copy)]
pub struct Unguarded;

/// A [`Db`] inside a term-guarded transaction: metadata writes, made in `term`.
#[derive(Debug, Clone, Copy)]
pub struct Guarded {
    pub(crate) term: u64,
}

impl<F: std::fmt::Debug> std::fmt::Debug for Db<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).field("fence", &self.fence).finish()
    }
}

impl<'c, F> Db<'c, F> {
    pub(crate) fn new(conn: &'c mut AnyConnection, sql: &'c Statements, backend: Backend, fence: F) -> Self {
        Self { conn, sql, backend, fence }
    }

    /// A plain `SELECT 1` round trip: the baseline of every benchmark.
    pub async fn select_one(&mut self) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.select_one.clone())).fetch_one(&mut *self.conn).await?;
        Ok(())
    }

    /// The store's clock, in milliseconds since the Unix epoch.
    pub async fn now_ms(&mut self) -> Result<i64, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.now.clone())).fetch_one(&mut *self.conn).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// The cluster's store epoch: random, written once when the cluster is first seen.
    pub async fn store_epoch(&mut self, cluster: &str) -> Result<String, StoreError> {
        let fresh = crate::store::random_hex(8);
        sqlx::query(AssertSqlSafe(self.sql.meta_insert_if_absent.clone()))
            .bind(cluster)
            .bind("store_epoch")
            .bind(fresh.as_str())
            .execute(&mut *self.conn)
            .await?;
        let row = sqlx::query(AssertSqlSafe(self.sql.meta_read.clone()))
            .bind(cluster)
            .bind("store_epoch")
            .fetch_optional(&mut *self.conn)
            .await?;
        let row = row.ok_or_else(|| StoreError::Inconsistent("cluster_meta has no store_epoch".into()))?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// The one text column of the one row `query` selects (a server setting).
    pub(crate) async fn read_text(&mut self, query: &'static str) -> Result<String, StoreError> {
        let row = sqlx::raw_sql(query).fetch_one(&mut *self.conn).await?;
        Ok(row.try_get::<String, _>(0)?)
    }
}
