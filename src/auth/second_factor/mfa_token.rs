//! The mfa-token: what the first step of a sign-in answers when a second factor is due, and
//! what the second step presents. 32 random bytes as unpadded base64url; the store keeps its
//! SHA-256 with what the session will need, for 5 minutes, and forgets it at its first use
//! or its fifth wrong code.

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::auth::{AuthError, ClientInfo, token_hash};
use crate::model::second_factor::{FirstFactor, MfaToken};
use crate::model::{PasswordHashString, Secret, UnixSeconds, User};

/// How long the second step may take.
pub const LIFETIME_SECONDS: UnixSeconds = 5 * 60;
/// Wrong codes that end a token, whatever the brute-force buckets still allow.
pub const MAX_WRONG_CODES: u32 = 5;

/// What the first step knew, kept for the second.
#[derive(Debug)]
pub struct HalfDoneSignIn<'a> {
    pub user: &'a User,
    pub first_factor: FirstFactor,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub client: &'a ClientInfo,
    pub replacement_password_hash: Option<PasswordHashString>,
}

/// A fresh token and its stored form.
pub fn issue(
    sign_in: HalfDoneSignIn<'_>,
    now: UnixSeconds,
) -> Result<(Secret<String>, MfaToken), AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| AuthError::Internal(error.to_string()))?;
    let token = Base64UrlUnpadded::encode_string(&bytes);
    let stored = MfaToken {
        hash: token_hash(&token),
        user_id: sign_in.user.id,
        credential_version: sign_in.user.credential_version,
        first_factor: sign_in.first_factor,
        long_term_token: sign_in.long_term_token,
        logout_other: sign_in.logout_other,
        remote_ip: sign_in.client.remote_ip.clone(),
        // As much as the session will keep (`new_session`).
        user_agent: sign_in.client.user_agent.chars().take(512).collect(),
        replacement_password_hash: sign_in.replacement_password_hash,
        created: now,
        expires_at: now.saturating_add(LIFETIME_SECONDS),
        wrong_codes: 0,
    };
    Ok((Secret::new(token), stored))
}
