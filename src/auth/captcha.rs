//! The captcha check: the `X-Recaptcha-Token` is sent to the provider's siteverify endpoint
//! (reCAPTCHA, hCaptcha and Turnstile share the protocol: a form with `secret`, `response`
//! and `remoteip`, answered by JSON with `success`). A failed check refuses; a verifier that
//! cannot be reached or answers nonsense is unavailable, never a pass. The call goes through
//! the app's one HTTP client, within its own timeout.

use std::time::Duration;

use crate::app::App;
use crate::auth::AuthError;
use crate::config::CaptchaProvider;

const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(app: &App, token: &str, remote_ip: &str) -> Result<(), AuthError> {
    let config = &app.config.captcha;
    if config.provider == CaptchaProvider::None {
        return Ok(());
    }
    let secret = config
        .secret
        .as_ref()
        .map(|secret| secret.expose_secret().as_str());
    let (Some(url), Some(secret)) = (config.effective_verify_url(), secret) else {
        return Err(AuthError::CaptchaUnavailable);
    };
    let response = app
        .http_client
        .post(url)
        .timeout(VERIFY_TIMEOUT)
        .form(&[
            ("secret", secret),
            ("response", token),
            ("remoteip", remote_ip),
        ])
        .send()
        .await
        .map_err(|error| {
            tracing::warn!(error = %error.without_url(), "captcha verifier unreachable");
            AuthError::CaptchaUnavailable
        })?;
    if !response.status().is_success() {
        tracing::warn!(status = %response.status(), "captcha verifier refused the request");
        return Err(AuthError::CaptchaUnavailable);
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| AuthError::CaptchaUnavailable)?;
    let answer: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| AuthError::CaptchaUnavailable)?;
    match answer.get("success").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => Err(AuthError::CaptchaRefused),
        None => Err(AuthError::CaptchaUnavailable),
    }
}
