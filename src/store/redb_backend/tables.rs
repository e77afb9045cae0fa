//! Every table of the store file, named `key_value`, and `ALL_TABLES`, the one list that
//! opening (create), backup (copy) and their tests walk (`store copy`'s tests too), so a new
//! table cannot be left out of either.

use redb::{ReadTransaction, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use crate::store::StoreError;

/// Counters and the schema version (`META_SCHEMA_VERSION`, `META_NEXT_USER_ID`,
/// `META_NEXT_MAIL_ID`).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The store's text-valued facts: its id (`META_STORE_ID`).
pub(super) const META_TEXT: TableDefinition<&str, &str> = TableDefinition::new("meta_text");

pub(super) const USERID_USER: TableDefinition<u64, &[u8]> = TableDefinition::new("userid_user");
pub(super) const EMAIL_USERID: TableDefinition<&str, u64> = TableDefinition::new("email_userid");
pub(super) const PARENTID_CHILDID: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("parentid_childid");

pub(super) const SESSIONID_SESSION: TableDefinition<u128, &[u8]> =
    TableDefinition::new("sessionid_session");
/// The user's sessions whose id lacks the user's prefix (`SessionId::new_for_user`): random
/// v4 ids from files written before that layout. New sessions get no row here, since a range
/// of the sessions table finds them; the rows that version 1 files hold for prefixed ids are
/// skipped when read and removed when their session ends. The table empties as old
/// sessions end.
pub(super) const USERID_UNPREFIXEDSESSIONID: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("userid_sessionid");
pub(super) const EXPIRE_SESSIONID: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("expire_sessionid");

pub(super) const TOKENHASH_APITOKEN: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("tokenhash_apitoken");
pub(super) const USERID_TOKENHASH: TableDefinition<(u64, &[u8; 32]), ()> =
    TableDefinition::new("userid_tokenhash");
/// Standalone API tokens by expiry, for the purge of those expired more than 30 days ago.
pub(super) const EXPIRE_TOKENHASH: TableDefinition<(i64, &[u8; 32]), ()> =
    TableDefinition::new("expire_tokenhash");
/// (maker, made) pairs of `token_makers::maker_key`s: what each token made.
pub(super) const MAKER_MADE: TableDefinition<(&[u8; 33], &[u8; 33]), ()> =
    TableDefinition::new("maker_made");

pub(super) const KEYID_SIGNINGKEY: TableDefinition<&str, &[u8]> =
    TableDefinition::new("keyid_signingkey");

/// Sign-ups never verified, by creation time: what the purge of `[signup]
/// pending_lifetime_days` reads, instead of every user. A row is written when such a user is
/// made and goes when the user is deleted or, found proved by the purge, dropped there.
pub(super) const CREATED_UNPROVEDUSERID: TableDefinition<(i64, u64), ()> =
    TableDefinition::new("created_unproved_userid");
pub(super) const TOKENHASH_EMAILTOKEN: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("tokenhash_emailtoken");
pub(super) const USERID_EMAILTOKENHASH: TableDefinition<(u64, &[u8; 32]), ()> =
    TableDefinition::new("userid_emailtokenhash");

pub(super) const MAILID_MAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("mailid_mail");

/// (provider, subject) → the linked user, as an `IdentityRecord`.
pub(super) const PROVIDERSUBJECT_IDENTITY: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("providersubject_identity");
/// The reverse index: a user's identities, in (provider, subject) order.
pub(super) const USERID_PROVIDERSUBJECT: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("userid_providersubject");

/// A user's active TOTP, as a `TotpRecord`.
pub(super) const USERID_TOTP: TableDefinition<u64, &[u8]> = TableDefinition::new("userid_totp");
/// A user's TOTP enrolment awaiting its first code, as a `PendingTotpRecord`; a new start
/// replaces it. Short-lived, so the purge reads the whole table.
pub(super) const USERID_PENDINGTOTP: TableDefinition<u64, &[u8]> =
    TableDefinition::new("userid_pendingtotp");
/// The hashes of a user's unused recovery codes, as a `RecoveryCodesRecord`.
pub(super) const USERID_RECOVERYCODES: TableDefinition<u64, &[u8]> =
    TableDefinition::new("userid_recoverycodes");
/// Sign-ins awaiting their second factor, under the SHA-256 of the mfa-token, as an
/// `MfaTokenRecord`. They live minutes, so the purge reads the whole table.
pub(super) const MFATOKENHASH_MFATOKEN: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("mfatokenhash_mfatoken");
/// Passkeys by their id, as `PasskeyRecord`s.
pub(super) const PASSKEYID_PASSKEY: TableDefinition<u128, &[u8]> =
    TableDefinition::new("passkeyid_passkey");
/// Every passkey's credential id: unique in the store, so that a credential registered by
/// one user can never be registered again, nor sign in anyone else.
pub(super) const CREDENTIALID_PASSKEYID: TableDefinition<&[u8], u128> =
    TableDefinition::new("credentialid_passkeyid");
/// A user's passkeys: listing, counting against the cap, removing them all.
pub(super) const USERID_PASSKEYID: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("userid_passkeyid");
/// Started passkey ceremonies by challenge id, as `PasskeyChallengeRecord`s, until finished
/// or purged. Kept in the file, not in memory, so a restart between start and finish
/// loses nothing.
pub(super) const CHALLENGEID_PASSKEYCHALLENGE: TableDefinition<u128, &[u8]> =
    TableDefinition::new("challengeid_passkeychallenge");
/// The challenges by expiry, for the purge.
pub(super) const EXPIRE_PASSKEYCHALLENGEID: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("expire_passkeychallengeid");
/// Started browser OAuth sign-ins by the SHA-256 of their `state`, as
/// `OAuthBrowserStateRecord`s, until the callback takes them or the purge does.
pub(super) const STATEHASH_OAUTHBROWSERSTATE: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("statehash_oauthbrowserstate");
/// The started browser OAuth sign-ins by expiry, for the purge.
pub(super) const EXPIRE_OAUTHSTATEHASH: TableDefinition<(i64, &[u8]), ()> =
    TableDefinition::new("expire_oauthstatehash");

pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
pub(super) const META_NEXT_USER_ID: &str = "next_user_id";
pub(super) const META_NEXT_MAIL_ID: &str = "next_mail_id";
/// A random UUID made when the file is first opened (by a build that knows it) and kept for
/// the file's life, backups and restores included: what tells one install from another, and
/// the tokens' issuer when no `public_url` is set.
pub(super) const META_STORE_ID: &str = "store_id";

/// A table's rows as their keys' and values' bytes, in key order (the copy's tests).
#[cfg(test)]
pub(super) type RowBytes = Vec<(Vec<u8>, Vec<u8>)>;

/// What `open` and `backup_to` do with a table, whatever its key and value types; its
/// `name` is redb's `TableHandle::name`.
pub(super) trait StoreTable: TableHandle + Sync {
    /// Creates the table if the file lacks it.
    fn create_in(&self, transaction: &WriteTransaction) -> Result<(), StoreError>;
    /// Copies every row from `source` into the same table of `target`.
    fn copy_rows(
        &self,
        source: &ReadTransaction,
        target: &WriteTransaction,
    ) -> Result<(), StoreError>;
    /// Every row as its key's and value's bytes, in key order: what the copy's tests compare.
    #[cfg(test)]
    fn rows_as_bytes(&self, source: &ReadTransaction) -> Result<RowBytes, StoreError>;
}

impl<K: redb::Key + Sync + 'static, V: redb::Value + Sync + 'static> StoreTable
    for TableDefinition<'static, K, V>
{
    fn create_in(&self, transaction: &WriteTransaction) -> Result<(), StoreError> {
        transaction.open_table(*self)?;
        Ok(())
    }

    fn copy_rows(
        &self,
        source: &ReadTransaction,
        target: &WriteTransaction,
    ) -> Result<(), StoreError> {
        let from = source.open_table(*self)?;
        let mut to = target.open_table(*self)?;
        for entry in from.iter()? {
            let (key, value) = entry?;
            to.insert(key.value(), value.value())?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn rows_as_bytes(&self, source: &ReadTransaction) -> Result<RowBytes, StoreError> {
        let table = source.open_table(*self)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            rows.push((
                K::as_bytes(&key.value()).as_ref().to_vec(),
                V::as_bytes(&value.value()).as_ref().to_vec(),
            ));
        }
        Ok(rows)
    }
}

/// Every table of the file: `open` creates each and `backup_to` copies each. A table missing
/// here would be absent from new files and lost by backups, which the tests below refuse.
pub(super) static ALL_TABLES: [&dyn StoreTable; 30] = [
    &META,
    &META_TEXT,
    &USERID_USER,
    &EMAIL_USERID,
    &PARENTID_CHILDID,
    &SESSIONID_SESSION,
    &USERID_UNPREFIXEDSESSIONID,
    &EXPIRE_SESSIONID,
    &TOKENHASH_APITOKEN,
    &USERID_TOKENHASH,
    &EXPIRE_TOKENHASH,
    &MAKER_MADE,
    &KEYID_SIGNINGKEY,
    &CREATED_UNPROVEDUSERID,
    &TOKENHASH_EMAILTOKEN,
    &USERID_EMAILTOKENHASH,
    &MAILID_MAIL,
    &PROVIDERSUBJECT_IDENTITY,
    &USERID_PROVIDERSUBJECT,
    &USERID_TOTP,
    &USERID_PENDINGTOTP,
    &USERID_RECOVERYCODES,
    &MFATOKENHASH_MFATOKEN,
    &PASSKEYID_PASSKEY,
    &CREDENTIALID_PASSKEYID,
    &USERID_PASSKEYID,
    &CHALLENGEID_PASSKEYCHALLENGE,
    &EXPIRE_PASSKEYCHALLENGEID,
    &STATEHASH_OAUTHBROWSERSTATE,
    &EXPIRE_OAUTHSTATEHASH,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb_backend::test_support::open_store;
    use redb::ReadableDatabase;

    fn names_in_file(store: &crate::store::redb_backend::RedbStore) -> Vec<String> {
        let transaction = store.database.begin_read().unwrap();
        let mut names: Vec<String> = transaction
            .list_tables()
            .unwrap()
            .map(|table| table.name().to_owned())
            .collect();
        names.sort();
        names
    }

    /// A new file holds exactly the listed tables, under the names files have always had.
    #[test]
    fn open_creates_exactly_the_listed_tables() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let mut listed: Vec<String> = ALL_TABLES
            .iter()
            .map(|table| table.name().to_owned())
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(listed.len(), ALL_TABLES.len(), "a table is listed twice");
        assert_eq!(names_in_file(&store), listed);
        assert_eq!(
            listed,
            [
                "challengeid_passkeychallenge",
                "created_unproved_userid",
                "credentialid_passkeyid",
                "email_userid",
                "expire_oauthstatehash",
                "expire_passkeychallengeid",
                "expire_sessionid",
                "expire_tokenhash",
                "keyid_signingkey",
                "mailid_mail",
                "maker_made",
                "meta",
                "meta_text",
                "mfatokenhash_mfatoken",
                "parentid_childid",
                "passkeyid_passkey",
                "providersubject_identity",
                "sessionid_session",
                "statehash_oauthbrowserstate",
                "tokenhash_apitoken",
                "tokenhash_emailtoken",
                "userid_emailtokenhash",
                "userid_passkeyid",
                "userid_pendingtotp",
                "userid_providersubject",
                "userid_recoverycodes",
                "userid_sessionid",
                "userid_tokenhash",
                "userid_totp",
                "userid_user",
            ]
        );
    }
}
