//! The embedded backend: every table in one redb file (`tables`). Each public function is
//! one transaction, and every write transaction commits durably (redb's
//! `Durability::Immediate`, with quick repair) before it returns; each aggregate's functions
//! live in a file of its own.

mod api_tokens;
mod backup;
mod copy;
mod identities;
mod mail_queue;
mod oauth_browser_states;
mod passkeys;
mod record;
mod second_factors;
mod sessions;
mod signing_keys;
mod signup;
mod tables;
#[cfg(test)]
mod test_support;
mod token_makers;
mod users;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::store::redb_backend::record::decode_api_token;
use crate::store::redb_backend::sessions::session_in;
use crate::store::redb_backend::tables::{
    ALL_TABLES, META, META_SCHEMA_VERSION, META_STORE_ID, META_TEXT, SESSIONID_SESSION,
    TOKENHASH_APITOKEN, USERID_USER,
};
use crate::store::redb_backend::users::user_in;
use crate::store::{Requester, RequesterCredential, StoreError};

pub use crate::store::redb_backend::signup::is_unproved_sign_up;

/// The schema version this build writes; `open` refuses a newer file and raises an older
/// one. 2: sessions with prefixed ids have no row in `userid_sessionid`, so a build that
/// knew only version 1 would miss them when it lists or ends a user's sessions; it must
/// refuse the file rather than leave sessions it cannot find alive. 3: records in binary
/// format 3 (a user's `email_verified` and `credential_version`, the `made_by` of tokens),
/// which a version 2 build would read as corrupt. 4: second factors (TOTP and recovery codes),
/// which a version 3 build would not see: it would sign their users in with a password alone.
const SCHEMA_VERSION: u64 = 4;

/// `O_NOFOLLOW`: opening a symbolic link fails instead of opening what it points at.
const NEVER_FOLLOW_A_LINK: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// A cheap handle to the one open database.
#[derive(Clone)]
pub struct RedbStore {
    database: Arc<Database>,
    identity: Arc<StoreIdentity>,
    path: Arc<Path>,
}

/// The store id, read (or made) once at open.
struct StoreIdentity {
    id: String,
    /// The file had no id until this open made one: it was written by an older build, or
    /// is new.
    made_at_open: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Store")
    }
}

/// Refuses (`CredentialsChanged`) a requester whose user changed credentials or whose own
/// credential is gone or expired.
pub(super) fn check_requester(
    transaction: &WriteTransaction,
    requester: &Requester,
) -> Result<(), StoreError> {
    let user = user_in(&transaction.open_table(USERID_USER)?, requester.user_id)?;
    if user.is_none_or(|user| user.credential_version != requester.credential_version) {
        return Err(StoreError::CredentialsChanged);
    }
    let alive = match requester.credential {
        None => true,
        Some(RequesterCredential::Session(id)) => {
            session_in(&transaction.open_table(SESSIONID_SESSION)?, id)?.is_some_and(|session| {
                session.user_id == requester.user_id && session.expire > requester.now
            })
        }
        Some(RequesterCredential::ApiToken(hash)) => {
            match transaction.open_table(TOKENHASH_APITOKEN)?.get(&hash)? {
                Some(bytes) => {
                    let token = decode_api_token(bytes.value(), hash)?;
                    token.user_id == requester.user_id
                        && token
                            .expires_at
                            .is_none_or(|expires_at| expires_at >= requester.now)
                }
                None => false,
            }
        }
    };
    if alive {
        Ok(())
    } else {
        Err(StoreError::CredentialsChanged)
    }
}

impl RedbStore {
    /// Opens (or creates) the file: its directory is made (or set back to) 0700 and the file
    /// 0600, and every table is created in one write transaction.
    pub fn open(path: &Path, cache_size_bytes: usize) -> Result<RedbStore, StoreError> {
        let io_error = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(directory) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            if !directory.exists() {
                std::fs::create_dir_all(directory).map_err(io_error)?;
            }
            // At every open, not only at creation: a directory loosened since (by hand, by a
            // restore tool, by a umask) is closed again before anything is read from it.
            let mode = std::fs::metadata(directory)
                .map_err(io_error)?
                .permissions()
                .mode();
            if mode & 0o777 != 0o700 {
                std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_error)?;
            }
        }
        // The file is opened once, never through a symbolic link (an admin command run as
        // root in a directory another user owns must not be steered to another file), and
        // its mode is set and the database opened through that one handle.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(NEVER_FOLLOW_A_LINK)
            .open(path)
            .map_err(io_error)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error)?;

        let database = Database::builder()
            .set_cache_size(cache_size_bytes)
            .create_with_backend(redb::backends::FileBackend::new(file)?)
            .map_err(|error| match error {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.display().to_string(),
                },
                other => StoreError::from(other),
            })?;
        let mut store = RedbStore {
            path: Arc::from(path),
            database: Arc::new(database),
            identity: Arc::new(StoreIdentity {
                id: String::new(),
                made_at_open: false,
            }),
        };
        store.identity = Arc::new(store.create_tables()?);
        Ok(store)
    }

    /// The file's size in bytes.
    pub fn size_in_bytes(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|metadata| metadata.len())
            .map_err(|source| StoreError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// This store's id (see `META_STORE_ID`).
    pub fn store_id(&self) -> &str {
        &self.identity.id
    }

    /// Creates every table of `ALL_TABLES`, raises an older schema version (refusing a
    /// newer one: `NewerSchema`) and makes the store id if missing, in one transaction.
    fn create_tables(&self) -> Result<StoreIdentity, StoreError> {
        let transaction = self.begin_write()?;
        let stored_version = transaction
            .open_table(META)?
            .get(META_SCHEMA_VERSION)?
            .map(|guard| guard.value());
        if let Some(found) = stored_version
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for table in ALL_TABLES {
            table.create_in(&transaction)?;
        }
        // Older versions need no rewrite of their records: this build reads what they wrote.
        if stored_version.is_some_and(|version| version < 3) {
            // Version 3 added the purge's index of unproved sign-ups.
            signup::index_unproved_sign_ups(&transaction)?;
        }
        if stored_version != Some(SCHEMA_VERSION) {
            transaction
                .open_table(META)?
                .insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
        }
        let identity = {
            let mut text = transaction.open_table(META_TEXT)?;
            let stored_id = text
                .get(META_STORE_ID)?
                .map(|guard| guard.value().to_owned());
            match stored_id {
                Some(id) => StoreIdentity {
                    id,
                    made_at_open: false,
                },
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    text.insert(META_STORE_ID, id.as_str())?;
                    StoreIdentity {
                        id,
                        made_at_open: true,
                    }
                }
            }
        };
        transaction.commit()?;
        Ok(identity)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut transaction = self.database.begin_write()?;
        transaction.set_quick_repair(true);
        Ok(transaction)
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.database.begin_read()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::email_address::EmailAddress;
    use crate::model::{
        NewUser, PasswordHashString, PermissionSet, Role, Session, SessionId, SessionKind, Status,
    };
    use crate::store::redb_backend::test_support::{
        NOW, add_user, live_session, open_store, schema_version, set_schema_version,
        standalone_token,
    };
    use crate::store::{NewSignIn, SessionsToEnd};

    #[test]
    fn every_open_closes_the_data_directory_to_others() {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("data");
        let path = data_dir.join("latchkey.redb");
        drop(RedbStore::open(&path, 1024 * 1024).unwrap());
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(RedbStore::open(&path, 1024 * 1024).unwrap());
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn opening_raises_an_older_schema_version_and_refuses_a_newer_one() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        assert_eq!(schema_version(&store), Some(SCHEMA_VERSION));
        set_schema_version(&store, 1);
        drop(store);
        let store = open_store(&directory);
        assert_eq!(schema_version(&store), Some(SCHEMA_VERSION));
        set_schema_version(&store, SCHEMA_VERSION + 1);
        drop(store);
        let refusal = RedbStore::open(&directory.path().join("latchkey.redb"), 1024 * 1024);
        assert!(matches!(
            refusal,
            Err(StoreError::NewerSchema { found, supported })
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ));
    }

    /// The review's races (API.md 15.3, 15.6): a request that authenticated before its
    /// credential was revoked, or before a password change, writes nothing once it reaches
    /// the store; a change to a token deleted meanwhile does not bring it back; a sub-user
    /// whose parent was deleted meanwhile is not made.
    #[test]
    fn writes_from_a_credential_revoked_in_flight_leave_nothing_behind() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "raced@example.com");
        let now = NOW;
        let session = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .unwrap();
        let maker = standalone_token(user.id, 1, None);
        store.insert_api_token(&maker).unwrap();
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
            .unwrap();
        // The session ends, the token is deleted: what they still had in flight is refused.
        store.end_all_sessions_of_user(user.id).unwrap();
        store
            .delete_api_token_of_user(user.id, &maker.hash)
            .unwrap();
        for requester in [&by_session, &by_token] {
            assert!(matches!(
                store.insert_api_token_within_limit(
                    &standalone_token(user.id, 3, None),
                    100,
                    requester
                ),
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
                store.record_sign_in(&minted),
                Err(StoreError::CredentialsChanged)
            ));
            assert!(store.session(minted.session.id).unwrap().is_none());
        }
        assert_eq!(
            store
                .standalone_api_tokens_of_user(user.id)
                .unwrap()
                .iter()
                .map(|token| token.hash[0])
                .collect::<Vec<_>>(),
            vec![2]
        );

        // A password change raises the version: a request authenticated before it is refused.
        let fresh = live_session(SessionId::new_for_user(user.id), user.id);
        store.insert_sessions(std::slice::from_ref(&fresh)).unwrap();
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
            .unwrap();
        let survivor = store.standalone_api_tokens_of_user(user.id).unwrap()[0].clone();
        assert!(matches!(
            store.replace_api_token(&survivor, &before_change),
            Err(StoreError::CredentialsChanged)
        ));

        // A change to a token deleted meanwhile does not bring it back.
        let current = Requester {
            credential_version: user.credential_version + 1,
            ..before_change
        };
        store
            .delete_api_token_of_user(user.id, &survivor.hash)
            .unwrap();
        assert!(
            store
                .replace_api_token(&survivor, &current)
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .standalone_api_tokens_of_user(user.id)
                .unwrap()
                .is_empty()
        );

        // A sub-user of a parent deleted meanwhile is not made.
        let parent = add_user(&store, "parent@example.com");
        store.delete_user_tree(parent.id).unwrap();
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
            store.insert_user(orphan, now),
            Err(StoreError::CredentialsChanged)
        ));
        assert!(
            store
                .user_by_normalized_email("orphan@example.com")
                .unwrap()
                .is_none()
        );
    }

    /// A link planted where the store file goes is refused, not followed: an admin command
    /// run as root in a data directory another user owns must not reset another file's mode.
    #[test]
    fn a_link_in_place_of_the_store_file_is_refused_and_its_target_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let elsewhere = directory.path().join("someone-elses-file");
        std::fs::write(&elsewhere, b"not a store").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = directory.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::os::unix::fs::symlink(&elsewhere, data.join("latchkey.redb")).unwrap();
        assert!(matches!(
            RedbStore::open(&data.join("latchkey.redb"), 1024 * 1024),
            Err(StoreError::Io { .. })
        ));
        let mode = std::fs::metadata(&elsewhere).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not a store");
    }
}
