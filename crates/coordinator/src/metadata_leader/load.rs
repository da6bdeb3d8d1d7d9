//! Loading a term's state from the store: the version and retained changes, the catalog,
//! the registry with its tombstones, and the fence and promotion-floor settings.

use super::*;

fn decode_change(version: u64, payload: &[u8]) -> Result<MetadataChange, MetadataError> {
    let change = MetadataChange::decode(payload)
        .map_err(|error| MetadataError::Corrupt { version, reason: error.to_string() })?;
    if change.version != version {
        return Err(MetadataError::Corrupt { version, reason: format!("it says it is version {}", change.version) });
    }
    Ok(change)
}

/// The catalog as the store keeps it: one row per object. An unreadable row is an error,
/// never skipped: a catalog with an object missing would serve as if it were dropped. A row
/// that reads but has no database to go into (orphaned) is set aside and returned: it is in
/// no catalog any leader served, so leaving it out changes nothing anyone saw.
pub(crate) fn load_catalog(objects: &[StoredObject]) -> Result<(Catalog, Vec<Orphaned>), MetadataError> {
    let mut changes = Vec::with_capacity(objects.len());
    for object in objects {
        let corrupt = |reason: String| MetadataError::Corrupt { version: object.version, reason };
        let change = match object.kind.as_str() {
            "database" => v1::catalog_change::Kind::PutDatabase(
                v1::Database::decode(object.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?,
            ),
            "table" => v1::catalog_change::Kind::PutTable(
                v1::Table::decode(object.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?,
            ),
            "view" => v1::catalog_change::Kind::PutView(
                v1::View::decode(object.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?,
            ),
            other => return Err(corrupt(format!("unknown catalog object kind {other:?}"))),
        };
        changes.extend(leasehold::catalog::change_of(&v1::CatalogChange { kind: Some(change) }));
    }
    Ok(Catalog::quarantining(changes))
}

impl MetadataLeader {
    /// Loads the state of a new term from the store: the newest version and the retained
    /// changes, the registry (every registered node may hold an earlier leader's lease), and
    /// the fence settings, which it updates first if the configured fence changed: the
    /// largest fence ever granted is written before any lease with the new fence is granted.
    pub async fn load(
        identity: LeaderIdentity,
        store: Store,
        clock: Arc<dyn Clock>,
        settings: LeaseSettings,
    ) -> Result<Arc<MetadataLeader>, MetadataError> {
        let cluster = identity.cluster.clone();
        let store_epoch = store.run("store epoch", async |db| db.store_epoch(&cluster).await).await?;
        store.run("create version row", async |db| db.ensure_metadata_rows(&cluster).await).await?;
        let largest_fence = Self::record_fence(&store, &identity.guard, &cluster, settings.timings.fence).await?;
        let mut identity = identity;
        if identity.new_term && matches!(identity.guard, WriteGuard::Term(_)) {
            // An earlier leader's grants are bounded by its own TTL and drift, not ours.
            identity.earlier_grants =
                Self::record_grant_bound(&store, &identity.guard, &cluster, identity.earlier_grants).await?;
        }
        let version = store.run("read version", async |db| db.current_version(&cluster).await).await?;
        let first = version.saturating_sub(settings.retention);
        let mut changes = Vec::new();
        for stored in
            store.run("read changes", async |db| db.changes_since(&cluster, first, settings.retention).await).await?
        {
            changes.push((stored.version, decode_change(stored.version, &stored.payload)?));
        }
        let (catalog, orphans) =
            load_catalog(&store.run("list catalog", async |db| db.list_objects(&cluster).await).await?)?;
        for orphaned in &orphans {
            warn!(term = identity.term, %orphaned, "a catalog row has no database to go into; it is quarantined, left in the store and out of the catalog");
        }
        crate::metrics::catalog_quarantined(orphans.len());
        let data_nodes = store.run("list data nodes", async |db| db.list_data_nodes(&cluster).await).await?;
        let memberships = data_nodes
            .iter()
            .filter(|node| !node.pools.is_empty())
            .map(|node| (NodeKey::new(&node.node_id, &node.incarnation), node.pools.clone()))
            .collect();
        let resources = data_nodes
            .iter()
            .filter(|node| !node.resource_id.is_empty())
            .map(|node| (NodeKey::new(&node.node_id, &node.incarnation), node.resource_id.clone()))
            .collect();
        let registered =
            data_nodes.into_iter().map(|node| (NodeKey::new(node.node_id, node.incarnation), node.address)).collect();
        let pools = store
            .run("list pools", async |db| db.list_pools(&cluster).await)
            .await?
            .into_iter()
            .map(|pool| (pool.name, pool.bucket_count, pool.deleting))
            .collect();
        let assignments = store
            .run("list assignments", async |db| db.list_assignments(&cluster).await)
            .await?
            .into_iter()
            .map(slot_of)
            .collect();
        // Incarnations put to rest by earlier leaders (or earlier in this term) may still hold
        // a lease: they count until they have provably fenced.
        let keys =
            |rows: Vec<(String, String)>| rows.into_iter().map(|(node, incarnation)| NodeKey::new(node, incarnation));
        let tombstones =
            keys(store.run("list tombstones", async |db| db.list_tombstones(&cluster).await).await?).collect();
        let retired =
            keys(store.run("list retired data nodes", async |db| db.list_retired_data_nodes(&cluster).await).await?)
                .collect();
        let drained =
            keys(store.run("list released tombstones", async |db| db.list_released_tombstones(&cluster).await).await?)
                .collect();
        let left = keys(store.run("list left tombstones", async |db| db.list_left_tombstones(&cluster).await).await?)
            .collect();
        let proceed_after = settings.timings.proceed_after(largest_fence);
        let start = TermStart {
            promoted_at: identity.promoted_at,
            earlier_grants: identity.earlier_grants,
            proceed_after,
            retention: settings.retention,
            store_epoch: store_epoch.clone(),
            offline_after: settings.offline_after,
        };
        let inherited = Inherited {
            version,
            changes,
            catalog,
            registered,
            tombstones,
            retired,
            memberships,
            pools,
            assignments,
            drained,
            left,
            resources,
        };
        let ledger = Ledger::new(start, inherited);
        info!(
            term = identity.term,
            version,
            catalog_objects = ledger.catalog().len(),
            data_nodes = ledger.registered_count(),
            tombstones = ledger.stored_tombstone_count(),
            pools = ledger.pools().len(),
            fence_ms = settings.timings.fence.as_millis() as u64,
            largest_fence_ms = largest_fence.as_millis() as u64,
            proceed_after_ms = proceed_after.as_millis() as u64,
            earlier_grants_ms = identity.earlier_grants.as_millis() as u64,
            "data-node leases: leader state loaded"
        );
        metrics::data_nodes_registered(ledger.registered_count());
        Ok(Arc::new(MetadataLeader {
            state_token: identity.token.child_token(),
            identity,
            store,
            clock,
            store_epoch,
            settings,
            proceed_after,
            state: Mutex::new(ledger),
            acks: Notify::new(),
            ack_events: std::sync::atomic::AtomicU64::new(0),
            membership_changed: Notify::new(),
            publications: tokio::sync::Mutex::new(()),
            registrations: Default::default(),
            locks: LockTable::default(),
            catalog_snapshot: Mutex::new(None),
            resumed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Makes `fence` the cluster's fence, keeping the largest ever granted; returns that.
    async fn record_fence(
        store: &Store,
        guard: &WriteGuard,
        cluster: &str,
        fence: Duration,
    ) -> Result<Duration, MetadataError> {
        let parse =
            |value: Option<String>| value.and_then(|value| value.parse::<u64>().ok()).map(Duration::from_millis);
        let stored = parse(store.run("read setting", async |db| db.read_setting(cluster, FENCE_SETTING).await).await?);
        let largest =
            parse(store.run("read setting", async |db| db.read_setting(cluster, LARGEST_FENCE_SETTING).await).await?);
        let new_largest = largest.map_or(fence, |largest| largest.max(fence));
        if stored != Some(fence) || largest != Some(new_largest) {
            if let WriteGuard::Term(guard) = guard
                && crate::failpoint::armed(crate::failpoint::LOAD_GUARD_REFUSED)
            {
                return Err(MetadataError::StaleTerm { term: guard.term });
            }
            let mut tx = store.begin_guarded(guard).await?;
            tx.run(async |db| {
                db.write_setting(cluster, LARGEST_FENCE_SETTING, &new_largest.as_millis().to_string()).await?;
                db.write_setting(cluster, FENCE_SETTING, &fence.as_millis().to_string()).await
            })
            .await?;
            tx.commit().await?;
            info!(
                fence_ms = fence.as_millis() as u64,
                largest_fence_ms = new_largest.as_millis() as u64,
                "cluster fence duration recorded"
            );
        }
        Ok(new_largest)
    }

    /// Records `own`, this leader's grant bound, unless a larger one is recorded; returns the
    /// largest. Written before this leader grants anything, so a successor always finds it.
    async fn record_grant_bound(
        store: &Store,
        guard: &WriteGuard,
        cluster: &str,
        own: Duration,
    ) -> Result<Duration, MetadataError> {
        let stored = store
            .run("read setting", async |db| db.read_setting(cluster, LARGEST_GRANT_BOUND_SETTING).await)
            .await?
            .and_then(|value| value.parse::<u64>().ok())
            .map(Duration::from_millis);
        if let Some(stored) = stored.filter(|stored| *stored >= own) {
            return Ok(stored);
        }
        // Rounded up, so the recorded bound is never below the one it stands for.
        let own_ms = own.as_micros().div_ceil(1000).to_string();
        let mut tx = store.begin_guarded(guard).await?;
        tx.run(async |db| db.write_setting(cluster, LARGEST_GRANT_BOUND_SETTING, &own_ms).await).await?;
        tx.commit().await?;
        info!(grant_bound_ms = %own_ms, "promotion floor recorded for the leaders after this one");
        Ok(own)
    }
}

/// A stored bucket row as the ledger holds it: pool, bucket, slot.
fn slot_of(row: leasehold_store::AssignmentRow) -> (String, u32, Slot) {
    let owner = (!row.node_id.is_empty()).then(|| NodeKey::new(row.node_id, row.incarnation));
    (row.pool, row.bucket, Slot { owner, epoch: row.epoch, revoke: row.revoke_version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::catalog::{Database, ObjectState, Table};

    fn row(change: &CatalogChange, version: u64) -> StoredObject {
        let (kind, database, name, payload) = match change {
            CatalogChange::PutDatabase(database) => (
                "database",
                database.name.clone(),
                String::new(),
                leasehold::catalog::database_message(database).encode_to_vec(),
            ),
            CatalogChange::PutTable(table) => (
                "table",
                table.database.clone(),
                table.name.clone(),
                leasehold::catalog::table_message(table, None).encode_to_vec(),
            ),
            other => panic!("no row for {other:?}"),
        };
        StoredObject { kind: kind.into(), database, name, payload, version }
    }

    #[test]
    fn orphaned_rows_are_quarantined_and_the_rest_of_the_catalog_loads() {
        let database = Database {
            name: "db".into(),
            ttl: None,
            properties: Default::default(),
            state: ObjectState::Visible,
            version: 9,
            created_version: 9,
            drop_ordered_version: 0,
        };
        let table = |database: &str, name: &str, created_version| Table {
            database: database.into(),
            name: name.into(),
            columns: vec![],
            ttl: None,
            properties: Default::default(),
            comment: String::new(),
            state: ObjectState::Visible,
            version: created_version,
            created_version,
            drop_ordered_version: 0,
        };
        let rows = [
            row(&CatalogChange::PutDatabase(database), 9),
            row(&CatalogChange::PutTable(table("db", "from_before_the_drop", 4)), 4),
            row(&CatalogChange::PutTable(table("db", "kept", 10)), 10),
            row(&CatalogChange::PutTable(table("gone", "t", 5)), 5),
        ];
        let (catalog, orphans) = load_catalog(&rows).expect("orphans do not fail the load");
        let mut quarantined: Vec<_> =
            orphans.iter().map(|orphan| format!("{}.{}", orphan.database, orphan.name)).collect();
        quarantined.sort();
        assert_eq!(quarantined, ["db.from_before_the_drop", "gone.t"]);
        assert!(catalog.visible_table("db", "kept").is_some());
        assert!(catalog.table("db", "from_before_the_drop").is_none());
    }
}
