//! Second factors (API.md section 10): TOTP enrolment, confirmation and removal, recovery
//! codes, and the second step of a sign-in. Once a user holds a second factor, a first
//! factor (password or OAuth) opens no session: the store refuses it inside the sign-in's
//! write, and `open_session` hands the refusal to `challenge`, which answers
//! `SecondFactorRequired` with an mfa-token, and `complete_sign_in` spends that
//! token with a code or a recovery code in the transaction that writes the session.
//!
//! Changing a second factor takes a sign-in session (the route's rule) and, besides, the
//! account's password again, or, for an account without one (made by OAuth), a sign-in made
//! in the last 10 minutes (`check_reauthentication`). Wrong codes and recovery codes, here
//! as at the second step, count in the same brute-force buckets as wrong passwords.

pub mod mfa_token;
pub mod recovery_codes;
pub mod totp;

use crate::app::App;
use crate::auth::passkeys::{self, StartedPasskeyCeremony};
use crate::auth::password::Password;
use crate::auth::rate_limit::ThrottlePassed;
use crate::auth::sign_in_counts::SignInMethod;
use crate::auth::{
    AuthError, ClientInfo, Identity, SessionOpening, SignInOutcome, account, check_may_sign_in,
    open_session, throttled_recheck, token_hash,
};
use crate::model::passkey::PasskeyChallengeId;
use crate::model::second_factor::{
    ActiveTotp, FirstFactor, MfaToken, PendingTotp, RECOVERY_CODE_SALT_BYTES, SecondFactorProof,
    SecondFactorSummary, TotpSecret,
};
use crate::model::{PASSWORD_MAX_CHARACTERS, Secret, UnixSeconds, User, UserId};
use crate::store::StoreError;
use mfa_token::HalfDoneSignIn;

/// How long a started enrolment waits for the code that confirms it.
pub const PENDING_ENROLMENT_SECONDS: UnixSeconds = 10 * 60;
/// How recent the sign-in of an account without a password must be for it to change its
/// second factors.
pub const RECENT_SIGN_IN_SECONDS: UnixSeconds = 10 * 60;
/// The issuer authenticator apps show when `[pages] title` is empty.
const PRODUCT_NAME: &str = "Latchkey";

/// A way to complete a sign-in, as the 403's `methods` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactorMethod {
    Totp,
    RecoveryCode,
    Passkey,
}

impl SecondFactorMethod {
    pub fn name(self) -> &'static str {
        match self {
            SecondFactorMethod::Totp => "totp",
            SecondFactorMethod::RecoveryCode => "recovery-code",
            SecondFactorMethod::Passkey => "passkey",
        }
    }
}

/// The answer to a first factor when a second one is due: the token that carries the
/// sign-in to its second step, and the ways to take it.
#[derive(Debug)]
pub struct SecondFactorChallenge {
    /// Whose sign-in it is, for the audit log (the answer does not say).
    pub user_id: UserId,
    pub mfa_token: Secret<String>,
    pub methods: Vec<SecondFactorMethod>,
}

/// Where a sign-in stands with second factors when it reaches `open_session`.
#[derive(Clone, Debug)]
pub enum SecondFactorGate {
    /// Only a first factor was shown: a user who holds a second factor gets no session but
    /// `SecondFactorRequired`.
    FirstFactorOnly(FirstFactor),
    /// The second step: the proof is spent with the mfa-token in the session's own
    /// transaction.
    Completed {
        mfa_token_hash: [u8; 32],
        proof: SecondFactorProof,
    },
    /// A passwordless passkey sign-in with user verification: the passkey is something held
    /// and the verification something known or been, so it satisfies both factors itself.
    PasskeyWithUserVerification,
}

/// A code or recovery code as the client sent it.
#[derive(Clone, Debug)]
pub enum PresentedSecondFactor {
    Code(Secret<String>),
    RecoveryCode(Secret<String>),
    /// The answer to `start_passkey_second_factor`'s challenge.
    Passkey {
        challenge_id: PasskeyChallengeId,
        credential: serde_json::Value,
    },
}

impl PresentedSecondFactor {
    fn method(&self) -> SecondFactorMethod {
        match self {
            PresentedSecondFactor::Code(_) => SecondFactorMethod::Totp,
            PresentedSecondFactor::RecoveryCode(_) => SecondFactorMethod::RecoveryCode,
            PresentedSecondFactor::Passkey { .. } => SecondFactorMethod::Passkey,
        }
    }

    /// The request field a wrong one is blamed on.
    fn field(&self) -> &'static str {
        match self {
            PresentedSecondFactor::Code(_) => "code",
            PresentedSecondFactor::RecoveryCode(_) => "recovery-code",
            PresentedSecondFactor::Passkey { .. } => "credential",
        }
    }
}

/// `POST /auth/sign-in/second-factor`.
#[derive(Debug)]
pub struct SecondFactorSignIn {
    pub mfa_token: Secret<String>,
    pub presented: PresentedSecondFactor,
    pub client: ClientInfo,
}

/// A completed second step: the session, and how it was completed (for the audit log).
#[derive(Debug)]
pub struct SecondFactorSignedIn {
    pub outcome: SignInOutcome,
    pub method: SecondFactorMethod,
    pub first_factor: FirstFactor,
}

/// A started enrolment: the secret as base32 and as the URI apps read from a QR code.
#[derive(Debug)]
pub struct TotpEnrolment {
    pub secret: Secret<String>,
    pub otpauth_uri: Secret<String>,
}

/// What the user holds (`GET /user/current`'s `second-factors`).
pub async fn summary(app: &App, user_id: UserId) -> Result<SecondFactorSummary, AuthError> {
    Ok(app.store.second_factor_summary(user_id).await?)
}

/// The ways a user with these factors may complete a sign-in; recovery codes only back TOTP.
pub fn methods_offered(summary: &SecondFactorSummary) -> Vec<SecondFactorMethod> {
    let mut methods = Vec::with_capacity(3);
    if summary.totp {
        methods.push(SecondFactorMethod::Totp);
        if summary.recovery_codes_left > 0 {
            methods.push(SecondFactorMethod::RecoveryCode);
        }
    }
    if summary.passkeys > 0 {
        methods.push(SecondFactorMethod::Passkey);
    }
    methods
}

/// The sign-in counter a first factor counts under.
pub fn sign_in_method(first_factor: &FirstFactor) -> SignInMethod {
    match first_factor {
        FirstFactor::Password => SignInMethod::Password,
        FirstFactor::OAuth { .. } => SignInMethod::OAuth,
    }
}

/// Called by `open_session` when the store refused a first factor alone because the user
/// holds a second factor (`held`): stores an mfa-token for the half-done sign-in and answers
/// `SecondFactorRequired`.
pub(crate) async fn challenge(
    app: &App,
    sign_in: HalfDoneSignIn<'_>,
    held: SecondFactorSummary,
) -> AuthError {
    let user_id = sign_in.user.id;
    let (token, stored) = match mfa_token::issue(sign_in, app.clock.now_unix_seconds()) {
        Ok(issued) => issued,
        Err(error) => return error,
    };
    if let Err(error) = app.store.insert_mfa_token(&stored).await {
        return AuthError::from(error);
    }
    AuthError::SecondFactorRequired(SecondFactorChallenge {
        user_id,
        mfa_token: token,
        methods: methods_offered(&held),
    })
}

/// The second step of a sign-in: checks the mfa-token, its user and the code or recovery
/// code, then opens the session through `open_session`, which spends both. Counted in the
/// sign-in metrics under the first factor's method.
pub async fn complete_sign_in(
    app: &App,
    request: SecondFactorSignIn,
) -> Result<SecondFactorSignedIn, AuthError> {
    let hash = token_hash(request.mfa_token.expose_secret());
    let now = app.clock.now_unix_seconds();
    let Some(token) = app.store.mfa_token(&hash, now).await? else {
        return Err(AuthError::InvalidMfaToken);
    };
    let method = sign_in_method(&token.first_factor);
    let result = complete_with_token(app, token, request).await;
    app.sign_in_counts.record_result(method, &result);
    result
}

async fn complete_with_token(
    app: &App,
    token: MfaToken,
    request: SecondFactorSignIn,
) -> Result<SecondFactorSignedIn, AuthError> {
    let Some(user) = app.store.user_by_id(token.user_id).await? else {
        return Err(AuthError::InvalidMfaToken);
    };
    let parent = account::parent_of(app, &user).await?;
    // A suspended account hears so (its first step did); then a password change or a
    // suspension since the first step ends the token.
    check_may_sign_in(app, &user, parent.as_ref())?;
    if user.credential_version != token.credential_version {
        return Err(AuthError::InvalidMfaToken);
    }
    let network = request.client.network();
    let throttle_passed = check_throttle(app, &user, &network).await?;
    let presented = &request.presented;
    let normalized_email = user.normalized_email.clone();
    let now = app.clock.now_unix_seconds();
    let Some(proof) = proof_of(app, &user, presented, now).await? else {
        return Err(count_wrong_code(app, &user, &network, Some(&token.hash), presented).await);
    };
    let opened = open_session(
        app,
        SessionOpening {
            user,
            parent,
            long_term_token: token.long_term_token,
            logout_other: token.logout_other,
            client: ClientInfo {
                remote_ip: token.remote_ip,
                user_agent: token.user_agent,
            },
            replacement_password_hash: token.replacement_password_hash,
            second_factor: SecondFactorGate::Completed {
                mfa_token_hash: token.hash,
                proof,
            },
        },
    )
    .await;
    match opened {
        Ok(outcome) => {
            app.throttle
                .record_success(&normalized_email, &network, throttle_passed)
                .await;
            Ok(SecondFactorSignedIn {
                outcome,
                method: presented.method(),
                first_factor: token.first_factor,
            })
        }
        // Spent by a request that ran at the same time: as wrong as any other.
        Err(AuthError::WrongSecondFactor { field }) => {
            record_wrong_second_factor(app, &normalized_email, &network).await?;
            Err(AuthError::WrongSecondFactor { field })
        }
        Err(error) => Err(error),
    }
}

/// The proof a code, recovery code or passkey assertion makes for this user now, checked
/// against what the store holds (the write that spends it checks again); `None` when it is
/// wrong. A code or recovery code that cannot be one at all is a field error, not a guess;
/// so is a passkey challenge that is unknown or expired.
async fn proof_of(
    app: &App,
    user: &User,
    presented: &PresentedSecondFactor,
    now: UnixSeconds,
) -> Result<Option<SecondFactorProof>, AuthError> {
    match presented {
        PresentedSecondFactor::Code(code) => {
            if !totp::looks_like_code(code.expose_secret()) {
                return Err(AuthError::InvalidField {
                    field: "code",
                    message: "must be 6 digits",
                });
            }
            let Some(active) = app.store.active_totp(user.id).await? else {
                return Ok(None);
            };
            Ok(accepted_step(&active, code, now).map(SecondFactorProof::TotpStep))
        }
        PresentedSecondFactor::RecoveryCode(text) => {
            let no_salt = [0; RECOVERY_CODE_SALT_BYTES];
            if recovery_codes::hash_of_presented(text.expose_secret(), &no_salt).is_none() {
                return Err(AuthError::InvalidField {
                    field: "recovery-code",
                    message: "must be a recovery code (xxxxx-xxxxx)",
                });
            }
            let Some(held) = app.store.recovery_codes(user.id).await? else {
                return Ok(None);
            };
            let Some(hash) = recovery_codes::hash_of_presented(text.expose_secret(), &held.salt)
            else {
                return Ok(None);
            };
            let mut matches = false;
            for held_hash in &held.hashes {
                matches |= Secret::new(held_hash.as_slice()) == Secret::new(hash.as_slice());
            }
            Ok(matches.then_some(SecondFactorProof::RecoveryCode(hash)))
        }
        PresentedSecondFactor::Passkey {
            challenge_id,
            credential,
        } => {
            let asserted =
                passkeys::finish_passkey_assertion(app, *challenge_id, credential.clone()).await;
            match asserted {
                Ok((owner, _)) if owner == user.id => Ok(Some(SecondFactorProof::PasskeyAsserted)),
                // Another user's passkey, or an assertion that does not verify: a wrong guess.
                Ok(_) | Err(AuthError::PasskeyRefused(_)) => Ok(None),
                Err(other) => Err(other),
            }
        }
    }
}

/// `POST /auth/passkey/sign-in/start` with an mfa-token: an assertion limited to the
/// passkeys of the user whose sign-in waits (the token is read, not spent).
pub async fn start_passkey_second_factor(
    app: &App,
    mfa_token: &Secret<String>,
    client: &ClientInfo,
) -> Result<StartedPasskeyCeremony, AuthError> {
    let hash = token_hash(mfa_token.expose_secret());
    let Some(token) = app
        .store
        .mfa_token(&hash, app.clock.now_unix_seconds())
        .await?
    else {
        return Err(AuthError::InvalidMfaToken);
    };
    passkeys::start_passkey_assertion_for_user(app, token.user_id, client).await
}

fn accepted_step(active: &ActiveTotp, code: &Secret<String>, now: UnixSeconds) -> Option<u64> {
    totp::matching_step(&active.secret, code, now, Some(active.last_accepted_step))
}

/// A wrong code or recovery code: a failure in the brute-force buckets and, at the second
/// step, against the mfa-token (which dies at `MAX_WRONG_CODES`). Answers the error to send.
async fn count_wrong_code(
    app: &App,
    user: &User,
    network: &str,
    mfa_token_hash: Option<&[u8; 32]>,
    presented: &PresentedSecondFactor,
) -> AuthError {
    // Both counts are tried, whichever fails: a failure to count answers as the store's.
    let in_the_buckets = record_wrong_second_factor(app, &user.normalized_email, network).await;
    if let Some(hash) = mfa_token_hash.copied() {
        let counted = app
            .store
            .record_wrong_second_factor(&hash, mfa_token::MAX_WRONG_CODES)
            .await;
        if let Err(error) = counted {
            return AuthError::from(error);
        }
    }
    if let Err(error) = in_the_buckets {
        return AuthError::from(error);
    }
    AuthError::WrongSecondFactor {
        field: presented.field(),
    }
}

/// Re-authentication before a second factor changes: the account's password again, through
/// the throttled check (whose success forgives no wrong code); or, for an account without a
/// password, a sign-in session made in the last `RECENT_SIGN_IN_SECONDS`.
pub async fn check_reauthentication(
    app: &App,
    identity: &Identity,
    password: Option<Password>,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let user = &identity.user;
    if user.password_hash.is_none() {
        let now = app.clock.now_unix_seconds();
        let session = match identity.session_id {
            Some(session_id) => app.store.session(session_id).await?,
            None => None,
        };
        return match session {
            Some(session) if session.created > now - RECENT_SIGN_IN_SECONDS => Ok(()),
            _ => Err(AuthError::RecentSignInRequired),
        };
    }
    let Some(password) = password else {
        return Err(AuthError::InvalidField {
            field: "password",
            message: "is required",
        });
    };
    let wrong = AuthError::WrongPassword { field: "password" };
    if password.expose_secret().chars().count() > PASSWORD_MAX_CHARACTERS {
        return Err(wrong);
    }
    let (verification, _) = throttled_recheck(
        app,
        &user.normalized_email,
        client,
        password,
        user.password_hash.clone(),
    )
    .await?;
    if verification.matches {
        Ok(())
    } else {
        Err(wrong)
    }
}

/// `POST /auth/mfa/totp`: a new secret, held pending (replacing one already pending) until a
/// code confirms it. Refused while TOTP is on.
pub async fn start_totp_enrolment(
    app: &App,
    identity: &Identity,
    password: Option<Password>,
    client: &ClientInfo,
) -> Result<TotpEnrolment, AuthError> {
    check_reauthentication(app, identity, password, client).await?;
    let secret = totp::generate_secret().map_err(|error| AuthError::Internal(error.to_string()))?;
    let now = app.clock.now_unix_seconds();
    let pending = PendingTotp {
        user_id: identity.user.id,
        secret,
        created: now,
        expires_at: now + PENDING_ENROLMENT_SECONDS,
    };
    let requester = identity.requester(now);
    app.store.start_totp_enrolment(&pending, &requester).await?;
    Ok(enrolment_of(app, &identity.user, &secret))
}

/// The enrolment waiting for its confirming code, as `start_totp_enrolment` answered it
/// (the enrolment page draws it again after a refused code); `None` when none is pending
/// or it expired.
pub async fn pending_totp_enrolment(
    app: &App,
    identity: &Identity,
) -> Result<Option<TotpEnrolment>, AuthError> {
    let now = app.clock.now_unix_seconds();
    let pending = app.store.pending_totp(identity.user.id, now).await?;
    Ok(pending.map(|pending| enrolment_of(app, &identity.user, &pending.secret)))
}

/// A secret as the enrolment answer shows it: base32, and the URI with the issuer.
fn enrolment_of(app: &App, user: &User, secret: &TotpSecret) -> TotpEnrolment {
    let title = app.config.pages.title.trim();
    let issuer = if title.is_empty() {
        PRODUCT_NAME
    } else {
        title
    };
    TotpEnrolment {
        secret: Secret::new(totp::base32_unpadded(secret.expose_secret())),
        otpauth_uri: Secret::new(totp::otpauth_uri(issuer, &user.email, secret)),
    }
}

/// The ways the sign-in waiting on this mfa-token may still be completed (the token is
/// read, not spent); `None` when the token is unknown, spent or expired.
pub async fn pending_sign_in_methods(
    app: &App,
    mfa_token: &Secret<String>,
) -> Result<Option<Vec<SecondFactorMethod>>, AuthError> {
    let hash = token_hash(mfa_token.expose_secret());
    let Some(token) = app
        .store
        .mfa_token(&hash, app.clock.now_unix_seconds())
        .await?
    else {
        return Ok(None);
    };
    let held = summary(app, token.user_id).await?;
    Ok(Some(methods_offered(&held)))
}

/// `POST /auth/mfa/totp/confirm`: a code of the pending secret turns TOTP on (that code's
/// step counts as used) and answers ten new recovery codes, shown this once.
pub async fn confirm_totp_enrolment(
    app: &App,
    identity: &Identity,
    code: Secret<String>,
    client: &ClientInfo,
) -> Result<Vec<Secret<String>>, AuthError> {
    let user = &identity.user;
    if !totp::looks_like_code(code.expose_secret()) {
        return Err(AuthError::InvalidField {
            field: "code",
            message: "must be 6 digits",
        });
    }
    let network = client.network();
    let throttle_passed = check_throttle(app, user, &network).await?;
    let now = app.clock.now_unix_seconds();
    let Some(pending) = app.store.pending_totp(user.id, now).await? else {
        return Err(AuthError::Conflict(
            "no TOTP enrolment is pending; start one with POST /auth/mfa/totp",
        ));
    };
    let Some(step) = totp::matching_step(&pending.secret, &code, now, None) else {
        let presented = PresentedSecondFactor::Code(code);
        return Err(count_wrong_code(app, user, &network, None, &presented).await);
    };
    let (codes, kept) =
        recovery_codes::generate().map_err(|error| AuthError::Internal(error.to_string()))?;
    let requester = identity.requester(now);
    let secret = pending.secret;
    app.store
        .activate_totp(&secret, step, &kept, &requester)
        .await?;
    app.throttle
        .record_success(&user.normalized_email, &network, throttle_passed)
        .await;
    Ok(codes)
}

/// `DELETE /auth/mfa/totp`: with the password (or a recent sign-in) and a current code or a
/// recovery code, turns TOTP off; its recovery codes go with it.
pub async fn disable_totp(
    app: &App,
    identity: &Identity,
    password: Option<Password>,
    presented: PresentedSecondFactor,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let user = &identity.user;
    if let PresentedSecondFactor::Passkey { .. } = presented {
        return Err(AuthError::InvalidField {
            field: "code",
            message: "is required (or recovery-code): TOTP is turned off with one of its own",
        });
    }
    check_reauthentication(app, identity, password, client).await?;
    let network = client.network();
    let throttle_passed = check_throttle(app, user, &network).await?;
    if app.store.active_totp(user.id).await?.is_none() {
        return Err(AuthError::Conflict("TOTP is off"));
    }
    let now = app.clock.now_unix_seconds();
    let Some(proof) = proof_of(app, user, &presented, now).await? else {
        return Err(count_wrong_code(app, user, &network, None, &presented).await);
    };
    let requester = identity.requester(now);
    let disabled = app
        .store
        .disable_totp(proof, &requester)
        .await
        .map_err(AuthError::from);
    if let Err(AuthError::WrongSecondFactor { .. }) = disabled {
        return Err(count_wrong_code(app, user, &network, None, &presented).await);
    }
    disabled?;
    app.throttle
        .record_success(&user.normalized_email, &network, throttle_passed)
        .await;
    Ok(())
}

/// `POST /auth/mfa/recovery-codes`: ten new recovery codes replace every old one.
pub async fn regenerate_recovery_codes(
    app: &App,
    identity: &Identity,
    password: Option<Password>,
    client: &ClientInfo,
) -> Result<Vec<Secret<String>>, AuthError> {
    check_reauthentication(app, identity, password, client).await?;
    let (codes, kept) =
        recovery_codes::generate().map_err(|error| AuthError::Internal(error.to_string()))?;
    let requester = identity.requester(app.clock.now_unix_seconds());
    app.store.replace_recovery_codes(&kept, &requester).await?;
    Ok(codes)
}

/// Whether the account may try a second factor now: the password checks' buckets, and the
/// hourly ceiling of wrong second factors (`[throttle]
/// second_factor_failures_per_account_per_hour`), which binds however the guesses are spread
/// over networks, mfa-tokens and minutes.
async fn check_throttle(
    app: &App,
    user: &User,
    network: &str,
) -> Result<ThrottlePassed, AuthError> {
    let passed = app.throttle.check(&user.normalized_email, network).await?;
    app.second_factor_failure_limiter
        .check(&user.normalized_email)
        .await?;
    Ok(passed)
}

/// A wrong code, recovery code or passkey assertion: in the password checks' buckets and in
/// the account's hourly ceiling of wrong second factors.
async fn record_wrong_second_factor(
    app: &App,
    normalized_email: &str,
    network: &str,
) -> Result<(), StoreError> {
    app.throttle
        .record_failed_attempt(normalized_email, network)
        .await?;
    app.second_factor_failure_limiter
        .record_failure(normalized_email)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_offered_only_beside_totp_and_only_while_some_are_left() {
        let names = |summary: SecondFactorSummary| -> Vec<&'static str> {
            methods_offered(&summary)
                .into_iter()
                .map(SecondFactorMethod::name)
                .collect()
        };
        assert!(names(SecondFactorSummary::default()).is_empty());
        assert_eq!(
            names(SecondFactorSummary {
                totp: true,
                passkeys: 0,
                recovery_codes_left: 3
            }),
            ["totp", "recovery-code"]
        );
        assert_eq!(
            names(SecondFactorSummary {
                totp: true,
                passkeys: 2,
                recovery_codes_left: 0
            }),
            ["totp", "passkey"]
        );
        assert_eq!(
            names(SecondFactorSummary {
                totp: false,
                passkeys: 1,
                recovery_codes_left: 4
            }),
            ["passkey"]
        );
    }
}
