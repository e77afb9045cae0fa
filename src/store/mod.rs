//! Storage: the only module that knows redb. One redb file holds every table; each public
//! function is one transaction, and every write transaction commits durably (redb's
//! `Durability::Immediate`, with quick repair) before it returns.

mod accounts;
mod api_tokens;
mod email;
mod error;
mod identities;
mod record;
mod signing_keys;
mod token_makers;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use crate::model::{
    ApiToken, NewUser, PasswordHashString, Session, SessionId, SessionKind, SigningKeyStatus,
    TokenMaker, UnixSeconds, User, UserId,
};
use record::{
    SigningKeyRecord, decode, decode_api_token, decode_session, decode_user, encode,
    encode_api_token, encode_session, encode_user,
};

pub use accounts::SessionsToEnd;
pub use email::{LinkToIssue, SignUpEffect, TokenAction, is_unproved_sign_up};
pub use error::StoreError;
pub use identities::IdentityLink;
pub use signing_keys::{KeyRevocation, PendingNextKey};

/// The schema version this build writes; `open` refuses a newer file and raises an older
/// one. 2: sessions with prefixed ids have no row in `userid_sessionid`, so a build that
/// knew only version 1 would miss them when it lists or ends a user's sessions; it must
/// refuse the file rather than leave sessions it cannot find alive. 3: records in binary
/// format 3 (a user's `email_verified` and `credential_version`, the `made_by` of tokens),
/// which a version 2 build would read as corrupt.
const SCHEMA_VERSION: u64 = 3;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USERID_USER: TableDefinition<u64, &[u8]> = TableDefinition::new("userid_user");
const EMAIL_USERID: TableDefinition<&str, u64> = TableDefinition::new("email_userid");
const PARENTID_CHILDID: TableDefinition<(u64, u64), ()> = TableDefinition::new("parentid_childid");
const SESSIONID_SESSION: TableDefinition<u128, &[u8]> = TableDefinition::new("sessionid_session");
/// The user's sessions whose id lacks the user's prefix (`SessionId::new_for_user`): random
/// v4 ids from files written before that layout. New sessions get no row here, since a range
/// of the sessions table finds them; the rows that version 1 files hold for prefixed ids are
/// skipped when read and removed when their session ends. The table empties as old
/// sessions end.
const USERID_UNPREFIXEDSESSIONID: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("userid_sessionid");
const EXPIRE_SESSIONID: TableDefinition<(i64, u128), ()> = TableDefinition::new("expire_sessionid");
const TOKENHASH_APITOKEN: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("tokenhash_apitoken");
const USERID_TOKENHASH: TableDefinition<(u64, &[u8; 32]), ()> =
    TableDefinition::new("userid_tokenhash");
const KEYID_SIGNINGKEY: TableDefinition<&str, &[u8]> = TableDefinition::new("keyid_signingkey");
/// Standalone API tokens by expiry, for the purge of those expired more than 30 days ago.
const EXPIRE_TOKENHASH: TableDefinition<(i64, &[u8; 32]), ()> =
    TableDefinition::new("expire_tokenhash");

/// The store's text-valued facts: its id (`store_id`).
const META_TEXT: TableDefinition<&str, &str> = TableDefinition::new("meta_text");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_NEXT_USER_ID: &str = "next_user_id";
/// A random UUID made when the file is first opened (by a build that knows it) and kept for
/// the file's life, backups and restores included: what tells one install from another, and
/// the tokens' issuer when no `public_url` is set.
const META_STORE_ID: &str = "store_id";

/// `O_NOFOLLOW`: opening a symbolic link fails instead of opening what it points at.
const NEVER_FOLLOW_A_LINK: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// A cheap handle to the one open database.
#[derive(Clone)]
pub struct Store {
    database: Arc<Database>,
    identity: Arc<StoreIdentity>,
}

/// The store id, read (or made) once at open.
struct StoreIdentity {
    id: String,
    /// The file had no id until this open made one: it was written by an older build, or
    /// is new.
    made_at_open: bool,
}

/// What `check_backup` found in a backup file.
#[derive(Debug)]
pub struct BackupSummary {
    /// The backup's store id; `None` when it has none (written by a build before store ids).
    pub store_id: Option<String>,
    pub signing_keys: Vec<StoredSigningKey>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Store")
    }
}

/// A signing key as the store keeps it; the token module turns it into a usable key.
#[derive(Clone)]
pub struct StoredSigningKey {
    pub key_id: String,
    pub secret_key_bytes: Vec<u8>,
    pub status: SigningKeyStatus,
    pub created: UnixSeconds,
    pub retired_at: Option<UnixSeconds>,
    /// When it signs (or signed) from: set for keys published ahead as `next`.
    pub activates_at: Option<UnixSeconds>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StoredSigningKey")
            .field("key_id", &self.key_id)
            .field("secret_key_bytes", &"***")
            .field("status", &self.status)
            .field("activates_at", &self.activates_at)
            .finish()
    }
}

/// Who asks for a credential to be made or changed, as the store checks it again inside the
/// write's own transaction: a password change, a suspension or a revocation that committed
/// while the request was on its way leaves nothing behind (`CredentialsChanged`; API.md 15.3
/// and 15.6).
#[derive(Clone, Copy, Debug)]
pub struct Requester {
    pub user_id: UserId,
    /// The user's `credential_version` the request verified its password or credential
    /// against.
    pub credential_version: u64,
    /// The credential making the request, which must still exist and not have expired;
    /// `None` for a sign-in, whose proof is the password or provider token just checked.
    pub credential: Option<RequesterCredential>,
    pub now: UnixSeconds,
}

/// The credential behind a `Requester`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequesterCredential {
    /// A session: a sign-in's signed token or bound api-token, or a minted token.
    Session(SessionId),
    /// A standalone API token, by its hash.
    ApiToken([u8; 32]),
}

/// Refuses (`CredentialsChanged`) a requester whose user changed credentials or whose own
/// credential is gone or expired.
fn check_requester(
    transaction: &WriteTransaction,
    requester: &Requester,
) -> Result<(), StoreError> {
    let user = user_in(&transaction.open_table(USERID_USER)?, requester.user_id)?;
    if user.is_none_or(|user| user.credential_version != requester.credential_version) {
        return Err(StoreError::CredentialsChanged);
    }
    let alive = match requester.credential {
        None => true,
        Some(RequesterCredential::Session(id)) => {
            session_in(&transaction.open_table(SESSIONID_SESSION)?, id)?.is_some_and(|session| {
                session.user_id == requester.user_id && session.expire > requester.now
            })
        }
        Some(RequesterCredential::ApiToken(hash)) => {
            match transaction.open_table(TOKENHASH_APITOKEN)?.get(&hash)? {
                Some(bytes) => {
                    let token = decode_api_token(bytes.value(), hash)?;
                    token.user_id == requester.user_id
                        && token
                            .expires_at
                            .is_none_or(|expires_at| expires_at >= requester.now)
                }
                None => false,
            }
        }
    };
    if alive {
        Ok(())
    } else {
        Err(StoreError::CredentialsChanged)
    }
}

/// Everything a sign-in writes, committed in one transaction.
#[derive(Debug)]
pub struct NewSignIn {
    pub session: Session,
    /// Who signs in (the session's own user, no credential) or mints (the minting
    /// credential): checked again inside the transaction.
    pub requester: Requester,
    /// `[session] max_per_user`: the oldest sessions end so that, with this one, the user
    /// holds at most this many.
    pub max_sessions_per_user: usize,
    pub api_token: Option<ApiToken>,
    /// `logout-other`: end every other session of the user in the same transaction.
    pub end_other_sessions: bool,
    /// A re-hash of the password under the configured parameters.
    pub replacement_password_hash: Option<PasswordHashString>,
}

/// A session credential's whole context, read in one transaction.
#[derive(Clone, Debug)]
pub struct SessionContext {
    pub session: Session,
    pub user: User,
    pub parent: Option<User>,
}

/// An API token credential's whole context, read in one transaction.
#[derive(Clone, Debug)]
pub struct ApiTokenContext {
    pub api_token: ApiToken,
    pub session: Option<Session>,
    pub user: User,
    pub parent: Option<User>,
}

impl Store {
    /// Opens (or creates) the file: its directory is made (or set back to) 0700 and the file
    /// 0600, and every table is created in one write transaction.
    pub fn open(path: &Path, cache_size_bytes: usize) -> Result<Store, StoreError> {
        let io_error = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(directory) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            if !directory.exists() {
                std::fs::create_dir_all(directory).map_err(io_error)?;
            }
            // At every open, not only at creation: a directory loosened since (by hand, by a
            // restore tool, by a umask) is closed again before anything is read from it.
            let mode = std::fs::metadata(directory)
                .map_err(io_error)?
                .permissions()
                .mode();
            if mode & 0o777 != 0o700 {
                std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_error)?;
            }
        }
        // The file is opened once, never through a symbolic link (an admin command run as
        // root in a directory another user owns must not be steered to another file), and
        // its mode is set and the database opened through that one handle.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(NEVER_FOLLOW_A_LINK)
            .open(path)
            .map_err(io_error)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error)?;

        let database = Database::builder()
            .set_cache_size(cache_size_bytes)
            .create_with_backend(redb::backends::FileBackend::new(file)?)
            .map_err(|error| match error {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.display().to_string(),
                },
                other => StoreError::from(other),
            })?;
        let mut store = Store {
            database: Arc::new(database),
            identity: Arc::new(StoreIdentity {
                id: String::new(),
                made_at_open: false,
            }),
        };
        store.identity = Arc::new(store.create_tables()?);
        Ok(store)
    }

    /// This store's id (see `META_STORE_ID`).
    pub fn store_id(&self) -> &str {
        &self.identity.id
    }

    /// Creates every table, raises the schema version and makes the store id if missing.
    fn create_tables(&self) -> Result<StoreIdentity, StoreError> {
        let transaction = self.begin_write()?;
        let identity;
        {
            let mut meta = transaction.open_table(META)?;
            let stored_version = meta.get(META_SCHEMA_VERSION)?.map(|guard| guard.value());
            match stored_version {
                Some(version) if version > SCHEMA_VERSION => {
                    return Err(StoreError::CorruptRecord(
                        "schema version (newer than this build)",
                    ));
                }
                // Older versions need no rewrite: this build reads what they wrote.
                Some(SCHEMA_VERSION) => {}
                Some(older) => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
                    if older < 3 {
                        // Version 3 added the purge's index of unproved sign-ups.
                        email::create_tables(&transaction)?;
                        email::index_unproved_sign_ups(&transaction)?;
                    }
                }
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
                }
            }
            transaction.open_table(USERID_USER)?;
            transaction.open_table(EMAIL_USERID)?;
            transaction.open_table(PARENTID_CHILDID)?;
            transaction.open_table(SESSIONID_SESSION)?;
            transaction.open_table(USERID_UNPREFIXEDSESSIONID)?;
            transaction.open_table(EXPIRE_SESSIONID)?;
            transaction.open_table(TOKENHASH_APITOKEN)?;
            transaction.open_table(USERID_TOKENHASH)?;
            transaction.open_table(KEYID_SIGNINGKEY)?;
            transaction.open_table(EXPIRE_TOKENHASH)?;
            email::create_tables(&transaction)?;
            identities::create_tables(&transaction)?;
            token_makers::create_tables(&transaction)?;
            let mut text = transaction.open_table(META_TEXT)?;
            let stored_id = text
                .get(META_STORE_ID)?
                .map(|guard| guard.value().to_owned());
            identity = match stored_id {
                Some(id) => StoreIdentity {
                    id,
                    made_at_open: false,
                },
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    text.insert(META_STORE_ID, id.as_str())?;
                    StoreIdentity {
                        id,
                        made_at_open: true,
                    }
                }
            };
        }
        transaction.commit()?;
        Ok(identity)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut transaction = self.database.begin_write()?;
        transaction.set_quick_repair(true);
        Ok(transaction)
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.database.begin_read()?)
    }

    // ---- signing keys ----

    pub fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(KEYID_SIGNINGKEY)?;
        let mut keys = Vec::new();
        for entry in table.iter()? {
            let (key_id, bytes) = entry?;
            let record: SigningKeyRecord = decode(bytes.value(), "signing key")?;
            keys.push(signing_keys::stored_key(key_id.value(), &record)?);
        }
        Ok(keys)
    }

    /// Stores a new active key and retires every other active key, in one transaction.
    pub fn insert_active_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let mut table = transaction.open_table(KEYID_SIGNINGKEY)?;
            let mut retired = Vec::new();
            for entry in table.iter()? {
                let (key_id, bytes) = entry?;
                let mut record: SigningKeyRecord = decode(bytes.value(), "signing key")?;
                if record.status == SigningKeyStatus::Active.name() {
                    record.status = SigningKeyStatus::Retired.name().to_owned();
                    record.retired_at = Some(key.created);
                    retired.push((key_id.value().to_owned(), record));
                }
            }
            for (key_id, record) in retired {
                table.insert(key_id.as_str(), encode(&record).as_slice())?;
            }
            let record = signing_keys::new_record(key, SigningKeyStatus::Active, None);
            table.insert(key.key_id.as_str(), encode(&record).as_slice())?;
        }
        transaction.commit()?;
        Ok(())
    }

    // ---- users ----

    /// A sub-user made on a request's behalf: `requester` (its parent's credential) is
    /// checked again inside the transaction, so a sub-user made while its parent's
    /// credential was revoked, or its password changed, is not made.
    pub fn insert_sub_user(
        &self,
        new_user: NewUser,
        now: UnixSeconds,
        requester: &Requester,
    ) -> Result<User, StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        let user = insert_user(&transaction, new_user, now)?;
        transaction.commit()?;
        Ok(user)
    }

    pub fn insert_user(&self, new_user: NewUser, now: UnixSeconds) -> Result<User, StoreError> {
        let transaction = self.begin_write()?;
        let user = insert_user(&transaction, new_user, now)?;
        transaction.commit()?;
        Ok(user)
    }

    pub fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_read()?;
        read_user(&transaction, id)
    }

    pub fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_read()?;
        let emails = transaction.open_table(EMAIL_USERID)?;
        let Some(id) = emails.get(email)?.map(|guard| guard.value()) else {
            return Ok(None);
        };
        read_user(&transaction, id)
    }

    /// Writes a changed user record (not its email, which has its own index).
    pub fn replace_user(&self, user: &User) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let mut users = transaction.open_table(USERID_USER)?;
            let before = users
                .insert(user.id, encode_user(user).as_slice())?
                .map(|bytes| decode_user(bytes.value(), user.id))
                .transpose()?;
            drop(users);
            if let Some(before) = before {
                email::forget_unproved_sign_up(&transaction, &before)?;
            }
            email::note_unproved_sign_up(&transaction, user)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Inserts many users in one transaction (bulk seeding: benchmarks and imports); stops
    /// at the first taken email, writing nothing.
    pub fn insert_users(
        &self,
        new_users: Vec<NewUser>,
        now: UnixSeconds,
    ) -> Result<Vec<User>, StoreError> {
        let transaction = self.begin_write()?;
        let mut users = Vec::with_capacity(new_users.len());
        for new_user in new_users {
            users.push(insert_user(&transaction, new_user, now)?);
        }
        transaction.commit()?;
        Ok(users)
    }

    /// Stores many API tokens in one transaction (bulk seeding).
    pub fn insert_api_tokens(&self, api_tokens: &[ApiToken]) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        for api_token in api_tokens {
            insert_api_token(&transaction, api_token)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Stores an API token (its hash and record) in one transaction.
    pub fn insert_api_token(&self, api_token: &ApiToken) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        insert_api_token(&transaction, api_token)?;
        transaction.commit()?;
        Ok(())
    }

    /// Stores a standalone API token unless its user already holds `limit` of them, expired
    /// ones included (they are kept 30 days and can be deleted): `TooManyApiTokens`; and
    /// only while its requester still stands (`CredentialsChanged`).
    pub fn insert_api_token_within_limit(
        &self,
        api_token: &ApiToken,
        limit: usize,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        let held = {
            let by_user = transaction.open_table(USERID_TOKENHASH)?;
            let tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
            let user_id = api_token.user_id;
            let mut held = 0usize;
            for entry in by_user.range((user_id, &[0u8; 32])..=(user_id, &[0xffu8; 32]))? {
                let hash = *entry?.0.value().1;
                if let Some(bytes) = tokens.get(&hash)?
                    && decode_api_token(bytes.value(), hash)?.session_id.is_none()
                {
                    held += 1;
                }
            }
            held
        };
        if held >= limit {
            return Err(StoreError::TooManyApiTokens);
        }
        let mut api_token = api_token.clone();
        if let Some(last_second) = fit_within_maker(&transaction, api_token.made_by)? {
            api_token.expires_at = Some(
                api_token
                    .expires_at
                    .map_or(last_second, |expires_at| expires_at.min(last_second)),
            );
        }
        insert_api_token(&transaction, &api_token)?;
        transaction.commit()?;
        Ok(())
    }

    /// Every user, in id order (the admin CLI's listing).
    pub fn all_users(&self) -> Result<Vec<User>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(USERID_USER)?;
        let mut users = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            users.push(decode_user(bytes.value(), id.value())?);
        }
        Ok(users)
    }

    // ---- sessions ----

    /// Writes a sign-in's session, its API token, and (optionally) ends the user's other
    /// sessions and replaces its password hash, all in one durable transaction.
    pub fn record_sign_in(&self, sign_in: &NewSignIn) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let user_id = sign_in.session.user_id;
            check_requester(&transaction, &sign_in.requester)?;
            if sign_in.end_other_sessions {
                for session_id in session_ids_of_user(&transaction, user_id)? {
                    delete_session(&transaction, session_id)?;
                }
            } else {
                end_oldest_sessions_beyond(&transaction, user_id, sign_in.max_sessions_per_user)?;
            }
            let mut session = sign_in.session.clone();
            if let Some(last_second) = fit_within_maker(&transaction, session.made_by)? {
                session.expire = session.expire.min(last_second + 1);
            }
            insert_session(&transaction, &session)?;
            if let Some(api_token) = &sign_in.api_token {
                insert_api_token(&transaction, api_token)?;
            }
            if let Some(hash) = &sign_in.replacement_password_hash {
                // A re-hash of the same password is not a profile change: `updated` stays.
                set_password_hash(&transaction, user_id, hash, None)?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// The session, its user and the user's parent, or `None` if the session is gone.
    pub fn session_context(&self, id: SessionId) -> Result<Option<SessionContext>, StoreError> {
        let transaction = self.begin_read()?;
        let Some(session) = read_session(&transaction, id)? else {
            return Ok(None);
        };
        let Some((user, parent)) = read_user_and_parent(&transaction, session.user_id)? else {
            return Ok(None);
        };
        Ok(Some(SessionContext {
            session,
            user,
            parent,
        }))
    }

    /// The API token with this hash, its session (if bound to one), its user and parent.
    pub fn api_token_context(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<ApiTokenContext>, StoreError> {
        let transaction = self.begin_read()?;
        let tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
        let Some(bytes) = tokens.get(hash)? else {
            return Ok(None);
        };
        let api_token = decode_api_token(bytes.value(), *hash)?;
        let session = match api_token.session_id {
            Some(session_id) => match read_session(&transaction, session_id)? {
                Some(session) => Some(session),
                None => return Ok(None),
            },
            None => None,
        };
        let Some((user, parent)) = read_user_and_parent(&transaction, api_token.user_id)? else {
            return Ok(None);
        };
        Ok(Some(ApiTokenContext {
            api_token,
            session,
            user,
            parent,
        }))
    }
}

/// Inserts a user inside a write transaction, assigning the next id; `EmailTaken` if the
/// normalized email is in use.
fn insert_user(
    transaction: &WriteTransaction,
    new_user: NewUser,
    now: UnixSeconds,
) -> Result<User, StoreError> {
    let mut emails = transaction.open_table(EMAIL_USERID)?;
    if emails.get(new_user.normalized_email.as_str())?.is_some() {
        return Err(StoreError::EmailTaken);
    }
    // A sub-user's parent deleted while the request was on its way: no orphan is made.
    if let Some(parent_id) = new_user.parent_id
        && user_in(&transaction.open_table(USERID_USER)?, parent_id)?.is_none()
    {
        return Err(StoreError::CredentialsChanged);
    }
    let mut meta = transaction.open_table(META)?;
    let id = meta
        .get(META_NEXT_USER_ID)?
        .map_or(1, |guard| guard.value());
    meta.insert(META_NEXT_USER_ID, id + 1)?;
    let user = User {
        id,
        email: new_user.email,
        normalized_email: new_user.normalized_email,
        password_hash: new_user.password_hash,
        role: new_user.role,
        status: new_user.status,
        parent_id: new_user.parent_id,
        first_name: new_user.first_name,
        last_name: new_user.last_name,
        permissions: new_user.permissions,
        created: now,
        updated: now,
        email_verified: new_user.email_verified,
        credential_version: 0,
    };
    emails.insert(user.normalized_email.as_str(), id)?;
    let mut users = transaction.open_table(USERID_USER)?;
    users.insert(id, encode_user(&user).as_slice())?;
    drop(users);
    email::note_unproved_sign_up(transaction, &user)?;
    if let Some(parent_id) = user.parent_id {
        let mut children = transaction.open_table(PARENTID_CHILDID)?;
        children.insert((parent_id, id), ())?;
    }
    Ok(user)
}

/// A user from the users table of either kind of transaction.
fn user_in(
    users: &impl ReadableTable<u64, &'static [u8]>,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let Some(bytes) = users.get(id)? else {
        return Ok(None);
    };
    Ok(Some(decode_user(bytes.value(), id)?))
}

/// A session from the sessions table of either kind of transaction.
fn session_in(
    sessions: &impl ReadableTable<u128, &'static [u8]>,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    let Some(bytes) = sessions.get(id.0)? else {
        return Ok(None);
    };
    Ok(Some(decode_session(bytes.value(), id)?))
}

fn read_user(transaction: &ReadTransaction, id: UserId) -> Result<Option<User>, StoreError> {
    user_in(&transaction.open_table(USERID_USER)?, id)
}

/// Sets a user's password hash inside a write transaction; a missing user is left alone.
/// With `now`, a new password: the credential version rises. Without, a re-hash of the
/// same password under new costs, which changes nothing a sign-in verified.
fn set_password_hash(
    transaction: &WriteTransaction,
    user_id: UserId,
    hash: &PasswordHashString,
    now: Option<UnixSeconds>,
) -> Result<(), StoreError> {
    let mut users = transaction.open_table(USERID_USER)?;
    let Some(mut user) = user_in(&users, user_id)? else {
        return Ok(());
    };
    user.password_hash = Some(hash.clone());
    if let Some(now) = now {
        user.updated = now;
        user.credential_version += 1;
    }
    users.insert(user_id, encode_user(&user).as_slice())?;
    Ok(())
}

fn read_user_and_parent(
    transaction: &ReadTransaction,
    id: UserId,
) -> Result<Option<(User, Option<User>)>, StoreError> {
    let Some(user) = read_user(transaction, id)? else {
        return Ok(None);
    };
    let parent = match user.parent_id {
        Some(parent_id) => match read_user(transaction, parent_id)? {
            Some(parent) => Some(parent),
            None => return Ok(None),
        },
        None => None,
    };
    Ok(Some((user, parent)))
}

fn read_session(
    transaction: &ReadTransaction,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    session_in(&transaction.open_table(SESSIONID_SESSION)?, id)
}

fn insert_session(transaction: &WriteTransaction, session: &Session) -> Result<(), StoreError> {
    let mut sessions = transaction.open_table(SESSIONID_SESSION)?;
    sessions.insert(session.id.0, encode_session(session).as_slice())?;
    if !session.id.is_prefixed_for(session.user_id) {
        let mut unprefixed = transaction.open_table(USERID_UNPREFIXEDSESSIONID)?;
        unprefixed.insert((session.user_id, session.id.0), ())?;
    }
    let mut by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
    by_expiry.insert((session.expire, session.id.0), ())?;
    if let Some(maker) = session.made_by {
        token_makers::record_made(transaction, maker, TokenMaker::MintedSession(session.id))?;
    }
    Ok(())
}

fn insert_api_token(
    transaction: &WriteTransaction,
    api_token: &ApiToken,
) -> Result<(), StoreError> {
    let mut tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
    tokens.insert(&api_token.hash, encode_api_token(api_token).as_slice())?;
    let mut by_user = transaction.open_table(USERID_TOKENHASH)?;
    by_user.insert((api_token.user_id, &api_token.hash), ())?;
    if let (None, Some(expires_at)) = (api_token.session_id, api_token.expires_at) {
        let mut by_expiry = transaction.open_table(EXPIRE_TOKENHASH)?;
        by_expiry.insert((expires_at, &api_token.hash), ())?;
    }
    if let Some(maker) = api_token.made_by {
        token_makers::record_made(transaction, maker, TokenMaker::ApiToken(api_token.hash))?;
    }
    Ok(())
}

/// Removes an API token and its index rows, and answers what it was; what it made stays
/// (`delete_api_token` ends that too). For replacing a token's record in place.
fn remove_api_token_rows(
    transaction: &WriteTransaction,
    hash: &[u8; 32],
) -> Result<Option<ApiToken>, StoreError> {
    let removed = {
        let mut tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
        let removed = tokens.remove(hash)?;
        match removed {
            Some(bytes) => Some(decode_api_token(bytes.value(), *hash)?),
            None => None,
        }
    };
    let Some(api_token) = removed else {
        return Ok(None);
    };
    let mut by_user = transaction.open_table(USERID_TOKENHASH)?;
    by_user.remove((api_token.user_id, hash))?;
    if let Some(expires_at) = api_token.expires_at {
        let mut by_expiry = transaction.open_table(EXPIRE_TOKENHASH)?;
        by_expiry.remove((expires_at, hash))?;
    }
    if let Some(maker) = api_token.made_by {
        token_makers::forget_made(transaction, maker, TokenMaker::ApiToken(*hash))?;
    }
    Ok(Some(api_token))
}

/// Deletes an API token with its index rows, and everything it made (API.md 15.3).
fn delete_api_token(
    transaction: &WriteTransaction,
    user_id: UserId,
    hash: &[u8; 32],
) -> Result<(), StoreError> {
    if remove_api_token_rows(transaction, hash)?.is_none() {
        // A dangling index row, from a record that is already gone.
        transaction
            .open_table(USERID_TOKENHASH)?
            .remove((user_id, hash))?;
    }
    token_makers::end_what_was_made_by(transaction, TokenMaker::ApiToken(*hash))
}

/// The user's sessions, in no particular order: a range of the sessions table finds those
/// with prefixed ids (one or two pages for a user), the index the older ones.
fn sessions_of_user(
    sessions: &impl ReadableTable<u128, &'static [u8]>,
    unprefixed: &impl ReadableTable<(u64, u128), ()>,
    user_id: UserId,
) -> Result<Vec<Session>, StoreError> {
    let mut found = Vec::new();
    for entry in sessions.range(SessionId::range_for_user(user_id))? {
        let (key, bytes) = entry?;
        let session = decode_session(bytes.value(), SessionId(key.value()))?;
        if session.user_id == user_id {
            found.push(session);
        }
    }
    for entry in unprefixed.range((user_id, 0u128)..=(user_id, u128::MAX))? {
        let id = SessionId(entry?.0.value().1);
        // Files written while every session had a row here: the range above found it.
        if id.is_prefixed_for(user_id) {
            continue;
        }
        if let Some(session) = session_in(sessions, id)? {
            found.push(session);
        }
    }
    Ok(found)
}

fn session_ids_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<Vec<SessionId>, StoreError> {
    let sessions = sessions_of_user(
        &transaction.open_table(SESSIONID_SESSION)?,
        &transaction.open_table(USERID_UNPREFIXEDSESSIONID)?,
        user_id,
    )?;
    Ok(sessions.into_iter().map(|session| session.id).collect())
}

/// Ends the user's oldest sessions until one more fits under `limit` (API.md 15.13).
fn end_oldest_sessions_beyond(
    transaction: &WriteTransaction,
    user_id: UserId,
    limit: usize,
) -> Result<(), StoreError> {
    let mut sessions = sessions_of_user(
        &transaction.open_table(SESSIONID_SESSION)?,
        &transaction.open_table(USERID_UNPREFIXEDSESSIONID)?,
        user_id,
    )?;
    let Some(excess) = (sessions.len() + 1).checked_sub(limit.max(1)) else {
        return Ok(());
    };
    sessions.sort_by_key(|session| (session.created, session.id));
    for session in sessions.iter().take(excess) {
        delete_session(transaction, session.id)?;
    }
    Ok(())
}

/// Removes a session, its index rows and its bound API token (which makes nothing that
/// depends on it: it is part of a sign-in), and answers what it was.
fn remove_session_rows(
    transaction: &WriteTransaction,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    let session = {
        let mut sessions = transaction.open_table(SESSIONID_SESSION)?;
        let Some(bytes) = sessions.remove(id.0)? else {
            return Ok(None);
        };
        decode_session(bytes.value(), id)?
    };
    // Also for prefixed ids: files written before that layout indexed every session.
    let mut unprefixed = transaction.open_table(USERID_UNPREFIXEDSESSIONID)?;
    unprefixed.remove((session.user_id, id.0))?;
    let mut by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
    by_expiry.remove((session.expire, id.0))?;
    if let Some(hash) = session.api_token_hash {
        remove_api_token_rows(transaction, &hash)?;
    }
    if let Some(maker) = session.made_by {
        token_makers::forget_made(transaction, maker, TokenMaker::MintedSession(id))?;
    }
    Ok(Some(session))
}

/// Removes a session with its index rows and bound API token, and, for a minted token,
/// everything it made (API.md 15.3). Returns whether it existed.
fn delete_session(transaction: &WriteTransaction, id: SessionId) -> Result<bool, StoreError> {
    let Some(session) = remove_session_rows(transaction, id)? else {
        return Ok(false);
    };
    if session.kind == SessionKind::Minted {
        token_makers::end_what_was_made_by(transaction, TokenMaker::MintedSession(id))?;
    }
    Ok(true)
}

/// Ends a session no later than `last_second` (its `expire` becomes at most one past it);
/// answers whether it changed.
fn cap_session_expiry(
    transaction: &WriteTransaction,
    id: SessionId,
    last_second: UnixSeconds,
) -> Result<bool, StoreError> {
    let Some(mut session) = session_in(&transaction.open_table(SESSIONID_SESSION)?, id)? else {
        return Ok(false);
    };
    let bound = last_second + 1;
    if session.expire <= bound {
        return Ok(false);
    }
    let mut by_expiry = transaction.open_table(EXPIRE_SESSIONID)?;
    by_expiry.remove((session.expire, id.0))?;
    session.expire = bound;
    by_expiry.insert((session.expire, id.0), ())?;
    transaction
        .open_table(SESSIONID_SESSION)?
        .insert(id.0, encode_session(&session).as_slice())?;
    Ok(true)
}

/// Brings an API token's expiry down to `bound` if it is later (or never); answers whether
/// it changed.
fn cap_api_token_expiry(
    transaction: &WriteTransaction,
    hash: &[u8; 32],
    bound: UnixSeconds,
) -> Result<bool, StoreError> {
    let Some(mut api_token) = remove_api_token_rows(transaction, hash)? else {
        return Ok(false);
    };
    let capped = api_token
        .expires_at
        .is_none_or(|expires_at| expires_at > bound);
    if capped {
        api_token.expires_at = Some(bound);
    }
    insert_api_token(transaction, &api_token)?;
    Ok(capped)
}

/// The last second a token credential works: an API token's `expires_at`, a session's
/// `expire - 1` (a session works while `expire > now`, a token while `expires_at >= now`);
/// `Some(None)` for a token that never expires, `None` when it is gone.
fn token_maker_last_second(
    transaction: &WriteTransaction,
    maker: TokenMaker,
) -> Result<Option<Option<UnixSeconds>>, StoreError> {
    Ok(match maker {
        TokenMaker::ApiToken(hash) => {
            match transaction.open_table(TOKENHASH_APITOKEN)?.get(&hash)? {
                Some(bytes) => Some(decode_api_token(bytes.value(), hash)?.expires_at),
                None => None,
            }
        }
        TokenMaker::MintedSession(id) => {
            session_in(&transaction.open_table(SESSIONID_SESSION)?, id)?
                .map(|session| Some(session.expire - 1))
        }
    })
}

/// Keeps a new token or minted session within its maker's lifetime as it stands inside this
/// transaction (a concurrent PUT may have shortened it since the request read it): the
/// maker's last second, if it has one. A maker that is gone makes nothing
/// (`CredentialsChanged`).
fn fit_within_maker(
    transaction: &WriteTransaction,
    made_by: Option<TokenMaker>,
) -> Result<Option<UnixSeconds>, StoreError> {
    match made_by {
        None => Ok(None),
        Some(maker) => match token_maker_last_second(transaction, maker)? {
            None => Err(StoreError::CredentialsChanged),
            Some(last_second) => Ok(last_second),
        },
    }
}

/// Copies every row of one table from a read transaction into a write transaction.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    source: &ReadTransaction,
    target: &WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<(), StoreError> {
    let from = source.open_table(definition)?;
    let mut to = target.open_table(definition)?;
    for entry in from.iter()? {
        let (key, value) = entry?;
        to.insert(key.value(), value.value())?;
    }
    Ok(())
}

impl Store {
    /// Writes a consistent copy of the whole store to a new file at `path`, from one read
    /// transaction: writes that commit meanwhile are not in it, and nothing half-done is.
    pub fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        let io_error = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        let copy = Database::builder().create(path)?;
        let source = self.begin_read()?;
        let mut target = copy.begin_write()?;
        target.set_quick_repair(true);
        copy_table(&source, &target, META)?;
        copy_table(&source, &target, META_TEXT)?;
        copy_table(&source, &target, USERID_USER)?;
        copy_table(&source, &target, EMAIL_USERID)?;
        copy_table(&source, &target, PARENTID_CHILDID)?;
        copy_table(&source, &target, SESSIONID_SESSION)?;
        copy_table(&source, &target, USERID_UNPREFIXEDSESSIONID)?;
        copy_table(&source, &target, EXPIRE_SESSIONID)?;
        copy_table(&source, &target, TOKENHASH_APITOKEN)?;
        copy_table(&source, &target, USERID_TOKENHASH)?;
        copy_table(&source, &target, EXPIRE_TOKENHASH)?;
        copy_table(&source, &target, KEYID_SIGNINGKEY)?;
        email::copy_tables(&source, &target)?;
        identities::copy_tables(&source, &target)?;
        token_makers::copy_tables(&source, &target)?;
        target.commit()?;
        Ok(())
    }

    /// Checks that `path` is a store this build can open and that it holds a signing key:
    /// what `restore` requires before it replaces anything. Returns its store id and keys.
    pub fn check_backup(path: &Path) -> Result<BackupSummary, StoreError> {
        let store = Store::open(path, 4 * 1024 * 1024)?;
        let signing_keys = store.signing_keys()?;
        if signing_keys.is_empty() {
            return Err(StoreError::CorruptRecord(
                "backup (it holds no signing key)",
            ));
        }
        Ok(BackupSummary {
            store_id: (!store.identity.made_at_open).then(|| store.identity.id.clone()),
            signing_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PermissionSet, Role, Status, now_unix_seconds};

    fn open_store(directory: &tempfile::TempDir) -> Store {
        Store::open(&directory.path().join("latchkey.redb"), 1024 * 1024).unwrap()
    }

    fn add_user(store: &Store, email: &str) -> User {
        store
            .insert_user(
                NewUser {
                    email: email.to_owned(),
                    normalized_email: email.to_owned(),
                    password_hash: None,
                    role: Role::User,
                    status: Status::Active,
                    parent_id: None,
                    first_name: None,
                    last_name: None,
                    permissions: PermissionSet::empty(),
                    email_verified: true,
                },
                now_unix_seconds(),
            )
            .unwrap()
    }

    fn live_session(id: SessionId, user_id: UserId) -> Session {
        let now = now_unix_seconds();
        Session {
            id,
            user_id,
            kind: SessionKind::SignIn,
            created: now,
            expire: now + 3600,
            remote_ip: "127.0.0.1".into(),
            user_agent: String::new(),
            ua_type: "unknown",
            granted_permissions: PermissionSet::empty(),
            api_token_hash: None,
            made_by: None,
        }
    }

    fn index_rows(store: &Store, user_id: UserId) -> Vec<u128> {
        let transaction = store.begin_read().unwrap();
        let index = transaction.open_table(USERID_UNPREFIXEDSESSIONID).unwrap();
        index
            .range((user_id, 0u128)..=(user_id, u128::MAX))
            .unwrap()
            .map(|entry| entry.unwrap().0.value().1)
            .collect()
    }

    fn schema_version(store: &Store) -> Option<u64> {
        let transaction = store.begin_read().unwrap();
        let meta = transaction.open_table(META).unwrap();
        meta.get(META_SCHEMA_VERSION)
            .unwrap()
            .map(|guard| guard.value())
    }

    fn set_schema_version(store: &Store, version: u64) {
        let transaction = store.begin_write().unwrap();
        transaction
            .open_table(META)
            .unwrap()
            .insert(META_SCHEMA_VERSION, version)
            .unwrap();
        transaction.commit().unwrap();
    }

    #[test]
    fn only_sessions_without_the_user_prefix_get_an_index_row() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "index@example.com");
        let prefixed = live_session(SessionId::new_for_user(user.id), user.id);
        let random = live_session(SessionId::new_random(), user.id);
        assert!(!random.id.is_prefixed_for(user.id));
        store
            .insert_sessions(&[prefixed.clone(), random.clone()])
            .unwrap();
        assert_eq!(index_rows(&store, user.id), vec![random.id.0]);
        let mut listed: Vec<SessionId> = store
            .live_sessions_of_user(user.id, now_unix_seconds())
            .unwrap()
            .iter()
            .map(|session| session.id)
            .collect();
        listed.sort();
        let mut expected = vec![prefixed.id, random.id];
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn index_rows_that_version_one_wrote_for_prefixed_ids_are_read_once_and_removed() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "version-one@example.com");
        let prefixed = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&prefixed))
            .unwrap();
        // What a version 1 build wrote: a row for every session.
        let transaction = store.begin_write().unwrap();
        transaction
            .open_table(USERID_UNPREFIXEDSESSIONID)
            .unwrap()
            .insert((user.id, prefixed.id.0), ())
            .unwrap();
        transaction.commit().unwrap();

        let listed = store
            .live_sessions_of_user(user.id, now_unix_seconds())
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, prefixed.id);
        assert_eq!(store.end_all_sessions_of_user(user.id).unwrap(), 1);
        assert!(index_rows(&store, user.id).is_empty());
        assert!(store.session(prefixed.id).unwrap().is_none());
    }

    #[test]
    fn the_store_id_is_made_once_and_travels_with_backups() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let id = store.store_id().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        drop(store);
        let store = open_store(&directory);
        assert_eq!(store.store_id(), id);
        store
            .insert_active_signing_key(&crate::auth::signed_token::generate_signing_key(1).unwrap())
            .unwrap();
        let backup = directory.path().join("copy.redb");
        store.backup_to(&backup).unwrap();
        let summary = Store::check_backup(&backup).unwrap();
        assert_eq!(summary.store_id.as_deref(), Some(id.as_str()));

        // A file from before store ids gets one at its next open; a backup of it has none.
        let transaction = store.begin_write().unwrap();
        transaction
            .open_table(META_TEXT)
            .unwrap()
            .remove(META_STORE_ID)
            .unwrap();
        transaction.commit().unwrap();
        let old_backup = directory.path().join("old.redb");
        store.backup_to(&old_backup).unwrap();
        drop(store);
        assert_eq!(Store::check_backup(&old_backup).unwrap().store_id, None);
        let store = open_store(&directory);
        assert_ne!(store.store_id(), id);
        assert!(uuid::Uuid::parse_str(store.store_id()).is_ok());
    }

    #[test]
    fn every_open_closes_the_data_directory_to_others() {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("data");
        let path = data_dir.join("latchkey.redb");
        drop(Store::open(&path, 1024 * 1024).unwrap());
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(Store::open(&path, 1024 * 1024).unwrap());
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn opening_raises_an_older_schema_version_and_refuses_a_newer_one() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        assert_eq!(schema_version(&store), Some(SCHEMA_VERSION));
        set_schema_version(&store, 1);
        drop(store);
        let store = open_store(&directory);
        assert_eq!(schema_version(&store), Some(SCHEMA_VERSION));
        set_schema_version(&store, SCHEMA_VERSION + 1);
        drop(store);
        assert!(matches!(
            Store::open(&directory.path().join("latchkey.redb"), 1024 * 1024),
            Err(StoreError::CorruptRecord(_))
        ));
    }

    /// API.md 15.6: a sign-in that verified before a password change or a suspension
    /// committed writes nothing, so no session survives the change that raced it.
    #[test]
    fn a_sign_in_verified_against_an_older_credential_version_writes_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "racer@example.com");
        let sign_in = |version: u64| NewSignIn {
            session: live_session(SessionId::new_for_user(user.id), user.id),
            requester: Requester {
                user_id: user.id,
                credential_version: version,
                credential: None,
                now: now_unix_seconds(),
            },
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        };
        let raced = sign_in(user.credential_version);
        let new_hash = PasswordHashString("$argon2id$new".to_owned());
        store
            .change_password(
                None,
                user.id,
                &new_hash,
                SessionsToEnd::All,
                true,
                now_unix_seconds(),
            )
            .unwrap();
        assert!(matches!(
            store.record_sign_in(&raced),
            Err(StoreError::CredentialsChanged)
        ));
        assert!(store.session(raced.session.id).unwrap().is_none());

        let after_change = store
            .user_by_id(user.id)
            .unwrap()
            .unwrap()
            .credential_version;
        assert_eq!(after_change, user.credential_version + 1);
        let raced = sign_in(after_change);
        store
            .update_user(user.id, now_unix_seconds(), |user| {
                user.status = Status::Suspended
            })
            .unwrap();
        assert!(matches!(
            store.record_sign_in(&raced),
            Err(StoreError::CredentialsChanged)
        ));
        let suspended = store.user_by_id(user.id).unwrap().unwrap();
        assert_eq!(suspended.credential_version, after_change + 1);
        // Changing a name is no credential change: a sign-in that read before it still counts.
        store
            .update_user(user.id, now_unix_seconds(), |user| {
                user.first_name = Some("Ada".to_owned())
            })
            .unwrap();
        store
            .record_sign_in(&sign_in(suspended.credential_version))
            .unwrap();
    }

    fn standalone_token(user_id: UserId, hash_byte: u8, made_by: Option<TokenMaker>) -> ApiToken {
        let now = now_unix_seconds();
        ApiToken {
            hash: [hash_byte; 32],
            prefix: format!("{hash_byte:02x}").repeat(4),
            user_id,
            session_id: None,
            permissions: PermissionSet::empty(),
            restrictions: PermissionSet::empty(),
            created: now,
            updated: now,
            expires_at: None,
            made_by,
        }
    }

    /// The review's races (API.md 15.3, 15.6): a request that authenticated before its
    /// credential was revoked, or before a password change, writes nothing once it reaches
    /// the store; a change to a token deleted meanwhile does not bring it back; a sub-user
    /// whose parent was deleted meanwhile is not made.
    #[test]
    fn writes_from_a_credential_revoked_in_flight_leave_nothing_behind() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "raced@example.com");
        let now = now_unix_seconds();
        let session = live_session(SessionId::new_for_user(user.id), user.id);
        store
            .insert_sessions(std::slice::from_ref(&session))
            .unwrap();
        let maker = standalone_token(user.id, 1, None);
        store.insert_api_token(&maker).unwrap();
        let requester = |credential| Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: Some(credential),
            now,
        };
        let by_session = requester(RequesterCredential::Session(session.id));
        let by_token = requester(RequesterCredential::ApiToken(maker.hash));

        // Both still stand: their writes go through.
        store
            .insert_api_token_within_limit(&standalone_token(user.id, 2, None), 100, &by_session)
            .unwrap();
        // The session ends, the token is deleted: what they still had in flight is refused.
        store.end_all_sessions_of_user(user.id).unwrap();
        store
            .delete_api_token_of_user(user.id, &maker.hash)
            .unwrap();
        for requester in [&by_session, &by_token] {
            assert!(matches!(
                store.insert_api_token_within_limit(
                    &standalone_token(user.id, 3, None),
                    100,
                    requester
                ),
                Err(StoreError::CredentialsChanged)
            ));
            let minted = NewSignIn {
                session: Session {
                    kind: SessionKind::Minted,
                    ..live_session(SessionId::new_for_user(user.id), user.id)
                },
                requester: *requester,
                max_sessions_per_user: 1000,
                api_token: None,
                end_other_sessions: false,
                replacement_password_hash: None,
            };
            assert!(matches!(
                store.record_sign_in(&minted),
                Err(StoreError::CredentialsChanged)
            ));
            assert!(store.session(minted.session.id).unwrap().is_none());
        }
        assert_eq!(
            store
                .standalone_api_tokens_of_user(user.id)
                .unwrap()
                .iter()
                .map(|token| token.hash[0])
                .collect::<Vec<_>>(),
            vec![2]
        );

        // A password change raises the version: a request authenticated before it is refused.
        let fresh = live_session(SessionId::new_for_user(user.id), user.id);
        store.insert_sessions(std::slice::from_ref(&fresh)).unwrap();
        let before_change = requester(RequesterCredential::Session(fresh.id));
        store
            .change_password(
                None,
                user.id,
                &PasswordHashString("$argon2id$changed".to_owned()),
                SessionsToEnd::None,
                false,
                now,
            )
            .unwrap();
        let survivor = store.standalone_api_tokens_of_user(user.id).unwrap()[0].clone();
        assert!(matches!(
            store.replace_api_token(&survivor, &before_change),
            Err(StoreError::CredentialsChanged)
        ));

        // A change to a token deleted meanwhile does not bring it back.
        let current = Requester {
            credential_version: user.credential_version + 1,
            ..before_change
        };
        store
            .delete_api_token_of_user(user.id, &survivor.hash)
            .unwrap();
        assert!(
            store
                .replace_api_token(&survivor, &current)
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .standalone_api_tokens_of_user(user.id)
                .unwrap()
                .is_empty()
        );

        // A sub-user of a parent deleted meanwhile is not made.
        let parent = add_user(&store, "parent@example.com");
        store.delete_user_tree(parent.id).unwrap();
        let orphan = NewUser {
            email: "orphan@example.com".to_owned(),
            normalized_email: "orphan@example.com".to_owned(),
            password_hash: None,
            role: Role::Sub,
            status: Status::Active,
            parent_id: Some(parent.id),
            first_name: None,
            last_name: None,
            permissions: PermissionSet::empty(),
            email_verified: false,
        };
        assert!(matches!(
            store.insert_user(orphan, now),
            Err(StoreError::CredentialsChanged)
        ));
        assert!(
            store
                .user_by_normalized_email("orphan@example.com")
                .unwrap()
                .is_none()
        );
    }

    /// A token or minted session made by a token whose life was shortened after the request
    /// read it still ends within the maker's life as it stands at the write, and a token made
    /// by a minted session stops working no later than that session (API.md 15.3).
    #[test]
    fn what_a_token_makes_fits_its_makers_life_as_it_stands_at_the_write() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "shortened@example.com");
        let now = now_unix_seconds();
        let maker = standalone_token(user.id, 1, None);
        store.insert_api_token(&maker).unwrap();
        let requester = Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: Some(RequesterCredential::ApiToken(maker.hash)),
            now,
        };
        // The owner shortens the maker to 60 s while the maker's requests are on their way.
        let shortened = ApiToken {
            expires_at: Some(now + 60),
            ..maker.clone()
        };
        let owner = Requester {
            credential: None,
            ..requester
        };
        store
            .replace_api_token(&shortened, &owner)
            .unwrap()
            .unwrap();
        let made = standalone_token(user.id, 2, Some(TokenMaker::ApiToken(maker.hash)));
        store
            .insert_api_token_within_limit(&made, 100, &requester)
            .unwrap();
        let stored = store.standalone_api_tokens_of_user(user.id).unwrap();
        let made = stored.iter().find(|token| token.hash[0] == 2).unwrap();
        assert_eq!(made.expires_at, Some(now + 60));
        let minted = NewSignIn {
            session: Session {
                kind: SessionKind::Minted,
                expire: now + 14 * 24 * 3600,
                made_by: Some(TokenMaker::ApiToken(maker.hash)),
                ..live_session(SessionId::new_for_user(user.id), user.id)
            },
            requester,
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        };
        store.record_sign_in(&minted).unwrap();
        let minted_session = store.session(minted.session.id).unwrap().unwrap();
        // A session works while expire > now: its last second is the maker's.
        assert_eq!(minted_session.expire, now + 61);

        // A token made by that minted session stops with it: its last second is one before.
        let by_minted = Requester {
            credential: Some(RequesterCredential::Session(minted_session.id)),
            ..requester
        };
        let grandchild = standalone_token(
            user.id,
            3,
            Some(TokenMaker::MintedSession(minted_session.id)),
        );
        store
            .insert_api_token_within_limit(&grandchild, 100, &by_minted)
            .unwrap();
        let stored = store.standalone_api_tokens_of_user(user.id).unwrap();
        let grandchild = stored.iter().find(|token| token.hash[0] == 3).unwrap();
        assert_eq!(grandchild.expires_at, Some(now + 60));
    }

    /// The second review's takeovers: a password change, a profile change or a sub-user that
    /// a thief's request had in flight when the owner's reset (or an activation) committed
    /// writes nothing after it.
    #[test]
    fn password_profile_and_sub_user_writes_from_an_overtaken_credential_write_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let owner = add_user(&store, "owner@example.com");
        let now = now_unix_seconds();
        let stolen = live_session(SessionId::new_for_user(owner.id), owner.id);
        store
            .insert_sessions(std::slice::from_ref(&stolen))
            .unwrap();
        let thief = Requester {
            user_id: owner.id,
            credential_version: owner.credential_version,
            credential: Some(RequesterCredential::Session(stolen.id)),
            now,
        };
        // The owner's reset commits first: a new password, every session ended.
        let owners_hash = PasswordHashString("$argon2id$owners".to_owned());
        store
            .change_password(None, owner.id, &owners_hash, SessionsToEnd::All, true, now)
            .unwrap();
        let thiefs_hash = PasswordHashString("$argon2id$thiefs".to_owned());
        assert!(matches!(
            store.change_password(
                Some(&thief),
                owner.id,
                &thiefs_hash,
                SessionsToEnd::None,
                false,
                now
            ),
            Err(StoreError::CredentialsChanged)
        ));
        assert!(matches!(
            store.update_user_for(Some(&thief), owner.id, now, |user| {
                user.first_name = Some("Thief".to_owned())
            }),
            Err(StoreError::CredentialsChanged)
        ));
        let sub_user = NewUser {
            email: "thiefs-sub@example.com".to_owned(),
            normalized_email: "thiefs-sub@example.com".to_owned(),
            password_hash: None,
            role: Role::Sub,
            status: Status::Active,
            parent_id: Some(owner.id),
            first_name: None,
            last_name: None,
            permissions: PermissionSet::empty(),
            email_verified: false,
        };
        assert!(matches!(
            store.insert_sub_user(sub_user, now, &thief),
            Err(StoreError::CredentialsChanged)
        ));
        let after = store.user_by_id(owner.id).unwrap().unwrap();
        assert_eq!(after.password_hash, Some(owners_hash));
        assert_eq!(after.first_name, None);
        assert!(store.children_of(owner.id).unwrap().is_empty());
    }

    /// A link planted where the store file goes is refused, not followed: an admin command
    /// run as root in a data directory another user owns must not reset another file's mode.
    #[test]
    fn a_link_in_place_of_the_store_file_is_refused_and_its_target_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let elsewhere = directory.path().join("someone-elses-file");
        std::fs::write(&elsewhere, b"not a store").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = directory.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::os::unix::fs::symlink(&elsewhere, data.join("latchkey.redb")).unwrap();
        assert!(matches!(
            Store::open(&data.join("latchkey.redb"), 1024 * 1024),
            Err(StoreError::Io { .. })
        ));
        let mode = std::fs::metadata(&elsewhere).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not a store");
    }

    /// The purge of unproved sign-ups reads its own index, not every user; a file written
    /// before the index (schema version 2) gets it filled when it opens.
    #[test]
    fn unproved_sign_ups_are_indexed_for_the_purge_and_older_files_are_indexed_at_open() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let long_ago = now_unix_seconds() - 30 * 86_400;
        let pending = store
            .insert_user(
                NewUser {
                    email: "pending@example.com".to_owned(),
                    normalized_email: "pending@example.com".to_owned(),
                    password_hash: None,
                    role: Role::User,
                    status: Status::Pending,
                    parent_id: None,
                    first_name: None,
                    last_name: None,
                    permissions: PermissionSet::empty(),
                    email_verified: false,
                },
                long_ago,
            )
            .unwrap();
        add_user(&store, "active@example.com");
        let now = now_unix_seconds();
        assert_eq!(
            store.unproved_sign_ups_created_before(now, 10).unwrap(),
            vec![pending.id]
        );
        // What an older build left: no index, version 2.
        let transaction = store.begin_write().unwrap();
        transaction
            .delete_table(email::CREATED_UNPROVEDUSERID)
            .unwrap();
        transaction.commit().unwrap();
        set_schema_version(&store, 2);
        drop(store);
        let store = open_store(&directory);
        assert_eq!(
            store.unproved_sign_ups_created_before(now, 10).unwrap(),
            vec![pending.id]
        );
        assert!(
            store
                .unproved_sign_ups_created_before(long_ago, 10)
                .unwrap()
                .is_empty()
        );
    }
}
