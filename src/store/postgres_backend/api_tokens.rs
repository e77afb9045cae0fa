//! API tokens on PostgreSQL, as `redb_backend/api_tokens.rs`: standalone ones (made,
//! listed, replaced, deleted, purged once long expired) and the ones bound to a sign-in's
//! session.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::model::{ApiToken, Session, TokenMaker, UnixSeconds, UserId};
use crate::store::postgres_backend::rows::{
    API_TOKEN_COLUMN_COUNT, API_TOKEN_COLUMNS, SESSION_COLUMN_COUNT, SESSION_COLUMNS,
    USER_COLUMN_COUNT, USER_COLUMNS, api_token_from_row, hash_from_sql, optional_user_from_row,
    qualified, session_from_row, user_from_row, user_id_to_sql, write_api_token,
};
use crate::store::postgres_backend::token_makers::{
    cap_what_was_made_by, delete_with_what_they_made, fit_within_maker, token_maker_last_second,
};
use crate::store::postgres_backend::{PostgresStore, begin_write, check_requester};
use crate::store::{ApiTokenContext, Requester, StoreError};

impl PostgresStore {
    /// The API token with this hash, its session (if bound to one), its user and parent:
    /// one statement, on every request an API token authenticates.
    pub async fn api_token_context(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<ApiTokenContext>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {}, {}, {}, {} FROM api_tokens token \
                 LEFT JOIN sessions session ON session.id = token.session_id \
                 JOIN users owner ON owner.id = token.user_id \
                 LEFT JOIN users parent ON parent.id = owner.parent_id \
                 WHERE token.hash = $1 \
                   AND (token.session_id IS NULL OR session.id IS NOT NULL) \
                   AND (owner.parent_id IS NULL OR parent.id IS NOT NULL)",
                qualified("token", API_TOKEN_COLUMNS),
                qualified("session", SESSION_COLUMNS),
                qualified("owner", USER_COLUMNS),
                qualified("parent", USER_COLUMNS),
            ))
            .await?;
        let Some(row) = client.query_opt(&statement, &[&hash.as_slice()]).await? else {
            return Ok(None);
        };
        let user_column = API_TOKEN_COLUMN_COUNT + SESSION_COLUMN_COUNT;
        Ok(Some(ApiTokenContext {
            api_token: api_token_from_row(&row, 0)?,
            session: optional_session_from_row(&row, API_TOKEN_COLUMN_COUNT)?,
            user: user_from_row(&row, user_column)?,
            parent: optional_user_from_row(&row, user_column + USER_COLUMN_COUNT)?,
        }))
    }

    /// Stores an API token in one transaction.
    pub async fn insert_api_token(&self, api_token: &ApiToken) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        insert_api_token(&transaction, api_token).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stores many API tokens in one transaction (bulk seeding).
    pub async fn insert_api_tokens(&self, api_tokens: &[ApiToken]) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        for api_token in api_tokens {
            insert_api_token(&transaction, api_token).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Stores a standalone API token unless its user already holds `limit` of them, expired
    /// ones included (they are kept 30 days and can be deleted): `TooManyApiTokens`; and
    /// only while its requester still stands (`CredentialsChanged`).
    pub async fn insert_api_token_within_limit(
        &self,
        api_token: &ApiToken,
        limit: usize,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        let statement = transaction
            .prepare_cached(
                "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND session_id IS NULL",
            )
            .await?;
        let held: i64 = transaction
            .query_one(&statement, &[&user_id_to_sql(api_token.user_id)?])
            .await?
            .try_get(0)?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= limit {
            return Err(StoreError::TooManyApiTokens);
        }
        let mut api_token = api_token.clone();
        if let Some(last_second) = fit_within_maker(&transaction, api_token.made_by).await? {
            api_token.expires_at = Some(
                api_token
                    .expires_at
                    .map_or(last_second, |expires_at| expires_at.min(last_second)),
            );
        }
        insert_api_token(&transaction, &api_token).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The user's API tokens that are not bound to a session, oldest first.
    pub async fn standalone_api_tokens_of_user(
        &self,
        user_id: UserId,
    ) -> Result<Vec<ApiToken>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {API_TOKEN_COLUMNS} FROM api_tokens \
                 WHERE user_id = $1 AND session_id IS NULL ORDER BY created, hash"
            ))
            .await?;
        client
            .query(&statement, &[&user_id_to_sql(user_id)?])
            .await?
            .iter()
            .map(|row| api_token_from_row(row, 0))
            .collect()
    }

    /// Replaces a token's record (its lifetime, permissions, restrictions) while its
    /// requester still stands. A token made by another token keeps its maker and expires no
    /// later than it, and a shortened lifetime shortens what the token made (API.md 15.3).
    /// Answers the token as stored, or `None` when it (or its maker) is gone.
    pub async fn replace_api_token(
        &self,
        api_token: &ApiToken,
        requester: &Requester,
    ) -> Result<Option<ApiToken>, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        check_requester(&transaction, requester).await?;
        let Some(before) = read_api_token(&transaction, &api_token.hash).await? else {
            return Ok(None);
        };
        // What the token made stays: it is the same token, changed.
        let mut changed = api_token.clone();
        changed.made_by = before.made_by;
        if let Some(maker) = before.made_by {
            match token_maker_last_second(&transaction, maker).await? {
                None => return Ok(None),
                Some(None) => {}
                Some(Some(bound)) => {
                    changed.expires_at = Some(
                        changed
                            .expires_at
                            .map_or(bound, |expires_at| expires_at.min(bound)),
                    );
                }
            }
        }
        insert_api_token(&transaction, &changed).await?;
        if let Some(bound) = changed.expires_at
            && before.expires_at.is_none_or(|earlier| bound < earlier)
        {
            cap_what_was_made_by(&transaction, TokenMaker::ApiToken(changed.hash), bound).await?;
        }
        transaction.commit().await?;
        Ok(Some(changed))
    }

    /// Deletes one of the user's tokens, with what it made; `false` when it is not there.
    pub async fn delete_api_token_of_user(
        &self,
        user_id: UserId,
        hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached("SELECT 1 FROM api_tokens WHERE hash = $1 AND user_id = $2")
            .await?;
        let exists = transaction
            .query_opt(&statement, &[&hash.as_slice(), &user_id_to_sql(user_id)?])
            .await?
            .is_some();
        if exists {
            delete_with_what_they_made(&transaction, &[*hash], &[]).await?;
        }
        transaction.commit().await?;
        Ok(exists)
    }

    /// Deletes up to `limit` standalone tokens that expired before `before` (the earliest
    /// first), with what they made; returns how many.
    pub async fn purge_api_tokens_expired_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "SELECT hash FROM api_tokens \
                 WHERE session_id IS NULL AND expires_at < $1 \
                 ORDER BY expires_at, hash LIMIT $2",
            )
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let expired = hashes_of(&transaction.query(&statement, &[&before, &limit]).await?)?;
        delete_with_what_they_made(&transaction, &expired, &[]).await?;
        transaction.commit().await?;
        Ok(expired.len())
    }
}

/// Stores an API token (replacing the record of the same hash, if any).
pub(super) async fn insert_api_token(
    client: &impl GenericClient,
    api_token: &ApiToken,
) -> Result<(), StoreError> {
    write_api_token(client, api_token).await
}

/// An API token by hash.
pub(super) async fn read_api_token(
    client: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<Option<ApiToken>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&hash.as_slice()])
        .await?
        .map(|row| api_token_from_row(&row, 0))
        .transpose()
}

/// Deletes every API token of the user that is not bound to a session, with what each made
/// (API.md 15.3).
pub(super) async fn delete_standalone_api_tokens(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("SELECT hash FROM api_tokens WHERE user_id = $1 AND session_id IS NULL")
        .await?;
    let hashes = hashes_of(
        &client
            .query(&statement, &[&user_id_to_sql(user_id)?])
            .await?,
    )?;
    delete_with_what_they_made(client, &hashes, &[]).await?;
    Ok(())
}

/// The first column of each row, a token hash.
fn hashes_of(rows: &[Row]) -> Result<Vec<[u8; 32]>, StoreError> {
    rows.iter()
        .map(|row| hash_from_sql(row.try_get(0)?, "api token"))
        .collect()
}

/// The session whose `SESSION_COLUMNS` start at column `first`, or `None` when a left join
/// found none (its id is null).
fn optional_session_from_row(row: &Row, first: usize) -> Result<Option<Session>, StoreError> {
    match row.try_get::<_, Option<uuid::Uuid>>(first)? {
        None => Ok(None),
        Some(_) => session_from_row(row, first).map(Some),
    }
}
