//! Sessions on PostgreSQL, as `redb_backend/sessions.rs`: sign-ins and minted tokens, a
//! user's sessions, ending them (with what they made) and purging the expired.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::model::second_factor::SecondFactorSummary;
use crate::model::{OAuthIdentity, Session, SessionId, UnixSeconds, UserId};
use crate::store::postgres_backend::api_tokens::insert_api_token;
use crate::store::postgres_backend::identities::{IDENTITIES_OF_USER, identities_of_user_in};
use crate::store::postgres_backend::pipelined_transaction::{
    begin, commit, write_in_pipelined_transaction,
};
use crate::store::postgres_backend::rows::{
    INSERT_API_TOKEN, INSERT_SESSION, SESSION_COLUMN_COUNT, SESSION_COLUMNS, USER_COLUMN_COUNT,
    USER_COLUMNS, insert_session, optional_user_from_row, qualified, session_from_row,
    session_id_from_sql, session_id_to_sql, unsigned_to_sql, user_from_row, user_id_to_sql,
};
use crate::store::postgres_backend::second_factors::{
    second_factor_summary_columns, second_factor_summary_from_row, second_factor_summary_in,
};
use crate::store::postgres_backend::token_makers::{delete_with_what_they_made, fit_within_maker};
use crate::store::postgres_backend::users::{SET_PASSWORD_HASH, set_password_hash};
use crate::store::postgres_backend::{
    PostgresStore, begin_write, check_requester, take_writer_lock, writer_lock_statement,
};
use crate::store::{AlsoRead, NewSignIn, Requester, SessionContext, StoreError};

/// `session_context`'s statement: the session, its user and the parent, joined (and the
/// user's second-factor summary when `also` asks for it).
pub(super) fn session_context_query(also: AlsoRead) -> String {
    format!(
        "SELECT {}, {}, {}{} FROM sessions session \
         JOIN users owner ON owner.id = session.user_id \
         LEFT JOIN users parent ON parent.id = owner.parent_id \
         WHERE session.id = $1 \
           AND (owner.parent_id IS NULL OR parent.id IS NOT NULL)",
        qualified("session", SESSION_COLUMNS),
        qualified("owner", USER_COLUMNS),
        qualified("parent", USER_COLUMNS),
        also_read_columns(also),
    )
}

/// The columns a token check's statement appends for `also`, after a comma.
pub(super) fn also_read_columns(also: AlsoRead) -> String {
    match also {
        AlsoRead::Nothing => String::new(),
        AlsoRead::SecondFactorSummary => {
            format!(", {}", second_factor_summary_columns("owner"))
        }
    }
}

/// What `also_read_columns` appended, read from `first` on.
pub(super) fn also_read_from_row(
    row: &Row,
    also: AlsoRead,
    first: usize,
) -> Result<Option<SecondFactorSummary>, StoreError> {
    match also {
        AlsoRead::Nothing => Ok(None),
        AlsoRead::SecondFactorSummary => second_factor_summary_from_row(row, first).map(Some),
    }
}

impl PostgresStore {
    /// Writes a sign-in's session, its API token, and (optionally) ends the user's other
    /// sessions and replaces its password hash, all in one transaction.
    pub async fn record_sign_in(
        &self,
        sign_in: &NewSignIn,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        let client = self.connection().await?;
        write_in_pipelined_transaction(client, async |client| {
            write_sign_in(client, sign_in, SignInTransaction::Own).await
        })
        .await
    }

    /// The session, its user and the user's parent (and what `also` asks for), or `None` if
    /// the session is gone: one statement, on every request a session authenticates.
    pub async fn session_context(
        &self,
        id: SessionId,
        also: AlsoRead,
    ) -> Result<Option<SessionContext>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(self.token_check_queries.session_context(also))
            .await?;
        let Some(row) = client
            .query_opt(&statement, &[&session_id_to_sql(id)])
            .await?
        else {
            return Ok(None);
        };
        let parent_column = SESSION_COLUMN_COUNT + USER_COLUMN_COUNT;
        Ok(Some(SessionContext {
            session: session_from_row(&row, 0)?,
            user: user_from_row(&row, SESSION_COLUMN_COUNT)?,
            parent: optional_user_from_row(&row, parent_column)?,
            second_factors: also_read_from_row(&row, also, parent_column + USER_COLUMN_COUNT)?,
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

/// How `write_sign_in` stands to its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SignInTransaction {
    /// The caller's, open, the writer lock held (a second step spends its proof under it
    /// first); the caller commits.
    Open,
    /// Its own, on a connection of `write_in_pipelined_transaction`: BEGIN and the writer
    /// lock lead the first batch, COMMIT ends the second.
    Own,
}

/// What `record_sign_in` writes; answers the user's linked identities as committed.
///
/// A sign-in is on the path of every password check, so its statements go in two pipelined
/// batches rather than one round trip each: first (BEGIN and) the writer lock, the
/// requester's check, the second factors held (when `refuse_if_second_factor_held`), the
/// sessions to end and the maker's life; then the inserts and the identities (and COMMIT).
/// PostgreSQL runs statements in the order they reach it, and a batch sends them in the
/// order its futures are listed, except that a statement not yet prepared on this
/// connection waits a round trip for its preparation. So the lock and every statement of
/// the second batch are prepared before their batch: the lock must come first, the
/// session's insert before its token's (which refers to it), and COMMIT last.
pub(super) async fn write_sign_in(
    client: &impl GenericClient,
    sign_in: &NewSignIn,
    transaction: SignInTransaction,
) -> Result<Vec<OAuthIdentity>, StoreError> {
    let user_id = sign_in.session.user_id;
    let own = transaction == SignInTransaction::Own;
    // A password or OAuth sign-in's requester is the user itself, with no credential of its
    // own: its check and the second factors held are one read of the user's row.
    let one_read_of_the_user = sign_in.refuse_if_second_factor_held
        && sign_in.requester.credential.is_none()
        && sign_in.requester.user_id == user_id;
    let lock_statement = match own {
        true => Some(writer_lock_statement(client).await?),
        false => None,
    };
    let ((), (), (), held, doomed, maker_last_second) = tokio::try_join!(
        biased;
        async {
            match own {
                true => begin(client).await,
                false => Ok(()),
            }
        },
        async {
            match &lock_statement {
                Some(statement) => take_writer_lock(client, statement).await,
                None => Ok(()),
            }
        },
        async {
            match one_read_of_the_user {
                true => Ok(()),
                false => check_requester(client, &sign_in.requester).await,
            }
        },
        async {
            match (one_read_of_the_user, sign_in.refuse_if_second_factor_held) {
                (true, _) => check_version_and_read_second_factors(client, &sign_in.requester)
                    .await
                    .map(Some),
                (false, true) => second_factor_summary_in(client, user_id).await.map(Some),
                (false, false) => Ok(None),
            }
        },
        async {
            match sign_in.end_other_sessions {
                true => session_ids_of_user(client, user_id).await,
                false => oldest_sessions_beyond(client, user_id, sign_in.max_sessions_per_user)
                    .await,
            }
        },
        fit_within_maker(client, sign_in.session.made_by),
    )?;
    if let Some(held) = held.filter(SecondFactorSummary::requires_second_factor) {
        return Err(StoreError::SecondFactorHeld(held));
    }
    delete_sessions(client, &doomed).await?;
    let mut session = sign_in.session.clone();
    if let Some(last_second) = maker_last_second {
        session.expire = session.expire.min(last_second + 1);
    }
    for statement in [
        INSERT_SESSION,
        INSERT_API_TOKEN,
        SET_PASSWORD_HASH,
        IDENTITIES_OF_USER,
    ] {
        client.prepare_cached(statement).await?;
    }
    let ((), (), (), identities, ()) = tokio::try_join!(
        biased;
        insert_session(client, &session),
        async {
            match &sign_in.api_token {
                Some(api_token) => insert_api_token(client, api_token).await,
                None => Ok(()),
            }
        },
        async {
            match &sign_in.replacement_password_hash {
                // A re-hash of the same password is not a profile change: `updated` stays.
                Some(hash) => set_password_hash(client, user_id, hash, None).await,
                None => Ok(()),
            }
        },
        identities_of_user_in(client, user_id),
        async {
            match own {
                true => commit(client).await,
                false => Ok(()),
            }
        },
    )?;
    Ok(identities)
}

/// `check_requester` for a requester with no credential of its own, and
/// `second_factor_summary_in` for its user, in one statement.
async fn check_version_and_read_second_factors(
    client: &impl GenericClient,
    requester: &Requester,
) -> Result<SecondFactorSummary, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT credential_version, {} FROM users WHERE id = $1",
            second_factor_summary_columns("users")
        ))
        .await?;
    let row = client
        .query_opt(&statement, &[&user_id_to_sql(requester.user_id)?])
        .await?
        .ok_or(StoreError::CredentialsChanged)?;
    let version: i64 = row.try_get(0)?;
    if version != unsigned_to_sql(requester.credential_version, "user")? {
        return Err(StoreError::CredentialsChanged);
    }
    second_factor_summary_from_row(&row, 1)
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

/// The user's oldest sessions that must end for one more to fit under `limit` (API.md
/// 15.13): all but the newest `limit - 1`.
async fn oldest_sessions_beyond(
    client: &impl GenericClient,
    user_id: UserId,
    limit: usize,
) -> Result<Vec<SessionId>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id FROM sessions WHERE user_id = $1 \
             ORDER BY created DESC, id DESC OFFSET $2",
        )
        .await?;
    let kept = i64::try_from(limit.max(1) - 1).unwrap_or(i64::MAX);
    client
        .query(&statement, &[&user_id_to_sql(user_id)?, &kept])
        .await?
        .iter()
        .map(|row| Ok(session_id_from_sql(row.try_get(0)?)))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ApiToken, PasswordHashString, PermissionSet, SessionKind, Status, TokenMaker,
    };
    use crate::store::postgres_backend::test_support::{
        NOW, add_user, assert_same, fresh_database, fresh_store, live_session, standalone_token,
    };
    use crate::store::{Requester, RequesterCredential, SessionsToEnd, StoreError};

    fn sign_in_of(session: Session, credential_version: u64) -> NewSignIn {
        NewSignIn {
            refuse_if_second_factor_held: false,
            requester: Requester {
                user_id: session.user_id,
                credential_version,
                credential: None,
                now: NOW,
            },
            session,
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        }
    }

    fn sorted(mut ids: Vec<SessionId>) -> Vec<SessionId> {
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn sessions_with_and_without_the_user_prefix_are_listed_and_ended_alike() {
        let store = fresh_store().await;
        let user = add_user(&store, "index@example.com").await;
        let prefixed = live_session(SessionId::new_for_user(user.id), user.id);
        let random = live_session(SessionId::new_random(), user.id);
        assert!(!random.id.is_prefixed_for(user.id));
        store
            .insert_sessions(&[prefixed.clone(), random.clone()])
            .await
            .unwrap();
        let listed: Vec<SessionId> = store
            .live_sessions_of_user(user.id, NOW)
            .await
            .unwrap()
            .iter()
            .map(|session| session.id)
            .collect();
        assert_eq!(sorted(listed), sorted(vec![prefixed.id, random.id]));
        assert_same(&store.session(random.id).await.unwrap().unwrap(), &random);
        assert_eq!(store.end_all_sessions_of_user(user.id).await.unwrap(), 2);
        assert!(store.session(prefixed.id).await.unwrap().is_none());
        assert!(store.session(random.id).await.unwrap().is_none());
        assert_eq!(store.session_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn live_sessions_are_the_unexpired_newest_first() {
        let store = fresh_store().await;
        let user = add_user(&store, "live@example.com").await;
        let older = Session {
            created: NOW - 10,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let newer = live_session(SessionId::new_for_user(user.id), user.id);
        let expired = Session {
            expire: NOW,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        store
            .insert_sessions(&[older.clone(), expired.clone(), newer.clone()])
            .await
            .unwrap();
        let listed: Vec<SessionId> = store
            .live_sessions_of_user(user.id, NOW)
            .await
            .unwrap()
            .iter()
            .map(|session| session.id)
            .collect();
        assert_eq!(listed, vec![newer.id, older.id]);
        assert_eq!(store.session_count().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn ending_the_other_sessions_keeps_the_callers_own_and_spares_other_users() {
        let store = fresh_store().await;
        let user = add_user(&store, "many@example.com").await;
        let other_user = add_user(&store, "other@example.com").await;
        let kept = live_session(SessionId::new_for_user(user.id), user.id);
        let ended = live_session(SessionId::new_for_user(user.id), user.id);
        let unprefixed = live_session(SessionId(7), user.id);
        let stranger = live_session(SessionId::new_for_user(other_user.id), other_user.id);
        store
            .insert_sessions(&[
                kept.clone(),
                ended.clone(),
                unprefixed.clone(),
                stranger.clone(),
            ])
            .await
            .unwrap();

        assert_eq!(
            store
                .end_other_sessions_of_user(user.id, kept.id)
                .await
                .unwrap(),
            2
        );
        assert!(store.session(kept.id).await.unwrap().is_some());
        assert!(store.session(ended.id).await.unwrap().is_none());
        assert!(store.session(unprefixed.id).await.unwrap().is_none());
        assert!(store.session(stranger.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_user_ends_only_their_own_session() {
        let store = fresh_store().await;
        let user = add_user(&store, "mine@example.com").await;
        let other_user = add_user(&store, "theirs@example.com").await;
        let session = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .await
            .unwrap();
        assert!(
            !store
                .end_session_of_user(other_user.id, session.id)
                .await
                .unwrap()
        );
        assert!(store.session(session.id).await.unwrap().is_some());
        assert!(
            store
                .end_session_of_user(user.id, session.id)
                .await
                .unwrap()
        );
        assert!(
            !store
                .end_session_of_user(user.id, session.id)
                .await
                .unwrap()
        );
        assert!(store.session(session.id).await.unwrap().is_none());
    }

    /// API.md 15.6: a sign-in that verified before a password change or a suspension
    /// committed writes nothing, so no session survives the change that raced it; whether or
    /// not it also reads the second factors held (in the same statement when it does).
    #[tokio::test]
    async fn a_sign_in_verified_against_an_older_credential_version_writes_nothing() {
        let store = fresh_store().await;
        for refuse_if_second_factor_held in [false, true] {
            let email = format!("racer-{refuse_if_second_factor_held}@example.com");
            a_sign_in_against_an_older_version_writes_nothing(
                &store,
                &email,
                refuse_if_second_factor_held,
            )
            .await;
        }
    }

    async fn a_sign_in_against_an_older_version_writes_nothing(
        store: &PostgresStore,
        email: &str,
        refuse_if_second_factor_held: bool,
    ) {
        let user = add_user(store, email).await;
        let sign_in = |version: u64| NewSignIn {
            refuse_if_second_factor_held,
            ..sign_in_of(
                live_session(SessionId::new_for_user(user.id), user.id),
                version,
            )
        };
        let raced = sign_in(user.credential_version);
        let new_hash = PasswordHashString::new("$argon2id$new".to_owned());
        store
            .change_password(None, user.id, &new_hash, SessionsToEnd::All, true, NOW)
            .await
            .unwrap();
        assert!(matches!(
            store.record_sign_in(&raced).await,
            Err(StoreError::CredentialsChanged)
        ));
        assert!(store.session(raced.session.id).await.unwrap().is_none());

        let after_change = store
            .user_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .credential_version;
        assert_eq!(after_change, user.credential_version + 1);
        let raced = sign_in(after_change);
        store
            .update_user(user.id, NOW, |user| user.status = Status::Suspended)
            .await
            .unwrap();
        assert!(matches!(
            store.record_sign_in(&raced).await,
            Err(StoreError::CredentialsChanged)
        ));
        let suspended = store.user_by_id(user.id).await.unwrap().unwrap();
        assert_eq!(suspended.credential_version, after_change + 1);
        // Changing a name is no credential change: a sign-in that read before it still counts.
        store
            .update_user(user.id, NOW, |user| {
                user.first_name = Some("Ada".to_owned())
            })
            .await
            .unwrap();
        let counted = sign_in(suspended.credential_version);
        store.record_sign_in(&counted).await.unwrap();
        assert!(store.session(counted.session.id).await.unwrap().is_some());
    }

    /// `max_per_user`: the oldest sessions end so that the new one makes the cap; with
    /// `logout-other`, every other session ends.
    #[tokio::test]
    async fn a_sign_in_ends_the_oldest_sessions_beyond_the_cap_or_all_others() {
        let store = fresh_store().await;
        let user = add_user(&store, "capped@example.com").await;
        let other_user = add_user(&store, "uncapped@example.com").await;
        let sessions: Vec<Session> = (0..4)
            .map(|age| Session {
                created: NOW - 100 + age,
                ..live_session(SessionId::new_for_user(user.id), user.id)
            })
            .collect();
        let stranger = live_session(SessionId::new_for_user(other_user.id), other_user.id);
        store.insert_sessions(&sessions).await.unwrap();
        store
            .insert_sessions(std::slice::from_ref(&stranger))
            .await
            .unwrap();

        let capped = NewSignIn {
            max_sessions_per_user: 3,
            ..sign_in_of(
                live_session(SessionId::new_for_user(user.id), user.id),
                user.credential_version,
            )
        };
        store.record_sign_in(&capped).await.unwrap();
        let left = sorted(
            store
                .live_sessions_of_user(user.id, NOW)
                .await
                .unwrap()
                .iter()
                .map(|session| session.id)
                .collect(),
        );
        assert_eq!(
            left,
            sorted(vec![sessions[2].id, sessions[3].id, capped.session.id])
        );

        // A cap of 0 counts as 1: the new session alone.
        let alone = NewSignIn {
            max_sessions_per_user: 0,
            ..sign_in_of(
                live_session(SessionId::new_for_user(user.id), user.id),
                user.credential_version,
            )
        };
        store.record_sign_in(&alone).await.unwrap();
        let listed = store.live_sessions_of_user(user.id, NOW).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, alone.session.id);

        let logout_other = NewSignIn {
            end_other_sessions: true,
            ..sign_in_of(
                live_session(SessionId::new_for_user(user.id), user.id),
                user.credential_version,
            )
        };
        store.record_sign_in(&logout_other).await.unwrap();
        let listed = store.live_sessions_of_user(user.id, NOW).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, logout_other.session.id);
        assert!(store.session(stranger.id).await.unwrap().is_some());
    }

    /// A sign-in's API token and password re-hash commit with its session; the re-hash is no
    /// credential change (its version and `updated` stay); the token ends with the session.
    /// The sign-in's inserts are pipelined: the session's must reach the database before
    /// its token's, which refers to it, even on a connection that has prepared the token's
    /// insert but not yet the session's (one connection, so it is that one).
    #[tokio::test]
    async fn a_sign_in_inserts_its_session_before_its_token_on_any_connection() {
        let store = PostgresStore::open(&fresh_database().await, 1)
            .await
            .unwrap();
        let user = add_user(&store, "pipelined@example.com").await;
        store
            .insert_api_token(&standalone_token(user.id, 1, None))
            .await
            .unwrap();
        let session = Session {
            api_token_hash: Some([2; 32]),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let bound = ApiToken {
            session_id: Some(session.id),
            expires_at: Some(session.expire),
            ..standalone_token(user.id, 2, None)
        };
        let sign_in = NewSignIn {
            api_token: Some(bound.clone()),
            ..sign_in_of(session.clone(), user.credential_version)
        };
        store.record_sign_in(&sign_in).await.unwrap();
        let context = store
            .api_token_context(&bound.hash, AlsoRead::Nothing)
            .await
            .unwrap()
            .unwrap();
        assert_same(&context.session, &Some(session));
    }

    /// A sign-in's BEGIN and COMMIT travel with its statements: on a connection that has
    /// prepared none of them, a sign-in whose token cannot be written (its user does not
    /// exist) commits nothing, its session included, so no statement overtook the COMMIT;
    /// and the connection goes back to the pool out of the transaction, so that the next
    /// sign-in on it commits.
    #[tokio::test]
    async fn a_sign_in_that_fails_at_its_last_batch_commits_nothing_and_its_connection_goes_on() {
        let database = fresh_database().await;
        let store = PostgresStore::open(&database, 1).await.unwrap();
        let watcher = PostgresStore::open(&database, 1).await.unwrap();
        let user = add_user(&store, "atomic@example.com").await;
        let session = Session {
            api_token_hash: Some([3; 32]),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let orphan_token = ApiToken {
            session_id: Some(session.id),
            expires_at: Some(session.expire),
            ..standalone_token(user.id + 1000, 3, None)
        };
        let failing = NewSignIn {
            api_token: Some(orphan_token),
            ..sign_in_of(session.clone(), user.credential_version)
        };
        assert!(store.record_sign_in(&failing).await.is_err());
        assert!(watcher.session(session.id).await.unwrap().is_none());

        let next = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .record_sign_in(&sign_in_of(next.clone(), user.credential_version))
            .await
            .unwrap();
        assert_same(&watcher.session(next.id).await.unwrap(), &Some(next));
    }

    #[tokio::test]
    async fn a_sign_in_writes_its_token_and_rehash_and_the_token_ends_with_the_session() {
        let store = fresh_store().await;
        let user = add_user(&store, "rehash@example.com").await;
        let session = Session {
            api_token_hash: Some([9; 32]),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let bound = ApiToken {
            session_id: Some(session.id),
            expires_at: Some(session.expire),
            ..standalone_token(user.id, 9, None)
        };
        let rehash = PasswordHashString::new("$argon2id$rehashed".to_owned());
        let sign_in = NewSignIn {
            api_token: Some(bound.clone()),
            replacement_password_hash: Some(rehash.clone()),
            ..sign_in_of(session.clone(), user.credential_version)
        };
        store.record_sign_in(&sign_in).await.unwrap();

        let after = store.user_by_id(user.id).await.unwrap().unwrap();
        assert_eq!(after.password_hash, Some(rehash));
        assert_eq!(after.credential_version, user.credential_version);
        assert_eq!(after.updated, user.updated);
        let context = store
            .api_token_context(&bound.hash, AlsoRead::Nothing)
            .await
            .unwrap()
            .unwrap();
        assert_same(&context.api_token, &bound);
        assert_same(&context.session, &Some(session.clone()));
        assert_same(&context.user, &after);
        assert!(context.parent.is_none());
        // Bound tokens are not standalone.
        assert!(
            store
                .standalone_api_tokens_of_user(user.id)
                .await
                .unwrap()
                .is_empty()
        );

        assert!(
            store
                .end_session_of_user(user.id, session.id)
                .await
                .unwrap()
        );
        assert!(
            store
                .api_token_context(&bound.hash, AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_session_context_carries_the_user_and_the_parent() {
        let store = fresh_store().await;
        let parent = add_user(&store, "parent@example.com").await;
        let child = store
            .insert_user(
                crate::model::NewUser {
                    parent_id: Some(parent.id),
                    permissions: PermissionSet::empty(),
                    ..crate::model::NewUser::new(
                        crate::model::email_address::EmailAddress::parse("child@example.com")
                            .unwrap(),
                        crate::model::Role::Sub,
                        Status::Active,
                    )
                },
                NOW,
            )
            .await
            .unwrap();
        let own = live_session(SessionId::new_for_user(parent.id), parent.id);
        let childs = live_session(SessionId::new_for_user(child.id), child.id);
        store
            .insert_sessions(&[own.clone(), childs.clone()])
            .await
            .unwrap();

        let context = store
            .session_context(own.id, AlsoRead::Nothing)
            .await
            .unwrap()
            .unwrap();
        assert_same(&context.session, &own);
        assert_same(&context.user, &parent);
        assert!(context.parent.is_none());
        let context = store
            .session_context(childs.id, AlsoRead::Nothing)
            .await
            .unwrap()
            .unwrap();
        assert_same(&context.session, &childs);
        assert_same(&context.user, &child);
        assert_same(&context.parent, &Some(parent));
        assert!(
            store
                .session_context(SessionId::new_random(), AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// The purge takes the earliest-expired first, at most `limit`, and what a minted
    /// session made goes with it.
    #[tokio::test]
    async fn the_purge_deletes_the_earliest_expired_up_to_the_limit_with_what_they_made() {
        let store = fresh_store().await;
        let user = add_user(&store, "purged@example.com").await;
        let expired_first = Session {
            expire: NOW - 20,
            kind: SessionKind::Minted,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let expired_second = Session {
            expire: NOW - 10,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let live = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(&[expired_second.clone(), live.clone(), expired_first.clone()])
            .await
            .unwrap();
        let made = standalone_token(
            user.id,
            5,
            Some(TokenMaker::MintedSession(expired_first.id)),
        );
        store.insert_api_token(&made).await.unwrap();

        assert_eq!(store.purge_expired_sessions(NOW, 1).await.unwrap(), 1);
        assert!(store.session(expired_first.id).await.unwrap().is_none());
        assert!(store.session(expired_second.id).await.unwrap().is_some());
        assert!(
            store
                .api_token_context(&made.hash, AlsoRead::Nothing)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.purge_expired_sessions(NOW, 10).await.unwrap(), 1);
        assert_eq!(store.purge_expired_sessions(NOW, 10).await.unwrap(), 0);
        assert!(store.session(live.id).await.unwrap().is_some());
    }

    /// A session requester that is gone or expired mints nothing.
    #[tokio::test]
    async fn a_mint_by_an_expired_session_writes_nothing() {
        let store = fresh_store().await;
        let user = add_user(&store, "expired-maker@example.com").await;
        let maker = Session {
            kind: SessionKind::Minted,
            expire: NOW,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        store
            .insert_sessions(std::slice::from_ref(&maker))
            .await
            .unwrap();
        let minted = NewSignIn {
            requester: Requester {
                user_id: user.id,
                credential_version: user.credential_version,
                credential: Some(RequesterCredential::Session(maker.id)),
                now: NOW,
            },
            ..sign_in_of(
                Session {
                    kind: SessionKind::Minted,
                    made_by: Some(TokenMaker::MintedSession(maker.id)),
                    ..live_session(SessionId::new_for_user(user.id), user.id)
                },
                user.credential_version,
            )
        };
        assert!(matches!(
            store.record_sign_in(&minted).await,
            Err(StoreError::CredentialsChanged)
        ));
        assert!(store.session(minted.session.id).await.unwrap().is_none());
    }
}
