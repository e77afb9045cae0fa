//! Store functions for sign-up and emailed single-use tokens (verification and reset links)
//! on PostgreSQL, as `redb_backend/signup.rs`: making a pending account or a new attempt at
//! one, issuing and consuming links, and purging the stale and the never proved. A message a
//! change causes is queued in the same transaction as the change, so a crash loses neither.
//! The purge's index of unproved sign-ups is the partial index `unproved_sign_ups_by_created`
//! on `users`, which PostgreSQL keeps as users change.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::model::{
    EmailToken, EmailTokenProblem, EmailTokenPurpose, NewUser, OutgoingMail, PasswordHashString,
    SignUpAttempt, Status, UnixSeconds, User, UserId,
};
use crate::store::postgres_backend::api_tokens::delete_standalone_api_tokens;
use crate::store::postgres_backend::mail_queue::{enqueue, remove_mail_to};
use crate::store::postgres_backend::rows::{
    USER_COLUMNS, name_from_sql, optional_user_from_row, qualified, user_from_row,
    user_id_from_sql, user_id_to_sql, write_user,
};
use crate::store::postgres_backend::second_factors::delete_second_factors_of_user;
use crate::store::postgres_backend::sessions::{delete_sessions, session_ids_of_user};
use crate::store::postgres_backend::users::{children_of_user, delete_users, insert_user};
use crate::store::postgres_backend::{PostgresStore, begin_write};
use crate::store::stored_name::StoredName;
use crate::store::{LinkToIssue, SignUpEffect, StoreError, TokenAction, is_unproved_sign_up};

/// An emailed token's row, without its hash.
struct StoredEmailToken {
    purpose: EmailTokenPurpose,
    expires_at: UnixSeconds,
    used: bool,
    attempt: Option<SignUpAttempt>,
}

/// How many columns `token_and_user_sql` reads before the user's.
const TOKEN_COLUMN_COUNT: usize = 6;

/// The token with this hash and its user (a left join: the user's columns are null when it
/// is gone), the token's columns first, in the order `token_from_row` reads them.
fn token_and_user_sql() -> String {
    format!(
        "SELECT token.purpose, token.expires_at, token.used, \
         token.attempt_password_hash, token.attempt_first_name, token.attempt_last_name, {} \
         FROM email_tokens token LEFT JOIN users u ON u.id = token.user_id \
         WHERE token.hash = $1",
        qualified("u", USER_COLUMNS)
    )
}

fn token_from_row(row: &Row) -> Result<StoredEmailToken, StoreError> {
    let attempt_password_hash: Option<String> = row.try_get(3)?;
    Ok(StoredEmailToken {
        purpose: name_from_sql::<EmailTokenPurpose>(row.try_get(0)?, "email token")?,
        expires_at: row.try_get(1)?,
        used: row.try_get(2)?,
        attempt: match attempt_password_hash {
            Some(password_hash) => Some(SignUpAttempt {
                password_hash: PasswordHashString::new(password_hash),
                first_name: row.try_get(4)?,
                last_name: row.try_get(5)?,
            }),
            None => None,
        },
    })
}

/// The token with this hash and its user, if the token exists.
async fn token_and_user(
    client: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<Option<(StoredEmailToken, Option<User>)>, StoreError> {
    let statement = client.prepare_cached(&token_and_user_sql()).await?;
    let Some(row) = client.query_opt(&statement, &[&hash.as_slice()]).await? else {
        return Ok(None);
    };
    Ok(Some((
        token_from_row(&row)?,
        optional_user_from_row(&row, TOKEN_COLUMN_COUNT)?,
    )))
}

/// The user with this normalized address.
async fn user_with_address(
    client: &impl GenericClient,
    normalized_email: &str,
) -> Result<Option<User>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE normalized_email = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&normalized_email])
        .await?
        .map(|row| user_from_row(&row, 0))
        .transpose()
}

impl PostgresStore {
    /// A sign-up in one transaction. A free address gets a pending user; an unproved pending
    /// one takes the new password and names for signing in while pending (when allowed). In
    /// both cases the attempt's password and names go with its own link, and earlier
    /// attempts keep theirs (API.md 15.5). An address in use gets only a notice. Each case
    /// queues its email in the same commit.
    pub async fn sign_up(
        &self,
        new_user: NewUser,
        token_hash: [u8; 32],
        token_expires_at: UnixSeconds,
        verification_mail: impl FnOnce(&User) -> OutgoingMail + Send,
        address_in_use_mail: impl FnOnce(&User) -> OutgoingMail + Send,
        now: UnixSeconds,
    ) -> Result<SignUpEffect, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let existing = user_with_address(&transaction, &new_user.normalized_email).await?;
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
                insert_user(&transaction, new_user, now).await?,
                SignUpEffect::Created,
            ),
            Some(mut user) if is_unproved_sign_up(&user) => {
                user.password_hash = new_user.password_hash;
                user.first_name = new_user.first_name;
                user.last_name = new_user.last_name;
                user.credential_version += 1;
                user.updated = now;
                write_user(&transaction, &user).await?;
                (user, SignUpEffect::RefreshedPending)
            }
            Some(user) => (user, SignUpEffect::AddressInUse),
        };
        if effect == SignUpEffect::AddressInUse {
            enqueue(&transaction, &address_in_use_mail(&user), now).await?;
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
            )
            .await?;
            enqueue(&transaction, &verification_mail(&user), now).await?;
        }
        transaction.commit().await?;
        Ok(effect)
    }

    /// Issues a token for the user with this address if `link_for` gives it one: earlier
    /// tokens of that purpose (other than sign-up attempts' links) are voided and the mail is
    /// queued, all in one commit. Returns whether one was issued.
    pub async fn issue_email_token(
        &self,
        normalized_email: &str,
        token_hash: [u8; 32],
        link_for: impl FnOnce(&User) -> Option<LinkToIssue> + Send,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let user = user_with_address(&transaction, normalized_email).await?;
        let Some((user, link)) = user.and_then(|user| link_for(&user).map(|link| (user, link)))
        else {
            return Ok(false);
        };
        let void_earlier_links = transaction
            .prepare_cached(
                "DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2 \
                 AND attempt_password_hash IS NULL",
            )
            .await?;
        transaction
            .execute(
                &void_earlier_links,
                &[&user_id_to_sql(user.id)?, &link.purpose.stored_name()],
            )
            .await?;
        insert_token(
            &transaction,
            &EmailToken {
                hash: token_hash,
                purpose: link.purpose,
                user_id: user.id,
                expires_at: link.expires_at,
                attempt: None,
            },
        )
        .await?;
        enqueue(&transaction, &link.mail, now).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// The user a token would act on, if it is usable now: read before any hashing, so an
    /// unknown, used or expired token costs none (API.md 15.7). `consume_email_token`
    /// checks again when it writes.
    pub async fn email_token_user(
        &self,
        hash: &[u8; 32],
        purpose: EmailTokenPurpose,
        now: UnixSeconds,
    ) -> Result<Result<User, EmailTokenProblem>, StoreError> {
        let client = self.connection().await?;
        let (record, user) = match token_and_user(&client, hash).await? {
            Some((record, user)) => (Some(record), user),
            None => (None, None),
        };
        let record = match usable_token(record, purpose, now) {
            Ok(record) => record,
            Err(problem) => return Ok(Err(problem)),
        };
        Ok(token_user(user, &record))
    }

    /// Consumes a token and makes its change in the same transaction. The token stays,
    /// marked used, so a second use is told apart from a bad token.
    pub async fn consume_email_token(
        &self,
        hash: &[u8; 32],
        purpose: EmailTokenPurpose,
        action: TokenAction,
        now: UnixSeconds,
    ) -> Result<Result<User, EmailTokenProblem>, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let (record, user) = match token_and_user(&transaction, hash).await? {
            Some((record, user)) => (Some(record), user),
            None => (None, None),
        };
        let mut record = match usable_token(record, purpose, now) {
            Ok(record) => record,
            Err(problem) => return Ok(Err(problem)),
        };
        let mut user = match token_user(user, &record) {
            Ok(user) => user,
            Err(problem) => return Ok(Err(problem)),
        };
        let activates_sign_up = is_unproved_sign_up(&user);
        match action {
            TokenAction::Activate => {
                // A link without an attempt (a resend to an active sub-user, or a sign-up
                // link written before attempts kept their password) leaves the password.
                if let Some(attempt) = record.attempt.take() {
                    user.password_hash = Some(attempt.password_hash);
                    user.first_name = attempt.first_name;
                    user.last_name = attempt.last_name;
                    user.credential_version += 1;
                }
            }
            TokenAction::SetPassword(password_hash) => {
                user.password_hash = Some(password_hash);
                user.credential_version += 1;
                let session_ids = session_ids_of_user(&transaction, user.id).await?;
                delete_sessions(&transaction, &session_ids).await?;
                delete_standalone_api_tokens(&transaction, user.id).await?;
            }
        }
        if activates_sign_up {
            user.status = Status::Active;
            end_what_was_made_while_pending(&transaction, user.id, hash).await?;
        }
        user.updated = now;
        // Either link reached the address: its owner proved it (API.md 15.4).
        user.email_verified = true;
        write_user(&transaction, &user).await?;
        // Used, and without the attempt an activation took.
        let mark_used = transaction
            .prepare_cached(
                "UPDATE email_tokens SET used = true, attempt_password_hash = $2, \
                 attempt_first_name = $3, attempt_last_name = $4 WHERE hash = $1",
            )
            .await?;
        let attempt = record.attempt.as_ref();
        transaction
            .execute(
                &mark_used,
                &[
                    &hash.as_slice(),
                    &attempt.map(|attempt| attempt.password_hash.expose_secret()),
                    &attempt.and_then(|attempt| attempt.first_name.as_deref()),
                    &attempt.and_then(|attempt| attempt.last_name.as_deref()),
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(Ok(user))
    }

    /// Deletes up to `limit` emailed tokens that expired before `before`.
    pub async fn purge_email_tokens_expired_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "DELETE FROM email_tokens WHERE hash IN (SELECT hash FROM email_tokens \
                 WHERE expires_at < $1 ORDER BY expires_at, hash LIMIT $2)",
            )
            .await?;
        // The redb backend stops once it holds `limit` tokens, after taking the first: a
        // limit of 0 still purges one.
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let purged = transaction.execute(&statement, &[&before, &limit]).await?;
        transaction.commit().await?;
        usize::try_from(purged).map_err(|_| StoreError::CorruptRecord("email token"))
    }

    /// Up to `limit` ids of unproved sign-ups created before `before`, oldest first, for
    /// `purge_unproved_sign_ups`: one read of the partial index, no write lock.
    pub async fn unproved_sign_ups_created_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        let client = self.connection().await?;
        // The predicate is the index's own, so the planner reads `unproved_sign_ups_by_created`.
        let statement = client
            .prepare_cached(
                "SELECT id FROM users WHERE status = 'pending' AND NOT email_verified \
                 AND created < $1 ORDER BY created, id LIMIT $2",
            )
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .query(&statement, &[&before, &limit])
            .await?
            .iter()
            .map(|row| user_id_from_sql(row.try_get(0)?))
            .collect()
    }

    /// Deletes those of these users that are still unproved sign-ups created before
    /// `before` (API.md 15.15), with whatever they made while pending (sessions, API tokens,
    /// sub-users), their emailed tokens and the mail still queued to them, in one
    /// transaction. Returns how many accounts went.
    pub async fn purge_unproved_sign_ups(
        &self,
        user_ids: &[UserId],
        before: UnixSeconds,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let sql_ids = user_ids
            .iter()
            .map(|id| user_id_to_sql(*id))
            .collect::<Result<Vec<i64>, _>>()?;
        let statement = transaction
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)"
            ))
            .await?;
        let mut found = HashMap::new();
        for row in transaction.query(&statement, &[&sql_ids]).await? {
            let user = user_from_row(&row, 0)?;
            found.insert(user.id, user);
        }
        // Each id as given, as the redb backend counts them; one proved (or made active)
        // since it was noted is left alone, and has already left the partial index.
        let doomed: Vec<&User> = user_ids
            .iter()
            .filter_map(|id| found.get(id))
            .filter(|user| is_unproved_sign_up(user) && user.created < before)
            .collect();
        let purged = doomed.len();
        // Mail goes to the normalized address (older queued mail may name the typed one).
        let addresses: Vec<String> = doomed
            .iter()
            .flat_map(|user| [user.email.clone(), user.normalized_email.clone()])
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let mut doomed_ids = BTreeSet::new();
        for user in &doomed {
            doomed_ids.insert(user.id);
            for sub_user in children_of_user(&transaction, user.id).await? {
                doomed_ids.insert(sub_user.id);
            }
        }
        delete_users(&transaction, &doomed_ids.into_iter().collect::<Vec<_>>()).await?;
        remove_mail_to(&transaction, &addresses).await?;
        transaction.commit().await?;
        Ok(purged)
    }
}

/// Drops the user's unused password-reset links: a password change or a suspension makes any
/// link mailed before it worthless to whoever holds it. A used one stays, to be told apart.
pub(super) async fn void_reset_links(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2 AND NOT used")
        .await?;
    client
        .execute(
            &statement,
            &[
                &user_id_to_sql(user_id)?,
                &EmailTokenPurpose::ResetPassword.stored_name(),
            ],
        )
        .await?;
    Ok(())
}

/// Stores a new, unused token (replacing a row with the same hash, as the redb backend
/// overwrites its record).
async fn insert_token(client: &impl GenericClient, token: &EmailToken) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO email_tokens (hash, purpose, user_id, expires_at, used, \
             attempt_password_hash, attempt_first_name, attempt_last_name) \
             VALUES ($1, $2, $3, $4, false, $5, $6, $7) \
             ON CONFLICT (hash) DO UPDATE SET purpose = $2, user_id = $3, expires_at = $4, \
             used = false, attempt_password_hash = $5, attempt_first_name = $6, \
             attempt_last_name = $7",
        )
        .await?;
    let attempt = token.attempt.as_ref();
    client
        .execute(
            &statement,
            &[
                &token.hash.as_slice(),
                &token.purpose.stored_name(),
                &user_id_to_sql(token.user_id)?,
                &token.expires_at,
                &attempt.map(|attempt| attempt.password_hash.expose_secret()),
                &attempt.and_then(|attempt| attempt.first_name.as_deref()),
                &attempt.and_then(|attempt| attempt.last_name.as_deref()),
            ],
        )
        .await?;
    Ok(())
}

/// A token that may still be used for `purpose` at `now`, or why not.
fn usable_token(
    record: Option<StoredEmailToken>,
    purpose: EmailTokenPurpose,
    now: UnixSeconds,
) -> Result<StoredEmailToken, EmailTokenProblem> {
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
fn token_user(user: Option<User>, record: &StoredEmailToken) -> Result<User, EmailTokenProblem> {
    match user {
        Some(user) if record.attempt.is_some() && !is_unproved_sign_up(&user) => {
            Err(EmailTokenProblem::Unknown)
        }
        Some(user) => Ok(user),
        None => Err(EmailTokenProblem::Unknown),
    }
}

/// A pending sign-up's owner proved the address: whatever was made while it was pending
/// (sessions, API tokens, sub-users, and second factors: TOTP, recovery codes and passkeys,
/// by whoever knew an attempt's password) ends, and every other link of the account dies
/// (API.md 15.5). A passkey kept from then would sign its maker in with no password at all.
async fn end_what_was_made_while_pending(
    client: &impl GenericClient,
    user_id: UserId,
    used_token_hash: &[u8; 32],
) -> Result<(), StoreError> {
    let session_ids = session_ids_of_user(client, user_id).await?;
    delete_sessions(client, &session_ids).await?;
    delete_standalone_api_tokens(client, user_id).await?;
    delete_second_factors_of_user(client, user_id).await?;
    let sub_user_ids: Vec<UserId> = children_of_user(client, user_id)
        .await?
        .iter()
        .map(|sub_user| sub_user.id)
        .collect();
    delete_users(client, &sub_user_ids).await?;
    let statement = client
        .prepare_cached("DELETE FROM email_tokens WHERE user_id = $1 AND hash <> $2")
        .await?;
    client
        .execute(
            &statement,
            &[&user_id_to_sql(user_id)?, &used_token_hash.as_slice()],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::email_address::EmailAddress;
    use crate::model::{PermissionSet, Role, Secret, SessionId};
    use crate::store::AlsoRead;
    use crate::store::postgres_backend::test_support::{
        NOW, add_user, fresh_store, live_session, standalone_token,
    };

    const DAY: UnixSeconds = 86_400;

    fn sign_up_of(email: &str, password: &str, first_name: &str) -> NewUser {
        NewUser {
            password_hash: Some(PasswordHashString::new(password.to_owned())),
            first_name: Some(first_name.to_owned()),
            permissions: PermissionSet::empty(),
            ..NewUser::new(
                EmailAddress::parse(email).unwrap(),
                Role::User,
                Status::Pending,
            )
        }
    }

    fn mail(to: &str, subject: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: Secret::new(String::new()),
            html: Secret::new(String::new()),
        }
    }

    async fn sign_up(
        store: &PostgresStore,
        new_user: NewUser,
        hash_byte: u8,
        now: UnixSeconds,
    ) -> SignUpEffect {
        let to = new_user.email.clone();
        let notice_to = to.clone();
        store
            .sign_up(
                new_user,
                [hash_byte; 32],
                now + DAY,
                move |_| mail(&to, "verify"),
                move |_| mail(&notice_to, "address in use"),
                now,
            )
            .await
            .unwrap()
    }

    async fn queued(store: &PostgresStore) -> Vec<(String, String)> {
        store
            .due_mails(UnixSeconds::MAX, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|queued| (queued.mail.to, queued.mail.subject))
            .collect()
    }

    /// The token's (used, attempt's password hash), if it is stored.
    async fn token_row(store: &PostgresStore, hash_byte: u8) -> Option<(bool, Option<String>)> {
        let client = store.connection().await.unwrap();
        client
            .query_opt(
                "SELECT used, attempt_password_hash FROM email_tokens WHERE hash = $1",
                &[&[hash_byte; 32].as_slice()],
            )
            .await
            .unwrap()
            .map(|row| (row.get(0), row.get(1)))
    }

    async fn user(store: &PostgresStore, id: UserId) -> Option<User> {
        store.user_by_id(id).await.unwrap()
    }

    fn password(user: &User) -> Option<&str> {
        user.password_hash.as_ref().map(|hash| hash.expose_secret())
    }

    fn reset_link(to: &str, expires_at: UnixSeconds) -> LinkToIssue {
        LinkToIssue {
            purpose: EmailTokenPurpose::ResetPassword,
            expires_at,
            mail: mail(to, "reset"),
        }
    }

    #[tokio::test]
    async fn a_sign_up_makes_a_pending_user_a_second_attempt_keeps_its_own_link_and_a_used_address_gets_a_notice()
     {
        let store = fresh_store().await;
        let effect = sign_up(
            &store,
            sign_up_of("Ada@Example.com", "first", "Ada"),
            1,
            NOW,
        )
        .await;
        assert_eq!(effect, SignUpEffect::Created);
        let created = store
            .user_by_normalized_email("ada@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(created.status, Status::Pending);
        assert!(!created.email_verified);
        assert_eq!(password(&created), Some("first"));
        assert_eq!(
            token_row(&store, 1).await,
            Some((false, Some("first".into())))
        );

        let again = sign_up(
            &store,
            sign_up_of("ada@example.com", "second", "Eve"),
            2,
            NOW + 5,
        )
        .await;
        assert_eq!(again, SignUpEffect::RefreshedPending);
        let refreshed = user(&store, created.id).await.unwrap();
        assert_eq!(password(&refreshed), Some("second"));
        assert_eq!(refreshed.first_name.as_deref(), Some("Eve"));
        assert_eq!(refreshed.credential_version, created.credential_version + 1);
        assert_eq!(refreshed.updated, NOW + 5);
        // Each attempt keeps its own password with its own link.
        assert_eq!(
            token_row(&store, 1).await,
            Some((false, Some("first".into())))
        );
        assert_eq!(
            token_row(&store, 2).await,
            Some((false, Some("second".into())))
        );

        let active = add_user(&store, "bob@example.com").await;
        let in_use = sign_up(
            &store,
            sign_up_of("bob@example.com", "third", "Mallory"),
            3,
            NOW,
        )
        .await;
        assert_eq!(in_use, SignUpEffect::AddressInUse);
        assert_eq!(password(&user(&store, active.id).await.unwrap()), None);
        assert_eq!(token_row(&store, 3).await, None);
        assert_eq!(
            queued(&store).await,
            vec![
                ("Ada@Example.com".to_owned(), "verify".to_owned()),
                ("ada@example.com".to_owned(), "verify".to_owned()),
                ("bob@example.com".to_owned(), "address in use".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_token_is_unknown_for_another_purpose_expired_at_its_time_and_used_once_used() {
        let store = fresh_store().await;
        sign_up(
            &store,
            sign_up_of("ada@example.com", "first", "Ada"),
            1,
            NOW,
        )
        .await;
        let verify = EmailTokenPurpose::VerifyEmail;
        let expires_at = NOW + DAY;
        assert_eq!(
            store
                .email_token_user(&[9; 32], verify, NOW)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Unknown)
        );
        assert_eq!(
            store
                .email_token_user(&[1; 32], EmailTokenPurpose::ResetPassword, NOW)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Unknown)
        );
        assert_eq!(
            store
                .email_token_user(&[1; 32], verify, expires_at)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Expired)
        );
        assert_eq!(
            store
                .consume_email_token(&[1; 32], verify, TokenAction::Activate, expires_at)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Expired)
        );
        let found = store
            .email_token_user(&[1; 32], verify, expires_at - 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.normalized_email, "ada@example.com");
        store
            .consume_email_token(&[1; 32], verify, TokenAction::Activate, NOW + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .email_token_user(&[1; 32], verify, NOW + 2)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Used)
        );
        assert_eq!(
            store
                .consume_email_token(&[1; 32], verify, TokenAction::Activate, NOW + 2)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Used)
        );
        // The used link keeps no attempt.
        assert_eq!(token_row(&store, 1).await, Some((true, None)));
    }

    #[tokio::test]
    async fn activating_an_attempt_ends_what_was_made_while_pending_and_every_other_link() {
        let store = fresh_store().await;
        sign_up(
            &store,
            sign_up_of("ada@example.com", "owner", "Ada"),
            1,
            NOW,
        )
        .await;
        sign_up(
            &store,
            sign_up_of("ada@example.com", "squatter", "Eve"),
            2,
            NOW + 1,
        )
        .await;
        let pending = store
            .user_by_normalized_email("ada@example.com")
            .await
            .unwrap()
            .unwrap();
        // Whoever knew the second attempt's password made things while it was pending.
        let session = live_session(SessionId::new_for_user(pending.id), pending.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        store
            .insert_api_token(&standalone_token(pending.id, 0x51, None))
            .await
            .unwrap();
        let sub_user = store
            .insert_user(
                NewUser {
                    parent_id: Some(pending.id),
                    permissions: PermissionSet::empty(),
                    ..NewUser::new(
                        EmailAddress::parse("sub@example.com").unwrap(),
                        Role::Sub,
                        Status::Active,
                    )
                },
                NOW + 2,
            )
            .await
            .unwrap();
        {
            let client = store.connection().await.unwrap();
            client
                .execute(
                    "INSERT INTO active_totp (user_id, secret, enabled_at, last_accepted_step) \
                     VALUES ($1, $2, $3, 0)",
                    &[
                        &user_id_to_sql(pending.id).unwrap(),
                        &[3u8; 20].as_slice(),
                        &NOW,
                    ],
                )
                .await
                .unwrap();
        }

        // The owner follows the first attempt's link: its password, not the last attempt's.
        let activated = store
            .consume_email_token(
                &[1; 32],
                EmailTokenPurpose::VerifyEmail,
                TokenAction::Activate,
                NOW + 10,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(activated.status, Status::Active);
        assert!(activated.email_verified);
        assert_eq!(password(&activated), Some("owner"));
        assert_eq!(activated.first_name.as_deref(), Some("Ada"));
        assert_eq!(activated.credential_version, pending.credential_version + 1);
        assert_eq!(activated.updated, NOW + 10);
        let stored = user(&store, pending.id).await.unwrap();
        assert_eq!(
            (stored.status, stored.email_verified, password(&stored)),
            (Status::Active, true, Some("owner"))
        );

        assert!(store.session(session.id).await.unwrap().is_none());
        assert!(
            store
                .api_token_context(&[0x51; 32], AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
        assert!(user(&store, sub_user.id).await.is_none());
        let client = store.connection().await.unwrap();
        let totp: i64 = client
            .query_one("SELECT count(*) FROM active_totp", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(totp, 0);
        // The other attempt's link died; the used one stays, used.
        assert_eq!(token_row(&store, 2).await, None);
        assert_eq!(token_row(&store, 1).await, Some((true, None)));
        assert!(
            store
                .unproved_sign_ups_created_before(NOW + DAY, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_attempt_link_is_moot_once_the_address_is_proved_otherwise() {
        let store = fresh_store().await;
        sign_up(
            &store,
            sign_up_of("ada@example.com", "first", "Ada"),
            1,
            NOW,
        )
        .await;
        let pending = store
            .user_by_normalized_email("ada@example.com")
            .await
            .unwrap()
            .unwrap();
        store
            .update_user(pending.id, NOW + 1, |user| user.email_verified = true)
            .await
            .unwrap();
        let verify = EmailTokenPurpose::VerifyEmail;
        assert_eq!(
            store
                .email_token_user(&[1; 32], verify, NOW + 2)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Unknown)
        );
        assert_eq!(
            store
                .consume_email_token(&[1; 32], verify, TokenAction::Activate, NOW + 2)
                .await
                .unwrap()
                .err(),
            Some(EmailTokenProblem::Unknown)
        );
        assert_eq!(
            token_row(&store, 1).await,
            Some((false, Some("first".into())))
        );
    }

    #[tokio::test]
    async fn a_link_is_issued_only_when_link_for_gives_one_and_voids_earlier_links_of_its_purpose()
    {
        let store = fresh_store().await;
        let ada = add_user(&store, "ada@example.com").await;
        assert!(
            !store
                .issue_email_token("nobody@example.com", [1; 32], |_| unreachable!(), NOW)
                .await
                .unwrap()
        );
        assert!(
            !store
                .issue_email_token("ada@example.com", [1; 32], |_| None, NOW)
                .await
                .unwrap()
        );
        assert_eq!(token_row(&store, 1).await, None);
        assert!(queued(&store).await.is_empty());

        for hash_byte in [1, 2] {
            assert!(
                store
                    .issue_email_token(
                        "ada@example.com",
                        [hash_byte; 32],
                        |user| Some(reset_link(&user.email, NOW + DAY)),
                        NOW,
                    )
                    .await
                    .unwrap()
            );
        }
        let verify_link = LinkToIssue {
            purpose: EmailTokenPurpose::VerifyEmail,
            expires_at: NOW + DAY,
            mail: mail("ada@example.com", "verify"),
        };
        assert!(
            store
                .issue_email_token("ada@example.com", [3; 32], |_| Some(verify_link), NOW)
                .await
                .unwrap()
        );
        // The second reset link voided the first; a link of another purpose stays.
        assert_eq!(token_row(&store, 1).await, None);
        assert_eq!(token_row(&store, 2).await, Some((false, None)));
        assert_eq!(token_row(&store, 3).await, Some((false, None)));
        assert_eq!(queued(&store).await.len(), 3);
        let found = store
            .email_token_user(&[2; 32], EmailTokenPurpose::ResetPassword, NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, ada.id);
    }

    #[tokio::test]
    async fn a_verification_link_for_a_pending_sign_up_leaves_the_attempts_links() {
        let store = fresh_store().await;
        sign_up(
            &store,
            sign_up_of("ada@example.com", "first", "Ada"),
            1,
            NOW,
        )
        .await;
        let resend = |_: &User| {
            Some(LinkToIssue {
                purpose: EmailTokenPurpose::VerifyEmail,
                expires_at: NOW + DAY,
                mail: mail("ada@example.com", "verify again"),
            })
        };
        assert!(
            store
                .issue_email_token("ada@example.com", [2; 32], resend, NOW)
                .await
                .unwrap()
        );
        assert!(
            store
                .issue_email_token("ada@example.com", [3; 32], resend, NOW)
                .await
                .unwrap()
        );
        assert_eq!(
            token_row(&store, 1).await,
            Some((false, Some("first".into())))
        );
        assert_eq!(token_row(&store, 2).await, None);
        assert_eq!(token_row(&store, 3).await, Some((false, None)));
        // A link without an attempt activates with the password the account holds.
        let activated = store
            .consume_email_token(
                &[3; 32],
                EmailTokenPurpose::VerifyEmail,
                TokenAction::Activate,
                NOW + 1,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(activated.status, Status::Active);
        assert_eq!(password(&activated), Some("first"));
        assert_eq!(token_row(&store, 1).await, None);
    }

    #[tokio::test]
    async fn a_reset_link_sets_the_password_and_ends_every_session_and_standalone_token() {
        let store = fresh_store().await;
        let ada = add_user(&store, "ada@example.com").await;
        let session = live_session(SessionId::new_for_user(ada.id), ada.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        store
            .insert_api_token(&standalone_token(ada.id, 0x61, None))
            .await
            .unwrap();
        store
            .issue_email_token(
                "ada@example.com",
                [1; 32],
                |user| Some(reset_link(&user.email, NOW + DAY)),
                NOW,
            )
            .await
            .unwrap();
        let changed = store
            .consume_email_token(
                &[1; 32],
                EmailTokenPurpose::ResetPassword,
                TokenAction::SetPassword(PasswordHashString::new("new".into())),
                NOW + 1,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(password(&changed), Some("new"));
        assert_eq!(changed.credential_version, ada.credential_version + 1);
        assert!(changed.email_verified);
        assert_eq!(changed.status, Status::Active);
        assert_eq!(password(&user(&store, ada.id).await.unwrap()), Some("new"));
        assert!(store.session(session.id).await.unwrap().is_none());
        assert!(
            store
                .api_token_context(&[0x61; 32], AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(token_row(&store, 1).await, Some((true, None)));
    }

    #[tokio::test]
    async fn expired_tokens_are_purged_up_to_the_limit() {
        let store = fresh_store().await;
        let ada = add_user(&store, "ada@example.com").await;
        for (hash_byte, expires_at) in [(1, NOW), (2, NOW + 1), (3, NOW + 2), (4, NOW + 10)] {
            let client = store.connection().await.unwrap();
            insert_token(
                &client,
                &EmailToken {
                    hash: [hash_byte; 32],
                    purpose: EmailTokenPurpose::ResetPassword,
                    user_id: ada.id,
                    expires_at,
                    attempt: None,
                },
            )
            .await
            .unwrap();
        }
        assert_eq!(
            store
                .purge_email_tokens_expired_before(NOW, 10)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .purge_email_tokens_expired_before(NOW + 10, 2)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .purge_email_tokens_expired_before(NOW + 10, 2)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .purge_email_tokens_expired_before(NOW + 10, 2)
                .await
                .unwrap(),
            0
        );
        assert_eq!(token_row(&store, 4).await, Some((false, None)));
    }

    /// The purge of unproved sign-ups reads the partial index, oldest first: pending users
    /// whose address nobody proved, created before the bound.
    #[tokio::test]
    async fn unproved_sign_ups_are_listed_oldest_first_up_to_the_limit() {
        let store = fresh_store().await;
        let long_ago = NOW - 30 * DAY;
        sign_up(
            &store,
            sign_up_of("newer@example.com", "p", "N"),
            1,
            long_ago + 5,
        )
        .await;
        sign_up(
            &store,
            sign_up_of("older@example.com", "p", "O"),
            2,
            long_ago,
        )
        .await;
        let newer = store
            .user_by_normalized_email("newer@example.com")
            .await
            .unwrap()
            .unwrap();
        let older = store
            .user_by_normalized_email("older@example.com")
            .await
            .unwrap()
            .unwrap();
        add_user(&store, "active@example.com").await;
        // Pending with a proved address (an invited sub-user, say): not a sign-up to purge.
        store
            .insert_user(
                NewUser {
                    email_verified: true,
                    ..sign_up_of("proved@example.com", "p", "P")
                },
                long_ago,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .unproved_sign_ups_created_before(NOW, 10)
                .await
                .unwrap(),
            vec![older.id, newer.id]
        );
        assert_eq!(
            store
                .unproved_sign_ups_created_before(NOW, 1)
                .await
                .unwrap(),
            vec![older.id]
        );
        assert_eq!(
            store
                .unproved_sign_ups_created_before(long_ago + 5, 10)
                .await
                .unwrap(),
            vec![older.id]
        );
        assert!(
            store
                .unproved_sign_ups_created_before(long_ago, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .unproved_sign_ups_created_before(NOW, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn the_purge_deletes_only_the_still_unproved_with_what_they_made_and_their_mail() {
        let store = fresh_store().await;
        let long_ago = NOW - 30 * DAY;
        sign_up(
            &store,
            sign_up_of("Gone@Example.com", "p", "G"),
            1,
            long_ago,
        )
        .await;
        sign_up(
            &store,
            sign_up_of("proved@example.com", "p", "P"),
            2,
            long_ago,
        )
        .await;
        sign_up(&store, sign_up_of("young@example.com", "p", "Y"), 3, NOW).await;
        let gone = store
            .user_by_normalized_email("gone@example.com")
            .await
            .unwrap()
            .unwrap();
        let proved = store
            .user_by_normalized_email("proved@example.com")
            .await
            .unwrap()
            .unwrap();
        let young = store
            .user_by_normalized_email("young@example.com")
            .await
            .unwrap()
            .unwrap();
        let candidates = store
            .unproved_sign_ups_created_before(NOW - DAY, 10)
            .await
            .unwrap();
        assert_eq!(candidates, vec![gone.id, proved.id]);
        // Proved after the scan noted it.
        store
            .consume_email_token(
                &[2; 32],
                EmailTokenPurpose::VerifyEmail,
                TokenAction::Activate,
                long_ago + 1,
            )
            .await
            .unwrap()
            .unwrap();
        let session = live_session(SessionId::new_for_user(gone.id), gone.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        store
            .insert_api_token(&standalone_token(gone.id, 0x71, None))
            .await
            .unwrap();
        let sub_user = store
            .insert_user(
                NewUser {
                    parent_id: Some(gone.id),
                    permissions: PermissionSet::empty(),
                    ..NewUser::new(
                        EmailAddress::parse("sub@example.com").unwrap(),
                        Role::Sub,
                        Status::Active,
                    )
                },
                NOW,
            )
            .await
            .unwrap();
        let bystander = add_user(&store, "bystander@example.com").await;

        let mut asked = candidates.clone();
        asked.extend([young.id, bystander.id, 9_999]);
        assert_eq!(
            store
                .purge_unproved_sign_ups(&asked, NOW - DAY)
                .await
                .unwrap(),
            1
        );
        assert!(user(&store, gone.id).await.is_none());
        assert!(user(&store, sub_user.id).await.is_none());
        assert!(store.session(session.id).await.unwrap().is_none());
        assert!(
            store
                .api_token_context(&[0x71; 32], AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(token_row(&store, 1).await, None);
        for kept in [proved.id, young.id, bystander.id] {
            assert!(user(&store, kept).await.is_some());
        }
        assert_eq!(token_row(&store, 3).await, Some((false, Some("p".into()))));
        // The mail queued to the typed address is gone with the account; the rest stays.
        assert_eq!(
            queued(&store).await,
            vec![
                ("proved@example.com".to_owned(), "verify".to_owned()),
                ("young@example.com".to_owned(), "verify".to_owned()),
            ]
        );
        // Again: nothing left to purge.
        assert_eq!(
            store
                .purge_unproved_sign_ups(&candidates, NOW - DAY)
                .await
                .unwrap(),
            0
        );
        // The address is free for a new sign-up.
        assert_eq!(
            sign_up(&store, sign_up_of("gone@example.com", "q", "G"), 4, NOW).await,
            SignUpEffect::Created
        );
    }
}
