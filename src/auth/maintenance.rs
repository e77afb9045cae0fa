//! The maintenance loop that runs beside the server: every `[session]
//! purge_interval_seconds` it keeps the signing keys current (promotes, drops, rotates) and
//! purges expired sessions, API tokens, emailed links, mfa-tokens, unconfirmed TOTP
//! enrolments and passkey challenges, and, on a store whose rate-limit buckets are shared
//! (PostgreSQL), the buckets that hold nothing back; hourly it also purges sign-ups never
//! proved. Each step logs its own outcome and a failure never stops the loop. Of many nodes
//! on one database, one at a time runs a pass (`Store::maintenance_turn`).

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::auth::{api_tokens, rate_limit, signup};

/// Rows deleted per purge transaction: small enough that a sign-in never waits long for the
/// write lock behind a purge.
pub const PURGE_BATCH_ROWS: usize = 1_000;

/// How often the maintenance loop looks for sign-ups to purge: their lifetime is counted in
/// days, and finding them reads every user.
const UNPROVED_SIGN_UP_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a used or expired emailed token is kept, so a late click is told "expired".
const SPENT_EMAIL_TOKEN_RETENTION_SECONDS: i64 = 24 * 3600;

/// Now and then, until the task is aborted: purges the sign-ups never proved (hourly), then
/// promotes, drops and rotates the signing keys, then purges expired sessions, API tokens,
/// emailed tokens, mfa-tokens and TOTP enrolments.
pub async fn purge_expired_records_and_rotate_keys_forever(app: Arc<App>) {
    let interval = Duration::from_secs(app.config.session.purge_interval_seconds);
    // On the app's clock, like every "now" of these purges: the sleep alone is real time.
    let mut last_sign_up_purge: Option<Duration> = None;
    loop {
        tokio::time::sleep(interval).await;
        // One node at a time: a node that finds another node's pass running skips its own,
        // which would find nothing left to do.
        let turn = match app.store.maintenance_turn().await {
            Ok(Some(turn)) => turn,
            Ok(None) => {
                tracing::debug!("another node is running the maintenance pass");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot take the maintenance lock");
                continue;
            }
        };
        let now = app.clock.since_start();
        if last_sign_up_purge
            .is_none_or(|last| now.saturating_sub(last) >= UNPROVED_SIGN_UP_PURGE_INTERVAL)
        {
            last_sign_up_purge = Some(now);
            purge_unproved_sign_ups(&app).await;
        }
        promote_drop_and_rotate_signing_keys(&app).await;
        purge_expired_sessions_api_tokens_and_email_tokens(&app).await;
        turn.end().await;
    }
}

/// Deletes the sign-ups never proved within `[signup] pending_lifetime_days`.
async fn purge_unproved_sign_ups(app: &App) {
    match signup::purge_unproved_sign_ups(app, app.clock.now_unix_seconds()).await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "purged sign-ups never verified"),
        Err(error) => tracing::warn!(%error, "sign-up purge failed"),
    }
}

/// `App::maintain_signing_keys`, logging what it dropped or why it failed.
async fn promote_drop_and_rotate_signing_keys(app: &Arc<App>) {
    match app.maintain_signing_keys().await {
        Ok(dropped) if !dropped.is_empty() => {
            tracing::info!(?dropped, "dropped retired signing keys")
        }
        Err(error) => tracing::warn!(%error, "signing-key maintenance failed"),
        Ok(_) => {}
    }
}

/// Deletes expired sessions, API tokens expired more than
/// `api_tokens::EXPIRED_TOKEN_RETENTION_SECONDS` ago, spent emailed tokens, expired
/// mfa-tokens and TOTP enrolments, expired passkey challenges and started browser OAuth
/// sign-ins, and shared rate-limit buckets that hold nothing back (or, past
/// `rate_limit::MAX_ENTRIES` for a limiter, those that hold back least), a batch of each per
/// transaction, until a batch comes back short.
async fn purge_expired_sessions_api_tokens_and_email_tokens(app: &App) {
    loop {
        let now = app.clock.now_unix_seconds();
        let store = &app.store;
        let purged: Result<usize, crate::store::StoreError> = async {
            let sessions = store.purge_expired_sessions(now, PURGE_BATCH_ROWS).await?;
            let tokens = store
                .purge_api_tokens_expired_before(
                    now - api_tokens::EXPIRED_TOKEN_RETENTION_SECONDS,
                    PURGE_BATCH_ROWS,
                )
                .await?;
            let email_tokens = store
                .purge_email_tokens_expired_before(
                    now - SPENT_EMAIL_TOKEN_RETENTION_SECONDS,
                    PURGE_BATCH_ROWS,
                )
                .await?;
            let second_factor_records = store
                .purge_expired_second_factor_records(now, PURGE_BATCH_ROWS)
                .await?;
            let passkey_challenges = store
                .purge_expired_passkey_challenges(now, PURGE_BATCH_ROWS)
                .await?;
            let oauth_browser_states = store
                .purge_expired_oauth_browser_states(now, PURGE_BATCH_ROWS)
                .await?;
            let throttle_buckets = match store.shared_counters() {
                Some(counters) => {
                    counters
                        .purge_idle_buckets(
                            app.clock.now_unix_seconds_fractional(),
                            rate_limit::MAX_ENTRIES as u64,
                            PURGE_BATCH_ROWS,
                        )
                        .await?
                }
                None => 0,
            };
            Ok(sessions
                .max(tokens)
                .max(email_tokens)
                .max(second_factor_records)
                .max(passkey_challenges)
                .max(oauth_browser_states)
                .max(throttle_buckets))
        }
        .await;
        match purged {
            Ok(count) if count == PURGE_BATCH_ROWS => tokio::task::yield_now().await,
            Ok(count) => {
                if count > 0 {
                    tracing::debug!(count, "purged expired sessions");
                }
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "session purge failed");
                break;
            }
        }
    }
}
