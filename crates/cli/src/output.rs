//! What every `ctl` command answers with, in both forms, and the aligned table it prints.

use std::collections::HashMap;

use leasehold::v1;
use serde_json::{Value, json};

/// A command's answer, in both forms.
pub struct Answer {
    /// For `--output json`.
    pub json: Value,
    /// For `--output table`.
    pub table: String,
}

/// Aligned columns with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|title| title.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// A map as `KEY=VALUE` pairs sorted by key and joined by commas (empty for an empty map).
pub fn pairs(map: &HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = map.iter().map(|(key, value)| format!("{key}={value}")).collect();
    pairs.sort();
    pairs.join(",")
}

/// A proto enum, as JSON names it.
pub trait ProtoEnum: TryFrom<i32> {
    /// The value's name in the proto file.
    fn proto_name(self) -> &'static str;
}

macro_rules! proto_enums {
    ($($enum:ty),* $(,)?) => {
        $(impl ProtoEnum for $enum {
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
        })*
    };
}

proto_enums!(
    v1::HaMode,
    v1::HaRole,
    v1::DataNodeLeaseStatus,
    v1::DataType,
    v1::ColumnCategory,
    v1::ResourceState,
    v1::AgentLeaseState,
);

/// An enum field as grpcurl shows it in JSON: the value's proto name (`DATA_TYPE_TIMESTAMP`),
/// or the number when this build does not know the value.
pub fn enum_json<E: ProtoEnum>(value: i32) -> Value {
    E::try_from(value).map_or_else(|_| json!(value), |known| json!(known.proto_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let out = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(out, "A    LONGER\nxyz  1\nq    22\n");
    }

    #[test]
    fn enums_are_named_as_in_the_proto_and_unknown_values_by_number() {
        assert_eq!(enum_json::<v1::DataType>(v1::DataType::Timestamp as i32), json!("DATA_TYPE_TIMESTAMP"));
        assert_eq!(enum_json::<v1::HaRole>(v1::HaRole::Lost as i32), json!("HA_ROLE_LOST"));
        assert_eq!(enum_json::<v1::HaMode>(99), json!(99));
    }
}
