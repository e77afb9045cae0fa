//! Sign-up, email verification and password reset (the flows of emailed links), and the
//! two minimal HTML pages those links opened before the hosted pages: with the pages on
//! they 303 there, token kept; with `[pages] enabled = false` they still serve (API.md
//! sections 5 and 8).

use hyper::StatusCode;
use hyper::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, X_FRAME_OPTIONS};
use serde::Serialize;

use crate::auth::password::Password;
use crate::auth::signup::{self, SignUpRequest};
use crate::html::escape;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::request::Request;
use crate::http::response::{Response, empty_response, json_response, see_other};

/// The answer to every request that must not reveal whether an address is registered.
#[derive(Serialize)]
struct Accepted {
    success: bool,
}

fn accepted() -> Response {
    json_response(StatusCode::OK, &Accepted { success: true })
}

/// `AuthPostVerifyResponse`.
#[derive(Serialize)]
struct Verified {
    email: String,
    status: &'static str,
    success: bool,
}

/// `X-Recaptcha-Token`: required on `POST /auth/verify` (at least 6 characters), checked
/// with the configured provider wherever it is sent. A browser form may carry it as the
/// field `x-recaptcha-token`, since a form cannot set headers.
pub async fn captcha(
    api: &Api,
    request: &Request,
    fields: &Fields,
    required: bool,
) -> Result<(), ApiError> {
    let from_header = request
        .parts
        .headers
        .get("x-recaptcha-token")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let token = match from_header {
        Some(token) => Some(token),
        None => fields.string("x-recaptcha-token")?,
    };
    match token {
        Some(token) if token.chars().count() >= 6 => {
            crate::auth::captcha::check(&api.app, &token, &request.client_info(api).remote_ip)
                .await
                .map_err(ApiError::from)
        }
        Some(_) => Err(ApiError::invalid_field(
            "X-Recaptcha-Token",
            "must be at least 6 characters",
        )),
        None if required
            || api.app.config.captcha.provider != crate::config::CaptchaProvider::None =>
        {
            Err(ApiError::invalid_field("X-Recaptcha-Token", "is required"))
        }
        None => Ok(()),
    }
}

/// `POST /auth/sign-up`.
pub async fn sign_up(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    captcha(api, request, &fields, false).await?;
    let sign_up = SignUpRequest {
        email: fields.required_string("email")?,
        password: Password::new(fields.required_string("password")?),
        first_name: fields.string("first-name")?,
        last_name: fields.string("last-name")?,
    };
    signup::sign_up(&api.app, sign_up, &request.client_info(api)).await?;
    Ok(accepted())
}

/// `POST /auth/verify`. A form from the server's own page (`respond=html`) gets a page back.
pub async fn verify(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let wants_page = fields.string("respond")?.as_deref() == Some("html");
    let outcome = async {
        captcha(api, request, &fields, true).await?;
        let token = fields.required_string("verify-token")?;
        Ok::<_, ApiError>(signup::verify_email(&api.app, &token).await?)
    }
    .await;
    match (outcome, wants_page) {
        (Ok(user), false) => Ok(json_response(
            StatusCode::OK,
            &Verified {
                email: user.email,
                status: user.status.name(),
                success: true,
            },
        )),
        (Ok(_), true) => Ok(page(
            StatusCode::OK,
            "Email verified",
            "<p>Your email address is verified. You can sign in now.</p>",
        )),
        (Err(error), true) => Ok(page(
            StatusCode::BAD_REQUEST,
            "Not verified",
            &failure_paragraph(&error),
        )),
        (Err(error), false) => Err(error),
    }
}

/// `POST /auth/verify/resend`.
pub async fn resend(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    captcha(api, request, &fields, false).await?;
    let email = fields.required_string("email")?;
    signup::resend_verification(&api.app, &email, &request.client_info(api)).await?;
    Ok(accepted())
}

/// `POST /auth/password-reset`.
pub async fn request_reset(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    captcha(api, request, &fields, false).await?;
    let email = fields.required_string("email")?;
    signup::request_password_reset(&api.app, &email, &request.client_info(api)).await?;
    Ok(accepted())
}

/// `PUT /auth/current/password` without a credential: the reset token's half.
pub async fn complete_reset(api: &Api, request: &Request, fields: &Fields) -> Result<(), ApiError> {
    let Some(token) = fields.string("password-update-token")? else {
        return Err(ApiError::Unauthenticated);
    };
    let new_password = fields.required_string("new-password")?;
    signup::complete_password_reset(
        &api.app,
        &token,
        Password::new(new_password),
        &request.client_info(api),
    )
    .await?;
    Ok(())
}

/// `POST /auth/password-reset/confirm`: the reset page's form (a form cannot send PUT).
pub async fn confirm_reset_form(api: &Api, request: &mut Request) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    Ok(match complete_reset(api, request, &fields).await {
        Ok(()) => page(
            StatusCode::OK,
            "Password changed",
            "<p>Your password is changed, and every session of the account has ended. Sign in with the new password.</p>",
        ),
        // The error's own status: a 429 stays a 429 for the browser too.
        Err(error) => page(
            error.parts().0,
            "Password not changed",
            &failure_paragraph(&error),
        ),
    })
}

fn failure_paragraph(error: &ApiError) -> String {
    let (_, _, message, _) = error.parts();
    format!("<p>{}</p>", escape(&message))
}

/// `GET /auth/verify?token=…`: with the hosted pages on, 303 to `/verify` with the token
/// (links in mails sent before the pages existed); else a page whose form completes the
/// verification.
pub fn verify_page(api: &Api, request: &Request) -> Result<Response, ApiError> {
    if api.pages.is_some() {
        return moved_to_page(request, "/verify");
    }
    let token = escape(&request.query.string("token")?.unwrap_or_default());
    let body = format!(
        "<p>Confirm your email address.</p>\
         <form method=\"post\" action=\"/frontend/api/v1/auth/verify\">\
         <input type=\"hidden\" name=\"verify-token\" value=\"{token}\">\
         <input type=\"hidden\" name=\"x-recaptcha-token\" value=\"email-link\">\
         <input type=\"hidden\" name=\"respond\" value=\"html\">\
         <button type=\"submit\">Verify</button></form>"
    );
    Ok(page(StatusCode::OK, "Verify your email", &body))
}

/// `GET /auth/password-reset?token=…`: with the hosted pages on, 303 to
/// `/password-reset/confirm` with the token; else a page whose form sets the new password,
/// asking the browser for the configured length too.
pub fn reset_page(api: &Api, request: &Request) -> Result<Response, ApiError> {
    if api.pages.is_some() {
        return moved_to_page(request, "/password-reset/confirm");
    }
    let token = escape(&request.query.string("token")?.unwrap_or_default());
    let min_length = api.app.config.password.min_length;
    let max_length = crate::model::PASSWORD_MAX_CHARACTERS;
    let body = format!(
        "<form method=\"post\" action=\"/frontend/api/v1/auth/password-reset/confirm\">\
         <input type=\"hidden\" name=\"password-update-token\" value=\"{token}\">\
         <label>New password <input type=\"password\" name=\"new-password\" minlength=\"{min_length}\" maxlength=\"{max_length}\" required autocomplete=\"new-password\"></label>\
         <button type=\"submit\">Set password</button></form>"
    );
    Ok(page(StatusCode::OK, "Choose a new password", &body))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = empty_response(status);
    *response.body_mut() = http_body_util::Full::new(bytes::Bytes::from(html));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    // frame-ancestors for the browsers that predate it (clickjacking on the confirm buttons).
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// 303 to a hosted page, the query (the link's token) kept as it came.
fn moved_to_page(request: &Request, page: &str) -> Result<Response, ApiError> {
    let location = match request.parts.uri.query() {
        Some(query) => format!("{page}?{query}"),
        None => page.to_owned(),
    };
    see_other(&location).map_err(|_| ApiError::invalid_field("token", "is not usable in a link"))
}
