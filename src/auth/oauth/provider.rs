//! The calls to OAuth providers: `OAuthProviders`, built once from `[[oauth.providers]]`
//! with the shared HTTP client, verifies a provider token and reads the account behind it.
//! An OIDC ID token is checked against the provider's keys (discovery, then the JWKS through
//! `jwks::JwksCache`); an access token goes to RFC 7662 introspection, then to userinfo.
//! Every answer is bounded in size and time, and a token or secret never reaches the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::auth::AuthError;
use crate::auth::oauth::jwks::{
    JwksCache, KeyFileError, KeySelection, KeySet, is_accepted_algorithm, key_set_from_document,
    read_key_file,
};
use crate::auth::oauth::{ProviderToken, lock};
use crate::config::{
    OAuthConfig, OAuthProviderConfig, OAuthProviderKind, OAuthSettingProblem, RefusedOAuthSetting,
};
use crate::model::Secret;
use crate::model::clock::Clock;
use crate::model::email_address::EmailAddress;
use crate::model::net::parse_provider_url;

/// Longer provider tokens are refused unread.
const PROVIDER_TOKEN_MAX_BYTES: usize = 16 * 1024;
/// Larger provider answers (JWKS, discovery, introspection, userinfo) are refused.
const PROVIDER_ANSWER_MAX_BYTES: usize = 1024 * 1024;
const SUBJECT_MAX_CHARACTERS: usize = 255;

/// The configured providers and their key caches, with the shared HTTP client: built once.
pub struct OAuthProviders {
    providers: Vec<Provider>,
    pub(super) http_client: reqwest::Client,
    /// Time allowed for each call to a provider.
    call_timeout: Duration,
    leeway_seconds: u64,
    jwks_refresh_floor: Duration,
}

impl std::fmt::Debug for OAuthProviders {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_list()
            .entries(self.providers.iter().map(|provider| &provider.config.name))
            .finish()
    }
}

/// Why the providers cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum OAuthSetupError {
    /// A check `Config::load` makes too, here for a configuration built without it.
    #[error("{}", .0.problem)]
    Refused(RefusedOAuthSetting),
    #[error("oauth provider {name:?}: {source}")]
    UnreadableKeyFile {
        index: usize,
        name: String,
        source: KeyFileError,
    },
    #[error("oauth provider {name:?}: client_secret_file {path}: {problem}")]
    UnreadableSecretFile {
        index: usize,
        name: String,
        path: String,
        problem: String,
    },
}

impl OAuthSetupError {
    /// The key the error is about, as a dotted path (`oauth.providers[0].jwks_file`).
    pub fn key(&self) -> String {
        match self {
            OAuthSetupError::Refused(refused) => refused.key.clone(),
            OAuthSetupError::UnreadableKeyFile { index, .. } => {
                format!("oauth.providers[{index}].jwks_file")
            }
            OAuthSetupError::UnreadableSecretFile { index, .. } => {
                format!("oauth.providers[{index}].client_secret_file")
            }
        }
    }
}

pub struct Provider {
    pub config: OAuthProviderConfig,
    /// OIDC: the accepted `aud` values.
    audiences: Vec<String>,
    keys: ProviderKeys,
    /// `client_secret`, or the content of `client_secret_file`.
    pub(super) client_secret: Option<Secret<String>>,
    /// OIDC: the issuer's discovery document, fetched once when first needed.
    discovered: Mutex<Option<Arc<DiscoveredEndpoints>>>,
}

/// What this server uses of an issuer's `/.well-known/openid-configuration`.
#[derive(Debug)]
pub struct DiscoveredEndpoints {
    pub jwks_url: Option<url::Url>,
    pub authorization_url: Option<url::Url>,
    pub token_url: Option<url::Url>,
    pub userinfo_url: Option<url::Url>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Provider")
            .field("name", &self.config.name)
            .field("kind", &self.config.kind)
            .finish_non_exhaustive()
    }
}

enum ProviderKeys {
    /// A userinfo provider verifies no signatures.
    NotNeeded,
    /// `jwks_file`: read at start, never refreshed.
    Fixed(Arc<KeySet>),
    Fetched(Box<FetchedKeys>),
}

struct FetchedKeys {
    /// `jwks_url`; `None`: the `jwks_uri` of the issuer's discovery document.
    configured_url: Option<url::Url>,
    cache: JwksCache,
}

/// What a provider says about the account behind a token.
#[derive(Clone, Debug)]
pub struct ProviderAccount {
    pub subject: String,
    pub email: Option<EmailAddress>,
    pub email_verified: bool,
}

impl OAuthProviders {
    /// Checks the configuration and reads `jwks_file`s; every call goes through
    /// `http_client`. Warns about every provider that accepts unbound tokens.
    pub fn new(
        config: &OAuthConfig,
        http_client: reqwest::Client,
    ) -> Result<OAuthProviders, OAuthSetupError> {
        config.check().map_err(OAuthSetupError::Refused)?;
        let mut providers = Vec::new();
        for (index, provider_config) in config.providers.iter().enumerate() {
            let keys =
                match provider_config.kind {
                    OAuthProviderKind::Userinfo => ProviderKeys::NotNeeded,
                    OAuthProviderKind::Oidc => match &provider_config.jwks_file {
                        Some(path) => ProviderKeys::Fixed(Arc::new(read_key_file(path).map_err(
                            |source| OAuthSetupError::UnreadableKeyFile {
                                index,
                                name: provider_config.name.clone(),
                                source,
                            },
                        )?)),
                        None => ProviderKeys::Fetched(Box::new(FetchedKeys {
                            configured_url: configured_jwks_url(index, provider_config)?,
                            cache: JwksCache::default(),
                        })),
                    },
                };
            if provider_config.allow_unbound_tokens {
                tracing::warn!(
                    provider = provider_config.name,
                    "allow_unbound_tokens: this provider's access tokens are not checked to be \
                     issued to us, so a token any other app obtained signs its user in here"
                );
            }
            let client_secret = match &provider_config.client_secret_file {
                Some(path) => Some(read_secret_file(path).map_err(|problem| {
                    OAuthSetupError::UnreadableSecretFile {
                        index,
                        name: provider_config.name.clone(),
                        path: path.display().to_string(),
                        problem,
                    }
                })?),
                None => provider_config.client_secret.clone(),
            };
            providers.push(Provider {
                audiences: provider_config.effective_audiences(),
                config: provider_config.clone(),
                keys,
                client_secret,
                discovered: Mutex::new(None),
            });
        }
        Ok(OAuthProviders {
            providers,
            http_client,
            call_timeout: Duration::from_secs(config.provider_timeout_seconds),
            leeway_seconds: config.leeway_seconds,
            jwks_refresh_floor: Duration::from_secs(config.jwks_refresh_floor_seconds),
        })
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|provider| provider.config.name == name)
    }

    /// The providers people sign in with from the browser, in the configuration's order.
    pub fn browser_providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers
            .iter()
            .filter(|provider| provider.config.offers_browser_sign_in())
    }

    /// Verifies a token with its provider and reads the account it stands for. `clock` is
    /// the app's: it dates `iat` and the JWKS refresh floor.
    pub async fn verify(
        &self,
        provider: &Provider,
        token: &ProviderToken,
        clock: &Clock,
    ) -> Result<ProviderAccount, AuthError> {
        let token = token.expose_secret().trim();
        if token.is_empty() || token.len() > PROVIDER_TOKEN_MAX_BYTES {
            return Err(AuthError::InvalidProviderToken("empty or too long"));
        }
        let claims = match provider.config.kind {
            OAuthProviderKind::Oidc => self.verify_id_token(provider, token, clock).await?,
            OAuthProviderKind::Userinfo => self.userinfo_of_access_token(provider, token).await?,
        };
        provider_account(&provider.config, &claims)
    }

    pub(super) async fn verify_id_token(
        &self,
        provider: &Provider,
        token: &str,
        clock: &Clock,
    ) -> Result<Map<String, Value>, AuthError> {
        // An `alg` outside jsonwebtoken's list, `none` included, fails here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidProviderToken("malformed or unsupported header"))?;
        if !is_accepted_algorithm(header.alg) {
            return Err(AuthError::InvalidProviderToken("algorithm not accepted"));
        }
        let keys = self
            .keys_for(provider, header.kid.as_deref(), header.alg, clock)
            .await?;
        let key = match keys.select(header.kid.as_deref(), header.alg) {
            KeySelection::Found(key) => key,
            KeySelection::WrongAlgorithm => {
                return Err(AuthError::InvalidProviderToken(
                    "the key does not name this algorithm",
                ));
            }
            KeySelection::Unknown => return Err(AuthError::InvalidProviderToken("unknown key")),
        };
        // jsonwebtoken checks `exp` and `nbf` on the system clock itself; `iat` is ours.
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[provider.config.issuer.as_deref().unwrap_or_default()]);
        validation.set_audience(&provider.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding_key, &validation)
                .map_err(|error| AuthError::InvalidProviderToken(id_token_problem(&error)))?
                .claims;
        let leeway = i64::try_from(self.leeway_seconds).unwrap_or(0);
        match claims.get("iat").and_then(Value::as_f64) {
            Some(issued_at) if issued_at <= (clock.now_unix_seconds() + leeway) as f64 => {}
            Some(_) => return Err(AuthError::InvalidProviderToken("issued in the future")),
            None => return Err(AuthError::InvalidProviderToken("no iat")),
        }
        if let Some(authorized_party) = claims.get("azp")
            && !authorized_party
                .as_str()
                .is_some_and(|party| provider.audiences.iter().any(|audience| audience == party))
        {
            return Err(AuthError::InvalidProviderToken("azp is not our client"));
        }
        Ok(claims)
    }

    /// The key set to check a token against: the file's, or the cached JWKS, which fetches
    /// through `fetch_key_set` when it must.
    async fn keys_for(
        &self,
        provider: &Provider,
        key_id: Option<&str>,
        algorithm: Algorithm,
        clock: &Clock,
    ) -> Result<Arc<KeySet>, AuthError> {
        match &provider.keys {
            ProviderKeys::Fixed(keys) => Ok(Arc::clone(keys)),
            ProviderKeys::NotNeeded => Err(AuthError::Internal(
                "a userinfo provider has no keys".to_owned(),
            )),
            ProviderKeys::Fetched(fetched) => {
                fetched
                    .cache
                    .keys_for(key_id, algorithm, self.jwks_refresh_floor, clock, || {
                        self.fetch_key_set(provider, fetched)
                    })
                    .await
            }
        }
    }

    async fn fetch_key_set(
        &self,
        provider: &Provider,
        fetched: &FetchedKeys,
    ) -> Result<KeySet, AuthError> {
        let jwks_url = match &fetched.configured_url {
            Some(url) => url.clone(),
            None => match &self.discovered_endpoints(provider).await?.jwks_url {
                Some(url) => url.clone(),
                None => {
                    tracing::warn!(
                        provider = provider.config.name,
                        "the discovery document names no jwks_uri"
                    );
                    return Err(AuthError::ProviderUnreachable);
                }
            },
        };
        let request = self
            .http_client
            .get(jwks_url)
            .header(reqwest::header::ACCEPT, "application/json");
        let document = match self.call(&provider.config.name, "jwks", request).await? {
            (200, document) => document,
            (status, _) => return Err(unreachable(&provider.config.name, "jwks", status)),
        };
        key_set_from_document(&document).map_err(|problem| {
            tracing::warn!(provider = provider.config.name, message = %problem, "unusable JWKS");
            AuthError::ProviderUnreachable
        })
    }

    /// The endpoints of `<issuer>/.well-known/openid-configuration`, fetched once (a failed
    /// fetch is tried again at the next need). Its `issuer` must be the configured one.
    pub(super) async fn discovered_endpoints(
        &self,
        provider: &Provider,
    ) -> Result<Arc<DiscoveredEndpoints>, AuthError> {
        if let Some(endpoints) = lock(&provider.discovered).clone() {
            return Ok(endpoints);
        }
        let name = &provider.config.name;
        let issuer = provider.config.issuer.as_deref().unwrap_or_default();
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let request = self
            .http_client
            .get(discovery_url)
            .header(reqwest::header::ACCEPT, "application/json");
        let document = match self.call(name, "discovery", request).await? {
            (200, document) => document,
            (status, _) => return Err(unreachable(name, "discovery", status)),
        };
        let misconfigured = |message: &str| {
            tracing::warn!(provider = name, message, "unusable discovery document");
            AuthError::ProviderUnreachable
        };
        if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(misconfigured("its issuer is not the configured one"));
        }
        let endpoint = |member: &str| -> Result<Option<url::Url>, AuthError> {
            match document.get(member) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => parse_provider_url(text)
                    .map(Some)
                    .map_err(|error| misconfigured(&format!("{member}: {error}"))),
                Some(_) => Err(misconfigured(&format!("{member} is not a string"))),
            }
        };
        let endpoints = Arc::new(DiscoveredEndpoints {
            jwks_url: endpoint("jwks_uri")?,
            authorization_url: endpoint("authorization_endpoint")?,
            token_url: endpoint("token_endpoint")?,
            userinfo_url: endpoint("userinfo_endpoint")?,
        });
        *lock(&provider.discovered) = Some(Arc::clone(&endpoints));
        Ok(endpoints)
    }

    /// Introspects an access token (when configured), then asks the userinfo URL whose it is.
    async fn userinfo_of_access_token(
        &self,
        provider: &Provider,
        token: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let config = &provider.config;
        let name = &config.name;
        if config.introspection_url.is_none() && !config.allow_unbound_tokens {
            // A browser-only provider: its access tokens come from our own code exchange.
            return Err(AuthError::InvalidProviderToken(
                "this provider signs in from the browser only",
            ));
        }
        if let Some(introspection_url) = &config.introspection_url {
            let client_id = config.client_id.as_deref().unwrap_or_default();
            let mut form = vec![("token", token), ("token_type_hint", "access_token")];
            let mut request = self
                .http_client
                .post(introspection_url)
                .header(reqwest::header::ACCEPT, "application/json");
            match &provider.client_secret {
                Some(secret) => {
                    request = request.basic_auth(client_id, Some(secret.expose_secret()));
                }
                None => form.push(("client_id", client_id)),
            }
            let answer = match self
                .call(name, "introspection", request.form(&form))
                .await?
            {
                (200, answer) => answer,
                (status @ (401 | 403), _) => {
                    tracing::warn!(
                        provider = name,
                        status,
                        "the introspection endpoint refused our client credentials"
                    );
                    return Err(AuthError::ProviderUnreachable);
                }
                (status, _) => return Err(unreachable(name, "introspection", status)),
            };
            if answer.get("active") != Some(&Value::Bool(true)) {
                return Err(AuthError::InvalidProviderToken("inactive access token"));
            }
            if answer.get("client_id").and_then(Value::as_str) != Some(client_id) {
                return Err(AuthError::InvalidProviderToken(
                    "access token issued to another client",
                ));
            }
        }
        let userinfo_url = config.userinfo_url.as_deref().unwrap_or_default();
        self.userinfo(provider, userinfo_url, token).await
    }

    /// The account a userinfo URL answers for an access token, as a JSON object.
    pub(super) async fn userinfo(
        &self,
        provider: &Provider,
        userinfo_url: &str,
        token: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let name = &provider.config.name;
        let request = self
            .http_client
            .get(userinfo_url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        match self.call(name, "userinfo", request).await? {
            (200, Value::Object(account)) => Ok(account),
            (200, _) => Err(unreachable(name, "userinfo", 200)),
            (400 | 401 | 403, _) => Err(AuthError::InvalidProviderToken(
                "the userinfo URL refused the token",
            )),
            (status, _) => Err(unreachable(name, "userinfo", status)),
        }
    }

    /// Sends one request, within `[oauth] provider_timeout_seconds`, and reads a JSON answer
    /// of bounded size. A failure to connect, a timeout or a body that is not JSON is
    /// `ProviderUnreachable`, logged without secrets.
    pub(super) async fn call(
        &self,
        provider_name: &str,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), AuthError> {
        let failed = |message: String| {
            tracing::warn!(
                provider = provider_name,
                call = what,
                message,
                "OAuth provider call failed"
            );
            AuthError::ProviderUnreachable
        };
        let mut response = request
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|error| failed(error.without_url().to_string()))?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|length| length > PROVIDER_ANSWER_MAX_BYTES as u64)
        {
            return Err(failed("the answer is too large".to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| failed(error.without_url().to_string()))?
        {
            if body.len() + chunk.len() > PROVIDER_ANSWER_MAX_BYTES {
                return Err(failed("the answer is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            return Ok((status, Value::Null));
        }
        let document = serde_json::from_slice(&body)
            .map_err(|_| failed(format!("status {status} with a body that is not JSON")))?;
        Ok((status, document))
    }
}

/// A client secret from its file: the whole file, surrounding whitespace dropped; an empty
/// one is refused.
fn read_secret_file(path: &std::path::Path) -> Result<Secret<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err("the file is empty".to_owned());
    }
    Ok(Secret::new(secret.to_owned()))
}

/// The configured `jwks_url`, parsed; `OAuthConfig::check` has already accepted it.
fn configured_jwks_url(
    index: usize,
    provider_config: &OAuthProviderConfig,
) -> Result<Option<url::Url>, OAuthSetupError> {
    let Some(text) = provider_config.jwks_url.as_deref() else {
        return Ok(None);
    };
    parse_provider_url(text).map(Some).map_err(|source| {
        OAuthSetupError::Refused(RefusedOAuthSetting {
            key: format!("oauth.providers[{index}].jwks_url"),
            problem: OAuthSettingProblem::UnusableUrl {
                name: provider_config.name.clone(),
                field: "jwks_url",
                source,
            },
        })
    })
}

pub(super) fn unreachable(provider_name: &str, what: &'static str, status: u16) -> AuthError {
    tracing::warn!(
        provider = provider_name,
        call = what,
        status,
        "unexpected OAuth provider answer"
    );
    AuthError::ProviderUnreachable
}

fn id_token_problem(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed",
    }
}

/// Reads subject, email and email verification from the provider's claims or userinfo.
pub(super) fn provider_account(
    config: &OAuthProviderConfig,
    claims: &Map<String, Value>,
) -> Result<ProviderAccount, AuthError> {
    let subject = match claims.get(&config.subject_field) {
        Some(Value::String(text)) => text.clone(),
        // GitHub-style numeric ids.
        Some(Value::Number(number)) if number.is_u64() || number.is_i64() => number.to_string(),
        _ => return Err(AuthError::InvalidProviderToken("no subject")),
    };
    let subject_ok = !subject.is_empty()
        && subject.chars().count() <= SUBJECT_MAX_CHARACTERS
        && !subject.chars().any(char::is_control);
    if !subject_ok {
        return Err(AuthError::InvalidProviderToken("unusable subject"));
    }
    let email = claims
        .get(&config.email_field)
        .and_then(Value::as_str)
        .and_then(|text| EmailAddress::parse(text).ok());
    let email_verified = match claims.get(&config.email_verified_field) {
        Some(Value::Bool(verified)) => *verified,
        // Some providers send the boolean as a string.
        Some(Value::String(text)) => text == "true",
        _ => false,
    };
    Ok(ProviderAccount {
        subject,
        email,
        email_verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userinfo_provider() -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: "github".to_owned(),
            kind: OAuthProviderKind::Userinfo,
            userinfo_url: Some("https://api.github.com/user".to_owned()),
            introspection_url: Some("https://example.com/introspect".to_owned()),
            client_id: Some("client".to_owned()),
            client_secret: Some(crate::model::Secret::new("very-secret".to_owned())),
            ..OAuthProviderConfig::default()
        }
    }

    #[test]
    fn subjects_may_be_numbers_and_verification_may_be_a_string() {
        let config = userinfo_provider();
        let claims =
            serde_json::json!({"sub": 1234, "email": "Ada@Example.com", "email_verified": "true"});
        let account = provider_account(&config, claims.as_object().unwrap()).unwrap();
        assert_eq!(account.subject, "1234");
        assert_eq!(account.email.unwrap().normalized, "ada@example.com");
        assert!(account.email_verified);
        let claims = serde_json::json!({"email": "ada@example.com"});
        assert!(provider_account(&config, claims.as_object().unwrap()).is_err());
    }

    #[test]
    fn a_provider_email_follows_the_same_address_rule() {
        let config = userinfo_provider();
        for wrapped in [
            "<ada@example.com>",
            "\"ada\"@example.com",
            "\u{212A}ate@example.com",
        ] {
            let claims = serde_json::json!({"sub": "s", "email": wrapped, "email_verified": true});
            let account = provider_account(&config, claims.as_object().unwrap()).unwrap();
            assert_eq!(account.email, None, "{wrapped}");
        }
        let claims =
            serde_json::json!({"sub": "s", "email": "Ada@Bücher.example", "email_verified": true});
        let account = provider_account(&config, claims.as_object().unwrap()).unwrap();
        assert_eq!(
            account.email.unwrap().normalized,
            "ada@xn--bcher-kva.example"
        );
    }

    #[test]
    fn a_client_secret_file_is_read_at_start_and_an_empty_one_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, "  from-a-file\n").unwrap();
        let provider_config = OAuthProviderConfig {
            name: "files".to_owned(),
            issuer: Some("https://idp.example.com".to_owned()),
            client_id: Some("latchkey".to_owned()),
            client_secret_file: Some(path.clone()),
            ..OAuthProviderConfig::default()
        };
        let config = OAuthConfig {
            providers: vec![provider_config],
            ..OAuthConfig::default()
        };
        let providers = OAuthProviders::new(&config, reqwest::Client::new()).unwrap();
        let provider = providers.provider("files").unwrap();
        assert_eq!(
            provider.client_secret.as_ref().unwrap().expose_secret(),
            "from-a-file"
        );
        assert_eq!(providers.browser_providers().count(), 1);
        std::fs::write(&path, "\n").unwrap();
        let error = OAuthProviders::new(&config, reqwest::Client::new()).unwrap_err();
        assert_eq!(error.key(), "oauth.providers[0].client_secret_file");
    }

    #[test]
    fn an_unreadable_key_file_names_its_key_and_path() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("missing.json");
        let config = OAuthConfig {
            providers: vec![OAuthProviderConfig {
                name: "files".to_owned(),
                issuer: Some("https://idp.example.com".to_owned()),
                client_id: Some("latchkey".to_owned()),
                jwks_file: Some(missing.clone()),
                ..OAuthProviderConfig::default()
            }],
            ..OAuthConfig::default()
        };
        let error = OAuthProviders::new(&config, reqwest::Client::new()).unwrap_err();
        assert_eq!(error.key(), "oauth.providers[0].jwks_file");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "oauth provider \"files\": jwks_file {}: ",
                missing.display()
            )),
            "{message}"
        );
    }
}
