//! A connection of the HA loop's own.
//!
//! Renewals must not queue behind other work on the pool, and a renewal that timed out may
//! have left its connection mid-statement: such a connection is closed and the next call
//! opens a fresh one.

use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe};
use tokio::time::{Instant, timeout_at};

use crate::backend::Backend;
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
            let opened = async {
                let mut conn = self.store.connect_one().await?;
                bound_lock_waits(&mut conn, self.store.backend(), self.call_timeout).await?;
                Ok::<_, sqlx::Error>(conn)
            };
            let conn = match timeout_at(deadline, opened).await {
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

/// Bounds how long a statement of the session waits for a lock by the session's own call
/// timeout, shorter than the pool's. A statement whose call timed out is not always stopped
/// with it (SQLite's runs on in its connection's thread; a server's runs on until the server
/// notices the client is gone): were its lock wait longer than the call, a renewal or an
/// acquire its caller gave up on could still queue for the lock and commit afterwards.
async fn bound_lock_waits(
    conn: &mut AnyConnection,
    backend: Backend,
    call_timeout: Duration,
) -> Result<(), sqlx::Error> {
    let ms = call_timeout.as_millis().max(1);
    let statements = match backend {
        Backend::Sqlite => vec![format!("PRAGMA busy_timeout = {ms}")],
        Backend::Postgres => vec![format!("SET lock_timeout = {ms}"), format!("SET statement_timeout = {ms}")],
        // InnoDB counts whole seconds, one at least.
        Backend::MySql => vec![format!("SET SESSION innodb_lock_wait_timeout = {}", ms.div_ceil(1000))],
    };
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(&mut *conn).await?;
    }
    Ok(())
}
