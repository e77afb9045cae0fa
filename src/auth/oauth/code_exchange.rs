//! The provider calls of the browser sign-in (API.md section 11): the endpoints (given, or
//! from the issuer's discovery document), the authorization code exchanged for tokens at
//! the token endpoint (`client_secret_basic`, with the PKCE verifier), and the claims of
//! the account: the verified ID token's (with its nonce), completed from userinfo with the
//! access token when it lacks the email, or userinfo's alone for a `userinfo` provider.

use serde_json::{Map, Value};

use crate::auth::AuthError;
use crate::auth::oauth::browser::BrowserSignInProblem;
use crate::auth::oauth::provider::{OAuthProviders, Provider, ProviderAccount, provider_account};
use crate::config::OAuthProviderKind;
use crate::model::Secret;
use crate::model::clock::Clock;
use crate::model::net::parse_provider_url;

/// What the callback sends with the code, from the state the start kept.
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub pkce_verifier: &'a Secret<String>,
    pub nonce: &'a Secret<String>,
}

/// A browser-sign-in endpoint of a provider.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint {
    Authorization,
    Token,
}

impl OAuthProviders {
    /// The provider's authorization or token endpoint: configured, else discovered.
    pub(super) async fn endpoint(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
    ) -> Result<url::Url, AuthError> {
        let config = &provider.config;
        let configured = match endpoint {
            Endpoint::Authorization => config.authorization_url.as_deref(),
            Endpoint::Token => config.token_url.as_deref(),
        };
        if let Some(text) = configured {
            // `OAuthConfig::check` accepted it at start.
            return parse_provider_url(text)
                .map_err(|error| AuthError::Internal(error.to_string()));
        }
        if config.kind != OAuthProviderKind::Oidc {
            return Err(AuthError::OAuthBrowserSignIn(
                BrowserSignInProblem::NotOffered,
            ));
        }
        let discovered = self.discovered_endpoints(provider).await?;
        let found = match endpoint {
            Endpoint::Authorization => discovered.authorization_url.clone(),
            Endpoint::Token => discovered.token_url.clone(),
        };
        found.ok_or_else(|| {
            tracing::warn!(
                provider = config.name,
                endpoint = ?endpoint,
                "the discovery document names no such endpoint"
            );
            AuthError::ProviderUnreachable
        })
    }

    /// Exchanges the code and reads the account it signs in.
    pub(super) async fn account_from_code(
        &self,
        provider: &Provider,
        exchange: CodeExchange<'_>,
        clock: &Clock,
    ) -> Result<ProviderAccount, AuthError> {
        let config = &provider.config;
        let name = &config.name;
        let token_url = self.endpoint(provider, Endpoint::Token).await?;
        let client_id = config.client_id.as_deref().unwrap_or_default();
        let secret = provider
            .client_secret
            .as_ref()
            .ok_or(AuthError::OAuthBrowserSignIn(
                BrowserSignInProblem::NotOffered,
            ))?;
        // RFC 6749 2.3.1: both are form-encoded before they go into the Basic header.
        let encoded =
            |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        let request = self
            .http_client
            .post(token_url)
            .header("accept", "application/json")
            .basic_auth(encoded(client_id), Some(encoded(secret.expose_secret())))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", exchange.code),
                ("redirect_uri", exchange.redirect_uri),
                (
                    "code_verifier",
                    exchange.pkce_verifier.expose_secret().as_str(),
                ),
            ]);
        let answer = match self.call(name, "token", request).await? {
            (200, Value::Object(answer)) => answer,
            (status @ (400 | 401 | 403), _) => {
                tracing::info!(
                    provider = name,
                    status,
                    "the token endpoint refused the code"
                );
                return Err(AuthError::OAuthBrowserSignIn(
                    BrowserSignInProblem::CodeRefused,
                ));
            }
            (status, _) => return Err(super::provider::unreachable(name, "token", status)),
        };
        let access_token = answer.get("access_token").and_then(Value::as_str);
        let claims = match config.kind {
            OAuthProviderKind::Oidc => {
                let Some(id_token) = answer.get("id_token").and_then(Value::as_str) else {
                    return Err(AuthError::InvalidProviderToken(
                        "no id_token in the token answer",
                    ));
                };
                let claims = self.verify_id_token(provider, id_token, clock).await?;
                let nonce_matches = claims.get("nonce").and_then(Value::as_str)
                    == Some(exchange.nonce.expose_secret().as_str());
                if !nonce_matches {
                    return Err(AuthError::InvalidProviderToken("wrong nonce"));
                }
                if !is_issued_to(&claims, client_id) {
                    return Err(AuthError::InvalidProviderToken(
                        "the ID token is not issued to our client",
                    ));
                }
                self.completed_from_userinfo(provider, claims, access_token)
                    .await?
            }
            OAuthProviderKind::Userinfo => {
                let Some(access_token) = access_token else {
                    return Err(AuthError::InvalidProviderToken(
                        "no access_token in the token answer",
                    ));
                };
                let userinfo_url = config.userinfo_url.as_deref().unwrap_or_default();
                self.userinfo(provider, userinfo_url, access_token).await?
            }
        };
        provider_account(config, &claims)
    }

    /// An ID token's claims, with the email and its verification read from userinfo when
    /// the token lacks them (a conformant provider puts them only there). Userinfo must
    /// name the same subject; a claim the ID token has is never replaced, and an address
    /// is verified only by the answer that named it.
    async fn completed_from_userinfo(
        &self,
        provider: &Provider,
        mut claims: Map<String, Value>,
        access_token: Option<&str>,
    ) -> Result<Map<String, Value>, AuthError> {
        let config = &provider.config;
        let complete = claims.contains_key(&config.email_field)
            && claims.contains_key(&config.email_verified_field);
        let Some(access_token) = access_token.filter(|_| !complete) else {
            return Ok(claims);
        };
        let userinfo_url = match &config.userinfo_url {
            Some(text) => Some(text.clone()),
            None => self
                .discovered_endpoints(provider)
                .await?
                .userinfo_url
                .as_ref()
                .map(url::Url::to_string),
        };
        let Some(userinfo_url) = userinfo_url else {
            return Ok(claims);
        };
        let mut userinfo = self.userinfo(provider, &userinfo_url, access_token).await?;
        if userinfo.get("sub") != claims.get("sub") {
            return Err(AuthError::InvalidProviderToken(
                "userinfo names another subject than the ID token",
            ));
        }
        // An address and its verification come from the same answer: a verification is
        // never lent to an address the other answer named.
        match claims.get(&config.email_field) {
            Some(id_token_email) => {
                if userinfo.get(&config.email_field) != Some(id_token_email) {
                    userinfo.remove(&config.email_verified_field);
                }
            }
            None => {
                if userinfo.contains_key(&config.email_field) {
                    claims.remove(&config.email_verified_field);
                }
            }
        }
        for (name, value) in userinfo {
            claims.entry(name).or_insert(value);
        }
        Ok(claims)
    }
}

/// Whether an ID token of the code flow is ours (OpenID Connect Core 3.1.3.7): its `aud`
/// names our `client_id`, and its `azp`, when present, is that `client_id`. The
/// `audiences` a provider accepts for `POST /auth/oauth-sign-in` (a mobile app's, say) do
/// not sign in through our own code exchange.
fn is_issued_to(claims: &Map<String, Value>, client_id: &str) -> bool {
    let audience_names_us = match claims.get("aud") {
        Some(Value::String(audience)) => audience == client_id,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(client_id)),
        _ => false,
    };
    let authorized_party_is_us = claims
        .get("azp")
        .is_none_or(|party| party.as_str() == Some(client_id));
    audience_names_us && authorized_party_is_us
}
