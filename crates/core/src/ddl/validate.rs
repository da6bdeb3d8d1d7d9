//! A request's own fields, checked before any catalog lookup: names, limits and bounds.

use super::*;

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
