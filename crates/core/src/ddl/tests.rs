//! The DDL planner's tests: validation, plans per kind, drop orders and resync drops.

use super::*;
use crate::catalog::tests::{column, database, table, view};

fn spec(name: &str, category: Category) -> ColumnSpec {
    let data_type = if category == Category::Time { DataType::Timestamp } else { DataType::Int64 };
    ColumnSpec { name: name.into(), data_type, category, comment: String::new() }
}

fn create_table(columns: Vec<ColumnSpec>) -> DdlRequest {
    DdlRequest::CreateTable {
        database: "db".into(),
        name: "t".into(),
        columns,
        ttl: None,
        properties: BTreeMap::new(),
        comment: String::new(),
    }
}

fn catalog() -> Catalog {
    let mut catalog = Catalog::default();
    catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Visible))).unwrap();
    catalog.apply(&CatalogChange::PutTable(table("db", "existing", ObjectState::Visible))).unwrap();
    catalog
}

fn field_of(error: DdlError) -> String {
    match error {
        DdlError::Invalid { field, .. } => field,
        other => panic!("not an invalid-argument error: {other}"),
    }
}

#[test]
fn a_database_holding_another_procedures_hidden_table_is_not_dropped() {
    let mut catalog = catalog();
    catalog.apply(&CatalogChange::PutTable(table("db", "pre", ObjectState::Hidden))).unwrap();
    let drop = DdlRequest::DropDatabase { name: "db".into() };
    assert!(matches!(plan(&catalog, &drop), Err(DdlError::Busy { what }) if what == "table db.pre"));
    catalog.apply(&CatalogChange::RemoveTable { database: "db".into(), name: "pre".into() }).unwrap();
    assert!(plan(&catalog, &drop).is_ok(), "with only visible objects it drops");
}

#[test]
fn names_follow_the_pattern_and_avoid_reserved_words() {
    for good in ["t", "_x", "Table_1", &"a".repeat(64)] {
        validate_name("name", good).unwrap();
    }
    for bad in ["", "1abc", "a-b", "a b", "é", "select", "TABLE", &"a".repeat(65)] {
        assert!(validate_name("name", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn every_malformed_table_names_its_field() {
    let cases = [
        (create_table(vec![spec("v", Category::Field)]), "columns"),
        (create_table(vec![spec("time", Category::Time), spec("t2", Category::Time)]), "columns"),
        (
            create_table(vec![spec("time", Category::Time), spec("v", Category::Field), spec("V", Category::Tag)]),
            "columns[2].name",
        ),
        (create_table(vec![spec("time", Category::Time), spec("from", Category::Field)]), "columns[1].name"),
        (create_table(vec![]), "columns"),
        (
            create_table(vec![ColumnSpec { data_type: DataType::Int64, ..spec("time", Category::Time) }]),
            "columns[0].data_type",
        ),
    ];
    for (request, field) in cases {
        assert_eq!(field_of(validate(&request).unwrap_err()), field, "{request:?}");
    }
    let too_many = (0..=MAX_COLUMNS)
        .map(|i| spec(&format!("c{i}"), if i == 0 { Category::Time } else { Category::Field }))
        .collect();
    assert_eq!(field_of(validate(&create_table(too_many)).unwrap_err()), "columns");
    let properties: BTreeMap<_, _> = (0..=MAX_PROPERTIES).map(|i| (format!("k{i}"), String::new())).collect();
    let request = DdlRequest::CreateDatabase { name: "d".into(), ttl: None, properties };
    assert_eq!(field_of(validate(&request).unwrap_err()), "properties");
    let request = DdlRequest::CreateView { database: "db".into(), name: "v".into(), definition: " ".into() };
    assert_eq!(field_of(validate(&request).unwrap_err()), "definition");
    let request =
        DdlRequest::CreateDatabase { name: "d".into(), ttl: Some(Duration::ZERO), properties: BTreeMap::new() };
    assert_eq!(field_of(validate(&request).unwrap_err()), "ttl");
}

#[test]
fn create_table_is_hidden_until_commit_and_rolls_back_by_removal() {
    let request = create_table(vec![spec("time", Category::Time), spec("v", Category::Field)]);
    validate(&request).unwrap();
    let plan = plan(&catalog(), &request).unwrap();
    let CatalogChange::PutTable(prepared) = &plan.prepare else { panic!() };
    assert_eq!(prepared.state, ObjectState::Hidden);
    let Some(CatalogChange::PutTable(committed)) = &plan.commit else { panic!() };
    assert_eq!(committed.state, ObjectState::Visible);
    assert_eq!(plan.rollback, CatalogChange::RemoveTable { database: "db".into(), name: "t".into() });
    assert_eq!(plan.drop_data, None);
    assert_eq!(
        locks(&request),
        LockSet { database: "db".into(), database_exclusive: false, object: Some("table:t".into()) }
    );
}

#[test]
fn drop_table_marks_then_drops_data_then_removes() {
    let request = DdlRequest::DropTable { database: "db".into(), name: "existing".into() };
    let plan = plan(&catalog(), &request).unwrap();
    let CatalogChange::PutTable(marked) = &plan.prepare else { panic!() };
    assert_eq!(marked.state, ObjectState::Dropping);
    assert_eq!(
        plan.drop_data,
        Some(DataTarget::Table { database: "db".into(), table: "existing".into(), created_version: 2 })
    );
    assert_eq!(plan.commit, Some(CatalogChange::RemoveTable { database: "db".into(), name: "existing".into() }));
    let CatalogChange::PutTable(restored) = &plan.rollback else { panic!() };
    assert_eq!(restored.state, ObjectState::Visible);
}

#[test]
fn a_drop_order_is_recorded_on_its_marked_object_and_kept_until_the_object_goes() {
    let mut catalog = catalog();
    let request = DdlRequest::DropTable { database: "db".into(), name: "existing".into() };
    let plan = plan(&catalog, &request).unwrap();
    let target = plan.drop_data.clone().unwrap();
    assert_eq!(drop_order(&catalog, &target, 9), None, "not under its marker yet");
    catalog.apply(&catalog.stamp(&plan.prepare, 8)).unwrap();
    assert!(ordered_drops(&catalog).is_empty(), "a marker alone orders nothing");
    let ordered = drop_order(&catalog, &target, 9).unwrap();
    catalog.apply(&ordered).unwrap();
    assert_eq!(catalog.table("db", "existing").unwrap().drop_ordered_version, 9);
    assert_eq!(ordered_drops(&catalog), vec![target.clone()]);
    // A later put of the marked object (a plan made before the order) keeps the order.
    catalog.apply(&catalog.stamp(&plan.prepare, 10)).unwrap();
    assert_eq!(ordered_drops(&catalog), vec![target.clone()]);
    let recreated = DataTarget::Table { database: "db".into(), table: "existing".into(), created_version: 99 };
    assert_eq!(drop_order(&catalog, &recreated, 11), None, "another object by that name");
    catalog.apply(plan.commit.as_ref().unwrap()).unwrap();
    assert!(ordered_drops(&catalog).is_empty());
}

#[test]
fn a_drop_order_on_a_database_covers_its_tables_and_on_a_column_only_the_column() {
    let mut catalog = catalog();
    let mut marked = table("db", "existing", ObjectState::Visible);
    marked.columns[1].state = ObjectState::Dropping;
    let column_name = marked.columns[1].name.clone();
    catalog.apply(&CatalogChange::PutTable(marked.clone())).unwrap();
    let column_target = DataTarget::from_parts("db", "existing", &column_name, marked.columns[1].created_version);
    catalog.apply(&drop_order(&catalog, &column_target, 5).unwrap()).unwrap();
    assert_eq!(ordered_drops(&catalog), [column_target]);
    catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Dropping))).unwrap();
    let database_target = DataTarget::Database { database: "db".into(), created_version: 1 };
    catalog.apply(&drop_order(&catalog, &database_target, 6).unwrap()).unwrap();
    assert_eq!(ordered_drops(&catalog), [database_target], "the database covers what is in it");
}

#[test]
fn add_and_drop_column_go_through_hidden_and_marked_columns() {
    let add = DdlRequest::AlterTable {
        database: "db".into(),
        name: "existing".into(),
        action: AlterAction::AddColumn(spec("w", Category::Field)),
    };
    let added = plan(&catalog(), &add).unwrap();
    let CatalogChange::PutTable(prepared) = &added.prepare else { panic!() };
    assert_eq!(prepared.columns.last().unwrap().state, ObjectState::Hidden);
    let drop = DdlRequest::AlterTable {
        database: "db".into(),
        name: "existing".into(),
        action: AlterAction::DropColumn("V".into()),
    };
    let dropped = plan(&catalog(), &drop).unwrap();
    let CatalogChange::PutTable(marked) = &dropped.prepare else { panic!() };
    assert_eq!(marked.columns[1].state, ObjectState::Dropping);
    let Some(CatalogChange::PutTable(committed)) = &dropped.commit else { panic!() };
    assert_eq!(committed.columns.len(), 1);
    let time = DdlRequest::AlterTable {
        database: "db".into(),
        name: "existing".into(),
        action: AlterAction::DropColumn("time".into()),
    };
    assert!(matches!(plan(&catalog(), &time), Err(DdlError::Invalid { .. })));
}

#[test]
fn settings_change_in_one_phase() {
    let request = DdlRequest::AlterTable {
        database: "db".into(),
        name: "existing".into(),
        action: AlterAction::SetTtl(Some(Duration::from_secs(60))),
    };
    let plan = plan(&catalog(), &request).unwrap();
    assert_eq!(plan.commit, None);
    let CatalogChange::PutTable(changed) = &plan.prepare else { panic!() };
    assert_eq!(changed.ttl, Some(Duration::from_secs(60)));
}

#[test]
fn conflicts_are_named() {
    let mut busy = catalog();
    busy.apply(&CatalogChange::PutTable(table("db", "going", ObjectState::Dropping))).unwrap();
    let cases = [
        (DdlRequest::DropTable { database: "db".into(), name: "missing".into() }, "does not exist"),
        (DdlRequest::DropTable { database: "nodb".into(), name: "t".into() }, "database nodb does not exist"),
        (DdlRequest::DropTable { database: "db".into(), name: "going".into() }, "being changed"),
        (DdlRequest::CreateDatabase { name: "db".into(), ttl: None, properties: BTreeMap::new() }, "already exists"),
    ];
    for (request, message) in cases {
        let error = plan(&busy, &request).unwrap_err().to_string();
        assert!(error.contains(message), "{request:?}: {error}");
    }
}

#[test]
fn drop_database_takes_the_database_exclusively() {
    let request = DdlRequest::DropDatabase { name: "db".into() };
    assert_eq!(locks(&request), LockSet { database: "db".into(), database_exclusive: true, object: None });
    let plan = plan(&catalog(), &request).unwrap();
    assert_eq!(plan.drop_data, Some(DataTarget::Database { database: "db".into(), created_version: 1 }));
}

#[test]
fn what_a_node_must_drop_after_missing_drops_and_recreations() {
    let stamped = |catalog: &mut Catalog, change: CatalogChange, version: u64| {
        let change = catalog.stamp(&change, version);
        catalog.apply(&change).unwrap();
    };
    let mut before = Catalog::default();
    stamped(&mut before, CatalogChange::PutDatabase(database("db", ObjectState::Visible)), 1);
    stamped(&mut before, CatalogChange::PutDatabase(database("gone_db", ObjectState::Visible)), 2);
    stamped(&mut before, CatalogChange::PutTable(table("gone_db", "t", ObjectState::Visible)), 3);
    for (version, name) in [(4, "kept"), (5, "dropped"), (6, "recreated"), (7, "altered")] {
        stamped(&mut before, CatalogChange::PutTable(table("db", name, ObjectState::Visible)), version);
    }

    // What happened while the node could not hear.
    let mut after = before.clone();
    after.apply(&CatalogChange::RemoveDatabase { name: "gone_db".into() }).unwrap();
    after.apply(&CatalogChange::RemoveTable { database: "db".into(), name: "dropped".into() }).unwrap();
    after.apply(&CatalogChange::RemoveTable { database: "db".into(), name: "recreated".into() }).unwrap();
    stamped(&mut after, CatalogChange::PutTable(table("db", "recreated", ObjectState::Visible)), 8);
    let mut altered = after.table("db", "altered").unwrap().clone();
    altered.columns.retain(|column| column.name != "v");
    stamped(&mut after, CatalogChange::PutTable(altered.clone()), 9);
    altered.columns.push(column("v", Category::Field, ObjectState::Visible));
    altered.columns.push(column("w", Category::Field, ObjectState::Visible));
    stamped(&mut after, CatalogChange::PutTable(altered), 10);

    let column_data = |name: &str, created_version| DataTarget::Column {
        database: "db".into(),
        table: "altered".into(),
        column: name.into(),
        created_version,
    };
    assert_eq!(
        dropped_between(&before, &after),
        [
            column_data("v", 7), // dropped and added again: another column, so the old data goes
            DataTarget::Table { database: "db".into(), table: "dropped".into(), created_version: 5 },
            DataTarget::Table { database: "db".into(), table: "recreated".into(), created_version: 6 },
            DataTarget::Database { database: "gone_db".into(), created_version: 2 },
        ]
    );
    assert!(dropped_between(&after, &after).is_empty(), "nothing to drop when nothing changed");
}

#[test]
fn an_order_is_skipped_only_when_another_object_holds_its_name() {
    let mut catalog = catalog();
    let marked = Table { state: ObjectState::Dropping, version: 3, ..table("db", "t", ObjectState::Visible) };
    catalog.apply(&CatalogChange::PutTable(marked)).unwrap();
    let legacy_order = DataTarget::from_parts("db", "t", "", 0);
    assert!(legacy_order.recreated_in(&catalog, 2));
    assert!(!legacy_order.recreated_in(&catalog, 3));
    assert!(!DataTarget::from_parts("db", "t", "", 2).recreated_in(&catalog, 4), "the same table");
    assert!(DataTarget::from_parts("db", "t", "", 1).recreated_in(&catalog, 4), "another table by that name");
    assert!(DataTarget::from_parts("db", "t", "time", 1).recreated_in(&catalog, 4), "another column by that name");
    assert!(!DataTarget::from_parts("db", "gone", "", 1).recreated_in(&catalog, 4), "nothing in its place");
}

#[test]
fn a_resync_drops_only_against_a_newer_snapshot_of_the_same_epoch() {
    let before = catalog();
    let mut after = before.clone();
    after.apply(&CatalogChange::RemoveTable { database: "db".into(), name: "existing".into() }).unwrap();
    let held = |store_epoch, version, catalog| HeldCatalog { store_epoch, version, catalog };
    assert_eq!(drops_after_resync(held("e1", 5, &before), held("e2", 9, &after)), ResyncDrops::EpochChanged);
    assert_eq!(drops_after_resync(held("e1", 5, &before), held("e1", 4, &after)), ResyncDrops::OlderSnapshot);
    assert_eq!(
        drops_after_resync(held("e1", 5, &before), held("e1", 9, &after)),
        ResyncDrops::Drop(vec![DataTarget::from_parts("db", "existing", "", 2)])
    );
}

#[test]
fn every_plan_has_a_kind_a_new_leader_can_resume() {
    let mut catalog = catalog();
    catalog.apply(&CatalogChange::PutView(view("db", "v", ObjectState::Visible, 3))).unwrap();
    let alter = |action| DdlRequest::AlterTable { database: "db".into(), name: "existing".into(), action };
    let requests = [
        DdlRequest::CreateDatabase { name: "db2".into(), ttl: None, properties: BTreeMap::new() },
        DdlRequest::DropDatabase { name: "db".into() },
        create_table(vec![spec("time", Category::Time)]),
        DdlRequest::DropTable { database: "db".into(), name: "existing".into() },
        alter(AlterAction::AddColumn(spec("w", Category::Field))),
        alter(AlterAction::DropColumn("v".into())),
        alter(AlterAction::SetTtl(None)),
        alter(AlterAction::SetProperties { set: BTreeMap::new(), unset: Vec::new() }),
        alter(AlterAction::SetComment(String::new())),
        DdlRequest::CreateView { database: "db".into(), name: "v2".into(), definition: "SELECT 1".into() },
        DdlRequest::DropView { database: "db".into(), name: "v".into() },
    ];
    let kinds: BTreeSet<DdlKind> = requests.iter().map(|request| plan(&catalog, request).unwrap().kind).collect();
    assert_eq!(kinds, DdlKind::ALL.into_iter().collect(), "every kind planned, and only those");
}

#[test]
fn a_snapshot_asks_the_host_about_reversible_objects_it_does_not_hold_as_they_are() {
    let held = catalog();
    let mut installed = catalog();
    let mut hidden = table("db", "new", ObjectState::Hidden);
    hidden.version = 7;
    let mut marked = table("db", "existing", ObjectState::Dropping);
    marked.version = 8;
    let mut ordered = table("db", "ordered", ObjectState::Dropping);
    ordered.drop_ordered_version = 9;
    let mut added_column = table("db", "wide", ObjectState::Visible);
    added_column.columns.push(column("w", Category::Field, ObjectState::Hidden));
    added_column.version = 10;
    for change in [&hidden, &marked, &ordered, &added_column] {
        installed.apply(&CatalogChange::PutTable(change.clone())).unwrap();
    }
    installed.apply(&CatalogChange::PutView(view("db", "pending", ObjectState::Hidden, 11))).unwrap();

    let versions = |puts: Vec<(u64, CatalogChange)>| puts.into_iter().map(|(version, _)| version).collect::<Vec<_>>();
    assert_eq!(
        versions(reversible_puts(Some(&held), &installed)),
        [8, 7, 10, 11],
        "the marker, the hidden table, the hidden column and the hidden view; not the ordered drop"
    );
    assert_eq!(versions(reversible_puts(Some(&installed), &installed)), Vec::<u64>::new(), "held as they are");
    assert_eq!(versions(reversible_puts(None, &catalog())), Vec::<u64>::new(), "nothing pending, nothing asked");
    let mut held_before_the_column = installed.clone();
    held_before_the_column.apply(&CatalogChange::PutTable(table("db", "wide", ObjectState::Visible))).unwrap();
    assert_eq!(versions(reversible_puts(Some(&held_before_the_column), &installed)), [10]);
}

#[test]
fn a_batch_skips_what_it_holds_refuses_a_gap_and_records_drop_orders() {
    let mut before = catalog();
    let request = DdlRequest::DropTable { database: "db".into(), name: "existing".into() };
    let plan = plan(&before, &request).unwrap();
    before.apply(&before.stamp(&plan.prepare, 5)).unwrap();
    let target = plan.drop_data.clone().unwrap();

    let mut batch = CatalogBatch::new(&before, 5);
    assert_eq!(batch.admits(5), Ok(false), "already held: skipped");
    assert_eq!(batch.admits(7), Err(BatchRefusal::Gap { have: 5, next: 7 }));
    assert_eq!(batch.admits(6), Ok(true));
    assert!(batch.drop_is_due(&target, 5), "the marked table is the one the order is about");
    batch.apply(6, &CacheChange::DropData { target: target.clone(), marker_version: 5 }).unwrap();
    batch.apply(7, &CacheChange::Other).unwrap();
    let (version, after) = batch.finish();
    assert_eq!(version, 7);
    let after = after.expect("the drop order changed the catalog");
    assert_eq!(ordered_drops(&after), std::slice::from_ref(&target), "the order is recorded on the marked table");

    let mut dropped = BTreeSet::from([target.clone()]);
    keep_pending_drops(&mut dropped, &after);
    assert_eq!(dropped.len(), 1, "still under its marker: kept");
    keep_pending_drops(&mut dropped, &before);
    assert!(dropped.is_empty(), "no order in that catalog: forgotten");
}

#[test]
fn a_batch_never_drops_the_data_of_an_object_created_again() {
    let mut before = catalog();
    // The table was dropped at 3 and created again at 4; the order of the old one's marker
    // arrives late.
    before
        .apply(&CatalogChange::PutTable(Table {
            version: 4,
            created_version: 4,
            ..table("db", "t", ObjectState::Visible)
        }))
        .unwrap();
    let batch = CatalogBatch::new(&before, 4);
    assert!(!batch.drop_is_due(&DataTarget::from_parts("db", "t", "", 1), 3));
}

#[test]
fn a_resync_plan_asks_first_then_drops_what_went_and_what_was_ordered() {
    let mut held = catalog();
    held.apply(&CatalogChange::PutTable(table("db", "gone", ObjectState::Visible))).unwrap();
    let mut installed = catalog();
    installed.apply(&CatalogChange::RemoveTable { database: "db".into(), name: "existing".into() }).unwrap();
    installed.apply(&CatalogChange::PutTable(table("db", "existing", ObjectState::Hidden))).unwrap();
    let marked =
        Table { state: ObjectState::Dropping, drop_ordered_version: 8, ..table("db", "ordered", ObjectState::Visible) };
    installed.apply(&CatalogChange::PutTable(marked)).unwrap();
    let at = |store_epoch, version, catalog| HeldCatalog { store_epoch, version, catalog };

    let plan = resync_plan(Some(at("e1", 5, &held)), at("e1", 9, &installed), &BTreeSet::new());
    assert_eq!(plan.vetoes.len(), 1, "the hidden table is asked about: {:?}", plan.vetoes);
    let drops: Vec<DropReason> = plan.drops.iter().map(|(_, why)| *why).collect();
    assert!(drops.contains(&DropReason::Resync) && drops.ends_with(&[DropReason::Ordered]), "{:?}", plan.drops);
    assert_eq!(plan.not_compared, None);

    let ordered = plan.drops.last().unwrap().0.clone();
    let again = resync_plan(None, at("e1", 9, &installed), &BTreeSet::from([ordered]));
    assert!(again.drops.is_empty(), "an order carried out is not carried out again: {:?}", again.drops);

    let other_epoch = resync_plan(Some(at("e0", 5, &held)), at("e1", 9, &installed), &BTreeSet::new());
    assert_eq!(other_epoch.not_compared, Some(ResyncDrops::EpochChanged));
    assert!(other_epoch.drops.iter().all(|(_, why)| *why == DropReason::Ordered));
    assert_eq!(other_epoch.vetoes.len(), 1, "nothing of another epoch counts as held");
}
