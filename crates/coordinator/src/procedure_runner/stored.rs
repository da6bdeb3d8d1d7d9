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
    use std::collections::BTreeMap;

    #[test]
    fn stored_plans_round_trip() {
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
        let decoded = StoredPlan::decode(stored_plan(&plan, &locks, vec![7]).encode_to_vec().as_slice()).unwrap();
        assert_eq!(plan_of(&decoded), Some((plan, locks)));
    }
}
