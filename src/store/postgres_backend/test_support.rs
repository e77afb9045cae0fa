//! The unit tests' databases: each test gets a fresh one on the PostgreSQL server that
//! `scripts/test` starts and names in `TEST_POSTGRES_URL`.

use crate::model::email_address::EmailAddress;
use crate::model::{
    PermissionSet, Role, Session, SessionId, SessionKind, Status, UaType, UnixSeconds, User, UserId,
};
use crate::store::postgres_backend::{PostgresStore, rows};

/// The time every fixture is made at (the store reads no clock).
pub const NOW: UnixSeconds = 1_750_000_000;

/// The server's URL from the environment (a connection to its `postgres` database).
pub fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_POSTGRES_URL is unset: run the tests with scripts/test, which starts PostgreSQL"
        )
    })
}

/// A new, empty database on the test server, and the URL that reaches it.
pub async fn fresh_database() -> String {
    let server = server_url();
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("latchkey_unit_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    database_url(&server, &name)
}

/// `server` with its database name replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A store on a fresh database.
pub async fn fresh_store() -> PostgresStore {
    PostgresStore::open(&fresh_database().await, 4)
        .await
        .unwrap()
}

/// An active user with a verified `email`, no password and no permissions, written straight
/// as a row (as `RedbStore::insert_user` would make it, at `NOW`).
pub async fn add_user(store: &PostgresStore, email: &str) -> User {
    let email = EmailAddress::parse(email).unwrap();
    let client = store.connection().await.unwrap();
    let user = User {
        id: rows::next_user_id(&client).await.unwrap(),
        email: email.as_given,
        normalized_email: email.normalized,
        password_hash: None,
        role: Role::User,
        status: Status::Active,
        parent_id: None,
        first_name: None,
        last_name: None,
        permissions: PermissionSet::empty(),
        created: NOW,
        updated: NOW,
        email_verified: true,
        credential_version: 0,
    };
    rows::write_user(&client, &user).await.unwrap();
    user
}

/// A sign-in session of `user_id` made at `NOW`, live for an hour (not written).
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

/// Writes `session` as a row.
pub async fn add_session(store: &PostgresStore, session: &Session) {
    let client = store.connection().await.unwrap();
    rows::insert_session(&client, session).await.unwrap();
}

#[tokio::test]
async fn a_fresh_database_is_migrated_once_and_keeps_its_store_id() {
    let url = fresh_database().await;
    let first = PostgresStore::open(&url, 2).await.unwrap();
    let again = PostgresStore::open(&url, 2).await.unwrap();
    assert_eq!(first.store_id(), again.store_id());
    assert_eq!(first.store_id().len(), 36);
}

/// A standalone API token whose hash is 32 times `hash_byte`, never expiring.
pub fn standalone_token(
    user_id: crate::model::UserId,
    hash_byte: u8,
    made_by: Option<crate::model::TokenMaker>,
) -> crate::model::ApiToken {
    use crate::model::{ApiToken, PermissionSet};
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

/// Asserts two values print alike: the model's records have no `PartialEq` (secrets print
/// redacted, so compare those apart).
#[track_caller]
pub fn assert_same<T: std::fmt::Debug>(left: &T, right: &T) {
    assert_eq!(format!("{left:?}"), format!("{right:?}"));
}

/// Fails to compile unless `value` is `Send`: a request handler awaits the store's futures
/// on a multi-threaded runtime.
pub fn assert_send<T: Send>(_value: &T) {}

/// A signing key as the store keeps it, with fixed bytes; its id is unique per `created`.
pub fn test_signing_key(created: crate::model::UnixSeconds) -> crate::store::StoredSigningKey {
    crate::store::StoredSigningKey {
        key_id: format!("k4.pid.test-key-{created}"),
        secret_key_bytes: crate::model::Secret::new(vec![7; 64]),
        status: crate::model::SigningKeyStatus::Active,
        created,
        retired_at: None,
        activates_at: None,
    }
}

#[tokio::test]
async fn every_connection_bounds_how_long_a_frozen_transaction_holds_its_locks() {
    let store = fresh_store().await;
    let client = store.connection().await.unwrap();
    let show = async |setting: &str| -> String {
        client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(show("idle_in_transaction_session_timeout").await, "30s");
    assert_eq!(show("lock_timeout").await, "10s");
}
