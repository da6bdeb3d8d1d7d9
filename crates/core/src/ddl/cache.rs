//! What a data node's cache does with the leader's word: a batch of consecutive changes, and a
//! snapshot that replaces the cache. The agent carries these out against its host, and the
//! whole-system simulation runs the same decisions.

use super::*;
use crate::catalog::Orphaned;

/// A change of a batch as the cache's catalog sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChange {
    /// A change of the catalog.
    Catalog(CatalogChange),
    /// An order to delete the data of `target`, whose object went under a pre-delete marker
    /// at `marker_version`.
    DropData {
        /// The data to delete.
        target: DataTarget,
        /// The version of the marker the order belongs to.
        marker_version: u64,
    },
    /// Anything the catalog does not hold (bucket handoffs, barriers): only its version
    /// counts here.
    Other,
}

/// Why a change cannot be applied to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchRefusal {
    /// The change is not the next one: the cache holds `have` and was sent `next`.
    Gap {
        /// The version the cache holds.
        have: u64,
        /// The version of the change.
        next: u64,
    },
    /// The change names a database the catalog does not hold as its owner.
    Orphaned(Orphaned),
}

/// A batch of consecutive changes applied to a cache's catalog, one at a time. The caller
/// asks its host about each admitted change (and carries out its order to drop data) before
/// applying it, and keeps the result only when the whole batch applied.
#[derive(Debug)]
pub struct CatalogBatch<'a> {
    /// The catalog the cache held before the batch.
    before: &'a Catalog,
    /// The catalog as the batch changed it, once it changed.
    changed: Option<Catalog>,
    version: u64,
}

impl<'a> CatalogBatch<'a> {
    /// A batch applied to the cache that holds `catalog` at `version`.
    pub fn new(catalog: &'a Catalog, version: u64) -> Self {
        CatalogBatch { before: catalog, changed: None, version }
    }

    /// Whether the change at `version` is the next one (`true`) or was applied already
    /// (`false`: skip it); a later one leaves a gap.
    pub fn admits(&self, version: u64) -> Result<bool, BatchRefusal> {
        if version > self.version + 1 {
            Err(BatchRefusal::Gap { have: self.version, next: version })
        } else {
            Ok(version == self.version + 1)
        }
    }

    /// Whether an order to drop `target`, under the marker of `marker_version`, deletes data
    /// here: not when the cache held the object created again after that marker before this
    /// batch (the order is then about the data of an object that is gone, and the new one's
    /// data must stay).
    pub fn drop_is_due(&self, target: &DataTarget, marker_version: u64) -> bool {
        !target.recreated_in(self.before, marker_version)
    }

    /// Applies `change` at `version`, which [`admits`](Self::admits) said is next. An order to
    /// drop data is recorded on the marked object, as the leader's catalog records it, so the
    /// cache matches the snapshots of the same version.
    pub fn apply(&mut self, version: u64, change: &CacheChange) -> Result<(), BatchRefusal> {
        let change = match change {
            CacheChange::Catalog(change) => Some(change.clone()),
            CacheChange::DropData { target, .. } => drop_order(self.catalog(), target, version),
            CacheChange::Other => None,
        };
        if let Some(change) = change {
            self.changed.get_or_insert_with(|| self.before.clone()).apply(&change).map_err(BatchRefusal::Orphaned)?;
        }
        self.version = version;
        Ok(())
    }

    /// The catalog as the batch left it.
    pub fn catalog(&self) -> &Catalog {
        self.changed.as_ref().unwrap_or(self.before)
    }

    /// The version the batch reached, and the catalog if the batch changed it.
    pub fn finish(self) -> (u64, Option<Catalog>) {
        (self.version, self.changed)
    }
}

/// Why a data node deletes data before a snapshot counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The snapshot lacks the object, or holds another one created again under its name.
    Resync,
    /// The snapshot holds the object under a marker whose order to drop was given, and this
    /// process has not carried the order out.
    Ordered,
}

impl DropReason {
    /// The label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Resync => "resync",
            DropReason::Ordered => "ordered",
        }
    }
}

/// What a data node does, in this order, before a snapshot it received counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncPlan {
    /// The objects the snapshot holds in a reversible step that the held cache lacks or holds
    /// otherwise, as puts with their versions: the host is asked about each, as about a
    /// change, and a refusal refuses the snapshot (see [`reversible_puts`]).
    pub vetoes: Vec<(u64, CatalogChange)>,
    /// The data to delete first, outermost first.
    pub drops: Vec<(DataTarget, DropReason)>,
    /// Set when the held cache's data was not compared with the snapshot's (another store
    /// epoch, or an older snapshot): why.
    pub not_compared: Option<ResyncDrops>,
}

/// The plan for installing the snapshot `installed` on a node that holds `held` (its cache, or
/// when fenced the cache it dropped at the fence; `None` when it never held one) and has
/// carried out the orders to drop `dropped`. On an error the node forgets nothing, so the next
/// resync plans the same again.
pub fn resync_plan(
    held: Option<HeldCatalog<'_>>,
    installed: HeldCatalog<'_>,
    dropped: &BTreeSet<DataTarget>,
) -> ResyncPlan {
    let same_epoch = held.filter(|held| held.store_epoch == installed.store_epoch);
    let vetoes = reversible_puts(same_epoch.map(|held| held.catalog), installed.catalog);
    let (removed, not_compared) = match held.map(|held| drops_after_resync(held, installed)) {
        None => (Vec::new(), None),
        Some(ResyncDrops::Drop(targets)) => (targets, None),
        Some(other) => (Vec::new(), Some(other)),
    };
    let pending = ordered_drops(installed.catalog).into_iter().filter(|target| !dropped.contains(target));
    let drops = removed
        .into_iter()
        .map(|target| (target, DropReason::Resync))
        .chain(pending.map(|target| (target, DropReason::Ordered)))
        .collect();
    ResyncPlan { vetoes, drops, not_compared }
}

/// Forgets the drops carried out for objects that `catalog` no longer holds under an ordered
/// marker (committed or gone), so the record stays as small as the pending drops.
pub fn keep_pending_drops(dropped: &mut BTreeSet<DataTarget>, catalog: &Catalog) {
    if !dropped.is_empty() {
        let ordered = ordered_drops(catalog);
        dropped.retain(|target| ordered.contains(target));
    }
}
