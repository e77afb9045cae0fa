//! Store functions for second factors on PostgreSQL: TOTP, recovery codes, mfa-tokens, as
//! `redb_backend/second_factors.rs`. Every write that a code or a recovery code pays for
//! spends it in the same transaction as its effect (under the writer lock), so the same code
//! never works twice; every write on a request's behalf checks its `Requester` there too.

use deadpool_postgres::GenericClient;
use subtle::ConstantTimeEq;
use tokio_postgres::Row;

use crate::model::second_factor::{
    ActiveTotp, FirstFactor, MfaToken, PendingTotp, RECOVERY_CODE_SALT_BYTES, RecoveryCodeSet,
    SecondFactorProof, SecondFactorRefusal, SecondFactorSummary, TOTP_SECRET_BYTES, TotpSecret,
};
use crate::model::{OAuthIdentity, PasswordHashString, UnixSeconds, UserId};
use crate::store::postgres_backend::rows::{
    hash_from_sql, unsigned_from_sql, unsigned_to_sql, user_id_from_sql, user_id_to_sql,
};
use crate::store::postgres_backend::sessions::{SignInTransaction, write_sign_in};
use crate::store::postgres_backend::{PostgresStore, begin_write, check_requester};
use crate::store::{NewSignIn, Requester, StoreError};

/// `mfa_tokens`' columns in the order `mfa_token_from_row` reads them.
pub(super) const MFA_TOKEN_COLUMNS: &str = "hash, user_id, credential_version, first_factor, \
     long_term_token, logout_other, remote_ip, user_agent, replacement_password_hash, created, \
     expires_at, wrong_codes";

impl PostgresStore {
    /// What the user holds, read in one statement (one snapshot).
    pub async fn second_factor_summary(
        &self,
        user_id: UserId,
    ) -> Result<SecondFactorSummary, StoreError> {
        let client = self.connection().await?;
        second_factor_summary_in(&client, user_id).await
    }

    /// The user's active TOTP, if it has one.
    pub async fn active_totp(&self, user_id: UserId) -> Result<Option<ActiveTotp>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(
                "SELECT secret, enabled_at, last_accepted_step FROM active_totp \
                 WHERE user_id = $1",
            )
            .await?;
        let Some(row) = client
            .query_opt(&statement, &[&user_id_to_sql(user_id)?])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(ActiveTotp {
            user_id,
            secret: totp_secret_from_sql(row.try_get(0)?)?,
            enabled_at: row.try_get(1)?,
            last_accepted_step: unsigned_from_sql(row.try_get(2)?, "totp")?,
        }))
    }

    /// The user's pending enrolment, unless there is none or it expired by `now`.
    pub async fn pending_totp(
        &self,
        user_id: UserId,
        now: UnixSeconds,
    ) -> Result<Option<PendingTotp>, StoreError> {
        let client = self.connection().await?;
        let pending = pending_totp_in(&client, user_id).await?;
        Ok(pending.filter(|pending| pending.expires_at > now))
    }

    /// The user's unused recovery codes, as kept; `None` when it never had any.
    pub async fn recovery_codes(
        &self,
        user_id: UserId,
    ) -> Result<Option<RecoveryCodeSet>, StoreError> {
        let client = self.connection().await?;
        recovery_codes_in(&client, user_id).await
    }

    /// Holds a new enrolment, replacing any pending one; refused while TOTP is on.
    pub async fn start_totp_enrolment(
        &self,
        pending: &PendingTotp,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        if totp_is_on(&transaction, pending.user_id).await? {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpAlreadyOn,
            ));
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO pending_totp (user_id, secret, created, expires_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = $2, created = $3, \
                 expires_at = $4",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &user_id_to_sql(pending.user_id)?,
                    &pending.secret.expose_secret().as_slice(),
                    &pending.created,
                    &pending.expires_at,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Turns the pending enrolment whose secret a code just matched into the active TOTP,
    /// with the matched step as the last accepted one, and stores the recovery codes' hashes.
    /// Refused if that enrolment is no longer the pending one (replaced, expired, confirmed).
    pub async fn activate_totp(
        &self,
        secret: &TotpSecret,
        accepted_step: u64,
        recovery_codes: &RecoveryCodeSet,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let user_id = requester.user_id;
        let now = requester.now;
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        let pending = pending_totp_in(&transaction, user_id).await?;
        // `Secret`'s equality compares in constant time.
        let still_pending =
            pending.is_some_and(|pending| pending.expires_at > now && pending.secret == *secret);
        if !still_pending {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::NoPendingTotp,
            ));
        }
        if totp_is_on(&transaction, user_id).await? {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpAlreadyOn,
            ));
        }
        let user_id_sql = user_id_to_sql(user_id)?;
        let delete_pending = transaction
            .prepare_cached("DELETE FROM pending_totp WHERE user_id = $1")
            .await?;
        transaction
            .execute(&delete_pending, &[&user_id_sql])
            .await?;
        let insert_active = transaction
            .prepare_cached(
                "INSERT INTO active_totp (user_id, secret, enabled_at, last_accepted_step) \
                 VALUES ($1, $2, $3, $4)",
            )
            .await?;
        transaction
            .execute(
                &insert_active,
                &[
                    &user_id_sql,
                    &secret.expose_secret().as_slice(),
                    &now,
                    &unsigned_to_sql(accepted_step, "totp")?,
                ],
            )
            .await?;
        write_recovery_codes(&transaction, user_id, recovery_codes).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Turns TOTP off, spending the code or recovery code that proves the device (or its
    /// backup) is at hand: the TOTP, its pending enrolment and the recovery codes go.
    pub async fn disable_totp(
        &self,
        proof: SecondFactorProof,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let user_id = requester.user_id;
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        if !totp_is_on(&transaction, user_id).await? {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff,
            ));
        }
        spend_proof(&transaction, user_id, proof).await?;
        delete_totp_and_recovery_codes(&transaction, user_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Replaces every recovery code of the user; refused while TOTP is off.
    pub async fn replace_recovery_codes(
        &self,
        recovery_codes: &RecoveryCodeSet,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let user_id = requester.user_id;
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        if !totp_is_on(&transaction, user_id).await? {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff,
            ));
        }
        write_recovery_codes(&transaction, user_id, recovery_codes).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Keeps a sign-in awaiting its second factor (replacing one with the same hash).
    pub async fn insert_mfa_token(&self, token: &MfaToken) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "INSERT INTO mfa_tokens (hash, user_id, credential_version, first_factor, \
                 long_term_token, logout_other, remote_ip, user_agent, \
                 replacement_password_hash, created, expires_at, wrong_codes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (hash) DO UPDATE SET user_id = $2, credential_version = $3, \
                 first_factor = $4, long_term_token = $5, logout_other = $6, remote_ip = $7, \
                 user_agent = $8, replacement_password_hash = $9, created = $10, \
                 expires_at = $11, wrong_codes = $12",
            )
            .await?;
        let wrong_codes =
            i32::try_from(token.wrong_codes).map_err(|_| StoreError::CorruptRecord("mfa token"))?;
        transaction
            .execute(
                &statement,
                &[
                    &token.hash.as_slice(),
                    &user_id_to_sql(token.user_id)?,
                    &unsigned_to_sql(token.credential_version, "mfa token")?,
                    &first_factor_to_sql(&token.first_factor),
                    &token.long_term_token,
                    &token.logout_other,
                    &token.remote_ip,
                    &token.user_agent,
                    &token
                        .replacement_password_hash
                        .as_ref()
                        .map(|hash| hash.expose_secret()),
                    &token.created,
                    &token.expires_at,
                    &wrong_codes,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The mfa-token with this hash, unless it is gone or expired by `now`.
    pub async fn mfa_token(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<MfaToken>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {MFA_TOKEN_COLUMNS} FROM mfa_tokens WHERE hash = $1"
            ))
            .await?;
        let Some(row) = client.query_opt(&statement, &[&hash.as_slice()]).await? else {
            return Ok(None);
        };
        let token = mfa_token_from_row(&row)?;
        Ok((token.expires_at > now).then_some(token))
    }

    /// Counts a wrong code against the mfa-token; the token is deleted at `max_wrong_codes`.
    /// Answers whether the token still lives.
    pub async fn record_wrong_second_factor(
        &self,
        hash: &[u8; 32],
        max_wrong_codes: u32,
    ) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        // Saturating (as the redb backend's counter does) at the column's largest value.
        let count = transaction
            .prepare_cached(
                "UPDATE mfa_tokens SET wrong_codes = LEAST(wrong_codes, 2147483646) + 1 \
                 WHERE hash = $1 RETURNING wrong_codes",
            )
            .await?;
        let Some(row) = transaction.query_opt(&count, &[&hash.as_slice()]).await? else {
            return Ok(false);
        };
        let wrong_codes: i32 = row.try_get(0)?;
        let lives = i64::from(wrong_codes) < i64::from(max_wrong_codes);
        if !lives {
            let delete = transaction
                .prepare_cached("DELETE FROM mfa_tokens WHERE hash = $1")
                .await?;
            transaction.execute(&delete, &[&hash.as_slice()]).await?;
        }
        transaction.commit().await?;
        Ok(lives)
    }

    /// The second step of a sign-in: spends the mfa-token and the proof, and writes the
    /// session as `record_sign_in` does, all in one transaction. Refused (nothing written)
    /// when the token is gone or expired, or the proof was spent meanwhile.
    pub async fn record_sign_in_with_second_factor(
        &self,
        sign_in: &NewSignIn,
        mfa_token_hash: &[u8; 32],
        proof: SecondFactorProof,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        let user_id = sign_in.session.user_id;
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let take_token = transaction
            .prepare_cached("DELETE FROM mfa_tokens WHERE hash = $1 RETURNING user_id, expires_at")
            .await?;
        let token = match transaction
            .query_opt(&take_token, &[&mfa_token_hash.as_slice()])
            .await?
        {
            Some(row) => Some((
                user_id_from_sql(row.try_get(0)?)?,
                row.try_get::<_, UnixSeconds>(1)?,
            )),
            None => None,
        };
        let usable = token.is_some_and(|(token_user_id, expires_at)| {
            token_user_id == user_id && expires_at > sign_in.requester.now
        });
        if !usable {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::MfaTokenGone,
            ));
        }
        spend_proof(&transaction, user_id, proof).await?;
        let identities = write_sign_in(&transaction, sign_in, SignInTransaction::Open).await?;
        transaction.commit().await?;
        Ok(identities)
    }

    /// `latchkey user mfa-reset`: removes the user's TOTP (pending or active), recovery
    /// codes and passkeys (with its mfa-tokens and open passkey ceremonies, which nothing
    /// could complete any more). Answers what the user held before.
    pub async fn reset_second_factors(
        &self,
        user_id: UserId,
    ) -> Result<SecondFactorSummary, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let before = second_factor_summary_in(&transaction, user_id).await?;
        delete_second_factors_of_user(&transaction, user_id).await?;
        transaction.commit().await?;
        Ok(before)
    }

    /// Deletes up to `limit` mfa-tokens and up to `limit` pending enrolments that expired by
    /// `now` (in key order, as the redb backend scans them); answers the larger of the two
    /// counts.
    pub async fn purge_expired_second_factor_records(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let purge_tokens = transaction
            .prepare_cached(
                "DELETE FROM mfa_tokens WHERE hash IN \
                 (SELECT hash FROM mfa_tokens WHERE expires_at <= $1 ORDER BY hash LIMIT $2)",
            )
            .await?;
        let purged_tokens = transaction.execute(&purge_tokens, &[&now, &limit]).await?;
        let purge_enrolments = transaction
            .prepare_cached(
                "DELETE FROM pending_totp WHERE user_id IN \
                 (SELECT user_id FROM pending_totp WHERE expires_at <= $1 \
                 ORDER BY user_id LIMIT $2)",
            )
            .await?;
        let purged_enrolments = transaction
            .execute(&purge_enrolments, &[&now, &limit])
            .await?;
        transaction.commit().await?;
        Ok(usize::try_from(purged_tokens.max(purged_enrolments)).unwrap_or(usize::MAX))
    }
}

/// Removes every second factor of a user (`mfa-reset`, and the user's deletion), with its
/// mfa-tokens and open passkey ceremonies: none could be completed, and the user's row
/// cannot go while a row refers to it.
pub(super) async fn delete_second_factors_of_user(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<(), StoreError> {
    let user_id = user_id_to_sql(user_id)?;
    for table in [
        "active_totp",
        "pending_totp",
        "recovery_codes",
        "mfa_tokens",
        "passkeys",
        "passkey_challenges",
    ] {
        let statement = client
            .prepare_cached(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .await?;
        client.execute(&statement, &[&user_id]).await?;
    }
    Ok(())
}

/// What the user holds, in one statement of the caller's client or transaction (nothing, for
/// a user that is not there).
pub(super) async fn second_factor_summary_in(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<SecondFactorSummary, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {} FROM users WHERE id = $1",
            second_factor_summary_columns("users")
        ))
        .await?;
    match client
        .query_opt(&statement, &[&user_id_to_sql(user_id)?])
        .await?
    {
        Some(row) => second_factor_summary_from_row(&row, 0),
        None => Ok(SecondFactorSummary::default()),
    }
}

/// The three columns of `SecondFactorSummary` on the users row that a statement calls
/// `users`: kept by the triggers of schema version 3 (`0003_second_factor_summary.sql`) as
/// the factor tables change. Appended to a token check's statement when it asks for them.
pub(super) fn second_factor_summary_columns(users: &str) -> String {
    format!("{users}.totp_on, {users}.passkey_count, {users}.recovery_codes_left")
}

/// The summary from the three columns `second_factor_summary_columns` put at `first`.
pub(super) fn second_factor_summary_from_row(
    row: &Row,
    first: usize,
) -> Result<SecondFactorSummary, StoreError> {
    let passkeys: i64 = row.try_get(first + 1)?;
    let recovery_codes_left: i32 = row.try_get(first + 2)?;
    Ok(SecondFactorSummary {
        totp: row.try_get(first)?,
        passkeys: usize::try_from(passkeys).map_err(|_| StoreError::CorruptRecord("passkey"))?,
        recovery_codes_left: usize::try_from(recovery_codes_left)
            .map_err(|_| StoreError::CorruptRecord("recovery codes"))?,
    })
}

async fn totp_is_on(client: &impl GenericClient, user_id: UserId) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached("SELECT 1 FROM active_totp WHERE user_id = $1")
        .await?;
    Ok(client
        .query_opt(&statement, &[&user_id_to_sql(user_id)?])
        .await?
        .is_some())
}

/// The user's pending enrolment as kept, expired or not.
async fn pending_totp_in(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<Option<PendingTotp>, StoreError> {
    let statement = client
        .prepare_cached("SELECT secret, created, expires_at FROM pending_totp WHERE user_id = $1")
        .await?;
    let Some(row) = client
        .query_opt(&statement, &[&user_id_to_sql(user_id)?])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(PendingTotp {
        user_id,
        secret: totp_secret_from_sql(row.try_get(0)?)?,
        created: row.try_get(1)?,
        expires_at: row.try_get(2)?,
    }))
}

async fn recovery_codes_in(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<Option<RecoveryCodeSet>, StoreError> {
    let statement = client
        .prepare_cached("SELECT salt, hashes FROM recovery_codes WHERE user_id = $1")
        .await?;
    client
        .query_opt(&statement, &[&user_id_to_sql(user_id)?])
        .await?
        .map(|row| recovery_code_set_from_sql(row.try_get(0)?, row.try_get(1)?))
        .transpose()
}

/// Writes the user's recovery codes whole, replacing any it held.
async fn write_recovery_codes(
    client: &impl GenericClient,
    user_id: UserId,
    recovery_codes: &RecoveryCodeSet,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO recovery_codes (user_id, salt, hashes) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET salt = $2, hashes = $3",
        )
        .await?;
    let hashes: Vec<&[u8]> = recovery_codes
        .hashes
        .iter()
        .map(|hash| hash.as_slice())
        .collect();
    client
        .execute(
            &statement,
            &[
                &user_id_to_sql(user_id)?,
                &recovery_codes.salt.as_slice(),
                &hashes,
            ],
        )
        .await?;
    Ok(())
}

async fn delete_totp_and_recovery_codes(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<(), StoreError> {
    let user_id = user_id_to_sql(user_id)?;
    for table in ["active_totp", "pending_totp", "recovery_codes"] {
        let statement = client
            .prepare_cached(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .await?;
        client.execute(&statement, &[&user_id]).await?;
    }
    Ok(())
}

/// Spends a proof inside a write: a TOTP step must be later than the last accepted one
/// (which it becomes); a recovery code must still be held (and goes). Every held hash is
/// compared, each in constant time, so the time taken does not tell which one matched.
async fn spend_proof(
    client: &impl GenericClient,
    user_id: UserId,
    proof: SecondFactorProof,
) -> Result<(), StoreError> {
    match proof {
        // The assertion's challenge was taken, and the passkey's counter written, by the
        // write that verified it: only the mfa-token is left to spend.
        SecondFactorProof::PasskeyAsserted => Ok(()),
        SecondFactorProof::TotpStep(step) => {
            let statement = client
                .prepare_cached(
                    "UPDATE active_totp SET last_accepted_step = $2 \
                     WHERE user_id = $1 AND last_accepted_step < $2",
                )
                .await?;
            let spent = client
                .execute(
                    &statement,
                    &[&user_id_to_sql(user_id)?, &unsigned_to_sql(step, "totp")?],
                )
                .await?;
            if spent == 1 {
                Ok(())
            } else {
                Err(StoreError::SecondFactorRefused(
                    SecondFactorRefusal::CodeSpent,
                ))
            }
        }
        SecondFactorProof::RecoveryCode(presented) => {
            let Some(mut left) = recovery_codes_in(client, user_id).await? else {
                return Err(StoreError::SecondFactorRefused(
                    SecondFactorRefusal::RecoveryCodeSpent,
                ));
            };
            let mut matched = None;
            for (index, held) in left.hashes.iter().enumerate() {
                if bool::from(held.ct_eq(&presented)) {
                    matched = Some(index);
                }
            }
            let Some(index) = matched else {
                return Err(StoreError::SecondFactorRefused(
                    SecondFactorRefusal::RecoveryCodeSpent,
                ));
            };
            left.hashes.remove(index);
            write_recovery_codes(client, user_id, &left).await
        }
    }
}

pub(super) fn totp_secret_from_sql(bytes: &[u8]) -> Result<TotpSecret, StoreError> {
    let secret: [u8; TOTP_SECRET_BYTES] = bytes
        .try_into()
        .map_err(|_| StoreError::CorruptRecord("totp"))?;
    Ok(TotpSecret::new(secret))
}

pub(super) fn recovery_code_set_from_sql(
    salt: &[u8],
    hashes: Vec<Vec<u8>>,
) -> Result<RecoveryCodeSet, StoreError> {
    let salt: [u8; RECOVERY_CODE_SALT_BYTES] = salt
        .try_into()
        .map_err(|_| StoreError::CorruptRecord("recovery codes"))?;
    let hashes = hashes
        .iter()
        .map(|hash| hash_from_sql(hash, "recovery codes"))
        .collect::<Result<_, _>>()?;
    Ok(RecoveryCodeSet { salt, hashes })
}

/// `password`, or the provider's name after `oauth:`.
pub(super) fn first_factor_to_sql(first_factor: &FirstFactor) -> String {
    match first_factor {
        FirstFactor::Password => "password".to_owned(),
        FirstFactor::OAuth { provider } => format!("oauth:{provider}"),
    }
}

fn first_factor_from_sql(text: &str) -> Result<FirstFactor, StoreError> {
    if text == "password" {
        return Ok(FirstFactor::Password);
    }
    match text.strip_prefix("oauth:") {
        Some(provider) => Ok(FirstFactor::OAuth {
            provider: provider.to_owned(),
        }),
        None => Err(StoreError::CorruptRecord("mfa token")),
    }
}

/// The mfa-token whose `MFA_TOKEN_COLUMNS` are the row's.
pub(super) fn mfa_token_from_row(row: &Row) -> Result<MfaToken, StoreError> {
    let wrong_codes: i32 = row.try_get(11)?;
    Ok(MfaToken {
        hash: hash_from_sql(row.try_get(0)?, "mfa token")?,
        user_id: user_id_from_sql(row.try_get(1)?)?,
        credential_version: unsigned_from_sql(row.try_get(2)?, "mfa token")?,
        first_factor: first_factor_from_sql(row.try_get(3)?)?,
        long_term_token: row.try_get(4)?,
        logout_other: row.try_get(5)?,
        remote_ip: row.try_get(6)?,
        user_agent: row.try_get(7)?,
        replacement_password_hash: row
            .try_get::<_, Option<String>>(8)?
            .map(PasswordHashString::new),
        created: row.try_get(9)?,
        expires_at: row.try_get(10)?,
        wrong_codes: u32::try_from(wrong_codes)
            .map_err(|_| StoreError::CorruptRecord("mfa token"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::passkey::{
        Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyId,
    };
    use crate::model::{SessionId, User};
    use crate::store::postgres_backend::test_support::{NOW, add_user, fresh_store, live_session};

    fn requester_for(user: &User, now: UnixSeconds) -> Requester {
        Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now,
        }
    }

    fn codes(hashes: &[[u8; 32]]) -> RecoveryCodeSet {
        RecoveryCodeSet {
            salt: [4; 16],
            hashes: hashes.to_vec(),
        }
    }

    fn mfa_token(user_id: UserId, hash_byte: u8) -> MfaToken {
        MfaToken {
            hash: [hash_byte; 32],
            user_id,
            credential_version: 0,
            first_factor: FirstFactor::OAuth {
                provider: "idp".to_owned(),
            },
            long_term_token: false,
            logout_other: false,
            remote_ip: "127.0.0.1".to_owned(),
            user_agent: "test".to_owned(),
            replacement_password_hash: Some(PasswordHashString::new("$argon2id$r".to_owned())),
            created: NOW,
            expires_at: NOW + 300,
            wrong_codes: 0,
        }
    }

    fn sign_in_of(user: &User) -> NewSignIn {
        NewSignIn {
            refuse_if_second_factor_held: false,
            session: live_session(SessionId::new_for_user(user.id), user.id),
            requester: requester_for(user, NOW),
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        }
    }

    async fn start_and_activate(
        store: &PostgresStore,
        user: &User,
        secret_byte: u8,
        step: u64,
        recovery_codes: &RecoveryCodeSet,
    ) {
        let requester = requester_for(user, NOW);
        let secret = TotpSecret::new([secret_byte; 20]);
        store
            .start_totp_enrolment(
                &PendingTotp {
                    user_id: user.id,
                    secret,
                    created: NOW,
                    expires_at: NOW + 600,
                },
                &requester,
            )
            .await
            .unwrap();
        store
            .activate_totp(&secret, step, recovery_codes, &requester)
            .await
            .unwrap();
    }

    async fn add_passkey(store: &PostgresStore, user: &User, credential_id: &[u8]) {
        let challenge = PasskeyChallenge {
            id: PasskeyChallengeId::new_random(),
            kind: PasskeyChallengeKind::Registration,
            user_id: Some(user.id),
            user_handle: Some(1),
            expires_at: NOW + 300,
            state: b"{}".to_vec(),
        };
        store
            .insert_passkey_challenge(&challenge, 10, NOW)
            .await
            .unwrap();
        let passkey = Passkey {
            id: PasskeyId::new_random(),
            user_id: user.id,
            credential_id: credential_id.to_vec(),
            user_handle: 1,
            name: "Laptop".into(),
            created: NOW,
            last_used: None,
            credential: b"{}".to_vec(),
        };
        store
            .finish_passkey_registration(challenge.id, &passkey, 20, &requester_for(user, NOW))
            .await
            .unwrap();
    }

    /// The summary on the users row (schema version 3's triggers) against a count of the
    /// factor tables' rows.
    async fn assert_summary_is_the_count(
        store: &PostgresStore,
        user: &User,
        expected: (bool, usize, usize),
    ) {
        let kept = store.second_factor_summary(user.id).await.unwrap();
        let client = store.connection().await.unwrap();
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM active_totp WHERE user_id = $1), \
                 (SELECT count(*) FROM passkeys WHERE user_id = $1), \
                 COALESCE((SELECT cardinality(hashes) FROM recovery_codes WHERE user_id = $1), 0)",
                &[&user_id_to_sql(user.id).unwrap()],
            )
            .await
            .unwrap();
        let counted = second_factor_summary_from_row(&row, 0).unwrap();
        assert_eq!(kept, counted);
        assert_eq!(
            (kept.totp, kept.passkeys, kept.recovery_codes_left),
            expected
        );
    }

    /// Every write that changes a second factor leaves the summary on the user's row equal
    /// to a count of the factor tables: enrolment, a spent recovery code, new codes, passkeys
    /// added and removed, TOTP turned off, and the reset; another user's stays as it was.
    #[tokio::test]
    async fn the_summary_on_the_users_row_follows_every_second_factor_write() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        let bystander = add_user(&store, "bob@example.com").await;
        add_passkey(&store, &bystander, b"bob's").await;
        assert_summary_is_the_count(&store, &user, (false, 0, 0)).await;

        start_and_activate(&store, &user, 7, 10, &codes(&[[1; 32], [2; 32], [3; 32]])).await;
        assert_summary_is_the_count(&store, &user, (true, 0, 3)).await;
        let mfa = mfa_token(user.id, 9);
        store.insert_mfa_token(&mfa).await.unwrap();
        store
            .record_sign_in_with_second_factor(
                &sign_in_of(&user),
                &mfa.hash,
                SecondFactorProof::RecoveryCode([2; 32]),
            )
            .await
            .unwrap();
        assert_summary_is_the_count(&store, &user, (true, 0, 2)).await;
        let requester = requester_for(&user, NOW);
        store
            .replace_recovery_codes(&codes(&[[4; 32]; 10]), &requester)
            .await
            .unwrap();
        assert_summary_is_the_count(&store, &user, (true, 0, 10)).await;

        add_passkey(&store, &user, b"first").await;
        add_passkey(&store, &user, b"second").await;
        assert_summary_is_the_count(&store, &user, (true, 2, 10)).await;
        let first = store.passkeys_of_user(user.id).await.unwrap()[0].id;
        assert!(
            store
                .delete_passkey_of_user(user.id, first, &requester)
                .await
                .unwrap()
        );
        assert_summary_is_the_count(&store, &user, (true, 1, 10)).await;

        store
            .disable_totp(SecondFactorProof::TotpStep(11), &requester)
            .await
            .unwrap();
        assert_summary_is_the_count(&store, &user, (false, 1, 0)).await;
        store.reset_second_factors(user.id).await.unwrap();
        assert_summary_is_the_count(&store, &user, (false, 0, 0)).await;
        assert_summary_is_the_count(&store, &bystander, (false, 1, 0)).await;
    }

    /// A first factor alone is refused inside the sign-in's write once the user holds a
    /// second factor, however late the enrolment committed, and nothing is written; before
    /// that, the write answers the user's linked identities.
    #[tokio::test]
    async fn a_first_factor_alone_is_refused_in_the_write_once_a_second_factor_is_held() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        store
            .link_identity("idp", "ada-at-idp", user.id, |_| true, NOW)
            .await
            .unwrap();
        let before = NewSignIn {
            refuse_if_second_factor_held: true,
            ..sign_in_of(&user)
        };
        let identities = store.record_sign_in(&before).await.unwrap();
        let subjects: Vec<&str> = identities.iter().map(|one| one.subject.as_str()).collect();
        assert_eq!(subjects, ["ada-at-idp"]);

        start_and_activate(&store, &user, 7, 10, &codes(&[[1; 32]])).await;
        let after = NewSignIn {
            refuse_if_second_factor_held: true,
            ..sign_in_of(&user)
        };
        let held = SecondFactorSummary {
            totp: true,
            passkeys: 0,
            recovery_codes_left: 1,
        };
        assert!(matches!(
            store.record_sign_in(&after).await,
            Err(StoreError::SecondFactorHeld(summary)) if summary == held
        ));
        assert!(store.session(after.session.id).await.unwrap().is_none());
        // A completed second step asks for no such refusal.
        let completed = sign_in_of(&user);
        store.record_sign_in(&completed).await.unwrap();
        assert!(store.session(completed.session.id).await.unwrap().is_some());
    }

    /// Enrolment, a step spent once, a recovery code spent once, and the mfa-token spent
    /// once: each second use is refused inside the transaction and writes nothing.
    #[tokio::test]
    async fn codes_recovery_codes_and_mfa_tokens_are_each_spent_once() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        let requester = requester_for(&user, NOW);
        let secret = TotpSecret::new([7; 20]);
        let pending = PendingTotp {
            user_id: user.id,
            secret,
            created: NOW,
            expires_at: NOW + 600,
        };
        store
            .start_totp_enrolment(&pending, &requester)
            .await
            .unwrap();
        let kept = store.pending_totp(user.id, NOW).await.unwrap().unwrap();
        assert_eq!(kept.secret, secret);
        assert_eq!((kept.created, kept.expires_at), (NOW, NOW + 600));
        assert!(
            store
                .pending_totp(user.id, NOW + 600)
                .await
                .unwrap()
                .is_none()
        );
        // A replaced enrolment's secret activates nothing.
        assert!(matches!(
            store
                .activate_totp(&TotpSecret::new([8; 20]), 10, &codes(&[]), &requester)
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::NoPendingTotp
            ))
        ));
        // Nor does an expired enrolment.
        assert!(matches!(
            store
                .activate_totp(&secret, 10, &codes(&[]), &requester_for(&user, NOW + 600))
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::NoPendingTotp
            ))
        ));
        store
            .activate_totp(&secret, 10, &codes(&[[1; 32], [2; 32]]), &requester)
            .await
            .unwrap();
        let active = store.active_totp(user.id).await.unwrap().unwrap();
        assert_eq!(active.secret, secret);
        assert_eq!((active.enabled_at, active.last_accepted_step), (NOW, 10));
        assert!(store.pending_totp(user.id, NOW).await.unwrap().is_none());
        assert_eq!(
            store.second_factor_summary(user.id).await.unwrap(),
            SecondFactorSummary {
                totp: true,
                passkeys: 0,
                recovery_codes_left: 2
            }
        );
        assert!(matches!(
            store.start_totp_enrolment(&pending, &requester).await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpAlreadyOn
            ))
        ));

        store
            .insert_mfa_token(&mfa_token(user.id, 5))
            .await
            .unwrap();
        let token = store.mfa_token(&[5; 32], NOW).await.unwrap().unwrap();
        assert_eq!(
            token.first_factor,
            FirstFactor::OAuth {
                provider: "idp".to_owned()
            }
        );
        assert_eq!(token.user_id, user.id);
        assert_eq!(
            token
                .replacement_password_hash
                .as_ref()
                .map(|hash| hash.expose_secret().to_owned()),
            Some("$argon2id$r".to_owned())
        );
        assert!(
            store
                .mfa_token(&[5; 32], NOW + 300)
                .await
                .unwrap()
                .is_none()
        );
        // The step of the confirming code is spent already.
        assert!(matches!(
            store
                .record_sign_in_with_second_factor(
                    &sign_in_of(&user),
                    &[5; 32],
                    SecondFactorProof::TotpStep(10)
                )
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::CodeSpent
            ))
        ));
        assert!(store.mfa_token(&[5; 32], NOW).await.unwrap().is_some());
        let first = sign_in_of(&user);
        store
            .record_sign_in_with_second_factor(&first, &[5; 32], SecondFactorProof::TotpStep(11))
            .await
            .unwrap();
        assert!(store.session(first.session.id).await.unwrap().is_some());
        assert_eq!(
            store
                .active_totp(user.id)
                .await
                .unwrap()
                .unwrap()
                .last_accepted_step,
            11
        );
        assert!(matches!(
            store
                .record_sign_in_with_second_factor(
                    &sign_in_of(&user),
                    &[5; 32],
                    SecondFactorProof::TotpStep(12)
                )
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::MfaTokenGone
            ))
        ));

        store
            .insert_mfa_token(&mfa_token(user.id, 6))
            .await
            .unwrap();
        store
            .record_sign_in_with_second_factor(
                &sign_in_of(&user),
                &[6; 32],
                SecondFactorProof::RecoveryCode([2; 32]),
            )
            .await
            .unwrap();
        assert_eq!(
            store.recovery_codes(user.id).await.unwrap(),
            Some(codes(&[[1; 32]]))
        );
        store
            .insert_mfa_token(&mfa_token(user.id, 7))
            .await
            .unwrap();
        assert!(matches!(
            store
                .record_sign_in_with_second_factor(
                    &sign_in_of(&user),
                    &[7; 32],
                    SecondFactorProof::RecoveryCode([2; 32])
                )
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::RecoveryCodeSpent
            ))
        ));

        // Wrong codes kill the token at the limit.
        assert!(store.record_wrong_second_factor(&[7; 32], 2).await.unwrap());
        assert_eq!(
            store
                .mfa_token(&[7; 32], NOW)
                .await
                .unwrap()
                .unwrap()
                .wrong_codes,
            1
        );
        assert!(!store.record_wrong_second_factor(&[7; 32], 2).await.unwrap());
        assert!(store.mfa_token(&[7; 32], NOW).await.unwrap().is_none());
        assert!(!store.record_wrong_second_factor(&[7; 32], 2).await.unwrap());

        // Turning TOTP off spends its proof and removes everything.
        assert!(matches!(
            store
                .disable_totp(SecondFactorProof::TotpStep(11), &requester)
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::CodeSpent
            ))
        ));
        store
            .disable_totp(SecondFactorProof::RecoveryCode([1; 32]), &requester)
            .await
            .unwrap();
        assert_eq!(
            store.second_factor_summary(user.id).await.unwrap(),
            SecondFactorSummary::default()
        );
        assert!(store.active_totp(user.id).await.unwrap().is_none());
        assert_eq!(store.recovery_codes(user.id).await.unwrap(), None);
        assert!(matches!(
            store
                .replace_recovery_codes(&codes(&[[3; 32]]), &requester)
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff
            ))
        ));
        assert!(matches!(
            store
                .disable_totp(SecondFactorProof::TotpStep(100), &requester)
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff
            ))
        ));
    }

    #[tokio::test]
    async fn a_password_change_since_the_first_step_leaves_the_second_step_nothing() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        start_and_activate(&store, &user, 7, 10, &codes(&[])).await;
        store
            .insert_mfa_token(&mfa_token(user.id, 5))
            .await
            .unwrap();
        store
            .change_password(
                None,
                user.id,
                &PasswordHashString::new("$argon2id$changed".to_owned()),
                crate::store::SessionsToEnd::All,
                false,
                NOW,
            )
            .await
            .unwrap();
        let sign_in = sign_in_of(&user);
        assert!(matches!(
            store
                .record_sign_in_with_second_factor(
                    &sign_in,
                    &[5; 32],
                    SecondFactorProof::TotpStep(11)
                )
                .await,
            Err(StoreError::CredentialsChanged)
        ));
        // Nothing was spent: the step is still usable and the token still there.
        assert_eq!(
            store
                .active_totp(user.id)
                .await
                .unwrap()
                .unwrap()
                .last_accepted_step,
            10
        );
        assert!(store.mfa_token(&[5; 32], NOW).await.unwrap().is_some());
        assert!(store.session(sign_in.session.id).await.unwrap().is_none());
    }

    /// A token is its own user's, and dead once expired: either way nothing is spent.
    #[tokio::test]
    async fn another_users_or_an_expired_mfa_token_signs_nobody_in() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        let other = add_user(&store, "bob@example.com").await;
        start_and_activate(&store, &user, 7, 10, &codes(&[[1; 32]])).await;
        store
            .insert_mfa_token(&mfa_token(other.id, 5))
            .await
            .unwrap();
        assert!(matches!(
            store
                .record_sign_in_with_second_factor(
                    &sign_in_of(&user),
                    &[5; 32],
                    SecondFactorProof::TotpStep(11)
                )
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::MfaTokenGone
            ))
        ));
        assert!(store.mfa_token(&[5; 32], NOW).await.unwrap().is_some());
        store
            .insert_mfa_token(&mfa_token(user.id, 6))
            .await
            .unwrap();
        let late = NewSignIn {
            requester: requester_for(&user, NOW + 300),
            ..sign_in_of(&user)
        };
        assert!(matches!(
            store
                .record_sign_in_with_second_factor(
                    &late,
                    &[6; 32],
                    SecondFactorProof::RecoveryCode([1; 32])
                )
                .await,
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::MfaTokenGone
            ))
        ));
        assert_eq!(
            store.recovery_codes(user.id).await.unwrap(),
            Some(codes(&[[1; 32]]))
        );
        assert!(store.session(late.session.id).await.unwrap().is_none());
        // A passkey proof spends only the token (the assertion spent its challenge).
        let with_passkey = sign_in_of(&user);
        store
            .insert_mfa_token(&MfaToken {
                first_factor: FirstFactor::Password,
                ..mfa_token(user.id, 8)
            })
            .await
            .unwrap();
        assert_eq!(
            store
                .mfa_token(&[8; 32], NOW)
                .await
                .unwrap()
                .unwrap()
                .first_factor,
            FirstFactor::Password
        );
        store
            .record_sign_in_with_second_factor(
                &with_passkey,
                &[8; 32],
                SecondFactorProof::PasskeyAsserted,
            )
            .await
            .unwrap();
        assert!(
            store
                .session(with_passkey.session.id)
                .await
                .unwrap()
                .is_some()
        );
        assert!(store.mfa_token(&[8; 32], NOW).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn recovery_codes_are_replaced_whole_while_totp_is_on() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        let requester = requester_for(&user, NOW);
        assert_eq!(store.recovery_codes(user.id).await.unwrap(), None);
        start_and_activate(&store, &user, 7, 10, &codes(&[[1; 32], [2; 32]])).await;
        let replacement = RecoveryCodeSet {
            salt: [9; 16],
            hashes: vec![[5; 32], [6; 32], [7; 32]],
        };
        store
            .replace_recovery_codes(&replacement, &requester)
            .await
            .unwrap();
        assert_eq!(
            store.recovery_codes(user.id).await.unwrap(),
            Some(replacement)
        );
        // A stale requester changes nothing.
        assert!(matches!(
            store
                .replace_recovery_codes(
                    &codes(&[]),
                    &Requester {
                        credential_version: 1,
                        ..requester
                    }
                )
                .await,
            Err(StoreError::CredentialsChanged)
        ));
        assert_eq!(
            store.second_factor_summary(user.id).await.unwrap(),
            SecondFactorSummary {
                totp: true,
                passkeys: 0,
                recovery_codes_left: 3
            }
        );
    }

    #[tokio::test]
    async fn the_purge_takes_expired_tokens_and_enrolments_and_reset_removes_every_factor() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        let requester = requester_for(&user, NOW);
        store
            .insert_mfa_token(&mfa_token(user.id, 1))
            .await
            .unwrap();
        store
            .insert_mfa_token(&MfaToken {
                expires_at: NOW + 1000,
                ..mfa_token(user.id, 2)
            })
            .await
            .unwrap();
        store
            .start_totp_enrolment(
                &PendingTotp {
                    user_id: user.id,
                    secret: TotpSecret::new([7; 20]),
                    created: NOW,
                    expires_at: NOW + 300,
                },
                &requester,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .purge_expired_second_factor_records(NOW + 300, 100)
                .await
                .unwrap(),
            1
        );
        assert!(store.mfa_token(&[1; 32], NOW).await.unwrap().is_none());
        assert!(store.mfa_token(&[2; 32], NOW).await.unwrap().is_some());
        assert!(store.pending_totp(user.id, NOW).await.unwrap().is_none());

        start_and_activate(&store, &user, 9, 1, &codes(&[[1; 32]; 10])).await;
        add_passkey(&store, &user, b"laptop").await;
        assert_eq!(
            store.reset_second_factors(user.id).await.unwrap(),
            SecondFactorSummary {
                totp: true,
                passkeys: 1,
                recovery_codes_left: 10
            }
        );
        assert_eq!(store.passkey_count(user.id).await.unwrap(), 0);
        assert_eq!(
            store.second_factor_summary(user.id).await.unwrap(),
            SecondFactorSummary::default()
        );
        assert!(store.active_totp(user.id).await.unwrap().is_none());
        assert_eq!(store.recovery_codes(user.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_purge_takes_at_most_its_limit_of_each() {
        let store = fresh_store().await;
        let mut users = Vec::new();
        for name in ["a", "b", "c"] {
            users.push(add_user(&store, &format!("{name}@example.com")).await);
        }
        for (index, user) in users.iter().enumerate() {
            let byte = u8::try_from(index).unwrap() + 1;
            store
                .insert_mfa_token(&mfa_token(user.id, byte))
                .await
                .unwrap();
            store
                .start_totp_enrolment(
                    &PendingTotp {
                        user_id: user.id,
                        secret: TotpSecret::new([byte; 20]),
                        created: NOW,
                        expires_at: NOW + 10,
                    },
                    &requester_for(user, NOW),
                )
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .purge_expired_second_factor_records(NOW + 300, 2)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .purge_expired_second_factor_records(NOW + 300, 2)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .purge_expired_second_factor_records(NOW + 300, 2)
                .await
                .unwrap(),
            0
        );
    }

    /// Second steps racing for one mfa-token, each with a fresh step: the writer lock lets
    /// exactly one of them through, and the others find the token gone.
    #[tokio::test]
    async fn racing_second_steps_spend_one_mfa_token_once() {
        let store = fresh_store().await;
        let user = add_user(&store, "ada@example.com").await;
        start_and_activate(&store, &user, 7, 10, &codes(&[])).await;
        store
            .insert_mfa_token(&mfa_token(user.id, 5))
            .await
            .unwrap();
        let mut racers = tokio::task::JoinSet::new();
        for step in 11..19 {
            let store = store.clone();
            let sign_in = sign_in_of(&user);
            racers.spawn(async move {
                store
                    .record_sign_in_with_second_factor(
                        &sign_in,
                        &[5; 32],
                        SecondFactorProof::TotpStep(step),
                    )
                    .await
            });
        }
        let mut signed_in = 0;
        while let Some(result) = racers.join_next().await {
            match result.unwrap() {
                Ok(_) => signed_in += 1,
                Err(StoreError::SecondFactorRefused(SecondFactorRefusal::MfaTokenGone)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(signed_in, 1);
    }
}
