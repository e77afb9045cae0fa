//! `GET /account`, the signed-in visitor's page, and what its forms share: reading a form
//! only a signed-in visitor may send, the API route's access rule applied to it, and the
//! answer after it (a 303 back with a fixed notice, or the page again with the problem).
//! Each form's POST is in its own file, through the same `auth` use case as the API.
//! Anonymous visitors are sent to `/sign-in?ret-url=/account`.

pub mod api_tokens;
mod page;
pub mod passkeys;
pub mod password;
pub mod profile;
pub mod recovery_codes;
pub mod sessions;
pub mod totp;
pub mod totp_confirm;
pub mod totp_disable;
pub mod totp_enable;

use hyper::Method;
use hyper::StatusCode;

use crate::auth::Identity;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::pages::account::page::{Entered, Notice, Section, Shown, draw};
use crate::http::pages::form::{PageForm, read_page_form};
use crate::http::pages::render;
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::{Caller, Route, TrustedOrigins, access_rule, admit};

/// Where an anonymous visitor is sent: sign in, then come back here.
const SIGN_IN_FIRST: &str = "/sign-in?ret-url=/account";

/// `GET /account`, with the notice a form's 303 named (`?done=`, one of a fixed list: the
/// page never shows text from the address).
pub async fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let Some(identity) = page_identity(api, request).await? else {
        return render::redirect(SIGN_IN_FIRST);
    };
    let notice = request
        .query
        .string("done")
        .ok()
        .flatten()
        .and_then(|name| Notice::from_name(&name));
    let shown = Shown {
        notice,
        ..Shown::default()
    };
    draw(api, pages, request, &identity, StatusCode::OK, shown).await
}

/// A signed-in visitor's form, once its origin and CSRF token passed; or the answer to send
/// instead (to sign in first, or the page again for an expired form).
enum AccountForm {
    Checked(Box<Identity>, Fields),
    Answered(Response),
}

/// Reads an account form: anonymous visitors go to sign-in (nothing is acted on); a
/// foreign origin is refused; a form without its token draws the page again to be sent anew.
async fn read_account_form(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<AccountForm, ApiError> {
    let Some(identity) = page_identity(api, request).await? else {
        return render::redirect(SIGN_IN_FIRST).map(AccountForm::Answered);
    };
    match read_page_form(api, pages, request, Some(&identity)).await? {
        PageForm::Checked(fields) => Ok(AccountForm::Checked(Box::new(identity), fields)),
        PageForm::Expired(_) => {
            let error = ApiError::FormTokenInvalid;
            let status = error.parts().0;
            let shown = Shown {
                problem: Some((Section::Page, &error)),
                ..Shown::default()
            };
            draw(api, pages, request, &identity, status, shown)
                .await
                .map(AccountForm::Answered)
        }
    }
}

/// The access rule of the API route a form stands for (`routes::access_rule`), applied to
/// the visitor as `check_access` applies it to a caller, so a page grants nothing the API
/// would refuse. The cookie's origin was checked with the form.
fn check_route_access(
    api: &Api,
    request: &Request,
    identity: &Identity,
    route: Route,
    method: &Method,
) -> Result<(), ApiError> {
    admit(
        access_rule(route, method),
        Some(Caller {
            identity: identity.clone(),
            from_cookie: false,
        }),
        &request.parts,
        TrustedOrigins {
            public_origin: &api.public_origin,
            allowed_origins: &api.app.config.auth.allowed_return_origins,
        },
        Some(identity.user.id),
    )
    .map(|_| ())
}

/// The answer to a form once acted on: 303 back to the page with its notice, or the page
/// again with the problem next to the form (its status the API's). A credential that
/// stopped working meanwhile sends the visitor to sign in.
async fn finish(
    api: &Api,
    pages: &Pages,
    request: &Request,
    identity: &Identity,
    outcome: Result<Notice, (Section, ApiError, Entered)>,
) -> Result<Response, ApiError> {
    match outcome {
        Ok(notice) => render::redirect(&format!("/account?done={}", notice.name())),
        Err((_, ApiError::Unauthenticated, _)) => render::redirect(SIGN_IN_FIRST),
        Err((section, error, entered)) => {
            let status = error.parts().0;
            let shown = Shown {
                notice: None,
                problem: Some((section, &error)),
                entered,
            };
            let response = draw(api, pages, request, identity, status, shown).await?;
            Ok(render::with_retry_after(response, Some(&error)))
        }
    }
}

/// `finish` for a form whose problem shows at the top of the page, nothing to fill again.
async fn finish_on_page(
    api: &Api,
    pages: &Pages,
    request: &Request,
    identity: &Identity,
    outcome: Result<Notice, ApiError>,
) -> Result<Response, ApiError> {
    let outcome = outcome.map_err(|error| (Section::Page, error, Entered::default()));
    finish(api, pages, request, identity, outcome).await
}

/// The audit line the API's dispatch writes for the same act (`audited_event`).
fn audit(api: &Api, request: &Request, identity: &Identity, event: &'static str) {
    tracing::info!(
        target: "latchkey::audit",
        event,
        user_id = identity.user.id,
        session_id = identity.session_id.map(|id| id.to_string()),
        remote_ip = request.client_info(api).remote_ip,
        page = true,
    );
}

/// The audit line the API's dispatch writes for `route` and `method` (`audited_event`),
/// written for the form that does the same act.
fn audit_as_route(
    api: &Api,
    request: &Request,
    identity: &Identity,
    route: Route,
    method: &Method,
) {
    if let Some(event) = crate::http::audited_event(route, method) {
        audit(api, request, identity, event);
    }
}
