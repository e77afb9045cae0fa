//! Second factors as the store and the auth layer share them: a TOTP secret (pending until a
//! code confirms it, then active with the last time step it accepted), the hashes of the
//! recovery codes, the mfa-token that carries a half-done sign-in to its second step, and
//! what a second step spends. None of them is a serde type; the store has its own records.

use crate::model::{PasswordHashString, Secret, UnixSeconds, UserId};

/// An RFC 6238 secret: 160 bits, the size RFC 4226 recommends for HMAC-SHA-1.
pub const TOTP_SECRET_BYTES: usize = 20;

/// How many recovery codes a user holds after enrolment or regeneration.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// The random salt of a set of recovery codes.
pub const RECOVERY_CODE_SALT_BYTES: usize = 16;

/// The 20 secret bytes of an authenticator: unprintable by type.
pub type TotpSecret = Secret<[u8; TOTP_SECRET_BYTES]>;

/// An enrolment started but not yet confirmed by a code: it signs nobody in and expires.
#[derive(Clone, Debug)]
pub struct PendingTotp {
    pub user_id: UserId,
    pub secret: TotpSecret,
    pub created: UnixSeconds,
    pub expires_at: UnixSeconds,
}

/// TOTP that a code confirmed: from now on a password alone signs the user in no more.
#[derive(Clone, Debug)]
pub struct ActiveTotp {
    pub user_id: UserId,
    pub secret: TotpSecret,
    pub enabled_at: UnixSeconds,
    /// The last time step (Unix time / 30) whose code was accepted: a code of that step or
    /// an earlier one is refused, so a code works once.
    pub last_accepted_step: u64,
}

/// A user's unused recovery codes as kept: each code's SHA-256 under the set's own salt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryCodeSet {
    pub salt: [u8; RECOVERY_CODE_SALT_BYTES],
    pub hashes: Vec<[u8; 32]>,
}

/// How the first step of a sign-in proved who the user is; the second step completes it
/// and the metrics and audit lines name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstFactor {
    Password,
    OAuth { provider: String },
}

/// A sign-in halfway: the first factor verified, the second one awaited. Only the SHA-256
/// of its token is kept; it is single use, short-lived and dies after a few wrong codes.
#[derive(Clone, Debug)]
pub struct MfaToken {
    pub hash: [u8; 32],
    pub user_id: UserId,
    /// The user's credential version the first step verified against: a password change or
    /// suspension since then kills the token.
    pub credential_version: u64,
    pub first_factor: FirstFactor,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub remote_ip: String,
    pub user_agent: String,
    /// A re-hash of the password under the configured cost, written with the session.
    pub replacement_password_hash: Option<PasswordHashString>,
    pub created: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// Wrong codes tried with this token so far.
    pub wrong_codes: u32,
}

/// What a user holds: the answer's `second-factors`, and the methods a sign-in offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondFactorSummary {
    pub totp: bool,
    pub passkeys: usize,
    pub recovery_codes_left: usize,
}

impl SecondFactorSummary {
    /// Whether a first factor alone may no longer sign the user in.
    pub fn requires_second_factor(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// The proof a second step spends, in the same transaction as the session it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactorProof {
    /// A TOTP code of this time step: it becomes the last accepted one, and is refused if
    /// a code of it or of a later step was accepted meanwhile.
    TotpStep(u64),
    /// The recovery code with this salted SHA-256: removed, so it works once.
    RecoveryCode([u8; 32]),
    /// A passkey assertion of the user's, verified with its challenge taken (by
    /// `Store::finish_passkey_assertion`, which also wrote the new signature counter).
    PasskeyAsserted,
}

/// Why the store refused a second-factor write; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactorRefusal {
    /// The mfa-token is unknown, used, expired or dead after too many wrong codes.
    MfaTokenGone,
    /// The TOTP code's step was already accepted (or a later one), or TOTP is off now.
    CodeSpent,
    /// The recovery code is gone (used, regenerated, or TOTP turned off).
    RecoveryCodeSpent,
    /// No enrolment is pending (never started, expired, or confirmed already).
    NoPendingTotp,
    /// TOTP is on already: it must be turned off before a new enrolment.
    TotpAlreadyOn,
    /// TOTP is off.
    TotpOff,
}
