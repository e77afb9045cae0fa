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
use crate::store::postgres_backend::sessions::{also_read_columns, also_read_from_row};
use crate::store::postgres_backend::token_makers::{
    cap_what_was_made_by, delete_with_what_they_made, fit_within_maker, token_maker_last_second,
};
use crate::store::postgres_backend::{PostgresStore, begin_write, check_requester};
use crate::store::{AlsoRead, ApiTokenContext, Requester, StoreError};

/// `api_token_context`'s statement: the token, its session, its user and the parent, joined
/// (and the user's second-factor summary when `also` asks for it).
pub(super) fn api_token_context_query(also: AlsoRead) -> String {
    format!(
        "SELECT {}, {}, {}, {}{} FROM api_tokens token \
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
        also_read_columns(also),
    )
}

impl PostgresStore {
    /// The API token with this hash, its session (if bound to one), its user and parent (and
    /// what `also` asks for): one statement, on every request an API token authenticates.
    pub async fn api_token_context(
        &self,
        hash: &[u8; 32],
        also: AlsoRead,
    ) -> Result<Option<ApiTokenContext>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(self.token_check_queries.api_token_context(also))
            .await?;
        let Some(row) = client.query_opt(&statement, &[&hash.as_slice()]).await? else {
            return Ok(None);
        };
        let user_column = API_TOKEN_COLUMN_COUNT + SESSION_COLUMN_COUNT;
        let parent_column = user_column + USER_COLUMN_COUNT;
        Ok(Some(ApiTokenContext {
            api_token: api_token_from_row(&row, 0)?,
            session: optional_session_from_row(&row, API_TOKEN_COLUMN_COUNT)?,
            user: user_from_row(&row, user_column)?,
            parent: optional_user_from_row(&row, parent_column)?,
            second_factors: also_read_from_row(&row, also, parent_column + USER_COLUMN_COUNT)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::email_address::EmailAddress;
    use crate::model::{
        NewUser, PasswordHashString, PermissionSet, Role, SessionId, SessionKind, Status,
    };
    use crate::store::postgres_backend::test_support::{
        NOW, add_user, assert_same, fresh_store, live_session, standalone_token,
    };
    use crate::store::{NewSignIn, RequesterCredential, SessionsToEnd};

    /// The review's races (API.md 15.3, 15.6), as `redb_backend`'s test of the same name: a
    /// request that authenticated before its credential was revoked, or before a password
    /// change, writes nothing once it reaches the store; a change to a token deleted
    /// meanwhile does not bring it back; a sub-user whose parent was deleted meanwhile is
    /// not made.
    #[tokio::test]
    async fn writes_from_a_credential_revoked_in_flight_leave_nothing_behind() {
        let store = fresh_store().await;
        let user = add_user(&store, "raced@example.com").await;
        let now = NOW;
        let session = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        let maker = standalone_token(user.id, 1, None);
        store.insert_api_token(&maker).await.unwrap();
        let requester = |credential| Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: Some(credential),
            now,
        };
        let by_session = requester(RequesterCredential::Session(session.id));
        let by_token = requester(RequesterCredential::ApiToken(maker.hash));

        // Both still stand: their writes go through.
        store
            .insert_api_token_within_limit(&standalone_token(user.id, 2, None), 100, &by_session)
            .await
            .unwrap();
        // The session ends, the token is deleted: what they still had in flight is refused.
        store.end_all_sessions_of_user(user.id).await.unwrap();
        store
            .delete_api_token_of_user(user.id, &maker.hash)
            .await
            .unwrap();
        for requester in [&by_session, &by_token] {
            assert!(matches!(
                store
                    .insert_api_token_within_limit(
                        &standalone_token(user.id, 3, None),
                        100,
                        requester
                    )
                    .await,
                Err(StoreError::CredentialsChanged)
            ));
            let minted = NewSignIn {
                refuse_if_second_factor_held: false,
                session: Session {
                    kind: SessionKind::Minted,
                    ..live_session(SessionId::new_for_user(user.id), user.id)
                },
                requester: *requester,
                max_sessions_per_user: 1000,
                api_token: None,
                end_other_sessions: false,
                replacement_password_hash: None,
            };
            assert!(matches!(
                store.record_sign_in(&minted).await,
                Err(StoreError::CredentialsChanged)
            ));
            assert!(store.session(minted.session.id).await.unwrap().is_none());
        }
        assert_eq!(
            store
                .standalone_api_tokens_of_user(user.id)
                .await
                .unwrap()
                .iter()
                .map(|token| token.hash[0])
                .collect::<Vec<_>>(),
            vec![2]
        );

        // A password change raises the version: a request authenticated before it is refused.
        let fresh = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&fresh))
            .await
            .unwrap();
        let before_change = requester(RequesterCredential::Session(fresh.id));
        store
            .change_password(
                None,
                user.id,
                &PasswordHashString::new("$argon2id$changed".to_owned()),
                SessionsToEnd::None,
                false,
                now,
            )
            .await
            .unwrap();
        let survivor = store.standalone_api_tokens_of_user(user.id).await.unwrap()[0].clone();
        assert!(matches!(
            store.replace_api_token(&survivor, &before_change).await,
            Err(StoreError::CredentialsChanged)
        ));

        // A change to a token deleted meanwhile does not bring it back.
        let current = Requester {
            credential_version: user.credential_version + 1,
            ..before_change
        };
        store
            .delete_api_token_of_user(user.id, &survivor.hash)
            .await
            .unwrap();
        assert!(
            store
                .replace_api_token(&survivor, &current)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .standalone_api_tokens_of_user(user.id)
                .await
                .unwrap()
                .is_empty()
        );

        // A sub-user of a parent deleted meanwhile is not made.
        let parent = add_user(&store, "parent@example.com").await;
        store.delete_user_tree(parent.id).await.unwrap();
        let orphan = NewUser {
            parent_id: Some(parent.id),
            permissions: PermissionSet::empty(),
            ..NewUser::new(
                EmailAddress::parse("orphan@example.com").unwrap(),
                Role::Sub,
                Status::Active,
            )
        };
        assert!(matches!(
            store.insert_user(orphan, now).await,
            Err(StoreError::CredentialsChanged)
        ));
        assert!(
            store
                .user_by_normalized_email("orphan@example.com")
                .await
                .unwrap()
                .is_none()
        );
    }

    /// The cap counts every standalone token, expired ones included, and no bound one.
    #[tokio::test]
    async fn the_token_limit_counts_standalone_tokens_expired_ones_included() {
        let store = fresh_store().await;
        let user = add_user(&store, "limited@example.com").await;
        let owner = Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now: NOW,
        };
        let session = Session {
            api_token_hash: Some([9; 32]),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        store
            .insert_api_token(&ApiToken {
                session_id: Some(session.id),
                ..standalone_token(user.id, 9, None)
            })
            .await
            .unwrap();
        let expired = ApiToken {
            expires_at: Some(NOW - 100),
            ..standalone_token(user.id, 1, None)
        };
        store
            .insert_api_token_within_limit(&expired, 2, &owner)
            .await
            .unwrap();
        store
            .insert_api_token_within_limit(&standalone_token(user.id, 2, None), 2, &owner)
            .await
            .unwrap();
        assert!(matches!(
            store
                .insert_api_token_within_limit(&standalone_token(user.id, 3, None), 2, &owner)
                .await,
            Err(StoreError::TooManyApiTokens)
        ));
        let listed = store.standalone_api_tokens_of_user(user.id).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_same(&listed[0], &expired);
    }

    /// Standalone tokens are listed oldest first (by hash among equals).
    #[tokio::test]
    async fn standalone_tokens_are_listed_oldest_first() {
        let store = fresh_store().await;
        let user = add_user(&store, "listed@example.com").await;
        let newest = ApiToken {
            created: NOW + 5,
            ..standalone_token(user.id, 1, None)
        };
        store
            .insert_api_tokens(&[
                newest,
                standalone_token(user.id, 3, None),
                standalone_token(user.id, 2, None),
            ])
            .await
            .unwrap();
        let order: Vec<u8> = store
            .standalone_api_tokens_of_user(user.id)
            .await
            .unwrap()
            .iter()
            .map(|token| token.hash[0])
            .collect();
        assert_eq!(order, vec![2, 3, 1]);
    }

    /// The purge takes standalone tokens expired before the bound, earliest first, at most
    /// `limit`, with what they made; never a bound token, nor one still in its grace.
    #[tokio::test]
    async fn the_purge_deletes_long_expired_standalone_tokens_with_what_they_made() {
        let store = fresh_store().await;
        let user = add_user(&store, "purge@example.com").await;
        let earliest = ApiToken {
            expires_at: Some(NOW - 300),
            ..standalone_token(user.id, 1, None)
        };
        let made = standalone_token(user.id, 2, Some(TokenMaker::ApiToken(earliest.hash)));
        let later = ApiToken {
            expires_at: Some(NOW - 200),
            ..standalone_token(user.id, 3, None)
        };
        let in_grace = ApiToken {
            expires_at: Some(NOW - 50),
            ..standalone_token(user.id, 4, None)
        };
        let session = Session {
            api_token_hash: Some([5; 32]),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        let bound = ApiToken {
            session_id: Some(session.id),
            expires_at: Some(NOW - 300),
            ..standalone_token(user.id, 5, None)
        };
        store
            .insert_api_tokens(&[later, in_grace, made, earliest, bound.clone()])
            .await
            .unwrap();

        assert_eq!(
            store
                .purge_api_tokens_expired_before(NOW - 100, 1)
                .await
                .unwrap(),
            1
        );
        let left = |tokens: Vec<ApiToken>| tokens.iter().map(|token| token.hash[0]).collect();
        let now_left: Vec<u8> = left(store.standalone_api_tokens_of_user(user.id).await.unwrap());
        assert_eq!(now_left, vec![3, 4]);
        assert_eq!(
            store
                .purge_api_tokens_expired_before(NOW - 100, 10)
                .await
                .unwrap(),
            1
        );
        let now_left: Vec<u8> = left(store.standalone_api_tokens_of_user(user.id).await.unwrap());
        assert_eq!(now_left, vec![4]);
        assert!(
            store
                .api_token_context(&bound.hash, AlsoRead::Nothing)
                .await
                .unwrap()
                .is_some()
        );
    }

    /// The context of a standalone token of a sub-user: no session, the parent; of an
    /// unknown hash: none. A user deletes only their own tokens.
    #[tokio::test]
    async fn a_token_context_carries_its_user_and_parent_and_only_its_owner_deletes_it() {
        let store = fresh_store().await;
        let parent = add_user(&store, "token-parent@example.com").await;
        let child = store
            .insert_user(
                NewUser {
                    parent_id: Some(parent.id),
                    permissions: PermissionSet::empty(),
                    ..NewUser::new(
                        EmailAddress::parse("token-child@example.com").unwrap(),
                        Role::Sub,
                        Status::Active,
                    )
                },
                NOW,
            )
            .await
            .unwrap();
        let token = standalone_token(child.id, 7, None);
        store.insert_api_token(&token).await.unwrap();
        let context = store
            .api_token_context(&token.hash, AlsoRead::Nothing)
            .await
            .unwrap()
            .unwrap();
        assert_same(&context.api_token, &token);
        assert!(context.session.is_none());
        assert_same(&context.user, &child);
        assert_same(&context.parent, &Some(parent.clone()));
        assert!(
            store
                .api_token_context(&[8; 32], AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );

        assert!(
            !store
                .delete_api_token_of_user(parent.id, &token.hash)
                .await
                .unwrap()
        );
        assert!(
            store
                .delete_api_token_of_user(child.id, &token.hash)
                .await
                .unwrap()
        );
        assert!(
            store
                .api_token_context(&token.hash, AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
    }
}
