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
const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, user_handle, name, created, last_used, credential";

/// `passkey_challenges`' columns in the order `passkey_challenge_from_row` reads them.
const PASSKEY_CHALLENGE_COLUMNS: &str = "id, kind, user_id, user_handle, expires_at, state";

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
fn passkey_from_row(row: &Row) -> Result<Passkey, StoreError> {
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
fn passkey_challenge_from_row(row: &Row) -> Result<PasskeyChallenge, StoreError> {
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
