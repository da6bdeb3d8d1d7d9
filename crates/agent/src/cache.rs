//! The schema cache as an immutable value: every change produces a new value, which the
//! agent publishes with one atomic pointer swap, so reads never lock.
//!
//! The cache holds the whole catalog, pre-delete markers and hidden objects included (they
//! must be applied in order like everything else), plus a derived map of what a reader may
//! see: visible tables with their visible columns and the TTL in force.

use std::collections::BTreeMap;
use std::sync::Arc;

use leasehold::v1::{MetadataChange, MetadataSnapshot, metadata_change};
use leasehold_core::MonoTime;
use leasehold_core::catalog::{Catalog, Table};
use leasehold_core::ddl::{BatchRefusal, CacheChange, CatalogBatch, DataTarget, HeldCatalog};

/// What readers may resolve: database, then table name, to the table as they may see it.
pub type Servable = BTreeMap<String, BTreeMap<String, Arc<Table>>>;

/// One bucket's owner, as the cache holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketOwner {
    /// The owner's node id.
    pub node_id: String,
    /// The owner's incarnation.
    pub incarnation: String,
    /// The grant's epoch.
    pub epoch: u64,
    /// Being taken from that owner: it owns the bucket no more.
    pub revoked: bool,
}

/// Every pool's buckets that have an owner: pool, then bucket.
pub type Buckets = BTreeMap<String, BTreeMap<u32, BucketOwner>>;

/// Records `change` in `buckets`.
fn apply_buckets(buckets: &mut Buckets, change: &leasehold::v1::BucketChange) {
    let pool = buckets.entry(change.pool.clone()).or_default();
    for entry in &change.buckets {
        pool.insert(
            entry.bucket,
            BucketOwner {
                node_id: entry.node_id.clone(),
                incarnation: entry.incarnation.clone(),
                epoch: entry.epoch,
                revoked: entry.revoked,
            },
        );
    }
}

/// One immutable state of the cache, with the lease that makes it servable.
#[derive(Debug, Clone, Default)]
pub struct CacheView {
    /// The store epoch the versions belong to; empty when nothing is cached.
    pub store_epoch: String,
    /// The newest version applied.
    pub version: u64,
    /// The whole catalog, in every state.
    pub catalog: Arc<Catalog>,
    /// What a reader may see, derived from `catalog`.
    pub servable: Arc<Servable>,
    /// Who owns which bucket.
    pub buckets: Arc<Buckets>,
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
    /// A change puts an object into a database the cache does not hold: the cache and the
    /// leader disagree, and only a resync can settle it.
    #[error("version {version} cannot be applied to the cache: {orphaned}")]
    Orphaned {
        /// The version.
        version: u64,
        /// What could not be put.
        orphaned: leasehold_core::catalog::Orphaned,
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

fn servable(catalog: &Catalog) -> Servable {
    catalog
        .visible_databases()
        .into_iter()
        .map(|database| {
            let tables = catalog
                .visible_tables(&database.name)
                .into_iter()
                .map(|table| (table.name.clone(), Arc::new(table)))
                .collect();
            (database.name.clone(), tables)
        })
        .collect()
}

impl CacheView {
    /// The cache a snapshot describes. An orphaned object in it (a leader never sends one)
    /// is left out and logged.
    pub fn from_snapshot(snapshot: &MetadataSnapshot) -> CacheView {
        let (catalog, orphans) = leasehold::catalog::catalog_of(&snapshot.catalog);
        for orphaned in orphans {
            tracing::warn!(version = snapshot.version, %orphaned, "the snapshot holds an orphaned object; it is left out");
        }
        let mut buckets = Buckets::new();
        for change in &snapshot.buckets {
            apply_buckets(&mut buckets, change);
        }
        CacheView {
            store_epoch: snapshot.store_epoch.clone(),
            version: snapshot.version,
            buckets: Arc::new(buckets),
            servable: Arc::new(servable(&catalog)),
            catalog: Arc::new(catalog),
            valid_until: None,
        }
    }

    /// The catalog with the epoch and version it is at.
    pub fn held(&self) -> HeldCatalog<'_> {
        HeldCatalog { store_epoch: &self.store_epoch, version: self.version, catalog: &self.catalog }
    }

    /// The buckets `node_id` at `incarnation` owns, by pool and bucket, with their epochs.
    pub fn owned_by(&self, node_id: &str, incarnation: &str) -> BTreeMap<(String, u32), u64> {
        self.buckets
            .iter()
            .flat_map(|(pool, buckets)| {
                buckets
                    .iter()
                    .filter(|(_, owner)| !owner.revoked && owner.node_id == node_id && owner.incarnation == incarnation)
                    .map(move |(bucket, owner)| ((pool.clone(), *bucket), owner.epoch))
            })
            .collect()
    }

    /// The table `database.table` as a reader may see it, if it may.
    pub fn table(&self, database: &str, table: &str) -> Option<&Arc<Table>> {
        self.servable.get(database)?.get(table)
    }

    /// The cache after `changes` (consecutive, oldest first; already applied ones are
    /// skipped). `prepare` is asked before each change, with the batch as applied so far, and
    /// may refuse it.
    pub fn apply(
        &self,
        store_epoch: &str,
        changes: &[MetadataChange],
        mut prepare: impl FnMut(&CatalogBatch<'_>, &MetadataChange) -> Result<(), String>,
    ) -> Result<CacheView, ApplyError> {
        let gap = |have: u64, next: u64| ApplyError::Gap { have, epoch: self.store_epoch.clone(), next };
        let refused = |version: u64, refusal: BatchRefusal| match refusal {
            BatchRefusal::Gap { have, next } => gap(have, next),
            BatchRefusal::Orphaned(orphaned) => ApplyError::Orphaned { version, orphaned },
        };
        let mut batch = CatalogBatch::new(&self.catalog, self.version);
        let mut buckets: Option<Buckets> = None;
        for change in changes {
            if store_epoch != self.store_epoch {
                return Err(gap(self.version, change.version));
            }
            if !batch.admits(change.version).map_err(|refusal| refused(change.version, refusal))? {
                continue;
            }
            prepare(&batch, change).map_err(|reason| ApplyError::CannotApply { version: change.version, reason })?;
            if let Some(metadata_change::Kind::Buckets(change)) = &change.kind {
                apply_buckets(buckets.get_or_insert_with(|| (*self.buckets).clone()), change);
            }
            batch.apply(change.version, &cache_change(change)).map_err(|refusal| refused(change.version, refusal))?;
        }
        let mut next = self.clone();
        let (version, catalog) = batch.finish();
        next.version = version;
        if let Some(catalog) = catalog {
            next.servable = Arc::new(servable(&catalog));
            next.catalog = Arc::new(catalog);
        }
        if let Some(buckets) = buckets {
            next.buckets = Arc::new(buckets);
        }
        Ok(next)
    }
}

/// `change` as the cache's catalog sees it.
pub fn cache_change(change: &MetadataChange) -> CacheChange {
    match &change.kind {
        Some(metadata_change::Kind::Catalog(message)) => {
            leasehold::catalog::change_of(message).map_or(CacheChange::Other, CacheChange::Catalog)
        }
        Some(metadata_change::Kind::DropData(drop)) => CacheChange::DropData {
            target: DataTarget::from_parts(&drop.database, &drop.table, &drop.column, drop.created_version),
            marker_version: drop.marker_version,
        },
        Some(metadata_change::Kind::Buckets(_) | metadata_change::Kind::Barrier(_)) | None => CacheChange::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold::v1::BarrierChange;
    use leasehold_core::catalog::{CatalogChange, Category, Column, DataType, Database, ObjectState};
    use std::collections::BTreeMap as Map;

    fn barrier(version: u64) -> MetadataChange {
        MetadataChange { version, kind: Some(metadata_change::Kind::Barrier(BarrierChange {})) }
    }

    fn catalog_change(version: u64, change: CatalogChange) -> MetadataChange {
        MetadataChange {
            version,
            kind: Some(metadata_change::Kind::Catalog(leasehold::catalog::change_message(&change))),
        }
    }

    fn at(version: u64) -> CacheView {
        CacheView { store_epoch: "e1".into(), version, ..CacheView::default() }
    }

    fn table(state: ObjectState) -> Table {
        Table {
            database: "db".into(),
            name: "t".into(),
            columns: vec![Column {
                drop_ordered_version: 0,
                name: "time".into(),
                data_type: DataType::Timestamp,
                category: Category::Time,
                comment: String::new(),
                state: ObjectState::Visible,
                created_version: 2,
            }],
            ttl: None,
            properties: Map::new(),
            comment: String::new(),
            state,
            version: 3,
            created_version: 2,
            drop_ordered_version: 0,
        }
    }

    #[test]
    fn consecutive_changes_apply_and_duplicates_are_skipped() {
        let next = at(3).apply("e1", &[barrier(3), barrier(4), barrier(5)], |_, _| Ok(())).unwrap();
        assert_eq!(next.version, 5);
    }

    #[test]
    fn a_gap_or_another_epoch_is_refused() {
        assert!(matches!(
            at(3).apply("e1", &[barrier(5)], |_, _| Ok(())),
            Err(ApplyError::Gap { have: 3, next: 5, .. })
        ));
        assert!(matches!(at(3).apply("e2", &[barrier(4)], |_, _| Ok(())), Err(ApplyError::Gap { .. })));
    }

    #[test]
    fn the_host_may_refuse_and_nothing_changes() {
        let refused = at(3).apply("e1", &[barrier(4)], |_, _| Err("disk full".into()));
        assert_eq!(refused.unwrap_err(), ApplyError::CannotApply { version: 4, reason: "disk full".into() });
    }

    #[test]
    fn hidden_tables_and_markers_are_not_servable() {
        let database = Database {
            name: "db".into(),
            ttl: None,
            properties: Map::new(),
            state: ObjectState::Visible,
            version: 1,
            created_version: 1,
            drop_ordered_version: 0,
        };
        let view = at(0)
            .apply(
                "e1",
                &[
                    catalog_change(1, CatalogChange::PutDatabase(database)),
                    catalog_change(2, CatalogChange::PutTable(table(ObjectState::Hidden))),
                ],
                |_, _| Ok(()),
            )
            .unwrap();
        assert!(view.table("db", "t").is_none(), "pre-created: hidden");
        let view = view
            .apply("e1", &[catalog_change(3, CatalogChange::PutTable(table(ObjectState::Visible)))], |_, _| Ok(()))
            .unwrap();
        assert!(view.table("db", "t").is_some());
        let view = view
            .apply("e1", &[catalog_change(4, CatalogChange::PutTable(table(ObjectState::Dropping)))], |_, _| Ok(()))
            .unwrap();
        assert!(view.table("db", "t").is_none(), "a pre-delete marker hides it at once");
    }

    #[test]
    fn a_snapshot_replaces_everything() {
        let snapshot =
            MetadataSnapshot { store_epoch: "e9".into(), version: 12, catalog: Vec::new(), buckets: Vec::new() };
        let view = CacheView::from_snapshot(&snapshot);
        assert_eq!((view.store_epoch.as_str(), view.version, view.valid_until), ("e9", 12, None));
    }
}
