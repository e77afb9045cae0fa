//! Sign-up and emailed single-use tokens (verification and reset links): making a pending
//! account or a new attempt at one, issuing and consuming links, and purging the stale and
//! the never proved. A message a change causes is queued in the same transaction as the
//! change, so a crash loses neither.

use redb::{ReadableTable, WriteTransaction};

use crate::model::{
    EmailToken, EmailTokenProblem, EmailTokenPurpose, NewUser, OutgoingMail, PasswordHashString,
    SignUpAttempt, Status, UnixSeconds, User, UserId,
};
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::api_tokens::delete_standalone_api_tokens;
use crate::store::redb_backend::mail_queue::{enqueue, remove_mail_to};
use crate::store::redb_backend::record::{
    AttemptRecord, EmailTokenRecord, RECORD_VERSION, decode, decode_user, encode,
};
use crate::store::redb_backend::second_factors::delete_second_factors_of_user;
use crate::store::redb_backend::sessions::{delete_session, session_ids_of_user};
use crate::store::redb_backend::tables::{
    CREATED_UNPROVEDUSERID, EMAIL_USERID, TOKENHASH_EMAILTOKEN, USERID_EMAILTOKENHASH, USERID_USER,
};
use crate::store::redb_backend::users::{
    children_in, delete_users, insert_user, user_in, write_user,
};
use crate::store::{LinkToIssue, SignUpEffect, StoreError, TokenAction};

impl RedbStore {
    /// A sign-up in one transaction. A free address gets a pending user; an unproved pending
    /// one takes the new password and names for signing in while pending (when allowed). In
    /// both cases the attempt's password and names go with its own link, and earlier
    /// attempts keep theirs (API.md 15.5). An address in use gets only a notice. Each case
    /// queues its email in the same commit.
    pub fn sign_up(
        &self,
        new_user: NewUser,
        token_hash: [u8; 32],
        token_expires_at: UnixSeconds,
        verification_mail: impl FnOnce(&User) -> OutgoingMail,
        address_in_use_mail: impl FnOnce(&User) -> OutgoingMail,
        now: UnixSeconds,
    ) -> Result<SignUpEffect, StoreError> {
        let transaction = self.begin_write()?;
        let existing_id = transaction
            .open_table(EMAIL_USERID)?
            .get(new_user.normalized_email.as_str())?
            .map(|guard| guard.value());
        let existing = match existing_id {
            Some(id) => user_in(&transaction.open_table(USERID_USER)?, id)?,
            None => None,
        };
        let attempt = new_user
            .password_hash
            .clone()
            .map(|password_hash| SignUpAttempt {
                password_hash,
                first_name: new_user.first_name.clone(),
                last_name: new_user.last_name.clone(),
            });
        let (user, effect) = match existing {
            None => (
                insert_user(&transaction, new_user, now)?,
                SignUpEffect::Created,
            ),
            Some(mut user) if is_unproved_sign_up(&user) => {
                user.password_hash = new_user.password_hash;
                user.first_name = new_user.first_name;
                user.last_name = new_user.last_name;
                user.credential_version += 1;
                user.updated = now;
                write_user(&transaction, &user)?;
                (user, SignUpEffect::RefreshedPending)
            }
            Some(user) => (user, SignUpEffect::AddressInUse),
        };
        if effect == SignUpEffect::AddressInUse {
            enqueue(&transaction, &address_in_use_mail(&user), now)?;
        } else {
            insert_token(
                &transaction,
                &EmailToken {
                    hash: token_hash,
                    purpose: EmailTokenPurpose::VerifyEmail,
                    user_id: user.id,
                    expires_at: token_expires_at,
                    attempt,
                },
            )?;
            enqueue(&transaction, &verification_mail(&user), now)?;
        }
        transaction.commit()?;
        Ok(effect)
    }

    /// Issues a token for the user with this address if `link_for` gives it one: earlier
    /// tokens of that purpose (other than sign-up attempts' links) are voided and the mail is
    /// queued, all in one commit. Returns whether one was issued.
    pub fn issue_email_token(
        &self,
        normalized_email: &str,
        token_hash: [u8; 32],
        link_for: impl FnOnce(&User) -> Option<LinkToIssue>,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        let id = transaction
            .open_table(EMAIL_USERID)?
            .get(normalized_email)?
            .map(|guard| guard.value());
        let user = match id {
            Some(id) => user_in(&transaction.open_table(USERID_USER)?, id)?,
            None => None,
        };
        let Some((user, link)) = user.and_then(|user| link_for(&user).map(|link| (user, link)))
        else {
            return Ok(false);
        };
        let purpose = link.purpose;
        void_tokens(&transaction, user.id, |_, record| {
            record.purpose == purpose && record.attempt.is_none()
        })?;
        insert_token(
            &transaction,
            &EmailToken {
                hash: token_hash,
                purpose: link.purpose,
                user_id: user.id,
                expires_at: link.expires_at,
                attempt: None,
            },
        )?;
        enqueue(&transaction, &link.mail, now)?;
        transaction.commit()?;
        Ok(true)
    }

    /// The user a token would act on, if it is usable now: read before any hashing, so an
    /// unknown, used or expired token costs none (API.md 15.7). `consume_email_token`
    /// checks again when it writes.
    pub fn email_token_user(
        &self,
        hash: &[u8; 32],
        purpose: EmailTokenPurpose,
        now: UnixSeconds,
    ) -> Result<Result<User, EmailTokenProblem>, StoreError> {
        let transaction = self.begin_read()?;
        let record = transaction
            .open_table(TOKENHASH_EMAILTOKEN)?
            .get(hash)?
            .map(|bytes| decode::<EmailTokenRecord>(bytes.value(), "email token"))
            .transpose()?;
        let record = match usable_token(record, purpose, now) {
            Ok(record) => record,
            Err(problem) => return Ok(Err(problem)),
        };
        token_user(&transaction.open_table(USERID_USER)?, &record)
    }

    /// Consumes a token and makes its change in the same transaction. The token stays,
    /// marked used, so a second use is told apart from a bad token.
    pub fn consume_email_token(
        &self,
        hash: &[u8; 32],
        purpose: EmailTokenPurpose,
        action: TokenAction,
        now: UnixSeconds,
    ) -> Result<Result<User, EmailTokenProblem>, StoreError> {
        let transaction = self.begin_write()?;
        let record = transaction
            .open_table(TOKENHASH_EMAILTOKEN)?
            .get(hash)?
            .map(|bytes| decode::<EmailTokenRecord>(bytes.value(), "email token"))
            .transpose()?;
        let mut record = match usable_token(record, purpose, now) {
            Ok(record) => record,
            Err(problem) => return Ok(Err(problem)),
        };
        let mut user = match token_user(&transaction.open_table(USERID_USER)?, &record)? {
            Ok(user) => user,
            Err(problem) => return Ok(Err(problem)),
        };
        let activates_sign_up = is_unproved_sign_up(&user);
        match action {
            TokenAction::Activate => {
                // A link without an attempt (a resend to an active sub-user, or a sign-up
                // link written before attempts kept their password) leaves the password.
                if let Some(attempt) = record.attempt.take() {
                    user.password_hash = Some(PasswordHashString::new(attempt.password_hash));
                    user.first_name = attempt.first_name;
                    user.last_name = attempt.last_name;
                    user.credential_version += 1;
                }
            }
            TokenAction::SetPassword(password_hash) => {
                user.password_hash = Some(password_hash);
                user.credential_version += 1;
                for session_id in session_ids_of_user(&transaction, user.id)? {
                    delete_session(&transaction, session_id)?;
                }
                delete_standalone_api_tokens(&transaction, user.id)?;
            }
        }
        if activates_sign_up {
            user.status = Status::Active;
            end_what_was_made_while_pending(&transaction, user.id, hash)?;
        }
        user.updated = now;
        // Either link reached the address: its owner proved it (API.md 15.4).
        user.email_verified = true;
        write_user(&transaction, &user)?;
        record.used = true;
        transaction
            .open_table(TOKENHASH_EMAILTOKEN)?
            .insert(hash, encode(&record).as_slice())?;
        transaction.commit()?;
        Ok(Ok(user))
    }

    /// Deletes up to `limit` emailed tokens that expired before `before`.
    pub fn purge_email_tokens_expired_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let doomed: Vec<([u8; 32], UserId)> = {
            let tokens = transaction.open_table(TOKENHASH_EMAILTOKEN)?;
            let mut doomed = Vec::new();
            for entry in tokens.iter()? {
                let (hash, bytes) = entry?;
                let record: EmailTokenRecord = decode(bytes.value(), "email token")?;
                if record.expires_at < before {
                    doomed.push((*hash.value(), record.user_id));
                    if doomed.len() >= limit {
                        break;
                    }
                }
            }
            doomed
        };
        for (hash, user_id) in &doomed {
            transaction.open_table(TOKENHASH_EMAILTOKEN)?.remove(hash)?;
            transaction
                .open_table(USERID_EMAILTOKENHASH)?
                .remove((*user_id, hash))?;
        }
        transaction.commit()?;
        Ok(doomed.len())
    }

    /// Up to `limit` ids of unproved sign-ups created before `before`, for
    /// `purge_unproved_sign_ups`. A read transaction: the scan never holds the write lock.
    pub fn unproved_sign_ups_created_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        let transaction = self.begin_read()?;
        let index = transaction.open_table(CREATED_UNPROVEDUSERID)?;
        let mut found = Vec::new();
        for entry in index.range((i64::MIN, 0u64)..(before, 0u64))?.take(limit) {
            found.push(entry?.0.value().1);
        }
        Ok(found)
    }

    /// Deletes those of these users that are still unproved sign-ups created before
    /// `before` (API.md 15.15), with whatever they made while pending (sessions, API tokens,
    /// sub-users), their emailed tokens and the mail still queued to them, in one
    /// transaction. Returns how many accounts went.
    pub fn purge_unproved_sign_ups(
        &self,
        user_ids: &[UserId],
        before: UnixSeconds,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let mut doomed = Vec::new();
        {
            let mut proved = Vec::new();
            let users = transaction.open_table(USERID_USER)?;
            for id in user_ids {
                match user_in(&users, *id)? {
                    Some(user) if is_unproved_sign_up(&user) && user.created < before => {
                        doomed.push(user)
                    }
                    // Proved (or made active) since it was noted: out of the index.
                    Some(user) => proved.push(user),
                    None => {}
                }
            }
            drop(users);
            for user in &proved {
                forget_unproved_sign_up(&transaction, user)?;
            }
        }
        let purged = doomed.len();
        // Mail goes to the normalized address (older queued mail may name the typed one).
        let addresses: std::collections::HashSet<String> = doomed
            .iter()
            .flat_map(|user| [user.email.clone(), user.normalized_email.clone()])
            .collect();
        for user in &doomed {
            let sub_users = children_in(&transaction, user.id)?;
            delete_users(&transaction, &sub_users)?;
        }
        delete_users(&transaction, &doomed)?;
        remove_mail_to(&transaction, &addresses)?;
        transaction.commit()?;
        Ok(purged)
    }
}

/// Whether this user is a sign-up whose owner never proved the address: the accounts whose
/// links carry their attempt's password and that the pending purge removes.
pub fn is_unproved_sign_up(user: &User) -> bool {
    user.status == Status::Pending && !user.email_verified
}

/// Notes a user that is an unproved sign-up in the purge's index.
pub(super) fn note_unproved_sign_up(
    transaction: &WriteTransaction,
    user: &User,
) -> Result<(), StoreError> {
    if is_unproved_sign_up(user) {
        transaction
            .open_table(CREATED_UNPROVEDUSERID)?
            .insert((user.created, user.id), ())?;
    }
    Ok(())
}

/// Drops a user from the purge's index (deleted, or no longer an unproved sign-up).
pub(super) fn forget_unproved_sign_up(
    transaction: &WriteTransaction,
    user: &User,
) -> Result<(), StoreError> {
    transaction
        .open_table(CREATED_UNPROVEDUSERID)?
        .remove((user.created, user.id))?;
    Ok(())
}

/// Fills the purge's index from every user: once, when a file written before it opens.
pub(super) fn index_unproved_sign_ups(transaction: &WriteTransaction) -> Result<(), StoreError> {
    let unproved: Vec<User> = {
        let users = transaction.open_table(USERID_USER)?;
        let mut unproved = Vec::new();
        for entry in users.iter()? {
            let (id, bytes) = entry?;
            let user = decode_user(bytes.value(), id.value())?;
            if is_unproved_sign_up(&user) {
                unproved.push(user);
            }
        }
        unproved
    };
    for user in &unproved {
        note_unproved_sign_up(transaction, user)?;
    }
    Ok(())
}

/// Deletes the user's tokens (used ones included) that `doomed` picks; an index row whose
/// token is gone always goes.
fn void_tokens(
    transaction: &WriteTransaction,
    user_id: UserId,
    doomed_token: impl Fn(&[u8; 32], &EmailTokenRecord) -> bool,
) -> Result<(), StoreError> {
    let mut by_user = transaction.open_table(USERID_EMAILTOKENHASH)?;
    let mut tokens = transaction.open_table(TOKENHASH_EMAILTOKEN)?;
    let mut doomed = Vec::new();
    for entry in by_user.range((user_id, &[0u8; 32])..=(user_id, &[0xffu8; 32]))? {
        let hash = *entry?.0.value().1;
        let picked = match tokens.get(&hash)? {
            Some(bytes) => doomed_token(&hash, &decode(bytes.value(), "email token")?),
            None => true,
        };
        if picked {
            doomed.push(hash);
        }
    }
    for hash in doomed {
        tokens.remove(&hash)?;
        by_user.remove((user_id, &hash))?;
    }
    Ok(())
}

/// Drops the user's unused password-reset links: a password change or a suspension makes any
/// link mailed before it worthless to whoever holds it.
pub(super) fn void_reset_links(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    void_tokens(transaction, user_id, |_, record| {
        record.purpose == EmailTokenPurpose::ResetPassword && !record.used
    })
}

/// Every emailed token of the user, inside a write transaction (its deletion).
pub(super) fn delete_email_tokens_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    void_tokens(transaction, user_id, |_, _| true)
}

fn insert_token(transaction: &WriteTransaction, token: &EmailToken) -> Result<(), StoreError> {
    let record = EmailTokenRecord {
        v: RECORD_VERSION,
        purpose: token.purpose,
        user_id: token.user_id,
        expires_at: token.expires_at,
        used: false,
        attempt: token.attempt.as_ref().map(|attempt| AttemptRecord {
            password_hash: attempt.password_hash.expose_secret().to_owned(),
            first_name: attempt.first_name.clone(),
            last_name: attempt.last_name.clone(),
        }),
    };
    transaction
        .open_table(TOKENHASH_EMAILTOKEN)?
        .insert(&token.hash, encode(&record).as_slice())?;
    transaction
        .open_table(USERID_EMAILTOKENHASH)?
        .insert((token.user_id, &token.hash), ())?;
    Ok(())
}

/// A token that may still be used for `purpose` at `now`, or why not.
fn usable_token(
    record: Option<EmailTokenRecord>,
    purpose: EmailTokenPurpose,
    now: UnixSeconds,
) -> Result<EmailTokenRecord, EmailTokenProblem> {
    let Some(record) = record.filter(|record| record.purpose == purpose) else {
        return Err(EmailTokenProblem::Unknown);
    };
    if record.used {
        return Err(EmailTokenProblem::Used);
    }
    if record.expires_at <= now {
        return Err(EmailTokenProblem::Expired);
    }
    Ok(record)
}

/// The user a usable token acts on. A sign-up attempt's link is moot once its account is no
/// longer an unproved sign-up (say a provider proved the address): it counts as unknown.
fn token_user(
    users: &impl ReadableTable<u64, &'static [u8]>,
    record: &EmailTokenRecord,
) -> Result<Result<User, EmailTokenProblem>, StoreError> {
    Ok(match user_in(users, record.user_id)? {
        Some(user) if record.attempt.is_some() && !is_unproved_sign_up(&user) => {
            Err(EmailTokenProblem::Unknown)
        }
        Some(user) => Ok(user),
        None => Err(EmailTokenProblem::Unknown),
    })
}

/// A pending sign-up's owner proved the address: whatever was made while it was pending
/// (sessions, API tokens, sub-users, and second factors: TOTP, recovery codes and passkeys,
/// by whoever knew an attempt's password) ends, and every other link of the account dies
/// (API.md 15.5). A passkey kept from then would sign its maker in with no password at all.
fn end_what_was_made_while_pending(
    transaction: &WriteTransaction,
    user_id: UserId,
    used_token_hash: &[u8; 32],
) -> Result<(), StoreError> {
    for session_id in session_ids_of_user(transaction, user_id)? {
        delete_session(transaction, session_id)?;
    }
    delete_standalone_api_tokens(transaction, user_id)?;
    delete_second_factors_of_user(transaction, user_id)?;
    let sub_users = children_in(transaction, user_id)?;
    delete_users(transaction, &sub_users)?;
    void_tokens(transaction, user_id, |hash, _| hash != used_token_hash)
}

#[cfg(test)]
mod tests {
    use crate::model::email_address::EmailAddress;
    use crate::model::{NewUser, PermissionSet, Role, Status};
    use crate::store::redb_backend::tables::CREATED_UNPROVEDUSERID;
    use crate::store::redb_backend::test_support::{NOW, add_user, open_store, set_schema_version};

    /// The purge of unproved sign-ups reads its own index, not every user; a file written
    /// before the index (schema version 2) gets it filled when it opens.
    #[test]
    fn unproved_sign_ups_are_indexed_for_the_purge_and_older_files_are_indexed_at_open() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let long_ago = NOW - 30 * 86_400;
        let pending = store
            .insert_user(
                NewUser {
                    permissions: PermissionSet::empty(),
                    ..NewUser::new(
                        EmailAddress::parse("pending@example.com").unwrap(),
                        Role::User,
                        Status::Pending,
                    )
                },
                long_ago,
            )
            .unwrap();
        add_user(&store, "active@example.com");
        let now = NOW;
        assert_eq!(
            store.unproved_sign_ups_created_before(now, 10).unwrap(),
            vec![pending.id]
        );
        // What an older build left: no index, version 2.
        let transaction = store.begin_write().unwrap();
        transaction.delete_table(CREATED_UNPROVEDUSERID).unwrap();
        transaction.commit().unwrap();
        set_schema_version(&store, 2);
        drop(store);
        let store = open_store(&directory);
        assert_eq!(
            store.unproved_sign_ups_created_before(now, 10).unwrap(),
            vec![pending.id]
        );
        assert!(
            store
                .unproved_sign_ups_created_before(long_ago, 10)
                .unwrap()
                .is_empty()
        );
    }
}
