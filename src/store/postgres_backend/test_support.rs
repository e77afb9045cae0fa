//! The unit tests' databases: each test gets a fresh one on the PostgreSQL server that
//! `scripts/test` starts and names in `LATCHKEY_TEST_POSTGRES_URL`.

use crate::store::postgres_backend::PostgresStore;

/// The server's URL from the environment (a connection to its `postgres` database).
pub fn server_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("LATCHKEY_TEST_POSTGRES_URL is unset: run the tests with scripts/test, which starts PostgreSQL")
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

#[tokio::test]
async fn a_fresh_database_is_migrated_once_and_keeps_its_store_id() {
    let url = fresh_database().await;
    let first = PostgresStore::open(&url, 2).await.unwrap();
    let again = PostgresStore::open(&url, 2).await.unwrap();
    assert_eq!(first.store_id(), again.store_id());
    assert_eq!(first.store_id().len(), 36);
}

/// The time every fixture is made at (as the redb backend's fixtures).
pub const NOW: crate::model::UnixSeconds = 1_750_000_000;

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
