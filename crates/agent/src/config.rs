//! The agent's settings.

use std::time::Duration;

use leasehold_core::name::validate_id;

/// What an agent needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The data node's stable id.
    pub node_id: String,
    /// Every coordinator's gRPC endpoint (`HOST:PORT`); list them all so that a follower's
    /// redirect can be followed.
    pub coordinators: Vec<String>,
    /// The address coordinators push to (`HOST:PORT`).
    pub advertise_address: String,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// The deadline of one heartbeat, below the interval.
    pub heartbeat_timeout: Duration,
    /// The bucket pools this data node joins as a member (`--pool`).
    pub pools: Vec<String>,
    /// The resource this process is, for the resource keeper (`--resource-id`; empty for none).
    pub resource_id: String,
    /// The start attempt that launched this process (`--attempt-id`, set by the keeper's
    /// container): once a later attempt exists, registration is refused and the agent stops.
    pub attempt_id: String,
}

impl AgentConfig {
    /// Defaults for everything but the identity and the coordinators.
    pub fn new(node_id: impl Into<String>, coordinators: Vec<String>, advertise_address: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            coordinators,
            advertise_address: advertise_address.into(),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_millis(500),
            pools: Vec::new(),
            resource_id: String::new(),
            attempt_id: String::new(),
        }
    }

    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_id("node id", &self.node_id).map_err(|error| format!("--node-id: {error}"))?;
        if self.coordinators.is_empty() {
            return Err("--coordinators: give at least one coordinator endpoint".into());
        }
        if let Some(bad) = self.coordinators.iter().find(|endpoint| endpoint.contains("://") || !endpoint.contains(':'))
        {
            return Err(format!("--coordinators: {bad:?} is not HOST:PORT"));
        }
        if self.advertise_address.contains("://") || !self.advertise_address.contains(':') {
            return Err(format!("--advertise-address: {:?} is not HOST:PORT", self.advertise_address));
        }
        leasehold_core::buckets::validate_memberships("--pool", &self.pools).map_err(|error| error.to_string())?;
        if !self.resource_id.is_empty() {
            leasehold_core::keeper::validate_resource_name("--resource-id", &self.resource_id)?;
        }
        if !self.attempt_id.is_empty() {
            leasehold_core::keeper::validate_resource_name("--attempt-id", &self.attempt_id)?;
            if self.resource_id.is_empty() {
                return Err("--attempt-id: only with --resource-id".into());
            }
        }
        if self.heartbeat_interval.is_zero()
            || self.heartbeat_timeout.is_zero()
            || self.heartbeat_timeout >= self.heartbeat_interval
        {
            return Err(format!(
                "--heartbeat-timeout ({:?}) must be above zero and below --heartbeat-interval ({:?})",
                self.heartbeat_timeout, self.heartbeat_interval
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_flag() {
        let good = AgentConfig::new("dn1", vec!["127.0.0.1:7400".into()], "127.0.0.1:7500");
        good.validate().unwrap();
        let cases = [
            (AgentConfig { node_id: "a b".into(), ..good.clone() }, "--node-id"),
            (AgentConfig { coordinators: vec![], ..good.clone() }, "--coordinators"),
            (AgentConfig { coordinators: vec!["http://x:1".into()], ..good.clone() }, "--coordinators"),
            (AgentConfig { advertise_address: "nowhere".into(), ..good.clone() }, "--advertise-address"),
            (AgentConfig { heartbeat_timeout: Duration::from_secs(2), ..good.clone() }, "--heartbeat-timeout"),
            (AgentConfig { pools: vec!["a,b".into()], ..good.clone() }, "--pool"),
            (AgentConfig { pools: vec!["p".into(), "p".into()], ..good.clone() }, "--pool"),
        ];
        for (config, flag) in cases {
            assert!(config.validate().unwrap_err().starts_with(flag), "{config:?}");
        }
    }
}
