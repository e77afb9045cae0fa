//! What each token made: the index behind "lifetimes nest under tokens" (API.md 15.3). An API
//! token or minted token made by another token ends when its maker ends, however that ends,
//! so every removal of a maker also removes what it made, and what that made, in the same
//! transaction.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::model::UnixSeconds;
use crate::model::{SessionId, TokenMaker};
use crate::store::{
    StoreError, cap_api_token_expiry, cap_session_expiry, remove_api_token_rows,
    remove_session_rows,
};

/// (maker, made) pairs; both sides are `maker_key`s.
const MAKER_MADE: TableDefinition<(&[u8; 33], &[u8; 33]), ()> = TableDefinition::new("maker_made");

pub(super) fn create_tables(transaction: &WriteTransaction) -> Result<(), StoreError> {
    transaction.open_table(MAKER_MADE)?;
    Ok(())
}

pub(super) fn copy_tables(
    source: &redb::ReadTransaction,
    target: &WriteTransaction,
) -> Result<(), StoreError> {
    super::copy_table(source, target, MAKER_MADE)
}

/// A kind byte (1: API token, 2: minted session), then the token's hash or the session id.
fn maker_key(maker: TokenMaker) -> [u8; 33] {
    let mut key = [0u8; 33];
    match maker {
        TokenMaker::ApiToken(hash) => {
            key[0] = 1;
            key[1..].copy_from_slice(&hash);
        }
        TokenMaker::MintedSession(session_id) => {
            key[0] = 2;
            key[1..17].copy_from_slice(&session_id.0.to_be_bytes());
        }
    }
    key
}

fn maker_from_key(key: &[u8; 33]) -> Option<TokenMaker> {
    match key[0] {
        1 => key[1..].try_into().ok().map(TokenMaker::ApiToken),
        2 => key[1..17]
            .try_into()
            .ok()
            .map(|bytes| TokenMaker::MintedSession(SessionId(u128::from_be_bytes(bytes)))),
        _ => None,
    }
}

/// Notes that `made` (a token or minted session) was made by `maker`.
pub(super) fn record_made(
    transaction: &WriteTransaction,
    maker: TokenMaker,
    made: TokenMaker,
) -> Result<(), StoreError> {
    let mut pairs = transaction.open_table(MAKER_MADE)?;
    pairs.insert((&maker_key(maker), &maker_key(made)), ())?;
    Ok(())
}

/// Drops the note that `made` was made by `maker`, once `made` itself is gone.
pub(super) fn forget_made(
    transaction: &WriteTransaction,
    maker: TokenMaker,
    made: TokenMaker,
) -> Result<(), StoreError> {
    let mut pairs = transaction.open_table(MAKER_MADE)?;
    pairs.remove((&maker_key(maker), &maker_key(made)))?;
    Ok(())
}

/// Removes everything `maker` made, and everything those made in turn. A work list, not
/// recursion: a chain of tokens can be as long as a user's caps allow.
pub(super) fn end_what_was_made_by(
    transaction: &WriteTransaction,
    maker: TokenMaker,
) -> Result<(), StoreError> {
    let mut makers = vec![maker];
    while let Some(maker) = makers.pop() {
        for child in made_by(transaction, maker)? {
            forget_made(transaction, maker, child)?;
            let existed = match child {
                TokenMaker::ApiToken(hash) => remove_api_token_rows(transaction, &hash)?.is_some(),
                TokenMaker::MintedSession(id) => remove_session_rows(transaction, id)?.is_some(),
            };
            if existed {
                makers.push(child);
            }
        }
    }
    Ok(())
}

/// What `maker` made, in the order of the index.
fn made_by(
    transaction: &WriteTransaction,
    maker: TokenMaker,
) -> Result<Vec<TokenMaker>, StoreError> {
    let first = maker_key(maker);
    let pairs = transaction.open_table(MAKER_MADE)?;
    let mut made = Vec::new();
    for entry in pairs.range((&first, &[0u8; 33])..=(&first, &[0xffu8; 33]))? {
        let (key, _) = entry?;
        if let Some(child) = maker_from_key(key.value().1) {
            made.push(child);
        }
    }
    Ok(made)
}

/// Brings the expiry of everything `maker` made, and of what that made, down to `bound`
/// when it was later: the maker's lifetime just got shorter (API.md 15.3). What already
/// ends by then, and what it made, is left as it is.
pub(super) fn cap_what_was_made_by(
    transaction: &WriteTransaction,
    maker: TokenMaker,
    bound: UnixSeconds,
) -> Result<(), StoreError> {
    let mut makers = vec![maker];
    while let Some(maker) = makers.pop() {
        for child in made_by(transaction, maker)? {
            let capped = match child {
                TokenMaker::ApiToken(hash) => cap_api_token_expiry(transaction, &hash, bound)?,
                TokenMaker::MintedSession(id) => cap_session_expiry(transaction, id, bound)?,
            };
            if capped {
                makers.push(child);
            }
        }
    }
    Ok(())
}
