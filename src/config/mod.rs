//! Configuration: typed settings with safe defaults, layered as built-in defaults, then a TOML
//! file, then `LATCHKEY_<SECTION>__<KEY>` environment variables, then command-line flags.
//! An unknown key, an unknown `LATCHKEY_` variable or a bad value stops the start, naming it.
//! This file layers and validates; the sections are in `sections.rs`, and where each key was
//! set in `sources.rs`. Checks that read files or need another layer's parser run later, in
//! `app::preflight`, and name the key's source through `Config::refusal`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::DeTable;

use crate::config::sources::{
    KeySource, KeySources, TextPosition, key_at_offset, position_in_text,
};
use crate::model::PASSWORD_MAX_CHARACTERS;
use crate::model::Secret;
use crate::model::net::Origin;

mod forward_auth;
mod sections;
pub mod sources;

pub use crate::config::forward_auth::{ForwardAuthConfig, ForwardAuthRule, RuleRequirement};
// The sections are named through `config` itself: `sections.rs` only keeps this file short.
pub use crate::config::sections::{
    AUTO_CACHE_FILE_FRACTION, AUTO_CACHE_MAX_MIB, AUTO_CACHE_MIN_MIB, AuthConfig, CaptchaConfig,
    CaptchaProvider, EmailConfig, EmailTransport, HttpConfig, KeysConfig, LogConfig, LogFormat,
    MetricsConfig, OAuthConfig, OAuthProviderConfig, OAuthProviderKind, OAuthSettingProblem,
    PROVIDER_NAME_MAX_CHARACTERS, PagesConfig, PasswordConfig, RefusedOAuthSetting, ServerConfig,
    SessionConfig, SignupConfig, SmtpTls, StoreBackend, StoreConfig, ThrottleConfig,
};

/// Environment variables that are flags, not config keys.
const FLAG_VARIABLES: [&str; 2] = ["LATCHKEY_DATA_DIR", "LATCHKEY_CONFIG"];

/// `LATCHKEY_OAUTH_CLIENT_SECRET__<NAME>` sets the `client_secret` of the provider table
/// named `<name>` (compared in upper case, `-` as `_`): the providers are in the file, their
/// secrets need not be.
const OAUTH_CLIENT_SECRET_PREFIX: &str = "LATCHKEY_OAUTH_CLIENT_SECRET__";

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
    pub pages: PagesConfig,
    pub email: EmailConfig,
    pub captcha: CaptchaConfig,
    pub oauth: OAuthConfig,
    pub forward_auth: ForwardAuthConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// Where each key was set, kept for the checks made after loading (`app::preflight`).
    #[serde(skip)]
    sources: KeySources,
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

/// The most connections `[store] postgres_pool_size` may ask for: PostgreSQL's own default
/// `max_connections` is 100, shared by every node.
pub const MAX_POSTGRES_POOL_SIZE: usize = 1000;

/// The largest `[store] cache_size_mib` accepted (1 TiB): beyond any store this serves, and
/// small enough that the size in bytes cannot overflow.
const MAX_STORE_CACHE_SIZE_MIB: usize = 1024 * 1024;

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
            if FLAG_VARIABLES.contains(&name.as_str())
                || name.starts_with(OAUTH_CLIENT_SECRET_PREFIX)
            {
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
        apply_oauth_client_secrets(&mut config, &variables, &mut sources)?;
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
        config.sources = sources;
        config.validate()?;
        Ok(config)
    }

    /// The error that refuses `key`'s value, naming where it was set: for `validate` and for
    /// the checks made after loading (`app::preflight`).
    pub fn refusal(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Refused {
            key: key.to_owned(),
            set_in: self.sources.of(key),
            message,
        }
    }

    /// Refuses the values the server cannot or should not run with, naming the key and
    /// where it was set (`check-config` and every start call this, through `load`).
    fn validate(&self) -> Result<(), ConfigError> {
        let sources = &self.sources;
        let refuse = |key: &str, message: String| Err(self.refusal(key, message));
        if let Err(refused) = self.oauth.check() {
            return refuse(&refused.key, refused.problem.to_string());
        }
        if let Err((key, problem)) = self.forward_auth.check() {
            return refuse(&key, problem);
        }
        if let Some(domain) = &self.session.cookie_domain {
            let public_host = self.server.public_url.as_ref().map(|url| url.host.as_str());
            if let Err(problem) = check_cookie_domain(domain, public_host) {
                return refuse("session.cookie_domain", problem);
            }
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
            (
                "throttle.second_factor_failures_per_account_per_hour",
                self.throttle.second_factor_failures_per_account_per_hour == 0,
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
        let title_length = self.pages.title.chars().count();
        if !(1..=100).contains(&title_length) || self.pages.title.chars().any(char::is_control) {
            return refuse(
                "pages.title",
                "must be 1 to 100 characters, none of them control characters".to_owned(),
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
        if !(1..=PASSWORD_MAX_CHARACTERS).contains(&self.password.min_length) {
            return refuse(
                "password.min_length",
                format!("must be between 1 and {PASSWORD_MAX_CHARACTERS}"),
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
        if self
            .store
            .cache_size_mib
            .is_some_and(|mib| !(1..=MAX_STORE_CACHE_SIZE_MIB).contains(&mib))
        {
            return refuse(
                "store.cache_size_mib",
                format!(
                    "must be between 1 and {MAX_STORE_CACHE_SIZE_MIB} (MiB of redb's page cache)"
                ),
            );
        }
        if self.store.backend == StoreBackend::Postgres && self.store.postgres_url.is_none() {
            return refuse(
                "store.postgres_url",
                "must be set with backend = \"postgres\": it names the database".to_owned(),
            );
        }
        if !(1..=MAX_POSTGRES_POOL_SIZE).contains(&self.store.postgres_pool_size) {
            return refuse(
                "store.postgres_pool_size",
                format!("must be between 1 and {MAX_POSTGRES_POOL_SIZE} (connections per node)"),
            );
        }
        if self.captcha.provider != CaptchaProvider::None && self.captcha.secret.is_none() {
            return refuse(
                "captcha.provider",
                "needs captcha.secret (the provider's secret)".to_owned(),
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
        if let Some(metrics_listen) = self.metrics.listen
            && metrics_listen.port() != 0
            && metrics_listen == self.server.listen
        {
            return refuse(
                "metrics.listen",
                format!(
                    "must differ from server.listen ({}): the metrics get a listener of \
                     their own",
                    sources.of("server.listen")
                ),
            );
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

/// Sets each provider's `client_secret` from its `LATCHKEY_OAUTH_CLIENT_SECRET__<NAME>`
/// variable. A variable that names no provider table is refused, as an unknown key is.
fn apply_oauth_client_secrets(
    config: &mut Config,
    variables: &BTreeMap<String, String>,
    sources: &mut KeySources,
) -> Result<(), ConfigError> {
    for (name, value) in variables {
        let Some(suffix) = name.strip_prefix(OAUTH_CLIENT_SECRET_PREFIX) else {
            continue;
        };
        let found = config
            .oauth
            .providers
            .iter_mut()
            .enumerate()
            .find(|(_, provider)| provider.name.to_ascii_uppercase().replace('-', "_") == suffix);
        let Some((index, provider)) = found else {
            return Err(ConfigError::Environment {
                name: name.clone(),
                key: None,
                message: "names no [[oauth.providers]] table".to_owned(),
            });
        };
        provider.client_secret = Some(Secret::new(value.clone()));
        sources.set(
            format!("oauth.providers[{index}].client_secret"),
            KeySource::Environment { name: name.clone() },
        );
    }
    Ok(())
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

/// A cookie domain the browser will store and that covers the public URL's host: a host name
/// of at least two labels (no leading dot, port or address), equal to `public_host` or a
/// parent of it. Without `server.public_url` the server's own host is an address, which no
/// cookie domain covers.
fn check_cookie_domain(domain: &str, public_host: Option<&str>) -> Result<(), String> {
    let is_name = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
        && domain.parse::<IpAddr>().is_err()
        && !domain
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|byte| byte.is_ascii_digit()));
    if !is_name {
        return Err(format!(
            "{domain:?} must be a host name of at least two labels, without a leading dot, \
             port or address (example.com)"
        ));
    }
    let Some(public_host) = public_host else {
        return Err("needs server.public_url, whose host it must cover".to_owned());
    };
    let public_host = public_host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    if public_host != domain && !public_host.ends_with(&format!(".{domain}")) {
        return Err(format!(
            "{domain:?} must be server.public_url's host ({public_host}) or a parent domain of it, \
             or browsers drop the cookie"
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_backend_needs_its_url_and_reads_it_from_the_environment() {
        let load = |variables: &[(&str, &str)]| {
            let environment = variables
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect::<Vec<_>>();
            Config::load(None, environment, &FlagOverrides::default())
        };
        let refused = load(&[("LATCHKEY_STORE__BACKEND", "postgres")]).unwrap_err();
        assert!(
            refused.to_string().contains("store.postgres_url"),
            "{refused}"
        );
        let config = load(&[
            ("LATCHKEY_STORE__BACKEND", "postgres"),
            (
                "LATCHKEY_STORE__POSTGRES_URL",
                "postgres://latchkey:pw@db/latchkey",
            ),
        ])
        .unwrap();
        assert_eq!(config.store.backend, StoreBackend::Postgres);
        assert_eq!(
            config.store.postgres_url.as_ref().unwrap().expose_secret(),
            "postgres://latchkey:pw@db/latchkey"
        );
        assert_eq!(config.store.postgres_pool_size, 16);
        let refused = load(&[("LATCHKEY_STORE__POSTGRES_POOL_SIZE", "0")]).unwrap_err();
        assert!(
            refused.to_string().contains("store.postgres_pool_size"),
            "{refused}"
        );
        assert_eq!(load(&[]).unwrap().store.backend, StoreBackend::Redb);
    }

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
    fn a_provider_client_secret_comes_from_the_environment_and_never_prints() {
        let file = "[[oauth.providers]]\nname = \"corp-idp\"\nkind = \"oidc\"\n\
                    issuer = \"https://idp.example.com\"\nclient_id = \"latchkey\"\n";
        let (loaded, _) = load_text(
            Some(file),
            &[(
                "LATCHKEY_OAUTH_CLIENT_SECRET__CORP_IDP",
                "from-the-environment",
            )],
            &FlagOverrides::default(),
        );
        let config = loaded.unwrap();
        let provider = &config.oauth.providers[0];
        assert_eq!(
            provider.client_secret.as_ref().unwrap().expose_secret(),
            "from-the-environment"
        );
        assert!(provider.offers_browser_sign_in());
        assert_eq!(
            config.sources.of("oauth.providers[0].client_secret"),
            KeySource::Environment {
                name: "LATCHKEY_OAUTH_CLIENT_SECRET__CORP_IDP".to_owned()
            }
        );
        assert!(!format!("{config:?}").contains("from-the-environment"));
        let (error, _) = refusal(
            Some(file),
            &[("LATCHKEY_OAUTH_CLIENT_SECRET__OTHER", "secret-value")],
            &FlagOverrides::default(),
        );
        assert!(
            error.contains("names no [[oauth.providers]] table"),
            "{error}"
        );
        assert!(!error.contains("secret-value"), "{error}");
        let both = format!("{file}client_secret = \"a\"\nclient_secret_file = \"/x\"\n");
        let (error, _) = refusal(Some(&both), &[], &FlagOverrides::default());
        assert!(error.contains("not both"), "{error}");
    }

    #[test]
    fn the_metrics_listener_is_off_by_default_and_needs_an_address_of_its_own() {
        let (loaded, _) = load_text(None, &[], &FlagOverrides::default());
        assert_eq!(loaded.unwrap().metrics.listen, None);
        let (loaded, _) = load_text(
            Some("[metrics]\nlisten = \"127.0.0.1:9464\"\n"),
            &[],
            &FlagOverrides::default(),
        );
        assert_eq!(
            loaded.unwrap().metrics.listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let (error, path) = refusal(
            Some("[server]\nlisten = \"127.0.0.1:9000\"\n[metrics]\nlisten = \"127.0.0.1:9000\"\n"),
            &[],
            &FlagOverrides::default(),
        );
        assert_eq!(
            error,
            format!(
                "metrics.listen (config file {path}, line 4): must differ from server.listen \
                 (config file {path}, line 2): the metrics get a listener of their own"
            )
        );
        let (error, _) = refusal(
            None,
            &[("LATCHKEY_METRICS__LISTEN", "not an address")],
            &FlagOverrides::default(),
        );
        assert!(error.contains("LATCHKEY_METRICS__LISTEN"), "{error}");
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
        assert_eq!(
            config
                .email
                .smtp_password
                .as_ref()
                .map(|secret| secret.expose_secret().as_str()),
            Some("123456")
        );
        assert_eq!(config.email.smtp_username.as_deref(), Some("true"));
        // Quotes are part of a text value: nothing is read as TOML for a text key.
        assert_eq!(
            config.email.verify_link.as_deref(),
            Some("\"https://a.example/v?t={token}\"")
        );
        assert_eq!(
            config
                .captcha
                .secret
                .as_ref()
                .map(|secret| secret.expose_secret().as_str()),
            Some("[1, 2]")
        );
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
    fn cookie_domains_cover_the_public_host_and_rule_values_name_their_key() {
        for (domain, public_host, accepted) in [
            ("example.com", Some("auth.example.com"), true),
            ("auth.example.com", Some("auth.example.com"), true),
            ("Example.com", Some("auth.example.com"), true),
            ("ample.com", Some("auth.example.com"), false),
            (".example.com", Some("auth.example.com"), false),
            ("com", Some("auth.example.com"), false),
            ("example.com:443", Some("auth.example.com"), false),
            ("10.0.0.1", Some("10.0.0.1"), false),
            ("example.com", None, false),
        ] {
            let result = check_cookie_domain(domain, public_host);
            assert_eq!(result.is_ok(), accepted, "{domain} {result:?}");
        }
        let (error, _) = refusal(
            Some(
                "[[forward_auth.rules]]\nhost = \"a.example\"\nrequire_permission = \"read:everything\"\n",
            ),
            &[],
            &FlagOverrides::default(),
        );
        assert!(
            error.contains("forward_auth.rules[0].require_permission")
                && error.contains("no permission name"),
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
        let cases: [Case<'_>; 15] = [
            (
                None,
                &[("LATCHKEY_STORE__CACHE_SIZE_MIB", "0")],
                &none,
                "store.cache_size_mib (environment variable LATCHKEY_STORE__CACHE_SIZE_MIB): ",
                "between 1 and 1048576",
            ),
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
            (
                Some(
                    "[[forward_auth.rules]]\nhost = \"a.example\"\ndeny = true\n\n[[forward_auth.rules]]\nhost = \"b.example\"\nrequire_role = \"admin\"\ndeny = true\n",
                ),
                &[],
                &none,
                "forward_auth.rules[1] (config file {path}, line 5): ",
                "exactly one of require_permission, require_role and deny = true",
            ),
            (
                Some(
                    "[[forward_auth.rules]]\nhost = \"a.example\"\npath_prefix = \"/x/../admin\"\ndeny = true\n",
                ),
                &[],
                &none,
                "forward_auth.rules[0].path_prefix (config file {path}, line 3): ",
                ". or .. segments",
            ),
            (
                Some("[session]\ncookie_domain = \"example.com\"\n"),
                &[],
                &none,
                "session.cookie_domain (config file {path}, line 2): ",
                "needs server.public_url",
            ),
            (
                Some("[server]\npublic_url = \"https://auth.example.com\"\n"),
                &[("LATCHKEY_SESSION__COOKIE_DOMAIN", "example.org")],
                &none,
                "session.cookie_domain (environment variable LATCHKEY_SESSION__COOKIE_DOMAIN): ",
                "public_url's host (auth.example.com) or a parent domain",
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
}
