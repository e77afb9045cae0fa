//! One function per endpoint: decode the request, call the domain, encode the answer.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH, LOCATION, SET_COOKIE};
use sha2::{Digest, Sha256};

use crate::auth::password::Password;
use crate::auth::return_url::check_return_url;
use crate::auth::{self, Identity, SignInOutcome, SignInRequest};
use crate::http::dto::{
    HealthResponse, JwtToken, PublicKeyEntry, PublicKeyList, SignInResponse, Timestamp,
    UserProfile, oauth_provider_tokens,
};
use crate::http::error::ApiError;
use crate::http::fields::{BodyKind, body_kind};
use crate::http::{Api, Request, Response, empty_response, error_response, json_response};

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
    let client = request.client_info(api);
    let remote_ip = client.remote_ip.clone();
    // The account a failed attempt aimed at, masked, so an operator sees a guessing run
    // against one account without the log holding addresses.
    let target_account = crate::mail::mask_address(email.trim());
    let outcome = auth::sign_in(
        &api.app,
        SignInRequest {
            email,
            password: Password::new(password),
            long_term_token,
            logout_other,
            client,
        },
    )
    .await
    .inspect_err(|error| {
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
    signed_in_response(api, outcome, current_user, return_url, fields.kind())
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
    let cookie = session_cookie(api, &outcome.signed_token, max_age);
    let mut response = match (&return_url, body_kind) {
        (Some(location), BodyKind::Form) => {
            let mut response = empty_response(StatusCode::SEE_OTHER);
            let location = HeaderValue::from_str(location)
                .map_err(|_| ApiError::invalid_field("ret-url", "is not a usable URL"))?;
            response.headers_mut().insert(LOCATION, location);
            response
        }
        _ => json_response(
            StatusCode::OK,
            &SignInResponse {
                api_token: outcome.api_token,
                current_user,
                email: outcome.user.email.clone(),
                jwt_token: JwtToken {
                    expire: Timestamp(outcome.session.expire),
                    token: outcome.signed_token,
                },
                oauth_provider_tokens: oauth_provider_tokens(&outcome.linked_identities),
                ret_url: return_url.clone(),
                status: outcome.user.status.name(),
                user_id: outcome.user.id,
            },
        ),
    };
    response.headers_mut().append(SET_COOKIE, cookie);
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
    crate::http::credential::check_form_sign_in_origin(
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

/// The `jwt` cookie: HttpOnly, SameSite=Lax, Secure when the public URL is https.
pub fn session_cookie(api: &Api, token: &str, max_age_seconds: i64) -> HeaderValue {
    let secure = if api.public_origin.is_https() {
        "; Secure"
    } else {
        ""
    };
    let text =
        format!("jwt={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("jwt=; Max-Age=0"))
}

/// `GET /user/current`: the hot path; no write, no hashing.
pub fn current_user(_api: &Api, identity: Identity) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &UserProfile::from_user(&identity.user, identity.parent.as_ref()),
    ))
}

/// `GET /auth/keys`: every key that can still verify a token, and the `next` key published
/// ahead, as PASERK, with an ETag that changes when the set or a status changes (statuses
/// as of now: a `next` key turns active at its time). No credential needed.
pub fn public_keys(api: &Api, request: &Request) -> Result<Response, ApiError> {
    let key_ring = api.app.key_ring();
    let now = crate::model::now_unix_seconds();
    let mut keys: Vec<PublicKeyEntry> = key_ring
        .keys()
        .iter()
        .map(|key| PublicKeyEntry {
            id: key.key_id.clone(),
            key: key.public_key_paserk.clone(),
            status: key_ring.status_at(key, now).name(),
            created: Timestamp(key.created),
        })
        .collect();
    // The active key first, then the next one, then the retired ones, newest first.
    let rank = |status: &str| match status {
        "active" => 0,
        "next" => 1,
        _ => 2,
    };
    keys.sort_by(|left, right| {
        rank(left.status)
            .cmp(&rank(right.status))
            .then(right.created.0.cmp(&left.created.0))
            .then(left.id.cmp(&right.id))
    });
    let mut fingerprint = Sha256::new();
    for key in &keys {
        fingerprint.update(key.id.as_bytes());
        fingerprint.update(key.status.as_bytes());
    }
    let etag = format!(
        "\"{}\"",
        &crate::hex::hex_encode(&fingerprint.finalize())[..32]
    );
    let not_modified = request
        .parts
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if not_modified {
        empty_response(StatusCode::NOT_MODIFIED)
    } else {
        json_response(StatusCode::OK, &PublicKeyList { keys })
    };
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    Ok(response)
}

/// `GET /openapi.json`: the server's own OpenAPI 3.1 document (the vendor's schema names
/// where they exist; every status each route can answer). A test keeps it in step with
/// `Route`.
pub fn openapi_document() -> Response {
    let mut response = empty_response(StatusCode::OK);
    *response.body_mut() =
        http_body_util::Full::new(bytes::Bytes::from_static(include_bytes!("openapi.json")));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET` and `HEAD /health`: 200 while serving, 503 while draining.
pub fn health(api: &Api) -> Result<Response, ApiError> {
    if api.app.is_draining() {
        return Ok(error_response(&ApiError::Draining));
    }
    Ok(json_response(
        StatusCode::OK,
        &HealthResponse { status: "ok" },
    ))
}
