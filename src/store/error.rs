//! The store's one error type: redb's and PostgreSQL's failures, records that do not decode, a file from a
//! newer build, and the conflicts a caller must branch on (`auth::error` maps them, once).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Redb(#[from] redb::Error),
    /// The PostgreSQL backend's failures: a connection, a statement, the pool.
    #[error("database failed: {0}")]
    Postgres(String),
    /// An operation the chosen backend leaves to its own tools (a backup on PostgreSQL).
    #[error("{0}")]
    NotOnThisBackend(&'static str),
    /// The thread that ran a write failed before it could answer.
    #[error("a store write was interrupted: {0}")]
    WriteInterrupted(String),
    #[error("a stored {0} record does not decode")]
    CorruptRecord(&'static str),
    /// The file was written by a newer build: this one could misread it, so it refuses it.
    #[error(
        "the store file has schema version {found}, newer than the {supported} this build supports"
    )]
    NewerSchema { found: u64, supported: u64 },
    #[error("the email address is taken")]
    EmailTaken,
    #[error("the last active root cannot be suspended, demoted or deleted")]
    LastActiveRoot,
    /// A sign-in or mint verified against credentials that changed (a password change or a
    /// suspension) before it could commit, or its user is gone.
    #[error("the user's credentials changed while signing in")]
    CredentialsChanged,
    #[error("the user holds the most API tokens allowed")]
    TooManyApiTokens,
    /// A second-factor write found the state it needs gone (a spent code, an expired
    /// mfa-token, TOTP turned off meanwhile): nothing was written.
    #[error("second-factor change refused: {0:?}")]
    SecondFactorRefused(crate::model::second_factor::SecondFactorRefusal),
    #[error("the user holds the most passkeys allowed")]
    TooManyPasskeys,
    /// The authenticator's credential id is already some passkey's (anyone's).
    #[error("the credential is already registered")]
    PasskeyAlreadyRegistered,
    /// A ceremony's challenge that cannot be finished: used, never made, made for another
    /// ceremony or user, or expired.
    #[error("the passkey challenge is refused: {0:?}")]
    PasskeyChallengeRefused(crate::model::passkey::PasskeyChallengeProblem),
    /// The passkey an assertion verified against was removed before the assertion committed.
    #[error("the passkey was removed")]
    PasskeyGone,
    /// As many ceremonies are open as the store keeps, even after purging the expired.
    #[error("too many passkey ceremonies are open")]
    TooManyPasskeyChallenges,
    /// As many browser OAuth sign-ins are started as the store keeps, even after purging.
    #[error("too many browser OAuth sign-ins are started")]
    TooManyOAuthBrowserStates,
    #[error("the store file {path} is held by another process")]
    Locked { path: String },
    #[error("the store file {path} could not be prepared: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<tokio_postgres::Error> for StoreError {
    /// The driver's own text says only "db error" for what the server refused: the server's
    /// SQLSTATE and message are added, for the log (clients see a sanitized error).
    fn from(error: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(match error.as_db_error() {
            Some(refused) => format!("{error}: {} ({})", refused.message(), refused.code().code()),
            None => match std::error::Error::source(&error) {
                Some(cause) => format!("{error}: {cause}"),
                None => error.to_string(),
            },
        })
    }
}

macro_rules! from_redb_error {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> StoreError {
                StoreError::Redb(redb::Error::from(error))
            }
        }
    )*};
}

from_redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
