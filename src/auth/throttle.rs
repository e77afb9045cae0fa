//! Brute-force throttling for every password check (sign-in, own and sub-user password
//! changes). Failures drain token buckets keyed by the normalized email (whether or not the
//! account exists), by (email, client network) and by client network (IPv4 address, IPv6
//! /64); a check whose bucket is empty is refused before any hashing, with the seconds until
//! it refills. A network that has not failed against an account is not held back by that
//! account's ceiling, so the owner can still sign in during an attack; a success clears its
//! own (email, network) bucket. Time is passed in, so the rules are tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Limits, from `[throttle]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures allowed per (account, client network) before a wait, refilled over a minute.
    pub failures_per_account_network: u32,
    /// Failures allowed per account from every network together, refilled over a minute.
    pub failures_per_account: u32,
    /// Failures allowed per client network, refilled over a minute.
    pub failures_per_network: u32,
    /// Longest wait a growing delay reaches, in seconds.
    pub max_delay_seconds: u64,
}

/// A refusal: wait this many seconds (at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// Entries kept before the oldest are forgotten, so an attack cannot grow memory forever.
const MAX_ENTRIES: usize = 100_000;
const WINDOW_SECONDS: f64 = 60.0;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: f64,
    /// How many times this bucket has run dry in a row: each doubles the wait.
    lockouts: u32,
    /// While set and in the future, the bucket refuses regardless of tokens.
    blocked_until: f64,
}

/// The buckets. One per `App`.
#[derive(Debug)]
pub struct Throttle {
    limits: Option<ThrottleLimits>,
    buckets: Mutex<HashMap<String, Bucket>>,
    origin: std::time::Instant,
}

/// The network a client address counts as: the address itself for IPv4, its /64 for IPv6.
pub fn client_network(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

impl Throttle {
    /// `None`: throttling is off (benchmarks, load tests).
    pub fn new(limits: Option<ThrottleLimits>) -> Throttle {
        Throttle {
            limits,
            buckets: Mutex::new(HashMap::new()),
            origin: std::time::Instant::now(),
        }
    }

    /// Seconds on this throttle's monotonic clock.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn keys(email: &str, network: &str) -> [String; 3] {
        [
            format!("a|{email}|{network}"),
            format!("a|{email}"),
            format!("n|{network}"),
        ]
    }

    /// Whether a password check for `email` from `network` may go ahead at `now` (seconds).
    pub fn check(&self, email: &str, network: &str, now: f64) -> Result<(), RetryAfter> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let [pair, account, network_key] = Throttle::keys(email, network);
        let capacities = [
            limits.failures_per_account_network,
            limits.failures_per_account,
            limits.failures_per_network,
        ];
        let pair_has_failed = buckets.contains_key(&pair);
        let mut longest_wait = 0.0_f64;
        for (key, capacity) in [&pair, &account, &network_key].into_iter().zip(capacities) {
            // The account-wide ceiling binds only networks that have failed against it.
            if key == &account && !pair_has_failed {
                continue;
            }
            if let Some(bucket) = buckets.get_mut(key) {
                refill(bucket, capacity, now);
                let wait = if bucket.blocked_until > now {
                    bucket.blocked_until - now
                } else if bucket.tokens < 1.0 {
                    (1.0 - bucket.tokens) * WINDOW_SECONDS / f64::from(capacity.max(1))
                } else {
                    0.0
                };
                longest_wait = longest_wait.max(wait);
            }
        }
        if longest_wait > 0.0 {
            return Err(RetryAfter(seconds_at_least_one(longest_wait)));
        }
        Ok(())
    }

    /// Records a failed check: each bucket loses a token; one that runs dry blocks for a
    /// wait that doubles with each consecutive lockout.
    pub fn record_failure(&self, email: &str, network: &str, now: f64) {
        let Some(limits) = self.limits else {
            return;
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        if buckets.len() >= MAX_ENTRIES {
            forget_oldest_half(&mut buckets);
        }
        let keys = Throttle::keys(email, network);
        let capacities = [
            limits.failures_per_account_network,
            limits.failures_per_account,
            limits.failures_per_network,
        ];
        for (key, capacity) in keys.into_iter().zip(capacities) {
            let bucket = buckets.entry(key).or_insert(Bucket {
                tokens: f64::from(capacity),
                updated: now,
                lockouts: 0,
                blocked_until: 0.0,
            });
            refill(bucket, capacity, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            if bucket.tokens < 1.0 {
                let base = WINDOW_SECONDS / f64::from(capacity.max(1));
                let growth = 2f64.powi(i32::try_from(bucket.lockouts.min(20)).unwrap_or(20));
                let wait = (base * growth).min(limits.max_delay_seconds as f64);
                bucket.blocked_until = now + wait;
                bucket.lockouts = bucket.lockouts.saturating_add(1);
            }
        }
    }

    /// Records a success: the (email, network) history is forgotten.
    pub fn record_success(&self, email: &str, network: &str) {
        if let Ok(mut buckets) = self.buckets.lock() {
            let [pair, _, _] = Throttle::keys(email, network);
            buckets.remove(&pair);
        }
    }
}

fn refill(bucket: &mut Bucket, capacity: u32, now: f64) {
    let elapsed = (now - bucket.updated).max(0.0);
    let capacity = f64::from(capacity);
    bucket.tokens = (bucket.tokens + elapsed * capacity / WINDOW_SECONDS).min(capacity);
    bucket.updated = now;
    if bucket.tokens >= capacity && bucket.blocked_until <= now {
        bucket.lockouts = 0;
    }
}

fn seconds_at_least_one(seconds: f64) -> u64 {
    let rounded = seconds.ceil();
    if rounded < 1.0 { 1 } else { rounded as u64 }
}

fn forget_oldest_half(buckets: &mut HashMap<String, Bucket>) {
    let mut ages: Vec<f64> = buckets.values().map(|bucket| bucket.updated).collect();
    ages.sort_by(f64::total_cmp);
    let median = ages[ages.len() / 2];
    buckets.retain(|_, bucket| bucket.updated > median);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ThrottleLimits = ThrottleLimits {
        failures_per_account_network: 5,
        failures_per_account: 20,
        failures_per_network: 30,
        max_delay_seconds: 900,
    };

    #[test]
    fn five_failures_then_a_growing_wait_and_a_clean_network_still_passes() {
        let throttle = Throttle::new(Some(LIMITS));
        let mut now = 1000.0;
        for _ in 0..5 {
            assert!(throttle.check("a@x.com", "198.51.100.1", now).is_ok());
            throttle.record_failure("a@x.com", "198.51.100.1", now);
        }
        let first_wait = throttle.check("a@x.com", "198.51.100.1", now).unwrap_err();
        assert!(first_wait.0 >= 1);
        assert!(
            throttle.check("a@x.com", "203.0.113.7", now).is_ok(),
            "a clean network passes"
        );
        // After the wait, one more failure locks again for longer.
        now += first_wait.0 as f64 + 0.5;
        assert!(throttle.check("a@x.com", "198.51.100.1", now).is_ok());
        throttle.record_failure("a@x.com", "198.51.100.1", now);
        let second_wait = throttle.check("a@x.com", "198.51.100.1", now).unwrap_err();
        assert!(
            second_wait.0 > first_wait.0,
            "{second_wait:?} after {first_wait:?}"
        );
        throttle.record_success("a@x.com", "198.51.100.1");
        assert!(
            throttle.check("a@x.com", "198.51.100.1", now).is_ok(),
            "a success resets it"
        );
    }

    #[test]
    fn a_network_failing_against_many_accounts_is_held_back() {
        let throttle = Throttle::new(Some(LIMITS));
        for index in 0..30 {
            throttle.record_failure(&format!("user{index}@x.com"), "198.51.100.9", 50.0);
        }
        assert!(throttle.check("fresh@x.com", "198.51.100.9", 50.0).is_err());
        assert!(throttle.check("fresh@x.com", "198.51.100.10", 50.0).is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let first: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(first), client_network(second));
        assert_ne!(client_network(first), client_network(other));
    }
}
