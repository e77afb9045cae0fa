//! The domain: use cases as functions over `&App`. Nothing here knows HTTP or redb; store
//! writes run off the async runtime through `store_write`, password work on the hasher pool.

pub mod account;
pub mod after_answer;
pub mod api_tokens;
pub mod captcha;
pub mod client;
pub mod email;
pub mod error;
pub mod oauth;
pub mod password;
pub mod return_url;
pub mod signup;
pub mod throttle;
pub mod token;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::model::{
    ApiToken, PermissionSet, Session, SessionId, SessionKind, Status, TokenMaker, UnixSeconds,
    User, now_unix_seconds,
};
use crate::store::{NewSignIn, Requester, RequesterCredential, Store, StoreError};
use email::EmailAddress;
use password::Password;
use token::TokenClaims;

pub use error::AuthError;

/// The vendor's upper bound on a password, in Unicode characters.
pub const PASSWORD_MAX_CHARACTERS: usize = 72;

/// The length check of every password being set (sign-up, a new sub-user, a change, a
/// reset): `[password] min_length` to 72 characters. A refusal says the range.
pub fn check_new_password_length(
    field: &'static str,
    password: &Password,
    min_length: usize,
) -> Result<(), AuthError> {
    let length = password.expose().chars().count();
    if length < min_length || length > PASSWORD_MAX_CHARACTERS {
        return Err(AuthError::PasswordLength {
            field,
            min_length,
            max_length: PASSWORD_MAX_CHARACTERS,
        });
    }
    Ok(())
}

/// Runs a store write on the blocking pool so that its fsync never stalls the runtime.
pub async fn store_write<T, F>(store: &Store, write: F) -> Result<T, AuthError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || write(&store))
        .await
        .map_err(|error| AuthError::Internal(error.to_string()))?
        .map_err(AuthError::from)
}

/// A fresh API token: 32 random bytes as 64 lowercase hex characters.
pub fn generate_api_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| AuthError::Internal(error.to_string()))?;
    Ok(crate::hex::hex_encode(&bytes))
}

pub fn api_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a string has the shape of an API token (64 lowercase hex characters).
pub fn looks_like_api_token(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Who the client is, as a session records it.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub remote_ip: String,
    pub user_agent: String,
}

impl ClientInfo {
    /// The network the throttle counts this client in (IPv4 address, IPv6 /64).
    pub fn network(&self) -> String {
        match self.remote_ip.parse() {
            Ok(address) => throttle::client_network(address),
            Err(_) => self.remote_ip.clone(),
        }
    }
}

/// Verifies a password for `email` under the brute-force throttle: a refused check costs no
/// hashing; a failure drains the buckets, a success clears this network's history.
pub async fn throttled_verify(
    app: &App,
    email: &str,
    client: &ClientInfo,
    password: Password,
    stored: Option<crate::model::PasswordHashString>,
) -> Result<password::Verification, AuthError> {
    let network = client.network();
    app.throttle
        .check(email, &network, app.throttle.now())
        .map_err(|retry| AuthError::TooManyAttempts(retry.0))?;
    let verification = app.hashers.verify(password, stored).await?;
    if verification.matches {
        app.throttle.record_success(email, &network);
    } else {
        app.throttle
            .record_failure(email, &network, app.throttle.now());
    }
    Ok(verification)
}

#[derive(Debug)]
pub struct SignInRequest {
    pub email: String,
    pub password: Password,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub client: ClientInfo,
}

#[derive(Debug)]
pub struct SignInOutcome {
    pub user: User,
    pub session: Session,
    pub api_token: String,
    pub signed_token: String,
    /// The account's OAuth identities, for `oauth-provider-tokens`.
    pub linked_identities: Vec<crate::model::OAuthIdentity>,
}

/// Email and password sign-in. Unknown email and wrong password cost the same and answer
/// the same; the account's status is looked at only once the password has verified.
pub async fn sign_in(app: &App, request: SignInRequest) -> Result<SignInOutcome, AuthError> {
    if request.password.expose().chars().count() > PASSWORD_MAX_CHARACTERS {
        return Err(AuthError::InvalidField {
            field: "password",
            message: "must be at most 72 characters",
        });
    }
    let email = EmailAddress::parse_field(&request.email)?;
    let user = app.store.user_by_normalized_email(&email.normalized)?;
    let stored_hash = user.as_ref().and_then(|user| user.password_hash.clone());
    let verification = throttled_verify(
        app,
        &email.normalized,
        &request.client,
        request.password.clone(),
        stored_hash,
    )
    .await?;
    let Some(user) = user.filter(|_| verification.matches) else {
        return Err(AuthError::InvalidCredentials);
    };
    let parent = account::parent_of(app, &user)?;
    // `open_session` checks again; checking first means a refused account costs no re-hash.
    check_may_sign_in(app, &user, parent.as_ref())?;
    let replacement_password_hash = if verification.needs_rehash {
        Some(app.hashers.hash(request.password).await?)
    } else {
        None
    };
    open_session(
        app,
        SessionOpening {
            user,
            parent,
            long_term_token: request.long_term_token,
            logout_other: request.logout_other,
            client: request.client,
            replacement_password_hash,
        },
    )
    .await
}

/// A user who has proved who they are (password or OAuth), about to get a session.
#[derive(Debug)]
pub struct SessionOpening {
    pub user: User,
    pub parent: Option<User>,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub client: ClientInfo,
    /// A re-hash of the password under the configured cost, written with the session.
    pub replacement_password_hash: Option<crate::model::PasswordHashString>,
}

/// The shared end of every sign-in: checks the account's status, creates the session and
/// its bound API token, signs the token, and commits them (with `logout-other` and any
/// re-hash) in one durable transaction before answering.
pub async fn open_session(app: &App, opening: SessionOpening) -> Result<SignInOutcome, AuthError> {
    let SessionOpening {
        user,
        parent,
        long_term_token,
        logout_other,
        client,
        replacement_password_hash,
    } = opening;
    check_may_sign_in(app, &user, parent.as_ref())?;
    let now = now_unix_seconds();
    let lifetime = if long_term_token {
        app.config.session.long_term_seconds
    } else {
        app.config.session.short_term_seconds
    };
    let expire = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
    let api_token = generate_api_token()?;
    let session = new_session(
        &user,
        SessionKind::SignIn,
        now,
        expire,
        &client,
        PermissionSet::empty(),
        Some(api_token_hash(&api_token)),
    );
    let bound_api_token = session_api_token(&session, &api_token);
    let signed_token = sign_session_token(
        app,
        &user,
        parent.as_ref(),
        &session,
        serde_json::Map::new(),
    )?;
    let sign_in = NewSignIn {
        session: session.clone(),
        requester: Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now,
        },
        max_sessions_per_user: app.config.session.max_per_user,
        api_token: Some(bound_api_token),
        end_other_sessions: logout_other,
        replacement_password_hash,
    };
    // A password change or suspension that committed after the check above wins: the
    // sign-in answers as if the password had been wrong.
    store_write(&app.store, move |store| store.record_sign_in(&sign_in))
        .await
        .map_err(|error| match error {
            AuthError::Store(StoreError::CredentialsChanged) => AuthError::InvalidCredentials,
            other => other,
        })?;
    let linked_identities = app.store.identities_of_user(user.id)?;
    Ok(SignInOutcome {
        user,
        session,
        api_token,
        signed_token,
        linked_identities,
    })
}

/// A pending or suspended account (or one whose parent is suspended) may not sign in.
fn check_may_sign_in(app: &App, user: &User, parent: Option<&User>) -> Result<(), AuthError> {
    if user.status == Status::Suspended
        || parent.is_some_and(|parent| parent.status == Status::Suspended)
    {
        return Err(AuthError::AccountSuspended);
    }
    if user.status == Status::Pending && !app.config.signup.allow_unverified_sign_in {
        return Err(AuthError::AccountPending);
    }
    Ok(())
}

pub fn new_session(
    user: &User,
    kind: SessionKind,
    now: UnixSeconds,
    expire: UnixSeconds,
    client: &ClientInfo,
    granted_permissions: PermissionSet,
    api_token_hash: Option<[u8; 32]>,
) -> Session {
    Session {
        id: SessionId::new_for_user(user.id),
        user_id: user.id,
        kind,
        created: now,
        expire,
        remote_ip: client.remote_ip.clone(),
        user_agent: client.user_agent.chars().take(512).collect(),
        ua_type: client::ua_type(&client.user_agent),
        granted_permissions,
        api_token_hash,
        made_by: None,
    }
}

/// The API token a sign-in hands out: bound to its session, expiring with it (public for the
/// benchmark's seeding).
pub fn session_api_token(session: &Session, api_token: &str) -> ApiToken {
    ApiToken {
        hash: api_token_hash(api_token),
        prefix: api_token.chars().take(8).collect(),
        user_id: session.user_id,
        session_id: Some(session.id),
        permissions: PermissionSet::empty(),
        restrictions: PermissionSet::empty(),
        created: session.created,
        updated: session.created,
        expires_at: Some(session.expire),
        made_by: None,
    }
}

pub fn sign_session_token(
    app: &App,
    user: &User,
    parent: Option<&User>,
    session: &Session,
    extra_claims: serde_json::Map<String, serde_json::Value>,
) -> Result<String, AuthError> {
    let claims = session_token_claims(&app.issuer, user, parent, session, extra_claims);
    Ok(app.key_ring().sign(&claims)?)
}

/// The claims of a session's signed token; public so that the benchmark seeds tokens exactly
/// as a sign-in makes them.
pub fn session_token_claims(
    issuer: &str,
    user: &User,
    parent: Option<&User>,
    session: &Session,
    extra_claims: serde_json::Map<String, serde_json::Value>,
) -> TokenClaims {
    TokenClaims {
        issuer: issuer.to_owned(),
        user_id: user.id,
        session_id: session.id,
        issued_at: session.created,
        expires_at: session.expire,
        permissions: session_permissions(session, user, parent),
        extra_claims,
    }
}

/// The set a user may use now: its own, and for a sub-user only what its parent still holds.
pub fn user_permissions(user: &User, parent: Option<&User>) -> PermissionSet {
    match parent {
        Some(parent) => user.permissions.intersection(parent.permissions),
        None => user.permissions,
    }
}

fn session_permissions(session: &Session, user: &User, parent: Option<&User>) -> PermissionSet {
    let owner = user_permissions(user, parent);
    match session.kind {
        SessionKind::SignIn => owner,
        SessionKind::Minted => session.granted_permissions.intersection(owner),
    }
}

/// A credential as presented, before it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresentedCredential<'a> {
    SignedToken(&'a str),
    ApiToken(&'a str),
}

/// How the caller authenticated; some routes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A signed token (header, query or cookie) of a sign-in or minted session.
    SessionToken(SessionKind),
    /// The API token a sign-in handed out, bound to its session.
    SessionApiToken,
    /// A standalone API token from `POST /auth/api-token`.
    StandaloneApiToken,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: User,
    pub parent: Option<User>,
    pub session_id: Option<SessionId>,
    pub api_token_hash: Option<[u8; 32]>,
    pub kind: CredentialKind,
    pub effective_permissions: PermissionSet,
    /// When the credential itself stops working: its session's or API token's expiry
    /// (`None`: an API token that never expires).
    pub credential_expires_at: Option<UnixSeconds>,
}

impl Identity {
    /// Whether the credential is a session made by signing in: its signed token, cookie or
    /// bound api-token. A minted token is not one (API.md 15.1).
    pub fn is_sign_in_session(&self) -> bool {
        matches!(
            self.kind,
            CredentialKind::SessionToken(SessionKind::SignIn) | CredentialKind::SessionApiToken
        )
    }

    /// The token that whatever this credential makes must nest under (API.md 15.3): a
    /// standalone API token or a minted token. What a sign-in session makes stands alone.
    pub fn token_maker(&self) -> Option<TokenMaker> {
        match (self.kind, self.api_token_hash, self.session_id) {
            (CredentialKind::StandaloneApiToken, Some(hash), _) => Some(TokenMaker::ApiToken(hash)),
            (CredentialKind::SessionToken(SessionKind::Minted), _, Some(session_id)) => {
                Some(TokenMaker::MintedSession(session_id))
            }
            _ => None,
        }
    }

    /// The credential as the store checks it again inside the write it asks for.
    pub fn requester(&self, now: UnixSeconds) -> Requester {
        let credential = match (self.session_id, self.api_token_hash) {
            (Some(session_id), _) => Some(RequesterCredential::Session(session_id)),
            (None, Some(hash)) => Some(RequesterCredential::ApiToken(hash)),
            (None, None) => None,
        };
        Requester {
            user_id: self.user.id,
            credential_version: self.user.credential_version,
            credential,
            now,
        }
    }

    /// The last second this credential works, when it is a token (`token_maker`): what it
    /// makes or changes must not work past it. `Some(None)`: a token that never expires;
    /// `None`: no such bound (a sign-in session's makings stand alone). A session works
    /// while `expire > now`, an API token while `expires_at >= now`, so a session's last
    /// second is `expire - 1`.
    pub fn expiry_bound(&self) -> Option<Option<UnixSeconds>> {
        let last_second = match self.kind {
            CredentialKind::StandaloneApiToken => self.credential_expires_at,
            _ => self.credential_expires_at.map(|expire| expire - 1),
        };
        self.token_maker().map(|_| last_second)
    }
}

/// Turns a presented credential into an identity, or `Unauthenticated`. Reads the store
/// every time (revocation shows on the very next request); signature checks are cached by
/// the complete token text, and `exp` is checked on every hit.
pub fn authenticate(app: &App, credential: PresentedCredential<'_>) -> Result<Identity, AuthError> {
    let now = now_unix_seconds();
    match credential {
        PresentedCredential::SignedToken(token) => {
            let verified = app
                .token_cache
                .get_or_verify(token, || app.key_ring().verify(token, &app.issuer, now))?;
            if verified.expires_at <= now {
                return Err(AuthError::Unauthenticated);
            }
            let context = app
                .store
                .session_context(verified.session_id)?
                .ok_or(AuthError::Unauthenticated)?;
            if context.session.user_id != verified.user_id || context.session.expire <= now {
                return Err(AuthError::Unauthenticated);
            }
            check_credential_holder(app, &context.user, context.parent.as_ref())?;
            Ok(Identity {
                effective_permissions: session_permissions(
                    &context.session,
                    &context.user,
                    context.parent.as_ref(),
                ),
                kind: CredentialKind::SessionToken(context.session.kind),
                credential_expires_at: Some(context.session.expire),
                session_id: Some(context.session.id),
                api_token_hash: None,
                user: context.user,
                parent: context.parent,
            })
        }
        PresentedCredential::ApiToken(token) => {
            if !looks_like_api_token(token) {
                return Err(AuthError::Unauthenticated);
            }
            let context = app
                .store
                .api_token_context(&api_token_hash(token))?
                .ok_or(AuthError::Unauthenticated)?;
            let api_token = &context.api_token;
            if api_tokens::is_expired(api_token, now) {
                return Err(AuthError::Unauthenticated);
            }
            check_credential_holder(app, &context.user, context.parent.as_ref())?;
            let owner = user_permissions(&context.user, context.parent.as_ref());
            let (kind, effective_permissions, session_id, credential_expires_at) =
                match &context.session {
                    Some(session) => {
                        if session.expire <= now {
                            return Err(AuthError::Unauthenticated);
                        }
                        (
                            CredentialKind::SessionApiToken,
                            session_permissions(session, &context.user, context.parent.as_ref()),
                            Some(session.id),
                            Some(session.expire),
                        )
                    }
                    None => (
                        CredentialKind::StandaloneApiToken,
                        api_token
                            .permissions
                            .difference(api_token.restrictions)
                            .intersection(owner),
                        None,
                        api_token.expires_at,
                    ),
                };
            Ok(Identity {
                kind,
                effective_permissions,
                session_id,
                credential_expires_at,
                api_token_hash: Some(api_token.hash),
                user: context.user,
                parent: context.parent,
            })
        }
    }
}

/// A suspended user (or a sub-user of a suspended parent) holds no valid credential; nor
/// does a pending one unless unverified sign-in is allowed.
fn check_credential_holder(app: &App, user: &User, parent: Option<&User>) -> Result<(), AuthError> {
    check_may_sign_in(app, user, parent).map_err(|_| AuthError::Unauthenticated)
}

/// Rows deleted per purge transaction: small enough that a sign-in never waits long for the
/// write lock behind a purge.
pub const PURGE_BATCH_ROWS: usize = 1_000;

/// How often the maintenance loop looks for sign-ups to purge: their lifetime is counted in
/// days, and finding them reads every user.
const UNPROVED_SIGN_UP_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Now and then, until the process ends: deletes expired sessions and API tokens expired
/// more than 30 days ago, in small transactions, and drops signing keys that can no longer
/// have a live token (rotating them when `[keys] rotate_every` says so). Hourly, it also
/// deletes the sign-ups never verified within `[signup] pending_lifetime_days`.
pub async fn purge_expired_sessions_forever(app: std::sync::Arc<App>) {
    let interval = std::time::Duration::from_secs(app.config.session.purge_interval_seconds);
    let mut last_sign_up_purge: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(interval).await;
        if last_sign_up_purge.is_none_or(|last| last.elapsed() >= UNPROVED_SIGN_UP_PURGE_INTERVAL) {
            last_sign_up_purge = Some(tokio::time::Instant::now());
            match signup::purge_unproved_sign_ups(&app, now_unix_seconds()).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "purged sign-ups never verified"),
                Err(error) => tracing::warn!(%error, "sign-up purge failed"),
            }
        }
        let maintained = Arc::clone(&app);
        match tokio::task::spawn_blocking(move || maintained.maintain_signing_keys()).await {
            Ok(Ok(dropped)) if !dropped.is_empty() => {
                tracing::info!(?dropped, "dropped retired signing keys")
            }
            Ok(Err(error)) => tracing::warn!(%error, "signing-key maintenance failed"),
            _ => {}
        }
        loop {
            let now = now_unix_seconds();
            let purged = store_write(&app.store, move |store| {
                let sessions = store.purge_expired_sessions(now, PURGE_BATCH_ROWS)?;
                let tokens = store.purge_api_tokens_expired_before(
                    now - api_tokens::EXPIRED_TOKEN_RETENTION_SECONDS,
                    PURGE_BATCH_ROWS,
                )?;
                // Used and expired emailed tokens stay a day, so a late click is told "expired".
                let email_tokens =
                    store.purge_email_tokens_expired_before(now - 24 * 3600, PURGE_BATCH_ROWS)?;
                Ok(sessions.max(tokens).max(email_tokens))
            })
            .await;
            match purged {
                Ok(count) if count == PURGE_BATCH_ROWS => tokio::task::yield_now().await,
                Ok(count) => {
                    if count > 0 {
                        tracing::debug!(count, "purged expired sessions");
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "session purge failed");
                    break;
                }
            }
        }
    }
}
