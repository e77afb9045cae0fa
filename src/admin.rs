//! Admin commands and the admin socket. A command runs the same way whether the CLI holds
//! the store itself (server stopped) or hands the command to a running server over the Unix
//! socket in the data directory (mode 0600, peer uid checked): `execute` is the one
//! implementation, so the output is the same either way. Passwords never cross the socket:
//! the CLI hashes them first.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::app::App;
use crate::auth::signed_token::KeyRing;
use crate::auth::signing_keys::{self, KeyRotation};
use crate::model::email_address::EmailAddress;
use crate::model::{
    NewUser, PasswordHashString, Role, SessionId, Status, UnixSeconds, User, now_unix_seconds,
};
use crate::rfc3339::format_rfc3339;
use crate::store::{SessionsToEnd, Store, StoreError};

/// The socket's file name inside the data directory.
pub const SOCKET_FILE_NAME: &str = "latchkey.sock";
/// `sun_path` holds 108 bytes with its terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;
/// A request line is small; anything longer is refused.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long a streamed backup waits for a reader that has stopped reading.
const BACKUP_STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long the CLI keeps trying the socket when the store is held by a starting server.
const LOCKED_RETRY: Duration = Duration::from_secs(5);

/// One admin command, as it travels over the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum AdminCommand {
    UserAdd {
        email: String,
        role: String,
        #[serde(
            serialize_with = "serialize_password_hash",
            deserialize_with = "deserialize_password_hash"
        )]
        password_hash: PasswordHashString,
    },
    UserList,
    UserPasswd {
        email: String,
        #[serde(
            serialize_with = "serialize_password_hash",
            deserialize_with = "deserialize_password_hash"
        )]
        password_hash: PasswordHashString,
    },
    UserSuspend {
        email: String,
    },
    UserActivate {
        email: String,
    },
    UserRole {
        email: String,
        role: String,
    },
    SessionList {
        email: String,
    },
    SessionRevoke {
        email: String,
        id: Option<String>,
        all: bool,
    },
    KeysRotate {
        /// The CLI's `[keys] publish_ahead_seconds`, used when it runs on the store itself; a
        /// running server uses its own.
        #[serde(default)]
        publish_ahead_seconds: u64,
    },
    KeysList,
    KeysRevoke {
        key_id: String,
    },
    /// The server writes a consistent copy into a file of its own (unlinked at once) and
    /// streams its bytes after the reply line (`attachment_bytes`); the CLI writes the
    /// operator's file, so the server needs no write access to where the copy goes.
    /// On the wire `backup-stream`: a CLI of an older build (which sent `backup` with a path
    /// for the server to write) gets "malformed", never an empty success.
    #[serde(rename = "backup-stream")]
    Backup,
    /// Deletes a user with its sub-users, and all their sessions, API tokens, OAuth
    /// identities and emailed links, in one transaction.
    UserDelete {
        email: String,
    },
    /// Removes a user's second factors (TOTP, pending or on, and recovery codes), for a lost
    /// device: its password alone signs it in again.
    UserMfaReset {
        email: String,
    },
}

/// A password hash crosses the socket as its PHC text; its type keeps it out of `Debug`.
fn serialize_password_hash<S: serde::Serializer>(
    hash: &PasswordHashString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(hash.expose_secret())
}

fn deserialize_password_hash<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<PasswordHashString, D::Error> {
    String::deserialize(deserializer).map(PasswordHashString::new)
}

/// The answer: what to print, and whether the command succeeded.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminReply {
    pub ok: bool,
    pub output: String,
    /// How many raw bytes follow the reply line on the socket (a streamed backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_bytes: Option<u64>,
}

impl AdminReply {
    fn success(output: String) -> AdminReply {
        AdminReply {
            ok: true,
            output,
            attachment_bytes: None,
        }
    }

    fn failure(output: impl Into<String>) -> AdminReply {
        AdminReply {
            ok: false,
            output: output.into(),
            attachment_bytes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The socket's path for a data directory, refused when too long for a Unix socket.
pub fn socket_path(data_dir: &Path) -> Result<PathBuf, String> {
    let path = data_dir.join(SOCKET_FILE_NAME);
    if path.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
        return Err(format!(
            "the admin socket path {} is {} bytes, over the {MAX_SOCKET_PATH_BYTES} a Unix socket allows; use a shorter --data-dir",
            path.display(),
            path.as_os_str().len()
        ));
    }
    Ok(path)
}

/// Runs a command against the store; with `app` (inside the server) key changes also
/// reload the live key ring.
pub async fn execute(store: &Store, app: Option<&App>, command: AdminCommand) -> AdminReply {
    match run(store, app, command).await {
        Ok(output) => AdminReply::success(output),
        Err(AdminError::Refused(message)) => AdminReply::failure(message),
        Err(AdminError::Store(StoreError::LastActiveRoot)) => AdminReply::failure(
            "conflict: the last active root cannot be suspended, demoted or deleted",
        ),
        Err(AdminError::Store(error)) => AdminReply::failure(error.to_string()),
    }
}

fn refused(message: impl Into<String>) -> AdminError {
    AdminError::Refused(message.into())
}

async fn user_by_email(store: &Store, email: &str) -> Result<User, AdminError> {
    // An account an older build accepted under a key today's rule refuses stays reachable,
    // so the operator can suspend or inspect it.
    let normalized = EmailAddress::lookup_key(email);
    store
        .user_by_normalized_email(&normalized)
        .await?
        .ok_or_else(|| refused(format!("no user {normalized}")))
}

fn role_from_flag(name: &str) -> Result<Role, AdminError> {
    Role::from_name(name)
        .filter(|role| *role != Role::Sub)
        .ok_or_else(|| refused("--role must be root, admin or user"))
}

fn audit(event: &str, user: &User) {
    tracing::info!(target: "latchkey::audit", event, user_id = user.id, source = "admin");
}

async fn run(
    store: &Store,
    app: Option<&App>,
    command: AdminCommand,
) -> Result<String, AdminError> {
    // The server's clock; the CLI, working on the store with no server, reads the system's.
    let now = app.map_or_else(now_unix_seconds, |app| app.clock.now_unix_seconds());
    match command {
        AdminCommand::UserAdd {
            email,
            role,
            password_hash,
        } => {
            let address = EmailAddress::parse(&email).map_err(|problem| {
                refused(format!(
                    "{email:?} is not an acceptable email address: it {problem}"
                ))
            })?;
            let role = role_from_flag(&role)?;
            let new_user = NewUser {
                password_hash: Some(password_hash),
                // The operator vouches for the address.
                email_verified: true,
                ..NewUser::new(address, role, Status::Active)
            };
            let user = store
                .insert_user(new_user, now)
                .await
                .map_err(|error| match error {
                    StoreError::EmailTaken => refused("that email address is taken"),
                    other => AdminError::Store(other),
                })?;
            audit("user-created", &user);
            Ok(format!(
                "created user {} {} ({})\n",
                user.id,
                user.email,
                user.role.name()
            ))
        }
        AdminCommand::UserList => Ok(store
            .all_users()
            .await?
            .iter()
            .map(|user| {
                format!(
                    "{}\t{}\t{}\t{}\n",
                    user.id,
                    user.email,
                    user.role.name(),
                    user.status.name()
                )
            })
            .collect()),
        AdminCommand::UserPasswd {
            email,
            password_hash,
        } => {
            let user = user_by_email(store, &email).await?;
            // An operator resets a password that may be known to someone else: end everything.
            store
                .change_password(None, user.id, &password_hash, SessionsToEnd::All, true, now)
                .await?;
            audit("password-reset", &user);
            Ok(format!(
                "password set for {}; its sessions and API tokens have ended\n",
                user.email
            ))
        }
        AdminCommand::UserSuspend { email } => {
            change_user(store, now, &email, "suspended", |user| {
                user.status = Status::Suspended
            })
            .await
        }
        AdminCommand::UserActivate { email } => {
            change_user(store, now, &email, "activated", |user| {
                user.status = Status::Active
            })
            .await
        }
        AdminCommand::UserRole { email, role } => {
            let role = role_from_flag(&role)?;
            if user_by_email(store, &email).await?.role == Role::Sub {
                return Err(refused(
                    "a sub-user's role cannot change; its parent manages it",
                ));
            }
            change_user(store, now, &email, "given a new role", move |user| {
                user.role = role;
                user.permissions = role.default_permissions();
            })
            .await
        }
        AdminCommand::SessionList { email } => {
            let user = user_by_email(store, &email).await?;
            Ok(store
                .live_sessions_of_user(user.id, now)
                .await?
                .iter()
                .map(|session| {
                    format!(
                        "{}\tcreated {}\texpires {}\t{}\t{}\n",
                        session.id,
                        format_rfc3339(session.created),
                        format_rfc3339(session.expire),
                        session.remote_ip,
                        session.ua_type
                    )
                })
                .collect())
        }
        AdminCommand::SessionRevoke { email, id, all } => {
            let user = user_by_email(store, &email).await?;
            if all {
                let count = store.end_all_sessions_of_user(user.id).await?;
                audit("sessions-ended", &user);
                return Ok(format!("ended {count} sessions of {}\n", user.email));
            }
            let text = id.unwrap_or_default();
            let session_id = SessionId::parse_canonical(&text)
                .ok_or_else(|| refused(format!("{text:?} is not a session id")))?;
            if !store.end_session_of_user(user.id, session_id).await? {
                return Err(refused(format!("{} has no session {text}", user.email)));
            }
            audit("session-ended", &user);
            Ok(format!("ended session {text} of {}\n", user.email))
        }
        AdminCommand::KeysRotate {
            publish_ahead_seconds,
        } => {
            let rotation = match app {
                Some(app) => app.rotate_signing_key().await,
                None => signing_keys::rotate_signing_key(store, publish_ahead_seconds, now).await,
            }
            .map_err(|error| refused(error.to_string()))?;
            match rotation {
                KeyRotation::Active { key_id } => {
                    tracing::info!(target: "latchkey::audit", event = "key-rotated", key_id, source = "admin");
                    Ok(format!("new active key {key_id}\n"))
                }
                KeyRotation::Next {
                    key_id,
                    activates_at,
                } => {
                    tracing::info!(target: "latchkey::audit", event = "key-published", key_id, activates_at, source = "admin");
                    Ok(format!(
                        "new next key {key_id}: published now, signs from {}\n",
                        format_rfc3339(activates_at)
                    ))
                }
                KeyRotation::AlreadyWaiting {
                    key_id,
                    activates_at,
                } => Err(refused(format!(
                    "key {key_id} is already next and signs from {}; revoke it to replace it",
                    format_rfc3339(activates_at)
                ))),
            }
        }
        AdminCommand::KeysRevoke { key_id } => {
            let revocation = match app {
                Some(app) => app.revoke_signing_key(&key_id).await,
                None => signing_keys::revoke_signing_key(store, &key_id, now).await,
            }
            .map_err(|error| refused(error.to_string()))?
            .ok_or_else(|| refused(format!("no signing key {key_id}")))?;
            tracing::info!(target: "latchkey::audit", event = "key-revoked", key_id, source = "admin");
            let mut output = format!("revoked key {key_id}: its tokens no longer verify\n");
            if let Some(new_active_key_id) = revocation.new_active_key_id {
                tracing::info!(target: "latchkey::audit", event = "key-rotated", key_id = new_active_key_id, source = "admin");
                output.push_str(&format!("new active key {new_active_key_id}\n"));
            }
            Ok(output)
        }
        AdminCommand::KeysList => Ok(describe_signing_keys(&store.signing_keys().await?, now)),
        AdminCommand::Backup => Err(refused(
            "a backup is streamed by the admin socket or written by backup_from_cli, not executed",
        )),
        AdminCommand::UserMfaReset { email } => {
            let user = user_by_email(store, &email).await?;
            let removed = store.reset_second_factors(user.id).await?;
            tracing::info!(
                target: "latchkey::audit",
                event = "mfa-reset",
                user_id = user.id,
                totp = removed.totp,
                recovery_codes = removed.recovery_codes_left,
                passkeys = removed.passkeys,
                source = "admin",
            );
            let totp = if removed.totp { "TOTP" } else { "no TOTP" };
            Ok(format!(
                "removed the second factors of {}: {totp}, {} recovery codes, {} passkeys; its password alone signs it in now\n",
                user.email, removed.recovery_codes_left, removed.passkeys
            ))
        }
        AdminCommand::UserDelete { email } => {
            let user = user_by_email(store, &email).await?;
            let sub_users = store.children_of(user.id).await?.len();
            if !store.delete_user_tree(user.id).await? {
                return Err(refused(format!("no user {email}")));
            }
            tracing::info!(target: "latchkey::audit", event = "user-deleted", user_id = user.id, sub_users, source = "admin");
            Ok(format!(
                "deleted user {} {} with {sub_users} sub-users, and their sessions, API tokens, OAuth identities and emailed links\n",
                user.id, user.email
            ))
        }
    }
}

/// One line per key: id, status at `now` (as `/auth/keys` shows it), creation time, and for
/// a `next` key when it signs from.
pub fn describe_signing_keys(
    stored_keys: &[crate::store::StoredSigningKey],
    now: crate::model::UnixSeconds,
) -> String {
    let Ok(key_ring) = KeyRing::from_stored(stored_keys) else {
        return stored_keys
            .iter()
            .map(|key| {
                format!(
                    "{}\t{} (stored; unusable ring)\n",
                    key.key_id,
                    key.status.name()
                )
            })
            .collect();
    };
    key_ring
        .keys()
        .iter()
        .map(|key| {
            let status = key_ring.status_at(key, now);
            let signs_from = match status {
                crate::model::SigningKeyStatus::Next => {
                    format!("\tsigns from {}", format_rfc3339(key.activates_at))
                }
                _ => String::new(),
            };
            format!(
                "{}\t{}\tcreated {}{signs_from}\n",
                key.key_id,
                status.name(),
                format_rfc3339(key.created)
            )
        })
        .collect()
}

async fn change_user(
    store: &Store,
    now: UnixSeconds,
    email: &str,
    what: &str,
    change: impl FnOnce(&mut User) + Send + 'static,
) -> Result<String, AdminError> {
    let user = user_by_email(store, email).await?;
    let updated = store
        .update_user(user.id, now, change)
        .await?
        .ok_or_else(|| refused(format!("no user {email}")))?;
    audit(
        match updated.status {
            Status::Suspended => "user-suspended",
            _ => "user-changed",
        },
        &updated,
    );
    Ok(format!(
        "{} {what}: role {}, status {}\n",
        updated.email,
        updated.role.name(),
        updated.status.name()
    ))
}

/// Binds the admin socket: removes a stale socket file first, then restricts the new one
/// to its owner. Call after the store is open (so no other server holds this data dir).
pub fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, String> {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        std::fs::remove_file(path).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|error| format!("cannot bind the admin socket {}: {error}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(listener)
}

/// Who may use the admin socket: root, or the user the server runs as (the systemd unit's
/// service user, reached with `sudo` or `sudo -u`). Anyone else is refused with a message.
pub fn admin_peer_is_allowed(peer_uid: Option<u32>, server_uid: u32) -> bool {
    matches!(peer_uid, Some(uid) if uid == 0 || uid == server_uid)
}

/// What a refused peer reads: who it is, whom the server runs as, and what to run instead.
pub fn admin_socket_refusal(
    peer_uid: Option<u32>,
    server_uid: u32,
    server_user_name: Option<&str>,
) -> String {
    let peer = peer_uid.map_or_else(
        || "a peer of unknown uid".to_owned(),
        |uid| format!("uid {uid}"),
    );
    format!(
        "the admin socket refused {peer}: the server runs as {}",
        run_as_advice(server_uid, server_user_name)
    )
}

/// "user NAME; run this as root or with sudo -u NAME" (a user without a name is `#uid`).
fn run_as_advice(uid: u32, user_name: Option<&str>) -> String {
    match user_name {
        Some(name) => format!("user {name}; run this as root or with sudo -u {name}"),
        None => format!("uid {uid}; run this as root or with sudo -u '#{uid}'"),
    }
}

/// A user's name from /etc/passwd (a user only another NSS source knows stays unnamed).
pub fn user_name_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let entry_uid: u32 = fields.next()?.parse().ok()?;
        (entry_uid == uid).then(|| name.to_owned())
    })
}

async fn write_reply(writer: &mut tokio::net::unix::OwnedWriteHalf, reply: &AdminReply) -> bool {
    let mut bytes = serde_json::to_vec(reply).unwrap_or_default();
    bytes.push(b'\n');
    writer.write_all(&bytes).await.is_ok()
}

/// Answers a refused peer with one line. Its request is read first (bounded, for at most a
/// second): closing a socket with unread data would reset the peer before it reads.
async fn answer_refused_peer(stream: tokio::net::UnixStream, refusal: AdminReply) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader.take(MAX_REQUEST_BYTES as u64));
    let mut line = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), reader.read_line(&mut line)).await;
    let _ = write_reply(&mut writer, &refusal).await;
    let _ = writer.shutdown().await;
}

/// Makes a backup into a file of the server's own in the data directory, opens it and
/// unlinks it at once (the open file streams on; nothing is left behind), and returns it
/// with its length.
async fn backup_to_unlinked_file(
    store: &Store,
    data_dir: &Path,
) -> Result<(std::fs::File, u64), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let path = data_dir.join(format!(
        "latchkey.backup-{}-{nanos}.redb",
        std::process::id()
    ));
    let made = store
        .backup_to(&path)
        .await
        .map_err(|error| error.to_string());
    let opened = made.and_then(|()| {
        std::fs::File::open(&path).map_err(|error| format!("{}: {error}", path.display()))
    });
    let _ = std::fs::remove_file(&path);
    let file = opened?;
    let length = file
        .metadata()
        .map_err(|error| format!("{}: {error}", path.display()))?
        .len();
    Ok((file, length))
}

/// The reply line of a backup (`made` by `backup_to_unlinked_file`), then its bytes,
/// written by a blocking-pool thread over the socket turned back into a blocking std stream.
fn stream_backup(
    made: Result<(std::fs::File, u64), String>,
    stream: std::os::unix::net::UnixStream,
) {
    let mut stream = stream;
    // A reader that stops reading must not hold this blocking-pool thread for ever.
    let _ = stream.set_write_timeout(Some(BACKUP_STALL_LIMIT));
    let (mut file, length) = match made {
        Ok(made) => made,
        Err(message) => {
            let _ = write_reply_blocking(&mut stream, &AdminReply::failure(message));
            return;
        }
    };
    let header = AdminReply {
        ok: true,
        output: String::new(),
        attachment_bytes: Some(length),
    };
    if write_reply_blocking(&mut stream, &header).is_err() {
        return;
    }
    if let Err(error) = std::io::copy(&mut file, &mut stream) {
        tracing::warn!(%error, "admin socket: a backup stream broke off");
    }
}

fn write_reply_blocking(
    stream: &mut std::os::unix::net::UnixStream,
    reply: &AdminReply,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).unwrap_or_default();
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

/// Serves admin commands until the task is dropped: one JSON line in, one JSON line out
/// (for a backup, followed by the copy's bytes). Root and the server's own user are served;
/// anyone else gets one refusal line.
pub async fn serve_socket(listener: tokio::net::UnixListener, app: Arc<App>) {
    let server_uid = rustix::process::getuid().as_raw();
    let server_user_name = user_name_of(server_uid);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let peer_uid = stream.peer_cred().ok().map(|credentials| credentials.uid());
        if !admin_peer_is_allowed(peer_uid, server_uid) {
            tracing::warn!(
                ?peer_uid,
                "admin socket: refused a peer that is neither root nor the server's user"
            );
            let refusal = AdminReply::failure(admin_socket_refusal(
                peer_uid,
                server_uid,
                server_user_name.as_deref(),
            ));
            tokio::spawn(answer_refused_peer(stream, refusal));
            continue;
        }
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(reader.take(MAX_REQUEST_BYTES as u64));
            let reply = match reader.read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<AdminCommand>(&line) {
                    Ok(AdminCommand::Backup) => {
                        let blocking = reader
                            .into_inner()
                            .into_inner()
                            .reunite(writer)
                            .map_err(|error| error.to_string())
                            .and_then(|stream| stream.into_std().map_err(|error| error.to_string()))
                            .and_then(|stream| {
                                stream
                                    .set_nonblocking(false)
                                    .map(|()| stream)
                                    .map_err(|error| error.to_string())
                            });
                        match blocking {
                            Ok(stream) => {
                                let made =
                                    backup_to_unlinked_file(&app.store, &app.config.store.data_dir)
                                        .await;
                                let _ = tokio::task::spawn_blocking(move || {
                                    stream_backup(made, stream)
                                })
                                .await;
                            }
                            Err(error) => {
                                tracing::warn!(%error, "admin socket: cannot stream a backup")
                            }
                        }
                        return;
                    }
                    Ok(command) => execute(&app.store, Some(&app), command).await,
                    Err(_) => AdminReply::failure(
                        "malformed admin command (is the command of another build than the running server? restart the server after an upgrade)",
                    ),
                },
                Err(error) => AdminReply::failure(error.to_string()),
            };
            let _ = write_reply(&mut writer, &reply).await;
        });
    }
}

/// How the CLI reaches the store: the running server's socket if it answers, else the
/// store file itself; if the file is held (a server is starting), the socket again for up
/// to 5 seconds.
pub fn run_from_cli(
    socket: &Path,
    open_store: impl Fn() -> Result<Store, StoreError>,
    command: AdminCommand,
) -> Result<AdminReply, String> {
    let request = request_line(&command)?;
    reach_server_or_store(
        socket,
        open_store,
        |stream| exchange(stream, &request).map(|(reply, _)| reply),
        |store| on_a_runtime_of_its_own(execute(&store, None, command)),
    )
}

/// Runs a command on the store `open` opens, with no server (the CLI on PostgreSQL).
pub fn run_on_store(
    open: impl std::future::Future<Output = Result<Store, StoreError>>,
    command: AdminCommand,
) -> Result<AdminReply, String> {
    on_a_runtime_of_its_own(async {
        match open.await {
            Ok(store) => Ok(execute(&store, None, command).await),
            Err(error) => Err(error.to_string()),
        }
    })?
}

/// `latchkey backup FILE`: this process writes FILE (new, 0600), so it goes wherever the
/// operator may write, whatever the server's own sandbox allows. With a server running, the
/// copy streams over the socket; without one, it is made from the store directly.
pub fn backup_from_cli(
    socket: &Path,
    open_store: impl Fn() -> Result<Store, StoreError>,
    file: &Path,
) -> Result<AdminReply, String> {
    if std::fs::symlink_metadata(file).is_ok() {
        return Ok(AdminReply::failure(format!(
            "{} exists; a backup never overwrites a file",
            file.display()
        )));
    }
    let written = format!("backup written to {}\n", file.display());
    let request = request_line(&AdminCommand::Backup)?;
    reach_server_or_store(
        socket,
        open_store,
        |stream| {
            let (reply, reader) = exchange(stream, &request)?;
            let Some(length) = reply.attachment_bytes.filter(|_| reply.ok) else {
                return Ok(reply);
            };
            Ok(
                match write_private_file(file, &mut std::io::Read::take(reader, length), length) {
                    Ok(()) => AdminReply::success(written.clone()),
                    Err(message) => AdminReply::failure(message),
                },
            )
        },
        |store| {
            on_a_runtime_of_its_own(async {
                match store.backup_to(file).await {
                    Ok(()) => AdminReply::success(written.clone()),
                    Err(error) => AdminReply::failure(error.to_string()),
                }
            })
        },
    )
}

/// Runs `work` (the CLI's command on the store itself, with no server) on a runtime made for
/// it: the store's functions are async, and its writes run on that runtime's blocking pool.
fn on_a_runtime_of_its_own<T>(work: impl std::future::Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the CLI's runtime: {error}"))?;
    Ok(runtime.block_on(work))
}

/// Writes exactly `length` bytes from `source` to a new file created 0600, flushed to disk;
/// a short or failed copy removes the file.
fn write_private_file(
    file: &Path,
    source: &mut impl std::io::Read,
    length: u64,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|error| format!("cannot create {}: {error}", file.display()))?;
    let copied = std::io::copy(source, &mut writer)
        .map_err(|error| format!("cannot write {}: {error}", file.display()))
        .and_then(|copied| {
            if copied == length {
                Ok(())
            } else {
                Err(format!(
                    "the server's copy broke off after {copied} of {length} bytes; {} removed",
                    file.display()
                ))
            }
        })
        .and_then(|()| {
            writer
                .sync_all()
                .map_err(|error| format!("cannot write {}: {error}", file.display()))
        });
    if copied.is_err() {
        let _ = std::fs::remove_file(file);
    }
    copied
}

/// The socket when a server answers on it, else the store itself; while the store is held
/// by another process (a server starting), the socket again for up to 5 seconds.
fn reach_server_or_store<T>(
    socket: &Path,
    open_store: impl Fn() -> Result<Store, StoreError>,
    through_socket: impl Fn(std::os::unix::net::UnixStream) -> Result<T, String>,
    on_store: impl FnOnce(Store) -> Result<T, String>,
) -> Result<T, String> {
    if let Some(stream) = connect(socket)? {
        return through_socket(stream);
    }
    match open_store() {
        Ok(store) => on_store(store),
        Err(StoreError::Locked { path }) => {
            let deadline = Instant::now() + LOCKED_RETRY;
            while Instant::now() < deadline {
                if let Some(stream) = connect(socket)? {
                    return through_socket(stream);
                }
                #[allow(clippy::disallowed_methods, reason = "the CLI has no async runtime")]
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(format!(
                "{path} is held by another process and its admin socket does not answer"
            ))
        }
        Err(StoreError::Io { path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Err(permission_denied(Path::new(&path)))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// "cannot reach PATH: permission denied", naming the owner of the nearest part of the path
/// this user can see (the server's data directory) and how to run as that user.
fn permission_denied(path: &Path) -> String {
    let own_uid = rustix::process::getuid().as_raw();
    let owner = path
        .ancestors()
        .find_map(|ancestor| {
            std::fs::metadata(ancestor)
                .ok()
                .map(|metadata| (ancestor, metadata.uid()))
        })
        .filter(|(_, uid)| *uid != own_uid && *uid != 0);
    match owner {
        Some((owned, uid)) => format!(
            "cannot reach {}: permission denied; {} belongs to {}",
            path.display(),
            owned.display(),
            run_as_advice(uid, user_name_of(uid).as_deref())
        ),
        None => format!("cannot reach {}: permission denied", path.display()),
    }
}

fn request_line(command: &AdminCommand) -> Result<Vec<u8>, String> {
    let mut request = serde_json::to_vec(command).map_err(|error| error.to_string())?;
    request.push(b'\n');
    Ok(request)
}

/// `Ok(None)` when no server listens (no socket file, or a stale one).
fn connect(socket: &Path) -> Result<Option<std::os::unix::net::UnixStream>, String> {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => Ok(Some(stream)),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(permission_denied(socket))
        }
        Err(error) => Err(format!("admin socket {}: {error}", socket.display())),
    }
}

/// Sends one request line and reads the reply line; the reader goes on with what follows.
fn exchange(
    mut stream: std::os::unix::net::UnixStream,
    request: &[u8],
) -> Result<(AdminReply, BufReader<std::os::unix::net::UnixStream>), String> {
    // A server that refuses this user answers with one line whatever the request: read it
    // even when the write failed.
    let written = stream.write_all(request);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    if line.is_empty() {
        let cause = match (written, read) {
            (Err(error), _) | (Ok(()), Err(error)) => error.to_string(),
            (Ok(()), Ok(_)) => "end of stream".to_owned(),
        };
        return Err(format!(
            "the server closed the admin socket without an answer ({cause})"
        ));
    }
    let reply = serde_json::from_str(&line)
        .map_err(|error| format!("admin socket: malformed answer: {error}"))?;
    Ok((reply, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewUser, Role};

    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

    async fn add(store: &Store, email: &str) -> AdminReply {
        execute(
            store,
            None,
            AdminCommand::UserAdd {
                email: email.to_owned(),
                role: "user".to_owned(),
                password_hash: PasswordHashString::new(HASH.to_owned()),
            },
        )
        .await
    }

    #[test]
    fn the_socket_serves_root_and_the_servers_user_and_tells_anyone_else_whom_to_run_as() {
        assert!(admin_peer_is_allowed(Some(0), 995));
        assert!(admin_peer_is_allowed(Some(995), 995));
        assert!(admin_peer_is_allowed(Some(0), 0));
        assert!(!admin_peer_is_allowed(Some(1000), 995));
        assert!(!admin_peer_is_allowed(None, 995));
        assert_eq!(
            admin_socket_refusal(Some(1000), 995, Some("latchkey")),
            "the admin socket refused uid 1000: the server runs as user latchkey; run this as root or with sudo -u latchkey"
        );
        assert_eq!(
            admin_socket_refusal(None, 995, None),
            "the admin socket refused a peer of unknown uid: the server runs as uid 995; run this as root or with sudo -u '#995'"
        );
        assert_eq!(user_name_of(0).as_deref(), Some("root"));
    }

    #[test]
    fn a_backup_stream_that_breaks_off_leaves_no_file_and_an_existing_file_is_kept() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("copy.redb");
        let error = write_private_file(&file, &mut &b"short"[..], 10).unwrap_err();
        assert!(error.contains("after 5 of 10 bytes"), "{error}");
        assert!(!file.exists());
        write_private_file(&file, &mut &b"0123456789"[..], 10).unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let error = write_private_file(&file, &mut &b"other"[..], 5).unwrap_err();
        assert!(error.contains("cannot create"), "{error}");
        assert_eq!(std::fs::read(&file).unwrap(), b"0123456789");
    }

    #[tokio::test]
    async fn user_add_follows_the_address_rule_and_older_rows_stay_reachable() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open_redb(&directory.path().join("db.redb"), 1024 * 1024).unwrap();
        for wrapped in [
            "<alice@example.com>",
            "\"alice\"@example.com",
            "\u{212A}ate@example.com",
        ] {
            let reply = add(&store, wrapped).await;
            assert!(!reply.ok, "{wrapped}");
            assert!(reply.output.contains("254"), "{}", reply.output);
        }
        assert!(add(&store, "Ada@Bücher.example").await.ok);
        let user = store
            .user_by_normalized_email("ada@xn--bcher-kva.example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.email, "Ada@xn--bcher-kva.example");
        // A row an older build stored under a key today's rule refuses: the operator can
        // still suspend it by the address it was given as.
        store
            .insert_user(
                NewUser {
                    email: "\"Alice\"@example.com".to_owned(),
                    normalized_email: "\"alice\"@example.com".to_owned(),
                    password_hash: Some(PasswordHashString::new(HASH.to_owned())),
                    role: Role::User,
                    status: Status::Active,
                    parent_id: None,
                    first_name: None,
                    last_name: None,
                    permissions: Role::User.default_permissions(),
                    email_verified: true,
                },
                now_unix_seconds(),
            )
            .await
            .unwrap();
        let suspended = execute(
            &store,
            None,
            AdminCommand::UserSuspend {
                email: "\"Alice\"@example.com".to_owned(),
            },
        )
        .await;
        assert!(suspended.ok, "{}", suspended.output);
    }
}
