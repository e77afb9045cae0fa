//! `POST /account/sessions/end` and `/account/sessions/end-others`: one session by its id,
//! through `auth::account::end_session` as `DELETE /auth/session/{session-id}` does
//! (another user's id is not found, 404), or every session but this browser's, through
//! `auth::account::end_other_sessions` under the rule of `DELETE /auth/session`.

use hyper::Method;

use crate::auth::account;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::Notice;
use crate::http::pages::account::{
    AccountForm, audit, check_route_access, finish_on_page, read_account_form,
};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
use crate::model::SessionId;

/// `POST /account/sessions/end`.
pub async fn submit_end(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let outcome = async {
        check_route_access(api, request, &identity, Route::Session, &Method::DELETE)?;
        let id = fields
            .string("session-id")?
            .as_deref()
            .and_then(SessionId::parse_canonical)
            .ok_or_else(|| ApiError::invalid_field("session-id", "is not a session id"))?;
        account::end_session(&api.app, &identity, id).await?;
        audit(api, request, &identity, "session-ended");
        Ok::<_, ApiError>(Notice::SessionEnded)
    }
    .await;
    finish_on_page(api, pages, request, &identity, outcome).await
}

/// `POST /account/sessions/end-others`.
pub async fn submit_end_others(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let identity = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, _) => identity,
        AccountForm::Answered(response) => return Ok(response),
    };
    let outcome = async {
        check_route_access(api, request, &identity, Route::Sessions, &Method::DELETE)?;
        account::end_other_sessions(&api.app, &identity).await?;
        audit(api, request, &identity, "sessions-ended");
        Ok::<_, ApiError>(Notice::OtherSessionsEnded)
    }
    .await;
    finish_on_page(api, pages, request, &identity, outcome).await
}
