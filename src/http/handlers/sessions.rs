//! Sessions: listing and ending them, and signing out.

use hyper::StatusCode;

use crate::auth::Identity;
use crate::auth::account;
use crate::http::Api;
use crate::http::dto::{SessionEntry, SessionList, SignOutResponse};
use crate::http::error::ApiError;
use crate::http::handlers::sign_in::checked_return_url;
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie, empty_response, json_response};
use crate::model::SessionId;

/// `GET /auth/session`.
pub async fn list_sessions(api: &Api, identity: Identity) -> Result<Response, ApiError> {
    let sessions = account::list_sessions(&api.app, &identity).await?;
    Ok(json_response(
        StatusCode::OK,
        &SessionList {
            sessions: sessions.iter().map(SessionEntry::from_session).collect(),
        },
    ))
}

/// `GET /auth/session/{session-id}`.
pub async fn get_session(
    api: &Api,
    identity: Identity,
    id: SessionId,
) -> Result<Response, ApiError> {
    let session = account::get_session(&api.app, &identity, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &SessionEntry::from_session(&session),
    ))
}

/// `DELETE /auth/session`.
pub async fn end_all_sessions(api: &Api, identity: Identity) -> Result<Response, ApiError> {
    account::end_all_sessions(&api.app, &identity).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `DELETE /auth/session/{session-id}`.
pub async fn end_session(
    api: &Api,
    identity: Identity,
    id: SessionId,
) -> Result<Response, ApiError> {
    account::end_session(&api.app, &identity, id).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `DELETE /auth/sign-out`: a bad ret-url is refused before anything ends.
pub async fn sign_out(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let logout_all = request.query.boolean("logout-all")?.unwrap_or(false);
    let return_url = checked_return_url(api, request.query.string("ret-url")?)?;
    account::sign_out(&api.app, &identity, logout_all).await?;
    let mut response = json_response(
        StatusCode::OK,
        &SignOutResponse {
            success: true,
            ret_url: return_url,
        },
    );
    append_session_cookie(&mut response, api, "", 0);
    Ok(response)
}
