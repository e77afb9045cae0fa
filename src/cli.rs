//! The command line: `serve`, `check-config` and the admin subcommands. This is where the
//! process binds its listener, reads its environment and installs its signal handlers;
//! everything below takes them as arguments.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::admin::{self, AdminCommand};
use crate::app::{App, PreflightError, password_cost, preflight};
use crate::auth::password::{Password, hash_once};
use crate::config::{Config, FlagOverrides, LogFormat, StoreBackend};
use crate::http::Api;
use crate::model::{PASSWORD_MAX_CHARACTERS, PasswordHashString};
use crate::store::{CopyError, Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "A self-hosted authentication server"
)]
pub struct Cli {
    /// Data directory (holds latchkey.redb).
    #[arg(long, global = true, env = "LATCHKEY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Load and check the configuration, then exit.
    CheckConfig,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage sessions.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write a consistent copy of the store to FILE (through the server when it runs).
    Backup { file: PathBuf },
    /// Replace the store with a backup (the server must be stopped).
    Restore {
        file: PathBuf,
        /// Restore a backup of another install (its store id differs from this store's).
        #[arg(long)]
        allow_other_install: bool,
    },
    /// Move the store: copy it into an empty store of either backend.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy every table of the store `[store]` names (its users, sessions, API tokens,
    /// signing keys, second factors, queued mail...) and its store id into an EMPTY store, so
    /// that a server started on the copy accepts every token made before. A redb store's
    /// server must be stopped first; a PostgreSQL store is read in one snapshot while its
    /// nodes keep running (what they write after the copy starts is not in it).
    Copy {
        /// A PostgreSQL database (postgres://USER@HOST/DATABASE or postgresql://...), or the
        /// path of a new redb file.
        #[arg(long, value_name = "URL_OR_FILE")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new signing key; the old one verifies until its tokens expire. With
    /// `[keys] publish_ahead_seconds`, the new key is published as next and signs later.
    Rotate,
    /// List the signing keys and their statuses.
    List,
    /// Remove a key at once: its tokens stop verifying. Revoking the key that signs makes
    /// the waiting next key (or a new one) sign at once.
    Revoke {
        /// The key's id (k4.pid.…), as `keys list` shows it.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// List a user's live sessions.
    List {
        #[arg(long)]
        email: String,
    },
    /// End one session (--id) or every session (--all) of a user.
    Revoke {
        #[arg(long)]
        email: String,
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an active user.
    Add {
        #[arg(long)]
        email: String,
        /// root, admin or user.
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from standard input (one trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List every user.
    List,
    /// Set a user's password; ends its sessions and API tokens.
    Passwd {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Suspend a user: every credential of it (and of its sub-users) stops working.
    Suspend {
        #[arg(long)]
        email: String,
    },
    /// Make a suspended or pending user active.
    Activate {
        #[arg(long)]
        email: String,
    },
    /// Delete a user with its sub-users, and all their sessions, API tokens, OAuth
    /// identities and emailed links, in one transaction (never the last active root).
    Delete {
        #[arg(long)]
        email: String,
    },
    /// Remove a user's second factors (TOTP, recovery codes and passkeys) after a lost
    /// device; its password alone signs it in again. Works on a running server too.
    MfaReset {
        #[arg(long)]
        email: String,
    },
    /// Change a user's role (root, admin or user); its permissions become the role's.
    Role {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
}

/// Why a command failed: printed as one line, exit code 1.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Start(String),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "latchkey: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli) -> Result<(), CommandError> {
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let flags = FlagOverrides {
        data_dir: cli.data_dir.clone(),
        listen,
    };
    let environment: Vec<(String, String)> = std::env::vars().collect();
    let config = Config::load(cli.config.as_deref(), environment.iter().cloned(), &flags)?;
    match cli.command {
        Command::Serve { .. } => serve(config, cli.config.as_deref()),
        Command::CheckConfig => {
            preflight(&config)?;
            let report = describe_configuration(&config, cli.config.as_deref(), &environment)?;
            let _ = std::io::stdout().write_all(report.as_bytes());
            Ok(())
        }
        Command::Restore { .. } | Command::Backup { .. }
            if config.store.backend == StoreBackend::Postgres =>
        {
            Err(CommandError::Usage(
                "with [store] backend = \"postgres\", back up and restore with PostgreSQL's own tools (pg_dump, pg_restore)".to_owned(),
            ))
        }
        Command::Restore {
            file,
            allow_other_install,
        } => restore(&config, &file, allow_other_install),
        Command::Store {
            command: StoreCommand::Copy { to },
        } => copy_store(&config, &to),
        Command::User { command } => {
            let command = match command {
                UserCommand::Add {
                    email,
                    role,
                    password_stdin,
                } => AdminCommand::UserAdd {
                    email,
                    role,
                    password_hash: new_password_hash(&config, password_stdin)?,
                },
                UserCommand::List => AdminCommand::UserList,
                UserCommand::Passwd {
                    email,
                    password_stdin,
                } => AdminCommand::UserPasswd {
                    email,
                    password_hash: new_password_hash(&config, password_stdin)?,
                },
                UserCommand::Suspend { email } => AdminCommand::UserSuspend { email },
                UserCommand::Activate { email } => AdminCommand::UserActivate { email },
                UserCommand::Role { email, role } => AdminCommand::UserRole { email, role },
                UserCommand::Delete { email } => AdminCommand::UserDelete { email },
                UserCommand::MfaReset { email } => AdminCommand::UserMfaReset { email },
            };
            run_admin(&config, command)
        }
        Command::Session { command } => run_admin(
            &config,
            match command {
                SessionCommand::List { email } => AdminCommand::SessionList { email },
                SessionCommand::Revoke { email, id, all } => {
                    AdminCommand::SessionRevoke { email, id, all }
                }
            },
        ),
        Command::Keys { command } => run_admin(
            &config,
            match command {
                KeysCommand::Rotate => AdminCommand::KeysRotate {
                    publish_ahead_seconds: config.keys.publish_ahead_seconds,
                },
                KeysCommand::List => AdminCommand::KeysList,
                KeysCommand::Revoke { key_id } => AdminCommand::KeysRevoke { key_id },
            },
        ),
        Command::Backup { file } => {
            let socket = admin::socket_path(&config.store.data_dir).map_err(CommandError::Usage)?;
            let reply = admin::backup_from_cli(&socket, || open_redb_store(&config), &file)
                .map_err(CommandError::Start)?;
            print_reply(reply)
        }
    }
}

/// What `check-config` prints: which file and which `LATCHKEY_*` variables were read (names
/// only: a value may be a secret), then every effective setting, one `section.key = value`
/// line each, with secrets masked.
fn describe_configuration(
    config: &Config,
    config_file: Option<&std::path::Path>,
    environment: &[(String, String)],
) -> Result<String, CommandError> {
    let mut report = String::from("configuration ok\n");
    match config_file {
        Some(path) => {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            report.push_str(&format!("config file: {}\n", shown.display()));
        }
        None => report.push_str(
            "config file: none (neither --config nor LATCHKEY_CONFIG is set; built-in defaults)\n",
        ),
    }
    let mut variable_names: Vec<&str> = environment
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with("LATCHKEY_"))
        .collect();
    variable_names.sort_unstable();
    if variable_names.is_empty() {
        report.push_str("environment variables read: none\n");
    } else {
        report.push_str(&format!(
            "environment variables read: {}\n",
            variable_names.join(", ")
        ));
    }
    report.push_str("effective settings (secrets shown as \"***\"):\n");
    let settings = serde_json::to_value(config)
        .map_err(|error| CommandError::Start(format!("cannot describe the settings: {error}")))?;
    describe_setting("", &settings, &mut report);
    Ok(report)
}

/// One `name = value` line per leaf; tables nest with `.`, arrays of tables with `[index]`.
fn describe_setting(name: &str, value: &serde_json::Value, report: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(entries) => {
            for (key, entry) in entries {
                let nested = if name.is_empty() {
                    key.clone()
                } else {
                    format!("{name}.{key}")
                };
                describe_setting(&nested, entry, report);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (index, item) in items.iter().enumerate() {
                describe_setting(&format!("{name}[{index}]"), item, report);
            }
        }
        Value::Null => report.push_str(&format!("{name} = (unset)\n")),
        other => report.push_str(&format!("{name} = {other}\n")),
    }
}

/// Sends an admin command to the running server, or runs it on the store; prints its
/// output; a refused command is exit code 1. On PostgreSQL the command always runs on the
/// database itself, which every node reads: no node's socket is needed.
fn run_admin(config: &Config, command: AdminCommand) -> Result<(), CommandError> {
    let reply = match config.store.backend {
        StoreBackend::Postgres => admin::run_on_store(open_store(config), command),
        StoreBackend::Redb => {
            let socket = admin::socket_path(&config.store.data_dir).map_err(CommandError::Usage)?;
            admin::run_from_cli(&socket, || open_redb_store(config), command)
        }
    }
    .map_err(CommandError::Start)?;
    print_reply(reply)
}

/// Prints a command's output; a refused command is exit code 1.
fn print_reply(reply: admin::AdminReply) -> Result<(), CommandError> {
    if reply.ok {
        let _ = std::io::stdout().write_all(reply.output.as_bytes());
        Ok(())
    } else {
        Err(CommandError::Usage(reply.output))
    }
}

/// Opens the store `[store] backend` names.
async fn open_store(config: &Config) -> Result<Store, StoreError> {
    match (&config.store.backend, &config.store.postgres_url) {
        (StoreBackend::Postgres, Some(url)) => {
            Store::open_postgres(url.expose_secret(), config.store.postgres_pool_size).await
        }
        _ => open_redb_store(config),
    }
}

/// Makes the data directory (if missing) and sets it to 0700, as `RedbStore::open` does for
/// the redb file's directory.
fn close_data_directory(data_dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |error: std::io::Error| format!("{}: {error}", data_dir.display());
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)
}

/// Opens the redb file with its cache sized for the file as it is now (`[store]
/// cache_size_mib`, else from the file's size).
fn open_redb_store(config: &Config) -> Result<Store, StoreError> {
    let path = config.store.database_path();
    let file_bytes = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
    Store::open_redb(&path, config.store.cache_size_bytes(file_bytes))
}

/// `latchkey restore FILE`: with the server stopped, copies the backup to a staged file
/// (0600 from its creation), checks that it opens and holds usable signing keys and, when a
/// store exists here, that it is a backup of this install (the same store id) unless
/// `allow_other_install`; then replaces the store with it by rename and prints the signing
/// keys that now sign and verify.
fn restore(
    config: &Config,
    file: &std::path::Path,
    allow_other_install: bool,
) -> Result<(), CommandError> {
    let target = config.store.database_path();
    let current_store_existed = target.exists();
    // Holding the current store proves no server runs on it during the swap.
    let held = match Store::open_redb(&target, 4 * 1024 * 1024) {
        Ok(store) => Some(store),
        Err(StoreError::Locked { path }) => {
            return Err(CommandError::Usage(format!(
                "{path} is held by a running server; stop it before restoring"
            )));
        }
        Err(StoreError::Io { .. }) => None,
        Err(other) => return Err(CommandError::Store(other)),
    };
    let current_store_id = held
        .as_ref()
        .filter(|_| current_store_existed)
        .map(|store| store.store_id().to_owned());
    let staged = target.with_extension("redb.restoring");
    let _ = std::fs::remove_file(&staged);
    let refuse = |message: String| {
        let _ = std::fs::remove_file(&staged);
        CommandError::Usage(message)
    };
    copy_to_private_file(
        file,
        &staged,
        owner_for_a_root_restore(&config.store.data_dir),
    )
    .map_err(refuse)?;
    let summary = Store::check_backup(&staged).map_err(|error| {
        refuse(format!(
            "{} is not a usable backup: {error}",
            file.display()
        ))
    })?;
    if let Err(error) = crate::auth::signed_token::KeyRing::from_stored(&summary.signing_keys) {
        return Err(refuse(format!(
            "{} is not a usable backup: its signing keys: {error}",
            file.display()
        )));
    }
    if let Some(current_store_id) = current_store_id
        && !allow_other_install
        && summary.store_id.as_deref() != Some(current_store_id.as_str())
    {
        return Err(refuse(match summary.store_id {
            Some(backup_store_id) => format!(
                "{} is a backup of another install (store id {backup_store_id}, this store's is {current_store_id}); pass --allow-other-install to restore it anyway",
                file.display()
            ),
            None => format!(
                "{} has no store id (it was written by an older build), so it cannot be shown to be a backup of this install (store id {current_store_id}); pass --allow-other-install to restore it anyway",
                file.display()
            ),
        }));
    }
    drop(held);
    std::fs::rename(&staged, &target).map_err(|error| {
        CommandError::Usage(format!("cannot replace {}: {error}", target.display()))
    })?;
    let _ = write!(
        std::io::stdout(),
        "restored {} from {}\nsigning keys now in use (id, status, created):\n{}",
        target.display(),
        file.display(),
        admin::describe_signing_keys(&summary.signing_keys, crate::model::now_unix_seconds())
    );
    Ok(())
}

/// `latchkey store copy --to TARGET`: opens the configured store (refused while a server
/// holds its redb file) and the target (a `postgres://` or `postgresql://` URL is a
/// PostgreSQL database, migrated; anything else a redb file, made 0600), copies every row
/// into it (refused, with nothing written, when it holds any), and prints a line as each
/// table ends and, for a large table, once a second while it copies.
fn copy_store(config: &Config, to: &str) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| CommandError::Start(error.to_string()))?;
    if config.store.backend == StoreBackend::Redb && !config.store.database_path().exists() {
        // Opening would make an empty store here, and copy nothing.
        return Err(CommandError::Usage(format!(
            "there is no store at {}; name its data directory with --data-dir or LATCHKEY_DATA_DIR",
            config.store.database_path().display()
        )));
    }
    runtime.block_on(async {
        let source = open_store(config).await.map_err(|error| match error {
            StoreError::Locked { path } => CommandError::Usage(format!(
                "{path} is held by a running server; stop it before copying (a PostgreSQL store can be copied while its nodes run)"
            )),
            other => CommandError::Store(other),
        })?;
        let source_name = match config.store.backend {
            StoreBackend::Postgres => "the PostgreSQL database".to_owned(),
            StoreBackend::Redb => format!("{}", config.store.database_path().display()),
        };
        let target_is_postgres = to.starts_with("postgres://") || to.starts_with("postgresql://");
        let target_name;
        let mut made_target_file = None;
        let target = if target_is_postgres {
            target_name = describe_postgres_url(to);
            Store::open_postgres(to, 2).await.map_err(|error| {
                CommandError::Start(format!("cannot open {target_name}: {error}"))
            })?
        } else {
            let path = std::path::Path::new(to);
            target_name = path.display().to_string();
            if config.store.backend == StoreBackend::Redb
                && path.exists()
                && std::fs::canonicalize(path).ok()
                    == std::fs::canonicalize(config.store.database_path()).ok()
            {
                return Err(CommandError::Usage(format!(
                    "{target_name} is the store being copied; name a new file"
                )));
            }
            if !path.exists() {
                made_target_file = Some(path.to_path_buf());
            }
            Store::open_redb(path, 64 * 1024 * 1024).map_err(|error| match error {
                StoreError::Locked { path } => CommandError::Usage(format!(
                    "{path} is held by a running server; copy only into a store no server uses"
                )),
                other => CommandError::Store(other),
            })?
        };
        let mut out = std::io::stdout();
        let header = format!(
            "copying store {} from {source_name} to {target_name}",
            source.store_id()
        );
        let mut header = Some(header);
        let started = std::time::Instant::now();
        let mut last_line = started;
        let copied = source
            .copy_into(&target, |progress| {
                // Once the target is found empty: a refusal prints only itself.
                if let Some(header) = header.take() {
                    let _ = writeln!(out, "{header}");
                }
                let rows = |count: u64| match count {
                    1 => "1 row".to_owned(),
                    count => format!("{count} rows"),
                };
                let left_out = match progress.rows_skipped {
                    0 => String::new(),
                    skipped => format!(
                        ", {} left out (they belong to a user or session the store no longer holds)",
                        rows(skipped)
                    ),
                };
                if progress.finished {
                    let _ = writeln!(
                        out,
                        "{}: {} copied{left_out}",
                        progress.table.name(),
                        rows(progress.rows_copied)
                    );
                    last_line = std::time::Instant::now();
                } else if last_line.elapsed() >= std::time::Duration::from_secs(1) {
                    let _ = writeln!(
                        out,
                        "{}: {} copied so far{left_out}",
                        progress.table.name(),
                        rows(progress.rows_copied)
                    );
                    last_line = std::time::Instant::now();
                }
            })
            .await;
        drop(target);
        match copied {
            Ok(summary) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "copied {} rows in {:.1} s; {target_name} now holds store {} (start the servers on it with [store] {})",
                    summary.rows_copied(),
                    started.elapsed().as_secs_f64(),
                    summary.store_id,
                    if target_is_postgres {
                        "backend = \"postgres\" and postgres_url"
                    } else {
                        "backend = \"redb\", the file as latchkey.redb in the data directory"
                    }
                );
                Ok(())
            }
            Err(refusal @ CopyError::TargetNotEmpty { .. }) => Err(CommandError::Usage(format!(
                "{refusal} (a new PostgreSQL database, or a path with no file); nothing was written to {target_name}"
            ))),
            Err(failure) => {
                let left = match made_target_file {
                    Some(path) if std::fs::remove_file(&path).is_ok() => {
                        format!("{} was removed", path.display())
                    }
                    _ => format!(
                        "{target_name} holds what was written before the failure: copy into a new one"
                    ),
                };
                Err(CommandError::Start(format!("the copy stopped: {failure}; {left}")))
            }
        }
    })
}

/// A PostgreSQL URL as it may be shown: without its password.
fn describe_postgres_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "the PostgreSQL database".to_owned(),
    }
}

/// Root restoring for a server that runs as another user (the systemd unit's): the restored
/// store must belong to the data directory's owner, or that server could not open it. The
/// owner (uid, gid) to give the staged copy, if any.
fn owner_for_a_root_restore(data_dir: &std::path::Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let directory = std::fs::metadata(data_dir).ok()?;
    (rustix::process::getuid().is_root() && directory.uid() != 0)
        .then(|| (directory.uid(), directory.gid()))
}

/// Copies `source` to a new file `staged` that is 0600 from its creation (never readable by
/// others, not even for a moment), owned by `owner` if given, and flushes it to disk. The
/// owner is set through the new file's own handle: the data directory may belong to another
/// user, who could put a link in the staged copy's place, and a change of owner by path
/// would follow it.
fn copy_to_private_file(
    source: &std::path::Path,
    staged: &std::path::Path,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut reader = std::fs::File::open(source)
        .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(staged)
        .map_err(|error| format!("cannot create {}: {error}", staged.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&writer, Some(uid), Some(gid)).map_err(|error| {
            format!(
                "cannot give {} to the data directory's owner: {error}",
                staged.display()
            )
        })?;
    }
    std::io::copy(&mut reader, &mut writer)
        .map_err(|error| format!("cannot copy {}: {error}", source.display()))?;
    writer
        .sync_all()
        .map_err(|error| format!("cannot write {}: {error}", staged.display()))
}

/// Reads and hashes a new password in this process, so that it never crosses the socket.
fn new_password_hash(
    config: &Config,
    from_stdin: bool,
) -> Result<PasswordHashString, CommandError> {
    let password = read_new_password(from_stdin, config.password.min_length)?;
    hash_once(&password, password_cost(config))
        .map_err(|error| CommandError::Start(error.to_string()))
}

fn init_logging(config: &Config) {
    let level = config
        .log
        .level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// Raises the soft open-files limit to the hard one: every connection is a descriptor.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(limit = ?limit.maximum, "raised the open-files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-files limit"),
    }
}

fn serve(config: Config, config_file: Option<&std::path::Path>) -> Result<(), CommandError> {
    // Before anything is touched: a refused start leaves no data directory behind.
    preflight(&config)?;
    init_logging(&config);
    raise_open_files_limit();
    // Where the data is, for the start line: the file, or the backend (never the URL, which
    // may carry a password).
    let data = match config.store.backend {
        StoreBackend::Redb => config.store.database_path().display().to_string(),
        StoreBackend::Postgres => "postgres ([store] postgres_url)".to_owned(),
    };
    let socket_path = admin::socket_path(&config.store.data_dir).map_err(CommandError::Start)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("latchkey-runtime")
        .build()
        .map_err(|error| CommandError::Start(error.to_string()))?;
    // The store first: holding the redb file proves no other server uses this data dir, so
    // a socket file left behind is stale and may go.
    let store = runtime.block_on(open_store(&config))?;
    // On redb the store's open closed the directory; on PostgreSQL it still holds the admin
    // socket and the outbox's mail (API.md 15.19: 0700 at every start, on either backend).
    if config.store.backend == StoreBackend::Postgres {
        close_data_directory(&config.store.data_dir).map_err(CommandError::Start)?;
    }
    let listen = config.server.listen;
    let config_file = config_file
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "none".to_owned());
    let app = Arc::new(
        runtime
            .block_on(App::new(config, store))
            .map_err(|error| CommandError::Start(error.to_string()))?,
    );
    let api = Api::new(Arc::clone(&app)).map_err(|error| CommandError::Start(error.to_string()))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| CommandError::Start(format!("cannot listen on {listen}: {error}")))?;
        let bound = listener
            .local_addr()
            .map_err(|error| CommandError::Start(error.to_string()))?;
        let metrics_listener = match app.config.metrics.listen {
            Some(metrics_listen) => Some(
                tokio::net::TcpListener::bind(metrics_listen)
                    .await
                    .map_err(|error| {
                        CommandError::Start(format!(
                            "cannot listen on {metrics_listen} (metrics.listen): {error}"
                        ))
                    })?,
            ),
            None => None,
        };
        let metrics_bound = metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .map(|address| address.to_string());
        let admin_listener = admin::bind_socket(&socket_path).map_err(CommandError::Start)?;
        let admin_task = tokio::spawn(admin::serve_socket(admin_listener, Arc::clone(&app)));
        tracing::info!(
            listen = %bound,
            issuer = %app.issuer,
            data = %data,
            config_file,
            admin_socket = %socket_path.display(),
            metrics = %metrics_bound.as_deref().unwrap_or("off"),
            "latchkey serving"
        );
        let api = Arc::new(api);
        // The metrics listener serves until the API has drained, then stops with it.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = metrics_listener.map(|metrics_listener| {
            tokio::spawn(crate::server::run_metrics(
                metrics_listener,
                Arc::clone(&api),
                async move {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        let background_tasks = app.start_background_tasks();
        crate::server::run(listener, api, background_tasks.stop_when(shutdown_signal())).await;
        drop(stop_metrics);
        if let Some(metrics_task) = metrics_task {
            let _ = metrics_task.await;
        }
        admin_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        tracing::info!("latchkey stopped");
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; draining"),
    }
}

/// Reads the new password: from standard input (exactly one trailing newline stripped), or
/// from a no-echo prompt on a terminal. Never from an argument.
fn read_new_password(from_stdin: bool, min_length: usize) -> Result<Password, CommandError> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| CommandError::Usage(format!("cannot read standard input: {error}")))?;
        if text.ends_with('\n') {
            text.pop();
        }
        text
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(CommandError::Usage(
                "no terminal to prompt on; pass --password-stdin".to_owned(),
            ));
        }
        let first = rpassword::prompt_password("Password: ")
            .map_err(|error| CommandError::Usage(error.to_string()))?;
        let second = rpassword::prompt_password("Again: ")
            .map_err(|error| CommandError::Usage(error.to_string()))?;
        if first != second {
            return Err(CommandError::Usage("the passwords differ".to_owned()));
        }
        first
    };
    let length = password.chars().count();
    if length < min_length || length > PASSWORD_MAX_CHARACTERS {
        return Err(CommandError::Usage(format!(
            "the password must be {min_length} to {PASSWORD_MAX_CHARACTERS} characters"
        )));
    }
    Ok(Password::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_config_names_its_sources_and_masks_every_secret() {
        let mut config = Config::default();
        config.email.smtp_password =
            Some(crate::model::Secret::new("smtp-secret-value".to_owned()));
        config.captcha.secret = Some(crate::model::Secret::new("captcha-secret-value".to_owned()));
        config
            .oauth
            .providers
            .push(crate::config::OAuthProviderConfig {
                name: "idp".to_owned(),
                client_id: Some("latchkey".to_owned()),
                client_secret: Some(crate::model::Secret::new("client-secret-value".to_owned())),
                ..Default::default()
            });
        let environment = vec![
            (
                "LATCHKEY_EMAIL__SMTP_PASSWORD".to_owned(),
                "smtp-secret-value".to_owned(),
            ),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let report = describe_configuration(
            &config,
            Some(std::path::Path::new("/etc/latchkey/config.toml")),
            &environment,
        )
        .unwrap();
        assert!(!report.contains("secret-value"), "{report}");
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret-value"), "{printed}");
        assert!(printed.contains("smtp_password: Some(***)"), "{printed}");
        for line in [
            "config file: /etc/latchkey/config.toml",
            "environment variables read: LATCHKEY_EMAIL__SMTP_PASSWORD\n",
            "email.smtp_password = \"***\"",
            "captcha.secret = \"***\"",
            "oauth.providers[0].client_secret = \"***\"",
            "oauth.providers[0].client_id = \"latchkey\"",
            "email.smtp_username = (unset)",
            "server.listen = \"127.0.0.1:8080\"",
        ] {
            assert!(report.contains(line), "{line} in {report}");
        }
    }
}
