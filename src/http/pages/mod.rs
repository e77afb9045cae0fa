//! The hosted pages (API.md section 8): the closed `PageRoute` enum at the server's root,
//! dispatched by one match (`run_page`), with the state every page shares (`Pages`: the
//! CSRF key, the stylesheets, the passkey script). One file per page or flow; the layout,
//! CSRF, headers and form reading are in `render.rs`, `csrf.rs` and `form.rs`. A page's
//! error is drawn as a page, with the status `ApiError::parts` gives it.

mod account;
mod assets;
mod csrf;
mod form;
mod oauth_browser;
mod password_reset;
pub mod qr_code;
mod render;
mod second_factor;
mod sign_in;
mod sign_out;
mod sign_up;
mod verify;

use hyper::Method;

use crate::auth::{self, AlsoRead, Identity, PresentedCredential};
use crate::http::Api;
use crate::http::credential::cookie_value;
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::model::Secret;

pub use crate::http::pages::assets::{Stylesheets, VersionedAsset};
pub use crate::http::pages::csrf::CsrfKey;

/// Every page the server answers, at its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageRoute {
    SignIn,
    SecondFactor,
    SignUp,
    Verify,
    PasswordReset,
    PasswordResetConfirm,
    SignOut,
    Account,
    AccountProfile,
    AccountPassword,
    AccountSessionEnd,
    AccountOtherSessionsEnd,
    AccountApiTokenCreate,
    AccountApiTokenDelete,
    AccountTotpEnable,
    AccountTotpConfirm,
    AccountTotpDisable,
    AccountRecoveryCodes,
    AccountPasskeyDelete,
    OAuthStart,
    OAuthCallback,
    Stylesheet,
    OperatorStylesheet,
    Icon,
    PasskeyScript,
}

impl PageRoute {
    pub const ALL: [PageRoute; 25] = [
        PageRoute::SignIn,
        PageRoute::SecondFactor,
        PageRoute::SignUp,
        PageRoute::Verify,
        PageRoute::PasswordReset,
        PageRoute::PasswordResetConfirm,
        PageRoute::SignOut,
        PageRoute::Account,
        PageRoute::AccountProfile,
        PageRoute::AccountPassword,
        PageRoute::AccountSessionEnd,
        PageRoute::AccountOtherSessionsEnd,
        PageRoute::AccountApiTokenCreate,
        PageRoute::AccountApiTokenDelete,
        PageRoute::AccountTotpEnable,
        PageRoute::AccountTotpConfirm,
        PageRoute::AccountTotpDisable,
        PageRoute::AccountRecoveryCodes,
        PageRoute::AccountPasskeyDelete,
        PageRoute::OAuthStart,
        PageRoute::OAuthCallback,
        PageRoute::Stylesheet,
        PageRoute::OperatorStylesheet,
        PageRoute::Icon,
        PageRoute::PasskeyScript,
    ];

    /// The page's path, as links name it and logs show it.
    pub fn path(self) -> &'static str {
        match self {
            PageRoute::SignIn => "/sign-in",
            PageRoute::SecondFactor => "/sign-in/second-factor",
            PageRoute::SignUp => "/sign-up",
            PageRoute::Verify => "/verify",
            PageRoute::PasswordReset => "/password-reset",
            PageRoute::PasswordResetConfirm => "/password-reset/confirm",
            PageRoute::SignOut => "/sign-out",
            PageRoute::Account => "/account",
            PageRoute::AccountProfile => "/account/profile",
            PageRoute::AccountPassword => "/account/password",
            PageRoute::AccountSessionEnd => "/account/sessions/end",
            PageRoute::AccountOtherSessionsEnd => "/account/sessions/end-others",
            PageRoute::AccountApiTokenCreate => "/account/api-tokens/create",
            PageRoute::AccountApiTokenDelete => "/account/api-tokens/delete",
            PageRoute::AccountTotpEnable => "/account/totp/enable",
            PageRoute::AccountTotpConfirm => "/account/totp/confirm",
            PageRoute::AccountTotpDisable => "/account/totp/disable",
            PageRoute::AccountRecoveryCodes => "/account/recovery-codes",
            PageRoute::AccountPasskeyDelete => "/account/passkeys/delete",
            PageRoute::OAuthStart => oauth_browser::START_TEMPLATE,
            PageRoute::OAuthCallback => oauth_browser::CALLBACK_TEMPLATE,
            PageRoute::Stylesheet => assets::BUILT_IN_STYLESHEET_PATH,
            PageRoute::OperatorStylesheet => assets::OPERATOR_STYLESHEET_PATH,
            PageRoute::Icon => assets::ICON_PATH,
            PageRoute::PasskeyScript => assets::PASSKEY_SCRIPT_PATH,
        }
    }

    /// The methods the page answers (for 405's `Allow`); HEAD wherever GET.
    pub fn methods(self) -> &'static str {
        match self {
            PageRoute::SignOut
            | PageRoute::AccountProfile
            | PageRoute::AccountPassword
            | PageRoute::AccountSessionEnd
            | PageRoute::AccountOtherSessionsEnd
            | PageRoute::AccountApiTokenCreate
            | PageRoute::AccountApiTokenDelete
            | PageRoute::AccountTotpEnable
            | PageRoute::AccountTotpConfirm
            | PageRoute::AccountTotpDisable
            | PageRoute::AccountRecoveryCodes
            | PageRoute::AccountPasskeyDelete => "POST",
            PageRoute::Account
            | PageRoute::OAuthStart
            | PageRoute::OAuthCallback
            | PageRoute::Stylesheet
            | PageRoute::OperatorStylesheet
            | PageRoute::Icon
            | PageRoute::PasskeyScript => "GET, HEAD",
            PageRoute::SignIn
            | PageRoute::SecondFactor
            | PageRoute::SignUp
            | PageRoute::Verify
            | PageRoute::PasswordReset
            | PageRoute::PasswordResetConfirm => "GET, HEAD, POST",
        }
    }

    /// The page at exactly this path (no trailing slash, no prefix match); the browser
    /// OAuth routes by their template, whatever provider they name.
    pub fn from_path(path: &str) -> Option<PageRoute> {
        if let Some((step, _)) = oauth_browser::step_of_path(path) {
            return Some(match step {
                oauth_browser::OAuthBrowserStep::Start => PageRoute::OAuthStart,
                oauth_browser::OAuthBrowserStep::Callback => PageRoute::OAuthCallback,
            });
        }
        PageRoute::ALL
            .into_iter()
            .find(|route| route.path() == path)
    }
}

/// What the pages share, built once with the `Api`.
#[derive(Debug)]
pub struct Pages {
    pub csrf_key: CsrfKey,
    pub stylesheets: Stylesheets,
    pub passkey_script: VersionedAsset,
}

/// The page a path names, when the pages are on.
pub fn match_page(api: &Api, path: &str) -> Option<PageRoute> {
    let pages = api.pages.as_ref()?;
    PageRoute::from_path(path).filter(|route| {
        *route != PageRoute::OperatorStylesheet || pages.stylesheets.operator.is_some()
    })
}

/// Answers one page request. Never fails: an error becomes a page with its status.
pub async fn handle_page(api: &Api, route: PageRoute, mut request: Request) -> Response {
    let Some(pages) = api.pages.as_ref() else {
        return render::error_page(api, &ApiError::NotFound);
    };
    // HEAD is GET without the body (hyper sends none): every page that answers GET answers
    // it, as HTTP asks of every server, so a monitor can check /sign-in.
    let method = match request.parts.method.clone() {
        Method::HEAD => Method::GET,
        method => method,
    };
    let outcome = if route.methods().split(", ").any(|allowed| allowed == method) {
        let request_timeout =
            std::time::Duration::from_secs(api.app.config.http.request_timeout_seconds);
        tokio::time::timeout(
            request_timeout,
            run_page(api, pages, route, &method, &mut request),
        )
        .await
        .unwrap_or(Err(ApiError::Timeout))
    } else {
        Err(ApiError::MethodNotAllowed(route.methods()))
    };
    match outcome {
        Ok(response) => response,
        Err(error) => {
            if let ApiError::Internal(detail) = &error {
                tracing::error!(route = route.path(), %detail, "page failed");
            }
            render::error_page(api, &error)
        }
    }
}

/// The one `match (route, method)` of the pages.
async fn run_page(
    api: &Api,
    pages: &Pages,
    route: PageRoute,
    method: &Method,
    request: &mut Request,
) -> Result<Response, ApiError> {
    crate::http::credential::check_single_headers(&request.parts)?;
    match (route, method) {
        (PageRoute::Stylesheet, &Method::GET) => Ok(assets::built_in(&pages.stylesheets)),
        (PageRoute::OperatorStylesheet, &Method::GET) => assets::operator(&pages.stylesheets),
        (PageRoute::Icon, &Method::GET) => Ok(assets::icon()),
        (PageRoute::PasskeyScript, &Method::GET) => {
            Ok(assets::passkey_script(&pages.passkey_script))
        }
        (PageRoute::SignIn, &Method::GET) => sign_in::show(api, pages, request).await,
        (PageRoute::SignIn, &Method::POST) => sign_in::submit(api, pages, request).await,
        (PageRoute::SecondFactor, &Method::GET) => second_factor::show(api, pages, request).await,
        (PageRoute::SecondFactor, &Method::POST) => {
            second_factor::submit(api, pages, request).await
        }
        (PageRoute::OAuthStart, &Method::GET) => {
            Box::pin(oauth_browser::start(api, pages, request)).await
        }
        (PageRoute::OAuthCallback, &Method::GET) => {
            Box::pin(oauth_browser::callback(api, pages, request)).await
        }
        (PageRoute::SignUp, &Method::GET) => sign_up::show(api, pages, request).await,
        (PageRoute::SignUp, &Method::POST) => sign_up::submit(api, pages, request).await,
        (PageRoute::Verify, &Method::GET) => verify::show(api, pages, request).await,
        (PageRoute::Verify, &Method::POST) => verify::submit(api, pages, request).await,
        (PageRoute::PasswordReset, &Method::GET) => {
            password_reset::show_request(api, pages, request).await
        }
        (PageRoute::PasswordReset, &Method::POST) => {
            password_reset::submit_request(api, pages, request).await
        }
        (PageRoute::PasswordResetConfirm, &Method::GET) => {
            password_reset::show_confirm(api, pages, request).await
        }
        (PageRoute::PasswordResetConfirm, &Method::POST) => {
            password_reset::submit_confirm(api, pages, request).await
        }
        (PageRoute::SignOut, &Method::POST) => sign_out::submit(api, pages, request).await,
        (PageRoute::Account, &Method::GET) => account::show(api, pages, request).await,
        // The account forms' futures are boxed: inline, their state would sit in every
        // request's future, the API's hot path included.
        (PageRoute::AccountProfile, &Method::POST) => {
            Box::pin(account::profile::submit(api, pages, request)).await
        }
        (PageRoute::AccountPassword, &Method::POST) => {
            Box::pin(account::password::submit(api, pages, request)).await
        }
        (PageRoute::AccountSessionEnd, &Method::POST) => {
            Box::pin(account::sessions::submit_end(api, pages, request)).await
        }
        (PageRoute::AccountOtherSessionsEnd, &Method::POST) => {
            Box::pin(account::sessions::submit_end_others(api, pages, request)).await
        }
        (PageRoute::AccountApiTokenCreate, &Method::POST) => {
            Box::pin(account::api_tokens::submit_create(api, pages, request)).await
        }
        (PageRoute::AccountApiTokenDelete, &Method::POST) => {
            Box::pin(account::api_tokens::submit_delete(api, pages, request)).await
        }
        (PageRoute::AccountTotpEnable, &Method::POST) => {
            Box::pin(account::totp_enable::submit(api, pages, request)).await
        }
        (PageRoute::AccountTotpConfirm, &Method::POST) => {
            Box::pin(account::totp_confirm::submit(api, pages, request)).await
        }
        (PageRoute::AccountTotpDisable, &Method::POST) => {
            Box::pin(account::totp_disable::submit(api, pages, request)).await
        }
        (PageRoute::AccountRecoveryCodes, &Method::POST) => {
            Box::pin(account::recovery_codes::submit(api, pages, request)).await
        }
        (PageRoute::AccountPasskeyDelete, &Method::POST) => {
            Box::pin(account::passkeys::submit_delete(api, pages, request)).await
        }
        _ => Err(ApiError::MethodNotAllowed(route.methods())),
    }
}

/// Whether the pages offer passkeys: WebAuthn needs a relying party id, the host of
/// `[server] public_url`, without which the passkey API answers 409.
pub fn passkeys_available(api: &Api) -> bool {
    api.app.config.server.public_url.is_some()
}

/// The visitor's identity, from the `jwt` cookie alone: pages never read `?token=`, `?jwt=`
/// or `Authorization`, so a link cannot carry a credential into a browser's page. A cookie
/// that no longer verifies (expired, signed out) is a visitor not signed in; two `jwt`
/// cookies are an ambiguous request (400).
pub async fn page_identity(api: &Api, request: &Request) -> Result<Option<Identity>, ApiError> {
    let Some(token) = cookie_value(&request.parts, "jwt")? else {
        return Ok(None);
    };
    let presented = PresentedCredential::SignedToken(Secret::new(token.as_str()));
    Ok(auth::authenticate(&api.app, presented, AlsoRead::Nothing)
        .await
        .ok())
}
