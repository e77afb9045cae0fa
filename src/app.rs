//! `App`: the one shared state (config, store, hashers, keys, caches), built once in `main`
//! (or a test) and passed down by `Arc`. There are no globals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::password::{HashCost, Hashers, PasswordError};
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
    /// The tokens' `iss`: the public URL's origin.
    pub issuer: String,
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
        )?;
        Ok(App {
            issuer: config.public_origin().to_string(),
            token_cache: VerifiedTokenCache::new(config.auth.verified_token_cache_entries),
            key_ring: RwLock::new(Arc::new(key_ring)),
            hashers,
            store,
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
