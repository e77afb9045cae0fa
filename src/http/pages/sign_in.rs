//! `GET, POST /sign-in`: email, password and "keep me signed in", through the same audited
//! `auth::sign_in` as the API; success sets the same `jwt` cookie and 303s to `ret-url`,
//! else `/account`. A visitor already signed in is sent on at once. Where passkeys are
//! available, "Sign in with a passkey" and the browser's autofill of passkeys run in
//! `assets/passkey.js` against the passkey API.

use askama::Template;

use crate::auth::SignInRequest;
use crate::auth::password::Password;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::handlers::sign_in::{audited_sign_in, checked_return_url};
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::form::{PageForm, checkbox, read_page_form};
use crate::http::pages::oauth_browser;
use crate::http::pages::render::{self, Layout, Problem, form_page};
use crate::http::pages::second_factor::{self, PendingSignIn, SecondFactorMethods};
use crate::http::pages::{Pages, page_identity, passkeys_available};
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie};
use crate::model::net::Origin;

/// Where a signed-in visitor goes when no `ret-url` says otherwise.
pub const DEFAULT_DESTINATION: &str = "/account";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    return_url: Option<String>,
    email: String,
    long_term: bool,
    signup_open: bool,
    /// Whether the passkey button and autofill are offered (`public_url` is set).
    passkeys_available: bool,
    /// "Sign in with <provider>" links, one per provider that offers the browser sign-in.
    providers: Vec<ProviderButton>,
    /// Where the passkey script goes once signed in: `ret-url` (checked), else `/account`.
    destination: String,
}

/// One "Sign in with <provider>" link.
struct ProviderButton {
    shown_name: String,
    start_url: String,
}

/// The sign-in links of the providers that offer the browser sign-in, carrying `ret-url`.
fn provider_buttons(api: &Api, return_url: Option<&str>) -> Vec<ProviderButton> {
    api.app
        .oauth
        .browser_providers()
        .map(|provider| ProviderButton {
            shown_name: provider.config.shown_name().to_owned(),
            start_url: oauth_browser::start_path(&provider.config.name, return_url),
        })
        .collect()
}

impl SignInPage {
    fn focuses(&self, field: &str) -> bool {
        Problem::focuses(self.problem.as_ref(), field, "email")
    }

    fn blames(&self, field: &str) -> bool {
        Problem::blames(self.problem.as_ref(), field)
    }
}

/// What the form shows again after a problem.
struct Entered {
    return_url: Option<String>,
    email: String,
    long_term: bool,
}

fn draw(
    api: &Api,
    pages: &Pages,
    browser: &BrowserBinding,
    entered: Entered,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let passkeys_available = passkeys_available(api);
    let mut layout = Layout::new(api, "Sign in");
    if passkeys_available {
        layout = layout.with_passkey_script(api);
    }
    let page = SignInPage {
        layout,
        problem: error.map(Problem::from_error),
        // The form is drawn for a visitor not signed in: a signed-in one is sent on.
        csrf_token: browser.form_token(&pages.csrf_key, None),
        destination: entered
            .return_url
            .clone()
            .unwrap_or_else(|| DEFAULT_DESTINATION.to_owned()),
        providers: provider_buttons(api, entered.return_url.as_deref()),
        return_url: entered.return_url,
        email: entered.email,
        long_term: entered.long_term,
        signup_open: api.app.config.signup.open,
        passkeys_available,
    };
    // The answer to this form may redirect to any allowed return origin.
    let form_origins: &[Origin] = &api.app.config.auth.allowed_return_origins;
    form_page(api, &page, browser, error, form_origins)
}

/// `GET /sign-in`.
pub async fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let return_url = checked_return_url(api, request.query.string("ret-url")?)?;
    if page_identity(api, request).await?.is_some() {
        return render::redirect(return_url.as_deref().unwrap_or(DEFAULT_DESTINATION));
    }
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let entered = Entered {
        return_url,
        email: String::new(),
        long_term: false,
    };
    draw(api, pages, &browser, entered, None)
}

/// `POST /sign-in`. Nothing is checked, and no session made, before the form's origin and
/// CSRF token are.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request).await?;
    let form = read_page_form(api, pages, request, identity.as_ref()).await?;
    // A visitor already signed in is sent on, as `show` does, whatever the form held: a
    // sign-in form drawn before this browser signed in (another tab) carries an anonymous
    // token that can never match the session, so drawing it again would only loop.
    if identity.is_some() {
        let fields = match &form {
            PageForm::Checked(fields) | PageForm::Expired(fields) => fields,
        };
        let return_url = checked_return_url(api, fields.string("ret-url")?)?;
        return render::redirect(return_url.as_deref().unwrap_or(DEFAULT_DESTINATION));
    }
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let fields = match form {
        PageForm::Checked(fields) => fields,
        PageForm::Expired(fields) => {
            let entered = Entered {
                return_url: checked_return_url(api, fields.string("ret-url")?)?,
                email: fields.string("email")?.unwrap_or_default(),
                long_term: checkbox(&fields, "long-term-token")?,
            };
            let error = ApiError::FormTokenInvalid;
            return draw(api, pages, &browser, entered, Some(&error));
        }
    };
    let return_url = checked_return_url(api, fields.string("ret-url")?)?;
    let email = fields.string("email")?.unwrap_or_default();
    let long_term = checkbox(&fields, "long-term-token")?;
    let password = fields.string("password")?.unwrap_or_default();
    let outcome = if email.is_empty() {
        Err(ApiError::invalid_field("email", "is required"))
    } else if password.is_empty() {
        Err(ApiError::invalid_field("password", "is required"))
    } else {
        audited_sign_in(
            api,
            SignInRequest {
                email: email.clone(),
                password: Password::new(password),
                long_term_token: long_term,
                logout_other: false,
                client: request.client_info(api),
            },
        )
        .await
    };
    match outcome {
        Ok(outcome) => {
            let max_age = outcome.session.expire - outcome.session.created;
            let mut response =
                render::redirect(return_url.as_deref().unwrap_or(DEFAULT_DESTINATION))?;
            append_session_cookie(
                &mut response,
                api,
                outcome.signed_token.expose_secret(),
                max_age,
            );
            Ok(response)
        }
        // The password was right and the account holds a second factor: no session yet; the
        // second-factor page is the answer, carrying the sign-in in its forms.
        Err(ApiError::SecondFactorRequired { mfa_token, methods }) => {
            let pending = PendingSignIn {
                mfa_token: mfa_token.into_exposed_secret(),
                return_url,
                methods: SecondFactorMethods::from_names(methods),
            };
            second_factor::draw(api, pages, request, Some(pending), None).await
        }
        Err(error) => {
            let entered = Entered {
                return_url,
                email,
                long_term,
            };
            draw(api, pages, &browser, entered, Some(&error))
        }
    }
}

/// The sign-in page drawn with `error`'s problem and status: a browser OAuth sign-in that
/// came back without signing in.
pub fn draw_with_problem(
    api: &Api,
    pages: &Pages,
    request: &Request,
    return_url: Option<String>,
    error: &ApiError,
) -> Result<Response, ApiError> {
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let entered = Entered {
        return_url,
        email: String::new(),
        long_term: false,
    };
    draw(api, pages, &browser, entered, Some(error))
}

/// The sign-in page drawn as the answer to a second step whose sign-in no longer waits
/// (its mfa-token expired, was used, or met too many wrong codes): sign in again, told why.
pub fn draw_after_dead_second_step(
    api: &Api,
    pages: &Pages,
    request: &Request,
    return_url: Option<String>,
) -> Result<Response, ApiError> {
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let entered = Entered {
        return_url,
        email: String::new(),
        long_term: false,
    };
    draw(
        api,
        pages,
        &browser,
        entered,
        Some(&ApiError::InvalidMfaToken),
    )
}
