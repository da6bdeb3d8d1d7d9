//! Where the agent's configuration comes from, in order: defaults, the TOML file's `[agent]`
//! and `[log]` tables, `LEASEHOLD_AGENT_*` environment variables, flags. Each later source
//! wins, as for the coordinator.
//!
//! Every `LEASEHOLD_AGENT_*` variable is configuration of the agent, so one that is
//! malformed or names no key stops the start with the variable named; the coordinator's
//! `LEASEHOLD_*` variables are checked the same way within its own keys.

use std::time::Duration;

use anyhow::{Context, bail};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use leasehold_agent::AgentConfig;
use leasehold_coordinator::config::LogConfig;
use leasehold_core::name::validate_host_port;
use serde::{Deserialize, Deserializer, Serialize};

use crate::args::AgentArgs;

/// The prefix of every agent variable.
const PREFIX: &str = "LEASEHOLD_AGENT_";

/// What the provider of the agent's variables is called in figment's errors.
const ENVIRONMENT: &str = "environment variable";

/// The agent's whole configuration: the file's two tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentFileConfig {
    /// `[agent]`
    pub agent: AgentSettings,
    /// `[log]`, as in the coordinator's file.
    pub log: LogConfig,
}

/// `[agent]`: one key per flag of `leasehold agent`, with the flag's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentSettings {
    /// The data node's stable id; required.
    pub node_id: String,
    /// The gRPC listen address of `leasehold.v1.Agent`.
    pub listen: String,
    /// The address coordinators push to; empty for the bound listen address.
    pub advertise_address: String,
    /// Every coordinator's endpoint (a list, or one comma-separated string).
    #[serde(deserialize_with = "names")]
    pub coordinators: Vec<String>,
    /// The Prometheus `/metrics` and probes listen address; empty to turn it off.
    pub metrics_listen: String,
    /// How often to heartbeat.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The deadline of one heartbeat, below the interval.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// The bucket pools this data node joins (a list, or one comma-separated string).
    #[serde(deserialize_with = "names")]
    pub pools: Vec<String>,
    /// The resource this process is; empty for none.
    pub resource_id: String,
    /// The start attempt that launched this process; empty for none.
    pub attempt_id: String,
}

impl Default for AgentSettings {
    fn default() -> Self {
        // The agent library's own defaults for what it shares with this file.
        let library = AgentConfig::new(String::new(), Vec::new(), String::new());
        Self {
            node_id: library.node_id,
            listen: "127.0.0.1:7500".to_owned(),
            advertise_address: library.advertise_address,
            coordinators: vec!["127.0.0.1:7400".to_owned()],
            metrics_listen: "127.0.0.1:7590".to_owned(),
            heartbeat_interval: library.heartbeat_interval,
            heartbeat_timeout: library.heartbeat_timeout,
            pools: library.pools,
            resource_id: library.resource_id,
            attempt_id: library.attempt_id,
        }
    }
}

impl AgentSettings {
    /// The agent library's configuration (an empty advertise address stays empty: the server
    /// puts the bound address there).
    pub fn agent_config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(&self.node_id, self.coordinators.clone(), &self.advertise_address);
        config.heartbeat_interval = self.heartbeat_interval;
        config.heartbeat_timeout = self.heartbeat_timeout;
        config.pools.clone_from(&self.pools);
        config.resource_id.clone_from(&self.resource_id);
        config.attempt_id.clone_from(&self.attempt_id);
        config
    }

    /// Checks what can be checked before binding, naming the setting that is wrong.
    fn validate(&self) -> anyhow::Result<()> {
        if self.node_id.is_empty() {
            bail!("invalid configuration: --node-id: required (or LEASEHOLD_AGENT_NODE_ID, or node-id in [agent])");
        }
        validate_host_port(&self.listen)
            .map_err(|error| anyhow::anyhow!("invalid configuration: --listen: {error}"))?;
        if !self.metrics_listen.is_empty() {
            validate_host_port(&self.metrics_listen)
                .map_err(|error| anyhow::anyhow!("invalid configuration: --metrics-listen: {error}"))?;
        }
        let mut config = self.agent_config();
        if config.advertise_address.is_empty() {
            // Whether the bound address can be dialed is known once bound; the rest is not.
            config.advertise_address.clone_from(&self.listen);
        }
        config.validate().map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))
    }
}

/// A list given as a TOML array or as one comma-separated string (as in a variable).
fn names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        Joined(String),
        List(Vec<String>),
    }
    Ok(match Names::deserialize(deserializer)? {
        Names::List(names) => names,
        Names::Joined(joined) if joined.trim().is_empty() => Vec::new(),
        Names::Joined(joined) => joined.split(',').map(|name| name.trim().to_owned()).collect(),
    })
}

/// Loads and validates the agent's configuration for `args`.
pub fn load_agent_config(args: &AgentArgs) -> anyhow::Result<AgentFileConfig> {
    load_agent_config_from(args, AgentEnvironment::from_process())
}

fn load_agent_config_from(args: &AgentArgs, environment: AgentEnvironment) -> anyhow::Result<AgentFileConfig> {
    environment.check_names()?;
    let mut figment = Figment::from(Serialized::defaults(AgentFileConfig::default()));
    if let Some(path) = &args.config {
        if !path.is_file() {
            bail!("--config {}: no such file", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(&environment);
    let mut config: AgentFileConfig =
        figment.extract().map_err(|error| anyhow::anyhow!("invalid configuration: {}", environment.explain(&error)))?;
    apply_flags(&mut config.agent, args);
    config.agent.validate()?;
    Ok(config)
}

fn apply_flags(settings: &mut AgentSettings, args: &AgentArgs) {
    fn set<T: Clone>(target: &mut T, flag: &Option<T>) {
        if let Some(value) = flag {
            target.clone_from(value);
        }
    }
    set(&mut settings.node_id, &args.node_id);
    set(&mut settings.listen, &args.listen);
    set(&mut settings.advertise_address, &args.advertise_address);
    set(&mut settings.coordinators, &args.coordinators);
    set(&mut settings.metrics_listen, &args.metrics_listen);
    set(&mut settings.heartbeat_interval, &args.heartbeat_interval);
    set(&mut settings.heartbeat_timeout, &args.heartbeat_timeout);
    set(&mut settings.pools, &args.pools);
    set(&mut settings.resource_id, &args.resource_id);
    set(&mut settings.attempt_id, &args.attempt_id);
}

/// The effective configuration as TOML, every default written out.
pub fn agent_to_toml(config: &AgentFileConfig) -> anyhow::Result<String> {
    // Shown through the coordinator's path, so that secrets added later (token files) are
    // hidden the same way: as paths, never their contents.
    let value = serde_json::to_value(config).context("serializing the configuration")?;
    let mut out = String::new();
    super::write_toml(&mut out, "", &value);
    if config.agent.advertise_address.is_empty() {
        out = out.replace("advertise-address = \"\"\n", "advertise-address = \"\" # the bound listen address\n");
    }
    Ok(out)
}

/// The `LEASEHOLD_AGENT_*` variables, read once, as strings: a node id such as `007` stays a
/// string, and each key's own type decides what its text must look like.
#[derive(Debug, Clone, Default)]
struct AgentEnvironment {
    /// (variable, value), in the order read.
    variables: Vec<(String, String)>,
}

impl AgentEnvironment {
    fn from_process() -> Self {
        let variables = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with(PREFIX).then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect();
        Self { variables }
    }

    #[cfg(test)]
    fn of(variables: &[(&str, &str)]) -> Self {
        Self { variables: variables.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect() }
    }

    /// Refuses a variable that names no key, listing the ones that exist.
    fn check_names(&self) -> anyhow::Result<()> {
        let known = known_variables();
        if let Some((name, _)) = self.variables.iter().find(|(name, _)| !known.contains(name)) {
            bail!("invalid configuration: {name}: no such setting of the agent; expected one of {}", known.join(", "));
        }
        Ok(())
    }

    /// figment's errors, each on its own, one line; a variable's names the variable, its value
    /// and the form expected.
    fn explain(&self, error: &figment::Error) -> String {
        let explain_one = |error: figment::Error| {
            let from_environment = error.metadata.as_ref().is_some_and(|metadata| metadata.name == ENVIRONMENT);
            if !from_environment {
                return error.to_string();
            }
            let path: Vec<&str> = error.path.iter().map(String::as_str).collect();
            let name = variable_name(&path);
            let value = self.variables.iter().find(|(variable, _)| *variable == name).map_or("", |(_, value)| value);
            let form = expected_form(&path.join("."));
            format!("{name}={value:?}: {}{form}", error.kind)
        };
        error.clone().into_iter().map(explain_one).collect::<Vec<_>>().join("; ")
    }
}

impl Provider for AgentEnvironment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT).interpolater(|_: &Profile, path: &[&str]| variable_name(path))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (name, value) in &self.variables {
            let Some(path) = key_path(name) else { continue };
            insert(&mut root, &path, Value::from(value.as_str()));
        }
        Ok(Profile::Default.collect(root))
    }
}

/// `LEASEHOLD_AGENT_HEARTBEAT_INTERVAL` → `["agent", "heartbeat-interval"]`;
/// `LEASEHOLD_AGENT_LOG__LEVEL` → `["log", "level"]`.
fn key_path(variable: &str) -> Option<Vec<String>> {
    let rest = variable.strip_prefix(PREFIX)?;
    let mut path: Vec<String> =
        rest.split("__").map(|segment| segment.to_ascii_lowercase().replace('_', "-")).collect();
    if !(path.len() > 1 && path[0] == "log") {
        path.insert(0, "agent".to_owned());
    }
    Some(path)
}

/// The inverse of [`key_path`].
fn variable_name(path: &[&str]) -> String {
    let keys = match path {
        ["agent", rest @ ..] => rest,
        other => other,
    };
    let keys: Vec<String> = keys.iter().map(|key| key.to_ascii_uppercase().replace('-', "_")).collect();
    format!("{PREFIX}{}", keys.join("__"))
}

/// Every variable that names a key, from the keys of the defaults.
fn known_variables() -> Vec<String> {
    let defaults = serde_json::to_value(AgentFileConfig::default()).unwrap_or_default();
    let mut known = Vec::new();
    for (table, keys) in defaults.as_object().into_iter().flatten() {
        for key in keys.as_object().into_iter().flat_map(|keys| keys.keys()) {
            known.push(variable_name(&[table.as_str(), key.as_str()]));
        }
    }
    known
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [key] => {
            dict.insert(key.clone(), value);
        }
        [key, rest @ ..] => {
            let entry = dict.entry(key.clone()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// What a key's text must look like, for the error about a malformed variable.
fn expected_form(key: &str) -> &'static str {
    match key {
        "agent.heartbeat-interval" | "agent.heartbeat-timeout" => " (write durations like 1s, 500ms or 1m)",
        "agent.coordinators" => " (HOST:PORT endpoints, comma-separated)",
        "agent.pools" => " (pool names, comma-separated)",
        "log.format" => " (text or json)",
        _ => "",
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail hands out its own error type
mod tests {
    use super::*;

    fn load(args: &AgentArgs, variables: &[(&str, &str)]) -> anyhow::Result<AgentFileConfig> {
        load_agent_config_from(args, AgentEnvironment::of(variables))
    }

    fn named(node_id: &str) -> AgentArgs {
        AgentArgs { node_id: Some(node_id.into()), ..AgentArgs::default() }
    }

    #[test]
    fn variables_map_onto_keys_and_back() {
        for (variable, path) in [
            ("LEASEHOLD_AGENT_NODE_ID", vec!["agent", "node-id"]),
            ("LEASEHOLD_AGENT_HEARTBEAT_INTERVAL", vec!["agent", "heartbeat-interval"]),
            ("LEASEHOLD_AGENT_LOG__LEVEL", vec!["log", "level"]),
        ] {
            assert_eq!(key_path(variable).unwrap(), path, "{variable}");
            assert_eq!(variable_name(&path), variable);
        }
        // `LOG` alone is no table: it is an (unknown) agent key.
        assert_eq!(key_path("LEASEHOLD_AGENT_LOG").unwrap(), ["agent", "log"]);
        assert_eq!(key_path("LEASEHOLD_ENDPOINTS"), None);
        let known = known_variables();
        for variable in ["LEASEHOLD_AGENT_POOLS", "LEASEHOLD_AGENT_ATTEMPT_ID", "LEASEHOLD_AGENT_LOG__FORMAT"] {
            assert!(known.contains(&variable.to_owned()), "{variable} in {known:?}");
        }
    }

    #[test]
    fn defaults_fill_every_key_but_the_node_id() {
        let config = load(&named("dn1"), &[]).unwrap();
        let expected = AgentSettings { node_id: "dn1".into(), ..AgentSettings::default() };
        assert_eq!(config.agent, expected);
        assert_eq!(config.agent.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(config.agent.heartbeat_timeout, Duration::from_millis(500));
        assert_eq!(config.log, LogConfig::default());
        let error = load(&AgentArgs::default(), &[]).unwrap_err().to_string();
        assert!(error.contains("--node-id: required"), "{error}");
    }

    #[test]
    fn file_then_variables_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "agent.toml",
                "[agent]\nnode-id = \"from-file\"\nlisten = \"127.0.0.1:7501\"\nheartbeat-interval = \"2s\"\n\
                 heartbeat-timeout = \"1s\"\npools = [\"ingest\", \"compaction\"]\n\
                 coordinators = [\"10.0.0.1:7400\", \"10.0.0.2:7400\"]\n\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
            )?;
            let variables = [
                ("LEASEHOLD_AGENT_LISTEN", "127.0.0.1:7502"),
                ("LEASEHOLD_AGENT_HEARTBEAT_INTERVAL", "3s"),
                ("LEASEHOLD_AGENT_LOG__LEVEL", "warn"),
                ("LEASEHOLD_AGENT_NODE_ID", "007"),
            ];
            let args = AgentArgs {
                config: Some("agent.toml".into()),
                heartbeat_interval: Some(Duration::from_secs(4)),
                ..AgentArgs::default()
            };
            let config = load(&args, &variables).map_err(|error| error.to_string())?;
            // The flag over the variable over the file.
            assert_eq!(config.agent.heartbeat_interval, Duration::from_secs(4));
            // The variable over the file, kept as text.
            assert_eq!(config.agent.listen, "127.0.0.1:7502");
            assert_eq!(config.agent.node_id, "007");
            assert_eq!(config.log.level, "warn");
            // The file over the defaults.
            assert_eq!(config.agent.heartbeat_timeout, Duration::from_secs(1));
            assert_eq!(config.agent.pools, ["ingest", "compaction"]);
            assert_eq!(config.agent.coordinators, ["10.0.0.1:7400", "10.0.0.2:7400"]);
            assert_eq!(config.log.format, leasehold_coordinator::config::LogFormat::Json);
            assert_eq!(config.agent.metrics_listen, "127.0.0.1:7590");
            Ok(())
        });
    }

    #[test]
    fn lists_in_variables_are_comma_separated() {
        let variables = [("LEASEHOLD_AGENT_POOLS", "a,b"), ("LEASEHOLD_AGENT_COORDINATORS", "h1:7400, h2:7400")];
        let config = load(&named("dn1"), &variables).unwrap();
        assert_eq!(config.agent.pools, ["a", "b"]);
        assert_eq!(config.agent.coordinators, ["h1:7400", "h2:7400"]);
        let config = load(&named("dn1"), &[("LEASEHOLD_AGENT_POOLS", "")]).unwrap();
        assert!(config.agent.pools.is_empty());
        let config = load(&named("dn1"), &[("LEASEHOLD_AGENT_METRICS_LISTEN", "")]).unwrap();
        assert_eq!(config.agent.metrics_listen, "", "an empty variable turns metrics off");
    }

    #[test]
    fn a_malformed_variable_names_itself_its_value_and_the_form() {
        let error = load(&named("dn1"), &[("LEASEHOLD_AGENT_HEARTBEAT_INTERVAL", "bogus")]).unwrap_err().to_string();
        assert!(error.starts_with("invalid configuration: LEASEHOLD_AGENT_HEARTBEAT_INTERVAL=\"bogus\""), "{error}");
        assert!(error.contains("500ms"), "{error}");
        let error = load(&named("dn1"), &[("LEASEHOLD_AGENT_LOG__FORMAT", "xml")]).unwrap_err().to_string();
        assert!(error.contains("LEASEHOLD_AGENT_LOG__FORMAT=\"xml\""), "{error}");
        assert!(error.contains("text or json"), "{error}");
        // A well-formed value that cannot work is refused too, with its setting named.
        let error = load(&named("dn1"), &[("LEASEHOLD_AGENT_HEARTBEAT_TIMEOUT", "5s")]).unwrap_err().to_string();
        assert!(error.contains("--heartbeat-timeout"), "{error}");
        let error = load(&named("dn1"), &[("LEASEHOLD_AGENT_LISTEN", "nowhere")]).unwrap_err().to_string();
        assert!(error.contains("--listen"), "{error}");
    }

    #[test]
    fn an_unknown_variable_is_refused_with_the_known_ones() {
        let error = load(&named("dn1"), &[("LEASEHOLD_AGENT_HEARTBEAT_INTERVALL", "1s")]).unwrap_err().to_string();
        assert!(error.contains("LEASEHOLD_AGENT_HEARTBEAT_INTERVALL: no such setting"), "{error}");
        assert!(error.contains("LEASEHOLD_AGENT_HEARTBEAT_INTERVAL,"), "{error}");
        let error = load(&named("dn1"), &[("LEASEHOLD_AGENT_LOG_LEVEL", "debug")]).unwrap_err().to_string();
        assert!(error.contains("LEASEHOLD_AGENT_LOG_LEVEL: no such setting"), "{error}");
    }

    #[test]
    fn a_bad_file_names_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[agent]\nheartbeat-intervall = \"1s\"\n")?;
            let args = AgentArgs { config: Some("typo.toml".into()), ..named("dn1") };
            let error = load(&args, &[]).unwrap_err().to_string();
            assert!(error.contains("heartbeat-intervall"), "{error}");
            jail.create_file("bad.toml", "[agent]\nheartbeat-timeout = \"soon\"\n")?;
            let args = AgentArgs { config: Some("bad.toml".into()), ..named("dn1") };
            let error = load(&args, &[]).unwrap_err().to_string();
            assert!(error.contains("heartbeat-timeout") && error.contains("bad.toml"), "{error}");
            jail.create_file("top.toml", "node-id = \"dn1\"\n")?;
            let args = AgentArgs { config: Some("top.toml".into()), ..AgentArgs::default() };
            let error = load(&args, &[]).unwrap_err().to_string();
            assert!(error.contains("node-id"), "a key outside [agent] is refused: {error}");
            let args = AgentArgs { config: Some("missing.toml".into()), ..named("dn1") };
            let error = load(&args, &[]).unwrap_err().to_string();
            assert!(error.contains("missing.toml: no such file"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_operations_guides_example_file_loads() {
        let guide = include_str!("../../../../docs/OPERATIONS.md");
        let section = guide.split("## Configuring an agent").nth(1).expect("the section");
        let example = section.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).expect("the example");
        figment::Jail::expect_with(|jail| {
            jail.create_file("agent.toml", example)?;
            let args = AgentArgs { config: Some("agent.toml".into()), ..AgentArgs::default() };
            let config = load(&args, &[]).map_err(|error| format!("{error}\n{example}"))?;
            assert_eq!(config.agent.node_id, "dn1");
            assert_eq!(config.agent.coordinators.len(), 3);
            assert_eq!(config.agent.pools, ["ingest"]);
            Ok(())
        });
    }

    #[test]
    fn the_printed_configuration_shows_every_default_and_loads_back() {
        figment::Jail::expect_with(|jail| {
            let config = load(&named("dn1"), &[]).map_err(|error| error.to_string())?;
            let printed = agent_to_toml(&config).map_err(|error| error.to_string())?;
            for line in [
                "[agent]",
                "node-id = \"dn1\"",
                "listen = \"127.0.0.1:7500\"",
                "advertise-address = \"\" # the bound listen address",
                "coordinators = [\"127.0.0.1:7400\"]",
                "metrics-listen = \"127.0.0.1:7590\"",
                "heartbeat-interval = \"1s\"",
                "heartbeat-timeout = \"500ms\"",
                "pools = []",
                "[log]",
                "format = \"text\"",
                "level = \"info\"",
            ] {
                assert!(printed.lines().any(|printed| printed == line), "{line:?} in:\n{printed}");
            }
            jail.create_file("printed.toml", &printed)?;
            let args = AgentArgs { config: Some("printed.toml".into()), ..AgentArgs::default() };
            let again = load(&args, &[]).map_err(|error| format!("{error}\n{printed}"))?;
            assert_eq!(again, config, "{printed}");
            Ok(())
        });
    }
}
