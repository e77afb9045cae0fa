//! `GET, POST /password-reset` (ask for a reset mail, through
//! `auth::signup::request_password_reset`: the same answer whether or not the address has
//! an account) and `GET, POST /password-reset/confirm` (set a new password from the link's
//! token, through `auth::signup::complete_password_reset`, as the API does).

use askama::Template;

use crate::auth::password::Password;
use crate::auth::signup;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::handlers::signup::captcha;
use crate::http::pages::Pages;
use crate::http::pages::form::{PageForm, Visitor, link_token, read_visitor_form};
use crate::http::pages::render::{Layout, Problem, form_page, message_page};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::model::PASSWORD_MAX_CHARACTERS;

#[derive(Template)]
#[template(path = "password_reset.html")]
struct ResetRequestPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    email: String,
}

impl ResetRequestPage {
    fn focuses(&self, field: &str) -> bool {
        Problem::focuses(self.problem.as_ref(), field, "email")
    }

    fn blames(&self, field: &str) -> bool {
        Problem::blames(self.problem.as_ref(), field)
    }
}

#[derive(Template)]
#[template(path = "password_reset_confirm.html")]
struct ResetConfirmPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    token: String,
    min_length: usize,
    max_length: usize,
}

impl ResetConfirmPage {
    fn focuses(&self, field: &str) -> bool {
        Problem::focuses(self.problem.as_ref(), field, "new-password")
    }

    fn blames(&self, field: &str) -> bool {
        Problem::blames(self.problem.as_ref(), field)
    }
}

fn draw_request(
    api: &Api,
    pages: &Pages,
    visitor: &Visitor,
    email: String,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let page = ResetRequestPage {
        layout: Layout::new(api, "Reset your password"),
        problem: error.map(Problem::from_error),
        csrf_token: visitor.form_token(pages),
        email,
    };
    form_page(api, &page, &visitor.browser, error, &[])
}

fn draw_confirm(
    api: &Api,
    pages: &Pages,
    visitor: &Visitor,
    token: String,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let page = ResetConfirmPage {
        layout: Layout::new(api, "Choose a new password"),
        problem: error.map(Problem::from_error),
        csrf_token: visitor.form_token(pages),
        token,
        min_length: api.app.config.password.min_length,
        max_length: PASSWORD_MAX_CHARACTERS,
    };
    form_page(api, &page, &visitor.browser, error, &[])
}

/// `GET /password-reset`.
pub async fn show_request(
    api: &Api,
    pages: &Pages,
    request: &Request,
) -> Result<Response, ApiError> {
    let visitor = Visitor::read(api, request).await?;
    draw_request(api, pages, &visitor, String::new(), None)
}

/// `POST /password-reset`.
pub async fn submit_request(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let (visitor, form) = read_visitor_form(api, pages, request).await?;
    let fields = match form {
        PageForm::Checked(fields) => fields,
        PageForm::Expired(fields) => {
            let email = fields.string("email")?.unwrap_or_default();
            let error = ApiError::FormTokenInvalid;
            return draw_request(api, pages, &visitor, email, Some(&error));
        }
    };
    let email = fields.string("email")?.unwrap_or_default();
    let outcome = async {
        captcha(api, request, &fields, false).await?;
        let email = fields.required_string("email")?;
        signup::request_password_reset(&api.app, &email, &request.client_info(api)).await?;
        Ok::<(), ApiError>(())
    }
    .await;
    match outcome {
        Ok(()) => message_page(
            api,
            "Check your email",
            &format!(
                "If {} belongs to an account, we sent it a link to choose a new password. The link works once and for a limited time.",
                email.trim()
            ),
            ("/sign-in", "Back to sign-in"),
        ),
        Err(error) => draw_request(api, pages, &visitor, email, Some(&error)),
    }
}

/// `GET /password-reset/confirm?token=…`: the form only; the token is checked when sent.
pub async fn show_confirm(
    api: &Api,
    pages: &Pages,
    request: &Request,
) -> Result<Response, ApiError> {
    let Some(token) = link_token(request)? else {
        return message_page(
            api,
            "Choose a new password",
            "Open the link from the password reset email; it carries the code this page needs. To get one, ask for a reset.",
            ("/password-reset", "Ask for a reset link"),
        );
    };
    let visitor = Visitor::read(api, request).await?;
    draw_confirm(api, pages, &visitor, token, None)
}

/// `POST /password-reset/confirm`.
pub async fn submit_confirm(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let (visitor, form) = read_visitor_form(api, pages, request).await?;
    let (fields, expired) = form.fields_and_expired();
    let token = fields.string("password-update-token")?.unwrap_or_default();
    if expired {
        let error = ApiError::FormTokenInvalid;
        return draw_confirm(api, pages, &visitor, token, Some(&error));
    }
    let new_password = fields.required_string("new-password");
    let outcome = match new_password {
        Ok(new_password) => signup::complete_password_reset(
            &api.app,
            &token,
            Password::new(new_password),
            &request.client_info(api),
        )
        .await
        .map(drop)
        .map_err(ApiError::from),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => message_page(
            api,
            "Password changed",
            "Your password is changed, and every session of the account has ended. Sign in with the new password.",
            ("/sign-in", "Sign in"),
        ),
        // A link that cannot work leaves no form worth drawing again.
        Err(error @ ApiError::InvalidEmailToken { .. }) => Err(error),
        Err(error) => draw_confirm(api, pages, &visitor, token, Some(&error)),
    }
}
