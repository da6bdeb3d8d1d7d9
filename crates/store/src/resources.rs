//! The resource keeper's rows (DESIGN §7): groups (`resource_groups`) and resources
//! (`resources`).
//!
//! The leader's writes (groups, resources, attempts, cleanup) run inside a guarded
//! transaction, so a deposed leader can neither ask for a start nor count an attempt. The
//! coordinator that runs a local container writes only what it did, guarded by the attempt id
//! instead of the term: it claims an attempt before it spawns (so one attempt is never started
//! twice) and records the process only while that attempt is still the latest.

use std::collections::BTreeMap;

use leasehold_core::keeper::ResourceState;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow, Row};

use crate::db::{Db, Guarded};
use crate::error::StoreError;

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// Its name.
    pub name: String,
    /// The container that starts its members.
    pub container: String,
    /// The members the keeper keeps at least.
    pub min_members: u32,
    /// Passed to its members' command templates.
    pub properties: BTreeMap<String, String>,
    /// When it was created (store clock, ms).
    pub created_at_ms: i64,
}

/// A resource as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    /// Its id (its data node's node id).
    pub id: String,
    /// Its group.
    pub group: String,
    /// The container that runs it.
    pub container: String,
    /// Given at creation.
    pub properties: BTreeMap<String, String>,
    /// What the container recorded of the running process.
    pub process: BTreeMap<String, String>,
    /// Active or being cleaned up.
    pub state: ResourceState,
    /// Restart attempts since it last stayed live for a whole grace period.
    pub attempts: u32,
    /// When it was last started, its first start included (store clock, ms).
    pub last_attempt_ms: Option<i64>,
    /// The latest start asked for; its data node presents it at registration.
    pub attempt_id: String,
    /// The latest start the container's coordinator has taken on.
    pub started_attempt_id: String,
    /// The container's coordinator stopped the process of this cleaning resource.
    pub stopped: bool,
    /// Why its last start or stop failed, if it did.
    pub last_error: String,
    /// When it was first started (store clock, ms); restarts leave it.
    pub start_time_ms: Option<i64>,
    /// When it was created (store clock, ms).
    pub created_at_ms: i64,
}

impl ResourceRow {
    /// Whether the latest start asked for has not been taken on yet.
    pub fn start_pending(&self) -> bool {
        self.state == ResourceState::Active && self.attempt_id != self.started_attempt_id
    }

    /// Whether it is being cleaned up and its process has not been stopped yet.
    pub fn stop_pending(&self) -> bool {
        self.state == ResourceState::Cleaning && !self.stopped
    }
}

/// Properties as one text column: `key=value` lines, with `\` and line breaks in values
/// escaped (keys are validated names).
pub fn encode_properties(properties: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in properties {
        out.push_str(key);
        out.push('=');
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// Reads what [`encode_properties`] wrote.
pub fn decode_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let mut decoded = String::with_capacity(value.len());
            let mut chars = value.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    decoded.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => decoded.push('\n'),
                    Some('r') => decoded.push('\r'),
                    Some(other) => decoded.push(other),
                    None => {}
                }
            }
            (key.to_owned(), decoded)
        })
        .collect()
}

impl FromRow<'_, AnyRow> for GroupRow {
    /// Read by name, with the columns of [`crate::backend::GROUP_COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(GroupRow {
            name: row.try_get("name")?,
            container: row.try_get("container")?,
            min_members: u32::try_from(row.try_get::<i64, _>("min_members")?).unwrap_or(0),
            properties: decode_properties(&row.try_get::<String, _>("properties")?),
            created_at_ms: row.try_get("created_at_ms")?,
        })
    }
}

impl FromRow<'_, AnyRow> for ResourceRow {
    /// Read by name, with the columns of [`crate::backend::RESOURCE_COLUMNS`]. A state this
    /// version does not know reads as cleaning: such a row is never restarted.
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let state = row.try_get::<String, _>("state")?;
        Ok(ResourceRow {
            id: row.try_get("id")?,
            group: row.try_get("group_name")?,
            container: row.try_get("container")?,
            properties: decode_properties(&row.try_get::<String, _>("properties")?),
            process: decode_properties(&row.try_get::<String, _>("process")?),
            state: ResourceState::from_stored(&state).unwrap_or(ResourceState::Cleaning),
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            last_attempt_ms: row.try_get("last_attempt_ms")?,
            attempt_id: row.try_get("attempt_id")?,
            started_attempt_id: row.try_get("started_attempt_id")?,
            stopped: row.try_get::<i64, _>("stopped")? != 0,
            last_error: row.try_get("last_error")?,
            start_time_ms: row.try_get("start_time_ms")?,
            created_at_ms: row.try_get("created_at_ms")?,
        })
    }
}

impl<F> Db<'_, F> {
    /// Every group, by name.
    pub async fn list_groups(&mut self, cluster: &str) -> Result<Vec<GroupRow>, StoreError> {
        Ok(sqlx::query_as(AssertSqlSafe(self.sql.groups_list.clone())).bind(cluster).fetch_all(&mut *self.conn).await?)
    }

    /// Every resource, by id.
    pub async fn list_resources(&mut self, cluster: &str) -> Result<Vec<ResourceRow>, StoreError> {
        Ok(sqlx::query_as(AssertSqlSafe(self.sql.resources_list.clone()))
            .bind(cluster)
            .fetch_all(&mut *self.conn)
            .await?)
    }

    /// Resource `id`, if it exists.
    pub async fn get_resource(&mut self, cluster: &str, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        Ok(sqlx::query_as(AssertSqlSafe(self.sql.resource_get.clone()))
            .bind(cluster)
            .bind(id)
            .fetch_optional(&mut *self.conn)
            .await?)
    }

    /// Takes on the start `attempt_id` of resource `id` before spawning it: false when that
    /// attempt was taken on already or is no longer the latest (then nothing is spawned).
    pub async fn claim_start(&mut self, cluster: &str, id: &str, attempt_id: &str) -> Result<bool, StoreError> {
        let query =
            sqlx::query(AssertSqlSafe(self.sql.resource_claim_start.clone())).bind(cluster).bind(id).bind(attempt_id);
        crate::changes_one(query, self.conn).await
    }

    /// Records what the start `attempt_id` of resource `id` did (the process, or why it
    /// failed); false when a later attempt replaced it meanwhile.
    pub async fn record_start(
        &mut self,
        cluster: &str,
        id: &str,
        attempt_id: &str,
        process: &BTreeMap<String, String>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_record_start.clone()))
            .bind(encode_properties(process))
            .bind(error)
            .bind(cluster)
            .bind(id)
            .bind(attempt_id);
        crate::changes_one(query, self.conn).await
    }

    /// Records that the process of cleaning resource `id` was stopped (`stopped`), or why it
    /// could not be; false when it is not being cleaned up.
    pub async fn record_stop(
        &mut self,
        cluster: &str,
        id: &str,
        stopped: bool,
        error: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_record_stop.clone()))
            .bind(i64::from(stopped))
            .bind(error)
            .bind(cluster)
            .bind(id);
        crate::changes_one(query, self.conn).await
    }
}

impl Db<'_, Guarded> {
    /// Creates a group; false when one of that name exists (nothing changed).
    pub async fn create_group(&mut self, cluster: &str, group: &GroupRow) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.group_insert.clone()))
            .bind(cluster)
            .bind(group.name.as_str())
            .bind(group.container.as_str())
            .bind(i64::from(group.min_members))
            .bind(encode_properties(&group.properties));
        crate::changes_one(query, self.conn).await
    }

    /// Deletes a group; false when there was none.
    pub async fn delete_group(&mut self, cluster: &str, name: &str) -> Result<bool, StoreError> {
        crate::changes_one(
            sqlx::query(AssertSqlSafe(self.sql.group_delete.clone())).bind(cluster).bind(name),
            self.conn,
        )
        .await
    }

    /// Creates a resource whose first start is `attempt_id`, at the store's now; false when
    /// one of that id exists (nothing changed).
    pub async fn create_resource(
        &mut self,
        cluster: &str,
        id: &str,
        group: &str,
        container: &str,
        properties: &BTreeMap<String, String>,
        attempt_id: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_insert.clone()))
            .bind(cluster)
            .bind(id)
            .bind(group)
            .bind(container)
            .bind(encode_properties(properties))
            .bind(attempt_id);
        crate::changes_one(query, self.conn).await
    }

    /// Records restart attempt number `attempts` of resource `id`, at the store's now, as the
    /// latest start (`attempt_id`); false when it is not active.
    pub async fn record_attempt(
        &mut self,
        cluster: &str,
        id: &str,
        attempts: u32,
        attempt_id: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_attempt.clone()))
            .bind(i64::from(attempts))
            .bind(attempt_id)
            .bind(cluster)
            .bind(id);
        crate::changes_one(query, self.conn).await
    }

    /// Starts resource `id`'s attempt count from 0 again (it stayed live a whole grace).
    pub async fn reset_attempts(&mut self, cluster: &str, id: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_reset_attempts.clone())).bind(cluster).bind(id);
        crate::changes_one(query, self.conn).await
    }

    /// Marks resource `id` as being cleaned up: its data node's registrations are refused from
    /// now on; false when there is no such resource.
    pub async fn mark_cleaning(&mut self, cluster: &str, id: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_mark_cleaning.clone())).bind(cluster).bind(id);
        crate::changes_one(query, self.conn).await
    }

    /// Deletes resource `id`'s row; false when there was none.
    pub async fn delete_resource(&mut self, cluster: &str, id: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.resource_delete.clone())).bind(cluster).bind(id);
        crate::changes_one(query, self.conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_through_one_text_column() {
        let properties: BTreeMap<String, String> = [
            ("port".to_owned(), "7501".to_owned()),
            ("args".to_owned(), "a=b\\c\nd\re".to_owned()),
            ("empty".to_owned(), String::new()),
        ]
        .into_iter()
        .collect();
        assert_eq!(decode_properties(&encode_properties(&properties)), properties);
        assert!(decode_properties("").is_empty());
    }
}
