//! What each token made, on PostgreSQL, as `redb_backend/token_makers.rs`: "lifetimes nest
//! under tokens" (API.md 15.3). The maker is a column of what it made (`made_by_api_token`,
//! `made_by_session`), so no index table is kept: ending a credential ends what it made, and
//! what that made, in one recursive statement; shortening one caps what it made, level by
//! level.

use deadpool_postgres::GenericClient;

use crate::model::{SessionId, TokenMaker, UnixSeconds};
use crate::store::StoreError;
use crate::store::postgres_backend::rows::session_id_to_sql;

/// Deletes the API tokens `token_hashes` and the sessions `session_ids` (with `delete_seeds`;
/// without, they stay or are already gone), and, in the same statement, everything they
/// made, the API token each session handed out, and what those made in turn. Answers how
/// many of the named sessions and tokens were deleted.
///
/// One recursive query walks the tree from the named credentials: a token's children are
/// the rows made by it; a session's are the rows made by it and its bound API token.
async fn delete_tree(
    client: &impl GenericClient,
    token_hashes: &[[u8; 32]],
    session_ids: &[SessionId],
    delete_seeds: bool,
) -> Result<DeletedSeeds, StoreError> {
    if token_hashes.is_empty() && session_ids.is_empty() {
        return Ok(DeletedSeeds::default());
    }
    let statement = client
        .prepare_cached(
            "WITH RECURSIVE doomed (token_hash, session_id, is_seed) AS ( \
                 SELECT seed, NULL::uuid, true FROM unnest($1::bytea[]) AS seed \
                 UNION ALL \
                 SELECT NULL::bytea, seed, true FROM unnest($2::uuid[]) AS seed \
                 UNION \
                 SELECT made.token_hash, made.session_id, false \
                 FROM doomed CROSS JOIN LATERAL ( \
                     SELECT hash AS token_hash, NULL::uuid AS session_id FROM api_tokens \
                     WHERE made_by_api_token = doomed.token_hash \
                        OR made_by_session = doomed.session_id \
                        OR session_id = doomed.session_id \
                     UNION ALL \
                     SELECT NULL::bytea, id FROM sessions \
                     WHERE made_by_api_token = doomed.token_hash \
                        OR made_by_session = doomed.session_id \
                 ) AS made \
             ), \
             deleted_sessions AS ( \
                 DELETE FROM sessions \
                 WHERE id IN (SELECT session_id FROM doomed WHERE $3 OR NOT is_seed) \
                 RETURNING id \
             ), \
             deleted_tokens AS ( \
                 DELETE FROM api_tokens \
                 WHERE hash IN (SELECT token_hash FROM doomed WHERE $3 OR NOT is_seed) \
                 RETURNING hash \
             ) \
             SELECT (SELECT count(*) FROM deleted_sessions WHERE id = ANY($2)), \
                    (SELECT count(*) FROM deleted_tokens WHERE hash = ANY($1))",
        )
        .await?;
    let token_hashes: Vec<&[u8]> = token_hashes.iter().map(|hash| hash.as_slice()).collect();
    let session_ids: Vec<uuid::Uuid> = session_ids.iter().copied().map(session_id_to_sql).collect();
    let row = client
        .query_one(&statement, &[&token_hashes, &session_ids, &delete_seeds])
        .await?;
    let sessions: i64 = row.try_get(0)?;
    let tokens: i64 = row.try_get(1)?;
    Ok(DeletedSeeds {
        sessions: usize::try_from(sessions).unwrap_or(0),
        tokens: usize::try_from(tokens).unwrap_or(0),
    })
}

/// How many of the credentials named to `delete_with_what_they_made` were there to delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DeletedSeeds {
    pub(super) sessions: usize,
    pub(super) tokens: usize,
}

/// Deletes these API tokens and sessions with everything they made (and the API token each
/// session handed out), however deep: a session's or a token's end, a user's deletion.
pub(super) async fn delete_with_what_they_made(
    client: &impl GenericClient,
    token_hashes: &[[u8; 32]],
    session_ids: &[SessionId],
) -> Result<DeletedSeeds, StoreError> {
    delete_tree(client, token_hashes, session_ids, true).await
}

/// Brings the expiry of everything `maker` made, and of what that made, down to `bound`
/// (an API token's last second; a session ends at most one second after it) when it was
/// later: the maker's lifetime just got shorter (API.md 15.3). What already ends by then,
/// and what it made, is left as it is. One pair of updates per generation.
pub(super) async fn cap_what_was_made_by(
    client: &impl GenericClient,
    maker: TokenMaker,
    bound: UnixSeconds,
) -> Result<(), StoreError> {
    let cap_tokens = client
        .prepare_cached(
            "UPDATE api_tokens SET expires_at = $3 \
             WHERE (made_by_api_token = ANY($1) OR made_by_session = ANY($2)) \
               AND (expires_at IS NULL OR expires_at > $3) \
             RETURNING hash",
        )
        .await?;
    let cap_sessions = client
        .prepare_cached(
            "UPDATE sessions SET expire = $3 \
             WHERE (made_by_api_token = ANY($1) OR made_by_session = ANY($2)) \
               AND expire > $3 \
             RETURNING id",
        )
        .await?;
    let session_bound = bound.saturating_add(1);
    let (mut token_makers, mut session_makers): (Vec<Vec<u8>>, Vec<uuid::Uuid>) = match maker {
        TokenMaker::ApiToken(hash) => (vec![hash.to_vec()], Vec::new()),
        TokenMaker::MintedSession(id) => (Vec::new(), vec![session_id_to_sql(id)]),
    };
    while !token_makers.is_empty() || !session_makers.is_empty() {
        let capped_tokens = client
            .query(&cap_tokens, &[&token_makers, &session_makers, &bound])
            .await?
            .iter()
            .map(|row| row.try_get::<_, Vec<u8>>(0))
            .collect::<Result<Vec<_>, _>>()?;
        let capped_sessions = client
            .query(
                &cap_sessions,
                &[&token_makers, &session_makers, &session_bound],
            )
            .await?
            .iter()
            .map(|row| row.try_get::<_, uuid::Uuid>(0))
            .collect::<Result<Vec<_>, _>>()?;
        token_makers = capped_tokens;
        session_makers = capped_sessions;
    }
    Ok(())
}

/// The last second a token credential works: an API token's `expires_at`, a session's
/// `expire - 1` (a session works while `expire > now`, a token while `expires_at >= now`);
/// `Some(None)` for a token that never expires, `None` when it is gone.
pub(super) async fn token_maker_last_second(
    client: &impl GenericClient,
    maker: TokenMaker,
) -> Result<Option<Option<UnixSeconds>>, StoreError> {
    Ok(match maker {
        TokenMaker::ApiToken(hash) => {
            let statement = client
                .prepare_cached("SELECT expires_at FROM api_tokens WHERE hash = $1")
                .await?;
            client
                .query_opt(&statement, &[&hash.as_slice()])
                .await?
                .map(|row| row.try_get::<_, Option<UnixSeconds>>(0))
                .transpose()?
        }
        TokenMaker::MintedSession(id) => {
            let statement = client
                .prepare_cached("SELECT expire FROM sessions WHERE id = $1")
                .await?;
            client
                .query_opt(&statement, &[&session_id_to_sql(id)])
                .await?
                .map(|row| row.try_get::<_, UnixSeconds>(0))
                .transpose()?
                .map(|expire| Some(expire - 1))
        }
    })
}

/// Keeps a new token or minted session within its maker's lifetime as it stands inside this
/// transaction (a concurrent PUT may have shortened it since the request read it): the
/// maker's last second, if it has one. A maker that is gone makes nothing
/// (`CredentialsChanged`).
pub(super) async fn fit_within_maker(
    client: &impl GenericClient,
    made_by: Option<TokenMaker>,
) -> Result<Option<UnixSeconds>, StoreError> {
    match made_by {
        None => Ok(None),
        Some(maker) => match token_maker_last_second(client, maker).await? {
            None => Err(StoreError::CredentialsChanged),
            Some(last_second) => Ok(last_second),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{ApiToken, Session, SessionId, SessionKind, TokenMaker};
    use crate::store::postgres_backend::test_support::{
        NOW, add_user, fresh_store, live_session, standalone_token,
    };
    use crate::store::{NewSignIn, Requester, RequesterCredential};

    /// A token or minted session made by a token whose life was shortened after the request
    /// read it still ends within the maker's life as it stands at the write, and a token made
    /// by a minted session stops working no later than that session (API.md 15.3).
    #[tokio::test]
    async fn what_a_token_makes_fits_its_makers_life_as_it_stands_at_the_write() {
        let store = fresh_store().await;
        let user = add_user(&store, "shortened@example.com").await;
        let now = NOW;
        let maker = standalone_token(user.id, 1, None);
        store.insert_api_token(&maker).await.unwrap();
        let requester = Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: Some(RequesterCredential::ApiToken(maker.hash)),
            now,
        };
        // The owner shortens the maker to 60 s while the maker's requests are on their way.
        let shortened = ApiToken {
            expires_at: Some(now + 60),
            ..maker.clone()
        };
        let owner = Requester {
            credential: None,
            ..requester
        };
        store
            .replace_api_token(&shortened, &owner)
            .await
            .unwrap()
            .unwrap();
        let made = standalone_token(user.id, 2, Some(TokenMaker::ApiToken(maker.hash)));
        store
            .insert_api_token_within_limit(&made, 100, &requester)
            .await
            .unwrap();
        let stored = store.standalone_api_tokens_of_user(user.id).await.unwrap();
        let made = stored.iter().find(|token| token.hash[0] == 2).unwrap();
        assert_eq!(made.expires_at, Some(now + 60));
        let minted = NewSignIn {
            refuse_if_second_factor_held: false,
            session: Session {
                kind: SessionKind::Minted,
                expire: now + 14 * 24 * 3600,
                made_by: Some(TokenMaker::ApiToken(maker.hash)),
                ..live_session(SessionId::new_for_user(user.id), user.id)
            },
            requester,
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        };
        store.record_sign_in(&minted).await.unwrap();
        let minted_session = store.session(minted.session.id).await.unwrap().unwrap();
        // A session works while expire > now: its last second is the maker's.
        assert_eq!(minted_session.expire, now + 61);

        // A token made by that minted session stops with it: its last second is one before.
        let by_minted = Requester {
            credential: Some(RequesterCredential::Session(minted_session.id)),
            ..requester
        };
        let grandchild = standalone_token(
            user.id,
            3,
            Some(TokenMaker::MintedSession(minted_session.id)),
        );
        store
            .insert_api_token_within_limit(&grandchild, 100, &by_minted)
            .await
            .unwrap();
        let stored = store.standalone_api_tokens_of_user(user.id).await.unwrap();
        let grandchild = stored.iter().find(|token| token.hash[0] == 3).unwrap();
        assert_eq!(grandchild.expires_at, Some(now + 60));
    }

    /// A maker's shortened life caps what it made, and what that made, to the same last
    /// second; what already ends earlier, and what it made, is left alone.
    #[tokio::test]
    async fn shortening_a_maker_caps_its_whole_tree_but_not_what_ends_sooner() {
        let store = fresh_store().await;
        let user = add_user(&store, "tree@example.com").await;
        let owner = Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now: NOW,
        };
        let root = standalone_token(user.id, 1, None);
        let child = standalone_token(user.id, 2, Some(TokenMaker::ApiToken(root.hash)));
        let minted = Session {
            kind: SessionKind::Minted,
            made_by: Some(TokenMaker::ApiToken(child.hash)),
            expire: NOW + 10_000,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let grandchild = standalone_token(user.id, 3, Some(TokenMaker::MintedSession(minted.id)));
        // Ends before the cap: it and what it made stay as they are.
        let early = ApiToken {
            expires_at: Some(NOW + 10),
            ..standalone_token(user.id, 4, Some(TokenMaker::ApiToken(root.hash)))
        };
        let under_early = standalone_token(user.id, 5, Some(TokenMaker::ApiToken(early.hash)));
        store
            .insert_api_tokens(&[
                root.clone(),
                child.clone(),
                grandchild.clone(),
                early.clone(),
                under_early.clone(),
            ])
            .await
            .unwrap();
        store
            .insert_sessions(std::slice::from_ref(&minted))
            .await
            .unwrap();

        let shortened = ApiToken {
            expires_at: Some(NOW + 100),
            ..root.clone()
        };
        let stored = store
            .replace_api_token(&shortened, &owner)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.expires_at, Some(NOW + 100));
        let expiry_of = |tokens: &[ApiToken], byte: u8| {
            tokens
                .iter()
                .find(|token| token.hash[0] == byte)
                .unwrap()
                .expires_at
        };
        let tokens = store.standalone_api_tokens_of_user(user.id).await.unwrap();
        assert_eq!(expiry_of(&tokens, 2), Some(NOW + 100));
        assert_eq!(expiry_of(&tokens, 3), Some(NOW + 100));
        assert_eq!(expiry_of(&tokens, 4), Some(NOW + 10));
        assert_eq!(expiry_of(&tokens, 5), None);
        let minted_after = store.session(minted.id).await.unwrap().unwrap();
        assert_eq!(minted_after.expire, NOW + 101);

        // A longer life caps nothing again; a made token's life stays within its maker's.
        let lengthened_child = ApiToken {
            expires_at: None,
            ..child.clone()
        };
        let stored = store
            .replace_api_token(&lengthened_child, &owner)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.expires_at, Some(NOW + 100));
        assert!(matches!(stored.made_by, Some(TokenMaker::ApiToken(hash)) if hash == root.hash));
    }

    /// Deleting a maker deletes what it made, however deep, across tokens and minted
    /// sessions; other tokens stay.
    #[tokio::test]
    async fn deleting_a_maker_deletes_its_whole_tree_and_nothing_else() {
        let store = fresh_store().await;
        let user = add_user(&store, "chain@example.com").await;
        let root = standalone_token(user.id, 1, None);
        let minted = Session {
            kind: SessionKind::Minted,
            made_by: Some(TokenMaker::ApiToken(root.hash)),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let by_minted = standalone_token(user.id, 2, Some(TokenMaker::MintedSession(minted.id)));
        let deeper = Session {
            kind: SessionKind::Minted,
            made_by: Some(TokenMaker::ApiToken(by_minted.hash)),
            ..live_session(SessionId::new_for_user(user.id), user.id)
        };
        let unrelated = standalone_token(user.id, 3, None);
        store
            .insert_api_tokens(&[root.clone(), by_minted.clone(), unrelated.clone()])
            .await
            .unwrap();
        store
            .insert_sessions(&[minted.clone(), deeper.clone()])
            .await
            .unwrap();

        assert!(
            store
                .delete_api_token_of_user(user.id, &root.hash)
                .await
                .unwrap()
        );
        assert!(store.session(minted.id).await.unwrap().is_none());
        assert!(store.session(deeper.id).await.unwrap().is_none());
        let left: Vec<u8> = store
            .standalone_api_tokens_of_user(user.id)
            .await
            .unwrap()
            .iter()
            .map(|token| token.hash[0])
            .collect();
        assert_eq!(left, vec![3]);
        assert!(
            !store
                .delete_api_token_of_user(user.id, &root.hash)
                .await
                .unwrap()
        );
    }
}
