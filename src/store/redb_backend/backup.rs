//! Backups: a consistent copy of every table (`ALL_TABLES`) into a new file from one read
//! transaction, and the check `restore` makes of a backup before it replaces anything.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use redb::Database;

use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::tables::ALL_TABLES;
use crate::store::{BackupSummary, StoreError};

impl RedbStore {
    /// Writes a consistent copy of the whole store to a new file at `path`, from one read
    /// transaction: writes that commit meanwhile are not in it, and nothing half-done is.
    pub fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        let io_error = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        let copy = Database::builder().create(path)?;
        let source = self.begin_read()?;
        let mut target = copy.begin_write()?;
        target.set_quick_repair(true);
        for table in ALL_TABLES {
            table.copy_rows(&source, &target)?;
        }
        target.commit()?;
        Ok(())
    }

    /// Checks that `path` is a store this build can open and that it holds a signing key:
    /// what `restore` requires before it replaces anything. Returns its store id and keys.
    pub fn check_backup(path: &Path) -> Result<BackupSummary, StoreError> {
        let store = RedbStore::open(path, 4 * 1024 * 1024)?;
        let signing_keys = store.signing_keys()?;
        if signing_keys.is_empty() {
            return Err(StoreError::CorruptRecord(
                "backup (it holds no signing key)",
            ));
        }
        Ok(BackupSummary {
            store_id: (!store.identity.made_at_open).then(|| store.identity.id.clone()),
            signing_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::email_address::EmailAddress;
    use crate::model::passkey::{
        Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyId,
    };
    use crate::model::{
        NewUser, OutgoingMail, PasswordHashString, PermissionSet, Role, SessionId, Status,
        TokenMaker,
    };
    use crate::store::redb_backend::tables::{META_STORE_ID, META_TEXT};
    use crate::store::redb_backend::test_support::{
        NOW, add_user, live_session, open_store, standalone_token, test_signing_key,
    };
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};

    /// Each table's name and row count.
    fn row_counts(database: &Database) -> Vec<(String, u64)> {
        let transaction = database.begin_read().unwrap();
        let mut counts: Vec<(String, u64)> = transaction
            .list_tables()
            .unwrap()
            .map(|table| {
                let name = table.name().to_owned();
                (
                    name,
                    transaction
                        .open_untyped_table(table)
                        .unwrap()
                        .len()
                        .unwrap(),
                )
            })
            .collect();
        counts.sort();
        counts
    }

    /// With a row in every table, a backup holds every table with all its rows: a table left
    /// out of `ALL_TABLES` would be missing here, as `tables`' own test checks against open.
    #[test]
    fn a_backup_holds_every_table_with_all_its_rows() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        store
            .insert_active_signing_key(&test_signing_key(1))
            .unwrap();
        let parent = add_user(&store, "parent@example.com");
        let sub_user = NewUser {
            parent_id: Some(parent.id),
            permissions: PermissionSet::empty(),
            ..NewUser::new(
                EmailAddress::parse("sub@example.com").unwrap(),
                Role::Sub,
                Status::Active,
            )
        };
        store.insert_user(sub_user, NOW).unwrap();
        // A session from before prefixed ids, which has its row in `userid_sessionid`.
        store
            .insert_sessions(&[live_session(SessionId::new_random(), parent.id)])
            .unwrap();
        let maker = standalone_token(parent.id, 1, None);
        store.insert_api_token(&maker).unwrap();
        let made = crate::model::ApiToken {
            expires_at: Some(NOW + 60),
            ..standalone_token(parent.id, 2, Some(TokenMaker::ApiToken(maker.hash)))
        };
        store.insert_api_token(&made).unwrap();
        let mail = |user: &crate::model::User| OutgoingMail {
            to: user.normalized_email.clone(),
            subject: "Verify".to_owned(),
            text: crate::model::Secret::new(String::new()),
            html: crate::model::Secret::new(String::new()),
        };
        let pending = NewUser {
            password_hash: Some(PasswordHashString::new("$argon2id$pending".to_owned())),
            permissions: PermissionSet::empty(),
            ..NewUser::new(
                EmailAddress::parse("pending@example.com").unwrap(),
                Role::User,
                Status::Pending,
            )
        };
        store
            .sign_up(pending, [3; 32], NOW + 3600, mail, mail, NOW)
            .unwrap();
        store
            .link_identity("provider", "subject", parent.id, |_| true, NOW)
            .unwrap();
        second_factor_rows(&store, &parent);
        // A registered passkey, and a ceremony still open.
        let challenge = |kind| PasskeyChallenge {
            id: PasskeyChallengeId::new_random(),
            kind,
            user_id: Some(parent.id),
            user_handle: Some(1),
            expires_at: NOW + 300,
            state: b"{}".to_vec(),
        };
        let registration = challenge(PasskeyChallengeKind::Registration);
        store
            .insert_passkey_challenge(&registration, 10, NOW)
            .unwrap();
        let passkey = Passkey {
            id: PasskeyId::new_random(),
            user_id: parent.id,
            credential_id: vec![1, 2, 3],
            user_handle: 1,
            name: "Key".to_owned(),
            created: NOW,
            last_used: None,
            credential: b"{}".to_vec(),
        };
        let requester = crate::store::Requester {
            user_id: parent.id,
            credential_version: parent.credential_version,
            credential: None,
            now: NOW,
        };
        store
            .finish_passkey_registration(registration.id, &passkey, 20, &requester)
            .unwrap();
        store
            .insert_passkey_challenge(&challenge(PasskeyChallengeKind::UserAssertion), 10, NOW)
            .unwrap();
        // A browser OAuth sign-in waiting for its callback.
        store
            .insert_oauth_browser_state(
                crate::model::oauth_browser::OAuthStateHash([9; 32]),
                &crate::model::oauth_browser::OAuthBrowserState {
                    provider: "provider".to_owned(),
                    browser_binding_hash: [8; 32],
                    nonce: crate::model::Secret::new("nonce".to_owned()),
                    pkce_verifier: crate::model::Secret::new("verifier".to_owned()),
                    return_url: None,
                    expires_at: NOW + 600,
                },
                10,
                NOW,
            )
            .unwrap();

        let counts = row_counts(&store.database);
        assert_eq!(counts.len(), ALL_TABLES.len());
        for (name, rows) in &counts {
            assert!(*rows > 0, "the fixture leaves {name} empty");
        }
        let backup = directory.path().join("backup.redb");
        store.backup_to(&backup).unwrap();
        drop(store);
        assert_eq!(row_counts(&Database::open(&backup).unwrap()), counts);
    }

    /// Rows in every second-factor table: an active TOTP with recovery codes for `user`, a
    /// pending enrolment for a user of its own, and an mfa-token.
    fn second_factor_rows(store: &RedbStore, user: &crate::model::User) {
        use crate::model::second_factor::{
            FirstFactor, MfaToken, PendingTotp, RecoveryCodeSet, TotpSecret,
        };
        use crate::store::Requester;
        let requester = |user: &crate::model::User| Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now: NOW,
        };
        let pending = |user: &crate::model::User, byte| PendingTotp {
            user_id: user.id,
            secret: TotpSecret::new([byte; 20]),
            created: NOW,
            expires_at: NOW + 600,
        };
        store
            .start_totp_enrolment(&pending(user, 1), &requester(user))
            .unwrap();
        store
            .activate_totp(
                &TotpSecret::new([1; 20]),
                1,
                &RecoveryCodeSet {
                    salt: [3; 16],
                    hashes: vec![[4; 32]],
                },
                &requester(user),
            )
            .unwrap();
        let enrolling = add_user(store, "enrolling@example.com");
        store
            .start_totp_enrolment(&pending(&enrolling, 2), &requester(&enrolling))
            .unwrap();
        store
            .insert_mfa_token(&MfaToken {
                hash: [5; 32],
                user_id: user.id,
                credential_version: user.credential_version,
                first_factor: FirstFactor::Password,
                long_term_token: true,
                logout_other: false,
                remote_ip: "127.0.0.1".to_owned(),
                user_agent: String::new(),
                replacement_password_hash: None,
                created: NOW,
                expires_at: NOW + 300,
                wrong_codes: 0,
            })
            .unwrap();
    }

    #[test]
    fn the_store_id_is_made_once_and_travels_with_backups() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let id = store.store_id().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        drop(store);
        let store = open_store(&directory);
        assert_eq!(store.store_id(), id);
        store
            .insert_active_signing_key(&test_signing_key(1))
            .unwrap();
        let backup = directory.path().join("copy.redb");
        store.backup_to(&backup).unwrap();
        let summary = RedbStore::check_backup(&backup).unwrap();
        assert_eq!(summary.store_id.as_deref(), Some(id.as_str()));

        // A file from before store ids gets one at its next open; a backup of it has none.
        let transaction = store.begin_write().unwrap();
        transaction
            .open_table(META_TEXT)
            .unwrap()
            .remove(META_STORE_ID)
            .unwrap();
        transaction.commit().unwrap();
        let old_backup = directory.path().join("old.redb");
        store.backup_to(&old_backup).unwrap();
        drop(store);
        assert_eq!(RedbStore::check_backup(&old_backup).unwrap().store_id, None);
        let store = open_store(&directory);
        assert_ne!(store.store_id(), id);
        assert!(uuid::Uuid::parse_str(store.store_id()).is_ok());
    }
}
