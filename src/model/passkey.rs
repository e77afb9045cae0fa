//! Passkeys (WebAuthn credentials) and their ceremonies' challenges, as the store keeps them
//! and `auth` reads them. What WebAuthn itself needs (the public key, the counter, a
//! ceremony's state) is an opaque byte blob here, made and read only by `crate::webauthn`;
//! the plain fields beside it are the ones the store indexes and the API shows.

use std::fmt;

use crate::model::{UnixSeconds, UserId, parse_canonical_uuid};

/// The most passkeys one user may hold; registering one more is a conflict.
pub const MAX_PASSKEYS_PER_USER: usize = 20;

/// The longest passkey name, in Unicode characters.
pub const PASSKEY_NAME_MAX_CHARACTERS: usize = 100;

/// How long a ceremony's challenge may be finished after it was started.
pub const PASSKEY_CHALLENGE_LIFETIME_SECONDS: UnixSeconds = 300;

/// A passkey's id as the API shows it (`GET /auth/passkey`, `DELETE /auth/passkey/{id}`): a
/// random UUID, stored as its 128-bit value. It is not the authenticator's credential id,
/// which an authenticator chooses and which can be long.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PasskeyId(pub u128);

/// A ceremony's challenge id, which the client sends back with the ceremony's answer: a
/// random UUID, stored as its 128-bit value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PasskeyChallengeId(pub u128);

macro_rules! random_uuid_id {
    ($name:ident) => {
        impl $name {
            pub fn new_random() -> $name {
                $name(uuid::Uuid::new_v4().as_u128())
            }

            /// Parses only the canonical form (lowercase, hyphenated), nothing looser.
            pub fn parse_canonical(text: &str) -> Option<$name> {
                parse_canonical_uuid(text).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                uuid::Uuid::from_u128(self.0).hyphenated().fmt(formatter)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, formatter)
            }
        }
    };
}

random_uuid_id!(PasskeyId);
random_uuid_id!(PasskeyChallengeId);

/// A registered passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passkey {
    pub id: PasskeyId,
    pub user_id: UserId,
    /// The authenticator's credential id: unique in the whole store, so a credential that
    /// one user registered can never sign in another.
    pub credential_id: Vec<u8>,
    /// The WebAuthn user handle the credential was made for (the same for all of a user's
    /// passkeys while any exists). A discoverable sign-in must present it.
    pub user_handle: u128,
    pub name: String,
    pub created: UnixSeconds,
    pub last_used: Option<UnixSeconds>,
    /// The credential as `crate::webauthn` serialized it: public key, counter, backup state.
    pub credential: Vec<u8>,
}

/// Which ceremony a challenge belongs to. A challenge finishes only the ceremony it was
/// started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyChallengeKind {
    /// Adding a passkey to the signed-in user (`register/start`).
    Registration,
    /// A passwordless sign-in: any discoverable credential of anyone (`sign-in/start`).
    DiscoverableSignIn,
    /// An assertion limited to one user's passkeys: the second factor after a password.
    UserAssertion,
}

impl PasskeyChallengeKind {
    pub const ALL: [PasskeyChallengeKind; 3] = [
        PasskeyChallengeKind::Registration,
        PasskeyChallengeKind::DiscoverableSignIn,
        PasskeyChallengeKind::UserAssertion,
    ];
}

/// A started ceremony, kept until it is finished or expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyChallenge {
    pub id: PasskeyChallengeId,
    pub kind: PasskeyChallengeKind,
    /// The user the ceremony is for; `None` for a discoverable sign-in.
    pub user_id: Option<UserId>,
    /// For a registration: the user handle the new credential is made for.
    pub user_handle: Option<u128>,
    pub expires_at: UnixSeconds,
    /// The ceremony's state as `crate::webauthn` serialized it (the challenge bytes and the
    /// policy it was started with).
    pub state: Vec<u8>,
}

/// Why a challenge id was refused; each has its own reason on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyChallengeProblem {
    /// Never made, already used, made for another ceremony or for another user.
    Unknown,
    /// Older than `PASSKEY_CHALLENGE_LIFETIME_SECONDS`.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_in_canonical_form() {
        let id = PasskeyId::new_random();
        assert_eq!(PasskeyId::parse_canonical(&id.to_string()), Some(id));
        assert_eq!(
            PasskeyId::parse_canonical(&id.to_string().to_uppercase()),
            None
        );
        assert_eq!(PasskeyId::parse_canonical("register"), None);
        let challenge = PasskeyChallengeId::new_random();
        assert_eq!(
            PasskeyChallengeId::parse_canonical(&format!("{challenge:?}")),
            Some(challenge)
        );
        assert_eq!(
            PasskeyChallengeId::parse_canonical(&challenge.to_string().replace('-', "")),
            None
        );
    }
}
