//! Hierarchical DDL locks on the leader (DESIGN §5): a DDL holds its database shared and its
//! object exclusively; creating or dropping a database holds the database exclusively. DDL
//! on different objects runs concurrently; conflicting DDL waits. Locks are always taken in
//! the same order (database, then object), so they cannot deadlock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use leasehold_core::ddl::LockSet;
use tokio::sync::{OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

type DatabaseLocks = HashMap<String, Arc<RwLock<()>>>;
type ObjectLocks = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// The leader's lock table. An entry lives while someone holds or awaits it; the rest are
/// dropped on the next acquire, so the table stays as small as the DDL in flight.
#[derive(Debug, Default)]
pub struct LockTable {
    databases: Mutex<DatabaseLocks>,
    objects: Mutex<ObjectLocks>,
}

enum DatabaseGuard {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

/// Held locks; dropping it releases them.
pub struct Held {
    _object: Option<OwnedMutexGuard<()>>,
    _database: DatabaseGuard,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

impl LockTable {
    /// Waits until `set` is held.
    pub async fn acquire(&self, set: &LockSet) -> Held {
        let database = {
            let mut databases = self.databases.lock().expect("lock table poisoned");
            // Only the table itself refers to an unused entry.
            databases.retain(|_, lock| Arc::strong_count(lock) > 1);
            databases.entry(set.database.clone()).or_default().clone()
        };
        let database = if set.database_exclusive {
            DatabaseGuard::Exclusive(database.write_owned().await)
        } else {
            DatabaseGuard::Shared(database.read_owned().await)
        };
        let object = match &set.object {
            Some(object) => {
                let key = (set.database.clone(), object.clone());
                let lock = {
                    let mut objects = self.objects.lock().expect("lock table poisoned");
                    objects.retain(|_, lock| Arc::strong_count(lock) > 1);
                    objects.entry(key).or_default().clone()
                };
                Some(lock.lock_owned().await)
            }
            None => None,
        };
        Held { _object: object, _database: database }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set(database: &str, exclusive: bool, object: Option<&str>) -> LockSet {
        LockSet { database: database.into(), database_exclusive: exclusive, object: object.map(Into::into) }
    }

    async fn blocks(table: &LockTable, wanted: LockSet) -> bool {
        tokio::time::timeout(Duration::from_millis(50), table.acquire(&wanted)).await.is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn different_objects_share_a_database_and_the_same_object_waits() {
        let table = LockTable::default();
        let _held = table.acquire(&set("db", false, Some("table:a"))).await;
        assert!(!blocks(&table, set("db", false, Some("table:b"))).await);
        assert!(blocks(&table, set("db", false, Some("table:a"))).await);
        assert!(blocks(&table, set("db", true, None)).await, "a database drop waits for DDL inside it");
        assert!(!blocks(&table, set("other", true, None)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn released_locks_leave_the_table() {
        let table = LockTable::default();
        for index in 0..100 {
            let _held = table.acquire(&set(&format!("db{index}"), false, Some("table:a"))).await;
        }
        let held = table.acquire(&set("db", false, Some("table:b"))).await;
        assert_eq!(table.databases.lock().unwrap().len(), 1);
        assert_eq!(table.objects.lock().unwrap().len(), 1);
        drop(held);
        assert!(!blocks(&table, set("db", true, None)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_database_held_exclusively_blocks_everything_inside() {
        let table = LockTable::default();
        let held = table.acquire(&set("db", true, None)).await;
        assert!(blocks(&table, set("db", false, Some("table:a"))).await);
        drop(held);
        assert!(!blocks(&table, set("db", false, Some("table:a"))).await);
    }
}
