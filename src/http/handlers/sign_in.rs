//! `POST /auth/sign-in`, and what OAuth sign-in and the sign-in page share with it: the
//! audited sign-in, the login CSRF check, the `ret-url` rule and the signed-in answer with
//! its cookie.

use hyper::StatusCode;

use crate::auth::password::Password;
use crate::auth::return_url::check_return_url;
use crate::auth::{self, AuthError, SignInOutcome, SignInRequest};
use crate::http::Api;
use crate::http::credential::check_form_sign_in_origin;
use crate::http::dto::{JwtToken, SignInResponse, Timestamp, oauth_provider_tokens};
use crate::http::error::ApiError;
use crate::http::fields::{BodyKind, body_kind};
use crate::http::handlers::second_factor::audit_second_factor_required;
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie, json_response, see_other};

/// `POST /auth/sign-in`.
pub async fn sign_in(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    check_sign_in_origin(api, request)?;
    let email = fields.required_string("email")?;
    let password = fields.required_string("password")?;
    let current_user = fields.string("current-user")?;
    let logout_other = fields.boolean("logout-other")?.unwrap_or(false);
    let long_term_token = fields.boolean("long-term-token")?.unwrap_or(true);
    let return_url = checked_return_url(api, fields.string("ret-url")?)?;
    let outcome = audited_sign_in(
        api,
        SignInRequest {
            email,
            password: Password::new(password),
            long_term_token,
            logout_other,
            client: request.client_info(api),
        },
    )
    .await?;
    signed_in_response(api, outcome, current_user, return_url, fields.kind())
}

/// `auth::sign_in` with its audit lines, for this route and the sign-in page.
pub async fn audited_sign_in(api: &Api, sign_in: SignInRequest) -> Result<SignInOutcome, ApiError> {
    let remote_ip = sign_in.client.remote_ip.clone();
    // The account a failed attempt aimed at, masked, so an operator sees a guessing run
    // against one account without the log holding addresses.
    let target_account = crate::mail::mask_address(sign_in.email.trim());
    let outcome = auth::sign_in(&api.app, sign_in)
        .await
        .inspect_err(|error| {
            if let AuthError::SecondFactorRequired(_) = error {
                audit_second_factor_required(error, "password", &remote_ip);
                return;
            }
            tracing::info!(
                target: "latchkey::audit",
                event = "sign-in-failed",
                reason = %error,
                account = target_account,
                remote_ip,
            );
        })?;
    tracing::info!(
        target: "latchkey::audit",
        event = "sign-in",
        user_id = outcome.user.id,
        session_id = %outcome.session.id,
        remote_ip = outcome.session.remote_ip,
    );
    Ok(outcome)
}

/// The answer to a successful sign-in, password or OAuth: `SignInResponse` as JSON, or
/// `303 See Other` to `ret-url` for a form post; both set the `jwt` cookie.
pub fn signed_in_response(
    api: &Api,
    outcome: SignInOutcome,
    current_user: Option<String>,
    return_url: Option<String>,
    body_kind: BodyKind,
) -> Result<Response, ApiError> {
    let max_age = outcome.session.expire - outcome.session.created;
    let token = outcome.signed_token.clone();
    let mut response = match (&return_url, body_kind) {
        (Some(location), BodyKind::Form) => see_other(location)
            .map_err(|_| ApiError::invalid_field("ret-url", "is not a usable URL"))?,
        _ => json_response(
            StatusCode::OK,
            &SignInResponse {
                api_token: outcome.api_token.into_exposed_secret(),
                current_user,
                email: outcome.user.email.clone(),
                jwt_token: JwtToken {
                    expire: Timestamp(outcome.session.expire),
                    token: outcome.signed_token.into_exposed_secret(),
                },
                oauth_provider_tokens: oauth_provider_tokens(&outcome.linked_identities),
                ret_url: return_url.clone(),
                status: outcome.user.status.name(),
                user_id: outcome.user.id,
            },
        ),
    };
    append_session_cookie(&mut response, api, token.expose_secret(), max_age);
    Ok(response)
}

/// Login CSRF: a sign-in (password or OAuth) that a foreign page could send without a CORS
/// preflight, from a foreign `Origin`, is refused before anything is checked. Only a body
/// declared as JSON forces a preflight, so it is left to CORS; a form, or no body at all
/// (an OAuth token can come in cookies), is checked.
pub fn check_sign_in_origin(api: &Api, request: &Request) -> Result<(), ApiError> {
    let declared_json = request
        .parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| matches!(body_kind(value), Ok(BodyKind::Json)));
    if declared_json {
        return Ok(());
    }
    check_form_sign_in_origin(
        &request.parts,
        &api.public_origin,
        &api.app.config.auth.allowed_return_origins,
    )
}

/// Applies the ret-url rule; an empty value counts as absent.
pub fn checked_return_url(
    api: &Api,
    candidate: Option<String>,
) -> Result<Option<String>, ApiError> {
    match candidate.filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => check_return_url(&text, &api.app.config.auth.allowed_return_origins)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "ret-url",
                    "must be a local path or a URL on an allowed origin",
                )
            }),
    }
}
