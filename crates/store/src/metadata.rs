//! The metadata change log, its version counter, the data-node registry, and cluster
//! settings. Writes run inside a guarded transaction ([`crate::GuardedTx`]); reads on the pool.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, FromRow, Row};

use crate::backend::Statements;
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
        })
    }
}

pub(crate) async fn ensure_version_row(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(sql.version_insert_if_absent.clone())).bind(cluster).execute(&mut *conn).await?;
    Ok(())
}

pub(crate) async fn current_version(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
) -> Result<u64, StoreError> {
    let row = sqlx::query(AssertSqlSafe(sql.version_read.clone()))
        .bind(cluster)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Inconsistent(format!("cluster {cluster:?} has no metadata version row")))?;
    Ok(crate::from_sql(row.try_get("version")?))
}

/// Bumps the counter and records the change at the new version, trimming what falls out of
/// the retention window. Runs inside the caller's guarded transaction.
pub(crate) async fn append_change(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    kind: &str,
    payload: &[u8],
    retention: u64,
) -> Result<u64, StoreError> {
    if !crate::changes_one(sqlx::query(AssertSqlSafe(sql.version_bump.clone())).bind(cluster), conn).await? {
        return Err(StoreError::Inconsistent(format!("cluster {cluster:?} has no metadata version row")));
    }
    let version = current_version(conn, sql, cluster).await?;
    sqlx::query(AssertSqlSafe(sql.change_insert.clone()))
        .bind(cluster)
        .bind(version as i64)
        .bind(kind)
        .bind(payload.to_vec())
        .execute(&mut *conn)
        .await?;
    if version > retention {
        sqlx::query(AssertSqlSafe(sql.change_trim.clone()))
            .bind(cluster)
            .bind((version - retention) as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(version)
}

pub(crate) async fn changes_since(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    after: u64,
    limit: u64,
) -> Result<Vec<StoredChange>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(sql.changes_since.clone()))
        .bind(cluster)
        .bind(after as i64)
        .bind(crate::to_sql(limit))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.iter().map(StoredChange::from_row).collect::<Result<_, sqlx::Error>>()?)
}

pub(crate) async fn upsert_data_node(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    node_id: &str,
    incarnation: &str,
    address: &str,
    pools: &[String],
) -> Result<(), StoreError> {
    // Pool names are validated like catalog names: no commas.
    let pools = pools.join(",");
    let updated = crate::changes_one(
        sqlx::query(AssertSqlSafe(sql.data_node_update.clone()))
            .bind(incarnation)
            .bind(address)
            .bind(pools.as_str())
            .bind(cluster)
            .bind(node_id),
        conn,
    )
    .await?;
    if !updated {
        sqlx::query(AssertSqlSafe(sql.data_node_insert.clone()))
            .bind(cluster)
            .bind(node_id)
            .bind(incarnation)
            .bind(address)
            .bind(pools.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn retire_data_node(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    node_id: &str,
    incarnation: &str,
) -> Result<bool, StoreError> {
    crate::changes_incarnation(conn, &sql.data_node_retire, cluster, node_id, incarnation).await
}

pub(crate) async fn put_tombstone(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    node_id: &str,
    incarnation: &str,
) -> Result<(), StoreError> {
    // Idempotent: an incarnation put to rest twice has one row.
    delete_tombstone(conn, sql, cluster, node_id, incarnation).await?;
    sqlx::query(AssertSqlSafe(sql.tombstone_insert.clone()))
        .bind(cluster)
        .bind(node_id)
        .bind(incarnation)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn delete_tombstone(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    node_id: &str,
    incarnation: &str,
) -> Result<bool, StoreError> {
    crate::changes_incarnation(conn, &sql.tombstone_delete, cluster, node_id, incarnation).await
}

pub(crate) async fn list_tombstones(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    node_keys(conn, &sql.tombstone_list, cluster).await
}

pub(crate) async fn list_retired_data_nodes(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    node_keys(conn, &sql.data_node_list_retired, cluster).await
}

pub(crate) async fn list_data_nodes(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
) -> Result<Vec<DataNodeRow>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(sql.data_node_list.clone())).bind(cluster).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(DataNodeRow::from_row).collect::<Result<_, sqlx::Error>>()?)
}

pub(crate) async fn read_setting(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let row =
        sqlx::query(AssertSqlSafe(sql.meta_read.clone())).bind(cluster).bind(name).fetch_optional(&mut *conn).await?;
    Ok(row.map(|row| row.try_get("value")).transpose()?)
}

pub(crate) async fn write_setting(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    name: &str,
    value: &str,
) -> Result<(), StoreError> {
    let updated = crate::changes_one(
        sqlx::query(AssertSqlSafe(sql.meta_update.clone())).bind(value).bind(cluster).bind(name),
        conn,
    )
    .await?;
    if !updated {
        sqlx::query(AssertSqlSafe(sql.meta_insert_if_absent.clone()))
            .bind(cluster)
            .bind(name)
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Marks a tombstone as having given every bucket up; false when there is no such tombstone.
pub(crate) async fn mark_tombstone_released(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    node_id: &str,
    incarnation: &str,
) -> Result<bool, StoreError> {
    crate::changes_incarnation(conn, &sql.tombstone_mark_released, cluster, node_id, incarnation).await
}

/// Every tombstone that gave every bucket up, as (node id, incarnation).
pub(crate) async fn list_released_tombstones(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    node_keys(conn, &sql.tombstone_list_released, cluster).await
}

/// The (node id, incarnation) rows `statement` selects for `cluster`.
async fn node_keys(
    conn: &mut AnyConnection,
    statement: &std::sync::Arc<str>,
    cluster: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(statement.clone())).bind(cluster).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("node_id")?, row.try_get("incarnation")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}
