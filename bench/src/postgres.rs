//! The PostgreSQL server that the benchmark's PostgreSQL part (issue #22) runs against, on this
//! machine: a throwaway cluster of its own (`initdb` in the run's temporary directory, with
//! PostgreSQL's default durability, unlike `scripts/postgres-for-tests`, which turns `fsync`
//! off for the tests), or a server that `--postgres-url` names. Each run makes a fresh database
//! of its own there and drops it at the end; the report states the server's version and
//! durability settings; and the postmaster's pid lets the loads count the cluster's CPU as the
//! server's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use tokio_postgres::{Client, NoTls};

use crate::BenchResult;
use crate::procfs::parent_pid;
use crate::servers::free_port;

/// The throwaway cluster this run started, for a run interrupted by a signal, which stops it.
static THROWAWAY_CLUSTER: Mutex<Option<ThrowawayCluster>> = Mutex::new(None);

/// Stops the throwaway cluster of an interrupted run, if one runs.
pub fn stop_throwaway_cluster() {
    let cluster = THROWAWAY_CLUSTER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(cluster) = cluster {
        cluster.stop("immediate");
    }
}

/// A cluster made with `initdb` and run with `pg_ctl` (as the `postgres` user when this runs
/// as root, since PostgreSQL refuses to run as root), on a free loopback port, with its
/// socket in its own directory.
#[derive(Clone)]
struct ThrowawayCluster {
    /// PostgreSQL's programs: `initdb`, `pg_ctl`.
    bin: PathBuf,
    directory: PathBuf,
    port: u16,
}

impl ThrowawayCluster {
    fn start(directory: PathBuf) -> BenchResult<ThrowawayCluster> {
        let bin = postgres_bin()?;
        std::fs::create_dir_all(&directory)?;
        if running_as_root() {
            run("chown", &["postgres", &directory.to_string_lossy()], false)?;
        }
        let data = directory.join("data");
        let port = free_port()?.port();
        let cluster = ThrowawayCluster {
            bin,
            directory,
            port,
        };
        cluster.as_owner(
            "initdb",
            &[
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "--pgdata",
                &data.to_string_lossy(),
            ],
        )?;
        *THROWAWAY_CLUSTER
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cluster.clone());
        cluster.as_owner(
            "pg_ctl",
            &[
                "--pgdata",
                &data.to_string_lossy(),
                "--log",
                &cluster.directory.join("log").to_string_lossy(),
                "--wait",
                "-o",
                &format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                    cluster.directory.display()
                ),
                "start",
            ],
        )?;
        Ok(cluster)
    }

    /// The `postgres` database's URL, over TCP on loopback or over the socket in the
    /// cluster's directory (its path percent-encoded as the host).
    fn url(&self, over_unix_socket: bool) -> String {
        let host = if over_unix_socket {
            self.directory.to_string_lossy().replace('/', "%2F")
        } else {
            "127.0.0.1".to_owned()
        };
        format!("postgres://postgres@{host}:{}/postgres", self.port)
    }

    /// `pg_ctl stop` in `mode` ("fast" at the end of a run, "immediate" on an interrupt).
    fn stop(&self, mode: &str) {
        let _ = self.as_owner(
            "pg_ctl",
            &[
                "--pgdata",
                &self.directory.join("data").to_string_lossy(),
                "--mode",
                mode,
                "--wait",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.directory);
    }

    /// One of PostgreSQL's programs, as the cluster's owner.
    fn as_owner(&self, program: &str, arguments: &[&str]) -> BenchResult<String> {
        let program = self.bin.join(program).to_string_lossy().into_owned();
        if running_as_root() {
            let mut all = vec!["-u", "postgres", "--", program.as_str()];
            all.extend_from_slice(arguments);
            run("runuser", &all, true)
        } else {
            run(&program, arguments, true)
        }
    }
}

fn running_as_root() -> bool {
    rustix::process::getuid().is_root()
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `pg_config --bindir`.
fn postgres_bin() -> BenchResult<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .take(1_000)
                .flatten()
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = entry.path().join("bin");
                    bin.join("initdb").is_file().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let bindir = run("pg_config", &["--bindir"], false).map_err(|error| {
        format!(
            "PostgreSQL's programs (initdb, pg_ctl) are not installed ({error}): install \
             PostgreSQL (Debian's postgresql package), name a server with --postgres-url, or \
             leave PostgreSQL's part out with --backend redb"
        )
    })?;
    Ok(PathBuf::from(bindir))
}

/// Runs `program` with `arguments`; its standard output, trimmed. `quiet_output` drops a
/// chatty program's output (kept for its error).
fn run(program: &str, arguments: &[&str], quiet_output: bool) -> BenchResult<String> {
    let output = Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}{}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        )
        .into());
    }
    Ok(if quiet_output {
        String::new()
    } else {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    })
}

/// The server the PostgreSQL part runs against.
pub struct PostgresServer {
    /// The `postgres` database's URL, for creating and dropping the run's own database.
    admin_url: String,
    /// Whether the throwaway cluster is reached over its Unix socket rather than TCP.
    over_unix_socket: bool,
    /// Set when this run started the cluster, which it stops when dropped.
    throwaway: Option<ThrowawayCluster>,
}

/// What the report says about the server.
pub struct DatabaseFacts {
    /// "a throwaway cluster started with `scripts/postgres-for-tests`" or "the server that
    /// `--postgres-url` names".
    pub origin: String,
    pub version: String,
    pub fsync: String,
    pub synchronous_commit: String,
    pub shared_buffers: String,
}

/// The run's own database on the server.
pub struct FreshDatabase {
    pub name: String,
    pub url: String,
}

impl PostgresServer {
    /// Connects to the server at `url`, or, without one, starts a throwaway cluster in
    /// `cluster_directory`, reached over TCP on loopback or, `over_unix_socket`, over its
    /// socket.
    pub fn start_or_connect(
        url: Option<&str>,
        cluster_directory: &Path,
        over_unix_socket: bool,
    ) -> BenchResult<PostgresServer> {
        if let Some(url) = url {
            with_client(url, async |client| client.simple_query("SELECT 1").await)
                .map_err(|error| format!("cannot connect to --postgres-url: {error}"))?;
            return Ok(PostgresServer {
                admin_url: url.to_owned(),
                over_unix_socket: false,
                throwaway: None,
            });
        }
        let cluster = ThrowawayCluster::start(cluster_directory.to_path_buf())
            .map_err(|error| format!("cannot start a throwaway PostgreSQL cluster: {error}"))?;
        Ok(PostgresServer {
            admin_url: cluster.url(over_unix_socket),
            over_unix_socket,
            throwaway: Some(cluster),
        })
    }

    /// A new, empty database of this run's own (the store's migrations make its tables when
    /// it is first opened); its URL is the server's with the database's name.
    pub fn create_fresh_database(&self) -> BenchResult<FreshDatabase> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        // Digits and lower-case letters only: the name needs no quoting.
        let name = format!("latchkey_bench_{}_{nanos:x}", std::process::id());
        with_client(&self.admin_url, async |client| {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
        })?;
        Ok(FreshDatabase {
            url: url_with_database(&self.admin_url, &name)?,
            name,
        })
    }

    /// Drops the run's database (closing any connection still open to it).
    pub fn drop_database(&self, database: &FreshDatabase) -> BenchResult<()> {
        with_client(&self.admin_url, async |client| {
            client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    database.name
                ))
                .await
        })
    }

    /// The database's size as PostgreSQL counts it.
    pub fn database_bytes(&self, database: &FreshDatabase) -> BenchResult<u64> {
        let bytes: i64 = with_client(&self.admin_url, async |client| {
            client
                .query_one("SELECT pg_database_size($1)", &[&database.name])
                .await?
                .try_get(0)
        })?;
        Ok(u64::try_from(bytes)?)
    }

    /// The postmaster's pid: the parent of the backend that serves a connection. `None` when
    /// the server is not a process of this machine that /proc shows.
    pub fn postmaster_pid(&self) -> Option<u32> {
        // Read while the connection is open: its backend exits when it closes.
        let parent = with_client(&self.admin_url, async |client| {
            let backend: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await?
                .try_get(0)?;
            Ok(u32::try_from(backend).ok().and_then(parent_pid))
        })
        .ok()??;
        (parent > 1).then_some(parent)
    }

    pub fn facts(&self) -> BenchResult<DatabaseFacts> {
        Ok(DatabaseFacts {
            origin: if self.throwaway.is_some() {
                format!(
                    "a throwaway cluster of the run's own (`initdb`, then `pg_ctl start` with \
                     PostgreSQL's defaults but the port, the socket directory and \
                     `max_connections=200`), reached {}",
                    if self.over_unix_socket {
                        "over its Unix socket (`--postgres-over-unix-socket`)"
                    } else {
                        "over TCP on loopback, as a node on another machine would reach it"
                    }
                )
            } else {
                "the server that `--postgres-url` names, on this machine".to_owned()
            },
            version: self.setting("server_version")?,
            fsync: self.setting("fsync")?,
            synchronous_commit: self.setting("synchronous_commit")?,
            shared_buffers: self.setting("shared_buffers")?,
        })
    }

    /// One setting, as `SHOW` gives it, on a new connection.
    fn setting(&self, name: &str) -> BenchResult<String> {
        with_client(&self.admin_url, async |client| {
            client
                .query_one("SELECT current_setting($1)", &[&name])
                .await?
                .try_get(0)
        })
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(cluster) = self.throwaway.take() {
            cluster.stop("fast");
            *THROWAWAY_CLUSTER
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// Runs `work` with a client connected to `url`, on a runtime of its own.
fn with_client<T>(
    url: &str,
    work: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
) -> BenchResult<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|error| described(&error))?;
        let driver = tokio::spawn(connection);
        let outcome = work(&client).await;
        drop(client);
        let _ = driver.await;
        outcome.map_err(|error| described(&error).into())
    })
}

/// The error with what the server said, which its `Display` leaves out ("db error").
fn described(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(database_error) => format!(
            "PostgreSQL: {} ({})",
            database_error.message(),
            database_error.code().code()
        ),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// `url` (`postgres://user@host:port/database?options`) naming the database `name` instead.
pub fn url_with_database(url: &str, name: &str) -> BenchResult<String> {
    let authority_start = url
        .find("://")
        .map(|index| index + 3)
        .ok_or("--postgres-url must be a URL: postgres://user@host:port/database")?;
    let (without_options, options) = match url.find('?') {
        Some(index) => url.split_at(index),
        None => (url, ""),
    };
    let path_start = without_options
        .get(authority_start..)
        .and_then(|rest| rest.find('/'))
        .map_or(without_options.len(), |index| authority_start + index);
    let authority = without_options
        .get(..path_start)
        .ok_or("--postgres-url has no host")?;
    Ok(format!("{authority}/{name}{options}"))
}

#[cfg(test)]
mod tests {
    use super::url_with_database;

    #[test]
    fn the_database_url_names_the_runs_database_and_keeps_the_rest() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:54329/postgres",
                "postgres://postgres@127.0.0.1:54329/bench_1",
            ),
            (
                "postgres://user:secret@localhost/postgres?sslmode=disable",
                "postgres://user:secret@localhost/bench_1?sslmode=disable",
            ),
            (
                "postgresql://user@localhost:5432",
                "postgresql://user@localhost:5432/bench_1",
            ),
        ];
        for (server, expected) in cases {
            assert_eq!(url_with_database(server, "bench_1").unwrap(), expected);
        }
        assert!(url_with_database("host=localhost user=postgres", "bench_1").is_err());
    }
}
