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

/// Whether `given` is `HOST:PORT` (a name, an IPv4 address, or an IPv6 one in brackets), the
/// host to be resolved when it is bound or dialled: `localhost:7400` and `[::1]:7400` are.
pub fn validate_host_port(given: &str) -> Result<(), String> {
    let (host, port) = given.rsplit_once(':').ok_or_else(|| format!("{given:?} is not HOST:PORT"))?;
    port.parse::<u16>().map_err(|_| format!("{given:?}: the port {port:?} is not a number up to 65535"))?;
    let well_formed = match host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
    };
    if well_formed { Ok(()) } else { Err(format!("{given:?}: {host:?} is not a host name or address")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_addresses_with_a_port_are_host_port() {
        for good in ["localhost:7400", "127.0.0.1:0", "[::1]:7400", "db-1.internal:5432"] {
            assert_eq!(validate_host_port(good), Ok(()), "{good}");
        }
        for bad in ["localhost", ":7400", "host:port", "host:70000", "a b:1", "::1:7400", "[zz]:1"] {
            assert!(validate_host_port(bad).is_err(), "{bad}");
        }
    }

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
