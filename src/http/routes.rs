//! The routes: the closed `Route` enum with its path templates and methods, the one table
//! of who may call what (`access_rule`) and its application to a caller (`admit`), the
//! strict path parameters, and the router built from them.

use hyper::Method;
use hyper::http::request::Parts;

use crate::auth::Identity;
use crate::config::Origin;
use crate::http::credential;
use crate::http::error::ApiError;
use crate::model::{Permission, SessionId, UserId};

/// Every route's template is under this prefix.
pub const PREFIX: &str = "/frontend/api/v1";

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

    /// Whether the route answers this method.
    pub fn answers(self, method: &Method) -> bool {
        self.methods()
            .split(", ")
            .any(|allowed| allowed == method.as_str())
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

/// A request's credential once authenticated, and whether it came in the session cookie.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    pub from_cookie: bool,
}

/// The origins a cookie-authenticated write may come from.
#[derive(Clone, Copy, Debug)]
pub struct TrustedOrigins<'a> {
    pub public_origin: &'a Origin,
    pub allowed_origins: &'a [Origin],
}

/// Applies an access rule to the authenticated caller (none when the request carried no
/// credential), in this order: a missing credential, the cookie CSRF rule, the permission.
/// `Public` routes admit anyone, since their credential is never read. `Ok(None)` means the
/// handler runs without an identity.
pub fn admit(
    access: Access,
    caller: Option<Caller>,
    parts: &Parts,
    origins: TrustedOrigins<'_>,
    path_user_id: Option<UserId>,
) -> Result<Option<Identity>, ApiError> {
    if access == Access::Public {
        return Ok(None);
    }
    let Some(Caller {
        identity,
        from_cookie,
    }) = caller
    else {
        return match access {
            Access::CredentialOptional(_) => Ok(None),
            _ => Err(ApiError::Unauthenticated),
        };
    };
    if from_cookie {
        credential::check_cookie_origin(parts, origins.public_origin, origins.allowed_origins)?;
    }
    let holds = |permission| identity.effective_permissions.contains(permission);
    let missing = match access {
        Access::Public | Access::Authenticated => None,
        Access::SessionOrPermission(permission) | Access::CredentialOptional(permission) => {
            (!identity.is_sign_in_session() && !holds(permission)).then_some(permission)
        }
        Access::Permission(permission) => (!holds(permission)).then_some(permission),
        Access::SelfOrPermission(permission) => {
            let is_self = path_user_id == Some(identity.user.id);
            (!is_self && !holds(permission)).then_some(permission)
        }
    };
    match missing {
        Some(permission) => Err(ApiError::MissingPermission(permission)),
        None => Ok(Some(identity)),
    }
}

/// Path parameters, parsed strictly from the raw text (API.md section 2).
#[derive(Default)]
pub struct PathParameters {
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
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
                    let id = SessionId::parse_canonical(value);
                    parameters.session_id =
                        Some(id.ok_or(ApiError::InvalidPathParameter("session-id"))?);
                }
                _ => {}
            }
        }
        Ok(parameters)
    }

    pub fn user_id(&self) -> Result<UserId, ApiError> {
        self.user_id
            .ok_or(ApiError::InvalidPathParameter("user-id"))
    }

    /// The `{token}` text (kept out of `Debug` and logs).
    pub fn token(&self) -> Result<&str, ApiError> {
        self.token
            .as_deref()
            .ok_or(ApiError::InvalidPathParameter("token"))
    }

    pub fn session_id(&self) -> Result<SessionId, ApiError> {
        self.session_id
            .ok_or(ApiError::InvalidPathParameter("session-id"))
    }
}

/// The router: every route's template under `/frontend/api/v1`.
pub fn build_router() -> Result<matchit::Router<Route>, matchit::InsertError> {
    let mut router = matchit::Router::new();
    for route in Route::ALL {
        router.insert(format!("{PREFIX}{}", route.template()), route)?;
    }
    Ok(router)
}

/// The route a path names, with its raw path parameters, or `None` for no route.
pub fn match_route(
    router: &matchit::Router<Route>,
    path: &str,
) -> Option<(Route, Vec<(String, String)>)> {
    let found = router.at(path).ok()?;
    let parameters = found
        .params
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    Some((*found.value, parameters))
}

/// Looks a path up: `None` for no route, else the route and its strictly parsed
/// parameters (or the 400 they earn). Exposed for the fuzz targets.
pub fn resolve_path(
    router: &matchit::Router<Route>,
    path: &str,
) -> Option<Result<(Route, PathParameters), ApiError>> {
    let (route, parameters) = match_route(router, path)?;
    Some(PathParameters::parse(&parameters).map(|parsed| (route, parsed)))
}
