//! Storage: the only module that knows a database. This file is the interface: `Store`,
//! and the types that cross the boundary. Behind it the embedded backend (`redb_backend`,
//! one redb file); each public function is one transaction, and every write commits durably
//! before it returns.

mod backend;
mod copy;
mod error;
mod postgres_backend;
pub(crate) mod redb_backend;
mod signing_key_rules;
mod stored_name;

use crate::model::second_factor::SecondFactorSummary;
use crate::model::{
    ApiToken, EmailTokenPurpose, OutgoingMail, PasswordHashString, Secret, Session, SessionId,
    SigningKeyStatus, UnixSeconds, User, UserId,
};

pub use crate::store::backend::{MaintenanceTurn, Store};
pub use crate::store::copy::{CopiedTable, CopyError, CopyProgress, CopySummary};
pub use crate::store::error::StoreError;
#[cfg(test)]
pub(crate) use crate::store::postgres_backend::shared_counters_on_a_fresh_database;
/// The rate limiters' buckets that every node shares: only on PostgreSQL
/// (`Store::shared_counters`).
pub use crate::store::postgres_backend::{
    BucketTake, ConditionalTake, SharedBucket, SharedCounters,
};
pub use crate::store::redb_backend::is_unproved_sign_up;

/// What `check_backup` found in a backup file.
#[derive(Debug)]
pub struct BackupSummary {
    /// The backup's store id; `None` when it has none (written by a build before store ids).
    pub store_id: Option<String>,
    pub signing_keys: Vec<StoredSigningKey>,
}

/// A signing key as the store keeps it; the token module turns it into a usable key.
#[derive(Clone, Debug)]
pub struct StoredSigningKey {
    pub key_id: String,
    pub secret_key_bytes: Secret<Vec<u8>>,
    pub status: SigningKeyStatus,
    pub created: UnixSeconds,
    pub retired_at: Option<UnixSeconds>,
    /// When it signs (or signed) from: set for keys published ahead as `next`.
    pub activates_at: Option<UnixSeconds>,
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

/// Everything a sign-in writes, committed in one transaction.
#[derive(Clone, Debug)]
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
    /// A first factor alone: if the user holds a second factor when the transaction runs,
    /// nothing is written and the answer is `StoreError::SecondFactorHeld`. Checked in the
    /// write, so an enrolment that commits first always wins.
    pub refuse_if_second_factor_held: bool,
}

/// What a token check reads besides the credential, its user and the parent: the route
/// decides, so a profile that shows the user's second factors costs one read, not two (on
/// PostgreSQL, one statement instead of two round trips).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlsoRead {
    Nothing,
    SecondFactorSummary,
}

/// A session credential's whole context, read in one transaction.
#[derive(Clone, Debug)]
pub struct SessionContext {
    pub session: Session,
    pub user: User,
    pub parent: Option<User>,
    /// Read only when asked for (`AlsoRead::SecondFactorSummary`).
    pub second_factors: Option<SecondFactorSummary>,
}

/// An API token credential's whole context, read in one transaction.
#[derive(Clone, Debug)]
pub struct ApiTokenContext {
    pub api_token: ApiToken,
    pub session: Option<Session>,
    pub user: User,
    pub parent: Option<User>,
    /// Read only when asked for (`AlsoRead::SecondFactorSummary`).
    pub second_factors: Option<SecondFactorSummary>,
}

/// Which sessions a password change ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionsToEnd {
    None,
    All,
    AllExcept(SessionId),
}

/// What a sign-up did; the answer to the client is the same for all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignUpEffect {
    Created,
    RefreshedPending,
    AddressInUse,
}

/// Which change a consumed token makes. Either one proves the address (`email_verified`),
/// and either one activates a pending sign-up: that ends whatever was made while it was
/// pending and kills the account's other links (API.md 15.5).
#[derive(Clone, Debug)]
pub enum TokenAction {
    /// A verification link: a pending sign-up becomes active with the password of the
    /// attempt the link belongs to; an active account only becomes verified.
    Activate,
    /// Set this password hash and end every session and API token of the user.
    SetPassword(PasswordHashString),
}

/// The link `issue_email_token` stores and mails, chosen once the user is known.
#[derive(Debug)]
pub struct LinkToIssue {
    pub purpose: EmailTokenPurpose,
    pub expires_at: UnixSeconds,
    pub mail: OutgoingMail,
}

/// What linking an identity to an existing account did.
#[derive(Clone, Debug)]
pub enum IdentityLink {
    /// Linked; the user, unchanged.
    Linked(User),
    /// The identity was already linked (a concurrent sign-in won): this is its user.
    AlreadyLinked(User),
    /// The account is gone, or no longer passes `may_link`: nothing was written.
    Refused,
}

/// A `next` key that is already waiting to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingNextKey {
    pub key_id: String,
    pub activates_at: UnixSeconds,
}

/// What a revocation did besides removing the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRevocation {
    /// The key that signs from now on, when the revoked key was the one signing.
    pub new_active_key_id: Option<String>,
}
