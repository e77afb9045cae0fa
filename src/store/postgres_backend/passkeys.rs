//! Store functions for passkeys and their ceremonies' challenges on PostgreSQL, as
//! `redb_backend/passkeys.rs`: each challenge is taken (deleted) in the very transaction that
//! finishes its ceremony, so that one challenge finishes at most one ceremony however many
//! requests race for it; a credential id is unique in the whole store.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::model::passkey::{
    Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyChallengeProblem,
    PasskeyId,
};
use crate::model::{UnixSeconds, UserId};
use crate::store::Requester;
use crate::store::StoreError;
use crate::store::postgres_backend::rows::{name_from_sql, user_id_from_sql, user_id_to_sql};
use crate::store::postgres_backend::{PostgresStore, begin_write, check_requester};
use crate::store::stored_name::StoredName;

/// Expired challenges a full table purges, at most, before it takes a new one.
const PURGE_WHEN_FULL_ROWS: i64 = 1_000;

/// `passkeys`' columns in the order `passkey_from_row` reads them.
pub(super) const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, user_handle, name, created, last_used, credential";

/// `passkey_challenges`' columns in the order `passkey_challenge_from_row` reads them.
pub(super) const PASSKEY_CHALLENGE_COLUMNS: &str =
    "id, kind, user_id, user_handle, expires_at, state";

impl PostgresStore {
    /// Keeps a started ceremony until it is finished or purged. When `max_open` challenges
    /// are kept already, expired ones are purged first in the same transaction; if that
    /// frees no room, `TooManyPasskeyChallenges`, and nothing is written.
    pub async fn insert_passkey_challenge(
        &self,
        challenge: &PasskeyChallenge,
        max_open: u64,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        if count_open_challenges(&transaction).await? >= max_open {
            purge_expired_challenges(&transaction, now, PURGE_WHEN_FULL_ROWS).await?;
            if count_open_challenges(&transaction).await? >= max_open {
                return Err(StoreError::TooManyPasskeyChallenges);
            }
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO passkey_challenges (id, kind, user_id, user_handle, expires_at, \
                 state) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET kind = $2, user_id = $3, user_handle = $4, \
                 expires_at = $5, state = $6",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &uuid::Uuid::from_u128(challenge.id.0),
                    &challenge.kind.stored_name(),
                    &challenge.user_id.map(user_id_to_sql).transpose()?,
                    &challenge.user_handle.map(uuid::Uuid::from_u128),
                    &challenge.expires_at,
                    &challenge.state,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A kept challenge, expired or not; `None` when it was never made, or is used or
    /// purged.
    pub async fn passkey_challenge(
        &self,
        id: PasskeyChallengeId,
    ) -> Result<Option<PasskeyChallenge>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {PASSKEY_CHALLENGE_COLUMNS} FROM passkey_challenges WHERE id = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&uuid::Uuid::from_u128(id.0)])
            .await?
            .map(|row| passkey_challenge_from_row(&row))
            .transpose()
    }

    /// Deletes a challenge: a ceremony that failed (or expired) uses its challenge up.
    /// Whether it was there.
    pub async fn discard_passkey_challenge(
        &self,
        id: PasskeyChallengeId,
    ) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let taken = take_challenge_row(&transaction, id).await?.is_some();
        transaction.commit().await?;
        Ok(taken)
    }

    /// Finishes a registration in one transaction: the requester is checked again, the
    /// challenge taken (refused unless it is the requester's open registration), the cap
    /// (`TooManyPasskeys`) and the credential id's uniqueness (`PasskeyAlreadyRegistered`)
    /// checked, and the passkey written. On any refusal nothing is written.
    pub async fn finish_passkey_registration(
        &self,
        challenge_id: PasskeyChallengeId,
        passkey: &Passkey,
        max_per_user: usize,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        take_open_challenge(
            &transaction,
            challenge_id,
            PasskeyChallengeKind::Registration,
            Some(passkey.user_id),
            requester.now,
        )
        .await?;
        if count_passkeys_of_user(&transaction, passkey.user_id).await? >= max_per_user {
            return Err(StoreError::TooManyPasskeys);
        }
        let registered = transaction
            .prepare_cached("SELECT 1 FROM passkeys WHERE credential_id = $1")
            .await?;
        if transaction
            .query_opt(&registered, &[&passkey.credential_id])
            .await?
            .is_some()
        {
            return Err(StoreError::PasskeyAlreadyRegistered);
        }
        let insert = transaction
            .prepare_cached(&format!(
                "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &uuid::Uuid::from_u128(passkey.id.0),
                    &user_id_to_sql(passkey.user_id)?,
                    &passkey.credential_id,
                    &uuid::Uuid::from_u128(passkey.user_handle),
                    &passkey.name,
                    &passkey.created,
                    &passkey.last_used,
                    &passkey.credential,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Finishes an assertion in one transaction: the challenge is taken (refused unless it
    /// is open, of `kind`, and, for one user's assertion, that user's), and the passkey's use
    /// recorded: `last_used`, and the credential as the ceremony updated it (its counter,
    /// its backup state), if it did. `PasskeyGone` when the passkey was removed meanwhile.
    /// Answers the passkey as it now stands.
    pub async fn finish_passkey_assertion(
        &self,
        challenge_id: PasskeyChallengeId,
        kind: PasskeyChallengeKind,
        passkey_id: PasskeyId,
        updated_credential: Option<Vec<u8>>,
        now: UnixSeconds,
    ) -> Result<Passkey, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let Some(passkey) = passkey_in(&transaction, passkey_id).await? else {
            return Err(StoreError::PasskeyGone);
        };
        let challenge_user = match kind {
            PasskeyChallengeKind::DiscoverableSignIn => None,
            PasskeyChallengeKind::Registration | PasskeyChallengeKind::UserAssertion => {
                Some(passkey.user_id)
            }
        };
        take_open_challenge(&transaction, challenge_id, kind, challenge_user, now).await?;
        let record_use = transaction
            .prepare_cached(&format!(
                "UPDATE passkeys SET last_used = $2, credential = COALESCE($3, credential) \
                 WHERE id = $1 RETURNING {PASSKEY_COLUMNS}"
            ))
            .await?;
        let row = transaction
            .query_one(
                &record_use,
                &[
                    &uuid::Uuid::from_u128(passkey_id.0),
                    &now,
                    &updated_credential,
                ],
            )
            .await?;
        let used = passkey_from_row(&row)?;
        transaction.commit().await?;
        Ok(used)
    }

    /// The passkey whose authenticator credential id this is.
    pub async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<Passkey>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&credential_id])
            .await?
            .map(|row| passkey_from_row(&row))
            .transpose()
    }

    /// The user's passkeys, oldest first (then by id).
    pub async fn passkeys_of_user(&self, user_id: UserId) -> Result<Vec<Passkey>, StoreError> {
        let client = self.connection().await?;
        // A uuid orders by its bytes, big-endian: as the id's `u128` does.
        let statement = client
            .prepare_cached(&format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created, id"
            ))
            .await?;
        client
            .query(&statement, &[&user_id_to_sql(user_id)?])
            .await?
            .iter()
            .map(passkey_from_row)
            .collect()
    }

    /// How many passkeys the user holds.
    pub async fn passkey_count(&self, user_id: UserId) -> Result<usize, StoreError> {
        let client = self.connection().await?;
        count_passkeys_of_user(&client, user_id).await
    }

    /// Removes one passkey of this user, the requester checked again in the transaction;
    /// `false` when it is not there (or not theirs).
    pub async fn delete_passkey_of_user(
        &self,
        user_id: UserId,
        id: PasskeyId,
        requester: &Requester,
    ) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        let statement = transaction
            .prepare_cached("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .await?;
        let deleted = transaction
            .execute(
                &statement,
                &[&uuid::Uuid::from_u128(id.0), &user_id_to_sql(user_id)?],
            )
            .await?;
        transaction.commit().await?;
        Ok(deleted == 1)
    }

    /// Removes every passkey of the user (a lost device: `mfa-reset`). How many there were.
    pub async fn remove_all_passkeys(&self, user_id: UserId) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached("DELETE FROM passkeys WHERE user_id = $1")
            .await?;
        let removed = transaction
            .execute(&statement, &[&user_id_to_sql(user_id)?])
            .await?;
        transaction.commit().await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    /// Deletes up to `limit` challenges that expired by `now`; returns how many.
    pub async fn purge_expired_passkey_challenges(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let purged =
            purge_expired_challenges(&transaction, now, i64::try_from(limit).unwrap_or(i64::MAX))
                .await?;
        transaction.commit().await?;
        Ok(purged)
    }
}

async fn count_open_challenges(client: &impl GenericClient) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached("SELECT count(*) FROM passkey_challenges")
        .await?;
    let count: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

async fn count_passkeys_of_user(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<usize, StoreError> {
    let statement = client
        .prepare_cached("SELECT count(*) FROM passkeys WHERE user_id = $1")
        .await?;
    let count: i64 = client
        .query_one(&statement, &[&user_id_to_sql(user_id)?])
        .await?
        .try_get(0)?;
    Ok(usize::try_from(count).unwrap_or(0))
}

async fn passkey_in(
    client: &impl GenericClient,
    id: PasskeyId,
) -> Result<Option<Passkey>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&uuid::Uuid::from_u128(id.0)])
        .await?
        .map(|row| passkey_from_row(&row))
        .transpose()
}

/// Deletes a challenge and answers it, if it was kept.
async fn take_challenge_row(
    client: &impl GenericClient,
    id: PasskeyChallengeId,
) -> Result<Option<PasskeyChallenge>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "DELETE FROM passkey_challenges WHERE id = $1 RETURNING {PASSKEY_CHALLENGE_COLUMNS}"
        ))
        .await?;
    client
        .query_opt(&statement, &[&uuid::Uuid::from_u128(id.0)])
        .await?
        .map(|row| passkey_challenge_from_row(&row))
        .transpose()
}

/// Takes the challenge for the ceremony that finishes: it must be kept, of `kind`, for
/// `user_id` (when the kind names a user) and not expired; else the refusal, and the
/// caller's transaction (which is dropped) writes nothing.
async fn take_open_challenge(
    client: &impl GenericClient,
    id: PasskeyChallengeId,
    kind: PasskeyChallengeKind,
    user_id: Option<UserId>,
    now: UnixSeconds,
) -> Result<PasskeyChallenge, StoreError> {
    let Some(challenge) = take_challenge_row(client, id).await? else {
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

/// Deletes up to `limit` challenges that expired by `now`, earliest expiry first.
async fn purge_expired_challenges(
    client: &impl GenericClient,
    now: UnixSeconds,
    limit: i64,
) -> Result<usize, StoreError> {
    let statement = client
        .prepare_cached(
            "DELETE FROM passkey_challenges WHERE id IN \
             (SELECT id FROM passkey_challenges WHERE expires_at <= $1 \
              ORDER BY expires_at, id LIMIT $2)",
        )
        .await?;
    let purged = client.execute(&statement, &[&now, &limit]).await?;
    Ok(usize::try_from(purged).unwrap_or(usize::MAX))
}

/// The passkey whose `PASSKEY_COLUMNS` are the row's.
pub(super) fn passkey_from_row(row: &Row) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        id: PasskeyId(row.try_get::<_, uuid::Uuid>(0)?.as_u128()),
        user_id: user_id_from_sql(row.try_get(1)?)?,
        credential_id: row.try_get(2)?,
        user_handle: row.try_get::<_, uuid::Uuid>(3)?.as_u128(),
        name: row.try_get(4)?,
        created: row.try_get(5)?,
        last_used: row.try_get(6)?,
        credential: row.try_get(7)?,
    })
}

/// The challenge whose `PASSKEY_CHALLENGE_COLUMNS` are the row's.
pub(super) fn passkey_challenge_from_row(row: &Row) -> Result<PasskeyChallenge, StoreError> {
    let user_id: Option<i64> = row.try_get(2)?;
    let user_handle: Option<uuid::Uuid> = row.try_get(3)?;
    Ok(PasskeyChallenge {
        id: PasskeyChallengeId(row.try_get::<_, uuid::Uuid>(0)?.as_u128()),
        kind: name_from_sql::<PasskeyChallengeKind>(row.try_get(1)?, "passkey challenge")?,
        user_id: user_id.map(user_id_from_sql).transpose()?,
        user_handle: user_handle.map(|handle| handle.as_u128()),
        expires_at: row.try_get(4)?,
        state: row.try_get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SessionId;
    use crate::store::RequesterCredential;
    use crate::store::postgres_backend::second_factors::delete_second_factors_of_user;
    use crate::store::postgres_backend::test_support::{
        NOW, add_session, add_user, fresh_store, live_session,
    };

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

    fn requester_of(user: &crate::model::User) -> Requester {
        Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now: NOW,
        }
    }

    /// A registration's challenge finishes exactly one registration, only for its own
    /// user; an assertion's takes its challenge and records the use.
    #[tokio::test]
    async fn a_challenge_finishes_one_ceremony_of_its_kind_and_user() {
        let store = fresh_store().await;
        let owner = add_user(&store, "owner@example.com").await;
        let other = add_user(&store, "other@example.com").await;
        let session = live_session(SessionId::new_for_user(owner.id), owner.id);
        add_session(&store, &session).await;
        let requester = Requester {
            credential: Some(RequesterCredential::Session(session.id)),
            ..requester_of(&owner)
        };
        let started = challenge(
            PasskeyChallengeKind::Registration,
            Some(owner.id),
            NOW + 300,
        );
        store
            .insert_passkey_challenge(&started, 10, NOW)
            .await
            .unwrap();
        assert_eq!(
            store.passkey_challenge(started.id).await.unwrap(),
            Some(started.clone())
        );

        // Another user's passkey cannot use the owner's registration; the refusal writes
        // nothing, so the challenge is still there for its owner.
        let refused = store
            .finish_passkey_registration(
                started.id,
                &passkey(other.id, b"other"),
                20,
                &requester_of(&other),
            )
            .await;
        assert!(matches!(
            refused,
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));
        assert!(store.passkey_challenge(started.id).await.unwrap().is_some());
        assert_eq!(store.passkey_count(other.id).await.unwrap(), 0);
        let registered = passkey(owner.id, b"cred-1");
        store
            .finish_passkey_registration(started.id, &registered, 20, &requester)
            .await
            .unwrap();
        assert_eq!(store.passkey_challenge(started.id).await.unwrap(), None);
        // Used once: the same challenge is refused, and writes nothing.
        assert!(matches!(
            store
                .finish_passkey_registration(
                    started.id,
                    &passkey(owner.id, b"cred-2"),
                    20,
                    &requester
                )
                .await,
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));
        assert_eq!(
            store.passkeys_of_user(owner.id).await.unwrap(),
            vec![registered.clone()]
        );
        assert_eq!(
            store.passkey_by_credential_id(b"cred-1").await.unwrap(),
            Some(registered.clone())
        );

        // The same credential id is nobody's second passkey.
        let again = challenge(
            PasskeyChallengeKind::Registration,
            Some(owner.id),
            NOW + 300,
        );
        store
            .insert_passkey_challenge(&again, 10, NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .finish_passkey_registration(
                    again.id,
                    &passkey(owner.id, b"cred-1"),
                    20,
                    &requester
                )
                .await,
            Err(StoreError::PasskeyAlreadyRegistered)
        ));
        // The cap: one passkey held, a cap of one refuses the next.
        assert!(matches!(
            store
                .finish_passkey_registration(again.id, &passkey(owner.id, b"cred-3"), 1, &requester)
                .await,
            Err(StoreError::TooManyPasskeys)
        ));
        assert_eq!(store.passkey_count(owner.id).await.unwrap(), 1);

        // An assertion takes a sign-in challenge, not a registration's.
        let sign_in = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 300);
        store
            .insert_passkey_challenge(&sign_in, 10, NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .finish_passkey_assertion(
                    again.id,
                    PasskeyChallengeKind::DiscoverableSignIn,
                    registered.id,
                    None,
                    NOW + 1
                )
                .await,
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
            .await
            .unwrap();
        assert_eq!(used.last_used, Some(NOW + 1));
        assert_eq!(used.credential, b"{\"cred\":2}");
        assert_eq!(store.passkeys_of_user(owner.id).await.unwrap(), vec![used]);
        assert_eq!(store.passkey_challenge(sign_in.id).await.unwrap(), None);

        // An assertion without an updated credential keeps the stored one.
        let user_assertion = challenge(
            PasskeyChallengeKind::UserAssertion,
            Some(owner.id),
            NOW + 300,
        );
        store
            .insert_passkey_challenge(&user_assertion, 10, NOW)
            .await
            .unwrap();
        let used_again = store
            .finish_passkey_assertion(
                user_assertion.id,
                PasskeyChallengeKind::UserAssertion,
                registered.id,
                None,
                NOW + 2,
            )
            .await
            .unwrap();
        assert_eq!(used_again.last_used, Some(NOW + 2));
        assert_eq!(used_again.credential, b"{\"cred\":2}");

        // One user's assertion is that user's only.
        let assertion = challenge(
            PasskeyChallengeKind::UserAssertion,
            Some(other.id),
            NOW + 300,
        );
        store
            .insert_passkey_challenge(&assertion, 10, NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .finish_passkey_assertion(
                    assertion.id,
                    PasskeyChallengeKind::UserAssertion,
                    registered.id,
                    None,
                    NOW + 3
                )
                .await,
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Unknown
            ))
        ));

        // Removal: only the owner's, and only for a current requester.
        assert!(
            !store
                .delete_passkey_of_user(other.id, registered.id, &requester)
                .await
                .unwrap()
        );
        assert!(matches!(
            store
                .delete_passkey_of_user(
                    owner.id,
                    registered.id,
                    &Requester {
                        credential_version: owner.credential_version + 1,
                        ..requester
                    }
                )
                .await,
            Err(StoreError::CredentialsChanged)
        ));
        assert!(
            store
                .delete_passkey_of_user(owner.id, registered.id, &requester)
                .await
                .unwrap()
        );
        assert_eq!(store.passkey_count(owner.id).await.unwrap(), 0);
        assert_eq!(
            store.passkey_by_credential_id(b"cred-1").await.unwrap(),
            None
        );
        // An assertion with a passkey removed meanwhile.
        let late = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 300);
        store
            .insert_passkey_challenge(&late, 10, NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .finish_passkey_assertion(
                    late.id,
                    PasskeyChallengeKind::DiscoverableSignIn,
                    registered.id,
                    None,
                    NOW + 4
                )
                .await,
            Err(StoreError::PasskeyGone)
        ));
    }

    /// A credential id registered by one user cannot be registered by another.
    #[tokio::test]
    async fn a_credential_id_is_unique_across_users() {
        let store = fresh_store().await;
        let first = add_user(&store, "first@example.com").await;
        let second = add_user(&store, "second@example.com").await;
        for (user, expected_ok) in [(&first, true), (&second, false)] {
            let started = challenge(PasskeyChallengeKind::Registration, Some(user.id), NOW + 300);
            store
                .insert_passkey_challenge(&started, 10, NOW)
                .await
                .unwrap();
            let result = store
                .finish_passkey_registration(
                    started.id,
                    &passkey(user.id, b"shared"),
                    20,
                    &requester_of(user),
                )
                .await;
            if expected_ok {
                result.unwrap();
            } else {
                assert!(matches!(result, Err(StoreError::PasskeyAlreadyRegistered)));
            }
        }
        assert_eq!(
            store
                .passkey_by_credential_id(b"shared")
                .await
                .unwrap()
                .map(|passkey| passkey.user_id),
            Some(first.id)
        );
        assert_eq!(store.passkey_count(second.id).await.unwrap(), 0);
    }

    /// Oldest first, then by id.
    #[tokio::test]
    async fn a_users_passkeys_come_oldest_first() {
        let store = fresh_store().await;
        let user = add_user(&store, "user@example.com").await;
        let mut expected = Vec::new();
        for (created, credential_id) in [(NOW + 5, b"c".as_slice()), (NOW, b"a"), (NOW + 1, b"b")] {
            let started = challenge(PasskeyChallengeKind::Registration, Some(user.id), NOW + 300);
            store
                .insert_passkey_challenge(&started, 10, NOW)
                .await
                .unwrap();
            let made = Passkey {
                created,
                ..passkey(user.id, credential_id)
            };
            store
                .finish_passkey_registration(started.id, &made, 20, &requester_of(&user))
                .await
                .unwrap();
            expected.push(made);
        }
        expected.sort_by(|left, right| {
            left.created
                .cmp(&right.created)
                .then(left.id.cmp(&right.id))
        });
        assert_eq!(store.passkeys_of_user(user.id).await.unwrap(), expected);
        assert_eq!(store.remove_all_passkeys(user.id).await.unwrap(), 3);
        assert!(store.passkeys_of_user(user.id).await.unwrap().is_empty());
    }

    /// Expired challenges are refused, purged by the purge, and make room when the table is
    /// full; a full table of live ones refuses a new one.
    #[tokio::test]
    async fn expired_challenges_are_refused_purged_and_give_way_to_new_ones() {
        let store = fresh_store().await;
        let user = add_user(&store, "user@example.com").await;
        let registered = passkey(user.id, b"cred");
        let registration = challenge(PasskeyChallengeKind::Registration, Some(user.id), NOW + 300);
        store
            .insert_passkey_challenge(&registration, 10, NOW)
            .await
            .unwrap();
        store
            .finish_passkey_registration(registration.id, &registered, 20, &requester_of(&user))
            .await
            .unwrap();

        let stale = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 300);
        store
            .insert_passkey_challenge(&stale, 2, NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .finish_passkey_assertion(
                    stale.id,
                    PasskeyChallengeKind::DiscoverableSignIn,
                    registered.id,
                    None,
                    NOW + 300
                )
                .await,
            Err(StoreError::PasskeyChallengeRefused(
                PasskeyChallengeProblem::Expired
            ))
        ));
        // The refused assertion recorded no use.
        assert_eq!(
            store
                .passkey_by_credential_id(b"cred")
                .await
                .unwrap()
                .unwrap()
                .last_used,
            None
        );
        let live = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 600);
        store.insert_passkey_challenge(&live, 2, NOW).await.unwrap();
        // Full with one live and one expired: the expired one makes room.
        let newest = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 900);
        store
            .insert_passkey_challenge(&newest, 2, NOW + 300)
            .await
            .unwrap();
        assert_eq!(store.passkey_challenge(stale.id).await.unwrap(), None);
        // Full with live ones only: refused, and nothing written.
        let refused = challenge(PasskeyChallengeKind::DiscoverableSignIn, None, NOW + 900);
        assert!(matches!(
            store.insert_passkey_challenge(&refused, 2, NOW + 300).await,
            Err(StoreError::TooManyPasskeyChallenges)
        ));
        assert_eq!(store.passkey_challenge(refused.id).await.unwrap(), None);
        assert_eq!(
            store
                .purge_expired_passkey_challenges(NOW + 600, 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.passkey_challenge(live.id).await.unwrap(), None);
        assert!(store.passkey_challenge(newest.id).await.unwrap().is_some());
        assert!(store.discard_passkey_challenge(newest.id).await.unwrap());
        assert!(!store.discard_passkey_challenge(newest.id).await.unwrap());

        // Removing the user's second factors (as its deletion does) takes the passkeys.
        let mut client = store.connection().await.unwrap();
        let transaction = begin_write(&mut client).await.unwrap();
        delete_second_factors_of_user(&transaction, user.id)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        assert_eq!(store.passkey_by_credential_id(b"cred").await.unwrap(), None);
        assert_eq!(store.remove_all_passkeys(user.id).await.unwrap(), 0);
    }
}
