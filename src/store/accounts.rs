//! Store functions for sessions, passwords and the user tree: listing, ending, changing and
//! deleting, each in one transaction.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::model::{
    PasswordHashString, Role, Session, SessionId, Status, UnixSeconds, User, UserId,
};
use crate::store::record::{decode_api_token, decode_user, encode_user};
use crate::store::{
    EMAIL_USERID, EXPIRE_SESSIONID, PARENTID_CHILDID, Requester, SESSIONID_SESSION, Store,
    StoreError, TOKENHASH_APITOKEN, USERID_TOKENHASH, USERID_UNPREFIXEDSESSIONID, USERID_USER,
    check_requester, delete_api_token, delete_session, read_session, session_ids_of_user,
    session_in, sessions_of_user, set_password_hash, user_in,
};

/// Which sessions a password change ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionsToEnd {
    None,
    All,
    AllExcept(SessionId),
}

impl Store {
    /// The user's sessions that have not expired, newest first.
    pub fn live_sessions_of_user(
        &self,
        user_id: UserId,
        now: UnixSeconds,
    ) -> Result<Vec<Session>, StoreError> {
        let transaction = self.begin_read()?;
        let mut sessions = sessions_of_user(
            &transaction.open_table(SESSIONID_SESSION)?,
            &transaction.open_table(USERID_UNPREFIXEDSESSIONID)?,
            user_id,
        )?;
        sessions.retain(|session| session.expire > now);
        sessions.sort_by(|left, right| {
            right
                .created
                .cmp(&left.created)
                .then(right.id.cmp(&left.id))
        });
        Ok(sessions)
    }

    pub fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let transaction = self.begin_read()?;
        read_session(&transaction, id)
    }

    /// Ends one session of this user; `false` when it is not there (or not theirs).
    pub fn end_session_of_user(&self, user_id: UserId, id: SessionId) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        // Bound first, so the sessions table closes before `delete_session` reopens it.
        let session = session_in(&transaction.open_table(SESSIONID_SESSION)?, id)?;
        let ended = match session {
            Some(session) if session.user_id == user_id => delete_session(&transaction, id)?,
            _ => false,
        };
        transaction.commit()?;
        Ok(ended)
    }

    /// Ends every session of the user, the caller's own included.
    pub fn end_all_sessions_of_user(&self, user_id: UserId) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let ids = session_ids_of_user(&transaction, user_id)?;
        for id in &ids {
            delete_session(&transaction, *id)?;
        }
        transaction.commit()?;
        Ok(ids.len())
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
            crate::store::email::void_reset_links(&transaction, user_id)?;
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
                crate::store::email::void_reset_links(&transaction, id)?;
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

    /// How many sessions the store holds, expired or not.
    pub fn session_count(&self) -> Result<u64, StoreError> {
        let transaction = self.begin_read()?;
        Ok(transaction
            .open_table(crate::store::SESSIONID_SESSION)?
            .len()?)
    }

    /// Inserts many sessions in one transaction: for seeding benchmarks and tests.
    pub fn insert_sessions(&self, sessions: &[Session]) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        for session in sessions {
            crate::store::insert_session(&transaction, session)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Deletes up to `limit` sessions that expired before `now`; returns how many.
    pub fn purge_expired_sessions(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let expired: Vec<(i64, u128)> = {
            let by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
            let mut keys = Vec::new();
            for entry in by_expiry
                .range((i64::MIN, 0u128)..(now, 0u128))?
                .take(limit)
            {
                keys.push(entry?.0.value());
            }
            keys
        };
        for (expire, id) in &expired {
            if !delete_session(&transaction, SessionId(*id))? {
                // An index row without its session: drop the orphan row itself.
                transaction
                    .open_table(EXPIRE_SESSIONID)?
                    .remove((*expire, *id))?;
            }
        }
        transaction.commit()?;
        Ok(expired.len())
    }
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

/// Deletes these users with their sessions, API tokens, identities, email index rows and
/// parent links, inside a write transaction. Their sub-users are the caller's to list.
pub(super) fn delete_users(
    transaction: &WriteTransaction,
    users: &[User],
) -> Result<(), StoreError> {
    for user in users {
        for session_id in session_ids_of_user(transaction, user.id)? {
            delete_session(transaction, session_id)?;
        }
        delete_standalone_api_tokens(transaction, user.id)?;
        crate::store::identities::delete_identities_of_user(transaction, user.id)?;
        crate::store::email::delete_email_tokens_of_user(transaction, user.id)?;
        crate::store::email::forget_unproved_sign_up(transaction, user)?;
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

/// Deletes every API token of the user that is not bound to a session.
pub(super) fn delete_standalone_api_tokens(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    let hashes: Vec<[u8; 32]> = {
        let by_user = transaction.open_table(USERID_TOKENHASH)?;
        let tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
        let mut hashes = Vec::new();
        for entry in by_user.range((user_id, &[0u8; 32])..=(user_id, &[0xffu8; 32]))? {
            let hash = *entry?.0.value().1;
            let standalone = match tokens.get(&hash)? {
                Some(bytes) => decode_api_token(bytes.value(), hash)?.session_id.is_none(),
                None => true,
            };
            if standalone {
                hashes.push(hash);
            }
        }
        hashes
    };
    for hash in hashes {
        delete_api_token(transaction, user_id, &hash)?;
    }
    Ok(())
}
