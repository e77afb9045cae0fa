//! Password changes with a credential: the caller's own, and a reachable user's. The
//! credential-less half of `PUT /auth/current/password`, a reset token, is in `signup`.

use hyper::StatusCode;

use crate::auth::Identity;
use crate::auth::account;
use crate::auth::password::Password;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::handlers::signup::complete_reset;
use crate::http::request::Request;
use crate::http::response::{Response, empty_response};
use crate::model::UserId;

/// `logout-all` from the query (as documented) or, failing that, the body.
fn logout_all_flag(request: &Request, fields: &Fields) -> Result<bool, ApiError> {
    match request.query.boolean("logout-all")? {
        Some(value) => Ok(value),
        None => Ok(fields.boolean("logout-all")?.unwrap_or(false)),
    }
}

/// `PUT /auth/current/password`. With a credential: old and new password. Without one: a
/// `password-update-token` from a reset email and the new password.
pub async fn change_current_password(
    api: &Api,
    request: &mut Request,
    identity: Option<Identity>,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let logout_all = logout_all_flag(request, &fields)?;
    let Some(identity) = identity else {
        // No credential: the reset token's half of this endpoint.
        complete_reset(api, request, &fields).await?;
        return Ok(empty_response(StatusCode::NO_CONTENT));
    };
    let old_password = fields.required_string("old-password")?;
    let new_password = fields.required_string("new-password")?;
    account::change_own_password(
        &api.app,
        &identity,
        Password::new(old_password),
        Password::new(new_password),
        logout_all,
        &request.client_info(api),
    )
    .await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `PUT /auth/{user-id}/password`: `old-password` is the caller's own.
pub async fn change_user_password(
    api: &Api,
    request: &mut Request,
    identity: Identity,
    target_id: UserId,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let logout_all = logout_all_flag(request, &fields)?;
    let caller_password = fields.required_string("old-password")?;
    let new_password = fields.required_string("new-password")?;
    account::change_user_password(
        &api.app,
        &identity,
        target_id,
        Password::new(caller_password),
        Password::new(new_password),
        logout_all,
        &request.client_info(api),
    )
    .await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}
