//! Sign-in with an OAuth provider's token (`POST /auth/oauth-sign-in`). The operator names
//! the providers in `[[oauth.providers]]`; nothing about any provider is built in.
//! - An `oidc` provider's token is an OpenID Connect ID token. Its signature is checked
//!   against the provider's JWKS (RS*, PS*, ES256, ES384, EdDSA; never `none`, never HMAC,
//!   and only an algorithm the key names or, when it names none, its key type allows), then
//!   `iss`, `aud`, `azp`, `exp`, `nbf` and `iat` with a small leeway. The JWKS is fetched
//!   (HTTPS, or HTTP on loopback), cached, and fetched again for an unknown `kid`, never more
//!   often than the refresh floor.
//! - A `userinfo` provider's token is an access token. RFC 7662 introspection proves it was
//!   issued to our client (unless the operator allows unbound tokens); the userinfo URL then
//!   names the account.
//!
//! Who the token signs in: a linked identity's user; else, for a verified email with
//! `link_by_verified_email`, the account with that email if it is an active `user` whose
//! own address is verified (never a root, admin or sub-user, nor a pending account); else a
//! new password-less account when sign-up is allowed and the email is verified (or the
//! provider allows unverified ones); else nobody (403). Every refusal that could depend on
//! whether an account has the address reads the same to the client; the reason is logged.
//! Sign-in attempts are throttled per client network: a refused or failed one drains the
//! network's bucket (the one failed passwords drain), and an empty bucket is a 429 before
//! any provider call.
//!
//! Only this module knows jsonwebtoken and reqwest. Provider tokens and the client secret
//! are never logged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::app::App;
use crate::auth::{
    AuthError, ClientInfo, SessionOpening, SignInOutcome, account, check_may_sign_in, open_session,
    store_write,
};
use crate::config::{OAuthConfig, OAuthProviderConfig, OAuthProviderKind, SettingProblem};
use crate::model::email_address::EmailAddress;
use crate::model::{NewUser, OAuthIdentity, Role, Status, User, now_unix_seconds};
use crate::store::{IdentityLink, StoreError};

/// What every OAuth refusal says, whatever its reason (API.md 15.10).
pub const OAUTH_REFUSAL_MESSAGE: &str = "this provider account may not sign in here";
/// Longer provider tokens are refused unread.
const PROVIDER_TOKEN_MAX_BYTES: usize = 16 * 1024;
/// Larger provider answers (JWKS, discovery, introspection, userinfo) are refused.
const PROVIDER_ANSWER_MAX_BYTES: usize = 1024 * 1024;
/// A cached JWKS older than this is fetched again before use (keys get revoked, too).
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
const SUBJECT_MAX_CHARACTERS: usize = 255;
const PROVIDER_NAME_MAX_CHARACTERS: usize = 64;

/// The signature algorithms an ID token may use. HMAC would make a public key a shared
/// secret, and `none` is no signature: neither is here.
const ACCEPTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A token from a provider: a credential, so its `Debug` hides it.
#[derive(Clone)]
pub struct ProviderToken(String);

impl ProviderToken {
    pub fn new(token: String) -> ProviderToken {
        ProviderToken(token)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ProviderToken(***)")
    }
}

#[derive(Debug)]
pub struct OAuthSignInRequest {
    pub provider: String,
    pub token: ProviderToken,
    /// The `email` the client claims; when given, the provider's email must be this one.
    pub expected_email: Option<String>,
    /// `check-auth`: verify and answer the verdict; create no session and no account.
    pub check_only: bool,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub client: ClientInfo,
}

#[derive(Debug)]
pub enum OAuthSignInOutcome {
    SignedIn {
        outcome: SignInOutcome,
        how: OAuthSignInKind,
    },
    Checked(OAuthCheck),
}

/// How an OAuth sign-in found its account, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthSignInKind {
    /// The identity was already linked.
    LinkedIdentity,
    /// The identity was linked now, to the account with the provider's verified email.
    LinkedByEmail,
    /// A new account was created for the identity.
    NewAccount,
}

impl OAuthSignInKind {
    pub fn name(self) -> &'static str {
        match self {
            OAuthSignInKind::LinkedIdentity => "linked-identity",
            OAuthSignInKind::LinkedByEmail => "linked-by-email",
            OAuthSignInKind::NewAccount => "new-account",
        }
    }
}

/// The verdict of `check-auth`: whether the token would sign someone in, and whom.
#[derive(Debug)]
pub struct OAuthCheck {
    pub ok: bool,
    pub message: String,
    /// The account it would sign in, when one exists already.
    pub user: Option<User>,
    /// The provider's email address, when it gave one.
    pub provider_email: Option<String>,
    pub linked_identities: Vec<OAuthIdentity>,
}

/// The configured providers, their HTTP client and their key caches: built once at start.
pub struct OAuthProviders {
    providers: Vec<Provider>,
    http_client: reqwest::Client,
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

struct Provider {
    config: OAuthProviderConfig,
    /// OIDC: the accepted `aud` values.
    audiences: Vec<String>,
    keys: KeySource,
}

enum KeySource {
    /// A userinfo provider verifies no signatures.
    NotNeeded,
    /// `jwks_file`: read at start, never refreshed.
    Fixed(Arc<KeySet>),
    Fetched(Box<FetchedKeys>),
}

struct FetchedKeys {
    /// `jwks_url`; `None`: the `jwks_uri` of the issuer's discovery document.
    configured_url: Option<url::Url>,
    discovered_url: Mutex<Option<url::Url>>,
    cache: Mutex<Option<CachedKeys>>,
    /// When the last fetch failed: requests that waited for that fetch fail with it.
    last_failure: Mutex<Option<Instant>>,
    /// One fetch at a time per provider; the others wait for it and use its keys.
    refresh_gate: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct CachedKeys {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

struct KeySet {
    keys: Vec<VerificationKey>,
}

struct VerificationKey {
    key_id: Option<String>,
    /// The algorithms this key verifies: the one its JWK names, else those of its type.
    algorithms: Vec<Algorithm>,
    decoding_key: DecodingKey,
}

enum KeySelection<'a> {
    Found(&'a VerificationKey),
    /// The `kid` is known, but its key does not name the token's algorithm.
    WrongAlgorithm,
    Unknown,
}

impl KeySet {
    fn select(&self, key_id: Option<&str>, algorithm: Algorithm) -> KeySelection<'_> {
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
}

/// What a provider says about the account behind a token.
#[derive(Clone, Debug)]
struct ProviderAccount {
    subject: String,
    email: Option<EmailAddress>,
    email_verified: bool,
}

/// Who a verified provider account signs in as, decided from one look at the store.
enum Resolution {
    Linked(User),
    LinkByEmail(User),
    NewAccount(NewUser),
}

/// Checks `[oauth]` and every `[[oauth.providers]]` table: what `check-config` and the start
/// refuse. The problem names the key (`oauth.providers[1].issuer`), so that `Config::load`
/// can tell where it was set.
pub fn check_provider_configs(config: &OAuthConfig) -> Result<(), SettingProblem> {
    let refuse = |key: &str, message: &str| {
        Err(SettingProblem {
            key: key.to_owned(),
            message: message.to_owned(),
        })
    };
    if !(1..=600).contains(&config.provider_timeout_seconds) {
        return refuse(
            "oauth.provider_timeout_seconds",
            "must be between 1 and 600",
        );
    }
    if config.leeway_seconds > 600 {
        return refuse("oauth.leeway_seconds", "must be at most 600");
    }
    if config.jwks_refresh_floor_seconds == 0 {
        return refuse("oauth.jwks_refresh_floor_seconds", "must be at least 1");
    }
    let mut names: Vec<&str> = Vec::new();
    for (index, provider) in config.providers.iter().enumerate() {
        check_provider_config(provider).map_err(|(field, message)| SettingProblem {
            key: match field {
                Some(field) => format!("oauth.providers[{index}].{field}"),
                None => format!("oauth.providers[{index}]"),
            },
            message,
        })?;
        if names.contains(&provider.name.as_str()) {
            return refuse(
                &format!("oauth.providers[{index}].name"),
                &format!("oauth provider name {:?} is used twice", provider.name),
            );
        }
        names.push(&provider.name);
    }
    Ok(())
}

/// Checks one provider table; a problem names the field it is about, if it is about one.
fn check_provider_config(
    provider: &OAuthProviderConfig,
) -> Result<(), (Option<&'static str>, String)> {
    let name = &provider.name;
    let name_ok = !name.is_empty()
        && name.chars().count() <= PROVIDER_NAME_MAX_CHARACTERS
        && !name
            .chars()
            .any(|character| character.is_control() || character.is_whitespace());
    if !name_ok {
        return Err((
            Some("name"),
            format!(
                "oauth provider name {name:?} must be 1 to {PROVIDER_NAME_MAX_CHARACTERS} characters without spaces"
            ),
        ));
    }
    let problem = |field: Option<&'static str>, message: &str| {
        Err((field, format!("oauth provider {name:?}: {message}")))
    };
    let url_problem = |field: &'static str, message: String| {
        (
            Some(field),
            format!("oauth provider {name:?}: {field} {message}"),
        )
    };
    for (field, value) in [
        ("subject_field", &provider.subject_field),
        ("email_field", &provider.email_field),
        ("email_verified_field", &provider.email_verified_field),
    ] {
        if value.is_empty() {
            return problem(Some(field), &format!("{field} must not be empty"));
        }
    }
    if provider.client_secret.is_some() && provider.client_id.is_none() {
        return problem(Some("client_secret"), "client_secret needs client_id");
    }
    match provider.kind {
        OAuthProviderKind::Oidc => {
            let Some(issuer) = &provider.issuer else {
                return problem(None, "kind = \"oidc\" needs issuer");
            };
            provider_url(issuer).map_err(|message| url_problem("issuer", message))?;
            if audiences_of(provider).is_empty() {
                return problem(None, "kind = \"oidc\" needs audiences (or client_id)");
            }
            match (&provider.jwks_url, &provider.jwks_file) {
                (Some(_), Some(_)) => {
                    return problem(Some("jwks_file"), "set jwks_url or jwks_file, not both");
                }
                (Some(jwks_url), None) => {
                    provider_url(jwks_url).map_err(|message| url_problem("jwks_url", message))?;
                }
                (None, Some(path)) => {
                    read_key_file(path).map_err(|message| {
                        (
                            Some("jwks_file"),
                            format!("oauth provider {name:?}: {message}"),
                        )
                    })?;
                }
                (None, None) => {}
            }
            if provider.allow_unbound_tokens || provider.introspection_url.is_some() {
                return problem(
                    Some("kind"),
                    "introspection_url and allow_unbound_tokens are for kind = \"userinfo\"",
                );
            }
        }
        OAuthProviderKind::Userinfo => {
            let Some(userinfo_url) = &provider.userinfo_url else {
                return problem(None, "kind = \"userinfo\" needs userinfo_url");
            };
            provider_url(userinfo_url).map_err(|message| url_problem("userinfo_url", message))?;
            match &provider.introspection_url {
                Some(introspection_url) => {
                    provider_url(introspection_url)
                        .map_err(|message| url_problem("introspection_url", message))?;
                    if provider.client_id.is_none() {
                        return problem(
                            Some("introspection_url"),
                            "introspection_url needs client_id",
                        );
                    }
                }
                None if provider.allow_unbound_tokens => {}
                None => {
                    return problem(
                        None,
                        "kind = \"userinfo\" needs introspection_url, so that another app's \
                         token signs no one in (or allow_unbound_tokens = true)",
                    );
                }
            }
            if provider.jwks_url.is_some() || provider.jwks_file.is_some() {
                return problem(
                    Some("kind"),
                    "jwks_url and jwks_file are for kind = \"oidc\"",
                );
            }
        }
    }
    Ok(())
}

/// A provider URL: HTTPS, or HTTP to a loopback host; no user information.
fn provider_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} must not carry user information"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => return Err(format!("{text:?} has no host")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "{text:?} must be https (http only to a loopback address)"
        )),
    }
}

fn audiences_of(provider: &OAuthProviderConfig) -> Vec<String> {
    if provider.audiences.is_empty() {
        provider.client_id.iter().cloned().collect()
    } else {
        provider.audiences.clone()
    }
}

fn read_key_file(path: &std::path::Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("jwks_file {}: {error}", path.display()))?;
    let document: Value = serde_json::from_str(&text)
        .map_err(|error| format!("jwks_file {}: not JSON: {error}", path.display()))?;
    key_set_from_document(&document)
        .map_err(|message| format!("jwks_file {}: {message}", path.display()))
}

/// The usable signing keys of a JWKS document; a key this server cannot use is skipped.
fn key_set_from_document(document: &Value) -> Result<KeySet, String> {
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWKS needs a \"keys\" array")?;
    let keys: Vec<VerificationKey> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter_map(|jwk| verification_key(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no usable signing key".to_owned());
    }
    Ok(KeySet { keys })
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let allowed_by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(parameters) => match parameters.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(parameters) => match parameters.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
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
        None => allowed_by_type,
    };
    Some(VerificationKey {
        key_id: jwk.common.key_id.clone(),
        algorithms,
        decoding_key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

impl OAuthProviders {
    /// Checks the configuration, reads `jwks_file`s and builds the HTTP client. Warns about
    /// every provider that accepts unbound tokens.
    pub fn new(config: &OAuthConfig) -> Result<OAuthProviders, String> {
        check_provider_configs(config).map_err(|problem| problem.to_string())?;
        let timeout = Duration::from_secs(config.provider_timeout_seconds);
        let http_client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("the OAuth HTTP client: {error}"))?;
        let mut providers = Vec::new();
        for provider_config in &config.providers {
            let keys = match provider_config.kind {
                OAuthProviderKind::Userinfo => KeySource::NotNeeded,
                OAuthProviderKind::Oidc => match &provider_config.jwks_file {
                    Some(path) => KeySource::Fixed(Arc::new(read_key_file(path)?)),
                    None => KeySource::Fetched(Box::new(FetchedKeys {
                        configured_url: provider_config
                            .jwks_url
                            .as_deref()
                            .map(provider_url)
                            .transpose()?,
                        discovered_url: Mutex::new(None),
                        cache: Mutex::new(None),
                        last_failure: Mutex::new(None),
                        refresh_gate: tokio::sync::Mutex::new(()),
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
            providers.push(Provider {
                audiences: audiences_of(provider_config),
                config: provider_config.clone(),
                keys,
            });
        }
        Ok(OAuthProviders {
            providers,
            http_client,
            leeway_seconds: config.leeway_seconds,
            jwks_refresh_floor: Duration::from_secs(config.jwks_refresh_floor_seconds),
        })
    }

    fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|provider| provider.config.name == name)
    }

    /// Verifies a token with its provider and reads the account it stands for.
    async fn verify(
        &self,
        provider: &Provider,
        token: &ProviderToken,
    ) -> Result<ProviderAccount, AuthError> {
        let token = token.expose().trim();
        if token.is_empty() || token.len() > PROVIDER_TOKEN_MAX_BYTES {
            return Err(AuthError::InvalidProviderToken("empty or too long"));
        }
        let claims = match provider.config.kind {
            OAuthProviderKind::Oidc => self.verify_id_token(provider, token).await?,
            OAuthProviderKind::Userinfo => self.userinfo_of_access_token(provider, token).await?,
        };
        provider_account(&provider.config, &claims)
    }

    async fn verify_id_token(
        &self,
        provider: &Provider,
        token: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        // An `alg` outside jsonwebtoken's list, `none` included, fails here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidProviderToken("malformed or unsupported header"))?;
        if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::InvalidProviderToken("algorithm not accepted"));
        }
        let keys = self
            .keys_for(provider, header.kid.as_deref(), header.alg)
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
            Some(issued_at) if issued_at <= (now_unix_seconds() + leeway) as f64 => {}
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

    /// The key set to check a token against: the cached one, fetched first when there is
    /// none or it is old, and fetched again when it lacks the token's `kid` and the last
    /// fetch is older than the refresh floor.
    async fn keys_for(
        &self,
        provider: &Provider,
        key_id: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<KeySet>, AuthError> {
        let fetched = match &provider.keys {
            KeySource::Fixed(keys) => return Ok(Arc::clone(keys)),
            KeySource::NotNeeded => {
                return Err(AuthError::Internal(
                    "a userinfo provider has no keys".to_owned(),
                ));
            }
            KeySource::Fetched(fetched) => fetched,
        };
        let cached = lock(&fetched.cache).clone();
        if let Some(cached) = &cached {
            let fresh = cached.fetched_at.elapsed() < JWKS_MAX_AGE;
            let knows_key = !matches!(cached.keys.select(key_id, algorithm), KeySelection::Unknown);
            if fresh && knows_key {
                return Ok(Arc::clone(&cached.keys));
            }
            if fresh && cached.fetched_at.elapsed() < self.jwks_refresh_floor {
                return Ok(Arc::clone(&cached.keys));
            }
        }
        let waiting_since = Instant::now();
        let _gate = fetched.refresh_gate.lock().await;
        // Another request may have fetched while this one waited: use its keys, or its
        // failure, rather than asking a slow provider again.
        if let Some(latest) = lock(&fetched.cache).clone()
            && cached
                .as_ref()
                .is_none_or(|cached| latest.fetched_at != cached.fetched_at)
        {
            return Ok(latest.keys);
        }
        if lock(&fetched.last_failure).is_some_and(|failed_at| failed_at >= waiting_since) {
            return Err(AuthError::ProviderUnreachable);
        }
        let fetch = self.fetch_key_set(provider, fetched).await;
        if fetch.is_err() {
            *lock(&fetched.last_failure) = Some(Instant::now());
        }
        match fetch {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *lock(&fetched.cache) = Some(CachedKeys {
                    keys: Arc::clone(&keys),
                    fetched_at: Instant::now(),
                });
                Ok(keys)
            }
            // A provider that is down does not invalidate keys it published an hour ago.
            Err(error) => match cached {
                Some(cached)
                    if !matches!(cached.keys.select(key_id, algorithm), KeySelection::Unknown) =>
                {
                    Ok(cached.keys)
                }
                _ => Err(error),
            },
        }
    }

    async fn fetch_key_set(
        &self,
        provider: &Provider,
        fetched: &FetchedKeys,
    ) -> Result<KeySet, AuthError> {
        let jwks_url = match &fetched.configured_url {
            Some(url) => url.clone(),
            None => self.discovered_jwks_url(provider, fetched).await?,
        };
        let request = self
            .http_client
            .get(jwks_url)
            .header(reqwest::header::ACCEPT, "application/json");
        let document = match self.call(&provider.config.name, "jwks", request).await? {
            (200, document) => document,
            (status, _) => return Err(unreachable(&provider.config.name, "jwks", status)),
        };
        key_set_from_document(&document).map_err(|message| {
            tracing::warn!(provider = provider.config.name, %message, "unusable JWKS");
            AuthError::ProviderUnreachable
        })
    }

    /// The `jwks_uri` of `<issuer>/.well-known/openid-configuration`, fetched once.
    async fn discovered_jwks_url(
        &self,
        provider: &Provider,
        fetched: &FetchedKeys,
    ) -> Result<url::Url, AuthError> {
        if let Some(url) = lock(&fetched.discovered_url).clone() {
            return Ok(url);
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
        let jwks_url = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| misconfigured("no jwks_uri"))
            .and_then(|text| provider_url(text).map_err(|message| misconfigured(&message)))?;
        *lock(&fetched.discovered_url) = Some(jwks_url.clone());
        Ok(jwks_url)
    }

    /// Introspects an access token (when configured), then asks the userinfo URL whose it is.
    async fn userinfo_of_access_token(
        &self,
        provider: &Provider,
        token: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let config = &provider.config;
        let name = &config.name;
        if let Some(introspection_url) = &config.introspection_url {
            let client_id = config.client_id.as_deref().unwrap_or_default();
            let mut form = vec![("token", token), ("token_type_hint", "access_token")];
            let mut request = self
                .http_client
                .post(introspection_url)
                .header(reqwest::header::ACCEPT, "application/json");
            match &config.client_secret {
                Some(secret) => request = request.basic_auth(client_id, Some(secret)),
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

    /// Sends one request and reads a JSON answer of bounded size. A failure to connect, a
    /// timeout or a body that is not JSON is `ProviderUnreachable`, logged without secrets.
    async fn call(
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

fn unreachable(provider_name: &str, what: &'static str, status: u16) -> AuthError {
    tracing::warn!(
        provider = provider_name,
        call = what,
        status,
        "unexpected OAuth provider answer"
    );
    AuthError::ProviderUnreachable
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
fn provider_account(
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

/// Whether this provider may create accounts: its own `allow_sign_up`, else `[signup] open`.
fn sign_up_allowed(app: &App, config: &OAuthProviderConfig) -> bool {
    config.allow_sign_up.unwrap_or(app.config.signup.open)
}

/// Whether an existing account may be linked to a provider account by their shared, verified
/// email: only an active `user` (never a root or admin, whose keys the provider would then
/// hold, nor a sub-user) that proved its own address. Checked again inside the linking
/// transaction. The refusal's reason is for the log.
fn may_link_by_email(user: &User) -> Result<(), &'static str> {
    match user.role {
        Role::Root | Role::Admin => return Err("privileged-account"),
        Role::Sub => return Err("sub-account"),
        Role::User => {}
    }
    if !user.email_verified {
        return Err("unverified-account");
    }
    match user.status {
        Status::Active => Ok(()),
        Status::Pending => Err("pending-account"),
        Status::Suspended => Err("suspended-account"),
    }
}

/// Who a verified provider account signs in as, from one look at the store. Every refusal is
/// `OAuthRefused`, which reads the same to the client whatever its reason.
fn resolve(
    app: &App,
    provider: &Provider,
    account: &ProviderAccount,
) -> Result<Resolution, AuthError> {
    let config = &provider.config;
    if let Some(user) = app.store.user_of_identity(&config.name, &account.subject)? {
        return Ok(Resolution::Linked(user));
    }
    let Some(email) = &account.email else {
        return Err(AuthError::OAuthRefused("no-email"));
    };
    if let Some(user) = app.store.user_by_normalized_email(&email.normalized)? {
        if !account.email_verified {
            return Err(AuthError::OAuthRefused("unverified-email-taken"));
        }
        if !config.link_by_verified_email {
            return Err(AuthError::OAuthRefused("linking-off"));
        }
        may_link_by_email(&user).map_err(AuthError::OAuthRefused)?;
        return Ok(Resolution::LinkByEmail(user));
    }
    if !sign_up_allowed(app, config) {
        return Err(AuthError::OAuthRefused("signup-closed"));
    }
    if !account.email_verified && !config.allow_unverified_email_sign_up {
        return Err(AuthError::OAuthRefused("unverified-email"));
    }
    Ok(Resolution::NewAccount(NewUser {
        email_verified: account.email_verified,
        ..NewUser::new(email.clone(), Role::User, Status::Active)
    }))
}

/// `POST /auth/oauth-sign-in`: verifies the provider token, finds (or links, or creates) the
/// account, and opens a session like a password sign-in; with `check_only`, answers the
/// verdict instead and writes nothing. A client network whose bucket is empty gets
/// `TooManyAttempts` before anything else; a refused or failed attempt drains it.
pub async fn oauth_sign_in(
    app: &App,
    request: OAuthSignInRequest,
) -> Result<OAuthSignInOutcome, AuthError> {
    let network = request.client.network();
    app.throttle
        .check_network(&network, app.throttle.now())
        .map_err(|retry| AuthError::TooManyAttempts(retry.0))?;
    let outcome = sign_in_or_check(app, request).await;
    if is_failed_attempt(&outcome) {
        app.throttle
            .record_network_failure(&network, app.throttle.now());
    }
    outcome
}

/// Whether an attempt counts against its network: every refusal the client caused (a bad
/// token, a refused account, bad input), and a `check-auth` that says no; not the server's or
/// the provider's trouble.
fn is_failed_attempt(outcome: &Result<OAuthSignInOutcome, AuthError>) -> bool {
    match outcome {
        Ok(OAuthSignInOutcome::SignedIn { .. }) => false,
        Ok(OAuthSignInOutcome::Checked(check)) => !check.ok,
        Err(error) => match error {
            AuthError::InvalidField { .. }
            | AuthError::PasswordLength { .. }
            | AuthError::InvalidCredentials
            | AuthError::Unauthenticated
            | AuthError::AccountPending
            | AuthError::AccountSuspended
            | AuthError::MissingPermission(_)
            | AuthError::WrongPassword
            | AuthError::OutlivesCredential
            | AuthError::NotFound
            | AuthError::Conflict(_)
            | AuthError::SignupClosed
            | AuthError::EmailToken { .. }
            | AuthError::CaptchaRefused
            | AuthError::InvalidProviderToken(_)
            | AuthError::OAuthRefused(_)
            | AuthError::OAuthEmailMismatch => true,
            AuthError::Overloaded
            | AuthError::TooManyAttempts(_)
            | AuthError::CaptchaUnavailable
            | AuthError::ProviderUnreachable
            | AuthError::Store(_)
            | AuthError::Internal(_) => false,
        },
    }
}

async fn sign_in_or_check(
    app: &App,
    request: OAuthSignInRequest,
) -> Result<OAuthSignInOutcome, AuthError> {
    let Some(provider) = app.oauth.provider(&request.provider) else {
        return Err(AuthError::InvalidField {
            field: "provider",
            message: "names no configured OAuth provider",
        });
    };
    let verdict = verify_and_resolve(app, provider, &request).await;
    if request.check_only {
        return check_verdict(app, &request, verdict);
    }
    let (account, resolution) = verdict?;
    let name = provider.config.name.as_str();
    let subject = account.subject.clone();
    let now = now_unix_seconds();
    let (user, how) = match resolution {
        Resolution::Linked(user) => (user, OAuthSignInKind::LinkedIdentity),
        Resolution::LinkByEmail(user) => {
            let (provider_name, user_id) = (name.to_owned(), user.id);
            let expected_email = user.normalized_email.clone();
            // The account may have changed since `resolve` read it: the rule is checked again
            // in the transaction that links.
            let linked = store_write(&app.store, move |store| {
                store.link_identity(
                    &provider_name,
                    &subject,
                    user_id,
                    |current| {
                        current.normalized_email == expected_email
                            && may_link_by_email(current).is_ok()
                    },
                    now,
                )
            })
            .await?;
            match linked {
                IdentityLink::Linked(user) => (user, OAuthSignInKind::LinkedByEmail),
                IdentityLink::AlreadyLinked(user) => (user, OAuthSignInKind::LinkedIdentity),
                IdentityLink::Refused => {
                    return Err(AuthError::OAuthRefused("account-changed-during-sign-in"));
                }
            }
        }
        Resolution::NewAccount(new_user) => {
            let provider_name = name.to_owned();
            let created = store_write(&app.store, move |store| {
                match store.create_user_with_identity(&provider_name, &subject, new_user, now) {
                    Err(StoreError::EmailTaken) => Ok(None),
                    other => other.map(Some),
                }
            })
            .await?;
            match created {
                Some((user, true)) => (user, OAuthSignInKind::NewAccount),
                Some((user, false)) => (user, OAuthSignInKind::LinkedIdentity),
                // Answered like every other refusal: a conflict would say the address is taken.
                None => return Err(AuthError::OAuthRefused("email-taken-during-sign-in")),
            }
        }
    };
    if how != OAuthSignInKind::LinkedIdentity {
        let event = match how {
            OAuthSignInKind::NewAccount => "oauth-account-created",
            _ => "oauth-identity-linked",
        };
        tracing::info!(
            target: "latchkey::audit",
            event,
            user_id = user.id,
            provider = name,
            remote_ip = request.client.remote_ip,
        );
    }
    let parent = account::parent_of(app, &user)?;
    let outcome = open_session(
        app,
        SessionOpening {
            user,
            parent,
            long_term_token: request.long_term_token,
            logout_other: request.logout_other,
            client: request.client,
            replacement_password_hash: None,
        },
    )
    .await?;
    Ok(OAuthSignInOutcome::SignedIn { outcome, how })
}

async fn verify_and_resolve(
    app: &App,
    provider: &Provider,
    request: &OAuthSignInRequest,
) -> Result<(ProviderAccount, Resolution), AuthError> {
    let account = app.oauth.verify(provider, &request.token).await?;
    if let Some(expected) = request
        .expected_email
        .as_deref()
        .filter(|text| !text.trim().is_empty())
    {
        let matches = match (EmailAddress::parse(expected), &account.email) {
            (Ok(expected), Some(email)) => expected.normalized == email.normalized,
            _ => false,
        };
        if !matches {
            return Err(AuthError::OAuthEmailMismatch);
        }
    }
    let resolution = resolve(app, provider, &account)?;
    Ok((account, resolution))
}

/// The `check-auth` answer: a verdict about the token and the account, never a write. Bad
/// input and an unreachable provider stay errors; a token that would not sign in is `ok:
/// false`: with the token's problem when it does not verify, and otherwise with the one
/// message every refusal reads (the reason goes to the log).
fn check_verdict(
    app: &App,
    request: &OAuthSignInRequest,
    verdict: Result<(ProviderAccount, Resolution), AuthError>,
) -> Result<OAuthSignInOutcome, AuthError> {
    let refused = |message: String| {
        Ok(OAuthSignInOutcome::Checked(OAuthCheck {
            ok: false,
            message,
            user: None,
            provider_email: None,
            linked_identities: Vec::new(),
        }))
    };
    let (account, resolution) = match verdict {
        Ok(verdict) => verdict,
        Err(error @ (AuthError::InvalidProviderToken(_) | AuthError::OAuthEmailMismatch)) => {
            return refused(error.to_string());
        }
        Err(AuthError::OAuthRefused(reason)) => {
            tracing::info!(
                target: "latchkey::audit",
                event = "oauth-check-refused",
                provider = request.provider,
                reason,
                remote_ip = request.client.remote_ip,
            );
            return refused(OAUTH_REFUSAL_MESSAGE.to_owned());
        }
        Err(error) => return Err(error),
    };
    let provider_email = account.email.as_ref().map(|email| email.as_given.clone());
    let (user, message) = match resolution {
        Resolution::Linked(user) => {
            let message = format!("the token signs in user {}", user.id);
            (Some(user), message)
        }
        Resolution::LinkByEmail(user) => {
            let message = format!(
                "the token would link this identity to user {} and sign it in",
                user.id
            );
            (Some(user), message)
        }
        Resolution::NewAccount(_) => (None, "the token would create a new account".to_owned()),
    };
    if let Some(user) = &user {
        let parent = account::parent_of(app, user)?;
        if let Err(error) = check_may_sign_in(app, user, parent.as_ref()) {
            return refused(error.to_string());
        }
    }
    let linked_identities = match &user {
        Some(user) => app.store.identities_of_user(user.id)?,
        None => Vec::new(),
    };
    Ok(OAuthSignInOutcome::Checked(OAuthCheck {
        ok: true,
        message,
        user,
        provider_email,
        linked_identities,
    }))
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
            client_secret: Some("very-secret".to_owned()),
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
    fn provider_urls_are_https_or_loopback_http() {
        assert!(provider_url("https://accounts.example.com").is_ok());
        assert!(provider_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(provider_url("http://[::1]/jwks").is_ok());
        assert!(provider_url("http://localhost/jwks").is_ok());
        assert!(provider_url("http://accounts.example.com/jwks").is_err());
        assert!(provider_url("http://10.0.0.1/jwks").is_err());
        assert!(provider_url("https://user:pass@example.com/").is_err());
        assert!(provider_url("ftp://example.com/").is_err());
    }

    #[test]
    fn provider_configs_are_checked_and_the_secret_never_prints() {
        let provider = userinfo_provider();
        assert!(check_provider_configs(&config_with(vec![provider.clone()])).is_ok());
        let printed = format!("{provider:?}");
        assert!(!printed.contains("very-secret"), "{printed}");

        let twice = config_with(vec![provider.clone(), provider.clone()]);
        assert!(
            check_provider_configs(&twice)
                .unwrap_err()
                .message
                .contains("twice")
        );

        let unbound = OAuthProviderConfig {
            introspection_url: None,
            ..provider.clone()
        };
        let error = check_provider_configs(&config_with(vec![unbound.clone()]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("introspection_url"), "{error}");
        let allowed = OAuthProviderConfig {
            allow_unbound_tokens: true,
            ..unbound
        };
        assert!(check_provider_configs(&config_with(vec![allowed])).is_ok());

        let oidc_without_issuer = OAuthProviderConfig {
            name: "google".to_owned(),
            audiences: vec!["client".to_owned()],
            ..OAuthProviderConfig::default()
        };
        let error = check_provider_configs(&config_with(vec![oidc_without_issuer]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("issuer"), "{error}");

        let plain_http = OAuthProviderConfig {
            name: "google".to_owned(),
            issuer: Some("http://accounts.example.com".to_owned()),
            audiences: vec!["client".to_owned()],
            ..OAuthProviderConfig::default()
        };
        let error = check_provider_configs(&config_with(vec![plain_http])).unwrap_err();
        assert_eq!(error.key, "oauth.providers[0].issuer");
        assert!(error.message.contains("https"), "{error}");
    }

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
    fn linking_by_email_reaches_only_an_active_verified_plain_user() {
        let user = |role: Role, status: Status, email_verified: bool| User {
            id: 7,
            email: "ada@example.com".to_owned(),
            normalized_email: "ada@example.com".to_owned(),
            password_hash: None,
            role,
            status,
            parent_id: (role == Role::Sub).then_some(1),
            first_name: None,
            last_name: None,
            permissions: role.default_permissions(),
            created: 0,
            updated: 0,
            email_verified,
            credential_version: 0,
        };
        assert_eq!(
            may_link_by_email(&user(Role::User, Status::Active, true)),
            Ok(())
        );
        for (refused, reason) in [
            (
                user(Role::User, Status::Active, false),
                "unverified-account",
            ),
            (
                user(Role::User, Status::Pending, false),
                "unverified-account",
            ),
            (user(Role::User, Status::Pending, true), "pending-account"),
            (
                user(Role::User, Status::Suspended, true),
                "suspended-account",
            ),
            (user(Role::Sub, Status::Active, true), "sub-account"),
            (
                user(Role::Admin, Status::Active, true),
                "privileged-account",
            ),
            (user(Role::Root, Status::Active, true), "privileged-account"),
        ] {
            assert_eq!(may_link_by_email(&refused), Err(reason), "{refused:?}");
        }
    }

    #[test]
    fn provider_tokens_never_print() {
        let token = ProviderToken::new("eyJhbGciOi.secret".to_owned());
        assert_eq!(format!("{token:?}"), "ProviderToken(***)");
    }
}
