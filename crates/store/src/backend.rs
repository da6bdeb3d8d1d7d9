//! The three SQL backends and the statements in each one's dialect.
//!
//! Statements are written once, with `?` placeholders and a few tokens, and rendered per
//! backend when the store opens: `{now}` becomes the backend's millisecond clock expression,
//! `{insert_ignore}`/`{on_conflict_ignore}` its insert-if-absent form, and PostgreSQL gets
//! `$1, $2, …` placeholders.

use std::fmt;
use std::sync::Arc;

/// Which database a store URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Embedded SQLite: coordinators on one host only.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Backend {
    /// The backend of `url`, judged by its scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::MySql),
            _ => None,
        }
    }

    /// The backend's name in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// The store clock in milliseconds since the Unix epoch, as an SQL expression.
    ///
    /// PostgreSQL's `now()` is the transaction's start, so `clock_timestamp()`; MySQL's
    /// `NOW(6)` in a session pinned to UTC (no DST jumps); SQLite's `unixepoch('subsec')`,
    /// because `DATETIME` has only seconds.
    fn now_ms(self) -> &'static str {
        match self {
            Backend::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            Backend::Postgres => "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)",
            Backend::MySql => "CAST(FLOOR(UNIX_TIMESTAMP(NOW(6)) * 1000) AS SIGNED)",
        }
    }

    /// The statement that opens a write transaction. SQLite takes the write lock up front, so
    /// a transaction never has to upgrade a read snapshot.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres | Backend::MySql => "BEGIN",
        }
    }

    /// Renders a statement template in this backend's dialect.
    pub(crate) fn render(self, template: &str) -> Arc<str> {
        let (insert_ignore, on_conflict_ignore) = match self {
            Backend::Sqlite => ("INSERT OR IGNORE INTO", ""),
            Backend::Postgres => ("INSERT INTO", "ON CONFLICT DO NOTHING"),
            Backend::MySql => ("INSERT IGNORE INTO", ""),
        };
        let sql = template
            .replace("{now}", self.now_ms())
            .replace("{insert_ignore}", insert_ignore)
            .replace("{on_conflict_ignore}", on_conflict_ignore);
        let sql = match self {
            Backend::Postgres => numbered_placeholders(&sql),
            Backend::Sqlite | Backend::MySql => sql,
        };
        Arc::from(sql.trim())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `?` → `$1, $2, …`, outside quoted strings.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 1;
    let mut in_quote = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_quote = !in_quote;
                out.push(c);
            }
            '?' if !in_quote => {
                out.push('$');
                out.push_str(&next.to_string());
                next += 1;
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every statement the store runs, rendered for one backend.
#[derive(Debug)]
pub(crate) struct Statements {
    pub select_one: Arc<str>,
    pub now: Arc<str>,
    pub lease_insert_if_absent: Arc<str>,
    pub lease_read: Arc<str>,
    pub lease_acquire: Arc<str>,
    pub lease_renew: Arc<str>,
    pub lease_release: Arc<str>,
    pub lease_guard: Arc<str>,
    pub node_read: Arc<str>,
    pub node_insert: Arc<str>,
    pub node_take_over: Arc<str>,
    pub node_refresh: Arc<str>,
    pub node_update_settings: Arc<str>,
    pub node_stop: Arc<str>,
    pub node_remove: Arc<str>,
    pub node_list: Arc<str>,
    pub meta_insert_if_absent: Arc<str>,
    pub meta_read: Arc<str>,
    pub meta_update: Arc<str>,
    pub version_insert_if_absent: Arc<str>,
    pub version_bump: Arc<str>,
    pub version_read: Arc<str>,
    pub change_insert: Arc<str>,
    pub change_trim: Arc<str>,
    pub changes_since: Arc<str>,
    pub data_node_update: Arc<str>,
    pub data_node_insert: Arc<str>,
    pub data_node_retire: Arc<str>,
    pub data_node_list: Arc<str>,
    pub data_node_list_retired: Arc<str>,
    pub tombstone_insert: Arc<str>,
    pub tombstone_delete: Arc<str>,
    pub tombstone_list: Arc<str>,
    pub tombstone_mark_released: Arc<str>,
    pub tombstone_list_released: Arc<str>,
    pub tombstone_mark_left: Arc<str>,
    pub tombstone_list_left: Arc<str>,
    pub object_update: Arc<str>,
    pub object_insert: Arc<str>,
    pub object_delete: Arc<str>,
    pub objects_delete_database: Arc<str>,
    pub objects_list: Arc<str>,
    pub procedure_insert: Arc<str>,
    pub procedure_update: Arc<str>,
    pub procedure_get: Arc<str>,
    pub procedure_by_request: Arc<str>,
    pub procedures_list: Arc<str>,
    pub procedures_by_state: Arc<str>,
    pub pool_insert: Arc<str>,
    pub pool_delete: Arc<str>,
    pub pool_mark_deleting: Arc<str>,
    pub pools_list: Arc<str>,
    pub assignment_update: Arc<str>,
    pub assignment_insert: Arc<str>,
    pub assignments_list: Arc<str>,
    pub group_insert: Arc<str>,
    pub group_delete: Arc<str>,
    pub groups_list: Arc<str>,
    pub resource_insert: Arc<str>,
    pub resource_get: Arc<str>,
    pub resources_list: Arc<str>,
    pub resource_delete: Arc<str>,
    pub resource_attempt: Arc<str>,
    pub resource_reset_attempts: Arc<str>,
    pub resource_mark_cleaning: Arc<str>,
    pub resource_claim_start: Arc<str>,
    pub resource_record_start: Arc<str>,
    pub resource_record_stop: Arc<str>,
}

/// The columns a procedure row is read with: the one list for `procedures`.
pub(crate) const PROCEDURE_COLUMNS: &str =
    "id, kind, target, step, state, error, request_id, request, term, created_at_ms, updated_at_ms, result_version";
/// The columns a catalog object is read with.
pub(crate) const OBJECT_COLUMNS: &str = "kind, database_name, name, payload, version";
/// The columns a stored change is read with.
pub(crate) const CHANGE_COLUMNS: &str = "version, kind, payload";
/// The columns a registered data node is read with.
pub(crate) const DATA_NODE_COLUMNS: &str = "node_id, incarnation, address, registered_at_ms, pools, resource_id";
/// The columns a resource group is read with.
pub(crate) const GROUP_COLUMNS: &str = "name, container, min_members, properties, created_at_ms";
/// The columns a resource is read with.
pub(crate) const RESOURCE_COLUMNS: &str = "id, group_name, container, properties, process, state, attempts, \
     last_attempt_ms, attempt_id, started_attempt_id, stopped, last_error, start_time_ms, created_at_ms";
/// The columns a bucket pool is read with.
pub(crate) const POOL_COLUMNS: &str = "name, bucket_count, created_at_ms, deleting";
/// The columns a bucket's ownership is read with.
pub(crate) const ASSIGNMENT_COLUMNS: &str = "pool, bucket, node_id, incarnation, epoch, revoke_version";
/// The columns a coordinator registry row is read with.
pub(crate) const NODE_COLUMNS: &str = "node_id, incarnation, address, mode, priority, role, last_seen_ms";

impl Statements {
    pub fn new(backend: Backend) -> Self {
        let r = |template: &str| backend.render(template);
        Self {
            select_one: r("SELECT 1"),
            now: r("SELECT {now}"),
            lease_insert_if_absent: r(
                "{insert_ignore} ha_lease (cluster, term, expires_at_ms, version, write_seq, updated_at_ms) \
                 VALUES (?, 0, 0, 0, 0, {now}) {on_conflict_ignore}",
            ),
            lease_read: r("SELECT term, holder_node_id, holder_incarnation, holder_address, expires_at_ms, version, \
                 {now} AS store_now_ms FROM ha_lease WHERE cluster = ?"),
            // Succeeds only against the version that was read and only once the lease has
            // expired on the store's clock; every acquire starts a new term.
            lease_acquire: r(
                "UPDATE ha_lease SET term = term + 1, holder_node_id = ?, holder_incarnation = ?, holder_address = ?, \
                 expires_at_ms = {now} + ?, version = version + 1, updated_at_ms = {now} \
                 WHERE cluster = ? AND version = ? AND expires_at_ms <= {now}",
            ),
            lease_renew: r(
                "UPDATE ha_lease SET expires_at_ms = {now} + ?, version = version + 1, updated_at_ms = {now} \
                 WHERE cluster = ? AND term = ? AND holder_incarnation = ?",
            ),
            lease_release: r(
                "UPDATE ha_lease SET expires_at_ms = {now}, version = version + 1, updated_at_ms = {now} \
                 WHERE cluster = ? AND term = ? AND holder_incarnation = ? AND expires_at_ms > {now}",
            ),
            // The write guard: it changes exactly one row only while the term is ours and
            // unexpired, and the row lock it takes lasts until the write's commit.
            lease_guard: r("UPDATE ha_lease SET write_seq = write_seq + 1 \
                 WHERE cluster = ? AND term = ? AND holder_incarnation = ? AND expires_at_ms > {now}"),
            node_read: r(
                "SELECT incarnation, last_seen_ms, {now} AS store_now_ms FROM ha_nodes WHERE cluster = ? AND node_id = ?",
            ),
            node_insert: r(
                "{insert_ignore} ha_nodes (cluster, node_id, incarnation, address, mode, priority, role, last_seen_ms, started_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, {now}, {now}) {on_conflict_ignore}",
            ),
            node_take_over: r("UPDATE ha_nodes SET incarnation = ?, address = ?, mode = ?, priority = ?, role = ?, \
                 last_seen_ms = {now}, started_at_ms = {now} \
                 WHERE cluster = ? AND node_id = ? AND COALESCE(incarnation, '') = ? AND last_seen_ms = ?"),
            node_refresh: r("UPDATE ha_nodes SET last_seen_ms = {now}, role = ? \
                 WHERE cluster = ? AND node_id = ? AND incarnation = ?"),
            node_update_settings: r("UPDATE ha_nodes SET mode = ?, priority = ?, last_seen_ms = {now} \
                 WHERE cluster = ? AND node_id = ? AND incarnation = ?"),
            node_stop: r("UPDATE ha_nodes SET incarnation = NULL, role = 'stopped', last_seen_ms = {now} \
                 WHERE cluster = ? AND node_id = ? AND incarnation = ?"),
            // `mode::removable`: stopped, or not refreshed for `?` ms.
            node_remove: r("DELETE FROM ha_nodes WHERE cluster = ? AND node_id = ? \
                 AND (incarnation IS NULL OR last_seen_ms <= {now} - ?)"),
            node_list: r(&format!(
                "SELECT {NODE_COLUMNS}, {{now}} AS store_now_ms FROM ha_nodes WHERE cluster = ? ORDER BY node_id"
            )),
            meta_insert_if_absent: r(
                "{insert_ignore} cluster_meta (cluster, name, value, updated_at_ms) VALUES (?, ?, ?, {now}) {on_conflict_ignore}",
            ),
            meta_read: r("SELECT value FROM cluster_meta WHERE cluster = ? AND name = ?"),
            meta_update: r("UPDATE cluster_meta SET value = ?, updated_at_ms = {now} WHERE cluster = ? AND name = ?"),
            version_insert_if_absent: r(
                "{insert_ignore} metadata_version (cluster, version) VALUES (?, 0) {on_conflict_ignore}",
            ),
            version_bump: r("UPDATE metadata_version SET version = version + 1 WHERE cluster = ?"),
            version_read: r("SELECT version FROM metadata_version WHERE cluster = ?"),
            change_insert: r(
                "INSERT INTO metadata_changes (cluster, version, kind, payload, created_at_ms) VALUES (?, ?, ?, ?, {now})",
            ),
            change_trim: r("DELETE FROM metadata_changes WHERE cluster = ? AND version <= ?"),
            changes_since: r(&format!(
                "SELECT {CHANGE_COLUMNS} FROM metadata_changes WHERE cluster = ? AND version > ? ORDER BY version LIMIT ?",
            )),
            data_node_update: r(
                "UPDATE data_nodes SET incarnation = ?, address = ?, pools = ?, resource_id = ?, registered_at_ms = {now}, \
                 retired_at_ms = NULL WHERE cluster = ? AND node_id = ?",
            ),
            data_node_insert: r(
                "INSERT INTO data_nodes (cluster, node_id, incarnation, address, pools, resource_id, registered_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, {now})",
            ),
            data_node_retire: r("UPDATE data_nodes SET retired_at_ms = {now} \
                 WHERE cluster = ? AND node_id = ? AND incarnation = ? AND retired_at_ms IS NULL"),
            data_node_list: r(&format!(
                "SELECT {DATA_NODE_COLUMNS} FROM data_nodes WHERE cluster = ? AND retired_at_ms IS NULL ORDER BY node_id"
            )),
            data_node_list_retired: r(
                "SELECT node_id, incarnation FROM data_nodes WHERE cluster = ? AND retired_at_ms IS NOT NULL ORDER BY node_id",
            ),
            tombstone_insert: r(
                "INSERT INTO data_node_tombstones (cluster, node_id, incarnation, created_at_ms) VALUES (?, ?, ?, {now})",
            ),
            tombstone_delete: r(
                "DELETE FROM data_node_tombstones WHERE cluster = ? AND node_id = ? AND incarnation = ?",
            ),
            tombstone_mark_released: r(
                "UPDATE data_node_tombstones SET buckets_released = 1 WHERE cluster = ? AND node_id = ? AND incarnation = ?",
            ),
            tombstone_list_released: r(
                "SELECT node_id, incarnation FROM data_node_tombstones WHERE cluster = ? AND buckets_released = 1 ORDER BY node_id, incarnation",
            ),
            tombstone_mark_left: r(
                "UPDATE data_node_tombstones SET left_cleanly = 1 WHERE cluster = ? AND node_id = ? AND incarnation = ?",
            ),
            tombstone_list_left: r(
                "SELECT node_id, incarnation FROM data_node_tombstones WHERE cluster = ? AND left_cleanly = 1 ORDER BY node_id, incarnation",
            ),
            tombstone_list: r(
                "SELECT node_id, incarnation FROM data_node_tombstones WHERE cluster = ? ORDER BY node_id, incarnation",
            ),
            object_update: r(
                "UPDATE catalog_objects SET payload = ?, version = ? WHERE cluster = ? AND kind = ? AND database_name = ? AND name = ?",
            ),
            object_insert: r(
                "INSERT INTO catalog_objects (cluster, kind, database_name, name, payload, version) VALUES (?, ?, ?, ?, ?, ?)",
            ),
            object_delete: r(
                "DELETE FROM catalog_objects WHERE cluster = ? AND kind = ? AND database_name = ? AND name = ?",
            ),
            objects_delete_database: r("DELETE FROM catalog_objects WHERE cluster = ? AND database_name = ?"),
            objects_list: r(&format!(
                "SELECT {OBJECT_COLUMNS} FROM catalog_objects WHERE cluster = ? ORDER BY kind, database_name, name",
            )),
            procedure_insert: r(
                "INSERT INTO procedures (cluster, id, kind, target, step, state, error, request_id, request, term, created_at_ms, updated_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {now}, {now})",
            ),
            procedure_update: r(
                "UPDATE procedures SET step = ?, state = ?, error = ?, result_version = ?, term = ?, updated_at_ms = {now} WHERE cluster = ? AND id = ?",
            ),
            procedure_get: r(&format!("SELECT {PROCEDURE_COLUMNS} FROM procedures WHERE cluster = ? AND id = ?",)),
            procedure_by_request: r(&format!(
                "SELECT {PROCEDURE_COLUMNS} FROM procedures WHERE cluster = ? AND request_id = ?",
            )),
            procedures_list: r(&format!(
                "SELECT {PROCEDURE_COLUMNS} FROM procedures WHERE cluster = ? ORDER BY id DESC LIMIT ?",
            )),
            procedures_by_state: r(&format!(
                "SELECT {PROCEDURE_COLUMNS} FROM procedures WHERE cluster = ? AND state = ? ORDER BY id DESC LIMIT ?",
            )),
            pool_insert: r(
                "{insert_ignore} bucket_pools (cluster, name, bucket_count, created_at_ms) VALUES (?, ?, ?, {now}) {on_conflict_ignore}",
            ),
            pool_delete: r("DELETE FROM bucket_pools WHERE cluster = ? AND name = ?"),
            pool_mark_deleting: r("UPDATE bucket_pools SET deleting = 1 WHERE cluster = ? AND name = ?"),
            pools_list: r(&format!("SELECT {POOL_COLUMNS} FROM bucket_pools WHERE cluster = ? ORDER BY name")),
            assignment_update: r(
                "UPDATE bucket_assignments SET node_id = ?, incarnation = ?, epoch = ?, revoke_version = ? \
                 WHERE cluster = ? AND pool = ? AND bucket = ?",
            ),
            assignment_insert: r(
                "INSERT INTO bucket_assignments (cluster, pool, bucket, node_id, incarnation, epoch, revoke_version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            ),
            assignments_list: r(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM bucket_assignments WHERE cluster = ? ORDER BY pool, bucket"
            )),
            group_insert: r(
                "{insert_ignore} resource_groups (cluster, name, container, min_members, properties, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, {now}) {on_conflict_ignore}",
            ),
            group_delete: r("DELETE FROM resource_groups WHERE cluster = ? AND name = ?"),
            groups_list: r(&format!("SELECT {GROUP_COLUMNS} FROM resource_groups WHERE cluster = ? ORDER BY name")),
            // Creating a resource is its first start: attempt 0, at the store's now.
            resource_insert: r(
                "{insert_ignore} resources (cluster, id, group_name, container, properties, process, state, attempts, \
                 last_attempt_ms, attempt_id, started_attempt_id, stopped, last_error, start_time_ms, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, '', 'active', 0, {now}, ?, '', 0, '', {now}, {now}) {on_conflict_ignore}",
            ),
            resource_get: r(&format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE cluster = ? AND id = ?")),
            resources_list: r(&format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE cluster = ? ORDER BY id")),
            resource_delete: r("DELETE FROM resources WHERE cluster = ? AND id = ?"),
            resource_attempt: r(
                "UPDATE resources SET attempts = ?, last_attempt_ms = {now}, attempt_id = ?, last_error = '' \
                 WHERE cluster = ? AND id = ? AND state = 'active'",
            ),
            resource_reset_attempts: r("UPDATE resources SET attempts = 0 WHERE cluster = ? AND id = ?"),
            resource_mark_cleaning: r("UPDATE resources SET state = 'cleaning' WHERE cluster = ? AND id = ?"),
            resource_claim_start: r("UPDATE resources SET started_attempt_id = attempt_id \
                 WHERE cluster = ? AND id = ? AND attempt_id = ? AND started_attempt_id <> attempt_id AND state = 'active'"),
            resource_record_start: r(
                "UPDATE resources SET process = ?, last_error = ? WHERE cluster = ? AND id = ? AND attempt_id = ?",
            ),
            resource_record_stop: r(
                "UPDATE resources SET stopped = ?, last_error = ? WHERE cluster = ? AND id = ? AND state = 'cleaning'",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_url_scheme() {
        assert_eq!(Backend::of_url("sqlite://data/x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("MariaDB://root@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::of_url("redis://h"), None);
        assert_eq!(Backend::of_url("no-scheme"), None);
    }

    #[test]
    fn postgres_gets_numbered_placeholders_outside_quotes() {
        let sql = Backend::Postgres.render("SELECT '?' FROM t WHERE a = ? AND b = ?");
        assert_eq!(&*sql, "SELECT '?' FROM t WHERE a = $1 AND b = $2");
        let sql = Backend::MySql.render("SELECT a FROM t WHERE a = ?");
        assert_eq!(&*sql, "SELECT a FROM t WHERE a = ?");
    }

    #[test]
    fn insert_if_absent_uses_each_dialect() {
        let template = "{insert_ignore} t (a) VALUES (?) {on_conflict_ignore}";
        assert_eq!(&*Backend::Sqlite.render(template), "INSERT OR IGNORE INTO t (a) VALUES (?)");
        assert_eq!(&*Backend::MySql.render(template), "INSERT IGNORE INTO t (a) VALUES (?)");
        assert_eq!(&*Backend::Postgres.render(template), "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING");
    }
}
