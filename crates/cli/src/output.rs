//! What every `ctl` command answers with, in both forms, and the aligned table it prints.

use std::collections::HashMap;

use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let out = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(out, "A    LONGER\nxyz  1\nq    22\n");
    }
}
