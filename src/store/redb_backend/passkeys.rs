//! Passkeys and their ceremonies' challenges: a user's passkeys (by id, by credential id and
//! by user), and the challenges of started ceremonies, each taken in the very transaction
//! that finishes its ceremony, so that one challenge finishes at most one ceremony however
//! many requests race for it.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::model::passkey::{
    Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyChallengeProblem,
    PasskeyId,
};
use crate::model::{UnixSeconds, UserId};
use crate::store::redb_backend::record::{PasskeyChallengeRecord, PasskeyRecord, decode, encode};
use crate::store::redb_backend::tables::{
    CHALLENGEID_PASSKEYCHALLENGE, CREDENTIALID_PASSKEYID, EXPIRE_PASSKEYCHALLENGEID,
    PASSKEYID_PASSKEY, USERID_PASSKEYID,
};
use crate::store::redb_backend::{RedbStore, check_requester};
use crate::store::{Requester, StoreError};

/// Expired challenges a full table purges, at most, before it takes a new one.
const PURGE_WHEN_FULL_ROWS: usize = 1_000;

impl RedbStore {
    /// Keeps a started ceremony until it is finished or purged. When `max_open` challenges
    /// are kept already, expired ones are purged first in the same transaction; if that
    /// frees no room, `TooManyPasskeyChallenges`, and nothing is written.
    pub fn insert_passkey_challenge(
        &self,
        challenge: &PasskeyChallenge,
        max_open: u64,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        let open = transaction
            .open_table(CHALLENGEID_PASSKEYCHALLENGE)?
            .len()?;
        if open >= max_open {
            purge_expired_challenges(&transaction, now, PURGE_WHEN_FULL_ROWS)?;
            if transaction
                .open_table(CHALLENGEID_PASSKEYCHALLENGE)?
                .len()?
                >= max_open
            {
                return Err(StoreError::TooManyPasskeyChallenges);
            }
        }
        let record = PasskeyChallengeRecord::from_challenge(challenge);
        transaction
            .open_table(CHALLENGEID_PASSKEYCHALLENGE)?
            .insert(challenge.id.0, encode(&record).as_slice())?;
        transaction
            .open_table(EXPIRE_PASSKEYCHALLENGEID)?
            .insert((challenge.expires_at, challenge.id.0), ())?;
        transaction.commit()?;
        Ok(())
    }

    /// A kept challenge, expired or not; `None` when it was never made, or is used or
    /// purged.
    pub fn passkey_challenge(
        &self,
        id: PasskeyChallengeId,
    ) -> Result<Option<PasskeyChallenge>, StoreError> {
        let transaction = self.begin_read()?;
        let challenges = transaction.open_table(CHALLENGEID_PASSKEYCHALLENGE)?;
        let Some(bytes) = challenges.get(id.0)? else {
            return Ok(None);
        };
        let record: PasskeyChallengeRecord = decode(bytes.value(), "passkey challenge")?;
        Ok(Some(record.into_challenge(id)?))
    }

    /// Deletes a challenge: a ceremony that failed (or expired) uses its challenge up.
    /// Whether it was there.
    pub fn discard_passkey_challenge(&self, id: PasskeyChallengeId) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        let taken = take_challenge_row(&transaction, id)?.is_some();
        transaction.commit()?;
        Ok(taken)
    }

    /// Finishes a registration in one transaction: the requester is checked again, the
    /// challenge taken (refused unless it is the requester's open registration), the cap
    /// (`TooManyPasskeys`) and the credential id's uniqueness (`PasskeyAlreadyRegistered`)
    /// checked, and the passkey written. On any refusal nothing is written.
    pub fn finish_passkey_registration(
        &self,
        challenge_id: PasskeyChallengeId,
        passkey: &Passkey,
        max_per_user: usize,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        take_open_challenge(
            &transaction,
            challenge_id,
            PasskeyChallengeKind::Registration,
            Some(passkey.user_id),
            requester.now,
        )?;
        if passkey_ids_of_user(&transaction, passkey.user_id)?.len() >= max_per_user {
            return Err(StoreError::TooManyPasskeys);
        }
        if transaction
            .open_table(CREDENTIALID_PASSKEYID)?
            .get(passkey.credential_id.as_slice())?
            .is_some()
        {
            return Err(StoreError::PasskeyAlreadyRegistered);
        }
        write_passkey(&transaction, passkey)?;
        transaction
            .open_table(CREDENTIALID_PASSKEYID)?
            .insert(passkey.credential_id.as_slice(), passkey.id.0)?;
        transaction
            .open_table(USERID_PASSKEYID)?
            .insert((passkey.user_id, passkey.id.0), ())?;
        transaction.commit()?;
        Ok(())
    }

    /// Finishes an assertion in one transaction: the challenge is taken (refused unless it
    /// is open, of `kind`, and, for one user's assertion, that user's), and the passkey's use
    /// recorded: `last_used`, and the credential as the ceremony updated it (its counter,
    /// its backup state), if it did. `PasskeyGone` when the passkey was removed meanwhile.
    /// Answers the passkey as it now stands.
    pub fn finish_passkey_assertion(
        &self,
        challenge_id: PasskeyChallengeId,
        kind: PasskeyChallengeKind,
        passkey_id: PasskeyId,
        updated_credential: Option<Vec<u8>>,
        now: UnixSeconds,
    ) -> Result<Passkey, StoreError> {
        let transaction = self.begin_write()?;
        let Some(mut passkey) = passkey_in(&transaction, passkey_id)? else {
            return Err(StoreError::PasskeyGone);
        };
        let challenge_user = match kind {
            PasskeyChallengeKind::DiscoverableSignIn => None,
            PasskeyChallengeKind::Registration | PasskeyChallengeKind::UserAssertion => {
                Some(passkey.user_id)
            }
        };
        take_open_challenge(&transaction, challenge_id, kind, challenge_user, now)?;
        passkey.last_used = Some(now);
        if let Some(credential) = updated_credential {
            passkey.credential = credential;
        }
        write_passkey(&transaction, &passkey)?;
        transaction.commit()?;
        Ok(passkey)
    }

    /// The passkey whose authenticator credential id this is.
    pub fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<Passkey>, StoreError> {
        let transaction = self.begin_read()?;
        let by_credential = transaction.open_table(CREDENTIALID_PASSKEYID)?;
        let Some(id) = by_credential.get(credential_id)?.map(|guard| guard.value()) else {
            return Ok(None);
        };
        let passkeys = transaction.open_table(PASSKEYID_PASSKEY)?;
        let Some(bytes) = passkeys.get(id)? else {
            return Ok(None);
        };
        let record: PasskeyRecord = decode(bytes.value(), "passkey")?;
        Ok(Some(record.into_passkey(PasskeyId(id))?))
    }

    /// The user's passkeys, oldest first.
    pub fn passkeys_of_user(&self, user_id: UserId) -> Result<Vec<Passkey>, StoreError> {
        let transaction = self.begin_read()?;
        let by_user = transaction.open_table(USERID_PASSKEYID)?;
        let passkeys = transaction.open_table(PASSKEYID_PASSKEY)?;
        let mut found = Vec::new();
        for entry in by_user.range((user_id, 0u128)..=(user_id, u128::MAX))? {
            let id = entry?.0.value().1;
            if let Some(bytes) = passkeys.get(id)? {
                let record: PasskeyRecord = decode(bytes.value(), "passkey")?;
                found.push(record.into_passkey(PasskeyId(id))?);
            }
        }
        found.sort_by(|left, right| {
            left.created
                .cmp(&right.created)
                .then(left.id.cmp(&right.id))
        });
        Ok(found)
    }

    /// How many passkeys the user holds.
    pub fn passkey_count(&self, user_id: UserId) -> Result<usize, StoreError> {
        let transaction = self.begin_read()?;
        count_passkeys_of_user(&transaction.open_table(USERID_PASSKEYID)?, user_id)
    }

    /// Removes one passkey of this user, the requester checked again in the transaction;
    /// `false` when it is not there (or not theirs).
    pub fn delete_passkey_of_user(
        &self,
        user_id: UserId,
        id: PasskeyId,
        requester: &Requester,
    ) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        let owned = passkey_in(&transaction, id)?.is_some_and(|passkey| passkey.user_id == user_id);
        if owned {
            delete_passkey(&transaction, id)?;
        }
        transaction.commit()?;
        Ok(owned)
    }

    /// Removes every passkey of the user (a lost device: `mfa-reset`). How many there were.
    pub fn remove_all_passkeys(&self, user_id: UserId) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let removed = delete_passkeys_of_user(&transaction, user_id)?;
        transaction.commit()?;
        Ok(removed)
    }

    /// Deletes up to `limit` challenges that expired by `now`; returns how many.
    pub fn purge_expired_passkey_challenges(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let purged = purge_expired_challenges(&transaction, now, limit)?;
        transaction.commit()?;
        Ok(purged)
    }
}

/// How many passkeys the user holds, read from the by-user index of either kind of
/// transaction.
pub(super) fn count_passkeys_of_user(
    by_user: &impl ReadableTable<(u64, u128), ()>,
    user_id: UserId,
) -> Result<usize, StoreError> {
    let mut count = 0;
    for entry in by_user.range((user_id, 0u128)..=(user_id, u128::MAX))? {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// Removes every passkey of a user inside a write transaction (its deletion, `mfa-reset`).
pub(super) fn delete_passkeys_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<usize, StoreError> {
    let ids = passkey_ids_of_user(transaction, user_id)?;
    for id in &ids {
        delete_passkey(transaction, *id)?;
    }
    Ok(ids.len())
}

fn passkey_ids_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<Vec<PasskeyId>, StoreError> {
    let by_user = transaction.open_table(USERID_PASSKEYID)?;
    let mut ids = Vec::new();
    for entry in by_user.range((user_id, 0u128)..=(user_id, u128::MAX))? {
        ids.push(PasskeyId(entry?.0.value().1));
    }
    Ok(ids)
}

fn passkey_in(
    transaction: &WriteTransaction,
    id: PasskeyId,
) -> Result<Option<Passkey>, StoreError> {
    let passkeys = transaction.open_table(PASSKEYID_PASSKEY)?;
    let Some(bytes) = passkeys.get(id.0)? else {
        return Ok(None);
    };
    let record: PasskeyRecord = decode(bytes.value(), "passkey")?;
    Ok(Some(record.into_passkey(id)?))
}

fn write_passkey(transaction: &WriteTransaction, passkey: &Passkey) -> Result<(), StoreError> {
    let record = PasskeyRecord::from_passkey(passkey);
    transaction
        .open_table(PASSKEYID_PASSKEY)?
        .insert(passkey.id.0, encode(&record).as_slice())?;
    Ok(())
}

/// Removes a passkey with its two index rows.
fn delete_passkey(transaction: &WriteTransaction, id: PasskeyId) -> Result<(), StoreError> {
    let Some(passkey) = passkey_in(transaction, id)? else {
        return Ok(());
    };
    transaction.open_table(PASSKEYID_PASSKEY)?.remove(id.0)?;
    transaction
        .open_table(CREDENTIALID_PASSKEYID)?
        .remove(passkey.credential_id.as_slice())?;
    transaction
        .open_table(USERID_PASSKEYID)?
        .remove((passkey.user_id, id.0))?;
    Ok(())
}

/// Removes a challenge's rows and answers it, if it was kept.
fn take_challenge_row(
    transaction: &WriteTransaction,
    id: PasskeyChallengeId,
) -> Result<Option<PasskeyChallenge>, StoreError> {
    let removed = transaction
        .open_table(CHALLENGEID_PASSKEYCHALLENGE)?
        .remove(id.0)?
        .map(|bytes| decode::<PasskeyChallengeRecord>(bytes.value(), "passkey challenge"))
        .transpose()?;
    let Some(record) = removed else {
        return Ok(None);
    };
    let challenge = record.into_challenge(id)?;
    transaction
        .open_table(EXPIRE_PASSKEYCHALLENGEID)?
        .remove((challenge.expires_at, id.0))?;
    Ok(Some(challenge))
}

/// Takes the challenge for the ceremony that finishes: it must be kept, of `kind`, for
/// `user_id` (when the kind names a user) and not expired; else the refusal, and the
/// caller's transaction (which is dropped) writes nothing.
fn take_open_challenge(
    transaction: &WriteTransaction,
    id: PasskeyChallengeId,
    kind: PasskeyChallengeKind,
    user_id: Option<UserId>,
    now: UnixSeconds,
) -> Result<PasskeyChallenge, StoreError> {
    let Some(challenge) = take_challenge_row(transaction, id)? else {
        return Err(StoreError::PasskeyChallengeRefused(
            PasskeyChallengeProblem::Unknown,
        ));
    };
    if challenge.kind != kind || challenge.user_id != user_id {
        return Err(StoreError::PasskeyChallengeRefused(
            PasskeyChallengeProblem::Unknown,
        ));
    }
    if challenge.expires_at <= now {
        return Err(StoreError::PasskeyChallengeRefused(
            PasskeyChallengeProblem::Expired,
        ));
    }
    Ok(challenge)
}

fn purge_expired_challenges(
    transaction: &WriteTransaction,
    now: UnixSeconds,
    limit: usize,
) -> Result<usize, StoreError> {
    let expired: Vec<(i64, u128)> = {
        let by_expiry = transaction.open_table(EXPIRE_PASSKEYCHALLENGEID)?;
        let mut keys = Vec::new();
        for entry in by_expiry
            .range((i64::MIN, 0u128)..=(now, u128::MAX))?
            .take(limit)
        {
            keys.push(entry?.0.value());
        }
        keys
    };
    let mut challenges = transaction.open_table(CHALLENGEID_PASSKEYCHALLENGE)?;
    let mut by_expiry = transaction.open_table(EXPIRE_PASSKEYCHALLENGEID)?;
    for (expires_at, id) in &expired {
        challenges.remove(*id)?;
        by_expiry.remove((*expires_at, *id))?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SessionId;
    use crate::store::RequesterCredential;
    use crate::store::redb_backend::test_support::{NOW, add_user, live_session, open_store};

    fn challenge(
        kind: PasskeyChallengeKind,
        user_id: Option<UserId>,
        expires_at: UnixSeconds,
    ) -> PasskeyChallenge {
        PasskeyChallenge {
            id: PasskeyChallengeId::new_random(),
            kind,
            user_id,
            user_handle: user_id.map(u128::from),
            expires_at,
            state: b"{\"state\":1}".to_vec(),
        }
    }

    fn passkey(user_id: UserId, credential_id: &[u8]) -> Passkey {
        Passkey {
            id: PasskeyId::new_random(),
            user_id,
            credential_id: credential_id.to_vec(),
            user_handle: 0x0102,
            name: "Laptop".into(),
            created: NOW,
            last_used: None,
            credential: b"{\"cred\":1}".to_vec(),
        }
    }

    /// A registration's challenge finishes exactly one registration, only for its own
    /// user; an assertion's takes its challenge and records the use; the indexes follow.
    #[test]
    fn a_challenge_finishes_one_ceremony_of_its_kind_and_user() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let owner = add_user(&store, "owner@example.com");
        let other = add_user(&store, "other@example.com");
        let session = live_session(SessionId::new_for_user(owner.id), owner.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .unwrap();
        let requester = Requester {
            user_id: owner.id,
            credential_version: owner.credential_version,
            credential: Some(RequesterCredential::Session(session.id)),
            now: NOW,
        };
        let started = challenge(
            PasskeyChallengeKind::Registration,
            Some(owner.id),
            NOW + 300,
        );
        store.insert_passkey_challenge(&started, 10, NOW).unwrap();
        assert_eq!(
            store.passkey_challenge(started.id).unwrap(),
            Some(started.clone())
        );

        // Another user's passkey cannot use the owner's registration.
        let refused = store.finish_passkey_registration(
            started.id,
            &passkey(other.id, b"other"),
            20,
            &Requester {
                user_id: other.id,
                credential_version: other.credential_version,
                credential: None,
                now: NOW,
            },
        );
        assert!(matches!(
            refused,
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));
        let registered = passkey(owner.id, b"cred-1");
        store
            .finish_passkey_registration(started.id, &registered, 20, &requester)
            .unwrap();
        assert_eq!(store.passkey_challenge(started.id).unwrap(), None);
        // Used once: the same challenge is refused, and writes nothing.
        assert!(matches!(
            store.finish_passkey_registration(
                started.id,
                &passkey(owner.id, b"cred-2"),
                20,
                &requester
            ),
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));
        assert_eq!(
            store.passkeys_of_user(owner.id).unwrap(),
            vec![registered.clone()]
        );
        assert_eq!(
            store.passkey_by_credential_id(b"cred-1").unwrap(),
            Some(registered.clone())
        );

        // The same credential id is nobody's second passkey.
        let again = challenge(
            PasskeyChallengeKind::Registration,
            Some(owner.id),
            NOW + 300,
        );
        store.insert_passkey_challenge(&again, 10, NOW).unwrap();
        assert!(matches!(
            store.finish_passkey_registration(
                again.id,
                &passkey(owner.id, b"cred-1"),
                20,
                &requester
            ),
            Err(StoreError::PasskeyAlreadyRegistered)
        ));
        // The cap: one passkey held, a cap of one refuses the next.
        assert!(matches!(
            store.finish_passkey_registration(
                again.id,
                &passkey(owner.id, b"cred-3"),
                1,
                &requester
            ),
            Err(StoreError::TooManyPasskeys)
        ));

        // An assertion takes a sign-in challenge, not a registration's.
        let sign_in = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 300);
        store.insert_passkey_challenge(&sign_in, 10, NOW).unwrap();
        assert!(matches!(
            store.finish_passkey_assertion(
                again.id,
                PasskeyChallengeKind::DiscoverableSignIn,
                registered.id,
                None,
                NOW + 1
            ),
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));
        let used = store
            .finish_passkey_assertion(
                sign_in.id,
                PasskeyChallengeKind::DiscoverableSignIn,
                registered.id,
                Some(b"{\"cred\":2}".to_vec()),
                NOW + 1,
            )
            .unwrap();
        assert_eq!(used.last_used, Some(NOW + 1));
        assert_eq!(used.credential, b"{\"cred\":2}");
        assert_eq!(store.passkeys_of_user(owner.id).unwrap(), vec![used]);

        // One user's assertion is that user's only.
        let assertion = challenge(
            PasskeyChallengeKind::UserAssertion,
            Some(other.id),
            NOW + 300,
        );
        store.insert_passkey_challenge(&assertion, 10, NOW).unwrap();
        assert!(matches!(
            store.finish_passkey_assertion(
                assertion.id,
                PasskeyChallengeKind::UserAssertion,
                registered.id,
                None,
                NOW + 2
            ),
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));

        // Removal: only the owner's, with both indexes.
        assert!(
            !store
                .delete_passkey_of_user(other.id, registered.id, &requester)
                .unwrap()
        );
        assert!(
            store
                .delete_passkey_of_user(owner.id, registered.id, &requester)
                .unwrap()
        );
        assert_eq!(store.passkey_count(owner.id).unwrap(), 0);
        assert_eq!(store.passkey_by_credential_id(b"cred-1").unwrap(), None);
    }

    /// Expired challenges are refused, purged by the purge, and make room when the table is
    /// full; a full table of live ones refuses a new one.
    #[test]
    fn expired_challenges_are_refused_purged_and_give_way_to_new_ones() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "user@example.com");
        let registered = passkey(user.id, b"cred");
        let registration = challenge(PasskeyChallengeKind::Registration, Some(user.id), NOW + 300);
        store
            .insert_passkey_challenge(&registration, 10, NOW)
            .unwrap();
        store
            .finish_passkey_registration(
                registration.id,
                &registered,
                20,
                &Requester {
                    user_id: user.id,
                    credential_version: user.credential_version,
                    credential: None,
                    now: NOW,
                },
            )
            .unwrap();

        let stale = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 300);
        store.insert_passkey_challenge(&stale, 2, NOW).unwrap();
        assert!(matches!(
            store.finish_passkey_assertion(
                stale.id,
                PasskeyChallengeKind::DiscoverableSignIn,
                registered.id,
                None,
                NOW + 300
            ),
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Expired
            ))
        ));
        let live = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 600);
        store.insert_passkey_challenge(&live, 2, NOW).unwrap();
        // Full with one live and one expired: the expired one makes room.
        let newest = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 900);
        store
            .insert_passkey_challenge(&newest, 2, NOW + 300)
            .unwrap();
        assert_eq!(store.passkey_challenge(stale.id).unwrap(), None);
        // Full with live ones only: refused.
        assert!(matches!(
            store.insert_passkey_challenge(
                &challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 900),
                2,
                NOW + 300
            ),
            Err(StoreError::TooManyPasskeyChallenges)
        ));
        assert_eq!(
            store
                .purge_expired_passkey_challenges(NOW + 600, 100)
                .unwrap(),
            1
        );
        assert_eq!(store.passkey_challenge(live.id).unwrap(), None);
        assert!(store.passkey_challenge(newest.id).unwrap().is_some());
        assert!(store.discard_passkey_challenge(newest.id).unwrap());
        assert!(!store.discard_passkey_challenge(newest.id).unwrap());

        // A user's deletion takes the passkeys with it.
        assert!(store.delete_user_tree(user.id).unwrap());
        assert_eq!(store.passkey_by_credential_id(b"cred").unwrap(), None);
        assert_eq!(store.remove_all_passkeys(user.id).unwrap(), 0);
    }
}
