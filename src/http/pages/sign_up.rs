//! `GET, POST /sign-up`, when `[signup] open`: the same `auth::signup::sign_up` as the API,
//! and the same answer for a free and a taken address (the mail tells them apart).

use askama::Template;

use crate::auth::password::Password;
use crate::auth::signup::{self, SignUpRequest};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::handlers::signup::captcha;
use crate::http::pages::Pages;
use crate::http::pages::form::{Visitor, optional_text, read_visitor_form};
use crate::http::pages::render::{Layout, Problem, form_page, message_page};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::model::PASSWORD_MAX_CHARACTERS;

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    email: String,
    first_name: String,
    last_name: String,
    min_length: usize,
    max_length: usize,
}

impl SignUpPage {
    fn focuses(&self, field: &str) -> bool {
        Problem::focuses(self.problem.as_ref(), field, "email")
    }

    fn blames(&self, field: &str) -> bool {
        Problem::blames(self.problem.as_ref(), field)
    }
}

#[derive(Default)]
struct Entered {
    email: String,
    first_name: String,
    last_name: String,
}

fn draw(
    api: &Api,
    pages: &Pages,
    visitor: &Visitor,
    entered: Entered,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let page = SignUpPage {
        layout: Layout::new(api, "Create an account"),
        problem: error.map(Problem::from_error),
        csrf_token: visitor.form_token(pages),
        email: entered.email,
        first_name: entered.first_name,
        last_name: entered.last_name,
        min_length: api.app.config.password.min_length,
        max_length: PASSWORD_MAX_CHARACTERS,
    };
    form_page(api, &page, &visitor.browser, error, &[])
}

fn check_open(api: &Api) -> Result<(), ApiError> {
    if api.app.config.signup.open {
        Ok(())
    } else {
        Err(ApiError::SignupClosed)
    }
}

/// `GET /sign-up`.
pub async fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    check_open(api)?;
    let visitor = Visitor::read(api, request).await?;
    draw(api, pages, &visitor, Entered::default(), None)
}

/// `POST /sign-up`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    check_open(api)?;
    let (visitor, form) = read_visitor_form(api, pages, request).await?;
    let (fields, expired) = form.fields_and_expired();
    let entered = Entered {
        email: fields.string("email")?.unwrap_or_default(),
        first_name: fields.string("first-name")?.unwrap_or_default(),
        last_name: fields.string("last-name")?.unwrap_or_default(),
    };
    if expired {
        let error = ApiError::FormTokenInvalid;
        return draw(api, pages, &visitor, entered, Some(&error));
    }
    let outcome = async {
        captcha(api, request, &fields, false).await?;
        let sign_up = SignUpRequest {
            email: fields.required_string("email")?,
            password: Password::new(fields.required_string("password")?),
            first_name: optional_text(&fields, "first-name")?,
            last_name: optional_text(&fields, "last-name")?,
        };
        signup::sign_up(&api.app, sign_up, &request.client_info(api)).await?;
        Ok::<(), ApiError>(())
    }
    .await;
    match outcome {
        Ok(()) => message_page(
            api,
            "Check your email",
            &format!(
                "We sent a message to {}. Open the link in it to confirm your address and activate your account.",
                entered.email.trim()
            ),
            ("/sign-in", "Go to sign-in"),
        ),
        Err(error) => draw(api, pages, &visitor, entered, Some(&error)),
    }
}
