//! Sessions: sign-ins and minted tokens, a user's sessions as one range of the sessions
//! table (plus the index of older random ids), ending them and purging the expired.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::model::second_factor::SecondFactorSummary;
use crate::model::{
    OAuthIdentity, Session, SessionId, SessionKind, TokenMaker, UnixSeconds, UserId,
};
use crate::store::redb_backend::api_tokens::{insert_api_token, remove_api_token_rows};
use crate::store::redb_backend::identities::identities_in;
use crate::store::redb_backend::record::{decode_session, encode_session};
use crate::store::redb_backend::second_factors::{
    second_factor_summary_in, second_factor_summary_in_write,
};
use crate::store::redb_backend::tables::{
    EXPIRE_SESSIONID, PROVIDERSUBJECT_IDENTITY, SESSIONID_SESSION, USERID_PROVIDERSUBJECT,
    USERID_UNPREFIXEDSESSIONID,
};
use crate::store::redb_backend::token_makers::{self, fit_within_maker};
use crate::store::redb_backend::users::{read_user_and_parent, set_password_hash};
use crate::store::redb_backend::{RedbStore, check_requester};
use crate::store::{AlsoRead, NewSignIn, SessionContext, StoreError};

impl RedbStore {
    /// Writes a sign-in's session, its API token, and (optionally) ends the user's other
    /// sessions and replaces its password hash, all in one durable transaction.
    pub fn record_sign_in(&self, sign_in: &NewSignIn) -> Result<Vec<OAuthIdentity>, StoreError> {
        let transaction = self.begin_write()?;
        let identities = write_sign_in(&transaction, sign_in)?;
        transaction.commit()?;
        Ok(identities)
    }

    /// The session, its user and the user's parent (and what `also` asks for), or `None`
    /// if the session is gone.
    pub fn session_context(
        &self,
        id: SessionId,
        also: AlsoRead,
    ) -> Result<Option<SessionContext>, StoreError> {
        let transaction = self.begin_read()?;
        let Some(session) = read_session(&transaction, id)? else {
            return Ok(None);
        };
        let Some((user, parent)) = read_user_and_parent(&transaction, session.user_id)? else {
            return Ok(None);
        };
        Ok(Some(SessionContext {
            second_factors: read_also(&transaction, also, user.id)?,
            session,
            user,
            parent,
        }))
    }

    pub fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let transaction = self.begin_read()?;
        read_session(&transaction, id)
    }

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

    /// Ends every session of the user but `kept` (the caller's own): "end all others".
    pub fn end_other_sessions_of_user(
        &self,
        user_id: UserId,
        kept: SessionId,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let ids = session_ids_of_user(&transaction, user_id)?;
        let mut ended = 0;
        for id in ids.iter().filter(|id| **id != kept) {
            delete_session(&transaction, *id)?;
            ended += 1;
        }
        transaction.commit()?;
        Ok(ended)
    }

    /// How many sessions the store holds, expired or not.
    pub fn session_count(&self) -> Result<u64, StoreError> {
        let transaction = self.begin_read()?;
        Ok(transaction.open_table(SESSIONID_SESSION)?.len()?)
    }

    /// Inserts many sessions in one transaction: for seeding benchmarks and tests.
    pub fn insert_sessions(&self, sessions: &[Session]) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        for session in sessions {
            insert_session(&transaction, session)?;
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

/// A session from the sessions table of either kind of transaction.
/// What `record_sign_in` writes, inside a transaction of its caller's (a second step spends
/// its proof in the same one); answers the user's linked identities as committed.
pub(super) fn write_sign_in(
    transaction: &WriteTransaction,
    sign_in: &NewSignIn,
) -> Result<Vec<OAuthIdentity>, StoreError> {
    let user_id = sign_in.session.user_id;
    check_requester(transaction, &sign_in.requester)?;
    if sign_in.refuse_if_second_factor_held {
        let held = second_factor_summary_in_write(transaction, user_id)?;
        if held.requires_second_factor() {
            return Err(StoreError::SecondFactorHeld(held));
        }
    }
    if sign_in.end_other_sessions {
        for session_id in session_ids_of_user(transaction, user_id)? {
            delete_session(transaction, session_id)?;
        }
    } else {
        end_oldest_sessions_beyond(transaction, user_id, sign_in.max_sessions_per_user)?;
    }
    let mut session = sign_in.session.clone();
    if let Some(last_second) = fit_within_maker(transaction, session.made_by)? {
        session.expire = session.expire.min(last_second + 1);
    }
    insert_session(transaction, &session)?;
    if let Some(api_token) = &sign_in.api_token {
        insert_api_token(transaction, api_token)?;
    }
    if let Some(hash) = &sign_in.replacement_password_hash {
        // A re-hash of the same password is not a profile change: `updated` stays.
        set_password_hash(transaction, user_id, hash, None)?;
    }
    identities_in(
        &transaction.open_table(USERID_PROVIDERSUBJECT)?,
        &transaction.open_table(PROVIDERSUBJECT_IDENTITY)?,
        user_id,
    )
}

pub(super) fn session_in(
    sessions: &impl ReadableTable<u128, &'static [u8]>,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    let Some(bytes) = sessions.get(id.0)? else {
        return Ok(None);
    };
    Ok(Some(decode_session(bytes.value(), id)?))
}

pub(super) fn read_session(
    transaction: &ReadTransaction,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    session_in(&transaction.open_table(SESSIONID_SESSION)?, id)
}

pub(super) fn insert_session(
    transaction: &WriteTransaction,
    session: &Session,
) -> Result<(), StoreError> {
    let mut sessions = transaction.open_table(SESSIONID_SESSION)?;
    sessions.insert(session.id.0, encode_session(session).as_slice())?;
    if !session.id.is_prefixed_for(session.user_id) {
        let mut unprefixed = transaction.open_table(USERID_UNPREFIXEDSESSIONID)?;
        unprefixed.insert((session.user_id, session.id.0), ())?;
    }
    let mut by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
    by_expiry.insert((session.expire, session.id.0), ())?;
    if let Some(maker) = session.made_by {
        token_makers::record_made(transaction, maker, TokenMaker::MintedSession(session.id))?;
    }
    Ok(())
}

/// The user's sessions, in no particular order: a range of the sessions table finds those
/// with prefixed ids (one or two pages for a user), the index the older ones.
pub(super) fn sessions_of_user(
    sessions: &impl ReadableTable<u128, &'static [u8]>,
    unprefixed: &impl ReadableTable<(u64, u128), ()>,
    user_id: UserId,
) -> Result<Vec<Session>, StoreError> {
    let mut found = Vec::new();
    for entry in sessions.range(SessionId::range_for_user(user_id))? {
        let (key, bytes) = entry?;
        let session = decode_session(bytes.value(), SessionId(key.value()))?;
        if session.user_id == user_id {
            found.push(session);
        }
    }
    for entry in unprefixed.range((user_id, 0u128)..=(user_id, u128::MAX))? {
        let id = SessionId(entry?.0.value().1);
        // Files written while every session had a row here: the range above found it.
        if id.is_prefixed_for(user_id) {
            continue;
        }
        if let Some(session) = session_in(sessions, id)? {
            found.push(session);
        }
    }
    Ok(found)
}

pub(super) fn session_ids_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<Vec<SessionId>, StoreError> {
    let sessions = sessions_of_user(
        &transaction.open_table(SESSIONID_SESSION)?,
        &transaction.open_table(USERID_UNPREFIXEDSESSIONID)?,
        user_id,
    )?;
    Ok(sessions.into_iter().map(|session| session.id).collect())
}

/// Ends the user's oldest sessions until one more fits under `limit` (API.md 15.13).
fn end_oldest_sessions_beyond(
    transaction: &WriteTransaction,
    user_id: UserId,
    limit: usize,
) -> Result<(), StoreError> {
    let mut sessions = sessions_of_user(
        &transaction.open_table(SESSIONID_SESSION)?,
        &transaction.open_table(USERID_UNPREFIXEDSESSIONID)?,
        user_id,
    )?;
    let Some(excess) = (sessions.len() + 1).checked_sub(limit.max(1)) else {
        return Ok(());
    };
    sessions.sort_by_key(|session| (session.created, session.id));
    for session in sessions.iter().take(excess) {
        delete_session(transaction, session.id)?;
    }
    Ok(())
}

/// Removes a session, its index rows and its bound API token (which makes nothing that
/// depends on it: it is part of a sign-in), and answers what it was.
pub(super) fn remove_session_rows(
    transaction: &WriteTransaction,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    let session = {
        let mut sessions = transaction.open_table(SESSIONID_SESSION)?;
        let Some(bytes) = sessions.remove(id.0)? else {
            return Ok(None);
        };
        decode_session(bytes.value(), id)?
    };
    // Also for prefixed ids: files written before that layout indexed every session.
    let mut unprefixed = transaction.open_table(USERID_UNPREFIXEDSESSIONID)?;
    unprefixed.remove((session.user_id, id.0))?;
    let mut by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
    by_expiry.remove((session.expire, id.0))?;
    if let Some(hash) = session.api_token_hash {
        remove_api_token_rows(transaction, &hash)?;
    }
    if let Some(maker) = session.made_by {
        token_makers::forget_made(transaction, maker, TokenMaker::MintedSession(id))?;
    }
    Ok(Some(session))
}

/// Removes a session with its index rows and bound API token, and, for a minted token,
/// everything it made (API.md 15.3). Returns whether it existed.
pub(super) fn delete_session(
    transaction: &WriteTransaction,
    id: SessionId,
) -> Result<bool, StoreError> {
    let Some(session) = remove_session_rows(transaction, id)? else {
        return Ok(false);
    };
    if session.kind == SessionKind::Minted {
        token_makers::end_what_was_made_by(transaction, TokenMaker::MintedSession(id))?;
    }
    Ok(true)
}

/// Ends a session no later than `last_second` (its `expire` becomes at most one past it);
/// answers whether it changed.
pub(super) fn cap_session_expiry(
    transaction: &WriteTransaction,
    id: SessionId,
    last_second: UnixSeconds,
) -> Result<bool, StoreError> {
    let Some(mut session) = session_in(&transaction.open_table(SESSIONID_SESSION)?, id)? else {
        return Ok(false);
    };
    let bound = last_second + 1;
    if session.expire <= bound {
        return Ok(false);
    }
    let mut by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
    by_expiry.remove((session.expire, id.0))?;
    session.expire = bound;
    by_expiry.insert((session.expire, id.0), ())?;
    transaction
        .open_table(SESSIONID_SESSION)?
        .insert(id.0, encode_session(&session).as_slice())?;
    Ok(true)
}

/// What a token check reads besides its context, in the same transaction.
pub(super) fn read_also(
    transaction: &ReadTransaction,
    also: AlsoRead,
    user_id: UserId,
) -> Result<Option<SecondFactorSummary>, StoreError> {
    match also {
        AlsoRead::Nothing => Ok(None),
        AlsoRead::SecondFactorSummary => second_factor_summary_in(transaction, user_id).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PasswordHashString, Status};
    use crate::store::redb_backend::test_support::{NOW, add_user, live_session, open_store};
    use crate::store::{Requester, SessionsToEnd, StoreError};

    fn index_rows(store: &RedbStore, user_id: UserId) -> Vec<u128> {
        let transaction = store.begin_read().unwrap();
        let index = transaction.open_table(USERID_UNPREFIXEDSESSIONID).unwrap();
        index
            .range((user_id, 0u128)..=(user_id, u128::MAX))
            .unwrap()
            .map(|entry| entry.unwrap().0.value().1)
            .collect()
    }

    #[test]
    fn only_sessions_without_the_user_prefix_get_an_index_row() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "index@example.com");
        let prefixed = live_session(SessionId::new_for_user(user.id), user.id);
        let random = live_session(SessionId::new_random(), user.id);
        assert!(!random.id.is_prefixed_for(user.id));
        store
            .insert_sessions(&[prefixed.clone(), random.clone()])
            .unwrap();
        assert_eq!(index_rows(&store, user.id), vec![random.id.0]);
        let mut listed: Vec<SessionId> = store
            .live_sessions_of_user(user.id, NOW)
            .unwrap()
            .iter()
            .map(|session| session.id)
            .collect();
        listed.sort();
        let mut expected = vec![prefixed.id, random.id];
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn index_rows_that_version_one_wrote_for_prefixed_ids_are_read_once_and_removed() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "version-one@example.com");
        let prefixed = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&prefixed))
            .unwrap();
        // What a version 1 build wrote: a row for every session.
        let transaction = store.begin_write().unwrap();
        transaction
            .open_table(USERID_UNPREFIXEDSESSIONID)
            .unwrap()
            .insert((user.id, prefixed.id.0), ())
            .unwrap();
        transaction.commit().unwrap();

        let listed = store.live_sessions_of_user(user.id, NOW).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, prefixed.id);
        assert_eq!(store.end_all_sessions_of_user(user.id).unwrap(), 1);
        assert!(index_rows(&store, user.id).is_empty());
        assert!(store.session(prefixed.id).unwrap().is_none());
    }

    #[test]
    fn ending_the_other_sessions_keeps_the_callers_own_and_spares_other_users() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "many@example.com");
        let other_user = add_user(&store, "other@example.com");
        let kept = live_session(SessionId::new_for_user(user.id), user.id);
        let ended = live_session(SessionId::new_for_user(user.id), user.id);
        let unprefixed = live_session(SessionId(7), user.id);
        let stranger = live_session(SessionId::new_for_user(other_user.id), other_user.id);
        store
            .insert_sessions(&[
                kept.clone(),
                ended.clone(),
                unprefixed.clone(),
                stranger.clone(),
            ])
            .unwrap();

        assert_eq!(
            store.end_other_sessions_of_user(user.id, kept.id).unwrap(),
            2
        );
        assert!(store.session(kept.id).unwrap().is_some());
        assert!(store.session(ended.id).unwrap().is_none());
        assert!(store.session(unprefixed.id).unwrap().is_none());
        assert!(store.session(stranger.id).unwrap().is_some());
    }

    /// API.md 15.6: a sign-in that verified before a password change or a suspension
    /// committed writes nothing, so no session survives the change that raced it.
    #[test]
    fn a_sign_in_verified_against_an_older_credential_version_writes_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "racer@example.com");
        let sign_in = |version: u64| NewSignIn {
            refuse_if_second_factor_held: false,
            session: live_session(SessionId::new_for_user(user.id), user.id),
            requester: Requester {
                user_id: user.id,
                credential_version: version,
                credential: None,
                now: NOW,
            },
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        };
        let raced = sign_in(user.credential_version);
        let new_hash = PasswordHashString::new("$argon2id$new".to_owned());
        store
            .change_password(None, user.id, &new_hash, SessionsToEnd::All, true, NOW)
            .unwrap();
        assert!(matches!(
            store.record_sign_in(&raced),
            Err(StoreError::CredentialsChanged)
        ));
        assert!(store.session(raced.session.id).unwrap().is_none());

        let after_change = store
            .user_by_id(user.id)
            .unwrap()
            .unwrap()
            .credential_version;
        assert_eq!(after_change, user.credential_version + 1);
        let raced = sign_in(after_change);
        store
            .update_user(user.id, NOW, |user| user.status = Status::Suspended)
            .unwrap();
        assert!(matches!(
            store.record_sign_in(&raced),
            Err(StoreError::CredentialsChanged)
        ));
        let suspended = store.user_by_id(user.id).unwrap().unwrap();
        assert_eq!(suspended.credential_version, after_change + 1);
        // Changing a name is no credential change: a sign-in that read before it still counts.
        store
            .update_user(user.id, NOW, |user| {
                user.first_name = Some("Ada".to_owned())
            })
            .unwrap();
        store
            .record_sign_in(&sign_in(suspended.credential_version))
            .unwrap();
    }
}
