//! The maintenance lock: a session-level advisory lock that one node at a time holds, on a
//! connection of its own, while it runs the maintenance pass (purges and signing-key
//! upkeep). The lock lives as long as that connection's session, so a node that dies
//! mid-pass frees it the moment its connection closes.

use deadpool_postgres::{GenericClient, Object};

use crate::store::StoreError;
use crate::store::postgres_backend::PostgresStore;

/// The advisory lock held for a maintenance pass; the writer lock is `WRITER_LOCK`, the
/// migrations' `MIGRATION_LOCK`.
const MAINTENANCE_LOCK: i64 = 0x4c61_7463_686b_0003;

/// A held maintenance lock. `release` unlocks it and gives the connection back to the pool;
/// dropped without it (an error, a cancelled task), the connection is taken out of the pool
/// and closed, which frees the lock, rather than going back to the pool holding it.
pub struct MaintenanceLock {
    connection: Option<Object>,
}

impl std::fmt::Debug for MaintenanceLock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MaintenanceLock")
    }
}

impl PostgresStore {
    /// The maintenance lock if no other node holds it now; `None` when one does. Never waits.
    pub async fn try_maintenance_lock(&self) -> Result<Option<MaintenanceLock>, StoreError> {
        let connection = self.connection().await?;
        let statement = connection
            .prepare_cached("SELECT pg_try_advisory_lock($1)")
            .await?;
        let granted: bool = connection
            .query_one(&statement, &[&MAINTENANCE_LOCK])
            .await?
            .try_get(0)?;
        Ok(granted.then(|| MaintenanceLock {
            connection: Some(connection),
        }))
    }
}

impl MaintenanceLock {
    /// Unlocks, so another node may take the next pass.
    pub async fn release(mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if unlock(&connection).await {
            drop(connection);
        } else {
            close(connection);
        }
    }
}

/// Whether the unlock ran and this session held the lock.
async fn unlock(connection: &Object) -> bool {
    let Ok(statement) = connection
        .prepare_cached("SELECT pg_advisory_unlock($1)")
        .await
    else {
        return false;
    };
    connection
        .query_one(&statement, &[&MAINTENANCE_LOCK])
        .await
        .and_then(|row| row.try_get::<_, bool>(0))
        .unwrap_or(false)
}

/// Takes the connection out of the pool and closes it: the server ends its session, and
/// with it every lock the session held.
fn close(connection: Object) {
    drop(Object::take(connection));
}

impl Drop for MaintenanceLock {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            close(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::test_support::fresh_database;

    #[tokio::test]
    async fn one_node_at_a_time_holds_the_lock_and_a_dropped_holder_frees_it() {
        let url = fresh_database().await;
        let first = PostgresStore::open(&url, 2).await.unwrap();
        let second = PostgresStore::open(&url, 2).await.unwrap();
        let held = first.try_maintenance_lock().await.unwrap().unwrap();
        assert!(second.try_maintenance_lock().await.unwrap().is_none());
        // The holder's own other connections are other sessions: refused too.
        assert!(first.try_maintenance_lock().await.unwrap().is_none());
        held.release().await;
        let held = second.try_maintenance_lock().await.unwrap().unwrap();
        assert!(first.try_maintenance_lock().await.unwrap().is_none());
        // Dropped without `release` (a pass cancelled mid-way): the session ends with its
        // connection, and the lock with it.
        drop(held);
        let mut retaken = None;
        for _ in 0..100 {
            retaken = first.try_maintenance_lock().await.unwrap();
            if retaken.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let retaken = retaken.expect("the dropped holder's session kept the lock");
        // A released lock goes back to the pool unheld: the pool's connections take it
        // again after release.
        retaken.release().await;
        for _ in 0..3 {
            let again = second.try_maintenance_lock().await.unwrap().unwrap();
            again.release().await;
        }
    }
}
