//! Users and the user tree on PostgreSQL, as `redb_backend/users.rs`: making, reading,
//! changing and deleting accounts (with all they hold), and password changes, each public
//! function one transaction.

use deadpool_postgres::GenericClient;

use crate::model::{NewUser, PasswordHashString, Role, Status, UnixSeconds, User, UserId};
use crate::store::postgres_backend::api_tokens::delete_standalone_api_tokens;
use crate::store::postgres_backend::rows::{
    USER_COLUMNS, hash_from_sql, next_user_id, session_id_from_sql, user_from_row, user_id_to_sql,
    write_user,
};
use crate::store::postgres_backend::second_factors::delete_second_factors_of_user;
use crate::store::postgres_backend::sessions::{delete_sessions, session_ids_of_user};
use crate::store::postgres_backend::signup::void_reset_links;
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
/// `set_password_hash`'s statement: a `now` bumps the credential version and `updated`.
pub(super) const SET_PASSWORD_HASH: &str = "UPDATE users SET password_hash = $2, \
    updated = COALESCE($3, updated), \
    credential_version = credential_version + CASE WHEN $3::bigint IS NULL THEN 0 ELSE 1 END \
    WHERE id = $1";

pub(super) async fn set_password_hash(
    client: &impl GenericClient,
    user_id: UserId,
    hash: &PasswordHashString,
    now: Option<UnixSeconds>,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(SET_PASSWORD_HASH).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::email_address::EmailAddress;
    use crate::model::{ApiToken, PermissionSet, Session, SessionId, SessionKind, TokenMaker};
    use crate::store::postgres_backend::test_support::{
        NOW, add_user, assert_same, assert_send, fresh_store, live_session, standalone_token,
    };
    use crate::store::{AlsoRead, NewSignIn, RequesterCredential};

    /// Type-checked, never run: the futures of these backends' functions are `Send`, also
    /// across the transaction helpers they share.
    #[allow(dead_code)]
    fn the_public_futures_are_send(store: &PostgresStore, sign_in: &NewSignIn, token: &ApiToken) {
        let requester = &sign_in.requester;
        assert_send(&store.record_sign_in(sign_in));
        assert_send(&store.session_context(SessionId(1), AlsoRead::Nothing));
        assert_send(&store.api_token_context(&token.hash, AlsoRead::Nothing));
        assert_send(&store.update_user_for(Some(requester), 1, NOW, |user| user.first_name = None));
        assert_send(&store.change_password(
            Some(requester),
            1,
            &PasswordHashString::new(String::new()),
            SessionsToEnd::All,
            true,
            NOW,
        ));
        assert_send(&store.delete_user_tree(1));
        assert_send(&store.insert_sub_user(
            new_user("a@example.com", Role::Sub, Some(1)),
            NOW,
            requester,
        ));
        assert_send(&store.replace_api_token(token, requester));
        assert_send(&store.insert_api_token_within_limit(token, 1, requester));
        assert_send(&store.purge_expired_sessions(NOW, 1));
        assert_send(&store.purge_api_tokens_expired_before(NOW, 1));
        assert_send(&store.end_other_sessions_of_user(1, SessionId(1)));
    }

    fn new_user(email: &str, role: Role, parent_id: Option<UserId>) -> NewUser {
        NewUser {
            parent_id,
            permissions: PermissionSet::empty(),
            ..NewUser::new(EmailAddress::parse(email).unwrap(), role, Status::Active)
        }
    }

    async fn count(store: &PostgresStore, sql: &str) -> i64 {
        let client = store.connection().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// The second review's takeovers: a password change, a profile change or a sub-user that
    /// a thief's request had in flight when the owner's reset (or an activation) committed
    /// writes nothing after it.
    #[tokio::test]
    async fn password_profile_and_sub_user_writes_from_an_overtaken_credential_write_nothing() {
        let store = fresh_store().await;
        let owner = add_user(&store, "owner@example.com").await;
        let now = NOW;
        let stolen = live_session(SessionId::new_for_user(owner.id), owner.id);
        store
            .insert_sessions(std::slice::from_ref(&stolen))
            .await
            .unwrap();
        let thief = Requester {
            user_id: owner.id,
            credential_version: owner.credential_version,
            credential: Some(RequesterCredential::Session(stolen.id)),
            now,
        };
        // The owner's reset commits first: a new password, every session ended.
        let owners_hash = PasswordHashString::new("$argon2id$owners".to_owned());
        store
            .change_password(None, owner.id, &owners_hash, SessionsToEnd::All, true, now)
            .await
            .unwrap();
        let thiefs_hash = PasswordHashString::new("$argon2id$thiefs".to_owned());
        assert!(matches!(
            store
                .change_password(
                    Some(&thief),
                    owner.id,
                    &thiefs_hash,
                    SessionsToEnd::None,
                    false,
                    now
                )
                .await,
            Err(StoreError::CredentialsChanged)
        ));
        assert!(matches!(
            store
                .update_user_for(Some(&thief), owner.id, now, |user| {
                    user.first_name = Some("Thief".to_owned())
                })
                .await,
            Err(StoreError::CredentialsChanged)
        ));
        let sub_user = new_user("thiefs-sub@example.com", Role::Sub, Some(owner.id));
        assert!(matches!(
            store.insert_sub_user(sub_user, now, &thief).await,
            Err(StoreError::CredentialsChanged)
        ));
        let after = store.user_by_id(owner.id).await.unwrap().unwrap();
        assert_eq!(after.password_hash, Some(owners_hash));
        assert_eq!(after.first_name, None);
        assert!(store.children_of(owner.id).await.unwrap().is_empty());
        assert!(store.session(stolen.id).await.unwrap().is_none());
    }

    /// Ids come in order; a taken normalized address is refused, and a batch with one
    /// writes nothing.
    #[tokio::test]
    async fn users_get_ids_in_order_and_a_taken_address_writes_nothing() {
        let store = fresh_store().await;
        let first = add_user(&store, "first@example.com").await;
        let second = add_user(&store, "second@example.com").await;
        assert!(second.id > first.id);
        assert_eq!(first.created, NOW);
        assert_eq!(first.credential_version, 0);
        assert!(matches!(
            store
                .insert_user(new_user("First@Example.com", Role::User, None), NOW)
                .await,
            Err(StoreError::EmailTaken)
        ));
        assert!(matches!(
            store
                .insert_users(
                    vec![
                        new_user("third@example.com", Role::User, None),
                        new_user("second@example.com", Role::User, None),
                    ],
                    NOW,
                )
                .await,
            Err(StoreError::EmailTaken)
        ));
        assert!(
            store
                .user_by_normalized_email("third@example.com")
                .await
                .unwrap()
                .is_none()
        );
        let made = store
            .insert_users(
                vec![
                    new_user("third@example.com", Role::User, None),
                    new_user("fourth@example.com", Role::User, None),
                ],
                NOW,
            )
            .await
            .unwrap();
        let listed: Vec<UserId> = store
            .all_users()
            .await
            .unwrap()
            .iter()
            .map(|user| user.id)
            .collect();
        assert_eq!(listed, vec![first.id, second.id, made[0].id, made[1].id]);
        assert_same(
            &store
                .user_by_normalized_email("fourth@example.com")
                .await
                .unwrap(),
            &Some(made[1].clone()),
        );
    }

    /// The last active root can be neither suspended, demoted nor deleted; with a second
    /// one, it can.
    #[tokio::test]
    async fn the_last_active_root_stays() {
        let store = fresh_store().await;
        let root = store
            .insert_user(new_user("root@example.com", Role::Root, None), NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .update_user(root.id, NOW, |user| user.status = Status::Suspended)
                .await,
            Err(StoreError::LastActiveRoot)
        ));
        assert!(matches!(
            store
                .update_user(root.id, NOW, |user| user.role = Role::Admin)
                .await,
            Err(StoreError::LastActiveRoot)
        ));
        assert!(matches!(
            store.delete_user_tree(root.id).await,
            Err(StoreError::LastActiveRoot)
        ));
        let unchanged = store.user_by_id(root.id).await.unwrap().unwrap();
        assert_eq!(unchanged.status, Status::Active);
        assert_eq!(unchanged.role, Role::Root);
        assert_eq!(unchanged.credential_version, 0);

        let second = store
            .insert_user(new_user("root2@example.com", Role::Root, None), NOW)
            .await
            .unwrap();
        let suspended = store
            .update_user(root.id, NOW + 5, |user| user.status = Status::Suspended)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(suspended.credential_version, 1);
        assert_eq!(suspended.updated, NOW + 5);
        assert!(matches!(
            store.delete_user_tree(second.id).await,
            Err(StoreError::LastActiveRoot)
        ));
        assert!(store.delete_user_tree(root.id).await.unwrap());
        assert!(!store.delete_user_tree(root.id).await.unwrap());
        assert!(
            store
                .update_user(root.id, NOW, |_| {})
                .await
                .unwrap()
                .is_none()
        );
    }

    /// A suspension or a new password ends the unused reset links and raises the credential
    /// version; a name change does neither. A password change ends the sessions asked for
    /// and, if asked, the standalone tokens; a pending sign-up keeps its links.
    #[tokio::test]
    async fn credential_changes_end_reset_links_sessions_and_tokens_as_asked() {
        let store = fresh_store().await;
        let user = add_user(&store, "links@example.com").await;
        let client = store.connection().await.unwrap();
        let add_link = |byte: u8, purpose: &'static str, used: bool, user_id: UserId| {
            let client = &client;
            async move {
                client
                    .execute(
                        "INSERT INTO email_tokens (hash, purpose, user_id, expires_at, used) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &vec![byte; 32],
                            &purpose,
                            &(user_id as i64),
                            &(NOW + 3600),
                            &used,
                        ],
                    )
                    .await
                    .unwrap();
            }
        };
        let links_of = |user_id: UserId| {
            let client = &client;
            async move {
                let rows = client
                    .query(
                        "SELECT purpose FROM email_tokens WHERE user_id = $1 ORDER BY purpose",
                        &[&(user_id as i64)],
                    )
                    .await
                    .unwrap();
                rows.iter()
                    .map(|row| row.get::<_, String>(0))
                    .collect::<Vec<_>>()
            }
        };
        add_link(1, "reset-password", false, user.id).await;
        add_link(2, "verify-email", false, user.id).await;
        let renamed = store
            .update_user(user.id, NOW + 1, |user| {
                user.last_name = Some("Lovelace".to_owned())
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renamed.credential_version, 0);
        assert_eq!(renamed.updated, NOW + 1);
        assert_eq!(
            links_of(user.id).await,
            vec!["reset-password", "verify-email"]
        );
        let rehashed = store
            .update_user(user.id, NOW + 2, |user| {
                user.password_hash = Some(PasswordHashString::new("$argon2id$x".to_owned()))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rehashed.credential_version, 1);
        assert_eq!(links_of(user.id).await, vec!["verify-email"]);

        // The password change: the caller's session stays, the others and the standalone
        // tokens go, a sign-in's bound token with its session.
        let kept = live_session(SessionId::new_for_user(user.id), user.id);
        let ended = Session {
            api_token_hash: Some([3; 32]),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        store
            .insert_sessions(&[kept.clone(), ended.clone()])
            .await
            .unwrap();
        store
            .insert_api_tokens(&[
                standalone_token(user.id, 4, None),
                ApiToken {
                    session_id: Some(ended.id),
                    ..standalone_token(user.id, 3, None)
                },
            ])
            .await
            .unwrap();
        add_link(5, "reset-password", false, user.id).await;
        // A used link stays: its second use is told apart from a bad link.
        add_link(8, "reset-password", true, user.id).await;
        let hash = PasswordHashString::new("$argon2id$changed".to_owned());
        store
            .change_password(
                None,
                user.id,
                &hash,
                SessionsToEnd::AllExcept(kept.id),
                true,
                NOW + 3,
            )
            .await
            .unwrap();
        let changed = store.user_by_id(user.id).await.unwrap().unwrap();
        assert_eq!(changed.password_hash, Some(hash.clone()));
        assert_eq!(changed.credential_version, 2);
        assert_eq!(changed.updated, NOW + 3);
        assert_eq!(
            links_of(user.id).await,
            vec!["reset-password", "verify-email"]
        );
        assert!(store.session(kept.id).await.unwrap().is_some());
        assert!(store.session(ended.id).await.unwrap().is_none());
        assert_eq!(count(&store, "SELECT count(*) FROM api_tokens").await, 0);

        // Without ending anything, nothing else ends.
        store
            .insert_api_token(&standalone_token(user.id, 6, None))
            .await
            .unwrap();
        store
            .change_password(None, user.id, &hash, SessionsToEnd::None, false, NOW + 4)
            .await
            .unwrap();
        assert!(store.session(kept.id).await.unwrap().is_some());
        assert_eq!(count(&store, "SELECT count(*) FROM api_tokens").await, 1);

        // A pending sign-up's reset links belong to its other attempts: they stay.
        let pending = store
            .insert_user(
                NewUser {
                    status: Status::Pending,
                    ..new_user("pending@example.com", Role::User, None)
                },
                NOW,
            )
            .await
            .unwrap();
        add_link(7, "reset-password", false, pending.id).await;
        store
            .change_password(None, pending.id, &hash, SessionsToEnd::All, true, NOW)
            .await
            .unwrap();
        assert_eq!(links_of(pending.id).await, vec!["reset-password"]);
    }

    /// Deleting a user deletes its sub-users and everything either holds, and nothing of
    /// anyone else's.
    #[tokio::test]
    async fn deleting_a_user_tree_deletes_everything_its_users_hold() {
        let store = fresh_store().await;
        let parent = add_user(&store, "tree-parent@example.com").await;
        let child = store
            .insert_user(
                new_user("tree-child@example.com", Role::Sub, Some(parent.id)),
                NOW,
            )
            .await
            .unwrap();
        let bystander = add_user(&store, "bystander@example.com").await;
        assert_eq!(
            store
                .children_of(parent.id)
                .await
                .unwrap()
                .iter()
                .map(|user| user.id)
                .collect::<Vec<_>>(),
            vec![child.id]
        );
        let mut bytes = 1u8;
        for user_id in [parent.id, child.id, bystander.id] {
            let minted = Session {
                kind: SessionKind::Minted,
                ..live_session(SessionId::new_for_user(user_id), user_id)
            };
            store
                .insert_sessions(std::slice::from_ref(&minted))
                .await
                .unwrap();
            store
                .insert_api_tokens(&[
                    standalone_token(user_id, bytes, None),
                    standalone_token(
                        user_id,
                        bytes + 1,
                        Some(TokenMaker::MintedSession(minted.id)),
                    ),
                ])
                .await
                .unwrap();
            bytes += 2;
            let client = store.connection().await.unwrap();
            client
                .execute(
                    "INSERT INTO oauth_identities (provider, subject, user_id, linked) \
                     VALUES ('github', $1, $2, 0)",
                    &[&user_id.to_string(), &(user_id as i64)],
                )
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO email_tokens (hash, purpose, user_id, expires_at, used) \
                     VALUES ($1, 'verify-email', $2, 0, false)",
                    &[&vec![bytes; 32], &(user_id as i64)],
                )
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO pending_totp (user_id, secret, created, expires_at) \
                     VALUES ($1, $2, 0, 0)",
                    &[&(user_id as i64), &vec![0u8; 20]],
                )
                .await
                .unwrap();
        }

        assert!(store.delete_user_tree(parent.id).await.unwrap());
        assert!(store.user_by_id(parent.id).await.unwrap().is_none());
        assert!(store.user_by_id(child.id).await.unwrap().is_none());
        assert!(store.user_by_id(bystander.id).await.unwrap().is_some());
        for (table, left) in [
            ("sessions", 1),
            ("api_tokens", 2),
            ("oauth_identities", 1),
            ("email_tokens", 1),
            ("pending_totp", 1),
        ] {
            assert_eq!(
                count(&store, &format!("SELECT count(*) FROM {table}")).await,
                left,
                "{table}"
            );
            let owner: i64 = store
                .connection()
                .await
                .unwrap()
                .query_one(&format!("SELECT DISTINCT user_id FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(owner, bystander.id as i64, "{table}");
        }
        assert_eq!(
            store
                .standalone_api_tokens_of_user(bystander.id)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    /// `replace_user` writes the record whole; an unproved sign-up shows in the purge's
    /// index (a partial index here) exactly while it is one.
    #[tokio::test]
    async fn replacing_a_user_writes_it_whole() {
        let store = fresh_store().await;
        let user = store
            .insert_user(
                NewUser {
                    status: Status::Pending,
                    email_verified: false,
                    ..new_user("replaced@example.com", Role::User, None)
                },
                NOW,
            )
            .await
            .unwrap();
        let unproved = "SELECT count(*) FROM users WHERE status = 'pending' AND NOT email_verified";
        assert_eq!(count(&store, unproved).await, 1);
        let replaced = User {
            status: Status::Active,
            email_verified: true,
            first_name: Some("Grace".to_owned()),
            permissions: PermissionSet::from_bits(3),
            updated: NOW + 9,
            ..user
        };
        store.replace_user(&replaced).await.unwrap();
        assert_same(
            &store.user_by_id(replaced.id).await.unwrap().unwrap(),
            &replaced,
        );
        assert_eq!(count(&store, unproved).await, 0);
    }
}
