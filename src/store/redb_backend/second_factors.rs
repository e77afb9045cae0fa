//! Second factors: a user's TOTP (pending, then active with its last accepted time step),
//! the hashes of its recovery codes, and the mfa-tokens of sign-ins awaiting their second
//! step. Every write that a code or a recovery code pays for spends it in the same
//! transaction as its effect, so the same code never works twice, even in two requests at
//! once; every write on a request's behalf checks its `Requester` there too.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use subtle::ConstantTimeEq;

use crate::model::second_factor::{
    ActiveTotp, MfaToken, PendingTotp, RecoveryCodeSet, SecondFactorProof, SecondFactorRefusal,
    SecondFactorSummary, TotpSecret,
};
use crate::model::{OAuthIdentity, UnixSeconds, UserId};
use crate::store::redb_backend::passkeys::{count_passkeys_of_user, delete_passkeys_of_user};
use crate::store::redb_backend::record::{
    MfaTokenRecord, PendingTotpRecord, RecoveryCodesRecord, TotpRecord, decode, encode,
};
use crate::store::redb_backend::sessions::write_sign_in;
use crate::store::redb_backend::tables::{
    MFATOKENHASH_MFATOKEN, USERID_PASSKEYID, USERID_PENDINGTOTP, USERID_RECOVERYCODES, USERID_TOTP,
};
use crate::store::redb_backend::{RedbStore, check_requester};
use crate::store::{NewSignIn, Requester, StoreError};

impl RedbStore {
    /// What the user holds, read in one transaction.
    pub fn second_factor_summary(
        &self,
        user_id: UserId,
    ) -> Result<SecondFactorSummary, StoreError> {
        second_factor_summary_in(&self.begin_read()?, user_id)
    }

    /// The user's active TOTP, if it has one.
    pub fn active_totp(&self, user_id: UserId) -> Result<Option<ActiveTotp>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(USERID_TOTP)?;
        let Some(bytes) = table.get(user_id)? else {
            return Ok(None);
        };
        let record: TotpRecord = decode(bytes.value(), "totp")?;
        record.into_totp(user_id).map(Some)
    }

    /// The user's pending enrolment, unless there is none or it expired by `now`.
    pub fn pending_totp(
        &self,
        user_id: UserId,
        now: UnixSeconds,
    ) -> Result<Option<PendingTotp>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(USERID_PENDINGTOTP)?;
        let Some(bytes) = table.get(user_id)? else {
            return Ok(None);
        };
        let record: PendingTotpRecord = decode(bytes.value(), "pending totp")?;
        let pending = record.into_pending(user_id)?;
        Ok((pending.expires_at > now).then_some(pending))
    }

    /// The user's unused recovery codes, as kept; `None` when it never had any.
    pub fn recovery_codes(&self, user_id: UserId) -> Result<Option<RecoveryCodeSet>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(USERID_RECOVERYCODES)?;
        match table.get(user_id)? {
            Some(bytes) => decode::<RecoveryCodesRecord>(bytes.value(), "recovery codes")?
                .to_set()
                .map(Some),
            None => Ok(None),
        }
    }

    /// Holds a new enrolment, replacing any pending one; refused while TOTP is on.
    pub fn start_totp_enrolment(
        &self,
        pending: &PendingTotp,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        if transaction
            .open_table(USERID_TOTP)?
            .get(pending.user_id)?
            .is_some()
        {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpAlreadyOn,
            ));
        }
        transaction.open_table(USERID_PENDINGTOTP)?.insert(
            pending.user_id,
            encode(&PendingTotpRecord::from_pending(pending)).as_slice(),
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Turns the pending enrolment whose secret a code just matched into the active TOTP,
    /// with the matched step as the last accepted one, and stores the recovery codes' hashes.
    /// Refused if that enrolment is no longer the pending one (replaced, expired, confirmed).
    pub fn activate_totp(
        &self,
        secret: &TotpSecret,
        accepted_step: u64,
        recovery_codes: &RecoveryCodeSet,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let user_id = requester.user_id;
        let now = requester.now;
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        let pending = match transaction.open_table(USERID_PENDINGTOTP)?.get(user_id)? {
            Some(bytes) => Some(
                decode::<PendingTotpRecord>(bytes.value(), "pending totp")?
                    .into_pending(user_id)?,
            ),
            None => None,
        };
        let still_pending = pending.is_some_and(|pending| {
            pending.expires_at > now && pending.secret.expose_secret() == secret.expose_secret()
        });
        if !still_pending {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::NoPendingTotp,
            ));
        }
        if transaction.open_table(USERID_TOTP)?.get(user_id)?.is_some() {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpAlreadyOn,
            ));
        }
        transaction
            .open_table(USERID_PENDINGTOTP)?
            .remove(user_id)?;
        let active = ActiveTotp {
            user_id,
            secret: *secret,
            enabled_at: now,
            last_accepted_step: accepted_step,
        };
        transaction
            .open_table(USERID_TOTP)?
            .insert(user_id, encode(&TotpRecord::from_totp(&active)).as_slice())?;
        write_recovery_codes(&transaction, user_id, recovery_codes, now)?;
        transaction.commit()?;
        Ok(())
    }

    /// Turns TOTP off, spending the code or recovery code that proves the device (or its
    /// backup) is at hand: the TOTP, its pending enrolment and the recovery codes go.
    pub fn disable_totp(
        &self,
        proof: SecondFactorProof,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let user_id = requester.user_id;
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        if transaction.open_table(USERID_TOTP)?.get(user_id)?.is_none() {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff,
            ));
        }
        spend_proof(&transaction, user_id, proof)?;
        delete_totp_and_recovery_codes(&transaction, user_id)?;
        transaction.commit()?;
        Ok(())
    }

    /// Replaces every recovery code of the user; refused while TOTP is off.
    pub fn replace_recovery_codes(
        &self,
        recovery_codes: &RecoveryCodeSet,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let user_id = requester.user_id;
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        if transaction.open_table(USERID_TOTP)?.get(user_id)?.is_none() {
            return Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff,
            ));
        }
        write_recovery_codes(&transaction, user_id, recovery_codes, requester.now)?;
        transaction.commit()?;
        Ok(())
    }

    pub fn insert_mfa_token(&self, token: &MfaToken) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        transaction.open_table(MFATOKENHASH_MFATOKEN)?.insert(
            &token.hash,
            encode(&MfaTokenRecord::from_token(token)).as_slice(),
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// The mfa-token with this hash, unless it is gone or expired by `now`.
    pub fn mfa_token(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<MfaToken>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(MFATOKENHASH_MFATOKEN)?;
        let Some(bytes) = table.get(hash)? else {
            return Ok(None);
        };
        let token = decode::<MfaTokenRecord>(bytes.value(), "mfa token")?.into_token(*hash)?;
        Ok((token.expires_at > now).then_some(token))
    }

    /// Counts a wrong code against the mfa-token; the token is deleted at `max_wrong_codes`.
    /// Answers whether the token still lives.
    pub fn record_wrong_second_factor(
        &self,
        hash: &[u8; 32],
        max_wrong_codes: u32,
    ) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        let lives = {
            let mut table = transaction.open_table(MFATOKENHASH_MFATOKEN)?;
            let record = match table.get(hash)? {
                Some(bytes) => Some(decode::<MfaTokenRecord>(bytes.value(), "mfa token")?),
                None => None,
            };
            match record {
                None => false,
                Some(mut record) => {
                    record.wrong_codes = record.wrong_codes.saturating_add(1);
                    if record.wrong_codes >= max_wrong_codes {
                        table.remove(hash)?;
                        false
                    } else {
                        table.insert(hash, encode(&record).as_slice())?;
                        true
                    }
                }
            }
        };
        transaction.commit()?;
        Ok(lives)
    }

    /// The second step of a sign-in: spends the mfa-token and the proof, and writes the
    /// session as `record_sign_in` does, all in one transaction. Refused (nothing written)
    /// when the token is gone or expired, or the proof was spent meanwhile.
    pub fn record_sign_in_with_second_factor(
        &self,
        sign_in: &NewSignIn,
        mfa_token_hash: &[u8; 32],
        proof: SecondFactorProof,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        let user_id = sign_in.session.user_id;
        let transaction = self.begin_write()?;
        {
            let mut tokens = transaction.open_table(MFATOKENHASH_MFATOKEN)?;
            let token = match tokens.remove(mfa_token_hash)? {
                Some(bytes) => Some(
                    decode::<MfaTokenRecord>(bytes.value(), "mfa token")?
                        .into_token(*mfa_token_hash)?,
                ),
                None => None,
            };
            let usable = token.is_some_and(|token| {
                token.user_id == user_id && token.expires_at > sign_in.requester.now
            });
            if !usable {
                return Err(StoreError::SecondFactorRefused(
                    SecondFactorRefusal::MfaTokenGone,
                ));
            }
        }
        spend_proof(&transaction, user_id, proof)?;
        let identities = write_sign_in(&transaction, sign_in)?;
        transaction.commit()?;
        Ok(identities)
    }

    /// `latchkey user mfa-reset`: removes the user's TOTP (pending or active), recovery
    /// codes and passkeys. Answers what the user held before.
    pub fn reset_second_factors(&self, user_id: UserId) -> Result<SecondFactorSummary, StoreError> {
        let transaction = self.begin_write()?;
        let before = second_factor_summary_in_write(&transaction, user_id)?;
        delete_second_factors_of_user(&transaction, user_id)?;
        transaction.commit()?;
        Ok(before)
    }

    /// Deletes up to `limit` mfa-tokens and pending enrolments that expired by `now`.
    pub fn purge_expired_second_factor_records(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let expired_tokens: Vec<[u8; 32]> = {
            let table = transaction.open_table(MFATOKENHASH_MFATOKEN)?;
            let mut expired = Vec::new();
            for entry in table.iter()? {
                let (hash, bytes) = entry?;
                let record: MfaTokenRecord = decode(bytes.value(), "mfa token")?;
                if record.expires_at <= now {
                    expired.push(*hash.value());
                    if expired.len() >= limit {
                        break;
                    }
                }
            }
            expired
        };
        let expired_enrolments: Vec<UserId> = {
            let table = transaction.open_table(USERID_PENDINGTOTP)?;
            let mut expired = Vec::new();
            for entry in table.iter()? {
                let (user_id, bytes) = entry?;
                let record: PendingTotpRecord = decode(bytes.value(), "pending totp")?;
                if record.expires_at <= now {
                    expired.push(user_id.value());
                    if expired.len() >= limit {
                        break;
                    }
                }
            }
            expired
        };
        {
            let mut tokens = transaction.open_table(MFATOKENHASH_MFATOKEN)?;
            for hash in &expired_tokens {
                tokens.remove(hash)?;
            }
            let mut enrolments = transaction.open_table(USERID_PENDINGTOTP)?;
            for user_id in &expired_enrolments {
                enrolments.remove(user_id)?;
            }
        }
        transaction.commit()?;
        Ok(expired_tokens.len().max(expired_enrolments.len()))
    }
}

/// Removes every second factor of a user (`mfa-reset`, and the user's deletion). Its
/// mfa-tokens are left to expire: with no factor left, none can be completed.
pub(super) fn delete_second_factors_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    delete_totp_and_recovery_codes(transaction, user_id)?;
    delete_passkeys_of_user(transaction, user_id)?;
    Ok(())
}

fn delete_totp_and_recovery_codes(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    transaction.open_table(USERID_TOTP)?.remove(user_id)?;
    transaction
        .open_table(USERID_PENDINGTOTP)?
        .remove(user_id)?;
    transaction
        .open_table(USERID_RECOVERYCODES)?
        .remove(user_id)?;
    Ok(())
}

fn write_recovery_codes(
    transaction: &WriteTransaction,
    user_id: UserId,
    recovery_codes: &RecoveryCodeSet,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    transaction.open_table(USERID_RECOVERYCODES)?.insert(
        user_id,
        encode(&RecoveryCodesRecord::from_set(recovery_codes, now)).as_slice(),
    )?;
    Ok(())
}

/// Spends a proof inside a write: a TOTP step must be later than the last accepted one
/// (which it becomes); a recovery code must still be held (and goes). Every held hash is
/// compared, each in constant time, so the time taken does not tell which one matched.
fn spend_proof(
    transaction: &WriteTransaction,
    user_id: UserId,
    proof: SecondFactorProof,
) -> Result<(), StoreError> {
    match proof {
        // The assertion's challenge was taken, and the passkey's counter written, by the
        // write that verified it: only the mfa-token is left to spend.
        SecondFactorProof::PasskeyAsserted => Ok(()),
        SecondFactorProof::TotpStep(step) => {
            let mut table = transaction.open_table(USERID_TOTP)?;
            let record = match table.get(user_id)? {
                Some(bytes) => Some(decode::<TotpRecord>(bytes.value(), "totp")?),
                None => None,
            };
            match record {
                Some(mut record) if step > record.last_accepted_step => {
                    record.last_accepted_step = step;
                    table.insert(user_id, encode(&record).as_slice())?;
                    Ok(())
                }
                _ => Err(StoreError::SecondFactorRefused(
                    SecondFactorRefusal::CodeSpent,
                )),
            }
        }
        SecondFactorProof::RecoveryCode(presented) => {
            let mut table = transaction.open_table(USERID_RECOVERYCODES)?;
            let record = match table.get(user_id)? {
                Some(bytes) => Some(decode::<RecoveryCodesRecord>(
                    bytes.value(),
                    "recovery codes",
                )?),
                None => None,
            };
            let Some(record) = record else {
                return Err(StoreError::SecondFactorRefused(
                    SecondFactorRefusal::RecoveryCodeSpent,
                ));
            };
            let mut left = record.to_set()?;
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
            table.insert(
                user_id,
                encode(&RecoveryCodesRecord::from_set(&left, record.created)).as_slice(),
            )?;
            Ok(())
        }
    }
}

/// What second factors the user holds, read in `transaction` (also by the token checks that
/// ask for it, `AlsoRead::SecondFactorSummary`).
pub(super) fn second_factor_summary_in(
    transaction: &ReadTransaction,
    user_id: UserId,
) -> Result<SecondFactorSummary, StoreError> {
    second_factor_summary_from(
        &transaction.open_table(USERID_TOTP)?,
        &transaction.open_table(USERID_RECOVERYCODES)?,
        &transaction.open_table(USERID_PASSKEYID)?,
        user_id,
    )
}

/// `second_factor_summary_in` inside a write transaction.
pub(super) fn second_factor_summary_in_write(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<SecondFactorSummary, StoreError> {
    second_factor_summary_from(
        &transaction.open_table(USERID_TOTP)?,
        &transaction.open_table(USERID_RECOVERYCODES)?,
        &transaction.open_table(USERID_PASSKEYID)?,
        user_id,
    )
}

fn second_factor_summary_from(
    totp: &impl ReadableTable<u64, &'static [u8]>,
    recovery_codes: &impl ReadableTable<u64, &'static [u8]>,
    passkeys: &impl ReadableTable<(u64, u128), ()>,
    user_id: UserId,
) -> Result<SecondFactorSummary, StoreError> {
    let recovery_codes_left = match recovery_codes.get(user_id)? {
        Some(bytes) => decode::<RecoveryCodesRecord>(bytes.value(), "recovery codes")?
            .hashes
            .len(),
        None => 0,
    };
    Ok(SecondFactorSummary {
        totp: totp.get(user_id)?.is_some(),
        passkeys: count_passkeys_of_user(passkeys, user_id)?,
        recovery_codes_left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::second_factor::FirstFactor;
    use crate::model::{PasswordHashString, SessionId};
    use crate::store::redb_backend::test_support::{NOW, add_user, live_session, open_store};

    fn requester_for(user: &crate::model::User, now: UnixSeconds) -> Requester {
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

    fn sign_in_of(user: &crate::model::User) -> NewSignIn {
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

    /// A first factor alone is refused inside the sign-in's write once the user holds a
    /// second factor, however late the enrolment committed, and nothing is written; before
    /// that, the write answers the user's linked identities.
    #[test]
    fn a_first_factor_alone_is_refused_in_the_write_once_a_second_factor_is_held() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "ada@example.com");
        store
            .link_identity("idp", "ada-at-idp", user.id, |_| true, NOW)
            .unwrap();
        let before = NewSignIn {
            refuse_if_second_factor_held: true,
            ..sign_in_of(&user)
        };
        let identities = store.record_sign_in(&before).unwrap();
        let subjects: Vec<&str> = identities.iter().map(|one| one.subject.as_str()).collect();
        assert_eq!(subjects, ["ada-at-idp"]);

        let requester = requester_for(&user, NOW);
        let secret = TotpSecret::new([7; 20]);
        let pending = PendingTotp {
            user_id: user.id,
            secret,
            created: NOW,
            expires_at: NOW + 600,
        };
        store.start_totp_enrolment(&pending, &requester).unwrap();
        store
            .activate_totp(&secret, 10, &codes(&[[1; 32]]), &requester)
            .unwrap();
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
            store.record_sign_in(&after),
            Err(StoreError::SecondFactorHeld(summary)) if summary == held
        ));
        assert!(store.session(after.session.id).unwrap().is_none());
        // A completed second step asks for no such refusal.
        let completed = sign_in_of(&user);
        store.record_sign_in(&completed).unwrap();
        assert!(store.session(completed.session.id).unwrap().is_some());
    }

    /// Enrolment, a step spent once, a recovery code spent once, and the mfa-token spent
    /// once: each second use is refused inside the transaction and writes nothing.
    #[test]
    fn codes_recovery_codes_and_mfa_tokens_are_each_spent_once() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "ada@example.com");
        let requester = requester_for(&user, NOW);
        let secret = TotpSecret::new([7; 20]);
        let pending = PendingTotp {
            user_id: user.id,
            secret,
            created: NOW,
            expires_at: NOW + 600,
        };
        store.start_totp_enrolment(&pending, &requester).unwrap();
        assert!(store.pending_totp(user.id, NOW).unwrap().is_some());
        assert!(store.pending_totp(user.id, NOW + 600).unwrap().is_none());
        // A replaced enrolment's secret activates nothing.
        assert!(matches!(
            store.activate_totp(&TotpSecret::new([8; 20]), 10, &codes(&[]), &requester),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::NoPendingTotp
            ))
        ));
        store
            .activate_totp(&secret, 10, &codes(&[[1; 32], [2; 32]]), &requester)
            .unwrap();
        assert_eq!(
            store.second_factor_summary(user.id).unwrap(),
            SecondFactorSummary {
                totp: true,
                passkeys: 0,
                recovery_codes_left: 2
            }
        );
        assert!(matches!(
            store.start_totp_enrolment(&pending, &requester),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpAlreadyOn
            ))
        ));

        store.insert_mfa_token(&mfa_token(user.id, 5)).unwrap();
        let token = store.mfa_token(&[5; 32], NOW).unwrap().unwrap();
        assert_eq!(
            token.first_factor,
            FirstFactor::OAuth {
                provider: "idp".to_owned()
            }
        );
        // The step of the confirming code is spent already.
        assert!(matches!(
            store.record_sign_in_with_second_factor(
                &sign_in_of(&user),
                &[5; 32],
                SecondFactorProof::TotpStep(10)
            ),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::CodeSpent
            ))
        ));
        assert!(store.mfa_token(&[5; 32], NOW).unwrap().is_some());
        let first = sign_in_of(&user);
        store
            .record_sign_in_with_second_factor(&first, &[5; 32], SecondFactorProof::TotpStep(11))
            .unwrap();
        assert!(store.session(first.session.id).unwrap().is_some());
        assert!(matches!(
            store.record_sign_in_with_second_factor(
                &sign_in_of(&user),
                &[5; 32],
                SecondFactorProof::TotpStep(12)
            ),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::MfaTokenGone
            ))
        ));

        store.insert_mfa_token(&mfa_token(user.id, 6)).unwrap();
        store
            .record_sign_in_with_second_factor(
                &sign_in_of(&user),
                &[6; 32],
                SecondFactorProof::RecoveryCode([2; 32]),
            )
            .unwrap();
        assert_eq!(
            store.recovery_codes(user.id).unwrap(),
            Some(codes(&[[1; 32]]))
        );
        store.insert_mfa_token(&mfa_token(user.id, 7)).unwrap();
        assert!(matches!(
            store.record_sign_in_with_second_factor(
                &sign_in_of(&user),
                &[7; 32],
                SecondFactorProof::RecoveryCode([2; 32])
            ),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::RecoveryCodeSpent
            ))
        ));

        // Wrong codes kill the token at the limit.
        assert!(store.record_wrong_second_factor(&[7; 32], 2).unwrap());
        assert!(!store.record_wrong_second_factor(&[7; 32], 2).unwrap());
        assert!(store.mfa_token(&[7; 32], NOW).unwrap().is_none());

        // Turning TOTP off spends its proof and removes everything.
        assert!(matches!(
            store.disable_totp(SecondFactorProof::TotpStep(11), &requester),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::CodeSpent
            ))
        ));
        store
            .disable_totp(SecondFactorProof::RecoveryCode([1; 32]), &requester)
            .unwrap();
        assert_eq!(
            store.second_factor_summary(user.id).unwrap(),
            SecondFactorSummary::default()
        );
        assert!(matches!(
            store.replace_recovery_codes(&codes(&[[3; 32]]), &requester),
            Err(StoreError::SecondFactorRefused(
                SecondFactorRefusal::TotpOff
            ))
        ));
    }

    #[test]
    fn a_password_change_since_the_first_step_leaves_the_second_step_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "ada@example.com");
        let requester = requester_for(&user, NOW);
        let secret = TotpSecret::new([7; 20]);
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
            .unwrap();
        store
            .activate_totp(&secret, 10, &codes(&[]), &requester)
            .unwrap();
        store.insert_mfa_token(&mfa_token(user.id, 5)).unwrap();
        store
            .change_password(
                None,
                user.id,
                &PasswordHashString::new("$argon2id$changed".to_owned()),
                crate::store::SessionsToEnd::All,
                false,
                NOW,
            )
            .unwrap();
        let sign_in = sign_in_of(&user);
        assert!(matches!(
            store.record_sign_in_with_second_factor(
                &sign_in,
                &[5; 32],
                SecondFactorProof::TotpStep(11)
            ),
            Err(StoreError::CredentialsChanged)
        ));
        // Nothing was spent: the step is still usable and the token still there.
        assert_eq!(
            store
                .active_totp(user.id)
                .unwrap()
                .unwrap()
                .last_accepted_step,
            10
        );
        assert!(store.mfa_token(&[5; 32], NOW).unwrap().is_some());
        assert!(store.session(sign_in.session.id).unwrap().is_none());
    }

    #[test]
    fn the_purge_takes_expired_tokens_and_enrolments_and_reset_removes_every_factor() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "ada@example.com");
        let requester = requester_for(&user, NOW);
        store.insert_mfa_token(&mfa_token(user.id, 1)).unwrap();
        store
            .insert_mfa_token(&MfaToken {
                expires_at: NOW + 1000,
                ..mfa_token(user.id, 2)
            })
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
            .unwrap();
        assert_eq!(
            store
                .purge_expired_second_factor_records(NOW + 300, 100)
                .unwrap(),
            1
        );
        assert!(store.mfa_token(&[1; 32], NOW).unwrap().is_none());
        assert!(store.mfa_token(&[2; 32], NOW).unwrap().is_some());
        assert!(store.pending_totp(user.id, NOW).unwrap().is_none());

        let secret = TotpSecret::new([9; 20]);
        store
            .start_totp_enrolment(
                &PendingTotp {
                    user_id: user.id,
                    secret,
                    created: NOW,
                    expires_at: NOW + 300,
                },
                &requester,
            )
            .unwrap();
        store
            .activate_totp(&secret, 1, &codes(&[[1; 32]; 10]), &requester)
            .unwrap();
        assert_eq!(
            store.reset_second_factors(user.id).unwrap(),
            SecondFactorSummary {
                totp: true,
                passkeys: 0,
                recovery_codes_left: 10
            }
        );
        assert_eq!(
            store.second_factor_summary(user.id).unwrap(),
            SecondFactorSummary::default()
        );
    }
}
