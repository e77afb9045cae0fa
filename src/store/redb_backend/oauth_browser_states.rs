//! Started browser OAuth sign-ins (API.md section 11): kept by the SHA-256 of their `state`
//! from the redirect to the provider until the callback takes them, each taken (removed)
//! in one transaction, so that a state finishes one sign-in at most however many requests
//! race for it; capped, and purged once expired.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::model::UnixSeconds;
use crate::model::oauth_browser::{OAuthBrowserState, OAuthStateHash};
use crate::store::StoreError;
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::record::{OAuthBrowserStateRecord, decode, encode};
use crate::store::redb_backend::tables::{EXPIRE_OAUTHSTATEHASH, STATEHASH_OAUTHBROWSERSTATE};

/// Expired states a full table purges, at most, before it takes a new one.
const PURGE_WHEN_FULL_ROWS: usize = 1_000;

impl RedbStore {
    /// Keeps a started sign-in. When `max_open` are kept already, expired ones are purged
    /// first in the same transaction; if that frees no room, `TooManyOAuthBrowserStates`,
    /// and nothing is written.
    pub fn insert_oauth_browser_state(
        &self,
        state_hash: OAuthStateHash,
        state: &OAuthBrowserState,
        max_open: u64,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        let open = transaction.open_table(STATEHASH_OAUTHBROWSERSTATE)?.len()?;
        if open >= max_open {
            purge_expired_states(&transaction, now, PURGE_WHEN_FULL_ROWS)?;
            if transaction.open_table(STATEHASH_OAUTHBROWSERSTATE)?.len()? >= max_open {
                return Err(StoreError::TooManyOAuthBrowserStates);
            }
        }
        let record = OAuthBrowserStateRecord::from_state(state);
        transaction
            .open_table(STATEHASH_OAUTHBROWSERSTATE)?
            .insert(state_hash.0.as_slice(), encode(&record).as_slice())?;
        transaction
            .open_table(EXPIRE_OAUTHSTATEHASH)?
            .insert((state.expires_at, state_hash.0.as_slice()), ())?;
        transaction.commit()?;
        Ok(())
    }

    /// Takes a started sign-in out of the store, expired or not: `None` when it was never
    /// made, or was taken or purged already. Whatever the caller then finds wrong with it,
    /// it is used up.
    pub fn take_oauth_browser_state(
        &self,
        state_hash: OAuthStateHash,
    ) -> Result<Option<OAuthBrowserState>, StoreError> {
        let transaction = self.begin_write()?;
        let removed = transaction
            .open_table(STATEHASH_OAUTHBROWSERSTATE)?
            .remove(state_hash.0.as_slice())?
            .map(|bytes| decode::<OAuthBrowserStateRecord>(bytes.value(), "oauth browser state"))
            .transpose()?;
        let Some(record) = removed else {
            return Ok(None);
        };
        let state = record.into_state()?;
        transaction
            .open_table(EXPIRE_OAUTHSTATEHASH)?
            .remove((state.expires_at, state_hash.0.as_slice()))?;
        transaction.commit()?;
        Ok(Some(state))
    }

    /// Deletes up to `limit` started sign-ins that expired by `now`; returns how many.
    pub fn purge_expired_oauth_browser_states(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let purged = purge_expired_states(&transaction, now, limit)?;
        transaction.commit()?;
        Ok(purged)
    }
}

fn purge_expired_states(
    transaction: &WriteTransaction,
    now: UnixSeconds,
    limit: usize,
) -> Result<usize, StoreError> {
    let mut by_expiry = transaction.open_table(EXPIRE_OAUTHSTATEHASH)?;
    let mut expired: Vec<(i64, Vec<u8>)> = Vec::new();
    for entry in by_expiry.range((i64::MIN, [].as_slice())..=(now, [0xff_u8; 33].as_slice()))? {
        let (key, _) = entry?;
        let (expires_at, hash) = key.value();
        expired.push((expires_at, hash.to_vec()));
        if expired.len() >= limit {
            break;
        }
    }
    let mut states = transaction.open_table(STATEHASH_OAUTHBROWSERSTATE)?;
    for (expires_at, hash) in &expired {
        by_expiry.remove((*expires_at, hash.as_slice()))?;
        states.remove(hash.as_slice())?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;
    use crate::store::redb_backend::test_support::{NOW, open_store};

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

    #[test]
    fn a_state_is_taken_once() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let hash = OAuthStateHash([1; 32]);
        store
            .insert_oauth_browser_state(hash, &started("idp", NOW + 600), 10, NOW)
            .unwrap();
        let taken = store.take_oauth_browser_state(hash).unwrap().unwrap();
        assert_eq!(taken.provider, "idp");
        assert_eq!(taken.browser_binding_hash, [7; 32]);
        assert_eq!(taken.pkce_verifier.expose_secret(), "verifier");
        assert_eq!(taken.return_url.as_deref(), Some("/account"));
        assert!(store.take_oauth_browser_state(hash).unwrap().is_none());
    }

    #[test]
    fn a_full_table_purges_the_expired_then_refuses() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        store
            .insert_oauth_browser_state(OAuthStateHash([1; 32]), &started("a", NOW), 2, NOW)
            .unwrap();
        store
            .insert_oauth_browser_state(OAuthStateHash([2; 32]), &started("b", NOW + 600), 2, NOW)
            .unwrap();
        // The first expired at NOW: purged to make room.
        store
            .insert_oauth_browser_state(OAuthStateHash([3; 32]), &started("c", NOW + 600), 2, NOW)
            .unwrap();
        assert!(
            store
                .take_oauth_browser_state(OAuthStateHash([1; 32]))
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            store.insert_oauth_browser_state(
                OAuthStateHash([4; 32]),
                &started("d", NOW + 600),
                2,
                NOW
            ),
            Err(StoreError::TooManyOAuthBrowserStates)
        ));
        assert_eq!(
            store
                .purge_expired_oauth_browser_states(NOW + 600, 100)
                .unwrap(),
            2
        );
        assert!(
            store
                .take_oauth_browser_state(OAuthStateHash([2; 32]))
                .unwrap()
                .is_none()
        );
    }
}
