//! The data-node lease timings: the fence duration `T_fence`, the proceed bound `T_proceed`,
//! and the lease budget against the coordinator failover time (DESIGN §4).

use std::time::Duration;

use crate::timing::{HaTimings, TimingError, human, stretched_by_drift};

/// The data-node lease settings of a coordinator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseTimings {
    /// `metadata.lease-fence` (`T_fence`): how long an agent serves after the send time of its
    /// last successful heartbeat.
    pub fence: Duration,
    /// `metadata.heartbeat-interval`: how often agents heartbeat.
    pub heartbeat_interval: Duration,
    /// `metadata.heartbeat-timeout`: the deadline of one heartbeat, below the interval.
    pub heartbeat_timeout: Duration,
    /// `metadata.proceed-margin`: added to the drift-stretched fence before proceeding.
    pub proceed_margin: Duration,
    /// `metadata.clock-drift` (`ρ`).
    pub clock_drift: f64,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            fence: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_millis(500),
            proceed_margin: Duration::from_secs(1),
            clock_drift: 0.01,
        }
    }
}

impl LeaseTimings {
    /// `T_proceed` for the largest fence any leader ever granted:
    /// `fence · (1+ρ)/(1−ρ) + proceed-margin`. After that long on the leader's clock since a
    /// node's stale bound, the node has fenced whatever its clock and the network did.
    pub fn proceed_after(&self, largest_fence: Duration) -> Duration {
        stretched_by_drift(largest_fence, self.clock_drift) + self.proceed_margin
    }

    /// The longest a cluster goes without a leader answering heartbeats after the leader
    /// dies: the lease expiring on the store, one renew interval of slack, the back-off of
    /// the runner-up candidate, and one heartbeat deadline and interval for the agents to
    /// find the new leader.
    pub fn failover_budget(&self, ha: &HaTimings) -> Duration {
        ha.lease_ttl + ha.renew_interval + ha.priority_step + self.heartbeat_timeout + self.heartbeat_interval
    }

    /// Checks the relations the lease protocol relies on, naming the key to change.
    pub fn validate(&self, ha: &HaTimings) -> Result<(), TimingError> {
        let error = |key, message: String| Err(TimingError::new(key, message));
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout.is_zero() {
            return error(
                "metadata.heartbeat-interval",
                "the heartbeat interval and timeout must be above zero".into(),
            );
        }
        if self.heartbeat_timeout >= self.heartbeat_interval {
            return error(
                "metadata.heartbeat-timeout",
                format!(
                    "{} must be below metadata.heartbeat-interval ({})",
                    human(self.heartbeat_timeout),
                    human(self.heartbeat_interval)
                ),
            );
        }
        if self.heartbeat_interval * 3 > self.fence {
            return error(
                "metadata.heartbeat-interval",
                format!(
                    "{} must be at most a third of metadata.lease-fence ({}), so that a lost heartbeat or two do not fence a node",
                    human(self.heartbeat_interval),
                    human(self.fence)
                ),
            );
        }
        let budget = self.failover_budget(ha);
        if self.fence <= budget {
            return error(
                "metadata.lease-fence",
                format!(
                    "{} must exceed the coordinator failover time of {} (ha.lease-ttl {} + ha.renew-interval {} + ha.priority-step {} \
                     + metadata.heartbeat-timeout {} + metadata.heartbeat-interval {}), or every failover fences every data node",
                    human(self.fence),
                    human(budget),
                    human(ha.lease_ttl),
                    human(ha.renew_interval),
                    human(ha.priority_step),
                    human(self.heartbeat_timeout),
                    human(self.heartbeat_interval),
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn defaults_are_valid_and_proceed_stretches_the_fence() {
        let timings = LeaseTimings::default();
        timings.validate(&HaTimings::default()).unwrap();
        // 15 s × 1.01 / 0.99 + 1 s
        assert_eq!(timings.proceed_after(Duration::from_secs(15)).as_millis(), 16_303);
        assert_eq!(timings.failover_budget(&HaTimings::default()), ms(6000 + 2000 + 200 + 500 + 1000));
    }

    #[test]
    fn the_test_timings_fit_the_budget() {
        let ha = HaTimings {
            lease_ttl: ms(1000),
            renew_interval: ms(250),
            store_timeout: ms(200),
            poll_interval: ms(100),
            ..HaTimings::default()
        };
        let lease = LeaseTimings {
            fence: ms(3000),
            heartbeat_interval: ms(1000),
            heartbeat_timeout: ms(300),
            ..LeaseTimings::default()
        };
        lease.validate(&ha).unwrap();
        assert_eq!(lease.proceed_after(ms(3000)).as_millis(), 4060);
    }

    #[test]
    fn a_fence_below_the_failover_time_is_refused_with_the_numbers() {
        let lease = LeaseTimings { fence: ms(9000), ..LeaseTimings::default() };
        let error = lease.validate(&HaTimings::default()).unwrap_err();
        assert_eq!(error.key, "metadata.lease-fence");
        assert!(error.message.contains("9.7s"), "{error}");
    }

    #[test]
    fn heartbeats_must_fit_the_fence_and_their_deadline_the_interval() {
        let lease = LeaseTimings { heartbeat_interval: ms(6000), ..LeaseTimings::default() };
        assert_eq!(lease.validate(&HaTimings::default()).unwrap_err().key, "metadata.heartbeat-interval");
        let lease = LeaseTimings { heartbeat_timeout: ms(1000), ..LeaseTimings::default() };
        assert_eq!(lease.validate(&HaTimings::default()).unwrap_err().key, "metadata.heartbeat-timeout");
    }
}
