//! An OIDC provider's signing keys: a JWKS document read into the keys this server accepts
//! (the one list of algorithms per key type; never HMAC, never `none`), and `JwksCache`, the
//! fetched key set with its refresh floor. Fetching is `provider.rs`'s job; this file decides
//! when a fetch is due and what a failed one leaves in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::auth::AuthError;
use crate::auth::oauth::lock;
use crate::model::clock::Clock;

/// A cached JWKS older than this is fetched again before use (keys get revoked, too).
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

// What each key type verifies: together, every algorithm an ID token may use. HMAC would make
// a public key a shared secret, and `none` is no signature: neither is here.
const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const P256_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256];
const P384_ALGORITHMS: &[Algorithm] = &[Algorithm::ES384];
const ED25519_ALGORITHMS: &[Algorithm] = &[Algorithm::EdDSA];

/// Whether an ID token may name this algorithm: one that some accepted key type verifies.
pub fn is_accepted_algorithm(algorithm: Algorithm) -> bool {
    [
        RSA_ALGORITHMS,
        P256_ALGORITHMS,
        P384_ALGORITHMS,
        ED25519_ALGORITHMS,
    ]
    .iter()
    .any(|algorithms| algorithms.contains(&algorithm))
}

/// The usable signing keys of one JWKS document.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

pub struct VerificationKey {
    key_id: Option<String>,
    /// The algorithms this key verifies: the one its JWK names, else those of its type.
    algorithms: Vec<Algorithm>,
    pub decoding_key: DecodingKey,
}

#[derive(Debug)]
pub enum KeySelection<'a> {
    Found(&'a VerificationKey),
    /// The `kid` is known, but its key does not name the token's algorithm.
    WrongAlgorithm,
    Unknown,
}

/// Why a JWKS document gives no key set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("a JWKS needs a \"keys\" array")]
    NoKeysArray,
    #[error("the JWKS holds no usable signing key")]
    NoUsableKey,
}

/// Why a `jwks_file` gives no key set.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("jwks_file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jwks_file {}: not JSON: {source}", .path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("jwks_file {}: {source}", .path.display())]
    Unusable { path: PathBuf, source: JwksError },
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("VerificationKey")
            .field("key_id", &self.key_id)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fetched_at = lock(&self.cache).as_ref().map(|cached| cached.fetched_at);
        formatter
            .debug_struct("JwksCache")
            .field("fetched_at", &fetched_at)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    pub fn select(&self, key_id: Option<&str>, algorithm: Algorithm) -> KeySelection<'_> {
        match key_id {
            Some(key_id) => {
                match self
                    .keys
                    .iter()
                    .find(|key| key.key_id.as_deref() == Some(key_id))
                {
                    Some(key) if key.algorithms.contains(&algorithm) => KeySelection::Found(key),
                    Some(_) => KeySelection::WrongAlgorithm,
                    None => KeySelection::Unknown,
                }
            }
            // Without a `kid`, only a key set with exactly one key for the algorithm will do.
            None => {
                let mut candidates = self
                    .keys
                    .iter()
                    .filter(|key| key.algorithms.contains(&algorithm));
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => KeySelection::Found(key),
                    (Some(_), Some(_)) => KeySelection::WrongAlgorithm,
                    (None, _) => KeySelection::Unknown,
                }
            }
        }
    }

    fn knows(&self, key_id: Option<&str>, algorithm: Algorithm) -> bool {
        !matches!(self.select(key_id, algorithm), KeySelection::Unknown)
    }
}

/// Reads a `jwks_file`: once, when the providers are built.
pub fn read_key_file(path: &Path) -> Result<KeySet, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let document: Value = serde_json::from_str(&text).map_err(|source| KeyFileError::NotJson {
        path: path.to_owned(),
        source,
    })?;
    key_set_from_document(&document).map_err(|source| KeyFileError::Unusable {
        path: path.to_owned(),
        source,
    })
}

/// The usable signing keys of a JWKS document; a key this server cannot use is skipped.
pub fn key_set_from_document(document: &Value) -> Result<KeySet, JwksError> {
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NoKeysArray)?;
    let keys: Vec<VerificationKey> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter_map(|jwk| verification_key(&jwk))
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(KeySet { keys })
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let allowed_by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS,
        AlgorithmParameters::EllipticCurve(parameters) => match parameters.curve {
            EllipticCurve::P256 => P256_ALGORITHMS,
            EllipticCurve::P384 => P384_ALGORITHMS,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(parameters) => match parameters.curve {
            EllipticCurve::Ed25519 => ED25519_ALGORITHMS,
            _ => return None,
        },
        // Symmetric ("oct") keys and unknown types never verify an ID token here.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(named) => {
            let algorithm = Algorithm::try_from(named).ok()?;
            if !allowed_by_type.contains(&algorithm) {
                return None;
            }
            vec![algorithm]
        }
        None => allowed_by_type.to_vec(),
    };
    Some(VerificationKey {
        key_id: jwk.common.key_id.clone(),
        algorithms,
        decoding_key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

/// One provider's fetched key set: kept an hour, fetched again sooner for an unknown `kid`
/// but never more often than the refresh floor, one fetch at a time.
#[derive(Default)]
pub struct JwksCache {
    cache: Mutex<Option<CachedKeys>>,
    /// When the last fetch failed: requests that waited for that fetch fail with it.
    last_failure: Mutex<Option<Instant>>,
    /// One fetch at a time per provider; the others wait for it and use its keys.
    refresh_gate: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct CachedKeys {
    keys: Arc<KeySet>,
    /// On the app's clock (`Clock::since_start`), for the age and the refresh floor.
    fetched_at: Duration,
}

impl JwksCache {
    /// The key set to check a token against: the cached one, fetched first (by `fetch`) when
    /// there is none or it is old, and fetched again when it lacks the token's `kid` and the
    /// last fetch is older than `refresh_floor`.
    pub async fn keys_for<Fetch>(
        &self,
        key_id: Option<&str>,
        algorithm: Algorithm,
        refresh_floor: Duration,
        clock: &Clock,
        fetch: impl FnOnce() -> Fetch,
    ) -> Result<Arc<KeySet>, AuthError>
    where
        Fetch: Future<Output = Result<KeySet, AuthError>>,
    {
        let cached = lock(&self.cache).clone();
        if let Some(cached) = &cached {
            let age = clock.since_start().saturating_sub(cached.fetched_at);
            let fresh = age < JWKS_MAX_AGE;
            if fresh && cached.keys.knows(key_id, algorithm) {
                return Ok(Arc::clone(&cached.keys));
            }
            if fresh && age < refresh_floor {
                return Ok(Arc::clone(&cached.keys));
            }
        }
        // Real time, not the clock's: this orders this request against the fetches of others.
        let waiting_since = Instant::now();
        let _gate = self.refresh_gate.lock().await;
        // Another request may have fetched while this one waited: use its keys, or its
        // failure, rather than asking a slow provider again.
        if let Some(latest) = lock(&self.cache).clone()
            && cached
                .as_ref()
                .is_none_or(|cached| !Arc::ptr_eq(&latest.keys, &cached.keys))
        {
            return Ok(latest.keys);
        }
        if lock(&self.last_failure).is_some_and(|failed_at| failed_at >= waiting_since) {
            return Err(AuthError::ProviderUnreachable);
        }
        let fetched = fetch().await;
        if fetched.is_err() {
            *lock(&self.last_failure) = Some(Instant::now());
        }
        match fetched {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *lock(&self.cache) = Some(CachedKeys {
                    keys: Arc::clone(&keys),
                    fetched_at: clock.since_start(),
                });
                Ok(keys)
            }
            // A provider that is down does not invalidate keys it published an hour ago.
            Err(error) => match cached {
                Some(cached) if cached.keys.knows(key_id, algorithm) => Ok(cached.keys),
                _ => Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwk_verifies_only_the_algorithm_it_names_or_its_type_allows() {
        let document = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "named", "alg": "EdDSA", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = key_set_from_document(&document).unwrap();
        assert_eq!(keys.keys.len(), 2);
        assert!(matches!(
            keys.select(Some("ed"), Algorithm::EdDSA),
            KeySelection::Found(_)
        ));
        assert!(matches!(
            keys.select(Some("ed"), Algorithm::RS256),
            KeySelection::WrongAlgorithm
        ));
        assert!(matches!(
            keys.select(Some("secret"), Algorithm::HS256),
            KeySelection::Unknown
        ));
        assert!(matches!(
            keys.select(None, Algorithm::EdDSA),
            KeySelection::WrongAlgorithm
        ));
        assert!(key_set_from_document(&serde_json::json!({"keys": []})).is_err());
    }

    #[test]
    fn only_public_key_algorithms_are_accepted() {
        for accepted in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            assert!(is_accepted_algorithm(accepted), "{accepted:?}");
        }
        for refused in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(!is_accepted_algorithm(refused), "{refused:?}");
        }
    }
}
