//! The store's one error type: redb's and PostgreSQL's failures, records that do not decode, a file from a
//! newer build, and the conflicts a caller must branch on (`auth::error` maps them, once).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Redb(#[from] redb::Error),
    /// The PostgreSQL backend's failures that are not an outage: a statement refused, a
    /// value that does not fit.
    #[error("database failed: {0}")]
    Postgres(String),
    /// The database cannot serve now, though nothing is wrong with the request: refused or
    /// lost connections, no pooled connection within the wait, the server shutting down or
    /// out of connections, the writer lock not granted within `lock_timeout`. Clients get a
    /// 503 to retry, not a 500.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
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
    /// A sign-in by a first factor alone found that the user holds a second factor (what
    /// the user holds, for the challenge): nothing was written.
    #[error("the user holds a second factor")]
    SecondFactorHeld(crate::model::second_factor::SecondFactorSummary),
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
        match error.as_db_error() {
            Some(refused) => {
                let text = format!("{error}: {} ({})", refused.message(), refused.code().code());
                if is_outage_state(refused.code().code()) {
                    StoreError::Unavailable(text)
                } else {
                    StoreError::Postgres(text)
                }
            }
            None => {
                let cause = std::error::Error::source(&error);
                let text = match cause {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error.to_string(),
                };
                // No answer from the server at all: the connection is gone or never came.
                let lost = error.is_closed()
                    || cause.is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some());
                if lost {
                    StoreError::Unavailable(text)
                } else {
                    StoreError::Postgres(text)
                }
            }
        }
    }
}

/// The SQLSTATEs that say the database cannot serve now, not that the statement is wrong:
/// class 08 (connection exceptions), the server shutting down or starting (57P01 to 57P03),
/// too many connections (53300), a lock not granted within `lock_timeout` (55P03), and a
/// transaction the server rolled back to break a deadlock or a serialization conflict
/// (40P01, 40001): each is worth retrying as it stands.
fn is_outage_state(state: &str) -> bool {
    state.starts_with("08")
        || matches!(
            state,
            "57P01" | "57P02" | "57P03" | "53300" | "55P03" | "40P01" | "40001"
        )
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

#[cfg(test)]
mod tests {
    use super::is_outage_state;

    /// The database's trouble (503 to retry) against a statement's (500, a bug to fix). A
    /// refusal while connecting is always the former (`connection_from`), whatever its state.
    #[test]
    fn outages_are_told_from_refused_statements_by_their_sqlstate() {
        for outage in [
            "08000", "08006", "08P01", "57P01", "57P02", "57P03", "53300", "55P03", "40P01",
            "40001",
        ] {
            assert!(is_outage_state(outage), "{outage}");
        }
        for refused in [
            "23505", "23503", "22003", "42P01", "53200", "57014", "55000",
        ] {
            assert!(!is_outage_state(refused), "{refused}");
        }
    }
}
