//! The PostgreSQL backend: the same functions as `redb_backend`, over a pool of connections
//! to one database that many nodes share. Each public function is one transaction. Writes
//! take one transaction-scoped advisory lock (`WRITER_LOCK`) first, so they run one at a
//! time across every node, as redb's single writer does: a rule checked by a write (the last
//! active root, a session cap, a credential version) sees no concurrent write. Reads take
//! no lock; the token checks' contexts are one statement each.

mod api_tokens;
mod copy;
mod identities;
mod mail_queue;
mod maintenance_lock;
mod migrations;
mod oauth_browser_states;
mod passkeys;
mod pipelined_transaction;
mod rows;
mod second_factors;
mod sessions;
mod signing_keys;
mod signup;
#[cfg(test)]
mod test_support;
mod throttle_counters;
mod token_makers;
mod users;

use std::sync::Arc;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction,
};
use tokio_postgres::{NoTls, Statement};

pub use crate::store::postgres_backend::maintenance_lock::MaintenanceLock;
use crate::store::postgres_backend::rows::{
    session_id_to_sql, unsigned_from_sql, unsigned_to_sql, user_id_to_sql,
};
use crate::store::{AlsoRead, Requester, RequesterCredential, StoreError};

#[cfg(test)]
pub use crate::store::postgres_backend::throttle_counters::shared_counters_on_a_fresh_database;
pub use crate::store::postgres_backend::throttle_counters::{
    BucketTake, ConditionalTake, SharedBucket, SharedCounters,
};

/// The advisory lock every write transaction holds until it ends.
const WRITER_LOCK: i64 = 0x4c61_7463_686b_0001;

/// How long a request waits for a pooled connection before it fails (rather than hangs).
const POOL_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long connecting to the database may take, unless the URL sets `connect_timeout`.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long sent data may go unacknowledged before the kernel drops the connection, unless
/// the URL sets `tcp_user_timeout`: a connection into a network partition fails (503) rather
/// than holding every request that is handed it.
const UNACKNOWLEDGED_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Server-side limits on every connection, unless the URL's `options` set them: a node that
/// froze inside a transaction (SIGSTOP, a partition) loses its session, and with it the
/// writer lock, after `idle_in_transaction_session_timeout`, so the other nodes' writes do
/// not wait for ever; a write waits at most `lock_timeout` for a lock, less than the default
/// `[http] request_timeout_seconds` (15), so that the client hears why (503, 50305).
const SESSION_LIMITS: &[(&str, &str)] = &[
    ("idle_in_transaction_session_timeout", "30s"),
    ("lock_timeout", "10s"),
];

/// Sets `CONNECT_LIMIT`, `UNACKNOWLEDGED_LIMIT` and `SESSION_LIMITS` where the URL left them
/// unset.
fn bound_the_waits(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_LIMIT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(UNACKNOWLEDGED_LIMIT);
    }
    let mut options = config.get_options().unwrap_or_default().to_owned();
    for (setting, value) in SESSION_LIMITS {
        if !options.contains(setting) {
            options.push_str(&format!(" -c {setting}={value}"));
        }
    }
    config.options(options.trim());
}

/// A cheap handle to the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    store_id: Arc<str>,
    token_check_queries: Arc<TokenCheckQueries>,
}

/// The token checks' statements, whose column lists are put together once at open rather
/// than on every authenticated request.
struct TokenCheckQueries {
    session_context: String,
    session_context_with_second_factors: String,
    api_token_context: String,
    api_token_context_with_second_factors: String,
}

impl TokenCheckQueries {
    fn new() -> TokenCheckQueries {
        TokenCheckQueries {
            session_context: sessions::session_context_query(AlsoRead::Nothing),
            session_context_with_second_factors: sessions::session_context_query(
                AlsoRead::SecondFactorSummary,
            ),
            api_token_context: api_tokens::api_token_context_query(AlsoRead::Nothing),
            api_token_context_with_second_factors: api_tokens::api_token_context_query(
                AlsoRead::SecondFactorSummary,
            ),
        }
    }

    fn session_context(&self, also: AlsoRead) -> &str {
        match also {
            AlsoRead::Nothing => &self.session_context,
            AlsoRead::SecondFactorSummary => &self.session_context_with_second_factors,
        }
    }

    fn api_token_context(&self, also: AlsoRead) -> &str {
        match also {
            AlsoRead::Nothing => &self.api_token_context,
            AlsoRead::SecondFactorSummary => &self.api_token_context_with_second_factors,
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PostgresStore")
    }
}

impl PostgresStore {
    /// Connects to `url` with at most `pool_size` connections, applies the migrations this
    /// build has and the database lacks (refusing a database newer than the build:
    /// `NewerSchema`), and reads the store id, made if the database has none.
    pub async fn open(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| StoreError::Postgres(error.to_string()))?;
        bound_the_waits(&mut config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_LIMIT))
            .create_timeout(Some(CONNECT_LIMIT))
            .build()
            .map_err(|error| StoreError::Postgres(error.to_string()))?;
        let mut client = connection_from(&pool).await?;
        let store_id = migrations::migrate(&mut client).await?;
        Ok(PostgresStore {
            pool,
            store_id: Arc::from(store_id),
            token_check_queries: Arc::new(TokenCheckQueries::new()),
        })
    }

    /// This store's id, as `RedbStore::store_id`.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The database's size in bytes, as PostgreSQL counts it.
    pub async fn size_in_bytes(&self) -> Result<u64, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached("SELECT pg_database_size(current_database())")
            .await?;
        let bytes: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
        unsigned_from_sql(bytes, "database size")
    }

    /// A connection from the pool.
    /// One trivial statement on a pooled connection: whether the database answers now.
    pub async fn check_reachable(&self) -> Result<(), StoreError> {
        let client = self.connection().await?;
        let statement = client.prepare_cached("SELECT 1").await?;
        client.query_one(&statement, &[]).await?;
        Ok(())
    }

    async fn connection(&self) -> Result<Object, StoreError> {
        connection_from(&self.pool).await
    }
}

async fn connection_from(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(|error| match error {
        // No connection could be made: whatever the server said (no such database, a wrong
        // password, not accepting connections, too many) or the network, the database cannot
        // serve now, and the server's own words go to the log, not the driver's bare "db error".
        deadpool_postgres::PoolError::Backend(refused) => match StoreError::from(refused) {
            StoreError::Postgres(text) => StoreError::Unavailable(text),
            other => other,
        },
        // Every pooled connection busy for the whole wait, or none could be made in time.
        deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Closed => {
            StoreError::Unavailable(error.to_string())
        }
        other => StoreError::Postgres(other.to_string()),
    })
}

/// Starts a write transaction holding the writer lock until it commits or rolls back
/// (dropping the transaction rolls it back).
async fn begin_write(client: &mut Object) -> Result<Transaction<'_>, StoreError> {
    let transaction = client.transaction().await?;
    let lock = writer_lock_statement(&transaction).await?;
    take_writer_lock(&transaction, &lock).await?;
    Ok(transaction)
}

/// The prepared statement that takes the writer lock. Prepared before a pipelined batch that
/// starts with `take_writer_lock`, so that the lock is the batch's first message on the
/// connection: PostgreSQL runs every later statement of the batch once it holds the lock.
async fn writer_lock_statement(client: &impl GenericClient) -> Result<Statement, StoreError> {
    Ok(client
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?)
}

/// Waits for the writer lock (held until the transaction ends).
async fn take_writer_lock(
    client: &impl GenericClient,
    statement: &Statement,
) -> Result<(), StoreError> {
    client.execute(statement, &[&WRITER_LOCK]).await?;
    Ok(())
}

/// Refuses (`CredentialsChanged`) a requester whose user changed credentials or whose own
/// credential is gone or expired, inside the write that it asks for.
async fn check_requester(
    client: &impl GenericClient,
    requester: &Requester,
) -> Result<(), StoreError> {
    let user_id = user_id_to_sql(requester.user_id)?;
    let statement = client
        .prepare_cached("SELECT credential_version FROM users WHERE id = $1")
        .await?;
    let version: Option<i64> = client
        .query_opt(&statement, &[&user_id])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    if version != Some(unsigned_to_sql(requester.credential_version, "user")?) {
        return Err(StoreError::CredentialsChanged);
    }
    let alive = match requester.credential {
        None => true,
        Some(RequesterCredential::Session(id)) => {
            let statement = client
                .prepare_cached(
                    "SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND expire > $3",
                )
                .await?;
            client
                .query_opt(
                    &statement,
                    &[&session_id_to_sql(id), &user_id, &requester.now],
                )
                .await?
                .is_some()
        }
        Some(RequesterCredential::ApiToken(hash)) => {
            let statement = client
                .prepare_cached(
                    "SELECT 1 FROM api_tokens WHERE hash = $1 AND user_id = $2 \
                     AND (expires_at IS NULL OR expires_at >= $3)",
                )
                .await?;
            client
                .query_opt(&statement, &[&hash.as_slice(), &user_id, &requester.now])
                .await?
                .is_some()
        }
    };
    if alive {
        Ok(())
    } else {
        Err(StoreError::CredentialsChanged)
    }
}
