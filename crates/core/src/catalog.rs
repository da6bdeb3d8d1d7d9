//! The catalog as a value: databases, tables (columns, TTL, properties, comment) and views,
//! each with a state that makes two-phase DDL visible to nobody until it commits (DESIGN §5).
//!
//! The same type serves the leader (authoritative, loaded from the store) and every agent
//! (its cache): both apply the same [`CatalogChange`]s in version order. What a reader may see
//! is decided here too: [`Catalog::visible_table`] hides pre-created objects and pre-added
//! columns, and anything under a pre-delete marker.

use std::collections::BTreeMap;
use std::time::Duration;

/// A column's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOLEAN`
    Boolean,
    /// `INT32`
    Int32,
    /// `INT64`
    Int64,
    /// `FLOAT`
    Float,
    /// `DOUBLE`
    Double,
    /// `TEXT`
    Text,
    /// `BLOB`
    Blob,
    /// `TIMESTAMP`
    Timestamp,
}

/// A column's role in a time-series table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The time column: exactly one per table.
    Time,
    /// An identifying tag.
    Tag,
    /// A measured value.
    Field,
    /// A descriptive attribute.
    Attribute,
}

/// Where an object stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ObjectState {
    /// Readable and writable.
    #[default]
    Visible,
    /// Pre-created (or a pre-added column): held everywhere, readable and writable nowhere,
    /// until the DDL commits.
    Hidden,
    /// Under a pre-delete marker: invisible and unwritable at once everywhere.
    Dropping,
}

/// A table column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
    /// Its category.
    pub category: Category,
    /// A comment.
    pub comment: String,
    /// Its state (a pre-added column is `Hidden`, a pre-dropped one `Dropping`).
    pub state: ObjectState,
    /// The version that created it; a column dropped and added again under the same name is
    /// another column. 0 for columns created before creation versions were recorded.
    pub created_version: u64,
    /// Under a pre-delete marker, the version of the order to delete its data; 0 while no
    /// order was given. A data node that holds this at or past that version must have deleted
    /// the data (see [`Catalog::ordered_drops`]).
    pub drop_ordered_version: u64,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Its database.
    pub database: String,
    /// Its name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// Its own TTL; `None` inherits the database's.
    pub ttl: Option<Duration>,
    /// Free-form properties.
    pub properties: BTreeMap<String, String>,
    /// A comment.
    pub comment: String,
    /// Its state.
    pub state: ObjectState,
    /// The version that last changed it.
    pub version: u64,
    /// The version that created it: an object dropped and created again under the same name
    /// is another object, whose data is not the old one's. 0 for objects created before
    /// creation versions were recorded.
    pub created_version: u64,
    /// Under a pre-delete marker, the version of the order to delete its data; 0 while no
    /// order was given. A data node that holds this at or past that version must have deleted
    /// the data (see [`Catalog::ordered_drops`]).
    pub drop_ordered_version: u64,
}

impl Table {
    /// The column named `name`, in whatever state (column names compare case-insensitively).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name.eq_ignore_ascii_case(name))
    }
}

/// A database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// The default TTL of its tables.
    pub ttl: Option<Duration>,
    /// Free-form properties.
    pub properties: BTreeMap<String, String>,
    /// Its state.
    pub state: ObjectState,
    /// The version that last changed it.
    pub version: u64,
    /// The version that created it: an object dropped and created again under the same name
    /// is another object, whose data is not the old one's. 0 for objects created before
    /// creation versions were recorded.
    pub created_version: u64,
    /// Under a pre-delete marker, the version of the order to delete its data; 0 while no
    /// order was given. A data node that holds this at or past that version must have deleted
    /// the data (see [`Catalog::ordered_drops`]).
    pub drop_ordered_version: u64,
}

/// A view: a name and its definition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Its database.
    pub database: String,
    /// Its name.
    pub name: String,
    /// Its definition.
    pub definition: String,
    /// Its state.
    pub state: ObjectState,
    /// The version that last changed it.
    pub version: u64,
    /// The version that created it: an object dropped and created again under the same name
    /// is another object, whose data is not the old one's. 0 for objects created before
    /// creation versions were recorded.
    pub created_version: u64,
}

/// The effect of one committed change on the catalog. Puts carry the whole object, so
/// applying a change twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    /// Create or replace a database (its tables and views stay).
    PutDatabase(Database),
    /// Remove a database with everything in it.
    RemoveDatabase {
        /// The database.
        name: String,
    },
    /// Create or replace a table.
    PutTable(Table),
    /// Remove a table.
    RemoveTable {
        /// Its database.
        database: String,
        /// The table.
        name: String,
    },
    /// Create or replace a view.
    PutView(View),
    /// Remove a view.
    RemoveView {
        /// Its database.
        database: String,
        /// The view.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    database: Database,
    tables: BTreeMap<String, Table>,
    views: BTreeMap<String, View>,
}

/// A put that has no database to go into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {database}.{name} is orphaned: {reason}")]
pub struct Orphaned {
    /// `table` or `view`.
    pub kind: &'static str,
    /// The database it names.
    pub database: String,
    /// Its name.
    pub name: String,
    /// Why it has no parent.
    pub reason: &'static str,
}

/// The whole catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    databases: BTreeMap<String, Entry>,
}

/// The drop order a put keeps from the object it replaces: an order, once given, stays with
/// the object for as long as it is under its marker, whatever a later put of it carries (a
/// plan is made before its order is given); an object out of its marker has none.
fn kept_drop_order(state: ObjectState, old: Option<u64>) -> u64 {
    match state {
        ObjectState::Dropping => old.unwrap_or(0),
        ObjectState::Visible | ObjectState::Hidden => 0,
    }
}

impl Catalog {
    /// Applies one committed change. A put of a table or view whose database this catalog
    /// does not hold (or holds as a database created after the object) is refused and changes
    /// nothing: applied, it would be invisible here and reappear wherever the database is
    /// created again and the object loaded from its row.
    pub fn apply(&mut self, change: &CatalogChange) -> Result<(), Orphaned> {
        match change {
            CatalogChange::PutDatabase(database) => match self.databases.get_mut(&database.name) {
                Some(entry) => entry.database = database.clone(),
                None => {
                    let entry = Entry { database: database.clone(), tables: BTreeMap::new(), views: BTreeMap::new() };
                    self.databases.insert(database.name.clone(), entry);
                }
            },
            CatalogChange::RemoveDatabase { name } => {
                self.databases.remove(name);
            }
            CatalogChange::PutTable(table) => {
                self.admits(change)?;
                let entry = self.databases.get_mut(&table.database).expect("admitted: its database exists");
                entry.tables.insert(table.name.clone(), table.clone());
            }
            CatalogChange::RemoveTable { database, name } => {
                if let Some(entry) = self.databases.get_mut(database) {
                    entry.tables.remove(name);
                }
            }
            CatalogChange::PutView(view) => {
                self.admits(change)?;
                let entry = self.databases.get_mut(&view.database).expect("admitted: its database exists");
                entry.views.insert(view.name.clone(), view.clone());
            }
            CatalogChange::RemoveView { database, name } => {
                if let Some(entry) = self.databases.get_mut(database) {
                    entry.views.remove(name);
                }
            }
        }
        Ok(())
    }

    /// The catalog `changes` build, applied in order, with the ones that could not be applied
    /// set aside: a store or snapshot holding an orphaned object still loads, without it.
    pub fn quarantining(changes: impl IntoIterator<Item = CatalogChange>) -> (Catalog, Vec<Orphaned>) {
        let mut catalog = Catalog::default();
        let orphans = changes.into_iter().filter_map(|change| catalog.apply(&change).err()).collect();
        (catalog, orphans)
    }

    /// Whether `change` can be applied: a put of a table or view needs its database, created
    /// no later than the object itself.
    pub fn admits(&self, change: &CatalogChange) -> Result<(), Orphaned> {
        let (kind, database, name, created_version) = match change {
            CatalogChange::PutTable(table) => ("table", &table.database, &table.name, table.created_version),
            CatalogChange::PutView(view) => ("view", &view.database, &view.name, view.created_version),
            _ => return Ok(()),
        };
        let orphaned = |reason: &'static str| Orphaned { kind, database: database.clone(), name: name.clone(), reason };
        let parent = self.database(database).ok_or_else(|| orphaned("its database does not exist"))?;
        // 0 is "not recorded" (objects from before creation versions were kept).
        if created_version != 0 && parent.created_version != 0 && created_version < parent.created_version {
            return Err(orphaned("it is older than its database, which was dropped and created again"));
        }
        Ok(())
    }

    /// `change` as it commits at `version` on top of this catalog: every object it puts
    /// carries `version` as the version that last changed it, and keeps the creation version
    /// of the object it replaces (column by column for a table), or takes `version` when it is
    /// new. Creation versions are decided here, by the leader, and never by the planner, so a
    /// plan's prepare and commit of one new object agree on it whatever they carry.
    pub fn stamp(&self, change: &CatalogChange, version: u64) -> CatalogChange {
        match change {
            CatalogChange::PutDatabase(database) => {
                let old = self.database(&database.name);
                CatalogChange::PutDatabase(Database {
                    version,
                    created_version: old.map_or(version, |old| old.created_version),
                    drop_ordered_version: kept_drop_order(database.state, old.map(|old| old.drop_ordered_version)),
                    ..database.clone()
                })
            }
            CatalogChange::PutTable(table) => {
                let old = self.table(&table.database, &table.name);
                let mut stamped = Table {
                    version,
                    created_version: old.map_or(version, |old| old.created_version),
                    drop_ordered_version: kept_drop_order(table.state, old.map(|old| old.drop_ordered_version)),
                    ..table.clone()
                };
                for column in &mut stamped.columns {
                    let kept = old.and_then(|old| old.column(&column.name));
                    column.created_version = kept.map_or(version, |kept| kept.created_version);
                    column.drop_ordered_version =
                        kept_drop_order(column.state, kept.map(|kept| kept.drop_ordered_version));
                }
                CatalogChange::PutTable(stamped)
            }
            CatalogChange::PutView(view) => {
                let created_version = self.view(&view.database, &view.name).map_or(version, |old| old.created_version);
                CatalogChange::PutView(View { version, created_version, ..view.clone() })
            }
            other => other.clone(),
        }
    }

    /// A database, in whatever state.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(name).map(|entry| &entry.database)
    }

    /// A table, in whatever state.
    pub fn table(&self, database: &str, name: &str) -> Option<&Table> {
        self.databases.get(database)?.tables.get(name)
    }

    /// A view, in whatever state.
    pub fn view(&self, database: &str, name: &str) -> Option<&View> {
        self.databases.get(database)?.views.get(name)
    }

    /// Every database, in whatever state.
    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.databases.values().map(|entry| &entry.database)
    }

    /// Every table of `database`, in whatever state.
    pub fn tables(&self, database: &str) -> impl Iterator<Item = &Table> {
        self.databases.get(database).into_iter().flat_map(|entry| entry.tables.values())
    }

    /// Every view of `database`, in whatever state.
    pub fn views(&self, database: &str) -> impl Iterator<Item = &View> {
        self.databases.get(database).into_iter().flat_map(|entry| entry.views.values())
    }

    /// Every object as the changes that recreate it: the full snapshot.
    pub fn snapshot(&self) -> Vec<CatalogChange> {
        let mut changes = Vec::new();
        for entry in self.databases.values() {
            changes.push(CatalogChange::PutDatabase(entry.database.clone()));
            changes.extend(entry.tables.values().cloned().map(CatalogChange::PutTable));
            changes.extend(entry.views.values().cloned().map(CatalogChange::PutView));
        }
        changes
    }

    /// Whether `database` exists and is visible.
    pub fn database_visible(&self, name: &str) -> bool {
        self.database(name).is_some_and(|database| database.state == ObjectState::Visible)
    }

    /// The table as a reader may see it: only when it and its database are visible, with
    /// hidden and pre-dropped columns removed and the TTL resolved through the database.
    pub fn visible_table(&self, database: &str, name: &str) -> Option<Table> {
        let entry = self.databases.get(database)?;
        if entry.database.state != ObjectState::Visible {
            return None;
        }
        let table = entry.tables.get(name).filter(|table| table.state == ObjectState::Visible)?;
        let mut visible = table.clone();
        visible.columns.retain(|column| column.state == ObjectState::Visible);
        visible.ttl = table.ttl.or(entry.database.ttl);
        Some(visible)
    }

    /// The view as a reader may see it.
    pub fn visible_view(&self, database: &str, name: &str) -> Option<&View> {
        if !self.database_visible(database) {
            return None;
        }
        self.view(database, name).filter(|view| view.state == ObjectState::Visible)
    }

    /// The names of the visible tables of `database`.
    pub fn visible_tables(&self, database: &str) -> Vec<Table> {
        if !self.database_visible(database) {
            return Vec::new();
        }
        self.tables(database).filter_map(|table| self.visible_table(database, &table.name)).collect()
    }

    /// The visible databases.
    pub fn visible_databases(&self) -> Vec<&Database> {
        self.databases().filter(|database| database.state == ObjectState::Visible).collect()
    }

    /// How many objects the catalog holds, in every state.
    pub fn len(&self) -> usize {
        self.databases.values().map(|entry| 1 + entry.tables.len() + entry.views.len()).sum()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.databases.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn database(name: &str, state: ObjectState) -> Database {
        Database {
            name: name.into(),
            ttl: Some(Duration::from_secs(3600)),
            properties: BTreeMap::new(),
            state,
            version: 1,
            created_version: 1,
            drop_ordered_version: 0,
        }
    }

    pub(crate) fn column(name: &str, category: Category, state: ObjectState) -> Column {
        let data_type = if category == Category::Time { DataType::Timestamp } else { DataType::Double };
        Column {
            name: name.into(),
            data_type,
            category,
            comment: String::new(),
            state,
            created_version: 0,
            drop_ordered_version: 0,
        }
    }

    pub(crate) fn view(database: &str, name: &str, state: ObjectState, version: u64) -> View {
        View {
            database: database.into(),
            name: name.into(),
            definition: "SELECT 1".into(),
            state,
            version,
            created_version: version,
        }
    }

    pub(crate) fn table(database: &str, name: &str, state: ObjectState) -> Table {
        Table {
            database: database.into(),
            name: name.into(),
            columns: vec![
                column("time", Category::Time, ObjectState::Visible),
                column("v", Category::Field, ObjectState::Visible),
            ],
            ttl: None,
            properties: BTreeMap::new(),
            comment: String::new(),
            state,
            version: 2,
            created_version: 2,
            drop_ordered_version: 0,
        }
    }

    #[test]
    fn a_put_into_a_missing_database_is_refused_and_changes_nothing() {
        let mut catalog = Catalog::default();
        let refused = catalog.apply(&CatalogChange::PutTable(table("gone", "t", ObjectState::Visible))).unwrap_err();
        assert_eq!((refused.kind, refused.database.as_str(), refused.name.as_str()), ("table", "gone", "t"));
        assert!(catalog.apply(&CatalogChange::PutView(view("gone", "v", ObjectState::Visible, 2))).is_err());
        assert!(catalog.is_empty(), "nothing was put: {catalog:?}");
    }

    #[test]
    fn an_object_older_than_its_database_is_quarantined_and_the_rest_loads() {
        // A table row written for a database that was dropped and created again later.
        let recreated = Database { created_version: 9, version: 9, ..database("db", ObjectState::Visible) };
        let stale = table("db", "t", ObjectState::Visible);
        let fresh = Table { name: "u".into(), created_version: 10, version: 10, ..stale.clone() };
        let (catalog, orphans) = Catalog::quarantining([
            CatalogChange::PutDatabase(recreated),
            CatalogChange::PutTable(stale),
            CatalogChange::PutTable(fresh),
        ]);
        assert_eq!(orphans.len(), 1, "{orphans:?}");
        assert_eq!(orphans[0].name, "t");
        assert!(catalog.table("db", "t").is_none());
        assert!(catalog.visible_table("db", "u").is_some());
    }

    #[test]
    fn hidden_and_dropping_objects_are_invisible() {
        let mut catalog = Catalog::default();
        catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Visible))).unwrap();
        catalog.apply(&CatalogChange::PutTable(table("db", "pre", ObjectState::Hidden))).unwrap();
        catalog.apply(&CatalogChange::PutTable(table("db", "going", ObjectState::Dropping))).unwrap();
        catalog.apply(&CatalogChange::PutTable(table("db", "t", ObjectState::Visible))).unwrap();
        assert!(catalog.visible_table("db", "pre").is_none());
        assert!(catalog.visible_table("db", "going").is_none());
        let visible = catalog.visible_table("db", "t").unwrap();
        assert_eq!(visible.ttl, Some(Duration::from_secs(3600)), "inherited from the database");
        assert_eq!(catalog.visible_tables("db").len(), 1);
        assert_eq!(catalog.len(), 4);
    }

    #[test]
    fn a_pre_delete_marker_on_the_database_hides_everything_in_it() {
        let mut catalog = Catalog::default();
        catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Visible))).unwrap();
        catalog.apply(&CatalogChange::PutTable(table("db", "t", ObjectState::Visible))).unwrap();
        catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Dropping))).unwrap();
        assert!(catalog.visible_table("db", "t").is_none());
        assert!(catalog.table("db", "t").is_some(), "still held, under the marker");
        catalog.apply(&CatalogChange::RemoveDatabase { name: "db".into() }).unwrap();
        assert!(catalog.is_empty());
    }

    #[test]
    fn hidden_and_dropping_columns_are_filtered() {
        let mut catalog = Catalog::default();
        catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Visible))).unwrap();
        let mut altered = table("db", "t", ObjectState::Visible);
        altered.columns.push(column("new", Category::Field, ObjectState::Hidden));
        altered.columns[1].state = ObjectState::Dropping;
        catalog.apply(&CatalogChange::PutTable(altered)).unwrap();
        let names: Vec<_> = catalog.visible_table("db", "t").unwrap().columns.into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["time"]);
    }

    #[test]
    fn the_snapshot_rebuilds_the_same_catalog_and_puts_are_idempotent() {
        let mut catalog = Catalog::default();
        catalog.apply(&CatalogChange::PutDatabase(database("db", ObjectState::Visible))).unwrap();
        catalog.apply(&CatalogChange::PutTable(table("db", "t", ObjectState::Hidden))).unwrap();
        catalog.apply(&CatalogChange::PutView(view("db", "v", ObjectState::Visible, 3))).unwrap();
        let mut rebuilt = Catalog::default();
        for change in catalog.snapshot() {
            rebuilt.apply(&change).unwrap();
            rebuilt.apply(&change).unwrap();
        }
        assert_eq!(rebuilt, catalog);
    }

    #[test]
    fn stamping_keeps_creation_versions_and_gives_new_objects_their_own() {
        let mut catalog = Catalog::default();
        let stamp = |catalog: &mut Catalog, change: CatalogChange, version| {
            let stamped = catalog.stamp(&change, version);
            catalog.apply(&stamped).unwrap();
        };
        stamp(&mut catalog, CatalogChange::PutDatabase(database("db", ObjectState::Hidden)), 10);
        stamp(&mut catalog, CatalogChange::PutDatabase(database("db", ObjectState::Visible)), 11);
        assert_eq!(
            (catalog.database("db").unwrap().version, catalog.database("db").unwrap().created_version),
            (11, 10)
        );

        stamp(&mut catalog, CatalogChange::PutTable(table("db", "t", ObjectState::Hidden)), 12);
        let mut committed = table("db", "t", ObjectState::Visible);
        committed.columns.push(column("added", Category::Field, ObjectState::Hidden));
        stamp(&mut catalog, CatalogChange::PutTable(committed), 13);
        let t = catalog.table("db", "t").unwrap();
        assert_eq!((t.version, t.created_version), (13, 12), "the commit of a create keeps the prepare's version");
        let created: Vec<_> = t.columns.iter().map(|column| column.created_version).collect();
        assert_eq!(created, [12, 12, 13], "a column added later is created by the change that adds it");

        catalog.apply(&CatalogChange::RemoveTable { database: "db".into(), name: "t".into() }).unwrap();
        stamp(&mut catalog, CatalogChange::PutTable(table("db", "t", ObjectState::Hidden)), 14);
        assert_eq!(catalog.table("db", "t").unwrap().created_version, 14, "created again: another object");
        let view = view("db", "v", ObjectState::Hidden, 0);
        stamp(&mut catalog, CatalogChange::PutView(view.clone()), 15);
        stamp(&mut catalog, CatalogChange::PutView(View { state: ObjectState::Visible, ..view }), 16);
        assert_eq!(catalog.view("db", "v").unwrap().created_version, 15);
    }
}
