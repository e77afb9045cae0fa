//! Signing keys: reading them, and the changes that read and rewrite the whole key table (a
//! handful of rows) in one transaction: storing a new active key, publishing a key ahead as
//! `next`, promoting the `next` keys that are due, revoking and dropping a key, by
//! `signing_key_rules`.

use redb::ReadableTable;

use crate::model::{Secret, SigningKeyStatus, UnixSeconds};
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::record::{RECORD_VERSION, SigningKeyRecord, decode, encode};
use crate::store::redb_backend::tables::KEYID_SIGNINGKEY;
use crate::store::signing_key_rules::{new_key, promote_due, publish_next, revoke};
use crate::store::{KeyRevocation, PendingNextKey, StoreError, StoredSigningKey};

pub(super) fn stored_key(
    key_id: &str,
    record: &SigningKeyRecord,
) -> Result<StoredSigningKey, StoreError> {
    Ok(StoredSigningKey {
        key_id: key_id.to_owned(),
        secret_key_bytes: Secret::new(
            base16ct::lower::decode_vec(&record.secret_key_hex)
                .map_err(|_| StoreError::CorruptRecord("signing key"))?,
        ),
        status: record.status,
        created: record.created,
        retired_at: record.retired_at,
        activates_at: record.activates_at,
    })
}

/// `key` as the record that stores it.
fn record_of(key: &StoredSigningKey) -> SigningKeyRecord {
    SigningKeyRecord {
        v: RECORD_VERSION,
        secret_key_hex: base16ct::lower::encode_string(key.secret_key_bytes.expose_secret()),
        status: key.status,
        created: key.created,
        retired_at: key.retired_at,
        activates_at: key.activates_at,
    }
}

impl RedbStore {
    pub fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(KEYID_SIGNINGKEY)?;
        let mut keys = Vec::new();
        for entry in table.iter()? {
            let (key_id, bytes) = entry?;
            let record: SigningKeyRecord = decode(bytes.value(), "signing key")?;
            keys.push(stored_key(key_id.value(), &record)?);
        }
        Ok(keys)
    }

    /// Stores a new active key and retires every other active key, in one transaction.
    pub fn insert_active_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let mut table = transaction.open_table(KEYID_SIGNINGKEY)?;
            let mut retired = Vec::new();
            for entry in table.iter()? {
                let (key_id, bytes) = entry?;
                let mut record: SigningKeyRecord = decode(bytes.value(), "signing key")?;
                if record.status == SigningKeyStatus::Active {
                    record.status = SigningKeyStatus::Retired;
                    record.retired_at = Some(key.created);
                    retired.push((key_id.value().to_owned(), record));
                }
            }
            for (key_id, record) in retired {
                table.insert(key_id.as_str(), encode(&record).as_slice())?;
            }
            let record = record_of(&new_key(key, SigningKeyStatus::Active, None));
            table.insert(key.key_id.as_str(), encode(&record).as_slice())?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Removes a signing key (one that can no longer have live tokens).
    pub fn delete_signing_key(&self, key_id: &str) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        transaction.open_table(KEYID_SIGNINGKEY)?.remove(key_id)?;
        transaction.commit()?;
        Ok(())
    }

    /// Publishes `key` as `next`, to sign from `activates_at`, unless a `next` key is already
    /// waiting: then nothing is added and that key is returned. Due keys are promoted first.
    pub fn insert_next_signing_key(
        &self,
        key: &StoredSigningKey,
        activates_at: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Option<PendingNextKey>, StoreError> {
        self.change_signing_keys(|keys| publish_next(keys, key, activates_at, now))
    }

    /// Makes the `next` keys whose time has come active (the one that activated last signs)
    /// and retires the keys they replace. Returns whether anything changed.
    pub fn promote_due_signing_keys(&self, now: UnixSeconds) -> Result<bool, StoreError> {
        self.change_signing_keys(|keys| promote_due(keys, now))
    }

    /// Removes a key at once. When it is the key that signs, a waiting `next` key signs from
    /// now on, else `replacement` (fresh key material) does: there is always a key that
    /// signs. `None` when there is no such key.
    pub fn revoke_signing_key(
        &self,
        key_id: &str,
        replacement: &StoredSigningKey,
        now: UnixSeconds,
    ) -> Result<Option<KeyRevocation>, StoreError> {
        self.change_signing_keys(|keys| revoke(keys, key_id, replacement, now))
    }

    /// Reads every key record, lets `change` edit the list, and writes back the rows that
    /// changed, in one transaction; when none did, nothing is committed (maintenance calls
    /// this every purge interval).
    fn change_signing_keys<T>(
        &self,
        change: impl FnOnce(&mut Vec<StoredSigningKey>) -> T,
    ) -> Result<T, StoreError> {
        let transaction = self.begin_write()?;
        let outcome;
        let mut changed = false;
        {
            let mut table = transaction.open_table(KEYID_SIGNINGKEY)?;
            let mut before = Vec::new();
            let mut keys = Vec::new();
            for entry in table.iter()? {
                let (key_id, bytes) = entry?;
                let record: SigningKeyRecord = decode(bytes.value(), "signing key")?;
                before.push((key_id.value().to_owned(), bytes.value().to_vec()));
                keys.push(stored_key(key_id.value(), &record)?);
            }
            outcome = change(&mut keys);
            for (key_id, _) in &before {
                if !keys.iter().any(|key| key.key_id == *key_id) {
                    table.remove(key_id.as_str())?;
                    changed = true;
                }
            }
            for key in &keys {
                let key_id = &key.key_id;
                let bytes = encode(&record_of(key));
                let unchanged = before
                    .iter()
                    .any(|(id, old_bytes)| id == key_id && *old_bytes == bytes);
                if !unchanged {
                    table.insert(key_id.as_str(), bytes.as_slice())?;
                    changed = true;
                }
            }
        }
        if changed {
            transaction.commit()?;
        } else {
            transaction.abort()?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb_backend::test_support::test_signing_key;

    #[test]
    fn key_bytes_are_read_back_only_from_lowercase_hex() {
        let record = |secret_key_hex: &str| SigningKeyRecord {
            v: RECORD_VERSION,
            secret_key_hex: secret_key_hex.to_owned(),
            status: SigningKeyStatus::Active,
            created: 1,
            retired_at: None,
            activates_at: None,
        };
        let key = stored_key("k", &record("00ff7f")).unwrap();
        assert_eq!(key.secret_key_bytes.expose_secret(), &[0x00, 0xff, 0x7f]);
        assert_eq!(record_of(&key).secret_key_hex, "00ff7f");
        for refused in ["+1", "-1ff", "00FF7F", "0x00", " 0ff", "0g", "abc"] {
            assert!(
                matches!(
                    stored_key("k", &record(refused)),
                    Err(StoreError::CorruptRecord("signing key"))
                ),
                "{refused:?}"
            );
        }
    }

    fn statuses(store: &RedbStore) -> Vec<(String, SigningKeyStatus)> {
        let mut keys: Vec<_> = store
            .signing_keys()
            .unwrap()
            .into_iter()
            .map(|key| (key.key_id, key.status))
            .collect();
        keys.sort_by(|left, right| left.0.cmp(&right.0));
        keys
    }

    fn status_of(store: &RedbStore, key_id: &str) -> Option<SigningKeyStatus> {
        statuses(store)
            .into_iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, status)| status)
    }

    #[test]
    fn a_next_key_waits_its_turn_then_replaces_the_active_one() {
        let directory = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&directory.path().join("keys.redb"), 1024 * 1024).unwrap();
        let first = test_signing_key(1_000);
        store.insert_active_signing_key(&first).unwrap();
        let next = test_signing_key(1_010);
        assert_eq!(
            store.insert_next_signing_key(&next, 1_100, 1_010).unwrap(),
            None
        );
        // One waiting key at a time.
        let another = test_signing_key(1_020);
        assert_eq!(
            store
                .insert_next_signing_key(&another, 1_200, 1_020)
                .unwrap(),
            Some(PendingNextKey {
                key_id: next.key_id.clone(),
                activates_at: 1_100
            })
        );
        assert!(!store.promote_due_signing_keys(1_099).unwrap());
        assert_eq!(
            status_of(&store, &first.key_id),
            Some(SigningKeyStatus::Active)
        );
        assert_eq!(
            status_of(&store, &next.key_id),
            Some(SigningKeyStatus::Next)
        );
        assert!(store.promote_due_signing_keys(1_100).unwrap());
        assert_eq!(
            status_of(&store, &next.key_id),
            Some(SigningKeyStatus::Active)
        );
        let retired = store
            .signing_keys()
            .unwrap()
            .into_iter()
            .find(|key| key.key_id == first.key_id)
            .unwrap();
        assert_eq!(retired.status, SigningKeyStatus::Retired);
        assert_eq!(retired.retired_at, Some(1_100));
        assert_eq!(status_of(&store, &another.key_id), None);
    }

    #[test]
    fn revoking_the_signing_key_leaves_another_that_signs() {
        let directory = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&directory.path().join("keys.redb"), 1024 * 1024).unwrap();
        let first = test_signing_key(1_000);
        store.insert_active_signing_key(&first).unwrap();
        let replacement = test_signing_key(1_050);
        assert_eq!(
            store
                .revoke_signing_key("k4.pid.unknown", &replacement, 1_050)
                .unwrap(),
            None
        );
        // The only key: the replacement signs at once.
        assert_eq!(
            store
                .revoke_signing_key(&first.key_id, &replacement, 1_050)
                .unwrap(),
            Some(KeyRevocation {
                new_active_key_id: Some(replacement.key_id.clone())
            })
        );
        assert_eq!(
            statuses(&store),
            vec![(replacement.key_id.clone(), SigningKeyStatus::Active)]
        );
        // With a key waiting as next: it signs from now on, and no key is made.
        let next = test_signing_key(1_060);
        store.insert_next_signing_key(&next, 5_000, 1_060).unwrap();
        let unused = test_signing_key(1_070);
        let revocation = store
            .revoke_signing_key(&replacement.key_id, &unused, 1_070)
            .unwrap()
            .unwrap();
        assert_eq!(revocation.new_active_key_id, Some(next.key_id.clone()));
        assert_eq!(
            statuses(&store),
            vec![(next.key_id.clone(), SigningKeyStatus::Active)]
        );
        // A retired key just goes.
        let newer = test_signing_key(1_080);
        store.insert_active_signing_key(&newer).unwrap();
        let revocation = store
            .revoke_signing_key(&next.key_id, &unused, 1_090)
            .unwrap()
            .unwrap();
        assert_eq!(revocation.new_active_key_id, None);
        assert_eq!(
            statuses(&store),
            vec![(newer.key_id.clone(), SigningKeyStatus::Active)]
        );
    }
}
