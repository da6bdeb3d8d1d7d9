//! DDL as pure decisions: validate a request against the catalog and plan its two phases
//! (DESIGN §5). The executor carries the plan out; everything it needs to decide is here.
//!
//! Every DDL has a **prepare** change (reversible: pre-create an object hidden, pre-add a
//! column hidden, or put a pre-delete marker; or, for a setting, the new setting itself), an
//! optional **irreversible** step (dropping data), an optional **commit** change (make the
//! object visible, or remove it), and the **rollback** change that undoes the prepare.
//!
//! [`validate`] checks a request's own fields, [`plan`] plans it against the catalog (one
//! function per DDL under `plan/`), and `resync` decides what data a node deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::catalog::{Catalog, CatalogChange, Category, Column, DataType, Database, ObjectState, Table, View};

mod cache;
mod plan;
mod resync;
mod validate;

pub use cache::{BatchRefusal, CacheChange, CatalogBatch, DropReason, ResyncPlan, keep_pending_drops, resync_plan};
pub use plan::{DdlPlan, plan};
pub use resync::{
    DataTarget, HeldCatalog, ResyncDrops, drop_order, dropped_between, drops_after_resync, ordered_drops,
    reversible_puts,
};
pub use validate::*;

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

/// The kind of a DDL, stored with its procedure: a stored procedure of an unknown kind cannot
/// be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DdlKind {
    /// `CREATE DATABASE`
    CreateDatabase,
    /// `DROP DATABASE`
    DropDatabase,
    /// `CREATE TABLE`
    CreateTable,
    /// `DROP TABLE`
    DropTable,
    /// `ALTER TABLE … ADD COLUMN`
    AddColumn,
    /// `ALTER TABLE … DROP COLUMN`
    DropColumn,
    /// `ALTER TABLE … SET TTL`
    SetTtl,
    /// `ALTER TABLE … SET PROPERTIES`
    SetProperties,
    /// `ALTER TABLE … SET COMMENT`
    SetComment,
    /// `CREATE VIEW`
    CreateView,
    /// `DROP VIEW`
    DropView,
}

impl DdlKind {
    /// Every kind.
    pub const ALL: [DdlKind; 11] = [
        DdlKind::CreateDatabase,
        DdlKind::DropDatabase,
        DdlKind::CreateTable,
        DdlKind::DropTable,
        DdlKind::AddColumn,
        DdlKind::DropColumn,
        DdlKind::SetTtl,
        DdlKind::SetProperties,
        DdlKind::SetComment,
        DdlKind::CreateView,
        DdlKind::DropView,
    ];

    /// The name stored in the procedure table and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            DdlKind::CreateDatabase => "create_database",
            DdlKind::DropDatabase => "drop_database",
            DdlKind::CreateTable => "create_table",
            DdlKind::DropTable => "drop_table",
            DdlKind::AddColumn => "add_column",
            DdlKind::DropColumn => "drop_column",
            DdlKind::SetTtl => "set_ttl",
            DdlKind::SetProperties => "set_properties",
            DdlKind::SetComment => "set_comment",
            DdlKind::CreateView => "create_view",
            DdlKind::DropView => "drop_view",
        }
    }

    /// The kind stored as `name`, if it is one.
    pub fn from_stored(name: &str) -> Option<DdlKind> {
        DdlKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for DdlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
