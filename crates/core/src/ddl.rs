//! DDL as pure decisions: validate a request against the catalog and plan its two phases
//! (DESIGN §5). The executor carries the plan out; everything it needs to decide is here.
//!
//! Every DDL has a **prepare** change (reversible: pre-create an object hidden, pre-add a
//! column hidden, or put a pre-delete marker; or, for a setting, the new setting itself), an
//! optional **irreversible** step (dropping data), an optional **commit** change (make the
//! object visible, or remove it), and the **rollback** change that undoes the prepare.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::catalog::{Catalog, CatalogChange, Category, Column, DataType, Database, ObjectState, Table, View};

/// The longest name of a database, table, column or view.
pub const MAX_NAME_LEN: usize = 64;
/// The most columns a table may have.
pub const MAX_COLUMNS: usize = 1024;
/// The most properties an object may have.
pub const MAX_PROPERTIES: usize = 64;
/// The longest property key.
pub const MAX_PROPERTY_KEY_LEN: usize = 128;
/// The longest property value.
pub const MAX_PROPERTY_VALUE_LEN: usize = 4096;
/// The longest comment.
pub const MAX_COMMENT_LEN: usize = 1024;
/// The longest view definition.
pub const MAX_DEFINITION_LEN: usize = 64 * 1024;
/// The longest TTL (a hundred years).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Names that would read as SQL keywords; refused for every object.
pub const RESERVED: &[&str] = &[
    "all", "alter", "and", "as", "between", "by", "case", "create", "database", "default", "delete", "drop", "else",
    "end", "exists", "false", "from", "group", "having", "in", "index", "insert", "into", "is", "join", "key", "like",
    "limit", "not", "null", "on", "or", "order", "primary", "select", "set", "table", "then", "true", "union",
    "update", "values", "view", "when", "where",
];

/// A column as a request defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
    /// Its category.
    pub category: Category,
    /// A comment.
    pub comment: String,
}

/// What an `AlterTable` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterAction {
    /// Add a column (hidden until commit).
    AddColumn(ColumnSpec),
    /// Drop a column (a pre-delete marker, then its data, then gone).
    DropColumn(String),
    /// Set (or with `None`, unset) the table's own TTL.
    SetTtl(Option<Duration>),
    /// Set some properties and remove others.
    SetProperties {
        /// Properties to set.
        set: BTreeMap<String, String>,
        /// Properties to remove.
        unset: Vec<String>,
    },
    /// Set the comment.
    SetComment(String),
}

/// A DDL request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlRequest {
    /// `CreateDatabase`
    CreateDatabase {
        /// The database.
        name: String,
        /// Its default TTL.
        ttl: Option<Duration>,
        /// Its properties.
        properties: BTreeMap<String, String>,
    },
    /// `DropDatabase`
    DropDatabase {
        /// The database.
        name: String,
    },
    /// `CreateTable`
    CreateTable {
        /// The database.
        database: String,
        /// The table.
        name: String,
        /// Its columns.
        columns: Vec<ColumnSpec>,
        /// Its own TTL.
        ttl: Option<Duration>,
        /// Its properties.
        properties: BTreeMap<String, String>,
        /// Its comment.
        comment: String,
    },
    /// `AlterTable`
    AlterTable {
        /// The database.
        database: String,
        /// The table.
        name: String,
        /// What to change.
        action: AlterAction,
    },
    /// `DropTable`
    DropTable {
        /// The database.
        database: String,
        /// The table.
        name: String,
    },
    /// `CreateView`
    CreateView {
        /// The database.
        database: String,
        /// The view.
        name: String,
        /// Its definition.
        definition: String,
    },
    /// `DropView`
    DropView {
        /// The database.
        database: String,
        /// The view.
        name: String,
    },
}

/// Why a DDL request is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlError {
    /// A field is malformed or out of bounds.
    Invalid {
        /// The field, such as `columns[2].name`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The object does not exist (or is not visible).
    NotFound {
        /// What, such as `table db.t`.
        what: String,
    },
    /// The object exists already.
    AlreadyExists {
        /// What.
        what: String,
    },
    /// Another DDL is changing the object (it is hidden or under a pre-delete marker).
    Busy {
        /// What.
        what: String,
    },
}

impl fmt::Display for DdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DdlError::Invalid { field, message } => write!(f, "{field}: {message}"),
            DdlError::NotFound { what } => write!(f, "{what} does not exist"),
            DdlError::AlreadyExists { what } => write!(f, "{what} already exists"),
            DdlError::Busy { what } => write!(f, "{what} is being changed by another DDL; retry when it is done"),
        }
    }
}

impl std::error::Error for DdlError {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> DdlError {
    DdlError::Invalid { field: field.into(), message: message.into() }
}

/// Checks a name: `[A-Za-z_][A-Za-z0-9_]{0,63}`, not a reserved word.
pub fn validate_name(field: &str, name: &str) -> Result<(), DdlError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(field, format!("must be 1 to {MAX_NAME_LEN} characters, got {}", name.len())));
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('0');
    if !(first.is_ascii_alphabetic() || first == '_') || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(field, format!("{name:?} must match [A-Za-z_][A-Za-z0-9_]*")));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(invalid(field, format!("{name:?} is a reserved word")));
    }
    Ok(())
}

fn validate_properties(field: &str, properties: &BTreeMap<String, String>) -> Result<(), DdlError> {
    if properties.len() > MAX_PROPERTIES {
        return Err(invalid(field, format!("at most {MAX_PROPERTIES} properties, got {}", properties.len())));
    }
    for (key, value) in properties {
        if key.is_empty() || key.len() > MAX_PROPERTY_KEY_LEN || key.chars().any(char::is_control) {
            return Err(invalid(
                field,
                format!("property key {key:?} must be 1 to {MAX_PROPERTY_KEY_LEN} printable characters"),
            ));
        }
        if value.len() > MAX_PROPERTY_VALUE_LEN {
            return Err(invalid(format!("{field}[{key}]"), format!("at most {MAX_PROPERTY_VALUE_LEN} bytes")));
        }
    }
    Ok(())
}

fn validate_comment(field: &str, comment: &str) -> Result<(), DdlError> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(invalid(field, format!("at most {MAX_COMMENT_LEN} bytes, got {}", comment.len())));
    }
    Ok(())
}

fn validate_ttl(field: &str, ttl: Option<Duration>) -> Result<(), DdlError> {
    match ttl {
        Some(ttl) if ttl.is_zero() || ttl > MAX_TTL => Err(invalid(field, "must be above zero and at most 100 years")),
        _ => Ok(()),
    }
}

fn validate_column(field: &str, column: &ColumnSpec) -> Result<(), DdlError> {
    validate_name(&format!("{field}.name"), &column.name)?;
    validate_comment(&format!("{field}.comment"), &column.comment)?;
    if column.category == Category::Time && column.data_type != DataType::Timestamp {
        return Err(invalid(format!("{field}.data_type"), "the TIME column must be TIMESTAMP"));
    }
    Ok(())
}

/// Checks a request's own fields, before any catalog lookup.
pub fn validate(request: &DdlRequest) -> Result<(), DdlError> {
    match request {
        DdlRequest::CreateDatabase { name, ttl, properties } => {
            validate_name("name", name)?;
            validate_ttl("ttl", *ttl)?;
            validate_properties("properties", properties)
        }
        DdlRequest::DropDatabase { name } => validate_name("name", name),
        DdlRequest::CreateTable { database, name, columns, ttl, properties, comment } => {
            validate_name("database", database)?;
            validate_name("name", name)?;
            validate_ttl("ttl", *ttl)?;
            validate_properties("properties", properties)?;
            validate_comment("comment", comment)?;
            if columns.is_empty() || columns.len() > MAX_COLUMNS {
                return Err(invalid(
                    "columns",
                    format!("a table needs 1 to {MAX_COLUMNS} columns, got {}", columns.len()),
                ));
            }
            let mut seen = BTreeSet::new();
            for (index, column) in columns.iter().enumerate() {
                validate_column(&format!("columns[{index}]"), column)?;
                if !seen.insert(column.name.to_ascii_lowercase()) {
                    return Err(invalid(
                        format!("columns[{index}].name"),
                        format!("duplicate column {:?}", column.name),
                    ));
                }
            }
            let time_columns = columns.iter().filter(|column| column.category == Category::Time).count();
            if time_columns != 1 {
                return Err(invalid("columns", format!("a table needs exactly one TIME column, got {time_columns}")));
            }
            Ok(())
        }
        DdlRequest::AlterTable { database, name, action } => {
            validate_name("database", database)?;
            validate_name("name", name)?;
            match action {
                AlterAction::AddColumn(column) => {
                    validate_column("add_column", column)?;
                    if column.category == Category::Time {
                        return Err(invalid("add_column.category", "a table has exactly one TIME column already"));
                    }
                    Ok(())
                }
                AlterAction::DropColumn(column) => validate_name("drop_column", column),
                AlterAction::SetTtl(ttl) => validate_ttl("set_ttl", *ttl),
                AlterAction::SetProperties { set, unset } => {
                    validate_properties("set_properties.set", set)?;
                    if unset.len() > MAX_PROPERTIES {
                        return Err(invalid("set_properties.unset", format!("at most {MAX_PROPERTIES} keys")));
                    }
                    Ok(())
                }
                AlterAction::SetComment(comment) => validate_comment("set_comment", comment),
            }
        }
        DdlRequest::DropTable { database, name } | DdlRequest::DropView { database, name } => {
            validate_name("database", database)?;
            validate_name("name", name)
        }
        DdlRequest::CreateView { database, name, definition } => {
            validate_name("database", database)?;
            validate_name("name", name)?;
            if definition.trim().is_empty() || definition.len() > MAX_DEFINITION_LEN {
                return Err(invalid("definition", format!("must be 1 to {MAX_DEFINITION_LEN} bytes")));
            }
            Ok(())
        }
    }
}

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

/// The locks a DDL holds: its database, shared or exclusive, and its object exclusively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSet {
    /// The database.
    pub database: String,
    /// Whether the database is held exclusively.
    pub database_exclusive: bool,
    /// The object (`table:name` or `view:name`) held exclusively, if any.
    pub object: Option<String>,
}

/// The locks `request` needs.
pub fn locks(request: &DdlRequest) -> LockSet {
    let shared = |database: &str, object: String| LockSet {
        database: database.to_owned(),
        database_exclusive: false,
        object: Some(object),
    };
    match request {
        DdlRequest::CreateDatabase { name, .. } | DdlRequest::DropDatabase { name } => {
            LockSet { database: name.clone(), database_exclusive: true, object: None }
        }
        DdlRequest::CreateTable { database, name, .. }
        | DdlRequest::AlterTable { database, name, .. }
        | DdlRequest::DropTable { database, name } => shared(database, format!("table:{name}")),
        DdlRequest::CreateView { database, name, .. } | DdlRequest::DropView { database, name } => {
            shared(database, format!("view:{name}"))
        }
    }
}

/// What a DDL does, phase by phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlPlan {
    /// The kind, for the procedure table (`create_table`, …).
    pub kind: &'static str,
    /// The target, for the procedure table (`db.t`).
    pub target: String,
    /// The reversible first change.
    pub prepare: CatalogChange,
    /// Data to delete once the prepare's verdict is `Proceed`.
    pub drop_data: Option<DataTarget>,
    /// The change that makes it final; `None` when the prepare is the change.
    pub commit: Option<CatalogChange>,
    /// The change that undoes the prepare.
    pub rollback: CatalogChange,
}

fn visible_database<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a Database, DdlError> {
    let database = catalog.database(name).ok_or_else(|| DdlError::NotFound { what: format!("database {name}") })?;
    match database.state {
        ObjectState::Visible => Ok(database),
        ObjectState::Hidden => Err(DdlError::NotFound { what: format!("database {name}") }),
        ObjectState::Dropping => Err(DdlError::Busy { what: format!("database {name}") }),
    }
}

fn visible_table<'a>(catalog: &'a Catalog, database: &str, name: &str) -> Result<&'a Table, DdlError> {
    visible_database(catalog, database)?;
    let table =
        catalog.table(database, name).ok_or_else(|| DdlError::NotFound { what: format!("table {database}.{name}") })?;
    match table.state {
        ObjectState::Visible if table.columns.iter().all(|column| column.state == ObjectState::Visible) => Ok(table),
        ObjectState::Visible | ObjectState::Dropping => {
            Err(DdlError::Busy { what: format!("table {database}.{name}") })
        }
        ObjectState::Hidden => Err(DdlError::NotFound { what: format!("table {database}.{name}") }),
    }
}

fn column_of(spec: &ColumnSpec, state: ObjectState) -> Column {
    Column {
        name: spec.name.clone(),
        data_type: spec.data_type,
        category: spec.category,
        comment: spec.comment.clone(),
        state,
        created_version: 0,
        drop_ordered_version: 0,
    }
}

/// Every kind a plan may have ([`DdlPlan::kind`]): a stored plan of another kind cannot be
/// resumed.
pub const KINDS: [&str; 11] = [
    "create_database",
    "drop_database",
    "create_table",
    "drop_table",
    "add_column",
    "drop_column",
    "set_ttl",
    "set_properties",
    "set_comment",
    "create_view",
    "drop_view",
];

/// Plans `request` against `catalog`. Call [`validate`] first; call this while holding the
/// request's [`locks`], so that the catalog cannot change underneath.
pub fn plan(catalog: &Catalog, request: &DdlRequest) -> Result<DdlPlan, DdlError> {
    match request {
        DdlRequest::CreateDatabase { name, ttl, properties } => {
            if catalog.database(name).is_some() {
                return Err(DdlError::AlreadyExists { what: format!("database {name}") });
            }
            let database = Database {
                name: name.clone(),
                ttl: *ttl,
                properties: properties.clone(),
                state: ObjectState::Hidden,
                version: 0,
                created_version: 0,
                drop_ordered_version: 0,
            };
            Ok(DdlPlan {
                kind: "create_database",
                target: name.clone(),
                prepare: CatalogChange::PutDatabase(database.clone()),
                drop_data: None,
                commit: Some(CatalogChange::PutDatabase(Database { state: ObjectState::Visible, ..database })),
                rollback: CatalogChange::RemoveDatabase { name: name.clone() },
            })
        }
        DdlRequest::DropDatabase { name } => {
            let database = visible_database(catalog, name)?;
            // A pre-created or marked object is another procedure's, halfway: dropped from
            // under it, that procedure would write into a database that is gone.
            let in_flight = catalog
                .tables(name)
                .filter(|table| table.state != ObjectState::Visible)
                .map(|table| format!("table {name}.{}", table.name))
                .chain(
                    catalog
                        .views(name)
                        .filter(|view| view.state != ObjectState::Visible)
                        .map(|view| format!("view {name}.{}", view.name)),
                )
                .next();
            if let Some(what) = in_flight {
                return Err(DdlError::Busy { what });
            }
            Ok(DdlPlan {
                kind: "drop_database",
                target: name.clone(),
                prepare: CatalogChange::PutDatabase(Database { state: ObjectState::Dropping, ..database.clone() }),
                drop_data: Some(DataTarget::Database {
                    database: name.clone(),
                    created_version: database.created_version,
                }),
                commit: Some(CatalogChange::RemoveDatabase { name: name.clone() }),
                rollback: CatalogChange::PutDatabase(database.clone()),
            })
        }
        DdlRequest::CreateTable { database, name, columns, ttl, properties, comment } => {
            visible_database(catalog, database)?;
            if catalog.table(database, name).is_some() {
                return Err(DdlError::AlreadyExists { what: format!("table {database}.{name}") });
            }
            let table = Table {
                database: database.clone(),
                name: name.clone(),
                columns: columns.iter().map(|spec| column_of(spec, ObjectState::Visible)).collect(),
                ttl: *ttl,
                properties: properties.clone(),
                comment: comment.clone(),
                state: ObjectState::Hidden,
                version: 0,
                created_version: 0,
                drop_ordered_version: 0,
            };
            Ok(DdlPlan {
                kind: "create_table",
                target: format!("{database}.{name}"),
                prepare: CatalogChange::PutTable(table.clone()),
                drop_data: None,
                commit: Some(CatalogChange::PutTable(Table { state: ObjectState::Visible, ..table })),
                rollback: CatalogChange::RemoveTable { database: database.clone(), name: name.clone() },
            })
        }
        DdlRequest::AlterTable { database, name, action } => {
            let table = visible_table(catalog, database, name)?;
            let target = format!("{database}.{name}");
            let rollback = CatalogChange::PutTable(table.clone());
            let mut changed = table.clone();
            let (kind, drop_data, commit) = match action {
                AlterAction::AddColumn(spec) => {
                    if table.column(&spec.name).is_some() {
                        return Err(DdlError::AlreadyExists { what: format!("column {target}.{}", spec.name) });
                    }
                    if table.columns.len() >= MAX_COLUMNS {
                        return Err(invalid("add_column", format!("a table has at most {MAX_COLUMNS} columns")));
                    }
                    changed.columns.push(column_of(spec, ObjectState::Hidden));
                    let mut committed = changed.clone();
                    committed.columns.iter_mut().for_each(|column| column.state = ObjectState::Visible);
                    ("add_column", None, Some(CatalogChange::PutTable(committed)))
                }
                AlterAction::DropColumn(column) => {
                    let index = table
                        .columns
                        .iter()
                        .position(|existing| existing.name.eq_ignore_ascii_case(column))
                        .ok_or_else(|| DdlError::NotFound { what: format!("column {target}.{column}") })?;
                    if table.columns[index].category == Category::Time {
                        return Err(invalid("drop_column", "the TIME column cannot be dropped"));
                    }
                    changed.columns[index].state = ObjectState::Dropping;
                    let mut committed = table.clone();
                    committed.columns.remove(index);
                    let data = DataTarget::Column {
                        database: database.clone(),
                        table: name.clone(),
                        column: table.columns[index].name.clone(),
                        created_version: table.columns[index].created_version,
                    };
                    ("drop_column", Some(data), Some(CatalogChange::PutTable(committed)))
                }
                AlterAction::SetTtl(ttl) => {
                    changed.ttl = *ttl;
                    ("set_ttl", None, None)
                }
                AlterAction::SetProperties { set, unset } => {
                    for key in unset {
                        changed.properties.remove(key);
                    }
                    changed.properties.extend(set.clone());
                    if changed.properties.len() > MAX_PROPERTIES {
                        return Err(invalid(
                            "set_properties",
                            format!("a table has at most {MAX_PROPERTIES} properties"),
                        ));
                    }
                    ("set_properties", None, None)
                }
                AlterAction::SetComment(comment) => {
                    changed.comment = comment.clone();
                    ("set_comment", None, None)
                }
            };
            Ok(DdlPlan { kind, target, prepare: CatalogChange::PutTable(changed), drop_data, commit, rollback })
        }
        DdlRequest::DropTable { database, name } => {
            let table = visible_table(catalog, database, name)?;
            Ok(DdlPlan {
                kind: "drop_table",
                target: format!("{database}.{name}"),
                prepare: CatalogChange::PutTable(Table { state: ObjectState::Dropping, ..table.clone() }),
                drop_data: Some(DataTarget::Table {
                    database: database.clone(),
                    table: name.clone(),
                    created_version: table.created_version,
                }),
                commit: Some(CatalogChange::RemoveTable { database: database.clone(), name: name.clone() }),
                rollback: CatalogChange::PutTable(table.clone()),
            })
        }
        DdlRequest::CreateView { database, name, definition } => {
            visible_database(catalog, database)?;
            if catalog.view(database, name).is_some() {
                return Err(DdlError::AlreadyExists { what: format!("view {database}.{name}") });
            }
            let view = View {
                database: database.clone(),
                name: name.clone(),
                definition: definition.clone(),
                state: ObjectState::Hidden,
                version: 0,
                created_version: 0,
            };
            Ok(DdlPlan {
                kind: "create_view",
                target: format!("{database}.{name}"),
                prepare: CatalogChange::PutView(view.clone()),
                drop_data: None,
                commit: Some(CatalogChange::PutView(View { state: ObjectState::Visible, ..view })),
                rollback: CatalogChange::RemoveView { database: database.clone(), name: name.clone() },
            })
        }
        DdlRequest::DropView { database, name } => {
            visible_database(catalog, database)?;
            let view = catalog
                .view(database, name)
                .filter(|view| view.state != ObjectState::Hidden)
                .ok_or_else(|| DdlError::NotFound { what: format!("view {database}.{name}") })?;
            if view.state == ObjectState::Dropping {
                return Err(DdlError::Busy { what: format!("view {database}.{name}") });
            }
            Ok(DdlPlan {
                kind: "drop_view",
                target: format!("{database}.{name}"),
                prepare: CatalogChange::PutView(View { state: ObjectState::Dropping, ..view.clone() }),
                drop_data: None,
                commit: Some(CatalogChange::RemoveView { database: database.clone(), name: name.clone() }),
                rollback: CatalogChange::PutView(view.clone()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
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
            (
                DdlRequest::CreateDatabase { name: "db".into(), ttl: None, properties: BTreeMap::new() },
                "already exists",
            ),
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
        let kinds: BTreeSet<&str> = requests.iter().map(|request| plan(&catalog, request).unwrap().kind).collect();
        assert_eq!(kinds, KINDS.into_iter().collect(), "every kind planned, and only those");
    }
}
