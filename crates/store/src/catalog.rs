//! The catalog's rows (`catalog_objects`) and the persisted DDL procedures (`procedures`).
//! Writes run inside a guarded transaction; reads on the pool.

use leasehold_core::ddl::DdlKind;
use leasehold_core::procedure::{State, Step};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow, Row};

use crate::backend::Backend;
use crate::db::{Db, Guarded, Unguarded};
use crate::error::StoreError;
use crate::stored::Stored;

/// One catalog object as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `database`, `table` or `view`.
    pub kind: String,
    /// Its database (the database's own name for a database).
    pub database: String,
    /// Its name (empty for a database).
    pub name: String,
    /// The encoded object.
    pub payload: Vec<u8>,
    /// The version that last changed it.
    pub version: u64,
}

/// A persisted DDL procedure.
///
/// Its kind, step and state read as [`Stored`]: a name this version does not know (written by
/// a newer one) reads as [`Stored::Unknown`], so the one row can be refused by name while every
/// other row still reads. Inserting a row writes each name as it holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcedureRow {
    /// Its id: the version of its first change.
    pub id: u64,
    /// What it does.
    pub kind: Stored<DdlKind>,
    /// `db.t`, …
    pub target: String,
    /// The step reached.
    pub step: Stored<Step>,
    /// How it ended, or that it runs.
    pub state: Stored<State>,
    /// Why it failed or was rolled back.
    pub error: String,
    /// The client's request id, if it gave one.
    pub request_id: Option<String>,
    /// The encoded request.
    pub request: Vec<u8>,
    /// The term that last moved it.
    pub term: u64,
    /// When it was created (store clock, ms).
    pub created_at_ms: i64,
    /// When it last moved (store clock, ms).
    pub updated_at_ms: i64,
    /// The version it finished at (its commit, or its rollback); 0 while it runs.
    pub result_version: u64,
}

impl FromRow<'_, AnyRow> for ProcedureRow {
    /// Read by name, with the columns of [`crate::backend::PROCEDURE_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ProcedureRow {
            id: crate::from_sql(row.try_get("id")?),
            kind: Stored::read(row.try_get("kind")?),
            target: row.try_get("target")?,
            step: Stored::read(row.try_get("step")?),
            state: Stored::read(row.try_get("state")?),
            error: row.try_get("error")?,
            request_id: row.try_get("request_id")?,
            request: row.try_get("request")?,
            term: crate::from_sql(row.try_get("term")?),
            created_at_ms: row.try_get("created_at_ms")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
            result_version: crate::from_sql(row.try_get("result_version")?),
        })
    }
}

impl FromRow<'_, AnyRow> for StoredObject {
    /// Read by name, with the columns of [`crate::backend::OBJECT_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(StoredObject {
            kind: row.try_get("kind")?,
            database: row.try_get("database_name")?,
            name: row.try_get("name")?,
            payload: row.try_get("payload")?,
            version: crate::from_sql(row.try_get("version")?),
        })
    }
}

/// The longest procedure error kept, in bytes: the MySQL column holds 2048 characters, and an
/// error naming many nodes may be longer. Every backend keeps the same prefix, cut at a
/// character boundary, so a long error can never fail the write that records it.
pub const MAX_PROCEDURE_ERROR_LEN: usize = 2048;

fn bounded_error(error: &str) -> &str {
    if error.len() <= MAX_PROCEDURE_ERROR_LEN {
        return error;
    }
    let mut end = MAX_PROCEDURE_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

impl<F> Db<'_, F> {
    /// Every catalog object, databases first.
    pub async fn list_objects(&mut self, cluster: &str) -> Result<Vec<StoredObject>, StoreError> {
        let rows =
            sqlx::query(AssertSqlSafe(self.sql.objects_list.clone())).bind(cluster).fetch_all(&mut *self.conn).await?;
        Ok(rows.iter().map(StoredObject::from_row).collect::<Result<_, sqlx::Error>>()?)
    }

    /// One procedure.
    pub async fn get_procedure(&mut self, cluster: &str, id: u64) -> Result<Option<ProcedureRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.procedure_get.clone()))
            .bind(cluster)
            .bind(id as i64)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.as_ref().map(ProcedureRow::from_row).transpose()?)
    }

    /// The procedure a client started with `request_id`, if any.
    pub async fn procedure_by_request(
        &mut self,
        cluster: &str,
        request_id: &str,
    ) -> Result<Option<ProcedureRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.procedure_by_request.clone()))
            .bind(cluster)
            .bind(request_id)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.as_ref().map(ProcedureRow::from_row).transpose()?)
    }

    /// The newest procedures (only those in `state`, when given), newest first.
    pub async fn list_procedures(
        &mut self,
        cluster: &str,
        state: Option<State>,
        limit: u32,
    ) -> Result<Vec<ProcedureRow>, StoreError> {
        let rows = match state {
            Some(state) => {
                sqlx::query(AssertSqlSafe(self.sql.procedures_by_state.clone()))
                    .bind(cluster)
                    .bind(state.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.conn)
                    .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(self.sql.procedures_list.clone()))
                    .bind(cluster)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.conn)
                    .await?
            }
        };
        rows.iter().map(ProcedureRow::from_row).collect::<Result<_, sqlx::Error>>().map_err(Into::into)
    }
}

impl Db<'_, Unguarded> {
    /// The newest version and every catalog row at exactly that version, read in one
    /// transaction that sees one snapshot of the store (PostgreSQL needs REPEATABLE READ for
    /// that; InnoDB and SQLite read from one snapshot inside a transaction), so the rows match
    /// their version. Not on a guarded transaction's `Db`: it opens a transaction of its own.
    pub async fn versioned_objects(&mut self, cluster: &str) -> Result<(u64, Vec<StoredObject>), StoreError> {
        let begin = match self.backend {
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Backend::MySql => "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            Backend::Sqlite => "BEGIN",
        };
        sqlx::raw_sql(begin).execute(&mut *self.conn).await?;
        let version = self.current_version(cluster).await?;
        let objects = self.list_objects(cluster).await?;
        // A failure before here closes the connection, which ends the transaction.
        sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await?;
        Ok((version, objects))
    }
}

impl Db<'_, Guarded> {
    /// Writes a catalog object (insert or replace).
    pub async fn put_object(&mut self, cluster: &str, object: &StoredObject) -> Result<(), StoreError> {
        let updated = crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.object_update.clone()))
                .bind(object.payload.clone())
                .bind(object.version as i64)
                .bind(cluster)
                .bind(object.kind.as_str())
                .bind(object.database.as_str())
                .bind(object.name.as_str()),
            self.conn,
        )
        .await?;
        if !updated {
            sqlx::query(AssertSqlSafe(self.sql.object_insert.clone()))
                .bind(cluster)
                .bind(object.kind.as_str())
                .bind(object.database.as_str())
                .bind(object.name.as_str())
                .bind(object.payload.clone())
                .bind(object.version as i64)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    /// Removes a catalog object.
    pub async fn remove_object(
        &mut self,
        cluster: &str,
        kind: &str,
        database: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.object_delete.clone()))
            .bind(cluster)
            .bind(kind)
            .bind(database)
            .bind(name)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Removes a database's row and every object in it.
    pub async fn remove_database_objects(&mut self, cluster: &str, database: &str) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.objects_delete_database.clone()))
            .bind(cluster)
            .bind(database)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Records a new procedure. Fails on a duplicate request id.
    pub async fn insert_procedure(&mut self, cluster: &str, procedure: &ProcedureRow) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.procedure_insert.clone()))
            .bind(cluster)
            .bind(procedure.id as i64)
            .bind(procedure.kind.as_str())
            .bind(procedure.target.as_str())
            .bind(procedure.step.as_str())
            .bind(procedure.state.as_str())
            .bind(bounded_error(&procedure.error))
            .bind(procedure.request_id.clone())
            .bind(procedure.request.clone())
            .bind(procedure.term as i64)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Moves a procedure to `step` and `state`.
    pub async fn update_procedure(
        &mut self,
        cluster: &str,
        id: u64,
        step: Step,
        state: State,
        error: &str,
    ) -> Result<bool, StoreError> {
        // A procedure that moves on has not finished: it has no result version yet.
        self.finish_procedure(cluster, id, step, state, error, 0).await
    }

    /// Moves a procedure to its last `step` and `state`, recording the version every answer
    /// for it reports from now on. The procedure is recorded as moved by this transaction's term.
    pub async fn finish_procedure(
        &mut self,
        cluster: &str,
        id: u64,
        step: Step,
        state: State,
        error: &str,
        result_version: u64,
    ) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.procedure_update.clone()))
                .bind(step.as_str())
                .bind(state.as_str())
                .bind(bounded_error(error))
                .bind(crate::to_sql(result_version))
                .bind(self.fence.term as i64)
                .bind(cluster)
                .bind(id as i64),
            self.conn,
        )
        .await
    }
}
