//! Store functions for started browser OAuth sign-ins on PostgreSQL, as
//! `redb_backend/oauth_browser_states.rs`: kept by the SHA-256 of their `state` until the
//! callback takes (deletes) one in one transaction, so that a state finishes one sign-in at
//! most however many requests race for it; capped, and purged once expired.

use deadpool_postgres::GenericClient;

use crate::model::oauth_browser::{OAuthBrowserState, OAuthStateHash};
use crate::model::{Secret, UnixSeconds};
use crate::store::StoreError;
use crate::store::postgres_backend::rows::hash_from_sql;
use crate::store::postgres_backend::{PostgresStore, begin_write};

/// Expired states a full table purges, at most, before it takes a new one.
const PURGE_WHEN_FULL_ROWS: i64 = 1_000;

impl PostgresStore {
    /// Keeps a started sign-in. When `max_open` are kept already, expired ones are purged
    /// first in the same transaction; if that frees no room, `TooManyOAuthBrowserStates`,
    /// and nothing is written.
    pub async fn insert_oauth_browser_state(
        &self,
        state_hash: OAuthStateHash,
        state: &OAuthBrowserState,
        max_open: u64,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        if count_open_states(&transaction).await? >= max_open {
            purge_expired_states(&transaction, now, PURGE_WHEN_FULL_ROWS).await?;
            if count_open_states(&transaction).await? >= max_open {
                return Err(StoreError::TooManyOAuthBrowserStates);
            }
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO oauth_browser_states (state_hash, provider, browser_binding_hash, \
                 nonce, pkce_verifier, return_url, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (state_hash) DO UPDATE SET provider = $2, \
                 browser_binding_hash = $3, nonce = $4, pkce_verifier = $5, return_url = $6, \
                 expires_at = $7",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &state_hash.0.as_slice(),
                    &state.provider,
                    &state.browser_binding_hash.as_slice(),
                    state.nonce.expose_secret(),
                    state.pkce_verifier.expose_secret(),
                    &state.return_url,
                    &state.expires_at,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Takes a started sign-in out of the store, expired or not: `None` when it was never
    /// made, or was taken or purged already. Whatever the caller then finds wrong with it,
    /// it is used up.
    pub async fn take_oauth_browser_state(
        &self,
        state_hash: OAuthStateHash,
    ) -> Result<Option<OAuthBrowserState>, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "DELETE FROM oauth_browser_states WHERE state_hash = $1 \
                 RETURNING provider, browser_binding_hash, nonce, pkce_verifier, return_url, \
                 expires_at",
            )
            .await?;
        let Some(row) = transaction
            .query_opt(&statement, &[&state_hash.0.as_slice()])
            .await?
        else {
            return Ok(None);
        };
        let state = OAuthBrowserState {
            provider: row.try_get(0)?,
            browser_binding_hash: hash_from_sql(row.try_get(1)?, "oauth browser state")?,
            nonce: Secret::new(row.try_get(2)?),
            pkce_verifier: Secret::new(row.try_get(3)?),
            return_url: row.try_get(4)?,
            expires_at: row.try_get(5)?,
        };
        transaction.commit().await?;
        Ok(Some(state))
    }

    /// Deletes up to `limit` started sign-ins that expired by `now`; returns how many.
    pub async fn purge_expired_oauth_browser_states(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let purged =
            purge_expired_states(&transaction, now, i64::try_from(limit).unwrap_or(i64::MAX))
                .await?;
        transaction.commit().await?;
        Ok(purged)
    }
}

async fn count_open_states(client: &impl GenericClient) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached("SELECT count(*) FROM oauth_browser_states")
        .await?;
    let count: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Deletes up to `limit` states that expired by `now`, earliest expiry first.
async fn purge_expired_states(
    client: &impl GenericClient,
    now: UnixSeconds,
    limit: i64,
) -> Result<usize, StoreError> {
    let statement = client
        .prepare_cached(
            "DELETE FROM oauth_browser_states WHERE state_hash IN \
             (SELECT state_hash FROM oauth_browser_states WHERE expires_at <= $1 \
              ORDER BY expires_at, state_hash LIMIT $2)",
        )
        .await?;
    let purged = client.execute(&statement, &[&now, &limit]).await?;
    Ok(usize::try_from(purged).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::test_support::{NOW, fresh_store};

    fn started(provider: &str, expires_at: UnixSeconds) -> OAuthBrowserState {
        OAuthBrowserState {
            provider: provider.to_owned(),
            browser_binding_hash: [7; 32],
            nonce: Secret::new("nonce".to_owned()),
            pkce_verifier: Secret::new("verifier".to_owned()),
            return_url: Some("/account".to_owned()),
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_state_is_taken_once() {
        let store = fresh_store().await;
        let hash = OAuthStateHash([1; 32]);
        store
            .insert_oauth_browser_state(hash, &started("idp", NOW + 600), 10, NOW)
            .await
            .unwrap();
        let taken = store.take_oauth_browser_state(hash).await.unwrap().unwrap();
        assert_eq!(taken.provider, "idp");
        assert_eq!(taken.browser_binding_hash, [7; 32]);
        assert_eq!(taken.nonce.expose_secret(), "nonce");
        assert_eq!(taken.pkce_verifier.expose_secret(), "verifier");
        assert_eq!(taken.return_url.as_deref(), Some("/account"));
        assert_eq!(taken.expires_at, NOW + 600);
        assert!(
            store
                .take_oauth_browser_state(hash)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_state_without_a_return_url_comes_back_without_one() {
        let store = fresh_store().await;
        let hash = OAuthStateHash([9; 32]);
        let state = OAuthBrowserState {
            return_url: None,
            ..started("idp", NOW + 600)
        };
        store
            .insert_oauth_browser_state(hash, &state, 10, NOW)
            .await
            .unwrap();
        let taken = store.take_oauth_browser_state(hash).await.unwrap().unwrap();
        assert_eq!(taken.return_url, None);
    }

    #[tokio::test]
    async fn a_full_table_purges_the_expired_then_refuses() {
        let store = fresh_store().await;
        store
            .insert_oauth_browser_state(OAuthStateHash([1; 32]), &started("a", NOW), 2, NOW)
            .await
            .unwrap();
        store
            .insert_oauth_browser_state(OAuthStateHash([2; 32]), &started("b", NOW + 600), 2, NOW)
            .await
            .unwrap();
        // The first expired at NOW: purged to make room.
        store
            .insert_oauth_browser_state(OAuthStateHash([3; 32]), &started("c", NOW + 600), 2, NOW)
            .await
            .unwrap();
        assert!(
            store
                .take_oauth_browser_state(OAuthStateHash([1; 32]))
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            store
                .insert_oauth_browser_state(
                    OAuthStateHash([4; 32]),
                    &started("d", NOW + 600),
                    2,
                    NOW
                )
                .await,
            Err(StoreError::TooManyOAuthBrowserStates)
        ));
        // The refused one wrote nothing.
        assert!(
            store
                .take_oauth_browser_state(OAuthStateHash([4; 32]))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store
                .purge_expired_oauth_browser_states(NOW + 600, 100)
                .await
                .unwrap(),
            2
        );
        assert!(
            store
                .take_oauth_browser_state(OAuthStateHash([2; 32]))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_purge_takes_at_most_its_limit_earliest_first() {
        let store = fresh_store().await;
        for (byte, expires_at) in [(1u8, NOW + 3), (2, NOW + 1), (3, NOW + 2), (4, NOW + 900)] {
            store
                .insert_oauth_browser_state(
                    OAuthStateHash([byte; 32]),
                    &started("idp", expires_at),
                    10,
                    NOW,
                )
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .purge_expired_oauth_browser_states(NOW + 10, 2)
                .await
                .unwrap(),
            2
        );
        // The two that expired first went; the third expired one waits for the next purge.
        for byte in [2u8, 3] {
            assert!(
                store
                    .take_oauth_browser_state(OAuthStateHash([byte; 32]))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        assert!(
            store
                .take_oauth_browser_state(OAuthStateHash([1; 32]))
                .await
                .unwrap()
                .is_some()
        );
    }
}
