//! Users and the user tree: making, reading, changing and deleting accounts (with all they
//! hold), and password changes, each public function one transaction.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use crate::model::{NewUser, PasswordHashString, Role, Status, UnixSeconds, User, UserId};
use crate::store::redb_backend::api_tokens::delete_standalone_api_tokens;
use crate::store::redb_backend::identities::delete_identities_of_user;
use crate::store::redb_backend::record::{decode_user, encode_user};
use crate::store::redb_backend::second_factors::delete_second_factors_of_user;
use crate::store::redb_backend::sessions::{delete_session, session_ids_of_user};
use crate::store::redb_backend::signup::{
    delete_email_tokens_of_user, forget_unproved_sign_up, note_unproved_sign_up, void_reset_links,
};
use crate::store::redb_backend::tables::{
    EMAIL_USERID, META, META_NEXT_USER_ID, PARENTID_CHILDID, USERID_USER,
};
use crate::store::redb_backend::{RedbStore, check_requester};
use crate::store::{Requester, SessionsToEnd, StoreError};

impl RedbStore {
    /// A sub-user made on a request's behalf: `requester` (its parent's credential) is
    /// checked again inside the transaction, so a sub-user made while its parent's
    /// credential was revoked, or its password changed, is not made.
    pub fn insert_sub_user(
        &self,
        new_user: NewUser,
        now: UnixSeconds,
        requester: &Requester,
    ) -> Result<User, StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        let user = insert_user(&transaction, new_user, now)?;
        transaction.commit()?;
        Ok(user)
    }

    pub fn insert_user(&self, new_user: NewUser, now: UnixSeconds) -> Result<User, StoreError> {
        let transaction = self.begin_write()?;
        let user = insert_user(&transaction, new_user, now)?;
        transaction.commit()?;
        Ok(user)
    }

    /// Inserts many users in one transaction (bulk seeding: benchmarks and imports); stops
    /// at the first taken email, writing nothing.
    pub fn insert_users(
        &self,
        new_users: Vec<NewUser>,
        now: UnixSeconds,
    ) -> Result<Vec<User>, StoreError> {
        let transaction = self.begin_write()?;
        let mut users = Vec::with_capacity(new_users.len());
        for new_user in new_users {
            users.push(insert_user(&transaction, new_user, now)?);
        }
        transaction.commit()?;
        Ok(users)
    }

    pub fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_read()?;
        read_user(&transaction, id)
    }

    pub fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_read()?;
        let emails = transaction.open_table(EMAIL_USERID)?;
        let Some(id) = emails.get(email)?.map(|guard| guard.value()) else {
            return Ok(None);
        };
        read_user(&transaction, id)
    }

    /// Every user, in id order (the admin CLI's listing).
    pub fn all_users(&self) -> Result<Vec<User>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(USERID_USER)?;
        let mut users = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            users.push(decode_user(bytes.value(), id.value())?);
        }
        Ok(users)
    }

    /// The user's sub-users, in id order.
    pub fn children_of(&self, parent_id: UserId) -> Result<Vec<User>, StoreError> {
        let transaction = self.begin_read()?;
        let children = transaction.open_table(PARENTID_CHILDID)?;
        let user_table = transaction.open_table(USERID_USER)?;
        let mut users = Vec::new();
        for entry in children.range((parent_id, 0u64)..=(parent_id, u64::MAX))? {
            let (key, _) = entry?;
            if let Some(user) = user_in(&user_table, key.value().1)? {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// Writes a changed user record (not its email, which has its own index).
    pub fn replace_user(&self, user: &User) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let mut users = transaction.open_table(USERID_USER)?;
            let before = users
                .insert(user.id, encode_user(user).as_slice())?
                .map(|bytes| decode_user(bytes.value(), user.id))
                .transpose()?;
            drop(users);
            if let Some(before) = before {
                forget_unproved_sign_up(&transaction, &before)?;
            }
            note_unproved_sign_up(&transaction, user)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Changes a user through `change`, refusing (with `LastActiveRoot`) a change that would
    /// leave no active root. A suspension ends the user's unused reset links.
    pub fn update_user(
        &self,
        id: UserId,
        now: UnixSeconds,
        change: impl FnOnce(&mut User),
    ) -> Result<Option<User>, StoreError> {
        self.update_user_for(None, id, now, change)
    }

    /// `update_user` on a request's behalf: `requester` is checked again inside the
    /// transaction.
    pub fn update_user_for(
        &self,
        requester: Option<&Requester>,
        id: UserId,
        now: UnixSeconds,
        change: impl FnOnce(&mut User),
    ) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_write()?;
        if let Some(requester) = requester {
            check_requester(&transaction, requester)?;
        }
        let updated = {
            let Some(mut user) = user_in(&transaction.open_table(USERID_USER)?, id)? else {
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
                void_reset_links(&transaction, id)?;
            }
            if was_active_root && !is_active_root(&user) && count_active_roots(&transaction)? <= 1 {
                return Err(StoreError::LastActiveRoot);
            }
            let mut users = transaction.open_table(USERID_USER)?;
            users.insert(id, encode_user(&user).as_slice())?;
            user
        };
        transaction.commit()?;
        Ok(Some(updated))
    }

    /// Sets a password hash and ends sessions (and standalone API tokens) in one transaction.
    ///
    /// `requester` (absent for the operator's CLI) is checked again inside the transaction,
    /// so a change that a reset, a suspension or a revocation overtook writes nothing. The
    /// user's unused reset links end, unless the account is a pending sign-up (whose links
    /// belong to its other attempts).
    pub fn change_password(
        &self,
        requester: Option<&Requester>,
        user_id: UserId,
        hash: &PasswordHashString,
        sessions_to_end: SessionsToEnd,
        end_standalone_api_tokens: bool,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        if let Some(requester) = requester {
            check_requester(&transaction, requester)?;
        }
        let pending = user_in(&transaction.open_table(USERID_USER)?, user_id)?
            .is_some_and(|user| user.status == Status::Pending);
        if !pending {
            void_reset_links(&transaction, user_id)?;
        }
        set_password_hash(&transaction, user_id, hash, Some(now))?;
        let keep = match sessions_to_end {
            SessionsToEnd::None => None,
            SessionsToEnd::All => Some(None),
            SessionsToEnd::AllExcept(kept) => Some(Some(kept)),
        };
        if let Some(kept) = keep {
            for id in session_ids_of_user(&transaction, user_id)? {
                if Some(id) != kept {
                    delete_session(&transaction, id)?;
                }
            }
        }
        if end_standalone_api_tokens {
            delete_standalone_api_tokens(&transaction, user_id)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Deletes the user, its sub-users, and all their sessions and API tokens, in one
    /// transaction. Refuses to delete the last active root.
    pub fn delete_user_tree(&self, id: UserId) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        let Some(user) = user_in(&transaction.open_table(USERID_USER)?, id)? else {
            return Ok(false);
        };
        if is_active_root(&user) && count_active_roots(&transaction)? <= 1 {
            return Err(StoreError::LastActiveRoot);
        }
        let mut doomed = children_in(&transaction, id)?;
        doomed.insert(0, user);
        delete_users(&transaction, &doomed)?;
        transaction.commit()?;
        Ok(true)
    }
}

/// Inserts a user inside a write transaction, assigning the next id; `EmailTaken` if the
/// normalized email is in use.
pub(super) fn insert_user(
    transaction: &WriteTransaction,
    new_user: NewUser,
    now: UnixSeconds,
) -> Result<User, StoreError> {
    let mut emails = transaction.open_table(EMAIL_USERID)?;
    if emails.get(new_user.normalized_email.as_str())?.is_some() {
        return Err(StoreError::EmailTaken);
    }
    // A sub-user's parent deleted while the request was on its way: no orphan is made.
    if let Some(parent_id) = new_user.parent_id
        && user_in(&transaction.open_table(USERID_USER)?, parent_id)?.is_none()
    {
        return Err(StoreError::CredentialsChanged);
    }
    let mut meta = transaction.open_table(META)?;
    let id = meta
        .get(META_NEXT_USER_ID)?
        .map_or(1, |guard| guard.value());
    meta.insert(META_NEXT_USER_ID, id + 1)?;
    let user = User {
        id,
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
    emails.insert(user.normalized_email.as_str(), id)?;
    let mut users = transaction.open_table(USERID_USER)?;
    users.insert(id, encode_user(&user).as_slice())?;
    drop(users);
    note_unproved_sign_up(transaction, &user)?;
    if let Some(parent_id) = user.parent_id {
        let mut children = transaction.open_table(PARENTID_CHILDID)?;
        children.insert((parent_id, id), ())?;
    }
    Ok(user)
}

/// A user from the users table of either kind of transaction.
pub(super) fn user_in(
    users: &impl ReadableTable<u64, &'static [u8]>,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let Some(bytes) = users.get(id)? else {
        return Ok(None);
    };
    Ok(Some(decode_user(bytes.value(), id)?))
}

pub(super) fn read_user(
    transaction: &ReadTransaction,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    user_in(&transaction.open_table(USERID_USER)?, id)
}

pub(super) fn read_user_and_parent(
    transaction: &ReadTransaction,
    id: UserId,
) -> Result<Option<(User, Option<User>)>, StoreError> {
    let Some(user) = read_user(transaction, id)? else {
        return Ok(None);
    };
    let parent = match user.parent_id {
        Some(parent_id) => match read_user(transaction, parent_id)? {
            Some(parent) => Some(parent),
            None => return Ok(None),
        },
        None => None,
    };
    Ok(Some((user, parent)))
}

/// Writes a user's record as it stands (its email index and purge index are the caller's).
pub(super) fn write_user(transaction: &WriteTransaction, user: &User) -> Result<(), StoreError> {
    transaction
        .open_table(USERID_USER)?
        .insert(user.id, encode_user(user).as_slice())?;
    Ok(())
}

/// Sets a user's password hash inside a write transaction; a missing user is left alone.
/// With `now`, a new password: the credential version rises. Without, a re-hash of the
/// same password under new costs, which changes nothing a sign-in verified.
pub(super) fn set_password_hash(
    transaction: &WriteTransaction,
    user_id: UserId,
    hash: &PasswordHashString,
    now: Option<UnixSeconds>,
) -> Result<(), StoreError> {
    let mut users = transaction.open_table(USERID_USER)?;
    let Some(mut user) = user_in(&users, user_id)? else {
        return Ok(());
    };
    user.password_hash = Some(hash.clone());
    if let Some(now) = now {
        user.updated = now;
        user.credential_version += 1;
    }
    users.insert(user_id, encode_user(&user).as_slice())?;
    Ok(())
}

fn is_active_root(user: &User) -> bool {
    user.role == Role::Root && user.status == Status::Active
}

fn count_active_roots(transaction: &WriteTransaction) -> Result<usize, StoreError> {
    let users = transaction.open_table(USERID_USER)?;
    let mut count = 0;
    for entry in users.iter()? {
        let (id, bytes) = entry?;
        if is_active_root(&decode_user(bytes.value(), id.value())?) {
            count += 1;
        }
    }
    Ok(count)
}

/// The user's sub-users, inside a write transaction.
pub(super) fn children_in(
    transaction: &WriteTransaction,
    parent_id: UserId,
) -> Result<Vec<User>, StoreError> {
    let child_ids: Vec<UserId> = {
        let children = transaction.open_table(PARENTID_CHILDID)?;
        let mut child_ids = Vec::new();
        for entry in children.range((parent_id, 0u64)..=(parent_id, u64::MAX))? {
            child_ids.push(entry?.0.value().1);
        }
        child_ids
    };
    let users = transaction.open_table(USERID_USER)?;
    let mut found = Vec::with_capacity(child_ids.len());
    for child_id in child_ids {
        if let Some(child) = user_in(&users, child_id)? {
            found.push(child);
        }
    }
    Ok(found)
}

/// Deletes these users with their sessions, API tokens, identities, second factors,
/// passkeys, email index rows and parent links, inside a write transaction. Their sub-users
/// are the caller's to list.
pub(super) fn delete_users(
    transaction: &WriteTransaction,
    users: &[User],
) -> Result<(), StoreError> {
    for user in users {
        for session_id in session_ids_of_user(transaction, user.id)? {
            delete_session(transaction, session_id)?;
        }
        delete_standalone_api_tokens(transaction, user.id)?;
        delete_identities_of_user(transaction, user.id)?;
        delete_email_tokens_of_user(transaction, user.id)?;
        delete_second_factors_of_user(transaction, user.id)?;
        forget_unproved_sign_up(transaction, user)?;
        transaction.open_table(USERID_USER)?.remove(user.id)?;
        transaction
            .open_table(EMAIL_USERID)?
            .remove(user.normalized_email.as_str())?;
        if let Some(parent_id) = user.parent_id {
            transaction
                .open_table(PARENTID_CHILDID)?
                .remove((parent_id, user.id))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::email_address::EmailAddress;
    use crate::model::{NewUser, PasswordHashString, PermissionSet, Role, SessionId, Status};
    use crate::store::redb_backend::test_support::{NOW, add_user, live_session, open_store};
    use crate::store::{Requester, RequesterCredential, SessionsToEnd, StoreError};

    /// The second review's takeovers: a password change, a profile change or a sub-user that
    /// a thief's request had in flight when the owner's reset (or an activation) committed
    /// writes nothing after it.
    #[test]
    fn password_profile_and_sub_user_writes_from_an_overtaken_credential_write_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let owner = add_user(&store, "owner@example.com");
        let now = NOW;
        let stolen = live_session(SessionId::new_for_user(owner.id), owner.id);
        store
            .insert_sessions(std::slice::from_ref(&stolen))
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
            .unwrap();
        let thiefs_hash = PasswordHashString::new("$argon2id$thiefs".to_owned());
        assert!(matches!(
            store.change_password(
                Some(&thief),
                owner.id,
                &thiefs_hash,
                SessionsToEnd::None,
                false,
                now
            ),
            Err(StoreError::CredentialsChanged)
        ));
        assert!(matches!(
            store.update_user_for(Some(&thief), owner.id, now, |user| {
                user.first_name = Some("Thief".to_owned())
            }),
            Err(StoreError::CredentialsChanged)
        ));
        let sub_user = NewUser {
            parent_id: Some(owner.id),
            permissions: PermissionSet::empty(),
            ..NewUser::new(
                EmailAddress::parse("thiefs-sub@example.com").unwrap(),
                Role::Sub,
                Status::Active,
            )
        };
        assert!(matches!(
            store.insert_sub_user(sub_user, now, &thief),
            Err(StoreError::CredentialsChanged)
        ));
        let after = store.user_by_id(owner.id).unwrap().unwrap();
        assert_eq!(after.password_hash, Some(owners_hash));
        assert_eq!(after.first_name, None);
        assert!(store.children_of(owner.id).unwrap().is_empty());
    }
}
