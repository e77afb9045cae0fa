//! Standalone API tokens and minted tokens: what a credential may create or change never
//! exceeds its own effective set (API.md sections 4 and 6).

use crate::app::App;
use crate::auth::account::check_within;
use crate::auth::{
    AuthError, ClientInfo, Identity, generate_api_token, new_session, session_expire,
    sign_session_token, token_hash,
};
use crate::model::Secret;
use crate::model::{ApiToken, PermissionSet, Session, SessionKind, UnixSeconds};
use crate::store::NewSignIn;

/// Claims a caller may not set on a minted token: the token's own, and those a resource
/// server could take for facts about the user (API.md 15.12).
pub const RESERVED_CLAIMS: [&str; 16] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "sid",
    "permissions",
    "email",
    "role",
    "status",
    "username",
    "parent",
    "name",
    "user-id",
];
/// The largest claims object a minted token may carry, serialized.
pub const MAX_CLAIMS_BYTES: usize = 4096;
/// Expired tokens stay listable this long, then the purge removes them.
pub const EXPIRED_TOKEN_RETENTION_SECONDS: i64 = 30 * 24 * 3600;
/// The longest `ttl` accepted: 100 years is "practically never" without overflow.
const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// `ttl` seconds from now; 0 means never.
fn expiry_from_ttl(now: UnixSeconds, ttl: u64) -> Result<Option<UnixSeconds>, AuthError> {
    if ttl == 0 {
        return Ok(None);
    }
    if ttl > MAX_TTL_SECONDS {
        return Err(AuthError::InvalidField {
            field: "ttl",
            message: "must be at most 100 years in seconds",
        });
    }
    Ok(Some(now + i64::try_from(ttl).unwrap_or(i64::MAX)))
}

/// The expiry of something `identity` makes, asked to end at `wanted`: no later than the
/// making token itself (API.md 15.3). A sign-in session's makings keep `wanted`.
fn nested_expiry(identity: &Identity, wanted: Option<UnixSeconds>) -> Option<UnixSeconds> {
    match identity.expiry_bound() {
        Some(Some(bound)) => Some(wanted.map_or(bound, |wanted| wanted.min(bound))),
        Some(None) | None => wanted,
    }
}

/// The same for a minted session, whose `expire` is the first second it no longer works.
fn nested_session_expire(identity: &Identity, wanted: UnixSeconds) -> UnixSeconds {
    match identity.expiry_bound() {
        Some(Some(last_second)) => wanted.min(last_second + 1),
        Some(None) | None => wanted,
    }
}

/// Whether a token has expired. Times are whole seconds, so a token stays valid through its
/// `expires-at` second: a `ttl` of N gives at least N seconds, never less.
pub fn is_expired(api_token: &ApiToken, now: UnixSeconds) -> bool {
    api_token
        .expires_at
        .is_some_and(|expires_at| expires_at < now)
}

/// What `POST /auth/api-token` asks for.
#[derive(Debug, Default)]
pub struct NewApiToken {
    /// Absent: the creating credential's effective set.
    pub permissions: Option<PermissionSet>,
    pub restrictions: Option<PermissionSet>,
    pub ttl: u64,
}

/// Creates a standalone token; returns it with its full text, which is never shown again.
pub async fn create_api_token(
    app: &App,
    identity: &Identity,
    request: NewApiToken,
) -> Result<(ApiToken, Secret<String>), AuthError> {
    let permissions = request
        .permissions
        .unwrap_or(identity.effective_permissions);
    check_within(permissions, identity.effective_permissions)?;
    let now = app.clock.now_unix_seconds();
    let token = generate_api_token()?;
    let api_token = ApiToken {
        hash: token_hash(&token),
        prefix: token[..8].to_owned(),
        user_id: identity.user.id,
        session_id: None,
        permissions,
        restrictions: request.restrictions.unwrap_or_default(),
        created: now,
        updated: now,
        expires_at: nested_expiry(identity, expiry_from_ttl(now, request.ttl)?),
        made_by: identity.token_maker(),
    };
    let stored = api_token.clone();
    let limit = app.config.auth.max_api_tokens_per_user;
    let requester = identity.requester(now);
    app.store
        .insert_api_token_within_limit(&stored, limit, &requester)
        .await?;
    Ok((api_token, Secret::new(token)))
}

/// The caller's standalone tokens; expired ones only when asked for.
pub async fn list_api_tokens(
    app: &App,
    identity: &Identity,
    include_expired: bool,
) -> Result<Vec<ApiToken>, AuthError> {
    let now = app.clock.now_unix_seconds();
    Ok(app
        .store
        .standalone_api_tokens_of_user(identity.user.id)
        .await?
        .into_iter()
        .filter(|api_token| include_expired || !is_expired(api_token, now))
        .collect())
}

/// One of the caller's tokens by its full text or its first 8 characters. A prefix that
/// matches two tokens is a conflict, never a guess.
pub async fn find_api_token(
    app: &App,
    identity: &Identity,
    key: &str,
    include_expired: bool,
) -> Result<ApiToken, AuthError> {
    let candidates = list_api_tokens(app, identity, include_expired).await?;
    if key.len() == 64 {
        let hash = token_hash(key);
        return candidates
            .into_iter()
            .find(|api_token| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    &api_token.hash[..],
                    &hash[..],
                ))
            })
            .ok_or(AuthError::NotFound);
    }
    let mut matches = candidates
        .into_iter()
        .filter(|api_token| api_token.prefix == key);
    let found = matches.next().ok_or(AuthError::NotFound)?;
    if matches.next().is_some() {
        return Err(AuthError::Conflict(
            "the prefix matches more than one token; use the full token",
        ));
    }
    Ok(found)
}

/// What `PUT /auth/api-token/{token}` asks for.
#[derive(Debug, Default)]
pub struct ApiTokenChange {
    /// Restarts the lifetime from now (0: never expires).
    pub ttl: Option<u64>,
    pub permissions: Option<PermissionSet>,
    /// Replace the set with `permissions` instead of adding to it.
    pub reset_permissions: bool,
    pub restrictions: Option<PermissionSet>,
}

pub async fn update_api_token(
    app: &App,
    identity: &Identity,
    key: &str,
    change: ApiTokenChange,
) -> Result<ApiToken, AuthError> {
    let mut api_token = find_api_token(app, identity, key, true).await?;
    let now = app.clock.now_unix_seconds();
    if let Some(permissions) = change.permissions {
        check_within(permissions, identity.effective_permissions)?;
        api_token.permissions = if change.reset_permissions {
            permissions
        } else {
            api_token.permissions.union(permissions)
        };
    } else if change.reset_permissions {
        api_token.permissions = PermissionSet::empty();
    }
    if let Some(restrictions) = change.restrictions {
        api_token.restrictions = restrictions;
    }
    if let Some(ttl) = change.ttl {
        api_token.expires_at = expiry_from_ttl(now, ttl)?;
    }
    check_changed_token_within_caller(identity, &api_token)?;
    api_token.updated = now;
    let requester = identity.requester(now);
    app.store
        .replace_api_token(&api_token, &requester)
        .await?
        .ok_or(AuthError::NotFound)
}

/// API.md 15.2: what a changed token can do lies within the caller's effective set (so no
/// token lifts its own restrictions, nor a weaker credential arms a stronger token), and a
/// token as caller leaves the changed token expiring no later than itself.
fn check_changed_token_within_caller(
    identity: &Identity,
    changed: &ApiToken,
) -> Result<(), AuthError> {
    let owner = crate::auth::user_permissions(&identity.user, identity.parent.as_ref());
    let resulting = changed
        .permissions
        .difference(changed.restrictions)
        .intersection(owner);
    check_within(resulting, identity.effective_permissions)?;
    if let Some(bound) = identity.expiry_bound() {
        let outlives = match (changed.expires_at, bound) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(expires_at), Some(bound)) => expires_at > bound,
        };
        if outlives {
            return Err(AuthError::OutlivesCredential);
        }
    }
    Ok(())
}

pub async fn delete_api_token(app: &App, identity: &Identity, key: &str) -> Result<(), AuthError> {
    let api_token = find_api_token(app, identity, key, true).await?;
    let user_id = identity.user.id;
    let deleted = app
        .store
        .delete_api_token_of_user(user_id, &api_token.hash)
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(AuthError::NotFound)
    }
}

/// What `POST /auth/jwt` asks for.
#[derive(Debug, Default)]
pub struct MintRequest {
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub long_term_token: bool,
    /// Absent: the minting credential's effective set.
    pub permissions: Option<PermissionSet>,
}

/// Mints a signed token as a new session (listed and ended like any other) whose set is
/// the granted one, never more than the minting credential holds.
pub async fn mint_token(
    app: &App,
    identity: &Identity,
    request: MintRequest,
    client: &ClientInfo,
) -> Result<(Session, Secret<String>), AuthError> {
    // Compared without ASCII case: a verifier that reads claims loosely must not take a
    // caller's `Sub` or `ISS` for the real one.
    let reserved = |claim: &String| {
        RESERVED_CLAIMS
            .iter()
            .any(|name| claim.eq_ignore_ascii_case(name))
    };
    if request.claims.keys().any(reserved) {
        return Err(AuthError::InvalidField {
            field: "claims",
            message: "must not set a reserved claim (iss, sub, aud, exp, nbf, iat, jti, sid, permissions, email, role, status, username, parent, name, user-id)",
        });
    }
    let size = serde_json::to_vec(&request.claims).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_CLAIMS_BYTES {
        return Err(AuthError::InvalidField {
            field: "claims",
            message: "must be at most 4 KiB",
        });
    }
    let permissions = request
        .permissions
        .unwrap_or(identity.effective_permissions);
    check_within(permissions, identity.effective_permissions)?;
    let now = app.clock.now_unix_seconds();
    let wanted = session_expire(app, request.long_term_token, now);
    let expire = nested_session_expire(identity, wanted);
    let mut session = new_session(
        &identity.user,
        SessionKind::Minted,
        now,
        expire,
        client,
        permissions,
        None,
    );
    session.made_by = identity.token_maker();
    let token = sign_session_token(
        app,
        &identity.user,
        identity.parent.as_ref(),
        &session,
        request.claims,
    )?;
    let minted = NewSignIn {
        refuse_if_second_factor_held: false,
        session: session.clone(),
        requester: identity.requester(now),
        max_sessions_per_user: app.config.session.max_per_user,
        api_token: None,
        end_other_sessions: false,
        replacement_password_hash: None,
    };
    // A minting credential revoked meanwhile answers `Unauthenticated` (`From<StoreError>`).
    app.store.record_sign_in(&minted).await?;
    Ok((session, Secret::new(token)))
}
