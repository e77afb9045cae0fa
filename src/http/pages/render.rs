//! Drawing a page: the layout every page shares, the headers every page carries (CSP,
//! nosniff, no-referrer, no-store), the CSRF cookie when a form needs a new one, and the
//! error page. A problem is worded for people here; its status is `ApiError::parts`'s.

use std::fmt::Write as _;

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, REFERRER_POLICY,
    RETRY_AFTER, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

use crate::auth::oauth::browser::BrowserSignInProblem;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::response::{Response, empty_response, see_other};
use crate::model::net::Origin;

/// Every page's policy: nothing from elsewhere, no framing, forms post only here (a page
/// whose form may redirect elsewhere adds those origins to `form-action`).
const CONTENT_SECURITY_POLICY_TEXT: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'";

/// What the layout shows around every page.
#[derive(Debug)]
pub struct Layout {
    /// `[pages] title`.
    pub product: String,
    /// The page's own heading, also in `<title>`.
    pub heading: String,
    pub stylesheet_url: String,
    pub operator_stylesheet_url: Option<String>,
    /// The passkey script's URL, on the pages that run a passkey ceremony.
    pub passkey_script_url: Option<String>,
}

impl Layout {
    pub fn new(api: &Api, heading: impl Into<String>) -> Layout {
        let stylesheets = api.pages.as_ref().map(|pages| &pages.stylesheets);
        Layout {
            product: api.app.config.pages.title.clone(),
            heading: heading.into(),
            stylesheet_url: stylesheets
                .map_or_else(String::new, |stylesheets| stylesheets.built_in.url.clone()),
            operator_stylesheet_url: stylesheets
                .and_then(|stylesheets| stylesheets.operator.as_ref())
                .map(|stylesheet| stylesheet.url.clone()),
            passkey_script_url: None,
        }
    }

    /// The layout with the passkey script linked (`defer`, from this origin).
    pub fn with_passkey_script(mut self, api: &Api) -> Layout {
        self.passkey_script_url = api
            .pages
            .as_ref()
            .map(|pages| pages.passkey_script.url.clone());
        self
    }
}

/// A problem with what the visitor sent, worded for people, and the form field to put the
/// focus on (an API field name), if one is to blame.
#[derive(Debug)]
pub struct Problem {
    pub message: String,
    pub field: Option<String>,
}

impl Problem {
    pub fn from_error(error: &ApiError) -> Problem {
        let (field, message): (Option<&str>, String) = match error {
            ApiError::InvalidCredentials => (
                Some("password"),
                "That email address and password do not match an account. Check both and try again.".to_owned(),
            ),
            ApiError::TooManyRequests(seconds) => (
                None,
                format!(
                    "Too many attempts. Please wait {} and try again.",
                    describe_wait(*seconds)
                ),
            ),
            ApiError::AccountPending => (
                None,
                "This account is waiting for its email address to be confirmed. Open the link in the email we sent you, then sign in.".to_owned(),
            ),
            ApiError::SecondFactorRequired { .. } => (
                None,
                "This account is protected by a second factor. Continue with your authenticator code.".to_owned(),
            ),
            ApiError::WrongSecondFactor { field } => (
                Some(field),
                match *field {
                    "recovery-code" => "That recovery code is not right, or it was used already. Check it and type it again, or use another one.",
                    "credential" => "That passkey was not accepted. Try it again, or finish signing in another way.",
                    _ => "That code is not right, or it was used already. Type the code your authenticator app shows now.",
                }
                .to_owned(),
            ),
            // Drawn on the sign-in page, whose first field then takes the focus.
            ApiError::InvalidMfaToken => (
                None,
                "This sign-in waited too long for its second step, or was finished already. Please sign in again.".to_owned(),
            ),
            ApiError::PasskeyRefused => (
                Some("credential"),
                "That passkey was not accepted. Try it again, or finish signing in another way.".to_owned(),
            ),
            ApiError::SignInSessionRequired => (
                None,
                "Second factors and passkeys can be changed only from a browser signed in with your password or passkey, not with a token. Sign in, then try again.".to_owned(),
            ),
            ApiError::RecentSignInRequired => (
                None,
                "Your account has no password, so changing its second factors needs a recent sign-in. Sign out, sign in again, then try within 10 minutes.".to_owned(),
            ),
            ApiError::AccountSuspended => (
                None,
                "This account is suspended. Ask the administrator of this service for help.".to_owned(),
            ),
            ApiError::PasswordLength {
                field,
                min_length,
                max_length,
            } => (
                Some(field),
                format!("Choose a password of {min_length} to {max_length} characters."),
            ),
            ApiError::InvalidField { field, message } => (
                Some(field.as_ref()),
                describe_invalid_field(field, message),
            ),
            ApiError::InvalidEmailToken { problem, .. } => (
                None,
                match problem {
                    crate::model::EmailTokenProblem::Unknown => "This link is not valid. Check that you opened the whole link from the email, or ask for a new one.",
                    crate::model::EmailTokenProblem::Used => "This link was already used. Each link works once; ask for a new one if you need it.",
                    crate::model::EmailTokenProblem::Expired => "This link has expired. Ask for a new one.",
                }
                .to_owned(),
            ),
            ApiError::FormTokenInvalid => (
                None,
                "This form has expired or was opened in another browser. We have refreshed it: please send it again.".to_owned(),
            ),
            ApiError::CrossSiteRequest => (
                None,
                "This form was sent from another site, so it was not accepted. Open this page directly and try again.".to_owned(),
            ),
            ApiError::SignupClosed => (
                None,
                "This service does not take new sign-ups. Ask its administrator for an account.".to_owned(),
            ),
            ApiError::Conflict(_) => (
                None,
                "That cannot be done right now because it conflicts with the account's state.".to_owned(),
            ),
            ApiError::CaptchaRefused | ApiError::CaptchaUnavailable => (
                None,
                "The anti-robot check did not pass. Please try again.".to_owned(),
            ),
            ApiError::NotFound => (None, "There is no page at this address.".to_owned()),
            ApiError::OAuthBrowserSignIn(problem) => (
                None,
                match problem {
                    BrowserSignInProblem::ProviderDeclined => "The sign-in was cancelled or refused at the provider. You can try again, or sign in another way.",
                    BrowserSignInProblem::OtherBrowser => "This sign-in was started in another browser, or your browser did not keep its cookie. Start it again from this page.",
                    BrowserSignInProblem::WrongIssuer => "The answer did not come from the provider this sign-in was started with. Start it again from this page.",
                    BrowserSignInProblem::CodeRefused => "The provider did not confirm this sign-in. Start it again from this page.",
                    BrowserSignInProblem::UnknownState | BrowserSignInProblem::NotOffered => "This sign-in link has expired or was used already. Start it again from this page.",
                }
                .to_owned(),
            ),
            ApiError::ProviderUnreachable => (
                None,
                "The sign-in provider cannot be reached right now. Please try again in a moment, or sign in another way.".to_owned(),
            ),
            ApiError::InvalidProviderToken => (
                None,
                "The provider's answer could not be verified, so you were not signed in. Start again from this page.".to_owned(),
            ),
            ApiError::OAuthRefused | ApiError::OAuthEmailMismatch => (
                None,
                "This provider account cannot sign in here. Sign in another way, or ask the administrator of this service for help.".to_owned(),
            ),
            ApiError::MethodNotAllowed(_) => (
                None,
                "This page cannot be used that way. Open it from a link instead.".to_owned(),
            ),
            ApiError::Overloaded | ApiError::Draining | ApiError::Timeout => (
                None,
                "The service is busy right now. Please try again in a moment.".to_owned(),
            ),
            ApiError::MalformedBody(_) | ApiError::PayloadTooLarge | ApiError::UnsupportedMediaType => (
                None,
                "The form could not be read. Reload the page and try again.".to_owned(),
            ),
            _ => (
                None,
                "Something went wrong on our side. Please try again later.".to_owned(),
            ),
        };
        Problem {
            message,
            field: field.map(str::to_owned),
        }
    }

    /// Whether `field` is the one to focus: the field to blame, or else `fallback`.
    pub fn focuses(problem: Option<&Problem>, field: &str, fallback: &str) -> bool {
        match problem.and_then(|problem| problem.field.as_deref()) {
            Some(blamed) => blamed == field,
            None => field == fallback,
        }
    }

    /// Whether `field` is the one to blame (drawn as invalid).
    pub fn blames(problem: Option<&Problem>, field: &str) -> bool {
        problem.and_then(|problem| problem.field.as_deref()) == Some(field)
    }
}

/// An invalid field's message, with the field's name as a person reads it.
fn describe_invalid_field(field: &str, message: &str) -> String {
    let name = match field {
        "email" => "the email address",
        "password" => "the password",
        "new-password" => "the new password",
        "old-password" => "the current password",
        "first-name" => "the first name",
        "last-name" => "the last name",
        "ret-url" => "the address to return to",
        "code" => "the code",
        "recovery-code" => "the recovery code",
        "mfa-token" => "the pending sign-in",
        "credential" => "the passkey's answer",
        "passkey-id" => "the passkey",
        _ => return "Something in the form is not valid. Check it and try again.".to_owned(),
    };
    if message == "is required" {
        return format!("Please enter {name}.");
    }
    if field == "code" && message.starts_with("must be 6 digits") {
        return "Type the six digits your authenticator app shows, without spaces.".to_owned();
    }
    if field == "recovery-code" && message.starts_with("must be a recovery code") {
        return "Type a recovery code as you saved it: ten letters and digits, like abcde-12345."
            .to_owned();
    }
    if field == "mfa-token" {
        return "This sign-in waited too long for its second step, or was finished already. Please sign in again.".to_owned();
    }
    if field == "email" && message == crate::model::email_address::EMAIL_RULE_MESSAGE {
        return "Enter one email address, like name@example.com (at most 254 characters)."
            .to_owned();
    }
    let mut sentence = format!("{name} {message}.");
    if let Some(first) = sentence.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    sentence
}

/// "12 seconds", "1 minute", "15 minutes": how long a throttled visitor waits.
pub fn describe_wait(seconds: u64) -> String {
    let seconds = seconds.max(1);
    if seconds < 60 {
        return plural(seconds, "second");
    }
    plural(seconds.div_ceil(60), "minute")
}

fn plural(count: u64, unit: &str) -> String {
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

/// A rendered page with every page's headers; the CSRF cookie when `browser` is new.
/// `form_origins` are origins a form on it may redirect to (CSP `form-action`).
pub fn html_page(
    api: &Api,
    status: StatusCode,
    page: &impl Template,
    browser: Option<&BrowserBinding>,
    form_origins: &[Origin],
) -> Result<Response, ApiError> {
    let html = page
        .render()
        .map_err(|error| ApiError::Internal(format!("page template: {error}")))?;
    let mut response = empty_response(status);
    *response.body_mut() = Full::new(Bytes::from(html));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if !form_origins.is_empty() {
        let mut policy = CONTENT_SECURITY_POLICY_TEXT.to_owned();
        for origin in form_origins {
            let _ = write!(policy, " {origin}");
        }
        if let Ok(policy) = HeaderValue::from_str(&policy) {
            headers.insert(CONTENT_SECURITY_POLICY, policy);
        }
    }
    add_page_headers(&mut response);
    if let Some(cookie) = browser.and_then(|browser| browser.set_cookie(api)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The headers every page answer carries, redirects included (`finish_headers` adds the
/// same to every answer; here they hold even if that changes).
pub(super) fn add_page_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert_with(|| HeaderValue::from_static(CONTENT_SECURITY_POLICY_TEXT));
    // For browsers that predate `frame-ancestors`: clickjacking on the pages' buttons.
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `303 See Other` from a page, with the pages' headers.
pub fn redirect(location: &str) -> Result<Response, ApiError> {
    let mut response = see_other(location)
        .map_err(|_| ApiError::invalid_field("ret-url", "is not a usable address"))?;
    add_page_headers(&mut response);
    Ok(response)
}

/// The page for an error that leaves no form to show again.
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    layout: Layout,
    problem: Option<Problem>,
    text: String,
    next_href: &'static str,
    next_label: &'static str,
}

/// An error drawn as a page, with its status (`ApiError::parts`), `Allow` and
/// `Retry-After` as the API sends them.
pub fn error_page(api: &Api, error: &ApiError) -> Response {
    let (status, _, _, _) = error.parts();
    let heading = match status {
        StatusCode::NOT_FOUND => "Page not found",
        StatusCode::TOO_MANY_REQUESTS => "Please wait",
        StatusCode::FORBIDDEN => "Not allowed",
        status if status.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let page = MessagePage {
        layout: Layout::new(api, heading),
        problem: Some(Problem::from_error(error)),
        text: String::new(),
        next_href: "/sign-in",
        next_label: "Go to sign-in",
    };
    let mut response = html_page(api, status, &page, None, &[]).unwrap_or_else(|_| {
        let mut response = empty_response(status);
        add_page_headers(&mut response);
        response
    });
    let headers = response.headers_mut();
    if let ApiError::MethodNotAllowed(allowed) = error {
        headers.insert(ALLOW, HeaderValue::from_static(allowed));
    }
    if let Some(seconds) = error.retry_after_seconds() {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// A page that only tells something (a mail was sent, a link worked), with one link on.
pub fn message_page(
    api: &Api,
    heading: &str,
    text: &str,
    next: (&'static str, &'static str),
) -> Result<Response, ApiError> {
    let page = MessagePage {
        layout: Layout::new(api, heading),
        problem: None,
        text: text.to_owned(),
        next_href: next.0,
        next_label: next.1,
    };
    html_page(api, StatusCode::OK, &page, None, &[])
}

/// The status of a form page: 200 when first drawn, the error's when drawn again with it.
pub fn form_status(error: Option<&ApiError>) -> StatusCode {
    error.map_or(StatusCode::OK, |error| error.parts().0)
}

/// A form page drawn for `browser`, first (no `error`) or again with its problem: the
/// error's status, and `Retry-After` when the visitor is told to wait.
pub fn form_page(
    api: &Api,
    page: &impl Template,
    browser: &BrowserBinding,
    error: Option<&ApiError>,
    form_origins: &[Origin],
) -> Result<Response, ApiError> {
    let response = html_page(api, form_status(error), page, Some(browser), form_origins)?;
    Ok(with_retry_after(response, error))
}

/// Adds `Retry-After` to a form page re-drawn for a throttled visitor.
pub fn with_retry_after(mut response: Response, error: Option<&ApiError>) -> Response {
    if let Some(seconds) = error.and_then(ApiError::retry_after_seconds) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{Problem, describe_wait};
    use crate::http::error::ApiError;

    #[test]
    fn a_wait_reads_in_seconds_under_a_minute_and_in_whole_minutes_after() {
        assert_eq!(describe_wait(0), "1 second");
        assert_eq!(describe_wait(1), "1 second");
        assert_eq!(describe_wait(59), "59 seconds");
        assert_eq!(describe_wait(60), "1 minute");
        assert_eq!(describe_wait(61), "2 minutes");
        assert_eq!(describe_wait(900), "15 minutes");
    }

    #[test]
    fn problems_name_the_field_as_people_read_it_and_blame_it() {
        let required = Problem::from_error(&ApiError::invalid_field("email", "is required"));
        assert_eq!(required.message, "Please enter the email address.");
        assert!(Problem::focuses(Some(&required), "email", "password"));
        assert!(Problem::blames(Some(&required), "email"));
        let name = Problem::from_error(&ApiError::invalid_field("first-name", "is too long"));
        assert_eq!(name.message, "The first name is too long.");
        let wrong = Problem::from_error(&ApiError::InvalidCredentials);
        assert!(Problem::focuses(Some(&wrong), "password", "email"));
        assert!(!Problem::focuses(Some(&wrong), "email", "email"));
        // Without a problem the fallback field takes the focus, and nothing is blamed.
        assert!(Problem::focuses(None, "email", "email"));
        assert!(!Problem::blames(None, "email"));
        let throttled = Problem::from_error(&ApiError::TooManyRequests(30));
        assert_eq!(
            throttled.message,
            "Too many attempts. Please wait 30 seconds and try again."
        );
        assert_eq!(throttled.field, None);
    }
}
