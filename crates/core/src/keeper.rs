//! The resource keeper's decisions (DESIGN §7): which dead worker processes to start again,
//! which to give up on, and how many to add so that every group keeps its capacity.
//!
//! A **resource** is a process a container started; the data node it runs registers with the
//! resource's id. A resource is an **orphan** while no live data node carries its id ("live" is
//! the one definition of [`crate::ledger::Ledger::is_live`]: fresh contact *and* acknowledging
//! recent versions, so a node whose answers are lost is not taken for a healthy one).
//!
//! The rules, each tested below with exact outputs:
//! - an orphan is restarted only `grace` after it became an orphan, and again only `grace` after
//!   the previous attempt; attempts and the time of the last one are kept in the store
//!   (written term-guarded before the process is started), so a failover neither resets the
//!   count nor starts one death twice;
//! - after `max_retries` attempts, and once the last one had its grace, the resource is cleaned
//!   up; a live member appearing before that cancels it;
//! - attempts reset only after the resource has stayed live for a whole grace period, so a
//!   crash loop cannot reset its own count;
//! - a resource whose start or stop is in flight is left alone;
//! - a resource whose container is unknown or opted out of restarts (`external`) is warned
//!   about once, never consumes attempts, and never blocks the others;
//! - a group is filled up to `min_members` counting every active resource, orphans being
//!   restarted included, so nothing is provisioned twice.
//!
//! Times here are the store's clock in milliseconds: they rate-limit restarts and are no
//! safety bound. What keeps two processes from ever serving one node id is the attempt id that
//! the data node presents when it registers (a superseded attempt is refused).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The keeper's settings (`resources.auto-restart.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether the keeper acts at all.
    pub enabled: bool,
    /// Attempts per orphan before it is cleaned up.
    pub max_retries: u32,
    /// Before the first attempt, between attempts, and live time that resets the count.
    pub grace: Duration,
}

impl Policy {
    fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What a container can do for the keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// It starts and stops processes (`local`).
    Restarts,
    /// Something else restarts its processes (`external`: Kubernetes, systemd).
    OptedOut,
    /// No container of that name is configured.
    Unknown,
}

/// A resource's life cycle as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceState {
    /// Kept running.
    Active,
    /// Being removed: its registrations are refused; stop, deregister, delete follow.
    Cleaning,
}

impl ResourceState {
    /// The name stored in the `resources` table.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Active => "active",
            ResourceState::Cleaning => "cleaning",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(name: &str) -> Option<ResourceState> {
        match name {
            "active" => Some(ResourceState::Active),
            "cleaning" => Some(ResourceState::Cleaning),
            _ => None,
        }
    }
}

/// A group as the keeper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// The container that starts its new members.
    pub container: String,
    /// The members it keeps at least.
    pub min_members: u32,
}

/// A resource as the keeper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    /// Its id: the node id its data node registers with.
    pub id: String,
    /// Its group.
    pub group: String,
    /// The container that runs it.
    pub container: String,
    /// Active or being cleaned up.
    pub state: ResourceState,
    /// Restart attempts since it last stayed live for a whole grace period.
    pub attempts: u32,
    /// When it was last started (its first start included), store clock in ms.
    pub last_attempt_ms: Option<i64>,
}

/// Everything a pass decides on.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Every group.
    pub groups: &'a [GroupView],
    /// Every resource.
    pub resources: &'a [ResourceView],
    /// The resource ids carried by a live registered data node.
    pub live: &'a BTreeSet<String>,
    /// Resources whose start, stop or cleanup has not finished.
    pub in_flight: &'a BTreeSet<String>,
    /// What each configured container can do; a name not in it is [`Support::Unknown`].
    pub containers: &'a BTreeMap<String, Support>,
    /// The store's clock, ms.
    pub now_ms: i64,
}

impl Observation<'_> {
    fn support(&self, container: &str) -> Support {
        self.containers.get(container).copied().unwrap_or(Support::Unknown)
    }
}

/// Why a resource or group is warned about instead of acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WarnReason {
    /// Its container is not configured (removed, or a typo).
    UnknownContainer,
    /// Its container opted out of restarts (`external`).
    OptedOut,
}

impl WarnReason {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            WarnReason::UnknownContainer => "unknown_container",
            WarnReason::OptedOut => "opted_out",
        }
    }
}

/// What a warning is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// An orphaned resource.
    Resource(String),
    /// A group below its minimum.
    Group(String),
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the orphan again; this is attempt number `attempt`.
    Restart {
        /// The resource.
        resource: String,
        /// Its attempts after this one.
        attempt: u32,
    },
    /// Start `count` new resources in `group`.
    Provision {
        /// The group.
        group: String,
        /// How many.
        count: u32,
    },
    /// Mark the resource cleaning (if it is not yet), stop it, deregister its node, delete it.
    Cleanup {
        /// The resource.
        resource: String,
    },
    /// It stayed live for a whole grace period: its attempts start from 0 again.
    ResetAttempts {
        /// The resource.
        resource: String,
    },
    /// Say once why nothing is done.
    Warn {
        /// What the warning is about.
        subject: Subject,
        /// Why.
        reason: WarnReason,
    },
}

/// The keeper's memory within one term: when each orphan and each live resource was first
/// seen so, and what was warned about. A new leader starts empty, which only delays: an orphan
/// waits a grace period again, an attempt count resets a grace period later.
#[derive(Debug, Clone, Default)]
pub struct Keeper {
    orphan_since: BTreeMap<String, i64>,
    live_since: BTreeMap<String, i64>,
    warned: BTreeSet<(Subject, WarnReason)>,
}

impl Keeper {
    /// A keeper that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The resources that are orphans right now, as of the last pass.
    pub fn orphans(&self) -> impl Iterator<Item = &str> {
        self.orphan_since.keys().map(String::as_str)
    }

    /// When `resource` was first seen as an orphan in this term (store clock, ms).
    pub fn orphan_since(&self, resource: &str) -> Option<i64> {
        self.orphan_since.get(resource).copied()
    }

    /// One pass: what to do now. Deterministic: resources and groups in name order.
    pub fn keep(&mut self, seen: &Observation<'_>, policy: &Policy) -> Vec<Action> {
        let now = seen.now_ms;
        let grace = policy.grace_ms();
        let mut actions = Vec::new();
        let mut leaving = BTreeSet::new();
        let known: BTreeSet<&str> = seen.resources.iter().map(|resource| resource.id.as_str()).collect();
        self.orphan_since.retain(|id, _| known.contains(id.as_str()));
        self.live_since.retain(|id, _| known.contains(id.as_str()));

        let mut resources: Vec<&ResourceView> = seen.resources.iter().collect();
        resources.sort_by(|a, b| a.id.cmp(&b.id));
        for resource in resources {
            let id = &resource.id;
            if resource.state == ResourceState::Cleaning {
                self.orphan_since.remove(id);
                leaving.insert(id.clone());
                // Carried on even when restarts are disabled: a deletion asked for finishes.
                if !seen.in_flight.contains(id) {
                    actions.push(Action::Cleanup { resource: id.clone() });
                }
                continue;
            }
            if seen.live.contains(id) {
                self.orphan_since.remove(id);
                let since = *self.live_since.entry(id.clone()).or_insert(now);
                if policy.enabled && resource.attempts > 0 && now.saturating_sub(since) >= grace {
                    actions.push(Action::ResetAttempts { resource: id.clone() });
                }
                continue;
            }
            self.live_since.remove(id);
            if seen.in_flight.contains(id) {
                continue;
            }
            let orphan_since = *self.orphan_since.entry(id.clone()).or_insert(now);
            if !policy.enabled {
                continue;
            }
            let reason = match seen.support(&resource.container) {
                Support::Restarts => None,
                Support::OptedOut => Some(WarnReason::OptedOut),
                Support::Unknown => Some(WarnReason::UnknownContainer),
            };
            if let Some(reason) = reason {
                self.warn_once(Subject::Resource(id.clone()), reason, &mut actions);
                continue;
            }
            let last = resource.last_attempt_ms.unwrap_or(i64::MIN);
            let due = orphan_since.max(last).saturating_add(grace);
            if now < due {
                continue;
            }
            if resource.attempts >= policy.max_retries {
                leaving.insert(id.clone());
                actions.push(Action::Cleanup { resource: id.clone() });
            } else {
                actions.push(Action::Restart { resource: id.clone(), attempt: resource.attempts + 1 });
            }
        }

        if !policy.enabled {
            return actions;
        }
        let mut groups: Vec<&GroupView> = seen.groups.iter().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        for group in groups {
            // Every active resource counts, orphans being restarted included: that capacity
            // is on its way back, and counting it keeps a group from being filled twice.
            let members = seen
                .resources
                .iter()
                .filter(|resource| resource.group == group.name && !leaving.contains(&resource.id))
                .count();
            let members = u32::try_from(members).unwrap_or(u32::MAX);
            if members >= group.min_members {
                continue;
            }
            match seen.support(&group.container) {
                Support::Restarts => {
                    actions.push(Action::Provision { group: group.name.clone(), count: group.min_members - members })
                }
                Support::OptedOut => {
                    self.warn_once(Subject::Group(group.name.clone()), WarnReason::OptedOut, &mut actions)
                }
                Support::Unknown => {
                    self.warn_once(Subject::Group(group.name.clone()), WarnReason::UnknownContainer, &mut actions)
                }
            }
        }
        actions
    }

    fn warn_once(&mut self, subject: Subject, reason: WarnReason, actions: &mut Vec<Action>) {
        if self.warned.insert((subject.clone(), reason)) {
            actions.push(Action::Warn { subject, reason });
        }
    }
}

/// The longest a resource, group or container name may be.
pub const MAX_NAME_LEN: usize = crate::name::MAX_ID_LEN;
/// The most properties one resource or group may carry, and the longest key and value.
pub const MAX_PROPERTIES: usize = 64;
/// The longest property value.
pub const MAX_PROPERTY_VALUE_LEN: usize = 1024;
/// The most members a group may be asked to keep.
pub const MAX_MIN_MEMBERS: u32 = 10_000;

/// Checks a resource id, group or container name: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`, so that
/// it is a valid node id and safe in a file name and a command line.
pub fn validate_resource_name(field: &str, name: &str) -> Result<(), String> {
    crate::name::validate_id("name", name).map_err(|error| format!("{field}: {error}"))?;
    if name.contains(':') {
        return Err(format!("{field}: {name:?} may not contain ':' (it names a log file and a command-line value)"));
    }
    Ok(())
}

/// Checks a property map's size: at most [`MAX_PROPERTIES`] entries, keys named like
/// resources, values at most [`MAX_PROPERTY_VALUE_LEN`] bytes.
pub fn validate_properties(field: &str, properties: &BTreeMap<String, String>) -> Result<(), String> {
    if properties.len() > MAX_PROPERTIES {
        return Err(format!("{field}: at most {MAX_PROPERTIES} properties, got {}", properties.len()));
    }
    for (key, value) in properties {
        validate_resource_name(&format!("{field} key"), key)?;
        if value.len() > MAX_PROPERTY_VALUE_LEN {
            return Err(format!("{field}.{key}: at most {MAX_PROPERTY_VALUE_LEN} bytes, got {}", value.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);
    const G: i64 = 60_000;

    fn policy() -> Policy {
        Policy { enabled: true, max_retries: 3, grace: GRACE }
    }

    fn resource(id: &str, group: &str, container: &str) -> ResourceView {
        ResourceView {
            id: id.into(),
            group: group.into(),
            container: container.into(),
            state: ResourceState::Active,
            attempts: 0,
            last_attempt_ms: Some(0),
        }
    }

    fn group(name: &str, container: &str, min_members: u32) -> GroupView {
        GroupView { name: name.into(), container: container.into(), min_members }
    }

    fn containers() -> BTreeMap<String, Support> {
        [("local".to_owned(), Support::Restarts), ("k8s".to_owned(), Support::OptedOut)].into_iter().collect()
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    /// One pass at `now_ms` with no groups.
    fn pass(
        keeper: &mut Keeper,
        resources: &[ResourceView],
        live: &[&str],
        in_flight: &[&str],
        now_ms: i64,
    ) -> Vec<Action> {
        pass_with(keeper, &[], resources, live, in_flight, now_ms)
    }

    fn pass_with(
        keeper: &mut Keeper,
        groups: &[GroupView],
        resources: &[ResourceView],
        live: &[&str],
        in_flight: &[&str],
        now_ms: i64,
    ) -> Vec<Action> {
        let (live, in_flight, containers) = (set(live), set(in_flight), containers());
        let seen =
            Observation { groups, resources, live: &live, in_flight: &in_flight, containers: &containers, now_ms };
        keeper.keep(&seen, &policy())
    }

    fn restart(id: &str, attempt: u32) -> Action {
        Action::Restart { resource: id.into(), attempt }
    }

    #[test]
    fn a_live_resource_is_left_alone() {
        let mut keeper = Keeper::new();
        let actions = pass(&mut keeper, &[resource("r1", "g", "local")], &["r1"], &[], 10 * G);
        assert_eq!(actions, vec![]);
        assert_eq!(keeper.orphans().count(), 0);
    }

    #[test]
    fn an_orphan_is_restarted_only_a_grace_period_after_it_became_one() {
        let mut keeper = Keeper::new();
        let r1 = resource("r1", "g", "local");
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 5 * G), vec![]);
        assert_eq!(keeper.orphan_since("r1"), Some(5 * G));
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 6 * G - 1), vec![]);
        assert_eq!(pass(&mut keeper, &[r1], &[], &[], 6 * G), vec![restart("r1", 1)]);
    }

    #[test]
    fn a_second_attempt_waits_a_grace_period_after_the_first() {
        let mut keeper = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 0);
        // The runner wrote attempt 1 at 1 G.
        r1.attempts = 1;
        r1.last_attempt_ms = Some(G);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 2 * G - 1), vec![]);
        assert_eq!(pass(&mut keeper, &[r1], &[], &[], 2 * G), vec![restart("r1", 2)]);
    }

    #[test]
    fn the_grace_counts_from_the_later_of_becoming_an_orphan_and_the_last_start() {
        // Seen as an orphan since 5 G, but (re)started at 10 G: not restarted before 11 G.
        let mut keeper = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        r1.last_attempt_ms = None;
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 5 * G), vec![]);
        r1.last_attempt_ms = Some(10 * G);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 11 * G - 1), vec![]);
        assert_eq!(pass(&mut keeper, &[r1], &[], &[], 11 * G), vec![restart("r1", 1)]);
    }

    #[test]
    fn attempts_survive_a_failover_because_they_are_stored() {
        // The old leader made 2 attempts (stored); a new leader's keeper starts empty.
        let mut successor = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        r1.attempts = 2;
        r1.last_attempt_ms = Some(100 * G);
        // It first sees the orphan at 100.5 G: grace counts from then, so not at 101 G.
        assert_eq!(pass(&mut successor, std::slice::from_ref(&r1), &[], &[], 100 * G + G / 2), vec![]);
        assert_eq!(pass(&mut successor, std::slice::from_ref(&r1), &[], &[], 101 * G), vec![]);
        assert_eq!(pass(&mut successor, &[r1], &[], &[], 101 * G + G / 2), vec![restart("r1", 3)]);
    }

    #[test]
    fn after_max_retries_the_resource_is_cleaned_up_once_the_last_attempt_had_its_grace() {
        let mut keeper = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        r1.attempts = 3;
        r1.last_attempt_ms = Some(5 * G);
        pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 0);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 6 * G - 1), vec![]);
        assert_eq!(pass(&mut keeper, &[r1], &[], &[], 6 * G), vec![Action::Cleanup { resource: "r1".into() }]);
    }

    #[test]
    fn a_live_member_appearing_before_cleanup_cancels_it() {
        let mut keeper = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        r1.attempts = 3;
        r1.last_attempt_ms = Some(5 * G);
        pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 0);
        assert_eq!(pass(&mut keeper, &[r1], &["r1"], &[], 6 * G), vec![]);
        assert_eq!(keeper.orphans().count(), 0);
    }

    #[test]
    fn a_cleaning_resource_is_carried_on_unless_its_cleanup_is_in_flight() {
        let mut keeper = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        r1.state = ResourceState::Cleaning;
        assert_eq!(
            pass(&mut keeper, std::slice::from_ref(&r1), &["r1"], &[], G),
            vec![Action::Cleanup { resource: "r1".into() }]
        );
        assert_eq!(pass(&mut keeper, &[r1], &[], &["r1"], G), vec![]);
    }

    #[test]
    fn attempts_reset_only_after_a_whole_grace_period_live() {
        let mut keeper = Keeper::new();
        let mut r1 = resource("r1", "g", "local");
        r1.attempts = 2;
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &["r1"], &[], 10 * G), vec![]);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &["r1"], &[], 11 * G - 1), vec![]);
        // A crash in between starts the live time over.
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &["r1"], 11 * G - 1), vec![]);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &["r1"], &[], 11 * G), vec![]);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &["r1"], &[], 12 * G - 1), vec![]);
        assert_eq!(
            pass(&mut keeper, &[r1], &["r1"], &[], 12 * G),
            vec![Action::ResetAttempts { resource: "r1".into() }]
        );
    }

    #[test]
    fn a_resource_in_flight_is_neither_an_orphan_nor_restarted() {
        let mut keeper = Keeper::new();
        let r1 = resource("r1", "g", "local");
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &["r1"], 10 * G), vec![]);
        assert_eq!(keeper.orphan_since("r1"), None);
        assert_eq!(pass(&mut keeper, &[r1], &[], &["r1"], 20 * G), vec![]);
    }

    #[test]
    fn an_opted_out_orphan_is_warned_about_once_and_consumes_no_attempt() {
        let mut keeper = Keeper::new();
        let r1 = resource("r1", "g", "k8s");
        let warn = Action::Warn { subject: Subject::Resource("r1".into()), reason: WarnReason::OptedOut };
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 0), vec![warn]);
        assert_eq!(pass(&mut keeper, std::slice::from_ref(&r1), &[], &[], 10 * G), vec![]);
        assert_eq!(pass(&mut keeper, &[r1], &[], &[], 100 * G), vec![]);
    }

    #[test]
    fn a_row_naming_a_removed_container_does_not_block_another_orphan() {
        let mut keeper = Keeper::new();
        let zombie = resource("a-zombie", "old", "gone");
        let r2 = resource("b", "g", "local");
        let warn = Action::Warn { subject: Subject::Resource("a-zombie".into()), reason: WarnReason::UnknownContainer };
        assert_eq!(pass(&mut keeper, &[zombie.clone(), r2.clone()], &[], &[], 0), vec![warn]);
        assert_eq!(pass(&mut keeper, &[zombie, r2], &[], &[], G), vec![restart("b", 1)]);
    }

    #[test]
    fn a_group_below_its_minimum_is_filled_counting_orphans_being_restarted() {
        let mut keeper = Keeper::new();
        let groups = [group("g", "local", 3)];
        // One live, one orphan (restart due), one in flight: all three count.
        let resources = [resource("r1", "g", "local"), resource("r2", "g", "local"), resource("r3", "g", "local")];
        assert_eq!(pass_with(&mut keeper, &groups, &resources, &["r1"], &["r3"], 0), vec![]);
        assert_eq!(pass_with(&mut keeper, &groups, &resources, &["r1"], &["r3"], G), vec![restart("r2", 1)]);
        // Only two rows: one more is provisioned, exactly one.
        assert_eq!(
            pass_with(&mut keeper, &groups, &resources[..2], &["r1", "r2"], &[], G),
            vec![Action::Provision { group: "g".into(), count: 1 }]
        );
    }

    #[test]
    fn a_resource_given_up_on_is_replaced_in_its_group() {
        let mut keeper = Keeper::new();
        let groups = [group("g", "local", 1)];
        let mut r1 = resource("r1", "g", "local");
        r1.attempts = 3;
        pass_with(&mut keeper, &groups, std::slice::from_ref(&r1), &[], &[], 0);
        assert_eq!(
            pass_with(&mut keeper, &groups, &[r1], &[], &[], G),
            vec![Action::Cleanup { resource: "r1".into() }, Action::Provision { group: "g".into(), count: 1 },]
        );
    }

    #[test]
    fn a_group_whose_container_opted_out_is_warned_about_not_provisioned() {
        let mut keeper = Keeper::new();
        let groups = [group("g", "k8s", 2)];
        let warn = Action::Warn { subject: Subject::Group("g".into()), reason: WarnReason::OptedOut };
        assert_eq!(pass_with(&mut keeper, &groups, &[], &[], &[], 0), vec![warn]);
        assert_eq!(pass_with(&mut keeper, &groups, &[], &[], &[], G), vec![]);
    }

    #[test]
    fn a_disabled_keeper_does_nothing_but_still_knows_its_orphans() {
        let mut keeper = Keeper::new();
        let (live, in_flight, containers) = (set(&[]), set(&[]), containers());
        let resources = [resource("r1", "g", "local")];
        let groups = [group("g", "local", 5)];
        let seen = Observation {
            groups: &groups,
            resources: &resources,
            live: &live,
            in_flight: &in_flight,
            containers: &containers,
            now_ms: 100 * G,
        };
        let disabled = Policy { enabled: false, ..policy() };
        assert_eq!(keeper.keep(&seen, &disabled), vec![]);
        assert_eq!(keeper.orphans().collect::<Vec<_>>(), vec!["r1"]);
    }

    #[test]
    fn a_cleanup_asked_for_finishes_even_when_restarts_are_disabled() {
        let mut keeper = Keeper::new();
        let (live, in_flight, containers) = (set(&[]), set(&[]), containers());
        let mut r1 = resource("r1", "g", "local");
        r1.state = ResourceState::Cleaning;
        let resources = [r1];
        let seen = Observation {
            groups: &[],
            resources: &resources,
            live: &live,
            in_flight: &in_flight,
            containers: &containers,
            now_ms: 0,
        };
        let disabled = Policy { enabled: false, ..policy() };
        assert_eq!(keeper.keep(&seen, &disabled), vec![Action::Cleanup { resource: "r1".into() }]);
    }

    #[test]
    fn a_deleted_resource_is_forgotten() {
        let mut keeper = Keeper::new();
        pass(&mut keeper, &[resource("r1", "g", "local")], &[], &[], 0);
        pass(&mut keeper, &[], &[], &[], G);
        assert_eq!(keeper.orphans().count(), 0);
    }

    #[test]
    fn names_and_properties_are_bounded() {
        assert!(validate_resource_name("id", "dn-1.a_b").is_ok());
        assert!(validate_resource_name("id", "").is_err());
        assert!(validate_resource_name("id", "-x").is_err());
        assert!(validate_resource_name("id", "a/b").is_err());
        assert!(validate_resource_name("id", &"a".repeat(65)).is_err());
        let big: BTreeMap<String, String> = [("k".to_owned(), "v".repeat(1025))].into_iter().collect();
        assert!(validate_properties("properties", &big).is_err());
    }
}
