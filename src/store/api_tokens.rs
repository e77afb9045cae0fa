//! Store functions for standalone API tokens and signing keys: listing, replacing, deleting
//! and purging, each in one transaction.

use redb::ReadableTable;

use crate::model::{ApiToken, TokenMaker, UnixSeconds, UserId};
use crate::store::record::decode_api_token;
use crate::store::{
    EXPIRE_TOKENHASH, KEYID_SIGNINGKEY, Requester, Store, StoreError, TOKENHASH_APITOKEN,
    USERID_TOKENHASH, check_requester, delete_api_token, insert_api_token, remove_api_token_rows,
    token_maker_last_second, token_makers,
};

impl Store {
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

    /// Removes a signing key (one that can no longer have live tokens).
    pub fn delete_signing_key(&self, key_id: &str) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        transaction.open_table(KEYID_SIGNINGKEY)?.remove(key_id)?;
        transaction.commit()?;
        Ok(())
    }
}
