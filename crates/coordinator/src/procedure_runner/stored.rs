//! A procedure as the store keeps it: the plan and locks it was started with, and the digest
//! that tells a retried request from a new one under the same request id.

use super::*;

/// The digest a request id is bound to. The request's debug form is canonical within a build
/// (maps are sorted, lists keep their order); a retry that spans an upgrade which changed that
/// form is refused as a reuse, never applied as another request: the safe direction.
pub(super) fn request_digest(request: &DdlRequest) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("{request:?}").as_bytes()).to_vec()
}

/// The version a finished procedure answers with: the one its row holds, or the newest
/// published one for procedures finished before that was recorded.
pub(super) fn answer_version(row: Option<&ProcedureRow>, leader: &MetadataLeader) -> u64 {
    row.map(|row| row.result_version).filter(|version| *version > 0).unwrap_or_else(|| leader.version())
}

/// Refuses `existing` as the outcome of a request with `digest` when it was made for another.
pub(super) fn same_request(existing: &ProcedureRow, digest: &[u8]) -> Result<(), DdlFailure> {
    let stored = StoredPlan::decode(existing.request.as_slice()).map(|plan| plan.request_digest).unwrap_or_default();
    if stored.is_empty() || stored == digest {
        return Ok(());
    }
    Err(DdlFailure::RequestIdReused {
        request_id: existing.request_id.clone().unwrap_or_default(),
        procedure_id: existing.id,
    })
}

/// What a new leader resumes of a procedure it finds running: its plan, locks and step, or why
/// this version cannot resume it (naming the value it does not know).
pub(super) fn resumable(row: &ProcedureRow) -> Result<(DdlPlan, LockSet, Step), String> {
    row.kind.known().map_err(|unknown| unknown.to_string())?;
    let step = row.step.known().map_err(|unknown| unknown.to_string())?;
    let (plan, locks) = StoredPlan::decode(row.request.as_slice())
        .ok()
        .as_ref()
        .and_then(plan_of)
        .ok_or_else(|| "unreadable plan".to_owned())?;
    Ok((plan, locks, step))
}

pub(super) fn stored_plan(plan: &DdlPlan, locks: &LockSet, request_digest: Vec<u8>) -> StoredPlan {
    let change = |change| Some(leasehold::catalog::change_message(change));
    StoredPlan {
        kind: plan.kind.as_str().to_owned(),
        target: plan.target.clone(),
        prepare: change(&plan.prepare),
        commit: plan.commit.as_ref().and_then(change),
        rollback: change(&plan.rollback),
        drop_data: plan.drop_data.as_ref().map(|target| {
            let (database, table, column, created_version) = target.parts();
            v1::DataTargetMessage {
                database: database.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
                created_version,
            }
        }),
        lock_database: locks.database.clone(),
        lock_database_exclusive: locks.database_exclusive,
        lock_object: locks.object.clone().unwrap_or_default(),
        request_digest,
    }
}

pub(super) fn plan_of(stored: &StoredPlan) -> Option<(DdlPlan, LockSet)> {
    let change = |message: &Option<v1::CatalogChange>| message.as_ref().and_then(leasehold::catalog::change_of);
    let kind = DdlKind::from_stored(&stored.kind)?;
    let drop_data = stored
        .drop_data
        .as_ref()
        .map(|target| DataTarget::from_parts(&target.database, &target.table, &target.column, target.created_version));
    let plan = DdlPlan {
        kind,
        target: stored.target.clone(),
        prepare: change(&stored.prepare)?,
        drop_data,
        commit: change(&stored.commit),
        rollback: change(&stored.rollback)?,
    };
    let locks = LockSet {
        database: stored.lock_database.clone(),
        database_exclusive: stored.lock_database_exclusive,
        object: (!stored.lock_object.is_empty()).then(|| stored.lock_object.clone()),
    };
    Some((plan, locks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::catalog::{CatalogChange, ObjectState, Table};
    use leasehold_store::Stored;
    use std::collections::BTreeMap;

    fn drop_column() -> (DdlPlan, LockSet) {
        let table = Table {
            database: "db".into(),
            name: "t".into(),
            columns: vec![],
            ttl: None,
            properties: BTreeMap::new(),
            comment: String::new(),
            state: ObjectState::Dropping,
            version: 0,
            created_version: 0,
            drop_ordered_version: 0,
        };
        let plan = DdlPlan {
            kind: DdlKind::DropColumn,
            target: "db.t".into(),
            prepare: CatalogChange::PutTable(table.clone()),
            drop_data: Some(DataTarget::from_parts("db", "t", "c", 7)),
            commit: Some(CatalogChange::PutTable(Table { state: ObjectState::Visible, ..table.clone() })),
            rollback: CatalogChange::PutTable(table),
        };
        let locks = LockSet { database: "db".into(), database_exclusive: false, object: Some("table:t".into()) };
        (plan, locks)
    }

    #[test]
    fn stored_plans_round_trip() {
        let (plan, locks) = drop_column();
        let decoded = StoredPlan::decode(stored_plan(&plan, &locks, vec![7]).encode_to_vec().as_slice()).unwrap();
        assert_eq!(plan_of(&decoded), Some((plan, locks)));
    }

    #[test]
    fn a_procedure_at_an_unknown_step_or_kind_is_left_and_the_others_resume() {
        let (plan, locks) = drop_column();
        let row = |id: u64, step: Stored<Step>| ProcedureRow {
            id,
            kind: plan.kind.into(),
            target: plan.target.clone(),
            step,
            state: State::Running.into(),
            error: String::new(),
            request_id: None,
            request: stored_plan(&plan, &locks, vec![7]).encode_to_vec(),
            term: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            result_version: 0,
        };
        let rows = [
            row(1, Step::Prepared.into()),
            row(2, Stored::Unknown("validating".into())),
            ProcedureRow { kind: Stored::Unknown("rename_table".into()), ..row(3, Step::Prepared.into()) },
            ProcedureRow { request: vec![0xff], ..row(4, Step::Prepared.into()) },
            row(5, Step::DroppingData.into()),
        ];
        let decided: Vec<_> = rows.iter().map(|row| (row.id, resumable(row).map(|(_, _, step)| step))).collect();
        assert_eq!(
            decided,
            [
                (1, Ok(Step::Prepared)),
                (2, Err(r#"unknown step "validating""#.to_owned())),
                (3, Err(r#"unknown kind "rename_table""#.to_owned())),
                (4, Err("unreadable plan".to_owned())),
                (5, Ok(Step::DroppingData)),
            ]
        );
        assert_eq!(resumable(&rows[0]).map(|(plan, locks, _)| (plan, locks)), Ok((plan.clone(), locks.clone())));
    }
}
