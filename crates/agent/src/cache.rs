//! The schema cache as an immutable value: every change produces a new value, which the
//! agent publishes with one atomic pointer swap, so reads never lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use leasehold::v1::{MetadataChange, MetadataSnapshot, metadata_change};
use leasehold_core::MonoTime;

/// A table as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The version that last changed it.
    pub version: u64,
}

/// One immutable state of the cache, with the lease that makes it servable.
#[derive(Debug, Clone, Default)]
pub struct CacheView {
    /// The store epoch the versions belong to; empty when nothing is cached.
    pub store_epoch: String,
    /// The newest version applied.
    pub version: u64,
    /// Tables by database, then table name: looked up with borrowed names, no allocation.
    pub tables: Arc<BTreeMap<String, BTreeMap<String, Arc<TableSchema>>>>,
    /// The end of the lease, while valid; `None` when fenced.
    pub valid_until: Option<MonoTime>,
}

/// Why changes could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The changes do not follow the cached version (or belong to another store epoch).
    #[error("version gap: the cache holds {have} of epoch {epoch:?}, the next change is {next}")]
    Gap {
        /// The cached version.
        have: u64,
        /// The cached epoch.
        epoch: String,
        /// The first change that does not fit.
        next: u64,
    },
    /// The host refused a change.
    #[error("the host cannot apply version {version}: {reason}")]
    CannotApply {
        /// The version.
        version: u64,
        /// The host's reason.
        reason: String,
    },
}

impl CacheView {
    /// The table `database.table`, if cached.
    pub fn table(&self, database: &str, table: &str) -> Option<&Arc<TableSchema>> {
        self.tables.get(database)?.get(table)
    }

    /// The cache a snapshot describes.
    pub fn from_snapshot(snapshot: &MetadataSnapshot) -> CacheView {
        CacheView {
            store_epoch: snapshot.store_epoch.clone(),
            version: snapshot.version,
            tables: Arc::default(),
            valid_until: None,
        }
    }

    /// The cache after `changes` (consecutive, oldest first; already applied ones are
    /// skipped). `prepare` is asked before each change and may refuse it.
    pub fn apply(
        &self,
        store_epoch: &str,
        changes: &[MetadataChange],
        mut prepare: impl FnMut(&MetadataChange) -> Result<(), String>,
    ) -> Result<CacheView, ApplyError> {
        let mut next = self.clone();
        for change in changes {
            if store_epoch != next.store_epoch || change.version > next.version + 1 {
                return Err(ApplyError::Gap {
                    have: next.version,
                    epoch: next.store_epoch.clone(),
                    next: change.version,
                });
            }
            if change.version <= next.version {
                continue;
            }
            prepare(change).map_err(|reason| ApplyError::CannotApply { version: change.version, reason })?;
            match &change.kind {
                Some(metadata_change::Kind::Barrier(_)) | None => {}
            }
            next.version = change.version;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold::v1::BarrierChange;

    fn barrier(version: u64) -> MetadataChange {
        MetadataChange { version, kind: Some(metadata_change::Kind::Barrier(BarrierChange {})) }
    }

    fn at(version: u64) -> CacheView {
        CacheView { store_epoch: "e1".into(), version, ..CacheView::default() }
    }

    #[test]
    fn consecutive_changes_apply_and_duplicates_are_skipped() {
        let next = at(3).apply("e1", &[barrier(3), barrier(4), barrier(5)], |_| Ok(())).unwrap();
        assert_eq!(next.version, 5);
    }

    #[test]
    fn a_gap_or_another_epoch_is_refused() {
        assert!(matches!(at(3).apply("e1", &[barrier(5)], |_| Ok(())), Err(ApplyError::Gap { have: 3, next: 5, .. })));
        assert!(matches!(at(3).apply("e2", &[barrier(4)], |_| Ok(())), Err(ApplyError::Gap { .. })));
    }

    #[test]
    fn the_host_may_refuse_and_nothing_changes() {
        let refused = at(3).apply("e1", &[barrier(4)], |_| Err("disk full".into()));
        assert_eq!(refused.unwrap_err(), ApplyError::CannotApply { version: 4, reason: "disk full".into() });
    }

    #[test]
    fn a_snapshot_replaces_everything() {
        let view = CacheView::from_snapshot(&MetadataSnapshot { store_epoch: "e9".into(), version: 12 });
        assert_eq!((view.store_epoch.as_str(), view.version, view.valid_until), ("e9", 12, None));
    }
}
