//! The HTTP transport (with `server`, the only code that knows hyper; the only code that
//! knows matchit). Every route is a variant of the closed `Route` enum; `handle` looks it up,
//! applies the route's access rule from the one table in `access_rule`, and dispatches with
//! one `match`. Errors become responses in `error`, in one place.

mod credential;
mod dto;
pub mod error;
pub mod fields;
mod handlers;

use std::net::SocketAddr;
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
use crate::config::Origin;
use crate::model::Permission;
use error::ApiError;
use fields::Fields;

pub type Response = hyper::Response<Full<Bytes>>;

const PREFIX: &str = "/frontend/api/v1";

/// Every route the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    SignIn,
    CurrentUser,
    Health,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::SignIn, Route::CurrentUser, Route::Health];

    /// The path template under `/frontend/api/v1`, as matchit reads it and logs show it.
    pub fn template(self) -> &'static str {
        match self {
            Route::SignIn => "/auth/sign-in",
            Route::CurrentUser => "/user/current",
            Route::Health => "/health",
        }
    }

    /// The methods the route answers (for 405's `Allow` and CORS preflight).
    pub fn methods(self) -> &'static str {
        match self {
            Route::SignIn => "POST",
            Route::CurrentUser | Route::Health => "GET",
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
    /// A session credential, or `write:user` (or this permission) in the effective set.
    SessionOrPermission(Permission),
    /// This permission in the effective set.
    Permission(Permission),
}

/// The route rules, all in one table (API.md section 6), checked before any handler runs.
pub fn access_rule(route: Route, method: &Method) -> Access {
    match (route, method) {
        (Route::SignIn | Route::Health, _) => Access::Public,
        (Route::CurrentUser, _) => Access::Authenticated,
    }
}

/// The HTTP face of the app: the app and the router, built once.
#[derive(Debug)]
pub struct Api {
    pub app: Arc<App>,
    router: matchit::Router<Route>,
    public_origin: Origin,
}

impl Api {
    pub fn new(app: Arc<App>) -> Result<Api, matchit::InsertError> {
        let mut router = matchit::Router::new();
        for route in Route::ALL {
            router.insert(format!("{PREFIX}{}", route.template()), route)?;
        }
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
        let forwarded_for = self
            .parts
            .headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok());
        ClientInfo {
            remote_ip: auth::client::remote_ip(
                self.peer.ip(),
                forwarded_for,
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
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<Origin>().ok())
        .filter(|origin| api.app.config.http.cors_origins.contains(origin));
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
            match dispatch(api, route, request).await {
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
    let identity = check_access(api, &request, access_rule(route, &method))?;
    match (route, &method) {
        (Route::SignIn, &Method::POST) => handlers::sign_in(api, &mut request).await,
        (Route::CurrentUser, &Method::GET) => handlers::current_user(api, required(identity)?),
        (Route::Health, &Method::GET) => handlers::health(api),
        _ => Err(ApiError::MethodNotAllowed(route.methods())),
    }
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
) -> Result<Option<Identity>, ApiError> {
    if access == Access::Public {
        return Ok(None);
    }
    let config = &api.app.config;
    let found = credential::find_credential(
        &request.parts,
        &request.query,
        config.auth.query_credentials,
    )?
    .ok_or(ApiError::Unauthenticated)?;
    let identity = auth::authenticate(&api.app, found.presented())?;
    if found.from_cookie {
        credential::check_cookie_origin(
            &request.parts,
            &api.public_origin,
            &config.auth.allowed_return_origins,
        )?;
    }
    match access {
        Access::Public | Access::Authenticated => {}
        Access::SessionOrPermission(permission) => {
            if !identity.has_session() && !identity.effective_permissions.contains(permission) {
                return Err(ApiError::MissingPermission(permission));
            }
        }
        Access::Permission(permission) => {
            if !identity.effective_permissions.contains(permission) {
                return Err(ApiError::MissingPermission(permission));
            }
        }
    }
    Ok(Some(identity))
}

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
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
