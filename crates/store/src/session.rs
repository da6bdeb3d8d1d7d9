//! A connection of the HA loop's own.
//!
//! Renewals must not queue behind other work on the pool, and a renewal that timed out may
//! have left its connection mid-statement: such a connection is closed and the next call
//! opens a fresh one.

use std::time::Duration;

use sqlx::AnyConnection;
use tokio::time::{Instant, timeout_at};

use crate::error::StoreError;
use crate::lease;
use crate::store::Store;
use crate::types::{LeaseHolder, LeaseView, TermGuard};

/// Runs `$body` on the session's connection (opened if needed) under the call's deadline,
/// with `$conn: &mut AnyConnection` and `$sql` the store's statements.
macro_rules! on_session {
    ($session:expr, $op:expr, |$conn:ident, $sql:ident| $body:expr) => {{
        let deadline = Instant::now() + $session.call_timeout;
        let store = $session.store.clone();
        let $sql = store.sql();
        let result = match $session.connection(deadline).await {
            Ok($conn) => timeout_at(deadline, $body).await,
            Err(error) => Ok(Err(error)),
        };
        $session.settle($op, result)
    }};
}

/// The HA loop's dedicated connection; every call has its own timeout.
pub struct LeaseSession {
    store: Store,
    conn: Option<AnyConnection>,
    call_timeout: Duration,
}

impl std::fmt::Debug for LeaseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseSession").field("connected", &self.conn.is_some()).finish()
    }
}

impl Store {
    /// A connection of its own for the HA loop, so that renewals never queue behind other
    /// work on the pool.
    pub fn lease_session(&self, call_timeout: Duration) -> LeaseSession {
        LeaseSession::new(self.clone(), call_timeout)
    }
}

impl LeaseSession {
    pub(crate) fn new(store: Store, call_timeout: Duration) -> Self {
        Self { store, conn: None, call_timeout }
    }

    /// The lease row and the store's clock.
    pub async fn read_lease(&mut self, cluster: &str) -> Result<LeaseView, StoreError> {
        on_session!(self, "read lease", |conn, sql| lease::read(conn, sql, cluster))
    }

    /// See [`Store::try_acquire`].
    pub async fn try_acquire(
        &mut self,
        cluster: &str,
        expected: &LeaseView,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        on_session!(self, "acquire lease", |conn, sql| lease::try_acquire(conn, sql, cluster, expected, holder, ttl))
    }

    /// See [`Store::renew`].
    pub async fn renew(&mut self, guard: &TermGuard, ttl: Duration) -> Result<bool, StoreError> {
        on_session!(self, "renew lease", |conn, sql| lease::renew(conn, sql, guard, ttl))
    }

    /// See [`Store::release`].
    pub async fn release(&mut self, guard: &TermGuard) -> Result<bool, StoreError> {
        on_session!(self, "release lease", |conn, sql| lease::release(conn, sql, guard))
    }

    async fn connection(&mut self, deadline: Instant) -> Result<&mut AnyConnection, StoreError> {
        if self.conn.is_none() {
            let conn = match timeout_at(deadline, self.store.connect_one()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(source)) => {
                    return Err(StoreError::Database { op: "connect", source });
                }
                Err(_) => {
                    return Err(StoreError::Timeout { op: "connect", after: self.call_timeout });
                }
            };
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connection was just opened"))
    }

    fn settle<T>(
        &mut self,
        op: &'static str,
        result: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.conn = None;
                Err(error.in_op(op))
            }
            Err(_) => {
                // Dropping the connection closes it; it may be mid-statement.
                self.conn = None;
                Err(StoreError::Timeout { op, after: self.call_timeout })
            }
        }
    }
}
