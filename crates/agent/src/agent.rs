//! The agent runtime (DESIGN §4; the argument is in docs/PROTOCOL.md).
//!
//! Decisions about the lease are made by [`LeaseManager`] (pure, in `leasehold-core`); this
//! module carries them out. The order that matters: a heartbeat's send instant is recorded
//! before the request leaves; a response's changes are applied to the cache *before* the
//! renewal counts; a fence drops the cache before anything else happens. Reads take no lock:
//! they load the current cache value and check its lease against the boot clock on every call.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use leasehold::v1::{
    AgentLeaseState, ApplyInvalidationRequest, DeregisterRequest, HeartbeatRequest, HeartbeatResponse, LeaseState,
    MetadataChange, RefusedChange, RegisterRequest, metadata_change,
};
use leasehold_core::agent_lease::{
    AgentState, CachePoint, HeartbeatTicket, LeaderRef, LeaseManager, PushRefusal, ResponseDecision, holds_answer,
    snapshot_is_behind,
};
use leasehold_core::catalog::{Catalog, Table};
use leasehold_core::ddl::{self, CatalogBatch, DataTarget, ResyncDrops, ResyncPlan};
use leasehold_core::{BootClock, Clock, MonoTime};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::cache::{ApplyError, CacheView};
use crate::config::AgentConfig;
use crate::failpoint;
use crate::link::{CoordinatorLink, LinkError};
use crate::metrics;
use crate::unreachable::UnreachableWarning;

/// What the agent tells its host process, so that the host never has to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// Changes up to `version` were applied to the cache.
    Applied {
        /// The new version.
        version: u64,
    },
    /// The lease ran out: the cache is dropped, reads are refused.
    Fenced,
    /// A resync was applied and the lease is valid again.
    Unfenced {
        /// The version resynced to.
        version: u64,
    },
    /// This data node owns a bucket from now on (while its lease is valid).
    Granted {
        /// The pool.
        pool: String,
        /// The bucket.
        bucket: u32,
        /// The grant's epoch.
        epoch: u64,
    },
    /// This data node owns a bucket no more: [`Agent::owns`] refuses it from before this
    /// event. After a revoke, the host released it first. After [`AgentEvent::Fenced`] (or a
    /// new incarnation, or a clean stop) every bucket the node owned comes this way, with the
    /// epoch it was owned at, so a host that tracks ownership by events learns what it lost.
    Revoked {
        /// The pool.
        pool: String,
        /// The bucket.
        bucket: u32,
        /// The epoch it was owned at.
        epoch: u64,
    },
}

/// The host process's say in what the agent applies, and its part in dropping data.
pub trait AgentHost: Send + Sync + 'static {
    /// Called before a change is applied to the cache; an error refuses it, and the agent
    /// answers `CANNOT_APPLY` and reports the refusal with its heartbeats until it renews (a
    /// broadcast in a reversible step then fails, whichever leader runs it). A snapshot is
    /// asked about too: every object it holds in a reversible step (pre-created, or under a
    /// marker whose drop was not ordered) that the cache does not hold as it is comes here as
    /// a put at the version it changed at, so that resyncing never installs what was refused.
    fn prepare(&self, change: &MetadataChange) -> Result<(), String> {
        let _ = change;
        Ok(())
    }

    /// Deletes the data of a dropped database, table or column. Called when the order to drop
    /// is applied, which the leader sends after every data node acknowledged the pre-delete
    /// marker or has provably fenced; may come more than once for the same target. An agent
    /// that could not hear the order (fenced, or behind a gap) calls it when it resyncs, for
    /// every object of the cache it held that the new catalog lacks or holds as another
    /// object created again under the same name. An error leaves the change or the resync
    /// unapplied, so the agent cannot renew its lease and fences, and asks again. Targets
    /// name the creation version of the object whose data goes: key data by it and a late
    /// order can never touch the data of an object created again.
    fn drop_data(&self, target: &DataTarget) -> Result<(), String> {
        let _ = target;
        Ok(())
    }

    /// Called after the agent installed a snapshot (at its first heartbeat, after a fence, or
    /// after a gap), with the whole catalog it now holds, before it serves from it, and after
    /// the [`AgentHost::drop_data`] calls for what it knew was dropped. What the agent cannot
    /// know is what a host kept from before this process started (or from another store
    /// epoch): reconcile that here, deleting data whose database, table or column (by name
    /// and creation version) this catalog does not have. It runs before the lease is renewed:
    /// hand slow deletions to a task of your own.
    fn resynced(&self, catalog: &Catalog) {
        let _ = catalog;
    }

    /// A bucket this data node owns is being taken from it: stop every piece of work under
    /// `epoch` and return only once none is in flight. [`Agent::owns`] refuses the bucket from
    /// before this call on, and the revoke is acknowledged (so the bucket can be granted to
    /// another node) only after it returned `Ok`; an error leaves the revoke unapplied, and it
    /// is asked again.
    fn release(&self, pool: &str, bucket: u32, epoch: u64) -> Result<(), String> {
        let _ = (pool, bucket, epoch);
        Ok(())
    }
}

/// A bucket this data node owns, as [`Agent::owns`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// The grant's epoch: a fencing token that only grows; pass it to external storage so
    /// that it refuses a writer with a lower one.
    pub epoch: u64,
    /// The end of the lease: act on the bucket only before it (and re-check before you
    /// acknowledge work).
    pub valid_until: MonoTime,
}

/// The buckets of one pool this data node owns, as [`Agent::owned`] hands them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// Bucket and epoch, by bucket.
    pub buckets: Vec<(u32, u64)>,
    /// The end of the lease.
    pub valid_until: MonoTime,
    /// The cache's version.
    pub version: u64,
}

/// Why [`Agent::owns`] said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    /// No valid lease: a fenced node owns nothing.
    #[error("fenced: this data node holds no valid metadata lease and owns no bucket")]
    Fenced,
    /// Another node owns it, it is being revoked from this one, or nobody owns it.
    #[error("this data node does not own bucket {bucket} of pool {pool}")]
    NotOwner {
        /// The pool.
        pool: String,
        /// The bucket.
        bucket: u32,
    },
}

/// A host that accepts every change.
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptAll;

impl AgentHost for AcceptAll {}

/// A table resolved through the fenced cache, borrowed from the cache for one read: see
/// [`Agent::with_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRef<'a> {
    /// The table as a reader may see it: visible columns only, TTL in force. Cloning the
    /// `Arc` keeps it past the read, at the price of a shared reference count.
    pub schema: &'a Arc<Table>,
    /// The cache's version.
    pub version: u64,
    /// The lease's end: re-check against it before acknowledging a write.
    pub valid_until: MonoTime,
}

impl From<TableRef<'_>> for ResolvedTable {
    fn from(table: TableRef<'_>) -> ResolvedTable {
        ResolvedTable { schema: Arc::clone(table.schema), version: table.version, valid_until: table.valid_until }
    }
}

/// A table resolved through the fenced cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTable {
    /// The table as a reader may see it: visible columns only, TTL in force.
    pub schema: Arc<Table>,
    /// The cache's version.
    pub version: u64,
    /// The lease's end: re-check against it before acknowledging a write.
    pub valid_until: MonoTime,
}

/// Why a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No valid lease.
    #[error("fenced: this data node holds no valid metadata lease")]
    Fenced,
    /// The cache has no such table.
    #[error("no table {database}.{table} at version {version}")]
    NotFound {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The cache's version.
        version: u64,
    },
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No valid lease.
    #[error("fenced: this agent resyncs through its heartbeat")]
    Fenced,
    /// Not the leader this agent follows.
    #[error("not the leader of this agent's latest heartbeat (it follows {following})")]
    NotMyLeader {
        /// Who it follows.
        following: String,
    },
    /// The push was meant for another incarnation of this node.
    #[error("this push is for incarnation {meant}, this agent is {actual}")]
    WrongIncarnation {
        /// The incarnation the leader meant.
        meant: String,
        /// This agent's.
        actual: String,
    },
    /// The changes could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// A data-node agent. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    config: AgentConfig,
    /// This process's current incarnation: new at start, and again if the leader retires it.
    incarnation: ArcSwap<String>,
    clock: Arc<dyn Clock>,
    host: Arc<dyn AgentHost>,
    /// The lease; also serializes every change of the cache.
    lease: Mutex<LeaseManager>,
    view: ArcSwap<CacheView>,
    /// The cache as it was when the agent last fenced, kept (never served) until a resync
    /// tells the host what was dropped meanwhile. Changed with the lease locked.
    before_fence: Mutex<Option<Arc<CacheView>>>,
    /// The orders to drop data carried out by this process, while their objects are still
    /// under a marker: a snapshot that carries such an order does not repeat it.
    dropped: Mutex<BTreeSet<DataTarget>>,
    /// The change the host refused last, reported with every heartbeat until one renews.
    refused: Mutex<Option<RefusedChange>>,
    /// Buckets whose revoke is being applied: refused by `owns` from before the host's
    /// release until the cache no longer shows them owned.
    releasing: ArcSwap<BTreeSet<(String, u32, u64)>>,
    /// Bumped after a bucket joins `releasing` (or the agent drains), before the host is asked
    /// to release: `owns` answers only from a view and a `releasing` it read with no bump in
    /// between, so every yes it gives comes before the host's `release` is called.
    release_generation: std::sync::atomic::AtomicU64,
    /// Set when the agent stops: it owns nothing from then on (it gave every bucket up).
    drained: std::sync::atomic::AtomicBool,
    /// Set by [`Agent::shutdown`]: the host stopped serving, and this agent answers nothing
    /// from then on; its deregistration says so (`released`).
    released: std::sync::atomic::AtomicBool,
    /// Ends [`Agent::run`], as its own shutdown token does.
    stop: CancellationToken,
    /// Where [`Agent::run`] stands: `None` before it starts, `Some(false)` while it runs,
    /// `Some(true)` once it has deregistered (or stopped for good).
    run_state: tokio::sync::watch::Sender<Option<bool>>,
    /// The latest end of validity the sidecar's gRPC answers handed out (boot-clock
    /// nanoseconds): what its shutdown waits out before it may say `released`.
    answered_until_ns: std::sync::atomic::AtomicU64,
    events: broadcast::Sender<AgentEvent>,
    renewed: Notify,
    /// Why the leader refused this process for good, once it has.
    superseded: std::sync::OnceLock<String>,
    /// Runs once, between the two reads of [`Agent::consistently`]: tests put a whole release
    /// there, the window that a stale view must not turn into a yes.
    #[cfg(test)]
    between_reads: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node_id", &self.inner.config.node_id)
            .field("incarnation", &self.inner.incarnation.load())
            .finish()
    }
}

/// How a registration attempt ended.
enum Registration {
    Registered,
    Retry,
    /// Refused for good (see [`Agent::superseded`]).
    Superseded(String),
}

fn new_incarnation() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Agent {
    /// A new agent, fenced until its first resync; call [`Agent::run`] to start heartbeats.
    pub fn new(config: AgentConfig, host: Arc<dyn AgentHost>) -> Agent {
        Self::with_clock(config, host, Arc::new(BootClock))
    }

    /// A new agent on `clock` (tests drive a manual clock).
    pub fn with_clock(config: AgentConfig, host: Arc<dyn AgentHost>, clock: Arc<dyn Clock>) -> Agent {
        let (events, _) = broadcast::channel(256);
        Agent {
            inner: Arc::new(Inner {
                config,
                incarnation: ArcSwap::from_pointee(new_incarnation()),
                clock,
                host,
                lease: Mutex::new(LeaseManager::new()),
                view: ArcSwap::from_pointee(CacheView::default()),
                before_fence: Mutex::new(None),
                dropped: Mutex::new(BTreeSet::new()),
                refused: Mutex::new(None),
                releasing: ArcSwap::from_pointee(BTreeSet::new()),
                release_generation: std::sync::atomic::AtomicU64::new(0),
                drained: std::sync::atomic::AtomicBool::new(false),
                released: std::sync::atomic::AtomicBool::new(false),
                stop: CancellationToken::new(),
                run_state: tokio::sync::watch::Sender::new(None),
                answered_until_ns: std::sync::atomic::AtomicU64::new(0),
                events,
                renewed: Notify::new(),
                superseded: std::sync::OnceLock::new(),
                #[cfg(test)]
                between_reads: Mutex::new(None),
            }),
        }
    }

    /// Starts the heartbeat and fence tasks on the current runtime; they stop at `shutdown`,
    /// after deregistering, which is when the returned handle completes.
    pub fn start(
        config: AgentConfig,
        host: Arc<dyn AgentHost>,
        shutdown: CancellationToken,
    ) -> (Agent, tokio::task::JoinHandle<()>) {
        let agent = Agent::new(config, host);
        let task = tokio::spawn(agent.clone().run(shutdown));
        (agent, task)
    }

    /// This process's current incarnation.
    pub fn incarnation(&self) -> String {
        self.inner.incarnation.load().as_ref().clone()
    }

    /// Starts a new incarnation: the leader retired this one (it was evicted after a long
    /// silence, so its lease has long run out) and will never take it back.
    fn start_new_incarnation(&self) {
        // Under the lease's lock, which every change of the cache holds: no grant to the
        // retired incarnation can be announced after its buckets were reported lost.
        let _lease = self.lease();
        let retired = self.incarnation();
        self.inner.incarnation.store(Arc::new(new_incarnation()));
        warn!(node_id = %self.inner.config.node_id, %retired, incarnation = %self.incarnation(), "the leader retired this incarnation; registering as a new one");
        self.lost_all(&self.inner.view.load(), &retired, "the incarnation was retired");
    }

    /// Why the leader refused this process for good (a later start attempt of its resource
    /// replaced it, or the resource is being cleaned up); the heartbeat task has then ended.
    pub fn superseded(&self) -> Option<&str> {
        self.inner.superseded.get().map(String::as_str)
    }

    /// The agent's settings.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// Invalidations, fences and unfences, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.inner.events.subscribe()
    }

    /// Resolves a table through the cache, checking the lease synchronously, and hands it to
    /// `read` as a borrow. Lock-free, and writes no memory shared with other readers: the
    /// cache is pinned through the calling thread's own slot of the `ArcSwap`, and the table
    /// is borrowed rather than counted, so concurrent readers of the same table do not
    /// contend. The pin holds back the memory of a replaced cache until `read` returns: keep
    /// `read` short, and clone [`TableRef::schema`] (or call [`Agent::resolve_table`]) to
    /// keep the table longer.
    pub fn with_table<T>(
        &self,
        database: &str,
        table: &str,
        read: impl FnOnce(TableRef<'_>) -> T,
    ) -> Result<T, ResolveError> {
        let view = self.inner.view.load();
        let now = self.inner.clock.now();
        let Some(valid_until) = view.valid_until.filter(|until| now < *until) else {
            return Err(ResolveError::Fenced);
        };
        match view.table(database, table) {
            Some(schema) => Ok(read(TableRef { schema, version: view.version, valid_until })),
            None => Err(ResolveError::NotFound {
                database: database.to_owned(),
                table: table.to_owned(),
                version: view.version,
            }),
        }
    }

    /// Resolves a table through the cache, checking the lease synchronously, and hands out a
    /// table the caller may keep. Lock-free, but every hit increments the table's shared
    /// reference count, which readers of the same table on other cores contend on: a hot read
    /// path takes [`Agent::with_table`].
    pub fn resolve_table(&self, database: &str, table: &str) -> Result<ResolvedTable, ResolveError> {
        self.with_table(database, table, |resolved| resolved.into())
    }

    /// Whether this data node owns `bucket` of `pool` now, checked like a read: against the
    /// lease, on every call, without a lock. A fenced node owns nothing.
    pub fn owns(&self, pool: &str, bucket: u32) -> Result<Ownership, OwnershipError> {
        self.consistently(|view, releasing| {
            let now = self.inner.clock.now();
            let Some(valid_until) = view.valid_until.filter(|until| now < *until) else {
                return Err(OwnershipError::Fenced);
            };
            let not_owner = || OwnershipError::NotOwner { pool: pool.to_owned(), bucket };
            if self.is_drained() {
                return Err(not_owner());
            }
            let incarnation = self.inner.incarnation.load();
            match view.buckets.get(pool).and_then(|buckets| buckets.get(&bucket)) {
                Some(owner)
                    if !owner.revoked
                        && owner.node_id == self.inner.config.node_id
                        && owner.incarnation == **incarnation
                        && !releasing.contains(&(pool.to_owned(), bucket, owner.epoch)) =>
                {
                    Ok(Ownership { epoch: owner.epoch, valid_until })
                }
                _ => Err(not_owner()),
            }
        })
    }

    /// Runs `answer` on the cache and the buckets being released, read with no release begun
    /// in between (else reads again), so that an ownership it grants was still held when the
    /// host's `release` was called, if it was at all. Lock-free.
    fn consistently<T>(&self, answer: impl Fn(&CacheView, &BTreeSet<(String, u32, u64)>) -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let before = self.inner.release_generation.load(SeqCst);
            let view = self.inner.view.load();
            #[cfg(test)]
            {
                let interpose = self.inner.between_reads.lock().expect("test hook poisoned").take();
                if let Some(interpose) = interpose {
                    interpose();
                }
            }
            let releasing = self.inner.releasing.load();
            let answer = answer(&view, &releasing);
            if self.inner.release_generation.load(SeqCst) == before {
                return answer;
            }
        }
    }

    /// Every bucket of `pool` this data node owns now, with its epoch; checked like
    /// [`Agent::owns`].
    pub fn owned(&self, pool: &str) -> Result<Owned, OwnershipError> {
        self.consistently(|view, releasing| {
            let now = self.inner.clock.now();
            let Some(valid_until) = view.valid_until.filter(|until| now < *until) else {
                return Err(OwnershipError::Fenced);
            };
            if self.is_drained() {
                return Ok(Owned { buckets: Vec::new(), valid_until, version: view.version });
            }
            let owned = view
                .owned_by(&self.inner.config.node_id, &self.incarnation())
                .into_iter()
                .filter(|((owned_pool, bucket), epoch)| {
                    owned_pool == pool && !releasing.contains(&(pool.to_owned(), *bucket, *epoch))
                })
                .map(|((_, bucket), epoch)| (bucket, epoch))
                .collect();
            Ok(Owned { buckets: owned, valid_until, version: view.version })
        })
    }

    fn is_drained(&self) -> bool {
        self.inner.drained.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Gives every bucket up before a clean stop: `owns` refuses all of them from now on, and
    /// the host releases each. True when every release succeeded, so that the leader may give
    /// the buckets away at once rather than once this node has provably fenced.
    fn drain_buckets(&self) -> bool {
        self.inner.drained.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.release_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let view = self.inner.view.load_full();
        let mut released = true;
        for ((pool, bucket), epoch) in view.owned_by(&self.inner.config.node_id, &self.incarnation()) {
            match self.inner.host.release(&pool, bucket, epoch) {
                Ok(()) => info!(%pool, bucket, epoch, "bucket given up before stopping"),
                Err(error) => {
                    warn!(%pool, bucket, epoch, %error, "the host could not release a bucket; the leader waits until this node has fenced");
                    released = false;
                }
            }
            // `owns` refuses it either way, from the drain on: the host hears it here, once,
            // and not again at a later fence.
            let _ = self.inner.events.send(AgentEvent::Revoked { pool, bucket, epoch });
        }
        released
    }

    /// Tells the host that it lost every bucket `view` granted to `incarnation`; call once
    /// `owns` refuses them all (the cache was dropped, or the incarnation retired).
    fn lost_all(&self, view: &CacheView, incarnation: &str, why: &'static str) {
        if self.is_drained() {
            return;
        }
        for ((pool, bucket), epoch) in view.owned_by(&self.inner.config.node_id, incarnation) {
            info!(%pool, bucket, epoch, why, "bucket lost");
            let _ = self.inner.events.send(AgentEvent::Revoked { pool, bucket, epoch });
        }
    }

    /// Releases, through the host, every bucket of `buckets` this node owns in `current`:
    /// `owns` refuses each from before the call on.
    fn release(&self, current: &CacheView, buckets: impl IntoIterator<Item = (String, u32)>) -> Result<(), String> {
        let owned = current.owned_by(&self.inner.config.node_id, &self.incarnation());
        for (pool, bucket) in buckets {
            let Some(epoch) = owned.get(&(pool.clone(), bucket)).copied() else { continue };
            self.inner.releasing.rcu(|releasing| {
                let mut releasing = BTreeSet::clone(releasing);
                releasing.insert((pool.clone(), bucket, epoch));
                releasing
            });
            self.inner.release_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.host.release(&pool, bucket, epoch)?;
            info!(%pool, bucket, epoch, "bucket released: no work under its epoch is in flight");
        }
        Ok(())
    }

    /// After the cache moved from `before` to `after`: tells the host what this node owns
    /// now and no more, and forgets releases the cache now shows.
    fn ownership_moved(&self, before: &CacheView, after: &CacheView) {
        if Arc::ptr_eq(&before.buckets, &after.buckets) {
            return;
        }
        let (node_id, incarnation) = (&self.inner.config.node_id, self.incarnation());
        let (was, is) = (before.owned_by(node_id, &incarnation), after.owned_by(node_id, &incarnation));
        for ((pool, bucket), epoch) in &was {
            if is.get(&(pool.clone(), *bucket)) != Some(epoch) {
                info!(%pool, bucket, epoch, "bucket revoked from this data node");
                let _ =
                    self.inner.events.send(AgentEvent::Revoked { pool: pool.clone(), bucket: *bucket, epoch: *epoch });
            }
        }
        for ((pool, bucket), epoch) in &is {
            if was.get(&(pool.clone(), *bucket)) != Some(epoch) {
                info!(%pool, bucket, epoch, "bucket granted to this data node");
                let _ =
                    self.inner.events.send(AgentEvent::Granted { pool: pool.clone(), bucket: *bucket, epoch: *epoch });
            }
        }
        if !self.inner.releasing.load().is_empty() {
            // An entry goes once the cache no longer shows that grant: revoked, or granted
            // again at another epoch.
            self.inner.releasing.rcu(|releasing| {
                releasing
                    .iter()
                    .filter(|(pool, bucket, epoch)| is.get(&(pool.clone(), *bucket)) == Some(epoch))
                    .cloned()
                    .collect::<BTreeSet<_>>()
            });
        }
    }

    /// How long from now until `until`, on the agent's clock.
    pub fn valid_for(&self, until: MonoTime) -> Duration {
        self.inner.clock.now().until(until)
    }

    /// Records that an answer handed to a reader outside this process (the sidecar's gRPC
    /// service) stays valid until `until`, and returns how long from now that is.
    pub fn answered_until(&self, until: MonoTime) -> Duration {
        let nanos = until.saturating_since(MonoTime::ZERO).as_nanos() as u64;
        self.inner.answered_until_ns.fetch_max(nanos, std::sync::atomic::Ordering::SeqCst);
        self.valid_for(until)
    }

    /// How long from now until every answer recorded by [`Agent::answered_until`] has run out.
    pub fn answers_valid_for(&self) -> Duration {
        let nanos = self.inner.answered_until_ns.load(std::sync::atomic::Ordering::SeqCst);
        self.valid_for(MonoTime::ZERO + Duration::from_nanos(nanos))
    }

    /// Stops this agent for good on behalf of a host that has stopped serving. Call it only
    /// once the host uses nothing this agent answered: no table, no bucket, whatever validity
    /// came with them. From the call on the agent answers nothing (reads are refused as
    /// fenced, it owns no bucket), and its heartbeat task ends and deregisters with
    /// `released`: the leader forgets this incarnation at once instead of keeping it as a
    /// tombstone until it has provably fenced, so no broadcast and no next leader waits for
    /// it (docs/PROTOCOL.md, "A released deregistration"). Returns once the deregistration was
    /// sent, or at once when [`Agent::run`] was never started.
    pub async fn shutdown(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let stopped_earlier = *self.inner.run_state.borrow() == Some(true);
        {
            // Under the lease lock, which every change of the cache takes: no answer or push
            // installs a cache after this.
            let _lease = self.lease();
            self.inner.released.store(true, SeqCst);
            self.inner.drained.store(true, SeqCst);
            self.inner.release_generation.fetch_add(1, SeqCst);
            self.inner.view.store(Arc::new(CacheView::default()));
        }
        info!(node_id = %self.inner.config.node_id, "the host stopped serving: this agent answers nothing more and deregisters as released");
        if stopped_earlier && self.superseded().is_none() {
            // It deregistered as it stopped, and still counts as a tombstone: release that.
            let mut link =
                CoordinatorLink::new(self.inner.config.coordinators.clone(), self.inner.config.heartbeat_timeout);
            self.deregister(&mut link, true).await;
            return;
        }
        self.stop().await;
    }

    /// Ends the heartbeat task, which gives every bucket up and deregisters (as released only
    /// after [`Agent::shutdown`]); returns once it has, or at once when it is not running.
    /// Until it has provably fenced, the leader still counts the incarnation for broadcasts.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let mut state = self.inner.run_state.subscribe();
        let _ = state.wait_for(|state| *state != Some(false)).await;
    }

    fn is_released(&self) -> bool {
        self.inner.released.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The lease as it stands now.
    pub fn lease_state(&self) -> LeaseState {
        let now = self.inner.clock.now();
        let lease = self.lease();
        let view = self.inner.view.load();
        let state = match lease.state(now) {
            AgentState::Normal => AgentLeaseState::Normal,
            AgentState::Fenced => AgentLeaseState::Fenced,
            AgentState::Resyncing => AgentLeaseState::Resyncing,
        };
        LeaseState {
            node_id: self.inner.config.node_id.clone(),
            incarnation: self.incarnation(),
            state: state as i32,
            lease_remaining_ms: lease.valid_until(now).map_or(0, |until| now.until(until).as_millis() as i64),
            fence_ms: lease.fence().map_or(0, |fence| fence.as_millis() as u64),
            store_epoch: view.store_epoch.clone(),
            applied_version: view.version,
            term: lease.highest_term(),
            leader_node_id: lease.leader().map(|leader| leader.node_id.clone()).unwrap_or_default(),
            fences: lease.fences(),
        }
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, LeaseManager> {
        self.inner.lease.lock().expect("agent lease poisoned")
    }

    /// The host's veto on `change`.
    fn veto(&self, change: &MetadataChange) -> Result<(), String> {
        if failpoint::armed(failpoint::CANNOT_APPLY) {
            return Err("failpoint agent::cannot-apply".into());
        }
        self.inner.host.prepare(change)
    }

    /// Asks the host about `change` before `batch` applies it to `current`; an order to drop
    /// data is carried out here (skipped when the object was created again after its marker).
    fn prepare(&self, current: &CacheView, batch: &CatalogBatch<'_>, change: &MetadataChange) -> Result<(), String> {
        self.veto(change)?;
        if let Some(leasehold::v1::metadata_change::Kind::DropData(drop)) = &change.kind {
            let target = DataTarget::from_parts(&drop.database, &drop.table, &drop.column, drop.created_version);
            if !batch.drop_is_due(&target, drop.marker_version) {
                info!(?target, "the object was created again since the drop; keeping the new one's data");
                return Ok(());
            }
            self.inner.host.drop_data(&target)?;
            metrics::data_dropped("order");
            info!(?target, marker = drop.marker_version, "data dropped");
            self.dropped().insert(target);
        }
        if let Some(leasehold::v1::metadata_change::Kind::Buckets(change)) = &change.kind {
            let me = &self.inner.config.node_id;
            let incarnation = self.incarnation();
            let revoked = change
                .buckets
                .iter()
                .filter(|entry| entry.revoked && entry.node_id == *me && entry.incarnation == incarnation)
                .map(|entry| (change.pool.clone(), entry.bucket));
            self.release(current, revoked)?;
        }
        Ok(())
    }

    /// What must happen before `installed` counts ([`ddl::resync_plan`]), judged against the
    /// cache held now or, fenced, the cache dropped at the fence.
    fn plan_resync(&self, current: &Arc<CacheView>, installed: &CacheView) -> ResyncPlan {
        let held = if current.store_epoch.is_empty() {
            self.inner.before_fence.lock().expect("agent cache before fence poisoned").clone()
        } else {
            Some(current.clone())
        };
        let plan = ddl::resync_plan(held.as_deref().map(CacheView::held), installed.held(), &self.dropped());
        match (&plan.not_compared, held) {
            (Some(ResyncDrops::EpochChanged), Some(held)) => warn!(
                old_epoch = %held.store_epoch,
                new_epoch = %installed.store_epoch,
                "the store epoch changed: creation versions cannot be compared, so the host judges its data from the resynced catalog alone"
            ),
            (Some(ResyncDrops::OlderSnapshot), Some(held)) => warn!(
                cache_version = held.version,
                snapshot_version = installed.version,
                "a resync to a version older than the cache held: no data is dropped on its word"
            ),
            _ => {}
        }
        plan
    }

    /// Asks the host about every object the snapshot holds in a reversible step that the held
    /// cache does not hold as it is, before the snapshot counts: a resync must not install a
    /// prepare the host refused (see [`AgentHost::prepare`]).
    fn veto_snapshot(&self, plan: &ResyncPlan) -> Result<(), ApplyError> {
        for (version, put) in &plan.vetoes {
            let change = MetadataChange {
                version: *version,
                kind: Some(metadata_change::Kind::Catalog(leasehold::catalog::change_message(put))),
            };
            self.veto(&change).map_err(|reason| ApplyError::CannotApply { version: *version, reason })?;
        }
        Ok(())
    }

    /// Releases every bucket the cache owns that `installed` does not grant it at the same
    /// epoch, before the snapshot counts (a snapshot may carry revokes this node never heard
    /// as changes).
    fn release_before_resync(&self, current: &CacheView, installed: &CacheView) -> Result<(), ApplyError> {
        let (node_id, incarnation) = (&self.inner.config.node_id, self.incarnation());
        let keeps = installed.owned_by(node_id, &incarnation);
        let lost: Vec<(String, u32)> = current
            .owned_by(node_id, &incarnation)
            .into_iter()
            .filter(|(key, epoch)| keeps.get(key) != Some(epoch))
            .map(|(key, _)| key)
            .collect();
        self.release(current, lost).map_err(|reason| ApplyError::CannotApply {
            version: installed.version,
            reason: format!("releasing buckets before a resync counts: {reason}"),
        })
    }

    /// Remembers that the host refused `version` of `store_epoch`, to report it with every
    /// heartbeat until one renews the lease.
    fn remember_refusal(&self, store_epoch: &str, error: &ApplyError) {
        if let ApplyError::CannotApply { version, reason } = error {
            let mut end = reason.len().min(1024);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            *self.inner.refused.lock().expect("agent refusal poisoned") = Some(RefusedChange {
                store_epoch: store_epoch.to_owned(),
                version: *version,
                reason: reason[..end].to_owned(),
            });
        }
    }

    /// Tells the host what was dropped while this agent could not hear the orders: every
    /// object of the cache it held (before a fence, or before a gap) that `installed` lacks or
    /// holds as another object created again under the same name; and every object that
    /// `installed` holds under a marker whose order to drop was given, which this process has
    /// not dropped yet (the order may have been refused, or given while it could not hear, or
    /// before it started). Only then may the resync count. On an error nothing is forgotten,
    /// so the next resync asks again.
    fn drop_before_resync(&self, plan: &ResyncPlan, installed: &CacheView) -> Result<(), ApplyError> {
        let mut dropped = self.dropped();
        for (target, why) in &plan.drops {
            self.inner.host.drop_data(target).map_err(|reason| ApplyError::CannotApply {
                version: installed.version,
                reason: format!("dropping the data of {target:?} before a resync counts: {reason}"),
            })?;
            let why = why.as_str();
            metrics::data_dropped(why);
            info!(?target, version = installed.version, why, "data dropped before the resync counts");
            dropped.insert(target.clone());
        }
        ddl::keep_pending_drops(&mut dropped, &installed.catalog);
        *self.inner.before_fence.lock().expect("agent cache before fence poisoned") = None;
        Ok(())
    }

    /// Forgets the drops carried out for objects that `catalog` no longer holds under an
    /// ordered marker (committed or gone), so the record stays as small as the pending drops.
    fn forget_finished_drops(&self, catalog: &Catalog) {
        ddl::keep_pending_drops(&mut self.dropped(), catalog);
    }

    /// The orders to drop data this process carried out, of objects still under their marker.
    fn dropped(&self) -> std::sync::MutexGuard<'_, BTreeSet<DataTarget>> {
        self.inner.dropped.lock().expect("agent drop record poisoned")
    }

    /// Fences if the lease ran out: drops the cache first. Call with the lease locked.
    fn fence_if_expired(&self, lease: &mut LeaseManager, now: MonoTime) {
        if lease.fence_if_expired(now) {
            let dropped = self.inner.view.swap(Arc::new(CacheView::default()));
            // A fenced node owns nothing: pending releases are moot, and the next grant comes
            // from a snapshot.
            self.inner.releasing.store(Arc::new(BTreeSet::new()));
            if !dropped.store_epoch.is_empty() {
                *self.inner.before_fence.lock().expect("agent cache before fence poisoned") = Some(dropped.clone());
            }
            metrics::fenced();
            warn!(
                node_id = %self.inner.config.node_id,
                fences = lease.fences(),
                "fenced: no lease renewal within the fence duration; the cache is dropped and reads are refused until a resync"
            );
            let _ = self.inner.events.send(AgentEvent::Fenced);
            // The swap above made `owns` refuse every bucket; a resync announces its grants
            // again, so the host sees each lost here, including one whose release was pending.
            self.lost_all(&dropped, &self.incarnation(), "fenced");
        }
    }

    /// Starts a heartbeat now.
    fn begin_heartbeat(&self) -> (HeartbeatTicket, HeartbeatRequest) {
        let now = self.inner.clock.now();
        let mut lease = self.lease();
        self.fence_if_expired(&mut lease, now);
        let ticket = lease.begin_heartbeat(now);
        let view = self.inner.view.load();
        let request = HeartbeatRequest {
            node_id: self.inner.config.node_id.clone(),
            incarnation: self.incarnation(),
            store_epoch: view.store_epoch.clone(),
            applied_version: view.version,
            needs_resync: ticket.needs_resync,
            refused: self.inner.refused.lock().expect("agent refusal poisoned").clone(),
        };
        (ticket, request)
    }

    /// Applies a heartbeat response, then renews. Returns the metric label of the outcome, and
    /// whether the cache advanced (then the leader should hear of it at once).
    fn on_heartbeat_response(&self, ticket: &HeartbeatTicket, response: HeartbeatResponse) -> (&'static str, bool) {
        let now = self.inner.clock.now();
        let mut lease = self.lease();
        if self.is_released() {
            return ("ignored", false);
        }
        self.fence_if_expired(&mut lease, now);
        let resync = response.snapshot.is_some();
        match lease.consider_response(ticket, response.term, resync, now) {
            ResponseDecision::Ignore(why) => {
                debug!(why, "heartbeat response ignored");
                return ("ignored", false);
            }
            ResponseDecision::Apply { .. } => {}
        }
        let current = self.inner.view.load_full();
        let applied = match &response.snapshot {
            // Pushes may have moved the cache past the snapshot while the answer was on its
            // way (and it acknowledged them): a resync only ever moves forward.
            Some(snapshot)
                if snapshot_is_behind(
                    CachePoint { store_epoch: &current.store_epoch, version: current.version },
                    CachePoint { store_epoch: &snapshot.store_epoch, version: snapshot.version },
                ) =>
            {
                Ok((*current).clone())
            }
            Some(snapshot) => {
                let installed = CacheView::from_snapshot(snapshot);
                let plan = self.plan_resync(&current, &installed);
                self.veto_snapshot(&plan)
                    .and_then(|()| self.release_before_resync(&current, &installed))
                    .and_then(|()| self.drop_before_resync(&plan, &installed))
                    .map(|()| {
                        self.inner.host.resynced(&installed.catalog);
                        installed
                    })
            }
            None => current
                .apply(&response.store_epoch, &response.changes, |batch, change| self.prepare(&current, batch, change)),
        };
        let mut next = match applied {
            // Apply before renew: the cache must hold the answer's version, in its epoch.
            Ok(next)
                if holds_answer(
                    CachePoint { store_epoch: &next.store_epoch, version: next.version },
                    CachePoint { store_epoch: &response.store_epoch, version: response.version },
                ) =>
            {
                next
            }
            Ok(next) => {
                warn!(
                    cache_version = next.version,
                    answer_version = response.version,
                    "the heartbeat's answer did not bring the cache to its version; the lease is not renewed"
                );
                lease.apply_failed();
                return ("not_applied", false);
            }
            Err(error) => {
                // Apply before renew: what cannot be applied does not renew the lease.
                warn!(%error, "could not apply the heartbeat's changes; the lease is not renewed");
                self.remember_refusal(&response.store_epoch, &error);
                lease.apply_failed();
                return ("not_applied", false);
            }
        };
        let leader = LeaderRef {
            node_id: response.leader_node_id.clone(),
            address: response.leader_address.clone(),
            term: response.term,
        };
        let unfenced = lease.renew(ticket, Duration::from_millis(response.fence_ms), leader, now);
        *self.inner.refused.lock().expect("agent refusal poisoned") = None;
        next.valid_until = lease.valid_until(now);
        let version = next.version;
        let advanced = version != current.version || next.store_epoch != current.store_epoch;
        self.forget_finished_drops(&next.catalog);
        let next = Arc::new(next);
        self.inner.view.store(next.clone());
        self.ownership_moved(&current, &next);
        let term = lease.highest_term();
        drop(lease);
        self.inner.renewed.notify_one();
        metrics::lease(true, version);
        metrics::term(term);
        if unfenced {
            info!(node_id = %self.inner.config.node_id, version, term = response.term, leader = %response.leader_node_id, "lease valid: serving again after a resync");
            let _ = self.inner.events.send(AgentEvent::Unfenced { version });
        } else if advanced {
            let _ = self.inner.events.send(AgentEvent::Applied { version });
        }
        ("renewed", advanced)
    }

    /// Applies a pushed change from the leader. Returns the version the cache holds now.
    pub fn apply_push(&self, request: &ApplyInvalidationRequest) -> Result<u64, PushError> {
        let now = self.inner.clock.now();
        let mut lease = self.lease();
        if self.is_released() {
            return Err(PushError::Fenced);
        }
        self.fence_if_expired(&mut lease, now);
        if !request.incarnation.is_empty() && request.incarnation != self.incarnation() {
            return Err(PushError::WrongIncarnation { meant: request.incarnation.clone(), actual: self.incarnation() });
        }
        lease.check_push(&request.leader_node_id, request.term, now).map_err(|refusal| match refusal {
            PushRefusal::Fenced => PushError::Fenced,
            PushRefusal::NotMyLeader { following } => PushError::NotMyLeader {
                following: following.map_or_else(
                    || "no leader yet".to_owned(),
                    |leader| format!("{} at term {}", leader.node_id, leader.term),
                ),
            },
        })?;
        let current = self.inner.view.load_full();
        // `apply` starts from the current view, so the lease end carries over.
        let next = current
            .apply(&request.store_epoch, &request.changes, |batch, change| self.prepare(&current, batch, change))
            .inspect_err(|error| self.remember_refusal(&request.store_epoch, error))?;
        let version = next.version;
        if version != current.version {
            self.forget_finished_drops(&next.catalog);
            let next = Arc::new(next);
            self.inner.view.store(next.clone());
            self.ownership_moved(&current, &next);
            metrics::lease(true, version);
            let _ = self.inner.events.send(AgentEvent::Applied { version });
        }
        Ok(version)
    }

    /// Runs the heartbeat and fence tasks until `shutdown`, then deregisters.
    pub async fn run(self, shutdown: CancellationToken) {
        self.inner.run_state.send_replace(Some(false));
        self.heartbeat_until_stopped(shutdown).await;
        self.inner.run_state.send_replace(Some(true));
    }

    async fn heartbeat_until_stopped(&self, shutdown: CancellationToken) {
        let fence_watch = tokio::spawn(self.clone().watch_fence(shutdown.clone()));
        let mut link =
            CoordinatorLink::new(self.inner.config.coordinators.clone(), self.inner.config.heartbeat_timeout);
        let mut ticker = tokio::time::interval(self.inner.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut registered = false;
        let mut unreachable = UnreachableWarning::new(&self.inner.config.coordinators);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.cancelled() => break,
                _ = self.inner.stop.cancelled() => break,
            }
            metrics::loop_iteration("heartbeat");
            if !registered {
                match self.register(&mut link, &mut unreachable).await {
                    Registration::Registered => registered = true,
                    Registration::Retry => continue,
                    Registration::Superseded(why) => {
                        // Another process serves this node id now: never register or serve again.
                        error!(node_id = %self.inner.config.node_id, attempt = %self.inner.config.attempt_id, reason = %why, "the leader refused this process for good; stopping");
                        let _ = self.inner.superseded.set(why);
                        // The fence watch goes on: the cache stops serving when the lease ends.
                        return;
                    }
                }
            }
            let started = self.inner.clock.now();
            let (ticket, request) = self.begin_heartbeat();
            let answer = link.heartbeat(&request).await;
            match &answer {
                Err(error @ LinkError::Unreachable(_)) => unreachable.failed(self.inner.clock.now(), error),
                _ => unreachable.reached(),
            }
            let result = match answer {
                Ok(response) => {
                    let (result, advanced) = self.on_heartbeat_response(&ticket, response);
                    if advanced {
                        // The leader counts an acknowledgement when the next heartbeat reports
                        // the new version: send it now rather than one interval later.
                        ticker.reset_immediately();
                    }
                    result
                }
                Err(LinkError::NotRegistered) => {
                    info!("the leader does not know this incarnation; registering again");
                    registered = false;
                    "failed"
                }
                Err(LinkError::IncarnationRetired) => {
                    self.start_new_incarnation();
                    registered = false;
                    "failed"
                }
                Err(error) => {
                    debug!(%error, "heartbeat failed");
                    "failed"
                }
            };
            metrics::heartbeat(result, self.inner.clock.now() - started);
        }
        fence_watch.abort();
        // Buckets first: a rolling restart then moves them at once, not after T_proceed.
        let buckets_released = self.drain_buckets();
        self.deregister(&mut link, buckets_released).await;
    }

    /// Deregisters this incarnation, saying `released` when the host has stopped serving.
    async fn deregister(&self, link: &mut CoordinatorLink, buckets_released: bool) {
        let released = self.is_released();
        let request = DeregisterRequest {
            node_id: self.inner.config.node_id.clone(),
            incarnation: self.incarnation(),
            buckets_released: buckets_released || released,
            released,
        };
        match link
            .call(|mut client| {
                let request = request.clone();
                async move { client.deregister(request).await }
            })
            .await
        {
            Ok(_) => info!(node_id = %self.inner.config.node_id, released, "deregistered"),
            Err(error) => {
                warn!(%error, "could not deregister; the leader keeps counting this node until it has fenced")
            }
        }
    }

    async fn register(&self, link: &mut CoordinatorLink, unreachable: &mut UnreachableWarning) -> Registration {
        let request = RegisterRequest {
            node_id: self.inner.config.node_id.clone(),
            address: self.inner.config.advertise_address.clone(),
            incarnation: self.incarnation(),
            pools: self.inner.config.pools.clone(),
            resource_id: self.inner.config.resource_id.clone(),
            attempt_id: self.inner.config.attempt_id.clone(),
        };
        let answer = link
            .call(|mut client| {
                let request = request.clone();
                async move { client.register(request).await }
            })
            .await;
        match &answer {
            Err(error @ LinkError::Unreachable(_)) => unreachable.failed(self.inner.clock.now(), error),
            _ => unreachable.reached(),
        }
        match answer {
            Ok(response) => {
                info!(node_id = %request.node_id, incarnation = %request.incarnation, leader = %response.leader_node_id, term = response.term, "registered with the leader");
                Registration::Registered
            }
            Err(LinkError::IncarnationRetired) => {
                self.start_new_incarnation();
                Registration::Retry
            }
            Err(LinkError::Superseded(why)) => Registration::Superseded(why),
            Err(error) => {
                debug!(%error, "registration failed; retrying");
                Registration::Retry
            }
        }
    }

    /// Fences as soon as the lease runs out, even if no read or heartbeat comes by: the host
    /// hears of it at once.
    async fn watch_fence(self, shutdown: CancellationToken) {
        loop {
            metrics::loop_iteration("fence");
            let wait = {
                let now = self.inner.clock.now();
                let mut lease = self.lease();
                self.fence_if_expired(&mut lease, now);
                lease.valid_until(now).map(|until| now.until(until))
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.renewed.notified() => {}
                _ = async {
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use leasehold::v1::{BarrierChange, MetadataSnapshot, metadata_change};
    use leasehold_core::ManualClock;

    use super::*;

    /// A host that refuses version 6 the first time it sees it.
    #[derive(Debug, Default)]
    struct RefusesSixOnce(AtomicBool);

    impl AgentHost for RefusesSixOnce {
        fn prepare(&self, change: &MetadataChange) -> Result<(), String> {
            if change.version == 6 && !self.0.swap(true, Ordering::SeqCst) {
                return Err("not yet".into());
            }
            Ok(())
        }
    }

    fn barrier(version: u64) -> MetadataChange {
        MetadataChange { version, kind: Some(metadata_change::Kind::Barrier(BarrierChange {})) }
    }

    fn snapshot(version: u64) -> Option<MetadataSnapshot> {
        Some(MetadataSnapshot { store_epoch: "e".into(), version, catalog: Vec::new(), buckets: Vec::new() })
    }

    fn answer(version: u64, changes: Vec<MetadataChange>, snapshot: Option<MetadataSnapshot>) -> HeartbeatResponse {
        HeartbeatResponse {
            term: 1,
            leader_node_id: "c1".into(),
            leader_address: "127.0.0.1:7400".into(),
            fence_ms: 3000,
            store_epoch: "e".into(),
            version,
            changes,
            snapshot,
            resync: false,
        }
    }

    fn push(changes: Vec<MetadataChange>) -> ApplyInvalidationRequest {
        ApplyInvalidationRequest {
            term: 1,
            leader_node_id: "c1".into(),
            store_epoch: "e".into(),
            changes,
            incarnation: String::new(),
        }
    }

    /// A new agent of `host` on a manual clock, and the clock.
    fn agent_of(host: Arc<dyn AgentHost>) -> (Agent, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(MonoTime::from_duration(Duration::from_secs(10))));
        let config = AgentConfig::new("dn1", vec!["127.0.0.1:7400".into()], "127.0.0.1:7500");
        (Agent::with_clock(config, host, clock.clone()), clock)
    }

    /// An agent serving version 5 under a 3 s lease, and its clock.
    fn agent() -> (Agent, Arc<ManualClock>) {
        let (agent, clock) = agent_of(Arc::new(RefusesSixOnce::default()));
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        (agent, clock)
    }

    #[test]
    fn a_resync_snapshot_older_than_pushed_changes_never_moves_the_cache_back() {
        let (agent, _clock) = agent();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(6, vec![barrier(6)], None)).0, "not_applied");
        // The next heartbeat asks for a resync; before its answer (a snapshot at 6) arrives,
        // a push brings 6 and 7, which the agent acknowledges.
        let (ticket, request) = agent.begin_heartbeat();
        assert!(request.needs_resync);
        assert_eq!(agent.apply_push(&push(vec![barrier(6), barrier(7)])).unwrap(), 7);
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(6, Vec::new(), snapshot(6))).0, "renewed");
        assert_eq!(agent.inner.view.load().version, 7, "a resync only moves forward");
    }

    #[test]
    fn an_answer_that_does_not_reach_its_version_renews_nothing() {
        let (agent, clock) = agent();
        clock.advance(Duration::from_secs(1));
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(9, vec![barrier(6)], None)).0, "not_applied");
        assert_eq!(agent.inner.view.load().version, 5);
        assert_eq!(agent.lease_state().lease_remaining_ms, 2000, "the lease still ends 3 s after the first send");
    }

    /// A host that records orders to drop data, refusing the first one.
    #[derive(Debug, Default)]
    struct RecordsDrops {
        refused_once: AtomicBool,
        drops: Mutex<Vec<DataTarget>>,
    }

    impl AgentHost for RecordsDrops {
        fn drop_data(&self, target: &DataTarget) -> Result<(), String> {
            if !self.refused_once.swap(true, Ordering::SeqCst) {
                return Err("disk busy".into());
            }
            self.drops.lock().unwrap().push(target.clone());
            Ok(())
        }
    }

    /// A snapshot of database `db` (created at 1) with `tables` (name, creation version).
    fn catalog_snapshot(version: u64, tables: &[(&str, u64)]) -> Option<MetadataSnapshot> {
        use leasehold_core::catalog::{CatalogChange, Category, Column, DataType, Database, ObjectState, Table};
        let mut catalog = Catalog::default();
        catalog
            .apply(&CatalogChange::PutDatabase(Database {
                name: "db".into(),
                ttl: None,
                properties: Default::default(),
                state: ObjectState::Visible,
                version: 1,
                created_version: 1,
                drop_ordered_version: 0,
            }))
            .unwrap();
        for &(name, created_version) in tables {
            catalog
                .apply(&CatalogChange::PutTable(Table {
                    database: "db".into(),
                    name: name.into(),
                    columns: vec![Column {
                        drop_ordered_version: 0,
                        name: "time".into(),
                        data_type: DataType::Timestamp,
                        category: Category::Time,
                        comment: String::new(),
                        state: ObjectState::Visible,
                        created_version,
                    }],
                    ttl: None,
                    properties: Default::default(),
                    comment: String::new(),
                    state: ObjectState::Visible,
                    version: created_version,
                    created_version,
                    drop_ordered_version: 0,
                }))
                .unwrap();
        }
        let catalog = leasehold::catalog::snapshot_messages(&catalog);
        Some(MetadataSnapshot { store_epoch: "e".into(), version, catalog, buckets: Vec::new() })
    }

    #[test]
    fn a_resync_after_a_fence_drops_the_data_of_what_went_meanwhile() {
        let host = Arc::new(RecordsDrops::default());
        let (agent, clock) = agent_of(host.clone());
        let (ticket, _) = agent.begin_heartbeat();
        let before = catalog_snapshot(5, &[("kept", 2), ("recreated", 3), ("dropped", 4)]);
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), before)).0, "renewed");
        assert!(host.drops.lock().unwrap().is_empty(), "a first snapshot drops nothing");

        clock.advance(Duration::from_secs(4));
        let (ticket, request) = agent.begin_heartbeat();
        assert!(request.needs_resync, "fenced");
        let after = catalog_snapshot(9, &[("kept", 2), ("recreated", 8)]);
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(9, Vec::new(), after.clone())).0,
            "not_applied",
            "the host could not drop: the resync is not applied and the lease not renewed"
        );
        assert_eq!(agent.resolve_table("db", "kept"), Err(ResolveError::Fenced));

        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(9, Vec::new(), after)).0, "renewed");
        assert_eq!(
            *host.drops.lock().unwrap(),
            [DataTarget::from_parts("db", "dropped", "", 4), DataTarget::from_parts("db", "recreated", "", 3),],
            "the old `recreated` is another table: its data goes, asked again after the refusal"
        );
        assert_eq!(agent.resolve_table("db", "recreated").unwrap().schema.created_version, 8);
    }

    #[test]
    fn a_borrowed_table_is_served_under_the_lease_like_a_resolved_one_and_refused_alike() {
        let (agent, clock) = agent_of(Arc::new(AcceptAll));
        assert_eq!(agent.with_table("db", "t", |_| ()), Err(ResolveError::Fenced), "a new agent starts fenced");
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), catalog_snapshot(5, &[("t", 2)]))).0,
            "renewed"
        );

        let borrowed = agent.with_table("db", "t", |resolved| ResolvedTable::from(resolved)).unwrap();
        assert_eq!(agent.resolve_table("db", "t").unwrap(), borrowed);
        assert_eq!((borrowed.schema.created_version, borrowed.version), (2, 5));
        assert_eq!(
            agent.with_table("db", "missing", |_| ()),
            Err(ResolveError::NotFound { database: "db".into(), table: "missing".into(), version: 5 })
        );

        clock.set(borrowed.valid_until);
        assert_eq!(agent.with_table("db", "t", |_| ()), Err(ResolveError::Fenced), "checked on every call");
    }

    #[test]
    fn a_resync_to_an_older_version_than_the_cache_held_drops_nothing() {
        let host = Arc::new(RecordsDrops { refused_once: AtomicBool::new(true), ..RecordsDrops::default() });
        let (agent, clock) = agent_of(host.clone());
        let (ticket, _) = agent.begin_heartbeat();
        let newer = catalog_snapshot(7, &[("t", 2), ("u", 6)]);
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(7, Vec::new(), newer)).0, "renewed");
        clock.advance(Duration::from_secs(4));
        let (ticket, _) = agent.begin_heartbeat();
        let older = catalog_snapshot(5, &[("t", 2)]);
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), older)).0, "renewed");
        assert!(host.drops.lock().unwrap().is_empty(), "`u` may be newer than that snapshot: its data stays");
    }

    /// A snapshot at 7 taken before a drop's commit: `db.t` under its marker, its drop ordered
    /// at 7.
    fn t_drop_ordered_at_7() -> MetadataSnapshot {
        use leasehold_core::catalog::{CatalogChange, ObjectState};
        let (mut catalog, _) = leasehold::catalog::catalog_of(&catalog_snapshot(7, &[]).unwrap().catalog);
        catalog.apply(&CatalogChange::PutTable(table_t(ObjectState::Dropping, 7))).unwrap();
        MetadataSnapshot {
            store_epoch: "e".into(),
            version: 7,
            catalog: leasehold::catalog::snapshot_messages(&catalog),
            buckets: Vec::new(),
        }
    }

    /// Table `db.t` (created at 2) in `state`, with the version of its drop order (0 for none).
    fn table_t(state: leasehold_core::catalog::ObjectState, drop_ordered_version: u64) -> Table {
        use leasehold_core::catalog::{Category, Column, DataType};
        Table {
            database: "db".into(),
            name: "t".into(),
            columns: vec![Column {
                name: "time".into(),
                data_type: DataType::Timestamp,
                category: Category::Time,
                comment: String::new(),
                state: leasehold_core::catalog::ObjectState::Visible,
                created_version: 2,
                drop_ordered_version: 0,
            }],
            ttl: None,
            properties: Default::default(),
            comment: String::new(),
            state,
            version: 2,
            created_version: 2,
            drop_ordered_version,
        }
    }

    fn catalog_message(version: u64, change: leasehold_core::catalog::CatalogChange) -> MetadataChange {
        MetadataChange {
            version,
            kind: Some(metadata_change::Kind::Catalog(leasehold::catalog::change_message(&change))),
        }
    }

    #[test]
    fn a_refused_drop_order_is_never_acknowledged_by_a_resync_that_still_holds_the_marker() {
        use leasehold_core::catalog::{CatalogChange, ObjectState};
        let host = Arc::new(RecordsDrops::default());
        let (agent, _clock) = agent_of(host.clone());
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), catalog_snapshot(5, &[("t", 2)]))).0,
            "renewed"
        );

        // v6: the pre-delete marker; v7: the order to drop, which the host refuses once.
        let marker = catalog_message(6, CatalogChange::PutTable(table_t(ObjectState::Dropping, 0)));
        let order = MetadataChange {
            version: 7,
            kind: Some(metadata_change::Kind::DropData(leasehold::v1::DropDataChange {
                database: "db".into(),
                table: "t".into(),
                column: String::new(),
                marker_version: 6,
                created_version: 2,
            })),
        };
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(7, vec![marker, order], None)).0, "not_applied");
        let (ticket, request) = agent.begin_heartbeat();
        assert!(request.needs_resync && request.applied_version < 7, "the refused order is not acknowledged");
        assert!(host.drops.lock().unwrap().is_empty());

        // The resync's snapshot was taken before the commit: t is still under its marker, and
        // carries the order's version.
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(7, Vec::new(), Some(t_drop_ordered_at_7()))).0,
            "renewed"
        );
        let (_, request) = agent.begin_heartbeat();
        assert_eq!(request.applied_version, 7);
        assert_eq!(
            *host.drops.lock().unwrap(),
            [DataTarget::from_parts("db", "t", "", 2)],
            "the data went before version 7 was reported"
        );

        // v8: the commit arrives as an ordinary change and repeats nothing.
        let commit = catalog_message(8, CatalogChange::RemoveTable { database: "db".into(), name: "t".into() });
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(8, vec![commit], None)).0, "renewed");
        assert_eq!(host.drops.lock().unwrap().len(), 1, "the host saw drop_data(t) exactly once");
    }

    /// A host that refuses every change that puts table `u`.
    #[derive(Debug, Default)]
    struct RefusesU;

    impl AgentHost for RefusesU {
        fn prepare(&self, change: &MetadataChange) -> Result<(), String> {
            match &change.kind {
                Some(metadata_change::Kind::Catalog(message)) => match leasehold::catalog::change_of(message) {
                    Some(leasehold_core::catalog::CatalogChange::PutTable(table)) if table.name == "u" => {
                        Err("no room for u".into())
                    }
                    _ => Ok(()),
                },
                _ => Ok(()),
            }
        }
    }

    /// A snapshot at `version` of `db.t` and, when `u_at` names its version, the hidden `db.u`.
    fn with_hidden_u(version: u64, u_at: Option<u64>) -> MetadataSnapshot {
        use leasehold_core::catalog::{CatalogChange, ObjectState};
        let (mut catalog, _) = leasehold::catalog::catalog_of(&catalog_snapshot(version, &[("t", 2)]).unwrap().catalog);
        if let Some(u_at) = u_at {
            let mut u = table_t(ObjectState::Hidden, 0);
            (u.name, u.version, u.created_version) = ("u".into(), u_at, u_at);
            catalog.apply(&CatalogChange::PutTable(u)).unwrap();
        }
        MetadataSnapshot {
            store_epoch: "e".into(),
            version,
            catalog: leasehold::catalog::snapshot_messages(&catalog),
            buckets: Vec::new(),
        }
    }

    #[test]
    fn a_prepare_the_host_refused_is_not_installed_by_a_resync_and_the_refusal_is_reported() {
        let (agent, _clock) = agent_of(Arc::new(RefusesU));
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), Some(with_hidden_u(5, None)))).0,
            "renewed"
        );

        // A new leader's answer carries the prepare (u hidden, at 6): refused.
        let (ticket, request) = agent.begin_heartbeat();
        assert_eq!(request.refused, None);
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(6, Vec::new(), Some(with_hidden_u(6, Some(6))))).0,
            "not_applied"
        );
        let (ticket, request) = agent.begin_heartbeat();
        let refused = request.refused.expect("the refusal is reported");
        assert_eq!((refused.store_epoch.as_str(), refused.version), ("e", 6));
        assert!(refused.reason.contains("no room for u"), "{refused:?}");
        assert_eq!(request.applied_version, 5, "the refused prepare is not acknowledged");

        // The resync carries the same prepare: the host is asked, and refuses again.
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(6, Vec::new(), Some(with_hidden_u(6, Some(6))))).0,
            "not_applied"
        );
        assert!(agent.resolve_table("db", "t").is_ok(), "the lease from 5 still serves t");

        // The leader rolled back (7): the snapshot holds no u, installs, and the report stops.
        let (ticket, request) = agent.begin_heartbeat();
        assert_eq!(request.refused.map(|refused| refused.version), Some(6));
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(7, Vec::new(), Some(with_hidden_u(7, None)))).0,
            "renewed"
        );
        let (_, request) = agent.begin_heartbeat();
        assert_eq!((request.applied_version, request.refused), (7, None));
    }

    #[test]
    fn a_resync_asks_nothing_about_a_prepare_the_cache_already_holds() {
        /// Refuses u the second time it is asked about it.
        #[derive(Debug, Default)]
        struct Once(std::sync::atomic::AtomicUsize);
        impl AgentHost for Once {
            fn prepare(&self, change: &MetadataChange) -> Result<(), String> {
                if RefusesU.prepare(change).is_err() && self.0.fetch_add(1, Ordering::SeqCst) > 0 {
                    return Err("asked twice".into());
                }
                Ok(())
            }
        }
        let (agent, clock) = agent_of(Arc::new(Once::default()));
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(6, Vec::new(), Some(with_hidden_u(6, Some(6))))).0,
            "renewed"
        );
        // Fenced, it resyncs to a snapshot that still holds u as it was: not asked again.
        clock.advance(Duration::from_secs(4));
        let (ticket, request) = agent.begin_heartbeat();
        assert!(request.needs_resync);
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(8, Vec::new(), Some(with_hidden_u(8, Some(6))))).0,
            "renewed"
        );
    }

    /// A host that records its releases and what `owns` said during each.
    #[derive(Default)]
    struct RecordsReleases {
        agent: Mutex<Option<Agent>>,
        releases: Mutex<Vec<(String, u32, u64, bool)>>,
        refuse_once: AtomicBool,
    }

    impl AgentHost for RecordsReleases {
        fn release(&self, pool: &str, bucket: u32, epoch: u64) -> Result<(), String> {
            let agent = self.agent.lock().unwrap().clone().expect("the agent is set");
            let owned_meanwhile = agent.owns(pool, bucket).is_ok();
            self.releases.lock().unwrap().push((pool.to_owned(), bucket, epoch, owned_meanwhile));
            if self.refuse_once.swap(false, Ordering::SeqCst) {
                return Err("work in flight".into());
            }
            Ok(())
        }
    }

    fn buckets(version: u64, pool: &str, entries: &[(u32, &str, &str, u64, bool)]) -> MetadataChange {
        let buckets = entries
            .iter()
            .map(|&(bucket, node_id, incarnation, epoch, revoked)| leasehold::v1::BucketOwnership {
                bucket,
                node_id: node_id.into(),
                incarnation: incarnation.into(),
                epoch,
                revoked,
            })
            .collect();
        MetadataChange {
            version,
            kind: Some(metadata_change::Kind::Buckets(leasehold::v1::BucketChange { pool: pool.into(), buckets })),
        }
    }

    #[test]
    fn a_granted_bucket_is_owned_until_its_revoke_which_waits_for_the_hosts_release() {
        let host = Arc::new(RecordsReleases { refuse_once: AtomicBool::new(true), ..RecordsReleases::default() });
        let (agent, clock) = agent_of(host.clone());
        *host.agent.lock().unwrap() = Some(agent.clone());
        let me = agent.incarnation();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        assert_eq!(agent.owns("p", 3), Err(OwnershipError::NotOwner { pool: "p".into(), bucket: 3 }));

        let grant = buckets(6, "p", &[(3, "dn1", &me, 2, false), (4, "dn2", "other", 1, false)]);
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(6, vec![grant], None)).0, "renewed");
        let owned = agent.owns("p", 3).expect("granted at 6");
        assert_eq!(owned.epoch, 2);
        assert!(agent.owns("p", 4).is_err(), "another node's bucket");
        assert_eq!(agent.owned("p").unwrap().buckets, [(3, 2)]);

        // The revoke at 7: the host refuses to release once, so 7 is not applied, and the
        // bucket is refused from the first attempt on.
        let revoke = buckets(7, "p", &[(3, "dn1", &me, 2, true)]);
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(7, vec![revoke.clone()], None)).0, "not_applied");
        assert!(agent.owns("p", 3).is_err(), "refused while its release is in doubt");
        let (_, request) = agent.begin_heartbeat();
        assert_eq!(request.applied_version, 6, "the revoke is not acknowledged");
        assert_eq!(agent.apply_push(&push(vec![revoke])).unwrap(), 7, "released this time");
        assert!(agent.owns("p", 3).is_err());
        assert_eq!(
            *host.releases.lock().unwrap(),
            [("p".into(), 3, 2, false), ("p".into(), 3, 2, false)],
            "owns refused the bucket during every release"
        );

        // A fenced node owns nothing.
        let grant = buckets(8, "p", &[(5, "dn1", &me, 1, false)]);
        assert_eq!(agent.apply_push(&push(vec![grant])).unwrap(), 8);
        assert!(agent.owns("p", 5).is_ok());
        clock.advance(Duration::from_secs(4));
        assert_eq!(agent.owns("p", 5), Err(OwnershipError::Fenced));
        assert_eq!(agent.owned("p"), Err(OwnershipError::Fenced));
    }

    #[test]
    fn a_resync_releases_the_buckets_its_snapshot_no_longer_grants() {
        let host = Arc::new(RecordsReleases::default());
        let (agent, _clock) = agent_of(host.clone());
        *host.agent.lock().unwrap() = Some(agent.clone());
        let me = agent.incarnation();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        let grant = buckets(6, "p", &[(1, "dn1", &me, 1, false), (2, "dn1", &me, 1, false)]);
        assert_eq!(agent.apply_push(&push(vec![grant])).unwrap(), 6);
        let mut later = snapshot(9).unwrap();
        later.buckets = vec![leasehold::v1::BucketChange {
            pool: "p".into(),
            buckets: vec![
                leasehold::v1::BucketOwnership {
                    bucket: 1,
                    node_id: "dn1".into(),
                    incarnation: me.clone(),
                    epoch: 1,
                    revoked: false,
                },
                leasehold::v1::BucketOwnership {
                    bucket: 2,
                    node_id: "dn1".into(),
                    incarnation: me.clone(),
                    epoch: 1,
                    revoked: true,
                },
            ],
        }];
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(9, Vec::new(), Some(later))).0, "renewed");
        assert_eq!(*host.releases.lock().unwrap(), [("p".into(), 2, 1, false)]);
        assert_eq!(agent.owned("p").unwrap().buckets, [(1, 1)]);
    }

    #[test]
    fn owns_never_answers_from_a_view_read_before_a_release_that_finished_in_between() {
        let host = Arc::new(RecordsReleases::default());
        let (agent, _clock) = agent_of(host.clone());
        *host.agent.lock().unwrap() = Some(agent.clone());
        let me = agent.incarnation();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        let grant = buckets(6, "p", &[(3, "dn1", &me, 2, false), (4, "dn1", &me, 1, false)]);
        assert_eq!(agent.apply_push(&push(vec![grant])).unwrap(), 6);
        // Runs a whole revoke of `bucket` (the host's release, the new view, the release set
        // cleared) after a read has loaded the view and before it loads the release set.
        let revoke_between_reads = |version: u64, bucket: u32, epoch: u64| {
            let (revoker, me) = (agent.clone(), me.clone());
            *agent.inner.between_reads.lock().unwrap() = Some(Box::new(move || {
                let revoke = buckets(version, "p", &[(bucket, "dn1", &me, epoch, true)]);
                assert_eq!(revoker.apply_push(&push(vec![revoke])).unwrap(), version);
            }));
        };

        revoke_between_reads(7, 3, 2);
        let answer = agent.owns("p", 3);
        assert_eq!(host.releases.lock().unwrap().len(), 1, "the release ran inside the read's window");
        assert_eq!(
            answer,
            Err(OwnershipError::NotOwner { pool: "p".into(), bucket: 3 }),
            "owns said yes after the host's release returned"
        );

        revoke_between_reads(8, 4, 1);
        let owned = agent.owned("p").unwrap();
        assert_eq!(host.releases.lock().unwrap().len(), 2, "the release ran inside the read's window");
        assert_eq!(owned.buckets, [], "owned listed a bucket after the host's release returned");
    }

    /// Every event `events` holds now.
    fn events_now(events: &mut broadcast::Receiver<AgentEvent>) -> Vec<AgentEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    fn revoked(bucket: u32, epoch: u64) -> AgentEvent {
        AgentEvent::Revoked { pool: "p".into(), bucket, epoch }
    }

    #[test]
    fn a_fence_revokes_every_owned_bucket_for_the_host_once_owns_refuses_it() {
        let host = Arc::new(RecordsReleases { refuse_once: AtomicBool::new(true), ..RecordsReleases::default() });
        let (agent, clock) = agent_of(host.clone());
        *host.agent.lock().unwrap() = Some(agent.clone());
        let me = agent.incarnation();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        let grant = buckets(6, "p", &[(3, "dn1", &me, 2, false), (4, "dn1", &me, 7, false), (5, "dn2", "x", 1, false)]);
        assert_eq!(agent.apply_push(&push(vec![grant])).unwrap(), 6);
        // The revoke of 3 stays pending: its release failed, so the host never heard Revoked.
        let revoke = buckets(7, "p", &[(3, "dn1", &me, 2, true)]);
        assert!(agent.apply_push(&push(vec![revoke])).is_err());

        // A listener that asks `owns` about every bucket the moment it hears it was revoked.
        let mut events = agent.subscribe();
        let listener = {
            let (agent, mut events) = (agent.clone(), agent.subscribe());
            std::thread::spawn(move || {
                let mut heard = Vec::new();
                while let Ok(event) = events.blocking_recv() {
                    if let AgentEvent::Revoked { pool, bucket, .. } = &event {
                        heard.push((event.clone(), agent.owns(pool, *bucket)));
                    }
                    if heard.len() == 2 {
                        break;
                    }
                }
                heard
            })
        };
        clock.advance(Duration::from_secs(4));
        let _ = agent.begin_heartbeat();
        assert_eq!(events_now(&mut events), [AgentEvent::Fenced, revoked(3, 2), revoked(4, 7)]);
        let heard = listener.join().unwrap();
        assert_eq!(
            heard,
            [(revoked(3, 2), Err(OwnershipError::Fenced)), (revoked(4, 7), Err(OwnershipError::Fenced))],
            "owns refused each bucket before the host heard it was revoked"
        );

        // Once fenced, nothing more is lost: a second fence check repeats nothing.
        let _ = agent.begin_heartbeat();
        assert_eq!(events_now(&mut events), []);
    }

    #[test]
    fn a_new_incarnation_revokes_what_the_retired_one_owned_and_a_later_fence_repeats_nothing() {
        let (agent, clock) = agent_of(Arc::new(AcceptAll));
        let retired = agent.incarnation();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        let grant = buckets(6, "p", &[(1, "dn1", &retired, 4, false), (2, "dn1", &retired, 1, false)]);
        assert_eq!(agent.apply_push(&push(vec![grant])).unwrap(), 6);
        let mut events = agent.subscribe();

        agent.start_new_incarnation();
        assert_ne!(agent.incarnation(), retired);
        assert_eq!(events_now(&mut events), [revoked(1, 4), revoked(2, 1)]);
        assert_eq!(agent.owns("p", 1), Err(OwnershipError::NotOwner { pool: "p".into(), bucket: 1 }));
        assert_eq!(agent.owned("p").unwrap().buckets, []);

        clock.advance(Duration::from_secs(4));
        let _ = agent.begin_heartbeat();
        assert_eq!(events_now(&mut events), [AgentEvent::Fenced], "the retired grants were reported once");
    }

    #[test]
    fn a_clean_stop_revokes_every_bucket_once_even_one_the_host_could_not_release() {
        let host = Arc::new(RecordsReleases { refuse_once: AtomicBool::new(true), ..RecordsReleases::default() });
        let (agent, clock) = agent_of(host.clone());
        *host.agent.lock().unwrap() = Some(agent.clone());
        let me = agent.incarnation();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(5, Vec::new(), snapshot(5))).0, "renewed");
        let grant = buckets(6, "p", &[(1, "dn1", &me, 3, false), (2, "dn1", &me, 1, false)]);
        assert_eq!(agent.apply_push(&push(vec![grant])).unwrap(), 6);
        let mut events = agent.subscribe();

        assert!(!agent.drain_buckets(), "the host refused the first release");
        assert_eq!(events_now(&mut events), [revoked(1, 3), revoked(2, 1)]);
        assert_eq!(host.releases.lock().unwrap().len(), 2);
        clock.advance(Duration::from_secs(4));
        let _ = agent.begin_heartbeat();
        assert_eq!(events_now(&mut events), [AgentEvent::Fenced]);
    }

    #[test]
    fn a_restarted_agent_deletes_the_data_of_an_ordered_drop_before_it_counts_the_snapshot() {
        let host = Arc::new(RecordsDrops::default());
        let (agent, _clock) = agent_of(host.clone());
        let snapshot = t_drop_ordered_at_7();
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(
            agent.on_heartbeat_response(&ticket, answer(7, Vec::new(), Some(snapshot.clone()))).0,
            "not_applied",
            "the host refused: the first snapshot does not count"
        );
        let (ticket, _) = agent.begin_heartbeat();
        assert_eq!(agent.on_heartbeat_response(&ticket, answer(7, Vec::new(), Some(snapshot))).0, "renewed");
        assert_eq!(*host.drops.lock().unwrap(), [DataTarget::from_parts("db", "t", "", 2)]);
    }
}
