//! Bucket pools (`bucket_pools`) and bucket ownership (`bucket_assignments`). Writes run
//! inside a guarded transaction, so a deposed leader can neither create a pool nor move a
//! bucket; reads on the pool.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow, Row};

use crate::db::{Db, Guarded};
use crate::error::StoreError;

/// A pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    /// Its name.
    pub name: String,
    /// Its fixed number of buckets.
    pub bucket_count: u32,
    /// When it was created (store clock, ms).
    pub created_at_ms: i64,
    /// Being deleted: its buckets were revoked, and the row goes once they are released.
    pub deleting: bool,
}

/// One bucket's ownership as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    /// The pool.
    pub pool: String,
    /// The bucket.
    pub bucket: u32,
    /// The owner's node id and incarnation; empty when it has none.
    pub node_id: String,
    /// The owner's incarnation; empty when it has none.
    pub incarnation: String,
    /// The epoch of its latest grant.
    pub epoch: u64,
    /// The version of a revoke that has not settled.
    pub revoke_version: Option<u64>,
}

impl FromRow<'_, AnyRow> for PoolRow {
    /// Read by name, with the columns of [`crate::backend::POOL_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(PoolRow {
            name: row.try_get("name")?,
            bucket_count: u32::try_from(row.try_get::<i64, _>("bucket_count")?).unwrap_or(0),
            created_at_ms: row.try_get("created_at_ms")?,
            deleting: row.try_get::<i64, _>("deleting")? != 0,
        })
    }
}

impl FromRow<'_, AnyRow> for AssignmentRow {
    /// Read by name, with the columns of [`crate::backend::ASSIGNMENT_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(AssignmentRow {
            pool: row.try_get("pool")?,
            bucket: u32::try_from(row.try_get::<i64, _>("bucket")?).unwrap_or(u32::MAX),
            node_id: row.try_get("node_id")?,
            incarnation: row.try_get("incarnation")?,
            epoch: crate::from_sql(row.try_get("epoch")?),
            revoke_version: row.try_get::<Option<i64>, _>("revoke_version")?.map(crate::from_sql),
        })
    }
}

impl<F> Db<'_, F> {
    /// Every bucket pool, by name.
    pub async fn list_pools(&mut self, cluster: &str) -> Result<Vec<PoolRow>, StoreError> {
        Ok(sqlx::query_as(AssertSqlSafe(self.sql.pools_list.clone())).bind(cluster).fetch_all(&mut *self.conn).await?)
    }

    /// Every bucket's ownership row, by pool and bucket.
    pub async fn list_assignments(&mut self, cluster: &str) -> Result<Vec<AssignmentRow>, StoreError> {
        Ok(sqlx::query_as(AssertSqlSafe(self.sql.assignments_list.clone()))
            .bind(cluster)
            .fetch_all(&mut *self.conn)
            .await?)
    }
}

impl Db<'_, Guarded> {
    /// Creates a bucket pool; false when one of that name exists (nothing changed).
    pub async fn create_pool(&mut self, cluster: &str, name: &str, bucket_count: u32) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.pool_insert.clone()))
            .bind(cluster)
            .bind(name)
            .bind(i64::from(bucket_count));
        crate::changes_one(query, self.conn).await
    }

    /// Marks a bucket pool as being deleted; false when there is no such pool.
    pub async fn mark_pool_deleting(&mut self, cluster: &str, name: &str) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.pool_mark_deleting.clone())).bind(cluster).bind(name),
            self.conn,
        )
        .await
    }

    /// Deletes a bucket pool's row (its bucket rows stay, keeping their epochs); false when
    /// there was no such pool.
    pub async fn delete_pool(&mut self, cluster: &str, name: &str) -> Result<bool, StoreError> {
        crate::changes_one(sqlx::query(AssertSqlSafe(self.sql.pool_delete.clone())).bind(cluster).bind(name), self.conn)
            .await
    }

    /// Writes one bucket's ownership.
    pub async fn put_assignment(&mut self, cluster: &str, row: &AssignmentRow) -> Result<(), StoreError> {
        let revoke = row.revoke_version.map(crate::to_sql);
        let updated = crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.assignment_update.clone()))
                .bind(row.node_id.as_str())
                .bind(row.incarnation.as_str())
                .bind(crate::to_sql(row.epoch))
                .bind(revoke)
                .bind(cluster)
                .bind(row.pool.as_str())
                .bind(i64::from(row.bucket)),
            self.conn,
        )
        .await?;
        if !updated {
            sqlx::query(AssertSqlSafe(self.sql.assignment_insert.clone()))
                .bind(cluster)
                .bind(row.pool.as_str())
                .bind(i64::from(row.bucket))
                .bind(row.node_id.as_str())
                .bind(row.incarnation.as_str())
                .bind(crate::to_sql(row.epoch))
                .bind(revoke)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }
}
