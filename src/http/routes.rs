//! The routes: the closed `Route` enum with its path templates and methods, the one table
//! of who may call what (`access_rule`) and its application to a caller (`admit`), the
//! strict path parameters, and the router built from them.

use hyper::Method;
use hyper::http::request::Parts;

use crate::auth::{AlsoRead, Identity};
use crate::http::credential;
use crate::http::error::ApiError;
use crate::model::net::Origin;
use crate::model::passkey::PasskeyId;
use crate::model::{Permission, Secret, SessionId, UserId};

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
    ForwardAuth,
    SignInSecondFactor,
    MfaTotp,
    MfaTotpConfirm,
    MfaRecoveryCodes,
    PasskeyRegisterStart,
    PasskeyRegisterFinish,
    Passkeys,
    Passkey,
    PasskeySignInStart,
    PasskeySignInFinish,
}

impl Route {
    pub const ALL: [Route; 32] = [
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
        Route::ForwardAuth,
        Route::SignInSecondFactor,
        Route::MfaTotp,
        Route::MfaTotpConfirm,
        Route::MfaRecoveryCodes,
        Route::PasskeyRegisterStart,
        Route::PasskeyRegisterFinish,
        Route::Passkeys,
        Route::Passkey,
        Route::PasskeySignInStart,
        Route::PasskeySignInFinish,
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
            Route::ForwardAuth => "/auth/forward",
            Route::SignInSecondFactor => "/auth/sign-in/second-factor",
            Route::MfaTotp => "/auth/mfa/totp",
            Route::MfaTotpConfirm => "/auth/mfa/totp/confirm",
            Route::MfaRecoveryCodes => "/auth/mfa/recovery-codes",
            Route::PasskeyRegisterStart => "/auth/passkey/register/start",
            Route::PasskeyRegisterFinish => "/auth/passkey/register/finish",
            Route::Passkeys => "/auth/passkey",
            Route::Passkey => "/auth/passkey/{passkey-id}",
            Route::PasskeySignInStart => "/auth/passkey/sign-in/start",
            Route::PasskeySignInFinish => "/auth/passkey/sign-in/finish",
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
            | Route::PasswordResetConfirm
            | Route::SignInSecondFactor
            | Route::MfaTotpConfirm
            | Route::MfaRecoveryCodes
            | Route::PasskeyRegisterStart
            | Route::PasskeyRegisterFinish
            | Route::PasskeySignInStart
            | Route::PasskeySignInFinish => "POST",
            Route::MfaTotp => "POST, DELETE",
            Route::Passkeys => "GET",
            Route::Passkey => "DELETE",
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
            // HEAD too: a proxy's subrequest may be either (only the status and headers count).
            Route::Health | Route::ForwardAuth => "GET, HEAD",
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
    /// A sign-in session's credential and nothing else: a token (API or minted) is refused
    /// whatever it holds, so a stolen one can neither add a second factor nor remove the
    /// owner's (API.md section 10).
    SignInSession,
    /// This permission in the effective set.
    Permission(Permission),
    /// The caller's own `{user-id}` needs nothing more; anyone else's needs this permission.
    SelfOrPermission(Permission),
    /// Without a credential the handler decides (a reset token); with one, as inner rule.
    CredentialOptional(Permission),
}

/// What a route's token check reads with the credential: `GET /user/current` answers the
/// user's second factors, so the check reads them in the same statement (one round trip on
/// PostgreSQL, on the hottest route).
pub fn also_read(route: Route, method: &Method) -> AlsoRead {
    match (route, method) {
        (Route::CurrentUser, &Method::GET) => AlsoRead::SecondFactorSummary,
        _ => AlsoRead::Nothing,
    }
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
            | Route::Health
            | Route::SignInSecondFactor
            | Route::PasskeySignInStart
            | Route::PasskeySignInFinish,
            _,
        ) => Access::Public,
        (
            Route::MfaTotp
            | Route::MfaTotpConfirm
            | Route::MfaRecoveryCodes
            | Route::PasskeyRegisterStart
            | Route::PasskeyRegisterFinish
            | Route::Passkey,
            _,
        ) => Access::SignInSession,
        (Route::Passkeys, _) => Access::Permission(ReadUser),
        (Route::CurrentPassword, _) => Access::CredentialOptional(WriteUser),
        (Route::Sessions | Route::CurrentUser, &Method::DELETE) => {
            Access::SessionOrPermission(WriteUser)
        }
        (
            Route::Sessions
            | Route::Session
            | Route::SignOut
            | Route::CurrentUser
            | Route::ForwardAuth,
            _,
        ) => Access::Authenticated,
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
    if access == Access::SignInSession && !identity.is_sign_in_session() {
        return Err(ApiError::SignInSessionRequired);
    }
    let holds = |permission| identity.effective_permissions.contains(permission);
    let missing = match access {
        Access::Public | Access::Authenticated | Access::SignInSession => None,
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
#[derive(Debug, Default)]
pub struct PathParameters {
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub passkey_id: Option<PasskeyId>,
    /// An API token: its 64 characters, or its first 8.
    token: Option<Secret<String>>,
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
                    // At most `i64::MAX`: no store holds a larger id (PostgreSQL's ids are
                    // `bigint`), so a larger one is invalid, not a database error.
                    let id = valid
                        .then(|| value.parse::<i64>().ok())
                        .flatten()
                        .and_then(|id| UserId::try_from(id).ok());
                    parameters.user_id = Some(id.ok_or(ApiError::InvalidPathParameter("user-id"))?);
                }
                "token" => {
                    let lowercase_hex = value
                        .bytes()
                        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
                    if !lowercase_hex || !(value.len() == 8 || value.len() == 64) {
                        return Err(ApiError::InvalidPathParameter("token"));
                    }
                    parameters.token = Some(Secret::new(value.clone()));
                }
                "session-id" => {
                    let id = SessionId::parse_canonical(value);
                    parameters.session_id =
                        Some(id.ok_or(ApiError::InvalidPathParameter("session-id"))?);
                }
                "passkey-id" => {
                    let id = PasskeyId::parse_canonical(value);
                    parameters.passkey_id =
                        Some(id.ok_or(ApiError::InvalidPathParameter("passkey-id"))?);
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

    /// The `{token}` text (kept out of `Debug` and logs by its type until here).
    pub fn token(&self) -> Result<&str, ApiError> {
        self.token
            .as_ref()
            .map(|token| token.expose_secret().as_str())
            .ok_or(ApiError::InvalidPathParameter("token"))
    }

    pub fn session_id(&self) -> Result<SessionId, ApiError> {
        self.session_id
            .ok_or(ApiError::InvalidPathParameter("session-id"))
    }

    pub fn passkey_id(&self) -> Result<PasskeyId, ApiError> {
        self.passkey_id
            .ok_or(ApiError::InvalidPathParameter("passkey-id"))
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

#[cfg(test)]
mod tests {
    use hyper::Method;
    use hyper::header::ORIGIN;
    use hyper::http::request::Parts;

    use super::{Access, Caller, Route, TrustedOrigins, access_rule, admit};
    use crate::auth::{CredentialKind, Identity};
    use crate::http::error::ApiError;
    use crate::model::net::Origin;
    use crate::model::{
        Permission, PermissionSet, Role, SessionId, SessionKind, Status, User, UserId,
    };

    const CALLER_ID: UserId = 7;
    const OTHER_USER_ID: UserId = 8;
    const PUBLIC_ORIGIN: &str = "https://auth.example.com";
    const FOREIGN_ORIGIN: &str = "https://evil.example";

    /// How a request reaches a handler once its access rule applied.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Outcome {
        /// The handler runs with no identity: a public route (whatever credential was sent
        /// is never read), or an optional credential that was not sent.
        Anonymous,
        /// The handler runs as the caller.
        Caller,
        /// 401: a credential is required.
        Unauthenticated,
        /// 403: a cookie-authenticated write from a page of a foreign origin.
        CrossSite,
        /// 403: the effective set lacks this permission.
        Lacks(Permission),
        /// 403: only a sign-in session's credential may call the route.
        NotSignInSession,
    }

    /// The credential a request carries. Rank does not enter the access rule (it enters
    /// `auth::account::can_reach`, behind it); the effective set and the kind do.
    #[derive(Clone, Copy, Debug)]
    enum Credential {
        Nothing,
        /// A sign-in session's signed token, in `Authorization` or the query.
        SignInToken,
        /// The same token in the `jwt` cookie, sent from a page of the server's own origin.
        OwnPageCookie,
        /// The same token in the `jwt` cookie, sent from a foreign page.
        ForeignPageCookie,
        /// The API token a sign-in hands out, bound to its session.
        SessionApiToken,
        /// A token minted by `POST /auth/jwt`.
        MintedToken,
        /// A standalone API token from `POST /auth/api-token`.
        StandaloneApiToken,
    }

    /// One column of the table: a credential, the effective set behind it, and whether the
    /// path's `{user-id}` (on the routes that have one) is the caller's own.
    #[derive(Clone, Copy, Debug)]
    struct CallerCase {
        credential: Credential,
        holds_every_permission: bool,
        names_own_user_id: bool,
    }

    const fn case(credential: Credential, holds_every_permission: bool) -> CallerCase {
        CallerCase {
            credential,
            holds_every_permission,
            names_own_user_id: false,
        }
    }

    /// The table's columns, in order.
    const COLUMNS: [CallerCase; 10] = [
        case(Credential::Nothing, false),
        case(Credential::SignInToken, false),
        CallerCase {
            credential: Credential::SignInToken,
            holds_every_permission: false,
            names_own_user_id: true,
        },
        case(Credential::OwnPageCookie, false),
        case(Credential::ForeignPageCookie, true),
        case(Credential::SessionApiToken, false),
        case(Credential::MintedToken, false),
        case(Credential::MintedToken, true),
        case(Credential::StandaloneApiToken, false),
        case(Credential::StandaloneApiToken, true),
    ];

    // The legend of the cells.
    const ANON: Outcome = Outcome::Anonymous;
    const OK: Outcome = Outcome::Caller;
    const E401: Outcome = Outcome::Unauthenticated;
    const CSRF: Outcome = Outcome::CrossSite;
    const NO_RU: Outcome = Outcome::Lacks(Permission::ReadUser);
    const NO_WU: Outcome = Outcome::Lacks(Permission::WriteUser);
    const NO_RS: Outcome = Outcome::Lacks(Permission::ReadSubUser);
    const NO_WS: Outcome = Outcome::Lacks(Permission::WriteSubUser);
    const SESS: Outcome = Outcome::NotSignInSession;

    /// Every route and method it answers, and the outcome for each column of `COLUMNS`:
    /// no credential; a sign-in session's signed token holding no permission, then the
    /// same naming its own `{user-id}`; its cookie from the server's own page (no
    /// permission) and from a foreign page (every permission); the session's bound API
    /// token (no permission); a minted token holding none, then all; a standalone API
    /// token holding none, then all.
    #[rustfmt::skip]
    const ACCESS_TABLE: &[(Route, Method, [Outcome; 10])] = &[
        //                                            no     sign-in token:  cookie from:  sess.  minted:       api token:
        //                                            cred.  none    own id  own    foreign api    none   all    none   all
        (Route::SignIn,               Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::OAuthSignIn,          Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::SignOut,              Method::DELETE, [E401, OK,     OK,     OK,    CSRF,  OK,    OK,    OK,    OK,    OK]),
        (Route::Sessions,             Method::GET,    [E401, OK,     OK,     OK,    OK,    OK,    OK,    OK,    OK,    OK]),
        (Route::Sessions,             Method::DELETE, [E401, OK,     OK,     OK,    CSRF,  OK,    NO_WU, OK,    NO_WU, OK]),
        (Route::Session,              Method::GET,    [E401, OK,     OK,     OK,    OK,    OK,    OK,    OK,    OK,    OK]),
        (Route::Session,              Method::DELETE, [E401, OK,     OK,     OK,    CSRF,  OK,    OK,    OK,    OK,    OK]),
        (Route::CurrentPassword,      Method::PUT,    [ANON, OK,     OK,     OK,    CSRF,  OK,    NO_WU, OK,    NO_WU, OK]),
        (Route::UserPassword,         Method::PUT,    [E401, NO_WS,  NO_WS,  NO_WS, CSRF,  NO_WS, NO_WS, OK,    NO_WS, OK]),
        (Route::Users,                Method::GET,    [E401, NO_RS,  NO_RS,  NO_RS, OK,    NO_RS, NO_RS, OK,    NO_RS, OK]),
        (Route::Users,                Method::POST,   [E401, NO_WS,  NO_WS,  NO_WS, CSRF,  NO_WS, NO_WS, OK,    NO_WS, OK]),
        (Route::CurrentUser,          Method::GET,    [E401, OK,     OK,     OK,    OK,    OK,    OK,    OK,    OK,    OK]),
        (Route::CurrentUser,          Method::PUT,    [E401, OK,     OK,     OK,    CSRF,  OK,    OK,    OK,    OK,    OK]),
        (Route::CurrentUser,          Method::DELETE, [E401, OK,     OK,     OK,    CSRF,  OK,    NO_WU, OK,    NO_WU, OK]),
        (Route::UserById,             Method::GET,    [E401, NO_RS,  OK,     NO_RS, OK,    NO_RS, NO_RS, OK,    NO_RS, OK]),
        (Route::UserById,             Method::PUT,    [E401, NO_WS,  NO_WS,  NO_WS, CSRF,  NO_WS, NO_WS, OK,    NO_WS, OK]),
        (Route::ApiTokens,            Method::GET,    [E401, NO_RU,  NO_RU,  NO_RU, OK,    NO_RU, NO_RU, OK,    NO_RU, OK]),
        (Route::ApiTokens,            Method::POST,   [E401, NO_WU,  NO_WU,  NO_WU, CSRF,  NO_WU, NO_WU, OK,    NO_WU, OK]),
        (Route::ApiToken,             Method::GET,    [E401, NO_RU,  NO_RU,  NO_RU, OK,    NO_RU, NO_RU, OK,    NO_RU, OK]),
        (Route::ApiToken,             Method::PUT,    [E401, NO_WU,  NO_WU,  NO_WU, CSRF,  NO_WU, NO_WU, OK,    NO_WU, OK]),
        (Route::ApiToken,             Method::DELETE, [E401, NO_WU,  NO_WU,  NO_WU, CSRF,  NO_WU, NO_WU, OK,    NO_WU, OK]),
        (Route::Mint,                 Method::POST,   [E401, NO_WU,  NO_WU,  NO_WU, CSRF,  NO_WU, NO_WU, OK,    NO_WU, OK]),
        (Route::SignUp,               Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::Verify,               Method::GET,    [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::Verify,               Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::VerifyResend,         Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::PasswordReset,        Method::GET,    [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::PasswordReset,        Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::PasswordResetConfirm, Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::Keys,                 Method::GET,    [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::OpenApi,              Method::GET,    [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::Health,               Method::GET,    [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::Health,               Method::HEAD,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::ForwardAuth,          Method::GET,    [E401, OK,     OK,     OK,    OK,    OK,    OK,    OK,    OK,    OK]),
        (Route::ForwardAuth,          Method::HEAD,   [E401, OK,     OK,     OK,    OK,    OK,    OK,    OK,    OK,    OK]),
        (Route::SignInSecondFactor,   Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::MfaTotp,              Method::POST,   [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::MfaTotp,              Method::DELETE, [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::MfaTotpConfirm,       Method::POST,   [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::MfaRecoveryCodes,     Method::POST,   [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::PasskeyRegisterStart, Method::POST,   [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::PasskeyRegisterFinish, Method::POST,  [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::Passkeys,             Method::GET,    [E401, NO_RU,  NO_RU,  NO_RU, OK,    NO_RU, NO_RU, OK,    NO_RU, OK]),
        (Route::Passkey,              Method::DELETE, [E401, OK,     OK,     OK,    CSRF,  OK,    SESS,  SESS,  SESS,  SESS]),
        (Route::PasskeySignInStart,   Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
        (Route::PasskeySignInFinish,  Method::POST,   [ANON, ANON,   ANON,   ANON,  ANON,  ANON,  ANON,  ANON,  ANON,  ANON]),
    ];

    fn caller_user(permissions: PermissionSet) -> User {
        User {
            id: CALLER_ID,
            email: "caller@example.com".to_owned(),
            normalized_email: "caller@example.com".to_owned(),
            password_hash: None,
            role: Role::User,
            status: Status::Active,
            parent_id: None,
            first_name: None,
            last_name: None,
            permissions,
            created: 0,
            updated: 0,
            email_verified: true,
            credential_version: 0,
        }
    }

    /// The authenticated caller a column stands for, as `check_access` hands it to `admit`.
    fn caller(case: CallerCase) -> Option<Caller> {
        let kind = match case.credential {
            Credential::Nothing => return None,
            Credential::SignInToken | Credential::OwnPageCookie | Credential::ForeignPageCookie => {
                CredentialKind::SessionToken(SessionKind::SignIn)
            }
            Credential::SessionApiToken => CredentialKind::SessionApiToken,
            Credential::MintedToken => CredentialKind::SessionToken(SessionKind::Minted),
            Credential::StandaloneApiToken => CredentialKind::StandaloneApiToken,
        };
        let effective_permissions = if case.holds_every_permission {
            PermissionSet::all()
        } else {
            PermissionSet::empty()
        };
        let from_session = !matches!(case.credential, Credential::StandaloneApiToken);
        Some(Caller {
            identity: Identity {
                user: caller_user(effective_permissions),
                parent: None,
                session_id: from_session.then(|| SessionId::new_for_user(CALLER_ID)),
                api_token_hash: (!from_session).then_some([1; 32]),
                kind,
                effective_permissions,
                credential_expires_at: None,
                second_factors: None,
            },
            from_cookie: matches!(
                case.credential,
                Credential::OwnPageCookie | Credential::ForeignPageCookie
            ),
        })
    }

    /// The request head a column sends: a browser names the page's origin.
    fn request_head(method: &Method, case: CallerCase) -> Parts {
        let mut request = hyper::Request::builder().method(method.clone());
        match case.credential {
            Credential::OwnPageCookie => request = request.header(ORIGIN, PUBLIC_ORIGIN),
            Credential::ForeignPageCookie => request = request.header(ORIGIN, FOREIGN_ORIGIN),
            _ => {}
        }
        request.body(()).unwrap().into_parts().0
    }

    fn outcome_of(result: Result<Option<Identity>, ApiError>) -> Outcome {
        match result {
            Ok(None) => Outcome::Anonymous,
            Ok(Some(identity)) => {
                assert_eq!(identity.user.id, CALLER_ID);
                Outcome::Caller
            }
            Err(ApiError::Unauthenticated) => Outcome::Unauthenticated,
            Err(ApiError::CrossSiteRequest) => Outcome::CrossSite,
            Err(ApiError::MissingPermission(permission)) => Outcome::Lacks(permission),
            Err(ApiError::SignInSessionRequired) => Outcome::NotSignInSession,
            Err(other) => panic!("the access rule answered {other:?}"),
        }
    }

    /// Applies one row's rule to one column, as `check_access` does after authenticating.
    fn check_cell(route: Route, method: &Method, column: usize, expected: Outcome) {
        let case = COLUMNS[column];
        let public_origin: Origin = PUBLIC_ORIGIN.parse().unwrap();
        let origins = TrustedOrigins {
            public_origin: &public_origin,
            allowed_origins: &[],
        };
        let has_user_id = route.template().contains("{user-id}");
        let path_user_id = has_user_id.then_some(if case.names_own_user_id {
            CALLER_ID
        } else {
            OTHER_USER_ID
        });
        let result = admit(
            access_rule(route, method),
            caller(case),
            &request_head(method, case),
            origins,
            path_user_id,
        );
        assert_eq!(
            outcome_of(result),
            expected,
            "{route:?} {method} with {case:?}"
        );
    }

    #[test]
    fn every_route_and_method_meets_every_credential_as_the_table_says() {
        for (route, method, outcomes) in ACCESS_TABLE {
            assert!(route.answers(method), "{route:?} does not answer {method}");
            for (column, expected) in outcomes.iter().enumerate() {
                check_cell(*route, method, column, *expected);
            }
        }
        // Every route, with every method it answers, has exactly one row.
        for route in Route::ALL {
            for method in route.methods().split(", ") {
                let rows = ACCESS_TABLE
                    .iter()
                    .filter(|(row_route, row_method, _)| {
                        *row_route == route && row_method.as_str() == method
                    })
                    .count();
                assert_eq!(rows, 1, "{route:?} {method} needs exactly one row");
            }
        }
    }

    #[test]
    fn public_routes_are_exactly_the_rows_that_read_no_credential() {
        for (route, method, outcomes) in ACCESS_TABLE {
            let public = access_rule(*route, method) == Access::Public;
            assert_eq!(
                public,
                outcomes.iter().all(|outcome| *outcome == ANON),
                "{route:?} {method}"
            );
        }
    }
}
