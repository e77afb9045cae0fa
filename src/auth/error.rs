//! `AuthError`: what a use case can answer besides success, and the one mapping of the
//! store's conflicts to it (`From<StoreError>`). The HTTP layer maps each variant to a status
//! in one place; nothing here knows HTTP.

use crate::auth::password::PasswordError;
use crate::auth::signed_token::TokenError;
use crate::model::Permission;
use crate::model::email_address::{EMAIL_RULE_MESSAGE, UnacceptableEmailAddress};
use crate::model::second_factor::SecondFactorRefusal;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("field {field}: {message}")]
    InvalidField {
        field: &'static str,
        message: &'static str,
    },
    /// A password being set is shorter than `[password] min_length` or longer than 72.
    #[error("field {field}: must be {min_length} to {max_length} characters")]
    PasswordLength {
        field: &'static str,
        min_length: usize,
        max_length: usize,
    },
    /// Sign-in with an unknown email or a wrong password: the two are indistinguishable.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// No valid credential: unknown, expired, revoked, tampered or malformed alike.
    #[error("no valid credential")]
    Unauthenticated,
    /// A write from a credential that a password change, suspension or revocation overtook
    /// inside the write's own transaction: answered as `Unauthenticated`, except by sign-in,
    /// which answers as if the password had been wrong.
    #[error("the credential changed while the request ran")]
    CredentialsChanged,
    #[error("the account is pending email verification")]
    AccountPending,
    #[error("the account is suspended")]
    AccountSuspended,
    #[error("the credential lacks the permission {}", .0.name())]
    MissingPermission(Permission),
    /// A re-authentication's password is wrong; `field` names the request's field.
    #[error("field {field}: the password is wrong")]
    WrongPassword { field: &'static str },
    /// The first factor was right, and the user holds a second one: no session yet, but the
    /// token for the second step.
    #[error("a second factor is required")]
    SecondFactorRequired(crate::auth::second_factor::SecondFactorChallenge),
    /// The mfa-token is unknown, used, expired, dead after too many wrong codes, or from
    /// before a password change.
    #[error("the mfa-token is not valid")]
    InvalidMfaToken,
    /// A TOTP code or recovery code that is wrong, or was spent already.
    #[error("field {field}: wrong or already used")]
    WrongSecondFactor { field: &'static str },
    /// An account without a password changes its second factors only from a fresh sign-in.
    #[error("a sign-in within the last 10 minutes is required")]
    RecentSignInRequired,
    /// A token asked for something that would outlive it (API.md 15.2).
    #[error("a token cannot make or change a token to expire after itself")]
    OutlivesCredential,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("the password hashers are saturated")]
    Overloaded,
    /// The store cannot serve now (PostgreSQL unreachable, out of connections): retry.
    #[error("{0}")]
    StoreUnavailable(StoreError),
    #[error("too many failed attempts; retry in {0} s")]
    TooManyAttempts(u64),
    #[error("sign-up is closed")]
    SignupClosed,
    #[error("emailed token refused: {problem:?}")]
    EmailToken {
        field: &'static str,
        problem: crate::model::EmailTokenProblem,
    },
    #[error("the captcha check failed")]
    CaptchaRefused,
    #[error("the captcha verifier is unreachable")]
    CaptchaUnavailable,
    /// An OAuth provider token that does not verify; the reason is for the log only.
    #[error("the OAuth provider token is not valid: {0}")]
    InvalidProviderToken(&'static str),
    /// A valid provider token that may not sign anyone in. The reason is for the log only:
    /// on the wire every refusal reads the same, so that none tells whether an account has
    /// the provider's address (API.md 15.10).
    #[error("OAuth sign-in refused: {0}")]
    OAuthRefused(&'static str),
    /// The `email` the client sent is not the provider's: about the request, not an account.
    #[error("OAuth sign-in refused: the provider's email is not the one sent")]
    OAuthEmailMismatch,
    #[error("the OAuth provider cannot be reached")]
    ProviderUnreachable,
    /// A browser OAuth sign-in that cannot go on (API.md section 11).
    #[error("browser OAuth sign-in refused: {}", .0.name())]
    OAuthBrowserSignIn(crate::auth::oauth::browser::BrowserSignInProblem),
    /// Passkeys cannot work on this server; the reason says what to configure.
    #[error("passkeys are unavailable: {0}")]
    PasskeysUnavailable(&'static str),
    #[error("the passkey challenge is refused: {0:?}")]
    PasskeyChallenge(crate::model::passkey::PasskeyChallengeProblem),
    /// A registration's `credential` did not verify (origin, relying party, user
    /// verification, attestation); the reason is for the log only.
    #[error("the new passkey does not verify: {0}")]
    PasskeyNotVerified(String),
    /// An assertion that does not sign anyone in: unknown credential, wrong signature,
    /// origin or relying party, no user verification, a credential of another user. The
    /// reason is for the log only.
    #[error("the passkey is not accepted: {0}")]
    PasskeyRefused(String),
    /// The store failed: never one of its conflicts, which `From<StoreError>` turns into
    /// the outcomes above.
    #[error(transparent)]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The one place the store's conflicts become domain outcomes; every variant is named, so a
/// new conflict must be placed here.
impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> AuthError {
        match error {
            StoreError::EmailTaken => AuthError::Conflict("email taken"),
            StoreError::LastActiveRoot => AuthError::Conflict("last active root"),
            StoreError::TooManyApiTokens => {
                AuthError::Conflict("the user holds the most API tokens allowed; delete some first")
            }
            // The credential was revoked, or its user's password changed or the user was
            // suspended, while the request was on its way (API.md 15.3, 15.6).
            StoreError::CredentialsChanged => AuthError::CredentialsChanged,
            StoreError::SecondFactorRefused(refusal) => match refusal {
                SecondFactorRefusal::MfaTokenGone => AuthError::InvalidMfaToken,
                SecondFactorRefusal::CodeSpent => AuthError::WrongSecondFactor { field: "code" },
                SecondFactorRefusal::RecoveryCodeSpent => AuthError::WrongSecondFactor {
                    field: "recovery-code",
                },
                SecondFactorRefusal::NoPendingTotp => AuthError::Conflict(
                    "no TOTP enrolment is pending; start one with POST /auth/mfa/totp",
                ),
                SecondFactorRefusal::TotpAlreadyOn => {
                    AuthError::Conflict("TOTP is on already; turn it off before enrolling again")
                }
                SecondFactorRefusal::TotpOff => AuthError::Conflict("TOTP is off"),
            },
            StoreError::TooManyPasskeys => {
                AuthError::Conflict("the user holds the most passkeys allowed; remove one first")
            }
            StoreError::PasskeyAlreadyRegistered => {
                AuthError::Conflict("the passkey is already registered")
            }
            StoreError::PasskeyChallengeRefused(problem) => AuthError::PasskeyChallenge(problem),
            StoreError::PasskeyGone => AuthError::PasskeyRefused("the passkey was removed".into()),
            // A flood of started ceremonies: the table is full of live ones for a while.
            StoreError::TooManyPasskeyChallenges => AuthError::Overloaded,
            // A flood of started browser sign-ins, likewise.
            StoreError::TooManyOAuthBrowserStates => AuthError::Overloaded,
            StoreError::Unavailable(_) => AuthError::StoreUnavailable(error),
            // Only `open_session` asks the store for this refusal, and it answers it with a
            // second-factor challenge before any conversion: here it would be a bug.
            StoreError::SecondFactorHeld(_) => AuthError::Store(error),
            StoreError::Redb(_)
            | StoreError::Postgres(_)
            | StoreError::WriteInterrupted(_)
            | StoreError::NotOnThisBackend(_)
            | StoreError::CorruptRecord(_)
            | StoreError::NewerSchema { .. }
            | StoreError::Locked { .. }
            | StoreError::Io { .. } => AuthError::Store(error),
        }
    }
}

impl From<PasswordError> for AuthError {
    fn from(error: PasswordError) -> AuthError {
        match error {
            PasswordError::Overloaded => AuthError::Overloaded,
            PasswordError::Stopped | PasswordError::Argon2(_) => {
                AuthError::Internal(error.to_string())
            }
        }
    }
}

/// The one way an address problem becomes an answer: the 400 of the `email` field, on every
/// route that reads an address (sign-in, sign-up, resend, reset, sub-user creation).
impl From<UnacceptableEmailAddress> for AuthError {
    fn from(_: UnacceptableEmailAddress) -> AuthError {
        AuthError::InvalidField {
            field: "email",
            message: EMAIL_RULE_MESSAGE,
        }
    }
}

impl From<TokenError> for AuthError {
    fn from(error: TokenError) -> AuthError {
        match error {
            TokenError::Malformed
            | TokenError::UnknownKey
            | TokenError::BadSignature
            | TokenError::InvalidClaims => AuthError::Unauthenticated,
            TokenError::BadStoredKey | TokenError::Signing => {
                AuthError::Internal(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::AuthError;
    use crate::model::email_address::EmailAddress;

    #[test]
    fn an_unacceptable_address_is_the_email_fields_error() {
        let refusal = EmailAddress::parse("<alice@example.com>").unwrap_err();
        let AuthError::InvalidField { field, message } = AuthError::from(refusal) else {
            panic!("an address problem must be a field error");
        };
        assert_eq!(field, "email");
        assert_eq!(
            message,
            "must be a bare email address of at most 254 characters, with a local part of at most 64"
        );
    }
}
