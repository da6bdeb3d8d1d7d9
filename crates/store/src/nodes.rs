//! The coordinator registry (`ha_nodes`): one row per stable node id.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow, Row};

use crate::db::Db;
use crate::error::StoreError;

/// What a starting node writes into its registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    /// The cluster.
    pub cluster: String,
    /// The stable node id.
    pub node_id: String,
    /// This process's incarnation.
    pub incarnation: String,
    /// The node's gRPC endpoint.
    pub address: String,
    /// Its HA mode.
    pub mode: String,
    /// Its election priority.
    pub priority: i32,
    /// Its role.
    pub role: String,
}

/// One node's row, as far as claiming its id goes, with the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The row, if the id was ever registered.
    pub row: Option<leasehold_core::node_claim::RegisteredNode>,
    /// The store's clock when read (ms since the Unix epoch).
    pub store_now_ms: i64,
}

/// A registry row as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// The stable node id.
    pub node_id: String,
    /// The owning incarnation; `None` after a clean stop.
    pub incarnation: Option<String>,
    /// The node's gRPC endpoint.
    pub address: String,
    /// Its HA mode, as stored.
    pub mode: String,
    /// Its election priority.
    pub priority: i32,
    /// Its role, as stored.
    pub role: String,
    /// When it last refreshed the row (store clock, ms).
    pub last_seen_ms: i64,
}

/// Every registry row of a cluster, with the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeList {
    /// The rows, ordered by node id.
    pub nodes: Vec<NodeRow>,
    /// The store's clock when read (ms since the Unix epoch).
    pub store_now_ms: i64,
}

fn priority_of(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

impl FromRow<'_, AnyRow> for NodeRow {
    /// Read by name, with the columns of [`crate::backend::NODE_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(NodeRow {
            node_id: row.try_get("node_id")?,
            incarnation: row.try_get("incarnation")?,
            address: row.try_get("address")?,
            mode: row.try_get("mode")?,
            priority: priority_of(row.try_get("priority")?),
            role: row.try_get("role")?,
            last_seen_ms: row.try_get("last_seen_ms")?,
        })
    }
}

impl<F> Db<'_, F> {
    /// This node's registry row, with the store's clock.
    pub async fn read_node(&mut self, cluster: &str, node_id: &str) -> Result<NodeSnapshot, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.node_read.clone()))
            .bind(cluster)
            .bind(node_id)
            .fetch_optional(&mut *self.conn)
            .await?;
        match row {
            Some(row) => Ok(NodeSnapshot {
                row: Some(leasehold_core::node_claim::RegisteredNode {
                    incarnation: row.try_get("incarnation")?,
                    last_seen_ms: row.try_get("last_seen_ms")?,
                }),
                store_now_ms: row.try_get("store_now_ms")?,
            }),
            None => {
                let now = sqlx::query(AssertSqlSafe(self.sql.now.clone())).fetch_one(&mut *self.conn).await?;
                Ok(NodeSnapshot { row: None, store_now_ms: now.try_get(0)? })
            }
        }
    }

    /// Inserts a registry row for a new node id. False when the row exists already.
    pub async fn insert_node(&mut self, node: &NodeRegistration) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.node_insert.clone()))
                .bind(node.cluster.as_str())
                .bind(node.node_id.as_str())
                .bind(node.incarnation.as_str())
                .bind(node.address.as_str())
                .bind(node.mode.as_str())
                .bind(i64::from(node.priority))
                .bind(node.role.as_str()),
            self.conn,
        )
        .await
    }

    /// Takes over a registry row that is still as it was observed. False when it changed.
    pub async fn take_over_node(
        &mut self,
        node: &NodeRegistration,
        observed_incarnation: Option<&str>,
        observed_last_seen_ms: i64,
    ) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.node_take_over.clone()))
                .bind(node.incarnation.as_str())
                .bind(node.address.as_str())
                .bind(node.mode.as_str())
                .bind(i64::from(node.priority))
                .bind(node.role.as_str())
                .bind(node.cluster.as_str())
                .bind(node.node_id.as_str())
                .bind(observed_incarnation.unwrap_or(""))
                .bind(observed_last_seen_ms),
            self.conn,
        )
        .await
    }

    /// Marks this incarnation alive now, in `role`. False when another process owns the id.
    pub async fn refresh_node(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
        role: &str,
    ) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.node_refresh.clone()))
                .bind(role)
                .bind(cluster)
                .bind(node_id)
                .bind(incarnation),
            self.conn,
        )
        .await
    }

    /// Records this node's mode and priority (a non-leader's own settings).
    pub async fn update_node_settings(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
        mode: &str,
        priority: i32,
    ) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.node_update_settings.clone()))
                .bind(mode)
                .bind(i64::from(priority))
                .bind(cluster)
                .bind(node_id)
                .bind(incarnation),
            self.conn,
        )
        .await
    }

    /// Marks this incarnation cleanly stopped, freeing its node id for a restart.
    pub async fn stop_node(&mut self, cluster: &str, node_id: &str, incarnation: &str) -> Result<bool, StoreError> {
        crate::changes_incarnation(self.conn, &self.sql.node_stop, cluster, node_id, incarnation).await
    }

    /// Deletes `node_id`'s row if its process stopped cleanly or has not refreshed it for
    /// `ttl` on the store's clock (decided in the statement, so a node that refreshes at the
    /// same moment keeps its row). False when the row is live or missing.
    pub async fn remove_node(&mut self, cluster: &str, node_id: &str, ttl: Duration) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.node_remove.clone()))
                .bind(cluster)
                .bind(node_id)
                .bind(ttl.as_millis() as i64),
            self.conn,
        )
        .await
    }

    /// Every registry row of the cluster, with the store's clock.
    pub async fn list_nodes(&mut self, cluster: &str) -> Result<NodeList, StoreError> {
        let rows =
            sqlx::query(AssertSqlSafe(self.sql.node_list.clone())).bind(cluster).fetch_all(&mut *self.conn).await?;
        let store_now_ms = match rows.first() {
            Some(row) => row.try_get("store_now_ms")?,
            None => sqlx::query(AssertSqlSafe(self.sql.now.clone())).fetch_one(&mut *self.conn).await?.try_get(0)?,
        };
        let nodes = rows.iter().map(NodeRow::from_row).collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(NodeList { nodes, store_now_ms })
    }
}
