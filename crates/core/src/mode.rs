//! HA modes (chosen per node) and roles (what a node is doing right now).

use std::fmt;
use std::str::FromStr;

/// How a coordinator takes part in leader election (the Brooklyn HA modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HaMode {
    /// Contend for the lease.
    Auto,
    /// Take the lease at start, or fail at once when a live leader exists; then as `Auto`.
    Master,
    /// A candidate that serves no reads.
    Standby,
    /// A candidate that serves read-only calls from the store.
    HotStandby,
    /// Serves read-only calls and never becomes leader.
    HotBackup,
    /// Stand-alone: no lease tables and no election.
    Disabled,
}

impl HaMode {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [HaMode; 6] =
        [HaMode::Auto, HaMode::Master, HaMode::Standby, HaMode::HotStandby, HaMode::HotBackup, HaMode::Disabled];

    /// The name used in flags, files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HaMode::Auto => "auto",
            HaMode::Master => "master",
            HaMode::Standby => "standby",
            HaMode::HotStandby => "hot-standby",
            HaMode::HotBackup => "hot-backup",
            HaMode::Disabled => "disabled",
        }
    }

    /// Whether a node in this mode may acquire the lease.
    pub fn is_candidate(self) -> bool {
        matches!(self, HaMode::Auto | HaMode::Master | HaMode::Standby | HaMode::HotStandby)
    }

    /// Whether a non-leader in this mode answers read-only calls itself.
    pub fn serves_reads_as_follower(self) -> bool {
        matches!(self, HaMode::HotStandby | HaMode::HotBackup | HaMode::Disabled)
    }

    /// Whether the mode takes part in the lease protocol at all.
    pub fn uses_lease(self) -> bool {
        self != HaMode::Disabled
    }
}

impl fmt::Display for HaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown HA mode {given:?}; expected one of auto, master, standby, hot-standby, hot-backup, disabled")]
pub struct UnknownMode {
    /// What was given.
    pub given: String,
}

impl FromStr for HaMode {
    type Err = UnknownMode;

    /// Accepts `hot-standby`, `hot_standby` and `HOT_STANDBY` alike.
    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let normalized = given.trim().to_ascii_lowercase().replace('_', "-");
        HaMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == normalized)
            .ok_or_else(|| UnknownMode { given: given.to_owned() })
    }
}

impl TryFrom<String> for HaMode {
    type Error = UnknownMode;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<HaMode> for String {
    fn from(mode: HaMode) -> String {
        mode.as_str().to_owned()
    }
}

/// What a coordinator is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaRole {
    /// Registering its node id; not yet in the election.
    Starting,
    /// Holds the lease and may write.
    Leader,
    /// Does not hold the lease.
    Follower,
    /// `Disabled` mode: serves alone.
    Standalone,
    /// Shut down cleanly.
    Stopped,
    /// Stopped renewing its registration without shutting down cleanly (killed, frozen, cut
    /// off): only ever shown in a listing of the registry, never stored.
    Lost,
}

impl HaRole {
    /// The name stored in the registry and shown in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HaRole::Starting => "starting",
            HaRole::Leader => "leader",
            HaRole::Follower => "follower",
            HaRole::Standalone => "standalone",
            HaRole::Stopped => "stopped",
            HaRole::Lost => "lost",
        }
    }

    /// How a listing of the registry shows a node whose stored role is `stored`: the holder of
    /// the live lease leads; a node that shut down cleanly is stopped; one that stopped
    /// renewing otherwise is lost; a live one that once led follows.
    pub fn listed(holds_lease: bool, alive: bool, stored: HaRole) -> HaRole {
        match (holds_lease, alive, stored) {
            (true, _, _) => HaRole::Leader,
            (false, _, HaRole::Stopped) => HaRole::Stopped,
            (false, false, _) => HaRole::Lost,
            (false, true, HaRole::Leader) => HaRole::Follower,
            (false, true, other) => other,
        }
    }

    /// The role stored under `name`; unknown names read as `Follower`.
    pub fn from_stored(name: &str) -> HaRole {
        [HaRole::Starting, HaRole::Leader, HaRole::Standalone, HaRole::Stopped]
            .into_iter()
            .find(|role| role.as_str() == name)
            .unwrap_or(HaRole::Follower)
    }
}

impl fmt::Display for HaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run-time mode change asks of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeChange {
    /// The leader releases its lease so that a successor takes over.
    pub demote: bool,
    /// The node contends at once, without the priority back-off.
    pub contend_now: bool,
}

/// Why a run-time mode change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeChangeError {
    /// `Disabled` is chosen at start; a node cannot enter or leave it while running.
    #[error(
        "mode {from} cannot change to {to} at run time: DISABLED is chosen at start (restart the node with the mode you want)"
    )]
    Fixed {
        /// The current mode.
        from: HaMode,
        /// The requested mode.
        to: HaMode,
    },
    /// `Master` was asked for while another node holds a live lease.
    #[error("cannot switch to master while {leader} holds a live lease; demote it first")]
    LiveLeader {
        /// The node that holds the lease.
        leader: String,
    },
}

/// Decides a run-time change from `current` to `requested`.
///
/// `is_leader` says whether this node leads now; `live_leader` names another node that holds an
/// unexpired lease, if any.
pub fn decide_mode_change(
    current: HaMode,
    requested: HaMode,
    is_leader: bool,
    live_leader: Option<&str>,
) -> Result<ModeChange, ModeChangeError> {
    if current != requested && (current == HaMode::Disabled || requested == HaMode::Disabled) {
        return Err(ModeChangeError::Fixed { from: current, to: requested });
    }
    if requested == HaMode::Master
        && !is_leader
        && let Some(leader) = live_leader
    {
        return Err(ModeChangeError::LiveLeader { leader: leader.to_owned() });
    }
    Ok(ModeChange {
        demote: is_leader && !matches!(requested, HaMode::Auto | HaMode::Master),
        contend_now: requested == HaMode::Master && !is_leader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_every_spelling_and_names_the_choices_otherwise() {
        assert_eq!("hot-standby".parse::<HaMode>(), Ok(HaMode::HotStandby));
        assert_eq!("HOT_BACKUP".parse::<HaMode>(), Ok(HaMode::HotBackup));
        assert_eq!(" Master ".parse::<HaMode>(), Ok(HaMode::Master));
        let error = "leader".parse::<HaMode>().unwrap_err();
        assert!(error.to_string().contains("expected one of auto, master"), "{error}");
        for mode in HaMode::ALL {
            assert_eq!(mode.as_str().parse::<HaMode>(), Ok(mode));
        }
    }

    #[test]
    fn only_candidates_may_lead_and_only_hot_modes_serve_reads() {
        let candidates: Vec<_> = HaMode::ALL.into_iter().filter(|mode| mode.is_candidate()).collect();
        assert_eq!(candidates, [HaMode::Auto, HaMode::Master, HaMode::Standby, HaMode::HotStandby]);
        assert!(!HaMode::Standby.serves_reads_as_follower());
        assert!(HaMode::HotStandby.serves_reads_as_follower());
        assert!(HaMode::HotBackup.serves_reads_as_follower());
    }

    #[test]
    fn a_listing_tells_a_clean_stop_from_a_lost_node() {
        assert_eq!(HaRole::listed(true, true, HaRole::Leader), HaRole::Leader);
        assert_eq!(HaRole::listed(false, false, HaRole::Stopped), HaRole::Stopped);
        assert_eq!(HaRole::listed(false, false, HaRole::Follower), HaRole::Lost, "killed");
        assert_eq!(HaRole::listed(false, false, HaRole::Leader), HaRole::Lost, "a killed leader whose lease ran out");
        assert_eq!(HaRole::listed(false, true, HaRole::Leader), HaRole::Follower, "deposed, still renewing");
        assert_eq!(HaRole::listed(false, true, HaRole::Starting), HaRole::Starting);
    }

    #[test]
    fn roles_round_trip_through_their_stored_names() {
        for role in [HaRole::Starting, HaRole::Leader, HaRole::Follower, HaRole::Standalone, HaRole::Stopped] {
            assert_eq!(HaRole::from_stored(role.as_str()), role);
        }
    }

    #[test]
    fn demoting_the_leader_releases_the_lease() {
        let change = decide_mode_change(HaMode::Auto, HaMode::Standby, true, None).unwrap();
        assert_eq!(change, ModeChange { demote: true, contend_now: false });
        let change = decide_mode_change(HaMode::Auto, HaMode::HotBackup, true, None).unwrap();
        assert!(change.demote);
        let change = decide_mode_change(HaMode::Master, HaMode::Auto, true, None).unwrap();
        assert!(!change.demote);
    }

    #[test]
    fn master_on_a_follower_contends_now_unless_a_live_leader_exists() {
        let change = decide_mode_change(HaMode::Standby, HaMode::Master, false, None).unwrap();
        assert_eq!(change, ModeChange { demote: false, contend_now: true });
        let error = decide_mode_change(HaMode::Standby, HaMode::Master, false, Some("c1")).unwrap_err();
        assert_eq!(error, ModeChangeError::LiveLeader { leader: "c1".into() });
    }

    #[test]
    fn disabled_is_fixed_at_start() {
        assert!(matches!(
            decide_mode_change(HaMode::Disabled, HaMode::Auto, false, None),
            Err(ModeChangeError::Fixed { .. })
        ));
        assert!(matches!(
            decide_mode_change(HaMode::Auto, HaMode::Disabled, false, None),
            Err(ModeChangeError::Fixed { .. })
        ));
        assert!(decide_mode_change(HaMode::Disabled, HaMode::Disabled, false, None).is_ok());
    }
}
