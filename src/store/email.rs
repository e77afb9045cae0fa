//! Store functions for sign-up, emailed single-use tokens and the mail queue. A message a
//! change causes is queued in the same transaction as the change, so a crash loses neither.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::model::{
    EmailToken, EmailTokenProblem, EmailTokenPurpose, NewUser, OutgoingMail, PasswordHashString,
    QueuedMail, Status, UnixSeconds, User, UserId,
};
use crate::store::accounts::delete_standalone_api_tokens;
use crate::store::record::{RECORD_VERSION, decode, encode, encode_user};
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

pub(super) fn create_tables(transaction: &WriteTransaction) -> Result<(), StoreError> {
    transaction.open_table(TOKENHASH_EMAILTOKEN)?;
    transaction.open_table(USERID_EMAILTOKENHASH)?;
    transaction.open_table(MAILID_MAIL)?;
    Ok(())
}

pub(super) fn copy_tables(
    source: &ReadTransaction,
    target: &WriteTransaction,
) -> Result<(), StoreError> {
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

/// Which change a consumed token makes.
#[derive(Clone, Debug)]
pub enum TokenAction {
    /// pending → active.
    Activate,
    /// Set this password hash and end every session and API token of the user.
    SetPassword(PasswordHashString),
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

/// Deletes every token of this purpose the user holds (used ones included).
fn void_tokens(
    transaction: &WriteTransaction,
    user_id: UserId,
    purpose: EmailTokenPurpose,
) -> Result<(), StoreError> {
    let mut by_user = transaction.open_table(USERID_EMAILTOKENHASH)?;
    let mut tokens = transaction.open_table(TOKENHASH_EMAILTOKEN)?;
    let mut doomed = Vec::new();
    for entry in by_user.range((user_id, &[0u8; 32])..=(user_id, &[0xffu8; 32]))? {
        let hash = *entry?.0.value().1;
        let same_purpose = match tokens.get(&hash)? {
            Some(bytes) => {
                decode::<EmailTokenRecord>(bytes.value(), "email token")?.purpose
                    == purpose_name(purpose)
            }
            None => true,
        };
        if same_purpose {
            doomed.push(hash);
        }
    }
    for hash in doomed {
        tokens.remove(&hash)?;
        by_user.remove((user_id, &hash))?;
    }
    Ok(())
}

fn insert_token(transaction: &WriteTransaction, token: &EmailToken) -> Result<(), StoreError> {
    let record = EmailTokenRecord {
        v: RECORD_VERSION,
        purpose: purpose_name(token.purpose).to_owned(),
        user_id: token.user_id,
        expires_at: token.expires_at,
        used: false,
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

impl Store {
    /// A sign-up in one transaction. A free address gets a pending user; a still-pending one
    /// gets the new password and names, loses its earlier tokens and gets a fresh one; an
    /// address in use gets only a notice. Each case queues its email in the same commit.
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
        let (user, effect) = match existing {
            None => (
                insert_user(&transaction, new_user, now)?,
                SignUpEffect::Created,
            ),
            Some(mut user) if user.status == Status::Pending => {
                user.password_hash = new_user.password_hash;
                user.first_name = new_user.first_name;
                user.last_name = new_user.last_name;
                user.updated = now;
                write_user(&transaction, &user)?;
                void_tokens(&transaction, user.id, EmailTokenPurpose::VerifyEmail)?;
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
                },
            )?;
            enqueue(&transaction, &verification_mail(&user), now)?;
        }
        transaction.commit()?;
        Ok(effect)
    }

    /// Issues a token for the user with this address if its status is `eligible`: earlier
    /// tokens of the purpose are voided, the mail is queued, all in one commit. Returns
    /// whether one was issued.
    pub fn issue_email_token(
        &self,
        normalized_email: &str,
        eligible: Status,
        token: (EmailTokenPurpose, [u8; 32], UnixSeconds),
        mail: impl FnOnce(&User) -> OutgoingMail,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        let (purpose, hash, expires_at) = token;
        let transaction = self.begin_write()?;
        let id = transaction
            .open_table(EMAIL_USERID)?
            .get(normalized_email)?
            .map(|guard| guard.value());
        let user = match id {
            Some(id) => user_in(&transaction.open_table(USERID_USER)?, id)?,
            None => None,
        };
        let Some(user) = user.filter(|user| user.status == eligible) else {
            return Ok(false);
        };
        void_tokens(&transaction, user.id, purpose)?;
        insert_token(
            &transaction,
            &EmailToken {
                hash,
                purpose,
                user_id: user.id,
                expires_at,
            },
        )?;
        enqueue(&transaction, &mail(&user), now)?;
        transaction.commit()?;
        Ok(true)
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
        let Some(mut record) = record.filter(|record| record.purpose == purpose_name(purpose))
        else {
            return Ok(Err(EmailTokenProblem::Unknown));
        };
        if record.used {
            return Ok(Err(EmailTokenProblem::Used));
        }
        if record.expires_at <= now {
            return Ok(Err(EmailTokenProblem::Expired));
        }
        let Some(mut user) = user_in(&transaction.open_table(USERID_USER)?, record.user_id)? else {
            return Ok(Err(EmailTokenProblem::Unknown));
        };
        match action {
            TokenAction::Activate => {
                if user.status == Status::Pending {
                    user.status = Status::Active;
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
