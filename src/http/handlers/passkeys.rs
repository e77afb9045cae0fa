//! Passkeys (API.md section 10): registering one (start and finish), listing and removing
//! them, and the passwordless sign-in (start and finish), which answers exactly as
//! `POST /auth/sign-in` does. The ceremonies' `credential`s are JSON objects, so these
//! routes read JSON bodies; a form can carry none.

use hyper::StatusCode;
use serde_json::Value;

use crate::auth::passkeys::{
    self, PasskeyRegistration, PasskeySignInRequest, StartedPasskeyCeremony,
};
use crate::auth::password::Password;
use crate::auth::{Identity, second_factor};
use crate::auth::{SignInOutcome, sign_in_counts};
use crate::http::Api;
use crate::http::dto::{PasskeyCeremony, PasskeyEntry, PasskeyList};
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::handlers::sign_in::{
    check_sign_in_origin, checked_return_url, signed_in_response,
};
use crate::http::request::Request;
use crate::http::response::{Response, empty_response, json_response};
use crate::model::Secret;
use crate::model::passkey::{PasskeyChallengeId, PasskeyId};

/// `POST /auth/passkey/register/start`: `password` re-checks the caller (an account without
/// one needs a recent sign-in instead).
pub async fn start_registration(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let password = fields.string("password")?.map(Password::new);
    let started = passkeys::start_passkey_registration(
        &api.app,
        &identity,
        password,
        &request.client_info(api),
    )
    .await?;
    Ok(ceremony_response(started))
}

/// `POST /auth/passkey/register/finish`: 201 with the new passkey.
pub async fn finish_registration(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let challenge_id = challenge_id(&fields)?;
    let name = fields.required_string("name")?;
    let credential = credential(&fields)?;
    let passkey = passkeys::finish_passkey_registration(
        &api.app,
        &identity,
        PasskeyRegistration {
            challenge_id,
            name,
            credential,
        },
    )
    .await?;
    tracing::info!(
        target: "latchkey::audit",
        event = "passkey-added",
        user_id = identity.user.id,
        session_id = identity.session_id.map(|id| id.to_string()),
        passkey_id = %passkey.id,
        remote_ip = request.client_info(api).remote_ip,
    );
    Ok(json_response(
        StatusCode::CREATED,
        &PasskeyEntry::from_passkey(&passkey),
    ))
}

/// `GET /auth/passkey`.
pub async fn list(api: &Api, identity: Identity) -> Result<Response, ApiError> {
    let passkeys = passkeys::list_passkeys(&api.app, &identity).await?;
    Ok(json_response(
        StatusCode::OK,
        &PasskeyList {
            passkeys: passkeys.iter().map(PasskeyEntry::from_passkey).collect(),
        },
    ))
}

/// `DELETE /auth/passkey/{passkey-id}`: 204; another user's passkey is 404.
pub async fn remove(
    api: &Api,
    request: &mut Request,
    identity: Identity,
    id: PasskeyId,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let password = fields.string("password")?.map(Password::new);
    audited_remove_passkey(api, request, &identity, id, password).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `auth::passkeys::remove_passkey` with its audit line, for this route and the account
/// page's remove form.
pub async fn audited_remove_passkey(
    api: &Api,
    request: &Request,
    identity: &Identity,
    id: PasskeyId,
    password: Option<Password>,
) -> Result<(), ApiError> {
    passkeys::remove_passkey(&api.app, identity, id, password, &request.client_info(api)).await?;
    tracing::info!(
        target: "latchkey::audit",
        event = "passkey-removed",
        user_id = identity.user.id,
        session_id = identity.session_id.map(|id| id.to_string()),
        passkey_id = %id,
        remote_ip = request.client_info(api).remote_ip,
    );
    Ok(())
}

/// `POST /auth/passkey/sign-in/start`: with no body (or `{}`), a passwordless sign-in.
pub async fn start_sign_in(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let client = request.client_info(api);
    let started = match fields.string("mfa-token")? {
        // The second step of a sign-in that answered 403 second-factor-required.
        Some(mfa_token) => {
            second_factor::start_passkey_second_factor(&api.app, &Secret::new(mfa_token), &client)
                .await?
        }
        None => passkeys::start_passkey_sign_in(&api.app, &client).await?,
    };
    Ok(ceremony_response(started))
}

/// `POST /auth/passkey/sign-in/finish`: the answer of `POST /auth/sign-in`, with the same
/// `jwt` cookie.
pub async fn finish_sign_in(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    check_sign_in_origin(api, request)?;
    let challenge_id = challenge_id(&fields)?;
    let credential = credential(&fields)?;
    let current_user = fields.string("current-user")?;
    let logout_other = fields.boolean("logout-other")?.unwrap_or(false);
    let long_term_token = fields.boolean("long-term-token")?.unwrap_or(true);
    let return_url = checked_return_url(api, fields.string("ret-url")?)?;
    let outcome = audited_passkey_sign_in(
        api,
        PasskeySignInRequest {
            challenge_id,
            credential,
            long_term_token,
            logout_other,
            client: request.client_info(api),
        },
    )
    .await?;
    signed_in_response(api, outcome, current_user, return_url, fields.kind())
}

/// `auth::passkeys::sign_in_with_passkey` with the sign-in's audit lines.
pub async fn audited_passkey_sign_in(
    api: &Api,
    sign_in: PasskeySignInRequest,
) -> Result<SignInOutcome, ApiError> {
    let remote_ip = sign_in.client.remote_ip.clone();
    let outcome = passkeys::sign_in_with_passkey(&api.app, sign_in)
        .await
        .inspect_err(|error| {
            tracing::info!(
                target: "latchkey::audit",
                event = "sign-in-failed",
                method = sign_in_counts::SignInMethod::Passkey.label(),
                reason = %error,
                remote_ip,
            );
        })?;
    tracing::info!(
        target: "latchkey::audit",
        event = "sign-in",
        method = sign_in_counts::SignInMethod::Passkey.label(),
        user_id = outcome.user.id,
        session_id = %outcome.session.id,
        remote_ip = outcome.session.remote_ip,
    );
    Ok(outcome)
}

fn ceremony_response(started: StartedPasskeyCeremony) -> Response {
    json_response(
        StatusCode::OK,
        &PasskeyCeremony {
            challenge_id: started.challenge_id.to_string(),
            options: started.options,
        },
    )
}

/// `challenge-id`: the id a start answered.
pub(super) fn challenge_id(fields: &Fields) -> Result<PasskeyChallengeId, ApiError> {
    let text = fields.required_string("challenge-id")?;
    PasskeyChallengeId::parse_canonical(&text).ok_or_else(|| {
        ApiError::invalid_field(
            "challenge-id",
            "must be the challenge-id the ceremony's start answered",
        )
    })
}

/// `credential`: the ceremony's answer from the browser, a JSON object.
pub(super) fn credential(fields: &Fields) -> Result<Value, ApiError> {
    fields
        .object("credential")?
        .map(Value::Object)
        .ok_or_else(|| ApiError::invalid_field("credential", "is required"))
}
