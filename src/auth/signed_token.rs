//! Signed tokens: PASETO v4.public (Ed25519) through pasetors, the only module that knows it.
//! A token's footer names its key by PASERK id (`{"kid":"k4.pid.…"}`); the key ring holds
//! the active key that signs, the retired keys that still verify, and a `next` key published
//! ahead, which takes over signing at its activation time (the ring decides by the clock, so
//! the switch needs no reload). Verified signatures are
//! remembered in a bounded cache whose key is the complete token string, so a hit can never
//! be a token with other bytes; every hit still has its expiry checked by the caller.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pasetors::Public;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};

use crate::auth::token_hash;
use crate::model::{PermissionSet, Secret, SessionId, SigningKeyStatus, UnixSeconds, UserId};
use crate::rfc3339::{format_rfc3339, parse_rfc3339};
use crate::store::StoredSigningKey;

/// Clock skew tolerated on `nbf` and `iat`.
const CLOCK_SKEW_SECONDS: i64 = 30;
const CACHE_SHARDS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token names no key this server holds")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's claims are invalid")]
    InvalidClaims,
    #[error("a stored signing key is unusable")]
    BadStoredKey,
    #[error("signing failed")]
    Signing,
}

/// What a signed token asserts.
#[derive(Clone, Debug)]
pub struct TokenClaims {
    pub issuer: String,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub permissions: PermissionSet,
    /// Caller-supplied claims of a minted token (never a reserved name).
    pub extra_claims: serde_json::Map<String, serde_json::Value>,
}

/// What verification yields; everything else about the caller comes from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub expires_at: UnixSeconds,
}

/// One key of the ring.
#[derive(Debug)]
pub struct SigningKey {
    pub key_id: String,
    pub public_key_paserk: String,
    /// As stored; `KeyRing::status_at` gives the status at a time.
    pub stored_status: SigningKeyStatus,
    pub created: UnixSeconds,
    pub retired_at: Option<UnixSeconds>,
    /// When it signs from: its creation, unless it was published ahead.
    pub activates_at: UnixSeconds,
    secret: Secret<AsymmetricSecretKey<V4>>,
    public: AsymmetricPublicKey<V4>,
}

/// Every key that can still verify, and the one that signs.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    /// The stored active key that activated last: the signer until a `next` key is due.
    active_index: usize,
}

/// Makes fresh key material for the store.
pub fn generate_signing_key(now: UnixSeconds) -> Result<StoredSigningKey, TokenError> {
    let pair = AsymmetricKeyPair::<V4>::generate().map_err(|_| TokenError::Signing)?;
    let key_id = paserk_id(&pair.public)?;
    Ok(StoredSigningKey {
        key_id,
        secret_key_bytes: Secret::new(pair.secret.as_bytes().to_vec()),
        status: SigningKeyStatus::Active,
        created: now,
        retired_at: None,
        activates_at: None,
    })
}

fn paserk_id(public: &AsymmetricPublicKey<V4>) -> Result<String, TokenError> {
    let mut text = String::new();
    Id::from(public)
        .fmt(&mut text)
        .map_err(|_| TokenError::BadStoredKey)?;
    Ok(text)
}

impl KeyRing {
    pub fn from_stored(stored_keys: &[StoredSigningKey]) -> Result<KeyRing, TokenError> {
        let mut keys = Vec::with_capacity(stored_keys.len());
        for stored in stored_keys {
            let secret = AsymmetricSecretKey::<V4>::from(stored.secret_key_bytes.expose_secret())
                .map_err(|_| TokenError::BadStoredKey)?;
            let public = AsymmetricPublicKey::<V4>::try_from(&secret)
                .map_err(|_| TokenError::BadStoredKey)?;
            let mut public_key_paserk = String::new();
            public
                .fmt(&mut public_key_paserk)
                .map_err(|_| TokenError::BadStoredKey)?;
            let key_id = paserk_id(&public)?;
            if key_id != stored.key_id {
                return Err(TokenError::BadStoredKey);
            }
            keys.push(SigningKey {
                key_id,
                public_key_paserk,
                stored_status: stored.status,
                created: stored.created,
                retired_at: stored.retired_at,
                activates_at: stored.activates_at.unwrap_or(stored.created),
                secret: Secret::new(secret),
                public,
            });
        }
        let active_index = keys
            .iter()
            .enumerate()
            .filter(|(_, key)| key.stored_status == SigningKeyStatus::Active)
            .max_by_key(|(_, key)| (key.activates_at, key.created))
            .map(|(index, _)| index)
            .ok_or(TokenError::BadStoredKey)?;
        Ok(KeyRing { keys, active_index })
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Whether `newer` lacks a key this ring holds (revoked, or dropped): the tokens that
    /// key signed must not verify from cached checks any more.
    pub fn lost_keys_in(&self, newer: &KeyRing) -> bool {
        self.keys.iter().any(|key| {
            !newer
                .keys
                .iter()
                .any(|newer_key| newer_key.key_id == key.key_id)
        })
    }

    /// The id of the key that signs at `now`.
    pub fn active_key_id(&self, now: UnixSeconds) -> &str {
        &self.signing_key_at(now).key_id
    }

    /// The key that signs at `now`: among the active keys and the `next` keys due by then,
    /// the one that activated last (the store's `promote_due_signing_keys` keeps the same
    /// rule, so persisting the switch later changes nothing).
    pub fn signing_key_at(&self, now: UnixSeconds) -> &SigningKey {
        let stored_active = &self.keys[self.active_index];
        self.keys
            .iter()
            .filter(|key| key.stored_status == SigningKeyStatus::Next && key.activates_at <= now)
            .filter(|key| {
                (key.activates_at, key.created)
                    > (stored_active.activates_at, stored_active.created)
            })
            .max_by_key(|key| (key.activates_at, key.created))
            .unwrap_or(stored_active)
    }

    /// The status at `now` of `key` (one of this ring's keys): the signing key is active, a `next` key not yet due is
    /// next, and every other key only verifies (retired).
    pub fn status_at(&self, key: &SigningKey, now: UnixSeconds) -> SigningKeyStatus {
        if std::ptr::eq(key, self.signing_key_at(now)) {
            SigningKeyStatus::Active
        } else if key.stored_status == SigningKeyStatus::Next && key.activates_at > now {
            SigningKeyStatus::Next
        } else {
            SigningKeyStatus::Retired
        }
    }

    /// The `next` key waiting to sign at `now`, if any.
    pub fn waiting_key_at(&self, now: UnixSeconds) -> Option<&SigningKey> {
        self.keys
            .iter()
            .find(|key| self.status_at(key, now) == SigningKeyStatus::Next)
    }

    pub fn sign(&self, claims: &TokenClaims) -> Result<String, TokenError> {
        let mut payload = claims.extra_claims.clone();
        let text = |value: String| serde_json::Value::String(value);
        payload.insert("iss".into(), text(claims.issuer.clone()));
        payload.insert("sub".into(), text(claims.user_id.to_string()));
        payload.insert("sid".into(), text(claims.session_id.to_string()));
        payload.insert("iat".into(), text(format_rfc3339(claims.issued_at)));
        payload.insert("nbf".into(), text(format_rfc3339(claims.issued_at)));
        payload.insert("exp".into(), text(format_rfc3339(claims.expires_at)));
        payload.insert("jti".into(), text(uuid::Uuid::new_v4().to_string()));
        payload.insert(
            "permissions".into(),
            serde_json::Value::Array(
                claims
                    .permissions
                    .names()
                    .into_iter()
                    .map(|name| text(name.to_owned()))
                    .collect(),
            ),
        );
        let message = serde_json::to_vec(&payload).map_err(|_| TokenError::Signing)?;
        let signing_key = self.signing_key_at(claims.issued_at);
        let footer = serde_json::to_vec(&serde_json::json!({ "kid": signing_key.key_id }))
            .map_err(|_| TokenError::Signing)?;
        PublicToken::sign(
            signing_key.secret.expose_secret(),
            &message,
            Some(&footer),
            None,
        )
        .map_err(|_| TokenError::Signing)
    }

    /// Checks the signature and the claims' shape, issuer and `nbf`; not `exp`, which the
    /// caller checks on every use, cached or not.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        now: UnixSeconds,
    ) -> Result<VerifiedToken, TokenError> {
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let footer: serde_json::Value = serde_json::from_slice(untrusted.untrusted_footer())
            .map_err(|_| TokenError::Malformed)?;
        let key_id = footer
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .ok_or(TokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.key_id == key_id)
            .ok_or(TokenError::UnknownKey)?;
        let trusted = PublicToken::verify(&key.public, &untrusted, None, None)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(trusted.payload()).map_err(|_| TokenError::InvalidClaims)?;
        let text_claim = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or(TokenError::InvalidClaims)
        };
        if text_claim("iss")? != issuer {
            return Err(TokenError::InvalidClaims);
        }
        let user_id = text_claim("sub")?
            .parse::<UserId>()
            .map_err(|_| TokenError::InvalidClaims)?;
        let session_id =
            SessionId::parse_canonical(text_claim("sid")?).ok_or(TokenError::InvalidClaims)?;
        let expires_at = parse_rfc3339(text_claim("exp")?).ok_or(TokenError::InvalidClaims)?;
        let not_before = parse_rfc3339(text_claim("nbf")?).ok_or(TokenError::InvalidClaims)?;
        let issued_at = parse_rfc3339(text_claim("iat")?).ok_or(TokenError::InvalidClaims)?;
        if not_before > now + CLOCK_SKEW_SECONDS || issued_at > now + CLOCK_SKEW_SECONDS {
            return Err(TokenError::InvalidClaims);
        }
        Ok(VerifiedToken {
            user_id,
            session_id,
            expires_at,
        })
    }
}

/// Token digest → the verification and the cache epoch it was made in.
type CacheShard = HashMap<[u8; 32], (VerifiedToken, u64)>;

/// Remembers verified tokens by the SHA-256 of their complete text (signature included), so
/// a token whose claims equal a cached one's but whose signature differs misses. A digest
/// rather than the text keeps an entry near 100 bytes, not 400: the default 100,000 entries
/// fit in about 10 MiB. Bounded: a full shard is emptied. Each entry carries the epoch it
/// was verified in; `forget_all` (a key revoked) starts a new epoch, so no entry from
/// before it hits again, not even one a verification still running with the old ring adds.
/// `release_if_idle` frees the tables once no token has been looked up for a while, so an
/// idle server does not keep a burst's working set.
pub struct VerifiedTokenCache {
    shards: Vec<Mutex<CacheShard>>,
    capacity_per_shard: usize,
    epoch: AtomicU64,
    /// Set by every look-up and taken back by `release_if_idle`: a flag rather than a clock
    /// reading keeps the hot path to one shared load.
    used_since_idle_check: AtomicBool,
    /// When (on the app's monotonic clock) `release_if_idle` last saw the flag set, or
    /// first ran.
    last_seen_in_use: Mutex<Option<Duration>>,
    /// `Some` only when something reads them (`counting_lookups`): a write per look-up on
    /// a shared cache line is a cost an install without metrics need not pay.
    counts: Option<LookupCounts>,
}

/// Lookups answered from the cache, and those that had to verify, for the metrics. Aligned
/// to a cache line of its own: every token check writes one, and `epoch` beside it is read
/// by every token check.
#[derive(Debug, Default)]
#[repr(align(128))]
struct LookupCounts {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for VerifiedTokenCache {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("VerifiedTokenCache")
            .field("capacity_per_shard", &self.capacity_per_shard)
            .finish_non_exhaustive()
    }
}

impl VerifiedTokenCache {
    pub fn new(capacity: usize) -> VerifiedTokenCache {
        VerifiedTokenCache {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            capacity_per_shard: capacity.div_ceil(CACHE_SHARDS),
            epoch: AtomicU64::new(0),
            used_since_idle_check: AtomicBool::new(false),
            last_seen_in_use: Mutex::new(None),
            counts: None,
        }
    }

    /// The cache, counting its hits and misses (for the metrics).
    pub fn counting_lookups(mut self, counting: bool) -> VerifiedTokenCache {
        self.counts = counting.then(LookupCounts::default);
        self
    }

    /// Lookups answered from the cache so far (0 unless `counting_lookups`).
    pub fn hits(&self) -> u64 {
        self.counts
            .as_ref()
            .map_or(0, |counts| counts.hits.load(Ordering::Relaxed))
    }

    /// Lookups that verified the token's signature, every one with the cache off (0 unless
    /// `counting_lookups`).
    pub fn misses(&self) -> u64 {
        self.counts
            .as_ref()
            .map_or(0, |counts| counts.misses.load(Ordering::Relaxed))
    }

    fn count_hit(&self) {
        if let Some(counts) = &self.counts {
            counts.hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_miss(&self) {
        if let Some(counts) = &self.counts {
            counts.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frees every shard's table when no token has been looked up for `idle_for` up to
    /// `now` (`Clock::since_start`), and says whether it freed anything. A cleared `HashMap`
    /// keeps its table, so each shard gets a new, unallocated one. Called about once a
    /// second: a look-up between two calls counts as made at the later one.
    pub fn release_if_idle(&self, now: Duration, idle_for: Duration) -> bool {
        let mut last_seen_in_use = self
            .last_seen_in_use
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.used_since_idle_check.swap(false, Ordering::Relaxed) {
            *last_seen_in_use = Some(now);
            return false;
        }
        let last = *last_seen_in_use.get_or_insert(now);
        if now.saturating_sub(last) < idle_for {
            return false;
        }
        let mut released = false;
        for shard in &self.shards {
            let mut map = lock(shard);
            if map.capacity() > 0 {
                *map = HashMap::new();
                released = true;
            }
        }
        released
    }

    /// The entries the shards have room for without growing, all together: 0 once
    /// `release_if_idle` has freed them.
    pub fn allocated_entries(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).capacity()).sum()
    }

    /// Forgets every verification so far. Call after the key ring lost a key: a token of
    /// that key must be checked against the new ring on its next use.
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for shard in &self.shards {
            lock(shard).clear();
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> &Mutex<CacheShard> {
        &self.shards[usize::from(digest[0]) % CACHE_SHARDS]
    }

    /// The cached verification of `token`, or `verify`'s result, remembered when it succeeds.
    /// The token is hashed once for both.
    pub fn get_or_verify<E>(
        &self,
        token: &str,
        verify: impl FnOnce() -> Result<VerifiedToken, E>,
    ) -> Result<VerifiedToken, E> {
        if self.capacity_per_shard == 0 {
            self.count_miss();
            return verify();
        }
        // Read first: while the flag is set, look-ups share the cache line instead of
        // writing it.
        if !self.used_since_idle_check.load(Ordering::Relaxed) {
            self.used_since_idle_check.store(true, Ordering::Relaxed);
        }
        // Read before `verify` takes the ring: a revocation reloads the ring first and then
        // moves the epoch, so an entry made with the old ring carries the old epoch.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let digest = token_hash(token);
        let shard = self.shard(&digest);
        let cached = lock(shard).get(&digest).copied();
        if let Some((verified, _)) = cached.filter(|(_, entry_epoch)| *entry_epoch == epoch) {
            self.count_hit();
            return Ok(verified);
        }
        self.count_miss();
        let verified = verify()?;
        let mut map = lock(shard);
        if map.len() >= self.capacity_per_shard {
            map.clear();
        }
        map.insert(digest, (verified, epoch));
        Ok(verified)
    }
}

/// A shard, even from a poisoned lock (the crate's one policy for std locks): each entry is
/// inserted or cleared in one step, so the map stays valid, and `forget_all` must empty every
/// shard after a revocation, poisoned or not.
fn lock(shard: &Mutex<CacheShard>) -> MutexGuard<'_, CacheShard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: UnixSeconds) -> TokenClaims {
        TokenClaims {
            issuer: "http://127.0.0.1:8080".into(),
            user_id: 7,
            session_id: SessionId::new_random(),
            issued_at: now,
            expires_at: now + 60,
            permissions: PermissionSet::all(),
            extra_claims: serde_json::Map::new(),
        }
    }

    fn footer_key_id(token: &str) -> String {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token).unwrap();
        let footer: serde_json::Value =
            serde_json::from_slice(untrusted.untrusted_footer()).unwrap();
        footer["kid"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_next_key_is_published_first_and_signs_from_its_time_on() {
        let now = 1_800_000_000;
        let active = generate_signing_key(now - 100).unwrap();
        let mut next = generate_signing_key(now).unwrap();
        next.status = SigningKeyStatus::Next;
        next.activates_at = Some(now + 60);
        let ring = KeyRing::from_stored(&[active.clone(), next.clone()]).unwrap();
        let status = |key_id: &str, at| {
            let key = ring.keys().iter().find(|key| key.key_id == key_id).unwrap();
            ring.status_at(key, at)
        };
        assert_eq!(status(&active.key_id, now), SigningKeyStatus::Active);
        assert_eq!(status(&next.key_id, now), SigningKeyStatus::Next);
        assert_eq!(ring.waiting_key_at(now).unwrap().key_id, next.key_id);
        let before = ring.sign(&claims(now + 59)).unwrap();
        assert_eq!(footer_key_id(&before), active.key_id);

        assert_eq!(status(&active.key_id, now + 60), SigningKeyStatus::Retired);
        assert_eq!(status(&next.key_id, now + 60), SigningKeyStatus::Active);
        assert!(ring.waiting_key_at(now + 60).is_none());
        let after = ring.sign(&claims(now + 60)).unwrap();
        assert_eq!(footer_key_id(&after), next.key_id);
        // Both verify throughout: the old key's tokens live on, the new key was published.
        assert!(
            ring.verify(&before, "http://127.0.0.1:8080", now + 60)
                .is_ok()
        );
        assert!(
            ring.verify(&after, "http://127.0.0.1:8080", now + 60)
                .is_ok()
        );
    }

    #[test]
    fn an_idle_cache_frees_its_tables_and_verifies_again() {
        let cache = VerifiedTokenCache::new(64);
        let verified = VerifiedToken {
            user_id: 1,
            session_id: SessionId::new_random(),
            expires_at: 10,
        };
        let idle_for = Duration::from_secs(5);
        let second = Duration::from_secs;
        cache
            .get_or_verify("token", || Ok::<_, TokenError>(verified))
            .unwrap();
        // The look-up counts as made at the first check after it, and keeps the cache
        // until `idle_for` has passed since then.
        assert!(!cache.release_if_idle(second(1), idle_for));
        assert!(!cache.release_if_idle(second(5), idle_for));
        cache
            .get_or_verify("token", || Err(TokenError::UnknownKey))
            .unwrap();
        assert!(!cache.release_if_idle(second(6), idle_for));
        assert!(!cache.release_if_idle(second(10), idle_for));
        assert!(cache.allocated_entries() > 0);
        assert!(cache.release_if_idle(second(11), idle_for));
        assert_eq!(cache.allocated_entries(), 0);
        // Nothing left to free, and the next look-up verifies again.
        assert!(!cache.release_if_idle(second(20), idle_for));
        assert_eq!(
            cache.get_or_verify("token", || Err(TokenError::UnknownKey)),
            Err(TokenError::UnknownKey)
        );
        // A cache never used has nothing to free.
        let unused = VerifiedTokenCache::new(64);
        assert!(!unused.release_if_idle(second(0), idle_for));
        assert!(!unused.release_if_idle(second(100), idle_for));
    }

    #[test]
    fn forgetting_the_cache_makes_every_token_verify_again() {
        let cache = VerifiedTokenCache::new(64);
        let verified = VerifiedToken {
            user_id: 1,
            session_id: SessionId::new_random(),
            expires_at: 10,
        };
        let calls = std::cell::Cell::new(0);
        let verify = || {
            calls.set(calls.get() + 1);
            Ok::<_, TokenError>(verified)
        };
        cache.get_or_verify("token", verify).unwrap();
        cache.get_or_verify("token", verify).unwrap();
        assert_eq!(calls.get(), 1);
        cache.forget_all();
        assert_eq!(
            cache.get_or_verify("token", || Err(TokenError::UnknownKey)),
            Err(TokenError::UnknownKey)
        );
        // An entry added by a verification that began before `forget_all` never hits.
        let stale = VerifiedTokenCache::new(64);
        let result = stale.get_or_verify("racing", || {
            stale.forget_all();
            Ok::<_, TokenError>(verified)
        });
        assert!(result.is_ok());
        assert_eq!(
            stale.get_or_verify("racing", || Err(TokenError::UnknownKey)),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn signed_tokens_verify_with_their_key_only() {
        let now = 1_800_000_000;
        let ring = KeyRing::from_stored(&[generate_signing_key(now).unwrap()]).unwrap();
        let other = KeyRing::from_stored(&[generate_signing_key(now).unwrap()]).unwrap();
        let claims = claims(now);
        let token = ring.sign(&claims).unwrap();
        assert!(token.starts_with("v4.public."));
        let verified = ring.verify(&token, &claims.issuer, now).unwrap();
        assert_eq!(verified.user_id, 7);
        assert_eq!(verified.session_id, claims.session_id);
        assert_eq!(
            other.verify(&token, &claims.issuer, now),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            ring.verify(&token, "https://elsewhere", now),
            Err(TokenError::InvalidClaims)
        );
        let mut tampered = token.clone().into_bytes();
        let index = 20;
        tampered[index] = if tampered[index] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(ring.verify(&tampered, &claims.issuer, now).is_err());
        assert_eq!(
            ring.verify("garbage", &claims.issuer, now),
            Err(TokenError::Malformed)
        );
    }
}
