//! Sign-in with an OAuth provider's token (`POST /auth/oauth-sign-in`): the policy. The
//! operator names the providers in `[[oauth.providers]]`; nothing about any provider is built
//! in. `provider.rs` verifies the token with its provider (`jwks.rs` holds an OIDC provider's
//! keys); this file decides whom it signs in.
//! - An `oidc` provider's token is an OpenID Connect ID token. Its signature is checked
//!   against the provider's JWKS (RS*, PS*, ES256, ES384, EdDSA; never `none`, never HMAC,
//!   and only an algorithm the key names or, when it names none, its key type allows), then
//!   `iss`, `aud`, `azp`, `exp`, `nbf` and `iat` with a small leeway. The JWKS is fetched
//!   (HTTPS, or HTTP on loopback), cached, and fetched again for an unknown `kid`, never more
//!   often than the refresh floor.
//! - A `userinfo` provider's token is an access token. RFC 7662 introspection proves it was
//!   issued to our client (unless the operator allows unbound tokens); the userinfo URL then
//!   names the account.
//!
//! Who the token signs in: a linked identity's user; else, for a verified email with
//! `link_by_verified_email`, the account with that email if it is an active `user` whose
//! own address is verified (never a root, admin or sub-user, nor a pending account); else a
//! new password-less account when sign-up is allowed and the email is verified (or the
//! provider allows unverified ones); else nobody (403). Every refusal that could depend on
//! whether an account has the address reads the same to the client; the reason is logged.
//! Sign-in attempts are throttled per client network: a refused or failed one drains the
//! network's bucket (the one failed passwords drain), and an empty bucket is a 429 before
//! any provider call.
//!
//! Only this module knows jsonwebtoken. Provider tokens and the client secret are never
//! logged.

use std::sync::Mutex;

use crate::app::App;
use crate::auth::oauth::provider::{Provider, ProviderAccount};
use crate::auth::rate_limit::LimitRefusal;
use crate::auth::second_factor::SecondFactorGate;
use crate::auth::sign_in_counts::{AttemptOutcome, SignInMethod};
use crate::auth::{
    AuthError, ClientInfo, SessionOpening, SignInOutcome, account, check_may_sign_in, open_session,
};
use crate::config::OAuthProviderConfig;
use crate::model::Secret;
use crate::model::email_address::EmailAddress;
use crate::model::second_factor::FirstFactor;
use crate::model::{NewUser, OAuthIdentity, Role, Status, User};
use crate::store::{IdentityLink, StoreError};

pub mod browser;
mod code_exchange;
pub mod jwks;
pub mod provider;

/// What every OAuth refusal says, whatever its reason (API.md 15.10).
pub const OAUTH_REFUSAL_MESSAGE: &str = "this provider account may not sign in here";

/// A token from a provider: a credential, so its type hides it from `Debug`.
#[derive(Clone, Debug)]
pub struct ProviderToken(Secret<String>);

impl ProviderToken {
    pub fn new(token: String) -> ProviderToken {
        ProviderToken(Secret::new(token))
    }

    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

#[derive(Debug)]
pub struct OAuthSignInRequest {
    pub provider: String,
    pub token: ProviderToken,
    /// The `email` the client claims; when given, the provider's email must be this one.
    pub expected_email: Option<String>,
    /// `check-auth`: verify and answer the verdict; create no session and no account.
    pub check_only: bool,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub client: ClientInfo,
}

#[derive(Debug)]
pub enum OAuthSignInOutcome {
    SignedIn {
        outcome: SignInOutcome,
        how: OAuthSignInKind,
    },
    Checked(OAuthCheck),
}

/// How an OAuth sign-in found its account, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthSignInKind {
    /// The identity was already linked.
    LinkedIdentity,
    /// The identity was linked now, to the account with the provider's verified email.
    LinkedByEmail,
    /// A new account was created for the identity.
    NewAccount,
}

impl OAuthSignInKind {
    pub fn name(self) -> &'static str {
        match self {
            OAuthSignInKind::LinkedIdentity => "linked-identity",
            OAuthSignInKind::LinkedByEmail => "linked-by-email",
            OAuthSignInKind::NewAccount => "new-account",
        }
    }
}

/// The verdict of `check-auth`: whether the token would sign someone in, and whom.
#[derive(Debug)]
pub struct OAuthCheck {
    pub ok: bool,
    pub message: String,
    /// The account it would sign in, when one exists already.
    pub user: Option<User>,
    /// The provider's email address, when it gave one.
    pub provider_email: Option<String>,
    pub linked_identities: Vec<OAuthIdentity>,
}

/// Who a verified provider account signs in as, decided from one look at the store.
pub(crate) enum Resolution {
    Linked(User),
    LinkByEmail(User),
    NewAccount(NewUser),
}

/// Whether this provider may create accounts: its own `allow_sign_up`, else `[signup] open`.
fn sign_up_allowed(app: &App, config: &OAuthProviderConfig) -> bool {
    config.allow_sign_up.unwrap_or(app.config.signup.open)
}

/// Whether an existing account may be linked to a provider account by their shared, verified
/// email: only an active `user` (never a root or admin, whose keys the provider would then
/// hold, nor a sub-user) that proved its own address. Checked again inside the linking
/// transaction. The refusal's reason is for the log.
fn may_link_by_email(user: &User) -> Result<(), &'static str> {
    match user.role {
        Role::Root | Role::Admin => return Err("privileged-account"),
        Role::Sub => return Err("sub-account"),
        Role::User => {}
    }
    if !user.email_verified {
        return Err("unverified-account");
    }
    match user.status {
        Status::Active => Ok(()),
        Status::Pending => Err("pending-account"),
        Status::Suspended => Err("suspended-account"),
    }
}

/// Who a verified provider account signs in as, from one look at the store. Every refusal is
/// `OAuthRefused`, which reads the same to the client whatever its reason.
pub(crate) async fn resolve(
    app: &App,
    provider: &Provider,
    account: &ProviderAccount,
) -> Result<Resolution, AuthError> {
    let config = &provider.config;
    if let Some(user) = app
        .store
        .user_of_identity(&config.name, &account.subject)
        .await?
    {
        return Ok(Resolution::Linked(user));
    }
    let Some(email) = &account.email else {
        return Err(AuthError::OAuthRefused("no-email"));
    };
    if let Some(user) = app
        .store
        .user_by_normalized_email(&email.normalized)
        .await?
    {
        if !account.email_verified {
            return Err(AuthError::OAuthRefused("unverified-email-taken"));
        }
        if !config.link_by_verified_email {
            return Err(AuthError::OAuthRefused("linking-off"));
        }
        may_link_by_email(&user).map_err(AuthError::OAuthRefused)?;
        return Ok(Resolution::LinkByEmail(user));
    }
    if !sign_up_allowed(app, config) {
        return Err(AuthError::OAuthRefused("signup-closed"));
    }
    if !account.email_verified && !config.allow_unverified_email_sign_up {
        return Err(AuthError::OAuthRefused("unverified-email"));
    }
    Ok(Resolution::NewAccount(NewUser {
        email_verified: account.email_verified,
        ..NewUser::new(email.clone(), Role::User, Status::Active)
    }))
}

/// `POST /auth/oauth-sign-in`: verifies the provider token, finds (or links, or creates) the
/// account, and opens a session like a password sign-in; with `check_only`, answers the
/// verdict instead and writes nothing. A client network whose bucket is empty gets
/// `TooManyAttempts` before anything else; a refused or failed attempt drains it.
pub async fn oauth_sign_in(
    app: &App,
    request: OAuthSignInRequest,
) -> Result<OAuthSignInOutcome, AuthError> {
    let network = request.client.network();
    throttled_attempt(app, &network, sign_in_or_check(app, request)).await
}

/// Runs one OAuth sign-in attempt of a client network: refused at once when the network's
/// bucket is empty, counted, and drained by a failure (`is_failed_attempt`).
pub(crate) async fn throttled_attempt(
    app: &App,
    network: &str,
    attempt: impl std::future::Future<Output = Result<OAuthSignInOutcome, AuthError>>,
) -> Result<OAuthSignInOutcome, AuthError> {
    app.throttle
        .check_network(network)
        .await
        .map_err(|refusal| {
            if let LimitRefusal::TooSoon(_) = refusal {
                app.sign_in_counts
                    .record(SignInMethod::OAuth, AttemptOutcome::Throttled);
            }
            AuthError::from(refusal)
        })?;
    let outcome = attempt.await;
    // A `check-auth` signs nobody in, so it is not counted as a sign-in.
    match &outcome {
        Ok(OAuthSignInOutcome::Checked(_)) => {}
        Ok(OAuthSignInOutcome::SignedIn { .. }) | Err(_) => {
            app.sign_in_counts
                .record_result(SignInMethod::OAuth, &outcome);
        }
    }
    if is_failed_attempt(&outcome) {
        app.throttle.record_network_failure(network).await?;
    }
    outcome
}

/// Whether an attempt counts against its network: every refusal the client caused (a bad
/// token, a refused account, bad input), and a `check-auth` that says no; not the server's or
/// the provider's trouble.
fn is_failed_attempt(outcome: &Result<OAuthSignInOutcome, AuthError>) -> bool {
    match outcome {
        Ok(OAuthSignInOutcome::SignedIn { .. }) => false,
        Ok(OAuthSignInOutcome::Checked(check)) => !check.ok,
        Err(error) => match error {
            AuthError::InvalidField { .. }
            | AuthError::PasswordLength { .. }
            | AuthError::InvalidCredentials
            | AuthError::Unauthenticated
            | AuthError::CredentialsChanged
            | AuthError::AccountPending
            | AuthError::AccountSuspended
            | AuthError::MissingPermission(_)
            | AuthError::WrongPassword { .. }
            | AuthError::InvalidMfaToken
            | AuthError::WrongSecondFactor { .. }
            | AuthError::RecentSignInRequired
            | AuthError::OutlivesCredential
            | AuthError::NotFound
            | AuthError::Conflict(_)
            | AuthError::SignupClosed
            | AuthError::EmailToken { .. }
            | AuthError::CaptchaRefused
            | AuthError::InvalidProviderToken(_)
            | AuthError::OAuthRefused(_)
            | AuthError::OAuthEmailMismatch
            | AuthError::OAuthBrowserSignIn(_)
            | AuthError::PasskeyChallenge(_)
            | AuthError::PasskeyNotVerified(_)
            | AuthError::PasskeyRefused(_) => true,
            // The provider token was good: the sign-in goes on to its second step.
            AuthError::SecondFactorRequired(_)
            | AuthError::PasskeysUnavailable(_)
            | AuthError::Overloaded
            | AuthError::TooManyAttempts(_)
            | AuthError::CaptchaUnavailable
            | AuthError::ProviderUnreachable
            | AuthError::StoreUnavailable(_)
            | AuthError::Store(_)
            | AuthError::Internal(_) => false,
        },
    }
}

async fn sign_in_or_check(
    app: &App,
    request: OAuthSignInRequest,
) -> Result<OAuthSignInOutcome, AuthError> {
    let Some(provider) = app.oauth.provider(&request.provider) else {
        return Err(AuthError::InvalidField {
            field: "provider",
            message: "names no configured OAuth provider",
        });
    };
    let verdict = verify_and_resolve(app, provider, &request).await;
    if request.check_only {
        return check_verdict(app, &request, verdict).await;
    }
    let (account, resolution) = verdict?;
    let opening = SignInRequestParts {
        long_term_token: request.long_term_token,
        logout_other: request.logout_other,
        client: request.client,
    };
    sign_in_resolved(app, provider, account, resolution, opening).await
}

/// What a sign-in's session is opened with, besides its account.
pub(crate) struct SignInRequestParts {
    pub(crate) long_term_token: bool,
    pub(crate) logout_other: bool,
    pub(crate) client: ClientInfo,
}

/// Signs a verified provider account in as `resolve` decided: links or creates the account
/// when it must (checking the rule again in the transaction that writes), then opens the
/// session like a password sign-in, with the second-factor gate.
pub(crate) async fn sign_in_resolved(
    app: &App,
    provider: &Provider,
    account: ProviderAccount,
    resolution: Resolution,
    request: SignInRequestParts,
) -> Result<OAuthSignInOutcome, AuthError> {
    let name = provider.config.name.as_str();
    let subject = account.subject.clone();
    let now = app.clock.now_unix_seconds();
    let (user, how) = match resolution {
        Resolution::Linked(user) => (user, OAuthSignInKind::LinkedIdentity),
        Resolution::LinkByEmail(user) => {
            let (provider_name, user_id) = (name.to_owned(), user.id);
            let expected_email = user.normalized_email.clone();
            // The account may have changed since `resolve` read it: the rule is checked again
            // in the transaction that links.
            let linked = app
                .store
                .link_identity(
                    &provider_name,
                    &subject,
                    user_id,
                    move |current| {
                        current.normalized_email == expected_email
                            && may_link_by_email(current).is_ok()
                    },
                    now,
                )
                .await?;
            match linked {
                IdentityLink::Linked(user) => (user, OAuthSignInKind::LinkedByEmail),
                IdentityLink::AlreadyLinked(user) => (user, OAuthSignInKind::LinkedIdentity),
                IdentityLink::Refused => {
                    return Err(AuthError::OAuthRefused("account-changed-during-sign-in"));
                }
            }
        }
        Resolution::NewAccount(new_user) => {
            let provider_name = name.to_owned();
            let created = match app
                .store
                .create_user_with_identity(&provider_name, &subject, new_user, now)
                .await
            {
                Err(StoreError::EmailTaken) => None,
                other => Some(other?),
            };
            match created {
                Some((user, true)) => (user, OAuthSignInKind::NewAccount),
                Some((user, false)) => (user, OAuthSignInKind::LinkedIdentity),
                // Answered like every other refusal: a conflict would say the address is taken.
                None => return Err(AuthError::OAuthRefused("email-taken-during-sign-in")),
            }
        }
    };
    if how != OAuthSignInKind::LinkedIdentity {
        let event = match how {
            OAuthSignInKind::NewAccount => "oauth-account-created",
            _ => "oauth-identity-linked",
        };
        tracing::info!(
            target: "latchkey::audit",
            event,
            user_id = user.id,
            provider = name,
            remote_ip = request.client.remote_ip,
        );
    }
    let parent = account::parent_of(app, &user).await?;
    let outcome = open_session(
        app,
        SessionOpening {
            user,
            parent,
            long_term_token: request.long_term_token,
            logout_other: request.logout_other,
            client: request.client,
            replacement_password_hash: None,
            second_factor: SecondFactorGate::FirstFactorOnly(FirstFactor::OAuth {
                provider: name.to_owned(),
            }),
        },
    )
    .await?;
    Ok(OAuthSignInOutcome::SignedIn { outcome, how })
}

async fn verify_and_resolve(
    app: &App,
    provider: &Provider,
    request: &OAuthSignInRequest,
) -> Result<(ProviderAccount, Resolution), AuthError> {
    let account = app
        .oauth
        .verify(provider, &request.token, &app.clock)
        .await?;
    if let Some(expected) = request
        .expected_email
        .as_deref()
        .filter(|text| !text.trim().is_empty())
    {
        let matches = match (EmailAddress::parse(expected), &account.email) {
            (Ok(expected), Some(email)) => expected.normalized == email.normalized,
            _ => false,
        };
        if !matches {
            return Err(AuthError::OAuthEmailMismatch);
        }
    }
    let resolution = resolve(app, provider, &account).await?;
    Ok((account, resolution))
}

/// The `check-auth` answer: a verdict about the token and the account, never a write. Bad
/// input and an unreachable provider stay errors; a token that would not sign in is `ok:
/// false`: with the token's problem when it does not verify, and otherwise with the one
/// message every refusal reads (the reason goes to the log).
async fn check_verdict(
    app: &App,
    request: &OAuthSignInRequest,
    verdict: Result<(ProviderAccount, Resolution), AuthError>,
) -> Result<OAuthSignInOutcome, AuthError> {
    let refused = |message: String| {
        Ok(OAuthSignInOutcome::Checked(OAuthCheck {
            ok: false,
            message,
            user: None,
            provider_email: None,
            linked_identities: Vec::new(),
        }))
    };
    let (account, resolution) = match verdict {
        Ok(verdict) => verdict,
        Err(error @ (AuthError::InvalidProviderToken(_) | AuthError::OAuthEmailMismatch)) => {
            return refused(error.to_string());
        }
        Err(AuthError::OAuthRefused(reason)) => {
            tracing::info!(
                target: "latchkey::audit",
                event = "oauth-check-refused",
                provider = request.provider,
                reason,
                remote_ip = request.client.remote_ip,
            );
            return refused(OAUTH_REFUSAL_MESSAGE.to_owned());
        }
        Err(error) => return Err(error),
    };
    let provider_email = account.email.as_ref().map(|email| email.as_given.clone());
    let (user, message) = match resolution {
        Resolution::Linked(user) => {
            let message = format!("the token signs in user {}", user.id);
            (Some(user), message)
        }
        Resolution::LinkByEmail(user) => {
            let message = format!(
                "the token would link this identity to user {} and sign it in",
                user.id
            );
            (Some(user), message)
        }
        Resolution::NewAccount(_) => (None, "the token would create a new account".to_owned()),
    };
    if let Some(user) = &user {
        let parent = account::parent_of(app, user).await?;
        if let Err(error) = check_may_sign_in(app, user, parent.as_ref()) {
            return refused(error.to_string());
        }
    }
    let linked_identities = match &user {
        Some(user) => app.store.identities_of_user(user.id).await?,
        None => Vec::new(),
    };
    Ok(OAuthSignInOutcome::Checked(OAuthCheck {
        ok: true,
        message,
        user,
        provider_email,
        linked_identities,
    }))
}

/// A poisoned lock here guards a cache that every write replaces whole, so its value is
/// still one that was complete: it is used.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linking_by_email_reaches_only_an_active_verified_plain_user() {
        let user = |role: Role, status: Status, email_verified: bool| User {
            id: 7,
            email: "ada@example.com".to_owned(),
            normalized_email: "ada@example.com".to_owned(),
            password_hash: None,
            role,
            status,
            parent_id: (role == Role::Sub).then_some(1),
            first_name: None,
            last_name: None,
            permissions: role.default_permissions(),
            created: 0,
            updated: 0,
            email_verified,
            credential_version: 0,
        };
        assert_eq!(
            may_link_by_email(&user(Role::User, Status::Active, true)),
            Ok(())
        );
        for (refused, reason) in [
            (
                user(Role::User, Status::Active, false),
                "unverified-account",
            ),
            (
                user(Role::User, Status::Pending, false),
                "unverified-account",
            ),
            (user(Role::User, Status::Pending, true), "pending-account"),
            (
                user(Role::User, Status::Suspended, true),
                "suspended-account",
            ),
            (user(Role::Sub, Status::Active, true), "sub-account"),
            (
                user(Role::Admin, Status::Active, true),
                "privileged-account",
            ),
            (user(Role::Root, Status::Active, true), "privileged-account"),
        ] {
            assert_eq!(may_link_by_email(&refused), Err(reason), "{refused:?}");
        }
    }

    #[test]
    fn provider_tokens_never_print() {
        let token = ProviderToken::new("eyJhbGciOi.secret".to_owned());
        assert_eq!(format!("{token:?}"), "ProviderToken(***)");
    }
}
