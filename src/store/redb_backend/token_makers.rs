//! What each token made: the index behind "lifetimes nest under tokens" (API.md 15.3). An API
//! token or minted token made by another token ends when its maker ends, however that ends,
//! so every removal of a maker also removes what it made, and what that made, in the same
//! transaction.

use redb::{ReadableTable, WriteTransaction};

use crate::model::{SessionId, TokenMaker, UnixSeconds};
use crate::store::StoreError;
use crate::store::redb_backend::api_tokens::{cap_api_token_expiry, remove_api_token_rows};
use crate::store::redb_backend::record::decode_api_token;
use crate::store::redb_backend::sessions::{cap_session_expiry, remove_session_rows, session_in};
use crate::store::redb_backend::tables::{MAKER_MADE, SESSIONID_SESSION, TOKENHASH_APITOKEN};

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

/// The last second a token credential works: an API token's `expires_at`, a session's
/// `expire - 1` (a session works while `expire > now`, a token while `expires_at >= now`);
/// `Some(None)` for a token that never expires, `None` when it is gone.
pub(super) fn token_maker_last_second(
    transaction: &WriteTransaction,
    maker: TokenMaker,
) -> Result<Option<Option<UnixSeconds>>, StoreError> {
    Ok(match maker {
        TokenMaker::ApiToken(hash) => {
            match transaction.open_table(TOKENHASH_APITOKEN)?.get(&hash)? {
                Some(bytes) => Some(decode_api_token(bytes.value(), hash)?.expires_at),
                None => None,
            }
        }
        TokenMaker::MintedSession(id) => {
            session_in(&transaction.open_table(SESSIONID_SESSION)?, id)?
                .map(|session| Some(session.expire - 1))
        }
    })
}

/// Keeps a new token or minted session within its maker's lifetime as it stands inside this
/// transaction (a concurrent PUT may have shortened it since the request read it): the
/// maker's last second, if it has one. A maker that is gone makes nothing
/// (`CredentialsChanged`).
pub(super) fn fit_within_maker(
    transaction: &WriteTransaction,
    made_by: Option<TokenMaker>,
) -> Result<Option<UnixSeconds>, StoreError> {
    match made_by {
        None => Ok(None),
        Some(maker) => match token_maker_last_second(transaction, maker)? {
            None => Err(StoreError::CredentialsChanged),
            Some(last_second) => Ok(last_second),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{ApiToken, Session, SessionId, SessionKind, TokenMaker};
    use crate::store::redb_backend::test_support::{
        NOW, add_user, live_session, open_store, standalone_token,
    };
    use crate::store::{NewSignIn, Requester, RequesterCredential};

    /// A token or minted session made by a token whose life was shortened after the request
    /// read it still ends within the maker's life as it stands at the write, and a token made
    /// by a minted session stops working no later than that session (API.md 15.3).
    #[test]
    fn what_a_token_makes_fits_its_makers_life_as_it_stands_at_the_write() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        let user = add_user(&store, "shortened@example.com");
        let now = NOW;
        let maker = standalone_token(user.id, 1, None);
        store.insert_api_token(&maker).unwrap();
        let requester = Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: Some(RequesterCredential::ApiToken(maker.hash)),
            now,
        };
        // The owner shortens the maker to 60 s while the maker's requests are on their way.
        let shortened = ApiToken {
            expires_at: Some(now + 60),
            ..maker.clone()
        };
        let owner = Requester {
            credential: None,
            ..requester
        };
        store
            .replace_api_token(&shortened, &owner)
            .unwrap()
            .unwrap();
        let made = standalone_token(user.id, 2, Some(TokenMaker::ApiToken(maker.hash)));
        store
            .insert_api_token_within_limit(&made, 100, &requester)
            .unwrap();
        let stored = store.standalone_api_tokens_of_user(user.id).unwrap();
        let made = stored.iter().find(|token| token.hash[0] == 2).unwrap();
        assert_eq!(made.expires_at, Some(now + 60));
        let minted = NewSignIn {
            refuse_if_second_factor_held: false,
            session: Session {
                kind: SessionKind::Minted,
                expire: now + 14 * 24 * 3600,
                made_by: Some(TokenMaker::ApiToken(maker.hash)),
                ..live_session(SessionId::new_for_user(user.id), user.id)
            },
            requester,
            max_sessions_per_user: 1000,
            api_token: None,
            end_other_sessions: false,
            replacement_password_hash: None,
        };
        store.record_sign_in(&minted).unwrap();
        let minted_session = store.session(minted.session.id).unwrap().unwrap();
        // A session works while expire > now: its last second is the maker's.
        assert_eq!(minted_session.expire, now + 61);

        // A token made by that minted session stops with it: its last second is one before.
        let by_minted = Requester {
            credential: Some(RequesterCredential::Session(minted_session.id)),
            ..requester
        };
        let grandchild = standalone_token(
            user.id,
            3,
            Some(TokenMaker::MintedSession(minted_session.id)),
        );
        store
            .insert_api_token_within_limit(&grandchild, 100, &by_minted)
            .unwrap();
        let stored = store.standalone_api_tokens_of_user(user.id).unwrap();
        let grandchild = stored.iter().find(|token| token.hash[0] == 3).unwrap();
        assert_eq!(grandchild.expires_at, Some(now + 60));
    }
}
