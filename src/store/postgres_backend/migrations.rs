//! The schema's versions as SQL inside the binary, applied in order at open under an
//! advisory lock, so that nodes starting together migrate once; a database that a newer
//! build migrated further is refused.

use deadpool_postgres::Object;

use crate::store::StoreError;

/// Every migration, in order: version `n` is the `n`th entry. Append only; never edit one
/// that a release applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_tables.sql"),
    include_str!("migrations/0002_throttle_counters.sql"),
    include_str!("migrations/0003_second_factor_summary.sql"),
];

/// The schema version this build leaves a database at.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

/// The session-level advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x4c61_7463_686b_0002;

/// Brings the database to `SCHEMA_VERSION` and returns the store id (made on first open).
pub(super) async fn migrate(client: &mut Object) -> Result<String, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let migrated = migrate_holding_the_lock(client).await;
    // Released on every path; a failed unlock only means the connection is gone, which
    // releases the lock too.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    migrated
}

async fn migrate_holding_the_lock(client: &mut Object) -> Result<String, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS latchkey_schema_migrations (
                 version bigint PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let applied: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM latchkey_schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let applied = u64::try_from(applied).map_err(|_| StoreError::CorruptRecord("migration"))?;
    if applied > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: applied,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let version = index as u64 + 1;
        if version <= applied {
            continue;
        }
        let transaction = client.transaction().await?;
        transaction.batch_execute(migration).await?;
        transaction
            .execute(
                "INSERT INTO latchkey_schema_migrations (version) VALUES ($1)",
                &[&(version as i64)],
            )
            .await?;
        transaction.commit().await?;
    }
    let candidate = uuid::Uuid::new_v4().to_string();
    client
        .execute(
            "INSERT INTO store_facts (name, value) VALUES ('store_id', $1)
             ON CONFLICT (name) DO NOTHING",
            &[&candidate],
        )
        .await?;
    Ok(client
        .query_one("SELECT value FROM store_facts WHERE name = 'store_id'", &[])
        .await?
        .try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::PostgresStore;
    use crate::store::postgres_backend::test_support::fresh_database;

    #[tokio::test]
    async fn a_database_a_newer_build_migrated_is_refused_and_left_alone() {
        let url = fresh_database().await;
        let store = PostgresStore::open(&url, 1).await.unwrap();
        let newer = SCHEMA_VERSION as i64 + 1;
        store
            .connection()
            .await
            .unwrap()
            .execute(
                "INSERT INTO latchkey_schema_migrations (version) VALUES ($1)",
                &[&newer],
            )
            .await
            .unwrap();
        match PostgresStore::open(&url, 1).await {
            Err(StoreError::NewerSchema { found, supported }) => {
                assert_eq!((found, supported), (newer as u64, SCHEMA_VERSION));
            }
            other => panic!("a newer database opened: {other:?}"),
        }
    }

    /// A database left at version 2 with second factors in it gets their summary on each
    /// user's row when version 3 is applied.
    #[tokio::test]
    async fn version_3_counts_the_second_factors_already_held() {
        let url = fresh_database().await;
        let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let transaction = client.transaction().await.unwrap();
        for migration in &MIGRATIONS[..2] {
            transaction.batch_execute(migration).await.unwrap();
        }
        transaction
            .batch_execute(
                "CREATE TABLE latchkey_schema_migrations (
                     version bigint PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );
                 INSERT INTO latchkey_schema_migrations (version) VALUES (1), (2);
                 INSERT INTO users (id, email, normalized_email, role, status, permissions,
                     created, updated, email_verified, credential_version)
                 VALUES (1, 'ada@example.com', 'ada@example.com', 'user', 'active', 0, 0, 0,
                     true, 0),
                 (2, 'bob@example.com', 'bob@example.com', 'user', 'active', 0, 0, 0, true, 0);
                 INSERT INTO active_totp VALUES (1, '\\x0000000000000000000000000000000000000000', 0, 0);
                 INSERT INTO recovery_codes VALUES (1, '\\x00', ARRAY['\\x01', '\\x02']::bytea[]);
                 INSERT INTO passkeys (id, user_id, credential_id, user_handle, name, created,
                     credential)
                 VALUES (gen_random_uuid(), 2, '\\x01', gen_random_uuid(), 'key', 0, '\\x00');",
            )
            .await
            .unwrap();
        transaction.commit().await.unwrap();

        let store = PostgresStore::open(&url, 1).await.unwrap();
        let ada = store.second_factor_summary(1).await.unwrap();
        let bob = store.second_factor_summary(2).await.unwrap();
        assert_eq!(
            (ada.totp, ada.passkeys, ada.recovery_codes_left),
            (true, 0, 2)
        );
        assert_eq!(
            (bob.totp, bob.passkeys, bob.recovery_codes_left),
            (false, 1, 0)
        );
    }

    #[tokio::test]
    async fn nodes_starting_together_migrate_once() {
        let url = fresh_database().await;
        let opened = open_four_at_once(&url).await;
        let ids: std::collections::BTreeSet<String> = opened
            .iter()
            .map(|store| store.store_id().to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "every node reads the one store id");
        let client = opened[0].connection().await.unwrap();
        let applied: i64 = client
            .query_one("SELECT count(*) FROM latchkey_schema_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(applied, SCHEMA_VERSION as i64);
    }

    /// Four stores opened at once on one database.
    async fn open_four_at_once(url: &str) -> Vec<PostgresStore> {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let url = url.to_owned();
            tasks.push(tokio::spawn(
                async move { PostgresStore::open(&url, 1).await },
            ));
        }
        let mut opened = Vec::new();
        for task in tasks {
            opened.push(task.await.unwrap().unwrap());
        }
        opened
    }
}
