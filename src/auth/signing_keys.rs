//! The signing-key use cases, written once over the store: load the ring (making the first
//! key on a new store), rotate, revoke, and the scheduled upkeep (promote due `next` keys,
//! drop retired keys no live token can name, rotate when `[keys] rotate_every` says so).
//! The CLI runs them on a stopped server's store; `App` runs the same functions and then
//! swaps its live ring.

use crate::auth::signed_token::{KeyRing, TokenError, generate_signing_key};
use crate::config::Config;
use crate::model::{SigningKeyStatus, UnixSeconds};
use crate::store::{KeyRevocation, Store, StoreError, StoredSigningKey};

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] TokenError),
}

/// What a key rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// The new key signs at once (`[keys] publish_ahead_seconds = 0`).
    Active { key_id: String },
    /// The new key is published as `next` and signs from `activates_at`.
    Next {
        key_id: String,
        activates_at: UnixSeconds,
    },
    /// A `next` key was already waiting: nothing was added.
    AlreadyWaiting {
        key_id: String,
        activates_at: UnixSeconds,
    },
}

/// The settings the scheduled upkeep follows, read from the config once per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningKeySchedule {
    /// `[keys] rotate_every`; 0 turns automatic rotation off.
    pub rotate_every_seconds: u64,
    /// `[keys] publish_ahead_seconds`.
    pub publish_ahead_seconds: u64,
    /// The longest session lifetime: a key retired longer ago than this signed no live token.
    pub longest_token_lifetime_seconds: u64,
}

impl SigningKeySchedule {
    pub fn from_config(config: &Config) -> SigningKeySchedule {
        SigningKeySchedule {
            rotate_every_seconds: config.keys.rotate_every,
            publish_ahead_seconds: config.keys.publish_ahead_seconds,
            longest_token_lifetime_seconds: config
                .session
                .long_term_seconds
                .max(config.session.short_term_seconds),
        }
    }
}

/// What one round of scheduled upkeep changed in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigningKeyUpkeep {
    /// A `next` key whose time had come now has its switch persisted.
    pub promoted: bool,
    /// The retired keys dropped.
    pub dropped: Vec<String>,
    /// The rotation `[keys] rotate_every` asked for, if it was due.
    pub rotation: Option<KeyRotation>,
}

impl SigningKeyUpkeep {
    /// Whether a ring built before this upkeep may now differ from the store.
    pub fn changed_keys(&self) -> bool {
        self.promoted || !self.dropped.is_empty() || self.rotation.is_some()
    }
}

/// Reads the stored keys into a ring.
pub async fn read_key_ring(store: &Store) -> Result<KeyRing, SigningKeyError> {
    Ok(KeyRing::from_stored(&store.signing_keys().await?)?)
}

/// The ring a starting server signs with: persists the switch to due `next` keys, and
/// generates and stores the first active key on a new store.
pub async fn load_key_ring_making_the_first_key(
    store: &Store,
    now: UnixSeconds,
) -> Result<KeyRing, SigningKeyError> {
    store.promote_due_signing_keys(now).await?;
    let mut stored_keys = store.signing_keys().await?;
    if !stored_keys
        .iter()
        .any(|key| key.status == SigningKeyStatus::Active)
    {
        let key = generate_signing_key(now)?;
        store.insert_active_signing_key(&key).await?;
        stored_keys = store.signing_keys().await?;
    }
    Ok(KeyRing::from_stored(&stored_keys)?)
}

/// Makes a new signing key. With `publish_ahead_seconds` 0 it signs at once and the old
/// active key retires (it keeps verifying); else it is published as `next` and signs that
/// many seconds later, unless a `next` key is already waiting. A running server's ring is
/// not touched: `App::rotate_signing_key` does that.
pub async fn rotate_signing_key(
    store: &Store,
    publish_ahead_seconds: u64,
    now: UnixSeconds,
) -> Result<KeyRotation, SigningKeyError> {
    let key = generate_signing_key(now)?;
    if publish_ahead_seconds == 0 {
        store.insert_active_signing_key(&key).await?;
        return Ok(KeyRotation::Active { key_id: key.key_id });
    }
    let activates_at = now.saturating_add(i64::try_from(publish_ahead_seconds).unwrap_or(i64::MAX));
    Ok(
        match store
            .insert_next_signing_key(&key, activates_at, now)
            .await?
        {
            None => KeyRotation::Next {
                key_id: key.key_id,
                activates_at,
            },
            Some(waiting) => KeyRotation::AlreadyWaiting {
                key_id: waiting.key_id,
                activates_at: waiting.activates_at,
            },
        },
    )
}

/// Removes a signing key at once. Revoking the key that signs never leaves none: a `next`
/// key waiting takes over at once, else a fresh key does. `None`: no such key.
pub async fn revoke_signing_key(
    store: &Store,
    key_id: &str,
    now: UnixSeconds,
) -> Result<Option<KeyRevocation>, SigningKeyError> {
    let replacement = generate_signing_key(now)?;
    Ok(store.revoke_signing_key(key_id, &replacement, now).await?)
}

/// The scheduled upkeep: persists the switch to `next` keys whose time has come, drops
/// retired keys that can no longer have a live token (retired longer ago than the longest
/// token lifetime), and rotates when `[keys] rotate_every` says it is time (publishing ahead
/// by `publish_ahead_seconds`, so the new key signs about `rotate_every` after the last).
pub async fn promote_drop_and_rotate_signing_keys(
    store: &Store,
    schedule: SigningKeySchedule,
    now: UnixSeconds,
) -> Result<SigningKeyUpkeep, SigningKeyError> {
    let promoted = store.promote_due_signing_keys(now).await?;
    let stored = store.signing_keys().await?;
    let mut dropped = Vec::new();
    for key_id in keys_past_their_last_token(&stored, schedule, now) {
        store.delete_signing_key(&key_id).await?;
        dropped.push(key_id);
    }
    let rotation = if scheduled_rotation_is_due(&stored, schedule, now) {
        Some(rotate_signing_key(store, schedule.publish_ahead_seconds, now).await?)
    } else {
        None
    };
    Ok(SigningKeyUpkeep {
        promoted,
        dropped,
        rotation,
    })
}

/// The retired keys whose retirement is older than the longest token lifetime.
fn keys_past_their_last_token(
    stored: &[StoredSigningKey],
    schedule: SigningKeySchedule,
    now: UnixSeconds,
) -> Vec<String> {
    let longest_lifetime =
        i64::try_from(schedule.longest_token_lifetime_seconds).unwrap_or(i64::MAX);
    stored
        .iter()
        .filter(|key| {
            key.status == SigningKeyStatus::Retired
                && key
                    .retired_at
                    .is_some_and(|retired_at| retired_at.saturating_add(longest_lifetime) < now)
        })
        .map(|key| key.key_id.clone())
        .collect()
}

/// Whether `[keys] rotate_every` asks for a new key now: rotation is on, no `next` key
/// waits, and the newest active key activated at least `rotate_every - publish_ahead`
/// seconds ago.
fn scheduled_rotation_is_due(
    stored: &[StoredSigningKey],
    schedule: SigningKeySchedule,
    now: UnixSeconds,
) -> bool {
    let rotate_every = i64::try_from(schedule.rotate_every_seconds).unwrap_or(i64::MAX);
    let publish_ahead = i64::try_from(schedule.publish_ahead_seconds).unwrap_or(i64::MAX);
    let newest_activation = stored
        .iter()
        .filter(|key| key.status == SigningKeyStatus::Active)
        .map(|key| key.activates_at.unwrap_or(key.created))
        .max();
    let next_waiting = stored
        .iter()
        .any(|key| key.status == SigningKeyStatus::Next);
    let rotation_due = newest_activation.is_some_and(|activated| {
        activated.saturating_add(rotate_every.saturating_sub(publish_ahead)) <= now
    });
    rotate_every > 0 && !next_waiting && rotation_due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_key(
        key_id: &str,
        status: SigningKeyStatus,
        created: UnixSeconds,
        retired_at: Option<UnixSeconds>,
    ) -> StoredSigningKey {
        StoredSigningKey {
            key_id: key_id.to_owned(),
            secret_key_bytes: crate::model::Secret::new(Vec::new()),
            status,
            created,
            retired_at,
            activates_at: None,
        }
    }

    fn schedule(rotate_every_seconds: u64, publish_ahead_seconds: u64) -> SigningKeySchedule {
        SigningKeySchedule {
            rotate_every_seconds,
            publish_ahead_seconds,
            longest_token_lifetime_seconds: 100,
        }
    }

    #[test]
    fn a_retired_key_goes_once_the_longest_token_lifetime_has_passed() {
        let stored = [
            stored_key("active", SigningKeyStatus::Active, 1_000, None),
            stored_key("recent", SigningKeyStatus::Retired, 500, Some(950)),
            stored_key("old", SigningKeyStatus::Retired, 100, Some(899)),
            stored_key("edge", SigningKeyStatus::Retired, 100, Some(900)),
        ];
        assert_eq!(
            keys_past_their_last_token(&stored, schedule(0, 0), 1_000),
            ["old"]
        );
    }

    #[test]
    fn rotation_is_due_rotate_every_minus_publish_ahead_after_the_last_activation() {
        let active = [stored_key("active", SigningKeyStatus::Active, 1_000, None)];
        assert!(!scheduled_rotation_is_due(
            &active,
            schedule(0, 0),
            1_000_000
        ));
        assert!(!scheduled_rotation_is_due(&active, schedule(300, 0), 1_299));
        assert!(scheduled_rotation_is_due(&active, schedule(300, 0), 1_300));
        assert!(!scheduled_rotation_is_due(
            &active,
            schedule(300, 100),
            1_199
        ));
        assert!(scheduled_rotation_is_due(
            &active,
            schedule(300, 100),
            1_200
        ));
        let with_next = [
            stored_key("active", SigningKeyStatus::Active, 1_000, None),
            stored_key("next", SigningKeyStatus::Next, 1_200, None),
        ];
        assert!(!scheduled_rotation_is_due(
            &with_next,
            schedule(300, 100),
            5_000
        ));
    }
}
