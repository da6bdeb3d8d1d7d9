//! `[resources]` and `[containers.NAME]`: the resource keeper and the containers that start
//! its processes (DESIGN §7).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[resources]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResourcesConfig {
    /// `[resources.auto-restart]`
    pub auto_restart: AutoRestartConfig,
}

/// `[resources.auto-restart]`: restarting data-node processes that died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AutoRestartConfig {
    /// Whether the leader restarts orphaned resources and fills groups up to their minimum.
    pub enabled: bool,
    /// Attempts per orphan before it is cleaned up (stopped, deregistered, deleted).
    pub max_retries: u32,
    /// Before the first attempt, between attempts, and the live time that resets the count.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// How often the keeper looks for orphans and groups below their minimum.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for AutoRestartConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_retries: 5,
            grace_period: Duration::from_secs(60),
            interval: Duration::from_secs(10),
        }
    }
}

/// What runs a container's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerKind {
    /// Processes spawned from `command` on the coordinator named by `node`.
    Local,
    /// Processes managed elsewhere (Kubernetes, systemd): never started or restarted here.
    External,
}

/// `[containers.NAME]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerConfig {
    /// `local` or `external`.
    pub kind: ContainerKind,
    /// `local`: the coordinator (node id) whose host runs the processes; only it starts and
    /// stops them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `local`: the command and its arguments, with placeholders `{resource_id}`,
    /// `{attempt_id}`, `{group}`, `{coordinators}` (the coordinators' addresses, comma
    /// separated) and `{prop:KEY}` (a property of the resource or, below it, of its group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `local`: environment variables added to the coordinator's own (placeholders as above).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// `local`: the processes' working directory; the coordinator's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<PathBuf>,
    /// `local`: where each resource's stdout and stderr go (`RESOURCE_ID.log`, appended).
    #[serde(default = "default_log_directory")]
    pub log_directory: PathBuf,
    /// `local`: how long a stop waits after SIGTERM before SIGKILL.
    #[serde(default = "default_stop_grace", with = "humantime_serde")]
    pub stop_grace: Duration,
}

fn default_log_directory() -> PathBuf {
    PathBuf::from("leasehold-data/resources")
}

fn default_stop_grace() -> Duration {
    Duration::from_secs(10)
}

/// The placeholders a command template may use, besides `{prop:KEY}`.
pub const PLACEHOLDERS: &[&str] = &["resource_id", "attempt_id", "group", "coordinators"];

/// Checks every `{...}` of `template`: a known placeholder or `prop:KEY`.
pub fn check_placeholders(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{template:?}: '{{' without '}}'"));
        };
        let name = &after[..close];
        let known = PLACEHOLDERS.contains(&name) || name.strip_prefix("prop:").is_some_and(|key| !key.is_empty());
        if !known {
            return Err(format!(
                "{template:?}: unknown placeholder {{{name}}} (known: {}, prop:KEY)",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

impl ResourcesConfig {
    /// Checks the keeper's settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let auto = &self.auto_restart;
        if auto.interval.is_zero() {
            return Err(ConfigError::new("resources.auto-restart.interval", "must be above zero"));
        }
        if auto.grace_period < auto.interval {
            return Err(ConfigError::new(
                "resources.auto-restart.grace-period",
                format!(
                    "{:?} is below resources.auto-restart.interval {:?}: attempts could not be spaced by the grace period",
                    auto.grace_period, auto.interval
                ),
            ));
        }
        Ok(())
    }
}

/// Checks every `[containers.NAME]`, naming the key that conflicts.
pub fn validate_containers(containers: &BTreeMap<String, ContainerConfig>) -> Result<(), ConfigError> {
    for (name, container) in containers {
        let key = |field: &str| format!("containers.{name}.{field}");
        leasehold_core::keeper::validate_resource_name("containers", name)
            .map_err(|message| ConfigError::new(&format!("containers.{name}"), message))?;
        match container.kind {
            ContainerKind::Local => {
                let Some(node) = &container.node else {
                    return Err(ConfigError::new(&key("node"), "a local container names the coordinator that runs it"));
                };
                leasehold_core::name::validate_id("node id", node)
                    .map_err(|error| ConfigError::new(&key("node"), error.to_string()))?;
                if container.command.is_empty() {
                    return Err(ConfigError::new(&key("command"), "a local container needs a command"));
                }
                for part in container.command.iter().chain(container.environment.values()) {
                    check_placeholders(part).map_err(|message| ConfigError::new(&key("command"), message))?;
                }
                if container.stop_grace.is_zero() {
                    return Err(ConfigError::new(&key("stop-grace"), "must be above zero"));
                }
            }
            ContainerKind::External => {
                let conflicting = [
                    ("node", container.node.is_some()),
                    ("command", !container.command.is_empty()),
                    ("environment", !container.environment.is_empty()),
                    ("working-directory", container.working_directory.is_some()),
                ];
                if let Some((field, _)) = conflicting.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::new(
                        &key(field),
                        "conflicts with kind = \"external\": Leasehold never starts an external container's processes",
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> ContainerConfig {
        ContainerConfig {
            kind: ContainerKind::Local,
            node: Some("c1".into()),
            command: vec!["leasehold".into(), "agent".into(), "--node-id".into(), "{resource_id}".into()],
            environment: BTreeMap::new(),
            working_directory: None,
            log_directory: default_log_directory(),
            stop_grace: default_stop_grace(),
        }
    }

    fn check(name: &str, container: ContainerConfig) -> Result<(), ConfigError> {
        validate_containers(&[(name.to_owned(), container)].into_iter().collect())
    }

    #[test]
    fn placeholders_are_checked() {
        assert!(check_placeholders("--node-id={resource_id} {prop:port} {attempt_id}").is_ok());
        assert!(check_placeholders("{nope}").unwrap_err().contains("unknown placeholder {nope}"));
        assert!(check_placeholders("{prop:}").is_err());
        assert!(check_placeholders("{resource_id").is_err());
    }

    #[test]
    fn each_bad_container_names_its_key() {
        assert_eq!(check("ok", local()), Ok(()));
        type Change = Box<dyn Fn(&mut ContainerConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.node = None), "containers.x.node"),
            (Box::new(|c| c.command.clear()), "containers.x.command"),
            (Box::new(|c| c.command.push("{bad}".into())), "containers.x.command"),
            (Box::new(|c| c.stop_grace = Duration::ZERO), "containers.x.stop-grace"),
            (
                Box::new(|c| {
                    c.kind = ContainerKind::External;
                    c.node = None;
                }),
                "containers.x.command",
            ),
            (Box::new(|c| c.kind = ContainerKind::External), "containers.x.node"),
        ];
        for (change, key) in cases {
            let mut container = local();
            change(&mut container);
            assert_eq!(check("x", container).unwrap_err().key, key);
        }
        assert_eq!(check("bad/name", local()).unwrap_err().key, "containers.bad/name");
    }

    #[test]
    fn the_grace_period_spaces_attempts_at_least_one_interval_apart() {
        let mut config = ResourcesConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.auto_restart.grace_period = Duration::from_secs(1);
        assert_eq!(config.validate().unwrap_err().key, "resources.auto-restart.grace-period");
    }
}
