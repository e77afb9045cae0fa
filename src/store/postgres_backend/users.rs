//! Users and the user tree on PostgreSQL, as `redb_backend/users.rs`: making, reading,
//! changing and deleting accounts (with all they hold), and password changes, each public
//! function one transaction.

use deadpool_postgres::GenericClient;

use crate::model::{
    EmailTokenPurpose, NewUser, PasswordHashString, Role, Status, UnixSeconds, User, UserId,
};
use crate::store::postgres_backend::api_tokens::delete_standalone_api_tokens;
use crate::store::postgres_backend::rows::{
    USER_COLUMNS, hash_from_sql, next_user_id, session_id_from_sql, user_from_row, user_id_to_sql,
    write_user,
};
use crate::store::postgres_backend::second_factors::delete_second_factors_of_user;
use crate::store::postgres_backend::sessions::{delete_sessions, session_ids_of_user};
use crate::store::postgres_backend::token_makers::delete_with_what_they_made;
use crate::store::postgres_backend::{PostgresStore, begin_write, check_requester};
use crate::store::stored_name::StoredName;
use crate::store::{Requester, SessionsToEnd, StoreError};

impl PostgresStore {
    /// A sub-user made on a request's behalf: `requester` (its parent's credential) is
    /// checked again inside the transaction, so a sub-user made while its parent's
    /// credential was revoked, or its password changed, is not made.
    pub async fn insert_sub_user(
        &self,
        new_user: NewUser,
        now: UnixSeconds,
        requester: &Requester,
    ) -> Result<User, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        let user = insert_user(&transaction, new_user, now).await?;
        transaction.commit().await?;
        Ok(user)
    }

    pub async fn insert_user(
        &self,
        new_user: NewUser,
        now: UnixSeconds,
    ) -> Result<User, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let user = insert_user(&transaction, new_user, now).await?;
        transaction.commit().await?;
        Ok(user)
    }

    /// Inserts many users in one transaction (bulk seeding: benchmarks and imports); stops
    /// at the first taken email, writing nothing.
    pub async fn insert_users(
        &self,
        new_users: Vec<NewUser>,
        now: UnixSeconds,
    ) -> Result<Vec<User>, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let mut users = Vec::with_capacity(new_users.len());
        for new_user in new_users {
            users.push(insert_user(&transaction, new_user, now).await?);
        }
        transaction.commit().await?;
        Ok(users)
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let client = self.connection().await?;
        read_user(&client, id).await
    }

    pub async fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE normalized_email = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&email])
            .await?
            .map(|row| user_from_row(&row, 0))
            .transpose()
    }

    /// Every user, in id order (the admin CLI's listing).
    pub async fn all_users(&self) -> Result<Vec<User>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(|row| user_from_row(row, 0))
            .collect()
    }

    /// The user's sub-users, in id order.
    pub async fn children_of(&self, parent_id: UserId) -> Result<Vec<User>, StoreError> {
        let client = self.connection().await?;
        children_of_user(&client, parent_id).await
    }

    /// Writes a changed user record whole (a new user if its id is unknown).
    pub async fn replace_user(&self, user: &User) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        write_user(&transaction, user).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Changes a user through `change`, refusing (with `LastActiveRoot`) a change that would
    /// leave no active root. A suspension ends the user's unused reset links.
    pub async fn update_user(
        &self,
        id: UserId,
        now: UnixSeconds,
        change: impl FnOnce(&mut User) + Send,
    ) -> Result<Option<User>, StoreError> {
        self.update_user_for(None, id, now, change).await
    }

    /// `update_user` on a request's behalf: `requester` is checked again inside the
    /// transaction. A suspension or a new password raises the credential version and ends
    /// the user's unused reset links.
    pub async fn update_user_for(
        &self,
        requester: Option<&Requester>,
        id: UserId,
        now: UnixSeconds,
        change: impl FnOnce(&mut User) + Send,
    ) -> Result<Option<User>, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        if let Some(requester) = requester {
            check_requester(&transaction, requester).await?;
        }
        let Some(mut user) = read_user(&transaction, id).await? else {
            return Ok(None);
        };
        let was_active_root = is_active_root(&user);
        let was_suspended = user.status == Status::Suspended;
        let password_before = user.password_hash.clone();
        change(&mut user);
        user.updated = now;
        if (!was_suspended && user.status == Status::Suspended)
            || user.password_hash != password_before
        {
            user.credential_version += 1;
            void_reset_links(&transaction, id).await?;
        }
        if was_active_root && !is_active_root(&user) && count_active_roots(&transaction).await? <= 1
        {
            return Err(StoreError::LastActiveRoot);
        }
        write_user(&transaction, &user).await?;
        transaction.commit().await?;
        Ok(Some(user))
    }

    /// Sets a password hash and ends sessions (and standalone API tokens) in one transaction.
    ///
    /// `requester` (absent for the operator's CLI) is checked again inside the transaction,
    /// so a change that a reset, a suspension or a revocation overtook writes nothing. The
    /// user's unused reset links end, unless the account is a pending sign-up (whose links
    /// belong to its other attempts).
    pub async fn change_password(
        &self,
        requester: Option<&Requester>,
        user_id: UserId,
        hash: &PasswordHashString,
        sessions_to_end: SessionsToEnd,
        end_standalone_api_tokens: bool,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        if let Some(requester) = requester {
            check_requester(&transaction, requester).await?;
        }
        let pending = read_user(&transaction, user_id)
            .await?
            .is_some_and(|user| user.status == Status::Pending);
        if !pending {
            void_reset_links(&transaction, user_id).await?;
        }
        set_password_hash(&transaction, user_id, hash, Some(now)).await?;
        let kept = match sessions_to_end {
            SessionsToEnd::None => None,
            SessionsToEnd::All => Some(None),
            SessionsToEnd::AllExcept(kept) => Some(Some(kept)),
        };
        if let Some(kept) = kept {
            let mut ids = session_ids_of_user(&transaction, user_id).await?;
            ids.retain(|id| Some(*id) != kept);
            delete_sessions(&transaction, &ids).await?;
        }
        if end_standalone_api_tokens {
            delete_standalone_api_tokens(&transaction, user_id).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes the user, its sub-users, and all they hold, in one transaction. Refuses to
    /// delete the last active root.
    pub async fn delete_user_tree(&self, id: UserId) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let Some(user) = read_user(&transaction, id).await? else {
            return Ok(false);
        };
        if is_active_root(&user) && count_active_roots(&transaction).await? <= 1 {
            return Err(StoreError::LastActiveRoot);
        }
        let mut doomed: Vec<UserId> = children_of_user(&transaction, id)
            .await?
            .iter()
            .map(|child| child.id)
            .collect();
        doomed.push(id);
        delete_users(&transaction, &doomed).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// Inserts a user inside a write transaction, assigning the next id; `EmailTaken` if the
/// normalized email is in use, `CredentialsChanged` if its parent is gone.
pub(super) async fn insert_user(
    client: &impl GenericClient,
    new_user: NewUser,
    now: UnixSeconds,
) -> Result<User, StoreError> {
    let taken = client
        .prepare_cached("SELECT 1 FROM users WHERE normalized_email = $1")
        .await?;
    if client
        .query_opt(&taken, &[&new_user.normalized_email])
        .await?
        .is_some()
    {
        return Err(StoreError::EmailTaken);
    }
    // A sub-user's parent deleted while the request was on its way: no orphan is made.
    if let Some(parent_id) = new_user.parent_id
        && read_user(client, parent_id).await?.is_none()
    {
        return Err(StoreError::CredentialsChanged);
    }
    let user = User {
        id: next_user_id(client).await?,
        email: new_user.email,
        normalized_email: new_user.normalized_email,
        password_hash: new_user.password_hash,
        role: new_user.role,
        status: new_user.status,
        parent_id: new_user.parent_id,
        first_name: new_user.first_name,
        last_name: new_user.last_name,
        permissions: new_user.permissions,
        created: now,
        updated: now,
        email_verified: new_user.email_verified,
        credential_version: 0,
    };
    write_user(client, &user).await?;
    Ok(user)
}

/// A user by id.
pub(super) async fn read_user(
    client: &impl GenericClient,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .await?;
    client
        .query_opt(&statement, &[&user_id_to_sql(id)?])
        .await?
        .map(|row| user_from_row(&row, 0))
        .transpose()
}

/// The user's sub-users, in id order.
pub(super) async fn children_of_user(
    client: &impl GenericClient,
    parent_id: UserId,
) -> Result<Vec<User>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE parent_id = $1 ORDER BY id"
        ))
        .await?;
    client
        .query(&statement, &[&user_id_to_sql(parent_id)?])
        .await?
        .iter()
        .map(|row| user_from_row(row, 0))
        .collect()
}

/// Sets a user's password hash inside a write transaction; a missing user is left alone.
/// With `now`, a new password: `updated` is set and the credential version rises. Without,
/// a re-hash of the same password under new costs, which changes nothing a sign-in verified.
pub(super) async fn set_password_hash(
    client: &impl GenericClient,
    user_id: UserId,
    hash: &PasswordHashString,
    now: Option<UnixSeconds>,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE users SET password_hash = $2, updated = COALESCE($3, updated), \
             credential_version = credential_version \
                 + CASE WHEN $3::bigint IS NULL THEN 0 ELSE 1 END \
             WHERE id = $1",
        )
        .await?;
    client
        .execute(
            &statement,
            &[&user_id_to_sql(user_id)?, &hash.expose_secret(), &now],
        )
        .await?;
    Ok(())
}

/// Deletes these users with everything that refers to them: their sessions and API tokens
/// (with what those made), identities, emailed links, second factors and passkeys. Their
/// sub-users are the caller's to list, in `ids` too: a parent goes in the same statement as
/// its children, or after them.
pub(super) async fn delete_users(
    client: &impl GenericClient,
    ids: &[UserId],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql_ids = ids
        .iter()
        .map(|id| user_id_to_sql(*id))
        .collect::<Result<Vec<i64>, _>>()?;
    // Every session (its bound token goes with it) and every token, and what each made.
    let sessions = client
        .prepare_cached("SELECT id FROM sessions WHERE user_id = ANY($1)")
        .await?;
    let session_ids = client
        .query(&sessions, &[&sql_ids])
        .await?
        .iter()
        .map(|row| Ok(session_id_from_sql(row.try_get(0)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let tokens = client
        .prepare_cached("SELECT hash FROM api_tokens WHERE user_id = ANY($1)")
        .await?;
    let token_hashes = client
        .query(&tokens, &[&sql_ids])
        .await?
        .iter()
        .map(|row| hash_from_sql(row.try_get(0)?, "api token"))
        .collect::<Result<Vec<_>, StoreError>>()?;
    delete_with_what_they_made(client, &token_hashes, &session_ids).await?;
    for table in ["oauth_identities", "email_tokens"] {
        let statement = client
            .prepare_cached(&format!("DELETE FROM {table} WHERE user_id = ANY($1)"))
            .await?;
        client.execute(&statement, &[&sql_ids]).await?;
    }
    for id in ids {
        delete_second_factors_of_user(client, *id).await?;
    }
    let statement = client
        .prepare_cached("DELETE FROM users WHERE id = ANY($1)")
        .await?;
    client.execute(&statement, &[&sql_ids]).await?;
    Ok(())
}

/// Drops the user's password-reset links: a password change or a suspension makes any link
/// mailed before it worthless to whoever holds it.
async fn void_reset_links(client: &impl GenericClient, user_id: UserId) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
        .await?;
    client
        .execute(
            &statement,
            &[
                &user_id_to_sql(user_id)?,
                &EmailTokenPurpose::ResetPassword.stored_name(),
            ],
        )
        .await?;
    Ok(())
}

fn is_active_root(user: &User) -> bool {
    user.role == Role::Root && user.status == Status::Active
}

async fn count_active_roots(client: &impl GenericClient) -> Result<i64, StoreError> {
    let statement = client
        .prepare_cached("SELECT count(*) FROM users WHERE role = $1 AND status = $2")
        .await?;
    Ok(client
        .query_one(
            &statement,
            &[&Role::Root.stored_name(), &Status::Active.stored_name()],
        )
        .await?
        .try_get(0)?)
}
