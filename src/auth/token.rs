//! Signed tokens: PASETO v4.public (Ed25519) through pasetors, the only module that knows it.
//! A token's footer names its key by PASERK id (`{"kid":"k4.pid.…"}`); the key ring holds
//! the active key that signs and the retired keys that still verify. Verified signatures are
//! remembered in a bounded cache whose key is the complete token string, so a hit can never
//! be a token with other bytes; every hit still has its expiry checked by the caller.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use pasetors::Public;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use sha2::{Digest, Sha256};

use crate::model::{PermissionSet, SessionId, UnixSeconds, UserId};
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
pub struct SigningKey {
    pub key_id: String,
    pub public_key_paserk: String,
    pub active: bool,
    pub created: UnixSeconds,
    pub retired_at: Option<UnixSeconds>,
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Every key that can still verify, and the one that signs.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    active_index: usize,
}

/// Makes fresh key material for the store.
pub fn generate_signing_key(now: UnixSeconds) -> Result<StoredSigningKey, TokenError> {
    let pair = AsymmetricKeyPair::<V4>::generate().map_err(|_| TokenError::Signing)?;
    let key_id = paserk_id(&pair.public)?;
    Ok(StoredSigningKey {
        key_id,
        secret_key_bytes: pair.secret.as_bytes().to_vec(),
        active: true,
        created: now,
        retired_at: None,
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
            let secret = AsymmetricSecretKey::<V4>::from(&stored.secret_key_bytes)
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
                active: stored.active,
                created: stored.created,
                retired_at: stored.retired_at,
                secret,
                public,
            });
        }
        let active_index = keys
            .iter()
            .enumerate()
            .filter(|(_, key)| key.active)
            .max_by_key(|(_, key)| key.created)
            .map(|(index, _)| index)
            .ok_or(TokenError::BadStoredKey)?;
        Ok(KeyRing { keys, active_index })
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    pub fn active_key_id(&self) -> &str {
        &self.active_key().key_id
    }

    fn active_key(&self) -> &SigningKey {
        &self.keys[self.active_index]
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
        let footer = serde_json::to_vec(&serde_json::json!({ "kid": self.active_key().key_id }))
            .map_err(|_| TokenError::Signing)?;
        PublicToken::sign(&self.active_key().secret, &message, Some(&footer), None)
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

/// Remembers verified tokens by the SHA-256 of their complete text (signature included), so
/// a token whose claims equal a cached one's but whose signature differs misses. A digest
/// rather than the text keeps an entry near 100 bytes, not 400: the default 100,000 entries
/// fit in about 10 MiB. Bounded: a full shard is emptied.
pub struct VerifiedTokenCache {
    shards: Vec<Mutex<HashMap<[u8; 32], VerifiedToken>>>,
    capacity_per_shard: usize,
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
        }
    }

    fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn shard(&self, digest: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], VerifiedToken>> {
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
            return verify();
        }
        let digest = VerifiedTokenCache::digest(token);
        let shard = self.shard(&digest);
        if let Some(verified) = shard.lock().ok().and_then(|map| map.get(&digest).copied()) {
            return Ok(verified);
        }
        let verified = verify()?;
        if let Ok(mut map) = shard.lock() {
            if map.len() >= self.capacity_per_shard {
                map.clear();
            }
            map.insert(digest, verified);
        }
        Ok(verified)
    }
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
