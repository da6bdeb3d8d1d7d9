//! The agent's metrics, all prefixed `leasehold_agent_`.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Heartbeats by result: `renewed`, `ignored`, `failed`, `not_applied`.
pub const HEARTBEATS: &str = "leasehold_agent_heartbeats_total";
/// Heartbeat round-trip latency.
pub const HEARTBEAT_SECONDS: &str = "leasehold_agent_heartbeat_duration_seconds";
/// 1 while the lease is valid.
pub const LEASE_VALID: &str = "leasehold_agent_lease_valid";
/// Times the agent fenced itself.
pub const FENCES: &str = "leasehold_agent_fences_total";
/// The applied metadata version.
pub const VERSION: &str = "leasehold_agent_applied_version";
/// Pushes by result: `applied`, `refused`.
pub const PUSHES: &str = "leasehold_agent_pushes_total";
/// Data the host was asked to drop, by why: `order` (a drop order applied), `resync` (gone
/// while the agent could not hear).
pub const DATA_DROPS: &str = "leasehold_agent_data_drops_total";
/// Iterations of the agent's loops, by loop.
pub const LOOP_ITERATIONS: &str = "leasehold_agent_loop_iterations_total";
/// 0: an agent never leads. Exported so that every node of a cluster answers the same
/// question, and `sum(leasehold_ha_is_leader)` over all of them counts the leaders.
pub const HA_IS_LEADER: &str = "leasehold_ha_is_leader";
/// The highest coordinator term this agent has followed.
pub const HA_TERM: &str = "leasehold_ha_term";

/// The agent's histograms and their bucket bounds (seconds): a heartbeat round trip takes
/// well under a millisecond on one host and up to its deadline (`--heartbeat-timeout`, 500 ms
/// by default) when a coordinator is slow or gone.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[(
    HEARTBEAT_SECONDS,
    &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
)];

/// The label values of each labelled counter: all are exported at 0 from the start.
const COUNTERS_AT_ZERO: &[(&str, &str, &[&str])] = &[
    (HEARTBEATS, "result", &["renewed", "ignored", "failed", "not_applied"]),
    (PUSHES, "result", &["applied", "refused"]),
    (DATA_DROPS, "why", &["order", "resync"]),
    (LOOP_ITERATIONS, "loop", &["heartbeat", "fence"]),
];

/// Registers the descriptions with the installed recorder.
pub fn describe() {
    describe_counter!(HEARTBEATS, "Heartbeats by result");
    describe_histogram!(HEARTBEAT_SECONDS, Unit::Seconds, "Heartbeat round-trip latency");
    describe_gauge!(LEASE_VALID, "1 while the metadata lease is valid");
    describe_counter!(FENCES, "Times the agent fenced itself");
    describe_gauge!(VERSION, "The applied metadata version");
    describe_counter!(PUSHES, "Pushed changes by result");
    describe_counter!(DATA_DROPS, "Data the host dropped, by why: order or resync");
    describe_counter!(LOOP_ITERATIONS, "Iterations of the agent's loops");
    describe_gauge!(HA_IS_LEADER, "Always 0 on an agent: it never leads");
    describe_gauge!(HA_TERM, "The highest coordinator term this agent has followed");
    // Every series exists from the start, so that a scrape shows it before it first moves.
    for (name, label, values) in COUNTERS_AT_ZERO {
        for value in *values {
            counter!(*name, *label => *value).absolute(0);
        }
    }
    counter!(FENCES).absolute(0);
    for name in [LEASE_VALID, VERSION, HA_IS_LEADER, HA_TERM] {
        gauge!(name).set(0.0);
    }
}

pub(crate) fn heartbeat(result: &'static str, took: Duration) {
    counter!(HEARTBEATS, "result" => result).increment(1);
    histogram!(HEARTBEAT_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn lease(valid: bool, version: u64) {
    gauge!(LEASE_VALID).set(if valid { 1.0 } else { 0.0 });
    gauge!(VERSION).set(version as f64);
}

pub(crate) fn term(term: u64) {
    gauge!(HA_TERM).set(term as f64);
}

pub(crate) fn fenced() {
    counter!(FENCES).increment(1);
    gauge!(LEASE_VALID).set(0.0);
}

pub(crate) fn push(result: &'static str) {
    counter!(PUSHES, "result" => result).increment(1);
}

pub(crate) fn loop_iteration(name: &'static str) {
    counter!(LOOP_ITERATIONS, "loop" => name).increment(1);
}

pub(crate) fn data_dropped(why: &'static str) {
    counter!(DATA_DROPS, "why" => why).increment(1);
}
