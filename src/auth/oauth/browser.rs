//! Signing in from the browser through a provider (API.md section 11): the authorization
//! code flow with PKCE `S256`. `start` keeps the state server-side (single use, 10 minutes,
//! bound to the browser by the hash of a random cookie value) and answers where to send
//! the browser; `finish` takes the state back, checks its browser, its provider and the
//! `iss` of RFC 9207, exchanges the code, and signs the account in with the same linking,
//! status and second-factor rules as `POST /auth/oauth-sign-in`.

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::auth::oauth::code_exchange::{CodeExchange, Endpoint};
use crate::auth::oauth::{
    OAuthSignInOutcome, SignInRequestParts, resolve, sign_in_resolved, throttled_attempt,
};
use crate::auth::rate_limit::PerKeyLimit;
use crate::auth::{AuthError, ClientInfo};
use crate::config::OAuthProviderKind;
use crate::model::Secret;
use crate::model::oauth_browser::{
    MAX_OPEN_OAUTH_BROWSER_STATES, OAUTH_BROWSER_STATE_LIFETIME_SECONDS, OAuthBrowserState,
    OAuthStateHash,
};

/// Why a browser sign-in cannot go on; each is shown in words on the sign-in page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserSignInProblem {
    /// The provider names no browser sign-in here (no client secret or endpoints).
    NotOffered,
    /// The `state` is missing, unknown, used already, expired, or of another provider.
    UnknownState,
    /// The browser that came back is not the one that started (no or another cookie).
    OtherBrowser,
    /// The `iss` sent back is not the provider's (RFC 9207): a mix-up.
    WrongIssuer,
    /// The provider answered with an `error` (the person declined, or it refused).
    ProviderDeclined,
    /// The token endpoint refused the code (used, expired, or not ours).
    CodeRefused,
}

impl BrowserSignInProblem {
    /// The name logs and the error body's `reason` use.
    pub fn name(self) -> &'static str {
        match self {
            BrowserSignInProblem::NotOffered => "not-offered",
            BrowserSignInProblem::UnknownState => "unknown-state",
            BrowserSignInProblem::OtherBrowser => "other-browser",
            BrowserSignInProblem::WrongIssuer => "wrong-issuer",
            BrowserSignInProblem::ProviderDeclined => "provider-declined",
            BrowserSignInProblem::CodeRefused => "code-refused",
        }
    }
}

/// Sign-ins one client network may start: 30 at once, refilled over a minute. Each start
/// keeps a row for ten minutes in a table capped for everyone
/// (`MAX_OPEN_OAUTH_BROWSER_STATES`), so one network holds at most about 330 of them and
/// cannot lock every other browser out of signing in with a provider.
pub const STARTS_PER_NETWORK: PerKeyLimit = PerKeyLimit {
    requests: 30,
    window_seconds: 60,
};

/// Random bytes in a state, nonce, PKCE verifier and browser-binding value.
const RANDOM_BYTES: usize = 32;

/// A started sign-in: where to send the browser, and the browser-binding value for its
/// cookie (new, or the one the browser already held).
#[derive(Debug)]
pub struct BrowserSignInStart {
    pub authorization_url: String,
    pub browser_binding: Secret<String>,
}

/// The provider's redirect back, as the callback received it.
#[derive(Debug)]
pub struct BrowserCallback {
    pub provider: String,
    pub state: Option<String>,
    pub code: Option<Secret<String>>,
    /// The provider's `error`, when it sent one.
    pub error: Option<String>,
    /// RFC 9207's `iss`, when sent.
    pub issuer: Option<String>,
    /// The browser-binding cookie's value, when the browser sent it.
    pub browser_binding: Option<Secret<String>>,
    pub client: ClientInfo,
    pub redirect_uri: String,
}

/// What a callback came to: the checked `ret-url` its start kept (when the state was
/// found), and the sign-in's outcome.
#[derive(Debug)]
pub struct BrowserSignInFinish {
    pub return_url: Option<String>,
    pub outcome: Result<OAuthSignInOutcome, AuthError>,
}

fn random_text() -> Result<String, AuthError> {
    let mut bytes = [0_u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| AuthError::Internal(format!("no randomness: {error}")))?;
    Ok(Base64UrlUnpadded::encode_string(&bytes))
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Whether a browser-binding cookie value is one `start` could have made.
fn is_well_formed_binding(value: &str) -> bool {
    Base64UrlUnpadded::decode_vec(value).is_ok_and(|bytes| bytes.len() == RANDOM_BYTES)
}

/// `GET .../oauth/{provider}/start`: keeps the state and answers the provider's
/// authorization URL. `return_url` is already checked by the ret-url rule; a well-formed
/// `browser_binding` the browser holds is kept, so that two tabs may sign in at once.
/// Limited per client network (`STARTS_PER_NETWORK`).
pub async fn start(
    app: &App,
    client: &ClientInfo,
    provider_name: &str,
    return_url: Option<String>,
    browser_binding: Option<Secret<String>>,
    redirect_uri: &str,
) -> Result<BrowserSignInStart, AuthError> {
    let provider = app
        .oauth
        .provider(provider_name)
        .filter(|provider| provider.config.offers_browser_sign_in())
        .ok_or(AuthError::OAuthBrowserSignIn(
            BrowserSignInProblem::NotOffered,
        ))?;
    app.oauth_browser_start_limiter
        .take(&client.network())
        .await?;
    let mut authorization_url = app
        .oauth
        .endpoint(provider, Endpoint::Authorization)
        .await?;
    let browser_binding =
        match browser_binding.filter(|binding| is_well_formed_binding(binding.expose_secret())) {
            Some(binding) => binding,
            None => Secret::new(random_text()?),
        };
    let state = random_text()?;
    let nonce = random_text()?;
    let verifier = random_text()?;
    let challenge = Base64UrlUnpadded::encode_string(&sha256(&verifier));
    let config = &provider.config;
    {
        let mut query = authorization_url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", config.client_id.as_deref().unwrap_or_default())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", config.scopes.trim())
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if config.kind == OAuthProviderKind::Oidc {
            query.append_pair("nonce", &nonce);
        }
    }
    let now = app.clock.now_unix_seconds();
    let kept = OAuthBrowserState {
        provider: config.name.clone(),
        browser_binding_hash: sha256(browser_binding.expose_secret()),
        nonce: Secret::new(nonce),
        pkce_verifier: Secret::new(verifier),
        return_url,
        expires_at: now + OAUTH_BROWSER_STATE_LIFETIME_SECONDS,
    };
    let state_hash = OAuthStateHash(sha256(&state));
    app.store
        .insert_oauth_browser_state(state_hash, &kept, MAX_OPEN_OAUTH_BROWSER_STATES, now)
        .await?;
    Ok(BrowserSignInStart {
        authorization_url: authorization_url.to_string(),
        browser_binding,
    })
}

/// `GET .../oauth/{provider}/callback`: finishes the sign-in its state started, throttled
/// per client network like every OAuth sign-in. The state is used up whatever follows.
pub async fn finish(app: &App, callback: BrowserCallback) -> BrowserSignInFinish {
    let kept = match &callback.state {
        Some(state) if !state.is_empty() && state.len() <= 512 => {
            let state_hash = OAuthStateHash(sha256(state));
            app.store
                .take_oauth_browser_state(state_hash)
                .await
                .map_err(AuthError::from)
        }
        _ => Ok(None),
    };
    let return_url = match &kept {
        Ok(Some(kept)) => kept.return_url.clone(),
        _ => None,
    };
    let network = callback.client.network();
    let outcome = throttled_attempt(app, &network, finish_with_state(app, callback, kept)).await;
    BrowserSignInFinish {
        return_url,
        outcome,
    }
}

async fn finish_with_state(
    app: &App,
    callback: BrowserCallback,
    kept: Result<Option<OAuthBrowserState>, AuthError>,
) -> Result<OAuthSignInOutcome, AuthError> {
    let refused = |problem| Err(AuthError::OAuthBrowserSignIn(problem));
    let Some(kept) = kept? else {
        // The provider's refusal is worth telling even when no state came with it.
        if callback.error.is_some() {
            return refused(BrowserSignInProblem::ProviderDeclined);
        }
        return refused(BrowserSignInProblem::UnknownState);
    };
    if kept.provider != callback.provider || kept.expires_at <= app.clock.now_unix_seconds() {
        return refused(BrowserSignInProblem::UnknownState);
    }
    let same_browser = callback.browser_binding.as_ref().is_some_and(|binding| {
        constant_time_eq(&sha256(binding.expose_secret()), &kept.browser_binding_hash)
    });
    if !same_browser {
        return refused(BrowserSignInProblem::OtherBrowser);
    }
    let Some(provider) = app
        .oauth
        .provider(&kept.provider)
        .filter(|provider| provider.config.offers_browser_sign_in())
    else {
        return refused(BrowserSignInProblem::NotOffered);
    };
    if let (Some(sent), Some(issuer)) = (&callback.issuer, &provider.config.issuer)
        && sent != issuer
    {
        return refused(BrowserSignInProblem::WrongIssuer);
    }
    if let Some(error) = &callback.error {
        let error: String = error.chars().take(64).collect();
        tracing::info!(
            provider = provider.config.name,
            error,
            "the provider declined the sign-in"
        );
        return refused(BrowserSignInProblem::ProviderDeclined);
    }
    let Some(code) = callback
        .code
        .filter(|code| !code.expose_secret().is_empty())
    else {
        return refused(BrowserSignInProblem::CodeRefused);
    };
    let account = app
        .oauth
        .account_from_code(
            provider,
            CodeExchange {
                code: code.expose_secret(),
                redirect_uri: &callback.redirect_uri,
                pkce_verifier: &kept.pkce_verifier,
                nonce: &kept.nonce,
            },
            &app.clock,
        )
        .await?;
    let resolution = resolve(app, provider, &account).await?;
    sign_in_resolved(
        app,
        provider,
        account,
        resolution,
        SignInRequestParts {
            // The page's default: a browser session, as a password sign-in without "keep me
            // signed in".
            long_term_token: false,
            logout_other: false,
            client: callback.client,
        },
    )
    .await
}

fn constant_time_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right)
        .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}
