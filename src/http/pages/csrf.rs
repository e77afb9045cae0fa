//! CSRF for the pages: a random cookie binds the browser, and every form carries an HMAC of
//! that cookie (and of the signed-in session, when there is one) under a key that lives
//! only in this process's memory. Also the pages' origin rule.
//!
//! The cookie never has a `Domain` (whatever `[session] cookie_domain` says), so a sibling
//! subdomain cannot read it; it is `__Host-` when the public URL is https, so one cannot
//! plant it either. On plain http a planted cookie gives an attacker a token for their own
//! cookie only; the session in the HMAC keeps it from working for a signed-in visitor,
//! and the origin rule refuses the cross-site post that would use it.

use hmac::{Hmac, KeyInit, Mac};
use hyper::header::{HeaderValue, ORIGIN, REFERER};
use hyper::http::request::Parts;
use sha2::Sha256;

use crate::auth::Identity;
use crate::http::Api;
use crate::http::credential::{claimed_origin, cookie_value};
use crate::http::error::ApiError;
use crate::model::Secret;

/// The form field that carries the token.
pub const FORM_FIELD: &str = "csrf-token";

/// The random bytes in the browser's cookie, as lowercase hex.
const COOKIE_BYTES: usize = 32;

/// What the HMAC covers before the cookie, so that this key signs nothing else.
const PURPOSE: &[u8] = b"latchkey page form v1\0";

/// The process's CSRF key: random at every start, so a restart expires the forms open in
/// browsers (they are sent again with a fresh token) and nothing is stored.
#[derive(Debug)]
pub struct CsrfKey(Secret<[u8; 32]>);

impl CsrfKey {
    pub fn generate() -> Result<CsrfKey, getrandom::Error> {
        let mut key = [0_u8; 32];
        getrandom::fill(&mut key)?;
        Ok(CsrfKey(Secret::new(key)))
    }

    fn mac(&self, cookie: &str, identity: Option<&Identity>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable_key_length());
        mac.update(PURPOSE);
        mac.update(cookie.as_bytes());
        mac.update(b"\0");
        if let Some(session_id) = identity.and_then(|identity| identity.session_id) {
            mac.update(session_id.to_string().as_bytes());
        }
        mac
    }
}

/// HMAC takes a key of any length, so `new_from_slice` cannot fail; this keeps clippy's
/// no-panic rule without an `expect`.
fn unreachable_key_length() -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new(&Default::default())
}

/// The cookie's name: `__Host-` when it can be (the prefix needs `Secure`, so https).
pub fn cookie_name(api: &Api) -> &'static str {
    if api.public_origin.is_https() {
        "__Host-latchkey-csrf"
    } else {
        "latchkey-csrf"
    }
}

/// This browser's CSRF cookie: the one it sent, or a new one to set with the answer.
#[derive(Debug)]
pub struct BrowserBinding {
    cookie: Secret<String>,
    is_new: bool,
}

impl BrowserBinding {
    /// The cookie the request carries, if well formed; else a new one. Two such cookies
    /// are ambiguous (400).
    pub fn read_or_start(api: &Api, parts: &Parts) -> Result<BrowserBinding, ApiError> {
        if let Some(cookie) = sent_cookie(api, parts)? {
            return Ok(BrowserBinding {
                cookie: Secret::new(cookie),
                is_new: false,
            });
        }
        let mut bytes = [0_u8; COOKIE_BYTES];
        getrandom::fill(&mut bytes).map_err(|error| {
            ApiError::Internal(format!("no randomness for a CSRF cookie: {error}"))
        })?;
        Ok(BrowserBinding {
            cookie: Secret::new(base16ct::lower::encode_string(&bytes)),
            is_new: true,
        })
    }

    /// The token a form rendered for this browser (and this signed-in session) carries.
    pub fn form_token(&self, key: &CsrfKey, identity: Option<&Identity>) -> String {
        let tag = key
            .mac(self.cookie.expose_secret(), identity)
            .finalize()
            .into_bytes();
        base16ct::lower::encode_string(&tag)
    }

    /// The `Set-Cookie` value to send when the cookie is new. No `Max-Age`: it lasts as
    /// long as the browser's session. No `Domain`: it stays on this host.
    pub fn set_cookie(&self, api: &Api) -> Option<HeaderValue> {
        if !self.is_new {
            return None;
        }
        let secure = if api.public_origin.is_https() {
            "; Secure"
        } else {
            ""
        };
        let text = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            cookie_name(api),
            self.cookie.expose_secret()
        );
        HeaderValue::from_str(&text).ok()
    }
}

/// The well-formed CSRF cookie the request carries.
fn sent_cookie(api: &Api, parts: &Parts) -> Result<Option<String>, ApiError> {
    Ok(cookie_value(parts, cookie_name(api))?.filter(|value| {
        value.len() == COOKIE_BYTES * 2
            && value
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    }))
}

/// Checks a page POST's token against the browser's cookie and the signed-in session, in
/// constant time. No cookie, no token or another token: `FormTokenInvalid`.
pub fn check_form_token(
    api: &Api,
    key: &CsrfKey,
    parts: &Parts,
    token: Option<&str>,
    identity: Option<&Identity>,
) -> Result<(), ApiError> {
    let cookie = sent_cookie(api, parts)?.ok_or(ApiError::FormTokenInvalid)?;
    let token = token.ok_or(ApiError::FormTokenInvalid)?;
    let tag = base16ct::lower::decode_vec(token).map_err(|_| ApiError::FormTokenInvalid)?;
    key.mac(&cookie, identity)
        .verify_slice(&tag)
        .map_err(|_| ApiError::FormTokenInvalid)
}

/// The origin rule of API.md section 1, for every page POST whatever its credential: the
/// `Origin` (failing that, `Referer`) must be the public URL's or an allowed return origin.
/// The pages send `Referrer-Policy: no-referrer`, under which a browser posts their forms
/// with `Origin: null` and no `Referer`; for such a post the browser's own
/// `Sec-Fetch-Site: same-origin` (a header no page can set) is the proof instead.
pub fn check_page_origin(api: &Api, parts: &Parts) -> Result<(), ApiError> {
    let named = |name| {
        parts
            .headers
            .get(name)
            .filter(|value: &&HeaderValue| value.as_bytes() != b"null")
    };
    let allowed = &api.app.config.auth.allowed_return_origins;
    if let Some(value) = named(ORIGIN).or_else(|| named(REFERER)) {
        return match claimed_origin(value) {
            Some(origin) if origin == api.public_origin || allowed.contains(&origin) => Ok(()),
            _ => Err(ApiError::CrossSiteRequest),
        };
    }
    match parts.headers.get("sec-fetch-site") {
        Some(value) if value.as_bytes() == b"same-origin" => Ok(()),
        _ => Err(ApiError::CrossSiteRequest),
    }
}
