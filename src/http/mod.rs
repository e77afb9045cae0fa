//! The HTTP transport (with `server`, the only code that knows hyper; the only code that
//! knows matchit): `handle` answers one request, and `dispatch` checks its route's access
//! rule and calls its handler through the one `match (route, method)`. Routes and their
//! access table are in `routes`, the handlers by resource in `handlers`, the hosted pages
//! (their own closed `PageRoute`, at the server's root) in `pages`, and errors become
//! responses in `error`, in one place.

pub mod credential;
mod dto;
pub mod error;
pub mod fields;
mod handlers;
pub mod metrics;
pub mod pages;
pub mod request;
pub mod response;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, header};

use crate::app::App;
use crate::auth::{self, Identity};
use crate::http::error::ApiError;
use crate::http::handlers::{
    api_tokens, forward_auth, meta, oauth, passkeys, passwords, second_factor, sessions, sign_in,
    signup, users,
};
use crate::http::metrics::recording::{MatchedRoute, RequestMetrics};
use crate::http::pages::{CsrfKey, Pages, Stylesheets, VersionedAsset};
use crate::http::request::Request;
use crate::http::response::{error_response, finish_headers, preflight_response};
use crate::http::routes::{Caller, PathParameters, TrustedOrigins, access_rule, admit};
use crate::model::net::Origin;

pub use crate::http::response::Response;
pub use crate::http::routes::{Route, build_router, resolve_path};

/// The HTTP face of the app: the app, the router and the pages' state, built once.
#[derive(Debug)]
pub struct Api {
    pub app: Arc<App>,
    router: matchit::Router<Route>,
    pub public_origin: Origin,
    /// `None` when `[pages] enabled = false`: then no page path answers.
    pub pages: Option<Pages>,
    /// Counted only with `[metrics] listen` set, so that an install without metrics pays
    /// nothing for them.
    pub request_metrics: Option<RequestMetrics>,
}

/// Why the HTTP face could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApiBuildError {
    #[error("the router: {0}")]
    Router(#[from] matchit::InsertError),
    #[error("no randomness for the pages' CSRF key: {0}")]
    Randomness(getrandom::Error),
    #[error("pages.stylesheet: cannot read {path}: {source}")]
    Stylesheet {
        path: String,
        source: std::io::Error,
    },
}

impl Api {
    pub fn new(app: Arc<App>) -> Result<Api, ApiBuildError> {
        let router = build_router()?;
        let pages = if app.config.pages.enabled {
            let operator_stylesheet = match &app.config.pages.stylesheet {
                Some(path) => {
                    Some(
                        std::fs::read(path).map_err(|source| ApiBuildError::Stylesheet {
                            path: path.display().to_string(),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            Some(Pages {
                csrf_key: CsrfKey::generate().map_err(ApiBuildError::Randomness)?,
                stylesheets: Stylesheets::new(operator_stylesheet),
                passkey_script: VersionedAsset::passkey_script(),
            })
        } else {
            None
        };
        Ok(Api {
            public_origin: app.config.public_origin(),
            request_metrics: app.config.metrics.listen.map(|_| RequestMetrics::default()),
            app,
            router,
            pages,
        })
    }
}

/// Answers one request. Never fails: every error becomes its documented response.
pub async fn handle(api: &Api, request: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let cors_origins = &api.app.config.http.cors_origins;
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|_| !cors_origins.is_empty())
        .and_then(credential::claimed_origin)
        .filter(|origin| cors_origins.contains(origin));
    let matched = routes::match_route(&api.router, request.uri().path());
    let page = matched
        .is_none()
        .then(|| pages::match_page(api, request.uri().path()))
        .flatten();
    let template = match (&matched, page) {
        (Some((route, _)), _) => route.template(),
        (None, Some(page)) => page.path(),
        (None, None) => "(no route)",
    };
    let matched_route = match (&matched, page) {
        (Some((route, _)), _) => MatchedRoute::Api(*route),
        (None, Some(page)) => MatchedRoute::Page(page),
        (None, None) => MatchedRoute::Nothing,
    };
    let mut response = match matched {
        None => match page {
            Some(page) => {
                pages::handle_page(api, page, Request::new(request, peer, Vec::new())).await
            }
            None => error_response(&ApiError::NotFound),
        },
        Some((route, _)) if method == Method::OPTIONS && origin.is_some() => {
            preflight_response(route)
        }
        Some((route, path_parameters)) => {
            let request = Request::new(request, peer, path_parameters);
            let request_timeout =
                std::time::Duration::from_secs(api.app.config.http.request_timeout_seconds);
            let handled =
                tokio::time::timeout(request_timeout, dispatch(api, route, request)).await;
            match handled.unwrap_or(Err(ApiError::Timeout)) {
                Ok(response) => response,
                Err(error) => {
                    match &error {
                        ApiError::Internal(detail) => {
                            tracing::error!(route = template, %detail, "request failed");
                        }
                        ApiError::StoreUnavailable(detail) => {
                            tracing::warn!(route = template, %detail, "store unavailable");
                        }
                        _ => {}
                    }
                    error_response(&error)
                }
            }
        }
    };
    finish_headers(&mut response, origin.as_ref());
    if let Some(request_metrics) = &api.request_metrics {
        let status = response.status().as_u16();
        request_metrics.record(matched_route, &method, status, started.elapsed());
    }
    tracing::info!(
        target: "latchkey::request",
        method = %method,
        route = template,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    response
}

async fn dispatch(api: &Api, route: Route, mut request: Request) -> Result<Response, ApiError> {
    let method = request.parts.method.clone();
    if !route.answers(&method) {
        return Err(ApiError::MethodNotAllowed(route.methods()));
    }
    // On every route, public ones included: an ambiguous request is refused before anything
    // reads it (API.md section 15, rule 17).
    credential::check_single_headers(&request.parts)?;
    let path = PathParameters::parse(&request.path_parameters)?;
    let identity = match check_access(api, &request, route, &path).await {
        // Forward auth may answer a missing credential with the way to the sign-in page.
        Err(ApiError::Unauthenticated) if route == Route::ForwardAuth => {
            return forward_auth::unauthenticated(api, &request);
        }
        checked => checked?,
    };
    let audit_event = audited_event(route, &method);
    let audit_subject = identity
        .as_ref()
        .filter(|_| audit_event.is_some())
        .map(|identity| {
            (
                identity.user.id,
                identity.session_id,
                request.client_info(api).remote_ip,
            )
        });
    let outcome = match run_handler(api, route, &method, &mut request, identity, &path) {
        Ok(Handled::Ready(outcome)) => outcome,
        Ok(Handled::Pending(handler)) => handler.await,
        Err(error) => Err(error),
    };
    if let (Ok(response), Some(event), Some((user_id, session_id, remote_ip))) =
        (&outcome, audit_event, audit_subject)
        && response.status().is_success()
    {
        tracing::info!(
            target: "latchkey::audit",
            event,
            user_id,
            session_id = session_id.map(|id| id.to_string()),
            target_user_id = path.user_id,
            target_session_id = path.session_id.map(|id| id.to_string()),
            remote_ip,
        );
    }
    outcome
}

/// The security events the audit log records, by route; sign-in (both steps) logs its own.
pub(crate) fn audited_event(route: Route, method: &Method) -> Option<&'static str> {
    match (route, method) {
        (Route::SignOut, _) => Some("sign-out"),
        (Route::Sessions, &Method::DELETE) => Some("sessions-ended"),
        (Route::Session, &Method::DELETE) => Some("session-ended"),
        (Route::CurrentPassword, _) => Some("password-changed"),
        (Route::UserPassword, _) => Some("user-password-changed"),
        (Route::Users, &Method::POST) => Some("sub-user-created"),
        (Route::UserById, &Method::PUT) => Some("user-changed"),
        (Route::CurrentUser, &Method::DELETE) => Some("user-deleted"),
        (Route::ApiTokens, &Method::POST) => Some("api-token-created"),
        (Route::ApiToken, &Method::PUT) => Some("api-token-changed"),
        (Route::ApiToken, &Method::DELETE) => Some("api-token-deleted"),
        (Route::Mint, _) => Some("token-minted"),
        (Route::MfaTotp, &Method::POST) => Some("totp-enrolment-started"),
        (Route::MfaTotp, &Method::DELETE) => Some("totp-disabled"),
        (Route::MfaTotpConfirm, _) => Some("totp-enabled"),
        (Route::MfaRecoveryCodes, _) => Some("recovery-codes-regenerated"),
        _ => None,
    }
}

/// A handler's outcome: the reads answer at once; everything that awaits (writes, sign-ins,
/// outside calls) comes back boxed. hyper moves each request's future by value, so keeping
/// the large handler futures out of it keeps that copy small on the hot path (moving it was
/// 4% of a token check's samples while every handler's state sat inline).
enum Handled<'a> {
    Ready(Result<Response, ApiError>),
    Pending(Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>),
}

fn run_handler<'a>(
    api: &'a Api,
    route: Route,
    method: &Method,
    request: &'a mut Request,
    identity: Option<Identity>,
    path: &'a PathParameters,
) -> Result<Handled<'a>, ApiError> {
    use Handled::{Pending, Ready};
    Ok(match (route, method) {
        (Route::SignIn, &Method::POST) => Pending(Box::pin(sign_in::sign_in(api, request))),
        (Route::OAuthSignIn, &Method::POST) => {
            Pending(Box::pin(oauth::oauth_sign_in(api, request)))
        }
        (Route::SignOut, &Method::DELETE) => Pending(Box::pin(sessions::sign_out(
            api,
            request,
            required(identity)?,
        ))),
        (Route::Sessions, &Method::GET) => {
            Pending(Box::pin(sessions::list_sessions(api, required(identity)?)))
        }
        (Route::Sessions, &Method::DELETE) => Pending(Box::pin(sessions::end_all_sessions(
            api,
            required(identity)?,
        ))),
        (Route::Session, &Method::GET) => Pending(Box::pin(sessions::get_session(
            api,
            required(identity)?,
            path.session_id()?,
        ))),
        (Route::Session, &Method::DELETE) => Pending(Box::pin(sessions::end_session(
            api,
            required(identity)?,
            path.session_id()?,
        ))),
        (Route::CurrentPassword, &Method::PUT) => Pending(Box::pin(
            passwords::change_current_password(api, request, identity),
        )),
        (Route::UserPassword, &Method::PUT) => Pending(Box::pin(passwords::change_user_password(
            api,
            request,
            required(identity)?,
            path.user_id()?,
        ))),
        (Route::Users, &Method::GET) => Pending(Box::pin(users::list_users(
            api,
            request,
            required(identity)?,
        ))),
        (Route::Users, &Method::POST) => Pending(Box::pin(users::create_sub_user(
            api,
            request,
            required(identity)?,
        ))),
        (Route::CurrentUser, &Method::GET) => {
            Pending(Box::pin(users::current_user(api, required(identity)?)))
        }
        (Route::CurrentUser, &Method::PUT) => Pending(Box::pin(users::update_current_user(
            api,
            request,
            required(identity)?,
        ))),
        (Route::CurrentUser, &Method::DELETE) => Pending(Box::pin(users::delete_current_user(
            api,
            required(identity)?,
        ))),
        (Route::UserById, &Method::GET) => Pending(Box::pin(users::get_user(
            api,
            required(identity)?,
            path.user_id()?,
        ))),
        (Route::UserById, &Method::PUT) => Pending(Box::pin(users::update_user(
            api,
            request,
            required(identity)?,
            path.user_id()?,
        ))),
        (Route::ApiTokens, &Method::GET) => Pending(Box::pin(api_tokens::list(
            api,
            request,
            required(identity)?,
        ))),
        (Route::ApiTokens, &Method::POST) => Pending(Box::pin(api_tokens::create(
            api,
            request,
            required(identity)?,
        ))),
        (Route::ApiToken, &Method::GET) => Pending(Box::pin(api_tokens::get(
            api,
            request,
            required(identity)?,
            path.token()?,
        ))),
        (Route::ApiToken, &Method::PUT) => Pending(Box::pin(api_tokens::update(
            api,
            request,
            required(identity)?,
            path.token()?,
        ))),
        (Route::ApiToken, &Method::DELETE) => Pending(Box::pin(api_tokens::delete(
            api,
            required(identity)?,
            path.token()?,
        ))),
        (Route::Mint, &Method::POST) => Pending(Box::pin(api_tokens::mint(
            api,
            request,
            required(identity)?,
        ))),
        (Route::SignUp, &Method::POST) => Pending(Box::pin(signup::sign_up(api, request))),
        (Route::Verify, &Method::GET) => Ready(signup::verify_page(api, request)),
        (Route::Verify, &Method::POST) => Pending(Box::pin(signup::verify(api, request))),
        (Route::VerifyResend, &Method::POST) => Pending(Box::pin(signup::resend(api, request))),
        (Route::PasswordReset, &Method::GET) => Ready(signup::reset_page(api, request)),
        (Route::PasswordReset, &Method::POST) => {
            Pending(Box::pin(signup::request_reset(api, request)))
        }
        (Route::PasswordResetConfirm, &Method::POST) => {
            Pending(Box::pin(signup::confirm_reset_form(api, request)))
        }
        (Route::Keys, &Method::GET) => Ready(meta::public_keys(api, request)),
        (Route::OpenApi, &Method::GET) => Ready(Ok(meta::openapi_document())),
        (Route::Health, &Method::GET | &Method::HEAD) => Pending(Box::pin(meta::health(api))),
        (Route::ForwardAuth, &Method::GET | &Method::HEAD) => {
            Ready(forward_auth::forward(api, request, required(identity)?))
        }
        (Route::SignInSecondFactor, &Method::POST) => {
            Pending(Box::pin(second_factor::sign_in_second_factor(api, request)))
        }
        (Route::MfaTotp, &Method::POST) => Pending(Box::pin(second_factor::start_totp(
            api,
            request,
            required(identity)?,
        ))),
        (Route::MfaTotp, &Method::DELETE) => Pending(Box::pin(second_factor::disable_totp(
            api,
            request,
            required(identity)?,
        ))),
        (Route::MfaTotpConfirm, &Method::POST) => Pending(Box::pin(second_factor::confirm_totp(
            api,
            request,
            required(identity)?,
        ))),
        (Route::MfaRecoveryCodes, &Method::POST) => Pending(Box::pin(
            second_factor::regenerate_recovery_codes(api, request, required(identity)?),
        )),
        (Route::PasskeyRegisterStart, &Method::POST) => Pending(Box::pin(
            passkeys::start_registration(api, request, required(identity)?),
        )),
        (Route::PasskeyRegisterFinish, &Method::POST) => Pending(Box::pin(
            passkeys::finish_registration(api, request, required(identity)?),
        )),
        (Route::Passkeys, &Method::GET) => {
            Pending(Box::pin(passkeys::list(api, required(identity)?)))
        }
        (Route::Passkey, &Method::DELETE) => Pending(Box::pin(passkeys::remove(
            api,
            request,
            required(identity)?,
            path.passkey_id()?,
        ))),
        (Route::PasskeySignInStart, &Method::POST) => {
            Pending(Box::pin(passkeys::start_sign_in(api, request)))
        }
        (Route::PasskeySignInFinish, &Method::POST) => {
            Pending(Box::pin(passkeys::finish_sign_in(api, request)))
        }
        _ => return Err(ApiError::MethodNotAllowed(route.methods())),
    })
}

fn required(identity: Option<Identity>) -> Result<Identity, ApiError> {
    identity.ok_or(ApiError::Unauthenticated)
}

/// Reads and authenticates the request's one credential, unless the route is `Public`, and
/// applies the route's access rule to it (`routes::admit`: the cookie CSRF rule and the
/// permission).
async fn check_access(
    api: &Api,
    request: &Request,
    route: Route,
    path: &PathParameters,
) -> Result<Option<Identity>, ApiError> {
    let access = access_rule(route, &request.parts.method);
    let config = &api.app.config;
    let caller = if access == routes::Access::Public {
        None
    } else {
        match credential::find_credential(
            &request.parts,
            &request.query,
            config.auth.query_credentials,
        )? {
            None => None,
            Some(found) => Some(Caller {
                identity: auth::authenticate(
                    &api.app,
                    found.presented(),
                    routes::also_read(route, &request.parts.method),
                )
                .await?,
                from_cookie: found.from_cookie,
            }),
        }
    };
    admit(
        access,
        caller,
        &request.parts,
        TrustedOrigins {
            public_origin: &api.public_origin,
            allowed_origins: &config.auth.allowed_return_origins,
        },
        path.user_id,
    )
}
