//! `GET, POST /verify`: the link in a verification mail. The GET only shows a confirm
//! button and consumes nothing (mail scanners fetch links); the POST verifies through
//! `auth::signup::verify_email`, as `POST /auth/verify` does.

use askama::Template;
use hyper::StatusCode;

use crate::auth::signup;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::handlers::signup::captcha;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::form::{PageForm, read_page_form};
use crate::http::pages::render::{Layout, Problem, html_page, message_page};
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::Response;

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    token: String,
}

fn draw(
    api: &Api,
    pages: &Pages,
    browser: &BrowserBinding,
    csrf_identity: Option<&crate::auth::Identity>,
    token: String,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let status = error.map_or(StatusCode::OK, |error| error.parts().0);
    let page = VerifyPage {
        layout: Layout::new(api, "Confirm your email address"),
        problem: error.map(Problem::from_error),
        csrf_token: browser.form_token(&pages.csrf_key, csrf_identity),
        token,
    };
    html_page(api, status, &page, Some(browser), &[])
}

/// `GET /verify?token=…`.
pub fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let Some(token) = request
        .query
        .string("token")?
        .filter(|token| !token.is_empty())
    else {
        return message_page(
            api,
            "Confirm your email address",
            "Open the link from the email we sent you; it carries the code this page needs.",
            ("/sign-in", "Go to sign-in"),
        );
    };
    let identity = page_identity(api, request)?;
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    draw(api, pages, &browser, identity.as_ref(), token, None)
}

/// `POST /verify`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request)?;
    let form = read_page_form(api, pages, request, identity.as_ref()).await?;
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let fields = match form {
        PageForm::Checked(fields) => fields,
        PageForm::Expired(fields) => {
            // The link's token is in the form: keep it, so the visitor can send it again.
            let token = fields
                .string("verify-token")
                .ok()
                .flatten()
                .unwrap_or_default();
            let error = ApiError::FormTokenInvalid;
            return draw(api, pages, &browser, identity.as_ref(), token, Some(&error));
        }
    };
    let outcome = async {
        captcha(api, request, &fields, false).await?;
        let token = fields.required_string("verify-token")?;
        Ok::<_, ApiError>(signup::verify_email(&api.app, &token).await?)
    }
    .await;
    match outcome {
        Ok(_) => message_page(
            api,
            "Email address confirmed",
            "Your email address is confirmed and your account is active. You can sign in now.",
            ("/sign-in", "Sign in"),
        ),
        // A link that cannot work leaves no form worth drawing again.
        Err(error @ ApiError::InvalidEmailToken { .. }) => Err(error),
        Err(error) => {
            let token = fields.string("verify-token")?.unwrap_or_default();
            draw(api, pages, &browser, identity.as_ref(), token, Some(&error))
        }
    }
}
