//! The PostgreSQL side of `store::copy`: reading every table in one `REPEATABLE READ`, read
//! only transaction (one snapshot, so a copy of a database that live nodes keep writing does
//! not tear), a batch at a time through a portal; and writing each copied batch with one
//! `INSERT ... SELECT FROM unnest(...)` per batch in a write transaction. A row whose user
//! (or, for a bound API token, whose session) the target does not hold is left out, as the
//! foreign keys would refuse it: redb keeps a deleted user's mfa-tokens and passkey
//! challenges until they expire, and no server would use them.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use crate::model::oauth_browser::OAuthStateHash;
use crate::model::second_factor::{ActiveTotp, PendingTotp};
use crate::model::{
    EmailToken, EmailTokenPurpose, OAuthIdentity, PasswordHashString, Secret, SignUpAttempt,
};
use crate::store::StoreError;
use crate::store::copy::{
    CopiedEmailToken, CopiedRecoveryCodes, CopiedRows, CopiedTable, CopyItem, CopySender,
    StoreFacts, target_stopped,
};
use crate::store::postgres_backend::mail_queue::queued_mail_from_row;
use crate::store::postgres_backend::passkeys::{
    PASSKEY_CHALLENGE_COLUMNS, PASSKEY_COLUMNS, passkey_challenge_from_row, passkey_from_row,
};
use crate::store::postgres_backend::rows::{
    API_TOKEN_COLUMNS, SESSION_COLUMNS, USER_COLUMNS, api_token_from_row, hash_from_sql,
    maker_to_sql, name_from_sql, permissions_to_sql, session_from_row, session_id_to_sql,
    unsigned_from_sql, unsigned_to_sql, user_from_row, user_id_from_sql, user_id_to_sql,
};
use crate::store::postgres_backend::second_factors::{
    MFA_TOKEN_COLUMNS, first_factor_to_sql, mfa_token_from_row, recovery_code_set_from_sql,
    totp_secret_from_sql,
};
use crate::store::postgres_backend::signing_keys::signing_key_from_row;
use crate::store::postgres_backend::{PostgresStore, begin_write};
use crate::store::stored_name::StoredName;

/// The tables a copy does not carry as rows, and why. Every table of the schema is either
/// here or a `CopiedTable`: the test below fails on a table added to the schema and to
/// neither, so a new table cannot be left behind by a copy unnoticed.
#[cfg(test)]
const TABLES_NOT_COPIED: &[(&str, &str)] = &[
    ("store_facts", "its store id travels as the store's facts"),
    (
        "latchkey_schema_migrations",
        "each database's own migrations",
    ),
    (
        "throttle_buckets",
        "rate limits refill on their own; a redb store keeps them in memory, and a restart \
         starts them full as a new store does",
    ),
];

impl PostgresStore {
    /// The copied tables holding rows (`store_facts`, which every database has from its
    /// first open, is not one).
    pub(in crate::store) async fn tables_holding_rows(&self) -> Result<Vec<String>, StoreError> {
        let client = self.connection().await?;
        let mut holding = Vec::new();
        for table in CopiedTable::ALL {
            // The table names are this build's own constants, not input.
            let statement = client
                .prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM {})", table.name()))
                .await?;
            if client.query_one(&statement, &[]).await?.try_get(0)? {
                holding.push(table.name().to_owned());
            }
        }
        Ok(holding)
    }

    /// Sends every row of every table in `CopiedTable::ALL`'s order, `batch_rows` at a time,
    /// then the store's facts, all read in one `REPEATABLE READ` snapshot.
    pub(in crate::store) async fn send_every_row(
        &self,
        sender: &CopySender,
        batch_rows: usize,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let fetch = i32::try_from(batch_rows).unwrap_or(i32::MAX).max(1);
        for table in CopiedTable::ALL {
            let statement = transaction.prepare_cached(&select_every_row(table)).await?;
            let portal = transaction.bind(&statement, &[]).await?;
            loop {
                let rows = transaction.query_portal(&portal, fetch).await?;
                if rows.is_empty() {
                    break;
                }
                let last = rows.len() < batch_rows;
                let copied = copied_rows(table, &rows)?;
                sender
                    .send(CopyItem::Rows(copied))
                    .await
                    .map_err(|_| target_stopped())?;
                if last {
                    break;
                }
            }
        }
        let facts = StoreFacts {
            store_id: transaction
                .query_opt(
                    &transaction
                        .prepare_cached("SELECT value FROM store_facts WHERE name = 'store_id'")
                        .await?,
                    &[],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?
                .unwrap_or_else(|| self.store_id().to_owned()),
            next_user_id: next_value(&transaction, "user_ids").await?,
            next_mail_id: next_value(&transaction, "mail_ids").await?,
        };
        transaction.commit().await?;
        sender
            .send(CopyItem::Facts(facts))
            .await
            .map_err(|_| target_stopped())
    }

    /// Writes one batch of copied rows in one transaction; answers how many it wrote (a row
    /// whose user or session is not here is left out).
    pub(in crate::store) async fn write_copied_rows(
        &self,
        rows: &CopiedRows,
    ) -> Result<u64, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let written = insert_copied_rows(&transaction, rows).await?;
        transaction.commit().await?;
        Ok(written)
    }

    /// Sets the store id, and the sequences so that the next user and mail get these ids.
    pub(in crate::store) async fn write_store_facts(
        &self,
        facts: &StoreFacts,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "INSERT INTO store_facts (name, value) VALUES ('store_id', $1) \
                 ON CONFLICT (name) DO UPDATE SET value = $1",
            )
            .await?;
        transaction.execute(&statement, &[&facts.store_id]).await?;
        for (sequence, next) in [
            ("user_ids", facts.next_user_id),
            ("mail_ids", facts.next_mail_id),
        ] {
            let statement = transaction
                .prepare_cached(&format!("SELECT setval('{sequence}', $1::bigint, false)"))
                .await?;
            transaction
                .execute(&statement, &[&unsigned_to_sql(next, "counter")?])
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}

/// The value `nextval` would give next.
async fn next_value(client: &impl GenericClient, sequence: &str) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT last_value, is_called FROM {sequence}"))
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    let last: i64 = row.try_get(0)?;
    let called: bool = row.try_get(1)?;
    unsigned_from_sql(if called { last + 1 } else { last }, "counter")
}

/// Every row of `table`, in the order `copied_rows` reads their columns. Users come in id
/// order, so a parent is written before its sub-users.
fn select_every_row(table: CopiedTable) -> String {
    match table {
        CopiedTable::Users => format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"),
        CopiedTable::Sessions => format!("SELECT {SESSION_COLUMNS} FROM sessions"),
        CopiedTable::ApiTokens => format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens"),
        CopiedTable::SigningKeys => "SELECT key_id, secret_key, status, created, retired_at, \
             activates_at FROM signing_keys"
            .to_owned(),
        CopiedTable::EmailTokens => "SELECT hash, purpose, user_id, expires_at, used, \
             attempt_password_hash, attempt_first_name, attempt_last_name FROM email_tokens"
            .to_owned(),
        CopiedTable::MailQueue => "SELECT id, to_address, subject, text_body, html_body, \
             attempts, next_attempt_at FROM mail_queue ORDER BY id"
            .to_owned(),
        CopiedTable::OAuthIdentities => {
            "SELECT provider, subject, user_id, linked FROM oauth_identities".to_owned()
        }
        CopiedTable::ActiveTotp => {
            "SELECT user_id, secret, enabled_at, last_accepted_step FROM active_totp".to_owned()
        }
        CopiedTable::PendingTotp => {
            "SELECT user_id, secret, created, expires_at FROM pending_totp".to_owned()
        }
        CopiedTable::RecoveryCodes => "SELECT user_id, salt, hashes FROM recovery_codes".to_owned(),
        CopiedTable::MfaTokens => format!("SELECT {MFA_TOKEN_COLUMNS} FROM mfa_tokens"),
        CopiedTable::Passkeys => format!("SELECT {PASSKEY_COLUMNS} FROM passkeys"),
        CopiedTable::PasskeyChallenges => {
            format!("SELECT {PASSKEY_CHALLENGE_COLUMNS} FROM passkey_challenges")
        }
        CopiedTable::OAuthBrowserStates => "SELECT state_hash, provider, browser_binding_hash, \
             nonce, pkce_verifier, return_url, expires_at FROM oauth_browser_states"
            .to_owned(),
    }
}

/// `select_every_row(table)`'s rows as domain values.
fn copied_rows(table: CopiedTable, rows: &[Row]) -> Result<CopiedRows, StoreError> {
    fn each<T>(
        rows: &[Row],
        convert: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        rows.iter().map(convert).collect()
    }
    Ok(match table {
        CopiedTable::Users => CopiedRows::Users(each(rows, |row| user_from_row(row, 0))?),
        CopiedTable::Sessions => CopiedRows::Sessions(each(rows, |row| session_from_row(row, 0))?),
        CopiedTable::ApiTokens => {
            CopiedRows::ApiTokens(each(rows, |row| api_token_from_row(row, 0))?)
        }
        CopiedTable::SigningKeys => CopiedRows::SigningKeys(each(rows, signing_key_from_row)?),
        CopiedTable::EmailTokens => CopiedRows::EmailTokens(each(rows, |row| {
            let attempt_password_hash: Option<String> = row.try_get(5)?;
            Ok(CopiedEmailToken {
                token: EmailToken {
                    hash: hash_from_sql(row.try_get(0)?, "email token")?,
                    purpose: name_from_sql::<EmailTokenPurpose>(row.try_get(1)?, "email token")?,
                    user_id: user_id_from_sql(row.try_get(2)?)?,
                    expires_at: row.try_get(3)?,
                    attempt: match attempt_password_hash {
                        Some(password_hash) => Some(SignUpAttempt {
                            password_hash: PasswordHashString::new(password_hash),
                            first_name: row.try_get(6)?,
                            last_name: row.try_get(7)?,
                        }),
                        None => None,
                    },
                },
                used: row.try_get(4)?,
            })
        })?),
        CopiedTable::MailQueue => CopiedRows::MailQueue(each(rows, queued_mail_from_row)?),
        CopiedTable::OAuthIdentities => CopiedRows::OAuthIdentities(each(rows, |row| {
            Ok(OAuthIdentity {
                provider: row.try_get(0)?,
                subject: row.try_get(1)?,
                user_id: user_id_from_sql(row.try_get(2)?)?,
                linked: row.try_get(3)?,
            })
        })?),
        CopiedTable::ActiveTotp => CopiedRows::ActiveTotp(each(rows, |row| {
            Ok(ActiveTotp {
                user_id: user_id_from_sql(row.try_get(0)?)?,
                secret: totp_secret_from_sql(row.try_get(1)?)?,
                enabled_at: row.try_get(2)?,
                last_accepted_step: unsigned_from_sql(row.try_get(3)?, "totp")?,
            })
        })?),
        CopiedTable::PendingTotp => CopiedRows::PendingTotp(each(rows, |row| {
            Ok(PendingTotp {
                user_id: user_id_from_sql(row.try_get(0)?)?,
                secret: totp_secret_from_sql(row.try_get(1)?)?,
                created: row.try_get(2)?,
                expires_at: row.try_get(3)?,
            })
        })?),
        CopiedTable::RecoveryCodes => CopiedRows::RecoveryCodes(each(rows, |row| {
            Ok(CopiedRecoveryCodes {
                user_id: user_id_from_sql(row.try_get(0)?)?,
                codes: recovery_code_set_from_sql(row.try_get(1)?, row.try_get(2)?)?,
                created: None,
            })
        })?),
        CopiedTable::MfaTokens => CopiedRows::MfaTokens(each(rows, mfa_token_from_row)?),
        CopiedTable::Passkeys => CopiedRows::Passkeys(each(rows, passkey_from_row)?),
        CopiedTable::PasskeyChallenges => {
            CopiedRows::PasskeyChallenges(each(rows, passkey_challenge_from_row)?)
        }
        CopiedTable::OAuthBrowserStates => CopiedRows::OAuthBrowserStates(each(rows, |row| {
            Ok((
                OAuthStateHash(hash_from_sql(row.try_get(0)?, "oauth browser state")?),
                crate::model::oauth_browser::OAuthBrowserState {
                    provider: row.try_get(1)?,
                    browser_binding_hash: hash_from_sql(row.try_get(2)?, "oauth browser state")?,
                    nonce: Secret::new(row.try_get(3)?),
                    pkce_verifier: Secret::new(row.try_get(4)?),
                    return_url: row.try_get(5)?,
                    expires_at: row.try_get(6)?,
                },
            ))
        })?),
    })
}

/// A condition on `r.user_id`: the user is in the target.
const USER_IS_HERE: &str = "EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id)";

/// Inserts one batch, a statement per batch (the recovery codes, whose `bytea[]` column
/// `unnest` cannot carry, a statement per row); answers how many rows went in.
async fn insert_copied_rows(
    client: &impl GenericClient,
    rows: &CopiedRows,
) -> Result<u64, StoreError> {
    match rows {
        CopiedRows::Users(users) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) SELECT r.* FROM unnest($1::bigint[], \
                     $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], \
                     $8::text[], $9::text[], $10::integer[], $11::bigint[], $12::bigint[], \
                     $13::boolean[], $14::bigint[]) AS r ({USER_COLUMNS}) \
                     WHERE r.parent_id IS NULL OR r.parent_id = ANY($1) \
                     OR EXISTS (SELECT 1 FROM users u WHERE u.id = r.parent_id)"
                ),
                vec![
                    Box::new(checked_values(users, |user| user_id_to_sql(user.id))?),
                    Box::new(values(users, |user| user.email.as_str())),
                    Box::new(values(users, |user| user.normalized_email.as_str())),
                    Box::new(values(users, |user| {
                        user.password_hash.as_ref().map(|hash| hash.expose_secret())
                    })),
                    Box::new(values(users, |user| user.role.stored_name())),
                    Box::new(values(users, |user| user.status.stored_name())),
                    Box::new(checked_values(users, |user| {
                        user.parent_id.map(user_id_to_sql).transpose()
                    })?),
                    Box::new(values(users, |user| user.first_name.as_deref())),
                    Box::new(values(users, |user| user.last_name.as_deref())),
                    Box::new(values(users, |user| permissions_to_sql(user.permissions))),
                    Box::new(values(users, |user| user.created)),
                    Box::new(values(users, |user| user.updated)),
                    Box::new(values(users, |user| user.email_verified)),
                    Box::new(checked_values(users, |user| {
                        unsigned_to_sql(user.credential_version, "user")
                    })?),
                ],
            )
            .await
        }
        CopiedRows::Sessions(sessions) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS}) SELECT r.* FROM unnest($1::uuid[], \
                     $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
                     $7::text[], $8::text[], $9::integer[], $10::bytea[], $11::bytea[], \
                     $12::uuid[]) AS r ({SESSION_COLUMNS}) WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(values(sessions, |session| session_id_to_sql(session.id))),
                    Box::new(checked_values(sessions, |session| {
                        user_id_to_sql(session.user_id)
                    })?),
                    Box::new(values(sessions, |session| session.kind.stored_name())),
                    Box::new(values(sessions, |session| session.created)),
                    Box::new(values(sessions, |session| session.expire)),
                    Box::new(values(sessions, |session| session.remote_ip.as_str())),
                    Box::new(values(sessions, |session| session.user_agent.as_str())),
                    Box::new(values(sessions, |session| session.ua_type.stored_name())),
                    Box::new(values(sessions, |session| {
                        permissions_to_sql(session.granted_permissions)
                    })),
                    Box::new(values(sessions, |session| {
                        session.api_token_hash.as_ref().map(|hash| hash.as_slice())
                    })),
                    Box::new(values(sessions, |session| maker_to_sql(session.made_by).0)),
                    Box::new(values(sessions, |session| maker_to_sql(session.made_by).1)),
                ],
            )
            .await
        }
        CopiedRows::ApiTokens(tokens) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO api_tokens ({API_TOKEN_COLUMNS}) SELECT r.* FROM \
                     unnest($1::bytea[], $2::text[], $3::bigint[], $4::uuid[], $5::integer[], \
                     $6::integer[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bytea[], \
                     $11::uuid[]) AS r ({API_TOKEN_COLUMNS}) WHERE {USER_IS_HERE} \
                     AND (r.session_id IS NULL \
                     OR EXISTS (SELECT 1 FROM sessions s WHERE s.id = r.session_id))"
                ),
                vec![
                    Box::new(values(tokens, |token| token.hash.as_slice())),
                    Box::new(values(tokens, |token| token.prefix.as_str())),
                    Box::new(checked_values(tokens, |token| {
                        user_id_to_sql(token.user_id)
                    })?),
                    Box::new(values(tokens, |token| {
                        token.session_id.map(session_id_to_sql)
                    })),
                    Box::new(values(tokens, |token| {
                        permissions_to_sql(token.permissions)
                    })),
                    Box::new(values(tokens, |token| {
                        permissions_to_sql(token.restrictions)
                    })),
                    Box::new(values(tokens, |token| token.created)),
                    Box::new(values(tokens, |token| token.updated)),
                    Box::new(values(tokens, |token| token.expires_at)),
                    Box::new(values(tokens, |token| maker_to_sql(token.made_by).0)),
                    Box::new(values(tokens, |token| maker_to_sql(token.made_by).1)),
                ],
            )
            .await
        }
        CopiedRows::SigningKeys(keys) => {
            execute_batch(
                client,
                "INSERT INTO signing_keys (key_id, secret_key, status, created, retired_at, \
                 activates_at) SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], \
                 $4::bigint[], $5::bigint[], $6::bigint[])",
                vec![
                    Box::new(values(keys, |key| key.key_id.as_str())),
                    Box::new(values(keys, |key| {
                        key.secret_key_bytes.expose_secret().as_slice()
                    })),
                    Box::new(values(keys, |key| key.status.stored_name())),
                    Box::new(values(keys, |key| key.created)),
                    Box::new(values(keys, |key| key.retired_at)),
                    Box::new(values(keys, |key| key.activates_at)),
                ],
            )
            .await
        }
        CopiedRows::EmailTokens(tokens) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO email_tokens (hash, purpose, user_id, expires_at, used, \
                     attempt_password_hash, attempt_first_name, attempt_last_name) \
                     SELECT r.* FROM unnest($1::bytea[], $2::text[], $3::bigint[], \
                     $4::bigint[], $5::boolean[], $6::text[], $7::text[], $8::text[]) \
                     AS r (hash, purpose, user_id, expires_at, used, attempt_password_hash, \
                     attempt_first_name, attempt_last_name) WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(values(tokens, |copied| copied.token.hash.as_slice())),
                    Box::new(values(tokens, |copied| copied.token.purpose.stored_name())),
                    Box::new(checked_values(tokens, |copied| {
                        user_id_to_sql(copied.token.user_id)
                    })?),
                    Box::new(values(tokens, |copied| copied.token.expires_at)),
                    Box::new(values(tokens, |copied| copied.used)),
                    Box::new(values(tokens, |copied| {
                        copied
                            .token
                            .attempt
                            .as_ref()
                            .map(|attempt| attempt.password_hash.expose_secret())
                    })),
                    Box::new(values(tokens, |copied| {
                        copied
                            .token
                            .attempt
                            .as_ref()
                            .and_then(|attempt| attempt.first_name.as_deref())
                    })),
                    Box::new(values(tokens, |copied| {
                        copied
                            .token
                            .attempt
                            .as_ref()
                            .and_then(|attempt| attempt.last_name.as_deref())
                    })),
                ],
            )
            .await
        }
        CopiedRows::MailQueue(mails) => {
            execute_batch(
                client,
                "INSERT INTO mail_queue (id, to_address, subject, text_body, html_body, \
                 attempts, next_attempt_at) SELECT * FROM unnest($1::bigint[], $2::text[], \
                 $3::text[], $4::text[], $5::text[], $6::integer[], $7::bigint[])",
                vec![
                    Box::new(checked_values(mails, |queued| {
                        unsigned_to_sql(queued.id, "mail")
                    })?),
                    Box::new(values(mails, |queued| queued.mail.to.as_str())),
                    Box::new(values(mails, |queued| queued.mail.subject.as_str())),
                    Box::new(values(mails, |queued| {
                        queued.mail.text.expose_secret().as_str()
                    })),
                    Box::new(values(mails, |queued| {
                        queued.mail.html.expose_secret().as_str()
                    })),
                    Box::new(checked_values(mails, |queued| {
                        i32::try_from(queued.attempts)
                            .map_err(|_| StoreError::CorruptRecord("mail"))
                    })?),
                    Box::new(values(mails, |queued| queued.next_attempt_at)),
                ],
            )
            .await
        }
        CopiedRows::OAuthIdentities(identities) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO oauth_identities (provider, subject, user_id, linked) \
                     SELECT r.* FROM unnest($1::text[], $2::text[], $3::bigint[], \
                     $4::bigint[]) AS r (provider, subject, user_id, linked) \
                     WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(values(identities, |identity| identity.provider.as_str())),
                    Box::new(values(identities, |identity| identity.subject.as_str())),
                    Box::new(checked_values(identities, |identity| {
                        user_id_to_sql(identity.user_id)
                    })?),
                    Box::new(values(identities, |identity| identity.linked)),
                ],
            )
            .await
        }
        CopiedRows::ActiveTotp(totps) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO active_totp (user_id, secret, enabled_at, last_accepted_step) \
                     SELECT r.* FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], \
                     $4::bigint[]) AS r (user_id, secret, enabled_at, last_accepted_step) \
                     WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(checked_values(totps, |totp| user_id_to_sql(totp.user_id))?),
                    Box::new(values(totps, |totp| totp.secret.expose_secret().as_slice())),
                    Box::new(values(totps, |totp| totp.enabled_at)),
                    Box::new(checked_values(totps, |totp| {
                        unsigned_to_sql(totp.last_accepted_step, "totp")
                    })?),
                ],
            )
            .await
        }
        CopiedRows::PendingTotp(enrolments) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO pending_totp (user_id, secret, created, expires_at) \
                     SELECT r.* FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], \
                     $4::bigint[]) AS r (user_id, secret, created, expires_at) \
                     WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(checked_values(enrolments, |pending| {
                        user_id_to_sql(pending.user_id)
                    })?),
                    Box::new(values(enrolments, |pending| {
                        pending.secret.expose_secret().as_slice()
                    })),
                    Box::new(values(enrolments, |pending| pending.created)),
                    Box::new(values(enrolments, |pending| pending.expires_at)),
                ],
            )
            .await
        }
        CopiedRows::RecoveryCodes(sets) => {
            let statement = client
                .prepare_cached(
                    "INSERT INTO recovery_codes (user_id, salt, hashes) \
                     SELECT $1::bigint, $2::bytea, $3::bytea[] \
                     WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)",
                )
                .await?;
            let mut written = 0;
            for set in sets {
                let hashes: Vec<&[u8]> = set
                    .codes
                    .hashes
                    .iter()
                    .map(|hash| hash.as_slice())
                    .collect();
                written += client
                    .execute(
                        &statement,
                        &[
                            &user_id_to_sql(set.user_id)?,
                            &set.codes.salt.as_slice(),
                            &hashes,
                        ],
                    )
                    .await?;
            }
            Ok(written)
        }
        CopiedRows::MfaTokens(tokens) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO mfa_tokens ({MFA_TOKEN_COLUMNS}) SELECT r.* FROM \
                     unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::text[], \
                     $5::boolean[], $6::boolean[], $7::text[], $8::text[], $9::text[], \
                     $10::bigint[], $11::bigint[], $12::integer[]) AS r ({MFA_TOKEN_COLUMNS}) \
                     WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(values(tokens, |token| token.hash.as_slice())),
                    Box::new(checked_values(tokens, |token| {
                        user_id_to_sql(token.user_id)
                    })?),
                    Box::new(checked_values(tokens, |token| {
                        unsigned_to_sql(token.credential_version, "mfa token")
                    })?),
                    Box::new(values(tokens, |token| {
                        first_factor_to_sql(&token.first_factor)
                    })),
                    Box::new(values(tokens, |token| token.long_term_token)),
                    Box::new(values(tokens, |token| token.logout_other)),
                    Box::new(values(tokens, |token| token.remote_ip.as_str())),
                    Box::new(values(tokens, |token| token.user_agent.as_str())),
                    Box::new(values(tokens, |token| {
                        token
                            .replacement_password_hash
                            .as_ref()
                            .map(|hash| hash.expose_secret())
                    })),
                    Box::new(values(tokens, |token| token.created)),
                    Box::new(values(tokens, |token| token.expires_at)),
                    Box::new(checked_values(tokens, |token| {
                        i32::try_from(token.wrong_codes)
                            .map_err(|_| StoreError::CorruptRecord("mfa token"))
                    })?),
                ],
            )
            .await
        }
        CopiedRows::Passkeys(passkeys) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO passkeys ({PASSKEY_COLUMNS}) SELECT r.* FROM \
                     unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::uuid[], $5::text[], \
                     $6::bigint[], $7::bigint[], $8::bytea[]) AS r ({PASSKEY_COLUMNS}) \
                     WHERE {USER_IS_HERE}"
                ),
                vec![
                    Box::new(values(passkeys, |passkey| {
                        uuid::Uuid::from_u128(passkey.id.0)
                    })),
                    Box::new(checked_values(passkeys, |passkey| {
                        user_id_to_sql(passkey.user_id)
                    })?),
                    Box::new(values(passkeys, |passkey| passkey.credential_id.as_slice())),
                    Box::new(values(passkeys, |passkey| {
                        uuid::Uuid::from_u128(passkey.user_handle)
                    })),
                    Box::new(values(passkeys, |passkey| passkey.name.as_str())),
                    Box::new(values(passkeys, |passkey| passkey.created)),
                    Box::new(values(passkeys, |passkey| passkey.last_used)),
                    Box::new(values(passkeys, |passkey| passkey.credential.as_slice())),
                ],
            )
            .await
        }
        CopiedRows::PasskeyChallenges(challenges) => {
            execute_batch(
                client,
                &format!(
                    "INSERT INTO passkey_challenges ({PASSKEY_CHALLENGE_COLUMNS}) SELECT r.* \
                     FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[], \
                     $5::bigint[], $6::bytea[]) AS r ({PASSKEY_CHALLENGE_COLUMNS}) \
                     WHERE r.user_id IS NULL OR {USER_IS_HERE}"
                ),
                vec![
                    Box::new(values(challenges, |challenge| {
                        uuid::Uuid::from_u128(challenge.id.0)
                    })),
                    Box::new(values(challenges, |challenge| challenge.kind.stored_name())),
                    Box::new(checked_values(challenges, |challenge| {
                        challenge.user_id.map(user_id_to_sql).transpose()
                    })?),
                    Box::new(values(challenges, |challenge| {
                        challenge.user_handle.map(uuid::Uuid::from_u128)
                    })),
                    Box::new(values(challenges, |challenge| challenge.expires_at)),
                    Box::new(values(challenges, |challenge| challenge.state.as_slice())),
                ],
            )
            .await
        }
        CopiedRows::OAuthBrowserStates(states) => {
            execute_batch(
                client,
                "INSERT INTO oauth_browser_states (state_hash, provider, browser_binding_hash, \
                 nonce, pkce_verifier, return_url, expires_at) SELECT * FROM \
                 unnest($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[], \
                 $6::text[], $7::bigint[])",
                vec![
                    Box::new(values(states, |(hash, _)| hash.0.as_slice())),
                    Box::new(values(states, |(_, state)| state.provider.as_str())),
                    Box::new(values(states, |(_, state)| {
                        state.browser_binding_hash.as_slice()
                    })),
                    Box::new(values(states, |(_, state)| {
                        state.nonce.expose_secret().as_str()
                    })),
                    Box::new(values(states, |(_, state)| {
                        state.pkce_verifier.expose_secret().as_str()
                    })),
                    Box::new(values(states, |(_, state)| state.return_url.as_deref())),
                    Box::new(values(states, |(_, state)| state.expires_at)),
                ],
            )
            .await
        }
    }
}

/// Runs one batch's statement with its columns as array parameters; answers the rows
/// inserted.
async fn execute_batch(
    client: &impl GenericClient,
    sql: &str,
    columns: Vec<Box<dyn ToSql + Sync + Send + '_>>,
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    let parameters: Vec<&(dyn ToSql + Sync)> = columns
        .iter()
        .map(|column| column.as_ref() as &(dyn ToSql + Sync))
        .collect();
    Ok(client.execute(&statement, &parameters).await?)
}

/// One column of a batch: `value` of each row.
fn values<'a, T, C>(rows: &'a [T], value: impl Fn(&'a T) -> C) -> Vec<C> {
    rows.iter().map(value).collect()
}

/// One column of a batch whose conversion may fail (an id out of `bigint`'s range).
fn checked_values<'a, T, C>(
    rows: &'a [T],
    value: impl Fn(&'a T) -> Result<C, StoreError>,
) -> Result<Vec<C>, StoreError> {
    rows.iter().map(value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::copy::{CopyError, CopyProgress, copy_store};
    use crate::store::postgres_backend::test_support::{add_user, fresh_database, fresh_store};
    use crate::store::redb_backend::RedbStore;

    fn redb_store(directory: &tempfile::TempDir, name: &str) -> (Store, RedbStore) {
        let store = RedbStore::open(&directory.path().join(name), 1024 * 1024).unwrap();
        (Store::wrapping_redb(store.clone()), store)
    }

    async fn fresh_target() -> (Store, String) {
        let url = fresh_database().await;
        (Store::open_postgres(&url, 4).await.unwrap(), url)
    }

    #[tokio::test]
    async fn every_table_of_the_schema_is_copied_or_named_as_not_copied() {
        let store = fresh_store().await;
        let client = store.connection().await.unwrap();
        let names = |sql: &'static str| {
            let client = &client;
            async move {
                client
                    .query(sql, &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get::<_, String>(0))
                    .collect::<Vec<String>>()
            }
        };
        let tables = names(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             ORDER BY table_name",
        )
        .await;
        let mut known: Vec<String> = CopiedTable::ALL
            .iter()
            .map(|table| table.name().to_owned())
            .chain(TABLES_NOT_COPIED.iter().map(|(name, _)| (*name).to_owned()))
            .collect();
        known.sort();
        assert_eq!(
            tables, known,
            "every table is a CopiedTable (read and written by both backends' copy.rs) or in \
             TABLES_NOT_COPIED with its reason"
        );
        let sequences = names(
            "SELECT sequence_name::text FROM information_schema.sequences \
             WHERE sequence_schema = current_schema() ORDER BY sequence_name",
        )
        .await;
        assert_eq!(sequences, ["mail_ids", "user_ids"], "StoreFacts sets these");
    }

    /// redb → PostgreSQL → PostgreSQL → redb, in small batches: the last file holds what the
    /// first did, row for row (but what PostgreSQL does not keep), and each database holds
    /// the first file's store id, with sequences past every copied id.
    #[tokio::test]
    async fn a_store_copied_to_postgresql_and_back_holds_every_row() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        source_file.fill_every_table_for_tests();
        let (first, _) = fresh_target().await;
        let summary = copy_store(&source, &first, 2, |_| {}).await.unwrap();
        assert!(summary.tables.iter().all(|table| table.rows_skipped == 0));
        assert!(summary.tables.iter().all(|table| table.rows_copied > 0));
        let (second, second_url) = fresh_target().await;
        copy_store(&first, &second, 3, |_| {}).await.unwrap();
        let (back, back_file) = redb_store(&directory, "back.redb");
        let summary = copy_store(&second, &back, 2, |_| {}).await.unwrap();
        assert_eq!(summary.store_id, source.store_id());
        RedbStore::assert_holds(
            &back_file.every_table_as_bytes(),
            &source_file.every_table_as_postgres_keeps_it(),
        );

        let reopened = PostgresStore::open(&second_url, 2).await.unwrap();
        assert_eq!(reopened.store_id(), source.store_id());
        let client = reopened.connection().await.unwrap();
        let next = client
            .query_one("SELECT nextval('user_ids'), nextval('mail_ids')", &[])
            .await
            .unwrap();
        // Four users and two queued mails were copied.
        assert_eq!((next.get::<_, i64>(0), next.get::<_, i64>(1)), (5, 3));
    }

    /// redb keeps a deleted user's mfa-tokens and passkey challenges until they expire;
    /// PostgreSQL's foreign keys refuse them. They are left out, counted, and the copy goes on.
    #[tokio::test]
    async fn rows_of_a_deleted_user_are_left_out_and_counted() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        let parent = source_file.fill_every_table_for_tests();
        assert!(source_file.delete_user_tree(parent.id).unwrap());
        let (target, _) = fresh_target().await;
        let mut finished = Vec::new();
        let summary = copy_store(&source, &target, 2, |progress: &CopyProgress| {
            if progress.finished {
                finished.push((progress.table, progress.rows_copied, progress.rows_skipped));
            }
        })
        .await
        .unwrap();
        assert_eq!(finished.len(), CopiedTable::ALL.len());
        assert!(
            finished.contains(&(CopiedTable::MfaTokens, 0, 1)),
            "{finished:?}"
        );
        // The discoverable sign-in's challenge belongs to nobody and stays.
        assert!(
            finished.contains(&(CopiedTable::PasskeyChallenges, 1, 1)),
            "{finished:?}"
        );
        assert_eq!(summary.tables[0].rows_copied, 2);
    }

    #[tokio::test]
    async fn a_database_holding_rows_is_refused_and_left_as_it_was() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        source_file.fill_every_table_for_tests();
        let database = fresh_store().await;
        add_user(&database, "here@example.com").await;
        let target = Store::wrapping_postgres(database.clone());
        match copy_store(&source, &target, 2, |_| {}).await {
            Err(CopyError::TargetNotEmpty { tables }) => assert_eq!(tables, ["users"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(database.all_users().await.unwrap().len(), 1);
        assert_eq!(database.tables_holding_rows().await.unwrap(), ["users"]);
        let reopened = PostgresStore::open(&url_of(&database).await, 1)
            .await
            .unwrap();
        assert_eq!(reopened.store_id(), database.store_id());
    }

    /// The URL of the database `store` is on.
    async fn url_of(store: &PostgresStore) -> String {
        let client = store.connection().await.unwrap();
        let name: String = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .unwrap()
            .get(0);
        let mut url =
            url::Url::parse(&crate::store::postgres_backend::test_support::server_url()).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// A target that fails part way stops the copy as the target's failure, at once: the
    /// source, blocked on a full channel, is not left waiting.
    #[tokio::test]
    async fn a_target_failing_part_way_stops_the_copy() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        source_file.fill_every_table_for_tests();
        let database = fresh_store().await;
        database
            .connection()
            .await
            .unwrap()
            .batch_execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS                  $$ BEGIN RAISE EXCEPTION 'no sessions here'; END $$;                  CREATE TRIGGER refuse BEFORE INSERT ON sessions                  FOR EACH STATEMENT EXECUTE FUNCTION refuse()",
            )
            .await
            .unwrap();
        let target = Store::wrapping_postgres(database.clone());
        let copied = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            copy_store(&source, &target, 1, |_| {}),
        )
        .await
        .expect("the copy stops");
        match copied {
            Err(CopyError::Target(error)) => {
                assert!(error.to_string().contains("no sessions here"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        // What was written before stays: the target is no longer empty.
        assert_eq!(database.tables_holding_rows().await.unwrap(), ["users"]);
    }

    /// A copy of a database that live nodes keep writing is one snapshot: what commits while
    /// it reads is not in it.
    #[tokio::test]
    async fn a_live_database_is_read_in_one_snapshot() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        let parent = source_file.fill_every_table_for_tests();
        let (live, _) = fresh_target().await;
        copy_store(&source, &live, 100, |_| {}).await.unwrap();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let reading = {
            let live = live.clone();
            tokio::spawn(async move { live.send_every_row(sender, 1).await })
        };
        let first = receiver.recv().await.unwrap();
        assert!(matches!(first, CopyItem::Rows(CopiedRows::Users(_))));
        // Committed while the copy reads: a new user, and the end of the parent's sessions.
        live.insert_users(
            vec![crate::model::NewUser::new(
                crate::model::email_address::EmailAddress::parse("late@example.com").unwrap(),
                crate::model::Role::User,
                crate::model::Status::Active,
            )],
            1,
        )
        .await
        .unwrap();
        assert_eq!(live.end_all_sessions_of_user(parent.id).await.unwrap(), 3);
        let (mut users, mut sessions, mut facts) = (1, 0, None);
        while let Some(item) = receiver.recv().await {
            match item {
                CopyItem::Rows(CopiedRows::Users(batch)) => users += batch.len(),
                CopyItem::Rows(CopiedRows::Sessions(batch)) => sessions += batch.len(),
                CopyItem::Facts(found) => facts = Some(found),
                CopyItem::Rows(_) => {}
            }
        }
        reading.await.unwrap().unwrap();
        assert_eq!((users, sessions), (4, 3));
        assert_eq!(facts.unwrap().store_id, source.store_id());
    }
}
