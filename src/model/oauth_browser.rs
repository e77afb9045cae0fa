//! A started browser sign-in with an OAuth provider (API.md section 11), as the store keeps
//! it between the redirect to the provider and the provider's redirect back: found by the
//! SHA-256 of its `state`, used once, and bound to the browser that started it.

use crate::model::{Secret, UnixSeconds};

/// How long the provider's answer may take to come back (the person signs in there).
pub const OAUTH_BROWSER_STATE_LIFETIME_SECONDS: i64 = 600;

/// Started sign-ins the store keeps at most: a flood of starts cannot grow the file.
pub const MAX_OPEN_OAUTH_BROWSER_STATES: u64 = 10_000;

/// The SHA-256 of a browser sign-in's `state`: the store's key for it. The state itself
/// travels in URLs and is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OAuthStateHash(pub [u8; 32]);

/// What the callback needs to finish the sign-in the start began.
#[derive(Clone, Debug)]
pub struct OAuthBrowserState {
    /// The provider the sign-in was started with: the callback must be that provider's.
    pub provider: String,
    /// The SHA-256 of the browser-binding cookie's value set by the start.
    pub browser_binding_hash: [u8; 32],
    /// The `nonce` the ID token must carry.
    pub nonce: Secret<String>,
    /// The PKCE `code_verifier` sent with the code.
    pub pkce_verifier: Secret<String>,
    /// The checked `ret-url`, where the browser goes once signed in.
    pub return_url: Option<String>,
    pub expires_at: UnixSeconds,
}
