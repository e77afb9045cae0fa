//! `App`: the one shared state (config, store, hashers, keys, caches), built once in `main`
//! (or a test) and passed down by `Arc`. There are no globals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::after_answer::AfterAnswer;
use crate::auth::password::{HashCost, Hashers, PasswordError};
use crate::auth::throttle::{Throttle, ThrottleLimits};
use crate::auth::token::{KeyRing, TokenError, VerifiedTokenCache, generate_signing_key};
use crate::config::Config;
use crate::model::now_unix_seconds;
use crate::store::{Store, StoreError};

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
    /// The per-address work of reset and resend requests, run after their answer.
    pub after_answer: AfterAnswer,
    /// The tokens' `iss`: the public URL's origin.
    pub issuer: String,
    /// The `[[oauth.providers]]`, with their HTTP client and JWKS caches.
    pub oauth: crate::auth::oauth::OAuthProviders,
    draining: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] TokenError),
    #[error("password hashers: {0}")]
    Hashers(#[from] PasswordError),
    #[error("oauth: {0}")]
    OAuth(String),
}

impl App {
    /// Loads the signing keys (making the first one on a new store) and starts the hashers.
    pub fn new(config: Config, store: Store) -> Result<App, StartError> {
        let mut stored_keys = store.signing_keys()?;
        if !stored_keys.iter().any(|key| key.active) {
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
        )?;
        Ok(App {
            issuer: config.public_origin().to_string(),
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
            after_answer: AfterAnswer::new(),
            key_ring: RwLock::new(Arc::new(key_ring)),
            hashers,
            store,
            oauth: crate::auth::oauth::OAuthProviders::new(&config.oauth)
                .map_err(StartError::OAuth)?,
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

    /// Makes a new active key (the old one retires but keeps verifying) and returns its id.
    pub fn rotate_signing_key(&self) -> Result<String, StartError> {
        let key = generate_signing_key(now_unix_seconds())?;
        self.store.insert_active_signing_key(&key)?;
        self.reload_key_ring()?;
        Ok(key.key_id)
    }

    /// Drops retired keys that can no longer have a live token (retired longer ago than the
    /// longest token lifetime), and rotates when `[keys] rotate_every` says it is time.
    /// Returns the ids dropped.
    pub fn maintain_signing_keys(&self) -> Result<Vec<String>, StartError> {
        let now = now_unix_seconds();
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
                && !key.active
                && retired_at.saturating_add(longest_lifetime) < now
            {
                self.store.delete_signing_key(&key.key_id)?;
                dropped.push(key.key_id.clone());
            }
        }
        let rotate_every = i64::try_from(self.config.keys.rotate_every).unwrap_or(i64::MAX);
        let newest_active = stored
            .iter()
            .filter(|key| key.active)
            .map(|key| key.created)
            .max();
        if rotate_every > 0
            && newest_active.is_some_and(|created| created.saturating_add(rotate_every) <= now)
        {
            self.rotate_signing_key()?;
        } else if !dropped.is_empty() {
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

pub fn password_cost(config: &Config) -> HashCost {
    HashCost {
        memory_kib: config.password.memory_kib,
        iterations: config.password.iterations,
        parallelism: config.password.parallelism,
    }
}
