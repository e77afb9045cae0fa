//! `GET, POST /verify`: the link in a verification mail. The GET only shows a confirm
//! button and consumes nothing (mail scanners fetch links); the POST verifies through
//! `auth::signup::verify_email`, as `POST /auth/verify` does.

use askama::Template;

use crate::auth::signup;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::handlers::signup::captcha;
use crate::http::pages::Pages;
use crate::http::pages::form::{PageForm, Visitor, link_token, read_visitor_form};
use crate::http::pages::render::{Layout, Problem, form_status, html_page, message_page};
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
    visitor: &Visitor,
    token: String,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let page = VerifyPage {
        layout: Layout::new(api, "Confirm your email address"),
        problem: error.map(Problem::from_error),
        csrf_token: visitor.form_token(pages),
        token,
    };
    html_page(api, form_status(error), &page, Some(&visitor.browser), &[])
}

/// `GET /verify?token=…`.
pub async fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let Some(token) = link_token(request)? else {
        return message_page(
            api,
            "Confirm your email address",
            "Open the link from the email we sent you; it carries the code this page needs.",
            ("/sign-in", "Go to sign-in"),
        );
    };
    let visitor = Visitor::read(api, request).await?;
    draw(api, pages, &visitor, token, None)
}

/// `POST /verify`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (visitor, form) = read_visitor_form(api, pages, request).await?;
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
            return draw(api, pages, &visitor, token, Some(&error));
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
            draw(api, pages, &visitor, token, Some(&error))
        }
    }
}
