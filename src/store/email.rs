//! Store functions for sign-up, emailed single-use tokens and the mail queue. A message a
//! change causes is queued in the same transaction as the change, so a crash loses neither.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::model::{
    EmailToken, EmailTokenProblem, EmailTokenPurpose, NewUser, OutgoingMail, PasswordHashString,
    QueuedMail, SignUpAttempt, Status, UnixSeconds, User, UserId,
};
use crate::store::accounts::{children_in, delete_standalone_api_tokens, delete_users};
use crate::store::record::{RECORD_VERSION, decode, decode_user, encode, encode_user};
use crate::store::{
    EMAIL_USERID, META, Store, StoreError, USERID_USER, copy_table, delete_session, insert_user,
    session_ids_of_user, user_in,
};

const TOKENHASH_EMAILTOKEN: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("tokenhash_emailtoken");
const USERID_EMAILTOKENHASH: TableDefinition<(u64, &[u8; 32]), ()> =
    TableDefinition::new("userid_emailtokenhash");
const MAILID_MAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("mailid_mail");
const META_NEXT_MAIL_ID: &str = "next_mail_id";

#[derive(Serialize, Deserialize)]
struct EmailTokenRecord {
    v: u8,
    purpose: String,
    user_id: UserId,
    expires_at: UnixSeconds,
    #[serde(default)]
    used: bool,
    /// A sign-up link's own password and names (API.md 15.5). Absent from other links, and
    /// from sign-up links written before attempts kept their own password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<AttemptRecord>,
}

#[derive(Serialize, Deserialize)]
struct AttemptRecord {
    /// PHC string.
    password_hash: String,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct MailRecord {
    v: u8,
    to: String,
    subject: String,
    text: String,
    html: String,
    #[serde(default)]
    attempts: u32,
    next_attempt_at: UnixSeconds,
}

fn purpose_name(purpose: EmailTokenPurpose) -> &'static str {
    match purpose {
        EmailTokenPurpose::VerifyEmail => "verify-email",
        EmailTokenPurpose::ResetPassword => "reset-password",
    }
}

/// Sign-ups never verified, by creation time: what the purge of `[signup]
/// pending_lifetime_days` reads, instead of every user. A row is written when such a user is
/// made and goes when the user is deleted or, found proved by the purge, dropped there.
pub(super) const CREATED_UNPROVEDUSERID: TableDefinition<(i64, u64), ()> =
    TableDefinition::new("created_unproved_userid");

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

pub(super) fn create_tables(transaction: &WriteTransaction) -> Result<(), StoreError> {
    transaction.open_table(CREATED_UNPROVEDUSERID)?;
    transaction.open_table(TOKENHASH_EMAILTOKEN)?;
    transaction.open_table(USERID_EMAILTOKENHASH)?;
    transaction.open_table(MAILID_MAIL)?;
    Ok(())
}

pub(super) fn copy_tables(
    source: &ReadTransaction,
    target: &WriteTransaction,
) -> Result<(), StoreError> {
    copy_table(source, target, CREATED_UNPROVEDUSERID)?;
    copy_table(source, target, TOKENHASH_EMAILTOKEN)?;
    copy_table(source, target, USERID_EMAILTOKENHASH)?;
    copy_table(source, target, MAILID_MAIL)?;
    Ok(())
}

/// What a sign-up did; the answer to the client is the same for all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignUpEffect {
    Created,
    RefreshedPending,
    AddressInUse,
}

/// Which change a consumed token makes. Either one proves the address (`email_verified`),
/// and either one activates a pending sign-up: that ends whatever was made while it was
/// pending and kills the account's other links (API.md 15.5).
#[derive(Clone, Debug)]
pub enum TokenAction {
    /// A verification link: a pending sign-up becomes active with the password of the
    /// attempt the link belongs to; an active account only becomes verified.
    Activate,
    /// Set this password hash and end every session and API token of the user.
    SetPassword(PasswordHashString),
}

/// The link `issue_email_token` stores and mails, chosen once the user is known.
#[derive(Debug)]
pub struct LinkToIssue {
    pub purpose: EmailTokenPurpose,
    pub expires_at: UnixSeconds,
    pub mail: OutgoingMail,
}

/// Whether this user is a sign-up whose owner never proved the address: the accounts whose
/// links carry their attempt's password and that the pending purge removes.
pub fn is_unproved_sign_up(user: &User) -> bool {
    user.status == Status::Pending && !user.email_verified
}

fn enqueue(
    transaction: &WriteTransaction,
    mail: &OutgoingMail,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    let mut meta = transaction.open_table(META)?;
    let id = meta
        .get(META_NEXT_MAIL_ID)?
        .map_or(1, |guard| guard.value());
    meta.insert(META_NEXT_MAIL_ID, id + 1)?;
    let record = MailRecord {
        v: RECORD_VERSION,
        to: mail.to.clone(),
        subject: mail.subject.clone(),
        text: mail.text.clone(),
        html: mail.html.clone(),
        attempts: 0,
        next_attempt_at: now,
    };
    transaction
        .open_table(MAILID_MAIL)?
        .insert(id, encode(&record).as_slice())?;
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
    let reset = purpose_name(EmailTokenPurpose::ResetPassword);
    void_tokens(transaction, user_id, |_, record| {
        record.purpose == reset && !record.used
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
        purpose: purpose_name(token.purpose).to_owned(),
        user_id: token.user_id,
        expires_at: token.expires_at,
        used: false,
        attempt: token.attempt.as_ref().map(|attempt| AttemptRecord {
            password_hash: attempt.password_hash.0.clone(),
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

fn write_user(transaction: &WriteTransaction, user: &User) -> Result<(), StoreError> {
    transaction
        .open_table(USERID_USER)?
        .insert(user.id, encode_user(user).as_slice())?;
    Ok(())
}

/// A token that may still be used for `purpose` at `now`, or why not.
fn usable_token(
    record: Option<EmailTokenRecord>,
    purpose: EmailTokenPurpose,
    now: UnixSeconds,
) -> Result<EmailTokenRecord, EmailTokenProblem> {
    let Some(record) = record.filter(|record| record.purpose == purpose_name(purpose)) else {
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
/// (sessions, API tokens, sub-users: by whoever knew an attempt's password) ends, and every
/// other link of the account dies (API.md 15.5).
fn end_what_was_made_while_pending(
    transaction: &WriteTransaction,
    user_id: UserId,
    used_token_hash: &[u8; 32],
) -> Result<(), StoreError> {
    for session_id in session_ids_of_user(transaction, user_id)? {
        delete_session(transaction, session_id)?;
    }
    delete_standalone_api_tokens(transaction, user_id)?;
    let sub_users = children_in(transaction, user_id)?;
    delete_users(transaction, &sub_users)?;
    void_tokens(transaction, user_id, |hash, _| hash != used_token_hash)
}

impl Store {
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
        let purpose = purpose_name(link.purpose);
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
                    user.password_hash = Some(PasswordHashString(attempt.password_hash));
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
        if !addresses.is_empty() {
            let mut mails = transaction.open_table(MAILID_MAIL)?;
            let mut queued_to_them = Vec::new();
            for entry in mails.iter()? {
                let (id, bytes) = entry?;
                let record: MailRecord = decode(bytes.value(), "mail")?;
                if addresses.contains(&record.to) {
                    queued_to_them.push(id.value());
                }
            }
            for id in queued_to_them {
                mails.remove(id)?;
            }
        }
        transaction.commit()?;
        Ok(purged)
    }

    /// Messages due for a delivery attempt, oldest first.
    pub fn due_mails(&self, now: UnixSeconds, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(MAILID_MAIL)?;
        let mut due = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            let record: MailRecord = decode(bytes.value(), "mail")?;
            if record.next_attempt_at <= now {
                due.push(QueuedMail {
                    id: id.value(),
                    mail: OutgoingMail {
                        to: record.to,
                        subject: record.subject,
                        text: record.text,
                        html: record.html,
                    },
                    attempts: record.attempts,
                    next_attempt_at: record.next_attempt_at,
                });
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    /// Removes a message from the queue (delivered, or given up).
    pub fn remove_mail(&self, id: u64) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        transaction.open_table(MAILID_MAIL)?.remove(id)?;
        transaction.commit()?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn postpone_mail(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at: UnixSeconds,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let mut table = transaction.open_table(MAILID_MAIL)?;
            let record = table
                .get(id)?
                .map(|bytes| decode::<MailRecord>(bytes.value(), "mail"))
                .transpose()?;
            if let Some(mut record) = record {
                record.attempts = attempts;
                record.next_attempt_at = next_attempt_at;
                table.insert(id, encode(&record).as_slice())?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_records_from_before_attempts_read_without_one_and_attempts_round_trip() {
        let legacy = br#"{"v":1,"purpose":"verify-email","user_id":7,"expires_at":99}"#;
        let record: EmailTokenRecord = decode(legacy, "email token").unwrap();
        assert!(record.attempt.is_none() && !record.used);
        let with_attempt = EmailTokenRecord {
            attempt: Some(AttemptRecord {
                password_hash: "$argon2id$v=19$...".into(),
                first_name: Some("Ada".into()),
                last_name: None,
            }),
            ..record
        };
        let decoded: EmailTokenRecord = decode(&encode(&with_attempt), "email token").unwrap();
        let attempt = decoded.attempt.unwrap();
        assert_eq!(attempt.password_hash, "$argon2id$v=19$...");
        assert_eq!(attempt.first_name.as_deref(), Some("Ada"));
        // A link without an attempt writes no attempt field, as older builds wrote it.
        let plain = EmailTokenRecord {
            attempt: None,
            ..decoded
        };
        assert!(
            !String::from_utf8(encode(&plain))
                .unwrap()
                .contains("attempt")
        );
    }
}
