//! Monotonic time that keeps counting while the machine is suspended.
//!
//! Every lease decision measures time on this clock. On Linux it is `CLOCK_BOOTTIME`:
//! `std::time::Instant` is `CLOCK_MONOTONIC` there, which stops during suspend, so a resumed
//! VM would believe a lease that expired while it slept. Wall time is never used: it jumps.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An instant on a monotonic clock: the time since that clock's (arbitrary) origin.
///
/// Instants of different clocks (or of different processes) are not comparable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoTime(Duration);

impl MonoTime {
    /// The clock's origin.
    pub const ZERO: MonoTime = MonoTime(Duration::ZERO);

    /// The instant `since_origin` after the clock's origin.
    pub const fn from_duration(since_origin: Duration) -> Self {
        Self(since_origin)
    }

    /// The time since the clock's origin.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this instant is; zero when it is not later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// How long from this instant until `later`; zero when `later` has passed.
    pub fn until(self, later: MonoTime) -> Duration {
        later.0.saturating_sub(self.0)
    }

    /// This instant moved back by `duration`, stopping at the origin.
    pub fn saturating_sub(self, duration: Duration) -> MonoTime {
        Self(self.0.saturating_sub(duration))
    }
}

impl Add<Duration> for MonoTime {
    type Output = MonoTime;

    fn add(self, rhs: Duration) -> MonoTime {
        MonoTime(self.0 + rhs)
    }
}

impl Sub<MonoTime> for MonoTime {
    type Output = Duration;

    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, rhs: MonoTime) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for MonoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}

/// A source of monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> MonoTime;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> MonoTime {
        (**self).now()
    }
}

/// `CLOCK_BOOTTIME`: monotonic, and counting through suspend.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootClock;

impl Clock for BootClock {
    fn now(&self) -> MonoTime {
        let ts = read_boot_clock();
        MonoTime(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_boot_clock() -> rustix::time::Timespec {
    rustix::time::clock_gettime(rustix::time::ClockId::Boottime)
}

// Other systems have no boot clock through rustix; their monotonic clock is the best there is.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_boot_clock() -> rustix::time::Timespec {
    rustix::time::clock_gettime(rustix::time::ClockId::Monotonic)
}

/// A clock that moves only when told to. For tests and simulations.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: MonoTime) -> Self {
        Self { nanos: Arc::new(AtomicU64::new(start.0.as_nanos() as u64)) }
    }

    /// Moves the clock forward by `duration`.
    pub fn advance(&self, duration: Duration) {
        self.nanos.fetch_add(duration.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Moves the clock to `instant`; it never moves back.
    pub fn set(&self, instant: MonoTime) {
        self.nanos.fetch_max(instant.0.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> MonoTime {
        MonoTime(Duration::from_nanos(self.nanos.load(Ordering::SeqCst)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_never_goes_back() {
        let clock = BootClock;
        let mut previous = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= previous);
            previous = now;
        }
    }

    #[test]
    fn manual_clock_moves_only_forward_when_told() {
        let clock = ManualClock::new(MonoTime::from_duration(Duration::from_secs(10)));
        assert_eq!(clock.now(), MonoTime::from_duration(Duration::from_secs(10)));
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now().as_duration(), Duration::from_millis(11_500));
        clock.set(MonoTime::from_duration(Duration::from_secs(1)));
        assert_eq!(clock.now().as_duration(), Duration::from_millis(11_500), "set never moves back");
    }

    #[test]
    fn subtraction_saturates() {
        let early = MonoTime::from_duration(Duration::from_secs(1));
        let late = MonoTime::from_duration(Duration::from_secs(3));
        assert_eq!(late - early, Duration::from_secs(2));
        assert_eq!(early - late, Duration::ZERO);
        assert_eq!(early.until(late), Duration::from_secs(2));
        assert_eq!(late.until(early), Duration::ZERO);
    }
}
