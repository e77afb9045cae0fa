//! Second factors: `POST /auth/sign-in/second-factor` (a sign-in's second step, answering
//! like `POST /auth/sign-in`), and TOTP and recovery codes under `/auth/mfa/`, which the
//! route table opens to sign-in sessions alone. Codes and tokens never reach a log.

use hyper::StatusCode;

use crate::auth::password::Password;
use crate::auth::second_factor::{
    self, PresentedSecondFactor, SecondFactorMethod, SecondFactorSignIn, SecondFactorSignedIn,
};
use crate::auth::{AuthError, Identity};
use crate::http::Api;
use crate::http::dto::{RecoveryCodesResponse, TotpEnrolmentResponse};
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::handlers::passkeys;
use crate::http::handlers::sign_in::{
    check_sign_in_origin, checked_return_url, signed_in_response,
};
use crate::http::request::Request;
use crate::http::response::{Response, empty_response, json_response};
use crate::model::Secret;
use crate::model::second_factor::FirstFactor;

/// `POST /auth/sign-in/second-factor`: `mfa-token` and one of `code`, `recovery-code`, or
/// `challenge-id` with `credential` (a passkey). JSON or form, like sign-in, with its login
/// CSRF rule, `current-user` and `ret-url`.
pub async fn sign_in_second_factor(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    check_sign_in_origin(api, request)?;
    let mfa_token = fields.required_string("mfa-token")?;
    let presented = presented_second_factor(&fields)?;
    let current_user = fields.string("current-user")?;
    let return_url = checked_return_url(api, fields.string("ret-url")?)?;
    let signed_in = audited_complete_sign_in(
        api,
        SecondFactorSignIn {
            mfa_token: Secret::new(mfa_token),
            presented,
            client: request.client_info(api),
        },
    )
    .await?;
    signed_in_response(
        api,
        signed_in.outcome,
        current_user,
        return_url,
        fields.kind(),
    )
}

/// `second_factor::complete_sign_in` with its audit lines (the failure, the sign-in with
/// both factors, a recovery code spent), for this route and the second-factor page.
pub async fn audited_complete_sign_in(
    api: &Api,
    sign_in: SecondFactorSignIn,
) -> Result<SecondFactorSignedIn, ApiError> {
    let remote_ip = sign_in.client.remote_ip.clone();
    let signed_in = second_factor::complete_sign_in(&api.app, sign_in)
        .await
        .inspect_err(|error| {
            tracing::info!(
                target: "latchkey::audit",
                event = "second-factor-failed",
                reason = %error,
                remote_ip,
            );
        })?;
    let outcome = &signed_in.outcome;
    tracing::info!(
        target: "latchkey::audit",
        event = "sign-in",
        user_id = outcome.user.id,
        session_id = %outcome.session.id,
        first_factor = first_factor_name(&signed_in.first_factor),
        second_factor = signed_in.method.name(),
        remote_ip = outcome.session.remote_ip,
    );
    if signed_in.method == SecondFactorMethod::RecoveryCode {
        let left = second_factor::summary(&api.app, outcome.user.id)
            .await?
            .recovery_codes_left;
        tracing::info!(
            target: "latchkey::audit",
            event = "recovery-code-used",
            user_id = outcome.user.id,
            recovery_codes_left = left,
            remote_ip = outcome.session.remote_ip,
        );
    }
    Ok(signed_in)
}

/// The one proof the body carries; none, or more than one, is a 400.
fn presented_second_factor(fields: &Fields) -> Result<PresentedSecondFactor, ApiError> {
    let code = non_empty(fields.string("code")?);
    let recovery_code = non_empty(fields.string("recovery-code")?);
    let passkey = non_empty(fields.string("challenge-id")?).is_some()
        || fields.object("credential")?.is_some();
    match (code, recovery_code, passkey) {
        (Some(code), None, false) => Ok(PresentedSecondFactor::Code(Secret::new(code))),
        (None, Some(recovery_code), false) => Ok(PresentedSecondFactor::RecoveryCode(Secret::new(
            recovery_code,
        ))),
        (None, None, true) => passkey_assertion(fields),
        (None, None, false) => Err(ApiError::invalid_field(
            "code",
            "is required (or recovery-code, or challenge-id with credential)",
        )),
        _ => Err(ApiError::invalid_field(
            "code",
            "must come alone: send one of code, recovery-code, or challenge-id with credential",
        )),
    }
}

/// The passkey arm of the second step: the answer to the challenge that
/// `POST /auth/passkey/sign-in/start` with the mfa-token gave.
fn passkey_assertion(fields: &Fields) -> Result<PresentedSecondFactor, ApiError> {
    Ok(PresentedSecondFactor::Passkey {
        challenge_id: passkeys::challenge_id(fields)?,
        credential: passkeys::credential(fields)?,
    })
}

/// `POST /auth/mfa/totp`: `password` (unless the account has none); answers the new secret,
/// pending until confirmed.
pub async fn start_totp(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let password = fields.string("password")?.map(Password::new);
    let enrolment = second_factor::start_totp_enrolment(
        &api.app,
        &identity,
        password,
        &request.client_info(api),
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &TotpEnrolmentResponse {
            otpauth_uri: enrolment.otpauth_uri.into_exposed_secret(),
            secret: enrolment.secret.into_exposed_secret(),
        },
    ))
}

/// `POST /auth/mfa/totp/confirm`: `code`; answers the ten recovery codes.
pub async fn confirm_totp(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let code = fields.required_string("code")?;
    let codes = second_factor::confirm_totp_enrolment(
        &api.app,
        &identity,
        Secret::new(code),
        &request.client_info(api),
    )
    .await?;
    Ok(recovery_codes_response(codes))
}

/// `DELETE /auth/mfa/totp`: `password` (unless the account has none) and a current `code`
/// (or, the device lost, a `recovery-code`); 204.
pub async fn disable_totp(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let password = fields.string("password")?.map(Password::new);
    let code = non_empty(fields.string("code")?);
    let recovery_code = non_empty(fields.string("recovery-code")?);
    let presented = match (code, recovery_code) {
        (Some(code), None) => PresentedSecondFactor::Code(Secret::new(code)),
        (None, Some(recovery_code)) => {
            PresentedSecondFactor::RecoveryCode(Secret::new(recovery_code))
        }
        (None, None) => return Err(ApiError::invalid_field("code", "is required")),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "code",
                "must come alone: send code or recovery-code",
            ));
        }
    };
    second_factor::disable_totp(
        &api.app,
        &identity,
        password,
        presented,
        &request.client_info(api),
    )
    .await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `POST /auth/mfa/recovery-codes`: `password` (unless the account has none); answers ten
/// new codes, which replace the old ones.
pub async fn regenerate_recovery_codes(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let password = fields.string("password")?.map(Password::new);
    let codes = second_factor::regenerate_recovery_codes(
        &api.app,
        &identity,
        password,
        &request.client_info(api),
    )
    .await?;
    Ok(recovery_codes_response(codes))
}

fn recovery_codes_response(codes: Vec<Secret<String>>) -> Response {
    json_response(
        StatusCode::OK,
        &RecoveryCodesResponse {
            recovery_codes: codes.into_iter().map(Secret::into_exposed_secret).collect(),
        },
    )
}

/// An empty field counts as absent (a page's form sends its empty inputs).
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// The first factor's name in the audit log.
pub fn first_factor_name(first_factor: &FirstFactor) -> &'static str {
    match first_factor {
        FirstFactor::Password => "password",
        FirstFactor::OAuth { .. } => "oauth",
    }
}

/// The audit line of a first factor that was right for an account holding a second one
/// (password or OAuth sign-in); any other error is its caller's to log.
pub fn audit_second_factor_required(error: &AuthError, first_factor: &str, remote_ip: &str) {
    if let AuthError::SecondFactorRequired(challenge) = error {
        tracing::info!(
            target: "latchkey::audit",
            event = "second-factor-required",
            user_id = challenge.user_id,
            first_factor,
            remote_ip,
        );
    }
}
