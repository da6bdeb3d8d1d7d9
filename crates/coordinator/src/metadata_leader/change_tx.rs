//! Changes: one term-guarded transaction from [`MetadataLeader::begin`] to its publication,
//! which commits the change log row (and catalog rows) and publishes the version.

use super::*;

impl MetadataLeader {
    /// Commits a barrier change (a version bump) and publishes it; returns its version.
    pub async fn publish_barrier(&self) -> Result<u64, MetadataError> {
        let change = self.begin().await?;
        let version = change.version;
        let barrier = MetadataChange { version, kind: Some(v1::metadata_change::Kind::Barrier(BarrierChange {})) };
        change.publish(barrier, None).await
    }

    /// Opens a term-guarded transaction for the next change. Changes are serialized from here
    /// to their publication, so versions are published in commit order.
    pub async fn begin(&self) -> Result<ChangeTx<'_>, MetadataError> {
        let serial = self.publications.lock().await;
        if self.state_token.is_cancelled() {
            return Err(MetadataError::TermEnded { term: self.identity.term });
        }
        // Holds the publication lock, outside any transaction (so renewals go on): what a slow
        // change looks like to the heartbeats, which must never wait for it.
        crate::failpoint::pause(crate::failpoint::HOLDING_PUBLICATION_LOCK).await;
        if crate::failpoint::armed(crate::failpoint::BEGIN_FAILS) {
            return Err(MetadataError::Store(StoreError::Timeout { op: "begin", after: Duration::ZERO }));
        }
        let tx = self.begin_guarded().await?;
        let version = self.state().version() + 1;
        Ok(ChangeTx { leader: self, _serial: serial, tx, version })
    }
}

fn change_kind(change: &MetadataChange) -> &'static str {
    match change.kind {
        Some(v1::metadata_change::Kind::Barrier(_)) | None => "barrier",
        Some(v1::metadata_change::Kind::Catalog(_)) => "catalog",
        Some(v1::metadata_change::Kind::DropData(_)) => "drop_data",
        Some(v1::metadata_change::Kind::Buckets(_)) => "buckets",
    }
}

/// A term-guarded transaction for one change: write procedure rows through
/// [`ChangeTx::store`], then [`ChangeTx::publish`] (or [`ChangeTx::publish_catalog`]) commits the
/// change and makes it part of every later heartbeat answer.
pub struct ChangeTx<'a> {
    leader: &'a MetadataLeader,
    _serial: tokio::sync::MutexGuard<'a, ()>,
    tx: GuardedTx,
    version: u64,
}

impl std::fmt::Debug for ChangeTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeTx").field("version", &self.version).finish()
    }
}

impl ChangeTx<'_> {
    /// The version this change commits at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The transaction, for writes that commit with the change (procedure rows).
    pub fn store(&mut self) -> &mut GuardedTx {
        &mut self.tx
    }

    /// Commits without a change (a procedure moving on): no version is consumed.
    pub async fn commit(self) -> Result<(), MetadataError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Writes `change` to the catalog rows and the change log, commits, and publishes it.
    pub async fn publish_catalog(mut self, change: &CatalogChange) -> Result<u64, MetadataError> {
        // Creation versions come from the catalog this change lands on; the serial guard
        // held by this transaction keeps it from moving underneath.
        let (stamped, _) = self.leader.with_catalog(|catalog| {
            let stamped = catalog.stamp(change, self.version);
            catalog.admits(&stamped).map(|()| stamped)
        });
        // An orphaned put would write a row no catalog shows until its database is created
        // again: refused before anything is written.
        let change = stamped.map_err(MetadataError::Orphaned)?;
        self.write_object(&change).await?;
        let message = MetadataChange {
            version: self.version,
            kind: Some(v1::metadata_change::Kind::Catalog(leasehold::catalog::change_message(&change))),
        };
        self.publish(message, Some(change)).await
    }

    /// Writes the catalog rows `change` makes, at this change's version.
    async fn write_object(&mut self, change: &CatalogChange) -> Result<(), MetadataError> {
        let cluster = self.leader.identity.cluster.clone();
        let object = |kind: &str, database: &str, name: &str, payload: Vec<u8>, version: u64| StoredObject {
            kind: kind.to_owned(),
            database: database.to_owned(),
            name: name.to_owned(),
            payload,
            version,
        };
        match change {
            CatalogChange::PutDatabase(database) => {
                let payload = leasehold::catalog::database_message(database).encode_to_vec();
                self.tx
                    .run(async |db| {
                        db.put_object(&cluster, &object("database", &database.name, "", payload, self.version)).await
                    })
                    .await?;
            }
            CatalogChange::RemoveDatabase { name } => {
                self.tx.run(async |db| db.remove_database_objects(&cluster, name).await).await?
            }
            CatalogChange::PutTable(table) => {
                let payload = leasehold::catalog::table_message(table, None).encode_to_vec();
                self.tx
                    .run(async |db| {
                        db.put_object(&cluster, &object("table", &table.database, &table.name, payload, self.version))
                            .await
                    })
                    .await?;
            }
            CatalogChange::RemoveTable { database, name } => {
                self.tx.run(async |db| db.remove_object(&cluster, "table", database, name).await).await?
            }
            CatalogChange::PutView(view) => {
                let payload = leasehold::catalog::view_message(view).encode_to_vec();
                self.tx
                    .run(async |db| {
                        db.put_object(&cluster, &object("view", &view.database, &view.name, payload, self.version))
                            .await
                    })
                    .await?;
            }
            CatalogChange::RemoveView { database, name } => {
                self.tx.run(async |db| db.remove_object(&cluster, "view", database, name).await).await?
            }
        }
        Ok(())
    }

    /// Publishes the order to delete `target`'s data, marked at `marker_version`. The marked
    /// object records the order's version in the same transaction, so snapshots carry it: a
    /// data node that learns of the order only from a snapshot still deletes the data before
    /// it acknowledges the order's version.
    pub async fn publish_drop_data(mut self, target: &DataTarget, marker_version: u64) -> Result<u64, MetadataError> {
        let (ordered, _) = self.leader.with_catalog(|catalog| ddl::drop_order(catalog, target, self.version));
        if let Some(ordered) = &ordered {
            self.write_object(ordered).await?;
        } else {
            warn!(?target, "no marked object for this order to drop data; it travels as a change alone");
        }
        let (database, table, column, created_version) = target.parts();
        let message = MetadataChange {
            version: self.version,
            kind: Some(v1::metadata_change::Kind::DropData(v1::DropDataChange {
                database: database.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
                marker_version,
                created_version,
            })),
        };
        self.publish(message, ordered).await
    }

    /// Writes the bucket rows `handoffs` of `pool` leave, commits them with one change that
    /// carries the revokes and grants, and publishes it: its version is the one every revoke's
    /// old owner must acknowledge. The ledger records the handoffs under the publication's
    /// lock, so the revokes' publication snapshot is held from the start.
    /// With `deleting`, the pool is marked as being deleted under the same lock: nothing of it
    /// is granted again.
    pub async fn publish_buckets(
        mut self,
        pool: &str,
        handoffs: Vec<Handoff>,
        deleting: bool,
    ) -> Result<(u64, Vec<Duration>), MetadataError> {
        let cluster = self.leader.identity.cluster.clone();
        let version = self.version;
        let mut slots = self.leader.state().pools().get(pool).map(|pool| pool.slots.clone()).unwrap_or_default();
        let mut message = v1::BucketChange { pool: pool.to_owned(), buckets: Vec::new() };
        for handoff in &handoffs {
            leasehold_core::buckets::apply(&mut slots, handoff, version);
            let (bucket, key, epoch, revoked) = match handoff {
                Handoff::Revoke { bucket, from, epoch, .. } => (*bucket, Some(from), *epoch, true),
                Handoff::Grant { bucket, to, epoch, .. } => (*bucket, Some(to), *epoch, false),
                Handoff::Release { bucket, .. } => (*bucket, None, 0, false),
            };
            let slot = &slots[bucket as usize];
            let owner = slot.owner.as_ref();
            self.tx
                .run(async |db| {
                    db.put_assignment(
                        &cluster,
                        &leasehold_store::AssignmentRow {
                            pool: pool.to_owned(),
                            bucket,
                            node_id: owner.map(|key| key.node_id.clone()).unwrap_or_default(),
                            incarnation: owner.map(|key| key.incarnation.clone()).unwrap_or_default(),
                            epoch: slot.epoch,
                            revoke_version: slot.revoke,
                        },
                    )
                    .await
                })
                .await?;
            if let Some(key) = key {
                message.buckets.push(v1::BucketOwnership {
                    bucket,
                    node_id: key.node_id.clone(),
                    incarnation: key.incarnation.clone(),
                    epoch,
                    revoked,
                });
            }
        }
        let message = MetadataChange { version, kind: Some(v1::metadata_change::Kind::Buckets(message)) };
        let pool = pool.to_owned();
        let mut finished = Vec::new();
        let version = self
            .publish_then(message, None, |state, version, now| {
                finished = state.record_handoffs(&pool, &handoffs, version, now);
                if deleting {
                    state.mark_deleting(&pool);
                }
            })
            .await?;
        Ok((version, finished))
    }

    /// Appends `message` to the change log, commits, and publishes it.
    async fn publish(self, message: MetadataChange, catalog: Option<CatalogChange>) -> Result<u64, MetadataError> {
        self.publish_then(message, catalog, |_, _, _| {}).await
    }

    /// [`ChangeTx::publish`], then `after` on the ledger under the same lock.
    async fn publish_then(
        mut self,
        message: MetadataChange,
        catalog: Option<CatalogChange>,
        after: impl FnOnce(&mut Ledger<MetadataChange>, u64, MonoTime),
    ) -> Result<u64, MetadataError> {
        let leader = self.leader;
        let retention = leader.settings.retention;
        let version = self
            .tx
            .run(async |db| {
                db.append_change(&leader.identity.cluster, change_kind(&message), &message.encode_to_vec(), retention)
                    .await
            })
            .await?;
        if version != self.version {
            // Another writer bumped the counter: this leader's view is stale. Roll back.
            leader.invalidate("the version counter moved under this leader");
            return Err(MetadataError::Store(StoreError::Inconsistent(format!(
                "metadata version moved to {version} under term {}, expected {}",
                leader.identity.term, self.version
            ))));
        }
        // From here until the state below is updated, stopping halfway (an error, or the
        // caller's future dropped mid-commit) leaves this state unsure which version is next.
        let unsettled = Unsettled { leader, settled: false };
        if let Err(error) = self.tx.commit().await {
            return Err(error.into());
        }
        if crate::failpoint::armed(crate::failpoint::COMMIT_ANSWER_LOST) {
            warn!(version, "failpoint: the commit's answer is lost");
            return Err(MetadataError::Store(StoreError::Timeout { op: "commit", after: Duration::ZERO }));
        }
        let now = leader.clock.now();
        let mut state = leader.state();
        state
            .publish(version, message, catalog.as_ref(), now)
            .expect("admitted before it was written, under the serial guard");
        after(&mut state, version, now);
        drop(state);
        unsettled.settle();
        Ok(version)
    }
}

/// Gives the leader's state up unless the change it guards was settled: a commit may have
/// happened that the state does not show.
struct Unsettled<'a> {
    leader: &'a MetadataLeader,
    settled: bool,
}

impl Unsettled<'_> {
    fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.leader.invalidate("the outcome of a change's commit is unknown");
        }
    }
}
