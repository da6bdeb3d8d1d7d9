//! The metadata change log, its version counter, the data-node registry, and cluster
//! settings. Writes run inside a guarded transaction ([`crate::GuardedTx`]); reads on the pool.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow, Row};

use crate::db::{Db, Guarded};
use crate::error::StoreError;

/// A committed change as stored: its version, a kind for humans, and the encoded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    /// The version it was committed at.
    pub version: u64,
    /// What kind of change (`barrier`, …), for operators reading the table.
    pub kind: String,
    /// The encoded change.
    pub payload: Vec<u8>,
}

/// A registered data node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNodeRow {
    /// The stable node id.
    pub node_id: String,
    /// Its current incarnation.
    pub incarnation: String,
    /// Its address for pushes.
    pub address: String,
    /// When it registered, on the store's clock (ms).
    pub registered_at_ms: i64,
    /// The bucket pools it joined.
    pub pools: Vec<String>,
    /// The resource it registered as (empty for none).
    pub resource_id: String,
}

impl FromRow<'_, AnyRow> for StoredChange {
    /// Read by name, with the columns of [`crate::backend::CHANGE_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(StoredChange {
            version: crate::from_sql(row.try_get("version")?),
            kind: row.try_get("kind")?,
            payload: row.try_get("payload")?,
        })
    }
}

impl FromRow<'_, AnyRow> for DataNodeRow {
    /// Read by name, with the columns of [`crate::backend::DATA_NODE_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(DataNodeRow {
            node_id: row.try_get("node_id")?,
            incarnation: row.try_get("incarnation")?,
            address: row.try_get("address")?,
            registered_at_ms: row.try_get("registered_at_ms")?,
            pools: row
                .try_get::<String, _>("pools")?
                .split(',')
                .filter(|pool| !pool.is_empty())
                .map(str::to_owned)
                .collect(),
            resource_id: row.try_get("resource_id")?,
        })
    }
}

impl<F> Db<'_, F> {
    /// Creates the cluster's metadata version counter (at 0) unless it exists.
    pub async fn ensure_metadata_rows(&mut self, cluster: &str) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.version_insert_if_absent.clone()))
            .bind(cluster)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// The newest committed metadata version.
    pub async fn current_version(&mut self, cluster: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.version_read.clone()))
            .bind(cluster)
            .fetch_optional(&mut *self.conn)
            .await?
            .ok_or_else(|| StoreError::Inconsistent(format!("cluster {cluster:?} has no metadata version row")))?;
        Ok(crate::from_sql(row.try_get("version")?))
    }

    /// Up to `limit` changes after version `after`, oldest first.
    pub async fn changes_since(
        &mut self,
        cluster: &str,
        after: u64,
        limit: u64,
    ) -> Result<Vec<StoredChange>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(self.sql.changes_since.clone()))
            .bind(cluster)
            .bind(after as i64)
            .bind(crate::to_sql(limit))
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(rows.iter().map(StoredChange::from_row).collect::<Result<_, sqlx::Error>>()?)
    }

    /// Every data-node tombstone, as (node id, incarnation).
    pub async fn list_tombstones(&mut self, cluster: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.node_keys(self.sql.tombstone_list.clone(), cluster).await
    }

    /// Every retired incarnation still remembered (its node has not registered again), as
    /// (node id, incarnation).
    pub async fn list_retired_data_nodes(&mut self, cluster: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.node_keys(self.sql.data_node_list_retired.clone(), cluster).await
    }

    /// Every registered data node.
    pub async fn list_data_nodes(&mut self, cluster: &str) -> Result<Vec<DataNodeRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(self.sql.data_node_list.clone()))
            .bind(cluster)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(rows.iter().map(DataNodeRow::from_row).collect::<Result<_, sqlx::Error>>()?)
    }

    /// A cluster setting.
    pub async fn read_setting(&mut self, cluster: &str, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.meta_read.clone()))
            .bind(cluster)
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    /// Every tombstone whose incarnation gave every bucket up, as (node id, incarnation).
    pub async fn list_released_tombstones(&mut self, cluster: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.node_keys(self.sql.tombstone_list_released.clone(), cluster).await
    }

    /// Every tombstone whose incarnation deregistered (it left, rather than being lost), as
    /// (node id, incarnation).
    pub async fn list_left_tombstones(&mut self, cluster: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.node_keys(self.sql.tombstone_list_left.clone(), cluster).await
    }

    /// The (node id, incarnation) rows `statement` selects for `cluster`.
    async fn node_keys(
        &mut self,
        statement: std::sync::Arc<str>,
        cluster: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(statement)).bind(cluster).fetch_all(&mut *self.conn).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("node_id")?, row.try_get("incarnation")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

impl Db<'_, Guarded> {
    /// Appends a change at the next metadata version and returns that version; changes older
    /// than `retention` versions are trimmed in the same transaction.
    pub async fn append_change(
        &mut self,
        cluster: &str,
        kind: &str,
        payload: &[u8],
        retention: u64,
    ) -> Result<u64, StoreError> {
        if !crate::changes_one(sqlx::query(AssertSqlSafe(self.sql.version_bump.clone())).bind(cluster), self.conn)
            .await?
        {
            return Err(StoreError::Inconsistent(format!("cluster {cluster:?} has no metadata version row")));
        }
        let version = self.current_version(cluster).await?;
        sqlx::query(AssertSqlSafe(self.sql.change_insert.clone()))
            .bind(cluster)
            .bind(version as i64)
            .bind(kind)
            .bind(payload.to_vec())
            .execute(&mut *self.conn)
            .await?;
        if version > retention {
            sqlx::query(AssertSqlSafe(self.sql.change_trim.clone()))
                .bind(cluster)
                .bind((version - retention) as i64)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(version)
    }

    /// Registers `node_id` at `incarnation` as a member of `pools`, replacing any earlier
    /// incarnation.
    pub async fn upsert_data_node(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
        address: &str,
        pools: &[String],
        resource_id: &str,
    ) -> Result<(), StoreError> {
        // Pool names are validated like catalog names: no commas.
        let pools = pools.join(",");
        let updated = crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.data_node_update.clone()))
                .bind(incarnation)
                .bind(address)
                .bind(pools.as_str())
                .bind(resource_id)
                .bind(cluster)
                .bind(node_id),
            self.conn,
        )
        .await?;
        if !updated {
            sqlx::query(AssertSqlSafe(self.sql.data_node_insert.clone()))
                .bind(cluster)
                .bind(node_id)
                .bind(incarnation)
                .bind(address)
                .bind(pools.as_str())
                .bind(resource_id)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    /// Retires `node_id` if it is still registered at `incarnation`: it is no longer
    /// registered, and the incarnation is remembered as retired until the node registers
    /// again; false if it was not registered at that incarnation.
    pub async fn retire_data_node(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        crate::changes_incarnation(self.conn, &self.sql.data_node_retire, cluster, node_id, incarnation).await
    }

    /// Keeps `node_id` at `incarnation` as a tombstone: it may still hold a lease.
    pub async fn put_tombstone(&mut self, cluster: &str, node_id: &str, incarnation: &str) -> Result<(), StoreError> {
        // Idempotent: an incarnation put to rest twice has one row.
        self.delete_tombstone(cluster, node_id, incarnation).await?;
        sqlx::query(AssertSqlSafe(self.sql.tombstone_insert.clone()))
            .bind(cluster)
            .bind(node_id)
            .bind(incarnation)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Forgets a tombstone that has provably fenced; false if there was none.
    pub async fn delete_tombstone(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        crate::changes_incarnation(self.conn, &self.sql.tombstone_delete, cluster, node_id, incarnation).await
    }

    /// Writes a cluster setting.
    pub async fn write_setting(&mut self, cluster: &str, name: &str, value: &str) -> Result<(), StoreError> {
        let updated = crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.meta_update.clone())).bind(value).bind(cluster).bind(name),
            self.conn,
        )
        .await?;
        if !updated {
            sqlx::query(AssertSqlSafe(self.sql.meta_insert_if_absent.clone()))
                .bind(cluster)
                .bind(name)
                .bind(value)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    /// Records that a tombstone's incarnation deregistered (it left); false if there is no
    /// such tombstone.
    pub async fn mark_tombstone_left(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        crate::changes_incarnation(self.conn, &self.sql.tombstone_mark_left, cluster, node_id, incarnation).await
    }

    /// Records that a tombstone's incarnation gave every bucket up as it deregistered; false
    /// if there is no such tombstone.
    pub async fn mark_tombstone_released(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        crate::changes_incarnation(self.conn, &self.sql.tombstone_mark_released, cluster, node_id, incarnation).await
    }
}
