//! The checkers: pure functions of a run's history (and of what the cluster reported), each
//! returning the violations it found, worded for a person reading a failed run.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{Op, Outcome};

/// No read served from a cache older than a DDL or a barrier that had returned OK before the
/// read was sent: the promise.
pub fn stale_reads(ops: &[Op]) -> Vec<String> {
    // Every acknowledged version with when it was acknowledged, in that order, and the
    // highest acknowledged by each moment.
    let mut settled: Vec<(u64, u64, &Op)> = ops
        .iter()
        .filter(|op| (op.is_ddl() || op.kind == "barrier") && op.outcome.version().is_some())
        .map(|op| (op.complete_us, op.outcome.version().unwrap_or_default(), op))
        .collect();
    settled.sort_by_key(|(at, _, _)| *at);
    let mut highest: Vec<(u64, u64, &Op)> = Vec::with_capacity(settled.len());
    for (at, version, op) in settled {
        match highest.last() {
            Some((_, top, _)) if *top >= version => {
                let (_, top, top_op) = *highest.last().expect("a last");
                highest.push((at, top, top_op));
            }
            _ => highest.push((at, version, op)),
        }
    }
    let mut violations = Vec::new();
    for read in ops.iter().filter(|op| op.is_read()) {
        let Some(served) = read.outcome.version() else { continue };
        let before = highest.partition_point(|(at, _, _)| *at < read.invoke_us);
        if before == 0 {
            continue;
        }
        let (at, version, op) = highest[before - 1];
        if served < version {
            violations.push(format!(
                "stale read: {} served {} at version {served} (sent at {} µs), but {} {} {} had returned version {version} at {at} µs",
                read.process, read.target, read.invoke_us, op.process, op.kind, op.target
            ));
        }
    }
    violations
}

/// DDL answers agree with each other: a request id answered OK twice reports one version, and
/// never OK once and refused another time; and a DDL that returned before another was sent
/// reports a lower version. Two requests may report one version: a procedure that a new leader
/// resumed reports the newest version at its resumption, at which its change is settled.
pub fn ddl_answers(ops: &[Op]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_request: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.is_ddl() && !op.request_id.is_empty()) {
        by_request.entry(&op.request_id).or_default().push(op);
    }
    // Per acknowledged request: its first send (an attempt with no answer may have run it),
    // its first OK answer, and its version.
    let mut oks: Vec<(u64, u64, u64, &Op)> = Vec::new();
    for (request_id, answers) in &by_request {
        let versions: BTreeSet<u64> = answers.iter().filter_map(|op| op.outcome.version()).collect();
        let refusals: Vec<String> = answers
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Refused { .. }))
            .map(|op| op.outcome.label())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if versions.len() > 1 {
            violations.push(format!("request {request_id} was answered with versions {versions:?}"));
        }
        if !versions.is_empty() && !refusals.is_empty() {
            violations.push(format!("request {request_id} was answered OK and also {refusals:?}"));
        }
        if refusals.len() > 1 {
            violations.push(format!("request {request_id} was refused differently: {refusals:?}"));
        }
        if let Some(&version) = versions.iter().next() {
            let sent = answers.iter().map(|op| op.invoke_us).min().unwrap_or_default();
            let first = answers.iter().filter(|op| op.outcome.version().is_some()).min_by_key(|op| op.complete_us);
            let first = first.expect("an OK answer");
            oks.push((sent, first.complete_us, version, first));
        }
    }
    // Real-time order: a DDL must be above every DDL that had returned before it was first sent.
    let mut by_complete: Vec<(u64, u64, &Op)> =
        oks.iter().map(|(_, answered, version, op)| (*answered, *version, *op)).collect();
    by_complete.sort_by_key(|(at, _, _)| *at);
    for (sent, _, version, op) in &oks {
        let earlier = by_complete.iter().take_while(|(at, _, _)| at < sent);
        if let Some((_, higher, other)) = earlier.filter(|(_, other_version, _)| other_version >= version).last() {
            violations.push(format!(
                "{} {} (request {}) committed at version {version}, below or at version {higher} of {} (request {}) which had returned before it was sent",
                op.kind, op.target, op.request_id, other.target, other.request_id
            ));
        }
    }
    violations
}

/// At most one leader per term: `reports` holds, per term, every node seen or logged leading it.
pub fn one_leader_per_term(reports: &BTreeMap<u64, BTreeSet<String>>) -> Vec<String> {
    reports
        .iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(term, nodes)| format!("term {term} had more than one acting leader: {nodes:?}"))
        .collect()
}

/// A procedure as the catalog lists it.
#[derive(Debug, Clone)]
pub struct ProcedureRow {
    /// Its request id.
    pub request_id: String,
    /// `running`, `succeeded`, `rolled_back` or `failed`.
    pub state: String,
    /// The version it finished at.
    pub version: u64,
}

/// Every DDL that returned OK ran as exactly one procedure, which succeeded at the version
/// the answer reported; no procedure is still running or failed once the cluster healed.
pub fn procedures(ops: &[Op], rows: &[ProcedureRow]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_request: BTreeMap<&str, Vec<&ProcedureRow>> = BTreeMap::new();
    for row in rows {
        if !row.request_id.is_empty() {
            by_request.entry(&row.request_id).or_default().push(row);
        }
        if row.state == "running" || row.state == "failed" {
            violations.push(format!("procedure of request {:?} is {} after the heal", row.request_id, row.state));
        }
    }
    for (request_id, rows) in &by_request {
        if rows.len() > 1 {
            violations.push(format!("request {request_id} ran as {} procedures", rows.len()));
        }
    }
    let acknowledged: BTreeMap<&str, u64> = ops
        .iter()
        .filter(|op| op.is_ddl())
        .filter_map(|op| Some((op.request_id.as_str(), op.outcome.version()?)))
        .collect();
    for (request_id, version) in acknowledged {
        match by_request.get(request_id).and_then(|rows| rows.first()) {
            None => violations.push(format!("request {request_id} returned OK at {version} but ran no procedure")),
            Some(row) if row.state != "succeeded" || row.version != version => violations.push(format!(
                "request {request_id} returned OK at {version}, its procedure is {} at {}",
                row.state, row.version
            )),
            Some(_) => {}
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: &str, kind: &str, request_id: &str, invoke_us: u64, complete_us: u64, outcome: Outcome) -> Op {
        Op {
            process: process.into(),
            kind: kind.into(),
            target: "n1.t0".into(),
            request_id: request_id.into(),
            invoke_us,
            complete_us,
            outcome,
        }
    }

    fn ok(version: u64) -> Outcome {
        Outcome::Ok { version }
    }

    fn refused(reason: &str) -> Outcome {
        Outcome::Refused { code: "FailedPrecondition".into(), reason: reason.into() }
    }

    #[test]
    fn a_read_sent_after_a_ddl_returned_must_serve_its_version() {
        let history = [
            op("ddl-1", "create_table", "r1", 0, 100, ok(5)),
            op("reader-1", "resolve", "", 50, 60, ok(4)), // sent before the DDL returned
            op("reader-1", "resolve", "", 150, 160, ok(5)), // fine
            op("reader-2", "resolve", "", 150, 170, refused("FENCED")), // a refusal is fine
        ];
        assert_eq!(stale_reads(&history), Vec::<String>::new());
        let stale = [history[0].clone(), op("reader-2", "resolve", "", 101, 120, ok(4))];
        assert_eq!(stale_reads(&stale).len(), 1, "{:?}", stale_reads(&stale));
        let after_barrier =
            [op("barrier", "barrier", "", 0, 100, ok(9)), op("reader-1", "resolve", "", 200, 210, ok(8))];
        assert_eq!(stale_reads(&after_barrier).len(), 1);
    }

    #[test]
    fn a_lower_version_after_a_higher_one_still_counts_the_higher() {
        let history = [
            op("ddl-1", "create_table", "r1", 0, 100, ok(7)),
            op("ddl-2", "create_table", "r2", 0, 200, ok(6)),
            op("reader-1", "resolve", "", 300, 310, ok(6)),
        ];
        assert_eq!(stale_reads(&history).len(), 1);
    }

    #[test]
    fn ddl_answers_must_agree_and_follow_real_time() {
        let clean = [
            op(
                "ddl-1",
                "create_table",
                "r1",
                0,
                100,
                Outcome::Unknown { code: "Unavailable".into(), reason: String::new() },
            ),
            op("ddl-1", "create_table", "r1", 110, 200, ok(5)),
            op("ddl-1", "create_table", "r1", 210, 220, ok(5)),
            op("ddl-2", "create_table", "r2", 300, 400, ok(6)),
        ];
        assert_eq!(ddl_answers(&clean), Vec::<String>::new());
        let two_versions = [op("ddl-1", "x", "r1", 0, 1, ok(5)), op("ddl-1", "x", "r1", 2, 3, ok(6))];
        assert_eq!(ddl_answers(&two_versions).len(), 1);
        let ok_and_refused =
            [op("ddl-1", "x", "r1", 0, 1, ok(5)), op("ddl-1", "x", "r1", 2, 3, refused("ALREADY_EXISTS"))];
        assert_eq!(ddl_answers(&ok_and_refused).len(), 1);
        let resumed_together = [op("ddl-1", "x", "r1", 0, 10, ok(5)), op("ddl-2", "x", "r2", 0, 10, ok(5))];
        assert_eq!(ddl_answers(&resumed_together), Vec::<String>::new());
        let shared_in_order = [op("ddl-1", "x", "r1", 0, 1, ok(5)), op("ddl-2", "x", "r2", 2, 3, ok(5))];
        assert_eq!(ddl_answers(&shared_in_order).len(), 1);
        let backwards = [op("ddl-1", "x", "r1", 0, 100, ok(9)), op("ddl-2", "x", "r2", 150, 200, ok(8))];
        assert_eq!(ddl_answers(&backwards).len(), 1, "{:?}", ddl_answers(&backwards));
        let concurrent = [op("ddl-1", "x", "r1", 0, 100, ok(9)), op("ddl-2", "x", "r2", 50, 200, ok(8))];
        assert_eq!(ddl_answers(&concurrent), Vec::<String>::new());
        // r2's first send had no answer but may have run before r1 returned.
        let unknown = Outcome::Unknown { code: "Unavailable".into(), reason: String::new() };
        let retried = [
            op("ddl-2", "x", "r2", 50, 300, unknown),
            op("ddl-1", "x", "r1", 0, 100, ok(9)),
            op("ddl-2", "x", "r2", 310, 320, ok(8)),
        ];
        assert_eq!(ddl_answers(&retried), Vec::<String>::new());
    }

    #[test]
    fn two_leaders_in_one_term_are_reported() {
        let mut reports: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        reports.entry(1).or_default().insert("c1".into());
        reports.entry(2).or_default().insert("c2".into());
        assert!(one_leader_per_term(&reports).is_empty());
        reports.entry(2).or_default().insert("c3".into());
        assert_eq!(one_leader_per_term(&reports).len(), 1);
    }

    #[test]
    fn an_acknowledged_ddl_must_have_succeeded_once_at_its_version() {
        let history = [op("ddl-1", "x", "r1", 0, 1, ok(5))];
        let row = |request_id: &str, state: &str, version| ProcedureRow {
            request_id: request_id.into(),
            state: state.into(),
            version,
        };
        assert!(procedures(&history, &[row("r1", "succeeded", 5), row("r2", "rolled_back", 6)]).is_empty());
        assert_eq!(procedures(&history, &[row("r1", "rolled_back", 5)]).len(), 1);
        assert_eq!(procedures(&history, &[row("r1", "succeeded", 6)]).len(), 1);
        assert_eq!(procedures(&history, &[]).len(), 1);
        assert_eq!(procedures(&history, &[row("r1", "succeeded", 5), row("r1", "succeeded", 5)]).len(), 1);
        assert_eq!(procedures(&history, &[row("r1", "succeeded", 5), row("r3", "running", 0)]).len(), 1);
    }
}
