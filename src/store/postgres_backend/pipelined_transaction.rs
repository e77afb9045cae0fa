//! A transaction whose BEGIN and COMMIT travel with its statements, on a pooled connection
//! that never goes back to the pool with the transaction open.

use deadpool_postgres::{GenericClient, Object};

use crate::store::StoreError;

/// Runs `write` on `client`, whose first pipelined batch starts with `begin` and whose last
/// ends with `commit`: PostgreSQL runs statements in the order they reach it, so they all
/// run inside the transaction, in two round trips fewer than with a `Transaction`, whose
/// BEGIN and COMMIT each wait for their answer.
///
/// The connection goes back to the pool as it is after a write that succeeded (committed).
/// A write that failed or was dropped half done (a request cancelled mid-write) leaves its
/// ROLLBACK (a warning and nothing more where a pipelined COMMIT already ended the
/// transaction) to a task that holds the connection, and so its place in the pool, until
/// PostgreSQL has answered it: a backend waiting for the writer lock learns of a closed
/// socket only once it gets the lock, so closing the connection instead would let the pool
/// open others beside it, beyond its size. A connection whose ROLLBACK fails is closed.
pub(super) async fn write_in_pipelined_transaction<T>(
    client: Object,
    write: impl AsyncFnOnce(&Object) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut on_loan = RolledBackUnlessHandedBack {
        client: Some(client),
    };
    let Some(client) = on_loan.client.as_ref() else {
        return Err(StoreError::Postgres("no connection to write on".to_owned()));
    };
    let result = write(client).await;
    if result.is_ok() {
        // Committed: handed back to the pool as it is.
        on_loan.client = None;
    }
    // Otherwise `on_loan` rolls back as it goes, as after a write dropped half done.
    result
}

/// BEGIN, as the first future of a write's first batch.
pub(super) async fn begin(client: &impl GenericClient) -> Result<(), StoreError> {
    client.batch_execute("BEGIN").await?;
    Ok(())
}

/// COMMIT, as the last future of a write's last batch, whose other statements were all
/// prepared before it, so that none reaches the database after it. Only a batch whose every
/// other future succeeded has committed: PostgreSQL answers a COMMIT after a failed
/// statement by rolling back, without an error.
pub(super) async fn commit(client: &impl GenericClient) -> Result<(), StoreError> {
    client.batch_execute("COMMIT").await?;
    Ok(())
}

/// A connection in a transaction, rolled back when dropped unless taken out first.
#[derive(Debug)]
struct RolledBackUnlessHandedBack {
    client: Option<Object>,
}

impl Drop for RolledBackUnlessHandedBack {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let rolling_back = ClosedUnlessRolledBack {
            client: Some(client),
        };
        // Outside a runtime (never, in the server) the connection is closed instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(roll_back_then_pool(rolling_back));
        }
    }
}

/// Rolls the transaction back, then hands the connection back to the pool.
async fn roll_back_then_pool(mut rolling_back: ClosedUnlessRolledBack) {
    if let Some(client) = rolling_back.client.as_ref()
        && client.batch_execute("ROLLBACK").await.is_ok()
    {
        // Handed back to the pool.
        rolling_back.client = None;
    }
}

/// A connection that is closed, not pooled, unless taken out before it is dropped (a task
/// that could not roll back, or one dropped with its runtime).
#[derive(Debug)]
struct ClosedUnlessRolledBack {
    client: Option<Object>,
}

impl Drop for ClosedUnlessRolledBack {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::PostgresStore;
    use crate::store::postgres_backend::test_support::fresh_database;

    async fn backend_process_of_next_connection(store: &PostgresStore) -> i32 {
        let client = store.connection().await.unwrap();
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap();
        row.get(0)
    }

    /// The backend process of the pool's next connection, and whether `table` is absent
    /// as that connection sees it.
    async fn next_connection_and_whether_gone(store: &PostgresStore, table: &str) -> (i32, bool) {
        let client = store.connection().await.unwrap();
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), to_regclass($1) IS NULL",
                &[&table],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// A write dropped inside its transaction (a cancelled request) does not hand its
    /// connection, transaction open, to the next caller: a task rolls it back first, holding
    /// its place in the pool meanwhile, so the next caller gets the same connection (never
    /// one opened beside it), out of the transaction.
    #[tokio::test]
    async fn a_write_dropped_half_done_is_rolled_back_before_its_connection_is_pooled() {
        let store = PostgresStore::open(&fresh_database().await, 1)
            .await
            .unwrap();
        let first = backend_process_of_next_connection(&store).await;
        assert_eq!(backend_process_of_next_connection(&store).await, first);

        let (began, began_heard) = tokio::sync::oneshot::channel();
        let client = store.connection().await.unwrap();
        let write = write_in_pipelined_transaction(client, async |client| {
            begin(client).await?;
            client
                .batch_execute("CREATE TABLE written_then_dropped (id int)")
                .await?;
            let _ = began.send(());
            std::future::pending::<Result<(), StoreError>>().await
        });
        let dropped_in_its_transaction = tokio::select! {
            _ = write => false,
            heard = began_heard => heard.is_ok(),
        };
        assert!(dropped_in_its_transaction);

        assert_eq!(
            next_connection_and_whether_gone(&store, "written_then_dropped").await,
            (first, true)
        );
    }

    /// A write that fails is rolled back and its connection pooled again, out of the
    /// transaction: what it wrote before failing is gone.
    #[tokio::test]
    async fn a_failed_write_is_rolled_back_and_its_connection_pooled() {
        let store = PostgresStore::open(&fresh_database().await, 1)
            .await
            .unwrap();
        let first = backend_process_of_next_connection(&store).await;
        let client = store.connection().await.unwrap();
        let result = write_in_pipelined_transaction(client, async |client| {
            begin(client).await?;
            client
                .batch_execute("CREATE TABLE written_then_rolled_back (id int)")
                .await?;
            Err::<(), _>(StoreError::CredentialsChanged)
        })
        .await;
        assert!(matches!(result, Err(StoreError::CredentialsChanged)));

        assert_eq!(
            next_connection_and_whether_gone(&store, "written_then_rolled_back").await,
            (first, true)
        );
    }
}
