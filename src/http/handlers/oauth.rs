//! `POST /auth/oauth-sign-in`: decodes the provider token from the body (JSON
//! `oauth-provider-token {provider, token}`; form `oauth-token[provider]`,
//! `oauth-token[token]` or `oauth-token.provider`, `oauth-token.token`) or, when the body
//! names none, from the cookies `oauth-provider-name`, `oauth-provider-token` and
//! `oauth-email`; calls `auth::oauth`; answers like password sign-in, or the `check-auth`
//! verdict.

use hyper::StatusCode;
use serde_json::Value;

use crate::auth::AuthError;
use crate::auth::oauth::{
    OAuthSignInOutcome, OAuthSignInRequest, ProviderToken, oauth_sign_in as sign_in_with_provider,
};
use crate::http::Api;
use crate::http::credential::cookie_value;
use crate::http::dto::{CheckAuthResult, OAuthCheckAuthResponse, oauth_provider_tokens};
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::handlers::second_factor::audit_second_factor_required;
use crate::http::handlers::sign_in::{
    check_sign_in_origin, checked_return_url, signed_in_response,
};
use crate::http::request::Request;
use crate::http::response::{Response, json_response};

/// Provider names in logs are cut to this many characters (an unknown one is the client's).
const LOGGED_PROVIDER_CHARACTERS: usize = 64;

/// Where the provider token came from.
struct PresentedProviderToken {
    provider: String,
    token: ProviderToken,
    from_cookies: bool,
}

/// `POST /auth/oauth-sign-in`.
pub async fn oauth_sign_in(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    check_sign_in_origin(api, request)?;
    let presented = presented_provider_token(&fields, request)?;
    let check_only = fields.boolean("check-auth")?.unwrap_or(false);
    let current_user = fields.string("current-user")?;
    let logout_other = fields.boolean("logout-other")?.unwrap_or(false);
    let long_term_token = fields.boolean("long-term-token")?.unwrap_or(true);
    let return_url = checked_return_url(api, fields.string("ret-url")?)?;
    let expected_email = match fields.string("email")? {
        Some(email) => Some(email),
        None if presented.from_cookies => {
            cookie_value(&request.parts, "oauth-email")?.map(|raw| percent_decoded(&raw))
        }
        None => None,
    };
    let client = request.client_info(api);
    let remote_ip = client.remote_ip.clone();
    let logged_provider: String = presented
        .provider
        .chars()
        .take(LOGGED_PROVIDER_CHARACTERS)
        .collect();
    let outcome = sign_in_with_provider(
        &api.app,
        OAuthSignInRequest {
            provider: presented.provider,
            token: presented.token,
            expected_email,
            check_only,
            long_term_token,
            logout_other,
            client,
        },
    )
    .await
    .inspect_err(|error| {
        if let AuthError::SecondFactorRequired(_) = error {
            audit_second_factor_required(error, "oauth", &remote_ip);
            return;
        }
        tracing::info!(
            target: "latchkey::audit",
            event = "oauth-sign-in-failed",
            provider = logged_provider,
            reason = %error,
            remote_ip,
        );
    })?;
    match outcome {
        OAuthSignInOutcome::SignedIn { outcome, how } => {
            tracing::info!(
                target: "latchkey::audit",
                event = "oauth-sign-in",
                provider = logged_provider,
                account = how.name(),
                user_id = outcome.user.id,
                session_id = %outcome.session.id,
                remote_ip = outcome.session.remote_ip,
            );
            signed_in_response(api, outcome, current_user, return_url, fields.kind())
        }
        OAuthSignInOutcome::Checked(check) => Ok(json_response(
            StatusCode::OK,
            &OAuthCheckAuthResponse {
                check_auth_result: CheckAuthResult {
                    message: check.message,
                    ok: check.ok,
                },
                current_user,
                email: check
                    .user
                    .as_ref()
                    .map(|user| user.email.clone())
                    .or(check.provider_email),
                oauth_provider_tokens: oauth_provider_tokens(&check.linked_identities),
                ret_url: return_url,
                status: check
                    .user
                    .as_ref()
                    .map_or("anonymous", |user| user.status.name()),
                user_id: check.user.as_ref().map(|user| user.id),
            },
        )),
    }
}

/// The body's provider token if it names one (the body wins), else the cookies'.
fn presented_provider_token(
    fields: &Fields,
    request: &Request,
) -> Result<PresentedProviderToken, ApiError> {
    let (provider, token) = match fields {
        Fields::Json(_) => match fields.object("oauth-provider-token")? {
            Some(object) => {
                let member = |name: &'static str, field: &'static str| match object.get(name) {
                    Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
                    None | Some(Value::Null) => Ok(None),
                    Some(_) => Err(ApiError::invalid_field(field, "must be a non-empty string")),
                };
                (
                    member("provider", "oauth-provider-token.provider")?,
                    member("token", "oauth-provider-token.token")?,
                )
            }
            None => (None, None),
        },
        Fields::Form(_) => (
            form_field(fields, "oauth-token[provider]", "oauth-token.provider")?,
            form_field(fields, "oauth-token[token]", "oauth-token.token")?,
        ),
    };
    match (provider, token) {
        (Some(provider), Some(token)) => Ok(PresentedProviderToken {
            provider,
            token: ProviderToken::new(token),
            from_cookies: false,
        }),
        (Some(_), None) => Err(ApiError::invalid_field(
            "oauth-provider-token.token",
            "is required",
        )),
        (None, Some(_)) => Err(ApiError::invalid_field(
            "oauth-provider-token.provider",
            "is required",
        )),
        (None, None) => {
            let provider = cookie_value(&request.parts, "oauth-provider-name")?
                .map(|raw| percent_decoded(&raw))
                .filter(|text| !text.is_empty());
            let token = cookie_value(&request.parts, "oauth-provider-token")?
                .filter(|text| !text.is_empty());
            match (provider, token) {
                (Some(provider), Some(token)) => Ok(PresentedProviderToken {
                    provider,
                    token: ProviderToken::new(token),
                    from_cookies: true,
                }),
                _ => Err(ApiError::invalid_field(
                    "oauth-provider-token",
                    "is required",
                )),
            }
        }
    }
}

/// A form field under either of its two spellings; empty counts as absent.
fn form_field(
    fields: &Fields,
    bracketed: &'static str,
    dotted: &'static str,
) -> Result<Option<String>, ApiError> {
    let value = match fields.string(bracketed)? {
        Some(value) => Some(value),
        None => fields.string(dotted)?,
    };
    Ok(value.filter(|text| !text.is_empty()))
}

/// A cookie value with its `%XX` escapes decoded (`+` stays a plus: cookies are not forms).
fn percent_decoded(raw: &str) -> String {
    let protected = format!("v={}", raw.replace('+', "%2B").replace('&', "%26"));
    form_urlencoded::parse(protected.as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}
