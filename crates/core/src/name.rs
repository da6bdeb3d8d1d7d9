//! Validation of the identifiers operators choose: node ids and cluster names.

/// The longest node id or cluster name.
pub const MAX_ID_LEN: usize = 64;

/// An identifier that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {given:?} is invalid: {why}")]
pub struct InvalidId {
    /// What kind of identifier ("node id", "cluster name").
    pub what: &'static str,
    /// What was given.
    pub given: String,
    /// Why it is refused.
    pub why: &'static str,
}

/// Checks a node id or cluster name: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`, starting
/// with a letter or digit. Ids end up in logs, metrics labels and SQL rows, so they stay plain.
pub fn validate_id(what: &'static str, given: &str) -> Result<(), InvalidId> {
    let refuse = |why| Err(InvalidId { what, given: given.to_owned(), why });
    if given.is_empty() {
        return refuse("it is empty");
    }
    if given.len() > MAX_ID_LEN {
        return refuse("it is longer than 64 characters");
    }
    if !given.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return refuse("it must start with a letter or a digit");
    }
    if !given.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')) {
        return refuse("only letters, digits and . _ : - are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_pass() {
        for id in ["c1", "coordinator-0", "10.0.0.1:7400", "A_b.c"] {
            validate_id("node id", id).unwrap();
        }
    }

    #[test]
    fn bad_ids_say_why() {
        let cases = [
            ("", "empty"),
            ("-x", "start with"),
            ("a b", "only letters"),
            ("a/b", "only letters"),
            ("é", "start with"),
        ];
        for (id, why) in cases {
            let error = validate_id("node id", id).unwrap_err();
            assert!(error.to_string().contains(why), "{id:?}: {error}");
        }
        let long = "x".repeat(65);
        assert!(validate_id("cluster name", &long).unwrap_err().to_string().contains("longer"));
    }
}
