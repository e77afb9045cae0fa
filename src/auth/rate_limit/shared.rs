//! The limiters' buckets in the database that every node shares (`CounterHome::
//! SharedDatabase`): the same buckets, capacities, lockouts and waits as the in-memory ones,
//! read and taken through `store::SharedCounters`, one statement a step. A bucket is named by
//! its limiter and the SHA-256 of its kind and the parts it counts, so every node names it
//! alike and the database keeps no email or address in clear. A new bucket is made here, as
//! in memory; a kept one is refilled and taken by the store's statement, with the same
//! arithmetic (`tests` runs both side by side). Waits are worked out here from the buckets
//! read back.

use sha2::{Digest, Sha256};

use crate::auth::rate_limit::{
    Bucket, BucketKind, LimitRefusal, PassedBuckets, PerKeyLimit, RetryAfter, ThrottleLimits,
    WINDOW_SECONDS, bucket_kinds, refusal_after, wait_for_attempts_under_way,
};
use crate::store::{BucketTake, ConditionalTake, SharedBucket, SharedCounters, StoreError};

/// The shared buckets of one `Throttle`.
#[derive(Debug)]
pub(super) struct SharedThrottle {
    limiter: &'static str,
    limits: Option<ThrottleLimits>,
    counters: SharedCounters,
}

/// The shared buckets of one `PerKeyLimiter`.
#[derive(Debug)]
pub(super) struct SharedPerKeyLimiter {
    limiter: &'static str,
    limit: Option<PerKeyLimit>,
    counters: SharedCounters,
}

impl SharedThrottle {
    pub(super) fn new(
        limiter: &'static str,
        limits: Option<ThrottleLimits>,
        counters: SharedCounters,
    ) -> SharedThrottle {
        SharedThrottle {
            limiter,
            limits,
            counters,
        }
    }

    /// `InMemoryThrottle::check`: the longest wait of the three buckets, read in one
    /// statement, beside `others` attempts under way on this node. Passed, it answers whether
    /// the (account, network) bucket is kept (whether a success has anything to forget) and
    /// what each bucket has left.
    pub(super) async fn check(
        &self,
        email: &str,
        network: &str,
        others: [u32; 3],
        now: f64,
    ) -> Result<PassedBuckets, LimitRefusal> {
        let Some(limits) = self.limits else {
            return Ok(PassedBuckets {
                history_to_forget: false,
                tokens_left: [f64::INFINITY; 3],
            });
        };
        let kinds = bucket_kinds(&limits);
        let digests = kinds.map(|(kind, _)| bucket_digest(kind, email, network));
        let kept = self.read_kept(&digests).await?;
        let mut longest_wait = 0.0_f64;
        let mut tokens_left = [0.0; 3];
        for (((digest, (_, capacity)), others), left) in
            digests.iter().zip(kinds).zip(others).zip(&mut tokens_left)
        {
            let wait = match kept.iter().find(|(kept_digest, _)| kept_digest == digest) {
                Some((_, shared)) => {
                    let mut bucket = Bucket::from_shared(shared);
                    bucket.refill(now);
                    *left = bucket.tokens;
                    bucket.wait_beside(others, now)
                }
                None => {
                    *left = f64::from(capacity.max(1));
                    wait_for_attempts_under_way(*left, others)
                }
            };
            longest_wait = longest_wait.max(wait);
        }
        refusal_after(longest_wait).map_err(LimitRefusal::TooSoon)?;
        Ok(PassedBuckets {
            history_to_forget: kept.iter().any(|(digest, _)| *digest == digests[0]),
            tokens_left,
        })
    }

    /// `InMemoryThrottle::take_from_each_bucket`, in one statement.
    pub(super) async fn take_from_each_bucket(
        &self,
        email: &str,
        network: &str,
        now: f64,
    ) -> Result<(), StoreError> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        let takes = bucket_kinds(&limits).map(|(kind, capacity)| BucketTake {
            digest: bucket_digest(kind, email, network),
            new_bucket_after_take: new_bucket_after_take_with_lockout(&limits, capacity, now),
        });
        self.counters
            .take_from_buckets(
                self.limiter,
                &takes,
                now,
                Some(limits.max_delay_seconds as f64),
            )
            .await
    }

    /// `InMemoryThrottle::record_success`: forgets the (email, network) bucket.
    pub(super) async fn record_success(
        &self,
        email: &str,
        network: &str,
    ) -> Result<(), StoreError> {
        if self.limits.is_none() {
            return Ok(());
        }
        let digest = bucket_digest(BucketKind::AccountNetwork, email, network);
        self.counters.forget_bucket(self.limiter, &digest).await
    }

    /// `InMemoryThrottle::check_network`.
    pub(super) async fn check_network(&self, network: &str, now: f64) -> Result<(), LimitRefusal> {
        if self.limits.is_none() {
            return Ok(());
        }
        let digest = bucket_digest(BucketKind::Network, "", network);
        self.refusal_from_kept(&[digest], now).await
    }

    /// `InMemoryThrottle::record_network_failure`.
    pub(super) async fn record_network_failure(
        &self,
        network: &str,
        now: f64,
    ) -> Result<(), StoreError> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        let take = BucketTake {
            digest: bucket_digest(BucketKind::Network, "", network),
            new_bucket_after_take: new_bucket_after_take_with_lockout(
                &limits,
                limits.failures_per_network,
                now,
            ),
        };
        self.counters
            .take_from_buckets(
                self.limiter,
                &[take],
                now,
                Some(limits.max_delay_seconds as f64),
            )
            .await
    }

    async fn refusal_from_kept(&self, digests: &[[u8; 32]], now: f64) -> Result<(), LimitRefusal> {
        let kept = self.read_kept(digests).await?;
        refusal_after(longest_wait_of(&kept, now)).map_err(LimitRefusal::TooSoon)
    }

    async fn read_kept(
        &self,
        digests: &[[u8; 32]],
    ) -> Result<Vec<([u8; 32], SharedBucket)>, LimitRefusal> {
        self.counters
            .read_buckets(self.limiter, digests)
            .await
            .map_err(LimitRefusal::CountersUnavailable)
    }
}

/// The longest wait among the kept buckets at `now` (0 when none must wait).
fn longest_wait_of(kept: &[([u8; 32], SharedBucket)], now: f64) -> f64 {
    kept.iter()
        .map(|(_, shared)| wait_of_kept_bucket(Bucket::from_shared(shared), now))
        .fold(0.0_f64, f64::max)
}

impl SharedPerKeyLimiter {
    pub(super) fn new(
        limiter: &'static str,
        limit: Option<PerKeyLimit>,
        counters: SharedCounters,
    ) -> SharedPerKeyLimiter {
        SharedPerKeyLimiter {
            limiter,
            limit,
            counters,
        }
    }

    /// `InMemoryPerKeyLimiter::take`: checks and takes in one statement.
    pub(super) async fn take(&self, key: &str, now: f64) -> Result<(), LimitRefusal> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let digest = bucket_digest(BucketKind::PerKey, key, "");
        let mut new_bucket = new_per_key_bucket(&limit, now);
        new_bucket.tokens -= 1.0;
        let outcome = self
            .counters
            .take_if_available(self.limiter, &digest, &new_bucket.to_shared(), now)
            .await
            .map_err(LimitRefusal::CountersUnavailable)?;
        match outcome {
            ConditionalTake::Taken => Ok(()),
            ConditionalTake::Refused(Some(shared)) => {
                let wait = wait_of_kept_bucket(Bucket::from_shared(&shared), now);
                Err(LimitRefusal::TooSoon(
                    refusal_after(wait).err().unwrap_or(RetryAfter(1)),
                ))
            }
            // Refused, then purged before it was read back: still a refusal.
            ConditionalTake::Refused(None) => Err(LimitRefusal::TooSoon(RetryAfter(1))),
        }
    }

    /// `InMemoryPerKeyLimiter::check`.
    pub(super) async fn check(&self, key: &str, now: f64) -> Result<(), LimitRefusal> {
        if self.limit.is_none() {
            return Ok(());
        }
        let digest = bucket_digest(BucketKind::PerKey, key, "");
        let kept = self
            .counters
            .read_buckets(self.limiter, &[digest])
            .await
            .map_err(LimitRefusal::CountersUnavailable)?;
        let wait = kept.first().map_or(0.0, |(_, shared)| {
            wait_of_kept_bucket(Bucket::from_shared(shared), now)
        });
        refusal_after(wait).map_err(LimitRefusal::TooSoon)
    }

    /// `InMemoryPerKeyLimiter::record_failure`: a token goes, with no lockout.
    pub(super) async fn record_failure(&self, key: &str, now: f64) -> Result<(), StoreError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut new_bucket = new_per_key_bucket(&limit, now);
        new_bucket.tokens = (new_bucket.tokens - 1.0).max(0.0);
        let take = BucketTake {
            digest: bucket_digest(BucketKind::PerKey, key, ""),
            new_bucket_after_take: new_bucket.to_shared(),
        };
        self.counters
            .take_from_buckets(self.limiter, &[take], now, None)
            .await
    }
}

/// A bucket's name in the shared table (besides its limiter): the SHA-256 of its kind and
/// the parts it counts, each part length-prefixed so that no two (email, network) pairs meet.
fn bucket_digest(kind: BucketKind, email: &str, network: &str) -> [u8; 32] {
    let (email, network) = kind.counted_parts(email, network);
    let kind_tag: u8 = match kind {
        BucketKind::AccountNetwork => 1,
        BucketKind::Account => 2,
        BucketKind::Network => 3,
        BucketKind::PerKey => 4,
    };
    let mut hasher = Sha256::new();
    hasher.update([kind_tag]);
    for part in [email, network] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// What a throttle bucket not yet kept holds after its first take (a full one, less a token,
/// locked out at once when that leaves it empty).
fn new_bucket_after_take_with_lockout(
    limits: &ThrottleLimits,
    capacity: u32,
    now: f64,
) -> crate::store::SharedBucket {
    let mut bucket = Bucket::new(capacity, WINDOW_SECONDS, now);
    bucket.take_with_lockout(limits.max_delay_seconds, now);
    bucket.to_shared()
}

/// A full per-key bucket, as `InMemoryPerKeyLimiter` makes one.
fn new_per_key_bucket(limit: &PerKeyLimit, now: f64) -> Bucket {
    Bucket::new(limit.requests, limit.window_seconds.max(1) as f64, now)
}

/// Seconds until a kept bucket lets the next step through, from its state as read.
fn wait_of_kept_bucket(mut bucket: Bucket, now: f64) -> f64 {
    bucket.refill(now);
    bucket.wait(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rate_limit::{InMemoryPerKeyLimiter, InMemoryThrottle};
    use crate::store::shared_counters_on_a_fresh_database;

    const LIMITS: ThrottleLimits = ThrottleLimits {
        failures_per_account_network: 5,
        failures_per_account: 20,
        failures_per_network: 30,
        max_delay_seconds: 900,
    };

    /// A Unix time with a fraction, as a node's clock reads.
    const START: f64 = 1_750_000_000.125;

    /// A fixed, well-mixed walk through steps and times (a linear congruential generator),
    /// so that both implementations see the same script.
    struct Script(u64);

    impl Script {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }
    }

    /// Small ceilings and a short longest wait, so that a walk meets every rule: each bucket
    /// running dry, lockouts doubling up to the cap, refills, forgotten buckets.
    const SMALL_LIMITS: ThrottleLimits = ThrottleLimits {
        failures_per_account_network: 3,
        failures_per_account: 5,
        failures_per_network: 7,
        max_delay_seconds: 120,
    };

    #[tokio::test]
    async fn shared_buckets_answer_exactly_as_the_in_memory_ones_step_by_step() {
        let counters = shared_counters_on_a_fresh_database().await;
        let limits = SMALL_LIMITS;
        let shared = SharedThrottle::new("password", Some(limits), counters.clone());
        let in_memory = InMemoryThrottle::new(Some(limits));
        let emails = ["ada@example.com", "bob@example.com"];
        let networks = ["198.51.100.1", "198.51.100.2", "2001:db8::/64"];
        let mut script = Script(22);
        let mut now = START;
        let mut refusals = 0;
        for step in 0..400 {
            // Mostly bursts within a second, now and then a pause past a token or a lockout.
            now += match script.next(40) {
                0..=33 => script.next(1000) as f64 / 1000.0,
                34..=38 => script.next(20) as f64 + 0.5,
                _ => script.next(1000) as f64,
            };
            let email = emails[script.next(2) as usize];
            let network = networks[script.next(3) as usize];
            match script.next(8) {
                0..=4 => {
                    in_memory.take_from_each_bucket(email, network, now);
                    shared
                        .take_from_each_bucket(email, network, now)
                        .await
                        .unwrap();
                }
                5 => {
                    in_memory.record_success(email, network);
                    shared.record_success(email, network).await.unwrap();
                }
                _ => {
                    in_memory.record_network_failure(network, now);
                    shared.record_network_failure(network, now).await.unwrap();
                }
            }
            for email in emails {
                for network in networks {
                    let expected = in_memory.check(email, network, [0; 3], now).map(|_| ());
                    let got = match shared.check(email, network, [0; 3], now).await {
                        Ok(_) => Ok(()),
                        Err(LimitRefusal::TooSoon(retry)) => Err(retry),
                        Err(LimitRefusal::CountersUnavailable(error)) => panic!("{error}"),
                    };
                    assert_eq!(got, expected, "step {step}, {email} from {network}");
                    refusals += usize::from(expected.is_err());
                }
                for network in networks {
                    let expected = in_memory.check_network(network, now);
                    let got =
                        shared
                            .check_network(network, now)
                            .await
                            .map_err(|refusal| match refusal {
                                LimitRefusal::TooSoon(retry) => retry,
                                LimitRefusal::CountersUnavailable(error) => panic!("{error}"),
                            });
                    assert_eq!(got, expected, "step {step}, network {network}");
                }
            }
        }
        assert!(refusals > 100, "the script refused only {refusals} checks");
    }

    /// A passed check says whether the (account, network) bucket is kept, so that a
    /// success after a check that found none spends no statement forgetting it.
    #[tokio::test]
    async fn a_passed_check_says_whether_the_account_network_history_is_kept() {
        let counters = shared_counters_on_a_fresh_database().await;
        let shared = SharedThrottle::new("password", Some(SMALL_LIMITS), counters);
        let (email, network) = ("ada@example.com", "198.51.100.1");
        let kept = |outcome: Result<PassedBuckets, LimitRefusal>| match outcome {
            Ok(passed) => passed.history_to_forget,
            Err(LimitRefusal::TooSoon(retry)) => panic!("refused for {retry:?}"),
            Err(LimitRefusal::CountersUnavailable(error)) => panic!("{error}"),
        };
        assert!(!kept(shared.check(email, network, [0; 3], START).await));
        // Another network's failure keeps the account's bucket, not this pair's.
        shared
            .take_from_each_bucket(email, "198.51.100.2", START)
            .await
            .unwrap();
        assert!(!kept(shared.check(email, network, [0; 3], START).await));
        shared
            .take_from_each_bucket(email, network, START)
            .await
            .unwrap();
        assert!(kept(shared.check(email, network, [0; 3], START).await));
        shared.record_success(email, network).await.unwrap();
        assert!(!kept(shared.check(email, network, [0; 3], START).await));
    }

    #[tokio::test]
    async fn shared_per_key_buckets_answer_exactly_as_the_in_memory_ones_step_by_step() {
        let counters = shared_counters_on_a_fresh_database().await;
        let limit = PerKeyLimit {
            requests: 3,
            window_seconds: 60,
        };
        let shared = SharedPerKeyLimiter::new("starts", Some(limit), counters.clone());
        let in_memory = InMemoryPerKeyLimiter::new(Some(limit));
        let keys = ["7", "8"];
        let mut script = Script(5);
        let mut now = START;
        let mut refusals = 0;
        for step in 0..300 {
            now += match script.next(4) {
                0..=2 => script.next(3000) as f64 / 1000.0,
                _ => script.next(40) as f64,
            };
            let key = keys[script.next(2) as usize];
            if script.next(2) == 0 {
                let expected = in_memory.take(key, now);
                let got = shared
                    .take(key, now)
                    .await
                    .map_err(|refusal| match refusal {
                        LimitRefusal::TooSoon(retry) => retry,
                        LimitRefusal::CountersUnavailable(error) => panic!("{error}"),
                    });
                assert_eq!(got, expected, "step {step}: take {key}");
                refusals += usize::from(expected.is_err());
            } else {
                in_memory.record_failure(key, now);
                shared.record_failure(key, now).await.unwrap();
            }
            for key in keys {
                let expected = in_memory.check(key, now);
                let got = shared
                    .check(key, now)
                    .await
                    .map_err(|refusal| match refusal {
                        LimitRefusal::TooSoon(retry) => retry,
                        LimitRefusal::CountersUnavailable(error) => panic!("{error}"),
                    });
                assert_eq!(got, expected, "step {step}: check {key}");
            }
        }
        assert!(refusals > 20, "the script refused only {refusals} takes");
    }

    #[tokio::test]
    async fn limiters_and_kinds_never_share_a_bucket_and_a_throttle_switched_off_reads_none() {
        let counters = shared_counters_on_a_fresh_database().await;
        let passwords = SharedThrottle::new("password", Some(LIMITS), counters.clone());
        let requests = SharedThrottle::new("requests", Some(LIMITS), counters.clone());
        for _ in 0..5 {
            passwords
                .take_from_each_bucket("a@x.com", "198.51.100.1", START)
                .await
                .unwrap();
        }
        assert!(
            passwords
                .check("a@x.com", "198.51.100.1", [0; 3], START)
                .await
                .is_err()
        );
        assert!(
            requests
                .check("a@x.com", "198.51.100.1", [0; 3], START)
                .await
                .is_ok()
        );
        assert_ne!(
            bucket_digest(BucketKind::Account, "198.51.100.1", ""),
            bucket_digest(BucketKind::Network, "", "198.51.100.1")
        );
        assert_ne!(
            bucket_digest(BucketKind::AccountNetwork, "a", "bc"),
            bucket_digest(BucketKind::AccountNetwork, "ab", "c")
        );
        // Throttling off: every step passes without reading the buckets, drained ones too.
        let switched_off = SharedThrottle::new("password", None, counters);
        for _ in 0..50 {
            switched_off
                .take_from_each_bucket("a@x.com", "198.51.100.1", START)
                .await
                .unwrap();
        }
        assert!(
            switched_off
                .check("a@x.com", "198.51.100.1", [0; 3], START)
                .await
                .is_ok()
        );
    }
}
