//! The registry's store writes: registering, deregistering and evicting incarnations, and
//! forgetting tombstones that have provably fenced. Each is term-guarded and serialized with
//! the publications; the ledger decides, the store records.
//!
//! Registrations are group-committed: a cold start of thousands of agents must not pay one
//! store commit (an fsync) each. A registration joins a queue and waits for its answer; the
//! first one to find no writer starts one (a task of its own, so that no caller's deadline can
//! stop a batch halfway). The writer takes the publication lock, drains what is queued, writes
//! it in one term-guarded transaction (within a time budget, since the transaction holds the
//! lease row the leader renews), applies it to the ledger exactly as one registration after
//! another would, and answers every caller; what queued meanwhile is the next batch. No
//! timer: a lone registration is written at once, and batches grow only with the load.

use std::collections::VecDeque;

use leasehold_core::keeper::ResourceState;
use leasehold_store::ResourceRow;
use tokio::sync::oneshot;

use super::*;

/// One data node's registration.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    /// The stable node id.
    pub node_id: &'a str,
    /// This process's incarnation.
    pub incarnation: &'a str,
    /// Where pushes reach it.
    pub address: &'a str,
    /// The bucket pools it joins.
    pub pools: &'a [String],
    /// The resource it runs as (empty for none).
    pub resource_id: &'a str,
    /// The start attempt that launched it (empty when started by hand or elsewhere).
    pub attempt_id: &'a str,
}

/// Whether a data node may register as `resource_id` presenting `attempt_id`.
fn check_resource(resource_id: &str, attempt_id: &str, row: Option<&ResourceRow>) -> Result<(), MetadataError> {
    let Some(row) = row else {
        return Err(MetadataError::NoSuchResource { resource: resource_id.to_owned() });
    };
    if row.state == ResourceState::Cleaning {
        return Err(MetadataError::ResourceCleaning { resource: resource_id.to_owned() });
    }
    if !attempt_id.is_empty() && attempt_id != row.attempt_id {
        return Err(MetadataError::SupersededAttempt {
            resource: resource_id.to_owned(),
            attempt: attempt_id.to_owned(),
            latest: row.attempt_id.clone(),
        });
    }
    Ok(())
}

/// The most registrations one batch takes from the queue; [`BATCH_WRITE_BUDGET`] may cut it
/// shorter.
pub const MAX_REGISTRATION_BATCH: usize = 1000;

/// How long one batch may spend on its statements before it commits what it has written and
/// leaves the rest for the next batch. A guarded transaction holds the lease row's lock from
/// its first statement to its commit, and the leader's own lease renewal waits behind it
/// (bounded by `ha.store-timeout`, 500 ms by default, 200 ms in the tests): a batch must stay
/// well inside that, whatever the store's round trip (docs/BENCHMARKS.md, "Registration at
/// scale").
const BATCH_WRITE_BUDGET: Duration = Duration::from_millis(50);

/// A registration as queued: owned, since its caller may go away before it is written.
#[derive(Debug)]
struct Queued {
    node_id: String,
    incarnation: String,
    address: String,
    pools: Vec<String>,
    resource_id: String,
    attempt_id: String,
    /// Where the answer goes; a caller that gave up has dropped the other end.
    answer: oneshot::Sender<Result<(), MetadataError>>,
}

impl Queued {
    fn answer(self, result: Result<(), MetadataError>) {
        // A caller whose deadline passed is gone; its registration stands all the same.
        let _ = self.answer.send(result);
    }
}

/// Registrations waiting for their batch, and whether a writer is at work on them.
#[derive(Debug, Default)]
pub(super) struct RegistrationQueue {
    inner: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    queued: VecDeque<Queued>,
    writing: bool,
}

impl RegistrationQueue {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.inner.lock().expect("registration queue poisoned")
    }

    /// Queues `registration`; true when no writer is at work, and the caller must start one.
    fn push(&self, registration: Queued) -> bool {
        let mut waiting = self.waiting();
        waiting.queued.push_back(registration);
        metrics::registrations_queued(waiting.queued.len());
        !std::mem::replace(&mut waiting.writing, true)
    }

    /// The next batch; `None`, with the writer's work over, when nothing is queued. Deciding
    /// both under one lock means a registration is either in a batch or finds no writer and
    /// starts one: none is left queued with nobody to write it.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut waiting = self.waiting();
        let batch = take_batch(&mut waiting.queued, MAX_REGISTRATION_BATCH, |queued| &queued.node_id);
        metrics::registrations_queued(waiting.queued.len());
        if batch.is_empty() {
            waiting.writing = false;
            return None;
        }
        Some(batch)
    }

    /// Puts `unwritten` back at the front of the queue, in order: each goes ahead of any later
    /// registration of its node, which the batch had left queued.
    fn put_back(&self, unwritten: Vec<Queued>) {
        if unwritten.is_empty() {
            return;
        }
        let mut waiting = self.waiting();
        for queued in unwritten.into_iter().rev() {
            waiting.queued.push_front(queued);
        }
        metrics::registrations_queued(waiting.queued.len());
    }

    /// The writer stopped without finishing (it panicked): every queued caller is answered
    /// (the dropped senders fail their waits), and the next registration starts a writer.
    fn abandon(&self) {
        let mut waiting = self.waiting();
        waiting.queued.clear();
        waiting.writing = false;
        metrics::registrations_queued(0);
    }
}

/// Takes up to `max` items from the front of `queue`, in order, leaving in place (in their
/// order) every item whose key an earlier item of the batch has: a second registration of one
/// node goes in the next batch, after the first is written and applied, just as if they had
/// come one after the other.
fn take_batch<T>(queue: &mut VecDeque<T>, max: usize, key: impl Fn(&T) -> &str) -> Vec<T> {
    let mut batch = Vec::new();
    let mut keys = BTreeSet::new();
    let mut left = VecDeque::new();
    while batch.len() < max {
        let Some(item) = queue.pop_front() else { break };
        if keys.insert(key(&item).to_owned()) {
            batch.push(item);
        } else {
            left.push_back(item);
        }
    }
    left.append(queue);
    *queue = left;
    batch
}

/// Stops the writer's work cleanly if its task unwinds.
struct WriterGuard<'a> {
    queue: &'a RegistrationQueue,
    finished: bool,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.queue.abandon();
        }
    }
}

impl MetadataLeader {
    /// Registers a data node's incarnation (a term-guarded write); an earlier incarnation
    /// becomes a tombstone that still counts for broadcasts.
    /// A retired incarnation is refused: a registration delayed past its own deregistration
    /// (or an evicted agent coming back) must not revive it. A node that runs as a resource is
    /// refused while the resource is being cleaned up, and when it presents a start attempt a
    /// later one replaced (checked in the same transaction, so no cleanup or restart can slip
    /// in between).
    ///
    /// The write is batched with the registrations that arrive meanwhile (see the module
    /// doc). A refusal fails only its own registration; a store error or a refused term guard
    /// fails the whole batch, and nothing of it is applied. A caller that stops waiting (its
    /// deadline passed) does not stop the write.
    pub async fn register(self: &Arc<Self>, node: &Registration<'_>) -> Result<(), MetadataError> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            node_id: node.node_id.to_owned(),
            incarnation: node.incarnation.to_owned(),
            address: node.address.to_owned(),
            pools: node.pools.to_vec(),
            resource_id: node.resource_id.to_owned(),
            attempt_id: node.attempt_id.to_owned(),
            answer,
        };
        if self.registrations.push(queued) {
            let leader = Arc::clone(self);
            tokio::spawn(async move { leader.write_registrations().await });
        }
        // The writer answers every registration it takes; a dropped sender means it stopped
        // unexpectedly, and the agent registers again.
        answered.await.unwrap_or(Err(MetadataError::TermEnded { term: self.identity.term }))
    }

    /// The writer: one batch at a time, each under the publication lock, until none is queued.
    async fn write_registrations(self: Arc<Self>) {
        let mut guard = WriterGuard { queue: &self.registrations, finished: false };
        loop {
            // Drained only once the lock is held: whatever queued while the last batch (or a
            // change) held it joins this one.
            let _serial = self.publications.lock().await;
            let Some(batch) = self.registrations.next_batch() else { break };
            self.write_batch(batch).await;
        }
        guard.finished = true;
    }

    /// Writes one batch and answers each of its callers. Call it under the publication lock.
    async fn write_batch(&self, batch: Vec<Queued>) {
        let started = std::time::Instant::now();
        if self.state_token.is_cancelled() {
            for queued in batch {
                queued.answer(Err(MetadataError::TermEnded { term: self.identity.term }));
            }
            return;
        }
        // Decided on the ledger before the transaction, as for a lone registration: the batch
        // holds at most one registration per node, and only this lock changes the registry.
        let mut admitted = Vec::with_capacity(batch.len());
        {
            let state = self.state();
            for queued in batch {
                match state.check_registration(&queued.node_id, &queued.incarnation) {
                    Ok(earlier) => admitted.push((queued, earlier)),
                    Err(_) => {
                        let refusal = MetadataError::IncarnationRetired {
                            node_id: queued.node_id.clone(),
                            incarnation: queued.incarnation.clone(),
                        };
                        queued.answer(Err(refusal));
                    }
                }
            }
        }
        if admitted.is_empty() {
            return;
        }
        let refusals = match self.write_admitted(&admitted).await {
            Ok(refusals) => refusals,
            Err(error) => {
                warn!(registrations = admitted.len(), %error, "registration batch failed: every registration in it gets the error, none is applied");
                metrics::registration_batch(false, admitted.len(), started.elapsed());
                let error = Arc::new(error);
                for (queued, _) in admitted {
                    queued.answer(Err(MetadataError::Batch(Arc::clone(&error))));
                }
                return;
            }
        };
        // The registrations the budget left unwritten go first in the next batch, decided
        // again there.
        let mut admitted = admitted;
        let unwritten: Vec<Queued> = admitted.drain(refusals.len()..).map(|(queued, _)| queued).collect();
        self.registrations.put_back(unwritten);
        let now = self.clock.now();
        let mut registered = Vec::with_capacity(admitted.len());
        let mut refused = Vec::new();
        {
            let mut state = self.state();
            for ((queued, earlier), refusal) in admitted.into_iter().zip(refusals) {
                if let Some(refusal) = refusal {
                    refused.push((queued, refusal));
                    continue;
                }
                let replaced = state.register(&queued.node_id, &queued.incarnation, &queued.address, earlier, now);
                let key = NodeKey::new(&queued.node_id, &queued.incarnation);
                state.set_pools(&key, queued.pools.clone());
                state.set_resource(&key, &queued.resource_id);
                registered.push((queued, replaced));
            }
            metrics::data_nodes_registered(state.registered_count());
        }
        metrics::registration_batch(true, registered.len(), started.elapsed());
        for (queued, refusal) in refused {
            queued.answer(Err(refusal));
        }
        if registered.is_empty() {
            return;
        }
        let size = registered.len();
        for (queued, replaced) in registered {
            let Queued { node_id, incarnation, address, pools, resource_id, .. } = &queued;
            match replaced {
                Some(previous) => {
                    info!(node_id, incarnation, replaced = %previous, %address, resource = resource_id, batch = size, "data node re-registered; the old incarnation counts until it has fenced")
                }
                None => {
                    info!(node_id, incarnation, %address, ?pools, resource = resource_id, batch = size, "data node registered")
                }
            }
            queued.answer(Ok(()));
        }
        self.membership_changed.notify_one();
    }

    /// The batch's one term-guarded transaction: for each registration in turn, its resource
    /// check and its rows, until [`BATCH_WRITE_BUDGET`] has passed. Answers the refusal of each
    /// registration it got to (`None`: written); the ones after it are left for the next batch.
    async fn write_admitted(
        &self,
        admitted: &[(Queued, Option<String>)],
    ) -> Result<Vec<Option<MetadataError>>, MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let started = self.clock.now();
        let mut refusals = Vec::with_capacity(admitted.len());
        for (queued, earlier) in admitted {
            // At least one registration per batch, so the queue always moves.
            if !refusals.is_empty() && self.clock.now().saturating_since(started) >= BATCH_WRITE_BUDGET {
                break;
            }
            let refusal = tx
                .run(async |db| {
                    let Queued { node_id, incarnation, address, pools, resource_id, attempt_id, .. } = queued;
                    if !resource_id.is_empty() {
                        let resource = db.get_resource(cluster, resource_id).await?;
                        if let Err(refusal) = check_resource(resource_id, attempt_id, resource.as_ref()) {
                            return Ok(Some(refusal));
                        }
                    }
                    db.upsert_data_node(cluster, node_id, incarnation, address, pools, resource_id).await?;
                    if let Some(earlier) = earlier {
                        db.put_tombstone(cluster, node_id, earlier).await?;
                    }
                    Ok(None)
                })
                .await?;
            refusals.push(refusal);
        }
        tx.commit().await?;
        Ok(refusals)
    }

    /// Removes `node_id` at `incarnation`; it still counts for broadcasts until it has fenced.
    /// With `buckets_released` (the agent gave every bucket up), its buckets may move at once.
    /// With `released` (its host stopped serving), it is forgotten at once instead.
    pub async fn deregister(
        &self,
        node_id: &str,
        incarnation: &str,
        buckets_released: bool,
        released: bool,
    ) -> Result<bool, MetadataError> {
        let _serial = self.publications.lock().await;
        let key = NodeKey::new(node_id, incarnation);
        if released {
            return self.release(&key).await;
        }
        let removed = self.retire(std::slice::from_ref(&key), buckets_released, Departure::Left).await?;
        info!(
            node_id,
            incarnation,
            removed = !removed.is_empty(),
            buckets_released,
            "data node deregistered; it counts until it has fenced"
        );
        Ok(!removed.is_empty())
    }

    /// Deletes the registration of `key` and any tombstone row of it in one guarded
    /// transaction, then forgets it ([`Ledger::release`]); broadcasts waiting for it are woken.
    /// Call it under the publication lock.
    async fn release(&self, key: &NodeKey) -> Result<bool, MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let removed = tx
            .run(async |db| {
                let removed = db.retire_data_node(cluster, &key.node_id, &key.incarnation).await?;
                let tombstone = db.delete_tombstone(cluster, &key.node_id, &key.incarnation).await?;
                Ok(removed || tombstone)
            })
            .await?;
        tx.commit().await?;
        let mut state = self.state();
        state.release(key);
        metrics::data_nodes_registered(state.registered_count());
        drop(state);
        self.membership_changed.notify_one();
        self.acknowledgements_moved();
        info!(node = %key, known = removed, "data node released: its host stopped serving, so it is forgotten at once and no broadcast waits for it");
        Ok(removed)
    }

    /// An operator's removal of `node_id` ([`Ledger::removal`]): retires its registered
    /// incarnation, which counts as a tombstone until it has provably fenced; returns it.
    pub async fn remove(&self, node_id: &str) -> Result<String, MetadataError> {
        let _serial = self.publications.lock().await;
        let key = match self.state().removal(node_id, self.clock.now()) {
            ledger::Removal::Unknown => return Err(MetadataError::UnknownNode { node_id: node_id.to_owned() }),
            ledger::Removal::Live { silent_for, .. } => {
                return Err(MetadataError::NodeLive {
                    node_id: node_id.to_owned(),
                    silent_ms: silent_for.as_millis() as u64,
                });
            }
            ledger::Removal::Retire(key) => key,
        };
        let removed = self.retire(std::slice::from_ref(&key), false, Departure::Lost).await?;
        if removed.is_empty() {
            return Err(MetadataError::UnknownNode { node_id: node_id.to_owned() });
        }
        warn!(node = %key, "data node removed by an operator; it counts until it has provably fenced");
        Ok(key.incarnation)
    }

    /// Evicts every registered incarnation not heard from for `datanodes.evict-after` (never
    /// less than `T_proceed`, so each has provably fenced); returns how many.
    pub async fn evict_silent(&self) -> Result<usize, MetadataError> {
        let _serial = self.publications.lock().await;
        let evict_after = self.settings.evict_after.max(self.proceed_after);
        let silent = self.state().silent(self.clock.now(), evict_after);
        if silent.is_empty() {
            return Ok(0);
        }
        let evicted = self.retire(&silent, false, Departure::Lost).await?;
        for key in &evicted {
            warn!(node = %key, silent_for_s = evict_after.as_secs(), "data node evicted: silent past datanodes.evict-after; it is told to start a new incarnation if it comes back");
        }
        metrics::data_nodes_evicted(evicted.len());
        Ok(evicted.len())
    }

    /// Removes the registrations of `keys` and keeps them as tombstones, in the store and
    /// here, in one guarded transaction; returns the ones that were registered. Call it under
    /// the publication lock.
    /// With `buckets_released`, each gave every bucket up: the tombstone records it, so that
    /// every leader settles its revokes at once. The tombstone also records the `departure`,
    /// for listings.
    pub(super) async fn retire(
        &self,
        keys: &[NodeKey],
        buckets_released: bool,
        departure: Departure,
    ) -> Result<Vec<NodeKey>, MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let removed = tx
            .run(async |db| {
                let mut removed = Vec::new();
                for key in keys {
                    if db.retire_data_node(cluster, &key.node_id, &key.incarnation).await? {
                        db.put_tombstone(cluster, &key.node_id, &key.incarnation).await?;
                        if buckets_released {
                            db.mark_tombstone_released(cluster, &key.node_id, &key.incarnation).await?;
                        }
                        if departure == Departure::Left {
                            db.mark_tombstone_left(cluster, &key.node_id, &key.incarnation).await?;
                        }
                        removed.push(key.clone());
                    }
                }
                Ok(removed)
            })
            .await?;
        tx.commit().await?;
        let mut state = self.state();
        if buckets_released {
            removed.iter().for_each(|key| state.drained(key));
        }
        state.retire(keys, &removed, departure, self.clock.now());
        metrics::data_nodes_registered(state.registered_count());
        drop(state);
        self.membership_changed.notify_one();
        Ok(removed)
    }

    /// Deletes the store rows of tombstones that have provably fenced; returns how many.
    pub async fn sweep_tombstones(&self) -> Result<usize, MetadataError> {
        let _serial = self.publications.lock().await;
        let settled = self.state().settle_tombstones(self.clock.now());
        if settled.is_empty() {
            return Ok(0);
        }
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        tx.run(async |db| {
            for key in &settled {
                db.delete_tombstone(cluster, &key.node_id, &key.incarnation).await?;
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.state().tombstones_deleted(&settled);
        info!(tombstones = settled.len(), "settled tombstones forgotten");
        Ok(settled.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_one_registration_per_node_and_leaves_the_rest_in_order() {
        let mut queue: VecDeque<&str> = ["a", "b", "a", "c", "b", "d"].into();
        assert_eq!(take_batch(&mut queue, 10, |item| item), ["a", "b", "c", "d"]);
        assert_eq!(queue, ["a", "b"]);
        assert_eq!(take_batch(&mut queue, 10, |item| item), ["a", "b"]);
        assert!(queue.is_empty());
        assert!(take_batch(&mut queue, 10, |item| item).is_empty());
    }

    #[test]
    fn a_batch_stops_at_its_bound() {
        let mut queue: VecDeque<&str> = ["a", "a", "b", "c"].into();
        assert_eq!(take_batch(&mut queue, 2, |item| item), ["a", "b"]);
        assert_eq!(queue, ["a", "c"], "what was passed over keeps its place ahead of the rest");
    }
}
