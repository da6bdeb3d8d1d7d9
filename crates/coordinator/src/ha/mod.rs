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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold_core::election::{
    Candidate, FollowStep, FollowerState, LeaseSeen, RegistryEntry, RowSeen, UnansweredAcquires, acquire_delay,
    follow_step, live_candidates, rank, successor,
};
use leasehold_core::leadership::{LeadStep, Renewal, StepDown, after_renewal, hold_ended};
use leasehold_core::mode::decide_mode_change;
use leasehold_core::node_claim::{ClaimDecision, judge_claim};
use leasehold_core::{Clock, HaMode, HaRole, HaTimings, MonoTime};
use leasehold_store::{
    LeaseHolder, LeaseSession, LeaseView, NodeList, NodeRegistration, Store, StoreError, TermGuard, WriteGuard,
};
use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::failpoint;
use crate::metrics;

mod control;
mod election;
mod error;
mod handoff;
mod registry;

pub use error::HaError;
pub use registry::ListedNode;

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

    /// The kind of store this node keeps its state in.
    pub fn store_backend(&self) -> leasehold_store::Backend {
        self.inner.ha_store.backend()
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

    /// This node's role right now. The published role lags the moment the hold ends by
    /// however long the leader loop takes to notice; an answer about the role must not.
    pub fn role_now(&self) -> HaRole {
        let role = self.view().role;
        if role == HaRole::Leader && !self.is_leader_now() { HaRole::Follower } else { role }
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
}
