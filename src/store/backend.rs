//! `Store`, the one interface to storage: an async function per store operation, each one
//! transaction, dispatched to the backend the config chose. On redb, reads run inline (a
//! token check never waits for a thread) and writes, which fsync, on the blocking pool.

use std::path::Path;

use crate::model::oauth_browser::{OAuthBrowserState, OAuthStateHash};
use crate::model::passkey::{
    Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyId,
};
use crate::model::second_factor::{
    ActiveTotp, MfaToken, PendingTotp, RecoveryCodeSet, SecondFactorProof, SecondFactorSummary,
    TotpSecret,
};
use crate::model::{
    ApiToken, EmailTokenProblem, EmailTokenPurpose, NewUser, OAuthIdentity, OutgoingMail,
    PasswordHashString, QueuedMail, Session, SessionId, UnixSeconds, User, UserId,
};
use crate::store::copy::{self, CopyError, CopyProgress, CopySummary};
use crate::store::postgres_backend::{MaintenanceLock, PostgresStore};
use crate::store::redb_backend::RedbStore;
use crate::store::{
    AlsoRead, ApiTokenContext, BackupSummary, IdentityLink, KeyRevocation, LinkToIssue, NewSignIn,
    PendingNextKey, Requester, SessionContext, SessionsToEnd, SignUpEffect, StoreError,
    StoredSigningKey, TokenAction,
};

/// A cheap handle to the open store, whichever backend holds it.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Redb(RedbStore),
    Postgres(PostgresStore),
}

/// Runs a redb write on the blocking pool, so that its fsync never stalls the runtime.
async fn off_the_runtime<T: Send + 'static>(
    write: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|error| StoreError::WriteInterrupted(error.to_string()))?
}

/// `Store::maintenance_turn`: while it lives, no other node runs a maintenance pass.
#[derive(Debug)]
#[must_use = "the turn ends when it drops"]
pub struct MaintenanceTurn {
    lock: Option<MaintenanceLock>,
}

impl MaintenanceTurn {
    /// Ends the turn, so another node may take the next pass.
    pub async fn end(self) {
        if let Some(lock) = self.lock {
            lock.release().await;
        }
    }
}

impl Store {
    /// Opens (or creates) the redb file at `path` (see `RedbStore::open`).
    pub fn open_redb(path: &Path, cache_size_bytes: usize) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Redb(RedbStore::open(path, cache_size_bytes)?),
        })
    }

    /// Connects to the PostgreSQL database at `url` with at most `pool_size` connections,
    /// migrating it to this build's schema (see `PostgresStore::open`).
    pub async fn open_postgres(url: &str, pool_size: usize) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Postgres(PostgresStore::open(url, pool_size).await?),
        })
    }

    /// The install's id: made when the store was created, kept by backups and copies.
    pub fn store_id(&self) -> &str {
        match &self.backend {
            Backend::Redb(store) => store.store_id(),
            Backend::Postgres(store) => store.store_id(),
        }
    }

    /// Whether other processes may change this store while this one runs: other nodes and
    /// the CLI on PostgreSQL; on redb only this process opens the file (the CLI goes
    /// through its admin socket).
    pub fn is_shared(&self) -> bool {
        match &self.backend {
            Backend::Redb(_) => false,
            Backend::Postgres(_) => true,
        }
    }

    /// This node's turn at the maintenance pass (purges and signing-key upkeep), or `None`
    /// while another node takes its own: on PostgreSQL an advisory lock, held until
    /// `MaintenanceTurn::end` (or, should the pass be cancelled, until its connection
    /// closes); on redb, whose file one process holds, always granted. Never waits.
    pub async fn maintenance_turn(&self) -> Result<Option<MaintenanceTurn>, StoreError> {
        match &self.backend {
            Backend::Redb(_) => Ok(Some(MaintenanceTurn { lock: None })),
            Backend::Postgres(store) => Ok(store
                .try_maintenance_lock()
                .await?
                .map(|lock| MaintenanceTurn { lock: Some(lock) })),
        }
    }

    /// Whether the store answers now: on PostgreSQL, one trivial statement on a pooled
    /// connection (`/health`, so that a load balancer leaves out a node that cannot reach the
    /// database); redb, a file this process holds open, always answers.
    pub async fn check_reachable(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(_) => Ok(()),
            Backend::Postgres(store) => store.check_reachable().await,
        }
    }

    /// The rate limiters' buckets in the database, for a backend that many nodes share
    /// (PostgreSQL); `None` on redb, whose one node keeps them in memory.
    pub fn shared_counters(&self) -> Option<crate::store::SharedCounters> {
        match &self.backend {
            Backend::Redb(_) => None,
            Backend::Postgres(store) => Some(store.shared_counters()),
        }
    }

    /// How many bytes the store takes: the redb file's size, or the PostgreSQL database's.
    pub async fn size_in_bytes(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.size_in_bytes(),
            Backend::Postgres(store) => store.size_in_bytes().await,
        }
    }

    /// Writes a consistent copy of the whole store to a new redb file at `path`.
    pub async fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let path = path.to_path_buf();
                off_the_runtime(move || store.backup_to(&path)).await
            }
            Backend::Postgres(_) => Err(StoreError::NotOnThisBackend(
                "backups of a PostgreSQL store are PostgreSQL's own: use pg_dump",
            )),
        }
    }

    /// Checks that `path` is a redb store this build can open and that it holds a signing
    /// key: what `restore` requires before it replaces anything.
    pub fn check_backup(path: &Path) -> Result<BackupSummary, StoreError> {
        RedbStore::check_backup(path)
    }

    // users

    /// A sub-user made on a request's behalf: `requester` (its parent's credential) is
    /// checked again inside the transaction, so a sub-user made while its parent's
    /// credential was revoked, or its password changed, is not made.
    pub async fn insert_sub_user(
        &self,
        new_user: NewUser,
        now: UnixSeconds,
        requester: &Requester,
    ) -> Result<User, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let requester = *requester;
                off_the_runtime(move || store.insert_sub_user(new_user, now, &requester)).await
            }
            Backend::Postgres(store) => store.insert_sub_user(new_user, now, requester).await,
        }
    }

    pub async fn insert_user(
        &self,
        new_user: NewUser,
        now: UnixSeconds,
    ) -> Result<User, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.insert_user(new_user, now)).await
            }
            Backend::Postgres(store) => store.insert_user(new_user, now).await,
        }
    }

    /// Inserts many users in one transaction (bulk seeding: benchmarks and imports); stops
    /// at the first taken email, writing nothing.
    pub async fn insert_users(
        &self,
        new_users: Vec<NewUser>,
        now: UnixSeconds,
    ) -> Result<Vec<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.insert_users(new_users, now)).await
            }
            Backend::Postgres(store) => store.insert_users(new_users, now).await,
        }
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.user_by_id(id),
            Backend::Postgres(store) => store.user_by_id(id).await,
        }
    }

    pub async fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.user_by_normalized_email(email),
            Backend::Postgres(store) => store.user_by_normalized_email(email).await,
        }
    }

    /// Every user, in id order (the admin CLI's listing).
    pub async fn all_users(&self) -> Result<Vec<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.all_users(),
            Backend::Postgres(store) => store.all_users().await,
        }
    }

    /// The user's sub-users, in id order.
    pub async fn children_of(&self, parent_id: UserId) -> Result<Vec<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.children_of(parent_id),
            Backend::Postgres(store) => store.children_of(parent_id).await,
        }
    }

    /// Writes a changed user record (not its email, which has its own index).
    pub async fn replace_user(&self, user: &User) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let user = user.clone();
                off_the_runtime(move || store.replace_user(&user)).await
            }
            Backend::Postgres(store) => store.replace_user(user).await,
        }
    }

    /// Changes a user through `change`, refusing (with `LastActiveRoot`) a change that would
    /// leave no active root. A suspension ends the user's unused reset links.
    pub async fn update_user(
        &self,
        id: UserId,
        now: UnixSeconds,
        change: impl FnOnce(&mut User) + Send + 'static,
    ) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.update_user(id, now, change)).await
            }
            Backend::Postgres(store) => store.update_user(id, now, change).await,
        }
    }

    /// `update_user` on a request's behalf: `requester` is checked again inside the
    /// transaction.
    pub async fn update_user_for(
        &self,
        requester: Option<&Requester>,
        id: UserId,
        now: UnixSeconds,
        change: impl FnOnce(&mut User) + Send + 'static,
    ) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let requester = requester.copied();
                off_the_runtime(move || store.update_user_for(requester.as_ref(), id, now, change))
                    .await
            }
            Backend::Postgres(store) => store.update_user_for(requester, id, now, change).await,
        }
    }

    /// Sets a password hash and ends sessions (and standalone API tokens) in one transaction.
    ///
    /// `requester` (absent for the operator's CLI) is checked again inside the transaction,
    /// so a change that a reset, a suspension or a revocation overtook writes nothing. The
    /// user's unused reset links end, unless the account is a pending sign-up (whose links
    /// belong to its other attempts).
    pub async fn change_password(
        &self,
        requester: Option<&Requester>,
        user_id: UserId,
        hash: &PasswordHashString,
        sessions_to_end: SessionsToEnd,
        end_standalone_api_tokens: bool,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let requester = requester.copied();
                let hash = hash.clone();
                off_the_runtime(move || {
                    store.change_password(
                        requester.as_ref(),
                        user_id,
                        &hash,
                        sessions_to_end,
                        end_standalone_api_tokens,
                        now,
                    )
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .change_password(
                        requester,
                        user_id,
                        hash,
                        sessions_to_end,
                        end_standalone_api_tokens,
                        now,
                    )
                    .await
            }
        }
    }

    /// Deletes the user, its sub-users, and all their sessions and API tokens, in one
    /// transaction. Refuses to delete the last active root.
    pub async fn delete_user_tree(&self, id: UserId) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.delete_user_tree(id)).await
            }
            Backend::Postgres(store) => store.delete_user_tree(id).await,
        }
    }

    // sessions

    /// Writes a sign-in's session, its API token, and (optionally) ends the user's other
    /// sessions and replaces its password hash, all in one durable transaction. Answers the
    /// user's linked identities as committed. A first factor alone is refused
    /// (`SecondFactorHeld`, nothing written) when the user holds a second factor.
    pub async fn record_sign_in(
        &self,
        sign_in: &NewSignIn,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let sign_in = sign_in.clone();
                off_the_runtime(move || store.record_sign_in(&sign_in)).await
            }
            Backend::Postgres(store) => store.record_sign_in(sign_in).await,
        }
    }

    /// The session, its user and the user's parent (and what `also` asks for), or `None`
    /// if the session is gone.
    pub async fn session_context(
        &self,
        id: SessionId,
        also: AlsoRead,
    ) -> Result<Option<SessionContext>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.session_context(id, also),
            Backend::Postgres(store) => store.session_context(id, also).await,
        }
    }

    pub async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.session(id),
            Backend::Postgres(store) => store.session(id).await,
        }
    }

    /// The user's sessions that have not expired, newest first.
    pub async fn live_sessions_of_user(
        &self,
        user_id: UserId,
        now: UnixSeconds,
    ) -> Result<Vec<Session>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.live_sessions_of_user(user_id, now),
            Backend::Postgres(store) => store.live_sessions_of_user(user_id, now).await,
        }
    }

    /// Ends one session of this user; `false` when it is not there (or not theirs).
    pub async fn end_session_of_user(
        &self,
        user_id: UserId,
        id: SessionId,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.end_session_of_user(user_id, id)).await
            }
            Backend::Postgres(store) => store.end_session_of_user(user_id, id).await,
        }
    }

    /// Ends every session of the user, the caller's own included.
    pub async fn end_all_sessions_of_user(&self, user_id: UserId) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.end_all_sessions_of_user(user_id)).await
            }
            Backend::Postgres(store) => store.end_all_sessions_of_user(user_id).await,
        }
    }

    /// Ends every session of the user but `kept` (the caller's own): "end all others".
    pub async fn end_other_sessions_of_user(
        &self,
        user_id: UserId,
        kept: SessionId,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.end_other_sessions_of_user(user_id, kept)).await
            }
            Backend::Postgres(store) => store.end_other_sessions_of_user(user_id, kept).await,
        }
    }

    /// How many sessions the store holds, expired or not.
    pub async fn session_count(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.session_count(),
            Backend::Postgres(store) => store.session_count().await,
        }
    }

    /// Inserts many sessions in one transaction: for seeding benchmarks and tests.
    pub async fn insert_sessions(&self, sessions: &[Session]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let sessions = sessions.to_vec();
                off_the_runtime(move || store.insert_sessions(&sessions)).await
            }
            Backend::Postgres(store) => store.insert_sessions(sessions).await,
        }
    }

    /// Deletes up to `limit` sessions that expired before `now`; returns how many.
    pub async fn purge_expired_sessions(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.purge_expired_sessions(now, limit)).await
            }
            Backend::Postgres(store) => store.purge_expired_sessions(now, limit).await,
        }
    }

    // api_tokens

    /// The API token with this hash, its session (if bound to one), its user and parent
    /// (and what `also` asks for).
    pub async fn api_token_context(
        &self,
        hash: &[u8; 32],
        also: AlsoRead,
    ) -> Result<Option<ApiTokenContext>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.api_token_context(hash, also),
            Backend::Postgres(store) => store.api_token_context(hash, also).await,
        }
    }

    /// Stores an API token (its hash and record) in one transaction.
    pub async fn insert_api_token(&self, api_token: &ApiToken) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let api_token = api_token.clone();
                off_the_runtime(move || store.insert_api_token(&api_token)).await
            }
            Backend::Postgres(store) => store.insert_api_token(api_token).await,
        }
    }

    /// Stores many API tokens in one transaction (bulk seeding).
    pub async fn insert_api_tokens(&self, api_tokens: &[ApiToken]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let api_tokens = api_tokens.to_vec();
                off_the_runtime(move || store.insert_api_tokens(&api_tokens)).await
            }
            Backend::Postgres(store) => store.insert_api_tokens(api_tokens).await,
        }
    }

    /// Stores a standalone API token unless its user already holds `limit` of them, expired
    /// ones included (they are kept 30 days and can be deleted): `TooManyApiTokens`; and
    /// only while its requester still stands (`CredentialsChanged`).
    pub async fn insert_api_token_within_limit(
        &self,
        api_token: &ApiToken,
        limit: usize,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let api_token = api_token.clone();
                let requester = *requester;
                off_the_runtime(move || {
                    store.insert_api_token_within_limit(&api_token, limit, &requester)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .insert_api_token_within_limit(api_token, limit, requester)
                    .await
            }
        }
    }

    /// The user's API tokens that are not bound to a session, oldest first.
    pub async fn standalone_api_tokens_of_user(
        &self,
        user_id: UserId,
    ) -> Result<Vec<ApiToken>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.standalone_api_tokens_of_user(user_id),
            Backend::Postgres(store) => store.standalone_api_tokens_of_user(user_id).await,
        }
    }

    /// Replaces a token's record (its lifetime, permissions, restrictions), keeping its
    /// indexes in step, while its requester still stands. A token made by another token
    /// keeps expiring no later than its maker, and a shortened lifetime shortens what the
    /// token made (API.md 15.3). Answers the token as stored, or `None` when it is gone.
    pub async fn replace_api_token(
        &self,
        api_token: &ApiToken,
        requester: &Requester,
    ) -> Result<Option<ApiToken>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let api_token = api_token.clone();
                let requester = *requester;
                off_the_runtime(move || store.replace_api_token(&api_token, &requester)).await
            }
            Backend::Postgres(store) => store.replace_api_token(api_token, requester).await,
        }
    }

    /// Deletes one of the user's tokens; `false` when it is not there.
    pub async fn delete_api_token_of_user(
        &self,
        user_id: UserId,
        hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let hash = *hash;
                off_the_runtime(move || store.delete_api_token_of_user(user_id, &hash)).await
            }
            Backend::Postgres(store) => store.delete_api_token_of_user(user_id, hash).await,
        }
    }

    /// Deletes up to `limit` standalone tokens that expired before `before`; returns how many.
    pub async fn purge_api_tokens_expired_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.purge_api_tokens_expired_before(before, limit)).await
            }
            Backend::Postgres(store) => store.purge_api_tokens_expired_before(before, limit).await,
        }
    }

    // signup

    /// A sign-up in one transaction. A free address gets a pending user; an unproved pending
    /// one takes the new password and names for signing in while pending (when allowed). In
    /// both cases the attempt's password and names go with its own link, and earlier
    /// attempts keep theirs (API.md 15.5). An address in use gets only a notice. Each case
    /// queues its email in the same commit.
    pub async fn sign_up(
        &self,
        new_user: NewUser,
        token_hash: [u8; 32],
        token_expires_at: UnixSeconds,
        verification_mail: impl FnOnce(&User) -> OutgoingMail + Send + 'static,
        address_in_use_mail: impl FnOnce(&User) -> OutgoingMail + Send + 'static,
        now: UnixSeconds,
    ) -> Result<SignUpEffect, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || {
                    store.sign_up(
                        new_user,
                        token_hash,
                        token_expires_at,
                        verification_mail,
                        address_in_use_mail,
                        now,
                    )
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .sign_up(
                        new_user,
                        token_hash,
                        token_expires_at,
                        verification_mail,
                        address_in_use_mail,
                        now,
                    )
                    .await
            }
        }
    }

    /// Issues a token for the user with this address if `link_for` gives it one: earlier
    /// tokens of that purpose (other than sign-up attempts' links) are voided and the mail is
    /// queued, all in one commit. Returns whether one was issued.
    pub async fn issue_email_token(
        &self,
        normalized_email: &str,
        token_hash: [u8; 32],
        link_for: impl FnOnce(&User) -> Option<LinkToIssue> + Send + 'static,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let normalized_email = normalized_email.to_owned();
                off_the_runtime(move || {
                    store.issue_email_token(&normalized_email, token_hash, link_for, now)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .issue_email_token(normalized_email, token_hash, link_for, now)
                    .await
            }
        }
    }

    /// The user a token would act on, if it is usable now: read before any hashing, so an
    /// unknown, used or expired token costs none (API.md 15.7). `consume_email_token`
    /// checks again when it writes.
    pub async fn email_token_user(
        &self,
        hash: &[u8; 32],
        purpose: EmailTokenPurpose,
        now: UnixSeconds,
    ) -> Result<Result<User, EmailTokenProblem>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.email_token_user(hash, purpose, now),
            Backend::Postgres(store) => store.email_token_user(hash, purpose, now).await,
        }
    }

    /// Consumes a token and makes its change in the same transaction. The token stays,
    /// marked used, so a second use is told apart from a bad token.
    pub async fn consume_email_token(
        &self,
        hash: &[u8; 32],
        purpose: EmailTokenPurpose,
        action: TokenAction,
        now: UnixSeconds,
    ) -> Result<Result<User, EmailTokenProblem>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let hash = *hash;
                off_the_runtime(move || store.consume_email_token(&hash, purpose, action, now))
                    .await
            }
            Backend::Postgres(store) => store.consume_email_token(hash, purpose, action, now).await,
        }
    }

    /// Deletes up to `limit` emailed tokens that expired before `before`.
    pub async fn purge_email_tokens_expired_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.purge_email_tokens_expired_before(before, limit))
                    .await
            }
            Backend::Postgres(store) => {
                store.purge_email_tokens_expired_before(before, limit).await
            }
        }
    }

    /// Up to `limit` ids of unproved sign-ups created before `before`, for
    /// `purge_unproved_sign_ups`. A read transaction: the scan never holds the write lock.
    pub async fn unproved_sign_ups_created_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.unproved_sign_ups_created_before(before, limit),
            Backend::Postgres(store) => store.unproved_sign_ups_created_before(before, limit).await,
        }
    }

    /// Deletes those of these users that are still unproved sign-ups created before
    /// `before` (API.md 15.15), with whatever they made while pending (sessions, API tokens,
    /// sub-users), their emailed tokens and the mail still queued to them, in one
    /// transaction. Returns how many accounts went.
    pub async fn purge_unproved_sign_ups(
        &self,
        user_ids: &[UserId],
        before: UnixSeconds,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let user_ids = user_ids.to_vec();
                off_the_runtime(move || store.purge_unproved_sign_ups(&user_ids, before)).await
            }
            Backend::Postgres(store) => store.purge_unproved_sign_ups(user_ids, before).await,
        }
    }

    // identities

    /// The user this identity signs in as; `None` when it is not linked (or its user is gone).
    pub async fn user_of_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.user_of_identity(provider, subject),
            Backend::Postgres(store) => store.user_of_identity(provider, subject).await,
        }
    }

    /// The user's linked identities, in (provider, subject) order.
    pub async fn identities_of_user(
        &self,
        user_id: UserId,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.identities_of_user(user_id),
            Backend::Postgres(store) => store.identities_of_user(user_id).await,
        }
    }

    /// Links (provider, subject) to the existing user `user_id`, if `may_link` still accepts
    /// that user inside this transaction. The user itself is not changed.
    pub async fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user_id: UserId,
        may_link: impl FnOnce(&User) -> bool + Send + 'static,
        now: UnixSeconds,
    ) -> Result<IdentityLink, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let provider = provider.to_owned();
                let subject = subject.to_owned();
                off_the_runtime(move || {
                    store.link_identity(&provider, &subject, user_id, may_link, now)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .link_identity(provider, subject, user_id, may_link, now)
                    .await
            }
        }
    }

    /// Creates a user and links (provider, subject) to it, in one transaction. If the
    /// identity got linked meanwhile, nothing is created and its user is answered instead.
    /// `EmailTaken` if the address is in use.
    pub async fn create_user_with_identity(
        &self,
        provider: &str,
        subject: &str,
        new_user: NewUser,
        now: UnixSeconds,
    ) -> Result<(User, bool), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let provider = provider.to_owned();
                let subject = subject.to_owned();
                off_the_runtime(move || {
                    store.create_user_with_identity(&provider, &subject, new_user, now)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .create_user_with_identity(provider, subject, new_user, now)
                    .await
            }
        }
    }

    // mail_queue

    /// Messages due for a delivery attempt, oldest first.
    pub async fn due_mails(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.due_mails(now, limit),
            Backend::Postgres(store) => store.due_mails(now, limit).await,
        }
    }

    /// Takes up to `limit` due messages for this node to send, those due longest first:
    /// then `remove_mail` when delivered, `postpone_mail` when not. On a shared store each
    /// is due again only at `lease_until`, so no other node takes it while this one sends
    /// (and one whose node died is sent when the lease ends); on redb, whose one process
    /// runs the one mail worker, a claim is a read.
    pub async fn claim_due_mails(
        &self,
        now: UnixSeconds,
        lease_until: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.claim_due_mails(now, lease_until, limit),
            Backend::Postgres(store) => store.claim_due_mails(now, lease_until, limit).await,
        }
    }

    /// How many messages wait in the queue, due or postponed.
    pub async fn queued_mail_count(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.queued_mail_count(),
            Backend::Postgres(store) => store.queued_mail_count().await,
        }
    }

    /// Removes a message from the queue (delivered, or given up).
    pub async fn remove_mail(&self, id: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.remove_mail(id)).await
            }
            Backend::Postgres(store) => store.remove_mail(id).await,
        }
    }

    /// Records a failed attempt and when to try again.
    pub async fn postpone_mail(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at: UnixSeconds,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.postpone_mail(id, attempts, next_attempt_at)).await
            }
            Backend::Postgres(store) => store.postpone_mail(id, attempts, next_attempt_at).await,
        }
    }

    // signing_keys

    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.signing_keys(),
            Backend::Postgres(store) => store.signing_keys().await,
        }
    }

    /// Stores a new active key and retires every other active key, in one transaction.
    pub async fn insert_active_signing_key(
        &self,
        key: &StoredSigningKey,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let key = key.clone();
                off_the_runtime(move || store.insert_active_signing_key(&key)).await
            }
            Backend::Postgres(store) => store.insert_active_signing_key(key).await,
        }
    }

    /// Removes a signing key (one that can no longer have live tokens).
    pub async fn delete_signing_key(&self, key_id: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let key_id = key_id.to_owned();
                off_the_runtime(move || store.delete_signing_key(&key_id)).await
            }
            Backend::Postgres(store) => store.delete_signing_key(key_id).await,
        }
    }

    /// Publishes `key` as `next`, to sign from `activates_at`, unless a `next` key is already
    /// waiting: then nothing is added and that key is returned. Due keys are promoted first.
    pub async fn insert_next_signing_key(
        &self,
        key: &StoredSigningKey,
        activates_at: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Option<PendingNextKey>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let key = key.clone();
                off_the_runtime(move || store.insert_next_signing_key(&key, activates_at, now))
                    .await
            }
            Backend::Postgres(store) => store.insert_next_signing_key(key, activates_at, now).await,
        }
    }

    /// Makes the `next` keys whose time has come active (the one that activated last signs)
    /// and retires the keys they replace. Returns whether anything changed.
    pub async fn promote_due_signing_keys(&self, now: UnixSeconds) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.promote_due_signing_keys(now)).await
            }
            Backend::Postgres(store) => store.promote_due_signing_keys(now).await,
        }
    }

    /// Removes a key at once. When it is the key that signs, a waiting `next` key signs from
    /// now on, else `replacement` (fresh key material) does: there is always a key that
    /// signs. `None` when there is no such key.
    pub async fn revoke_signing_key(
        &self,
        key_id: &str,
        replacement: &StoredSigningKey,
        now: UnixSeconds,
    ) -> Result<Option<KeyRevocation>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let key_id = key_id.to_owned();
                let replacement = replacement.clone();
                off_the_runtime(move || store.revoke_signing_key(&key_id, &replacement, now)).await
            }
            Backend::Postgres(store) => store.revoke_signing_key(key_id, replacement, now).await,
        }
    }

    // second_factors

    /// What the user holds, read in one transaction.
    pub async fn second_factor_summary(
        &self,
        user_id: UserId,
    ) -> Result<SecondFactorSummary, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.second_factor_summary(user_id),
            Backend::Postgres(store) => store.second_factor_summary(user_id).await,
        }
    }

    /// The user's active TOTP, if it has one.
    pub async fn active_totp(&self, user_id: UserId) -> Result<Option<ActiveTotp>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.active_totp(user_id),
            Backend::Postgres(store) => store.active_totp(user_id).await,
        }
    }

    /// The user's pending enrolment, unless there is none or it expired by `now`.
    pub async fn pending_totp(
        &self,
        user_id: UserId,
        now: UnixSeconds,
    ) -> Result<Option<PendingTotp>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.pending_totp(user_id, now),
            Backend::Postgres(store) => store.pending_totp(user_id, now).await,
        }
    }

    /// The user's unused recovery codes, as kept; `None` when it never had any.
    pub async fn recovery_codes(
        &self,
        user_id: UserId,
    ) -> Result<Option<RecoveryCodeSet>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.recovery_codes(user_id),
            Backend::Postgres(store) => store.recovery_codes(user_id).await,
        }
    }

    /// Holds a new enrolment, replacing any pending one; refused while TOTP is on.
    pub async fn start_totp_enrolment(
        &self,
        pending: &PendingTotp,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let pending = pending.clone();
                let requester = *requester;
                off_the_runtime(move || store.start_totp_enrolment(&pending, &requester)).await
            }
            Backend::Postgres(store) => store.start_totp_enrolment(pending, requester).await,
        }
    }

    /// Turns the pending enrolment whose secret a code just matched into the active TOTP,
    /// with the matched step as the last accepted one, and stores the recovery codes' hashes.
    /// Refused if that enrolment is no longer the pending one (replaced, expired, confirmed).
    pub async fn activate_totp(
        &self,
        secret: &TotpSecret,
        accepted_step: u64,
        recovery_codes: &RecoveryCodeSet,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let secret = *secret;
                let recovery_codes = recovery_codes.clone();
                let requester = *requester;
                off_the_runtime(move || {
                    store.activate_totp(&secret, accepted_step, &recovery_codes, &requester)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .activate_totp(secret, accepted_step, recovery_codes, requester)
                    .await
            }
        }
    }

    /// Turns TOTP off, spending the code or recovery code that proves the device (or its
    /// backup) is at hand: the TOTP, its pending enrolment and the recovery codes go.
    pub async fn disable_totp(
        &self,
        proof: SecondFactorProof,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let requester = *requester;
                off_the_runtime(move || store.disable_totp(proof, &requester)).await
            }
            Backend::Postgres(store) => store.disable_totp(proof, requester).await,
        }
    }

    /// Replaces every recovery code of the user; refused while TOTP is off.
    pub async fn replace_recovery_codes(
        &self,
        recovery_codes: &RecoveryCodeSet,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let recovery_codes = recovery_codes.clone();
                let requester = *requester;
                off_the_runtime(move || store.replace_recovery_codes(&recovery_codes, &requester))
                    .await
            }
            Backend::Postgres(store) => {
                store
                    .replace_recovery_codes(recovery_codes, requester)
                    .await
            }
        }
    }

    pub async fn insert_mfa_token(&self, token: &MfaToken) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let token = token.clone();
                off_the_runtime(move || store.insert_mfa_token(&token)).await
            }
            Backend::Postgres(store) => store.insert_mfa_token(token).await,
        }
    }

    /// The mfa-token with this hash, unless it is gone or expired by `now`.
    pub async fn mfa_token(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<MfaToken>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.mfa_token(hash, now),
            Backend::Postgres(store) => store.mfa_token(hash, now).await,
        }
    }

    /// Counts a wrong code against the mfa-token; the token is deleted at `max_wrong_codes`.
    /// Answers whether the token still lives.
    pub async fn record_wrong_second_factor(
        &self,
        hash: &[u8; 32],
        max_wrong_codes: u32,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let hash = *hash;
                off_the_runtime(move || store.record_wrong_second_factor(&hash, max_wrong_codes))
                    .await
            }
            Backend::Postgres(store) => {
                store
                    .record_wrong_second_factor(hash, max_wrong_codes)
                    .await
            }
        }
    }

    /// The second step of a sign-in: spends the mfa-token and the proof, and writes the
    /// session as `record_sign_in` does, all in one transaction. Refused (nothing written)
    /// when the token is gone or expired, or the proof was spent meanwhile.
    pub async fn record_sign_in_with_second_factor(
        &self,
        sign_in: &NewSignIn,
        mfa_token_hash: &[u8; 32],
        proof: SecondFactorProof,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let sign_in = sign_in.clone();
                let mfa_token_hash = *mfa_token_hash;
                off_the_runtime(move || {
                    store.record_sign_in_with_second_factor(&sign_in, &mfa_token_hash, proof)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .record_sign_in_with_second_factor(sign_in, mfa_token_hash, proof)
                    .await
            }
        }
    }

    /// `latchkey user mfa-reset`: removes the user's TOTP (pending or active), recovery
    /// codes and passkeys. Answers what the user held before.
    pub async fn reset_second_factors(
        &self,
        user_id: UserId,
    ) -> Result<SecondFactorSummary, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.reset_second_factors(user_id)).await
            }
            Backend::Postgres(store) => store.reset_second_factors(user_id).await,
        }
    }

    /// Deletes up to `limit` mfa-tokens and pending enrolments that expired by `now`.
    pub async fn purge_expired_second_factor_records(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.purge_expired_second_factor_records(now, limit)).await
            }
            Backend::Postgres(store) => store.purge_expired_second_factor_records(now, limit).await,
        }
    }

    // passkeys

    /// Keeps a started ceremony until it is finished or purged. When `max_open` challenges
    /// are kept already, expired ones are purged first in the same transaction; if that
    /// frees no room, `TooManyPasskeyChallenges`, and nothing is written.
    pub async fn insert_passkey_challenge(
        &self,
        challenge: &PasskeyChallenge,
        max_open: u64,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let challenge = challenge.clone();
                off_the_runtime(move || store.insert_passkey_challenge(&challenge, max_open, now))
                    .await
            }
            Backend::Postgres(store) => {
                store
                    .insert_passkey_challenge(challenge, max_open, now)
                    .await
            }
        }
    }

    /// A kept challenge, expired or not; `None` when it was never made, or is used or
    /// purged.
    pub async fn passkey_challenge(
        &self,
        id: PasskeyChallengeId,
    ) -> Result<Option<PasskeyChallenge>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.passkey_challenge(id),
            Backend::Postgres(store) => store.passkey_challenge(id).await,
        }
    }

    /// Deletes a challenge: a ceremony that failed (or expired) uses its challenge up.
    /// Whether it was there.
    pub async fn discard_passkey_challenge(
        &self,
        id: PasskeyChallengeId,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.discard_passkey_challenge(id)).await
            }
            Backend::Postgres(store) => store.discard_passkey_challenge(id).await,
        }
    }

    /// Finishes a registration in one transaction: the requester is checked again, the
    /// challenge taken (refused unless it is the requester's open registration), the cap
    /// (`TooManyPasskeys`) and the credential id's uniqueness (`PasskeyAlreadyRegistered`)
    /// checked, and the passkey written. On any refusal nothing is written.
    pub async fn finish_passkey_registration(
        &self,
        challenge_id: PasskeyChallengeId,
        passkey: &Passkey,
        max_per_user: usize,
        requester: &Requester,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let passkey = passkey.clone();
                let requester = *requester;
                off_the_runtime(move || {
                    store.finish_passkey_registration(
                        challenge_id,
                        &passkey,
                        max_per_user,
                        &requester,
                    )
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .finish_passkey_registration(challenge_id, passkey, max_per_user, requester)
                    .await
            }
        }
    }

    /// Finishes an assertion in one transaction: the challenge is taken (refused unless it
    /// is open, of `kind`, and, for one user's assertion, that user's), and the passkey's use
    /// recorded: `last_used`, and the credential as the ceremony updated it (its counter,
    /// its backup state), if it did. `PasskeyGone` when the passkey was removed meanwhile.
    /// Answers the passkey as it now stands.
    pub async fn finish_passkey_assertion(
        &self,
        challenge_id: PasskeyChallengeId,
        kind: PasskeyChallengeKind,
        passkey_id: PasskeyId,
        updated_credential: Option<Vec<u8>>,
        now: UnixSeconds,
    ) -> Result<Passkey, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || {
                    store.finish_passkey_assertion(
                        challenge_id,
                        kind,
                        passkey_id,
                        updated_credential,
                        now,
                    )
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .finish_passkey_assertion(
                        challenge_id,
                        kind,
                        passkey_id,
                        updated_credential,
                        now,
                    )
                    .await
            }
        }
    }

    /// The passkey whose authenticator credential id this is.
    pub async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<Passkey>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.passkey_by_credential_id(credential_id),
            Backend::Postgres(store) => store.passkey_by_credential_id(credential_id).await,
        }
    }

    /// The user's passkeys, oldest first.
    pub async fn passkeys_of_user(&self, user_id: UserId) -> Result<Vec<Passkey>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.passkeys_of_user(user_id),
            Backend::Postgres(store) => store.passkeys_of_user(user_id).await,
        }
    }

    /// How many passkeys the user holds.
    pub async fn passkey_count(&self, user_id: UserId) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.passkey_count(user_id),
            Backend::Postgres(store) => store.passkey_count(user_id).await,
        }
    }

    /// Removes one passkey of this user, the requester checked again in the transaction;
    /// `false` when it is not there (or not theirs).
    pub async fn delete_passkey_of_user(
        &self,
        user_id: UserId,
        id: PasskeyId,
        requester: &Requester,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let requester = *requester;
                off_the_runtime(move || store.delete_passkey_of_user(user_id, id, &requester)).await
            }
            Backend::Postgres(store) => store.delete_passkey_of_user(user_id, id, requester).await,
        }
    }

    /// Removes every passkey of the user (a lost device: `mfa-reset`). How many there were.
    pub async fn remove_all_passkeys(&self, user_id: UserId) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.remove_all_passkeys(user_id)).await
            }
            Backend::Postgres(store) => store.remove_all_passkeys(user_id).await,
        }
    }

    /// Deletes up to `limit` challenges that expired by `now`; returns how many.
    pub async fn purge_expired_passkey_challenges(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.purge_expired_passkey_challenges(now, limit)).await
            }
            Backend::Postgres(store) => store.purge_expired_passkey_challenges(now, limit).await,
        }
    }

    // oauth_browser_states

    /// Keeps a started sign-in. When `max_open` are kept already, expired ones are purged
    /// first in the same transaction; if that frees no room, `TooManyOAuthBrowserStates`,
    /// and nothing is written.
    pub async fn insert_oauth_browser_state(
        &self,
        state_hash: OAuthStateHash,
        state: &OAuthBrowserState,
        max_open: u64,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let state = state.clone();
                off_the_runtime(move || {
                    store.insert_oauth_browser_state(state_hash, &state, max_open, now)
                })
                .await
            }
            Backend::Postgres(store) => {
                store
                    .insert_oauth_browser_state(state_hash, state, max_open, now)
                    .await
            }
        }
    }

    /// Takes a started sign-in out of the store, expired or not: `None` when it was never
    /// made, or was taken or purged already. Whatever the caller then finds wrong with it,
    /// it is used up.
    pub async fn take_oauth_browser_state(
        &self,
        state_hash: OAuthStateHash,
    ) -> Result<Option<OAuthBrowserState>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.take_oauth_browser_state(state_hash)).await
            }
            Backend::Postgres(store) => store.take_oauth_browser_state(state_hash).await,
        }
    }

    /// Deletes up to `limit` started sign-ins that expired by `now`; returns how many.
    pub async fn purge_expired_oauth_browser_states(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.purge_expired_oauth_browser_states(now, limit)).await
            }
            Backend::Postgres(store) => store.purge_expired_oauth_browser_states(now, limit).await,
        }
    }
}

/// `store copy`: the public call, and what `store::copy` asks of each backend.
impl Store {
    /// Copies every row of this store, and its id and counters, into `target`, which must
    /// hold no rows (`CopyError::TargetNotEmpty`, and nothing is written); `progress` hears
    /// of each batch written and each table finished (see `store::copy`). This store is read
    /// in one snapshot. `target`'s own handle still names its old store id: open it again to
    /// serve from it.
    pub async fn copy_into(
        &self,
        target: &Store,
        progress: impl FnMut(&CopyProgress),
    ) -> Result<CopySummary, CopyError> {
        copy::copy_store(self, target, copy::COPY_BATCH_ROWS, progress).await
    }

    /// A `Store` over this redb handle, which the test keeps to look inside.
    #[cfg(test)]
    pub(super) fn wrapping_redb(store: RedbStore) -> Store {
        Store {
            backend: Backend::Redb(store),
        }
    }

    /// A `Store` over this PostgreSQL handle, which the test keeps to look inside.
    #[cfg(test)]
    pub(super) fn wrapping_postgres(store: PostgresStore) -> Store {
        Store {
            backend: Backend::Postgres(store),
        }
    }

    /// The tables holding rows, by name (the backend's own); the meta tables every store has
    /// from its first open aside.
    pub(super) async fn tables_holding_rows(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Redb(store) => store.tables_holding_rows(),
            Backend::Postgres(store) => store.tables_holding_rows().await,
        }
    }

    /// Sends every row, in batches of `batch_rows`, and then the store's facts, all read in
    /// one snapshot.
    pub(super) async fn send_every_row(
        &self,
        sender: copy::CopySender,
        batch_rows: usize,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.send_every_row(&sender, batch_rows)).await
            }
            Backend::Postgres(store) => store.send_every_row(&sender, batch_rows).await,
        }
    }

    /// Writes one batch in one transaction; answers how many rows it wrote (the rest
    /// referred to what the source no longer holds).
    pub(super) async fn write_copied_rows(
        &self,
        rows: copy::CopiedRows,
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                off_the_runtime(move || store.write_copied_rows(&rows)).await
            }
            Backend::Postgres(store) => store.write_copied_rows(&rows).await,
        }
    }

    /// Sets the store id and the next user and mail ids.
    pub(super) async fn write_store_facts(
        &self,
        facts: &copy::StoreFacts,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(store) => {
                let store = store.clone();
                let facts = facts.clone();
                off_the_runtime(move || store.write_store_facts(&facts)).await
            }
            Backend::Postgres(store) => store.write_store_facts(facts).await,
        }
    }
}
