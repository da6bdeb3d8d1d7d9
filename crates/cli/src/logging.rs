//! Text or JSON logs on stderr; stdout stays free for command output.

use leasehold_coordinator::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// PostgreSQL's NOTICE messages, which sqlx logs at INFO: the migrations' `IF NOT EXISTS`
/// answers "relation … already exists, skipping" at every start. Its warnings stay.
const PG_NOTICES: &str = "sqlx::postgres::notice";

/// `level` with PostgreSQL notices lowered to WARN, unless `level` says what to do with them.
fn with_quiet_notices(level: &str) -> String {
    if level.contains(PG_NOTICES) { level.to_owned() } else { format!("{level},{PG_NOTICES}=warn") }
}

/// Installs the global subscriber. `RUST_LOG` wins over `level` when it is set.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::try_new(value)?,
        _ => EnvFilter::try_new(with_quiet_notices(level))
            .map_err(|error| anyhow::anyhow!("invalid configuration: log.level: {error}"))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A closed stderr (a log collector that went away) must not take the process down:
    // reporting a failed log write would itself write to stderr and panic.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    let installed = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_notices_are_quiet_unless_the_level_names_them() {
        assert_eq!(with_quiet_notices("info"), "info,sqlx::postgres::notice=warn");
        assert_eq!(with_quiet_notices("debug,sqlx::postgres::notice=info"), "debug,sqlx::postgres::notice=info");
        let filter = EnvFilter::try_new(with_quiet_notices("info")).unwrap();
        assert!(filter.to_string().contains("sqlx::postgres::notice=warn"), "{filter}");
    }
}
