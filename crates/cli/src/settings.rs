//! Where the coordinator's configuration comes from, in order: defaults, the TOML file,
//! `LEASEHOLD_*` environment variables, flags. Each later source wins. The agent's, from
//! the same kinds of sources, is in [`agent`].

mod agent;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Uncased;
use leasehold_coordinator::CoordinatorConfig;

use crate::args::CoordinatorArgs;

pub use self::agent::{AgentFileConfig, AgentSettings, agent_to_toml, load_agent_config};

/// The top-level keys; environment variables outside them (such as `LEASEHOLD_ENDPOINTS`,
/// read by `ctl`) are not configuration of the coordinator.
const TOP_LEVEL_KEYS: &[&str] = &[
    "node-id",
    "cluster",
    "listen",
    "advertise-address",
    "metrics-listen",
    "store",
    "ha",
    "metadata",
    "datanodes",
    "catalog",
    "broadcast",
    "assign",
    "resources",
    "containers",
    "log",
];

/// `LEASEHOLD_HA__LEASE_TTL` → `ha.lease-ttl`; `None` for variables that are not configuration.
fn env_key(variable: &str) -> Option<String> {
    let key = variable.to_ascii_lowercase().replace("__", ".").replace('_', "-");
    let top = key.split('.').next()?;
    TOP_LEVEL_KEYS.contains(&top).then_some(key)
}

/// Loads and validates the configuration for `args`.
pub fn load_coordinator_config(args: &CoordinatorArgs) -> anyhow::Result<CoordinatorConfig> {
    let mut figment = Figment::from(Serialized::defaults(CoordinatorConfig::default()));
    if let Some(path) = &args.config {
        if !path.is_file() {
            bail!("--config {}: no such file", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment
        .merge(Env::prefixed("LEASEHOLD_").filter_map(|variable| env_key(variable.as_str()).map(Uncased::from_owned)));
    let mut config: CoordinatorConfig =
        figment.extract().map_err(|error| anyhow::anyhow!("invalid configuration: {}", one_line(&error)))?;
    apply_flags(&mut config, args);
    config.validate()?;
    Ok(config)
}

/// figment's error for every problem it found, on one line.
fn one_line(error: &figment::Error) -> String {
    error.clone().into_iter().map(|error| error.to_string()).collect::<Vec<_>>().join("; ")
}

fn apply_flags(config: &mut CoordinatorConfig, args: &CoordinatorArgs) {
    let set = |target: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            target.clone_from(value);
        }
    };
    if args.node_id.is_some() {
        config.node_id.clone_from(&args.node_id);
    }
    if args.advertise_address.is_some() {
        config.advertise_address.clone_from(&args.advertise_address);
    }
    set(&mut config.listen, &args.listen);
    set(&mut config.metrics_listen, &args.metrics_listen);
    set(&mut config.store.url, &args.store);
    if args.store_password_file.is_some() {
        config.store.password_file.clone_from(&args.store_password_file);
    }
    set(&mut config.cluster, &args.cluster);
    if let Some(mode) = args.ha_mode {
        config.ha.mode = mode;
    }
    if let Some(priority) = args.priority {
        config.ha.priority = priority;
    }
    if let Some(ttl) = args.lease_ttl {
        config.ha.lease_ttl = ttl;
    }
    if args.renew_interval.is_some() {
        config.ha.renew_interval = args.renew_interval;
    }
}

/// The configuration as TOML, with the store password hidden (a password file is shown by
/// its path), and the values defaulted from others (the node id, the HA loop's renew interval
/// and store timeout) written out.
pub fn to_toml(config: &CoordinatorConfig) -> anyhow::Result<String> {
    let mut shown = config.clone();
    let timings = config.ha_timings();
    shown.node_id = Some(config.effective_node_id());
    shown.ha.renew_interval = Some(timings.renew_interval);
    shown.ha.store_timeout = Some(timings.store_timeout);
    shown.store.url = leasehold_store::redact_url(&shown.store.url);
    let value = serde_json::to_value(&shown).context("serializing the configuration")?;
    let mut out = String::new();
    write_toml(&mut out, "", &value);
    Ok(out)
}

/// A small TOML writer for the flat-then-tables shape of the configuration: scalars and
/// arrays of scalars, then tables, then arrays of tables (`[[assign.pools]]`).
fn write_toml(out: &mut String, prefix: &str, value: &serde_json::Value) {
    let Some(map) = value.as_object() else { return };
    let of_tables = |value: &serde_json::Value| {
        value.as_array().is_some_and(|items| !items.is_empty() && items.iter().all(serde_json::Value::is_object))
    };
    for (key, value) in map {
        match value {
            serde_json::Value::Object(_) | serde_json::Value::Null => {}
            array if of_tables(array) => {}
            other => out.push_str(&format!("{key} = {other}\n")),
        }
    }
    for (key, value) in map {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if value.is_object() {
            out.push_str(&format!("\n[{name}]\n"));
            write_toml(out, &name, value);
        }
    }
    for (key, value) in map.iter().filter(|(_, value)| of_tables(value)) {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        for item in value.as_array().into_iter().flatten() {
            out.push_str(&format!("\n[[{name}]]\n"));
            write_toml(out, &name, item);
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail hands out its own error type
mod tests {
    use super::*;

    #[test]
    fn environment_variables_map_onto_keys() {
        assert_eq!(env_key("HA__LEASE_TTL").as_deref(), Some("ha.lease-ttl"));
        assert_eq!(env_key("NODE_ID").as_deref(), Some("node-id"));
        assert_eq!(env_key("STORE__URL").as_deref(), Some("store.url"));
        assert_eq!(env_key("STORE__PASSWORD_FILE").as_deref(), Some("store.password-file"));
        assert_eq!(env_key("ENDPOINTS"), None);
        assert_eq!(env_key("TEST_POSTGRES_URL"), None);
        assert_eq!(env_key("FAILPOINTS"), None);
    }

    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "node-id = \"from-file\"\ncluster = \"file\"\n[ha]\nlease-ttl = \"3s\"\npriority = 1\n",
            )?;
            jail.set_env("LEASEHOLD_CLUSTER", "from-env");
            jail.set_env("LEASEHOLD_HA__PRIORITY", "2");
            let args =
                CoordinatorArgs { config: Some("c.toml".into()), priority: Some(3), ..CoordinatorArgs::default() };
            let config = load_coordinator_config(&args).map_err(|error| error.to_string())?;
            assert_eq!(config.node_id.as_deref(), Some("from-file"));
            assert_eq!(config.cluster, "from-env");
            assert_eq!(config.ha.lease_ttl, std::time::Duration::from_secs(3));
            assert_eq!(config.ha.priority, 3);
            Ok(())
        });
    }

    #[test]
    fn configured_pools_load_and_print_back() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[[assign.pools]]\nname = \"ingest\"\nbucket-count = 64\n\n[[assign.pools]]\nname = \"compaction\"\n",
            )?;
            let args = CoordinatorArgs { config: Some("c.toml".into()), ..CoordinatorArgs::default() };
            let config = load_coordinator_config(&args).map_err(|error| error.to_string())?;
            let names: Vec<(&str, Option<u32>)> =
                config.assign.pools.iter().map(|pool| (pool.name.as_str(), pool.bucket_count)).collect();
            assert_eq!(names, [("ingest", Some(64)), ("compaction", None)]);
            let printed = to_toml(&config).map_err(|error| error.to_string())?;
            jail.create_file("printed.toml", &printed)?;
            let args = CoordinatorArgs { config: Some("printed.toml".into()), ..CoordinatorArgs::default() };
            let again = load_coordinator_config(&args).map_err(|error| format!("{error}\n{printed}"))?;
            assert_eq!(again.assign, config.assign, "{printed}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[ha]\nlease-ttl = \"soon\"\n")?;
            let args = CoordinatorArgs { config: Some("c.toml".into()), ..CoordinatorArgs::default() };
            let error = load_coordinator_config(&args).unwrap_err().to_string();
            assert!(error.contains("lease-ttl"), "{error}");
            jail.create_file("d.toml", "[ha]\nmode = \"leader\"\n")?;
            let args = CoordinatorArgs { config: Some("d.toml".into()), ..CoordinatorArgs::default() };
            let error = load_coordinator_config(&args).unwrap_err().to_string();
            assert!(error.contains("unknown HA mode"), "{error}");
            jail.create_file("e.toml", "[ha]\nlease-tll = \"1s\"\n")?;
            let args = CoordinatorArgs { config: Some("e.toml".into()), ..CoordinatorArgs::default() };
            let error = load_coordinator_config(&args).unwrap_err().to_string();
            assert!(error.contains("lease-tll"), "{error}");
            let args = CoordinatorArgs { store: Some("ftp://x".into()), ..CoordinatorArgs::default() };
            let error = load_coordinator_config(&args).unwrap_err().to_string();
            assert!(error.contains("store.url"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn printed_configuration_hides_the_password() {
        let mut config = CoordinatorConfig::default();
        config.store.url = "postgres://u:secret@h/db".into();
        let toml = to_toml(&config).unwrap();
        assert!(toml.contains("url = \"postgres://u:***@h/db\""), "{toml}");
        assert!(toml.contains("[ha]"), "{toml}");
        assert!(!toml.contains("secret"));
    }

    #[test]
    fn printed_configuration_shows_the_values_defaulted_from_others() {
        let config = CoordinatorConfig { listen: "127.0.0.1:7411".into(), ..CoordinatorConfig::default() };
        let toml = to_toml(&config).unwrap();
        for line in ["node-id = \"coordinator-7411\"", "renew-interval = \"2s\"", "store-timeout = \"500ms\""] {
            assert!(toml.lines().any(|printed| printed == line), "{line} in:\n{toml}");
        }
    }

    #[test]
    fn the_password_file_comes_from_file_environment_or_flag_and_prints_as_its_path() {
        figment::Jail::expect_with(|jail| {
            let url = "postgres://leasehold@127.0.0.1:5432/leasehold";
            jail.create_file("c.toml", &format!("[store]\nurl = \"{url}\"\npassword-file = \"from-file\"\n"))?;
            let args = CoordinatorArgs { config: Some("c.toml".into()), ..CoordinatorArgs::default() };
            let config = load_coordinator_config(&args).map_err(|error| error.to_string())?;
            assert_eq!(config.store.password_file.as_deref(), Some(std::path::Path::new("from-file")));
            jail.set_env("LEASEHOLD_STORE__PASSWORD_FILE", "from-env");
            let config = load_coordinator_config(&args).map_err(|error| error.to_string())?;
            assert_eq!(config.store.password_file.as_deref(), Some(std::path::Path::new("from-env")));
            let args = CoordinatorArgs { store_password_file: Some("from-flag".into()), ..args };
            let config = load_coordinator_config(&args).map_err(|error| error.to_string())?;
            assert_eq!(config.store.password_file.as_deref(), Some(std::path::Path::new("from-flag")));
            let printed = to_toml(&config).map_err(|error| error.to_string())?;
            assert!(printed.contains("password-file = \"from-flag\""), "{printed}");
            assert!(printed.contains(&format!("url = \"{url}\"")), "{printed}");
            Ok(())
        });
    }
}
