//! `Clock`: what time it is, for every rule that reads the time (token and link expiry,
//! sessions, the throttle's buckets, the JWKS refresh floor, the maintenance schedule). A
//! server reads the system clock; a test reads a `ManualClock`, which stands still until the
//! test advances it, so no test sleeps for time to pass. A clock only tells the time: what
//! waits (tokio sleeps, socket timeouts, hyper's timer) waits on real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::UnixSeconds;

/// The clock `App` holds and everything reads the time from. Cheap to clone: every clone
/// reads the same time.
#[derive(Clone, Debug)]
pub struct Clock {
    source: ClockSource,
}

#[derive(Clone, Debug)]
enum ClockSource {
    /// The system clock; `made` is where `since_start` counts from.
    System {
        made: Instant,
    },
    Manual(ManualClock),
}

/// A clock that moves only when told to: it starts at a given time and `advance` moves it
/// (and every `Clock` made from it) forward. For tests.
#[derive(Clone, Debug)]
pub struct ManualClock {
    /// The time since the epoch at which it started.
    start_since_epoch: Duration,
    /// Nanoseconds advanced since the start, shared by every clone.
    advanced_nanoseconds: Arc<AtomicU64>,
}

impl Clock {
    /// The system's wall clock, and `Instant` for `since_start`.
    pub fn system() -> Clock {
        Clock {
            source: ClockSource::System {
                made: Instant::now(),
            },
        }
    }

    /// Seconds since the Unix epoch, UTC: the time every stored time and claim is compared
    /// with.
    pub fn now_unix_seconds(&self) -> UnixSeconds {
        let since_epoch = match &self.source {
            ClockSource::System { .. } => system_time_since_epoch(),
            ClockSource::Manual(manual) => manual.start_since_epoch + manual.advanced(),
        };
        i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
    }

    /// Seconds since the Unix epoch, UTC, with the fraction: for counters that several
    /// processes share (the throttle's buckets in PostgreSQL), which cannot count from one
    /// process's start.
    pub fn now_unix_seconds_fractional(&self) -> f64 {
        match &self.source {
            ClockSource::System { .. } => system_time_since_epoch(),
            ClockSource::Manual(manual) => manual.start_since_epoch + manual.advanced(),
        }
        .as_secs_f64()
    }

    /// Time since this clock was made, never going back (the system reading is monotonic,
    /// unlike the wall clock): for intervals such as the throttle's refill and the JWKS
    /// refresh floor.
    pub fn since_start(&self) -> Duration {
        match &self.source {
            ClockSource::System { made } => made.elapsed(),
            ClockSource::Manual(manual) => manual.advanced(),
        }
    }

    /// `since_start` in seconds, as the rate limiters count.
    pub fn since_start_seconds(&self) -> f64 {
        self.since_start().as_secs_f64()
    }
}

impl ManualClock {
    /// A clock standing at the system's time now.
    pub fn starting_now() -> ManualClock {
        ManualClock::starting_at(system_time_since_epoch())
    }

    /// A clock standing at `since_epoch` after the Unix epoch.
    pub fn starting_at(since_epoch: Duration) -> ManualClock {
        ManualClock {
            start_since_epoch: since_epoch,
            advanced_nanoseconds: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves this clock, and every `Clock` made from it, forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanoseconds = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.advanced_nanoseconds
            .fetch_add(nanoseconds, Ordering::Relaxed);
    }

    /// A `Clock` that reads this one.
    pub fn clock(&self) -> Clock {
        Clock {
            source: ClockSource::Manual(self.clone()),
        }
    }

    fn advanced(&self) -> Duration {
        Duration::from_nanos(self.advanced_nanoseconds.load(Ordering::Relaxed))
    }
}

/// The system's time since the epoch; a clock set before 1970 reads as the epoch.
fn system_time_since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_every_clone_sees_the_advance() {
        let manual = ManualClock::starting_at(Duration::from_secs(1_700_000_000));
        let clock = manual.clock();
        let copy = clock.clone();
        assert_eq!(clock.now_unix_seconds(), 1_700_000_000);
        assert_eq!(clock.since_start(), Duration::ZERO);
        manual.advance(Duration::from_millis(1500));
        assert_eq!(copy.now_unix_seconds(), 1_700_000_001);
        assert_eq!(copy.since_start_seconds(), 1.5);
        assert_eq!(clock.since_start(), Duration::from_millis(1500));
        assert_eq!(clock.now_unix_seconds_fractional(), 1_700_000_001.5);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let clock = Clock::system();
        let wall = i64::try_from(system_time_since_epoch().as_secs()).unwrap();
        assert!((clock.now_unix_seconds() - wall).abs() <= 1);
        assert!((clock.now_unix_seconds_fractional() - wall as f64).abs() <= 2.0);
        let first = clock.since_start();
        assert!(clock.since_start() >= first);
    }
}
