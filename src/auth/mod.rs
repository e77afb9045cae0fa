//! The domain: use cases as functions over `&App`. Nothing here knows HTTP or a database;
//! the store's async functions run the storage, password work runs on the hasher pool.

pub mod account;
pub mod after_answer;
pub mod api_tokens;
pub mod captcha;
pub mod client;
pub mod error;
pub mod forward_auth;
pub mod maintenance;
pub mod oauth;
pub mod passkeys;
pub mod password;
pub mod rate_limit;
pub mod return_url;
pub mod second_factor;
pub mod sign_in_counts;
pub mod signed_token;
pub mod signing_keys;
pub mod signup;

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::auth::rate_limit::ThrottlePassed;
use crate::auth::second_factor::SecondFactorGate;
use crate::auth::second_factor::mfa_token::HalfDoneSignIn;
use crate::auth::sign_in_counts::SignInMethod;
use crate::auth::signed_token::{TokenClaims, TokenError};
use crate::model::Secret;
use crate::model::email_address::EmailAddress;
use crate::model::second_factor::{FirstFactor, SecondFactorSummary};
use crate::model::{
    ApiToken, PASSWORD_MAX_CHARACTERS, PermissionSet, Session, SessionId, SessionKind, Status,
    TokenMaker, UnixSeconds, User,
};
pub use crate::store::AlsoRead;
use crate::store::{NewSignIn, Requester, RequesterCredential, StoreError};
use password::Password;

pub use error::AuthError;

/// A fresh API token: 32 random bytes as 64 lowercase hex characters.
pub fn generate_api_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| AuthError::Internal(error.to_string()))?;
    Ok(base16ct::lower::encode_string(&bytes))
}

/// The SHA-256 of a bearer token's text: all the store keeps of an API token or an emailed
/// token (a leaked store hands out no credential), and the verified-token cache's key.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// When a session made at `now` ends: `[session] long_term_seconds` after it when the client
/// asked for a long-term token, else `short_term_seconds`. Sign-in and minting share it.
pub fn session_expire(app: &App, long_term_token: bool, now: UnixSeconds) -> UnixSeconds {
    let lifetime = if long_term_token {
        app.config.session.long_term_seconds
    } else {
        app.config.session.short_term_seconds
    };
    now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX))
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
            Ok(address) => rate_limit::client_network(address),
            Err(_) => self.remote_ip.clone(),
        }
    }
}

/// Verifies a password for `email` under the brute-force throttle: a refused check costs no
/// hashing; a failure drains the buckets. A success forgets nothing by itself: only a
/// session opened (`sign_in`, the second step) clears the (account, network) history, with
/// the `ThrottlePassed` answered here, so that a right password between wrong TOTP codes, at
/// a sign-in's first step or on a route that checks the password again, does not wipe their
/// count.
pub async fn throttled_recheck(
    app: &App,
    email: &str,
    client: &ClientInfo,
    password: Password,
    stored: Option<crate::model::PasswordHashString>,
) -> Result<(password::Verification, ThrottlePassed), AuthError> {
    let passed = app.throttle.check(email, &client.network()).await?;
    let verification = verify_under_throttle(app, email, client, password, stored).await?;
    Ok((verification, passed))
}

/// `throttled_recheck`'s hash and failure count, after a check that passed.
async fn verify_under_throttle(
    app: &App,
    email: &str,
    client: &ClientInfo,
    password: Password,
    stored: Option<crate::model::PasswordHashString>,
) -> Result<password::Verification, AuthError> {
    let verification = app.hashers.verify(password, stored).await?;
    if !verification.matches {
        app.throttle
            .record_failed_attempt(email, &client.network())
            .await?;
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
    pub api_token: Secret<String>,
    pub signed_token: Secret<String>,
    /// The account's OAuth identities, for `oauth-provider-tokens`.
    pub linked_identities: Vec<crate::model::OAuthIdentity>,
}

/// Email and password sign-in. Unknown email and wrong password cost the same and answer
/// the same; the account's status is looked at only once the password has verified.
pub async fn sign_in(app: &App, request: SignInRequest) -> Result<SignInOutcome, AuthError> {
    let result = sign_in_with_password(app, request).await;
    app.sign_in_counts
        .record_result(SignInMethod::Password, &result);
    result
}

async fn sign_in_with_password(
    app: &App,
    request: SignInRequest,
) -> Result<SignInOutcome, AuthError> {
    if request.password.expose_secret().chars().count() > PASSWORD_MAX_CHARACTERS {
        return Err(AuthError::InvalidField {
            field: "password",
            message: "must be at most 72 characters",
        });
    }
    let email = EmailAddress::parse(&request.email)?;
    let network = request.client.network();
    // The account and the throttle's buckets are read side by side (on PostgreSQL, two
    // statements in flight at once); a refused check discards the account unread.
    let (user, throttle_passed) = tokio::try_join!(
        async {
            app.store
                .user_by_normalized_email(&email.normalized)
                .await
                .map_err(AuthError::from)
        },
        async {
            app.throttle
                .check(&email.normalized, &network)
                .await
                .map_err(AuthError::from)
        },
    )?;
    let stored_hash = user.as_ref().and_then(|user| user.password_hash.clone());
    let verification = verify_under_throttle(
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
    let parent = account::parent_of(app, &user).await?;
    // `open_session` checks again; checking first means a refused account costs no re-hash.
    check_may_sign_in(app, &user, parent.as_ref())?;
    let replacement_password_hash = if verification.needs_rehash {
        Some(app.hashers.hash(request.password).await?)
    } else {
        None
    };
    let opened = open_session(
        app,
        SessionOpening {
            user,
            parent,
            long_term_token: request.long_term_token,
            logout_other: request.logout_other,
            client: request.client,
            replacement_password_hash,
            second_factor: SecondFactorGate::FirstFactorOnly(FirstFactor::Password),
        },
    )
    .await;
    // Only a session clears the history: a first step that answered with an mfa-token
    // forgives none of the wrong codes that came before it.
    if opened.is_ok() {
        app.throttle
            .record_success(&email.normalized, &network, throttle_passed)
            .await;
    }
    opened
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
    /// A first factor alone, or a completed second step.
    pub second_factor: SecondFactorGate,
}

/// The shared end of every sign-in: checks the account's status and its second factor,
/// creates the session and its bound API token, signs the token, and commits them (with
/// `logout-other`, any re-hash, and the spending of a second step's mfa-token and proof) in
/// one durable transaction before answering. A first factor alone, for a user who holds a
/// second factor, opens nothing and answers `SecondFactorRequired`.
pub async fn open_session(app: &App, opening: SessionOpening) -> Result<SignInOutcome, AuthError> {
    let SessionOpening {
        user,
        parent,
        long_term_token,
        logout_other,
        client,
        replacement_password_hash,
        second_factor,
    } = opening;
    check_may_sign_in(app, &user, parent.as_ref())?;
    // A first factor alone is refused by the store, inside the write, if the user holds a
    // second factor by then; the refusal becomes the challenge below.
    let (first_factor_only, second_step) = match second_factor {
        SecondFactorGate::FirstFactorOnly(first_factor) => (Some(first_factor), None),
        SecondFactorGate::Completed {
            mfa_token_hash,
            proof,
        } => (None, Some((mfa_token_hash, proof))),
        SecondFactorGate::PasskeyWithUserVerification => (None, None),
    };
    let now = app.clock.now_unix_seconds();
    let expire = session_expire(app, long_term_token, now);
    let api_token = generate_api_token()?;
    let session = new_session(
        &user,
        SessionKind::SignIn,
        now,
        expire,
        &client,
        PermissionSet::empty(),
        Some(token_hash(&api_token)),
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
        replacement_password_hash: replacement_password_hash.clone(),
        refuse_if_second_factor_held: first_factor_only.is_some(),
    };
    // A password change or suspension that committed after the check above wins: the
    // sign-in answers as if the password had been wrong (at a second step: as if its
    // mfa-token had expired).
    let recorded = match second_step {
        Some((mfa_token_hash, proof)) => {
            app.store
                .record_sign_in_with_second_factor(&sign_in, &mfa_token_hash, proof)
                .await
        }
        None => app.store.record_sign_in(&sign_in).await,
    };
    let linked_identities = match (recorded, first_factor_only) {
        (Ok(linked_identities), _) => linked_identities,
        (Err(StoreError::SecondFactorHeld(held)), Some(first_factor)) => {
            let half_done = HalfDoneSignIn {
                user: &user,
                first_factor,
                long_term_token,
                logout_other,
                client: &client,
                replacement_password_hash,
            };
            return Err(second_factor::challenge(app, half_done, held).await);
        }
        (Err(error), _) => {
            return Err(match (AuthError::from(error), second_step) {
                (AuthError::CredentialsChanged, Some(_)) => AuthError::InvalidMfaToken,
                (AuthError::CredentialsChanged, None) => AuthError::InvalidCredentials,
                (other, _) => other,
            });
        }
    };
    Ok(SignInOutcome {
        user,
        session,
        api_token: Secret::new(api_token),
        signed_token: Secret::new(signed_token),
        linked_identities,
    })
}

/// A pending or suspended account (or one whose parent is suspended) may not sign in.
pub(crate) fn check_may_sign_in(
    app: &App,
    user: &User,
    parent: Option<&User>,
) -> Result<(), AuthError> {
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
        hash: token_hash(api_token),
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
    SignedToken(Secret<&'a str>),
    ApiToken(Secret<&'a str>),
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
    /// The user's second factors, when the check was asked to read them with the
    /// credential (`AlsoRead::SecondFactorSummary`).
    pub second_factors: Option<SecondFactorSummary>,
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
/// every time (revocation shows on the very next request, on every node); signature checks
/// are cached by the complete token text, and `exp` is checked on every hit. A token naming
/// a key the ring lacks reloads the ring first (`App::reload_key_ring_for_unknown_key`).
///
/// `also` names what the same read fetches for the route besides (a profile's second
/// factors), so the route needs no second read.
pub async fn authenticate(
    app: &App,
    credential: PresentedCredential<'_>,
    also: AlsoRead,
) -> Result<Identity, AuthError> {
    let now = app.clock.now_unix_seconds();
    match credential {
        PresentedCredential::SignedToken(token) => {
            let token = *token.expose_secret();
            let verify = || app.key_ring().verify(token, &app.issuer, now);
            let verified = match app.token_cache.get_or_verify(token, verify) {
                // A key made since the ring was read (on another node, or by the CLI):
                // read it again, at most once a second, and check once more.
                Err(TokenError::UnknownKey) if app.reload_key_ring_for_unknown_key().await => {
                    app.token_cache.get_or_verify(token, verify)?
                }
                other => other?,
            };
            if verified.expires_at <= now {
                return Err(AuthError::Unauthenticated);
            }
            let context = app
                .store
                .session_context(verified.session_id, also)
                .await?
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
                second_factors: context.second_factors,
                user: context.user,
                parent: context.parent,
            })
        }
        PresentedCredential::ApiToken(token) => {
            let token = *token.expose_secret();
            if !looks_like_api_token(token) {
                return Err(AuthError::Unauthenticated);
            }
            let context = app
                .store
                .api_token_context(&token_hash(token), also)
                .await?
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
                second_factors: context.second_factors,
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

#[cfg(test)]
mod tests {
    use crate::auth::account::can_reach;
    use crate::model::{PermissionSet, Role, Status, User, UserId};

    const CALLER_ID: UserId = 10;
    const TARGET_ID: UserId = 20;
    const SOMEONE_ELSE_ID: UserId = 30;

    /// Who the target is to the caller.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Relation {
        /// The caller itself (it has its own routes).
        Itself,
        /// A sub-user the caller made: its parent is the caller.
        OwnSubUser,
        /// A sub-user of someone else.
        AnothersSubUser,
        /// A user with no parent.
        TopLevelUser,
    }

    use Relation::{AnothersSubUser, Itself, OwnSubUser, TopLevelUser};
    use Role::{Admin, Root, Sub};

    /// Caller role, relation, target role, and whether the caller reaches the target. Sub-users
    /// are made as `sub`, but `user role` can give one any role, so every role is listed.
    #[rustfmt::skip]
    const REACH_TABLE: &[(Role, Relation, Role, bool)] = &[
        (Root,       Itself,          Root,       false),
        (Root,       OwnSubUser,      Root,       true),
        (Root,       OwnSubUser,      Admin,      true),
        (Root,       OwnSubUser,      Role::User, true),
        (Root,       OwnSubUser,      Sub,        true),
        (Root,       AnothersSubUser, Root,       false),
        (Root,       AnothersSubUser, Admin,      true),
        (Root,       AnothersSubUser, Role::User, true),
        (Root,       AnothersSubUser, Sub,        true),
        (Root,       TopLevelUser,    Root,       false),
        (Root,       TopLevelUser,    Admin,      true),
        (Root,       TopLevelUser,    Role::User, true),
        (Root,       TopLevelUser,    Sub,        true),
        (Admin,      Itself,          Admin,      false),
        (Admin,      OwnSubUser,      Root,       true),
        (Admin,      OwnSubUser,      Admin,      true),
        (Admin,      OwnSubUser,      Role::User, true),
        (Admin,      OwnSubUser,      Sub,        true),
        (Admin,      AnothersSubUser, Root,       false),
        (Admin,      AnothersSubUser, Admin,      false),
        (Admin,      AnothersSubUser, Role::User, true),
        (Admin,      AnothersSubUser, Sub,        true),
        (Admin,      TopLevelUser,    Root,       false),
        (Admin,      TopLevelUser,    Admin,      false),
        (Admin,      TopLevelUser,    Role::User, true),
        (Admin,      TopLevelUser,    Sub,        true),
        (Role::User, Itself,          Role::User, false),
        (Role::User, OwnSubUser,      Root,       true),
        (Role::User, OwnSubUser,      Admin,      true),
        (Role::User, OwnSubUser,      Role::User, true),
        (Role::User, OwnSubUser,      Sub,        true),
        (Role::User, AnothersSubUser, Root,       false),
        (Role::User, AnothersSubUser, Admin,      false),
        (Role::User, AnothersSubUser, Role::User, false),
        (Role::User, AnothersSubUser, Sub,        false),
        (Role::User, TopLevelUser,    Root,       false),
        (Role::User, TopLevelUser,    Admin,      false),
        (Role::User, TopLevelUser,    Role::User, false),
        (Role::User, TopLevelUser,    Sub,        false),
        (Sub,        Itself,          Sub,        false),
        (Sub,        OwnSubUser,      Root,       true),
        (Sub,        OwnSubUser,      Admin,      true),
        (Sub,        OwnSubUser,      Role::User, true),
        (Sub,        OwnSubUser,      Sub,        true),
        (Sub,        AnothersSubUser, Root,       false),
        (Sub,        AnothersSubUser, Admin,      false),
        (Sub,        AnothersSubUser, Role::User, false),
        (Sub,        AnothersSubUser, Sub,        false),
        (Sub,        TopLevelUser,    Root,       false),
        (Sub,        TopLevelUser,    Admin,      false),
        (Sub,        TopLevelUser,    Role::User, false),
        (Sub,        TopLevelUser,    Sub,        false),
    ];

    fn user(id: UserId, role: Role, parent_id: Option<UserId>) -> User {
        User {
            id,
            email: format!("user{id}@example.com"),
            normalized_email: format!("user{id}@example.com"),
            password_hash: None,
            role,
            status: Status::Active,
            parent_id,
            first_name: None,
            last_name: None,
            permissions: PermissionSet::all(),
            created: 0,
            updated: 0,
            email_verified: true,
            credential_version: 0,
        }
    }

    /// Builds the caller (with a parent when it is a sub-user) and the target the row
    /// describes, and asks `can_reach`.
    fn check_reach(caller_role: Role, relation: Relation, target_role: Role, expected: bool) {
        let caller_parent = (caller_role == Sub).then_some(SOMEONE_ELSE_ID);
        let caller = user(CALLER_ID, caller_role, caller_parent);
        let target = match relation {
            Itself => caller.clone(),
            OwnSubUser => user(TARGET_ID, target_role, Some(CALLER_ID)),
            AnothersSubUser => user(TARGET_ID, target_role, Some(SOMEONE_ELSE_ID)),
            TopLevelUser => user(TARGET_ID, target_role, None),
        };
        assert_eq!(
            can_reach(&caller, &target),
            expected,
            "a {caller_role:?} reaching {relation:?} of role {target_role:?}"
        );
    }

    #[test]
    fn every_caller_rank_reaches_every_kind_of_target_as_the_table_says() {
        for (caller_role, relation, target_role, expected) in REACH_TABLE {
            check_reach(*caller_role, *relation, *target_role, *expected);
        }
        // Every combination has exactly one row (itself only with its own role).
        for caller_role in Role::ALL {
            for relation in [Itself, OwnSubUser, AnothersSubUser, TopLevelUser] {
                for target_role in Role::ALL {
                    let rows = REACH_TABLE
                        .iter()
                        .filter(|(row_caller, row_relation, row_target, _)| {
                            (*row_caller, *row_relation, *row_target)
                                == (caller_role, relation, target_role)
                        })
                        .count();
                    let expected_rows =
                        usize::from(relation != Itself || target_role == caller_role);
                    assert_eq!(
                        rows, expected_rows,
                        "{caller_role:?} {relation:?} {target_role:?}"
                    );
                }
            }
        }
    }
}
