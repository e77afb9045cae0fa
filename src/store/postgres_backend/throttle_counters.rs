//! The rate limiters' token buckets in the database that every node shares (API.md 13:
//! spreading guesses over nodes gains nothing). `SharedCounters` exists only on this
//! backend (`Store::shared_counters`); `auth::rate_limit` decides what to take and when, and
//! keeps the same arithmetic for its in-memory buckets. Each operation is one statement on
//! its bucket rows (an atomic `INSERT ... ON CONFLICT DO UPDATE`, whose row lock orders
//! concurrent takes), in its own implicit transaction: no advisory lock, since these rows are
//! hot and independent of every other write. Times are Unix seconds with their fraction, so
//! that nodes count on one clock.

use deadpool_postgres::GenericClient;

use crate::store::StoreError;
use crate::store::postgres_backend::PostgresStore;
use crate::store::postgres_backend::rows::unsigned_to_sql;

/// The rate limiters' buckets in the shared database: a cheap handle.
#[derive(Clone, Debug)]
pub struct SharedCounters {
    store: PostgresStore,
}

/// One token bucket as the database keeps it (see `auth::rate_limit`'s `Bucket`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedBucket {
    pub capacity: u32,
    /// Seconds one token takes to come back.
    pub seconds_per_token: f64,
    pub tokens: f64,
    /// Unix seconds of the last refill.
    pub updated: f64,
    /// Unix seconds until which the bucket refuses whatever its tokens.
    pub blocked_until: f64,
    /// Consecutive lockouts, each doubling the next wait.
    pub lockouts: u32,
}

/// A token to take from one bucket: its digest, and what a bucket not yet kept holds once
/// this take has drained it (a full bucket, less the take).
#[derive(Clone, Copy, Debug)]
pub struct BucketTake {
    pub digest: [u8; 32],
    pub new_bucket_after_take: SharedBucket,
}

/// What `SharedCounters::take_if_available` did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConditionalTake {
    Taken,
    /// No token was left: the bucket as it stood (before its refill to now), if it is still
    /// kept.
    Refused(Option<SharedBucket>),
}

/// The refill of `bucket` (the row in the table) to `$1` (now), as `Bucket::refill`: its
/// tokens, `updated`, and its lockouts (forgotten once full and unblocked). A fragment of the
/// statements below (a constant: no data is formatted into SQL).
macro_rules! refilled_bucket {
    () => {
        "SELECT least(bucket.tokens + greatest($1 - bucket.updated, 0) \
                      / bucket.seconds_per_token, bucket.capacity) AS tokens, \
                greatest(bucket.updated, $1) AS updated, \
                CASE WHEN bucket.tokens + greatest($1 - bucket.updated, 0) \
                          / bucket.seconds_per_token >= bucket.capacity \
                      AND bucket.blocked_until <= $1 \
                     THEN 0 ELSE bucket.lockouts END AS lockouts"
    };
}

impl PostgresStore {
    /// The handle on the shared counters of this database.
    pub fn shared_counters(&self) -> SharedCounters {
        SharedCounters {
            store: self.clone(),
        }
    }
}

impl SharedCounters {
    /// The buckets of `limiter` among `digests` that are kept, with their digests, as they
    /// stand (not refilled).
    pub async fn read_buckets(
        &self,
        limiter: &str,
        digests: &[[u8; 32]],
    ) -> Result<Vec<([u8; 32], SharedBucket)>, StoreError> {
        let client = self.store.connection().await?;
        let statement = client
            .prepare_cached(
                "SELECT digest, capacity, seconds_per_token, tokens, updated, blocked_until, \
                 lockouts FROM throttle_buckets WHERE limiter = $1 AND digest = ANY($2)",
            )
            .await?;
        let digests: Vec<&[u8]> = digests.iter().map(<[u8; 32]>::as_slice).collect();
        let rows = client.query(&statement, &[&limiter, &digests]).await?;
        rows.iter()
            .map(|row| {
                let digest: &[u8] = row.try_get(0)?;
                let digest = <[u8; 32]>::try_from(digest)
                    .map_err(|_| StoreError::CorruptRecord("throttle bucket"))?;
                Ok((
                    digest,
                    SharedBucket {
                        capacity: from_sql_count(row.try_get(1)?)?,
                        seconds_per_token: row.try_get(2)?,
                        tokens: row.try_get(3)?,
                        updated: row.try_get(4)?,
                        blocked_until: row.try_get(5)?,
                        lockouts: from_sql_count(row.try_get(6)?)?,
                    },
                ))
            })
            .collect()
    }

    /// Takes a token from each bucket of `takes` at `now`, in one statement: a kept bucket is
    /// refilled to `now` and loses a token (never going below none); one not kept is written
    /// as its `new_bucket_after_take`. With `lockout_max_delay_seconds`, a bucket left with
    /// less than a token blocks for a wait that doubles with each consecutive lockout, up to
    /// that many seconds (`Bucket::take_with_lockout`). The buckets' rows are locked in the
    /// order given: every caller names a limiter's kinds of bucket in one order, so that two
    /// takes never wait on each other in a cycle.
    pub async fn take_from_buckets(
        &self,
        limiter: &str,
        takes: &[BucketTake],
        now: f64,
        lockout_max_delay_seconds: Option<f64>,
    ) -> Result<(), StoreError> {
        let client = self.store.connection().await?;
        let statement = client
            .prepare_cached(concat!(
                "INSERT INTO throttle_buckets AS bucket (limiter, digest, capacity, \
                 seconds_per_token, tokens, updated, blocked_until, lockouts, idle_at) \
                 SELECT $2, fresh.digest, fresh.capacity, fresh.seconds_per_token, \
                        fresh.tokens, $1, fresh.blocked_until, fresh.lockouts, \
                        greatest($1 + (fresh.capacity - fresh.tokens) \
                                 * fresh.seconds_per_token, fresh.blocked_until) \
                 FROM unnest($3::bytea[], $4::integer[], $5::double precision[], \
                             $6::double precision[], $7::double precision[], $8::integer[]) \
                      WITH ORDINALITY \
                      AS fresh(digest, capacity, seconds_per_token, tokens, blocked_until, \
                               lockouts, position) \
                 ORDER BY fresh.position \
                 ON CONFLICT (limiter, digest) DO UPDATE SET \
                 (tokens, updated, blocked_until, lockouts, idle_at) = ( \
                   SELECT taken.tokens, taken.updated, taken.blocked_until, taken.lockouts, \
                          greatest(taken.updated + (bucket.capacity - taken.tokens) \
                                   * bucket.seconds_per_token, taken.blocked_until) \
                   FROM (SELECT greatest(refilled.tokens - 1, 0) AS tokens, \
                                refilled.updated, \
                                CASE WHEN $9::double precision IS NOT NULL \
                                          AND greatest(refilled.tokens - 1, 0) < 1 \
                                          AND bucket.blocked_until <= $1 \
                                     THEN $1 + least(bucket.seconds_per_token \
                                                     * power(2, least(refilled.lockouts, 20)), \
                                                     $9::double precision) \
                                     ELSE bucket.blocked_until END AS blocked_until, \
                                CASE WHEN $9::double precision IS NOT NULL \
                                          AND greatest(refilled.tokens - 1, 0) < 1 \
                                          AND bucket.blocked_until <= $1 \
                                     THEN least(refilled.lockouts::bigint + 1, 2147483647) \
                                          ::integer \
                                     ELSE refilled.lockouts END AS lockouts \
                         FROM (",
                refilled_bucket!(),
                ") AS refilled) AS taken)"
            ))
            .await?;
        let mut digests: Vec<&[u8]> = Vec::with_capacity(takes.len());
        let mut capacities = Vec::with_capacity(takes.len());
        let mut seconds_per_token = Vec::with_capacity(takes.len());
        let mut tokens = Vec::with_capacity(takes.len());
        let mut blocked_until = Vec::with_capacity(takes.len());
        let mut lockouts = Vec::with_capacity(takes.len());
        for take in takes {
            let bucket = &take.new_bucket_after_take;
            digests.push(take.digest.as_slice());
            capacities.push(to_sql_count(bucket.capacity));
            seconds_per_token.push(bucket.seconds_per_token);
            tokens.push(bucket.tokens);
            blocked_until.push(bucket.blocked_until);
            lockouts.push(to_sql_count(bucket.lockouts));
        }
        client
            .execute(
                &statement,
                &[
                    &now,
                    &limiter,
                    &digests,
                    &capacities,
                    &seconds_per_token,
                    &tokens,
                    &blocked_until,
                    &lockouts,
                    &lockout_max_delay_seconds,
                ],
            )
            .await?;
        Ok(())
    }

    /// Takes a token from one bucket if it holds one after its refill to `now`, checking and
    /// taking in one statement, so that concurrent requests on any nodes cannot all pass on
    /// the last token. A bucket not kept is written as `new_bucket_after_take`. A refusal
    /// reads the bucket again to say how long to wait (a second round trip, on refusals
    /// alone).
    pub async fn take_if_available(
        &self,
        limiter: &str,
        digest: &[u8; 32],
        new_bucket_after_take: &SharedBucket,
        now: f64,
    ) -> Result<ConditionalTake, StoreError> {
        let client = self.store.connection().await?;
        let statement = client
            .prepare_cached(concat!(
                "INSERT INTO throttle_buckets AS bucket (limiter, digest, capacity, \
                 seconds_per_token, tokens, updated, blocked_until, lockouts, idle_at) \
                 VALUES ($2::text, $3::bytea, $4::integer, $5::double precision, \
                         $6::double precision, $1::double precision, $7::double precision, \
                         $8::integer, greatest($1 + ($4 - $6) * $5, $7)) \
                 ON CONFLICT (limiter, digest) DO UPDATE SET \
                 (tokens, updated, lockouts, idle_at) = ( \
                   SELECT refilled.tokens - 1, refilled.updated, refilled.lockouts, \
                          greatest(refilled.updated + (bucket.capacity - (refilled.tokens - 1)) \
                                   * bucket.seconds_per_token, bucket.blocked_until) \
                   FROM (",
                refilled_bucket!(),
                ") AS refilled) \
                 WHERE least(bucket.tokens + greatest($1 - bucket.updated, 0) \
                             / bucket.seconds_per_token, bucket.capacity) >= 1 \
                 RETURNING 1"
            ))
            .await?;
        let taken = client
            .query_opt(
                &statement,
                &[
                    &now,
                    &limiter,
                    &digest.as_slice(),
                    &to_sql_count(new_bucket_after_take.capacity),
                    &new_bucket_after_take.seconds_per_token,
                    &new_bucket_after_take.tokens,
                    &new_bucket_after_take.blocked_until,
                    &to_sql_count(new_bucket_after_take.lockouts),
                ],
            )
            .await?
            .is_some();
        if taken {
            return Ok(ConditionalTake::Taken);
        }
        drop(client);
        let bucket = self
            .read_buckets(limiter, &[*digest])
            .await?
            .into_iter()
            .next()
            .map(|(_, bucket)| bucket);
        Ok(ConditionalTake::Refused(bucket))
    }

    /// Forgets one bucket (a success clears its (account, network) history).
    pub async fn forget_bucket(&self, limiter: &str, digest: &[u8; 32]) -> Result<(), StoreError> {
        let client = self.store.connection().await?;
        let statement = client
            .prepare_cached("DELETE FROM throttle_buckets WHERE limiter = $1 AND digest = $2")
            .await?;
        client
            .execute(&statement, &[&limiter, &digest.as_slice()])
            .await?;
        Ok(())
    }

    /// Deletes up to `batch` buckets that hold nothing back at `now` (full and unblocked: as
    /// if never drained); when fewer than `batch` were, and a limiter keeps more than
    /// `max_buckets_per_limiter`, also deletes its buckets that hold back least (the soonest
    /// idle), up to `batch` in all, as a full in-memory table forgets them. Returns how many
    /// went: the maintenance pass calls again while a whole batch goes. A bucket a request
    /// holds locked is skipped (`SKIP LOCKED`), so the purge never waits on a request nor
    /// locks rows in an order that could deadlock with one.
    pub async fn purge_idle_buckets(
        &self,
        now: f64,
        max_buckets_per_limiter: u64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let client = self.store.connection().await?;
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let statement = client
            .prepare_cached(
                "DELETE FROM throttle_buckets WHERE (limiter, digest) IN \
                 (SELECT limiter, digest FROM throttle_buckets WHERE idle_at <= $1 LIMIT $2 \
                  FOR UPDATE SKIP LOCKED)",
            )
            .await?;
        let mut purged = client.execute(&statement, &[&now, &batch]).await?;
        let max_buckets = unsigned_to_sql(max_buckets_per_limiter, "throttle bucket cap")?;
        let crowded = client
            .prepare_cached(
                "SELECT limiter, count(*) - $1 FROM throttle_buckets GROUP BY limiter \
                 HAVING count(*) > $1",
            )
            .await?;
        let forget_least_held = client
            .prepare_cached(
                "DELETE FROM throttle_buckets WHERE limiter = $1 AND digest IN \
                 (SELECT digest FROM throttle_buckets WHERE limiter = $1 \
                  ORDER BY idle_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .await?;
        if purged < batch.unsigned_abs() {
            for row in client.query(&crowded, &[&max_buckets]).await? {
                let limiter: &str = row.try_get(0)?;
                let excess: i64 = row.try_get(1)?;
                let room_left = batch.saturating_sub(i64::try_from(purged).unwrap_or(i64::MAX));
                if room_left <= 0 {
                    break;
                }
                purged += client
                    .execute(&forget_least_held, &[&limiter, &excess.min(room_left)])
                    .await?;
            }
        }
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }
}

/// A capacity or lockout count as the `integer` column holds it: a configured ceiling past
/// `i32::MAX` is kept as `i32::MAX` (two billion failures is no ceiling either way), not
/// refused, so that such a setting throttles here as it does in memory.
fn to_sql_count(count: u32) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn from_sql_count(count: i32) -> Result<u32, StoreError> {
    u32::try_from(count).map_err(|_| StoreError::CorruptRecord("throttle bucket"))
}

/// The shared counters on a fresh database of the test server, for the rate limiters' own
/// tests.
#[cfg(test)]
pub async fn shared_counters_on_a_fresh_database() -> SharedCounters {
    super::test_support::fresh_store().await.shared_counters()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::test_support::fresh_store;

    const NOW: f64 = 1_750_000_000.25;

    /// A bucket of `capacity` over a minute, full less one token, as a first take leaves it.
    fn after_first_take(capacity: u32) -> SharedBucket {
        SharedBucket {
            capacity,
            seconds_per_token: 60.0 / f64::from(capacity),
            tokens: f64::from(capacity) - 1.0,
            updated: NOW,
            blocked_until: 0.0,
            lockouts: 0,
        }
    }

    fn take(digest_byte: u8, capacity: u32) -> BucketTake {
        BucketTake {
            digest: [digest_byte; 32],
            new_bucket_after_take: after_first_take(capacity),
        }
    }

    async fn bucket(counters: &SharedCounters, limiter: &str, digest_byte: u8) -> SharedBucket {
        let read = counters
            .read_buckets(limiter, &[[digest_byte; 32]])
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{read:?}");
        read[0].1
    }

    #[tokio::test]
    async fn takes_drain_refill_and_lock_out_with_a_doubling_wait() {
        let counters = fresh_store().await.shared_counters();
        let takes = [take(1, 5), take(2, 20)];
        for _ in 0..4 {
            counters
                .take_from_buckets("password", &takes, NOW, Some(900.0))
                .await
                .unwrap();
        }
        let five = bucket(&counters, "password", 1).await;
        assert_eq!(five.tokens, 1.0);
        assert_eq!(five.blocked_until, 0.0);
        assert_eq!(bucket(&counters, "password", 2).await.tokens, 16.0);
        // The fifth take empties the small bucket: blocked for a token's time (12 s).
        counters
            .take_from_buckets("password", &takes, NOW, Some(900.0))
            .await
            .unwrap();
        let five = bucket(&counters, "password", 1).await;
        assert_eq!((five.tokens, five.lockouts), (0.0, 1));
        assert_eq!(five.blocked_until, NOW + 12.0);
        // 20 s later it has refilled 5/3 of a token; a take leaves 2/3 and locks out again,
        // for twice as long.
        counters
            .take_from_buckets("password", &takes, NOW + 20.0, Some(900.0))
            .await
            .unwrap();
        let five = bucket(&counters, "password", 1).await;
        assert!((five.tokens - 2.0 / 3.0).abs() < 1e-9, "{five:?}");
        assert_eq!((five.updated, five.lockouts), (NOW + 20.0, 2));
        assert_eq!(five.blocked_until, NOW + 20.0 + 24.0);
        // Without a lockout (a failure limit), a drained bucket only runs dry.
        for _ in 0..3 {
            counters
                .take_from_buckets("failures", &[take(1, 2)], NOW, None)
                .await
                .unwrap();
        }
        let failures = bucket(&counters, "failures", 1).await;
        assert_eq!((failures.tokens, failures.blocked_until), (0.0, 0.0));
        // Limiters do not share buckets.
        assert_eq!(bucket(&counters, "password", 1).await.capacity, 5);
    }

    #[tokio::test]
    async fn a_conditional_take_refuses_the_last_token_to_every_concurrent_request_but_one() {
        let counters = fresh_store().await.shared_counters();
        let new_bucket = after_first_take(10);
        let attempts: Vec<_> = (0..30)
            .map(|_| {
                let counters = counters.clone();
                tokio::spawn(async move {
                    counters
                        .take_if_available("starts", &[7; 32], &new_bucket, NOW)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut taken = 0;
        for attempt in attempts {
            taken += usize::from(attempt.await.unwrap() == ConditionalTake::Taken);
        }
        assert_eq!(taken, 10);
        let refused = counters
            .take_if_available("starts", &[7; 32], &new_bucket, NOW + 1.0)
            .await
            .unwrap();
        let ConditionalTake::Refused(Some(bucket)) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!((bucket.tokens, bucket.updated), (0.0, NOW));
        // A token's time later (6 s), one more goes through.
        assert_eq!(
            counters
                .take_if_available("starts", &[7; 32], &new_bucket, NOW + 6.0)
                .await
                .unwrap(),
            ConditionalTake::Taken
        );
    }

    #[tokio::test]
    async fn concurrent_takes_from_many_connections_lose_no_update() {
        let counters = fresh_store().await.shared_counters();
        let takes = [take(1, 100), take(2, 100), take(3, 100)];
        let attempts: Vec<_> = (0..40)
            .map(|_| {
                let counters = counters.clone();
                tokio::spawn(async move {
                    counters
                        .take_from_buckets("password", &takes, NOW, Some(900.0))
                        .await
                        .unwrap();
                })
            })
            .collect();
        for attempt in attempts {
            attempt.await.unwrap();
        }
        for digest_byte in 1..=3 {
            assert_eq!(
                bucket(&counters, "password", digest_byte).await.tokens,
                60.0
            );
        }
    }

    #[tokio::test]
    async fn forgetting_a_bucket_and_purging_idle_ones_keeps_those_that_hold_back() {
        let counters = fresh_store().await.shared_counters();
        // Bucket 1 is drained and locked out; bucket 2 has lost one token (idle 12 s later).
        for _ in 0..5 {
            counters
                .take_from_buckets("password", &[take(1, 5)], NOW, Some(900.0))
                .await
                .unwrap();
        }
        counters
            .take_from_buckets("password", &[take(2, 5)], NOW, Some(900.0))
            .await
            .unwrap();
        counters
            .take_from_buckets("password", &[take(3, 5)], NOW, Some(900.0))
            .await
            .unwrap();
        counters.forget_bucket("password", &[3; 32]).await.unwrap();
        assert!(
            counters
                .read_buckets("password", &[[3; 32]])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            counters
                .purge_idle_buckets(NOW + 11.0, 1000, 100)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            counters
                .purge_idle_buckets(NOW + 12.0, 1000, 100)
                .await
                .unwrap(),
            1
        );
        let kept = counters
            .read_buckets("password", &[[1; 32], [2; 32]])
            .await
            .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, [1; 32]);
    }

    #[tokio::test]
    async fn past_its_cap_a_limiter_forgets_the_buckets_that_hold_back_least() {
        let counters = fresh_store().await.shared_counters();
        // Bucket 9 is locked out; 1 to 8 have lost one token each, at later and later times.
        for _ in 0..5 {
            counters
                .take_from_buckets("password", &[take(9, 5)], NOW, Some(900.0))
                .await
                .unwrap();
        }
        for digest_byte in 1..=8_u8 {
            counters
                .take_from_buckets(
                    "password",
                    &[take(digest_byte, 5)],
                    NOW + f64::from(digest_byte),
                    Some(900.0),
                )
                .await
                .unwrap();
        }
        counters
            .take_from_buckets("requests", &[take(1, 5)], NOW, Some(900.0))
            .await
            .unwrap();
        // Nothing is idle yet; three of the nine go, by a batch of two then one more.
        assert_eq!(counters.purge_idle_buckets(NOW, 6, 2).await.unwrap(), 2);
        assert_eq!(counters.purge_idle_buckets(NOW, 6, 2).await.unwrap(), 1);
        assert_eq!(counters.purge_idle_buckets(NOW, 6, 2).await.unwrap(), 0);
        let all: Vec<[u8; 32]> = (1..=9_u8).map(|byte| [byte; 32]).collect();
        let mut kept: Vec<u8> = counters
            .read_buckets("password", &all)
            .await
            .unwrap()
            .iter()
            .map(|(digest, _)| digest[0])
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![4, 5, 6, 7, 8, 9]);
        assert_eq!(
            counters
                .read_buckets("requests", &[[1; 32]])
                .await
                .unwrap()
                .len(),
            1,
            "another limiter's buckets count against its own cap"
        );
    }
}
