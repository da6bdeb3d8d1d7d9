//! Term-guarded writes: the primitive every metadata write goes through.
//!
//! A guarded transaction first updates the lease row on the condition that the term and
//! incarnation are the writer's and that the lease is unexpired on the store's clock, and
//! requires that exactly one row changed. That update takes the row's lock, and the lock lasts
//! until the transaction ends, so no acquire can commit between the check and the write: a
//! leader that was paused past its lease (SIGSTOP, a long stall) and resumes cannot write,
//! whatever it believes about its own leadership. SQLite takes the database's write lock with
//! `BEGIN IMMEDIATE`, which serializes the same way.

use tokio::time::timeout_at;

use crate::backend::Backend;
use crate::db::{Db, Guarded, Unguarded};
use crate::error::StoreError;
use crate::store::{Checkout, Store};
use crate::types::WriteGuard;

/// An open term-guarded transaction. Dropping it without [`GuardedTx::commit`] closes its
/// connection, which rolls the transaction back on the server.
pub struct GuardedTx {
    checkout: Option<Checkout>,
    store: Store,
    term: u64,
    /// Dropped with the transaction, which ends its watchdog ([`watch_open_too_long`]).
    _open: tokio::sync::oneshot::Sender<()>,
}

/// A transaction is never meant to outlive its deadline (one call timeout from its begin):
/// every call on it fails after that, and dropping it closes its connection. One still open
/// after three call timeouts holds the store's write lock (on SQLite every writer of every
/// coordinator then waits), so it is reported, naming its term and age.
/// The watchdog's task answers whether it reported.
fn watch_open_too_long(
    term: u64,
    call_timeout: std::time::Duration,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<bool>) {
    let (open, closed) = tokio::sync::oneshot::channel::<()>();
    let limit = call_timeout * 3;
    let watchdog = tokio::spawn(async move {
        tokio::select! {
            _ = closed => false,
            _ = tokio::time::sleep(limit) => {
                tracing::warn!(term, open_for_ms = limit.as_millis() as u64, "a guarded transaction is still open three call timeouts after it began: it holds the store's write lock");
                true
            }
        }
    });
    (open, watchdog)
}

impl std::fmt::Debug for GuardedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedTx").field("term", &self.term).finish()
    }
}

impl Store {
    /// Opens a term-guarded write transaction: the lease row is locked and checked to be
    /// `guard`'s unexpired term before anything else happens. Fails with
    /// [`StoreError::StaleTerm`] otherwise.
    pub async fn begin_guarded(&self, guard: &WriteGuard) -> Result<GuardedTx, StoreError> {
        let checkout = self.checkout("guarded write").await?;
        GuardedTx::begin(checkout, self.backend(), self.clone(), guard).await
    }
}

impl GuardedTx {
    pub(crate) async fn begin(
        mut checkout: Checkout,
        backend: Backend,
        store: Store,
        guard: &WriteGuard,
    ) -> Result<GuardedTx, StoreError> {
        let mut db = Db::new(&mut checkout.conn, store.sql(), backend, Unguarded);
        let result = timeout_at(checkout.deadline, async {
            sqlx::raw_sql(backend.begin_write()).execute(&mut *db.conn).await?;
            match guard {
                WriteGuard::Term(guard) => db.check_guard(guard).await,
                WriteGuard::Standalone => Ok(()),
            }
        })
        .await;
        let term = match guard {
            WriteGuard::Term(guard) => guard.term,
            WriteGuard::Standalone => 0,
        };
        match result {
            Ok(Ok(())) => Ok(GuardedTx {
                checkout: Some(checkout),
                store: store.clone(),
                term,
                _open: watch_open_too_long(term, store.call_timeout()).0,
            }),
            // Close rather than roll back: the connection may be mid-statement.
            Ok(Err(error)) => {
                checkout.conn.close_on_drop();
                Err(error.in_op("guarded write"))
            }
            Err(_) => {
                checkout.conn.close_on_drop();
                Err(StoreError::Timeout { op: "guarded write", after: store.call_timeout() })
            }
        }
    }

    /// Runs `call` inside the transaction, before the transaction's deadline. Its [`Db`] is the
    /// only one with the metadata writes.
    pub async fn run<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut Db<'_, Guarded>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let after = self.store.call_timeout();
        let sql = self.store.sql();
        let fence = Guarded { term: self.term };
        let checkout = self.checkout.as_mut().expect("guarded transaction already finished");
        let mut db = Db::new(&mut checkout.conn, sql, self.store.backend(), fence);
        match timeout_at(checkout.deadline, call(&mut db)).await {
            Ok(result) => result.map_err(|error| error.in_op("guarded write")),
            Err(_) => Err(StoreError::Timeout { op: "guarded write", after }),
        }
    }

    /// Commits the write. The guard's row lock is released only now.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.run(async |db| {
            sqlx::raw_sql("COMMIT").execute(&mut *db.conn).await?;
            Ok(())
        })
        .await?;
        // Committed: the connection is clean and may go back to the pool.
        self.checkout.take();
        Ok(())
    }
}

impl Drop for GuardedTx {
    fn drop(&mut self) {
        if let Some(checkout) = self.checkout.as_mut() {
            checkout.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::watch_open_too_long;

    #[tokio::test(start_paused = true)]
    async fn a_transaction_closed_in_time_is_not_reported() {
        let (open, watchdog) = watch_open_too_long(7, Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(open);
        assert!(!watchdog.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_transaction_open_for_three_call_timeouts_is_reported() {
        let (_open, watchdog) = watch_open_too_long(7, Duration::from_secs(2));
        assert!(watchdog.await.unwrap(), "reported at six seconds");
    }
}
