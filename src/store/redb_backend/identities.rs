//! Store functions for OAuth identities: which user a provider's account (provider, subject)
//! signs in as, and the reverse index that lists a user's linked identities. Linking (to an
//! existing account or a new one) is one transaction with the checks that must hold at that
//! moment.

use redb::{ReadableTable, WriteTransaction};

use crate::model::{NewUser, OAuthIdentity, UnixSeconds, User, UserId};
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::record::{IdentityRecord, RECORD_VERSION, decode, encode};
use crate::store::redb_backend::tables::{
    PROVIDERSUBJECT_IDENTITY, USERID_PROVIDERSUBJECT, USERID_USER,
};
use crate::store::redb_backend::users::{insert_user, user_in};
use crate::store::{IdentityLink, StoreError};

/// Removes every identity of a user (its deletion).
pub(super) fn delete_identities_of_user(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    let keys: Vec<(String, String)> = {
        let by_user = transaction.open_table(USERID_PROVIDERSUBJECT)?;
        let mut keys = Vec::new();
        for entry in by_user.range(user_range(user_id))? {
            let (key, _) = entry?;
            let (_, provider, subject) = key.value();
            keys.push((provider.to_owned(), subject.to_owned()));
        }
        keys
    };
    let mut identities = transaction.open_table(PROVIDERSUBJECT_IDENTITY)?;
    let mut by_user = transaction.open_table(USERID_PROVIDERSUBJECT)?;
    for (provider, subject) in &keys {
        identities.remove((provider.as_str(), subject.as_str()))?;
        by_user.remove((user_id, provider.as_str(), subject.as_str()))?;
    }
    Ok(())
}

impl RedbStore {
    /// The user this identity signs in as; `None` when it is not linked (or its user is gone).
    pub fn user_of_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_read()?;
        let identities = transaction.open_table(PROVIDERSUBJECT_IDENTITY)?;
        let Some(bytes) = identities.get((provider, subject))? else {
            return Ok(None);
        };
        let record: IdentityRecord = decode(bytes.value(), "oauth identity")?;
        user_in(&transaction.open_table(USERID_USER)?, record.user_id)
    }

    /// The user's linked identities, in (provider, subject) order.
    pub fn identities_of_user(&self, user_id: UserId) -> Result<Vec<OAuthIdentity>, StoreError> {
        let transaction = self.begin_read()?;
        identities_in(
            &transaction.open_table(USERID_PROVIDERSUBJECT)?,
            &transaction.open_table(PROVIDERSUBJECT_IDENTITY)?,
            user_id,
        )
    }

    /// Links (provider, subject) to the existing user `user_id`, if `may_link` still accepts
    /// that user inside this transaction. The user itself is not changed.
    pub fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user_id: UserId,
        may_link: impl FnOnce(&User) -> bool,
        now: UnixSeconds,
    ) -> Result<IdentityLink, StoreError> {
        let transaction = self.begin_write()?;
        if let Some(user) = linked_user(&transaction, provider, subject)? {
            return Ok(IdentityLink::AlreadyLinked(user));
        }
        let Some(user) = user_in(&transaction.open_table(USERID_USER)?, user_id)? else {
            return Ok(IdentityLink::Refused);
        };
        if !may_link(&user) {
            return Ok(IdentityLink::Refused);
        }
        insert_identity(&transaction, provider, subject, user.id, now)?;
        transaction.commit()?;
        Ok(IdentityLink::Linked(user))
    }

    /// Creates a user and links (provider, subject) to it, in one transaction. If the
    /// identity got linked meanwhile, nothing is created and its user is answered instead.
    /// `EmailTaken` if the address is in use.
    pub fn create_user_with_identity(
        &self,
        provider: &str,
        subject: &str,
        new_user: NewUser,
        now: UnixSeconds,
    ) -> Result<(User, bool), StoreError> {
        let transaction = self.begin_write()?;
        if let Some(user) = linked_user(&transaction, provider, subject)? {
            return Ok((user, false));
        }
        let user = insert_user(&transaction, new_user, now)?;
        insert_identity(&transaction, provider, subject, user.id, now)?;
        transaction.commit()?;
        Ok((user, true))
    }
}

/// The user's linked identities, in (provider, subject) order, from the tables of either
/// kind of transaction (a sign-in's write reads them for its answer).
pub(super) fn identities_in(
    by_user: &impl ReadableTable<(u64, &'static str, &'static str), ()>,
    identities: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    user_id: UserId,
) -> Result<Vec<OAuthIdentity>, StoreError> {
    let mut found = Vec::new();
    for entry in by_user.range(user_range(user_id))? {
        let (key, _) = entry?;
        let (_, provider, subject) = key.value();
        let Some(bytes) = identities.get((provider, subject))? else {
            continue;
        };
        let record: IdentityRecord = decode(bytes.value(), "oauth identity")?;
        found.push(OAuthIdentity {
            provider: provider.to_owned(),
            subject: subject.to_owned(),
            user_id: record.user_id,
            linked: record.linked,
        });
    }
    Ok(found)
}

/// Every key of the reverse index that belongs to `user_id`.
fn user_range(user_id: UserId) -> std::ops::Range<(UserId, &'static str, &'static str)> {
    (user_id, "", "")..(user_id.saturating_add(1), "", "")
}

/// The live user an identity is linked to, inside a write transaction. A row whose user is
/// gone counts as unlinked and is overwritten by the next link.
fn linked_user(
    transaction: &WriteTransaction,
    provider: &str,
    subject: &str,
) -> Result<Option<User>, StoreError> {
    let user_id = {
        let identities = transaction.open_table(PROVIDERSUBJECT_IDENTITY)?;
        let Some(bytes) = identities.get((provider, subject))? else {
            return Ok(None);
        };
        let record: IdentityRecord = decode(bytes.value(), "oauth identity")?;
        record.user_id
    };
    user_in(&transaction.open_table(USERID_USER)?, user_id)
}

fn insert_identity(
    transaction: &WriteTransaction,
    provider: &str,
    subject: &str,
    user_id: UserId,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    let record = IdentityRecord {
        v: RECORD_VERSION,
        user_id,
        linked: now,
    };
    let mut identities = transaction.open_table(PROVIDERSUBJECT_IDENTITY)?;
    let previous = identities
        .insert((provider, subject), encode(&record).as_slice())?
        .map(|bytes| decode::<IdentityRecord>(bytes.value(), "oauth identity"))
        .transpose()?;
    let mut by_user = transaction.open_table(USERID_PROVIDERSUBJECT)?;
    if let Some(previous) = previous {
        by_user.remove((previous.user_id, provider, subject))?;
    }
    by_user.insert((user_id, provider, subject), ())?;
    Ok(())
}
