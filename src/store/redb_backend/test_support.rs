//! Fixtures the store's unit tests share: a store in a temporary directory, users, sessions,
//! API tokens and signing keys, all at the fixed time `NOW` (the store reads no clock).

use crate::model::email_address::EmailAddress;
use crate::model::{
    ApiToken, NewUser, PermissionSet, Role, Session, SessionId, SessionKind, SigningKeyStatus,
    Status, TokenMaker, UaType, UnixSeconds, User, UserId,
};
use crate::store::StoredSigningKey;
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::tables::{META, META_SCHEMA_VERSION};

/// The time every fixture is made at.
pub const NOW: UnixSeconds = 1_750_000_000;

pub fn open_store(directory: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(&directory.path().join("latchkey.redb"), 1024 * 1024).unwrap()
}

pub fn add_user(store: &RedbStore, email: &str) -> User {
    store
        .insert_user(
            NewUser {
                permissions: PermissionSet::empty(),
                email_verified: true,
                ..NewUser::new(
                    EmailAddress::parse(email).unwrap(),
                    Role::User,
                    Status::Active,
                )
            },
            NOW,
        )
        .unwrap()
}

pub fn live_session(id: SessionId, user_id: UserId) -> Session {
    Session {
        id,
        user_id,
        kind: SessionKind::SignIn,
        created: NOW,
        expire: NOW + 3600,
        remote_ip: "127.0.0.1".into(),
        user_agent: String::new(),
        ua_type: UaType::Unknown,
        granted_permissions: PermissionSet::empty(),
        api_token_hash: None,
        made_by: None,
    }
}

pub fn standalone_token(user_id: UserId, hash_byte: u8, made_by: Option<TokenMaker>) -> ApiToken {
    ApiToken {
        hash: [hash_byte; 32],
        prefix: format!("{hash_byte:02x}").repeat(4),
        user_id,
        session_id: None,
        permissions: PermissionSet::empty(),
        restrictions: PermissionSet::empty(),
        created: NOW,
        updated: NOW,
        expires_at: None,
        made_by,
    }
}

pub fn schema_version(store: &RedbStore) -> Option<u64> {
    let transaction = store.begin_read().unwrap();
    let meta = transaction.open_table(META).unwrap();
    meta.get(META_SCHEMA_VERSION)
        .unwrap()
        .map(|guard| guard.value())
}

pub fn set_schema_version(store: &RedbStore, version: u64) {
    let transaction = store.begin_write().unwrap();
    transaction
        .open_table(META)
        .unwrap()
        .insert(META_SCHEMA_VERSION, version)
        .unwrap();
    transaction.commit().unwrap();
}

/// A signing key as the store keeps it, with fixed bytes: the store never uses the key
/// material, and `auth` is not the store's to call. Its id is unique per `created`.
pub fn test_signing_key(created: UnixSeconds) -> StoredSigningKey {
    StoredSigningKey {
        key_id: format!("k4.pid.test-key-{created}"),
        secret_key_bytes: crate::model::Secret::new(vec![7; 64]),
        status: SigningKeyStatus::Active,
        created,
        retired_at: None,
        activates_at: None,
    }
}
