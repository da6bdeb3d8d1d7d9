//! A name read from a column of enum-like values: one this version knows, or the text it found.
//!
//! A newer version may write a step, state or kind this one has never heard of (during a
//! rolling upgrade, or after a downgrade). Reading such a row must not fail the read: a list
//! with one unknown row would otherwise hide every other row, and a leader could resume none
//! of the procedures it holds. The unknown text is kept, so the one row can be refused by name
//! and shown as stored.

use std::fmt;

use leasehold_core::ddl::DdlKind;
use leasehold_core::procedure::{State, Step};

/// A value kept in a text column under a fixed name.
pub trait StoredName: Copy {
    /// The column, as a reason names it (`step`, `state`, …).
    const COLUMN: &'static str;

    /// The stored name.
    fn name(self) -> &'static str;

    /// The value stored as `name`, if this version knows it.
    fn from_name(name: &str) -> Option<Self>;
}

macro_rules! stored_names {
    ($($type:ty => $column:literal by $from_name:expr),* $(,)?) => {$(
        impl StoredName for $type {
            const COLUMN: &'static str = $column;

            fn name(self) -> &'static str {
                self.as_str()
            }

            fn from_name(name: &str) -> Option<Self> {
                $from_name(name)
            }
        }
    )*};
}

stored_names!(
    Step => "step" by |name: &str| name.parse().ok(),
    State => "state" by |name: &str| name.parse().ok(),
    DdlKind => "kind" by DdlKind::from_stored,
);

/// A stored name, read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stored<T> {
    /// A value this version knows.
    Known(T),
    /// A name this version does not know, as stored.
    Unknown(String),
}

/// A stored name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {column} {name:?}")]
pub struct UnknownName {
    /// The column it was read from.
    pub column: &'static str,
    /// The name as stored.
    pub name: String,
}

impl<T: StoredName> Stored<T> {
    /// Reads a stored name; a name this version does not know is kept as it is.
    pub fn read(name: String) -> Self {
        T::from_name(&name).map_or(Stored::Unknown(name), Stored::Known)
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        match self {
            Stored::Known(value) => value.name(),
            Stored::Unknown(name) => name,
        }
    }

    /// The known value, or the error that names the unknown one.
    pub fn known(&self) -> Result<T, UnknownName> {
        match self {
            Stored::Known(value) => Ok(*value),
            Stored::Unknown(name) => Err(UnknownName { column: T::COLUMN, name: name.clone() }),
        }
    }

    /// The name as stored, owned.
    pub fn into_name(self) -> String {
        match self {
            Stored::Known(value) => value.name().to_owned(),
            Stored::Unknown(name) => name,
        }
    }
}

impl<T: StoredName> From<T> for Stored<T> {
    fn from(value: T) -> Self {
        Stored::Known(value)
    }
}

impl<T: StoredName + PartialEq> PartialEq<T> for Stored<T> {
    fn eq(&self, other: &T) -> bool {
        matches!(self, Stored::Known(value) if value == other)
    }
}

impl<T: StoredName> fmt::Display for Stored<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_read_as_their_values_and_write_back_unchanged() {
        for step in [Step::Prepared, Step::DroppingData, Step::Committing, Step::RollingBack, Step::Done] {
            let read = Stored::<Step>::read(step.as_str().to_owned());
            assert_eq!(read, Stored::Known(step));
            assert_eq!((read.as_str(), read.known()), (step.as_str(), Ok(step)));
        }
        for state in [State::Running, State::Succeeded, State::RolledBack, State::Failed] {
            assert_eq!(Stored::<State>::read(state.as_str().to_owned()), Stored::Known(state));
        }
        for kind in DdlKind::ALL {
            let read = Stored::<DdlKind>::read(kind.as_str().to_owned());
            assert_eq!((read.as_str(), read.known()), (kind.as_str(), Ok(kind)));
        }
    }

    #[test]
    fn an_unknown_name_is_kept_as_stored_and_refused_by_name() {
        let step = Stored::<Step>::read("validating".to_owned());
        assert_eq!(step, Stored::Unknown("validating".to_owned()));
        assert_eq!(step.as_str(), "validating");
        assert_eq!(step.to_string(), "validating");
        assert_eq!(step.known().unwrap_err().to_string(), r#"unknown step "validating""#);
        let state = Stored::<State>::read("paused".to_owned());
        assert_ne!(state, State::Running, "an unknown state is not running");
        assert_eq!(state.known().unwrap_err().to_string(), r#"unknown state "paused""#);
        let kind = Stored::<DdlKind>::read("rename_table".to_owned());
        assert_eq!(kind.clone().into_name(), "rename_table");
        assert_eq!(kind.known().unwrap_err().to_string(), r#"unknown kind "rename_table""#);
        // Names are matched exactly, as they are written.
        assert_eq!(Stored::<State>::read("Running".to_owned()), Stored::Unknown("Running".to_owned()));
    }
}
