//! Which signing key signs, as both backends apply it to the whole key table (a handful of
//! rows) inside one write transaction: the rule is `KeyRing`'s, among the active keys and the
//! `next` keys whose time has come, the one that activated last. Keys are in the table's key
//! order (the key ids' bytes), which breaks ties.

use crate::model::{SigningKeyStatus, UnixSeconds};
use crate::store::{KeyRevocation, PendingNextKey, StoredSigningKey};

/// `key` as a new row of `status`: not retired.
pub(super) fn new_key(
    key: &StoredSigningKey,
    status: SigningKeyStatus,
    activates_at: Option<UnixSeconds>,
) -> StoredSigningKey {
    StoredSigningKey {
        status,
        retired_at: None,
        activates_at,
        ..key.clone()
    }
}

/// When a key signs (or signed) from.
fn activation(key: &StoredSigningKey) -> UnixSeconds {
    key.activates_at.unwrap_or(key.created)
}

fn has_status(key: &StoredSigningKey, status: SigningKeyStatus) -> bool {
    key.status == status
}

fn is_due_next(key: &StoredSigningKey, now: UnixSeconds) -> bool {
    has_status(key, SigningKeyStatus::Next) && activation(key) <= now
}

/// Leaves exactly one active key among the active keys and the due `next` ones: the one
/// that activated last. The others retire at its activation time. Returns whether any key
/// changed.
pub(super) fn promote_due(keys: &mut [StoredSigningKey], now: UnixSeconds) -> bool {
    let candidates =
        |key: &StoredSigningKey| has_status(key, SigningKeyStatus::Active) || is_due_next(key, now);
    let count = keys.iter().filter(|key| candidates(key)).count();
    let any_due_next = keys.iter().any(|key| is_due_next(key, now));
    if count <= 1 && !any_due_next {
        return false;
    }
    let Some((winner_id, winner_activation)) = keys
        .iter()
        .filter(|key| candidates(key))
        // On a tie the key already active stays, as in `KeyRing::signing_key_at`.
        .max_by_key(|key| {
            (
                activation(key),
                key.created,
                has_status(key, SigningKeyStatus::Active),
                key.key_id.clone(),
            )
        })
        .map(|key| (key.key_id.clone(), activation(key)))
    else {
        return false;
    };
    for key in keys.iter_mut() {
        if !candidates(key) {
            continue;
        }
        if key.key_id == winner_id {
            key.status = SigningKeyStatus::Active;
        } else {
            key.status = SigningKeyStatus::Retired;
            key.retired_at = Some(winner_activation);
        }
    }
    true
}

/// Publishes `key` as `next`, to sign from `activates_at`, unless a `next` key is already
/// waiting: then nothing is added and that key is returned. Due keys are promoted first.
pub(super) fn publish_next(
    keys: &mut Vec<StoredSigningKey>,
    key: &StoredSigningKey,
    activates_at: UnixSeconds,
    now: UnixSeconds,
) -> Option<PendingNextKey> {
    promote_due(keys, now);
    if let Some(waiting) = keys
        .iter()
        .find(|key| has_status(key, SigningKeyStatus::Next))
    {
        return Some(PendingNextKey {
            key_id: waiting.key_id.clone(),
            activates_at: activation(waiting),
        });
    }
    keys.push(new_key(key, SigningKeyStatus::Next, Some(activates_at)));
    None
}

/// Removes the key `key_id`. When it is the key that signs, a waiting `next` key signs from
/// `now` on, else `replacement` does: there is always a key that signs. `None` when there is
/// no such key.
pub(super) fn revoke(
    keys: &mut Vec<StoredSigningKey>,
    key_id: &str,
    replacement: &StoredSigningKey,
    now: UnixSeconds,
) -> Option<KeyRevocation> {
    promote_due(keys, now);
    let index = keys.iter().position(|key| key.key_id == key_id)?;
    let revoked = keys.remove(index);
    if !has_status(&revoked, SigningKeyStatus::Active) {
        return Some(KeyRevocation {
            new_active_key_id: None,
        });
    }
    let waiting = keys
        .iter_mut()
        .filter(|key| has_status(key, SigningKeyStatus::Next))
        .min_by_key(|key| activation(key));
    let new_active_key_id = match waiting {
        Some(waiting) => {
            waiting.status = SigningKeyStatus::Active;
            waiting.activates_at = Some(now);
            waiting.key_id.clone()
        }
        None => {
            keys.push(new_key(replacement, SigningKeyStatus::Active, None));
            replacement.key_id.clone()
        }
    };
    Some(KeyRevocation {
        new_active_key_id: Some(new_active_key_id),
    })
}
