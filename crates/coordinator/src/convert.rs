//! Conversions between core values and their `leasehold.v1` messages.

use leasehold::v1;
use leasehold_core::{HaMode, HaRole};

/// The proto enum of a mode.
pub fn mode_to_proto(mode: HaMode) -> v1::HaMode {
    match mode {
        HaMode::Auto => v1::HaMode::Auto,
        HaMode::Master => v1::HaMode::Master,
        HaMode::Standby => v1::HaMode::Standby,
        HaMode::HotStandby => v1::HaMode::HotStandby,
        HaMode::HotBackup => v1::HaMode::HotBackup,
        HaMode::Disabled => v1::HaMode::Disabled,
    }
}

/// The mode of a proto enum value; `None` for unspecified or unknown values.
pub fn mode_from_proto(value: i32) -> Option<HaMode> {
    match v1::HaMode::try_from(value).ok()? {
        v1::HaMode::Unspecified => None,
        v1::HaMode::Auto => Some(HaMode::Auto),
        v1::HaMode::Master => Some(HaMode::Master),
        v1::HaMode::Standby => Some(HaMode::Standby),
        v1::HaMode::HotStandby => Some(HaMode::HotStandby),
        v1::HaMode::HotBackup => Some(HaMode::HotBackup),
        v1::HaMode::Disabled => Some(HaMode::Disabled),
    }
}

/// The proto enum of a role.
pub fn role_to_proto(role: HaRole) -> v1::HaRole {
    match role {
        HaRole::Starting => v1::HaRole::Starting,
        HaRole::Leader => v1::HaRole::Leader,
        HaRole::Follower => v1::HaRole::Follower,
        HaRole::Standalone => v1::HaRole::Standalone,
        HaRole::Stopped => v1::HaRole::Stopped,
        HaRole::Lost => v1::HaRole::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_round_trips_and_unknown_values_are_none() {
        for mode in HaMode::ALL {
            assert_eq!(mode_from_proto(mode_to_proto(mode) as i32), Some(mode));
        }
        assert_eq!(mode_from_proto(0), None);
        assert_eq!(mode_from_proto(99), None);
    }
}
