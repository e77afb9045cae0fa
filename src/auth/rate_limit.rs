//! Rate limits: token buckets against guessing and floods. `Throttle` takes a token from
//! each of its buckets for every failed password check (`record_failed_attempt`), and, as
//! `App::request_limiter`, for every sign-up, resend and reset request whatever its outcome
//! (`count_request`); failed OAuth sign-ins drain its network bucket alone. Its buckets are
//! keyed by the normalized email (whether or not the account exists), by (email, client
//! network) and by client network (IPv4 address, IPv6 /64). `PerKeyLimiter` is one plain
//! bucket per key (a caller's user id, for sub-user creation). A check whose bucket is empty
//! is refused before any hashing, with the seconds until it refills. A check that passes
//! holds one token of each of its buckets until its attempt ends (`ThrottlePassed`, dropped
//! after the failure is taken or the success recorded), and a check counts the attempts
//! that end while it reads its buckets (their failures may be missing from what it read), so
//! that simultaneous guesses meet the ceilings as the same guesses one after another do; the
//! holds are this node's own.
//!
//! The per-account ceiling binds every network, one that never failed against the account
//! included, so rotating networks buys no guesses beyond it; an opened session clears its own
//! (email, network) bucket.
//!
//! Where the buckets live is chosen once, when `App` is built (`CounterHome`): on a store
//! that one node holds (redb), in this process's memory (`InMemoryThrottle`,
//! `InMemoryPerKeyLimiter`: no await, no store round trip); on one that many nodes share
//! (PostgreSQL), in the database (`shared`), so that N guesses spread over nodes meet the
//! same ceilings as N on one. Both keep the same buckets with the same arithmetic.
//!
//! In memory, memory is bounded: keys are 64-bit keyed hashes (the same size whatever the
//! email), a limiter holds at most `MAX_ENTRIES` buckets, and when it is full the buckets that
//! hold the least back are forgotten first (a refilled bucket holds nothing back), so a flood
//! of fresh keys cannot free the key it attacks; the shared buckets are purged by the same
//! rule in the maintenance pass. The in-memory limiters count time in seconds on `App::clock`'s
//! `since_start`, the shared ones in Unix seconds on the same clock (nodes share no start),
//! so the rules are tested without sleeping. A limiter whose lock was poisoned keeps
//! limiting, and one whose database cannot be reached refuses: it never fails open.

mod shared;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::auth::AuthError;
use crate::auth::rate_limit::shared::{SharedPerKeyLimiter, SharedThrottle};
use crate::model::clock::Clock;
use crate::store::{SharedBucket, SharedCounters, Store, StoreError};

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

/// Buckets one limiter holds at most. Past it, the buckets that hold the least back go first.
pub const MAX_ENTRIES: usize = 100_000;
/// What a full table is brought down to when it must forget buckets that still hold back, so
/// that the work of choosing them is spread over many insertions (and the map can reuse its
/// slots rather than grow).
const ENTRIES_AFTER_EVICTION: usize = MAX_ENTRIES / 2;
const WINDOW_SECONDS: f64 = 60.0;

/// The buckets of password checks (or of sign-up, resend and reset requests) in this
/// process's memory, with the time passed in.
#[derive(Debug)]
pub struct InMemoryThrottle {
    limits: Option<ThrottleLimits>,
    table: Mutex<BucketTable>,
}

/// A plain token bucket per key: `requests` at once, refilled over `window_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerKeyLimit {
    pub requests: u32,
    pub window_seconds: u64,
}

/// One token bucket per key in this process's memory, with the time passed in.
#[derive(Debug)]
pub struct InMemoryPerKeyLimiter {
    limit: Option<PerKeyLimit>,
    table: Mutex<BucketTable>,
}

/// Where the limiters keep their buckets, chosen once when `App` is built.
#[derive(Clone, Debug)]
pub enum CounterHome {
    /// This process's memory: the store has one node (redb).
    ThisProcess,
    /// The database that every node shares (PostgreSQL).
    SharedDatabase(SharedCounters),
}

impl CounterHome {
    /// The database's counters when the store offers shared ones, else this process's.
    pub fn for_store(store: &Store) -> CounterHome {
        match store.shared_counters() {
            Some(counters) => CounterHome::SharedDatabase(counters),
            None => CounterHome::ThisProcess,
        }
    }
}

/// Why a limited step may not go ahead.
#[derive(Debug)]
pub enum LimitRefusal {
    /// A bucket is empty or blocked: 429, with the wait.
    TooSoon(RetryAfter),
    /// The shared counters could not be read: refused rather than let through unlimited.
    CountersUnavailable(StoreError),
}

impl From<LimitRefusal> for AuthError {
    fn from(refusal: LimitRefusal) -> AuthError {
        match refusal {
            LimitRefusal::TooSoon(retry) => AuthError::TooManyAttempts(retry.0),
            LimitRefusal::CountersUnavailable(error) => AuthError::from(error),
        }
    }
}

/// What a password check that the throttle let through saw, for the success that may
/// follow (`Throttle::record_success`): whether the (account, network) bucket held a history
/// to forget. In this process's memory forgetting costs nothing, so it always does; in the
/// shared database a bucket that was not there costs no statement. A failure recorded by
/// another request after the check is then left in place, which limits more, never less.
///
/// It also holds one token of each of the attempt's buckets on this node until it is dropped:
/// a check that passes is counted against the checks that follow while its hash runs, which
/// is what keeps a burst of simultaneous guesses within the ceilings.
#[derive(Debug)]
pub struct ThrottlePassed {
    history_to_forget: bool,
    _hold: Option<AttemptHold>,
}

/// The buckets of password checks (or of sign-up, resend and reset requests), wherever they
/// live. One per use in `App`.
#[derive(Debug)]
pub struct Throttle {
    buckets: ThrottleBuckets,
    limits: Option<ThrottleLimits>,
    attempts_under_way: Arc<AttemptsUnderWay>,
    clock: Clock,
}

/// What a check that passed read: whether the (account, network) bucket has a history to
/// forget, and the tokens each bucket has left (in `bucket_kinds` order; a bucket never
/// drained has its capacity).
#[derive(Debug)]
struct PassedBuckets {
    history_to_forget: bool,
    tokens_left: [f64; 3],
}

/// The attempts on this node that passed a check and have not ended, and those still reading
/// their buckets, by bucket (a keyed hash of the bucket's kind and parts, as `BucketTable`
/// keys them). Bounded by the requests in flight: an entry nobody holds or reads is removed.
#[derive(Debug, Default)]
struct AttemptsUnderWay {
    buckets: Mutex<HashMap<u64, BucketAttempts>>,
    key_hasher: RandomState,
}

/// One bucket's attempts on this node.
#[derive(Debug, Default)]
struct BucketAttempts {
    /// Attempts that passed and have not ended.
    held: u32,
    /// Attempts that passed and have ended, since the entry was made: one that ends while a
    /// check reads its buckets may have taken its failure after the read, so the check counts
    /// it as under way.
    ended: u64,
    /// Checks between their first look here and their hold or refusal.
    reading: u32,
}

/// A check's look at the attempts under way, taken before it reads its buckets; it keeps
/// the entries (and their count of ended attempts) until the check holds or is refused.
#[derive(Debug)]
struct AttemptsReading {
    attempts_under_way: Arc<AttemptsUnderWay>,
    keys: [u64; 3],
    held_before: [u32; 3],
    ended_before: [u64; 3],
}

/// One attempt's hold on its three buckets, let go when dropped.
#[derive(Debug)]
struct AttemptHold {
    attempts_under_way: Arc<AttemptsUnderWay>,
    keys: [u64; 3],
}

impl AttemptsUnderWay {
    fn keys(&self, limits: &ThrottleLimits, email: &str, network: &str) -> [u64; 3] {
        bucket_kinds(limits).map(|(kind, _)| {
            let (email, network) = kind.counted_parts(email, network);
            self.key_hasher.hash_one((kind, email, network))
        })
    }

    fn buckets(&self) -> MutexGuard<'_, HashMap<u64, BucketAttempts>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a check on `keys`: how many attempts hold each now, kept with how many have
    /// ended so far.
    fn start_reading(self: &Arc<Self>, keys: [u64; 3]) -> AttemptsReading {
        let mut buckets = self.buckets();
        let mut held_before = [0; 3];
        let mut ended_before = [0; 3];
        for (index, key) in keys.into_iter().enumerate() {
            let bucket = buckets.entry(key).or_default();
            bucket.reading = bucket.reading.saturating_add(1);
            held_before[index] = bucket.held;
            ended_before[index] = bucket.ended;
        }
        AttemptsReading {
            attempts_under_way: Arc::clone(self),
            keys,
            held_before,
            ended_before,
        }
    }

    /// Removes the entries of `keys` that nobody holds or reads.
    fn forget_idle(buckets: &mut HashMap<u64, BucketAttempts>, keys: [u64; 3]) {
        for key in keys {
            if buckets
                .get(&key)
                .is_some_and(|bucket| bucket.held == 0 && bucket.reading == 0)
            {
                buckets.remove(&key);
            }
        }
    }
}

impl AttemptsReading {
    /// Holds the buckets for this attempt, and answers, for each, how many other attempts
    /// the buckets as read may not count: those holding now, and those that ended since the
    /// reading began (their failures may have been taken after the read).
    fn hold(&self) -> (AttemptHold, [u32; 3]) {
        let mut buckets = self.attempts_under_way.buckets();
        let mut others = [0; 3];
        for (index, key) in self.keys.into_iter().enumerate() {
            let bucket = buckets.entry(key).or_default();
            let ended_since = bucket.ended.saturating_sub(self.ended_before[index]);
            others[index] = bucket
                .held
                .saturating_add(u32::try_from(ended_since).unwrap_or(u32::MAX));
            bucket.held = bucket.held.saturating_add(1);
        }
        let hold = AttemptHold {
            attempts_under_way: Arc::clone(&self.attempts_under_way),
            keys: self.keys,
        };
        (hold, others)
    }
}

impl Drop for AttemptsReading {
    fn drop(&mut self) {
        let mut buckets = self.attempts_under_way.buckets();
        for key in self.keys {
            if let Some(bucket) = buckets.get_mut(&key) {
                bucket.reading = bucket.reading.saturating_sub(1);
            }
        }
        AttemptsUnderWay::forget_idle(&mut buckets, self.keys);
    }
}

impl Drop for AttemptHold {
    fn drop(&mut self) {
        let mut buckets = self.attempts_under_way.buckets();
        for key in self.keys {
            if let Some(bucket) = buckets.get_mut(&key) {
                bucket.held = bucket.held.saturating_sub(1);
                bucket.ended = bucket.ended.saturating_add(1);
            }
        }
        AttemptsUnderWay::forget_idle(&mut buckets, self.keys);
    }
}

#[derive(Debug)]
enum ThrottleBuckets {
    ThisProcess(InMemoryThrottle),
    Shared(SharedThrottle),
}

impl Throttle {
    /// `limiter` names its buckets in a shared database (`"password"`, `"requests"`);
    /// `limits` `None` turns throttling off (benchmarks, load tests).
    pub fn new(
        limiter: &'static str,
        limits: Option<ThrottleLimits>,
        home: &CounterHome,
        clock: Clock,
    ) -> Throttle {
        let buckets = match home {
            CounterHome::ThisProcess => ThrottleBuckets::ThisProcess(InMemoryThrottle::new(limits)),
            CounterHome::SharedDatabase(counters) => {
                ThrottleBuckets::Shared(SharedThrottle::new(limiter, limits, counters.clone()))
            }
        };
        Throttle {
            buckets,
            limits,
            attempts_under_way: Arc::new(AttemptsUnderWay::default()),
            clock,
        }
    }

    /// Whether a password check for `email` from `network` may go ahead now. The account's
    /// ceiling applies to every network, new ones included.
    /// Passed, the attempt is held, and checks that begin after it count it.
    pub async fn check(&self, email: &str, network: &str) -> Result<ThrottlePassed, LimitRefusal> {
        let Some(limits) = self.limits else {
            return Ok(ThrottlePassed {
                history_to_forget: false,
                _hold: None,
            });
        };
        let keys = self.attempts_under_way.keys(&limits, email, network);
        // Checked before it holds anything, so that a stream of refused requests takes no
        // room from anyone (the database's answer can be a while coming).
        let reading = self.attempts_under_way.start_reading(keys);
        let passed = self
            .check_beside(email, network, reading.held_before)
            .await?;
        let (hold, others) = reading.hold();
        drop(reading);
        // Attempts that began while this one read its buckets did not count it, and those
        // that ended meanwhile may be missing from the read: it counts both, against what
        // the buckets had left (and every later check counts it).
        let longest_wait = passed
            .tokens_left
            .iter()
            .zip(others)
            .map(|(tokens, others)| wait_for_attempts_under_way(*tokens, others))
            .fold(0.0_f64, f64::max);
        refusal_after(longest_wait).map_err(LimitRefusal::TooSoon)?;
        let history_to_forget = passed.history_to_forget;
        Ok(ThrottlePassed {
            history_to_forget,
            _hold: Some(hold),
        })
    }

    /// `check` for a request that is counted right after whatever its outcome
    /// (`count_request`): with no hash in between, it holds nothing, so that requests sent
    /// together meet the ceiling exactly rather than count twice while they finish.
    pub async fn check_request(&self, key: &str, network: &str) -> Result<(), LimitRefusal> {
        self.check_beside(key, network, [0; 3]).await?;
        Ok(())
    }

    /// Whether the buckets let an attempt through beside `others` under way on this node.
    async fn check_beside(
        &self,
        email: &str,
        network: &str,
        others: [u32; 3],
    ) -> Result<PassedBuckets, LimitRefusal> {
        match &self.buckets {
            ThrottleBuckets::ThisProcess(throttle) => {
                let tokens_left = throttle
                    .check(email, network, others, self.clock.since_start_seconds())
                    .map_err(LimitRefusal::TooSoon)?;
                Ok(PassedBuckets {
                    history_to_forget: true,
                    tokens_left,
                })
            }
            ThrottleBuckets::Shared(throttle) => {
                throttle
                    .check(
                        email,
                        network,
                        others,
                        self.clock.now_unix_seconds_fractional(),
                    )
                    .await
            }
        }
    }

    /// Records a failed password check: each bucket loses a token; one that runs dry blocks
    /// for a wait that doubles with each consecutive lockout.
    pub async fn record_failed_attempt(
        &self,
        email: &str,
        network: &str,
    ) -> Result<(), StoreError> {
        self.take_from_each_bucket(email, network).await
    }

    /// Counts a request that is limited whatever its outcome (sign-up, resend, reset, reset
    /// confirmation): it drains the buckets exactly as a failed password check does.
    pub async fn count_request(&self, key: &str, network: &str) -> Result<(), StoreError> {
        self.take_from_each_bucket(key, network).await
    }

    async fn take_from_each_bucket(&self, email: &str, network: &str) -> Result<(), StoreError> {
        match &self.buckets {
            ThrottleBuckets::ThisProcess(throttle) => {
                throttle.take_from_each_bucket(email, network, self.clock.since_start_seconds());
                Ok(())
            }
            ThrottleBuckets::Shared(throttle) => {
                throttle
                    .take_from_each_bucket(email, network, self.clock.now_unix_seconds_fractional())
                    .await
            }
        }
    }

    /// Records a success after `passed`: the (email, network) history is forgotten. It comes
    /// after the session is made, so a database that cannot forget is logged, not answered:
    /// the bucket stays as drained as it was, which limits more, never less.
    pub async fn record_success(&self, email: &str, network: &str, passed: ThrottlePassed) {
        if !passed.history_to_forget {
            return;
        }
        match &self.buckets {
            ThrottleBuckets::ThisProcess(throttle) => throttle.record_success(email, network),
            ThrottleBuckets::Shared(throttle) => {
                if let Err(error) = throttle.record_success(email, network).await {
                    tracing::warn!(%error, "could not clear a throttle bucket after a success");
                }
            }
        }
    }

    /// Whether a client network may try again now: its own bucket alone, for attempts that
    /// name no account (OAuth and passkey sign-in).
    pub async fn check_network(&self, network: &str) -> Result<(), LimitRefusal> {
        match &self.buckets {
            ThrottleBuckets::ThisProcess(throttle) => throttle
                .check_network(network, self.clock.since_start_seconds())
                .map_err(LimitRefusal::TooSoon),
            ThrottleBuckets::Shared(throttle) => {
                throttle
                    .check_network(network, self.clock.now_unix_seconds_fractional())
                    .await
            }
        }
    }

    /// Records a failed attempt against the network's bucket alone (the same bucket failed
    /// password checks drain).
    pub async fn record_network_failure(&self, network: &str) -> Result<(), StoreError> {
        match &self.buckets {
            ThrottleBuckets::ThisProcess(throttle) => {
                throttle.record_network_failure(network, self.clock.since_start_seconds());
                Ok(())
            }
            ThrottleBuckets::Shared(throttle) => {
                throttle
                    .record_network_failure(network, self.clock.now_unix_seconds_fractional())
                    .await
            }
        }
    }
}

/// One token bucket per key, wherever it lives: for limits on a caller or a network rather
/// than on guessing (`POST /user` per user id, started ceremonies per network), and for
/// failure ceilings (wrong second factors per account).
#[derive(Debug)]
pub struct PerKeyLimiter {
    buckets: PerKeyBuckets,
    clock: Clock,
}

#[derive(Debug)]
enum PerKeyBuckets {
    ThisProcess(InMemoryPerKeyLimiter),
    Shared(SharedPerKeyLimiter),
}

impl PerKeyLimiter {
    /// `limiter` names its buckets in a shared database; `limit` `None`: no limit.
    pub fn new(
        limiter: &'static str,
        limit: Option<PerKeyLimit>,
        home: &CounterHome,
        clock: Clock,
    ) -> PerKeyLimiter {
        let buckets = match home {
            CounterHome::ThisProcess => {
                PerKeyBuckets::ThisProcess(InMemoryPerKeyLimiter::new(limit))
            }
            CounterHome::SharedDatabase(counters) => {
                PerKeyBuckets::Shared(SharedPerKeyLimiter::new(limiter, limit, counters.clone()))
            }
        };
        PerKeyLimiter { buckets, clock }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is back. Checking and
    /// taking are one step, so concurrent requests cannot all pass on the last token.
    pub async fn take(&self, key: &str) -> Result<(), LimitRefusal> {
        match &self.buckets {
            PerKeyBuckets::ThisProcess(limiter) => limiter
                .take(key, self.clock.since_start_seconds())
                .map_err(LimitRefusal::TooSoon),
            PerKeyBuckets::Shared(limiter) => {
                limiter
                    .take(key, self.clock.now_unix_seconds_fractional())
                    .await
            }
        }
    }

    /// Whether `key` may try again now, taking nothing: for limits that count failures
    /// (`record_failure`) rather than attempts.
    pub async fn check(&self, key: &str) -> Result<(), LimitRefusal> {
        match &self.buckets {
            PerKeyBuckets::ThisProcess(limiter) => limiter
                .check(key, self.clock.since_start_seconds())
                .map_err(LimitRefusal::TooSoon),
            PerKeyBuckets::Shared(limiter) => {
                limiter
                    .check(key, self.clock.now_unix_seconds_fractional())
                    .await
            }
        }
    }

    /// Counts a failure against `key`: a token goes, and `check` refuses once none is left
    /// until one comes back.
    pub async fn record_failure(&self, key: &str) -> Result<(), StoreError> {
        match &self.buckets {
            PerKeyBuckets::ThisProcess(limiter) => {
                limiter.record_failure(key, self.clock.since_start_seconds());
                Ok(())
            }
            PerKeyBuckets::Shared(limiter) => {
                limiter
                    .record_failure(key, self.clock.now_unix_seconds_fractional())
                    .await
            }
        }
    }
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

/// What a bucket counts; part of its key, so an email never shares a bucket with a network.
#[derive(Clone, Copy, Hash)]
enum BucketKind {
    AccountNetwork,
    Account,
    Network,
    PerKey,
}

impl BucketKind {
    /// The parts of (email, network) a bucket of this kind counts: the account's bucket is
    /// one for every network, the network's one for every account.
    fn counted_parts<'a>(self, email: &'a str, network: &'a str) -> (&'a str, &'a str) {
        match self {
            BucketKind::AccountNetwork => (email, network),
            BucketKind::Account | BucketKind::PerKey => (email, ""),
            BucketKind::Network => ("", network),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: f64,
    /// While in the future, the bucket refuses regardless of tokens.
    blocked_until: f64,
    /// Seconds one token takes to come back: the window over the capacity.
    seconds_per_token: f64,
    capacity: u32,
    /// How many times this bucket has run dry in a row: each doubles the wait.
    lockouts: u32,
}

/// The buckets of one limiter, keyed by a keyed hash of (kind, email, network).
#[derive(Debug)]
struct BucketTable {
    buckets: HashMap<u64, Bucket>,
    key_hasher: RandomState,
}

impl InMemoryThrottle {
    /// `None`: throttling is off (benchmarks, load tests).
    pub fn new(limits: Option<ThrottleLimits>) -> InMemoryThrottle {
        InMemoryThrottle {
            limits,
            table: Mutex::new(BucketTable::new()),
        }
    }

    /// Whether a password check for `email` from `network` may go ahead at `now` (seconds),
    /// beside `others` attempts under way on each bucket (in `bucket_kinds` order); passed,
    /// the tokens each bucket has left. The account's ceiling applies to every network, new
    /// ones included.
    pub fn check(
        &self,
        email: &str,
        network: &str,
        others: [u32; 3],
        now: f64,
    ) -> Result<[f64; 3], RetryAfter> {
        let Some(limits) = self.limits else {
            return Ok([f64::INFINITY; 3]);
        };
        let mut table = lock(&self.table);
        let mut longest_wait = 0.0_f64;
        let mut tokens_left = [0.0; 3];
        for (((kind, capacity), others), left) in bucket_kinds(&limits)
            .into_iter()
            .zip(others)
            .zip(&mut tokens_left)
        {
            let key = table.key(kind, email, network);
            let wait = match table.refilled(key, now) {
                Some(bucket) => {
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
        refusal_after(longest_wait)?;
        Ok(tokens_left)
    }

    /// Records a failed password check: each bucket loses a token; one that runs dry blocks
    /// for a wait that doubles with each consecutive lockout.
    pub fn record_failed_attempt(&self, email: &str, network: &str, now: f64) {
        self.take_from_each_bucket(email, network, now);
    }

    /// Counts a request that is limited whatever its outcome (sign-up, resend, reset, reset
    /// confirmation): it drains the buckets exactly as a failed password check does.
    pub fn count_request(&self, key: &str, network: &str, now: f64) {
        self.take_from_each_bucket(key, network, now);
    }

    /// Takes a token from each of the three buckets of (`email`, `network`).
    fn take_from_each_bucket(&self, email: &str, network: &str, now: f64) {
        let Some(limits) = self.limits else {
            return;
        };
        let mut table = lock(&self.table);
        for (kind, capacity) in bucket_kinds(&limits) {
            let key = table.key(kind, email, network);
            let bucket = table.bucket(key, capacity, WINDOW_SECONDS, now);
            bucket.take_with_lockout(limits.max_delay_seconds, now);
        }
    }

    /// Records a success: the (email, network) history is forgotten.
    pub fn record_success(&self, email: &str, network: &str) {
        let mut table = lock(&self.table);
        let key = table.key(BucketKind::AccountNetwork, email, network);
        table.buckets.remove(&key);
    }

    /// Whether a client network may try again at `now`: its own bucket alone, for attempts
    /// that name no account (OAuth sign-in, before the provider is asked).
    pub fn check_network(&self, network: &str, now: f64) -> Result<(), RetryAfter> {
        if self.limits.is_none() {
            return Ok(());
        }
        let mut table = lock(&self.table);
        let key = table.key(BucketKind::Network, "", network);
        let wait = table
            .refilled(key, now)
            .map_or(0.0, |bucket| bucket.wait(now));
        refusal_after(wait)
    }

    /// Records a failed attempt against the network's bucket alone (the same bucket failed
    /// password checks drain).
    pub fn record_network_failure(&self, network: &str, now: f64) {
        let Some(limits) = self.limits else {
            return;
        };
        let mut table = lock(&self.table);
        let key = table.key(BucketKind::Network, "", network);
        let bucket = table.bucket(key, limits.failures_per_network, WINDOW_SECONDS, now);
        bucket.take_with_lockout(limits.max_delay_seconds, now);
    }

    /// How many buckets are held now (at most `MAX_ENTRIES`).
    pub fn held_entries(&self) -> usize {
        lock(&self.table).buckets.len()
    }
}

impl InMemoryPerKeyLimiter {
    /// `None`: no limit.
    pub fn new(limit: Option<PerKeyLimit>) -> InMemoryPerKeyLimiter {
        InMemoryPerKeyLimiter {
            limit,
            table: Mutex::new(BucketTable::new()),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is back. Checking and
    /// taking are one step, so concurrent requests cannot all pass on the last token.
    pub fn take(&self, key: &str, now: f64) -> Result<(), RetryAfter> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut table = lock(&self.table);
        let key = table.key(BucketKind::PerKey, key, "");
        let window_seconds = limit.window_seconds.max(1) as f64;
        let bucket = table.bucket(key, limit.requests, window_seconds, now);
        if bucket.tokens < 1.0 {
            return refusal_after(bucket.wait(now));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Whether `key` may try again at `now`, taking nothing: for limits that count failures
    /// (`record_failure`) rather than attempts.
    pub fn check(&self, key: &str, now: f64) -> Result<(), RetryAfter> {
        if self.limit.is_none() {
            return Ok(());
        }
        let mut table = lock(&self.table);
        let key = table.key(BucketKind::PerKey, key, "");
        let wait = table
            .refilled(key, now)
            .map_or(0.0, |bucket| bucket.wait(now));
        refusal_after(wait)
    }

    /// Counts a failure against `key`: a token goes, and `check` refuses once none is left
    /// until one comes back (no growing lockout: the window is long already).
    pub fn record_failure(&self, key: &str, now: f64) {
        let Some(limit) = self.limit else {
            return;
        };
        let mut table = lock(&self.table);
        let key = table.key(BucketKind::PerKey, key, "");
        let window_seconds = limit.window_seconds.max(1) as f64;
        let bucket = table.bucket(key, limit.requests, window_seconds, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// How many buckets are held now (at most `MAX_ENTRIES`).
    pub fn held_entries(&self) -> usize {
        lock(&self.table).buckets.len()
    }
}

/// The three buckets of a password check, with their capacities.
fn bucket_kinds(limits: &ThrottleLimits) -> [(BucketKind, u32); 3] {
    [
        (
            BucketKind::AccountNetwork,
            limits.failures_per_account_network,
        ),
        (BucketKind::Account, limits.failures_per_account),
        (BucketKind::Network, limits.failures_per_network),
    ]
}

impl Bucket {
    fn new(capacity: u32, window_seconds: f64, now: f64) -> Bucket {
        let capacity = capacity.max(1);
        Bucket {
            tokens: f64::from(capacity),
            updated: now,
            blocked_until: 0.0,
            seconds_per_token: window_seconds / f64::from(capacity),
            capacity,
            lockouts: 0,
        }
    }

    /// A bucket as the shared database keeps it.
    fn from_shared(shared: &SharedBucket) -> Bucket {
        Bucket {
            tokens: shared.tokens,
            updated: shared.updated,
            blocked_until: shared.blocked_until,
            seconds_per_token: shared.seconds_per_token,
            capacity: shared.capacity,
            lockouts: shared.lockouts,
        }
    }

    fn to_shared(self) -> SharedBucket {
        SharedBucket {
            capacity: self.capacity,
            seconds_per_token: self.seconds_per_token,
            tokens: self.tokens,
            updated: self.updated,
            blocked_until: self.blocked_until,
            lockouts: self.lockouts,
        }
    }

    fn tokens_at(&self, now: f64) -> f64 {
        let elapsed = (now - self.updated).max(0.0);
        (self.tokens + elapsed / self.seconds_per_token).min(f64::from(self.capacity))
    }

    fn refill(&mut self, now: f64) {
        self.tokens = self.tokens_at(now);
        self.updated = self.updated.max(now);
        if self.tokens >= f64::from(self.capacity) && self.blocked_until <= now {
            self.lockouts = 0;
        }
    }

    /// Seconds until the next attempt may go ahead (0: now).
    fn wait(&self, now: f64) -> f64 {
        if self.blocked_until > now {
            self.blocked_until - now
        } else if self.tokens < 1.0 {
            (1.0 - self.tokens) * self.seconds_per_token
        } else {
            0.0
        }
    }

    /// `wait`, beside `others` attempts under way that will each take a token or give theirs
    /// back.
    fn wait_beside(&self, others: u32, now: f64) -> f64 {
        let own = self.wait(now);
        if own > 0.0 {
            own
        } else {
            wait_for_attempts_under_way(self.tokens, others)
        }
    }

    /// Seconds until this bucket is as if it had never been drained: forgetting it sooner
    /// hands its key that much back. 0 means it can be forgotten at no cost.
    fn hold_seconds(&self, now: f64) -> f64 {
        let refill_left = (f64::from(self.capacity) - self.tokens_at(now)) * self.seconds_per_token;
        let block_left = (self.blocked_until - now).max(0.0);
        refill_left.max(block_left)
    }

    /// Takes a token (after `refill`); a bucket that runs dry blocks for a wait that doubles
    /// with each consecutive lockout, up to `max_delay_seconds`.
    fn take_with_lockout(&mut self, max_delay_seconds: u64, now: f64) {
        self.tokens = (self.tokens - 1.0).max(0.0);
        // A failure taken while the bucket is blocked (an attempt that passed its check
        // before the block, on this node or another) neither lengthens nor escalates it:
        // one lockout doubles the next wait once, however many attempts overshot it.
        if self.tokens < 1.0 && self.blocked_until <= now {
            let growth = 2f64.powi(i32::try_from(self.lockouts.min(20)).unwrap_or(20));
            let wait = (self.seconds_per_token * growth).min(max_delay_seconds as f64);
            self.blocked_until = now + wait;
            self.lockouts = self.lockouts.saturating_add(1);
        }
    }
}

impl BucketTable {
    fn new() -> BucketTable {
        BucketTable {
            buckets: HashMap::new(),
            key_hasher: RandomState::new(),
        }
    }

    /// A bucket's key: a hash keyed per process, so a client cannot aim two keys at one slot.
    /// Each kind reads only its own parts: the account's bucket is one for every network.
    fn key(&self, kind: BucketKind, email: &str, network: &str) -> u64 {
        let (email, network) = kind.counted_parts(email, network);
        self.key_hasher.hash_one((kind, email, network))
    }

    /// The bucket of `key`, refilled to `now`, if it is held.
    fn refilled(&mut self, key: u64, now: f64) -> Option<&mut Bucket> {
        let bucket = self.buckets.get_mut(&key)?;
        bucket.refill(now);
        Some(bucket)
    }

    /// The bucket of `key`, refilled to `now`; a full one is made, room first.
    fn bucket(&mut self, key: u64, capacity: u32, window_seconds: f64, now: f64) -> &mut Bucket {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_ENTRIES {
            self.make_room(now);
        }
        let bucket = self
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::new(capacity, window_seconds, now));
        bucket.refill(now);
        bucket
    }

    /// Forgets every bucket that holds nothing back; if that is not enough, forgets those that
    /// hold back least until half the room is free. A bucket an attacker has drained
    /// or locked out holds back longest, so it is the last to go.
    fn make_room(&mut self, now: f64) {
        self.buckets
            .retain(|_, bucket| bucket.hold_seconds(now) > 0.0);
        if self.buckets.len() <= ENTRIES_AFTER_EVICTION {
            return;
        }
        let excess = self.buckets.len() - ENTRIES_AFTER_EVICTION;
        let mut holds: Vec<f64> = self
            .buckets
            .values()
            .map(|bucket| bucket.hold_seconds(now))
            .collect();
        let (_, &mut threshold, _) = holds.select_nth_unstable_by(excess - 1, f64::total_cmp);
        // Strictly below the threshold first, then as many at it as still needed.
        let mut left_to_forget = excess;
        self.buckets.retain(|_, bucket| {
            let forget = left_to_forget > 0 && bucket.hold_seconds(now) < threshold;
            left_to_forget -= usize::from(forget);
            !forget
        });
        self.buckets.retain(|_, bucket| {
            let forget = left_to_forget > 0 && bucket.hold_seconds(now) <= threshold;
            left_to_forget -= usize::from(forget);
            !forget
        });
        if self.buckets.capacity() > 2 * MAX_ENTRIES {
            self.buckets.shrink_to(MAX_ENTRIES);
        }
    }
}

/// The wait of a bucket holding `tokens` (refilled, not blocked) while `others` attempts
/// under way hold one each: none while a token is left over, else a second, within which an
/// attempt under way has usually ended (its hash done, its failure taken or its hold let go).
fn wait_for_attempts_under_way(tokens: f64, others: u32) -> f64 {
    if tokens - f64::from(others) >= 1.0 {
        0.0
    } else {
        1.0
    }
}

fn refusal_after(wait_seconds: f64) -> Result<(), RetryAfter> {
    if wait_seconds > 0.0 {
        return Err(RetryAfter(seconds_at_least_one(wait_seconds)));
    }
    Ok(())
}

fn seconds_at_least_one(seconds: f64) -> u64 {
    let rounded = seconds.ceil();
    if rounded < 1.0 { 1 } else { rounded as u64 }
}

/// The table, even from a poisoned lock (the crate's one policy for std locks): every bucket
/// is whole between statements, so a panic elsewhere leaves the buckets valid, and refusing
/// them would let every attempt through. A poisoned limiter keeps limiting; it never fails
/// open.
fn lock(table: &Mutex<BucketTable>) -> MutexGuard<'_, BucketTable> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LIMITS: ThrottleLimits = ThrottleLimits {
        failures_per_account_network: 5,
        failures_per_account: 20,
        failures_per_network: 30,
        max_delay_seconds: 900,
    };

    /// `[signup]`'s defaults, as `App::request_limiter` uses them.
    const REQUEST_LIMITS: ThrottleLimits = ThrottleLimits {
        failures_per_account_network: 3,
        failures_per_account: 5,
        failures_per_network: 20,
        max_delay_seconds: 900,
    };

    #[test]
    fn a_failure_limit_refuses_once_its_failures_are_spent_and_refills_over_its_window() {
        let limiter = InMemoryPerKeyLimiter::new(Some(PerKeyLimit {
            requests: 10,
            window_seconds: 3600,
        }));
        let now = 1000.0;
        for _ in 0..10 {
            assert_eq!(limiter.check("ada@example.com", now), Ok(()));
            limiter.record_failure("ada@example.com", now);
        }
        assert_eq!(limiter.check("ada@example.com", now), Err(RetryAfter(360)));
        assert_eq!(limiter.check("bob@example.com", now), Ok(()));
        assert_eq!(limiter.check("ada@example.com", now + 360.0), Ok(()));
        limiter.record_failure("ada@example.com", now + 360.0);
        assert!(limiter.check("ada@example.com", now + 361.0).is_err());
    }

    #[test]
    fn five_failures_then_a_growing_wait_and_a_clean_network_still_passes() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        let mut now = 1000.0;
        for _ in 0..5 {
            assert!(
                throttle
                    .check("a@x.com", "198.51.100.1", [0; 3], now)
                    .is_ok()
            );
            throttle.record_failed_attempt("a@x.com", "198.51.100.1", now);
        }
        let first_wait = throttle
            .check("a@x.com", "198.51.100.1", [0; 3], now)
            .unwrap_err();
        assert!(first_wait.0 >= 1);
        assert!(
            throttle
                .check("a@x.com", "203.0.113.7", [0; 3], now)
                .is_ok(),
            "a clean network passes while the account has failures left"
        );
        // After the wait, one more failure locks again for longer.
        now += first_wait.0 as f64 + 0.5;
        assert!(
            throttle
                .check("a@x.com", "198.51.100.1", [0; 3], now)
                .is_ok()
        );
        throttle.record_failed_attempt("a@x.com", "198.51.100.1", now);
        let second_wait = throttle
            .check("a@x.com", "198.51.100.1", [0; 3], now)
            .unwrap_err();
        assert!(
            second_wait.0 > first_wait.0,
            "{second_wait:?} after {first_wait:?}"
        );
        throttle.record_success("a@x.com", "198.51.100.1");
        assert!(
            throttle
                .check("a@x.com", "198.51.100.1", [0; 3], now)
                .is_ok(),
            "a success resets it"
        );
    }

    #[test]
    fn the_account_ceiling_binds_networks_that_never_failed_against_it() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        let now = 1000.0;
        // One guess from each of 20 networks: no network and no (account, network) pair is
        // anywhere near its own limit, but the account's 20 are spent.
        for index in 0..20 {
            let network = format!("198.51.100.{index}");
            assert!(throttle.check("a@x.com", &network, [0; 3], now).is_ok());
            throttle.record_failed_attempt("a@x.com", &network, now);
        }
        let refused = throttle.check("a@x.com", "203.0.113.99", [0; 3], now);
        assert!(refused.is_err(), "a 21st network got a fresh guess");
        assert!(
            throttle
                .check("other@x.com", "203.0.113.99", [0; 3], now)
                .is_ok()
        );
        // The ceiling refills over its window.
        assert!(
            throttle
                .check("a@x.com", "203.0.113.99", [0; 3], now + 61.0)
                .is_ok()
        );
    }

    #[test]
    fn requests_per_address_count_every_network() {
        let throttle = InMemoryThrottle::new(Some(REQUEST_LIMITS));
        let now = 50.0;
        // As `signup::limit_requests` does: check, then count the request.
        for index in 0..5 {
            let network = format!("2001:db8:{index}::/64");
            assert!(throttle.check("taken@x.com", &network, [0; 3], now).is_ok());
            throttle.count_request("taken@x.com", &network, now);
        }
        assert!(
            throttle
                .check("taken@x.com", "2001:db8:99::/64", [0; 3], now)
                .is_err(),
            "a sixth network got past requests_per_address"
        );
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded_and_the_attacked_keys_stay_throttled() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        let now = 1000.0;
        let attacker = "198.51.100.7";
        // The attacker's own network is locked out of the account, and the account's
        // ceiling is spent by guesses from rotating networks.
        for _ in 0..5 {
            throttle.record_failed_attempt("target@x.com", attacker, now);
        }
        for index in 0..15 {
            throttle.record_failed_attempt("target@x.com", &format!("203.0.113.{index}"), now);
        }
        assert!(
            throttle
                .check("target@x.com", attacker, [0; 3], now)
                .is_err()
        );
        assert!(
            throttle
                .check("target@x.com", "192.0.2.1", [0; 3], now)
                .is_err()
        );

        // Then 100,000 distinct keys (each a new email from a new network: three buckets
        // each), within a second.
        let flood_size = 100_000_u32;
        let mut most_held = 0;
        for index in 0..flood_size {
            let network = Ipv4Addr::from(0x0a00_0000 + index).to_string();
            let moment = now + f64::from(index) / f64::from(flood_size);
            throttle.record_failed_attempt(&format!("flood{index}@x.com"), &network, moment);
            most_held = most_held.max(throttle.held_entries());
        }
        assert!(most_held <= MAX_ENTRIES, "{most_held} buckets held");
        let allocated_bytes = {
            let table = lock(&throttle.table);
            table.buckets.capacity() * (size_of::<u64>() + size_of::<Bucket>() + 1)
        };
        assert!(
            allocated_bytes <= 8 * 1024 * 1024,
            "{allocated_bytes} bytes for the buckets"
        );

        // Flooding forgot other buckets, not the attacked ones.
        let after = now + 1.0;
        assert!(
            throttle
                .check("target@x.com", attacker, [0; 3], after)
                .is_err(),
            "the attacker's network got its guesses back"
        );
        assert!(
            throttle
                .check("target@x.com", "192.0.2.2", [0; 3], after)
                .is_err(),
            "the account's ceiling was reset by the flood"
        );
    }

    /// Failures that land while a bucket is locked out (attempts that passed their checks
    /// before it, on this node or others) neither lengthen nor escalate the lockout: ten
    /// guesses over the ceiling at once wait as none over it do, and each later lockout (the
    /// guesser failing again as soon as it may, until refused) doubles once.
    #[test]
    fn failures_during_a_lockout_neither_lengthen_nor_escalate_it() {
        let waits = |failures_at_once: usize| {
            let throttle = InMemoryThrottle::new(Some(LIMITS));
            for _ in 0..failures_at_once {
                throttle.record_failed_attempt("a@x.com", "198.51.100.1", 0.0);
            }
            let mut waits = Vec::new();
            let mut now = 0.0;
            while waits.len() < 3 {
                match throttle.check("a@x.com", "198.51.100.1", [0; 3], now) {
                    Err(RetryAfter(wait)) => {
                        waits.push(wait);
                        now += wait as f64;
                    }
                    Ok(_) => throttle.record_failed_attempt("a@x.com", "198.51.100.1", now),
                }
            }
            waits
        };
        assert_eq!(waits(5), vec![12, 24, 48]);
        assert_eq!(waits(15), waits(5));
    }

    #[test]
    fn a_full_table_forgets_refilled_buckets_and_keeps_a_lockout() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        let attacker = "198.51.100.7";
        // The attacker fails again as soon as each lockout ends, so each doubles the next.
        let mut attacker_now = 0.0;
        for _ in 0..20 {
            if let Err(RetryAfter(wait)) =
                throttle.check("target@x.com", attacker, [0; 3], attacker_now)
            {
                attacker_now += wait as f64;
            }
            throttle.record_failed_attempt("target@x.com", attacker, attacker_now);
        }
        // Fill the table, one slot short, with one failure for each of many other keys.
        let old_keys = (MAX_ENTRIES - 3) / 3;
        for index in 0..old_keys {
            let network = Ipv4Addr::from(0x0a00_0000 + index as u32).to_string();
            throttle.record_failed_attempt(&format!("old{index}@x.com"), &network, 0.0);
        }
        assert_eq!(throttle.held_entries(), MAX_ENTRIES - 1);
        // Ten seconds after the attacker's last failure, every one of those has refilled,
        // and so have the attacker's account and network buckets; only its (account,
        // network) bucket, locked out for 48 s by that failure, still holds anything back.
        let later = attacker_now + 10.0;
        for index in 0..1000_u32 {
            let network = Ipv4Addr::from(0x0b00_0000 + index).to_string();
            throttle.record_failed_attempt(&format!("new{index}@x.com"), &network, later);
        }
        assert_eq!(throttle.held_entries(), 1 + 3 * 1000);
        assert!(
            throttle
                .check("target@x.com", attacker, [0; 3], later)
                .is_err()
        );
    }

    #[test]
    fn a_network_failing_against_many_accounts_is_held_back() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        for index in 0..30 {
            throttle.record_failed_attempt(&format!("user{index}@x.com"), "198.51.100.9", 50.0);
        }
        assert!(
            throttle
                .check("fresh@x.com", "198.51.100.9", [0; 3], 50.0)
                .is_err()
        );
        assert!(
            throttle
                .check("fresh@x.com", "198.51.100.10", [0; 3], 50.0)
                .is_ok()
        );
    }

    #[test]
    fn network_failures_share_the_bucket_of_failed_passwords() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        for index in 0..29 {
            throttle.record_failed_attempt(&format!("user{index}@x.com"), "198.51.100.9", 50.0);
        }
        assert!(throttle.check_network("198.51.100.9", 50.0).is_ok());
        throttle.record_network_failure("198.51.100.9", 50.0);
        let wait = throttle.check_network("198.51.100.9", 50.0).unwrap_err();
        assert!(wait.0 >= 1);
        assert!(
            throttle
                .check("fresh@x.com", "198.51.100.9", [0; 3], 50.0)
                .is_err()
        );
        assert!(throttle.check_network("198.51.100.10", 50.0).is_ok());
        assert!(
            InMemoryThrottle::new(None)
                .check_network("198.51.100.9", 0.0)
                .is_ok()
        );
    }

    #[test]
    fn a_per_key_limiter_allows_its_requests_then_refills_over_its_window() {
        let limit = PerKeyLimit {
            requests: 3,
            window_seconds: 3600,
        };
        let limiter = InMemoryPerKeyLimiter::new(Some(limit));
        for _ in 0..3 {
            assert!(limiter.take("7", 10.0).is_ok());
        }
        let wait = limiter.take("7", 10.0).unwrap_err();
        assert_eq!(wait, RetryAfter(1200), "one request back every 20 minutes");
        assert!(
            limiter.take("8", 10.0).is_ok(),
            "another caller is not held"
        );
        assert!(limiter.take("7", 10.0 + 1200.0).is_ok());
        assert!(limiter.take("7", 10.0 + 1200.0).is_err());
        assert!(InMemoryPerKeyLimiter::new(None).take("7", 0.0).is_ok());
    }

    /// Panics on another thread while it holds `table`'s lock, which poisons the lock.
    fn poison(table: &Mutex<BucketTable>) {
        let joined = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _held = lock(table);
                    panic!("poisoning the limiter's lock on purpose");
                })
                .join()
        });
        assert!(joined.is_err(), "the poisoning thread did not panic");
        assert!(table.is_poisoned());
    }

    #[test]
    fn a_poisoned_limiter_still_refuses_attempts_over_its_limit() {
        let throttle = InMemoryThrottle::new(Some(LIMITS));
        for _ in 0..5 {
            throttle.record_failed_attempt("a@x.com", "198.51.100.1", 10.0);
        }
        poison(&throttle.table);
        assert!(
            throttle
                .check("a@x.com", "198.51.100.1", [0; 3], 10.0)
                .is_err(),
            "a poisoned throttle let a locked-out network guess again"
        );
        // It still counts, too: a network failing against many accounts after the poisoning
        // is held back like any other.
        for index in 0..30 {
            throttle.record_failed_attempt(&format!("user{index}@x.com"), "203.0.113.5", 10.0);
        }
        assert!(
            throttle
                .check("fresh@x.com", "203.0.113.5", [0; 3], 10.0)
                .is_err()
        );
        assert!(throttle.check_network("203.0.113.5", 10.0).is_err());

        let limiter = InMemoryPerKeyLimiter::new(Some(PerKeyLimit {
            requests: 2,
            window_seconds: 3600,
        }));
        assert!(limiter.take("7", 10.0).is_ok());
        poison(&limiter.table);
        assert!(limiter.take("7", 10.0).is_ok());
        assert!(
            limiter.take("7", 10.0).is_err(),
            "a poisoned per-key limiter let a third request through"
        );
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let first: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(first), client_network(second));
        assert_ne!(client_network(first), client_network(other));
    }

    /// An attempt that ends while another check reads its buckets is counted by that check
    /// (its failure may have been taken after the read), and entries nobody holds or reads
    /// are forgotten.
    #[test]
    fn an_attempt_that_ends_while_a_check_reads_is_counted_by_that_check() {
        let attempts = Arc::new(AttemptsUnderWay::default());
        let keys = [1, 2, 3];
        let first = attempts.start_reading(keys);
        let (first_hold, others) = first.hold();
        drop(first);
        assert_eq!(others, [0; 3]);
        let second = attempts.start_reading(keys);
        assert_eq!(second.held_before, [1; 3]);
        drop(first_hold);
        let (second_hold, others) = second.hold();
        drop(second);
        assert_eq!(others, [1; 3]);
        drop(second_hold);
        let third = attempts.start_reading(keys);
        let (third_hold, others) = third.hold();
        drop(third);
        assert_eq!(others, [0; 3]);
        drop(third_hold);
        let refused = attempts.start_reading(keys);
        drop(refused);
        assert!(attempts.buckets().is_empty());
    }

    /// A check that passed holds a token of each bucket until it is dropped: beside the
    /// (account, network) bucket's 3 held, a fourth waits a second; one let go makes room.
    #[tokio::test]
    async fn a_passed_check_holds_its_tokens_until_it_ends() {
        let limits = ThrottleLimits {
            failures_per_account_network: 3,
            ..LIMITS
        };
        let throttle = Throttle::new(
            "password",
            Some(limits),
            &CounterHome::ThisProcess,
            crate::model::clock::ManualClock::starting_now().clock(),
        );
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(throttle.check("a@x.com", "198.51.100.1").await.unwrap());
        }
        match throttle.check("a@x.com", "198.51.100.1").await {
            Err(LimitRefusal::TooSoon(retry)) => assert_eq!(retry, RetryAfter(1)),
            other => panic!("a fourth check beside three held passed: {other:?}"),
        }
        // Another network's bucket is its own; the account's has room for 20.
        assert!(throttle.check("a@x.com", "198.51.100.2").await.is_ok());
        held.pop();
        assert!(throttle.check("a@x.com", "198.51.100.1").await.is_ok());
        // A failure taken before its hold is let go leaves the room it took.
        let failing = held.pop().unwrap();
        throttle
            .record_failed_attempt("a@x.com", "198.51.100.1")
            .await
            .unwrap();
        drop(failing);
        let _third = throttle.check("a@x.com", "198.51.100.1").await.unwrap();
        assert!(throttle.check("a@x.com", "198.51.100.1").await.is_err());
    }
}
