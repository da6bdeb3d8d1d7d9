//! A simulation of the data-node lease protocol that tries to break its promise.
//!
//! One or two leaders and a few agents run on their own clocks, each off real time by up to
//! `ρ`. The network drops, delays (far past the fence), duplicates and reorders heartbeats,
//! responses, pushes and acknowledgements. Agents freeze for seconds while their clocks run
//! on. A second leader may be promoted while the first still answers heartbeats (its hold
//! may outlast the promotion by up to one lease TTL, as when the store's clock jumps).
//!
//! Each leader is the coordinator's own [`Ledger`]: heartbeats, publications,
//! acknowledgements and verdicts go through the calls the coordinator makes.
//!
//! Heartbeats and their answers may also travel on a stream, as the `KeepAlive` transport
//! carries them: in order per agent and direction (nothing reorders), stalled for a while
//! (everything queued behind the stall is delayed), and cut once (everything in flight at the
//! cut is lost, an answer included).
//!
//! The property: whenever a leader's verdict says `Proceed` for version `V`, no agent, at
//! that moment or any later one, holds a valid lease over a cache older than `V`.

mod sim;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use leasehold_core::agent_lease::{HeartbeatTicket, LeaderRef, LeaseManager, ResponseDecision};
use leasehold_core::ledger::{Beat, Inherited, Ledger, Refusals};
use leasehold_core::verdict::Verdict;
use proptest::prelude::*;
use sim::{FENCE, HEARTBEAT, LEASE_TTL, Queue, RHO, Rng, STORE_EPOCH, SimClock, earlier_grants, key, ledger};

const HORIZON_US: u64 = 30_000_000;

#[derive(Debug, Clone)]
enum Message {
    Heartbeat { agent: usize, leader: usize, ticket: u64, applied: u64, needs_resync: bool },
    Response { agent: usize, ticket: u64, leader: usize, term: u64, version: u64, resync: bool },
    Push { agent: usize, leader: usize, term: u64, version: u64 },
    Ack { agent: usize, leader: usize, version: u64 },
}

#[derive(Debug, Clone)]
enum Event {
    AgentTick(usize),
    Deliver(Message),
    Publish,
    Promote,
    Check,
}

struct Leader {
    term: u64,
    clock: SimClock,
    starts_us: u64,
    /// It answers heartbeats until then (its hold may outlast a successor's promotion).
    ends_us: u64,
    /// The change payload is the version itself.
    ledger: Ledger<u64>,
    pending: BTreeSet<u64>,
}

struct Agent {
    clock: SimClock,
    lease: LeaseManager,
    applied: u64,
    tickets: HashMap<u64, HeartbeatTicket>,
    pauses: Vec<(u64, u64)>,
    following: usize,
}

impl Agent {
    fn paused_until(&self, real_us: u64) -> Option<u64> {
        sim::paused_until(&self.pauses, real_us)
    }
}

struct Faults {
    drop: f64,
    duplicate: f64,
    max_delay_us: u64,
    /// Heartbeats and answers on a stream instead of separate calls.
    stream: Option<StreamFaults>,
}

/// A stream's faults: a stall and a cut, in real microseconds.
#[derive(Debug, Clone, Copy)]
struct StreamFaults {
    stall_from_us: u64,
    stall_until_us: u64,
    cut_at_us: u64,
}

impl StreamFaults {
    /// When a message sent at `sent_us`, that would arrive at `arrives_us` alone, arrives on the
    /// stream after `previous_us` (the last arrival in its direction): never before it, never
    /// during the stall; `None` when the cut catches it in flight.
    fn arrival(&self, sent_us: u64, arrives_us: u64, previous_us: u64) -> Option<u64> {
        let mut at = arrives_us.max(previous_us);
        if at >= self.stall_from_us && sent_us < self.stall_until_us {
            at = at.max(self.stall_until_us);
        }
        (sent_us > self.cut_at_us || at < self.cut_at_us).then_some(at)
    }
}

struct Sim {
    now_us: u64,
    queue: Queue<Event>,
    rng: Rng,
    faults: Faults,
    /// The last arrival on each agent's stream, by (agent, answers?).
    stream_arrivals: HashMap<(usize, bool), u64>,
    leaders: Vec<Leader>,
    agents: Vec<Agent>,
    next_version: u64,
    /// The highest version any leader proceeded past, and when.
    proceeded: Option<(u64, u64)>,
    checks: u64,
}

impl Sim {
    fn schedule(&mut self, at_us: u64, event: Event) {
        self.queue.schedule(at_us, event);
    }

    fn send(&mut self, message: Message) {
        if self.rng.unit() < self.faults.drop {
            return;
        }
        let on_stream = match &message {
            Message::Heartbeat { agent, .. } => Some((*agent, false)),
            Message::Response { agent, .. } => Some((*agent, true)),
            Message::Push { .. } | Message::Ack { .. } => None,
        };
        if let (Some(stream), Some(direction)) = (self.faults.stream, on_stream) {
            // A stream neither duplicates nor reorders.
            let arrives = self.now_us + self.rng.below(self.faults.max_delay_us + 1);
            let previous = self.stream_arrivals.get(&direction).copied().unwrap_or(0);
            if let Some(at) = stream.arrival(self.now_us, arrives, previous) {
                self.stream_arrivals.insert(direction, at);
                self.schedule(at, Event::Deliver(message));
            }
            return;
        }
        let copies = if self.rng.unit() < self.faults.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.below(self.faults.max_delay_us + 1);
            self.schedule(self.now_us + delay, Event::Deliver(message.clone()));
        }
    }

    /// The leader answering heartbeats now that an agent would find: the newest one that runs.
    fn active_leaders(&self) -> Vec<usize> {
        (0..self.leaders.len())
            .filter(|&l| self.now_us >= self.leaders[l].starts_us && self.now_us < self.leaders[l].ends_us)
            .collect()
    }

    fn run(&mut self) {
        while let Some((at_us, event)) = self.queue.pop(HORIZON_US) {
            self.now_us = at_us;
            self.handle(event);
            self.check_promise();
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::AgentTick(a) => {
                if let Some(end) = self.agents[a].paused_until(self.now_us) {
                    self.schedule(end, Event::AgentTick(a));
                    return;
                }
                let agent = &mut self.agents[a];
                let now = agent.clock.local(self.now_us);
                if agent.lease.fence_if_expired(now) {
                    agent.applied = 0; // fenced: the cache is gone
                }
                let ticket = agent.lease.begin_heartbeat(now);
                let id = self.queue.seq();
                agent.tickets.insert(id, ticket);
                let applied = agent.applied;
                let next = self.now_us + agent.clock.real_span(HEARTBEAT);
                // Rotate between the leaders that answer, as an agent rotating endpoints would.
                let active = self.active_leaders();
                if !active.is_empty() {
                    let choice = active[self.rng.below(active.len() as u64) as usize];
                    self.agents[a].following = choice;
                }
                let leader = self.agents[a].following;
                self.send(Message::Heartbeat {
                    agent: a,
                    leader,
                    ticket: id,
                    applied,
                    needs_resync: ticket.needs_resync,
                });
                self.schedule(next, Event::AgentTick(a));
            }
            Event::Deliver(message) => self.deliver(message),
            Event::Publish => {
                let Some(&l) = self.active_leaders().iter().rfind(|&&l| self.now_us < self.promoted_after(l)) else {
                    return;
                };
                self.next_version += 1;
                let version = self.next_version;
                let leader = &mut self.leaders[l];
                let now = leader.clock.local(self.now_us);
                leader.ledger.publish(version, version, None, now).expect("no catalog change");
                leader.pending.insert(version);
                let term = leader.term;
                for a in 0..self.agents.len() {
                    self.send(Message::Push { agent: a, leader: l, term, version });
                }
            }
            Event::Promote => {
                let old = self.leaders.len() - 1;
                let clock = SimClock { rate: self.rng.rate(), base_us: 7_000_000 };
                let promoted_at = clock.local(self.now_us);
                let version = self.next_version;
                let inherited = Inherited {
                    version,
                    registered: (0..self.agents.len()).map(|a| (key(a), format!("a{a}:1"))).collect(),
                    ..Inherited::default()
                };
                let mut ledger = ledger(promoted_at, earlier_grants(), inherited);
                // The old leader may keep answering heartbeats until its own hold ends: at most
                // one TTL of its clock after its last renewal, which preceded this promotion.
                let overlap = (self.rng.unit() * LEASE_TTL.as_micros() as f64 / (1.0 + RHO)) as u64;
                self.leaders[old].ends_us = self.now_us + overlap;
                // The new leader resumes the newest broadcast the old one may have left
                // undecided (a DDL step), a version it did not publish itself.
                let mut pending = BTreeSet::new();
                if version > 0 {
                    ledger.watch(version, promoted_at);
                    pending.insert(version);
                }
                self.leaders.push(Leader {
                    term: self.leaders[old].term + 1,
                    clock,
                    starts_us: self.now_us,
                    ends_us: u64::MAX,
                    ledger,
                    pending,
                });
            }
            Event::Check => {
                for l in 0..self.leaders.len() {
                    if self.now_us < self.leaders[l].starts_us || self.now_us >= self.leaders[l].ends_us {
                        continue;
                    }
                    let now = self.leaders[l].clock.local(self.now_us);
                    for version in self.leaders[l].pending.clone() {
                        let step = self.leaders[l].ledger.broadcast_step(version, Refusals::Ignored, None, now);
                        if step.verdict == Verdict::Proceed {
                            self.leaders[l].pending.remove(&version);
                            self.leaders[l].ledger.forget(version);
                            if self.proceeded.is_none_or(|(v, _)| version > v) {
                                self.proceeded = Some((version, self.now_us));
                            }
                        }
                    }
                }
                self.schedule(self.now_us + 10_000, Event::Check);
            }
        }
    }

    /// A leader stops publishing once a successor was promoted (its guarded writes fail).
    fn promoted_after(&self, l: usize) -> u64 {
        self.leaders.get(l + 1).map_or(u64::MAX, |next| next.starts_us)
    }

    fn deliver(&mut self, message: Message) {
        match message {
            Message::Heartbeat { agent, leader: l, ticket, applied, needs_resync } => {
                let leader = &mut self.leaders[l];
                if self.now_us < leader.starts_us {
                    return;
                }
                let now = leader.clock.local(self.now_us);
                // The leader grants nothing from the end of its hold on (never, for the newest).
                let hold_until = (leader.ends_us != u64::MAX).then(|| leader.clock.local(leader.ends_us));
                let node = key(agent);
                let beat = Beat { key: &node, applied, store_epoch: STORE_EPOCH, needs_resync, refused: None };
                // Recording the contact and choosing the response's version are one call.
                let Ok(grant) = leader.ledger.heartbeat(beat, hold_until, now) else {
                    return;
                };
                let (term, version) = (leader.term, grant.version);
                self.send(Message::Response { agent, ticket, leader: l, term, version, resync: needs_resync });
            }
            Message::Response { agent, ticket, leader, term, version, resync } => {
                if let Some(end) = self.agents[agent].paused_until(self.now_us) {
                    self.schedule(
                        end,
                        Event::Deliver(Message::Response { agent, ticket, leader, term, version, resync }),
                    );
                    return;
                }
                let agent_state = &mut self.agents[agent];
                let now = agent_state.clock.local(self.now_us);
                if agent_state.lease.fence_if_expired(now) {
                    agent_state.applied = 0;
                }
                let Some(ticket) = agent_state.tickets.get(&ticket).copied() else {
                    return;
                };
                match agent_state.lease.consider_response(&ticket, term, resync, now) {
                    ResponseDecision::Apply { .. } => {
                        // Apply first, then renew.
                        agent_state.applied = agent_state.applied.max(version);
                        let leader_ref = LeaderRef { node_id: format!("l{leader}"), address: String::new(), term };
                        agent_state.lease.renew(&ticket, FENCE, leader_ref, now);
                    }
                    ResponseDecision::Ignore(_) => {}
                }
            }
            Message::Push { agent, leader, term, version } => {
                if let Some(end) = self.agents[agent].paused_until(self.now_us) {
                    self.schedule(end, Event::Deliver(Message::Push { agent, leader, term, version }));
                    return;
                }
                let agent_state = &mut self.agents[agent];
                let now = agent_state.clock.local(self.now_us);
                if agent_state.lease.fence_if_expired(now) {
                    agent_state.applied = 0;
                }
                if agent_state.lease.check_push(&format!("l{leader}"), term, now).is_ok() {
                    agent_state.applied = agent_state.applied.max(version);
                    let applied = agent_state.applied;
                    self.send(Message::Ack { agent, leader, version: applied });
                }
            }
            Message::Ack { agent, leader, version } => {
                self.leaders[leader].ledger.record_ack(&key(agent), version);
            }
        }
    }

    /// The promise, checked after every event.
    fn check_promise(&mut self) {
        let Some((version, since)) = self.proceeded else {
            return;
        };
        self.checks += 1;
        for (a, agent) in self.agents.iter().enumerate() {
            let now = agent.clock.local(self.now_us);
            if agent.lease.valid_until(now).is_some() {
                assert!(
                    agent.applied >= version,
                    "agent {a} serves version {} under a valid lease at {} µs, after version {version} proceeded at {since} µs",
                    agent.applied,
                    self.now_us
                );
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    agents: usize,
    drop: f64,
    duplicate: f64,
    max_delay_ms: u64,
    pauses: Vec<(usize, u64, u64)>,
    publications_ms: Vec<u64>,
    promote_at_ms: Option<u64>,
    /// Heartbeats on a stream: (stall from, stall length, cut at), in ms.
    stream: Option<(u64, u64, u64)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        2usize..5,
        0.0f64..0.5,
        0.0f64..0.3,
        0u64..4000,
        proptest::collection::vec((0usize..4, 0u64..25_000, 0u64..9_000), 0..4),
        proptest::collection::vec(500u64..25_000, 1..6),
        proptest::option::of(2_000u64..20_000),
        proptest::option::of((0u64..25_000, 0u64..9_000, 0u64..30_000)),
    )
        .prop_map(
            |(seed, agents, drop, duplicate, max_delay_ms, pauses, publications_ms, promote_at_ms, stream)| Scenario {
                seed: seed | 1,
                agents,
                drop,
                duplicate,
                max_delay_ms,
                pauses,
                publications_ms,
                promote_at_ms,
                stream,
            },
        )
}

fn simulate(scenario: &Scenario) -> (Option<(u64, u64)>, u64) {
    let mut rng = Rng(scenario.seed);
    let first = SimClock { rate: rng.rate(), base_us: 1_000_000 };
    let mut first_ledger = ledger(first.local(0), Duration::ZERO, Inherited::default());
    let agents: Vec<Agent> = (0..scenario.agents)
        .map(|a| {
            first_ledger.register(&key(a).node_id, "1", &format!("a{a}:1"), None, first.local(0));
            let pauses = scenario
                .pauses
                .iter()
                .filter(|(agent, _, _)| *agent == a)
                .map(|(_, start, length)| (start * 1000, (start + length) * 1000))
                .collect();
            Agent {
                clock: SimClock { rate: rng.rate(), base_us: 3_000_000 * (a as u64 + 1) },
                lease: LeaseManager::new(),
                applied: 0,
                tickets: HashMap::new(),
                pauses,
                following: 0,
            }
        })
        .collect();
    let mut sim = Sim {
        now_us: 0,
        queue: Queue::default(),
        rng: Rng(scenario.seed.rotate_left(17) | 1),
        faults: Faults {
            drop: scenario.drop,
            duplicate: scenario.duplicate,
            max_delay_us: scenario.max_delay_ms * 1000,
            stream: scenario.stream.map(|(stall_from_ms, stall_ms, cut_at_ms)| StreamFaults {
                stall_from_us: stall_from_ms * 1000,
                stall_until_us: (stall_from_ms + stall_ms) * 1000,
                cut_at_us: cut_at_ms * 1000,
            }),
        },
        stream_arrivals: HashMap::new(),
        leaders: vec![Leader {
            term: 1,
            clock: first,
            starts_us: 0,
            ends_us: u64::MAX,
            ledger: first_ledger,
            pending: BTreeSet::new(),
        }],
        agents,
        next_version: 0,
        proceeded: None,
        checks: 0,
    };
    for a in 0..scenario.agents {
        let offset = sim.rng.below(1_000_000);
        sim.schedule(offset, Event::AgentTick(a));
    }
    for at_ms in &scenario.publications_ms {
        sim.schedule(at_ms * 1000, Event::Publish);
    }
    if let Some(at_ms) = scenario.promote_at_ms {
        sim.schedule(at_ms * 1000, Event::Promote);
    }
    sim.schedule(0, Event::Check);
    sim.run();
    (sim.proceeded, sim.checks)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: sim::cases(512), ..ProptestConfig::default() })]

    #[test]
    fn no_agent_serves_an_older_version_after_proceed(scenario in scenario()) {
        simulate(&scenario);
    }
}

/// The simulation is not vacuous: on a healthy network the leader proceeds, and the promise
/// is checked many times afterwards.
#[test]
fn a_healthy_run_proceeds_and_is_checked() {
    let scenario = Scenario {
        seed: 42,
        agents: 3,
        drop: 0.0,
        duplicate: 0.0,
        max_delay_ms: 5,
        pauses: vec![],
        publications_ms: vec![3000, 9000],
        promote_at_ms: None,
        stream: None,
    };
    let (proceeded, checks) = simulate(&scenario);
    assert_eq!(proceeded.map(|(version, _)| version), Some(2));
    assert!(checks > 100, "{checks}");
}

/// A frozen agent holds up the verdict until it has provably fenced, not longer.
#[test]
fn a_frozen_agent_delays_proceed_by_about_t_proceed() {
    let scenario = Scenario {
        seed: 7,
        agents: 2,
        drop: 0.0,
        duplicate: 0.0,
        max_delay_ms: 2,
        pauses: vec![(0, 2000, 20_000)],
        publications_ms: vec![5000],
        promote_at_ms: None,
        stream: None,
    };
    let (proceeded, _) = simulate(&scenario);
    let (version, at_us) = proceeded.expect("proceeds once the frozen agent has fenced");
    assert_eq!(version, 1);
    // Published at 5 s; the frozen agent's last contact was before 2 s and T_proceed is about
    // 3.07 s on the leader's clock, so the verdict comes within a few checks of publication.
    assert!((5_000_000..5_200_000).contains(&at_us), "proceeded at {at_us} µs");
}

/// Heartbeats on a stream that stalls past the fence: the agents fence (their answers come too
/// late to renew from their send times), the verdict waits them out, and nothing is served
/// stale; once the stall ends the same stream carries them back.
#[test]
fn a_stream_that_stalls_past_the_fence_delays_everything_and_breaks_nothing() {
    let scenario = Scenario {
        seed: 11,
        agents: 3,
        drop: 0.0,
        duplicate: 0.0,
        max_delay_ms: 5,
        pauses: vec![],
        publications_ms: vec![4000, 12_000],
        promote_at_ms: None,
        stream: Some((3500, 6000, 60_000)),
    };
    let (proceeded, checks) = simulate(&scenario);
    let (version, at_us) = proceeded.expect("proceeds");
    assert_eq!(version, 2);
    assert!(at_us >= 12_000_000, "{at_us}");
    assert!(checks > 100, "{checks}");
}

/// A stream cut with answers in flight: what was in flight is lost (renews nothing), and the
/// verdict still settles.
#[test]
fn a_stream_cut_mid_answer_loses_the_answer_and_keeps_the_promise() {
    let scenario = Scenario {
        seed: 13,
        agents: 2,
        drop: 0.0,
        duplicate: 0.0,
        max_delay_ms: 400,
        pauses: vec![],
        publications_ms: vec![3000],
        promote_at_ms: None,
        stream: Some((0, 0, 3100)),
    };
    let (proceeded, _) = simulate(&scenario);
    assert_eq!(proceeded.map(|(version, _)| version), Some(1));
}

#[test]
fn a_stream_neither_reorders_nor_delivers_during_a_stall_nor_across_a_cut() {
    let stream = StreamFaults { stall_from_us: 1000, stall_until_us: 5000, cut_at_us: 8000 };
    // In order: never before the previous arrival.
    assert_eq!(stream.arrival(100, 200, 300), Some(300));
    // Sent before the stall ends and arriving during it: held until it ends.
    assert_eq!(stream.arrival(900, 1500, 0), Some(5000));
    // In flight across the cut: lost; sent after it: delivered.
    assert_eq!(stream.arrival(7900, 8100, 0), None);
    assert_eq!(stream.arrival(8100, 8200, 0), Some(8200));
}
