//! A connection of the HA loop's own.
//!
//! Renewals must not queue behind other work on the pool, and a renewal that timed out may
//! have left its connection mid-statement: such a connection is closed and the next call
//! opens a fresh one.

use std::time::Duration;

use sqlx::AnyConnection;
use tokio::time::{Instant, timeout_at};

use crate::error::StoreError;
use crate::guard::TermGuard;
use crate::lease::{self, LeaseHolder, LeaseView};
use crate::store::Store;

/// The HA loop's dedicated connection; every call has its own timeout.
pub struct LeaseSession {
    store: Store,
    conn: Option<AnyConnection>,
    call_timeout: Duration,
}

impl std::fmt::Debug for LeaseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseSession")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl LeaseSession {
    pub(crate) fn new(store: Store, call_timeout: Duration) -> Self {
        Self {
            store,
            conn: None,
            call_timeout,
        }
    }

    /// The lease row and the store's clock.
    pub async fn read_lease(&mut self, cluster: &str) -> Result<LeaseView, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let store = self.store.clone();
        let result = match self.connection(deadline).await {
            Ok(conn) => timeout_at(deadline, lease::read(conn, store.sql(), cluster)).await,
            Err(error) => Ok(Err(error)),
        };
        self.settle("read lease", result)
    }

    /// See [`Store::try_acquire`].
    pub async fn try_acquire(
        &mut self,
        cluster: &str,
        expected: &LeaseView,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let store = self.store.clone();
        let result = match self.connection(deadline).await {
            Ok(conn) => {
                timeout_at(
                    deadline,
                    lease::try_acquire(conn, store.sql(), cluster, expected, holder, ttl),
                )
                .await
            }
            Err(error) => Ok(Err(error)),
        };
        self.settle("acquire lease", result)
    }

    /// See [`Store::renew`].
    pub async fn renew(&mut self, guard: &TermGuard, ttl: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let store = self.store.clone();
        let result = match self.connection(deadline).await {
            Ok(conn) => timeout_at(deadline, lease::renew(conn, store.sql(), guard, ttl)).await,
            Err(error) => Ok(Err(error)),
        };
        self.settle("renew lease", result)
    }

    /// See [`Store::release`].
    pub async fn release(&mut self, guard: &TermGuard) -> Result<bool, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let store = self.store.clone();
        let result = match self.connection(deadline).await {
            Ok(conn) => timeout_at(deadline, lease::release(conn, store.sql(), guard)).await,
            Err(error) => Ok(Err(error)),
        };
        self.settle("release lease", result)
    }

    async fn connection(&mut self, deadline: Instant) -> Result<&mut AnyConnection, StoreError> {
        if self.conn.is_none() {
            let conn = match timeout_at(deadline, self.store.connect_one()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(source)) => {
                    return Err(StoreError::Database {
                        op: "connect",
                        source,
                    });
                }
                Err(_) => {
                    return Err(StoreError::Timeout {
                        op: "connect",
                        after: self.call_timeout,
                    });
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
                Err(StoreError::Timeout {
                    op,
                    after: self.call_timeout,
                })
            }
        }
    }
}
