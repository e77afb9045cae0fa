//! API tokens: standalone ones (made, listed, replaced, deleted, purged once long expired)
//! and the ones bound to a sign-in's session, with their user and expiry indexes.

use redb::{ReadableTable, WriteTransaction};

use crate::model::{ApiToken, TokenMaker, UnixSeconds, UserId};
use crate::store::redb_backend::record::{decode_api_token, encode_api_token};
use crate::store::redb_backend::sessions::{read_also, read_session};
use crate::store::redb_backend::tables::{EXPIRE_TOKENHASH, TOKENHASH_APITOKEN, USERID_TOKENHASH};
use crate::store::redb_backend::token_makers::{self, fit_within_maker, token_maker_last_second};
use crate::store::redb_backend::users::read_user_and_parent;
use crate::store::redb_backend::{RedbStore, check_requester};
use crate::store::{AlsoRead, ApiTokenContext, Requester, StoreError};

impl RedbStore {
    /// The API token with this hash, its session (if bound to one), its user and parent
    /// (and what `also` asks for).
    pub fn api_token_context(
        &self,
        hash: &[u8; 32],
        also: AlsoRead,
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
            second_factors: read_also(&transaction, also, user.id)?,
            api_token,
            session,
            user,
            parent,
        }))
    }

    /// Stores an API token (its hash and record) in one transaction.
    pub fn insert_api_token(&self, api_token: &ApiToken) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        insert_api_token(&transaction, api_token)?;
        transaction.commit()?;
        Ok(())
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

    /// The user's API tokens that are not bound to a session, oldest first.
    pub fn standalone_api_tokens_of_user(
        &self,
        user_id: UserId,
    ) -> Result<Vec<ApiToken>, StoreError> {
        let transaction = self.begin_read()?;
        let by_user = transaction.open_table(USERID_TOKENHASH)?;
        let tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
        let mut found = Vec::new();
        for entry in by_user.range((user_id, &[0u8; 32])..=(user_id, &[0xffu8; 32]))? {
            let hash = *entry?.0.value().1;
            let Some(bytes) = tokens.get(&hash)? else {
                continue;
            };
            let token = decode_api_token(bytes.value(), hash)?;
            if token.session_id.is_none() {
                found.push(token);
            }
        }
        found.sort_by(|left, right| {
            left.created
                .cmp(&right.created)
                .then(left.hash.cmp(&right.hash))
        });
        Ok(found)
    }

    /// Replaces a token's record (its lifetime, permissions, restrictions), keeping its
    /// indexes in step, while its requester still stands. A token made by another token
    /// keeps expiring no later than its maker, and a shortened lifetime shortens what the
    /// token made (API.md 15.3). Answers the token as stored, or `None` when it is gone.
    pub fn replace_api_token(
        &self,
        api_token: &ApiToken,
        requester: &Requester,
    ) -> Result<Option<ApiToken>, StoreError> {
        let transaction = self.begin_write()?;
        check_requester(&transaction, requester)?;
        // What the token made stays: it is the same token, changed.
        let Some(before) = remove_api_token_rows(&transaction, &api_token.hash)? else {
            return Ok(None);
        };
        let mut changed = api_token.clone();
        changed.made_by = before.made_by;
        if let Some(maker) = before.made_by {
            match token_maker_last_second(&transaction, maker)? {
                None => return Ok(None),
                Some(None) => {}
                Some(Some(bound)) => {
                    changed.expires_at = Some(
                        changed
                            .expires_at
                            .map_or(bound, |expires_at| expires_at.min(bound)),
                    );
                }
            }
        }
        insert_api_token(&transaction, &changed)?;
        if let Some(bound) = changed.expires_at
            && before.expires_at.is_none_or(|earlier| bound < earlier)
        {
            token_makers::cap_what_was_made_by(
                &transaction,
                TokenMaker::ApiToken(changed.hash),
                bound,
            )?;
        }
        transaction.commit()?;
        Ok(Some(changed))
    }

    /// Deletes one of the user's tokens; `false` when it is not there.
    pub fn delete_api_token_of_user(
        &self,
        user_id: UserId,
        hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        let transaction = self.begin_write()?;
        let exists = transaction
            .open_table(USERID_TOKENHASH)?
            .get((user_id, hash))?
            .is_some();
        if exists {
            delete_api_token(&transaction, user_id, hash)?;
        }
        transaction.commit()?;
        Ok(exists)
    }

    /// Deletes up to `limit` standalone tokens that expired before `before`; returns how many.
    pub fn purge_api_tokens_expired_before(
        &self,
        before: UnixSeconds,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write()?;
        let expired: Vec<(i64, [u8; 32])> = {
            let by_expiry = transaction.open_table(EXPIRE_TOKENHASH)?;
            let mut keys = Vec::new();
            for entry in by_expiry
                .range((i64::MIN, &[0u8; 32])..(before, &[0u8; 32]))?
                .take(limit)
            {
                let (key, _) = entry?;
                let (expire, hash) = key.value();
                keys.push((expire, *hash));
            }
            keys
        };
        for (expire, hash) in &expired {
            let owner = transaction
                .open_table(TOKENHASH_APITOKEN)?
                .get(hash)?
                .map(|bytes| decode_api_token(bytes.value(), *hash).map(|token| token.user_id))
                .transpose()?;
            match owner {
                Some(user_id) => delete_api_token(&transaction, user_id, hash)?,
                None => {
                    transaction
                        .open_table(EXPIRE_TOKENHASH)?
                        .remove((*expire, hash))?;
                }
            }
        }
        transaction.commit()?;
        Ok(expired.len())
    }
}

pub(super) fn insert_api_token(
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
pub(super) fn remove_api_token_rows(
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
pub(super) fn delete_api_token(
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

/// Deletes every API token of the user that is not bound to a session.
pub(super) fn delete_standalone_api_tokens(
    transaction: &WriteTransaction,
    user_id: UserId,
) -> Result<(), StoreError> {
    let hashes: Vec<[u8; 32]> = {
        let by_user = transaction.open_table(USERID_TOKENHASH)?;
        let tokens = transaction.open_table(TOKENHASH_APITOKEN)?;
        let mut hashes = Vec::new();
        for entry in by_user.range((user_id, &[0u8; 32])..=(user_id, &[0xffu8; 32]))? {
            let hash = *entry?.0.value().1;
            let standalone = match tokens.get(&hash)? {
                Some(bytes) => decode_api_token(bytes.value(), hash)?.session_id.is_none(),
                None => true,
            };
            if standalone {
                hashes.push(hash);
            }
        }
        hashes
    };
    for hash in hashes {
        delete_api_token(transaction, user_id, &hash)?;
    }
    Ok(())
}

/// Brings an API token's expiry down to `bound` if it is later (or never); answers whether
/// it changed.
pub(super) fn cap_api_token_expiry(
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
