//! Store functions for signing keys on PostgreSQL, as `redb_backend/signing_keys.rs`: the
//! changes read the whole key table (a handful of rows) inside one write transaction, apply
//! `signing_key_rules`, and write back only the rows that changed.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::model::{Secret, SigningKeyStatus, UnixSeconds};
use crate::store::postgres_backend::rows::name_from_sql;
use crate::store::postgres_backend::{PostgresStore, begin_write};
use crate::store::signing_key_rules::{new_key, promote_due, publish_next, revoke};
use crate::store::stored_name::StoredName;
use crate::store::{KeyRevocation, PendingNextKey, StoreError, StoredSigningKey};

/// The key table's columns in the order `signing_key_from_row` reads them, in the order the
/// redb backend iterates its table (the key ids' bytes), which breaks ties in the rules below.
const SELECT_SIGNING_KEYS: &str = "SELECT key_id, secret_key, status, created, retired_at, \
     activates_at FROM signing_keys ORDER BY key_id COLLATE \"C\"";

pub(super) fn signing_key_from_row(row: &Row) -> Result<StoredSigningKey, StoreError> {
    Ok(StoredSigningKey {
        key_id: row.try_get(0)?,
        secret_key_bytes: Secret::new(row.try_get(1)?),
        status: name_from_sql::<SigningKeyStatus>(row.try_get(2)?, "signing key")?,
        created: row.try_get(3)?,
        retired_at: row.try_get(4)?,
        activates_at: row.try_get(5)?,
    })
}

async fn read_signing_keys(
    client: &impl GenericClient,
) -> Result<Vec<StoredSigningKey>, StoreError> {
    let statement = client.prepare_cached(SELECT_SIGNING_KEYS).await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(signing_key_from_row)
        .collect()
}

/// Writes `key` whole: inserted, or every column replaced when its id exists.
async fn write_signing_key(
    client: &impl GenericClient,
    key: &StoredSigningKey,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO signing_keys (key_id, secret_key, status, created, retired_at, \
             activates_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (key_id) DO UPDATE SET secret_key = $2, status = $3, created = $4, \
             retired_at = $5, activates_at = $6",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &key.key_id,
                &key.secret_key_bytes.expose_secret().as_slice(),
                &key.status.stored_name(),
                &key.created,
                &key.retired_at,
                &key.activates_at,
            ],
        )
        .await?;
    Ok(())
}

/// Whether two versions of a key's row are the same (its bytes never change in place).
fn same_row(left: &StoredSigningKey, right: &StoredSigningKey) -> bool {
    left.key_id == right.key_id
        && left.secret_key_bytes.expose_secret() == right.secret_key_bytes.expose_secret()
        && left.status == right.status
        && left.created == right.created
        && left.retired_at == right.retired_at
        && left.activates_at == right.activates_at
}

impl PostgresStore {
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let client = self.connection().await?;
        read_signing_keys(&client).await
    }

    /// Stores a new active key and retires every other active key, in one transaction.
    pub async fn insert_active_signing_key(
        &self,
        key: &StoredSigningKey,
    ) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let retire = transaction
            .prepare_cached(
                "UPDATE signing_keys SET status = 'retired', retired_at = $1 \
                 WHERE status = 'active'",
            )
            .await?;
        transaction.execute(&retire, &[&key.created]).await?;
        write_signing_key(&transaction, &new_key(key, SigningKeyStatus::Active, None)).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Removes a signing key (one that can no longer have live tokens).
    pub async fn delete_signing_key(&self, key_id: &str) -> Result<(), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached("DELETE FROM signing_keys WHERE key_id = $1")
            .await?;
        transaction.execute(&statement, &[&key_id]).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Publishes `key` as `next`, to sign from `activates_at`, unless a `next` key is already
    /// waiting: then nothing is added and that key is returned. Due keys are promoted first.
    pub async fn insert_next_signing_key(
        &self,
        key: &StoredSigningKey,
        activates_at: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Option<PendingNextKey>, StoreError> {
        self.change_signing_keys(|keys| publish_next(keys, key, activates_at, now))
            .await
    }

    pub async fn promote_due_signing_keys(&self, now: UnixSeconds) -> Result<bool, StoreError> {
        self.change_signing_keys(|keys| promote_due(keys, now))
            .await
    }

    pub async fn revoke_signing_key(
        &self,
        key_id: &str,
        replacement: &StoredSigningKey,
        now: UnixSeconds,
    ) -> Result<Option<KeyRevocation>, StoreError> {
        self.change_signing_keys(|keys| revoke(keys, key_id, replacement, now))
            .await
    }

    /// Reads every key, lets `change` edit the list, and writes back the rows that changed,
    /// in one write transaction; when none did, nothing is committed (maintenance calls this
    /// every purge interval).
    async fn change_signing_keys<T>(
        &self,
        change: impl FnOnce(&mut Vec<StoredSigningKey>) -> T,
    ) -> Result<T, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let before = read_signing_keys(&transaction).await?;
        let mut keys = before.clone();
        let outcome = change(&mut keys);
        let mut changed = false;
        let removed: Vec<&str> = before
            .iter()
            .filter(|old| !keys.iter().any(|key| key.key_id == old.key_id))
            .map(|old| old.key_id.as_str())
            .collect();
        if !removed.is_empty() {
            let statement = transaction
                .prepare_cached("DELETE FROM signing_keys WHERE key_id = ANY($1)")
                .await?;
            transaction.execute(&statement, &[&removed]).await?;
            changed = true;
        }
        for key in &keys {
            if !before.iter().any(|old| same_row(old, key)) {
                write_signing_key(&transaction, key).await?;
                changed = true;
            }
        }
        if changed {
            transaction.commit().await?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::test_support::{fresh_store, test_signing_key};

    async fn statuses(store: &PostgresStore) -> Vec<(String, SigningKeyStatus)> {
        let mut keys: Vec<_> = store
            .signing_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|key| (key.key_id, key.status))
            .collect();
        keys.sort_by(|left, right| left.0.cmp(&right.0));
        keys
    }

    async fn status_of(store: &PostgresStore, key_id: &str) -> Option<SigningKeyStatus> {
        statuses(store)
            .await
            .into_iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, status)| status)
    }

    #[tokio::test]
    async fn key_bytes_and_fields_read_back_as_written() {
        let store = fresh_store().await;
        let mut key = test_signing_key(1_000);
        key.secret_key_bytes = Secret::new(vec![0x00, 0xff, 0x7f]);
        store.insert_active_signing_key(&key).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_id, key.key_id);
        assert_eq!(
            keys[0].secret_key_bytes.expose_secret(),
            &[0x00, 0xff, 0x7f]
        );
        assert_eq!(keys[0].status, SigningKeyStatus::Active);
        assert_eq!(keys[0].created, 1_000);
        assert_eq!((keys[0].retired_at, keys[0].activates_at), (None, None));
    }

    #[tokio::test]
    async fn a_new_active_key_retires_the_active_one_and_a_key_can_be_deleted() {
        let store = fresh_store().await;
        let first = test_signing_key(1_000);
        store.insert_active_signing_key(&first).await.unwrap();
        let second = test_signing_key(2_000);
        store.insert_active_signing_key(&second).await.unwrap();
        let retired = store
            .signing_keys()
            .await
            .unwrap()
            .into_iter()
            .find(|key| key.key_id == first.key_id)
            .unwrap();
        assert_eq!(retired.status, SigningKeyStatus::Retired);
        assert_eq!(retired.retired_at, Some(2_000));
        assert_eq!(
            status_of(&store, &second.key_id).await,
            Some(SigningKeyStatus::Active)
        );
        store.delete_signing_key(&first.key_id).await.unwrap();
        store.delete_signing_key("k4.pid.unknown").await.unwrap();
        assert_eq!(
            statuses(&store).await,
            vec![(second.key_id.clone(), SigningKeyStatus::Active)]
        );
    }

    #[tokio::test]
    async fn a_next_key_waits_its_turn_then_replaces_the_active_one() {
        let store = fresh_store().await;
        let first = test_signing_key(1_000);
        store.insert_active_signing_key(&first).await.unwrap();
        let next = test_signing_key(1_010);
        assert_eq!(
            store
                .insert_next_signing_key(&next, 1_100, 1_010)
                .await
                .unwrap(),
            None
        );
        // One waiting key at a time.
        let another = test_signing_key(1_020);
        assert_eq!(
            store
                .insert_next_signing_key(&another, 1_200, 1_020)
                .await
                .unwrap(),
            Some(PendingNextKey {
                key_id: next.key_id.clone(),
                activates_at: 1_100
            })
        );
        assert!(!store.promote_due_signing_keys(1_099).await.unwrap());
        assert_eq!(
            status_of(&store, &first.key_id).await,
            Some(SigningKeyStatus::Active)
        );
        assert_eq!(
            status_of(&store, &next.key_id).await,
            Some(SigningKeyStatus::Next)
        );
        assert!(store.promote_due_signing_keys(1_100).await.unwrap());
        assert!(!store.promote_due_signing_keys(1_100).await.unwrap());
        let keys = store.signing_keys().await.unwrap();
        let promoted = keys.iter().find(|key| key.key_id == next.key_id).unwrap();
        assert_eq!(promoted.status, SigningKeyStatus::Active);
        assert_eq!(promoted.activates_at, Some(1_100));
        let retired = keys.iter().find(|key| key.key_id == first.key_id).unwrap();
        assert_eq!(retired.status, SigningKeyStatus::Retired);
        assert_eq!(retired.retired_at, Some(1_100));
        assert_eq!(status_of(&store, &another.key_id).await, None);
    }

    #[tokio::test]
    async fn a_due_next_key_is_promoted_before_another_is_published() {
        let store = fresh_store().await;
        let first = test_signing_key(1_000);
        store.insert_active_signing_key(&first).await.unwrap();
        let next = test_signing_key(1_010);
        store
            .insert_next_signing_key(&next, 1_100, 1_010)
            .await
            .unwrap();
        // Past the first next key's time: it signs, and the new one may wait.
        let later = test_signing_key(1_150);
        assert_eq!(
            store
                .insert_next_signing_key(&later, 1_300, 1_150)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            statuses(&store).await,
            vec![
                (first.key_id.clone(), SigningKeyStatus::Retired),
                (next.key_id.clone(), SigningKeyStatus::Active),
                (later.key_id.clone(), SigningKeyStatus::Next),
            ]
        );
    }

    #[tokio::test]
    async fn revoking_the_signing_key_leaves_another_that_signs() {
        let store = fresh_store().await;
        let first = test_signing_key(1_000);
        store.insert_active_signing_key(&first).await.unwrap();
        let replacement = test_signing_key(1_050);
        assert_eq!(
            store
                .revoke_signing_key("k4.pid.unknown", &replacement, 1_050)
                .await
                .unwrap(),
            None
        );
        // The only key: the replacement signs at once.
        assert_eq!(
            store
                .revoke_signing_key(&first.key_id, &replacement, 1_050)
                .await
                .unwrap(),
            Some(KeyRevocation {
                new_active_key_id: Some(replacement.key_id.clone())
            })
        );
        assert_eq!(
            statuses(&store).await,
            vec![(replacement.key_id.clone(), SigningKeyStatus::Active)]
        );
        // With a key waiting as next: it signs from now on, and no key is made.
        let next = test_signing_key(1_060);
        store
            .insert_next_signing_key(&next, 5_000, 1_060)
            .await
            .unwrap();
        let unused = test_signing_key(1_070);
        let revocation = store
            .revoke_signing_key(&replacement.key_id, &unused, 1_070)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revocation.new_active_key_id, Some(next.key_id.clone()));
        assert_eq!(
            statuses(&store).await,
            vec![(next.key_id.clone(), SigningKeyStatus::Active)]
        );
        let promoted = store.signing_keys().await.unwrap().remove(0);
        assert_eq!(promoted.activates_at, Some(1_070));
        // A retired key just goes.
        let newer = test_signing_key(1_080);
        store.insert_active_signing_key(&newer).await.unwrap();
        let revocation = store
            .revoke_signing_key(&next.key_id, &unused, 1_090)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revocation.new_active_key_id, None);
        assert_eq!(
            statuses(&store).await,
            vec![(newer.key_id.clone(), SigningKeyStatus::Active)]
        );
    }
}
