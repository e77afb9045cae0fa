//! `App`: the one shared state (config, store, hashers, keys, caches), built once in `main`
//! (or a test) and passed down by `Arc`. There are no globals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::after_answer::AfterAnswer;
use crate::auth::oauth::provider::OAuthProviders;
use crate::auth::password::{HashCost, Hashers, PasswordError};
use crate::auth::rate_limit::{PerKeyLimit, PerKeyLimiter, Throttle, ThrottleLimits};
use crate::auth::signed_token::{KeyRing, TokenError, VerifiedTokenCache, generate_signing_key};
use crate::config::{Config, ConfigError};
use crate::model::{SigningKeyStatus, UnixSeconds, now_unix_seconds};
use crate::store::{KeyRevocation, Store, StoreError};

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub hashers: Hashers,
    /// Replaced whole on key rotation; readers clone the `Arc` and let go of the lock.
    key_ring: RwLock<Arc<KeyRing>>,
    pub token_cache: VerifiedTokenCache,
    pub throttle: Throttle,
    /// Limits sign-up, resend and reset requests per address and client network, and
    /// reset confirmations per client network.
    pub request_limiter: Throttle,
    /// Limits sub-user creation (`POST /user`) per caller.
    pub sub_user_limiter: PerKeyLimiter,
    /// The per-address work of reset and resend requests, run after their answer.
    pub after_answer: AfterAnswer,
    /// The tokens' `iss`: `public_url`'s origin, else `urn:latchkey:<store id>`. Never the
    /// listen address, so a new port or machine keeps every token valid.
    pub issuer: String,
    /// The one client for outgoing calls (OAuth providers, the captcha verifier); each call
    /// sets its own timeout.
    pub http_client: reqwest::Client,
    /// The `[[oauth.providers]]`, with their JWKS caches.
    pub oauth: OAuthProviders,
    draining: AtomicBool,
}

/// What a key rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// The new key signs at once (`[keys] publish_ahead_seconds = 0`).
    Active { key_id: String },
    /// The new key is published as `next` and signs from `activates_at`.
    Next {
        key_id: String,
        activates_at: UnixSeconds,
    },
    /// A `next` key was already waiting: nothing was added.
    AlreadyWaiting {
        key_id: String,
        activates_at: UnixSeconds,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] TokenError),
    #[error("password hashers: {0}")]
    Hashers(#[from] PasswordError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
}

impl App {
    /// Loads the signing keys (making the first one on a new store) and starts the hashers.
    pub fn new(config: Config, store: Store) -> Result<App, StartError> {
        let OutgoingCalls { http_client, oauth } = OutgoingCalls::build(&config)?;
        store.promote_due_signing_keys(now_unix_seconds())?;
        let mut stored_keys = store.signing_keys()?;
        if !stored_keys
            .iter()
            .any(|key| key.status == SigningKeyStatus::Active)
        {
            let key = generate_signing_key(now_unix_seconds())?;
            store.insert_active_signing_key(&key)?;
            stored_keys = store.signing_keys()?;
        }
        let key_ring = KeyRing::from_stored(&stored_keys)?;
        let hashers = Hashers::start(
            password_cost(&config),
            config.password.effective_hasher_threads(),
            config.password.queue_capacity,
            match config.password.buffer_release_after_idle_seconds {
                0 => None,
                seconds => Some(std::time::Duration::from_secs(seconds)),
            },
            config.password.hasher_niceness,
        )?;
        Ok(App {
            issuer: token_issuer(&config, &store),
            token_cache: VerifiedTokenCache::new(config.auth.verified_token_cache_entries),
            throttle: Throttle::new(config.throttle.enabled.then_some(ThrottleLimits {
                failures_per_account_network: config.throttle.failures_per_account_network,
                failures_per_account: config.throttle.failures_per_account,
                failures_per_network: config.throttle.failures_per_network,
                max_delay_seconds: config.throttle.max_delay_seconds,
            })),
            request_limiter: Throttle::new(config.throttle.enabled.then_some(ThrottleLimits {
                failures_per_account_network: config.signup.requests_per_address_network,
                failures_per_account: config.signup.requests_per_address,
                failures_per_network: config.signup.requests_per_network,
                max_delay_seconds: config.throttle.max_delay_seconds,
            })),
            sub_user_limiter: PerKeyLimiter::new(config.throttle.enabled.then_some(PerKeyLimit {
                requests: config.throttle.sub_users_per_caller_per_hour,
                window_seconds: 3600,
            })),
            after_answer: AfterAnswer::new(),
            key_ring: RwLock::new(Arc::new(key_ring)),
            hashers,
            store,
            http_client,
            oauth,
            config,
            draining: AtomicBool::new(false),
        })
    }

    pub fn key_ring(&self) -> Arc<KeyRing> {
        match self.key_ring.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the signing keys from the store and swaps the ring in.
    pub fn reload_key_ring(&self) -> Result<(), StartError> {
        let key_ring = Arc::new(KeyRing::from_stored(&self.store.signing_keys()?)?);
        match self.key_ring.write() {
            Ok(mut guard) => *guard = key_ring,
            Err(poisoned) => *poisoned.into_inner() = key_ring,
        }
        Ok(())
    }

    /// Makes a new key (see `rotate_signing_key`) and swaps the ring in.
    pub fn rotate_signing_key(&self) -> Result<KeyRotation, StartError> {
        let rotation = rotate_signing_key(
            &self.store,
            self.config.keys.publish_ahead_seconds,
            now_unix_seconds(),
        )?;
        self.reload_key_ring()?;
        Ok(rotation)
    }

    /// Removes a key at once (see `revoke_signing_key`), swaps the ring in, then forgets
    /// every cached verification, so the key's tokens fail from the next request on.
    pub fn revoke_signing_key(&self, key_id: &str) -> Result<Option<KeyRevocation>, StartError> {
        let revocation = revoke_signing_key(&self.store, key_id, now_unix_seconds())?;
        if revocation.is_some() {
            self.reload_key_ring()?;
            self.token_cache.forget_all();
        }
        Ok(revocation)
    }

    /// Persists the switch to `next` keys whose time has come, drops retired keys that can
    /// no longer have a live token (retired longer ago than the longest token lifetime), and
    /// rotates when `[keys] rotate_every` says it is time (publishing ahead by
    /// `publish_ahead_seconds`, so the new key signs about `rotate_every` after the last).
    /// Returns the ids dropped.
    pub fn maintain_signing_keys(&self) -> Result<Vec<String>, StartError> {
        let now = now_unix_seconds();
        let promoted = self.store.promote_due_signing_keys(now)?;
        let longest_lifetime = self
            .config
            .session
            .long_term_seconds
            .max(self.config.session.short_term_seconds);
        let longest_lifetime = i64::try_from(longest_lifetime).unwrap_or(i64::MAX);
        let mut dropped = Vec::new();
        let stored = self.store.signing_keys()?;
        for key in &stored {
            if let Some(retired_at) = key.retired_at
                && key.status == SigningKeyStatus::Retired
                && retired_at.saturating_add(longest_lifetime) < now
            {
                self.store.delete_signing_key(&key.key_id)?;
                dropped.push(key.key_id.clone());
            }
        }
        let rotate_every = i64::try_from(self.config.keys.rotate_every).unwrap_or(i64::MAX);
        let publish_ahead =
            i64::try_from(self.config.keys.publish_ahead_seconds).unwrap_or(i64::MAX);
        let newest_activation = stored
            .iter()
            .filter(|key| key.status == SigningKeyStatus::Active)
            .map(|key| key.activates_at.unwrap_or(key.created))
            .max();
        let next_waiting = stored
            .iter()
            .any(|key| key.status == SigningKeyStatus::Next);
        let rotation_due = newest_activation.is_some_and(|activated| {
            activated.saturating_add(rotate_every.saturating_sub(publish_ahead)) <= now
        });
        if rotate_every > 0 && !next_waiting && rotation_due {
            self.rotate_signing_key()?;
        } else if promoted || !dropped.is_empty() {
            self.reload_key_ring()?;
        }
        Ok(dropped)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Makes a new signing key. With `publish_ahead_seconds` 0 it signs at once and the old
/// active key retires (it keeps verifying); else it is published as `next` and signs that
/// many seconds later, unless a `next` key is already waiting. The running server's ring is
/// not touched: `App::rotate_signing_key` does that.
pub fn rotate_signing_key(
    store: &Store,
    publish_ahead_seconds: u64,
    now: UnixSeconds,
) -> Result<KeyRotation, StartError> {
    let key = generate_signing_key(now)?;
    if publish_ahead_seconds == 0 {
        store.insert_active_signing_key(&key)?;
        return Ok(KeyRotation::Active { key_id: key.key_id });
    }
    let activates_at = now.saturating_add(i64::try_from(publish_ahead_seconds).unwrap_or(i64::MAX));
    Ok(
        match store.insert_next_signing_key(&key, activates_at, now)? {
            None => KeyRotation::Next {
                key_id: key.key_id,
                activates_at,
            },
            Some(waiting) => KeyRotation::AlreadyWaiting {
                key_id: waiting.key_id,
                activates_at: waiting.activates_at,
            },
        },
    )
}

/// Removes a signing key at once. Revoking the key that signs never leaves none: a `next`
/// key waiting takes over at once, else a fresh key does. `None`: no such key.
pub fn revoke_signing_key(
    store: &Store,
    key_id: &str,
    now: UnixSeconds,
) -> Result<Option<KeyRevocation>, StartError> {
    let replacement = generate_signing_key(now)?;
    Ok(store.revoke_signing_key(key_id, &replacement, now)?)
}

/// `public_url`'s origin when set; else a name fixed when the store was made, which moves
/// with the store (backups and restores included) and not with the listen address.
pub fn token_issuer(config: &Config, store: &Store) -> String {
    match &config.server.public_url {
        Some(public_url) => public_url.to_string(),
        None => format!("urn:latchkey:{}", store.store_id()),
    }
}

pub fn password_cost(config: &Config) -> HashCost {
    HashCost {
        memory_kib: config.password.memory_kib,
        iterations: config.password.iterations,
        parallelism: config.password.parallelism,
    }
}

/// Why the configuration, though it loaded, cannot run: a check that reads a file or needs
/// another layer (`mail`, `auth::oauth`), or a client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Names the key and where it was set, like every refusal of `Config::load`.
    #[error(transparent)]
    Refused(#[from] ConfigError),
    #[error("the HTTP client for OAuth providers and captcha: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// The checks `Config::load` leaves to where their subjects are built: the From header
/// (lettre's syntax, known only to `mail`), and the providers with their `jwks_file`s and
/// the HTTP client. `check-config` calls this, and so does every start, before it opens the
/// store; `App::new` builds the same things again and keeps them.
pub fn preflight(config: &Config) -> Result<(), PreflightError> {
    OutgoingCalls::build(config).map(drop)
}

/// What `App` calls out with.
struct OutgoingCalls {
    http_client: reqwest::Client,
    oauth: OAuthProviders,
}

impl OutgoingCalls {
    fn build(config: &Config) -> Result<OutgoingCalls, PreflightError> {
        if !crate::mail::is_valid_from(&config.email.from) {
            return Err(config
                .refusal(
                    "email.from",
                    "must be an address like \"Name <user@example.com>\"".to_owned(),
                )
                .into());
        }
        // No timeout here: a provider call and a captcha check each set their own. Redirects
        // are not followed, so a request never carries a secret to a place nobody configured.
        let http_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(PreflightError::HttpClient)?;
        let oauth = OAuthProviders::new(&config.oauth, http_client.clone())
            .map_err(|error| config.refusal(&error.key(), error.to_string()))?;
        Ok(OutgoingCalls { http_client, oauth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlagOverrides;

    /// A file that `Config::load` accepts but `preflight` refuses, and the error's text.
    fn preflight_refusal(file_text: &str) -> (String, std::path::PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("latchkey.toml");
        std::fs::write(&path, file_text).unwrap();
        let config = Config::load(Some(&path), Vec::new(), &FlagOverrides::default()).unwrap();
        (preflight(&config).unwrap_err().to_string(), path)
    }

    #[test]
    fn preflight_names_the_key_and_where_it_was_set() {
        let (error, path) = preflight_refusal("[email]\n\nfrom = \"not an address\"\n");
        assert_eq!(
            error,
            format!(
                "email.from (config file {}, line 3): must be an address like \
                 \"Name <user@example.com>\"",
                path.display()
            )
        );
        let (error, path) = preflight_refusal(
            "[[oauth.providers]]\nname = \"files\"\nkind = \"oidc\"\nissuer = \"https://idp.example.com\"\n\
             client_id = \"latchkey\"\njwks_file = \"/nonexistent/jwks.json\"\n",
        );
        assert!(
            error.starts_with(&format!(
                "oauth.providers[0].jwks_file (config file {}, line 6): oauth provider \
                 \"files\": jwks_file /nonexistent/jwks.json: ",
                path.display()
            )),
            "{error}"
        );
        assert!(preflight(&Config::default()).is_ok());
    }
}
