//! A connection of the HA loop's own.
//!
//! Renewals must not queue behind other work on the pool, and a renewal that timed out may
//! have left its connection mid-statement: such a connection is closed and the next call
//! opens a fresh one.

use std::time::Duration;

use sqlx::AnyConnection;
use tokio::time::{Instant, timeout_at};

use crate::db::{Db, Unguarded};
use crate::error::StoreError;
use crate::store::Store;

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

    /// Runs `call` on the session's connection (opened first if there is none) under the call
    /// timeout; `op` names the call in its errors. A connection whose statement was cancelled
    /// or failed is closed, and the next call opens a fresh one.
    pub async fn run<T>(
        &mut self,
        op: &'static str,
        call: impl AsyncFnOnce(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.call_timeout;
        let store = self.store.clone();
        let result = match self.connection(deadline).await {
            Ok(conn) => {
                let mut db = Db::new(conn, store.sql(), store.backend(), Unguarded);
                timeout_at(deadline, call(&mut db)).await
            }
            Err(error) => Ok(Err(error)),
        };
        self.settle(op, result)
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
