//! Configuration: typed settings with safe defaults, layered as built-in defaults, then a TOML
//! file, then `LATCHKEY_<SECTION>__<KEY>` environment variables, then command-line flags.
//! An unknown key, an unknown `LATCHKEY_` variable or a bad value stops the start, naming it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toml::de::DeTable;

use crate::config::sources::{
    KeySource, KeySources, TextPosition, key_at_offset, position_in_text,
};

pub mod sources;

/// Environment variables that are flags, not config keys.
const FLAG_VARIABLES: [&str; 2] = ["LATCHKEY_DATA_DIR", "LATCHKEY_CONFIG"];

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub password: PasswordConfig,
    pub session: SessionConfig,
    pub auth: AuthConfig,
    pub keys: KeysConfig,
    pub throttle: ThrottleConfig,
    pub signup: SignupConfig,
    pub email: EmailConfig,
    pub captcha: CaptchaConfig,
    pub oauth: OAuthConfig,
    pub log: LogConfig,
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

/// One `[[oauth.providers]]` table. `auth::oauth::check_provider_configs` checks it.
#[derive(Clone, Deserialize, Serialize)]
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
    /// Sent (HTTP Basic, with `client_id`) to the introspection URL. Never logged.
    #[serde(default)]
    #[serde(serialize_with = "serialize_masked_secret")]
    pub client_secret: Option<String>,
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

impl fmt::Debug for OAuthProviderConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OAuthProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_file", &self.jwks_file)
            .field("userinfo_url", &self.userinfo_url)
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("link_by_verified_email", &self.link_by_verified_email)
            .field("allow_sign_up", &self.allow_sign_up)
            .field(
                "allow_unverified_email_sign_up",
                &self.allow_unverified_email_sign_up,
            )
            .field("allow_unbound_tokens", &self.allow_unbound_tokens)
            .finish_non_exhaustive()
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

#[derive(Clone, Deserialize, Serialize)]
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
    #[serde(serialize_with = "serialize_masked_secret")]
    pub smtp_password: Option<String>,
    /// Delivery attempts before a message is given up (with a growing wait between).
    pub max_attempts: u32,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmailConfig")
            .field("transport", &self.transport)
            .field("from", &self.from)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password", &self.smtp_password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
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

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptchaConfig {
    /// Which siteverify protocol checks `X-Recaptcha-Token` (none: only its presence).
    pub provider: CaptchaProvider,
    #[serde(serialize_with = "serialize_masked_secret")]
    pub secret: Option<String>,
    /// Overrides the provider's own siteverify URL.
    pub verify_url: Option<String>,
}

impl std::fmt::Debug for CaptchaConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CaptchaConfig")
            .field("provider", &self.provider)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("verify_url", &self.verify_url)
            .finish()
    }
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
    /// The data directory: `latchkey.redb` lives here.
    pub data_dir: PathBuf,
    /// redb's page cache.
    pub cache_size_mib: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            data_dir: PathBuf::from("./data"),
            cache_size_mib: 32,
        }
    }
}

impl StoreConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("latchkey.redb")
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
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            long_term_seconds: 14 * 24 * 3600,
            short_term_seconds: 3 * 3600,
            purge_interval_seconds: 60,
            max_per_user: 1000,
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
    /// Standalone API tokens a user may hold, expired ones included; then 409.
    pub max_api_tokens_per_user: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            query_credentials: true,
            allowed_return_origins: Vec::new(),
            verified_token_cache_entries: 100_000,
            max_api_tokens_per_user: 100,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Command-line values that override every other layer.
#[derive(Clone, Debug, Default)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is no TOML, or writes an unknown key or a value its key does not take.
    #[error("config file {path}{}: {}{message}", at_position(.position), key_then_colon(.key))]
    File {
        path: String,
        position: Option<TextPosition>,
        key: Option<String>,
        message: String,
    },
    /// A `LATCHKEY_` variable names no key, or holds a value its key does not take.
    #[error("environment variable {name}{}: {message}", key_in_parentheses(.key))]
    Environment {
        name: String,
        key: Option<String>,
        message: String,
    },
    /// A value that every layer took but the server refuses to run with (`validate`).
    #[error("{key} ({set_in}): {message}")]
    Refused {
        key: String,
        set_in: KeySource,
        message: String,
    },
    /// The layers, each fine alone, do not make a configuration together.
    #[error("configuration: {0}")]
    Layers(String),
}

/// The last part of every key whose value is a secret.
const SECRET_KEY_NAMES: [&str; 3] = ["smtp_password", "secret", "client_secret"];

impl ConfigError {
    /// A value refused for a secret key is not repeated in the error: the message, which
    /// quotes the value ("invalid type: integer `123456`"), is replaced by one that does not.
    fn without_secret_values(self) -> ConfigError {
        let names_a_secret = |key: &Option<String>| {
            key.as_deref().is_some_and(|key| {
                let last = key.rsplit('.').next().unwrap_or(key);
                SECRET_KEY_NAMES.contains(&last)
            })
        };
        const HIDDEN: &str = "this key does not take that value (a string is expected; the value is a secret and is not shown)";
        match self {
            ConfigError::File {
                path,
                position,
                key,
                ..
            } if names_a_secret(&key) => ConfigError::File {
                path,
                position,
                key,
                message: HIDDEN.to_owned(),
            },
            ConfigError::Environment { name, key, .. } if names_a_secret(&key) => {
                ConfigError::Environment {
                    name,
                    key,
                    message: HIDDEN.to_owned(),
                }
            }
            other => other,
        }
    }
}

fn at_position(position: &Option<TextPosition>) -> String {
    position.map_or_else(String::new, |position| {
        format!(", line {}, column {}", position.line, position.column)
    })
}

fn key_then_colon(key: &Option<String>) -> String {
    key.as_ref()
        .map_or_else(String::new, |key| format!("{key}: "))
}

fn key_in_parentheses(key: &Option<String>) -> String {
    key.as_ref()
        .map_or_else(String::new, |key| format!(" ({key})"))
}

/// A setting refused by a check that lives with the code using it
/// (`auth::oauth::check_provider_configs`): the key, as a dotted path, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Builds the configuration from all layers. `environment` is passed in (not read here)
    /// so that tests and `check-config` see exactly what the process would.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Config, ConfigError> {
        let mut sources = KeySources::default();
        let mut layered = toml::Table::new();
        if let Some(path) = file {
            layered = read_file_layer(path, &mut sources)?;
        }
        let variables: BTreeMap<String, String> = environment
            .into_iter()
            .filter(|(name, _)| name.starts_with("LATCHKEY_"))
            .collect();
        for (name, raw_value) in &variables {
            if FLAG_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let (section, key, value) = environment_setting(name, raw_value)?;
            let section_table = layered
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = section_table else {
                return Err(ConfigError::Environment {
                    name: name.clone(),
                    key: Some(format!("{section}.{key}")),
                    message: format!("[{section}] is not a section"),
                });
            };
            section_table.insert(key.clone(), value);
            sources.set(
                format!("{section}.{key}"),
                KeySource::Environment { name: name.clone() },
            );
        }
        let mut config = Config::deserialize(layered)
            .map_err(|error| ConfigError::Layers(error.message().to_owned()))?;
        if let Some(data_dir) = variables.get("LATCHKEY_DATA_DIR") {
            config.store.data_dir = PathBuf::from(data_dir);
            sources.set(
                "store.data_dir".to_owned(),
                KeySource::Environment {
                    name: "LATCHKEY_DATA_DIR".to_owned(),
                },
            );
        }
        if let Some(data_dir) = &flags.data_dir {
            // The command line fills `--data-dir` from LATCHKEY_DATA_DIR too: a value equal
            // to the variable's is named as the variable, already recorded above.
            let from_variable = variables
                .get("LATCHKEY_DATA_DIR")
                .is_some_and(|variable| Path::new(variable) == data_dir);
            if !from_variable {
                sources.set(
                    "store.data_dir".to_owned(),
                    KeySource::Flag { name: "--data-dir" },
                );
            }
            config.store.data_dir.clone_from(data_dir);
        }
        if let Some(listen) = flags.listen {
            config.server.listen = listen;
            sources.set(
                "server.listen".to_owned(),
                KeySource::Flag { name: "--listen" },
            );
        }
        config.validate(&sources)?;
        Ok(config)
    }

    /// Refuses the values the server cannot or should not run with, naming the key and
    /// where it was set (`check-config` and every start call this, through `load`).
    fn validate(&self, sources: &KeySources) -> Result<(), ConfigError> {
        let refuse = |key: &str, message: String| {
            Err(ConfigError::Refused {
                key: key.to_owned(),
                set_in: sources.of(key),
                message,
            })
        };
        if let Err(problem) = crate::auth::oauth::check_provider_configs(&self.oauth) {
            return refuse(&problem.key, problem.message);
        }
        let zero_keys = [
            ("password.iterations", self.password.iterations == 0),
            ("password.parallelism", self.password.parallelism == 0),
            ("password.queue_capacity", self.password.queue_capacity == 0),
            (
                "session.long_term_seconds",
                self.session.long_term_seconds == 0,
            ),
            (
                "session.short_term_seconds",
                self.session.short_term_seconds == 0,
            ),
            (
                "session.purge_interval_seconds",
                self.session.purge_interval_seconds == 0,
            ),
            ("session.max_per_user", self.session.max_per_user == 0),
            (
                "auth.max_api_tokens_per_user",
                self.auth.max_api_tokens_per_user == 0,
            ),
            ("http.max_connections", self.http.max_connections == 0),
            ("http.max_body_bytes", self.http.max_body_bytes == 0),
            (
                "http.header_read_timeout_seconds",
                self.http.header_read_timeout_seconds == 0,
            ),
            (
                "http.request_timeout_seconds",
                self.http.request_timeout_seconds == 0,
            ),
        ];
        if let Some((key, _)) = zero_keys.iter().find(|(_, is_zero)| *is_zero) {
            return refuse(key, "must be at least 1".to_owned());
        }
        let zero_throttle_keys = [
            (
                "throttle.failures_per_account_network",
                self.throttle.failures_per_account_network == 0,
            ),
            (
                "throttle.failures_per_account",
                self.throttle.failures_per_account == 0,
            ),
            (
                "throttle.failures_per_network",
                self.throttle.failures_per_network == 0,
            ),
            (
                "throttle.sub_users_per_caller_per_hour",
                self.throttle.sub_users_per_caller_per_hour == 0,
            ),
        ];
        if let Some((key, _)) = zero_throttle_keys.iter().find(|(_, is_zero)| *is_zero) {
            return refuse(
                key,
                "must be at least 1 (set throttle.enabled = false to turn throttling off)"
                    .to_owned(),
            );
        }
        if !(1..=36_500).contains(&self.signup.pending_lifetime_days) {
            return refuse(
                "signup.pending_lifetime_days",
                "must be between 1 and 36500".to_owned(),
            );
        }
        if self.password.memory_kib < self.password.parallelism.saturating_mul(8) {
            return refuse(
                "password.memory_kib",
                format!(
                    "must be at least 8 × {}",
                    sources.describe("password.parallelism")
                ),
            );
        }
        if self.password.hasher_niceness > 19 {
            return refuse(
                "password.hasher_niceness",
                "must be between 0 and 19 (a nice value)".to_owned(),
            );
        }
        if !(1..=crate::auth::PASSWORD_MAX_CHARACTERS).contains(&self.password.min_length) {
            return refuse(
                "password.min_length",
                format!(
                    "must be between 1 and {}",
                    crate::auth::PASSWORD_MAX_CHARACTERS
                ),
            );
        }
        if self.session.long_term_seconds < self.session.short_term_seconds {
            return refuse(
                "session.long_term_seconds",
                format!(
                    "is {}, and must be at least session.short_term_seconds ({}, {}): a \
                     long-term session must not end before a short one",
                    self.session.long_term_seconds,
                    self.session.short_term_seconds,
                    sources.of("session.short_term_seconds"),
                ),
            );
        }
        if self.store.data_dir.as_os_str().is_empty() {
            return refuse(
                "store.data_dir",
                "must not be empty: it is the directory holding the database".to_owned(),
            );
        }
        if self.captcha.provider != CaptchaProvider::None && self.captcha.secret.is_none() {
            return refuse(
                "captcha.provider",
                "needs captcha.secret (the provider's secret)".to_owned(),
            );
        }
        if !crate::mail::is_valid_from(&self.email.from) {
            return refuse(
                "email.from",
                "must be an address like \"Name <user@example.com>\"".to_owned(),
            );
        }
        for (key, link) in [
            ("email.verify_link", &self.email.verify_link),
            ("email.reset_link", &self.email.reset_link),
        ] {
            if link.as_ref().is_some_and(|link| !link.contains("{token}")) {
                return refuse(
                    key,
                    "must contain {token}, which each email replaces with its token".to_owned(),
                );
            }
        }
        if self.email.transport == EmailTransport::Smtp {
            if self.email.smtp_host.is_empty() {
                return refuse(
                    "email.smtp_host",
                    format!(
                        "must not be empty with email.transport = \"smtp\" ({})",
                        sources.of("email.transport")
                    ),
                );
            }
            if self.email.smtp_tls == SmtpTls::None && !is_loopback_host(&self.email.smtp_host) {
                return refuse(
                    "email.smtp_tls",
                    format!(
                        "\"none\" sends the SMTP password and every emailed token unencrypted, \
                         so it is allowed only to a loopback host (127.0.0.0/8, ::1, \
                         localhost), and email.smtp_host is {:?} ({})",
                        self.email.smtp_host,
                        sources.of("email.smtp_host")
                    ),
                );
            }
        }
        if self.http.max_header_bytes < 8192 {
            return refuse("http.max_header_bytes", "must be at least 8192".to_owned());
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return refuse(
                "log.level",
                "must be one of error, warn, info, debug, trace".to_owned(),
            );
        }
        Ok(())
    }

    /// The public URL's origin; `http://<listen>` when unset.
    pub fn public_origin(&self) -> Origin {
        self.server.public_url.clone().unwrap_or_else(|| Origin {
            scheme: "http".to_owned(),
            host: self.server.listen.ip().to_string(),
            port: self.server.listen.port(),
        })
    }
}

/// Reads the config file as the second layer, recording where each key is written. The file
/// is checked alone first, so that an error in it names the file, the line and the key.
fn read_file_layer(path: &Path, sources: &mut KeySources) -> Result<toml::Table, ConfigError> {
    let path_label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path_label.clone(),
        source,
    })?;
    // Parsed once more with spans, to turn an error's byte offset into the key it is in.
    let (document, _) = DeTable::parse_recoverable(&text);
    let file_error = |error: toml::de::Error| {
        let span = error.span();
        ConfigError::File {
            path: path_label.clone(),
            position: span
                .as_ref()
                .map(|span| position_in_text(&text, span.start)),
            key: span
                .clone()
                .and_then(|span| key_at_offset(document.get_ref(), span.start)),
            message: error.message().to_owned(),
        }
        .without_secret_values()
    };
    let table: toml::Table = toml::from_str(&text).map_err(file_error)?;
    toml::from_str::<Config>(&text).map_err(file_error)?;
    sources.record_file(&path_label, &text, document.get_ref());
    Ok(table)
}

/// The section, key and value a `LATCHKEY_<SECTION>__<KEY>` variable sets, checked alone so
/// that an error in it names the variable.
fn environment_setting(
    name: &str,
    raw_value: &str,
) -> Result<(String, String, toml::Value), ConfigError> {
    let environment_error = |key: Option<String>, message: String| {
        ConfigError::Environment {
            name: name.to_owned(),
            key,
            message,
        }
        .without_secret_values()
    };
    let Some((section, key)) = name
        .trim_start_matches("LATCHKEY_")
        .split_once("__")
        .map(|(section, key)| (section.to_ascii_lowercase(), key.to_ascii_lowercase()))
        .filter(|(section, key)| !section.is_empty() && !key.is_empty())
    else {
        return Err(environment_error(
            None,
            "unknown variable; config variables look like LATCHKEY_SECTION__KEY".into(),
        ));
    };
    let dotted_key = format!("{section}.{key}");
    if section == "oauth" && key == "providers" {
        return Err(environment_error(
            Some(dotted_key),
            "[[oauth.providers]] are read from the config file only".into(),
        ));
    }
    let value = environment_value(&section, &key, raw_value);
    deserialize_one_setting(&section, &key, value.clone())
        .map_err(|error| environment_error(Some(dotted_key), error.message().into()))?;
    Ok((section, key, value))
}

/// A variable's value, read as its key's type. A key that takes text (a string, a path, a
/// URL, an address, a word such as `smtp`) takes the text exactly as written, so that
/// `LATCHKEY_EMAIL__SMTP_PASSWORD=123456` is a password, not a number, and quotes are part of
/// it; only when the key refuses the text as written (a word or URL in quotes, `"json"`) is a
/// quoted TOML string tried, as variables were read before. Any other key reads the text as
/// a TOML value (`true`, `5`, `["https://a.example"]`).
fn environment_value(section: &str, key: &str, raw_value: &str) -> toml::Value {
    let as_written = toml::Value::String(raw_value.to_owned());
    let as_toml = || {
        let document = format!("value = {raw_value}");
        toml::from_str::<toml::Table>(&document)
            .ok()
            .and_then(|mut table| table.remove("value"))
    };
    if !key_takes_text(section, key) {
        return as_toml().unwrap_or(as_written);
    }
    if deserialize_one_setting(section, key, as_written.clone()).is_ok() {
        return as_written;
    }
    match as_toml() {
        Some(quoted @ toml::Value::String(_))
            if deserialize_one_setting(section, key, quoted.clone()).is_ok() =>
        {
            quoted
        }
        _ => as_written,
    }
}

/// Whether `[section] key` takes text. The key's own type answers: one that takes a boolean,
/// a number or an array accepts a sample of it, and a text type accepts none of them. An
/// unknown key takes none either; its text then fails, naming it.
fn key_takes_text(section: &str, key: &str) -> bool {
    let samples = [
        toml::Value::Boolean(false),
        toml::Value::Integer(0),
        toml::Value::Float(0.0),
        toml::Value::Array(Vec::new()),
    ];
    !samples
        .into_iter()
        .any(|sample| deserialize_one_setting(section, key, sample).is_ok())
}

/// A configuration that sets `[section] key` alone.
fn deserialize_one_setting(
    section: &str,
    key: &str,
    value: toml::Value,
) -> Result<Config, toml::de::Error> {
    let mut single_section = toml::Table::new();
    single_section.insert(key.to_owned(), value);
    let mut single = toml::Table::new();
    single.insert(section.to_owned(), toml::Value::Table(single_section));
    Config::deserialize(single)
}

/// Whether an SMTP host is this machine: an address in 127.0.0.0/8, `::1` (also written
/// `[::1]` or IPv4-mapped) or the name `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(address) = unbracketed.parse::<IpAddr>() {
        return address.to_canonical().is_loopback();
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    name.eq_ignore_ascii_case("localhost")
}

/// A web origin: scheme, host and port, compared exactly.
#[derive(Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The URL's origin. A URL with user information (`http://user@host`) has none here: it
    /// is no origin a browser sends, and must never match one (API.md section 15).
    pub fn from_url(url: &url::Url) -> Option<Origin> {
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_owned();
        let port = url.port_or_known_default()?;
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host,
            port,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl FromStr for Origin {
    type Err = String;

    fn from_str(text: &str) -> Result<Origin, String> {
        let url =
            url::Url::parse(text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?} must be an http or https URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?} must not carry user information"));
        }
        Origin::from_url(&url).ok_or_else(|| format!("{text:?} has no host"))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default_port = match self.scheme.as_str() {
            "https" => 443,
            _ => 80,
        };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            write!(formatter, "{}://{}", self.scheme, host)
        } else {
            write!(formatter, "{}://{}:{}", self.scheme, host, self.port)
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Origin, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    pub address: IpAddr,
    pub prefix_length: u8,
}

impl IpNetwork {
    pub fn contains(&self, candidate: IpAddr) -> bool {
        match (self.address, candidate) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_length))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(candidate) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_length))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(candidate) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNetwork, String> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address_text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let maximum = if address.is_ipv4() { 32 } else { 128 };
        let prefix_length = match prefix_text {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|length| *length <= maximum)
                .ok_or_else(|| format!("{text:?} has a bad prefix length"))?,
            None => maximum,
        };
        Ok(IpNetwork {
            address,
            prefix_length,
        })
    }
}

impl fmt::Debug for IpNetwork {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.address, self.prefix_length)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpNetwork, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `check-config` prints the effective settings through `Serialize`: a secret shows only
/// whether it is set, never its value.
fn serialize_masked_secret<S: serde::Serializer>(
    secret: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("***"),
        None => serializer.serialize_none(),
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}/{}", self.address, self.prefix_length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order_and_unknown_names_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("config.toml");
        std::fs::write(
            &file,
            "[password]\nmemory_kib = 64\niterations = 1\n[server]\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let environment = vec![("LATCHKEY_PASSWORD__ITERATIONS".to_owned(), "3".to_owned())];
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..FlagOverrides::default()
        };
        let config = Config::load(Some(&file), environment, &flags).unwrap();
        assert_eq!(config.password.memory_kib, 64);
        assert_eq!(config.password.iterations, 3);
        assert_eq!(config.server.listen.port(), 9100);

        let unknown_variable = vec![("LATCHKEY_PASSWORD__COLOUR".to_owned(), "1".to_owned())];
        let error = Config::load(None, unknown_variable, &FlagOverrides::default()).unwrap_err();
        assert!(
            error.to_string().contains("LATCHKEY_PASSWORD__COLOUR"),
            "{error}"
        );
        assert!(error.to_string().contains("colour"), "{error}");

        std::fs::write(&file, "[password]\ncolour = 1\n").unwrap();
        let error = Config::load(Some(&file), Vec::new(), &FlagOverrides::default()).unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    /// Loads a configuration from a file holding `file_text` (if any), `environment` and
    /// `flags`; answers it or the error's text, and the file's path as errors print it.
    fn load_text(
        file_text: Option<&str>,
        environment: &[(&str, &str)],
        flags: &FlagOverrides,
    ) -> (Result<Config, String>, String) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("latchkey.toml");
        if let Some(text) = file_text {
            std::fs::write(&path, text).unwrap();
        }
        let environment = environment
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
        let loaded = Config::load(file_text.map(|_| path.as_path()), environment, flags)
            .map_err(|error| error.to_string());
        (loaded, path.display().to_string())
    }

    fn refusal(
        file_text: Option<&str>,
        environment: &[(&str, &str)],
        flags: &FlagOverrides,
    ) -> (String, String) {
        let (loaded, path) = load_text(file_text, environment, flags);
        (loaded.unwrap_err(), path)
    }

    #[test]
    fn a_variable_for_a_text_key_is_taken_as_written_and_others_as_their_type() {
        let (loaded, _) = load_text(
            None,
            &[
                ("LATCHKEY_EMAIL__SMTP_PASSWORD", "123456"),
                ("LATCHKEY_EMAIL__SMTP_USERNAME", "true"),
                (
                    "LATCHKEY_EMAIL__VERIFY_LINK",
                    "\"https://a.example/v?t={token}\"",
                ),
                ("LATCHKEY_CAPTCHA__SECRET", "[1, 2]"),
                ("LATCHKEY_EMAIL__TRANSPORT", "smtp"),
                ("LATCHKEY_EMAIL__SMTP_HOST", "127.0.0.1"),
                ("LATCHKEY_STORE__DATA_DIR", "1234"),
                ("LATCHKEY_PASSWORD__ITERATIONS", "3"),
                ("LATCHKEY_THROTTLE__ENABLED", "false"),
                (
                    "LATCHKEY_HTTP__CORS_ORIGINS",
                    "[\"https://app.example.com\"]",
                ),
                ("LATCHKEY_EMAIL__SMTP_PORT", "2525"),
                ("LATCHKEY_LOG__FORMAT", "\"json\""),
                ("LATCHKEY_SERVER__PUBLIC_URL", "'https://auth.example.com'"),
            ],
            &FlagOverrides::default(),
        );
        let config = loaded.unwrap();
        assert_eq!(config.email.smtp_password.as_deref(), Some("123456"));
        assert_eq!(config.email.smtp_username.as_deref(), Some("true"));
        // Quotes are part of a text value: nothing is read as TOML for a text key.
        assert_eq!(
            config.email.verify_link.as_deref(),
            Some("\"https://a.example/v?t={token}\"")
        );
        assert_eq!(config.captcha.secret.as_deref(), Some("[1, 2]"));
        // A word or URL its key refuses as written is tried as a quoted TOML string.
        assert_eq!(config.log.format, LogFormat::Json);

        assert_eq!(config.email.transport, EmailTransport::Smtp);
        assert_eq!(
            config.public_origin().to_string(),
            "https://auth.example.com"
        );
        assert_eq!(config.store.data_dir, PathBuf::from("1234"));
        assert_eq!(config.password.iterations, 3);
        assert!(!config.throttle.enabled);
        assert_eq!(config.http.cors_origins.len(), 1);
        assert_eq!(config.email.smtp_port, 2525);

        for (name, value, key) in [
            (
                "LATCHKEY_PASSWORD__ITERATIONS",
                "three",
                "password.iterations",
            ),
            ("LATCHKEY_EMAIL__SMTP_PORT", "70000", "email.smtp_port"),
            ("LATCHKEY_THROTTLE__ENABLED", "yes", "throttle.enabled"),
            ("LATCHKEY_EMAIL__SMTP_TLS", "clear", "email.smtp_tls"),
            (
                "LATCHKEY_EMAIL__SMTP_PASWORD",
                "123456",
                "email.smtp_pasword",
            ),
        ] {
            let (error, _) = refusal(None, &[(name, value)], &FlagOverrides::default());
            assert!(
                error.starts_with(&format!("environment variable {name} ({key}): ")),
                "{error}"
            );
        }
        // A free-text key keeps the quotes, and validation names the variable.
        let (error, _) = refusal(
            None,
            &[("LATCHKEY_LOG__LEVEL", "\"debug\"")],
            &FlagOverrides::default(),
        );
        assert!(
            error.starts_with("log.level (environment variable LATCHKEY_LOG__LEVEL): "),
            "{error}"
        );
    }

    #[test]
    fn a_refused_secret_is_never_repeated_in_the_error() {
        for (text, key, secret) in [
            (
                "[email]\nsmtp_password = 12345678\n",
                "email.smtp_password",
                "12345678",
            ),
            (
                "[captcha]\nsecret = 87654321\n",
                "captcha.secret",
                "87654321",
            ),
            (
                "[[oauth.providers]]\nname = \"a\"\nclient_secret = 55555555\n",
                "oauth.providers[0].client_secret",
                "55555555",
            ),
        ] {
            let (error, _) = refusal(Some(text), &[], &FlagOverrides::default());
            assert!(error.contains(key), "{error}");
            assert!(!error.contains(secret), "{error}");
        }
    }

    #[test]
    fn a_file_error_names_the_file_line_column_and_key() {
        for (text, place, key) in [
            (
                "[password]\nmin_length = 8\n\n[email]\nsmtp_port = \"x\"\n",
                "line 5, column 13",
                "email.smtp_port",
            ),
            (
                "[password]\nmemroy_kib = 64\n",
                "line 2, column 1",
                "password.memroy_kib",
            ),
            ("[pasword]\nmin_length = 8\n", "line 1, column 2", "pasword"),
            (
                "[[oauth.providers]]\nname = \"a\"\nkind = \"oauth2\"\n",
                "line 3, column 8",
                "oauth.providers[0].kind",
            ),
            (
                "[session]\nshort_term_seconds = -1\n",
                "line 2, column 22",
                "session.short_term_seconds",
            ),
        ] {
            let (error, path) = refusal(Some(text), &[], &FlagOverrides::default());
            assert!(
                error.starts_with(&format!("config file {path}, {place}: {key}: ")),
                "{error}"
            );
        }
        let (error, path) = refusal(
            Some("[email]\nsmtp_port = [1\n"),
            &[],
            &FlagOverrides::default(),
        );
        assert!(
            error.starts_with(&format!("config file {path}, line 2")),
            "{error}"
        );
    }

    #[test]
    fn refused_values_name_the_key_and_where_it_was_set() {
        let none = FlagOverrides::default();
        let empty_flag = FlagOverrides {
            data_dir: Some(PathBuf::new()),
            ..FlagOverrides::default()
        };
        // (file text, variables, flags, how the error starts, what else it holds), with
        // {path} standing for the file's path.
        type Case<'a> = (
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            &'a FlagOverrides,
            &'a str,
            &'a str,
        );
        let cases: [Case<'_>; 10] = [
            (
                Some("[email]\nverify_link = \"https://app.example.com/verify\"\n"),
                &[],
                &none,
                "email.verify_link (config file {path}, line 2): ",
                "{token}",
            ),
            (
                None,
                &[(
                    "LATCHKEY_EMAIL__RESET_LINK",
                    "https://app.example.com/reset",
                )],
                &none,
                "email.reset_link (environment variable LATCHKEY_EMAIL__RESET_LINK): ",
                "{token}",
            ),
            (
                Some("[store]\ncache_size_mib = 8\ndata_dir = \"\"\n"),
                &[],
                &none,
                "store.data_dir (config file {path}, line 3): ",
                "must not be empty",
            ),
            (
                None,
                &[("LATCHKEY_DATA_DIR", "")],
                &none,
                "store.data_dir (environment variable LATCHKEY_DATA_DIR): ",
                "must not be empty",
            ),
            (
                None,
                &[],
                &empty_flag,
                "store.data_dir (flag --data-dir): ",
                "must not be empty",
            ),
            (
                Some("[session]\n\nshort_term_seconds = 2000000\n"),
                &[],
                &none,
                "session.long_term_seconds (the default): ",
                "session.short_term_seconds (2000000, config file {path}, line 3)",
            ),
            (
                Some("[email]\ntransport = \"smtp\"\nsmtp_host = \"mail.example.com\"\n"),
                &[("LATCHKEY_EMAIL__SMTP_TLS", "none")],
                &none,
                "email.smtp_tls (environment variable LATCHKEY_EMAIL__SMTP_TLS): ",
                "\"mail.example.com\" (config file {path}, line 3)",
            ),
            (
                None,
                &[("LATCHKEY_PASSWORD__MIN_LENGTH", "0")],
                &none,
                "password.min_length (environment variable LATCHKEY_PASSWORD__MIN_LENGTH): ",
                "between 1 and 72",
            ),
            (
                Some("[password]\nparallelism = 4\nmemory_kib = 16\n"),
                &[],
                &none,
                "password.memory_kib (config file {path}, line 3): ",
                "password.parallelism (config file {path}, line 2)",
            ),
            (
                Some(
                    "[oauth]\nleeway_seconds = 5\n\n[[oauth.providers]]\nname = \"x\"\nkind = \"oidc\"\n",
                ),
                &[],
                &none,
                "oauth.providers[0] (config file {path}, line 4): ",
                "needs issuer",
            ),
        ];
        for (file_text, environment, flags, start, detail) in cases {
            let (error, path) = refusal(file_text, environment, flags);
            let start = start.replace("{path}", &path);
            let detail = detail.replace("{path}", &path);
            assert!(error.starts_with(&start), "{error}\nshould start {start}");
            assert!(error.contains(&detail), "{error}\nshould hold {detail}");
        }
    }

    #[test]
    fn unencrypted_smtp_is_allowed_to_loopback_hosts_only() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "mail.example.com",
            "10.0.0.1",
            "::2",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        let smtp_none = [
            ("LATCHKEY_EMAIL__TRANSPORT", "smtp"),
            ("LATCHKEY_EMAIL__SMTP_TLS", "none"),
            ("LATCHKEY_EMAIL__SMTP_HOST", "127.0.0.1"),
        ];
        let (loaded, _) = load_text(None, &smtp_none, &FlagOverrides::default());
        assert!(loaded.is_ok(), "{loaded:?}");
        // With the outbox transport the SMTP settings are not used, so not refused.
        let outbox = [
            ("LATCHKEY_EMAIL__SMTP_TLS", "none"),
            ("LATCHKEY_EMAIL__SMTP_HOST", "mail.example.com"),
        ];
        let (loaded, _) = load_text(None, &outbox, &FlagOverrides::default());
        assert!(loaded.is_ok(), "{loaded:?}");
    }

    #[test]
    fn links_with_token_and_equal_session_lifetimes_are_accepted() {
        let (loaded, _) = load_text(
            Some(
                "[email]\nverify_link = \"https://app.example.com/v?token={token}\"\n\
                 reset_link = \"https://app.example.com/r/{token}\"\n\
                 [session]\nlong_term_seconds = 600\nshort_term_seconds = 600\n",
            ),
            &[],
            &FlagOverrides::default(),
        );
        assert!(loaded.is_ok(), "{loaded:?}");
    }

    #[test]
    fn networks_contain_their_addresses() {
        let network: IpNetwork = "10.1.0.0/16".parse().unwrap();
        assert!(network.contains("10.1.200.3".parse().unwrap()));
        assert!(!network.contains("10.2.0.1".parse().unwrap()));
        let single: IpNetwork = "::1".parse().unwrap();
        assert!(single.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
    }
}
