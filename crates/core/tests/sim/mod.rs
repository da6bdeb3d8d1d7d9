//! What the simulations share: a seeded generator, skewed clocks, a timed event queue, a lossy
//! link, and the lease timings and ledgers the coordinator would use.
//!
//! Each test file that declares `mod sim;` uses its own part of it.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use leasehold_core::MonoTime;
use leasehold_core::contact::NodeKey;
use leasehold_core::lease_timing::LeaseTimings;
use leasehold_core::ledger::{Inherited, Ledger, TermStart};
use leasehold_core::timing::HaTimings;

pub const RHO: f64 = 0.01;
pub const FENCE: Duration = Duration::from_secs(3);
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const LEASE_TTL: Duration = Duration::from_secs(1);
pub const PROCEED_MARGIN: Duration = Duration::from_millis(10);
pub const STORE_EPOCH: &str = "e";

/// A small deterministic generator; proptest picks the seed, so failures shrink and replay.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
    /// A clock rate off real time by up to `ρ`.
    pub fn rate(&mut self) -> f64 {
        1.0 + RHO * (self.unit() * 2.0 - 1.0)
    }
}

/// A clock running at `rate` from `base` (both in microseconds).
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    pub rate: f64,
    pub base_us: u64,
}

impl SimClock {
    pub fn local(&self, real_us: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_micros(self.base_us + (real_us as f64 * self.rate) as u64))
    }
    /// Real microseconds for `duration` of this clock.
    pub fn real_span(&self, duration: Duration) -> u64 {
        (duration.as_micros() as f64 / self.rate) as u64
    }
}

/// Events by real time (in microseconds), ties in the order they were scheduled.
pub struct Queue<E> {
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<E>>,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self { seq: 0, heap: BinaryHeap::new(), events: Vec::new() }
    }
}

impl<E> Queue<E> {
    pub fn schedule(&mut self, at_us: u64, event: E) {
        self.seq += 1;
        self.events.push(Some(event));
        self.heap.push(Reverse((at_us, self.seq, self.events.len() - 1)));
    }

    /// How many events were ever scheduled: a number no earlier call returned.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The next event up to `horizon_us`, with its time.
    pub fn pop(&mut self, horizon_us: u64) -> Option<(u64, E)> {
        let Reverse((at_us, _, index)) = self.heap.pop()?;
        if at_us > horizon_us {
            return None;
        }
        Some((at_us, self.events[index].take().expect("each event is delivered once")))
    }
}

/// A link that drops, delays (up to `max_delay_us`), duplicates and so reorders messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lossy {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay_us: u64,
}

impl Lossy {
    /// The arrival times of one message sent at `now_us`: none when it is lost.
    pub fn arrivals(&self, rng: &mut Rng, now_us: u64) -> Vec<u64> {
        if rng.unit() < self.drop {
            return Vec::new();
        }
        let copies = if rng.unit() < self.duplicate { 2 } else { 1 };
        (0..copies).map(|_| now_us + rng.below(self.max_delay_us + 1)).collect()
    }
}

/// The end of the pause `real_us` falls in, if any: `(start, end)` pairs in real microseconds.
pub fn paused_until(pauses: &[(u64, u64)], real_us: u64) -> Option<u64> {
    pauses.iter().find(|(start, end)| real_us >= *start && real_us < *end).map(|(_, end)| *end)
}

/// `T_proceed` as the coordinator computes it.
pub fn proceed_after() -> Duration {
    let timings = LeaseTimings { fence: FENCE, proceed_margin: PROCEED_MARGIN, clock_drift: RHO, ..Default::default() };
    timings.proceed_after(FENCE)
}

/// How long grants of an earlier leader may last, as a promoted coordinator computes it.
pub fn earlier_grants() -> Duration {
    HaTimings { lease_ttl: LEASE_TTL, clock_drift: RHO, ..Default::default() }.lease_upper_bound()
}

pub fn key(agent: usize) -> NodeKey {
    NodeKey::new(format!("a{agent}"), "1")
}

/// The ledger of a term promoted at `promoted_at` that inherits `inherited`.
pub fn ledger<C: Clone>(promoted_at: MonoTime, earlier_grants: Duration, inherited: Inherited<C>) -> Ledger<C> {
    let start = TermStart {
        promoted_at,
        earlier_grants,
        proceed_after: proceed_after(),
        retention: 64,
        store_epoch: STORE_EPOCH.into(),
        offline_after: proceed_after(),
    };
    Ledger::new(start, inherited)
}

/// How many schedules a property runs: `PROPTEST_CASES` when set (for longer hunts), else
/// `default` (sized for a debug `cargo test` in CI).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default)
}
