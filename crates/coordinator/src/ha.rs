//! The HA container: registration, election, leadership and step-down (DESIGN §2–3).
//!
//! One task runs the election. A follower reads the lease row every `ha.poll-interval` (or
//! until the expiry it saw); once the lease has expired, the live candidate ranked `k` waits
//! `k · ha.priority-step` past the expiry and tries a conditional acquire. The winner leads:
//! it renews every `ha.renew-interval` on a connection of its own and holds leadership locally
//! until `sent + ttl·(1−ρ)/(1+ρ) − margin` of its last successful renewal, measured on the boot
//! clock. The step-down deadline is raced against every renewal, so a hung store call cannot
//! keep a leader acting past its hold. Every leader loop runs under a cancellation token that
//! dies with the term. Leadership is checked synchronously where it is used ([`Ha::permit`]),
//! and every write a leader makes is term-guarded in the store as well.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold_core::election::{Candidate, acquire_delay, rank};
use leasehold_core::mode::{ModeChangeError, decide_mode_change};
use leasehold_core::node_claim::{ClaimDecision, judge_claim};
use leasehold_core::{Clock, HaMode, HaRole, HaTimings, MonoTime};
use leasehold_store::{
    LeaseHolder, LeaseSession, LeaseView, NodeList, NodeRegistration, Store, StoreError, TermGuard, WriteGuard,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::failpoint;
use crate::metrics;

/// Who this node is and how it takes part in the election.
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// The cluster.
    pub cluster: String,
    /// This node's stable id.
    pub node_id: String,
    /// This node's advertised gRPC address.
    pub address: String,
    /// The mode at start.
    pub mode: HaMode,
    /// The priority at start.
    pub priority: i32,
    /// The election timings (validated).
    pub timings: HaTimings,
}

/// The leader as a node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLeader {
    /// The leader's node id.
    pub node_id: String,
    /// The leader's gRPC address.
    pub address: String,
    /// The leader's term.
    pub term: u64,
    /// The lease expiry on the store's clock (ms since the Unix epoch), as best known.
    pub lease_expires_at_ms: i64,
    /// When the remaining time below was observed.
    pub observed_at: MonoTime,
    /// How long the lease had left at `observed_at`.
    pub remaining_at_observation: Duration,
}

impl KnownLeader {
    /// How long the lease has left at `now`, as far as this node can tell.
    pub fn remaining(&self, now: MonoTime) -> Duration {
        self.remaining_at_observation.saturating_sub(now - self.observed_at)
    }
}

/// What this node is doing, published to RPCs and watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaView {
    /// The current role.
    pub role: HaRole,
    /// The current mode.
    pub mode: HaMode,
    /// The current priority.
    pub priority: i32,
    /// The term this node knows (its own while it leads).
    pub term: u64,
    /// The leader this node knows.
    pub leader: Option<KnownLeader>,
}

/// Proof, checked at the moment it was issued, that this node leads; carries what a guarded
/// write and a leader loop need.
#[derive(Debug, Clone)]
pub struct LeaderPermit {
    /// The term guard for store writes.
    pub guard: TermGuard,
    /// Cancelled when this term ends.
    pub token: CancellationToken,
    /// When this node became leader, on its boot clock.
    pub promoted_at: MonoTime,
}

/// Why the HA container refused or failed something.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// This node does not lead; `leader` is the leader it knows.
    #[error("this coordinator is not the leader{}", leader_suffix(.leader))]
    NotLeader {
        /// The known leader's address.
        leader: Option<String>,
    },
    /// The store refused a write because the lease moved on.
    #[error("the store refused the write: term {term} is no longer this node's (another leader took over)")]
    StaleTerm {
        /// The term the write was made for.
        term: u64,
        /// The known leader's address.
        leader: Option<String>,
    },
    /// A mode change that cannot be made.
    #[error(transparent)]
    ModeChange(#[from] ModeChangeError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Another live process uses this node id.
    #[error(
        "node id {node_id:?} is in use by another live coordinator (incarnation {incarnation}, at {address}); \
         give each coordinator its own --node-id"
    )]
    DuplicateNodeId {
        /// The id.
        node_id: String,
        /// The other process's incarnation.
        incarnation: String,
        /// The other process's address.
        address: String,
    },
    /// `master` mode found a live leader at start.
    #[error(
        "ha.mode is master, but {node_id} at {address} holds a live lease (term {term}, {remaining_ms} ms left); \
         refusing to start"
    )]
    LiveLeaderAtStart {
        /// The leader.
        node_id: String,
        /// Its address.
        address: String,
        /// Its term.
        term: u64,
        /// Its lease's remaining time.
        remaining_ms: i64,
    },
    /// Another process took over this node id while this one ran.
    #[error("node id {node_id:?} was taken over by another process; this coordinator stops")]
    NodeIdLost {
        /// The id.
        node_id: String,
    },
}

fn leader_suffix(leader: &Option<String>) -> String {
    leader.as_ref().map(|address| format!("; the leader is at {address}")).unwrap_or_default()
}

impl From<StoreError> for HaError {
    fn from(error: StoreError) -> Self {
        HaError::Store(error)
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepDown {
    Shutdown,
    Demoted,
    HoldExpired,
    LeaseLost,
    NodeIdLost,
}

impl StepDown {
    fn reason(self) -> &'static str {
        match self {
            StepDown::Shutdown => "shutdown",
            StepDown::Demoted => "demoted",
            StepDown::HoldExpired => "local hold ended without a successful renewal",
            StepDown::LeaseLost => "lease lost: the store no longer shows this term",
            StepDown::NodeIdLost => "node id taken over",
        }
    }

    fn label(self) -> &'static str {
        match self {
            StepDown::Shutdown => "shutdown",
            StepDown::Demoted => "demoted",
            StepDown::HoldExpired => "hold_expired",
            StepDown::LeaseLost => "lease_lost",
            StepDown::NodeIdLost => "node_id_lost",
        }
    }

    fn releases_lease(self) -> bool {
        matches!(self, StepDown::Shutdown | StepDown::Demoted)
    }
}

struct Leadership {
    term: u64,
    hold_until: MonoTime,
    token: CancellationToken,
    promoted_at: MonoTime,
}

struct Control {
    mode: HaMode,
    priority: i32,
    leadership: Option<Leadership>,
    demote_requested: bool,
    /// Renew at once: the store refused this term's write guard although the local hold
    /// says it is ours (the store's clock ran ahead of this node's).
    renew_requested: bool,
    /// Take the lease at once, without the priority back-off (a switch to master).
    contend_now: bool,
    /// After a demotion the node sits out until then, so that a successor takes over.
    sit_out_until: Option<MonoTime>,
}

struct Acquired {
    term: u64,
    sent: MonoTime,
    view: LeaseView,
}

/// The HA container of one coordinator. Cheap to clone.
#[derive(Clone)]
pub struct Ha {
    inner: Arc<Inner>,
}

struct Inner {
    settings: HaSettings,
    incarnation: String,
    clock: Arc<dyn Clock>,
    /// The store with the HA loop's short call timeout.
    ha_store: Store,
    /// The store with the ordinary call timeout, for metadata writes.
    store: Store,
    control: Mutex<Control>,
    view: watch::Sender<HaView>,
    wake: Notify,
    /// Serializes mode and priority changes.
    setter: tokio::sync::Mutex<()>,
    /// The store's clock at a local instant, from the last lease read (for display only).
    store_clock: Mutex<Option<(i64, MonoTime)>>,
}

impl std::fmt::Debug for Ha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha").field("node_id", &self.inner.settings.node_id).finish()
    }
}

impl Ha {
    /// A container for `settings` on `store`, not yet registered.
    pub fn new(settings: HaSettings, store: Store, clock: Arc<dyn Clock>, incarnation: String) -> Ha {
        let role = if settings.mode.uses_lease() { HaRole::Starting } else { HaRole::Standalone };
        let view = HaView { role, mode: settings.mode, priority: settings.priority, term: 0, leader: None };
        let control = Control {
            mode: settings.mode,
            priority: settings.priority,
            leadership: None,
            demote_requested: false,
            renew_requested: false,
            contend_now: false,
            sit_out_until: None,
        };
        Ha {
            inner: Arc::new(Inner {
                ha_store: store.with_call_timeout(settings.timings.store_timeout),
                store,
                settings,
                incarnation,
                clock,
                control: Mutex::new(control),
                view: watch::Sender::new(view),
                wake: Notify::new(),
                setter: tokio::sync::Mutex::new(()),
                store_clock: Mutex::new(None),
            }),
        }
    }

    /// This node's settings as started.
    pub fn settings(&self) -> &HaSettings {
        &self.inner.settings
    }

    /// The clock every lease decision uses.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// What this node is doing now.
    pub fn view(&self) -> HaView {
        self.inner.view.borrow().clone()
    }

    /// Every change of [`HaView`].
    pub fn subscribe(&self) -> watch::Receiver<HaView> {
        self.inner.view.subscribe()
    }

    /// Whether this node leads right now: the check is made against the boot clock, not a
    /// flag that a timer would clear.
    pub fn is_leader_now(&self) -> bool {
        self.permit().is_ok()
    }

    /// The instant from which this node may grant no data-node lease: its local hold on the
    /// coordinator lease (`MonoTime::ZERO` when it holds none); `None` in a mode without a
    /// coordinator lease, whose grants no lease bounds.
    pub fn grants_until(&self) -> Option<MonoTime> {
        if !self.settings().mode.uses_lease() {
            return None;
        }
        Some(self.hold_until().unwrap_or(MonoTime::ZERO))
    }

    /// A permit to act as leader, checked now; `NotLeader` otherwise. A `disabled` node is
    /// never a leader in this sense: it has no lease and writes unguarded.
    pub fn permit(&self) -> Result<LeaderPermit, HaError> {
        let now = self.inner.clock.now();
        let control = self.control();
        match &control.leadership {
            Some(leadership) if now < leadership.hold_until => Ok(LeaderPermit {
                guard: self.guard(leadership.term),
                token: leadership.token.clone(),
                promoted_at: leadership.promoted_at,
            }),
            _ => Err(HaError::NotLeader { leader: self.known_leader_address() }),
        }
    }

    /// Asks the leader loop to renew now rather than at its next interval. A guarded write
    /// the store refused while this node's hold is valid means the lease expired on the
    /// store's clock before it did on ours (a clock stepped forward): the renewal, which
    /// matches the term and not the expiry, makes the lease live again on the store's clock,
    /// or finds the term gone and steps down.
    pub fn renew_now(&self) {
        if self.permit().is_ok() {
            self.control().renew_requested = true;
            self.inner.wake.notify_one();
        }
    }

    /// Whether this node answers read-only calls now: the leader does, and so do
    /// `hot-standby`, `hot-backup` and `disabled` nodes. `NotLeader` otherwise.
    pub fn check_reads(&self) -> Result<(), HaError> {
        if self.is_leader_now() || self.view().mode.serves_reads_as_follower() {
            Ok(())
        } else {
            Err(HaError::NotLeader { leader: self.known_leader_address() })
        }
    }

    /// The address of the leader this node knows, other than itself.
    pub fn known_leader_address(&self) -> Option<String> {
        let view = self.inner.view.borrow();
        view.leader
            .as_ref()
            .filter(|leader| leader.node_id != self.inner.settings.node_id)
            .map(|leader| leader.address.clone())
    }

    /// Claims this node's id in the registry (DESIGN §3: a second live process with the same
    /// id is refused). A row refreshed recently by another incarnation is watched for one
    /// liveness window (the lease TTL): if it moves, the id is in use; if not, its process is
    /// gone and the row is taken over.
    pub async fn register(&self) -> Result<(), HaError> {
        if !self.inner.settings.mode.uses_lease() {
            return Ok(());
        }
        let settings = &self.inner.settings;
        let registration = NodeRegistration {
            cluster: settings.cluster.clone(),
            node_id: settings.node_id.clone(),
            incarnation: self.inner.incarnation.clone(),
            address: settings.address.clone(),
            mode: settings.mode.as_str().to_owned(),
            priority: settings.priority,
            role: HaRole::Starting.as_str().to_owned(),
        };
        let window = settings.timings.lease_ttl;
        let mut watched = None;
        loop {
            let snapshot = self.inner.store.read_node(&settings.cluster, &settings.node_id).await?;
            if let (Some(first), Some(current)) = (&watched, &snapshot.row)
                && current != first
            {
                match &current.incarnation {
                    // It stopped cleanly while we watched: the id is free.
                    None => watched = None,
                    Some(incarnation) => {
                        let address = self.address_of(&settings.node_id).await.unwrap_or_default();
                        return Err(HaError::DuplicateNodeId {
                            node_id: settings.node_id.clone(),
                            incarnation: incarnation.clone(),
                            address,
                        });
                    }
                }
            }
            match judge_claim(snapshot.row.as_ref(), &self.inner.incarnation, snapshot.store_now_ms, window) {
                ClaimDecision::Register => {
                    if self.inner.store.insert_node(&registration).await? {
                        break;
                    }
                }
                ClaimDecision::TakeOver => {
                    let row = snapshot.row.expect("a takeover is judged on an existing row");
                    if self
                        .inner
                        .store
                        .take_over_node(&registration, row.incarnation.as_deref(), row.last_seen_ms)
                        .await?
                    {
                        break;
                    }
                    watched = None;
                }
                ClaimDecision::Watch { stale_at_ms } => {
                    if watched.is_none() {
                        info!(
                            node_id = %settings.node_id,
                            wait_ms = stale_at_ms - snapshot.store_now_ms,
                            "another incarnation refreshed this node id recently; watching it to tell a crashed predecessor from a live duplicate"
                        );
                        watched = snapshot.row.clone();
                    }
                    tokio::time::sleep(settings.timings.poll_interval).await;
                }
            }
        }
        info!(node_id = %settings.node_id, incarnation = %self.inner.incarnation, mode = %settings.mode, "registered in the coordinator registry");
        Ok(())
    }

    async fn address_of(&self, node_id: &str) -> Option<String> {
        let list = self.inner.store.list_nodes(&self.inner.settings.cluster).await.ok()?;
        list.nodes.into_iter().find(|node| node.node_id == node_id).map(|node| node.address)
    }

    /// Runs the election until `shutdown`; on the way out a leader steps down, then releases
    /// the lease so that a successor takes over at once, and the registry row is marked
    /// stopped. Returns an error when this node cannot go on (its id was taken, or `master`
    /// found a live leader).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), HaError> {
        if !self.inner.settings.mode.uses_lease() {
            info!(node_id = %self.inner.settings.node_id, "ha.mode is disabled: serving stand-alone, without a lease");
            metrics::set_leader(false, 0);
            shutdown.cancelled().await;
            return Ok(());
        }
        let mut session = self.inner.ha_store.lease_session(self.inner.settings.timings.store_timeout);
        let id_lost = CancellationToken::new();
        let refresher = tokio::spawn(self.clone().refresh_registry(shutdown.clone(), id_lost.clone()));
        self.set_role(HaRole::Follower, "registered");

        let mut result = Ok(());
        let mut first = None;
        if self.inner.settings.mode == HaMode::Master {
            match self.master_start(&mut session).await {
                Ok(acquired) => first = Some(acquired),
                Err(error) => result = Err(error),
            }
        }
        if result.is_ok() {
            loop {
                let acquired = match first.take() {
                    Some(acquired) => Some(acquired),
                    None => self.follow(&mut session, &shutdown, &id_lost).await,
                };
                let Some(acquired) = acquired else { break };
                self.lead(&mut session, acquired, &shutdown, &id_lost).await;
            }
            if id_lost.is_cancelled() {
                result = Err(HaError::NodeIdLost { node_id: self.inner.settings.node_id.clone() });
            }
        }

        refresher.abort();
        let _ = refresher.await;
        if !id_lost.is_cancelled() {
            let settings = &self.inner.settings;
            match self.inner.ha_store.stop_node(&settings.cluster, &settings.node_id, &self.inner.incarnation).await {
                Ok(_) => {
                    info!(node_id = %settings.node_id, "marked stopped in the coordinator registry")
                }
                Err(error) => {
                    warn!(%error, "could not mark this node stopped; a restart waits one lease TTL for its id")
                }
            }
        }
        self.set_role(HaRole::Stopped, "shutdown");
        result
    }

    /// `master` at start: take the lease now, or fail at once when a live leader exists.
    async fn master_start(&self, session: &mut LeaseSession) -> Result<Acquired, HaError> {
        let settings = &self.inner.settings;
        for _ in 0..3 {
            let read_at = self.inner.clock.now();
            let view = session.read_lease(&settings.cluster).await?;
            self.observe_lease(&view, read_at);
            if let Some(holder) = view.live_holder() {
                return Err(HaError::LiveLeaderAtStart {
                    node_id: holder.node_id.clone(),
                    address: holder.address.clone(),
                    term: view.term,
                    remaining_ms: view.remaining_ms(),
                });
            }
            let sent = self.inner.clock.now();
            if let Some(term) =
                session.try_acquire(&settings.cluster, &view, &self.holder(), settings.timings.lease_ttl).await?
            {
                metrics::acquire("won");
                return Ok(Acquired { term, sent, view });
            }
            metrics::acquire("lost");
        }
        let view = session.read_lease(&settings.cluster).await?;
        let holder = view.holder.clone().unwrap_or(LeaseHolder {
            node_id: "another node".into(),
            incarnation: String::new(),
            address: String::new(),
        });
        Err(HaError::LiveLeaderAtStart {
            node_id: holder.node_id,
            address: holder.address,
            term: view.term,
            remaining_ms: view.remaining_ms(),
        })
    }

    /// The follower loop: returns once this node acquired the lease, or `None` at shutdown.
    async fn follow(
        &self,
        session: &mut LeaseSession,
        shutdown: &CancellationToken,
        id_lost: &CancellationToken,
    ) -> Option<Acquired> {
        let settings = &self.inner.settings;
        let timings = &settings.timings;
        loop {
            metrics::loop_iteration("follower");
            if shutdown.is_cancelled() || id_lost.is_cancelled() {
                return None;
            }
            let read_at = self.inner.clock.now();
            let view = match session.read_lease(&settings.cluster).await {
                Ok(view) => view,
                Err(error) => {
                    metrics::store_error("read lease");
                    warn!(%error, "could not read the lease; retrying");
                    self.pause(timings.poll_interval, shutdown, id_lost, true).await;
                    continue;
                }
            };
            self.observe_lease(&view, read_at);
            if !view.is_expired() {
                let remaining = Duration::from_millis(view.remaining_ms().unsigned_abs());
                self.pause(remaining.min(timings.poll_interval), shutdown, id_lost, true).await;
                continue;
            }
            let (mode, contend_now, sit_out_until) = {
                let control = self.control();
                (control.mode, control.contend_now, control.sit_out_until)
            };
            if !mode.is_candidate() {
                self.pause(timings.poll_interval, shutdown, id_lost, true).await;
                continue;
            }
            let now = self.inner.clock.now();
            if let Some(until) = sit_out_until.filter(|until| now < *until) {
                self.pause(now.until(until).min(timings.poll_interval), shutdown, id_lost, true).await;
                continue;
            }
            let expired_for = Duration::from_millis(view.remaining_ms().unsigned_abs());
            let delay = if contend_now {
                Duration::ZERO
            } else {
                let my_rank = self.rank(&view).await;
                acquire_delay(expired_for, my_rank, timings.priority_step, timings.poll_interval)
            };
            if !delay.is_zero() {
                // Not woken by setting changes: the back-off is what makes priority hold.
                self.pause(delay, shutdown, id_lost, false).await;
                if shutdown.is_cancelled() || id_lost.is_cancelled() || !self.control().mode.is_candidate() {
                    continue;
                }
            }
            let sent = self.inner.clock.now();
            match session.try_acquire(&settings.cluster, &view, &self.holder(), timings.lease_ttl).await {
                Ok(Some(term)) => {
                    metrics::acquire("won");
                    return Some(Acquired { term, sent, view });
                }
                Ok(None) => metrics::acquire("lost"),
                Err(error) => {
                    metrics::acquire("error");
                    warn!(%error, "lease acquire failed; retrying");
                    self.pause(timings.poll_interval, shutdown, id_lost, true).await;
                }
            }
        }
    }

    /// The leader loop: renews until shutdown, demotion, loss of the lease, or the end of the
    /// local hold, then steps down (and releases the lease when leaving on purpose).
    async fn lead(
        &self,
        session: &mut LeaseSession,
        acquired: Acquired,
        shutdown: &CancellationToken,
        id_lost: &CancellationToken,
    ) {
        let settings = &self.inner.settings;
        let timings = &settings.timings;
        let clock = &self.inner.clock;
        let term = acquired.term;
        let guard = self.guard(term);
        let promoted_at = clock.now();
        {
            let mut control = self.control();
            control.leadership = Some(Leadership {
                term,
                hold_until: timings.hold_until(acquired.sent),
                token: shutdown.child_token(),
                promoted_at,
            });
            control.demote_requested = false;
            control.contend_now = false;
            control.sit_out_until = None;
        }
        let previous = acquired.view.holder.as_ref().map(|holder| holder.node_id.clone()).unwrap_or_default();
        info!(
            term,
            node_id = %settings.node_id,
            previous_term = acquired.view.term,
            previous_holder = %previous,
            reason = if acquired.view.holder.is_some() { "the previous lease expired or was released" } else { "the lease was free" },
            "became leader"
        );
        self.publish_self_as_leader(term, acquired.sent);
        metrics::set_leader(true, term);
        metrics::transition("leader", "acquired");

        let min_retry = (timings.renew_interval / 8).max(Duration::from_millis(20));
        let mut retry_pause = min_retry;
        let mut next_renew = acquired.sent + timings.renew_interval;
        let reason = loop {
            metrics::loop_iteration("leader");
            let hold_until = self.hold_until().unwrap_or(MonoTime::ZERO);
            let now = clock.now();
            if now >= hold_until {
                break StepDown::HoldExpired;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break StepDown::Shutdown,
                _ = id_lost.cancelled() => break StepDown::NodeIdLost,
                _ = tokio::time::sleep(now.until(hold_until)) => break StepDown::HoldExpired,
                _ = self.inner.wake.notified() => {
                    let mut control = self.control();
                    if std::mem::take(&mut control.demote_requested) {
                        break StepDown::Demoted;
                    }
                    if !std::mem::take(&mut control.renew_requested) {
                        continue;
                    }
                }
                _ = tokio::time::sleep(now.until(next_renew)) => {}
            }
            let sent = clock.now();
            // The renewal races the end of the hold: a store call that hangs cannot keep this
            // node acting as leader, whatever its own timeout does.
            let outcome = tokio::select! {
                result = session.renew(&guard, timings.lease_ttl) => Some(result),
                _ = tokio::time::sleep(sent.until(hold_until)) => None,
            };
            let took = clock.now() - sent;
            match outcome {
                None => break StepDown::HoldExpired,
                Some(Ok(true)) => {
                    metrics::renewal("ok", took);
                    self.extend_hold(timings.hold_until(sent));
                    self.publish_self_as_leader(term, sent);
                    next_renew = sent + timings.renew_interval;
                    retry_pause = min_retry;
                }
                Some(Ok(false)) => {
                    metrics::renewal("lost", took);
                    break StepDown::LeaseLost;
                }
                Some(Err(error)) => {
                    metrics::renewal("error", took);
                    warn!(term, %error, retry_in_ms = retry_pause.as_millis() as u64, hold_left_ms = clock.now().until(hold_until).as_millis() as u64, "lease renewal failed; retrying until the local hold ends");
                    next_renew = clock.now() + retry_pause;
                    retry_pause = (retry_pause * 2).min(timings.renew_interval / 2);
                }
            }
        };
        self.step_down(term, reason);
        if reason.releases_lease() {
            match session.release(&guard).await {
                Ok(true) => info!(term, "released the lease so that a successor can take over at once"),
                Ok(false) => info!(term, "the lease had already expired or moved on; nothing to release"),
                Err(error) => {
                    warn!(term, %error, "could not release the lease; a successor waits for it to expire")
                }
            }
        }
        if reason == StepDown::Demoted {
            self.control().sit_out_until = Some(clock.now() + timings.lease_ttl);
        }
    }

    fn step_down(&self, term: u64, reason: StepDown) {
        if let Some(leadership) = self.control().leadership.take() {
            leadership.token.cancel();
        }
        self.inner.view.send_modify(|view| {
            view.role = HaRole::Follower;
            view.leader = None;
        });
        metrics::set_leader(false, term);
        metrics::transition("follower", reason.label());
        match reason {
            StepDown::Shutdown | StepDown::Demoted => {
                info!(term, node_id = %self.inner.settings.node_id, reason = reason.reason(), "stepped down")
            }
            _ => {
                warn!(term, node_id = %self.inner.settings.node_id, reason = reason.reason(), "stepped down")
            }
        }
    }

    /// Refreshes this node's registry row every renew interval, so that others rank it as a
    /// live candidate and a duplicate start is refused.
    async fn refresh_registry(self, shutdown: CancellationToken, id_lost: CancellationToken) {
        let settings = &self.inner.settings;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(settings.timings.renew_interval) => {}
            }
            metrics::loop_iteration("registry");
            let role = self.view().role;
            let started = self.inner.clock.now();
            match self
                .inner
                .ha_store
                .refresh_node(&settings.cluster, &settings.node_id, &self.inner.incarnation, role.as_str())
                .await
            {
                Ok(true) => metrics::refresh(self.inner.clock.now() - started),
                Ok(false) => {
                    error!(node_id = %settings.node_id, "another process took over this node id; stopping");
                    id_lost.cancel();
                    self.inner.wake.notify_one();
                    return;
                }
                Err(error) => {
                    metrics::store_error("refresh node");
                    warn!(%error, "could not refresh this node's registry row");
                }
            }
        }
    }

    /// Sleeps for `duration`, or less when shutting down (or, if `wakeable`, when a setting
    /// changes).
    async fn pause(
        &self,
        duration: Duration,
        shutdown: &CancellationToken,
        id_lost: &CancellationToken,
        wakeable: bool,
    ) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = shutdown.cancelled() => {}
            _ = id_lost.cancelled() => {}
            _ = self.inner.wake.notified(), if wakeable => {}
        }
    }

    /// This node's rank among the live candidates of the registry.
    async fn rank(&self, lease: &LeaseView) -> usize {
        let settings = &self.inner.settings;
        let list = match self.inner.ha_store.list_nodes(&settings.cluster).await {
            Ok(list) => list,
            Err(error) => {
                metrics::store_error("list nodes");
                warn!(%error, "could not read the registry to rank candidates; trying as rank 0");
                return 0;
            }
        };
        let me = Candidate { node_id: &settings.node_id, priority: self.control().priority };
        let expired_holder = lease.holder.as_ref().map(|holder| holder.node_id.as_str());
        rank(me, live_candidates(&list, settings.timings.lease_ttl, expired_holder))
    }

    /// Changes this node's mode; returns the previous one. On the leader the change is a
    /// term-guarded write, and a mode other than auto or master demotes it.
    pub async fn set_mode(&self, requested: HaMode) -> Result<HaMode, HaError> {
        let _serial = self.inner.setter.lock().await;
        let current = self.control().mode;
        let is_leader = self.is_leader_now();
        let now = self.inner.clock.now();
        let live_leader = self
            .view()
            .leader
            .filter(|leader| leader.node_id != self.inner.settings.node_id && !leader.remaining(now).is_zero())
            .map(|leader| leader.node_id);
        let change = decide_mode_change(current, requested, is_leader, live_leader.as_deref())?;
        if !current.uses_lease() {
            return Ok(current);
        }
        let priority = self.control().priority;
        self.persist_settings(requested, priority).await?;
        {
            let mut control = self.control();
            control.mode = requested;
            control.demote_requested |= change.demote;
            control.contend_now |= change.contend_now;
        }
        self.inner.view.send_modify(|view| view.mode = requested);
        self.inner.wake.notify_one();
        info!(from = %current, to = %requested, demote = change.demote, "HA mode changed");
        if change.demote {
            self.wait_until_not_leader().await;
        }
        Ok(current)
    }

    /// Changes this node's priority; returns the previous one. On the leader the change is a
    /// term-guarded write.
    pub async fn set_priority(&self, priority: i32) -> Result<i32, HaError> {
        let _serial = self.inner.setter.lock().await;
        let (mode, previous) = {
            let control = self.control();
            (control.mode, control.priority)
        };
        if mode.uses_lease() {
            self.persist_settings(mode, priority).await?;
        }
        self.control().priority = priority;
        self.inner.view.send_modify(|view| view.priority = priority);
        self.inner.wake.notify_one();
        info!(from = previous, to = priority, "priority changed");
        Ok(previous)
    }

    /// Writes this node's mode and priority to the registry: term-guarded when it leads.
    async fn persist_settings(&self, mode: HaMode, priority: i32) -> Result<(), HaError> {
        let settings = &self.inner.settings;
        let Ok(permit) = self.permit() else {
            self.inner
                .store
                .update_node_settings(
                    &settings.cluster,
                    &settings.node_id,
                    &self.inner.incarnation,
                    mode.as_str(),
                    priority,
                )
                .await?;
            return Ok(());
        };
        // From here on this node acts on a leadership check that may already be stale; the
        // store's guard is what keeps a deposed leader from writing.
        failpoint::pause(failpoint::BEFORE_GUARDED_WRITE).await;
        let stale = |error: StoreError| match error {
            StoreError::StaleTerm { term } => {
                warn!(term, "the store refused a guarded write: another leader took over");
                HaError::StaleTerm { term, leader: self.known_leader_address() }
            }
            other => HaError::Store(other),
        };
        let mut tx = self.inner.store.begin_guarded(&WriteGuard::Term(permit.guard.clone())).await.map_err(stale)?;
        failpoint::pause(failpoint::INSIDE_GUARDED_WRITE).await;
        tx.update_node_settings(&settings.cluster, &settings.node_id, &self.inner.incarnation, mode.as_str(), priority)
            .await
            .map_err(stale)?;
        tx.commit().await.map_err(stale)?;
        Ok(())
    }

    async fn wait_until_not_leader(&self) {
        let mut view = self.subscribe();
        let limit = self.inner.settings.timings.lease_ttl;
        let _ = tokio::time::timeout(limit, view.wait_for(|view| view.role != HaRole::Leader)).await;
    }

    /// The registry and the lease row, for `ListHaStates`.
    pub async fn registry(&self) -> Result<(NodeList, Option<LeaseView>), HaError> {
        let cluster = &self.inner.settings.cluster;
        let list = self.inner.store.list_nodes(cluster).await?;
        let lease = self.inner.store.read_lease(cluster).await?;
        Ok((list, Some(lease)))
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.inner.control.lock().expect("HA control state poisoned")
    }

    fn guard(&self, term: u64) -> TermGuard {
        TermGuard { cluster: self.inner.settings.cluster.clone(), term, incarnation: self.inner.incarnation.clone() }
    }

    fn holder(&self) -> LeaseHolder {
        LeaseHolder {
            node_id: self.inner.settings.node_id.clone(),
            incarnation: self.inner.incarnation.clone(),
            address: self.inner.settings.address.clone(),
        }
    }

    fn hold_until(&self) -> Option<MonoTime> {
        self.control().leadership.as_ref().map(|leadership| leadership.hold_until)
    }

    fn extend_hold(&self, until: MonoTime) {
        if let Some(leadership) = self.control().leadership.as_mut() {
            leadership.hold_until = leadership.hold_until.max(until);
        }
    }

    fn set_role(&self, role: HaRole, reason: &'static str) {
        let changed = self.inner.view.send_if_modified(|view| {
            let changed = view.role != role;
            view.role = role;
            changed
        });
        if changed {
            metrics::transition(role.as_str(), reason);
            info!(role = %role, reason, node_id = %self.inner.settings.node_id, "role changed");
        }
    }

    /// Records what a lease read showed: the leader this node knows and the store's clock.
    fn observe_lease(&self, lease: &LeaseView, read_at: MonoTime) {
        *self.inner.store_clock.lock().expect("store clock poisoned") = Some((lease.store_now_ms, read_at));
        let leader = lease.live_holder().map(|holder| KnownLeader {
            node_id: holder.node_id.clone(),
            address: holder.address.clone(),
            term: lease.term,
            lease_expires_at_ms: lease.expires_at_ms,
            observed_at: read_at,
            remaining_at_observation: Duration::from_millis(lease.remaining_ms().max(0).unsigned_abs()),
        });
        self.inner.view.send_if_modified(|view| {
            let changed_leader =
                view.leader.as_ref().map(|l| (&l.node_id, l.term)) != leader.as_ref().map(|l| (&l.node_id, l.term));
            if changed_leader && let Some(new) = &leader {
                info!(leader = %new.node_id, term = new.term, address = %new.address, "observed a new leader");
            }
            let changed_term = view.term != lease.term;
            view.term = lease.term;
            view.leader = leader;
            changed_leader || changed_term
        });
    }

    /// Publishes this node as the leader, with its hold as the remaining time.
    fn publish_self_as_leader(&self, term: u64, sent: MonoTime) {
        let now = self.inner.clock.now();
        let hold_until = self.hold_until().unwrap_or(now);
        let ttl = self.inner.settings.timings.lease_ttl;
        let expires_at_ms = self
            .inner
            .store_clock
            .lock()
            .expect("store clock poisoned")
            .map(|(store_ms, at)| store_ms + (sent - at).as_millis() as i64 + ttl.as_millis() as i64)
            .unwrap_or(0);
        let leader = KnownLeader {
            node_id: self.inner.settings.node_id.clone(),
            address: self.inner.settings.address.clone(),
            term,
            lease_expires_at_ms: expires_at_ms,
            observed_at: now,
            remaining_at_observation: now.until(hold_until),
        };
        self.inner.view.send_if_modified(|view| {
            let changed = view.role != HaRole::Leader || view.term != term;
            view.role = HaRole::Leader;
            view.term = term;
            view.leader = Some(leader);
            changed
        });
    }
}

/// The candidates of `list` that count for ranking: refreshed within one `ttl`, not stopped,
/// in a candidate mode, and not the holder whose lease just expired.
fn live_candidates<'a>(
    list: &'a NodeList,
    ttl: Duration,
    expired_holder: Option<&'a str>,
) -> impl Iterator<Item = Candidate<'a>> {
    let window_ms = ttl.as_millis() as i64;
    list.nodes
        .iter()
        .filter(move |node| {
            node.incarnation.is_some()
                && list.store_now_ms - node.last_seen_ms < window_ms
                && Some(node.node_id.as_str()) != expired_holder
                && HaMode::from_str(&node.mode).is_ok_and(HaMode::is_candidate)
        })
        .map(|node| Candidate { node_id: &node.node_id, priority: node.priority })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_store::NodeRow;

    fn node(id: &str, mode: &str, priority: i32, incarnation: Option<&str>, last_seen_ms: i64) -> NodeRow {
        NodeRow {
            node_id: id.into(),
            incarnation: incarnation.map(Into::into),
            address: String::new(),
            mode: mode.into(),
            priority,
            role: "follower".into(),
            last_seen_ms,
        }
    }

    #[test]
    fn only_live_candidates_other_than_the_expired_holder_rank() {
        let list = NodeList {
            store_now_ms: 10_000,
            nodes: vec![
                node("a", "auto", 5, Some("i"), 9_500),
                node("b", "hot-backup", 9, Some("i"), 9_500),
                node("c", "standby", 7, Some("i"), 2_000),
                node("d", "auto", 8, None, 9_900),
                node("e", "hot-standby", 1, Some("i"), 9_000),
                node("old", "auto", 100, Some("i"), 9_999),
            ],
        };
        let ids: Vec<_> = live_candidates(&list, Duration::from_secs(6), Some("old")).map(|c| c.node_id).collect();
        assert_eq!(ids, ["a", "e"]);
    }
}
