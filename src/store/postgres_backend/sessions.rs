//! Sessions on PostgreSQL, as `redb_backend/sessions.rs`: sign-ins and minted tokens, a
//! user's sessions, ending them (with what they made) and purging the expired.

use deadpool_postgres::GenericClient;

use crate::model::{Session, SessionId, UnixSeconds, UserId};
use crate::store::postgres_backend::api_tokens::insert_api_token;
use crate::store::postgres_backend::rows::{
    SESSION_COLUMN_COUNT, SESSION_COLUMNS, USER_COLUMN_COUNT, USER_COLUMNS, insert_session,
    optional_user_from_row, qualified, session_from_row, session_id_from_sql, session_id_to_sql,
    user_from_row, user_id_to_sql,
};
use crate::store::postgres_backend::token_makers::{delete_with_what_they_made, fit_within_maker};
use crate::store::postgres_backend::users::set_password_hash;
use crate::store::postgres_backend::{PostgresStore, begin_write, check_requester};
use crate::store::{NewSignIn, SessionContext, StoreError};

impl PostgresStore {
    /// Writes a sign-in's session, its API token, and (optionally) ends the user's other
    /// sessions and replaces its password hash, all in one transaction.
    pub async fn record_sign_in(&self, sign_in: &NewSignIn) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        write_sign_in(&transaction, sign_in).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The session, its user and the user's parent, or `None` if the session is gone: one
    /// statement, on every request a session authenticates.
    pub async fn session_context(
        &self,
        id: SessionId,
    ) -> Result<Option<SessionContext>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {}, {}, {} FROM sessions session \
                 JOIN users owner ON owner.id = session.user_id \
                 LEFT JOIN users parent ON parent.id = owner.parent_id \
                 WHERE session.id = $1 \
                   AND (owner.parent_id IS NULL OR parent.id IS NOT NULL)",
                qualified("session", SESSION_COLUMNS),
                qualified("owner", USER_COLUMNS),
                qualified("parent", USER_COLUMNS),
            ))
            .await?;
        let Some(row) = client
            .query_opt(&statement, &[&session_id_to_sql(id)])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(SessionContext {
            session: session_from_row(&row, 0)?,
            user: user_from_row(&row, SESSION_COLUMN_COUNT)?,
            parent: optional_user_from_row(&row, SESSION_COLUMN_COUNT + USER_COLUMN_COUNT)?,
        }))
    }

    pub async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let client = self.connection().await?;
        read_session(&client, id).await
    }

    /// The user's sessions that have not expired, newest first.
    pub async fn live_sessions_of_user(
        &self,
        user_id: UserId,
        now: UnixSeconds,
    ) -> Result<Vec<Session>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND expire > $2 \
                 ORDER BY created DESC, id DESC"
            ))
            .await?;
        client
            .query(&statement, &[&user_id_to_sql(user_id)?, &now])
            .await?
            .iter()
            .map(|row| session_from_row(row, 0))
            .collect()
    }

    /// Ends one session of this user; `false` when it is not there (or not theirs).
    pub async fn end_session_of_user(
        &self,
        user_id: UserId,
        id: SessionId,
    ) -> Result<bool, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let ended = match read_session(&transaction, id).await? {
            Some(session) if session.user_id == user_id => delete_session(&transaction, id).await?,
            _ => false,
        };
        transaction.commit().await?;
        Ok(ended)
    }

    /// Ends every session of the user, the caller's own included.
    pub async fn end_all_sessions_of_user(&self, user_id: UserId) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let ids = session_ids_of_user(&transaction, user_id).await?;
        delete_sessions(&transaction, &ids).await?;
        transaction.commit().await?;
        Ok(ids.len())
    }

    /// Ends every session of the user but `kept` (the caller's own): "end all others".
    pub async fn end_other_sessions_of_user(
        &self,
        user_id: UserId,
        kept: SessionId,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let mut ids = session_ids_of_user(&transaction, user_id).await?;
        ids.retain(|id| *id != kept);
        delete_sessions(&transaction, &ids).await?;
        transaction.commit().await?;
        Ok(ids.len())
    }

    /// How many sessions the store holds, expired or not.
    pub async fn session_count(&self) -> Result<u64, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached("SELECT count(*) FROM sessions")
            .await?;
        let count: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
        u64::try_from(count).map_err(|_| StoreError::CorruptRecord("session count"))
    }

    /// Inserts many sessions in one transaction: for seeding benchmarks and tests.
    pub async fn insert_sessions(&self, sessions: &[Session]) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        for session in sessions {
            insert_session(&transaction, session).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes up to `limit` sessions that expired before `now` (the earliest first), with
    /// what they made; returns how many.
    pub async fn purge_expired_sessions(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "SELECT id FROM sessions WHERE expire < $1 ORDER BY expire, id LIMIT $2",
            )
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let expired = transaction
            .query(&statement, &[&now, &limit])
            .await?
            .iter()
            .map(|row| row.try_get(0).map(session_id_from_sql))
            .collect::<Result<Vec<_>, _>>()?;
        delete_sessions(&transaction, &expired).await?;
        transaction.commit().await?;
        Ok(expired.len())
    }
}

/// What `record_sign_in` writes, inside a transaction of its caller's (a second step spends
/// its proof in the same one).
pub(super) async fn write_sign_in(
    client: &impl GenericClient,
    sign_in: &NewSignIn,
) -> Result<(), StoreError> {
    let user_id = sign_in.session.user_id;
    check_requester(client, &sign_in.requester).await?;
    if sign_in.end_other_sessions {
        let ids = session_ids_of_user(client, user_id).await?;
        delete_sessions(client, &ids).await?;
    } else {
        end_oldest_sessions_beyond(client, user_id, sign_in.max_sessions_per_user).await?;
    }
    let mut session = sign_in.session.clone();
    if let Some(last_second) = fit_within_maker(client, session.made_by).await? {
        session.expire = session.expire.min(last_second + 1);
    }
    insert_session(client, &session).await?;
    if let Some(api_token) = &sign_in.api_token {
        insert_api_token(client, api_token).await?;
    }
    if let Some(hash) = &sign_in.replacement_password_hash {
        // A re-hash of the same password is not a profile change: `updated` stays.
        set_password_hash(client, user_id, hash, None).await?;
    }
    Ok(())
}

/// A session by id.
pub(super) async fn read_session(
    client: &impl GenericClient,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&session_id_to_sql(id)])
        .await?
        .map(|row| session_from_row(&row, 0))
        .transpose()
}

/// The ids of the user's sessions, expired ones included, oldest first.
pub(super) async fn session_ids_of_user(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<Vec<SessionId>, StoreError> {
    let statement = client
        .prepare_cached("SELECT id FROM sessions WHERE user_id = $1 ORDER BY created, id")
        .await?;
    client
        .query(&statement, &[&user_id_to_sql(user_id)?])
        .await?
        .iter()
        .map(|row| Ok(session_id_from_sql(row.try_get(0)?)))
        .collect()
}

/// Ends the user's oldest sessions until one more fits under `limit` (API.md 15.13): all
/// but the newest `limit - 1` go.
async fn end_oldest_sessions_beyond(
    client: &impl GenericClient,
    user_id: UserId,
    limit: usize,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id FROM sessions WHERE user_id = $1 \
             ORDER BY created DESC, id DESC OFFSET $2",
        )
        .await?;
    let kept = i64::try_from(limit.max(1) - 1).unwrap_or(i64::MAX);
    let doomed = client
        .query(&statement, &[&user_id_to_sql(user_id)?, &kept])
        .await?
        .iter()
        .map(|row| Ok(session_id_from_sql(row.try_get(0)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    delete_sessions(client, &doomed).await?;
    Ok(())
}

/// Removes a session with its bound API token and everything the session (a minted token)
/// or that token made (API.md 15.3). Returns whether it existed.
pub(super) async fn delete_session(
    client: &impl GenericClient,
    id: SessionId,
) -> Result<bool, StoreError> {
    Ok(delete_sessions(client, &[id]).await? == 1)
}

/// `delete_session` for many sessions in one statement; answers how many existed.
pub(super) async fn delete_sessions(
    client: &impl GenericClient,
    ids: &[SessionId],
) -> Result<usize, StoreError> {
    Ok(delete_with_what_they_made(client, &[], ids).await?.sessions)
}
