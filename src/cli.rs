//! The command line: `serve`, `check-config` and the admin subcommands. This is where the
//! process binds its listener, reads its environment and installs its signal handlers;
//! everything below takes them as arguments.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{App, password_cost};
use crate::auth::PASSWORD_MAX_CHARACTERS;
use crate::auth::email::EmailAddress;
use crate::auth::password::{Password, hash_once};
use crate::config::{Config, FlagOverrides, LogFormat};
use crate::http::Api;
use crate::model::{NewUser, Role, SessionId, Status, now_unix_seconds};
use crate::store::{SessionsToEnd, Store, StoreError};

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
    let config = Config::load(cli.config.as_deref(), std::env::vars(), &flags)?;
    match cli.command {
        Command::Serve { .. } => serve(config),
        Command::CheckConfig => {
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "configuration ok");
            Ok(())
        }
        Command::User { command } => match command {
            UserCommand::Add {
                email,
                role,
                password_stdin,
            } => add_user(&config, &email, &role, password_stdin),
            UserCommand::List => list_users(&config),
            UserCommand::Passwd {
                email,
                password_stdin,
            } => set_password(&config, &email, password_stdin),
            UserCommand::Suspend { email } => change_user(&config, &email, "suspended", |user| {
                user.status = Status::Suspended
            }),
            UserCommand::Activate { email } => change_user(&config, &email, "activated", |user| {
                user.status = Status::Active
            }),
            UserCommand::Role { email, role } => {
                let role = Role::from_name(&role)
                    .filter(|role| *role != Role::Sub)
                    .ok_or_else(|| {
                        CommandError::Usage("--role must be root, admin or user".into())
                    })?;
                let store = open_store_for_admin(&config)?;
                if user_by_email(&store, &email)?.role == Role::Sub {
                    return Err(CommandError::Usage(
                        "a sub-user's role cannot change; its parent manages it".into(),
                    ));
                }
                drop(store);
                change_user(&config, &email, "given a new role", move |user| {
                    user.role = role;
                    user.permissions = role.default_permissions();
                })
            }
        },
        Command::Session { command } => match command {
            SessionCommand::List { email } => list_sessions(&config, &email),
            SessionCommand::Revoke { email, id, all } => revoke_sessions(&config, &email, id, all),
        },
    }
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

fn serve(config: Config) -> Result<(), CommandError> {
    init_logging(&config);
    let database_path = config.store.database_path();
    let store = Store::open(&database_path, config.store.cache_size_mib * 1024 * 1024)?;
    let listen = config.server.listen;
    let app = App::new(config, store).map_err(|error| CommandError::Start(error.to_string()))?;
    let api = Api::new(Arc::new(app)).map_err(|error| CommandError::Start(error.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("latchkey-runtime")
        .build()
        .map_err(|error| CommandError::Start(error.to_string()))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| CommandError::Start(format!("cannot listen on {listen}: {error}")))?;
        let bound = listener
            .local_addr()
            .map_err(|error| CommandError::Start(error.to_string()))?;
        tracing::info!(
            listen = %bound,
            data = %database_path.display(),
            "latchkey serving"
        );
        crate::server::run(listener, Arc::new(api), shutdown_signal()).await;
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

fn open_store_for_admin(config: &Config) -> Result<Store, CommandError> {
    Store::open(
        &config.store.database_path(),
        config.store.cache_size_mib * 1024 * 1024,
    )
    .map_err(|error| match error {
        StoreError::Locked { path } => {
            CommandError::Start(format!("{path} is held by a running server; stop it first"))
        }
        other => CommandError::Store(other),
    })
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

fn add_user(
    config: &Config,
    email: &str,
    role_name: &str,
    password_stdin: bool,
) -> Result<(), CommandError> {
    let email = EmailAddress::parse(email)
        .ok_or_else(|| CommandError::Usage(format!("{email:?} is not an email address")))?;
    let role = Role::from_name(role_name)
        .filter(|role| *role != Role::Sub)
        .ok_or_else(|| CommandError::Usage("--role must be root, admin or user".to_owned()))?;
    let password = read_new_password(password_stdin, config.password.min_length)?;
    let store = open_store_for_admin(config)?;
    let hash = hash_once(&password, password_cost(config))
        .map_err(|error| CommandError::Start(error.to_string()))?;
    let user = store
        .insert_user(
            NewUser {
                email: email.as_given,
                normalized_email: email.normalized,
                password_hash: Some(hash),
                role,
                status: Status::Active,
                parent_id: None,
                first_name: None,
                last_name: None,
                permissions: role.default_permissions(),
            },
            now_unix_seconds(),
        )
        .map_err(|error| match error {
            StoreError::EmailTaken => CommandError::Usage("that email address is taken".into()),
            other => CommandError::Store(other),
        })?;
    let _ = writeln!(
        std::io::stdout(),
        "created user {} {} ({})",
        user.id,
        user.email,
        user.role.name()
    );
    Ok(())
}

fn list_users(config: &Config) -> Result<(), CommandError> {
    let store = open_store_for_admin(config)?;
    let mut stdout = std::io::stdout();
    for user in store.all_users()? {
        let _ = writeln!(
            stdout,
            "{}\t{}\t{}\t{}",
            user.id,
            user.email,
            user.role.name(),
            user.status.name()
        );
    }
    Ok(())
}

fn user_by_email(store: &Store, email: &str) -> Result<crate::model::User, CommandError> {
    let normalized = EmailAddress::parse(email)
        .ok_or_else(|| CommandError::Usage(format!("{email:?} is not an email address")))?
        .normalized;
    store
        .user_by_normalized_email(&normalized)?
        .ok_or_else(|| CommandError::Usage(format!("no user {normalized}")))
}

fn set_password(config: &Config, email: &str, password_stdin: bool) -> Result<(), CommandError> {
    let password = read_new_password(password_stdin, config.password.min_length)?;
    let store = open_store_for_admin(config)?;
    let user = user_by_email(&store, email)?;
    let hash = hash_once(&password, password_cost(config))
        .map_err(|error| CommandError::Start(error.to_string()))?;
    store.change_password(
        user.id,
        &hash,
        SessionsToEnd::None,
        false,
        now_unix_seconds(),
    )?;
    let _ = writeln!(std::io::stdout(), "password set for {}", user.email);
    Ok(())
}

fn change_user(
    config: &Config,
    email: &str,
    what: &str,
    change: impl FnOnce(&mut crate::model::User),
) -> Result<(), CommandError> {
    let store = open_store_for_admin(config)?;
    let user = user_by_email(&store, email)?;
    let updated = store
        .update_user(user.id, now_unix_seconds(), change)
        .map_err(|error| match error {
            StoreError::LastActiveRoot => CommandError::Usage(
                "conflict: the last active root cannot be suspended, demoted or deleted".into(),
            ),
            other => CommandError::Store(other),
        })?
        .ok_or_else(|| CommandError::Usage(format!("no user {email}")))?;
    let _ = writeln!(
        std::io::stdout(),
        "{} {what}: role {}, status {}",
        updated.email,
        updated.role.name(),
        updated.status.name()
    );
    Ok(())
}

fn list_sessions(config: &Config, email: &str) -> Result<(), CommandError> {
    let store = open_store_for_admin(config)?;
    let user = user_by_email(&store, email)?;
    let mut stdout = std::io::stdout();
    for session in store.live_sessions_of_user(user.id, now_unix_seconds())? {
        let _ = writeln!(
            stdout,
            "{}\tcreated {}\texpires {}\t{}\t{}",
            session.id,
            crate::rfc3339::format_rfc3339(session.created),
            crate::rfc3339::format_rfc3339(session.expire),
            session.remote_ip,
            session.ua_type
        );
    }
    Ok(())
}

fn revoke_sessions(
    config: &Config,
    email: &str,
    id: Option<String>,
    all: bool,
) -> Result<(), CommandError> {
    let store = open_store_for_admin(config)?;
    let user = user_by_email(&store, email)?;
    let mut stdout = std::io::stdout();
    if all {
        let count = store.end_all_sessions_of_user(user.id)?;
        let _ = writeln!(stdout, "ended {count} sessions of {}", user.email);
        return Ok(());
    }
    let text = id.unwrap_or_default();
    let session_id = SessionId::parse_canonical(&text)
        .ok_or_else(|| CommandError::Usage(format!("{text:?} is not a session id")))?;
    if !store.end_session_of_user(user.id, session_id)? {
        return Err(CommandError::Usage(format!(
            "{} has no session {text}",
            user.email
        )));
    }
    let _ = writeln!(stdout, "ended session {text} of {}", user.email);
    Ok(())
}
