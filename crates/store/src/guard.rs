//! Term-guarded writes: the primitive every metadata write goes through.
//!
//! A guarded transaction first updates the lease row on the condition that the term and
//! incarnation are the writer's and that the lease is unexpired on the store's clock, and
//! requires that exactly one row changed. That update takes the row's lock, and the lock lasts
//! until the transaction ends, so no acquire can commit between the check and the write: a
//! leader that was paused past its lease (SIGSTOP, a long stall) and resumes cannot write,
//! whatever it believes about its own leadership. SQLite takes the database's write lock with
//! `BEGIN IMMEDIATE`, which serializes the same way.

use sqlx::AnyConnection;
use tokio::time::timeout_at;

use crate::backend::{Backend, Statements};
use crate::buckets::{self, AssignmentRow};
use crate::catalog::{self, ProcedureRow, StoredObject};
use crate::error::StoreError;
use crate::lease;
use crate::metadata;
use crate::nodes;
use crate::store::{Checkout, Store};
use crate::types::WriteGuard;

/// An open term-guarded transaction. Dropping it without [`GuardedTx::commit`] closes its
/// connection, which rolls the transaction back on the server.
pub struct GuardedTx {
    checkout: Option<Checkout>,
    store: Store,
    term: u64,
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
        let sql = store.sql();
        let result = timeout_at(checkout.deadline, async {
            sqlx::raw_sql(backend.begin_write()).execute(&mut *checkout.conn).await?;
            match guard {
                WriteGuard::Term(guard) => lease::check_guard(&mut checkout.conn, sql, guard).await,
                WriteGuard::Standalone => Ok(()),
            }
        })
        .await;
        let term = match guard {
            WriteGuard::Term(guard) => guard.term,
            WriteGuard::Standalone => 0,
        };
        match result {
            Ok(Ok(())) => Ok(GuardedTx { checkout: Some(checkout), store: store.clone(), term }),
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

    /// Records a node's mode and priority inside the guarded transaction.
    pub async fn update_node_settings(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
        mode: &str,
        priority: i32,
    ) -> Result<bool, StoreError> {
        self.run(|conn, sql| nodes::update_settings(conn, sql, cluster, node_id, incarnation, mode, priority)).await
    }

    /// Appends a change at the next metadata version and returns that version; changes older
    /// than `retention` versions are trimmed in the same transaction.
    pub async fn append_change(
        &mut self,
        cluster: &str,
        kind: &str,
        payload: &[u8],
        retention: u64,
    ) -> Result<u64, StoreError> {
        self.run(|conn, sql| metadata::append_change(conn, sql, cluster, kind, payload, retention)).await
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
    ) -> Result<(), StoreError> {
        self.run(|conn, sql| metadata::upsert_data_node(conn, sql, cluster, node_id, incarnation, address, pools)).await
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
        self.run(|conn, sql| metadata::retire_data_node(conn, sql, cluster, node_id, incarnation)).await
    }

    /// Keeps `node_id` at `incarnation` as a tombstone: it may still hold a lease.
    pub async fn put_tombstone(&mut self, cluster: &str, node_id: &str, incarnation: &str) -> Result<(), StoreError> {
        self.run(|conn, sql| metadata::put_tombstone(conn, sql, cluster, node_id, incarnation)).await
    }

    /// Records that a tombstone's incarnation gave every bucket up as it deregistered; false
    /// if there is no such tombstone.
    pub async fn mark_tombstone_released(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        self.run(|conn, sql| metadata::mark_tombstone_released(conn, sql, cluster, node_id, incarnation)).await
    }

    /// Forgets a tombstone that has provably fenced; false if there was none.
    pub async fn delete_tombstone(
        &mut self,
        cluster: &str,
        node_id: &str,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        self.run(|conn, sql| metadata::delete_tombstone(conn, sql, cluster, node_id, incarnation)).await
    }

    /// Writes a cluster setting.
    pub async fn write_setting(&mut self, cluster: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.run(|conn, sql| metadata::write_setting(conn, sql, cluster, name, value)).await
    }

    /// Reads a cluster setting inside the transaction.
    pub async fn read_setting(&mut self, cluster: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.run(|conn, sql| metadata::read_setting(conn, sql, cluster, name)).await
    }

    /// Writes a catalog object (insert or replace).
    pub async fn put_object(&mut self, cluster: &str, object: &StoredObject) -> Result<(), StoreError> {
        self.run(|conn, sql| catalog::put_object(conn, sql, cluster, object)).await
    }

    /// Removes a catalog object.
    pub async fn remove_object(
        &mut self,
        cluster: &str,
        kind: &str,
        database: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        self.run(|conn, sql| catalog::remove_object(conn, sql, cluster, kind, database, name)).await
    }

    /// Removes a database's row and every object in it.
    pub async fn remove_database_objects(&mut self, cluster: &str, database: &str) -> Result<(), StoreError> {
        self.run(|conn, sql| catalog::remove_database_objects(conn, sql, cluster, database)).await
    }

    /// Records a new procedure. Fails on a duplicate request id.
    pub async fn insert_procedure(&mut self, cluster: &str, procedure: &ProcedureRow) -> Result<(), StoreError> {
        self.run(|conn, sql| catalog::insert_procedure(conn, sql, cluster, procedure)).await
    }

    /// Moves a procedure to `step` and `state`.
    pub async fn update_procedure(
        &mut self,
        cluster: &str,
        id: u64,
        step: &str,
        state: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        // A procedure that moves on has not finished: it has no result version yet.
        self.finish_procedure(cluster, id, step, state, error, 0).await
    }

    /// Moves a procedure to its last `step` and `state`, recording the version every answer
    /// for it reports from now on.
    pub async fn finish_procedure(
        &mut self,
        cluster: &str,
        id: u64,
        step: &str,
        state: &str,
        error: &str,
        result_version: u64,
    ) -> Result<bool, StoreError> {
        let term = self.term;
        self.run(|conn, sql| {
            catalog::update_procedure(conn, sql, cluster, id, step, state, error, result_version, term)
        })
        .await
    }

    /// Creates a bucket pool; false when one of that name exists (nothing changed).
    pub async fn create_pool(&mut self, cluster: &str, name: &str, bucket_count: u32) -> Result<bool, StoreError> {
        self.run(|conn, sql| buckets::insert_pool(conn, sql, cluster, name, bucket_count)).await
    }

    /// Marks a bucket pool as being deleted; false when there is no such pool.
    pub async fn mark_pool_deleting(&mut self, cluster: &str, name: &str) -> Result<bool, StoreError> {
        self.run(|conn, sql| buckets::mark_pool_deleting(conn, sql, cluster, name)).await
    }

    /// Deletes a bucket pool's row (its bucket rows stay, keeping their epochs); false when
    /// there was no such pool.
    pub async fn delete_pool(&mut self, cluster: &str, name: &str) -> Result<bool, StoreError> {
        self.run(|conn, sql| buckets::delete_pool(conn, sql, cluster, name)).await
    }

    /// Writes one bucket's ownership.
    pub async fn put_assignment(&mut self, cluster: &str, row: &AssignmentRow) -> Result<(), StoreError> {
        self.run(|conn, sql| buckets::put_assignment(conn, sql, cluster, row)).await
    }

    /// Commits the write. The guard's row lock is released only now.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.run(|conn, _| async move {
            sqlx::raw_sql("COMMIT").execute(conn).await?;
            Ok(())
        })
        .await?;
        // Committed: the connection is clean and may go back to the pool.
        self.checkout.take();
        Ok(())
    }

    /// Runs `work` on the transaction's connection, with the store's statements, before the
    /// transaction's deadline.
    async fn run<'a, T, F, Fut>(&'a mut self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&'a mut AnyConnection, &'a Statements) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + 'a,
    {
        let after = self.store.call_timeout();
        let sql = self.store.sql();
        let checkout = self.checkout.as_mut().expect("guarded transaction already finished");
        match timeout_at(checkout.deadline, work(&mut checkout.conn, sql)).await {
            Ok(result) => result.map_err(|error| error.in_op("guarded write")),
            Err(_) => Err(StoreError::Timeout { op: "guarded write", after }),
        }
    }
}

impl Drop for GuardedTx {
    fn drop(&mut self) {
        if let Some(checkout) = self.checkout.as_mut() {
            checkout.conn.close_on_drop();
        }
    }
}
