//! Embedded, numbered migrations per backend, applied under a lock.

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::backend::Backend;
use crate::error::StoreError;

/// Which tables a node needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSet {
    /// Everything but the HA tables: a `disabled` node runs without a lease.
    WithoutHa,
    /// Everything.
    All,
}

struct Migration {
    id: &'static str,
    ha: bool,
    sqlite: &'static str,
    postgres: &'static str,
    mysql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0001_core",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0001_core.sql"),
        postgres: include_str!("../migrations/postgres/0001_core.sql"),
        mysql: include_str!("../migrations/mysql/0001_core.sql"),
    },
    Migration {
        id: "0002_ha",
        ha: true,
        sqlite: include_str!("../migrations/sqlite/0002_ha.sql"),
        postgres: include_str!("../migrations/postgres/0002_ha.sql"),
        mysql: include_str!("../migrations/mysql/0002_ha.sql"),
    },
    Migration {
        id: "0003_metadata",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0003_metadata.sql"),
        postgres: include_str!("../migrations/postgres/0003_metadata.sql"),
        mysql: include_str!("../migrations/mysql/0003_metadata.sql"),
    },
    Migration {
        id: "0004_catalog",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0004_catalog.sql"),
        postgres: include_str!("../migrations/postgres/0004_catalog.sql"),
        mysql: include_str!("../migrations/mysql/0004_catalog.sql"),
    },
    Migration {
        id: "0005_tombstones",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0005_tombstones.sql"),
        postgres: include_str!("../migrations/postgres/0005_tombstones.sql"),
        mysql: include_str!("../migrations/mysql/0005_tombstones.sql"),
    },
    Migration {
        id: "0006_procedure_version",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0006_procedure_version.sql"),
        postgres: include_str!("../migrations/postgres/0006_procedure_version.sql"),
        mysql: include_str!("../migrations/mysql/0006_procedure_version.sql"),
    },
    Migration {
        id: "0007_retired_incarnations",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0007_retired_incarnations.sql"),
        postgres: include_str!("../migrations/postgres/0007_retired_incarnations.sql"),
        mysql: include_str!("../migrations/mysql/0007_retired_incarnations.sql"),
    },
    Migration {
        id: "0008_buckets",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0008_buckets.sql"),
        postgres: include_str!("../migrations/postgres/0008_buckets.sql"),
        mysql: include_str!("../migrations/mysql/0008_buckets.sql"),
    },
    Migration {
        id: "0009_resources",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0009_resources.sql"),
        postgres: include_str!("../migrations/postgres/0009_resources.sql"),
        mysql: include_str!("../migrations/mysql/0009_resources.sql"),
    },
    Migration {
        id: "0010_tombstone_departure",
        ha: false,
        sqlite: include_str!("../migrations/sqlite/0010_tombstone_departure.sql"),
        postgres: include_str!("../migrations/postgres/0010_tombstone_departure.sql"),
        mysql: include_str!("../migrations/mysql/0010_tombstone_departure.sql"),
    },
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS leasehold_migrations (id VARCHAR(64) NOT NULL PRIMARY KEY, applied_at_ms BIGINT NOT NULL)";

/// The statements of a migration file: split at semicolons that end a line, comments dropped.
fn statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.ends_with(';') {
            statements.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(current.trim().to_owned());
    }
    statements
}

pub(crate) async fn run(conn: &mut AnyConnection, backend: Backend, set: MigrationSet) -> Result<(), StoreError> {
    // SQLite migrates inside one write transaction; the servers under a named lock, because
    // MySQL's DDL commits on its own.
    let (lock, unlock) = match backend {
        Backend::Sqlite => ("BEGIN IMMEDIATE", "COMMIT"),
        Backend::Postgres => ("SELECT pg_advisory_lock(7400190001)", "SELECT pg_advisory_unlock(7400190001)"),
        Backend::MySql => {
            ("SELECT GET_LOCK('leasehold_migrations', 60)", "SELECT RELEASE_LOCK('leasehold_migrations')")
        }
    };
    // Another coordinator may hold the lock longer than one statement waits for it (a paused
    // one holds SQLite's write lock for as long as it is paused): wait it out, within the
    // deadline the caller set, rather than fail the start.
    loop {
        match sqlx::raw_sql(lock).execute(&mut *conn).await {
            Ok(_) => break,
            Err(source) if lock_busy(&source) => tokio::time::sleep(LOCK_RETRY).await,
            Err(source) => return Err(StoreError::Migration { id: "lock", source }),
        }
    }
    let result = apply(conn, backend, set).await;
    let unlocked =
        sqlx::raw_sql(if result.is_ok() { unlock } else { rollback_or(backend, unlock) }).execute(&mut *conn).await;
    result?;
    unlocked.map_err(|source| StoreError::Migration { id: "unlock", source })?;
    Ok(())
}

/// How long a migration waits before asking again for a lock another holds.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether `error` says only that another connection holds the lock: SQLite's `SQLITE_BUSY`
/// and `SQLITE_LOCKED` (with their extended codes), PostgreSQL's `lock_not_available`.
fn lock_busy(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|error| error.code());
    code.is_some_and(|code| matches!(code.as_ref(), "5" | "6" | "261" | "262" | "517" | "55P03"))
}

fn rollback_or(backend: Backend, unlock: &'static str) -> &'static str {
    if backend == Backend::Sqlite { "ROLLBACK" } else { unlock }
}

async fn apply(conn: &mut AnyConnection, backend: Backend, set: MigrationSet) -> Result<(), StoreError> {
    sqlx::raw_sql(CREATE_LEDGER)
        .execute(&mut *conn)
        .await
        .map_err(|source| StoreError::Migration { id: "ledger", source })?;
    let applied: Vec<String> = sqlx::raw_sql("SELECT id FROM leasehold_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| StoreError::Migration { id: "ledger", source })?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(|source| StoreError::Migration { id: "ledger", source })?;
    for migration in MIGRATIONS {
        if applied.iter().any(|id| id == migration.id) || (migration.ha && set == MigrationSet::WithoutHa) {
            continue;
        }
        let script = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
            Backend::MySql => migration.mysql,
        };
        let record = backend.render("INSERT INTO leasehold_migrations (id, applied_at_ms) VALUES (?, {now})");
        let id = migration.id;
        for statement in statements(script) {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await
                .map_err(|source| StoreError::Migration { id, source })?;
        }
        sqlx::query(AssertSqlSafe(record))
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(|source| StoreError::Migration { id, source })?;
        tracing::info!(migration = id, backend = %backend, "applied store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_into_statements_without_comments() {
        let script = "-- a comment\nCREATE TABLE a (\n  x INTEGER\n);\n\n-- another\nCREATE TABLE b (y INTEGER);\n";
        assert_eq!(statements(script), vec!["CREATE TABLE a (\n  x INTEGER\n)", "CREATE TABLE b (y INTEGER)"]);
    }

    #[test]
    fn every_migration_has_a_script_for_every_backend() {
        for migration in MIGRATIONS {
            for script in [migration.sqlite, migration.postgres, migration.mysql] {
                assert!(!statements(script).is_empty(), "{}", migration.id);
            }
        }
    }
}
