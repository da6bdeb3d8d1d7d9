//! The coordinator's metrics. Every name starts with `leasehold_`; every loop has a counter
//! and a latency histogram.

use std::time::Duration;

use leasehold_core::ddl::DdlKind;
use leasehold_core::leadership::StepDown;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// 1 while this node holds the lease and may act as leader, else 0.
pub const HA_IS_LEADER: &str = "leasehold_ha_is_leader";
/// The term this node knows (its own while it leads).
pub const HA_TERM: &str = "leasehold_ha_term";
/// Lease renewals by result: `ok`, `lost`, `error`.
pub const HA_RENEWALS: &str = "leasehold_ha_renewals_total";
/// Renewal round-trip latency.
pub const HA_RENEW_SECONDS: &str = "leasehold_ha_renew_duration_seconds";
/// Role changes, by the role entered and the reason.
pub const HA_TRANSITIONS: &str = "leasehold_ha_transitions_total";
/// Acquire attempts by result: `won`, `lost`, `error`.
pub const HA_ACQUIRES: &str = "leasehold_ha_acquire_attempts_total";
/// Iterations of the HA loops, by loop: `follower`, `leader`, `registry`.
pub const HA_LOOP_ITERATIONS: &str = "leasehold_ha_loop_iterations_total";
/// Store calls of the HA loops that failed, by call.
pub const HA_STORE_ERRORS: &str = "leasehold_ha_store_errors_total";
/// Lease release notices, by direction and result: sent by a leaving leader (`sent`,
/// `failed`, `no_successor`) and received by a candidate (`woken`, `ignored`).
pub const HA_RELEASE_NOTICES: &str = "leasehold_ha_release_notices_total";
/// Duration of one registry refresh.
pub const HA_REFRESH_SECONDS: &str = "leasehold_ha_registry_refresh_duration_seconds";
/// Registered data nodes (the leader's view).
pub const DATA_NODES: &str = "leasehold_datanodes_registered";
/// Registration batches (one term-guarded transaction each), by result: `committed`, `failed`.
pub const REGISTRATION_BATCHES: &str = "leasehold_datanodes_registration_batches_total";
/// Registrations written per committed batch.
pub const REGISTRATION_BATCH_SIZE: &str = "leasehold_datanodes_registration_batch_size";
/// Time one registration batch took, from holding the publication lock to its answers.
pub const REGISTRATION_BATCH_SECONDS: &str = "leasehold_datanodes_registration_batch_duration_seconds";
/// Registrations waiting for a batch.
pub const REGISTRATIONS_QUEUED: &str = "leasehold_datanodes_registrations_queued";
/// Data-node incarnations evicted for silence.
pub const DATA_NODES_EVICTED: &str = "leasehold_datanodes_evicted_total";
/// Heartbeats handled by the leader, by result: `granted`, `refused`.
pub const HEARTBEATS: &str = "leasehold_datanodes_heartbeats_total";
/// Heartbeat handling latency on the leader.
pub const HEARTBEAT_SECONDS: &str = "leasehold_datanodes_heartbeat_duration_seconds";
/// Rounds of pushes made by broadcasts.
pub const BROADCAST_ROUNDS: &str = "leasehold_broadcast_rounds_total";
/// Broadcasts decided, by verdict: `proceed`, `fail`.
pub const BROADCASTS: &str = "leasehold_broadcast_verdicts_total";
/// Time from publication to verdict.
pub const BROADCAST_SECONDS: &str = "leasehold_broadcast_duration_seconds";
/// Pushes to agents by result: `applied`, `cannot_apply`, `not_applied`.
pub const PUSHES: &str = "leasehold_broadcast_pushes_total";
/// DDL procedures that ended here, by kind and outcome: `succeeded`, `rolled_back`,
/// `failed`, `interrupted` (the term ended or the store failed; the next leader resumes it).
pub const PROCEDURES: &str = "leasehold_ddl_procedures_total";
/// Time a procedure took on this leader, from its start (or resumption) to its end, by kind.
pub const PROCEDURE_SECONDS: &str = "leasehold_ddl_procedure_duration_seconds";
/// Procedures a new leader found running and resumed.
pub const PROCEDURES_RESUMED: &str = "leasehold_ddl_procedures_resumed_total";
/// Catalog rows the leader's last load set aside as orphaned (a table or view whose database
/// is gone or was created after it); anything above 0 wants an operator's look.
pub const CATALOG_QUARANTINED: &str = "leasehold_catalog_quarantined_objects";
/// Bucket moves written, by pool, step (`revoke`, `grant`) and reason (`unowned`,
/// `departed`, `balance`).
pub const BUCKET_MOVES: &str = "leasehold_bucket_moves_total";
/// Revokes waiting for their old owner to acknowledge or provably fence, by pool.
pub const BUCKET_UNSETTLED: &str = "leasehold_bucket_unsettled_revokes";
/// Live members of each pool.
pub const BUCKET_MEMBERS: &str = "leasehold_bucket_pool_members";
/// Buckets each member of a pool owns (granted, not being revoked), by pool and node.
pub const BUCKETS_OWNED: &str = "leasehold_bucket_owned";
/// Time from a bucket's revoke to its grant to the new owner, by pool.
pub const BUCKET_HANDOFF_SECONDS: &str = "leasehold_bucket_handoff_duration_seconds";
/// Time one assignment pass took (plan and write), by whether it wrote anything.
pub const BUCKET_PASS_SECONDS: &str = "leasehold_bucket_pass_duration_seconds";
/// Resources without a live data node carrying their id (the leader's view).
pub const KEEPER_ORPHANS: &str = "leasehold_keeper_orphans";
/// Restarts, by outcome: `requested` (the leader recorded an attempt), `started`, `failed`
/// (the container's coordinator started the process, or could not).
pub const KEEPER_RESTARTS: &str = "leasehold_keeper_restarts_total";
/// Resources cleaned up (given up on after their last attempt, or deleted).
pub const KEEPER_CLEANUPS: &str = "leasehold_keeper_cleanups_total";
/// Resources provisioned to bring a group up to its minimum.
pub const KEEPER_PROVISIONED: &str = "leasehold_keeper_provisioned_total";
/// Warnings given once instead of acting, by reason: `unknown_container`, `opted_out`.
pub const KEEPER_WARNED: &str = "leasehold_keeper_warned_total";
/// Time one keeper pass took.
pub const KEEPER_PASS_SECONDS: &str = "leasehold_keeper_pass_duration_seconds";
/// Calls shed because the budget of calls in flight was spent (renewals are never shed).
pub const CALLS_SHED: &str = "leasehold_grpc_calls_shed_total";
/// gRPC requests handled, by method and code.
pub const GRPC_REQUESTS: &str = "leasehold_grpc_requests_total";

/// Bucket bounds (seconds) for work that takes well under a millisecond when healthy: the
/// leader's handling of a heartbeat.
pub const SUB_MILLISECOND: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Bucket bounds (seconds) for a store round trip or a pass over state: milliseconds, up to
/// the store timeouts.
pub const STORE_CALLS: &[f64] =
    &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Bucket bounds (seconds) for what may wait out an unreachable data node: a broadcast, a DDL
/// procedure, a bucket handoff. Milliseconds when every node answers, up to `T_proceed` (16.3 s
/// by default) plus a lease TTL after a failover, and beyond for a stuck one.
pub const PROCEDURES_LONG: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0];
/// Bucket bounds for the registrations in one batch (at most 1000).
pub const BATCH_SIZES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Every histogram of the coordinator and its bucket bounds: each is exported as a Prometheus
/// histogram (`_bucket`, `_sum`, `_count`), which aggregates across nodes, never as a summary.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (HEARTBEAT_SECONDS, SUB_MILLISECOND),
    (HA_RENEW_SECONDS, STORE_CALLS),
    (HA_REFRESH_SECONDS, STORE_CALLS),
    (REGISTRATION_BATCH_SECONDS, STORE_CALLS),
    (BUCKET_PASS_SECONDS, STORE_CALLS),
    (KEEPER_PASS_SECONDS, STORE_CALLS),
    (BROADCAST_SECONDS, PROCEDURES_LONG),
    (PROCEDURE_SECONDS, PROCEDURES_LONG),
    (BUCKET_HANDOFF_SECONDS, PROCEDURES_LONG),
    (REGISTRATION_BATCH_SIZE, BATCH_SIZES),
];

/// Registers the descriptions with the installed recorder, and every series whose labels are
/// known before anything happens, at zero.
pub fn describe() {
    describe_gauge!(HA_IS_LEADER, "1 while this node holds the lease and may act as leader");
    describe_counter!(BUCKET_MOVES, "Bucket moves written, by pool, step (revoke, grant) and reason");
    describe_gauge!(BUCKET_UNSETTLED, "Revokes waiting for their old owner to acknowledge or provably fence");
    describe_gauge!(BUCKET_MEMBERS, "Live members of each bucket pool");
    describe_gauge!(BUCKETS_OWNED, "Buckets each member of a pool owns, granted and not being revoked");
    describe_histogram!(
        BUCKET_HANDOFF_SECONDS,
        Unit::Seconds,
        "Time from a bucket's revoke to its grant to the new owner"
    );
    describe_histogram!(BUCKET_PASS_SECONDS, Unit::Seconds, "Time one bucket assignment pass took");
    describe_gauge!(HA_TERM, "The term this node knows; its own while it leads");
    describe_counter!(HA_RENEWALS, "Lease renewals by result (ok, lost, error)");
    describe_histogram!(HA_RENEW_SECONDS, Unit::Seconds, "Lease renewal round-trip latency");
    describe_counter!(HA_TRANSITIONS, "Role changes by role entered and reason");
    describe_counter!(
        HA_ACQUIRES,
        "Lease acquire attempts by result (won, lost, error, adopted: an unanswered acquire found to have won)"
    );
    describe_counter!(HA_LOOP_ITERATIONS, "Iterations of the HA loops by loop");
    describe_counter!(HA_STORE_ERRORS, "Failed store calls of the HA loops by call");
    describe_histogram!(HA_REFRESH_SECONDS, Unit::Seconds, "Registry refresh latency");
    describe_counter!(
        HA_RELEASE_NOTICES,
        "Lease release notices by result (sent, failed, no_successor, woken, ignored)"
    );
    describe_counter!(GRPC_REQUESTS, "gRPC requests handled by method and code");
    describe_counter!(CALLS_SHED, "Calls shed at the limit of calls in flight (lease renewals are never shed)");
    describe_gauge!(DATA_NODES, "Data nodes registered with this leader");
    describe_counter!(
        REGISTRATION_BATCHES,
        "Registration batches (one transaction each) by result (committed, failed)"
    );
    describe_histogram!(REGISTRATION_BATCH_SIZE, "Registrations written per committed batch");
    describe_histogram!(REGISTRATION_BATCH_SECONDS, Unit::Seconds, "Time one registration batch took");
    describe_gauge!(REGISTRATIONS_QUEUED, "Registrations waiting for a batch");
    describe_counter!(DATA_NODES_EVICTED, "Data-node incarnations evicted after datanodes.evict-after of silence");
    describe_counter!(HEARTBEATS, "Data-node heartbeats handled by result (granted, refused)");
    describe_histogram!(HEARTBEAT_SECONDS, Unit::Seconds, "Heartbeat handling latency on the leader");
    describe_counter!(BROADCAST_ROUNDS, "Rounds of pushes made by broadcasts");
    describe_counter!(BROADCASTS, "Broadcasts decided by verdict (proceed, fail)");
    describe_histogram!(BROADCAST_SECONDS, Unit::Seconds, "Time from publication to verdict");
    describe_counter!(PUSHES, "Pushes to agents by result");
    describe_counter!(PROCEDURES, "DDL procedures ended by kind and outcome");
    describe_histogram!(PROCEDURE_SECONDS, Unit::Seconds, "DDL procedure duration on this leader by kind");
    describe_counter!(PROCEDURES_RESUMED, "DDL procedures resumed after a leader change");
    describe_gauge!(CATALOG_QUARANTINED, "Orphaned catalog rows the leader's last load set aside");
    describe_gauge!(KEEPER_ORPHANS, "Resources without a live data node carrying their id");
    describe_counter!(KEEPER_RESTARTS, "Resource restarts by outcome (requested, started, failed)");
    describe_counter!(KEEPER_CLEANUPS, "Resources cleaned up");
    describe_counter!(KEEPER_PROVISIONED, "Resources provisioned to fill a group up to its minimum");
    describe_counter!(KEEPER_WARNED, "Orphans or groups warned about once instead of acted on, by reason");
    describe_histogram!(KEEPER_PASS_SECONDS, Unit::Seconds, "Time one resource keeper pass took");
    register_at_zero();
}

/// The label values each labelled counter can take, as far as they are known before anything
/// happens: every one is exported at 0 from the start, so that a scrape shows the series
/// before it first moves and a rate over it is defined from the first scrape. Counters
/// labelled by something only known later (a pool, a node) appear when it does.
const COUNTERS_AT_ZERO: &[(&str, &str, &[&str])] = &[
    (HA_RENEWALS, "result", &["ok", "lost", "error"]),
    (HA_ACQUIRES, "result", &["won", "lost", "error", "adopted"]),
    (HA_LOOP_ITERATIONS, "loop", &["follower", "leader", "registry", "tombstones", "assign", "keeper", "containers"]),
    (HA_STORE_ERRORS, "call", &["read lease", "refresh node", "list nodes"]),
    (HA_RELEASE_NOTICES, "result", &["sent", "failed", "no_successor", "woken", "ignored"]),
    (REGISTRATION_BATCHES, "result", &["committed", "failed"]),
    (HEARTBEATS, "result", &["granted", "refused"]),
    (BROADCASTS, "verdict", &["proceed", "fail"]),
    (PUSHES, "result", &["applied", "cannot_apply", "not_applied"]),
    (KEEPER_RESTARTS, "outcome", &["requested", "started", "failed"]),
    (KEEPER_WARNED, "reason", &["unknown_container", "opted_out"]),
];

/// Counters without labels.
const PLAIN_COUNTERS: &[&str] =
    &[BROADCAST_ROUNDS, PROCEDURES_RESUMED, DATA_NODES_EVICTED, KEEPER_CLEANUPS, KEEPER_PROVISIONED, CALLS_SHED];

/// The outcomes of a procedure, as [`procedure`] is told them.
const PROCEDURE_OUTCOMES: [&str; 4] = ["succeeded", "rolled_back", "failed", "interrupted"];

/// The coordinator's gRPC services, whose methods [`GRPC_REQUESTS`] counts.
const GRPC_SERVICES: [&str; 6] = ["Cluster", "DataNodes", "Catalog", "Procedures", "Assignments", "Resources"];

fn register_at_zero() {
    for (name, label, values) in COUNTERS_AT_ZERO {
        for value in *values {
            counter!(*name, *label => *value).absolute(0);
        }
    }
    for name in PLAIN_COUNTERS {
        counter!(*name).absolute(0);
    }
    counter!(HA_TRANSITIONS, "role" => "leader", "reason" => "acquired").absolute(0);
    counter!(HA_TRANSITIONS, "role" => "follower", "reason" => "registered").absolute(0);
    counter!(HA_TRANSITIONS, "role" => "stopped", "reason" => "shutdown").absolute(0);
    for reason in StepDown::ALL {
        counter!(HA_TRANSITIONS, "role" => "follower", "reason" => reason.label()).absolute(0);
    }
    for kind in DdlKind::ALL {
        for outcome in PROCEDURE_OUTCOMES {
            counter!(PROCEDURES, "kind" => kind.as_str(), "outcome" => outcome).absolute(0);
        }
    }
    for method in grpc_methods() {
        counter!(GRPC_REQUESTS, "method" => method, "code" => leasehold::status::code_name(tonic::Code::Ok))
            .absolute(0);
    }
    // Gauges say where they stand from the start too: a follower is not the leader.
    set_leader(false, 0);
    for name in [DATA_NODES, REGISTRATIONS_QUEUED, CATALOG_QUARANTINED, KEEPER_ORPHANS] {
        gauge!(name).set(0.0);
    }
}

/// The methods of the coordinator's services, from the API's descriptor set.
fn grpc_methods() -> Vec<String> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(leasehold::v1::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    set.file
        .iter()
        .filter(|file| file.package() == "leasehold.v1")
        .flat_map(|file| &file.service)
        .filter(|service| GRPC_SERVICES.contains(&service.name()))
        .flat_map(|service| &service.method)
        .map(|method| method.name().to_owned())
        .collect()
}

pub(crate) fn call_shed() {
    counter!(CALLS_SHED).increment(1);
}

pub(crate) fn keeper_orphans(count: usize) {
    gauge!(KEEPER_ORPHANS).set(count as f64);
}

pub(crate) fn keeper_restart(outcome: &'static str) {
    counter!(KEEPER_RESTARTS, "outcome" => outcome).increment(1);
}

pub(crate) fn keeper_cleanup() {
    counter!(KEEPER_CLEANUPS).increment(1);
}

pub(crate) fn keeper_provisioned() {
    counter!(KEEPER_PROVISIONED).increment(1);
}

pub(crate) fn keeper_warned(reason: &'static str) {
    counter!(KEEPER_WARNED, "reason" => reason).increment(1);
}

pub(crate) fn keeper_pass(took: Duration) {
    histogram!(KEEPER_PASS_SECONDS).record(took.as_secs_f64());
}

/// The term this node knows, as a follower learns it from the lease row.
pub(crate) fn set_term(term: u64) {
    gauge!(HA_TERM).set(term as f64);
}

pub(crate) fn set_leader(is_leader: bool, term: u64) {
    gauge!(HA_IS_LEADER).set(if is_leader { 1.0 } else { 0.0 });
    gauge!(HA_TERM).set(term as f64);
}

pub(crate) fn transition(role: &'static str, reason: &'static str) {
    counter!(HA_TRANSITIONS, "role" => role, "reason" => reason).increment(1);
}

pub(crate) fn renewal(result: &'static str, took: Duration) {
    counter!(HA_RENEWALS, "result" => result).increment(1);
    histogram!(HA_RENEW_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn acquire(result: &'static str) {
    counter!(HA_ACQUIRES, "result" => result).increment(1);
}

pub(crate) fn loop_iteration(name: &'static str) {
    counter!(HA_LOOP_ITERATIONS, "loop" => name).increment(1);
}

pub(crate) fn store_error(call: &'static str) {
    counter!(HA_STORE_ERRORS, "call" => call).increment(1);
}

pub(crate) fn release_notice(result: &'static str) {
    counter!(HA_RELEASE_NOTICES, "result" => result).increment(1);
}

pub(crate) fn refresh(took: Duration) {
    histogram!(HA_REFRESH_SECONDS).record(took.as_secs_f64());
}

/// The label of a status code: its canonical gRPC name (`OK`, `UNAVAILABLE`), as grpcurl and
/// every gRPC library print it; no allocation per call.
pub(crate) fn grpc_request(method: &'static str, code: tonic::Code) {
    counter!(GRPC_REQUESTS, "method" => method, "code" => leasehold::status::code_name(code)).increment(1);
}

/// Counts a gRPC call by its outcome and passes the outcome through.
pub(crate) fn record<T>(method: &'static str, result: Result<T, tonic::Status>) -> Result<T, tonic::Status> {
    grpc_request(method, result.as_ref().map_or_else(tonic::Status::code, |_| tonic::Code::Ok));
    result
}

pub(crate) fn bucket_pass(pool: &str, report: &crate::metadata_leader::PassReport, took: Duration) {
    for (step, moves) in [("revoke", &report.revoked), ("grant", &report.granted)] {
        for (reason, count) in moves {
            counter!(BUCKET_MOVES, "pool" => pool.to_owned(), "step" => step, "reason" => *reason)
                .increment(*count as u64);
        }
    }
    gauge!(BUCKET_UNSETTLED, "pool" => pool.to_owned()).set(report.unsettled as f64);
    gauge!(BUCKET_MEMBERS, "pool" => pool.to_owned()).set(report.members as f64);
    for took in &report.handoffs {
        histogram!(BUCKET_HANDOFF_SECONDS, "pool" => pool.to_owned()).record(took.as_secs_f64());
    }
    let wrote = if report.version == 0 { "no" } else { "yes" };
    histogram!(BUCKET_PASS_SECONDS, "wrote" => wrote).record(took.as_secs_f64());
}

pub(crate) fn buckets_owned(pool: &str, node: &str, count: usize) {
    gauge!(BUCKETS_OWNED, "pool" => pool.to_owned(), "node" => node.to_owned()).set(count as f64);
}

pub(crate) fn data_nodes_registered(count: usize) {
    gauge!(DATA_NODES).set(count as f64);
}

pub(crate) fn registration_batch(committed: bool, size: usize, took: Duration) {
    counter!(REGISTRATION_BATCHES, "result" => if committed { "committed" } else { "failed" }).increment(1);
    if committed {
        histogram!(REGISTRATION_BATCH_SIZE).record(size as f64);
    }
    histogram!(REGISTRATION_BATCH_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn registrations_queued(count: usize) {
    gauge!(REGISTRATIONS_QUEUED).set(count as f64);
}

pub(crate) fn data_nodes_evicted(count: usize) {
    counter!(DATA_NODES_EVICTED).increment(count as u64);
}

/// The heartbeat path's metric handles, resolved once (the recorder is installed before the
/// first heartbeat): no registry lookup or allocation per heartbeat.
struct HeartbeatMetrics {
    granted: metrics::Counter,
    refused: metrics::Counter,
    seconds: metrics::Histogram,
}

fn heartbeat_metrics() -> &'static HeartbeatMetrics {
    static HANDLES: std::sync::OnceLock<HeartbeatMetrics> = std::sync::OnceLock::new();
    HANDLES.get_or_init(|| HeartbeatMetrics {
        granted: counter!(HEARTBEATS, "result" => "granted"),
        refused: counter!(HEARTBEATS, "result" => "refused"),
        seconds: histogram!(HEARTBEAT_SECONDS),
    })
}

pub(crate) fn heartbeat(granted: bool, took: Duration) {
    let handles = heartbeat_metrics();
    if granted {
        handles.granted.increment(1)
    } else {
        handles.refused.increment(1)
    }
    handles.seconds.record(took.as_secs_f64());
}

pub(crate) fn broadcast_round() {
    counter!(BROADCAST_ROUNDS).increment(1);
}

pub(crate) fn broadcast(verdict: &'static str, took: Duration) {
    counter!(BROADCASTS, "verdict" => verdict).increment(1);
    histogram!(BROADCAST_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn push(result: &'static str) {
    counter!(PUSHES, "result" => result).increment(1);
}

pub(crate) fn procedure(kind: &'static str, outcome: &'static str, took: Duration) {
    counter!(PROCEDURES, "kind" => kind, "outcome" => outcome).increment(1);
    histogram!(PROCEDURE_SECONDS, "kind" => kind).record(took.as_secs_f64());
}

pub(crate) fn procedure_resumed() {
    counter!(PROCEDURES_RESUMED).increment(1);
}

pub(crate) fn catalog_quarantined(count: usize) {
    gauge!(CATALOG_QUARANTINED).set(count as f64);
}
