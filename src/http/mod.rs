//! The HTTP transport (with `server`, the only code that knows hyper; the only code that
//! knows matchit). Every route is a variant of the closed `Route` enum; `handle` looks it up,
//! applies the route's access rule from the one table in `access_rule`, and dispatches with
//! one `match`. Errors become responses in `error`, in one place.

mod accounts;
pub mod credential;
mod dto;
pub mod error;
pub mod fields;
mod handlers;
mod oauth;
pub(crate) mod signup;
mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode, header};

use crate::app::App;
use crate::auth::{self, ClientInfo, Identity};
use crate::model::Permission;
use crate::model::net::Origin;
use error::ApiError;
use fields::Fields;

pub type Response = hyper::Response<Full<Bytes>>;

const PREFIX: &str = "/frontend/api/v1";

/// Every route the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    SignIn,
    OAuthSignIn,
    SignOut,
    Sessions,
    Session,
    CurrentPassword,
    UserPassword,
    Users,
    CurrentUser,
    UserById,
    ApiTokens,
    ApiToken,
    Mint,
    SignUp,
    Verify,
    VerifyResend,
    PasswordReset,
    PasswordResetConfirm,
    Keys,
    OpenApi,
    Health,
}

impl Route {
    pub const ALL: [Route; 21] = [
        Route::SignIn,
        Route::OAuthSignIn,
        Route::SignOut,
        Route::Sessions,
        Route::Session,
        Route::CurrentPassword,
        Route::UserPassword,
        Route::Users,
        Route::CurrentUser,
        Route::UserById,
        Route::ApiTokens,
        Route::ApiToken,
        Route::Mint,
        Route::SignUp,
        Route::Verify,
        Route::VerifyResend,
        Route::PasswordReset,
        Route::PasswordResetConfirm,
        Route::Keys,
        Route::OpenApi,
        Route::Health,
    ];

    /// The path template under `/frontend/api/v1`, as matchit reads it and logs show it.
    pub fn template(self) -> &'static str {
        match self {
            Route::SignIn => "/auth/sign-in",
            Route::OAuthSignIn => "/auth/oauth-sign-in",
            Route::SignOut => "/auth/sign-out",
            Route::Sessions => "/auth/session",
            Route::Session => "/auth/session/{session-id}",
            Route::CurrentPassword => "/auth/current/password",
            Route::UserPassword => "/auth/{user-id}/password",
            Route::Users => "/user",
            Route::CurrentUser => "/user/current",
            Route::UserById => "/user/{user-id}",
            Route::ApiTokens => "/auth/api-token",
            Route::ApiToken => "/auth/api-token/{token}",
            Route::Mint => "/auth/jwt",
            Route::SignUp => "/auth/sign-up",
            Route::Verify => "/auth/verify",
            Route::VerifyResend => "/auth/verify/resend",
            Route::PasswordReset => "/auth/password-reset",
            Route::PasswordResetConfirm => "/auth/password-reset/confirm",
            Route::Keys => "/auth/keys",
            Route::OpenApi => "/openapi.json",
            Route::Health => "/health",
        }
    }

    /// The methods the route answers (for 405's `Allow` and CORS preflight).
    pub fn methods(self) -> &'static str {
        match self {
            Route::SignIn
            | Route::OAuthSignIn
            | Route::Mint
            | Route::SignUp
            | Route::VerifyResend
            | Route::PasswordResetConfirm => "POST",
            Route::Verify | Route::PasswordReset => "GET, POST",
            Route::ApiTokens => "GET, POST",
            Route::ApiToken => "GET, PUT, DELETE",
            Route::SignOut => "DELETE",
            Route::Sessions | Route::Session => "GET, DELETE",
            Route::CurrentPassword | Route::UserPassword => "PUT",
            Route::Users => "GET, POST",
            Route::CurrentUser => "GET, PUT, DELETE",
            Route::UserById => "GET, PUT",
            Route::Keys | Route::OpenApi => "GET",
            // HEAD for monitors that check liveness without a body; hyper sends no body.
            Route::Health => "GET, HEAD",
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credential is read.
    Public,
    /// Any valid credential.
    Authenticated,
    /// A sign-in session's credential (its signed token, cookie or api-token; not a minted
    /// token: API.md 15.1), or this permission.
    SessionOrPermission(Permission),
    /// This permission in the effective set.
    Permission(Permission),
    /// The caller's own `{user-id}` needs nothing more; anyone else's needs this permission.
    SelfOrPermission(Permission),
    /// Without a credential the handler decides (a reset token); with one, as inner rule.
    CredentialOptional(Permission),
}

/// The route rules, all in one table (API.md section 6), checked before any handler runs.
pub fn access_rule(route: Route, method: &Method) -> Access {
    use Permission::{ReadSubUser, ReadUser, WriteSubUser, WriteUser};
    match (route, method) {
        (
            Route::SignIn
            | Route::OAuthSignIn
            | Route::SignUp
            | Route::Verify
            | Route::VerifyResend
            | Route::PasswordReset
            | Route::PasswordResetConfirm
            | Route::Keys
            | Route::OpenApi
            | Route::Health,
            _,
        ) => Access::Public,
        (Route::CurrentPassword, _) => Access::CredentialOptional(WriteUser),
        (Route::Sessions | Route::CurrentUser, &Method::DELETE) => {
            Access::SessionOrPermission(WriteUser)
        }
        (Route::Sessions | Route::Session | Route::SignOut | Route::CurrentUser, _) => {
            Access::Authenticated
        }
        (Route::ApiTokens | Route::ApiToken, &Method::GET) => Access::Permission(ReadUser),
        (Route::ApiTokens | Route::ApiToken | Route::Mint, _) => Access::Permission(WriteUser),
        (Route::Users, &Method::GET) => Access::Permission(ReadSubUser),
        (Route::UserById, &Method::GET) => Access::SelfOrPermission(ReadSubUser),
        (Route::Users | Route::UserById | Route::UserPassword, _) => {
            Access::Permission(WriteSubUser)
        }
    }
}

/// Path parameters, parsed strictly from the raw text (API.md section 2).
#[derive(Default)]
pub struct PathParameters {
    pub user_id: Option<crate::model::UserId>,
    pub session_id: Option<crate::model::SessionId>,
    /// An API token: its 64 characters, or its first 8.
    token: Option<String>,
}

impl std::fmt::Debug for PathParameters {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PathParameters")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl PathParameters {
    pub fn parse(raw: &[(String, String)]) -> Result<PathParameters, ApiError> {
        let mut parameters = PathParameters::default();
        for (name, value) in raw {
            match name.as_str() {
                "user-id" => {
                    let valid = !value.is_empty()
                        && value.len() <= 19
                        && value.bytes().all(|byte| byte.is_ascii_digit())
                        && !value.starts_with('0');
                    let id = valid.then(|| value.parse::<u64>().ok()).flatten();
                    parameters.user_id = Some(id.ok_or(ApiError::InvalidPathParameter("user-id"))?);
                }
                "token" => {
                    let lowercase_hex = value
                        .bytes()
                        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
                    if !lowercase_hex || !(value.len() == 8 || value.len() == 64) {
                        return Err(ApiError::InvalidPathParameter("token"));
                    }
                    parameters.token = Some(value.clone());
                }
                "session-id" => {
                    let id = crate::model::SessionId::parse_canonical(value);
                    parameters.session_id =
                        Some(id.ok_or(ApiError::InvalidPathParameter("session-id"))?);
                }
                _ => {}
            }
        }
        Ok(parameters)
    }

    pub fn user_id(&self) -> Result<crate::model::UserId, ApiError> {
        self.user_id
            .ok_or(ApiError::InvalidPathParameter("user-id"))
    }

    /// The `{token}` text (kept out of `Debug` and logs).
    pub fn token(&self) -> Result<&str, ApiError> {
        self.token
            .as_deref()
            .ok_or(ApiError::InvalidPathParameter("token"))
    }

    pub fn session_id(&self) -> Result<crate::model::SessionId, ApiError> {
        self.session_id
            .ok_or(ApiError::InvalidPathParameter("session-id"))
    }
}

/// The HTTP face of the app: the app and the router, built once.
#[derive(Debug)]
pub struct Api {
    pub app: Arc<App>,
    router: matchit::Router<Route>,
    pub public_origin: Origin,
}

/// The router: every route's template under `/frontend/api/v1`.
pub fn build_router() -> Result<matchit::Router<Route>, matchit::InsertError> {
    let mut router = matchit::Router::new();
    for route in Route::ALL {
        router.insert(format!("{PREFIX}{}", route.template()), route)?;
    }
    Ok(router)
}

/// Looks a path up: `None` for no route, else the route and its strictly parsed
/// parameters (or the 400 they earn). Exposed for the fuzz targets.
pub fn resolve_path(
    router: &matchit::Router<Route>,
    path: &str,
) -> Option<Result<(Route, PathParameters), ApiError>> {
    let found = router.at(path).ok()?;
    let parameters: Vec<(String, String)> = found
        .params
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    Some(PathParameters::parse(&parameters).map(|parsed| (*found.value, parsed)))
}

impl Api {
    pub fn new(app: Arc<App>) -> Result<Api, matchit::InsertError> {
        let router = build_router()?;
        Ok(Api {
            public_origin: app.config.public_origin(),
            app,
            router,
        })
    }
}

/// One request as the handlers see it.
pub struct Request {
    pub parts: Parts,
    body: Option<Incoming>,
    pub peer: SocketAddr,
    pub query: Fields,
    pub path_parameters: Vec<(String, String)>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Request")
            .field("method", &self.parts.method)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Reads and decodes the body (once).
    pub async fn fields(&mut self, api: &Api) -> Result<Fields, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Fields::empty());
        };
        fields::read_fields(&self.parts, body, api.app.config.http.max_body_bytes).await
    }

    pub fn client_info(&self, api: &Api) -> ClientInfo {
        // Several `X-Forwarded-For` lines are one list (RFC 9110, 5.3): a proxy that adds its
        // own line after the client's must not have the client's line read instead. An
        // unreadable line stays an entry that ends the walk from the right.
        let forwarded_lines: Vec<&str> = self
            .parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().unwrap_or("unreadable"))
            .collect();
        let forwarded_for = (!forwarded_lines.is_empty()).then(|| forwarded_lines.join(","));
        ClientInfo {
            remote_ip: auth::client::remote_ip(
                self.peer.ip(),
                forwarded_for.as_deref(),
                &api.app.config.server.trusted_proxies,
            )
            .to_string(),
            user_agent: self
                .parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        }
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
    let matched = api
        .router
        .at(request.uri().path())
        .map(|found| {
            let parameters = found
                .params
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect::<Vec<_>>();
            (*found.value, parameters)
        })
        .ok();
    let template = matched
        .as_ref()
        .map_or("(no route)", |(route, _)| route.template());
    let mut response = match matched {
        None => error_response(&ApiError::NotFound),
        Some((route, _)) if method == Method::OPTIONS && origin.is_some() => {
            preflight_response(route)
        }
        Some((route, path_parameters)) => {
            let (parts, body) = request.into_parts();
            let request = Request {
                query: Fields::from_query(parts.uri.query()),
                parts,
                body: Some(body),
                peer,
                path_parameters,
            };
            let request_timeout =
                std::time::Duration::from_secs(api.app.config.http.request_timeout_seconds);
            let handled =
                tokio::time::timeout(request_timeout, dispatch(api, route, request)).await;
            match handled.unwrap_or(Err(ApiError::Timeout)) {
                Ok(response) => response,
                Err(error) => {
                    if let ApiError::Internal(detail) = &error {
                        tracing::error!(route = template, %detail, "request failed");
                    }
                    error_response(&error)
                }
            }
        }
    };
    finish_headers(&mut response, origin.as_ref());
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
    if !route
        .methods()
        .split(", ")
        .any(|allowed| allowed == method.as_str())
    {
        return Err(ApiError::MethodNotAllowed(route.methods()));
    }
    // On every route, public ones included: an ambiguous request is refused before anything
    // reads it (API.md section 15, rule 17).
    credential::check_single_headers(&request.parts)?;
    let path = PathParameters::parse(&request.path_parameters)?;
    let identity = check_access(api, &request, access_rule(route, &method), &path)?;
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

/// The security events the audit log records, by route; sign-in logs its own.
fn audited_event(route: Route, method: &Method) -> Option<&'static str> {
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
        (Route::SignIn, &Method::POST) => Pending(Box::pin(handlers::sign_in(api, request))),
        (Route::OAuthSignIn, &Method::POST) => {
            Pending(Box::pin(oauth::oauth_sign_in(api, request)))
        }
        (Route::SignOut, &Method::DELETE) => Pending(Box::pin(accounts::sign_out(
            api,
            request,
            required(identity)?,
        ))),
        (Route::Sessions, &Method::GET) => Ready(accounts::list_sessions(api, required(identity)?)),
        (Route::Sessions, &Method::DELETE) => Pending(Box::pin(accounts::end_all_sessions(
            api,
            required(identity)?,
        ))),
        (Route::Session, &Method::GET) => Ready(accounts::get_session(
            api,
            required(identity)?,
            path.session_id()?,
        )),
        (Route::Session, &Method::DELETE) => Pending(Box::pin(accounts::end_session(
            api,
            required(identity)?,
            path.session_id()?,
        ))),
        (Route::CurrentPassword, &Method::PUT) => Pending(Box::pin(
            accounts::change_current_password(api, request, identity),
        )),
        (Route::UserPassword, &Method::PUT) => Pending(Box::pin(accounts::change_user_password(
            api,
            request,
            required(identity)?,
            path.user_id()?,
        ))),
        (Route::Users, &Method::GET) => {
            Ready(accounts::list_users(api, request, required(identity)?))
        }
        (Route::Users, &Method::POST) => Pending(Box::pin(accounts::create_sub_user(
            api,
            request,
            required(identity)?,
        ))),
        (Route::CurrentUser, &Method::GET) => {
            Ready(handlers::current_user(api, required(identity)?))
        }
        (Route::CurrentUser, &Method::PUT) => Pending(Box::pin(accounts::update_current_user(
            api,
            request,
            required(identity)?,
        ))),
        (Route::CurrentUser, &Method::DELETE) => Pending(Box::pin(accounts::delete_current_user(
            api,
            required(identity)?,
        ))),
        (Route::UserById, &Method::GET) => Ready(accounts::get_user(
            api,
            required(identity)?,
            path.user_id()?,
        )),
        (Route::UserById, &Method::PUT) => Pending(Box::pin(accounts::update_user(
            api,
            request,
            required(identity)?,
            path.user_id()?,
        ))),
        (Route::ApiTokens, &Method::GET) => Ready(tokens::list(api, request, required(identity)?)),
        (Route::ApiTokens, &Method::POST) => {
            Pending(Box::pin(tokens::create(api, request, required(identity)?)))
        }
        (Route::ApiToken, &Method::GET) => Ready(tokens::get(
            api,
            request,
            required(identity)?,
            path.token()?,
        )),
        (Route::ApiToken, &Method::PUT) => Pending(Box::pin(tokens::update(
            api,
            request,
            required(identity)?,
            path.token()?,
        ))),
        (Route::ApiToken, &Method::DELETE) => Pending(Box::pin(tokens::delete(
            api,
            required(identity)?,
            path.token()?,
        ))),
        (Route::Mint, &Method::POST) => {
            Pending(Box::pin(tokens::mint(api, request, required(identity)?)))
        }
        (Route::SignUp, &Method::POST) => Pending(Box::pin(signup::sign_up(api, request))),
        (Route::Verify, &Method::GET) => Ready(signup::verify_page(request)),
        (Route::Verify, &Method::POST) => Pending(Box::pin(signup::verify(api, request))),
        (Route::VerifyResend, &Method::POST) => Pending(Box::pin(signup::resend(api, request))),
        (Route::PasswordReset, &Method::GET) => Ready(signup::reset_page(api, request)),
        (Route::PasswordReset, &Method::POST) => {
            Pending(Box::pin(signup::request_reset(api, request)))
        }
        (Route::PasswordResetConfirm, &Method::POST) => {
            Pending(Box::pin(signup::confirm_reset_form(api, request)))
        }
        (Route::Keys, &Method::GET) => Ready(handlers::public_keys(api, request)),
        (Route::OpenApi, &Method::GET) => Ready(Ok(handlers::openapi_document())),
        (Route::Health, &Method::GET | &Method::HEAD) => Ready(handlers::health(api)),
        _ => return Err(ApiError::MethodNotAllowed(route.methods())),
    })
}

fn required(identity: Option<Identity>) -> Result<Identity, ApiError> {
    identity.ok_or(ApiError::Unauthenticated)
}

/// Applies the access rule: reads and checks the credential, the cookie CSRF rule, and the
/// permission. `Public` routes read no credential at all.
fn check_access(
    api: &Api,
    request: &Request,
    access: Access,
    path: &PathParameters,
) -> Result<Option<Identity>, ApiError> {
    if access == Access::Public {
        return Ok(None);
    }
    let config = &api.app.config;
    let found = credential::find_credential(
        &request.parts,
        &request.query,
        config.auth.query_credentials,
    )?;
    let Some(found) = found else {
        return match access {
            Access::CredentialOptional(_) => Ok(None),
            _ => Err(ApiError::Unauthenticated),
        };
    };
    let identity = auth::authenticate(&api.app, found.presented())?;
    if found.from_cookie {
        credential::check_cookie_origin(
            &request.parts,
            &api.public_origin,
            &config.auth.allowed_return_origins,
        )?;
    }
    let holds = |permission| identity.effective_permissions.contains(permission);
    let missing = match access {
        Access::Public | Access::Authenticated => None,
        Access::SessionOrPermission(permission) | Access::CredentialOptional(permission) => {
            (!identity.is_sign_in_session() && !holds(permission)).then_some(permission)
        }
        Access::Permission(permission) => (!holds(permission)).then_some(permission),
        Access::SelfOrPermission(permission) => {
            let is_self = path.user_id == Some(identity.user.id);
            (!is_self && !holds(permission)).then_some(permission)
        }
    };
    match missing {
        Some(permission) => Err(ApiError::MissingPermission(permission)),
        None => Ok(Some(identity)),
    }
}

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Most answers fit in 1 KiB: one allocation instead of a series of doublings.
    let mut bytes = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes.clear();
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn empty_response(status: StatusCode) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

pub fn error_response(error: &ApiError) -> Response {
    let (status, code, message, context) = error.parts();
    let body = dto::ErrorBody {
        code,
        context,
        error: &message,
        status: status.canonical_reason().unwrap_or(""),
    };
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let ApiError::MethodNotAllowed(allowed) = error {
        headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
    }
    if let Some(seconds) = error.retry_after_seconds() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

fn preflight_response(route: Route) -> Response {
    let mut response = empty_response(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(route.methods()),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-recaptcha-token"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Headers every answer carries: no caching of credentials, no sniffing, no referrer; and
/// CORS for a listed origin.
fn finish_headers(response: &mut Response, cors_origin: Option<&Origin>) {
    let headers = response.headers_mut();
    let defaults: [(HeaderName, &str); 3] = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    if let Some(origin) = cors_origin
        && let Ok(value) = HeaderValue::from_str(&origin.to_string())
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
