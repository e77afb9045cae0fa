//! Use cases on sessions, passwords and users: listing and ending sessions, signing out,
//! changing passwords, creating sub-users, reading and changing profiles, deleting an
//! account, with the reach rules of API.md section 6.

use crate::app::App;
use crate::auth::password::{NewPassword, Password};
use crate::auth::{AuthError, ClientInfo, CredentialKind, Identity, throttled_recheck};
use crate::model::email_address::EmailAddress;
use crate::model::{
    NewUser, OAuthIdentity, PASSWORD_MAX_CHARACTERS, Permission, PermissionSet, Role, Session,
    SessionId, Status, User, UserId,
};
use crate::store::SessionsToEnd;

const NAME_MAX_CHARACTERS: usize = 255;

/// Whether `caller` may read or change `target`: its own sub-users, and for root and admin
/// every user of strictly lower rank. Never itself (it has its own routes), never a root.
pub fn can_reach(caller: &User, target: &User) -> bool {
    if target.id == caller.id {
        return false;
    }
    if target.parent_id == Some(caller.id) {
        return true;
    }
    match caller.role {
        Role::Root | Role::Admin => target.role < caller.role,
        Role::User | Role::Sub => false,
    }
}

/// A reachable user by id, or `NotFound` (also for users the caller may not see).
pub async fn reachable_user(app: &App, identity: &Identity, id: UserId) -> Result<User, AuthError> {
    app.store
        .user_by_id(id)
        .await?
        .filter(|target| can_reach(&identity.user, target))
        .ok_or(AuthError::NotFound)
}

/// The parent of a user, if it has one.
pub async fn parent_of(app: &App, user: &User) -> Result<Option<User>, AuthError> {
    match user.parent_id {
        Some(parent_id) => Ok(app.store.user_by_id(parent_id).await?),
        None => Ok(None),
    }
}

pub async fn list_sessions(app: &App, identity: &Identity) -> Result<Vec<Session>, AuthError> {
    Ok(app
        .store
        .live_sessions_of_user(identity.user.id, app.clock.now_unix_seconds())
        .await?)
}

pub async fn get_session(
    app: &App,
    identity: &Identity,
    id: SessionId,
) -> Result<Session, AuthError> {
    app.store
        .session(id)
        .await?
        .filter(|session| {
            session.user_id == identity.user.id && session.expire > app.clock.now_unix_seconds()
        })
        .ok_or(AuthError::NotFound)
}

/// `DELETE /auth/session/{id}`. Its own session any credential may end; another one only a
/// sign-in session or `write:user`, since ending them one by one is ending them all
/// (API.md 15.1).
pub async fn end_session(app: &App, identity: &Identity, id: SessionId) -> Result<(), AuthError> {
    check_may_end_other_sessions(identity, Some(id) == identity.session_id)?;
    let user_id = identity.user.id;
    let ended = app.store.end_session_of_user(user_id, id).await?;
    if ended {
        Ok(())
    } else {
        Err(AuthError::NotFound)
    }
}

/// Ending sessions other than the credential's own is a sign-in session's act, or needs
/// `write:user`, like `DELETE /auth/session` (API.md 15.1).
fn check_may_end_other_sessions(identity: &Identity, only_its_own: bool) -> Result<(), AuthError> {
    if only_its_own
        || identity.is_sign_in_session()
        || identity
            .effective_permissions
            .contains(Permission::WriteUser)
    {
        Ok(())
    } else {
        Err(AuthError::MissingPermission(Permission::WriteUser))
    }
}

pub async fn end_all_sessions(app: &App, identity: &Identity) -> Result<(), AuthError> {
    let user_id = identity.user.id;
    app.store.end_all_sessions_of_user(user_id).await?;
    Ok(())
}

/// Ends every session of the user except the credential's own ("end all others" on the
/// account page), under the same rule as ending them all. A credential without a session
/// (a standalone API token) keeps none, so it ends them all.
pub async fn end_other_sessions(app: &App, identity: &Identity) -> Result<(), AuthError> {
    check_may_end_other_sessions(identity, false)?;
    let Some(kept) = identity.session_id else {
        return end_all_sessions(app, identity).await;
    };
    let user_id = identity.user.id;
    app.store.end_other_sessions_of_user(user_id, kept).await?;
    Ok(())
}

/// The OAuth identities linked to the caller's account, as sign-in answers list them.
pub async fn linked_identities(
    app: &App,
    identity: &Identity,
) -> Result<Vec<OAuthIdentity>, AuthError> {
    Ok(app.store.identities_of_user(identity.user.id).await?)
}

/// Ends the credential's session, or with `logout_all` every session of the user. A
/// standalone API token has no session: it may only sign out everything.
pub async fn sign_out(app: &App, identity: &Identity, logout_all: bool) -> Result<(), AuthError> {
    if logout_all {
        check_may_end_other_sessions(identity, false)?;
        return end_all_sessions(app, identity).await;
    }
    match (identity.kind, identity.session_id) {
        (CredentialKind::StandaloneApiToken, _) | (_, None) => Err(AuthError::InvalidField {
            field: "logout-all",
            message: "must be true when signing out with a standalone API token",
        }),
        (_, Some(session_id)) => {
            let user_id = identity.user.id;
            app.store.end_session_of_user(user_id, session_id).await?;
            Ok(())
        }
    }
}

/// Verifies the caller's own password (re-authentication) under the brute-force throttle;
/// a wrong one is `WrongPassword` (blaming `old-password`).
pub async fn verify_own_password(
    app: &App,
    user: &User,
    password: &Password,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    if password.expose_secret().chars().count() > PASSWORD_MAX_CHARACTERS {
        return Err(AuthError::WrongPassword {
            field: "old-password",
        });
    }
    let (verification, _) = throttled_recheck(
        app,
        &user.normalized_email,
        client,
        password.clone(),
        user.password_hash.clone(),
    )
    .await?;
    if verification.matches {
        Ok(())
    } else {
        Err(AuthError::WrongPassword {
            field: "old-password",
        })
    }
}

/// `PUT /auth/current/password` with a credential. `logout_all` ends every other session
/// and every standalone API token.
pub async fn change_own_password(
    app: &App,
    identity: &Identity,
    old_password: Password,
    new_password: Password,
    logout_all: bool,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    verify_own_password(app, &identity.user, &old_password, client).await?;
    let new_password = NewPassword::parse(
        app,
        new_password,
        "new-password",
        &identity.user.normalized_email,
        Some(&old_password),
    )?;
    let hash = app.hashers.hash(new_password.into_password()).await?;
    let sessions_to_end = match (logout_all, identity.session_id) {
        (false, _) => SessionsToEnd::None,
        (true, Some(current)) => SessionsToEnd::AllExcept(current),
        (true, None) => SessionsToEnd::All,
    };
    let user_id = identity.user.id;
    let now = app.clock.now_unix_seconds();
    let requester = identity.requester(now);
    app.store
        .change_password(
            Some(&requester),
            user_id,
            &hash,
            sessions_to_end,
            logout_all,
            now,
        )
        .await?;
    Ok(())
}

/// `PUT /auth/{user-id}/password`: the caller re-authenticates with its own password.
/// `logout_all` ends the target's sessions and its standalone API tokens (API.md 15.8).
pub async fn change_user_password(
    app: &App,
    identity: &Identity,
    target_id: UserId,
    caller_password: Password,
    new_password: Password,
    logout_all: bool,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let target = reachable_user(app, identity, target_id).await?;
    verify_own_password(app, &identity.user, &caller_password, client).await?;
    let new_password = NewPassword::parse(
        app,
        new_password,
        "new-password",
        &target.normalized_email,
        None,
    )?;
    let hash = app.hashers.hash(new_password.into_password()).await?;
    let sessions_to_end = if logout_all {
        SessionsToEnd::All
    } else {
        SessionsToEnd::None
    };
    let now = app.clock.now_unix_seconds();
    let requester = identity.requester(now);
    app.store
        .change_password(
            Some(&requester),
            target.id,
            &hash,
            sessions_to_end,
            logout_all,
            now,
        )
        .await?;
    Ok(())
}

/// What `POST /user` asks for.
#[derive(Debug)]
pub struct NewSubUser {
    pub email: String,
    pub password: Password,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub permissions: Option<PermissionSet>,
}

/// The caller creates a sub-user: role `sub`, parent the caller, active. A sub-user never
/// creates users, and the new set must lie within the caller's effective set.
pub async fn create_sub_user(
    app: &App,
    identity: &Identity,
    request: NewSubUser,
) -> Result<User, AuthError> {
    if identity.user.role == Role::Sub {
        return Err(AuthError::MissingPermission(Permission::WriteSubUser));
    }
    let permissions = request
        .permissions
        .unwrap_or_else(|| Role::Sub.default_permissions());
    check_within(permissions, identity.effective_permissions)?;
    let email = EmailAddress::parse(&request.email)?;
    let password = NewPassword::parse(app, request.password, "password", &email.normalized, None)?;
    let first_name = checked_name("first-name", request.first_name)?;
    let last_name = checked_name("last-name", request.last_name)?;
    // Each creation that gets this far answers whether the address is taken: a caller may
    // ask only so often (API.md 15.10), and a refused request costs no hash.
    app.sub_user_limiter
        .take(&identity.user.id.to_string())
        .await?;
    let hash = app.hashers.hash(password.into_password()).await?;
    let new_user = NewUser {
        password_hash: Some(hash),
        parent_id: Some(identity.user.id),
        first_name,
        last_name,
        permissions,
        // The parent typed the address in; nobody has proved it (API.md 15.4).
        email_verified: false,
        ..NewUser::new(email, Role::Sub, Status::Active)
    };
    let now = app.clock.now_unix_seconds();
    let requester = identity.requester(now);
    Ok(app.store.insert_sub_user(new_user, now, &requester).await?)
}

/// Everything a request grants must lie within the E of the credential making it.
pub fn check_within(requested: PermissionSet, limit: PermissionSet) -> Result<(), AuthError> {
    match requested.first_outside(limit) {
        Some(permission) => Err(AuthError::MissingPermission(permission)),
        None => Ok(()),
    }
}

/// The one rule for a first or last name, on every route that stores one (API.md section 15,
/// rule 16): at most 255 characters, no control characters.
pub fn checked_name(
    field: &'static str,
    name: Option<String>,
) -> Result<Option<String>, AuthError> {
    let Some(name) = name else {
        return Ok(None);
    };
    if name.chars().count() > NAME_MAX_CHARACTERS || name.chars().any(is_refused_in_a_name) {
        return Err(AuthError::InvalidField {
            field,
            message: "must be at most 255 characters, without control, line-breaking or text-direction characters",
        });
    }
    Ok(Some(name))
}

/// Control characters, the line and paragraph separators, and the bidirectional embedding,
/// override and isolate controls, which can make a name shown in a list or a mail read as
/// something else. The zero-width joiner and non-joiner stay: scripts need them.
pub fn is_refused_in_a_name(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// Profile changes: names (absent: unchanged), and for other users a replacement set.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub permissions: Option<PermissionSet>,
}

/// `PUT /user/current`: only the names.
pub async fn update_own_profile(
    app: &App,
    identity: &Identity,
    change: ProfileChange,
) -> Result<User, AuthError> {
    apply_profile_change(app, identity, identity.user.id, change).await
}

/// `PUT /user/{user-id}`: names and permissions of a reachable user.
pub async fn update_user_profile(
    app: &App,
    identity: &Identity,
    target_id: UserId,
    change: ProfileChange,
) -> Result<User, AuthError> {
    reachable_user(app, identity, target_id).await?;
    if let Some(permissions) = change.permissions {
        check_within(permissions, identity.effective_permissions)?;
    }
    apply_profile_change(app, identity, target_id, change).await
}

async fn apply_profile_change(
    app: &App,
    identity: &Identity,
    user_id: UserId,
    change: ProfileChange,
) -> Result<User, AuthError> {
    let first_name = checked_name("first-name", change.first_name)?;
    let last_name = checked_name("last-name", change.last_name)?;
    let permissions = change.permissions;
    let now = app.clock.now_unix_seconds();
    let requester = identity.requester(now);
    let updated = app
        .store
        .update_user_for(Some(&requester), user_id, now, move |user| {
            if first_name.is_some() {
                user.first_name = first_name;
            }
            if last_name.is_some() {
                user.last_name = last_name;
            }
            if let Some(permissions) = permissions {
                user.permissions = permissions;
            }
        })
        .await?;
    updated.ok_or(AuthError::NotFound)
}

/// `DELETE /user/current`: the user, its sub-users, and all their sessions and tokens.
pub async fn delete_own_account(app: &App, identity: &Identity) -> Result<(), AuthError> {
    let user_id = identity.user.id;
    app.store.delete_user_tree(user_id).await?;
    Ok(())
}

/// Filters of `GET /user`.
#[derive(Debug, Default)]
pub struct UserFilter {
    pub statuses: Vec<Status>,
    pub parent_id: Option<UserId>,
    pub email: Option<String>,
    pub email_contains: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSortField {
    Id,
    Username,
    Email,
    Status,
    Created,
    Updated,
}

/// `GET /user`: the users the caller may read (never itself), filtered, sorted and paged.
/// Returns one page and the number of matches.
pub async fn list_users(
    app: &App,
    identity: &Identity,
    filter: &UserFilter,
    sort: (UserSortField, bool),
    page: usize,
    limit: usize,
) -> Result<(Vec<User>, usize), AuthError> {
    let candidates = match identity.user.role {
        Role::Root | Role::Admin => app.store.all_users().await?,
        Role::User | Role::Sub => app.store.children_of(identity.user.id).await?,
    };
    let email = filter
        .email
        .as_ref()
        .map(|email| EmailAddress::lookup_key(email));
    let contains = filter
        .email_contains
        .as_ref()
        // Keys fold only ASCII letters; so does the search text.
        .map(|text| text.to_ascii_lowercase());
    let mut matches: Vec<User> = candidates
        .into_iter()
        .filter(|user| can_reach(&identity.user, user))
        .filter(|user| filter.statuses.is_empty() || filter.statuses.contains(&user.status))
        .filter(|user| filter.parent_id.is_none() || user.parent_id == filter.parent_id)
        .filter(|user| {
            email
                .as_ref()
                .is_none_or(|email| &user.normalized_email == email)
        })
        .filter(|user| {
            contains
                .as_ref()
                .is_none_or(|text| user.normalized_email.contains(text.as_str()))
        })
        .collect();
    let (field, descending) = sort;
    matches.sort_by(|left, right| {
        let order = match field {
            UserSortField::Id => left.id.cmp(&right.id),
            UserSortField::Username => left.normalized_email.cmp(&right.normalized_email),
            UserSortField::Email => left.email.cmp(&right.email),
            UserSortField::Status => left.status.name().cmp(right.status.name()),
            UserSortField::Created => left.created.cmp(&right.created),
            UserSortField::Updated => left.updated.cmp(&right.updated),
        }
        .then(left.id.cmp(&right.id));
        if descending { order.reverse() } else { order }
    });
    let total = matches.len();
    let page_of_users = matches
        .into_iter()
        .skip(page.saturating_sub(1).saturating_mul(limit))
        .take(limit)
        .collect();
    Ok((page_of_users, total))
}
