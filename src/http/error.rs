//! `ApiError` and the one table that maps every error to an HTTP status, a stable numeric
//! code (listed in the README) and a sanitized message. Internals are logged, never sent.

use std::borrow::Cow;

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use crate::auth::AuthError;
use crate::auth::oauth::browser::BrowserSignInProblem;
use crate::model::{Permission, Role, Secret};

#[derive(Debug)]
pub enum ApiError {
    InvalidField {
        field: Cow<'static, str>,
        message: Cow<'static, str>,
    },
    /// A password being set outside `[password] min_length` to 72 characters: an invalid
    /// field whose message gives the range.
    PasswordLength {
        field: &'static str,
        min_length: usize,
        max_length: usize,
    },
    MalformedBody(&'static str),
    InvalidPathParameter(&'static str),
    Unauthenticated,
    InvalidCredentials,
    MissingPermission(Permission),
    /// Forward auth: the matching rule asks for this role or a higher one.
    MissingRole(Role),
    /// Forward auth: the matching rule is `deny = true`.
    ForwardDenied,
    /// Forward auth with rules configured, asked without a (believed) original URL.
    OriginalUrlUnknown,
    AccountPending,
    AccountSuspended,
    CrossSiteRequest,
    /// A page's form came without the CSRF token its browser's cookie makes valid.
    FormTokenInvalid,
    /// A re-authentication's password is wrong: `old-password`, or `password` on the
    /// second-factor routes.
    WrongPassword {
        field: &'static str,
    },
    /// The first factor was right and the account holds a second one: the 403 that carries
    /// the mfa-token and the methods to complete the sign-in with.
    SecondFactorRequired {
        mfa_token: Secret<String>,
        methods: Vec<&'static str>,
    },
    InvalidMfaToken,
    WrongSecondFactor {
        field: &'static str,
    },
    /// The route manages second factors: only a sign-in session's credential may call it.
    SignInSessionRequired,
    RecentSignInRequired,
    /// Passkeys cannot work on this server; the text says what to configure.
    PasskeysUnavailable(&'static str),
    PasskeyChallenge(crate::model::passkey::PasskeyChallengeProblem),
    PasskeyNotVerified,
    PasskeyRefused,
    OutlivesCredential,
    NotFound,
    MethodNotAllowed(&'static str),
    Conflict(&'static str),
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests(u64),
    SignupClosed,
    InvalidEmailToken {
        field: &'static str,
        problem: crate::model::EmailTokenProblem,
    },
    CaptchaRefused,
    CaptchaUnavailable,
    InvalidProviderToken,
    /// Every account-dependent OAuth refusal: one status, code, message and context.
    OAuthRefused,
    OAuthEmailMismatch,
    ProviderUnreachable,
    /// A browser OAuth sign-in that cannot go on: its reason is told (none is about an
    /// account).
    OAuthBrowserSignIn(BrowserSignInProblem),
    Overloaded,
    Draining,
    Timeout,
    /// The store cannot serve now: logged with its cause, answered 503 to retry.
    StoreUnavailable(String),
    Internal(String),
}

impl ApiError {
    pub fn invalid_field(field: &'static str, message: &'static str) -> ApiError {
        ApiError::InvalidField {
            field: Cow::Borrowed(field),
            message: Cow::Borrowed(message),
        }
    }

    /// Status, code, message and context: the single place that knows them.
    pub fn parts(&self) -> (StatusCode, u32, Cow<'static, str>, Map<String, Value>) {
        let mut context = Map::new();
        let (status, code, message): (StatusCode, u32, Cow<'static, str>) = match self {
            ApiError::InvalidField { field, message } => {
                context.insert("field".into(), json!(field));
                (
                    StatusCode::BAD_REQUEST,
                    40000,
                    Cow::Owned(format!("{field} {message}")),
                )
            }
            ApiError::PasswordLength {
                field,
                min_length,
                max_length,
            } => {
                context.insert("field".into(), json!(field));
                (
                    StatusCode::BAD_REQUEST,
                    40000,
                    Cow::Owned(format!(
                        "{field} must be {min_length} to {max_length} characters"
                    )),
                )
            }
            ApiError::MalformedBody(what) => {
                context.insert("reason".into(), json!(what));
                (
                    StatusCode::BAD_REQUEST,
                    40001,
                    "the request body is malformed".into(),
                )
            }
            ApiError::InvalidPathParameter(name) => {
                context.insert("parameter".into(), json!(name));
                (
                    StatusCode::BAD_REQUEST,
                    40002,
                    Cow::Owned(format!("path parameter {name} is invalid")),
                )
            }
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                40100,
                "a valid credential is required".into(),
            ),
            ApiError::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                40101,
                "wrong email or password".into(),
            ),
            ApiError::MissingPermission(permission) => {
                context.insert("permission".into(), json!(permission.name()));
                (
                    StatusCode::FORBIDDEN,
                    40300,
                    Cow::Owned(format!("permission {} is required", permission.name())),
                )
            }
            ApiError::MissingRole(role) => {
                context.insert("role".into(), json!(role.name()));
                (
                    StatusCode::FORBIDDEN,
                    40320,
                    Cow::Owned(format!("role {} or higher is required", role.name())),
                )
            }
            ApiError::ForwardDenied => {
                context.insert("reason".into(), json!("denied"));
                (
                    StatusCode::FORBIDDEN,
                    40321,
                    "a forward-auth rule denies this URL to everyone".into(),
                )
            }
            ApiError::OriginalUrlUnknown => {
                context.insert("reason".into(), json!("original-url-unknown"));
                (
                    StatusCode::FORBIDDEN,
                    40322,
                    "the original URL is unknown, so the forward-auth rules cannot be applied"
                        .into(),
                )
            }
            ApiError::AccountPending => {
                context.insert("reason".into(), json!("pending"));
                (
                    StatusCode::FORBIDDEN,
                    40301,
                    "the account awaits email verification".into(),
                )
            }
            ApiError::AccountSuspended => {
                context.insert("reason".into(), json!("suspended"));
                (
                    StatusCode::FORBIDDEN,
                    40302,
                    "the account is suspended".into(),
                )
            }
            ApiError::CrossSiteRequest => {
                context.insert("reason".into(), json!("origin"));
                (
                    StatusCode::FORBIDDEN,
                    40303,
                    "the request must come from an allowed origin".into(),
                )
            }
            ApiError::FormTokenInvalid => {
                context.insert("reason".into(), json!("csrf"));
                (
                    StatusCode::FORBIDDEN,
                    40307,
                    "the form's token is missing or does not match this browser".into(),
                )
            }
            ApiError::WrongPassword { field } => {
                context.insert("field".into(), json!(field));
                (
                    StatusCode::FORBIDDEN,
                    40304,
                    "the current password is wrong".into(),
                )
            }
            ApiError::SecondFactorRequired { mfa_token, methods } => {
                context.insert("reason".into(), json!("second-factor-required"));
                context.insert("mfa-token".into(), json!(mfa_token.expose_secret()));
                context.insert("methods".into(), json!(methods));
                (
                    StatusCode::FORBIDDEN,
                    40330,
                    "a second factor is required: complete the sign-in at /auth/sign-in/second-factor"
                        .into(),
                )
            }
            ApiError::WrongSecondFactor { field } => {
                context.insert("field".into(), json!(field));
                (
                    StatusCode::FORBIDDEN,
                    40331,
                    Cow::Owned(format!("the {field} is wrong or was used already")),
                )
            }
            ApiError::SignInSessionRequired => {
                context.insert("reason".into(), json!("sign-in-session-required"));
                (
                    StatusCode::FORBIDDEN,
                    40332,
                    "second factors and passkeys are managed only with a sign-in session's credential, never an API token or a minted token"
                        .into(),
                )
            }
            ApiError::RecentSignInRequired => {
                context.insert("reason".into(), json!("recent-sign-in-required"));
                (
                    StatusCode::FORBIDDEN,
                    40333,
                    "this account has no password: sign in again (within 10 minutes) to change its second factors"
                        .into(),
                )
            }
            ApiError::InvalidMfaToken => {
                context.insert("field".into(), json!("mfa-token"));
                (
                    StatusCode::UNAUTHORIZED,
                    40103,
                    "the mfa-token is unknown, used or expired: sign in again".into(),
                )
            }
            ApiError::PasskeysUnavailable(why) => {
                context.insert("reason".into(), json!("passkeys-unavailable"));
                (StatusCode::CONFLICT, 40901, Cow::Borrowed(*why))
            }
            ApiError::PasskeyChallenge(problem) => {
                let reason = match problem {
                    crate::model::passkey::PasskeyChallengeProblem::Unknown => "invalid",
                    crate::model::passkey::PasskeyChallengeProblem::Expired => "expired",
                };
                context.insert("field".into(), json!("challenge-id"));
                context.insert("reason".into(), json!(reason));
                (
                    StatusCode::BAD_REQUEST,
                    40006,
                    Cow::Owned(format!(
                        "the challenge is {reason}: start the ceremony again"
                    )),
                )
            }
            ApiError::PasskeyNotVerified => {
                context.insert("field".into(), json!("credential"));
                context.insert("reason".into(), json!("not-verified"));
                (
                    StatusCode::BAD_REQUEST,
                    40007,
                    "the new passkey does not verify".into(),
                )
            }
            ApiError::PasskeyRefused => (
                StatusCode::UNAUTHORIZED,
                40104,
                "the passkey was not accepted".into(),
            ),
            ApiError::OutlivesCredential => {
                context.insert("reason".into(), json!("outlives-credential"));
                (
                    StatusCode::FORBIDDEN,
                    40310,
                    "a token cannot give a token a later expiry than its own".into(),
                )
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, 40400, "not found".into()),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                40500,
                "method not allowed".into(),
            ),
            ApiError::Conflict(what) => {
                context.insert("reason".into(), json!(what));
                (
                    StatusCode::CONFLICT,
                    40900,
                    Cow::Owned(format!("conflict: {what}")),
                )
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                41300,
                "the request body is too large".into(),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                41500,
                "send application/json or application/x-www-form-urlencoded (utf-8)".into(),
            ),
            ApiError::SignupClosed => {
                context.insert("reason".into(), json!("signup-closed"));
                (StatusCode::FORBIDDEN, 40305, "sign-up is closed".into())
            }
            ApiError::InvalidEmailToken { field, problem } => {
                let reason = match problem {
                    crate::model::EmailTokenProblem::Unknown => "invalid",
                    crate::model::EmailTokenProblem::Used => "used",
                    crate::model::EmailTokenProblem::Expired => "expired",
                };
                context.insert("field".into(), json!(field));
                context.insert("reason".into(), json!(reason));
                (
                    StatusCode::BAD_REQUEST,
                    40004,
                    Cow::Owned(format!("the token is {reason}")),
                )
            }
            ApiError::CaptchaRefused => {
                context.insert("reason".into(), json!("captcha"));
                (
                    StatusCode::BAD_REQUEST,
                    40005,
                    "the captcha check failed".into(),
                )
            }
            ApiError::CaptchaUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                50303,
                "the captcha verifier cannot be reached; retry shortly".into(),
            ),
            ApiError::InvalidProviderToken => (
                StatusCode::UNAUTHORIZED,
                40102,
                "the OAuth provider token is not valid".into(),
            ),
            ApiError::OAuthRefused => {
                context.insert("reason".into(), json!("refused"));
                (
                    StatusCode::FORBIDDEN,
                    40306,
                    crate::auth::oauth::OAUTH_REFUSAL_MESSAGE.into(),
                )
            }
            ApiError::OAuthEmailMismatch => {
                context.insert("reason".into(), json!("email-mismatch"));
                (
                    StatusCode::FORBIDDEN,
                    40306,
                    "the provider's email is not the email sent".into(),
                )
            }
            ApiError::ProviderUnreachable => (
                StatusCode::SERVICE_UNAVAILABLE,
                50304,
                "the OAuth provider cannot be reached; retry shortly".into(),
            ),
            ApiError::OAuthBrowserSignIn(problem) => {
                context.insert("reason".into(), json!(problem.name()));
                (
                    StatusCode::BAD_REQUEST,
                    40008,
                    "the sign-in with the provider cannot go on; start it again".into(),
                )
            }
            ApiError::TooManyRequests(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                42900,
                "too many failed attempts; retry later".into(),
            ),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                50300,
                "the server is busy; retry shortly".into(),
            ),
            ApiError::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                50301,
                "the server is shutting down".into(),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                50302,
                "the request took too long".into(),
            ),
            ApiError::StoreUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                50305,
                "the store cannot be reached; retry shortly".into(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                50000,
                "internal error".into(),
            ),
        };
        (status, code, message, context)
    }

    /// Seconds a client should wait, for the statuses that carry `Retry-After`.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded
            | ApiError::Draining
            | ApiError::Timeout
            | ApiError::StoreUnavailable(_)
            | ApiError::CaptchaUnavailable
            | ApiError::ProviderUnreachable => Some(1),
            ApiError::TooManyRequests(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::InvalidField { field, message } => ApiError::invalid_field(field, message),
            AuthError::PasswordLength {
                field,
                min_length,
                max_length,
            } => ApiError::PasswordLength {
                field,
                min_length,
                max_length,
            },
            AuthError::InvalidCredentials => ApiError::InvalidCredentials,
            AuthError::Unauthenticated | AuthError::CredentialsChanged => ApiError::Unauthenticated,
            AuthError::AccountPending => ApiError::AccountPending,
            AuthError::AccountSuspended => ApiError::AccountSuspended,
            AuthError::MissingPermission(permission) => ApiError::MissingPermission(permission),
            AuthError::WrongPassword { field } => ApiError::WrongPassword { field },
            AuthError::SecondFactorRequired(challenge) => ApiError::SecondFactorRequired {
                mfa_token: challenge.mfa_token,
                methods: challenge
                    .methods
                    .iter()
                    .map(|method| method.name())
                    .collect(),
            },
            AuthError::InvalidMfaToken => ApiError::InvalidMfaToken,
            AuthError::WrongSecondFactor { field } => ApiError::WrongSecondFactor { field },
            AuthError::RecentSignInRequired => ApiError::RecentSignInRequired,
            AuthError::OutlivesCredential => ApiError::OutlivesCredential,
            AuthError::PasskeysUnavailable(why) => ApiError::PasskeysUnavailable(why),
            AuthError::PasskeyChallenge(problem) => ApiError::PasskeyChallenge(problem),
            AuthError::PasskeyNotVerified(_) => ApiError::PasskeyNotVerified,
            AuthError::PasskeyRefused(_) => ApiError::PasskeyRefused,
            AuthError::NotFound => ApiError::NotFound,
            AuthError::Conflict(what) => ApiError::Conflict(what),
            AuthError::Overloaded => ApiError::Overloaded,
            AuthError::TooManyAttempts(seconds) => ApiError::TooManyRequests(seconds),
            AuthError::SignupClosed => ApiError::SignupClosed,
            AuthError::EmailToken { field, problem } => {
                ApiError::InvalidEmailToken { field, problem }
            }
            AuthError::CaptchaRefused => ApiError::CaptchaRefused,
            AuthError::CaptchaUnavailable => ApiError::CaptchaUnavailable,
            AuthError::InvalidProviderToken(_) => ApiError::InvalidProviderToken,
            AuthError::OAuthRefused(_) => ApiError::OAuthRefused,
            AuthError::OAuthEmailMismatch => ApiError::OAuthEmailMismatch,
            AuthError::ProviderUnreachable => ApiError::ProviderUnreachable,
            AuthError::OAuthBrowserSignIn(BrowserSignInProblem::NotOffered) => ApiError::NotFound,
            AuthError::OAuthBrowserSignIn(problem) => ApiError::OAuthBrowserSignIn(problem),
            AuthError::StoreUnavailable(error) => ApiError::StoreUnavailable(error.to_string()),
            AuthError::Store(error) => ApiError::Internal(error.to_string()),
            AuthError::Internal(message) => ApiError::Internal(message),
        }
    }
}
