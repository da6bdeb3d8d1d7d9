//! `leasehold ctl db|table|view|procedure`: the catalog and its DDL procedures.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use figment::Figment;
use figment::providers::{Format, Toml};
use leasehold::Client;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::procedures_client::ProceduresClient;
use leasehold::v1::{
    self, AlterTableRequest, ColumnDefinition, CreateDatabaseRequest, CreateTableRequest, CreateViewRequest,
    DdlResponse, DropDatabaseRequest, DropTableRequest, DropViewRequest, GetProcedureRequest, GetTableRequest,
    ListDatabasesRequest, ListProceduresRequest, ListTablesRequest, Procedure, SetProperties,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::args::{DbCommand, ProcedureCommand, TableCommand, ViewCommand};
use crate::ctl::leader_call;
use crate::output::{Answer, enum_json, pairs, table};

const TYPES: [(&str, v1::DataType); 8] = [
    ("BOOLEAN", v1::DataType::Boolean),
    ("INT32", v1::DataType::Int32),
    ("INT64", v1::DataType::Int64),
    ("FLOAT", v1::DataType::Float),
    ("DOUBLE", v1::DataType::Double),
    ("TEXT", v1::DataType::Text),
    ("BLOB", v1::DataType::Blob),
    ("TIMESTAMP", v1::DataType::Timestamp),
];

const CATEGORIES: [(&str, v1::ColumnCategory); 4] = [
    ("TIME", v1::ColumnCategory::Time),
    ("TAG", v1::ColumnCategory::Tag),
    ("FIELD", v1::ColumnCategory::Field),
    ("ATTRIBUTE", v1::ColumnCategory::Attribute),
];

fn data_type(name: &str) -> anyhow::Result<i32> {
    TYPES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value as i32)
        .ok_or_else(|| anyhow!("unknown type {name:?}; expected one of {}", TYPES.map(|(n, _)| n).join(", ")))
}

fn category(name: &str) -> anyhow::Result<i32> {
    CATEGORIES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value as i32)
        .ok_or_else(|| anyhow!("unknown category {name:?}; expected one of {}", CATEGORIES.map(|(n, _)| n).join(", ")))
}

fn type_name(value: i32) -> &'static str {
    TYPES.iter().find(|(_, known)| *known as i32 == value).map_or("?", |(name, _)| name)
}

fn category_name(value: i32) -> &'static str {
    CATEGORIES.iter().find(|(_, known)| *known as i32 == value).map_or("?", |(name, _)| name)
}

/// `NAME:TYPE:CATEGORY[:COMMENT]`
fn column(spec: &str) -> anyhow::Result<ColumnDefinition> {
    let mut parts = spec.splitn(4, ':');
    let (Some(name), Some(kind), Some(role)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("column {spec:?} is not NAME:TYPE:CATEGORY[:COMMENT]");
    };
    Ok(ColumnDefinition {
        name: name.to_owned(),
        data_type: data_type(kind)?,
        category: category(role)?,
        comment: parts.next().unwrap_or_default().to_owned(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    columns: Vec<ColumnFile>,
    #[serde(default, with = "humantime_serde::option")]
    ttl: Option<Duration>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    comment: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    category: String,
    #[serde(default)]
    comment: String,
}

fn read_table_file(path: &Path) -> anyhow::Result<TableFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|extension| extension == "toml") {
        Figment::from(Toml::string(&text))
            .extract()
            .with_context(|| format!("{}: not a table definition", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: not a table definition", path.display()))
    }
}

/// The request id of a DDL call: the given one, or a fresh one, so that the client's own
/// retries (after a leader change) never apply it twice.
fn fresh_request_id(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("ctl-{}-{nanos:x}", std::process::id())
    })
}

fn ms(duration: Option<Duration>) -> u64 {
    duration.map_or(0, |duration| duration.as_millis() as u64)
}

fn ddl_answer(response: DdlResponse) -> Answer {
    Answer {
        json: json!({ "procedure_id": response.procedure_id, "version": response.version, "fenced": response.fenced }),
        table: table(
            &["PROCEDURE", "VERSION", "WAITED OUT"],
            vec![vec![response.procedure_id.to_string(), response.version.to_string(), response.fenced.join(",")]],
        ),
    }
}

fn ttl_text(ms: u64) -> String {
    if ms == 0 { "-".into() } else { humantime::format_duration(Duration::from_millis(ms)).to_string() }
}

/// `ctl db …`
pub async fn db(client: &Client, command: DbCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        DbCommand::Create { name, ttl, properties, request_id } => {
            let request = CreateDatabaseRequest {
                name: name.clone(),
                ttl_ms: ms(ttl),
                properties: properties.into_iter().collect(),
                request_id: fresh_request_id(request_id.request_id),
            };
            ddl_answer(leader_call!(
                client,
                CatalogClient,
                create_database,
                request,
                format!("creating database {name}")
            ))
        }
        DbCommand::Drop { name, request_id } => {
            let request =
                DropDatabaseRequest { name: name.clone(), request_id: fresh_request_id(request_id.request_id) };
            ddl_answer(leader_call!(client, CatalogClient, drop_database, request, format!("dropping database {name}")))
        }
        DbCommand::List => {
            let response =
                leader_call!(client, CatalogClient, list_databases, ListDatabasesRequest {}, "listing databases");
            let rows = response
                .databases
                .iter()
                .map(|database| {
                    vec![
                        database.name.clone(),
                        ttl_text(database.ttl_ms),
                        pairs(&database.properties),
                        database.version.to_string(),
                    ]
                })
                .collect();
            let databases: Vec<Value> = response
                .databases
                .iter()
                .map(|database| json!({ "name": database.name, "ttl_ms": database.ttl_ms, "properties": database.properties, "version": database.version, "created_version": database.created_version }))
                .collect();
            Answer {
                json: json!({ "version": response.version, "databases": databases }),
                table: table(&["DATABASE", "TTL", "PROPERTIES", "VERSION"], rows),
            }
        }
    })
}

fn table_json(table: &v1::Table) -> Value {
    let columns: Vec<Value> = table
        .columns
        .iter()
        .map(|column| json!({ "name": column.name, "type": enum_json::<v1::DataType>(column.data_type), "category": enum_json::<v1::ColumnCategory>(column.category), "comment": column.comment, "created_version": column.created_version }))
        .collect();
    json!({
        "database": table.database,
        "name": table.name,
        "columns": columns,
        "ttl_ms": table.ttl_ms,
        "effective_ttl_ms": table.effective_ttl_ms,
        "properties": table.properties,
        "comment": table.comment,
        "version": table.version,
        "created_version": table.created_version,
    })
}

/// `ctl table …`
pub async fn table_command(client: &Client, command: TableCommand) -> anyhow::Result<Answer> {
    use v1::alter_table_request::Action;
    Ok(match command {
        TableCommand::Create { database, name, columns, ttl, properties, comment, file, request_id } => {
            let (columns, ttl, properties, comment) = match file {
                Some(path) => {
                    if !columns.is_empty() {
                        bail!("give the columns either with --column or in --file, not both");
                    }
                    let file = read_table_file(&path)?;
                    let columns = file
                        .columns
                        .iter()
                        .map(|c| {
                            Ok(ColumnDefinition {
                                name: c.name.clone(),
                                data_type: data_type(&c.data_type)?,
                                category: category(&c.category)?,
                                comment: c.comment.clone(),
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    (columns, file.ttl, file.properties, file.comment)
                }
                None => (
                    columns.iter().map(|spec| column(spec)).collect::<anyhow::Result<Vec<_>>>()?,
                    ttl,
                    properties.into_iter().collect(),
                    comment.unwrap_or_default(),
                ),
            };
            let request = CreateTableRequest {
                database: database.clone(),
                name: name.clone(),
                columns,
                ttl_ms: ms(ttl),
                properties: properties.into_iter().collect(),
                comment,
                request_id: fresh_request_id(request_id.request_id),
            };
            ddl_answer(leader_call!(
                client,
                CatalogClient,
                create_table,
                request,
                format!("creating table {database}.{name}")
            ))
        }
        TableCommand::Alter {
            database,
            name,
            add_column,
            drop_column,
            set_ttl,
            set_properties,
            unset_properties,
            set_comment,
            request_id,
        } => {
            let action = if let Some(spec) = add_column {
                Action::AddColumn(column(&spec)?)
            } else if let Some(column) = drop_column {
                Action::DropColumn(column)
            } else if let Some(ttl) = set_ttl {
                let ms = if ttl.eq_ignore_ascii_case("none") {
                    0
                } else {
                    humantime::parse_duration(&ttl).with_context(|| format!("--set-ttl {ttl}"))?.as_millis() as u64
                };
                Action::SetTtlMs(ms)
            } else if let Some(comment) = set_comment {
                Action::SetComment(comment)
            } else if !set_properties.is_empty() || !unset_properties.is_empty() {
                Action::SetProperties(SetProperties {
                    set: set_properties.into_iter().collect(),
                    unset: unset_properties,
                })
            } else {
                bail!(
                    "say what to alter: --add-column, --drop-column, --set-ttl, --set-property/--unset-property or --set-comment"
                );
            };
            let request = AlterTableRequest {
                database: database.clone(),
                name: name.clone(),
                action: Some(action),
                request_id: fresh_request_id(request_id.request_id),
            };
            ddl_answer(leader_call!(
                client,
                CatalogClient,
                alter_table,
                request,
                format!("altering table {database}.{name}")
            ))
        }
        TableCommand::Drop { database, name, request_id } => {
            let request = DropTableRequest {
                database: database.clone(),
                name: name.clone(),
                request_id: fresh_request_id(request_id.request_id),
            };
            ddl_answer(leader_call!(
                client,
                CatalogClient,
                drop_table,
                request,
                format!("dropping table {database}.{name}")
            ))
        }
        TableCommand::Get { database, name } => {
            let request = GetTableRequest { database: database.clone(), name: name.clone() };
            let found =
                leader_call!(client, CatalogClient, get_table, request, format!("reading table {database}.{name}"));
            let rows = found
                .columns
                .iter()
                .map(|column| {
                    vec![
                        column.name.clone(),
                        type_name(column.data_type).into(),
                        category_name(column.category).into(),
                        column.comment.clone(),
                    ]
                })
                .collect();
            let mut text = format!(
                "{}.{}  ttl {}  version {} (created at {}){}\n",
                found.database,
                found.name,
                ttl_text(found.effective_ttl_ms),
                found.version,
                found.created_version,
                if found.comment.is_empty() { String::new() } else { format!("  -- {}", found.comment) }
            );
            text.push_str(&table(&["COLUMN", "TYPE", "CATEGORY", "COMMENT"], rows));
            Answer { json: table_json(&found), table: text }
        }
        TableCommand::List { database } => {
            let request = ListTablesRequest { database: database.clone() };
            let response =
                leader_call!(client, CatalogClient, list_tables, request, format!("listing tables of {database}"));
            let rows = response
                .tables
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.columns.len().to_string(),
                        ttl_text(t.effective_ttl_ms),
                        t.version.to_string(),
                    ]
                })
                .collect();
            Answer {
                json: json!({ "version": response.version, "tables": response.tables.iter().map(table_json).collect::<Vec<_>>() }),
                table: table(&["TABLE", "COLUMNS", "TTL", "VERSION"], rows),
            }
        }
    })
}

/// `ctl view …`
pub async fn view(client: &Client, command: ViewCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        ViewCommand::Create { database, name, definition, request_id } => {
            let request = CreateViewRequest {
                database: database.clone(),
                name: name.clone(),
                definition,
                request_id: fresh_request_id(request_id.request_id),
            };
            ddl_answer(leader_call!(
                client,
                CatalogClient,
                create_view,
                request,
                format!("creating view {database}.{name}")
            ))
        }
        ViewCommand::Drop { database, name, request_id } => {
            let request = DropViewRequest {
                database: database.clone(),
                name: name.clone(),
                request_id: fresh_request_id(request_id.request_id),
            };
            ddl_answer(leader_call!(
                client,
                CatalogClient,
                drop_view,
                request,
                format!("dropping view {database}.{name}")
            ))
        }
    })
}

fn procedure_row(procedure: &Procedure) -> Vec<String> {
    vec![
        procedure.id.to_string(),
        procedure.kind.clone(),
        procedure.target.clone(),
        procedure.state.clone(),
        procedure.step.clone(),
        procedure.error.clone(),
    ]
}

fn procedure_json(procedure: &Procedure) -> Value {
    json!({
        "id": procedure.id,
        "kind": procedure.kind,
        "target": procedure.target,
        "state": procedure.state,
        "step": procedure.step,
        "error": procedure.error,
        "request_id": procedure.request_id,
        "term": procedure.term,
        "created_at_ms": procedure.created_at_ms,
        "updated_at_ms": procedure.updated_at_ms,
    })
}

/// `ctl procedure …`
pub async fn procedure(client: &Client, command: ProcedureCommand) -> anyhow::Result<Answer> {
    const HEADER: [&str; 6] = ["ID", "KIND", "TARGET", "STATE", "STEP", "ERROR"];
    Ok(match command {
        ProcedureCommand::List { state, limit } => {
            let request = ListProceduresRequest { state: state.unwrap_or_default(), limit };
            let response = leader_call!(client, ProceduresClient, list_procedures, request, "listing procedures");
            Answer {
                json: Value::Array(response.procedures.iter().map(procedure_json).collect()),
                table: table(&HEADER, response.procedures.iter().map(procedure_row).collect()),
            }
        }
        ProcedureCommand::Get { id } => {
            let found = leader_call!(
                client,
                ProceduresClient,
                get_procedure,
                GetProcedureRequest { id },
                format!("reading procedure {id}")
            );
            Answer { json: procedure_json(&found), table: table(&HEADER, vec![procedure_row(&found)]) }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_parse_from_flags() {
        let parsed = column("time:timestamp:time").unwrap();
        assert_eq!(
            (parsed.data_type, parsed.category),
            (v1::DataType::Timestamp as i32, v1::ColumnCategory::Time as i32)
        );
        let parsed = column("v:DOUBLE:FIELD:the value: in volts").unwrap();
        assert_eq!(parsed.comment, "the value: in volts");
        assert!(column("v:DOUBLE").is_err());
        assert!(column("v:REAL:FIELD").unwrap_err().to_string().contains("expected one of BOOLEAN"));
    }

    #[test]
    fn table_files_parse_from_json_and_toml() {
        let dir = std::env::temp_dir().join(format!("leasehold-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("t.json");
        std::fs::write(
            &json,
            r#"{"columns": [{"name": "time", "type": "TIMESTAMP", "category": "TIME"}], "ttl": "7d"}"#,
        )
        .unwrap();
        let parsed = read_table_file(&json).unwrap();
        assert_eq!(parsed.ttl, Some(Duration::from_secs(7 * 86400)));
        let toml = dir.join("t.toml");
        std::fs::write(
            &toml,
            "comment = \"c\"\n[[columns]]\nname = \"time\"\ntype = \"TIMESTAMP\"\ncategory = \"TIME\"\n",
        )
        .unwrap();
        assert_eq!(read_table_file(&toml).unwrap().comment, "c");
        std::fs::write(&json, r#"{"columns": [], "colour": 1}"#).unwrap();
        assert!(read_table_file(&json).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
