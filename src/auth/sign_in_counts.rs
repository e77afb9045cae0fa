//! `SignInCounts`: how many sign-ins ended in which outcome, by method, in plain atomics that
//! the metrics endpoint reads when scraped. The outcomes are a small closed set, so that a
//! surge of wrong passwords (an attack) or of refusals for overload stands out on a graph.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::error::AuthError;

/// How the caller tried to sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    OAuth,
    /// A passwordless sign-in with a passkey (`POST /auth/passkey/sign-in/finish`).
    Passkey,
}

impl SignInMethod {
    pub const ALL: [SignInMethod; 3] = [
        SignInMethod::Password,
        SignInMethod::OAuth,
        SignInMethod::Passkey,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::OAuth => "oauth",
            SignInMethod::Passkey => "passkey",
        }
    }
}

/// How a sign-in ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A session was made.
    Success,
    /// Unknown email, wrong password, or a provider token that does not verify.
    WrongCredentials,
    /// The credentials were right, but the account may not sign in (pending, suspended, or
    /// an OAuth policy refusal).
    Refused,
    /// The first factor was right; the sign-in awaits its second step, which counts again.
    SecondFactorRequired,
    /// Too many failed attempts from this account or network (429).
    Throttled,
    /// The password hashers' queue was full (503).
    Overloaded,
    /// The request itself was malformed (a field, the email's syntax, the captcha).
    BadRequest,
    /// The server or a provider failed.
    Error,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 8] = [
        AttemptOutcome::Success,
        AttemptOutcome::WrongCredentials,
        AttemptOutcome::Refused,
        AttemptOutcome::SecondFactorRequired,
        AttemptOutcome::Throttled,
        AttemptOutcome::Overloaded,
        AttemptOutcome::BadRequest,
        AttemptOutcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::WrongCredentials => "wrong_credentials",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::SecondFactorRequired => "second_factor_required",
            AttemptOutcome::Throttled => "throttled",
            AttemptOutcome::Overloaded => "overloaded",
            AttemptOutcome::BadRequest => "bad_request",
            AttemptOutcome::Error => "error",
        }
    }

    /// The outcome a sign-in's error stands for. Every variant is named, so a new one must
    /// be placed here.
    pub fn of_error(error: &AuthError) -> AttemptOutcome {
        match error {
            AuthError::InvalidCredentials
            | AuthError::CredentialsChanged
            | AuthError::WrongPassword { .. }
            | AuthError::InvalidMfaToken
            | AuthError::WrongSecondFactor { .. }
            | AuthError::Unauthenticated
            | AuthError::InvalidProviderToken(_)
            | AuthError::OAuthEmailMismatch
            | AuthError::PasskeyRefused(_) => AttemptOutcome::WrongCredentials,
            AuthError::AccountPending
            | AuthError::AccountSuspended
            | AuthError::OAuthRefused(_)
            | AuthError::MissingPermission(_)
            | AuthError::RecentSignInRequired
            | AuthError::SignupClosed
            | AuthError::PasskeysUnavailable(_) => AttemptOutcome::Refused,
            AuthError::SecondFactorRequired(_) => AttemptOutcome::SecondFactorRequired,
            AuthError::TooManyAttempts(_) => AttemptOutcome::Throttled,
            AuthError::Overloaded => AttemptOutcome::Overloaded,
            AuthError::InvalidField { .. }
            | AuthError::PasswordLength { .. }
            | AuthError::EmailToken { .. }
            | AuthError::CaptchaRefused
            | AuthError::OutlivesCredential
            | AuthError::NotFound
            | AuthError::Conflict(_)
            | AuthError::PasskeyChallenge(_)
            | AuthError::PasskeyNotVerified(_)
            | AuthError::OAuthBrowserSignIn(_) => AttemptOutcome::BadRequest,
            AuthError::CaptchaUnavailable
            | AuthError::ProviderUnreachable
            | AuthError::StoreUnavailable(_)
            | AuthError::Store(_)
            | AuthError::Internal(_) => AttemptOutcome::Error,
        }
    }
}

const METHODS: usize = SignInMethod::ALL.len();
const OUTCOMES: usize = AttemptOutcome::ALL.len();

/// One counter per method and outcome: a sign-in adds one with a relaxed atomic add, and a
/// scrape reads them all.
#[derive(Debug, Default)]
pub struct SignInCounts {
    counts: [[AtomicU64; OUTCOMES]; METHODS],
}

impl SignInCounts {
    pub fn record(&self, method: SignInMethod, outcome: AttemptOutcome) {
        self.counts[method as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `record`s the outcome of a finished sign-in attempt.
    pub fn record_result<T>(&self, method: SignInMethod, result: &Result<T, AuthError>) {
        let outcome = match result {
            Ok(_) => AttemptOutcome::Success,
            Err(error) => AttemptOutcome::of_error(error),
        };
        self.record(method, outcome);
    }

    pub fn count(&self, method: SignInMethod, outcome: AttemptOutcome) -> u64 {
        self.counts[method as usize][outcome as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_and_outcome_has_its_own_counter() {
        let counts = SignInCounts::default();
        counts.record(SignInMethod::Password, AttemptOutcome::Success);
        counts.record_result::<()>(SignInMethod::Password, &Err(AuthError::InvalidCredentials));
        counts.record_result::<()>(SignInMethod::OAuth, &Err(AuthError::TooManyAttempts(3)));
        counts.record_result(SignInMethod::OAuth, &Ok::<(), AuthError>(()));
        let mut seen = Vec::new();
        for method in SignInMethod::ALL {
            for outcome in AttemptOutcome::ALL {
                let count = counts.count(method, outcome);
                if count > 0 {
                    seen.push((method.label(), outcome.label(), count));
                }
            }
        }
        assert_eq!(
            seen,
            [
                ("password", "success", 1),
                ("password", "wrong_credentials", 1),
                ("oauth", "success", 1),
                ("oauth", "throttled", 1),
            ]
        );
    }

    #[test]
    fn the_lists_follow_the_declaration_order() {
        for (index, method) in SignInMethod::ALL.into_iter().enumerate() {
            assert_eq!(method as usize, index);
        }
        for (index, outcome) in AttemptOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index);
        }
    }
}
