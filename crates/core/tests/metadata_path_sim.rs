//! A simulation of the whole metadata path that tries to break the DDL promise.
//!
//! Leaders are the coordinator's own [`Ledger`]s over one store: an in-memory value with a
//! version counter, the change log, the catalog, the bucket slots and the procedure rows,
//! that only the term holding the coordinator lease can write (every write checks the term,
//! as the store's guarded transactions do). A promotion bumps the term; the deposed leader
//! keeps answering heartbeats and judging verdicts until its own hold ends, but none of its
//! writes land.
//!
//! DDL runs as procedures planned by core's `ddl`, stepped by core's `procedure`
//! (`after_prepare`, `resume_from`), broadcast in rounds by core's `propagation` plan with
//! the ledger's verdict, and resumed from the stored step by every new leader. Buckets move by
//! the ledger's assignment pass and core's `buckets` handoff. Agents run core's
//! `LeaseManager` and apply changes, snapshots and drop orders as the agent does, through
//! core's `catalog` and `ddl` (drop orders, resync drops, the veto of reversible puts). Their
//! hosts write data into every visible column, and refuse changes or the deletion of data for
//! a while. The network drops, delays, duplicates and reorders heartbeats, answers, pushes and
//! their answers; clocks are off by up to `ρ`; agents freeze. At the end every fault stops
//! (the heal) and the run goes on long enough to finish.
//!
//! The properties, checked after every event that can make an agent serve something new:
//! 1. once a DDL returned OK at version `V`, no agent holds a valid lease over a cache older
//!    than `V`, and every cache under a valid lease is the store's at its version;
//! 2. once a drop returned OK, no host under a valid lease holds data of what it dropped
//!    (a host that still has it is fenced, and deletes it before it serves again);
//! 4. no bucket is owned by two agents at once;
//!
//! and at the end of the heal: 3. every procedure ended (succeeded, rolled back or failed),
//! and every bucket is owned by an agent that serves it.

mod sim;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use leasehold_core::MonoTime;
use leasehold_core::agent_lease::{
    CachePoint, HeartbeatTicket, LeaderRef, LeaseManager, ResponseDecision, holds_answer, snapshot_is_behind,
};
use leasehold_core::buckets::{self, Handoff, Slot};
use leasehold_core::catalog::{Catalog, CatalogChange, Category, DataType};
use leasehold_core::contact::NodeKey;
use leasehold_core::ddl::{
    self, AlterAction, CacheChange, CatalogBatch, ColumnSpec, DataTarget, DdlPlan, DdlRequest, HeldCatalog, LockSet,
};
use leasehold_core::ledger::{Answer, Beat, Inherited, Ledger, Refusals};
use leasehold_core::procedure::{Next, State, Step, after_prepare, first_wait, resume_from};
use leasehold_core::propagation::{NextStep, PropagationPlan};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sim::{FENCE, HEARTBEAT, LEASE_TTL, Lossy, Queue, RHO, Rng, STORE_EPOCH, SimClock, earlier_grants, key, ledger};

/// Faults stop here (real microseconds) ...
const HEAL_US: u64 = 22_000_000;
/// ... and every procedure must have ended by here.
const HORIZON_US: u64 = 40_000_000;
/// How often leaders drive their procedures.
const DRIVE_EVERY_US: u64 = 20_000;
/// How often leaders run a bucket assignment pass.
const ASSIGN_EVERY_US: u64 = 500_000;
/// The one bucket pool every agent joins.
const POOL: &str = "p";
const BUCKET_COUNT: u32 = 6;

/// A change as the log holds it: a catalog change, an order to delete data, or bucket handoffs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Catalog(CatalogChange),
    DropData { target: DataTarget, marker_version: u64 },
    Buckets(Vec<Handoff>),
}

/// The ledger's payload: the change with its version, as a `MetadataChange` carries it.
type Versioned = (u64, Change);

// ---------------------------------------------------------------------------------------------
// The store

#[derive(Debug, Clone)]
struct ProcedureRow {
    plan: DdlPlan,
    locks: LockSet,
    step: Step,
    state: State,
}

/// What a transaction does to the procedure table besides its change.
enum RowWrite {
    Insert(Box<(DdlPlan, LockSet)>),
    Step(u64, Step),
    Finish(u64, State),
    None,
}

#[derive(Debug)]
enum WriteError {
    /// The term guard refused: another leader was promoted.
    Deposed,
    /// The change would orphan an object.
    Orphaned,
}

struct Store {
    term: u64,
    version: u64,
    changes: Vec<Versioned>,
    catalog: Catalog,
    /// The pool's buckets.
    slots: Vec<Slot>,
    /// The catalog and the buckets at every version (index = version).
    history: Vec<(Catalog, Vec<Slot>)>,
    procedures: BTreeMap<u64, ProcedureRow>,
}

// ---------------------------------------------------------------------------------------------
// Leaders

/// One broadcast of a version, as the propagator runs it.
struct Round {
    version: u64,
    started: MonoTime,
    round: u32,
    next_push_at: MonoTime,
    /// Agents that answered a push of this broadcast with "cannot apply".
    refused: BTreeSet<NodeKey>,
}

/// A procedure driven by a leader.
struct Run {
    id: u64,
    plan: DdlPlan,
    locks: LockSet,
    step: Step,
    next: Next,
    /// The version the next broadcast waits for.
    version: u64,
    round: Option<Round>,
    /// Publications watched, forgotten when the run stops here.
    held: BTreeSet<u64>,
}

enum Drive {
    Keep,
    Done,
}

struct Leader {
    term: u64,
    clock: SimClock,
    starts_us: u64,
    /// It answers heartbeats until then (its hold may outlast a successor's promotion).
    ends_us: u64,
    ledger: Ledger<Versioned>,
    runs: Vec<Run>,
}

impl Leader {
    fn name(l: usize) -> String {
        format!("l{l}")
    }
}

// ---------------------------------------------------------------------------------------------
// Agents and hosts

/// One column's data on a host, named by the creation versions of everything that holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Datum {
    database: String,
    database_created: u64,
    table: String,
    table_created: u64,
    column: String,
    column_created: u64,
}

impl Datum {
    fn covered_by(&self, target: &DataTarget) -> bool {
        match target {
            DataTarget::Database { database, created_version } => {
                self.database == *database && self.database_created == *created_version
            }
            DataTarget::Table { database, table, created_version } => {
                self.database == *database && self.table == *table && self.table_created == *created_version
            }
            DataTarget::Column { database, table, column, created_version } => {
                self.database == *database
                    && self.table == *table
                    && self.column == *column
                    && self.column_created == *created_version
            }
        }
    }
}

struct Host {
    data: BTreeSet<Datum>,
    /// When it refuses every change it is asked about, in real microseconds.
    refuses_changes: Vec<(u64, u64)>,
    /// When it fails to delete data.
    refuses_drops: Vec<(u64, u64)>,
}

impl Host {
    fn prepare(&self, now_us: u64) -> Result<(), ()> {
        if sim::paused_until(&self.refuses_changes, now_us).is_some() { Err(()) } else { Ok(()) }
    }

    fn drop_data(&mut self, target: &DataTarget, now_us: u64) -> Result<(), ()> {
        if sim::paused_until(&self.refuses_drops, now_us).is_some() {
            return Err(());
        }
        self.data.retain(|datum| !datum.covered_by(target));
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Cache {
    version: u64,
    catalog: Catalog,
    slots: Vec<Slot>,
}

impl Cache {
    fn held(&self) -> HeldCatalog<'_> {
        HeldCatalog { store_epoch: STORE_EPOCH, version: self.version, catalog: &self.catalog }
    }
}

enum ApplyError {
    Gap,
    CannotApply(u64),
    Orphaned,
}

struct Agent {
    clock: SimClock,
    lease: LeaseManager,
    /// `None` before the first resync and while fenced.
    cache: Option<Cache>,
    /// The cache dropped at the last fence, to tell the host what went meanwhile.
    before_fence: Option<Cache>,
    /// Orders to drop data carried out, of objects still under their marker.
    dropped: BTreeSet<DataTarget>,
    /// The version the host refused last, reported until a renewal.
    refused: Option<u64>,
    tickets: HashMap<u64, HeartbeatTicket>,
    pauses: Vec<(u64, u64)>,
    following: usize,
    host: Host,
}

impl Agent {
    fn fence_if_expired(&mut self, now: MonoTime) {
        if self.lease.fence_if_expired(now)
            && let Some(cache) = self.cache.take()
        {
            self.before_fence = Some(cache);
        }
    }

    fn serving(&self, now: MonoTime) -> Option<&Cache> {
        self.lease.valid_until(now).and(self.cache.as_ref())
    }

    /// Applies consecutive changes (already applied ones skipped), asking the host about each
    /// and carrying out orders to drop data, through the agent's own batch
    /// ([`CatalogBatch`]).
    fn apply(&mut self, changes: &[Versioned], now_us: u64) -> Result<(), ApplyError> {
        let current = self.cache.as_ref().ok_or(ApplyError::Gap)?;
        let mut batch = CatalogBatch::new(&current.catalog, current.version);
        let mut slots = current.slots.clone();
        for (version, change) in changes {
            if !batch.admits(*version).map_err(|_| ApplyError::Gap)? {
                continue;
            }
            self.host.prepare(now_us).map_err(|()| ApplyError::CannotApply(*version))?;
            let change = match change {
                Change::Catalog(change) => CacheChange::Catalog(change.clone()),
                Change::Buckets(handoffs) => {
                    // The host stops every piece of work on a revoked bucket before the revoke
                    // applies (its release is the veto asked above).
                    for handoff in handoffs {
                        buckets::apply(&mut slots, handoff, *version);
                    }
                    CacheChange::Other
                }
                Change::DropData { target, marker_version } => {
                    if batch.drop_is_due(target, *marker_version) {
                        self.host.drop_data(target, now_us).map_err(|()| ApplyError::CannotApply(*version))?;
                        self.dropped.insert(target.clone());
                    }
                    CacheChange::DropData { target: target.clone(), marker_version: *marker_version }
                }
            };
            batch.apply(*version, &change).map_err(|_| ApplyError::Orphaned)?;
        }
        let (version, catalog) = batch.finish();
        let catalog = catalog.unwrap_or_else(|| current.catalog.clone());
        ddl::keep_pending_drops(&mut self.dropped, &catalog);
        self.cache = Some(Cache { version, catalog, slots });
        Ok(())
    }

    /// Installs a snapshot as the agent does: never backwards; then the agent's own
    /// [`ddl::resync_plan`]: the host vetoes what is in a reversible step, and deletes what
    /// went while this agent could not hear, first.
    fn install(&mut self, version: u64, catalog: &Catalog, slots: &[Slot], now_us: u64) -> Result<(), ApplyError> {
        let at = |version| CachePoint { store_epoch: STORE_EPOCH, version };
        if self.cache.as_ref().is_some_and(|cache| snapshot_is_behind(at(cache.version), at(version))) {
            return Ok(());
        }
        let installed = Cache { version, catalog: catalog.clone(), slots: slots.to_vec() };
        let held = self.cache.as_ref().or(self.before_fence.as_ref());
        let plan = ddl::resync_plan(held.map(Cache::held), installed.held(), &self.dropped);
        for (put_version, _) in &plan.vetoes {
            self.host.prepare(now_us).map_err(|()| ApplyError::CannotApply(*put_version))?;
        }
        for (target, _) in plan.drops {
            self.host.drop_data(&target, now_us).map_err(|()| ApplyError::CannotApply(version))?;
            self.dropped.insert(target);
        }
        ddl::keep_pending_drops(&mut self.dropped, &installed.catalog);
        self.before_fence = None;
        self.cache = Some(installed);
        Ok(())
    }

    /// The buckets this agent owns now: granted to it, not being revoked, under a valid lease.
    fn owned(&self, me: &NodeKey, now: MonoTime) -> Vec<u32> {
        self.serving(now).map_or_else(Vec::new, |cache| {
            (0..cache.slots.len() as u32).filter(|&b| cache.slots[b as usize].granted_to() == Some(me)).collect()
        })
    }

    /// The host writes into every column it may write: visible, under a valid lease.
    fn write_data(&mut self, now: MonoTime) {
        let Some(cache) = self.serving(now) else {
            return;
        };
        let mut written = Vec::new();
        for database in cache.catalog.visible_databases() {
            for table in cache.catalog.visible_tables(&database.name) {
                for column in &table.columns {
                    written.push(Datum {
                        database: database.name.clone(),
                        database_created: database.created_version,
                        table: table.name.clone(),
                        table_created: table.created_version,
                        column: column.name.clone(),
                        column_created: column.created_version,
                    });
                }
            }
        }
        self.host.data.extend(written);
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and events

#[derive(Debug, Clone)]
enum Body {
    Changes(Vec<Versioned>),
    Snapshot(Catalog, Vec<Slot>),
}

#[derive(Debug, Clone, Copy)]
enum PushResult {
    Applied(u64),
    CannotApply,
}

#[derive(Debug, Clone)]
enum Message {
    Heartbeat {
        agent: usize,
        leader: usize,
        ticket: u64,
        applied: u64,
        cached: bool,
        resync: bool,
        refused: Option<u64>,
    },
    Answer {
        agent: usize,
        ticket: u64,
        leader: usize,
        term: u64,
        version: u64,
        body: Body,
    },
    Push {
        agent: usize,
        leader: usize,
        term: u64,
        broadcast: u64,
        changes: Vec<Versioned>,
    },
    PushAnswer {
        agent: usize,
        leader: usize,
        broadcast: u64,
        result: PushResult,
    },
}

#[derive(Debug, Clone)]
enum Event {
    AgentTick(usize),
    Deliver(Message),
    Ddl(DdlRequest),
    Promote,
    Drive,
    Assign,
    Heal,
}

/// What a run counted, for tests that the schedules are not vacuous.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    started: u32,
    succeeded: u32,
    rolled_back: u32,
    failed: u32,
    drops_succeeded: u32,
    resumed: u32,
    abandoned: u32,
    over_budget: u32,
    revokes: u32,
    fences: u64,
    promise_checks: u64,
}

struct Sim {
    now_us: u64,
    queue: Queue<Event>,
    rng: Rng,
    link: Lossy,
    store: Store,
    leaders: Vec<Leader>,
    agents: Vec<Agent>,
    /// The newest version a DDL returned OK at.
    promised: u64,
    /// What succeeded drops deleted.
    dropped: Vec<DataTarget>,
    tally: Tally,
}

fn plan() -> PropagationPlan {
    PropagationPlan {
        retry_interval: Duration::from_millis(200),
        max_retry_interval: Duration::from_secs(1),
        budget: sim::proceed_after() + LEASE_TTL + Duration::from_secs(5),
    }
    .covering(sim::proceed_after() + earlier_grants())
}

fn conflicts(a: &LockSet, b: &LockSet) -> bool {
    a.database == b.database
        && (a.database_exclusive || b.database_exclusive || (a.object.is_some() && a.object == b.object))
}

impl Sim {
    fn send(&mut self, message: Message) {
        for at in self.link.arrivals(&mut self.rng, self.now_us) {
            self.queue.schedule(at, Event::Deliver(message.clone()));
        }
    }

    fn active(&self, l: usize) -> bool {
        self.now_us >= self.leaders[l].starts_us && self.now_us < self.leaders[l].ends_us
    }

    fn run(&mut self) {
        while let Some((at_us, event)) = self.queue.pop(HORIZON_US) {
            self.now_us = at_us;
            // Only an event at an agent can make it serve anything new: time alone only ends
            // leases. So the properties are checked for that agent (and for all at an OK).
            let touched = match &event {
                Event::AgentTick(a)
                | Event::Deliver(Message::Answer { agent: a, .. } | Message::Push { agent: a, .. }) => Some(*a),
                _ => None,
            };
            self.handle(event);
            if let Some(a) = touched {
                self.check_promise(a..a + 1);
            }
        }
        // Liveness: once the faults stopped, every procedure ends.
        for (id, row) in &self.store.procedures {
            assert_ne!(
                row.state,
                State::Running,
                "procedure {id} ({} {}) still running at step {} {} µs after the heal",
                row.plan.kind,
                row.plan.target,
                row.step,
                HORIZON_US - HEAL_US
            );
        }
        // And every bucket has an owner that serves it.
        let owned: usize = (0..self.agents.len())
            .map(|a| self.agents[a].owned(&key(a), self.agents[a].clock.local(self.now_us)).len())
            .sum();
        assert_eq!(owned, BUCKET_COUNT as usize, "buckets without an owner after the heal: {:?}", self.store.slots);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::AgentTick(a) => self.agent_tick(a),
            Event::Deliver(message) => self.deliver(message),
            Event::Ddl(request) => self.begin_ddl(request),
            Event::Promote => self.promote(),
            Event::Drive => {
                for l in 0..self.leaders.len() {
                    if self.active(l) {
                        self.drive_all(l);
                    }
                }
                self.queue.schedule(self.now_us + DRIVE_EVERY_US, Event::Drive);
            }
            Event::Assign => {
                for l in 0..self.leaders.len() {
                    if self.active(l) {
                        self.assign(l);
                    }
                }
                self.queue.schedule(self.now_us + ASSIGN_EVERY_US, Event::Assign);
            }
            Event::Heal => {
                self.link = Lossy { drop: 0.0, duplicate: 0.0, max_delay_us: 5_000 };
                for agent in &mut self.agents {
                    agent.pauses.retain(|(start, _)| *start < HEAL_US);
                    for (_, end) in &mut agent.pauses {
                        *end = (*end).min(HEAL_US);
                    }
                    agent.host.refuses_changes.clear();
                    agent.host.refuses_drops.clear();
                }
            }
        }
    }

    fn agent_tick(&mut self, a: usize) {
        if let Some(end) = sim::paused_until(&self.agents[a].pauses, self.now_us) {
            self.queue.schedule(end, Event::AgentTick(a));
            return;
        }
        let id = self.queue.seq();
        let agent = &mut self.agents[a];
        let now = agent.clock.local(self.now_us);
        agent.fence_if_expired(now);
        agent.write_data(now);
        let ticket = agent.lease.begin_heartbeat(now);
        agent.tickets.insert(id, ticket);
        let next = self.now_us + agent.clock.real_span(HEARTBEAT);
        let (applied, cached) = agent.cache.as_ref().map_or((0, false), |cache| (cache.version, true));
        let refused = agent.refused;
        // Rotate between the leaders that answer, as an agent rotating endpoints would.
        let active: Vec<usize> = (0..self.leaders.len()).filter(|&l| self.active(l)).collect();
        if !active.is_empty() {
            self.agents[a].following = active[self.rng.below(active.len() as u64) as usize];
        }
        let leader = self.agents[a].following;
        let resync = ticket.needs_resync;
        self.send(Message::Heartbeat { agent: a, leader, ticket: id, applied, cached, resync, refused });
        self.queue.schedule(next, Event::AgentTick(a));
    }

    fn deliver(&mut self, message: Message) {
        // A frozen agent handles nothing until it thaws.
        if let Message::Answer { agent, .. } | Message::Push { agent, .. } = &message
            && let Some(end) = sim::paused_until(&self.agents[*agent].pauses, self.now_us)
        {
            self.queue.schedule(end, Event::Deliver(message));
            return;
        }
        match message {
            Message::Heartbeat { agent, leader: l, ticket, applied, cached, resync, refused } => {
                let leader = &mut self.leaders[l];
                if self.now_us < leader.starts_us {
                    return;
                }
                let now = leader.clock.local(self.now_us);
                let hold_until = (leader.ends_us != u64::MAX).then(|| leader.clock.local(leader.ends_us));
                let node = key(agent);
                let store_epoch = if cached { STORE_EPOCH } else { "" };
                let beat = Beat { key: &node, applied, store_epoch, needs_resync: resync, refused };
                let Ok(grant) = leader.ledger.heartbeat(beat, hold_until, now) else {
                    return;
                };
                let body = match grant.answer {
                    Answer::Changes(changes) => Body::Changes(changes),
                    Answer::Snapshot => {
                        let slots = leader.ledger.pools().get(POOL).map(|pool| pool.slots.clone()).unwrap_or_default();
                        Body::Snapshot(leader.ledger.catalog().clone(), slots)
                    }
                };
                let (term, version) = (leader.term, grant.version);
                self.send(Message::Answer { agent, ticket, leader: l, term, version, body });
            }
            Message::Answer { agent: a, ticket, leader, term, version, body } => {
                let now_us = self.now_us;
                let agent = &mut self.agents[a];
                let now = agent.clock.local(now_us);
                agent.fence_if_expired(now);
                let Some(ticket) = agent.tickets.get(&ticket).copied() else {
                    return;
                };
                let resync = matches!(body, Body::Snapshot(..));
                if let ResponseDecision::Ignore(_) = agent.lease.consider_response(&ticket, term, resync, now) {
                    return;
                }
                let applied = match &body {
                    Body::Snapshot(catalog, slots) => agent.install(version, catalog, slots, now_us),
                    Body::Changes(changes) => agent.apply(changes, now_us),
                };
                match applied {
                    // Apply before renew: the cache must hold the answer's version.
                    Ok(())
                        if agent.cache.as_ref().is_some_and(|cache| {
                            let at = |version| CachePoint { store_epoch: STORE_EPOCH, version };
                            holds_answer(at(cache.version), at(version))
                        }) =>
                    {
                        let leader_ref = LeaderRef { node_id: Leader::name(leader), address: String::new(), term };
                        agent.lease.renew(&ticket, FENCE, leader_ref, now);
                        agent.refused = None;
                    }
                    Ok(()) => agent.lease.apply_failed(),
                    Err(error) => {
                        if let ApplyError::CannotApply(version) = error {
                            agent.refused = Some(version);
                        }
                        agent.lease.apply_failed();
                    }
                }
            }
            Message::Push { agent: a, leader, term, broadcast, changes } => {
                let now_us = self.now_us;
                let agent = &mut self.agents[a];
                let now = agent.clock.local(now_us);
                agent.fence_if_expired(now);
                if agent.lease.check_push(&Leader::name(leader), term, now).is_err() {
                    return;
                }
                let result = match agent.apply(&changes, now_us) {
                    Ok(()) => PushResult::Applied(agent.cache.as_ref().map_or(0, |cache| cache.version)),
                    Err(ApplyError::CannotApply(version)) => {
                        agent.refused = Some(version);
                        PushResult::CannotApply
                    }
                    Err(ApplyError::Gap | ApplyError::Orphaned) => return,
                };
                self.send(Message::PushAnswer { agent: a, leader, broadcast, result });
            }
            Message::PushAnswer { agent, leader: l, broadcast, result } => {
                let leader = &mut self.leaders[l];
                match result {
                    PushResult::Applied(version) => {
                        leader.ledger.record_ack(&key(agent), version);
                    }
                    PushResult::CannotApply => {
                        for run in &mut leader.runs {
                            if let Some(round) = run.round.as_mut().filter(|round| round.version == broadcast) {
                                round.refused.insert(key(agent));
                            }
                        }
                    }
                }
            }
        }
    }

    /// One term-guarded transaction: `change` at the next version (stamped as the leader
    /// stamps it, and published on the leader's ledger) with the procedure row's write.
    fn commit(&mut self, l: usize, change: Option<&Change>, row: RowWrite) -> Result<u64, WriteError> {
        if self.store.term != self.leaders[l].term {
            return Err(WriteError::Deposed);
        }
        let store = &mut self.store;
        let version = match change {
            None => store.version,
            Some(change) => {
                let version = store.version + 1;
                let (stamped, catalog_change) = match change {
                    Change::Catalog(change) => {
                        let stamped = store.catalog.stamp(change, version);
                        store.catalog.admits(&stamped).map_err(|_| WriteError::Orphaned)?;
                        (Change::Catalog(stamped.clone()), Some(stamped))
                    }
                    Change::DropData { target, .. } => {
                        (change.clone(), ddl::drop_order(&store.catalog, target, version))
                    }
                    Change::Buckets(handoffs) => {
                        for handoff in handoffs {
                            buckets::apply(&mut store.slots, handoff, version);
                        }
                        (change.clone(), None)
                    }
                };
                if let Some(catalog_change) = &catalog_change {
                    store.catalog.apply(catalog_change).expect("admitted");
                }
                store.version = version;
                store.changes.push((version, stamped.clone()));
                store.history.push((store.catalog.clone(), store.slots.clone()));
                let leader = &mut self.leaders[l];
                let now = leader.clock.local(self.now_us);
                let handoffs = match &stamped {
                    Change::Buckets(handoffs) => Some(handoffs.clone()),
                    _ => None,
                };
                leader
                    .ledger
                    .publish(version, (version, stamped), catalog_change.as_ref(), now)
                    .expect("the store admitted it");
                // Under the publication's lock, so that the revokes' snapshot is held.
                if let Some(handoffs) = handoffs {
                    leader.ledger.record_handoffs(POOL, &handoffs, version, now);
                }
                version
            }
        };
        match row {
            RowWrite::Insert(row) => {
                let (plan, locks) = *row;
                self.store
                    .procedures
                    .insert(version, ProcedureRow { plan, locks, step: Step::Prepared, state: State::Running });
            }
            RowWrite::Step(id, step) => self.store.procedures.get_mut(&id).expect("a stored procedure").step = step,
            RowWrite::Finish(id, state) => {
                let row = self.store.procedures.get_mut(&id).expect("a stored procedure");
                row.step = Step::Done;
                row.state = state;
            }
            RowWrite::None => {}
        }
        Ok(version)
    }

    /// One assignment pass: the releases of settled revokes, revokes and grants, written and
    /// published as one change (a deposed leader's write is refused).
    fn assign(&mut self, l: usize) {
        let leader = &self.leaders[l];
        let handoffs = leader.ledger.bucket_pass(POOL, leader.clock.local(self.now_us));
        let revokes = handoffs.iter().filter(|handoff| matches!(handoff, Handoff::Revoke { .. })).count() as u32;
        if !handoffs.is_empty() && self.commit(l, Some(&Change::Buckets(handoffs)), RowWrite::None).is_ok() {
            self.tally.revokes += revokes;
        }
    }

    /// The newest leader takes a DDL: planned against its catalog under its locks (a request
    /// that would wait for a lock, or that the catalog refuses, is dropped).
    fn begin_ddl(&mut self, request: DdlRequest) {
        let l = self.leaders.len() - 1;
        if !self.active(l) || ddl::validate(&request).is_err() {
            return;
        }
        let locks = ddl::locks(&request);
        if self.leaders[l].runs.iter().any(|run| conflicts(&run.locks, &locks)) {
            return;
        }
        let Ok(plan) = ddl::plan(self.leaders[l].ledger.catalog(), &request) else {
            return;
        };
        let prepare = Change::Catalog(plan.prepare.clone());
        let Ok(id) = self.commit(l, Some(&prepare), RowWrite::Insert(Box::new((plan.clone(), locks.clone())))) else {
            return;
        };
        self.tally.started += 1;
        let run = Run {
            id,
            plan,
            locks,
            step: Step::Prepared,
            next: Next::AwaitPrepare,
            version: id,
            round: None,
            held: BTreeSet::new(),
        };
        self.leaders[l].runs.push(run);
    }

    fn promote(&mut self) {
        let old = self.leaders.len() - 1;
        let clock = SimClock { rate: self.rng.rate(), base_us: 7_000_000 * (old as u64 + 1) };
        let promoted_at = clock.local(self.now_us);
        self.store.term += 1;
        let retained = self.store.changes.len().saturating_sub(64);
        let inherited = Inherited {
            version: self.store.version,
            changes: self.store.changes[retained..].iter().map(|change| (change.0, change.clone())).collect(),
            catalog: self.store.catalog.clone(),
            registered: (0..self.agents.len()).map(|a| (key(a), format!("a{a}:1"))).collect(),
            memberships: (0..self.agents.len()).map(|a| (key(a), vec![POOL.to_owned()])).collect(),
            pools: vec![(POOL.to_owned(), BUCKET_COUNT, false)],
            assignments: self
                .store
                .slots
                .iter()
                .enumerate()
                .map(|(b, slot)| (POOL.to_owned(), b as u32, slot.clone()))
                .collect(),
            ..Inherited::default()
        };
        // The old leader may keep answering heartbeats until its own hold ends: at most one
        // TTL of its clock after its last renewal, which preceded this promotion.
        let overlap = (self.rng.unit() * LEASE_TTL.as_micros() as f64 / (1.0 + RHO)) as u64;
        self.leaders[old].ends_us = self.leaders[old].ends_us.min(self.now_us + overlap);
        // Every running procedure resumes from its stored step.
        let runs = self
            .store
            .procedures
            .iter()
            .filter(|(_, row)| row.state == State::Running)
            .map(|(&id, row)| Run {
                id,
                plan: row.plan.clone(),
                locks: row.locks.clone(),
                step: row.step,
                next: resume_from(row.step),
                version: first_wait(row.step, id, None, self.store.version),
                round: None,
                held: BTreeSet::new(),
            })
            .collect::<Vec<_>>();
        self.tally.resumed += runs.len() as u32;
        self.leaders.push(Leader {
            term: self.store.term,
            clock,
            starts_us: self.now_us,
            ends_us: u64::MAX,
            ledger: ledger(promoted_at, earlier_grants(), inherited),
            runs,
        });
    }

    fn drive_all(&mut self, l: usize) {
        let runs = std::mem::take(&mut self.leaders[l].runs);
        let mut kept = Vec::new();
        for mut run in runs {
            match self.drive(l, &mut run) {
                Ok(Drive::Keep) => kept.push(run),
                Ok(Drive::Done) => self.stop(l, run),
                Err(WriteError::Deposed) => {
                    // The term ended: the next leader resumes it from the store.
                    self.tally.abandoned += 1;
                    self.stop(l, run);
                }
                Err(WriteError::Orphaned) => {
                    let _ = self.commit(l, None, RowWrite::Finish(run.id, State::Failed));
                    self.tally.failed += 1;
                    self.stop(l, run);
                }
            }
        }
        // New runs may have been added meanwhile (none are: DDL begins between drives).
        kept.append(&mut self.leaders[l].runs);
        self.leaders[l].runs = kept;
    }

    fn stop(&mut self, l: usize, run: Run) {
        for version in run.held {
            self.leaders[l].ledger.forget(version);
        }
    }

    /// Carries a procedure as far as it goes now, as the runner's `drive_steps` does.
    fn drive(&mut self, l: usize, run: &mut Run) -> Result<Drive, WriteError> {
        loop {
            match run.next {
                Next::AwaitPrepare => match self.broadcast(l, run, true) {
                    None => return Ok(Drive::Keep),
                    Some(proceed) => {
                        run.next = after_prepare(proceed, run.plan.drop_data.is_some(), run.plan.commit.is_some());
                    }
                },
                Next::RollBack => {
                    let rollback = Change::Catalog(run.plan.rollback.clone());
                    run.version = self.commit(l, Some(&rollback), RowWrite::Step(run.id, Step::RollingBack))?;
                    run.step = Step::RollingBack;
                    run.next = Next::AwaitSettled;
                }
                Next::DropData => {
                    if run.step != Step::DroppingData {
                        let target = run.plan.drop_data.clone().expect("a drop step has a target");
                        let order = Change::DropData { target, marker_version: run.id };
                        run.version = self.commit(l, Some(&order), RowWrite::Step(run.id, Step::DroppingData))?;
                        run.step = Step::DroppingData;
                    }
                    if self.broadcast(l, run, false).is_none() {
                        return Ok(Drive::Keep);
                    }
                    run.next = if run.plan.commit.is_some() { Next::Commit } else { Next::AwaitSettled };
                }
                Next::Commit => {
                    let commit = Change::Catalog(run.plan.commit.clone().expect("a commit step has a change"));
                    run.version = self.commit(l, Some(&commit), RowWrite::Step(run.id, Step::Committing))?;
                    run.step = Step::Committing;
                    run.next = Next::AwaitSettled;
                }
                Next::AwaitSettled => {
                    if self.broadcast(l, run, false).is_none() {
                        return Ok(Drive::Keep);
                    }
                    let rolled_back = run.step == Step::RollingBack;
                    let state = if rolled_back { State::RolledBack } else { State::Succeeded };
                    self.commit(l, None, RowWrite::Finish(run.id, state))?;
                    if rolled_back {
                        self.tally.rolled_back += 1;
                    } else {
                        // The DDL returns OK: the promise holds from here on.
                        self.tally.succeeded += 1;
                        self.promised = self.promised.max(run.version);
                        if let Some(target) = &run.plan.drop_data {
                            self.tally.drops_succeeded += 1;
                            self.dropped.push(target.clone());
                        }
                        self.check_promise(0..self.agents.len());
                    }
                    return Ok(Drive::Done);
                }
                Next::Finished => return Ok(Drive::Done),
            }
        }
    }

    /// One evaluation of `run`'s broadcast, as the propagator makes it: the ledger's verdict,
    /// the plan's next step, and a round of pushes when one is due. `Some(true)` to proceed,
    /// `Some(false)` when it failed, `None` to wait.
    fn broadcast(&mut self, l: usize, run: &mut Run, reversible: bool) -> Option<bool> {
        let leader = &mut self.leaders[l];
        let now = leader.clock.local(self.now_us);
        let version = run.version;
        if run.held.insert(version) {
            leader.ledger.watch(version, now);
        }
        if run.round.as_ref().is_none_or(|round| round.version != version) {
            run.round = Some(Round { version, started: now, round: 0, next_push_at: now, refused: BTreeSet::new() });
        }
        let round = run.round.as_mut().expect("set above");
        let due = now >= round.next_push_at;
        let in_flight = BTreeSet::new();
        let refusals = if reversible { Refusals::Counted(&round.refused) } else { Refusals::Ignored };
        let step = leader.ledger.broadcast_step(version, refusals, due.then_some(&in_flight), now);
        let plan = plan();
        match plan.next_step(&step.verdict, round.round, round.started, now) {
            NextStep::Proceed => return Some(true),
            NextStep::Fail => return Some(false),
            NextStep::OverBudget => {
                // Retried on the same publication, as the runner retries the stored step.
                self.tally.over_budget += 1;
                *round = Round { version, started: now, round: 0, next_push_at: now, refused: BTreeSet::new() };
                return None;
            }
            NextStep::RetryAt(_) => {}
        }
        if due {
            round.next_push_at = now + plan.pause_after(round.round);
            round.round += 1;
            let term = leader.term;
            for target in step.targets.into_iter().filter(|target| !target.changes.is_empty()) {
                let agent = target.key.node_id[1..].parse().expect("agent keys are a<n>");
                self.send(Message::Push { agent, leader: l, term, broadcast: version, changes: target.changes });
            }
        }
        None
    }

    /// Properties 1, 2 and 4 for `agents`.
    fn check_promise(&mut self, agents: std::ops::Range<usize>) {
        self.tally.promise_checks += 1;
        let owned: Vec<Vec<u32>> = self
            .agents
            .iter()
            .enumerate()
            .map(|(a, agent)| agent.owned(&key(a), agent.clock.local(self.now_us)))
            .collect();
        for a in agents.clone() {
            for (other, theirs) in owned.iter().enumerate().filter(|(other, _)| *other != a) {
                if let Some(bucket) = owned[a].iter().find(|bucket| theirs.contains(bucket)) {
                    panic!("bucket {bucket} is owned by agents {other} and {a} at {} µs", self.now_us);
                }
            }
        }
        for a in agents {
            let agent = &self.agents[a];
            let now = agent.clock.local(self.now_us);
            let Some(cache) = agent.serving(now) else {
                continue;
            };
            assert!(
                cache.version >= self.promised,
                "agent {a} serves version {} under a valid lease at {} µs, after a DDL returned OK at version {}",
                cache.version,
                self.now_us,
                self.promised
            );
            let (catalog, slots) = &self.store.history[cache.version as usize];
            assert!(
                cache.catalog == *catalog && cache.slots == *slots,
                "agent {a} serves a catalog at version {} that the store never had",
                cache.version
            );
            for target in &self.dropped {
                let kept = agent.host.data.iter().find(|datum| datum.covered_by(target));
                assert!(
                    kept.is_none(),
                    "agent {a} serves under a valid lease at {} µs with data {kept:?} of {target:?}, whose drop returned OK",
                    self.now_us
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    agents: usize,
    drop: f64,
    duplicate: f64,
    max_delay_ms: u64,
    /// (agent, from, length) in ms.
    pauses: Vec<(usize, u64, u64)>,
    /// (at, what, which database, which table or column) in ms.
    ddls: Vec<(u64, u8, u8, u8)>,
    promotions_ms: Vec<u64>,
    /// (agent, drops rather than changes, from, length) in ms.
    host_faults: Vec<(usize, bool, u64, u64)>,
}

fn spec(name: &str, data_type: DataType, category: Category) -> ColumnSpec {
    ColumnSpec { name: name.into(), data_type, category, comment: String::new() }
}

/// A DDL over a small name space, so that requests meet each other's objects.
fn request(what: u8, database: u8, object: u8) -> DdlRequest {
    let database = format!("d{}", database % 2);
    let table = format!("t{}", object % 2);
    let column = format!("c{}", object % 3);
    match what % 10 {
        0 => DdlRequest::CreateDatabase { name: database, ttl: None, properties: BTreeMap::new() },
        1 => DdlRequest::DropDatabase { name: database },
        2 => DdlRequest::CreateTable {
            database,
            name: table,
            columns: vec![
                spec("ts", DataType::Timestamp, Category::Time),
                spec("c0", DataType::Double, Category::Field),
                spec("c1", DataType::Text, Category::Tag),
            ],
            ttl: None,
            properties: BTreeMap::new(),
            comment: String::new(),
        },
        3 | 9 => DdlRequest::DropTable { database, name: table },
        4 => DdlRequest::AlterTable {
            database,
            name: table,
            action: AlterAction::AddColumn(spec(&column, DataType::Int64, Category::Field)),
        },
        5 => DdlRequest::AlterTable { database, name: table, action: AlterAction::DropColumn(column) },
        6 => DdlRequest::CreateView { database, name: format!("v{}", object % 2), definition: "select 1".into() },
        7 => DdlRequest::DropView { database, name: format!("v{}", object % 2) },
        _ => DdlRequest::AlterTable { database, name: table, action: AlterAction::SetComment(format!("n{object}")) },
    }
}

/// The catalog every schedule starts from: two databases, a table in each.
fn initial_changes() -> Vec<CatalogChange> {
    let mut catalog = Catalog::default();
    let mut changes = Vec::new();
    for (database, table) in [("d0", "t0"), ("d1", "t1")] {
        for request in [
            request(0, database[1..].parse().unwrap(), 0),
            request(2, database[1..].parse().unwrap(), table[1..].parse().unwrap()),
        ] {
            let plan = ddl::plan(&catalog, &request).expect("the initial catalog plans");
            let change = plan.commit.expect("a create commits");
            catalog.apply(&change).expect("admitted");
            changes.push(change);
        }
    }
    changes
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        2usize..5,
        0.0f64..0.4,
        0.0f64..0.3,
        0u64..3000,
        proptest::collection::vec((0usize..4, 0u64..20_000, 0u64..8_000), 0..4),
        proptest::collection::vec((500u64..20_000, any::<u8>(), any::<u8>(), any::<u8>()), 1..10),
        proptest::collection::vec(1_000u64..20_000, 0..3),
        proptest::collection::vec((0usize..4, any::<bool>(), 0u64..20_000, 0u64..8_000), 0..4),
    )
        .prop_map(|(seed, agents, drop, duplicate, max_delay_ms, pauses, ddls, promotions_ms, host_faults)| {
            Scenario { seed: seed | 1, agents, drop, duplicate, max_delay_ms, pauses, ddls, promotions_ms, host_faults }
        })
}

fn simulate(scenario: &Scenario) -> Tally {
    let mut rng = Rng(scenario.seed);
    let first = SimClock { rate: rng.rate(), base_us: 1_000_000 };
    // The store starts with the initial catalog committed, one version per change.
    let mut store = Store {
        term: 1,
        version: 0,
        changes: Vec::new(),
        catalog: Catalog::default(),
        slots: vec![Slot::default(); BUCKET_COUNT as usize],
        history: vec![(Catalog::default(), vec![Slot::default(); BUCKET_COUNT as usize])],
        procedures: BTreeMap::new(),
    };
    for change in initial_changes() {
        let version = store.version + 1;
        let stamped = store.catalog.stamp(&change, version);
        store.catalog.apply(&stamped).expect("admitted");
        store.version = version;
        store.changes.push((version, Change::Catalog(stamped)));
        store.history.push((store.catalog.clone(), store.slots.clone()));
    }
    let inherited = Inherited {
        version: store.version,
        changes: store.changes.iter().map(|change| (change.0, change.clone())).collect(),
        catalog: store.catalog.clone(),
        ..Inherited::default()
    };
    let mut first_ledger = ledger(first.local(0), Duration::ZERO, inherited);
    assert!(first_ledger.create_pool(POOL, BUCKET_COUNT, 0));
    let ms = |ms: u64| ms * 1000;
    let agents: Vec<Agent> = (0..scenario.agents)
        .map(|a| {
            first_ledger.register(&key(a).node_id, "1", &format!("a{a}:1"), None, first.local(0));
            first_ledger.set_pools(&key(a), vec![POOL.to_owned()]);
            let windows = |drops: bool| {
                scenario
                    .host_faults
                    .iter()
                    .filter(|(agent, on_drops, _, _)| *agent == a && *on_drops == drops)
                    .map(|(_, _, start, length)| (ms(*start), ms(start + length)))
                    .collect()
            };
            Agent {
                clock: SimClock { rate: rng.rate(), base_us: 3_000_000 * (a as u64 + 1) },
                lease: LeaseManager::new(),
                cache: None,
                before_fence: None,
                dropped: BTreeSet::new(),
                refused: None,
                tickets: HashMap::new(),
                pauses: scenario
                    .pauses
                    .iter()
                    .filter(|(agent, _, _)| *agent == a)
                    .map(|(_, start, length)| (ms(*start), ms(start + length)))
                    .collect(),
                following: 0,
                host: Host { data: BTreeSet::new(), refuses_changes: windows(false), refuses_drops: windows(true) },
            }
        })
        .collect();
    let mut sim = Sim {
        now_us: 0,
        queue: Queue::default(),
        rng: Rng(scenario.seed.rotate_left(17) | 1),
        link: Lossy { drop: scenario.drop, duplicate: scenario.duplicate, max_delay_us: ms(scenario.max_delay_ms) },
        store,
        leaders: vec![Leader {
            term: 1,
            clock: first,
            starts_us: 0,
            ends_us: u64::MAX,
            ledger: first_ledger,
            runs: Vec::new(),
        }],
        agents,
        promised: 0,
        dropped: Vec::new(),
        tally: Tally::default(),
    };
    for a in 0..scenario.agents {
        let offset = sim.rng.below(1_000_000);
        sim.queue.schedule(offset, Event::AgentTick(a));
    }
    for &(at_ms, what, database, object) in &scenario.ddls {
        sim.queue.schedule(ms(at_ms), Event::Ddl(request(what, database, object)));
    }
    for &at_ms in &scenario.promotions_ms {
        sim.queue.schedule(ms(at_ms), Event::Promote);
    }
    sim.queue.schedule(0, Event::Drive);
    sim.queue.schedule(0, Event::Assign);
    sim.queue.schedule(HEAL_US, Event::Heal);
    sim.run();
    sim.tally.fences = sim.agents.iter().map(|agent| agent.lease.fences()).sum();
    sim.tally
}

proptest! {
    #![proptest_config(ProptestConfig { cases: sim::cases(2048), ..ProptestConfig::default() })]

    #[test]
    fn the_metadata_path_keeps_the_ddl_promise_and_finishes_every_procedure(scenario in scenario()) {
        simulate(&scenario);
    }
}

fn quiet(seed: u64, agents: usize, ddls: Vec<(u64, u8, u8, u8)>) -> Scenario {
    Scenario {
        seed,
        agents,
        drop: 0.0,
        duplicate: 0.0,
        max_delay_ms: 5,
        pauses: vec![],
        ddls,
        promotions_ms: vec![],
        host_faults: vec![],
    }
}

/// On a quiet network every DDL that plans succeeds, drops included, and the promise is
/// checked throughout.
#[test]
fn a_quiet_run_succeeds_every_ddl_and_is_checked() {
    // Drop a column of t0, add one, drop table t1, create t1 again, drop database d0.
    let ddls = vec![(2000, 5, 0, 4), (4000, 4, 0, 2), (6000, 3, 1, 1), (9000, 2, 1, 1), (12_000, 1, 0, 0)];
    let tally = simulate(&quiet(42, 3, ddls));
    assert_eq!((tally.started, tally.succeeded, tally.rolled_back), (5, 5, 0), "{tally:?}");
    assert_eq!(tally.drops_succeeded, 3, "{tally:?}");
    assert!(tally.promise_checks > 200, "{tally:?}");
}

/// A host that refuses every change while a prepare is broadcast: the DDL rolls back.
#[test]
fn a_host_that_refuses_the_prepare_rolls_the_ddl_back() {
    let mut scenario = quiet(7, 3, vec![(3000, 3, 0, 0)]);
    scenario.host_faults = vec![(1, false, 2500, 3000)];
    let tally = simulate(&scenario);
    assert_eq!((tally.started, tally.succeeded, tally.rolled_back), (1, 0, 1), "{tally:?}");
}

/// A host that cannot delete data holds the drop up until it has fenced; the drop then
/// succeeds, and the host deletes the data before it serves again.
#[test]
fn a_host_that_cannot_delete_data_is_waited_out_and_deletes_before_serving() {
    let mut scenario = quiet(9, 3, vec![(3000, 3, 0, 0)]);
    scenario.host_faults = vec![(2, true, 2000, 10_000)];
    let tally = simulate(&scenario);
    assert_eq!((tally.succeeded, tally.drops_succeeded), (1, 1), "{tally:?}");
}

/// A failover in the middle of every step: the new leader resumes what the old one left.
#[test]
fn a_new_leader_resumes_procedures_left_midway() {
    let ddls = vec![(2000, 3, 0, 0), (2000, 5, 1, 1), (2000, 6, 0, 0)];
    let mut resumed = 0;
    for promote_at in [2010, 2500, 4000, 6000, 8000] {
        let mut scenario = quiet(11, 3, ddls.clone());
        scenario.pauses = vec![(0, 1500, 3000)];
        scenario.promotions_ms = vec![promote_at];
        let tally = simulate(&scenario);
        assert_eq!(tally.started, 3, "{tally:?}");
        assert_eq!(tally.succeeded + tally.rolled_back, 3, "promoted at {promote_at} ms: {tally:?}");
        resumed += tally.resumed;
    }
    assert!(resumed >= 5, "{resumed} procedures resumed");
}

/// The random schedules reach every outcome: DDL that succeeds, drops, rollbacks, procedures
/// abandoned by a deposed leader and resumed by the next, and agents that fence.
#[test]
fn random_schedules_reach_every_outcome() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut total = Tally::default();
    for _ in 0..200 {
        let scenario = scenario().new_tree(&mut runner).expect("a scenario").current();
        let tally = simulate(&scenario);
        total.started += tally.started;
        total.succeeded += tally.succeeded;
        total.rolled_back += tally.rolled_back;
        total.failed += tally.failed;
        total.drops_succeeded += tally.drops_succeeded;
        total.resumed += tally.resumed;
        total.abandoned += tally.abandoned;
        total.over_budget += tally.over_budget;
        total.revokes += tally.revokes;
        total.fences += tally.fences;
        total.promise_checks += tally.promise_checks;
    }
    eprintln!("{total:?}");
    assert!(total.succeeded > 100 && total.drops_succeeded > 20, "{total:?}");
    assert!(total.rolled_back > 5 && total.resumed > 5 && total.abandoned > 5, "{total:?}");
    assert!(total.fences > 50 && total.revokes > 50, "{total:?}");
}
