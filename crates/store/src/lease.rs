//! The coordinator lease row: read, acquire, renew, release.
//!
//! Expiry is judged on the store's clock inside each statement, so coordinator wall clocks
//! never need to agree. Each function runs on the connection it is given; the caller bounds it.

use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::backend::Statements;
use crate::error::StoreError;
use crate::types::{LeaseHolder, LeaseView, TermGuard};

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) async fn ensure_row(conn: &mut AnyConnection, sql: &Statements, cluster: &str) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(sql.lease_insert_if_absent.clone())).bind(cluster).execute(&mut *conn).await?;
    Ok(())
}

pub(crate) async fn read(conn: &mut AnyConnection, sql: &Statements, cluster: &str) -> Result<LeaseView, StoreError> {
    let row = sqlx::query(AssertSqlSafe(sql.lease_read.clone()))
        .bind(cluster)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Inconsistent(format!("cluster {cluster:?} has no lease row")))?;
    let node_id: Option<String> = row.try_get("holder_node_id")?;
    let incarnation: Option<String> = row.try_get("holder_incarnation")?;
    let address: Option<String> = row.try_get("holder_address")?;
    let holder = match (node_id, incarnation) {
        (Some(node_id), Some(incarnation)) => {
            Some(LeaseHolder { node_id, incarnation, address: address.unwrap_or_default() })
        }
        _ => None,
    };
    Ok(LeaseView {
        term: crate::from_sql(row.try_get::<i64, _>("term")?),
        holder,
        expires_at_ms: row.try_get("expires_at_ms")?,
        version: row.try_get("version")?,
        store_now_ms: row.try_get("store_now_ms")?,
    })
}

pub(crate) async fn try_acquire(
    conn: &mut AnyConnection,
    sql: &Statements,
    cluster: &str,
    expected: &LeaseView,
    holder: &LeaseHolder,
    ttl: Duration,
) -> Result<Option<u64>, StoreError> {
    let acquired = crate::changes_one(
        sqlx::query(AssertSqlSafe(sql.lease_acquire.clone()))
            .bind(holder.node_id.as_str())
            .bind(holder.incarnation.as_str())
            .bind(holder.address.as_str())
            .bind(ttl_ms(ttl))
            .bind(cluster)
            .bind(expected.version),
        conn,
    )
    .await?;
    // The update matched the exact version that was read, so the term it wrote is the one
    // after the term that was read.
    Ok(acquired.then_some(expected.term + 1))
}

pub(crate) async fn renew(
    conn: &mut AnyConnection,
    sql: &Statements,
    guard: &TermGuard,
    ttl: Duration,
) -> Result<bool, StoreError> {
    crate::changes_one(
        sqlx::query(AssertSqlSafe(sql.lease_renew.clone()))
            .bind(ttl_ms(ttl))
            .bind(guard.cluster.as_str())
            .bind(crate::to_sql(guard.term))
            .bind(guard.incarnation.as_str()),
        conn,
    )
    .await
}

pub(crate) async fn release(conn: &mut AnyConnection, sql: &Statements, guard: &TermGuard) -> Result<bool, StoreError> {
    crate::changes_one(
        sqlx::query(AssertSqlSafe(sql.lease_release.clone()))
            .bind(guard.cluster.as_str())
            .bind(crate::to_sql(guard.term))
            .bind(guard.incarnation.as_str()),
        conn,
    )
    .await
}

pub(crate) async fn check_guard(
    conn: &mut AnyConnection,
    sql: &Statements,
    guard: &TermGuard,
) -> Result<(), StoreError> {
    if crate::changes_one(
        sqlx::query(AssertSqlSafe(sql.lease_guard.clone()))
            .bind(guard.cluster.as_str())
            .bind(crate::to_sql(guard.term))
            .bind(guard.incarnation.as_str()),
        conn,
    )
    .await?
    {
        Ok(())
    } else {
        Err(StoreError::StaleTerm { term: guard.term })
    }
}
