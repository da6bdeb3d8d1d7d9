//! Data targets and drop orders: what an irreversible step deletes, how a marked object
//! records its drop order, and what a data node drops when it installs a snapshot.

use super::*;

/// Data an irreversible step deletes on every data node. Each target names the creation
/// version of the object it belongs to, so a host that keys its data by it never deletes the
/// data of an object created again under the same name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataTarget {
    /// Everything of a database.
    Database {
        /// The database.
        database: String,
        /// Its creation version.
        created_version: u64,
    },
    /// A table's data.
    Table {
        /// Its database.
        database: String,
        /// The table.
        table: String,
        /// Its creation version.
        created_version: u64,
    },
    /// One column's data.
    Column {
        /// Its database.
        database: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its creation version.
        created_version: u64,
    },
}

impl DataTarget {
    /// The target named the way messages name it: an empty table means the whole database,
    /// an empty column the whole table.
    pub fn from_parts(database: &str, table: &str, column: &str, created_version: u64) -> DataTarget {
        let database = database.to_owned();
        match (table.is_empty(), column.is_empty()) {
            (true, _) => DataTarget::Database { database, created_version },
            (false, true) => DataTarget::Table { database, table: table.to_owned(), created_version },
            (false, false) => {
                DataTarget::Column { database, table: table.to_owned(), column: column.to_owned(), created_version }
            }
        }
    }

    /// Database, table (empty for a database), column (empty for a table) and creation
    /// version, the way messages name the target.
    pub fn parts(&self) -> (&str, &str, &str, u64) {
        match self {
            DataTarget::Database { database, created_version } => (database, "", "", *created_version),
            DataTarget::Table { database, table, created_version } => (database, table, "", *created_version),
            DataTarget::Column { database, table, column, created_version } => {
                (database, table, column, *created_version)
            }
        }
    }
}

impl DataTarget {
    /// Whether the object this order to drop data names was created again since the order
    /// was given: `catalog` holds an object under its name with another creation version.
    /// Orders from before creation versions were recorded (0) compare the object's last
    /// change with the pre-delete marker instead.
    pub fn recreated_in(&self, catalog: &Catalog, marker_version: u64) -> bool {
        let (database, table, column, created_version) = self.parts();
        if created_version == 0 {
            let newer_database = catalog.database(database).is_some_and(|db| db.version > marker_version);
            let newer_table =
                !table.is_empty() && catalog.table(database, table).is_some_and(|t| t.version > marker_version);
            return newer_database || newer_table;
        }
        let other = |created: u64| created != created_version;
        match self {
            DataTarget::Database { .. } => catalog.database(database).is_some_and(|db| other(db.created_version)),
            DataTarget::Table { .. } => catalog.table(database, table).is_some_and(|t| other(t.created_version)),
            DataTarget::Column { .. } => {
                catalog.table(database, table).and_then(|t| t.column(column)).is_some_and(|c| other(c.created_version))
            }
        }
    }
}

/// A catalog as a data node holds it: with its store epoch and version.
#[derive(Debug, Clone, Copy)]
pub struct HeldCatalog<'a> {
    /// The store epoch its versions belong to.
    pub store_epoch: &'a str,
    /// Its version.
    pub version: u64,
    /// The catalog.
    pub catalog: &'a Catalog,
}

/// What a data node does about the data of the catalog it held when it installs a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResyncDrops {
    /// The snapshot is of another store epoch: creation versions cannot be compared, so
    /// nothing is dropped on its word (the host judges from the catalog alone).
    EpochChanged,
    /// The snapshot is older than what the node held. Committed changes are never taken
    /// back, so it is not the newest word, and what it lacks may be newer than it: keep the
    /// data and judge at the next resync.
    OlderSnapshot,
    /// Delete these (possibly none).
    Drop(Vec<DataTarget>),
}

/// What a node that held `before` and installs the snapshot `after` must drop: see
/// [`ResyncDrops`] and [`dropped_between`].
pub fn drops_after_resync(before: HeldCatalog<'_>, after: HeldCatalog<'_>) -> ResyncDrops {
    if before.store_epoch != after.store_epoch {
        ResyncDrops::EpochChanged
    } else if after.version < before.version {
        ResyncDrops::OlderSnapshot
    } else {
        ResyncDrops::Drop(dropped_between(before.catalog, after.catalog))
    }
}

/// The data a node that held `before` must delete to hold only what `after` has: every
/// database, table and column of `before` that `after` lacks, or has under the same name
/// but with another creation version (dropped and created again), outermost first and
/// without repeating what an outer target already covers. Views hold no data. Both catalogs
/// must come from the same store epoch, where creation versions are comparable.
pub fn dropped_between(before: &Catalog, after: &Catalog) -> Vec<DataTarget> {
    let mut targets = Vec::new();
    for database in before.databases() {
        let same_database =
            after.database(&database.name).is_some_and(|now| now.created_version == database.created_version);
        if !same_database {
            targets.push(DataTarget::Database {
                database: database.name.clone(),
                created_version: database.created_version,
            });
            continue;
        }
        for table in before.tables(&database.name) {
            let now =
                after.table(&database.name, &table.name).filter(|now| now.created_version == table.created_version);
            let Some(now) = now else {
                targets.push(DataTarget::Table {
                    database: database.name.clone(),
                    table: table.name.clone(),
                    created_version: table.created_version,
                });
                continue;
            };
            for column in &table.columns {
                let kept = now.column(&column.name).is_some_and(|kept| kept.created_version == column.created_version);
                if !kept {
                    targets.push(DataTarget::Column {
                        database: database.name.clone(),
                        table: table.name.clone(),
                        column: column.name.clone(),
                        created_version: column.created_version,
                    });
                }
            }
        }
    }
    targets
}

/// The order to delete `target`'s data, given at `version`, as the put that records it on
/// the object it names: the object under its pre-delete marker (by name, and by creation
/// version when the order names one) carries `drop_ordered_version = version` from then on,
/// in the store and in every snapshot, so a data node that learns of the order only from a
/// snapshot (it fenced, fell behind a gap, or restarted) still deletes the data before it
/// counts that version. `None` when no such marked object is there.
pub fn drop_order(catalog: &Catalog, target: &DataTarget, version: u64) -> Option<CatalogChange> {
    let (database, table, column, created_version) = target.parts();
    let same = |created: u64| created_version == 0 || created == created_version;
    match target {
        DataTarget::Database { .. } => {
            let marked = catalog
                .database(database)
                .filter(|db| db.state == ObjectState::Dropping && same(db.created_version))?;
            Some(CatalogChange::PutDatabase(Database { drop_ordered_version: version, ..marked.clone() }))
        }
        DataTarget::Table { .. } => {
            let marked = catalog
                .table(database, table)
                .filter(|t| t.state == ObjectState::Dropping && same(t.created_version))?;
            Some(CatalogChange::PutTable(Table { drop_ordered_version: version, ..marked.clone() }))
        }
        DataTarget::Column { .. } => {
            let mut owner = catalog.table(database, table)?.clone();
            let marked = owner.columns.iter_mut().find(|c| {
                c.name.eq_ignore_ascii_case(column) && c.state == ObjectState::Dropping && same(c.created_version)
            })?;
            marked.drop_ordered_version = version;
            Some(CatalogChange::PutTable(owner))
        }
    }
}

/// The data a node holding `catalog` must have deleted before it counts the catalog's
/// version: every database, table and column under a pre-delete marker whose order to drop
/// was given (outermost first, nothing an outer target covers repeated).
pub fn ordered_drops(catalog: &Catalog) -> Vec<DataTarget> {
    let ordered = |state: ObjectState, order: u64| state == ObjectState::Dropping && order > 0;
    let mut targets = Vec::new();
    for database in catalog.databases() {
        let name = &database.name;
        if ordered(database.state, database.drop_ordered_version) {
            targets.push(DataTarget::Database { database: name.clone(), created_version: database.created_version });
            continue;
        }
        for table in catalog.tables(name) {
            if ordered(table.state, table.drop_ordered_version) {
                let created_version = table.created_version;
                targets.push(DataTarget::Table { database: name.clone(), table: table.name.clone(), created_version });
                continue;
            }
            for column in table.columns.iter().filter(|c| ordered(c.state, c.drop_ordered_version)) {
                targets.push(DataTarget::Column {
                    database: name.clone(),
                    table: table.name.clone(),
                    column: column.name.clone(),
                    created_version: column.created_version,
                });
            }
        }
    }
    targets
}

/// Whether an object in `state` is in a DDL's reversible step: pre-created, or under a
/// pre-delete marker whose order to drop was not given yet (`drop_ordered_version` 0).
fn reversible(state: ObjectState, drop_ordered_version: u64) -> bool {
    match state {
        ObjectState::Hidden => true,
        ObjectState::Dropping => drop_ordered_version == 0,
        ObjectState::Visible => false,
    }
}

/// The objects of `installed` (a snapshot a data node is about to install) that are in a
/// reversible step — the object itself, or for a table one of its columns — and that `held`
/// lacks or holds otherwise: each as the put that makes it, with the version it changed at.
/// `held` is `None` when the node holds nothing of the snapshot's store epoch.
///
/// A node asks its host about these before the snapshot counts, as it asks about every
/// change: otherwise a node whose host refused a prepare would install it by resyncing (its
/// refusal answered by a snapshot that carries the prepare), and the host's veto would hold
/// only while the leader that heard it lives. Committed objects and ordered drops are not
/// asked about: they only roll forward, and no refusal could undo them.
pub fn reversible_puts(held: Option<&Catalog>, installed: &Catalog) -> Vec<(u64, CatalogChange)> {
    let mut puts = Vec::new();
    for database in installed.databases() {
        let name = &database.name;
        if reversible(database.state, database.drop_ordered_version)
            && held.and_then(|held| held.database(name)) != Some(database)
        {
            puts.push((database.version, CatalogChange::PutDatabase(database.clone())));
        }
        for table in installed.tables(name) {
            let pending = reversible(table.state, table.drop_ordered_version)
                || table.columns.iter().any(|column| reversible(column.state, column.drop_ordered_version));
            if pending && held.and_then(|held| held.table(name, &table.name)) != Some(table) {
                puts.push((table.version, CatalogChange::PutTable(table.clone())));
            }
        }
        for view in installed.views(name) {
            if reversible(view.state, 0) && held.and_then(|held| held.view(name, &view.name)) != Some(view) {
                puts.push((view.version, CatalogChange::PutView(view.clone())));
            }
        }
    }
    puts
}
