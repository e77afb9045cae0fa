//! The configuration's sections, one struct per `[section]`, each with the `Default` impl
//! that is its documented defaults, and the checks a section makes of itself alone
//! (`OAuthConfig::check`). `Config::load` layers and validates them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Secret;
use crate::model::net::{IpNetwork, Origin, ProviderUrlError, parse_provider_url};

/// The longest provider name, in characters.
pub const PROVIDER_NAME_MAX_CHARACTERS: usize = 64;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where `serve` listens.
    pub listen: SocketAddr,
    /// The server's own external URL: the tokens' `iss`, the CSRF origin, `Secure` cookies,
    /// the emailed links. Unset: `http://<listen>`, but the tokens' `iss` is then
    /// `urn:latchkey:<store id>`, never the listen address.
    pub public_url: Option<Origin>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNetwork>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            trusted_proxies: Vec::new(),
            shutdown_grace_seconds: 10,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time allowed to receive a request's headers; also bounds keep-alive idle time.
    pub header_read_timeout_seconds: u64,
    /// Time allowed for reading a body and handling a request.
    pub request_timeout_seconds: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest request head (line and headers) accepted.
    pub max_header_bytes: usize,
    /// Origins allowed to call the API from a browser (CORS).
    pub cors_origins: Vec<Origin>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 15,
            max_connections: 10_000,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            cors_origins: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which database holds the store: the embedded redb file (the default) or PostgreSQL.
    pub backend: StoreBackend,
    /// The data directory: `latchkey.redb` lives here (and the admin socket, on either
    /// backend).
    pub data_dir: PathBuf,
    /// redb's page cache in MiB; unset (the default): sized by `cache_size_bytes`.
    pub cache_size_mib: Option<usize>,
    /// With `backend = "postgres"`: the database's URL (`postgres://user:password@host/db`),
    /// a secret since it may carry a password.
    pub postgres_url: Option<Secret<String>>,
    /// With `backend = "postgres"`: the most connections this node holds open.
    pub postgres_pool_size: usize,
}

/// `[store] backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Redb,
    Postgres,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            backend: StoreBackend::Redb,
            data_dir: PathBuf::from("./data"),
            cache_size_mib: None,
            postgres_url: None,
            postgres_pool_size: 16,
        }
    }
}

/// With `cache_size_mib` unset, redb's cache is this fraction of the store file: about what
/// its B-trees' branch pages take (a 4 KiB branch page points at 100 to 200 pages below),
/// so a token check's look-ups read only leaves from the operating system's page cache.
pub const AUTO_CACHE_FILE_FRACTION: u64 = 64;
/// The bounds of the cache sized from the file, in MiB.
pub const AUTO_CACHE_MIN_MIB: u64 = 1;
pub const AUTO_CACHE_MAX_MIB: u64 = 32;

const MIB: u64 = 1024 * 1024;

impl StoreConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("latchkey.redb")
    }

    /// redb's page cache for a store file of `file_bytes` (0 for a new one): `cache_size_mib`
    /// when set, else 1/`AUTO_CACHE_FILE_FRACTION` of the file within
    /// `AUTO_CACHE_MIN_MIB`..=`AUTO_CACHE_MAX_MIB`. A small store then keeps little in memory
    /// when idle (BENCHMARKS.md, row e), and 1,000,000 users with 5,000,000 sessions (a 2 GiB
    /// file) get 32 MiB, which holds their branch pages (row f).
    pub fn cache_size_bytes(&self, file_bytes: u64) -> usize {
        let bytes = match self.cache_size_mib {
            Some(mib) => u64::try_from(mib).unwrap_or(u64::MAX).saturating_mul(MIB),
            None => (file_bytes / AUTO_CACHE_FILE_FRACTION)
                .clamp(AUTO_CACHE_MIN_MIB * MIB, AUTO_CACHE_MAX_MIB * MIB),
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// argon2id time cost (OWASP: 2).
    pub iterations: u32,
    /// argon2id lanes (OWASP: 1).
    pub parallelism: u32,
    /// Hasher threads; 0 means one per core.
    pub hasher_threads: usize,
    /// Password checks allowed to wait for a hasher before sign-in answers 503.
    pub queue_capacity: usize,
    /// Shortest password accepted when one is set (the vendor's minimum is 6).
    pub min_length: usize,
    /// A hasher frees its argon2 buffer after this many seconds without work; 0 keeps it.
    pub buffer_release_after_idle_seconds: u64,
    /// How much nicer than the server the hasher threads run (0 to 19): token checks and the
    /// rest of the runtime win the CPU while sign-ins saturate the hashers.
    pub hasher_niceness: u8,
}

impl Default for PasswordConfig {
    fn default() -> PasswordConfig {
        PasswordConfig {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            hasher_threads: 0,
            queue_capacity: 64,
            min_length: 6,
            buffer_release_after_idle_seconds: 5,
            hasher_niceness: 19,
        }
    }
}

impl PasswordConfig {
    pub fn effective_hasher_threads(&self) -> usize {
        if self.hasher_threads > 0 {
            return self.hasher_threads;
        }
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Lifetime of a `long-term-token` session (14 days).
    pub long_term_seconds: u64,
    /// Lifetime of a short session (3 hours).
    pub short_term_seconds: u64,
    /// How often expired sessions are purged (in transactions of at most 1,000 rows).
    pub purge_interval_seconds: u64,
    /// Sessions (sign-ins and minted tokens) a user may hold; a new one ends the oldest.
    pub max_per_user: usize,
    /// The `Domain` of the `jwt` cookie, so that a sign-in serves sibling subdomains (forward
    /// auth). Unset: a host-only cookie.
    pub cookie_domain: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            long_term_seconds: 14 * 24 * 3600,
            short_term_seconds: 3 * 3600,
            purge_interval_seconds: 60,
            max_per_user: 1000,
            cookie_domain: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept `?token=` and `?jwt=` credentials (the vendor does).
    pub query_credentials: bool,
    /// Absolute `ret-url` origins allowed, and origins trusted for cookie CSRF checks.
    pub allowed_return_origins: Vec<Origin>,
    /// Verified token signatures remembered (the hot path skips Ed25519 for these).
    pub verified_token_cache_entries: usize,
    /// The verified-token cache frees its memory after this many seconds without a token
    /// check; 0 keeps it.
    pub verified_token_cache_release_after_idle_seconds: u64,
    /// Standalone API tokens a user may hold, expired ones included; then 409.
    pub max_api_tokens_per_user: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            query_credentials: true,
            allowed_return_origins: Vec::new(),
            verified_token_cache_entries: 100_000,
            verified_token_cache_release_after_idle_seconds: 5,
            max_api_tokens_per_user: 100,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Seconds between automatic signing-key rotations; 0 (the default) turns it off.
    pub rotate_every: u64,
    /// When over 0, a rotation first publishes the new key as `next` in `/auth/keys` and it
    /// signs only this many seconds later (the old key signs meanwhile), for verifiers that
    /// cache the key set. 0 (the default): a new key signs at once.
    pub publish_ahead_seconds: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Throttle password guessing and failed OAuth sign-ins, and limit sign-up, resend and
    /// reset requests and sub-user creation (429 with Retry-After). Off only for load tests.
    pub enabled: bool,
    /// Failures a minute per (account, client network) before a growing wait.
    pub failures_per_account_network: u32,
    /// Failures a minute per account, from every network together.
    pub failures_per_account: u32,
    /// Failures a minute per client network (IPv4 address, IPv6 /64).
    pub failures_per_network: u32,
    /// Longest wait the growing delay reaches, in seconds.
    pub max_delay_seconds: u64,
    /// Sub-users one caller may create (`POST /user`) at once, refilled over an hour.
    pub sub_users_per_caller_per_hour: u32,
    /// Wrong TOTP codes, recovery codes and passkey assertions an account may take at once,
    /// from every network together, refilled over an hour: besides the minute buckets
    /// above, so that guessing 6 digits with the password known stays hopeless.
    pub second_factor_failures_per_account_per_hour: u32,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            enabled: true,
            failures_per_account_network: 5,
            failures_per_account: 20,
            failures_per_network: 30,
            max_delay_seconds: 900,
            sub_users_per_caller_per_hour: 20,
            second_factor_failures_per_account_per_hour: 10,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupConfig {
    /// Let anyone create an account with `POST /auth/sign-up` (closed by default).
    pub open: bool,
    /// Let `pending` users sign in before they verify their email.
    pub allow_unverified_sign_in: bool,
    /// How long an email-verification link works.
    pub verify_token_lifetime_seconds: u64,
    /// How long a password-reset link works.
    pub reset_token_lifetime_seconds: u64,
    /// Sign-up, resend and reset requests a minute per (address, client network).
    pub requests_per_address_network: u32,
    /// The same, per address from every network.
    pub requests_per_address: u32,
    /// The same, per client network for every address.
    pub requests_per_network: u32,
    /// Days after which a sign-up whose address was never proved is deleted (API.md 15.15).
    pub pending_lifetime_days: u64,
}

impl Default for SignupConfig {
    fn default() -> SignupConfig {
        SignupConfig {
            open: false,
            allow_unverified_sign_in: false,
            verify_token_lifetime_seconds: 24 * 3600,
            reset_token_lifetime_seconds: 30 * 60,
            requests_per_address_network: 3,
            requests_per_address: 5,
            requests_per_network: 20,
            pending_lifetime_days: 7,
        }
    }
}

/// The hosted pages (API.md section 8): sign-in, sign-up, verification, reset, account.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    /// Serve the pages at the server's root (on by default: an install signs people in
    /// without a frontend of its own).
    pub enabled: bool,
    /// The product's name on every page.
    pub title: String,
    /// A CSS file served after the built-in stylesheet, to restyle without rebuilding.
    pub stylesheet: Option<PathBuf>,
}

impl Default for PagesConfig {
    fn default() -> PagesConfig {
        PagesConfig {
            enabled: true,
            title: "Latchkey".to_owned(),
            stylesheet: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    /// Write each message as an .eml file in `<data-dir>/outbox/`.
    Outbox,
    /// Send through an SMTP server.
    Smtp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Implicit,
    None,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub transport: EmailTransport,
    /// The From header.
    pub from: String,
    /// Link in verification emails; `{token}` is replaced. Unset: the server's own page.
    pub verify_link: Option<String>,
    /// Link in password-reset emails; `{token}` is replaced. Unset: the server's own page.
    pub reset_link: Option<String>,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<Secret<String>>,
    /// Delivery attempts before a message is given up (with a growing wait between).
    pub max_attempts: u32,
}

impl Default for EmailConfig {
    fn default() -> EmailConfig {
        EmailConfig {
            transport: EmailTransport::Outbox,
            from: "Latchkey <latchkey@localhost>".to_owned(),
            verify_link: None,
            reset_link: None,
            smtp_host: "localhost".to_owned(),
            smtp_port: 587,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: None,
            smtp_password: None,
            max_attempts: 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptchaProvider {
    None,
    Recaptcha,
    Hcaptcha,
    Turnstile,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptchaConfig {
    /// Which siteverify protocol checks `X-Recaptcha-Token` (none: only its presence).
    pub provider: CaptchaProvider,
    pub secret: Option<Secret<String>>,
    /// Overrides the provider's own siteverify URL.
    pub verify_url: Option<String>,
}

impl Default for CaptchaConfig {
    fn default() -> CaptchaConfig {
        CaptchaConfig {
            provider: CaptchaProvider::None,
            secret: None,
            verify_url: None,
        }
    }
}

impl CaptchaConfig {
    /// The siteverify URL: the configured one, else the provider's.
    pub fn effective_verify_url(&self) -> Option<String> {
        self.verify_url.clone().or_else(|| {
            match self.provider {
                CaptchaProvider::None => None,
                CaptchaProvider::Recaptcha => {
                    Some("https://www.google.com/recaptcha/api/siteverify")
                }
                CaptchaProvider::Hcaptcha => Some("https://api.hcaptcha.com/siteverify"),
                CaptchaProvider::Turnstile => {
                    Some("https://challenges.cloudflare.com/turnstile/v0/siteverify")
                }
            }
            .map(str::to_owned)
        })
    }
}

/// `[oauth]`: the providers whose tokens `POST /auth/oauth-sign-in` accepts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// `[[oauth.providers]]` tables, read from the config file only (never the environment).
    pub providers: Vec<OAuthProviderConfig>,
    /// Clock skew allowed on an ID token's `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: u64,
    /// Shortest time between two JWKS fetches of one provider; a token with an unknown `kid`
    /// triggers a fetch only when the last one is at least this old.
    pub jwks_refresh_floor_seconds: u64,
    /// Time allowed for each call to a provider (discovery, JWKS, introspection, userinfo).
    pub provider_timeout_seconds: u64,
}

impl Default for OAuthConfig {
    fn default() -> OAuthConfig {
        OAuthConfig {
            providers: Vec::new(),
            leeway_seconds: 60,
            jwks_refresh_floor_seconds: 60,
            provider_timeout_seconds: 5,
        }
    }
}

/// How a provider's token is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthProviderKind {
    /// The token is an OpenID Connect ID token, verified against the provider's JWKS.
    #[default]
    Oidc,
    /// The token is an access token: introspected, then sent to the userinfo URL.
    Userinfo,
}

/// One `[[oauth.providers]]` table. `OAuthConfig::check` checks it; the providers read its
/// `jwks_file` when they are built (`app::preflight`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthProviderConfig {
    /// The name clients send as `provider`.
    pub name: String,
    pub kind: OAuthProviderKind,
    /// OIDC: the exact `iss` of the provider's ID tokens.
    #[serde(default)]
    pub issuer: Option<String>,
    /// OIDC: the accepted `aud` values (our client ids); empty means `[client_id]`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// OIDC: where the JWKS is fetched; unset with no `jwks_file`: from the issuer's
    /// discovery document.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// OIDC: a JWKS read once at start instead of fetched.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Userinfo: the URL that answers the token's account as JSON.
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// Userinfo: the RFC 7662 introspection URL that proves the token was issued to us.
    #[serde(default)]
    pub introspection_url: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Sent (HTTP Basic, with `client_id`) to the introspection URL and, in the browser
    /// sign-in, to the token endpoint. Never logged.
    #[serde(default)]
    pub client_secret: Option<Secret<String>>,
    /// A file holding `client_secret` (surrounding whitespace dropped), read at start: keeps
    /// the secret out of the config file. Not with `client_secret`.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Browser sign-in: the scopes asked for, space-separated.
    #[serde(default = "default_scopes")]
    pub scopes: String,
    /// Browser sign-in: the name on the sign-in page's button; unset: `name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Browser sign-in: the authorization endpoint; unset for `oidc`: discovered. A
    /// `userinfo` provider signs in from the browser only with it (and `token_url`).
    #[serde(default)]
    pub authorization_url: Option<String>,
    /// Browser sign-in: the token endpoint; unset for `oidc`: discovered.
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default = "default_subject_field")]
    pub subject_field: String,
    #[serde(default = "default_email_field")]
    pub email_field: String,
    #[serde(default = "default_email_verified_field")]
    pub email_verified_field: String,
    /// Link an unlinked provider account to the account with the same, verified, email.
    #[serde(default)]
    pub link_by_verified_email: bool,
    /// Create accounts for unknown provider accounts; unset follows `[signup] open`.
    #[serde(default)]
    pub allow_sign_up: Option<bool>,
    /// Let an email the provider does not say it verified become a new account's address
    /// (made with `email_verified = false`). Off: such a provider account creates nothing.
    #[serde(default)]
    pub allow_unverified_email_sign_up: bool,
    /// Userinfo without introspection: any app's token for this provider would sign in.
    #[serde(default)]
    pub allow_unbound_tokens: bool,
}

fn default_subject_field() -> String {
    "sub".to_owned()
}

fn default_email_field() -> String {
    "email".to_owned()
}

fn default_email_verified_field() -> String {
    "email_verified".to_owned()
}

/// The scopes a browser sign-in asks for unless the provider's table says otherwise.
pub const DEFAULT_OAUTH_SCOPES: &str = "openid email profile";

fn default_scopes() -> String {
    DEFAULT_OAUTH_SCOPES.to_owned()
}

impl Default for OAuthProviderConfig {
    fn default() -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: String::new(),
            kind: OAuthProviderKind::Oidc,
            issuer: None,
            audiences: Vec::new(),
            jwks_url: None,
            jwks_file: None,
            userinfo_url: None,
            introspection_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scopes: default_scopes(),
            display_name: None,
            authorization_url: None,
            token_url: None,
            subject_field: default_subject_field(),
            email_field: default_email_field(),
            email_verified_field: default_email_verified_field(),
            link_by_verified_email: false,
            allow_sign_up: None,
            allow_unverified_email_sign_up: false,
            allow_unbound_tokens: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (key=value) or `json`.
    pub format: LogFormat,
    /// A tracing filter level: error, warn, info, debug, trace.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint, on a listener of its own.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served. Unset (the default): no metrics listener. It is a
    /// second port so that a firewall can keep it from the public, and it needs no
    /// credential.
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A refused `[oauth]` setting: its key, as a dotted path (`oauth.providers[1].issuer`), so
/// that `Config::load` can tell where it was set, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct RefusedOAuthSetting {
    pub key: String,
    pub problem: OAuthSettingProblem,
}

/// What is wrong with `[oauth]` or one `[[oauth.providers]]` table; `name` is the provider's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthSettingProblem {
    #[error("must be between 1 and 600")]
    ProviderTimeoutOutOfRange,
    #[error("must be at most 600")]
    LeewayTooLong,
    #[error("must be at least 1")]
    RefreshFloorZero,
    #[error("oauth provider name {name:?} is used twice")]
    NameUsedTwice { name: String },
    #[error(
        "oauth provider name {name:?} must be 1 to {PROVIDER_NAME_MAX_CHARACTERS} characters without spaces"
    )]
    UnusableName { name: String },
    #[error("oauth provider {name:?}: {field} must not be empty")]
    EmptyField { name: String, field: &'static str },
    #[error("oauth provider {name:?}: client_secret needs client_id")]
    SecretWithoutClientId { name: String },
    #[error("oauth provider {name:?}: set client_secret or client_secret_file, not both")]
    SecretAndSecretFile { name: String },
    #[error(
        "oauth provider {name:?}: the browser sign-in (authorization_url) needs client_id and \
         client_secret (or client_secret_file)"
    )]
    BrowserSignInWithoutClient { name: String },
    #[error(
        "oauth provider {name:?}: kind = \"userinfo\" signs in from the browser with both \
         authorization_url and token_url"
    )]
    UserinfoBrowserSignInIncomplete { name: String },
    #[error("oauth provider {name:?}: {field} {source}")]
    UnusableUrl {
        name: String,
        field: &'static str,
        source: ProviderUrlError,
    },
    #[error("oauth provider {name:?}: kind = \"oidc\" needs issuer")]
    OidcWithoutIssuer { name: String },
    #[error("oauth provider {name:?}: kind = \"oidc\" needs audiences (or client_id)")]
    OidcWithoutAudiences { name: String },
    #[error("oauth provider {name:?}: set jwks_url or jwks_file, not both")]
    JwksUrlAndFile { name: String },
    #[error(
        "oauth provider {name:?}: introspection_url and allow_unbound_tokens are for kind = \"userinfo\""
    )]
    UserinfoSettingOnOidc { name: String },
    #[error("oauth provider {name:?}: kind = \"userinfo\" needs userinfo_url")]
    UserinfoWithoutUrl { name: String },
    #[error("oauth provider {name:?}: introspection_url needs client_id")]
    IntrospectionWithoutClientId { name: String },
    #[error(
        "oauth provider {name:?}: kind = \"userinfo\" needs introspection_url, so that another \
         app's token signs no one in (or allow_unbound_tokens = true)"
    )]
    UserinfoWithoutIntrospection { name: String },
    #[error("oauth provider {name:?}: jwks_url and jwks_file are for kind = \"oidc\"")]
    OidcSettingOnUserinfo { name: String },
}

impl OAuthConfig {
    /// Checks `[oauth]` and every `[[oauth.providers]]` table alone: what `check-config` and
    /// the start refuse. Reading a `jwks_file` is left to where the providers are built.
    pub fn check(&self) -> Result<(), RefusedOAuthSetting> {
        let refuse = |key: &str, problem: OAuthSettingProblem| {
            Err(RefusedOAuthSetting {
                key: key.to_owned(),
                problem,
            })
        };
        if !(1..=600).contains(&self.provider_timeout_seconds) {
            return refuse(
                "oauth.provider_timeout_seconds",
                OAuthSettingProblem::ProviderTimeoutOutOfRange,
            );
        }
        if self.leeway_seconds > 600 {
            return refuse("oauth.leeway_seconds", OAuthSettingProblem::LeewayTooLong);
        }
        if self.jwks_refresh_floor_seconds == 0 {
            return refuse(
                "oauth.jwks_refresh_floor_seconds",
                OAuthSettingProblem::RefreshFloorZero,
            );
        }
        let mut names: Vec<&str> = Vec::new();
        for (index, provider) in self.providers.iter().enumerate() {
            provider
                .check()
                .map_err(|(field, problem)| RefusedOAuthSetting {
                    key: match field {
                        Some(field) => format!("oauth.providers[{index}].{field}"),
                        None => format!("oauth.providers[{index}]"),
                    },
                    problem,
                })?;
            if names.contains(&provider.name.as_str()) {
                return refuse(
                    &format!("oauth.providers[{index}].name"),
                    OAuthSettingProblem::NameUsedTwice {
                        name: provider.name.clone(),
                    },
                );
            }
            names.push(&provider.name);
        }
        Ok(())
    }
}

impl OAuthProviderConfig {
    /// The accepted `aud` values of an OIDC provider: `audiences`, else `[client_id]`.
    pub fn effective_audiences(&self) -> Vec<String> {
        if self.audiences.is_empty() {
            self.client_id.iter().cloned().collect()
        } else {
            self.audiences.clone()
        }
    }

    /// Whether a client secret is configured, in the table or in a file.
    pub fn has_client_secret(&self) -> bool {
        self.client_secret.is_some() || self.client_secret_file.is_some()
    }

    /// Whether people sign in with this provider from the browser (API.md section 11): an
    /// `oidc` provider with a client secret (its endpoints are discovered), or a
    /// `userinfo` provider with its endpoints and a client secret.
    pub fn offers_browser_sign_in(&self) -> bool {
        self.has_client_secret()
            && self.client_id.is_some()
            && match self.kind {
                OAuthProviderKind::Oidc => true,
                OAuthProviderKind::Userinfo => {
                    self.authorization_url.is_some() && self.token_url.is_some()
                }
            }
    }

    /// The name people see on the sign-in page's button.
    pub fn shown_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// Checks this table alone; a problem names the field it is about, if it is about one.
    fn check(&self) -> Result<(), (Option<&'static str>, OAuthSettingProblem)> {
        let name = || self.name.clone();
        let name_ok = !self.name.is_empty()
            && self.name.chars().count() <= PROVIDER_NAME_MAX_CHARACTERS
            && !self
                .name
                .chars()
                .any(|character| character.is_control() || character.is_whitespace());
        if !name_ok {
            return Err((
                Some("name"),
                OAuthSettingProblem::UnusableName { name: name() },
            ));
        }
        let check_url = |field: &'static str, text: &str| {
            parse_provider_url(text).map(drop).map_err(|source| {
                (
                    Some(field),
                    OAuthSettingProblem::UnusableUrl {
                        name: name(),
                        field,
                        source,
                    },
                )
            })
        };
        for (field, value) in [
            ("subject_field", &self.subject_field),
            ("email_field", &self.email_field),
            ("email_verified_field", &self.email_verified_field),
        ] {
            if value.is_empty() {
                return Err((
                    Some(field),
                    OAuthSettingProblem::EmptyField {
                        name: name(),
                        field,
                    },
                ));
            }
        }
        if self.client_secret.is_some() && self.client_secret_file.is_some() {
            return Err((
                Some("client_secret_file"),
                OAuthSettingProblem::SecretAndSecretFile { name: name() },
            ));
        }
        if self.has_client_secret() && self.client_id.is_none() {
            return Err((
                Some("client_secret"),
                OAuthSettingProblem::SecretWithoutClientId { name: name() },
            ));
        }
        for (field, value) in [
            ("authorization_url", &self.authorization_url),
            ("token_url", &self.token_url),
        ] {
            if let Some(text) = value {
                check_url(field, text)?;
            }
        }
        if (self.authorization_url.is_some() || self.token_url.is_some())
            && !self.has_client_secret()
        {
            return Err((
                Some("authorization_url"),
                OAuthSettingProblem::BrowserSignInWithoutClient { name: name() },
            ));
        }
        if self.scopes.trim().is_empty() {
            return Err((
                Some("scopes"),
                OAuthSettingProblem::EmptyField {
                    name: name(),
                    field: "scopes",
                },
            ));
        }
        match self.kind {
            OAuthProviderKind::Oidc => {
                let Some(issuer) = &self.issuer else {
                    return Err((
                        None,
                        OAuthSettingProblem::OidcWithoutIssuer { name: name() },
                    ));
                };
                check_url("issuer", issuer)?;
                if let Some(userinfo_url) = &self.userinfo_url {
                    check_url("userinfo_url", userinfo_url)?;
                }
                if self.effective_audiences().is_empty() {
                    return Err((
                        None,
                        OAuthSettingProblem::OidcWithoutAudiences { name: name() },
                    ));
                }
                match (&self.jwks_url, &self.jwks_file) {
                    (Some(_), Some(_)) => {
                        return Err((
                            Some("jwks_file"),
                            OAuthSettingProblem::JwksUrlAndFile { name: name() },
                        ));
                    }
                    (Some(jwks_url), None) => check_url("jwks_url", jwks_url)?,
                    (None, _) => {}
                }
                if self.allow_unbound_tokens || self.introspection_url.is_some() {
                    return Err((
                        Some("kind"),
                        OAuthSettingProblem::UserinfoSettingOnOidc { name: name() },
                    ));
                }
            }
            OAuthProviderKind::Userinfo => {
                let Some(userinfo_url) = &self.userinfo_url else {
                    return Err((
                        None,
                        OAuthSettingProblem::UserinfoWithoutUrl { name: name() },
                    ));
                };
                check_url("userinfo_url", userinfo_url)?;
                if self.authorization_url.is_some() != self.token_url.is_some() {
                    return Err((
                        Some("token_url"),
                        OAuthSettingProblem::UserinfoBrowserSignInIncomplete { name: name() },
                    ));
                }
                match &self.introspection_url {
                    Some(introspection_url) => {
                        check_url("introspection_url", introspection_url)?;
                        if self.client_id.is_none() {
                            return Err((
                                Some("introspection_url"),
                                OAuthSettingProblem::IntrospectionWithoutClientId { name: name() },
                            ));
                        }
                    }
                    // Without introspection, the API refuses this provider's tokens; the
                    // browser sign-in gets its access token from its own code exchange.
                    None if self.allow_unbound_tokens || self.authorization_url.is_some() => {}
                    None => {
                        return Err((
                            None,
                            OAuthSettingProblem::UserinfoWithoutIntrospection { name: name() },
                        ));
                    }
                }
                if self.jwks_url.is_some() || self.jwks_file.is_some() {
                    return Err((
                        Some("kind"),
                        OAuthSettingProblem::OidcSettingOnUserinfo { name: name() },
                    ));
                }
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Origin, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpNetwork, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A secret key (`smtp_password`, `secret`, `client_secret`) reads as plain text, with the
/// errors `String` gives, so a value refused for it names the key as any string key would.
impl<'de> Deserialize<'de> for Secret<String> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Secret<String>, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// `check-config` prints the effective settings through `Serialize`: a secret shows only
/// that it is set, as `***`, never its value. So does anything else that serializes one: a
/// wire type that must carry a secret's text serializes its `expose_secret()` itself.
impl Serialize for Secret<String> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_cache_is_the_setting_else_a_64th_of_the_file_within_1_to_32_mib() {
        let auto = StoreConfig::default();
        assert_eq!(auto.cache_size_bytes(0), 1 << 20);
        assert_eq!(auto.cache_size_bytes(8 << 20), 1 << 20);
        assert_eq!(auto.cache_size_bytes(512 << 20), 8 << 20);
        assert_eq!(auto.cache_size_bytes(2129 << 20), 32 << 20);
        assert_eq!(auto.cache_size_bytes(100 << 30), 32 << 20);
        let set = StoreConfig {
            cache_size_mib: Some(4),
            ..StoreConfig::default()
        };
        assert_eq!(set.cache_size_bytes(0), 4 << 20);
        assert_eq!(set.cache_size_bytes(100 << 30), 4 << 20);
    }

    fn userinfo_provider() -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: "github".to_owned(),
            kind: OAuthProviderKind::Userinfo,
            userinfo_url: Some("https://api.github.com/user".to_owned()),
            introspection_url: Some("https://example.com/introspect".to_owned()),
            client_id: Some("client".to_owned()),
            client_secret: Some(Secret::new("very-secret".to_owned())),
            ..OAuthProviderConfig::default()
        }
    }

    fn config_with(providers: Vec<OAuthProviderConfig>) -> OAuthConfig {
        OAuthConfig {
            providers,
            ..OAuthConfig::default()
        }
    }

    #[test]
    fn provider_configs_are_checked_and_the_secret_never_prints() {
        let provider = userinfo_provider();
        assert!(config_with(vec![provider.clone()]).check().is_ok());
        let printed = format!("{provider:?}");
        assert!(!printed.contains("very-secret"), "{printed}");

        let twice = config_with(vec![provider.clone(), provider.clone()]);
        assert!(
            twice
                .check()
                .unwrap_err()
                .problem
                .to_string()
                .contains("twice")
        );

        let unbound = OAuthProviderConfig {
            introspection_url: None,
            ..provider.clone()
        };
        let error = config_with(vec![unbound.clone()])
            .check()
            .unwrap_err()
            .to_string();
        assert!(error.contains("introspection_url"), "{error}");
        let allowed = OAuthProviderConfig {
            allow_unbound_tokens: true,
            ..unbound
        };
        assert!(config_with(vec![allowed]).check().is_ok());

        let oidc_without_issuer = OAuthProviderConfig {
            name: "google".to_owned(),
            audiences: vec!["client".to_owned()],
            ..OAuthProviderConfig::default()
        };
        let error = config_with(vec![oidc_without_issuer])
            .check()
            .unwrap_err()
            .to_string();
        assert!(error.contains("issuer"), "{error}");

        let plain_http = OAuthProviderConfig {
            name: "google".to_owned(),
            issuer: Some("http://accounts.example.com".to_owned()),
            audiences: vec!["client".to_owned()],
            ..OAuthProviderConfig::default()
        };
        let error = config_with(vec![plain_http]).check().unwrap_err();
        assert_eq!(error.key, "oauth.providers[0].issuer");
        assert!(error.problem.to_string().contains("https"), "{error}");
    }
}
