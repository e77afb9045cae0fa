//! `App`: the one shared state (config, store, clock, hashers, keys, caches), built once in
//! `cli::serve` (or a test) and passed down by `Arc`, and the start of its background tasks.
//! There are no globals.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::after_answer::AfterAnswer;
use crate::auth::maintenance;
use crate::auth::oauth::browser as browser_oauth;
use crate::auth::oauth::provider::OAuthProviders;
use crate::auth::passkeys;
use crate::auth::password::{HashCost, Hashers, PasswordError};
use crate::auth::rate_limit::{CounterHome, PerKeyLimit, PerKeyLimiter, Throttle, ThrottleLimits};
use crate::auth::sign_in_counts::SignInCounts;
use crate::auth::signed_token::{KeyRing, VerifiedTokenCache};
use crate::auth::signing_keys::{self, KeyRotation, SigningKeyError, SigningKeySchedule};
use crate::config::{Config, ConfigError};
use crate::mail::DeliveryCounts;
use crate::model::clock::Clock;
use crate::store::{KeyRevocation, Store};
use crate::webauthn::{RelyingParty, RelyingPartyUnavailable};

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    /// What time it is, for every rule that reads it: the system clock, or a test's
    /// `ManualClock`.
    pub clock: Clock,
    pub hashers: Hashers,
    /// Replaced whole on key rotation; readers clone the `Arc` and let go of the lock.
    key_ring: RwLock<Arc<KeyRing>>,
    /// When the ring was last read from the store (the start of that read, in real time),
    /// behind the lock every reload holds: reloads run one at a time, and a reload for an
    /// unknown key id that one begun since then answers is not repeated.
    key_ring_reloads: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// Reloads of the ring so far, for the tests.
    key_ring_reload_count: AtomicU64,
    pub token_cache: VerifiedTokenCache,
    /// Sign-in outcomes by method, for the metrics.
    pub sign_in_counts: SignInCounts,
    /// Mail delivery attempts by outcome, for the metrics.
    pub mail_deliveries: DeliveryCounts,
    /// The brute-force buckets of password and second-factor checks. Like every limiter
    /// here, in this process's memory on redb, in the database on PostgreSQL (shared by
    /// every node: `CounterHome`).
    pub throttle: Throttle,
    /// Limits sign-up, resend and reset requests per address and client network, and
    /// reset confirmations per client network.
    pub request_limiter: Throttle,
    /// Limits sub-user creation (`POST /user`) per caller.
    pub sub_user_limiter: PerKeyLimiter,
    /// Wrong second factors per account (normalized email), over an hour.
    pub second_factor_failure_limiter: PerKeyLimiter,
    /// The passkey relying party, built from `public_url`; without a usable one, why not
    /// (every passkey endpoint answers 409 with it).
    pub passkeys: Result<RelyingParty, RelyingPartyUnavailable>,
    /// Limits started passkey ceremonies per client network.
    pub passkey_ceremony_limiter: PerKeyLimiter,
    /// Limits started browser OAuth sign-ins per client network: each keeps a row of the
    /// shared, capped table of states for ten minutes.
    pub oauth_browser_start_limiter: PerKeyLimiter,
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
    /// Wakes the mail worker when a request has queued mail, so that it need not wait for
    /// its next poll.
    mail_queued: tokio::sync::Notify,
    draining: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    SigningKeys(#[from] SigningKeyError),
    #[error("password hashers: {0}")]
    Hashers(#[from] PasswordError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
}

impl App {
    /// Loads the signing keys (making the first one on a new store) and starts the hashers,
    /// on the system clock.
    pub async fn new(config: Config, store: Store) -> Result<App, StartError> {
        App::with_clock(config, store, Clock::system()).await
    }

    /// `App::new` reading the time from `clock` (a test's `ManualClock`).
    pub async fn with_clock(config: Config, store: Store, clock: Clock) -> Result<App, StartError> {
        let OutgoingCalls { http_client, oauth } = OutgoingCalls::build(&config)?;
        let key_ring =
            signing_keys::load_key_ring_making_the_first_key(&store, clock.now_unix_seconds())
                .await?;
        let hashers = Hashers::start(
            password_cost(&config),
            config.password.effective_hasher_threads(),
            config.password.queue_capacity,
            match config.password.buffer_release_after_idle_seconds {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            config.password.hasher_niceness,
        )?;
        let counter_home = CounterHome::for_store(&store);
        let throttling = config.throttle.enabled;
        Ok(App {
            issuer: token_issuer(&config, &store),
            token_cache: VerifiedTokenCache::new(config.auth.verified_token_cache_entries)
                .counting_lookups(config.metrics.listen.is_some()),
            throttle: Throttle::new(
                "password",
                throttling.then_some(ThrottleLimits {
                    failures_per_account_network: config.throttle.failures_per_account_network,
                    failures_per_account: config.throttle.failures_per_account,
                    failures_per_network: config.throttle.failures_per_network,
                    max_delay_seconds: config.throttle.max_delay_seconds,
                }),
                &counter_home,
                clock.clone(),
            ),
            request_limiter: Throttle::new(
                "requests",
                throttling.then_some(ThrottleLimits {
                    failures_per_account_network: config.signup.requests_per_address_network,
                    failures_per_account: config.signup.requests_per_address,
                    failures_per_network: config.signup.requests_per_network,
                    max_delay_seconds: config.throttle.max_delay_seconds,
                }),
                &counter_home,
                clock.clone(),
            ),
            sub_user_limiter: PerKeyLimiter::new(
                "sub_users",
                throttling.then_some(PerKeyLimit {
                    requests: config.throttle.sub_users_per_caller_per_hour,
                    window_seconds: 3600,
                }),
                &counter_home,
                clock.clone(),
            ),
            second_factor_failure_limiter: PerKeyLimiter::new(
                "second_factor_failures",
                throttling.then_some(PerKeyLimit {
                    requests: config.throttle.second_factor_failures_per_account_per_hour,
                    window_seconds: 3600,
                }),
                &counter_home,
                clock.clone(),
            ),
            passkeys: RelyingParty::for_public_url(
                config.server.public_url.as_ref(),
                &config.pages.title,
            ),
            passkey_ceremony_limiter: PerKeyLimiter::new(
                "passkey_ceremonies",
                throttling.then_some(passkeys::CEREMONIES_PER_NETWORK),
                &counter_home,
                clock.clone(),
            ),
            oauth_browser_start_limiter: PerKeyLimiter::new(
                "oauth_browser_starts",
                throttling.then_some(browser_oauth::STARTS_PER_NETWORK),
                &counter_home,
                clock.clone(),
            ),
            after_answer: AfterAnswer::new(),
            sign_in_counts: SignInCounts::default(),
            mail_deliveries: DeliveryCounts::default(),
            key_ring: RwLock::new(Arc::new(key_ring)),
            key_ring_reloads: tokio::sync::Mutex::new(None),
            key_ring_reload_count: AtomicU64::new(0),
            hashers,
            store,
            clock,
            http_client,
            oauth,
            config,
            mail_queued: tokio::sync::Notify::new(),
            draining: AtomicBool::new(false),
        })
    }

    pub fn key_ring(&self) -> Arc<KeyRing> {
        match self.key_ring.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the signing keys from the store and swaps the ring in. When a key the old
    /// ring held is gone (revoked, here or on another node, or dropped), every cached
    /// verification is forgotten too, so its tokens fail from the next request on.
    pub async fn reload_key_ring(&self) -> Result<(), SigningKeyError> {
        let mut last_reload = self.key_ring_reloads.lock().await;
        self.reload_key_ring_holding(&mut last_reload).await
    }

    /// `reload_key_ring`, under its lock (`last_reload` is what it guards).
    async fn reload_key_ring_holding(
        &self,
        last_reload: &mut Option<tokio::time::Instant>,
    ) -> Result<(), SigningKeyError> {
        let started = tokio::time::Instant::now();
        let key_ring = Arc::new(signing_keys::read_key_ring(&self.store).await?);
        let old_key_ring = match self.key_ring.write() {
            Ok(mut guard) => std::mem::replace(&mut *guard, Arc::clone(&key_ring)),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), Arc::clone(&key_ring)),
        };
        *last_reload = Some(started);
        self.key_ring_reload_count.fetch_add(1, Ordering::Relaxed);
        // After the swap: a verification that began with the old ring carries the old epoch
        // (`VerifiedTokenCache::forget_all`).
        if old_key_ring.lost_keys_in(&key_ring) {
            self.token_cache.forget_all();
        }
        Ok(())
    }

    /// For a token that names a key the ring lacks (another node or the CLI may have just
    /// made it): reloads the ring unless a reload begun since the call already did, waiting
    /// first so that reloads for unknown keys come at most once per
    /// `UNKNOWN_KEY_RELOAD_INTERVAL` (tokens with made-up key ids cannot make every request
    /// read the store; concurrent ones share one reload). Returns whether the ring is now
    /// newer than the token's first check, so that checking it again may succeed. On a
    /// store of its own (redb) this server made every key itself: nothing to reload, and
    /// the token is refused at once.
    pub async fn reload_key_ring_for_unknown_key(&self) -> bool {
        if !self.store.is_shared() {
            return false;
        }
        let seen_at = tokio::time::Instant::now();
        let mut last_reload = self.key_ring_reloads.lock().await;
        if let Some(last) = *last_reload {
            if last >= seen_at {
                return true;
            }
            tokio::time::sleep_until(last + UNKNOWN_KEY_RELOAD_INTERVAL).await;
        }
        match self.reload_key_ring_holding(&mut last_reload).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot reload the signing keys");
                false
            }
        }
    }

    /// How many times the ring has been read from the store since the start.
    pub fn key_ring_reload_count(&self) -> u64 {
        self.key_ring_reload_count.load(Ordering::Relaxed)
    }

    /// `signing_keys::rotate_signing_key` with this server's `[keys] publish_ahead_seconds`,
    /// then swaps the ring in.
    pub async fn rotate_signing_key(&self) -> Result<KeyRotation, SigningKeyError> {
        let rotation = signing_keys::rotate_signing_key(
            &self.store,
            self.config.keys.publish_ahead_seconds,
            self.clock.now_unix_seconds(),
        )
        .await?;
        self.reload_key_ring().await?;
        Ok(rotation)
    }

    /// `signing_keys::revoke_signing_key`, then swaps the ring in, which forgets every cached
    /// verification, so the key's tokens fail from the next request on.
    pub async fn revoke_signing_key(
        &self,
        key_id: &str,
    ) -> Result<Option<KeyRevocation>, SigningKeyError> {
        let revocation =
            signing_keys::revoke_signing_key(&self.store, key_id, self.clock.now_unix_seconds())
                .await?;
        if revocation.is_some() {
            // The key is gone from the store: the reload forgets every cached verification.
            self.reload_key_ring().await?;
        }
        Ok(revocation)
    }

    /// `signing_keys::promote_drop_and_rotate_signing_keys` on this server's schedule, then
    /// swaps the ring in when a key changed. Returns the ids dropped.
    pub async fn maintain_signing_keys(&self) -> Result<Vec<String>, SigningKeyError> {
        let upkeep = signing_keys::promote_drop_and_rotate_signing_keys(
            &self.store,
            SigningKeySchedule::from_config(&self.config),
            self.clock.now_unix_seconds(),
        )
        .await?;
        if upkeep.changed_keys() {
            self.reload_key_ring().await?;
        }
        Ok(upkeep.dropped)
    }

    /// Spawns the work that runs beside the accept loop while this server serves: the
    /// maintenance loop (`auth::maintenance`), the mail worker (`mail::deliver_forever`),
    /// the idle token cache's release and, on a store other nodes share, the ring's reload.
    /// Must run inside the tokio runtime.
    pub fn start_background_tasks(self: &Arc<App>) -> BackgroundTasks {
        BackgroundTasks {
            maintenance: tokio::spawn(maintenance::purge_expired_records_and_rotate_keys_forever(
                Arc::clone(self),
            )),
            mail_delivery: tokio::spawn(crate::mail::deliver_forever(Arc::clone(self))),
            idle_cache_release: tokio::spawn(release_idle_token_cache_forever(Arc::clone(self))),
            key_ring_refresh: tokio::spawn(reload_shared_key_ring_forever(Arc::clone(self))),
        }
    }

    /// Frees the verified-token cache's tables when no token has been checked for `[auth]
    /// verified_token_cache_release_after_idle_seconds` on the app's clock (0: never), and
    /// says whether it freed them. The background task calls it every second.
    pub fn release_idle_token_cache(&self) -> bool {
        match self
            .config
            .auth
            .verified_token_cache_release_after_idle_seconds
        {
            0 => false,
            seconds => self
                .token_cache
                .release_if_idle(self.clock.since_start(), Duration::from_secs(seconds)),
        }
    }

    /// Tells the mail worker that mail may have been queued. A wake-up while it is busy is
    /// kept for its next wait.
    pub fn wake_mail_worker(&self) {
        self.mail_queued.notify_one();
    }

    /// Completes at the next `wake_mail_worker` (or at once for one that came while nobody
    /// waited).
    pub async fn mail_queued(&self) {
        self.mail_queued.notified().await;
    }

    /// The store's figures for the metrics: messages waiting in the mail queue, and the
    /// store's size in bytes (the redb file, or the PostgreSQL database). Each is `None` when it cannot be read.
    pub async fn store_figures(&self) -> StoreFigures {
        StoreFigures {
            queued_mails: self.store.queued_mail_count().await.ok(),
            file_bytes: self.store.size_in_bytes().await.ok(),
        }
    }

    /// Whether the store answers within `STORE_PROBE_LIMIT` (`/health`); a failure is
    /// logged with its cause.
    pub async fn store_is_reachable(&self) -> bool {
        match tokio::time::timeout(STORE_PROBE_LIMIT, self.store.check_reachable()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "health: the store does not answer");
                false
            }
            Err(_) => {
                tracing::warn!(
                    seconds = STORE_PROBE_LIMIT.as_secs(),
                    "health: the store did not answer in time"
                );
                false
            }
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// What `App::store_figures` reads.
#[derive(Clone, Copy, Debug)]
pub struct StoreFigures {
    pub queued_mails: Option<u64>,
    pub file_bytes: Option<u64>,
}

/// The handle on `App::start_background_tasks`'s tasks. They stop (are aborted) when it is
/// stopped or dropped, so a caller cannot leave them running by accident.
#[derive(Debug)]
#[must_use = "the background tasks stop when their handle drops"]
pub struct BackgroundTasks {
    maintenance: tokio::task::JoinHandle<()>,
    mail_delivery: tokio::task::JoinHandle<()>,
    idle_cache_release: tokio::task::JoinHandle<()>,
    key_ring_refresh: tokio::task::JoinHandle<()>,
}

impl BackgroundTasks {
    /// Aborts the tasks. A store write already handed to the blocking pool still finishes.
    pub fn stop(self) {
        drop(self);
    }

    /// Completes when `shutdown` does, stopping the tasks first. Given to `server::run` as its
    /// shutdown, the tasks stop the moment the accept loop does, before the drain.
    pub async fn stop_when(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stop();
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        self.maintenance.abort();
        self.mail_delivery.abort();
        self.idle_cache_release.abort();
        self.key_ring_refresh.abort();
    }
}

/// How often `release_idle_token_cache_forever` looks: the idle spell it waits for is
/// counted to within this.
const IDLE_CACHE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long `/health` waits for the store to answer before it answers 503: less than a
/// load balancer's usual check timeout, so the node is left out rather than timed out.
const STORE_PROBE_LIMIT: Duration = Duration::from_secs(2);

/// Until aborted: `App::release_idle_token_cache` every second, so a server left idle after
/// a burst does not keep the burst's verified tokens (BENCHMARKS.md, row e). redb's page
/// cache has no such release (redb 4 empties it only through `&mut Database`): it is sized
/// from the store file instead (`StoreConfig::cache_size_bytes`).
async fn release_idle_token_cache_forever(app: Arc<App>) {
    if app
        .config
        .auth
        .verified_token_cache_release_after_idle_seconds
        == 0
        || app.config.auth.verified_token_cache_entries == 0
    {
        return;
    }
    let mut checks = tokio::time::interval(IDLE_CACHE_CHECK_INTERVAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        checks.tick().await;
        if app.release_idle_token_cache() {
            tracing::debug!("freed the idle verified-token cache");
        }
    }
}

/// At most one reload of the ring a second for tokens naming unknown keys.
const UNKNOWN_KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How often a node on a shared store reads the signing keys again: a key made on another
/// node (or by the CLI) signs here within this, and a key revoked there stops verifying
/// here within this. The contract's 10 seconds for a rotation to reach every node's
/// signing allows for a reload that fails once.
pub const SHARED_KEY_RING_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Until aborted, on a store other processes share (`Store::is_shared`): the ring again from
/// the store every `SHARED_KEY_RING_RELOAD_INTERVAL`. On a store of its own a server makes
/// every key change itself and reloads then.
async fn reload_shared_key_ring_forever(app: Arc<App>) {
    if !app.store.is_shared() {
        return;
    }
    let mut reloads = tokio::time::interval(SHARED_KEY_RING_RELOAD_INTERVAL);
    reloads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, and the ring was just read at the start.
    reloads.tick().await;
    loop {
        reloads.tick().await;
        if let Err(error) = app.reload_key_ring().await {
            tracing::warn!(%error, "cannot reload the signing keys");
        }
    }
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
/// (lettre's syntax, known only to `mail`), the providers with their `jwks_file`s and the
/// HTTP client, and the file `[pages] stylesheet` names. `check-config` calls this, and so
/// does every start, before it opens the store; `App::new` builds the same things again
/// and keeps them (the stylesheet is read by `http::Api::new`).
pub fn preflight(config: &Config) -> Result<(), PreflightError> {
    OutgoingCalls::build(config)?;
    if let Some(path) = &config.pages.stylesheet {
        std::fs::metadata(path)
            .map_err(|error| error.to_string())
            .and_then(|metadata| {
                metadata
                    .is_file()
                    .then_some(())
                    .ok_or_else(|| "is not a regular file".to_owned())
            })
            .and_then(|()| {
                std::fs::read(path)
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
            .map_err(|problem| {
                config.refusal(
                    "pages.stylesheet",
                    format!("cannot read {}: {problem}", path.display()),
                )
            })?;
    }
    Ok(())
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
