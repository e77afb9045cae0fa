//! Passkeys (API.md section 10): registering, listing and removing them, signing in with one
//! and no password, and the assertion the second-factor step asks for. The ceremonies
//! themselves are `crate::webauthn`'s; here are the rules around them: who may start one,
//! each challenge kept in the store for 5 minutes on the app's clock and finishing one
//! ceremony of its own kind at most, a credential signing in only the user who registered it,
//! and a passwordless sign-in ending exactly as a password one does (`open_session`).

use crate::app::App;
use crate::auth::account::{is_refused_in_a_name, parent_of};
use crate::auth::password::Password;
use crate::auth::rate_limit::{LimitRefusal, PerKeyLimit};
use crate::auth::second_factor::{SecondFactorGate, check_reauthentication};
use crate::auth::sign_in_counts::{AttemptOutcome, SignInMethod};
use crate::auth::{AuthError, ClientInfo, Identity, SessionOpening, SignInOutcome, open_session};
use crate::model::UserId;
use crate::model::passkey::{
    MAX_PASSKEYS_PER_USER, PASSKEY_CHALLENGE_LIFETIME_SECONDS, PASSKEY_NAME_MAX_CHARACTERS,
    Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyChallengeProblem,
    PasskeyId,
};
use crate::webauthn::{CeremonyError, ClientAssertion, RelyingParty, StartedCeremony};

/// Ceremonies one client network may start: 30 at once, refilled over a minute. Starting one
/// costs the server a row for 5 minutes, so a network holds at most about 150 at a time.
pub const CEREMONIES_PER_NETWORK: PerKeyLimit = PerKeyLimit {
    requests: 30,
    window_seconds: 60,
};

/// The most challenges kept at once, across all networks (a few MiB at most): past it, and
/// once the expired ones are purged, a new ceremony waits (503) until some finish or expire.
pub const MAX_OPEN_CHALLENGES: u64 = 10_000;

/// A started ceremony as the client gets it.
#[derive(Debug)]
pub struct StartedPasskeyCeremony {
    pub challenge_id: PasskeyChallengeId,
    /// The browser's JSON form of the creation or request options.
    pub options: serde_json::Value,
}

/// `POST /auth/passkey/register/finish`.
#[derive(Debug)]
pub struct PasskeyRegistration {
    pub challenge_id: PasskeyChallengeId,
    pub name: String,
    /// The JSON form of the `PublicKeyCredential` from `navigator.credentials.create`.
    pub credential: serde_json::Value,
}

/// `POST /auth/passkey/sign-in/finish`.
#[derive(Debug)]
pub struct PasskeySignInRequest {
    pub challenge_id: PasskeyChallengeId,
    /// The JSON form of the `PublicKeyCredential` from `navigator.credentials.get`.
    pub credential: serde_json::Value,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub client: ClientInfo,
}

/// The relying party, or the 409 that says why passkeys are off.
pub fn relying_party(app: &App) -> Result<&RelyingParty, AuthError> {
    app.passkeys
        .as_ref()
        .map_err(|unavailable| AuthError::PasskeysUnavailable(unavailable.reason()))
}

/// `POST /auth/passkey/register/start`: re-checks the password (an account without one
/// needs a recent sign-in: `check_reauthentication`), then starts a registration
/// that excludes the user's existing credentials.
pub async fn start_passkey_registration(
    app: &App,
    identity: &Identity,
    password: Option<Password>,
    client: &ClientInfo,
) -> Result<StartedPasskeyCeremony, AuthError> {
    let relying_party = relying_party(app)?;
    take_ceremony_token(app, client).await?;
    check_reauthentication(app, identity, password, client).await?;
    let user = &identity.user;
    let passkeys = app.store.passkeys_of_user(user.id).await?;
    if passkeys.len() >= MAX_PASSKEYS_PER_USER {
        return Err(AuthError::Conflict(
            "the user holds the most passkeys allowed; remove one first",
        ));
    }
    // One handle per user while any passkey exists, so every authenticator files the user's
    // credentials under the same account; a random one (never the user id) for the first.
    let user_handle = passkeys.first().map_or_else(
        || uuid::Uuid::new_v4().as_u128(),
        |passkey| passkey.user_handle,
    );
    let display_name = match (&user.first_name, &user.last_name) {
        (Some(first), Some(last)) => format!("{first} {last}"),
        (Some(name), None) | (None, Some(name)) => name.clone(),
        (None, None) => user.email.clone(),
    };
    let started = relying_party
        .start_registration(
            user_handle,
            &user.email,
            &display_name,
            passkeys
                .into_iter()
                .map(|passkey| passkey.credential_id)
                .collect(),
        )
        .map_err(ceremony_failure)?;
    keep_challenge(
        app,
        started,
        PasskeyChallengeKind::Registration,
        Some(user.id),
        Some(user_handle),
    )
    .await
}

/// `POST /auth/passkey/register/finish`: verifies the new credential against its challenge
/// (the caller's own registration) and stores it, all or nothing. Any refusal after the
/// challenge was found uses it up.
pub async fn finish_passkey_registration(
    app: &App,
    identity: &Identity,
    registration: PasskeyRegistration,
) -> Result<Passkey, AuthError> {
    let relying_party = relying_party(app)?;
    let name = checked_passkey_name(&registration.name)?;
    let now = app.clock.now_unix_seconds();
    let challenge = open_challenge(
        app,
        registration.challenge_id,
        PasskeyChallengeKind::Registration,
        Some(identity.user.id),
    )
    .await?;
    let user_handle = challenge
        .user_handle
        .ok_or_else(|| AuthError::Internal("a registration challenge without a handle".into()))?;
    let registered =
        match relying_party.finish_registration(&challenge.state, registration.credential) {
            Ok(registered) => registered,
            Err(error) => {
                discard_challenge(app, challenge.id).await?;
                return Err(match error {
                    CeremonyError::Malformed(_) => malformed_credential(),
                    CeremonyError::Refused(reason) => AuthError::PasskeyNotVerified(reason),
                    CeremonyError::Internal(reason) => AuthError::Internal(reason),
                });
            }
        };
    let passkey = Passkey {
        id: PasskeyId::new_random(),
        user_id: identity.user.id,
        credential_id: registered.credential_id,
        user_handle,
        name,
        created: now,
        last_used: None,
        credential: registered.credential,
    };
    let requester = identity.requester(now);
    let stored = passkey.clone();
    app.store
        .finish_passkey_registration(challenge.id, &stored, MAX_PASSKEYS_PER_USER, &requester)
        .await?;
    Ok(passkey)
}

/// `GET /auth/passkey`: the caller's passkeys, oldest first.
pub async fn list_passkeys(app: &App, identity: &Identity) -> Result<Vec<Passkey>, AuthError> {
    relying_party(app)?;
    Ok(app.store.passkeys_of_user(identity.user.id).await?)
}

/// `DELETE /auth/passkey/{passkey-id}`: removes one of the caller's passkeys; anyone
/// else's reads as not found.
pub async fn remove_passkey(
    app: &App,
    identity: &Identity,
    id: PasskeyId,
    password: Option<Password>,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    relying_party(app)?;
    // Removing a passkey may switch the second factor off: a session alone (perhaps stolen)
    // is not enough, as it is not for turning TOTP off.
    check_reauthentication(app, identity, password, client).await?;
    let user_id = identity.user.id;
    let requester = identity.requester(app.clock.now_unix_seconds());
    let removed = app
        .store
        .delete_passkey_of_user(user_id, id, &requester)
        .await?;
    if removed {
        Ok(())
    } else {
        Err(AuthError::NotFound)
    }
}

/// `POST /auth/passkey/sign-in/start`: a passwordless sign-in, for whichever discoverable
/// credential of this relying party the browser offers.
pub async fn start_passkey_sign_in(
    app: &App,
    client: &ClientInfo,
) -> Result<StartedPasskeyCeremony, AuthError> {
    let relying_party = relying_party(app)?;
    take_ceremony_token(app, client).await?;
    let started = relying_party
        .start_discoverable_sign_in()
        .map_err(ceremony_failure)?;
    keep_challenge(
        app,
        started,
        PasskeyChallengeKind::DiscoverableSignIn,
        None,
        None,
    )
    .await
}

/// `POST /auth/passkey/sign-in/finish`: verifies the assertion and signs its passkey's user
/// in, answering as a password sign-in does. A client network whose bucket is empty gets
/// `TooManyAttempts` before any work; every refusal the client caused drains it.
pub async fn sign_in_with_passkey(
    app: &App,
    request: PasskeySignInRequest,
) -> Result<SignInOutcome, AuthError> {
    let relying_party = relying_party(app)?;
    let network = request.client.network();
    app.throttle
        .check_network(&network)
        .await
        .map_err(|refusal| {
            if let LimitRefusal::TooSoon(_) = refusal {
                app.sign_in_counts
                    .record(SignInMethod::Passkey, AttemptOutcome::Throttled);
            }
            AuthError::from(refusal)
        })?;
    let outcome = verify_and_open_session(app, relying_party, request).await;
    app.sign_in_counts
        .record_result(SignInMethod::Passkey, &outcome);
    if outcome.as_ref().is_err_and(is_failed_attempt) {
        app.throttle.record_network_failure(&network).await?;
    }
    outcome
}

/// For the second factor after a password: starts an assertion limited to this user's
/// passkeys (`allowCredentials`), with user verification. `Conflict` when the user has
/// none.
pub async fn start_passkey_assertion_for_user(
    app: &App,
    user_id: UserId,
    client: &ClientInfo,
) -> Result<StartedPasskeyCeremony, AuthError> {
    let relying_party = relying_party(app)?;
    take_ceremony_token(app, client).await?;
    let credentials: Vec<Vec<u8>> = app
        .store
        .passkeys_of_user(user_id)
        .await?
        .into_iter()
        .map(|passkey| passkey.credential)
        .collect();
    if credentials.is_empty() {
        return Err(AuthError::Conflict("the account has no passkey"));
    }
    let started = relying_party
        .start_user_assertion(&credentials)
        .map_err(ceremony_failure)?;
    keep_challenge(
        app,
        started,
        PasskeyChallengeKind::UserAssertion,
        Some(user_id),
        None,
    )
    .await
}

/// Finishes `start_passkey_assertion_for_user`'s ceremony: the challenge taken, the
/// assertion verified against the passkey it names (which must be the challenge's user's)
/// and the passkey's use recorded, all or nothing. Answers whose passkey it was; the caller
/// checks that this is the user it asked for, and counts a refusal in its buckets.
pub async fn finish_passkey_assertion(
    app: &App,
    challenge_id: PasskeyChallengeId,
    credential: serde_json::Value,
) -> Result<(UserId, PasskeyId), AuthError> {
    let relying_party = relying_party(app)?;
    let passkey = verify_assertion(
        app,
        relying_party,
        challenge_id,
        PasskeyChallengeKind::UserAssertion,
        credential,
    )
    .await?;
    Ok((passkey.user_id, passkey.id))
}

/// The one rule for a passkey's name: trimmed, 1 to 100 characters, none of the characters
/// a person's name may not hold either. Two passkeys may share a name.
pub fn checked_passkey_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    let length = name.chars().count();
    if !(1..=PASSKEY_NAME_MAX_CHARACTERS).contains(&length)
        || name.chars().any(is_refused_in_a_name)
    {
        return Err(AuthError::InvalidField {
            field: "name",
            message: "must be 1 to 100 characters, without control, line-breaking or text-direction characters",
        });
    }
    Ok(name.to_owned())
}

async fn verify_and_open_session(
    app: &App,
    relying_party: &RelyingParty,
    request: PasskeySignInRequest,
) -> Result<SignInOutcome, AuthError> {
    let passkey = verify_assertion(
        app,
        relying_party,
        request.challenge_id,
        PasskeyChallengeKind::DiscoverableSignIn,
        request.credential,
    )
    .await?;
    // The user is read after the assertion verified, so its status and credential version
    // are the ones the session commits against (`open_session` checks both again).
    let user = app
        .store
        .user_by_id(passkey.user_id)
        .await?
        .ok_or_else(|| AuthError::PasskeyRefused("the passkey's user is gone".into()))?;
    let parent = parent_of(app, &user).await?;
    open_session(
        app,
        SessionOpening {
            user,
            parent,
            long_term_token: request.long_term_token,
            logout_other: request.logout_other,
            client: request.client,
            replacement_password_hash: None,
            second_factor: SecondFactorGate::PasskeyWithUserVerification,
        },
    )
    .await
    .map_err(|error| match error {
        // A suspension or password change committed while signing in.
        AuthError::InvalidCredentials => {
            AuthError::PasskeyRefused("the account changed while signing in".into())
        }
        other => other,
    })
}

/// Verifies an assertion for a challenge of `kind`, then takes the challenge and records the
/// passkey's use in one transaction; answers the passkey. A refusal after the challenge was
/// found uses it up.
async fn verify_assertion(
    app: &App,
    relying_party: &RelyingParty,
    challenge_id: PasskeyChallengeId,
    kind: PasskeyChallengeKind,
    credential: serde_json::Value,
) -> Result<Passkey, AuthError> {
    let challenge = open_challenge(app, challenge_id, kind, None).await?;
    let (passkey, updated_credential) =
        match check_assertion(app, relying_party, &challenge, credential).await {
            Ok(verified) => verified,
            Err(error) => {
                discard_challenge(app, challenge.id).await?;
                return Err(error);
            }
        };
    let now = app.clock.now_unix_seconds();
    Ok(app
        .store
        .finish_passkey_assertion(challenge_id, kind, passkey.id, updated_credential, now)
        .await?)
}

/// The checks of an assertion that read but do not write: the passkey its credential id
/// names, that passkey's user against the ceremony's, and the signature and flags. Answers
/// the passkey and its credential as the ceremony updated it (if it did).
async fn check_assertion(
    app: &App,
    relying_party: &RelyingParty,
    challenge: &PasskeyChallenge,
    credential: serde_json::Value,
) -> Result<(Passkey, Option<Vec<u8>>), AuthError> {
    let assertion = ClientAssertion::parse(credential).map_err(|_| malformed_credential())?;
    let passkey = app
        .store
        .passkey_by_credential_id(assertion.credential_id())
        .await?
        .ok_or_else(|| AuthError::PasskeyRefused("no passkey has this credential id".into()))?;
    let handle_matches = assertion
        .user_handle()
        .is_none_or(|handle| handle == passkey.user_handle);
    let verified = match challenge.kind {
        PasskeyChallengeKind::DiscoverableSignIn => {
            // The authenticator must say whose credential it is, and be right.
            if assertion.user_handle().is_none() || !handle_matches {
                return Err(AuthError::PasskeyRefused(
                    "the user handle is not the credential's".into(),
                ));
            }
            relying_party.finish_discoverable_sign_in(
                &challenge.state,
                &assertion,
                &passkey.credential,
            )
        }
        PasskeyChallengeKind::UserAssertion => {
            if challenge.user_id != Some(passkey.user_id) || !handle_matches {
                return Err(AuthError::PasskeyRefused(
                    "the credential is another user's".into(),
                ));
            }
            relying_party.finish_user_assertion(&challenge.state, &assertion, &passkey.credential)
        }
        PasskeyChallengeKind::Registration => {
            return Err(AuthError::PasskeyChallenge(
                PasskeyChallengeProblem::Unknown,
            ));
        }
    }
    .map_err(|error| match error {
        CeremonyError::Malformed(_) => malformed_credential(),
        CeremonyError::Refused(reason) => AuthError::PasskeyRefused(reason),
        CeremonyError::Internal(reason) => AuthError::Internal(reason),
    })?;
    Ok((passkey, verified.updated_credential))
}

/// The kept challenge a finish names, if it is of `kind` (and, with `user_id`, that user's):
/// else `Unknown`, and the challenge is left alone (it is not this caller's to use up). An
/// expired one is discarded and refused as `Expired`.
async fn open_challenge(
    app: &App,
    id: PasskeyChallengeId,
    kind: PasskeyChallengeKind,
    user_id: Option<UserId>,
) -> Result<PasskeyChallenge, AuthError> {
    let unknown = || AuthError::PasskeyChallenge(PasskeyChallengeProblem::Unknown);
    let challenge = app.store.passkey_challenge(id).await?.ok_or_else(unknown)?;
    if challenge.kind != kind || user_id.is_some_and(|user_id| challenge.user_id != Some(user_id)) {
        return Err(unknown());
    }
    if challenge.expires_at <= app.clock.now_unix_seconds() {
        discard_challenge(app, id).await?;
        return Err(AuthError::PasskeyChallenge(
            PasskeyChallengeProblem::Expired,
        ));
    }
    Ok(challenge)
}

async fn discard_challenge(app: &App, id: PasskeyChallengeId) -> Result<(), AuthError> {
    app.store.discard_passkey_challenge(id).await?;
    Ok(())
}

/// Keeps a started ceremony for `PASSKEY_CHALLENGE_LIFETIME_SECONDS` and answers it.
async fn keep_challenge(
    app: &App,
    started: StartedCeremony,
    kind: PasskeyChallengeKind,
    user_id: Option<UserId>,
    user_handle: Option<u128>,
) -> Result<StartedPasskeyCeremony, AuthError> {
    let now = app.clock.now_unix_seconds();
    let challenge = PasskeyChallenge {
        id: PasskeyChallengeId::new_random(),
        kind,
        user_id,
        user_handle,
        expires_at: now + PASSKEY_CHALLENGE_LIFETIME_SECONDS,
        state: started.state,
    };
    let challenge_id = challenge.id;
    app.store
        .insert_passkey_challenge(&challenge, MAX_OPEN_CHALLENGES, now)
        .await?;
    Ok(StartedPasskeyCeremony {
        challenge_id,
        options: started.options,
    })
}

/// Takes a token from the client network's bucket of started ceremonies.
async fn take_ceremony_token(app: &App, client: &ClientInfo) -> Result<(), AuthError> {
    app.passkey_ceremony_limiter
        .take(&client.network())
        .await
        .map_err(AuthError::from)
}

fn malformed_credential() -> AuthError {
    AuthError::InvalidField {
        field: "credential",
        message: "is not a WebAuthn credential in its JSON form",
    }
}

/// A ceremony that could not even start: the library or a kept credential failed.
fn ceremony_failure(error: CeremonyError) -> AuthError {
    match error {
        CeremonyError::Malformed(reason)
        | CeremonyError::Refused(reason)
        | CeremonyError::Internal(reason) => AuthError::Internal(reason),
    }
}

/// Whether a failed passwordless sign-in counts against its network: every refusal the
/// client caused, not the server's trouble.
fn is_failed_attempt(error: &AuthError) -> bool {
    !matches!(
        error,
        AuthError::Overloaded
            | AuthError::TooManyAttempts(_)
            | AuthError::PasskeysUnavailable(_)
            | AuthError::Store(_)
            | AuthError::Internal(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passkey_name_is_trimmed_and_holds_no_control_characters() {
        assert_eq!(checked_passkey_name("  Laptop  ").unwrap(), "Laptop");
        assert_eq!(
            checked_passkey_name(&"é".repeat(100)).unwrap(),
            "é".repeat(100)
        );
        for refused in [
            "",
            "   ",
            "a\u{7}b",
            "line\nbreak",
            "\u{202E}evil",
            &"x".repeat(101),
        ] {
            assert!(
                matches!(
                    checked_passkey_name(refused),
                    Err(AuthError::InvalidField { field: "name", .. })
                ),
                "{refused:?}"
            );
        }
    }
}
