//! The domain's users, sessions and API tokens as rows, and back: each table's column list,
//! the conversions of ids, enums and permission sets, and the writes every aggregate shares.
//! A value that does not convert (an unknown enum name, an id out of range) is a
//! `CorruptRecord`, as a record that does not decode is in the redb backend.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::model::{
    ApiToken, PasswordHashString, PermissionSet, Role, Session, SessionId, SessionKind, Status,
    TokenMaker, UaType, User, UserId,
};
use crate::store::StoreError;
use crate::store::stored_name::StoredName;

/// `users`' columns in the order `user_from_row` reads them.
pub(super) const USER_COLUMNS: &str = "id, email, normalized_email, password_hash, role, \
     status, parent_id, first_name, last_name, permissions, created, updated, email_verified, \
     credential_version";
/// How many columns `USER_COLUMNS` names: where the next table's columns start in a join.
pub(super) const USER_COLUMN_COUNT: usize = 14;

/// `sessions`' columns in the order `session_from_row` reads them.
pub(super) const SESSION_COLUMNS: &str = "id, user_id, kind, created, expire, remote_ip, \
     user_agent, ua_type, granted_permissions, api_token_hash, made_by_api_token, \
     made_by_session";
pub(super) const SESSION_COLUMN_COUNT: usize = 12;

/// `api_tokens`' columns in the order `api_token_from_row` reads them.
pub(super) const API_TOKEN_COLUMNS: &str = "hash, prefix, user_id, session_id, permissions, \
     restrictions, created, updated, expires_at, made_by_api_token, made_by_session";
pub(super) const API_TOKEN_COLUMN_COUNT: usize = 11;

/// `columns` with each name prefixed by `alias.`, for a join.
pub(super) fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn user_id_to_sql(id: UserId) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::CorruptRecord("user id"))
}

pub(super) fn user_id_from_sql(id: i64) -> Result<UserId, StoreError> {
    UserId::try_from(id).map_err(|_| StoreError::CorruptRecord("user id"))
}

pub(super) fn session_id_to_sql(id: SessionId) -> uuid::Uuid {
    uuid::Uuid::from_u128(id.0)
}

pub(super) fn session_id_from_sql(id: uuid::Uuid) -> SessionId {
    SessionId(id.as_u128())
}

pub(super) fn permissions_to_sql(set: PermissionSet) -> i32 {
    i32::from(set.bits())
}

pub(super) fn permissions_from_sql(bits: i32) -> Result<PermissionSet, StoreError> {
    u16::try_from(bits)
        .map(PermissionSet::from_bits)
        .map_err(|_| StoreError::CorruptRecord("permission set"))
}

/// A count or counter kept as `bigint`: never negative.
pub(super) fn unsigned_to_sql(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::CorruptRecord(what))
}

pub(super) fn unsigned_from_sql(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::CorruptRecord(what))
}

/// A 32-byte hash column.
pub(super) fn hash_from_sql(bytes: &[u8], what: &'static str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::CorruptRecord(what))
}

pub(super) fn name_from_sql<T: StoredName>(
    name: &str,
    what: &'static str,
) -> Result<T, StoreError> {
    T::from_stored_name(name).ok_or(StoreError::CorruptRecord(what))
}

/// A token's maker as its two columns (at most one is set).
pub(super) fn maker_to_sql(maker: Option<TokenMaker>) -> (Option<Vec<u8>>, Option<uuid::Uuid>) {
    match maker {
        None => (None, None),
        Some(TokenMaker::ApiToken(hash)) => (Some(hash.to_vec()), None),
        Some(TokenMaker::MintedSession(id)) => (None, Some(session_id_to_sql(id))),
    }
}

fn maker_from_sql(
    api_token: Option<&[u8]>,
    session: Option<uuid::Uuid>,
) -> Result<Option<TokenMaker>, StoreError> {
    match (api_token, session) {
        (None, None) => Ok(None),
        (Some(hash), None) => Ok(Some(TokenMaker::ApiToken(hash_from_sql(
            hash,
            "token maker",
        )?))),
        (None, Some(id)) => Ok(Some(TokenMaker::MintedSession(session_id_from_sql(id)))),
        (Some(_), Some(_)) => Err(StoreError::CorruptRecord("token maker")),
    }
}

/// The user whose `USER_COLUMNS` start at column `first`.
pub(super) fn user_from_row(row: &Row, first: usize) -> Result<User, StoreError> {
    let column = |offset: usize| first + offset;
    let parent_id: Option<i64> = row.try_get(column(6))?;
    Ok(User {
        id: user_id_from_sql(row.try_get(column(0))?)?,
        email: row.try_get(column(1))?,
        normalized_email: row.try_get(column(2))?,
        password_hash: row
            .try_get::<_, Option<String>>(column(3))?
            .map(PasswordHashString::new),
        role: name_from_sql::<Role>(row.try_get(column(4))?, "user")?,
        status: name_from_sql::<Status>(row.try_get(column(5))?, "user")?,
        parent_id: parent_id.map(user_id_from_sql).transpose()?,
        first_name: row.try_get(column(7))?,
        last_name: row.try_get(column(8))?,
        permissions: permissions_from_sql(row.try_get(column(9))?)?,
        created: row.try_get(column(10))?,
        updated: row.try_get(column(11))?,
        email_verified: row.try_get(column(12))?,
        credential_version: unsigned_from_sql(row.try_get(column(13))?, "user")?,
    })
}

/// The user whose `USER_COLUMNS` start at column `first`, or `None` when a left join found
/// none (its id is null).
pub(super) fn optional_user_from_row(row: &Row, first: usize) -> Result<Option<User>, StoreError> {
    match row.try_get::<_, Option<i64>>(first)? {
        None => Ok(None),
        Some(_) => user_from_row(row, first).map(Some),
    }
}

/// The session whose `SESSION_COLUMNS` start at column `first`.
pub(super) fn session_from_row(row: &Row, first: usize) -> Result<Session, StoreError> {
    let column = |offset: usize| first + offset;
    let api_token_hash: Option<&[u8]> = row.try_get(column(9))?;
    Ok(Session {
        id: session_id_from_sql(row.try_get(column(0))?),
        user_id: user_id_from_sql(row.try_get(column(1))?)?,
        kind: name_from_sql::<SessionKind>(row.try_get(column(2))?, "session")?,
        created: row.try_get(column(3))?,
        expire: row.try_get(column(4))?,
        remote_ip: row.try_get(column(5))?,
        user_agent: row.try_get(column(6))?,
        // A ua-type this build does not know reads as `unknown`, as in the redb backend.
        ua_type: UaType::from_stored_name(row.try_get(column(7))?).unwrap_or(UaType::Unknown),
        granted_permissions: permissions_from_sql(row.try_get(column(8))?)?,
        api_token_hash: api_token_hash
            .map(|hash| hash_from_sql(hash, "session"))
            .transpose()?,
        made_by: maker_from_sql(row.try_get(column(10))?, row.try_get(column(11))?)?,
    })
}

/// The API token whose `API_TOKEN_COLUMNS` start at column `first`.
pub(super) fn api_token_from_row(row: &Row, first: usize) -> Result<ApiToken, StoreError> {
    let column = |offset: usize| first + offset;
    let session_id: Option<uuid::Uuid> = row.try_get(column(3))?;
    Ok(ApiToken {
        hash: hash_from_sql(row.try_get(column(0))?, "api token")?,
        prefix: row.try_get(column(1))?,
        user_id: user_id_from_sql(row.try_get(column(2))?)?,
        session_id: session_id.map(session_id_from_sql),
        permissions: permissions_from_sql(row.try_get(column(4))?)?,
        restrictions: permissions_from_sql(row.try_get(column(5))?)?,
        created: row.try_get(column(6))?,
        updated: row.try_get(column(7))?,
        expires_at: row.try_get(column(8))?,
        made_by: maker_from_sql(row.try_get(column(9))?, row.try_get(column(10))?)?,
    })
}

/// Writes `user` whole: inserted, or every column replaced when its id exists.
pub(super) async fn write_user(client: &impl GenericClient, user: &User) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO users (id, email, normalized_email, password_hash, role, status, \
             parent_id, first_name, last_name, permissions, created, updated, email_verified, \
             credential_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO UPDATE SET email = $2, normalized_email = $3, \
             password_hash = $4, role = $5, status = $6, parent_id = $7, first_name = $8, \
             last_name = $9, permissions = $10, created = $11, updated = $12, \
             email_verified = $13, credential_version = $14",
        )
        .await?;
    let parent_id = user.parent_id.map(user_id_to_sql).transpose()?;
    client
        .execute(
            &statement,
            &[
                &user_id_to_sql(user.id)?,
                &user.email,
                &user.normalized_email,
                &user.password_hash.as_ref().map(|hash| hash.expose_secret()),
                &user.role.stored_name(),
                &user.status.stored_name(),
                &parent_id,
                &user.first_name,
                &user.last_name,
                &permissions_to_sql(user.permissions),
                &user.created,
                &user.updated,
                &user.email_verified,
                &unsigned_to_sql(user.credential_version, "user")?,
            ],
        )
        .await?;
    Ok(())
}

/// The next user id from the `user_ids` sequence.
pub(super) async fn next_user_id(client: &impl GenericClient) -> Result<UserId, StoreError> {
    let statement = client.prepare_cached("SELECT nextval('user_ids')").await?;
    user_id_from_sql(client.query_one(&statement, &[]).await?.try_get(0)?)
}

/// `insert_session`'s statement.
pub(super) const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, kind, created, expire, remote_ip, user_agent, \
     ua_type, granted_permissions, api_token_hash, made_by_api_token, made_by_session) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// `write_api_token`'s statement.
pub(super) const INSERT_API_TOKEN: &str = "INSERT INTO api_tokens (hash, prefix, user_id, session_id, permissions, \
     restrictions, created, updated, expires_at, made_by_api_token, made_by_session) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (hash) DO UPDATE SET prefix = $2, user_id = $3, session_id = $4, \
     permissions = $5, restrictions = $6, created = $7, updated = $8, \
     expires_at = $9, made_by_api_token = $10, made_by_session = $11";

/// Inserts `session`.
pub(super) async fn insert_session(
    client: &impl GenericClient,
    session: &Session,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(INSERT_SESSION).await?;
    let (made_by_api_token, made_by_session) = maker_to_sql(session.made_by);
    client
        .execute(
            &statement,
            &[
                &session_id_to_sql(session.id),
                &user_id_to_sql(session.user_id)?,
                &session.kind.stored_name(),
                &session.created,
                &session.expire,
                &session.remote_ip,
                &session.user_agent,
                &session.ua_type.stored_name(),
                &permissions_to_sql(session.granted_permissions),
                &session.api_token_hash.map(|hash| hash.to_vec()),
                &made_by_api_token,
                &made_by_session,
            ],
        )
        .await?;
    Ok(())
}

/// Writes `token` whole: inserted, or every column replaced when its hash exists.
pub(super) async fn write_api_token(
    client: &impl GenericClient,
    token: &ApiToken,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(INSERT_API_TOKEN).await?;
    let (made_by_api_token, made_by_session) = maker_to_sql(token.made_by);
    client
        .execute(
            &statement,
            &[
                &token.hash.as_slice(),
                &token.prefix,
                &user_id_to_sql(token.user_id)?,
                &token.session_id.map(session_id_to_sql),
                &permissions_to_sql(token.permissions),
                &permissions_to_sql(token.restrictions),
                &token.created,
                &token.updated,
                &token.expires_at,
                &made_by_api_token,
                &made_by_session,
            ],
        )
        .await?;
    Ok(())
}
