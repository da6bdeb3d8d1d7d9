//! The coordinator lease row: read, acquire, renew, release.
//!
//! Expiry is judged on the store's clock inside each statement, so coordinator wall clocks
//! never need to agree. Each call runs on the [`Db`] it is given; whoever lent it bounds it.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Row};

use crate::db::Db;
use crate::error::StoreError;
use crate::types::{LeaseHolder, LeaseView, TermGuard};

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl<F> Db<'_, F> {
    /// Creates the cluster's lease row (free, term 0) unless it exists.
    pub async fn ensure_lease_row(&mut self, cluster: &str) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.lease_insert_if_absent.clone()))
            .bind(cluster)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// The lease row and the store's clock, read together.
    pub async fn read_lease(&mut self, cluster: &str) -> Result<LeaseView, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.lease_read.clone()))
            .bind(cluster)
            .fetch_optional(&mut *self.conn)
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

    /// Takes the lease for `holder` if it is still at `expected`'s version and expired on the
    /// store's clock. Returns the new term on success.
    pub async fn try_acquire(
        &mut self,
        cluster: &str,
        expected: &LeaseView,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let acquired = crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.lease_acquire.clone()))
                .bind(holder.node_id.as_str())
                .bind(holder.incarnation.as_str())
                .bind(holder.address.as_str())
                .bind(ttl_ms(ttl))
                .bind(cluster)
                .bind(expected.version),
            self.conn,
        )
        .await?;
        // The update matched the exact version that was read, so the term it wrote is the one
        // after the term that was read.
        Ok(acquired.then_some(expected.term + 1))
    }

    /// Extends the lease of `guard`'s term by `ttl` from now on the store's clock. False when
    /// the term is no longer ours.
    pub async fn renew(&mut self, guard: &TermGuard, ttl: Duration) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.lease_renew.clone()))
                .bind(ttl_ms(ttl))
                .bind(guard.cluster.as_str())
                .bind(crate::to_sql(guard.term))
                .bind(guard.incarnation.as_str()),
            self.conn,
        )
        .await
    }

    /// Ends the lease of `guard`'s term now, so that a successor can take it at once.
    pub async fn release(&mut self, guard: &TermGuard) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.lease_release.clone()))
                .bind(guard.cluster.as_str())
                .bind(crate::to_sql(guard.term))
                .bind(guard.incarnation.as_str()),
            self.conn,
        )
        .await
    }

    /// Locks the lease row, requiring that it is `guard`'s unexpired term.
    pub(crate) async fn check_guard(&mut self, guard: &TermGuard) -> Result<(), StoreError> {
        if crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.lease_guard.clone()))
                .bind(guard.cluster.as_str())
                .bind(crate::to_sql(guard.term))
                .bind(guard.incarnation.as_str()),
            self.conn,
        )
        .await?
        {
            Ok(())
        } else {
            Err(StoreError::StaleTerm { term: guard.term })
        }
    }
}
