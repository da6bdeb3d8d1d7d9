//! The nemesis's schedule: which fault starts when, on what, and for how long, drawn from a
//! seed. Pure: the same seed and shape always give the same schedule, so a failing seed
//! replays the faults it found the bug with.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Which way a link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Nothing passes.
    Both,
    /// Requests are dropped; answers to what got through still pass.
    Requests,
    /// Requests arrive; their answers are dropped.
    Responses,
}

/// One fault, with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL a coordinator; start it again on its address when the fault ends.
    KillCoordinator {
        /// Index of the coordinator.
        coordinator: usize,
    },
    /// SIGSTOP a coordinator (past the lease TTL), SIGCONT when the fault ends.
    PauseCoordinator {
        /// Index of the coordinator.
        coordinator: usize,
    },
    /// Cut one coordinator's link to the store (agents and clients still reach it).
    CutFromStore {
        /// Index of the coordinator.
        coordinator: usize,
        /// Which way.
        direction: Direction,
    },
    /// Cut one coordinator from every agent (it still reaches the store).
    CutFromAgents {
        /// Index of the coordinator.
        coordinator: usize,
        /// Which way.
        direction: Direction,
    },
    /// The store stops answering anyone (every coordinator's store link is dropped).
    StoreOutage,
    /// The store's connections are all reset, as a restart of the server would.
    StoreRestart,
    /// SIGKILL an agent; start it again (same node id) when the fault ends.
    KillAgent {
        /// Index of the agent.
        agent: usize,
    },
    /// SIGSTOP an agent (sometimes past the fence), SIGCONT when the fault ends.
    PauseAgent {
        /// Index of the agent.
        agent: usize,
    },
    /// Cut an agent from every coordinator, heartbeats and pushes.
    PartitionAgent {
        /// Index of the agent.
        agent: usize,
        /// Which way.
        direction: Direction,
    },
    /// Delay every chunk of an agent's links by about the heartbeat timeout.
    DelayAgent {
        /// Index of the agent.
        agent: usize,
        /// The delay of each chunk.
        delay_ms: u64,
    },
    /// Reset every connection of an agent, and refuse new ones while the fault lasts.
    ResetAgent {
        /// Index of the agent.
        agent: usize,
    },
}

/// What a fault holds while it lasts: two faults on one target never overlap, so that
/// ending one cannot undo the other (and a restart never meets a store it cannot reach).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Coordinator(usize),
    CoordinatorStore(usize),
    Agent(usize),
    AgentLinks(usize),
}

impl Fault {
    fn targets(&self, shape: &Shape) -> BTreeSet<Target> {
        let every_store_link = (0..shape.coordinators).map(Target::CoordinatorStore);
        let every_agent_link = (0..shape.agents).map(Target::AgentLinks);
        match *self {
            Fault::KillCoordinator { coordinator } => {
                [Target::Coordinator(coordinator), Target::CoordinatorStore(coordinator)].into()
            }
            Fault::PauseCoordinator { coordinator } => [Target::Coordinator(coordinator)].into(),
            Fault::CutFromStore { coordinator, .. } => [Target::CoordinatorStore(coordinator)].into(),
            Fault::CutFromAgents { .. } => every_agent_link.collect(),
            Fault::StoreOutage | Fault::StoreRestart => every_store_link.collect(),
            Fault::KillAgent { agent } => [Target::Agent(agent), Target::AgentLinks(agent)].into(),
            Fault::PauseAgent { agent } => [Target::Agent(agent)].into(),
            Fault::PartitionAgent { agent, .. } | Fault::DelayAgent { agent, .. } | Fault::ResetAgent { agent } => {
                [Target::AgentLinks(agent)].into()
            }
        }
    }

    /// The fault's name, for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::KillCoordinator { .. } => "kill_coordinator",
            Fault::PauseCoordinator { .. } => "pause_coordinator",
            Fault::CutFromStore { .. } => "cut_from_store",
            Fault::CutFromAgents { .. } => "cut_from_agents",
            Fault::StoreOutage => "store_outage",
            Fault::StoreRestart => "store_restart",
            Fault::KillAgent { .. } => "kill_agent",
            Fault::PauseAgent { .. } => "pause_agent",
            Fault::PartitionAgent { .. } => "partition_agent",
            Fault::DelayAgent { .. } => "delay_agent",
            Fault::ResetAgent { .. } => "reset_agent",
        }
    }
}

/// The cluster a schedule is drawn for.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// How many coordinators.
    pub coordinators: usize,
    /// How many agents.
    pub agents: usize,
    /// Whether the store is a server behind proxies (PostgreSQL, MySQL/MariaDB); a SQLite
    /// file has no link to cut, so its store faults come from failpoints instead.
    pub store_links: bool,
    /// How long faults may be injected; every fault has ended by then.
    pub length: Duration,
    /// At most this many faults at once.
    pub max_concurrent: usize,
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// When it starts, from the start of the run.
    #[serde(rename = "at_ms", serialize_with = "as_millis")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(rename = "lasts_ms", serialize_with = "as_millis")]
    pub lasts: Duration,
    /// What it is.
    pub fault: Fault,
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

/// The lease settings the durations are drawn around.
#[derive(Debug, Clone, Copy)]
pub struct Around {
    /// The coordinators' lease TTL: pauses last past it.
    pub lease_ttl: Duration,
    /// The agents' fence: some pauses and partitions last past it.
    pub fence: Duration,
    /// The agents' heartbeat timeout: delays sit near it.
    pub heartbeat_timeout: Duration,
}

fn millis_between(rng: &mut StdRng, from: Duration, to: Duration) -> Duration {
    Duration::from_millis(rng.random_range(from.as_millis() as u64..=to.as_millis() as u64))
}

fn direction(rng: &mut StdRng) -> Direction {
    [Direction::Both, Direction::Requests, Direction::Responses][rng.random_range(0..3)]
}

/// A fault drawn at random, and how long it lasts.
fn draw(rng: &mut StdRng, shape: &Shape, around: &Around) -> (Fault, Duration) {
    let ms = Duration::from_millis;
    let coordinator = rng.random_range(0..shape.coordinators);
    let agent = rng.random_range(0..shape.agents);
    // Weights: process faults and agent link faults most, store faults where there is a link.
    let kinds = if shape.store_links { 12 } else { 9 };
    match rng.random_range(0..kinds) {
        0 => (Fault::KillCoordinator { coordinator }, millis_between(rng, ms(300), ms(4000))),
        1 => (Fault::PauseCoordinator { coordinator }, millis_between(rng, around.lease_ttl + ms(200), ms(4000))),
        2 => (Fault::CutFromAgents { coordinator, direction: direction(rng) }, millis_between(rng, ms(500), ms(5000))),
        3 => (Fault::KillAgent { agent }, millis_between(rng, ms(200), ms(3000))),
        4 => (Fault::PauseAgent { agent }, millis_between(rng, ms(300), around.fence * 2)),
        5 | 6 => {
            (Fault::PartitionAgent { agent, direction: direction(rng) }, millis_between(rng, ms(300), around.fence * 2))
        }
        7 => {
            let delay = millis_between(rng, around.heartbeat_timeout / 2, around.heartbeat_timeout * 3 / 2);
            (Fault::DelayAgent { agent, delay_ms: delay.as_millis() as u64 }, millis_between(rng, ms(500), ms(4000)))
        }
        8 => (Fault::ResetAgent { agent }, millis_between(rng, ms(50), ms(600))),
        9 | 10 => {
            (Fault::CutFromStore { coordinator, direction: direction(rng) }, millis_between(rng, ms(300), ms(4000)))
        }
        _ if rng.random_bool(0.5) => (Fault::StoreOutage, millis_between(rng, ms(300), ms(3000))),
        _ => (Fault::StoreRestart, millis_between(rng, ms(50), ms(500))),
    }
}

/// The schedule of `seed` for `shape`: faults one after another at random gaps, up to
/// `max_concurrent` at once, none on a target another holds, every one over by the end.
pub fn schedule(seed: u64, shape: &Shape, around: &Around) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps: Vec<Step> = Vec::new();
    let mut at = Duration::from_millis(rng.random_range(200..1000));
    while at < shape.length {
        let active: Vec<&Step> = steps.iter().filter(|step| step.at + step.lasts > at).collect();
        if active.len() < shape.max_concurrent {
            let held: BTreeSet<Target> = active.iter().flat_map(|step| step.fault.targets(shape)).collect();
            // A few draws for a fault whose targets are free; otherwise wait for the next gap.
            for _ in 0..8 {
                let (fault, lasts) = draw(&mut rng, shape, around);
                if fault.targets(shape).is_disjoint(&held) {
                    let lasts = lasts.min(shape.length.saturating_sub(at));
                    if !lasts.is_zero() {
                        steps.push(Step { at, lasts, fault });
                    }
                    break;
                }
            }
        }
        at += Duration::from_millis(rng.random_range(100..1500));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const AROUND: Around = Around {
        lease_ttl: Duration::from_secs(1),
        fence: Duration::from_secs(3),
        heartbeat_timeout: Duration::from_millis(300),
    };

    fn shape(store_links: bool) -> Shape {
        Shape { coordinators: 3, agents: 4, store_links, length: Duration::from_secs(60), max_concurrent: 3 }
    }

    #[test]
    fn a_seed_replays_the_same_schedule_and_another_seed_does_not() {
        let shape = shape(true);
        assert_eq!(schedule(7, &shape, &AROUND), schedule(7, &shape, &AROUND));
        assert_ne!(schedule(7, &shape, &AROUND), schedule(8, &shape, &AROUND));
    }

    #[test]
    fn faults_never_share_a_target_exceed_the_cap_or_outlast_the_run() {
        for seed in 0..200 {
            let shape = shape(seed % 2 == 0);
            let steps = schedule(seed, &shape, &AROUND);
            for step in &steps {
                assert!(step.at + step.lasts <= shape.length, "seed {seed}: {step:?} outlasts the run");
                let overlapping: Vec<&Step> =
                    steps.iter().filter(|other| other.at <= step.at && step.at < other.at + other.lasts).collect();
                assert!(overlapping.len() <= shape.max_concurrent, "seed {seed}: {overlapping:?}");
                for other in overlapping.iter().filter(|other| **other != step) {
                    assert!(
                        step.fault.targets(&shape).is_disjoint(&other.fault.targets(&shape)),
                        "seed {seed}: {step:?} and {other:?} share a target"
                    );
                }
            }
        }
    }

    #[test]
    fn every_kind_of_fault_is_drawn_and_store_links_are_cut_only_where_there_are_some() {
        let mut with_links = BTreeSet::new();
        let mut without = BTreeSet::new();
        for seed in 0..50 {
            with_links.extend(schedule(seed, &shape(true), &AROUND).iter().map(|step| step.fault.name()));
            without.extend(schedule(seed, &shape(false), &AROUND).iter().map(|step| step.fault.name()));
        }
        assert_eq!(with_links.len(), 11, "{with_links:?}");
        for store_fault in ["cut_from_store", "store_outage", "store_restart"] {
            assert!(!without.contains(store_fault), "{store_fault} drawn without a store link");
        }
        assert_eq!(without.len(), 8, "{without:?}");
    }

    #[test]
    fn several_faults_overlap_in_a_long_enough_run() {
        let steps = schedule(3, &shape(true), &AROUND);
        let overlaps = steps
            .iter()
            .filter(|step| {
                steps.iter().any(|other| other != *step && other.at <= step.at && step.at < other.at + other.lasts)
            })
            .count();
        assert!(overlaps > 0, "{steps:#?}");
    }
}
