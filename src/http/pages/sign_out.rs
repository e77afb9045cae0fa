//! `POST /sign-out`: ends the visitor's session through `auth::account::sign_out` (as
//! `DELETE /auth/sign-out` does), clears the `jwt` cookie and 303s to `/sign-in`.

use crate::auth::account;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::form::{PageForm, read_page_form};
use crate::http::pages::render;
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie};

/// `POST /sign-out`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request).await?;
    let form = read_page_form(api, pages, request, identity.as_ref()).await?;
    // A visitor whose session has already ended has nothing to end: a stale form then only
    // clears the cookie. With a live session, only a form made for it signs out.
    if matches!(form, PageForm::Expired(_)) && identity.is_some() {
        return Err(ApiError::FormTokenInvalid);
    }
    if let Some(identity) = &identity {
        account::sign_out(&api.app, identity, false).await?;
        tracing::info!(
            target: "latchkey::audit",
            event = "sign-out",
            user_id = identity.user.id,
            session_id = identity.session_id.map(|id| id.to_string()),
            remote_ip = request.client_info(api).remote_ip,
        );
    }
    let mut response = render::redirect("/sign-in")?;
    append_session_cookie(&mut response, api, "", 0);
    Ok(response)
}
