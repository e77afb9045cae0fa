//! `Store::copy_into`: every row of one store into an empty store of either backend (redb →
//! PostgreSQL, back, or to another of the same kind), so an install moves with every
//! session, token and key still valid.
//!
//! The source reads in one snapshot (one redb read transaction, one PostgreSQL `REPEATABLE
//! READ` transaction) and sends its rows, table by table in `CopiedTable::ALL`'s order and in
//! batches of `COPY_BATCH_ROWS`, over a short channel; the target writes each batch in a
//! transaction of its own, so a store of millions of sessions never has to fit in memory.
//! The rows travel as domain values (`CopiedRows`): each backend reads and writes its own
//! layout, and an index a backend keeps beside its tables (redb's) is rebuilt by its writes.
//! Last come the store's facts (`StoreFacts`): its id, which every signed token names as its
//! issuer, and the next user and mail ids, raised past every id copied.
//!
//! A target is empty when no table of its holds a row (redb's `meta` tables and PostgreSQL's
//! `store_facts`, which every store has from its first open, aside). A copy that fails part
//! way leaves the target holding what it wrote: it is no longer empty, and the copy must
//! start again on a new one.

use tokio::sync::mpsc;

use crate::model::oauth_browser::{OAuthBrowserState, OAuthStateHash};
use crate::model::passkey::{Passkey, PasskeyChallenge};
use crate::model::second_factor::{ActiveTotp, MfaToken, PendingTotp, RecoveryCodeSet};
use crate::model::{
    ApiToken, EmailToken, OAuthIdentity, QueuedMail, Session, UnixSeconds, User, UserId,
};
use crate::store::{Store, StoreError, StoredSigningKey};

/// Rows per batch: what the source reads and sends at once and the target writes in one
/// transaction. A batch of sessions is about a megabyte.
pub(super) const COPY_BATCH_ROWS: usize = 5_000;

/// Batches on their way from the source to the target at most (besides the one each holds).
const BATCHES_IN_FLIGHT: usize = 2;

/// The store's tables as a copy carries them, in the order it writes them: what a row
/// refers to comes first (a user before its sessions and sub-users, a session before the API
/// token bound to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopiedTable {
    Users,
    Sessions,
    ApiTokens,
    SigningKeys,
    EmailTokens,
    MailQueue,
    OAuthIdentities,
    ActiveTotp,
    PendingTotp,
    RecoveryCodes,
    MfaTokens,
    Passkeys,
    PasskeyChallenges,
    OAuthBrowserStates,
}

impl CopiedTable {
    /// Every table, in the order a copy reads and writes them.
    pub const ALL: [CopiedTable; 14] = [
        CopiedTable::Users,
        CopiedTable::Sessions,
        CopiedTable::ApiTokens,
        CopiedTable::SigningKeys,
        CopiedTable::EmailTokens,
        CopiedTable::MailQueue,
        CopiedTable::OAuthIdentities,
        CopiedTable::ActiveTotp,
        CopiedTable::PendingTotp,
        CopiedTable::RecoveryCodes,
        CopiedTable::MfaTokens,
        CopiedTable::Passkeys,
        CopiedTable::PasskeyChallenges,
        CopiedTable::OAuthBrowserStates,
    ];

    /// Its name in progress lines: the PostgreSQL table's.
    pub fn name(self) -> &'static str {
        match self {
            CopiedTable::Users => "users",
            CopiedTable::Sessions => "sessions",
            CopiedTable::ApiTokens => "api_tokens",
            CopiedTable::SigningKeys => "signing_keys",
            CopiedTable::EmailTokens => "email_tokens",
            CopiedTable::MailQueue => "mail_queue",
            CopiedTable::OAuthIdentities => "oauth_identities",
            CopiedTable::ActiveTotp => "active_totp",
            CopiedTable::PendingTotp => "pending_totp",
            CopiedTable::RecoveryCodes => "recovery_codes",
            CopiedTable::MfaTokens => "mfa_tokens",
            CopiedTable::Passkeys => "passkeys",
            CopiedTable::PasskeyChallenges => "passkey_challenges",
            CopiedTable::OAuthBrowserStates => "oauth_browser_states",
        }
    }

    fn position(self) -> usize {
        CopiedTable::ALL
            .iter()
            .position(|table| *table == self)
            .unwrap_or(CopiedTable::ALL.len())
    }
}

/// One batch of one table's rows, as domain values.
#[derive(Debug)]
pub(super) enum CopiedRows {
    Users(Vec<User>),
    Sessions(Vec<Session>),
    ApiTokens(Vec<ApiToken>),
    SigningKeys(Vec<StoredSigningKey>),
    EmailTokens(Vec<CopiedEmailToken>),
    MailQueue(Vec<QueuedMail>),
    OAuthIdentities(Vec<OAuthIdentity>),
    ActiveTotp(Vec<ActiveTotp>),
    PendingTotp(Vec<PendingTotp>),
    RecoveryCodes(Vec<CopiedRecoveryCodes>),
    MfaTokens(Vec<MfaToken>),
    Passkeys(Vec<Passkey>),
    PasskeyChallenges(Vec<PasskeyChallenge>),
    OAuthBrowserStates(Vec<(OAuthStateHash, OAuthBrowserState)>),
}

impl CopiedRows {
    pub(super) fn table(&self) -> CopiedTable {
        match self {
            CopiedRows::Users(_) => CopiedTable::Users,
            CopiedRows::Sessions(_) => CopiedTable::Sessions,
            CopiedRows::ApiTokens(_) => CopiedTable::ApiTokens,
            CopiedRows::SigningKeys(_) => CopiedTable::SigningKeys,
            CopiedRows::EmailTokens(_) => CopiedTable::EmailTokens,
            CopiedRows::MailQueue(_) => CopiedTable::MailQueue,
            CopiedRows::OAuthIdentities(_) => CopiedTable::OAuthIdentities,
            CopiedRows::ActiveTotp(_) => CopiedTable::ActiveTotp,
            CopiedRows::PendingTotp(_) => CopiedTable::PendingTotp,
            CopiedRows::RecoveryCodes(_) => CopiedTable::RecoveryCodes,
            CopiedRows::MfaTokens(_) => CopiedTable::MfaTokens,
            CopiedRows::Passkeys(_) => CopiedTable::Passkeys,
            CopiedRows::PasskeyChallenges(_) => CopiedTable::PasskeyChallenges,
            CopiedRows::OAuthBrowserStates(_) => CopiedTable::OAuthBrowserStates,
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            CopiedRows::Users(rows) => rows.len(),
            CopiedRows::Sessions(rows) => rows.len(),
            CopiedRows::ApiTokens(rows) => rows.len(),
            CopiedRows::SigningKeys(rows) => rows.len(),
            CopiedRows::EmailTokens(rows) => rows.len(),
            CopiedRows::MailQueue(rows) => rows.len(),
            CopiedRows::OAuthIdentities(rows) => rows.len(),
            CopiedRows::ActiveTotp(rows) => rows.len(),
            CopiedRows::PendingTotp(rows) => rows.len(),
            CopiedRows::RecoveryCodes(rows) => rows.len(),
            CopiedRows::MfaTokens(rows) => rows.len(),
            CopiedRows::Passkeys(rows) => rows.len(),
            CopiedRows::PasskeyChallenges(rows) => rows.len(),
            CopiedRows::OAuthBrowserStates(rows) => rows.len(),
        }
    }
}

/// An emailed link with what the domain's `EmailToken` leaves out: whether it was used (a
/// used link stays, so a second use is told apart from a bad link).
#[derive(Clone, Debug)]
pub(super) struct CopiedEmailToken {
    pub token: EmailToken,
    pub used: bool,
}

/// A user's recovery codes. `created` is redb's alone: PostgreSQL does not keep it (nothing
/// reads it), so a copy from PostgreSQL has `None`.
#[derive(Clone, Debug)]
pub(super) struct CopiedRecoveryCodes {
    pub user_id: UserId,
    pub codes: RecoveryCodeSet,
    pub created: Option<UnixSeconds>,
}

/// What a store holds besides its tables' rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StoreFacts {
    /// The install's id: the tokens' issuer when no `public_url` is set.
    pub store_id: String,
    /// The id the next user gets.
    pub next_user_id: u64,
    /// The id the next queued mail gets.
    pub next_mail_id: u64,
}

/// What a source sends: every batch of every table in `CopiedTable::ALL`'s order, then its
/// facts, last.
#[derive(Debug)]
pub(super) enum CopyItem {
    Rows(CopiedRows),
    Facts(StoreFacts),
}

/// Where a source sends what it reads.
pub(super) type CopySender = mpsc::Sender<CopyItem>;

/// A source's send failed: the target stopped taking rows (its own error says why).
pub(super) fn target_stopped() -> StoreError {
    StoreError::WriteInterrupted("the copy's target stopped taking rows".to_owned())
}

/// Where a copy stands, after each batch written and as each table ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyProgress {
    pub table: CopiedTable,
    /// Rows of `table` written to the target so far.
    pub rows_copied: u64,
    /// Rows of `table` left out so far: they referred to a user (or session) that the source
    /// no longer holds, which no server would ever use, and PostgreSQL's foreign keys refuse.
    pub rows_skipped: u64,
    /// Whether `table` is done.
    pub finished: bool,
}

/// What a copy did.
#[derive(Clone, Debug)]
pub struct CopySummary {
    /// The store id the target now has: the source's.
    pub store_id: String,
    /// Each table's last progress, in `CopiedTable::ALL`'s order.
    pub tables: Vec<CopyProgress>,
}

impl CopySummary {
    pub fn rows_copied(&self) -> u64 {
        self.tables.iter().map(|table| table.rows_copied).sum()
    }
}

/// Why a copy did not happen, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds rows already: nothing was written.
    #[error("the target is not empty: {} hold rows; copy only into an empty store", .tables.join(", "))]
    TargetNotEmpty { tables: Vec<String> },
    #[error("reading the source failed: {0}")]
    Source(StoreError),
    /// Writing failed part way: what was written stays.
    #[error("writing the target failed: {0}")]
    Target(StoreError),
}

/// Copies every row of `source` into `target`, which must be empty (`TargetNotEmpty`
/// otherwise, and nothing is written), `batch_rows` rows at a time; `progress` hears of each
/// batch written and each table finished.
pub(super) async fn copy_store(
    source: &Store,
    target: &Store,
    batch_rows: usize,
    mut progress: impl FnMut(&CopyProgress),
) -> Result<CopySummary, CopyError> {
    let holding = target
        .tables_holding_rows()
        .await
        .map_err(CopyError::Target)?;
    if !holding.is_empty() {
        return Err(CopyError::TargetNotEmpty { tables: holding });
    }
    let (sender, mut receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
    let reading = source.send_every_row(sender, batch_rows.max(1));
    // The receiver is the writing's own: when the writing stops (a failed batch) it is
    // dropped with it, and the reading's next send fails instead of waiting for ever.
    let writing = async move {
        let mut tally = Tally::new();
        while let Some(item) = receiver.recv().await {
            match item {
                CopyItem::Rows(rows) => {
                    let table = rows.table();
                    tally.finish_tables_before(table, &mut progress)?;
                    tally.note_ids(&rows);
                    let offered = rows.len() as u64;
                    let written = target.write_copied_rows(rows).await?;
                    let now = tally.add(table, written, offered.saturating_sub(written));
                    progress(&now);
                }
                CopyItem::Facts(facts) => {
                    tally.finish_tables_before_end(&mut progress);
                    let facts = tally.raise_counters(facts);
                    target.write_store_facts(&facts).await?;
                    return Ok(Some(CopySummary {
                        store_id: facts.store_id,
                        tables: tally.tables,
                    }));
                }
            }
        }
        // The source stopped before its facts: its own result says why.
        Ok::<_, StoreError>(None)
    };
    let (read, written) = tokio::join!(reading, writing);
    match (read, written) {
        (_, Err(error)) => Err(CopyError::Target(error)),
        (Err(error), Ok(_)) => Err(CopyError::Source(error)),
        (Ok(()), Ok(Some(summary))) => Ok(summary),
        (Ok(()), Ok(None)) => Err(CopyError::Source(StoreError::WriteInterrupted(
            "the source ended before its last table".to_owned(),
        ))),
    }
}

/// The target's side of the count: each table's progress, which tables are done, and the
/// highest ids written (the counters must pass them).
struct Tally {
    tables: Vec<CopyProgress>,
    /// Tables before this position in `CopiedTable::ALL` are finished.
    current: usize,
    highest_user_id: UserId,
    highest_mail_id: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            tables: CopiedTable::ALL
                .iter()
                .map(|table| CopyProgress {
                    table: *table,
                    rows_copied: 0,
                    rows_skipped: 0,
                    finished: false,
                })
                .collect(),
            current: 0,
            highest_user_id: 0,
            highest_mail_id: 0,
        }
    }

    /// Finishes every table before `table`; a batch of a table already finished is the
    /// source's mistake, refused rather than written out of order.
    fn finish_tables_before(
        &mut self,
        table: CopiedTable,
        progress: &mut impl FnMut(&CopyProgress),
    ) -> Result<(), StoreError> {
        let position = table.position();
        if position < self.current || position >= self.tables.len() {
            return Err(StoreError::WriteInterrupted(format!(
                "the source sent {} out of order",
                table.name()
            )));
        }
        self.finish_up_to(position, progress);
        Ok(())
    }

    fn finish_tables_before_end(&mut self, progress: &mut impl FnMut(&CopyProgress)) {
        self.finish_up_to(self.tables.len(), progress);
    }

    fn finish_up_to(&mut self, end: usize, progress: &mut impl FnMut(&CopyProgress)) {
        while self.current < end {
            if let Some(table) = self.tables.get_mut(self.current) {
                table.finished = true;
                progress(table);
            }
            self.current += 1;
        }
    }

    fn note_ids(&mut self, rows: &CopiedRows) {
        match rows {
            CopiedRows::Users(users) => {
                for user in users {
                    self.highest_user_id = self.highest_user_id.max(user.id);
                }
            }
            CopiedRows::MailQueue(mails) => {
                for mail in mails {
                    self.highest_mail_id = self.highest_mail_id.max(mail.id);
                }
            }
            _ => {}
        }
    }

    fn add(&mut self, table: CopiedTable, copied: u64, skipped: u64) -> CopyProgress {
        match self.tables.get_mut(table.position()) {
            Some(entry) => {
                entry.rows_copied += copied;
                entry.rows_skipped += skipped;
                *entry
            }
            None => CopyProgress {
                table,
                rows_copied: copied,
                rows_skipped: skipped,
                finished: false,
            },
        }
    }

    /// The source's counters, raised past every id copied: a new user or mail on the target
    /// never takes a copied one's id.
    fn raise_counters(&self, facts: StoreFacts) -> StoreFacts {
        StoreFacts {
            next_user_id: facts
                .next_user_id
                .max(self.highest_user_id.saturating_add(1)),
            next_mail_id: facts
                .next_mail_id
                .max(self.highest_mail_id.saturating_add(1)),
            ..facts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order is the one the writes need, and every table is in it once.
    #[test]
    fn every_table_is_listed_once_after_what_it_refers_to() {
        let names: Vec<&str> = CopiedTable::ALL.iter().map(|table| table.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let position = |name: &str| names.iter().position(|listed| *listed == name).unwrap();
        assert_eq!(position("users"), 0);
        assert!(position("sessions") < position("api_tokens"));
        for (index, table) in CopiedTable::ALL.iter().enumerate() {
            assert_eq!(table.position(), index);
        }
    }

    #[test]
    fn the_counters_pass_every_copied_id_and_never_go_back() {
        let mut tally = Tally::new();
        tally.highest_user_id = 41;
        tally.highest_mail_id = 9;
        let facts = |next_user_id, next_mail_id| StoreFacts {
            store_id: "id".to_owned(),
            next_user_id,
            next_mail_id,
        };
        assert_eq!(tally.raise_counters(facts(1, 1)), facts(42, 10));
        assert_eq!(tally.raise_counters(facts(100, 200)), facts(100, 200));
    }
}
