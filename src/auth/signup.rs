//! Sign-up, email verification and password reset. Requests that could reveal whether an
//! address is registered (sign-up, resend, reset) answer the same and are rate-limited by
//! address and client network, keyed alike for free and taken addresses; resend and reset
//! answer before any per-address work (`after_answer`). Emailed tokens are 32 random bytes
//! (base64url), stored only as SHA-256, single use, and consumed in the transaction that
//! acts on them; each sign-up's link carries that attempt's password.

use std::sync::Arc;

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::app::App;
use crate::auth::account::checked_name;
use crate::auth::maintenance::PURGE_BATCH_ROWS;
use crate::auth::password::{NewPassword, Password};
use crate::auth::{AuthError, ClientInfo, token_hash};
use crate::html::escape;
use crate::model::Secret;
use crate::model::email_address::EmailAddress;
use crate::model::{EmailTokenPurpose, NewUser, OutgoingMail, Role, Status, UnixSeconds, User};
use crate::store::{LinkToIssue, SignUpEffect, TokenAction, is_unproved_sign_up};

/// What `POST /auth/sign-up` asks for.
#[derive(Debug)]
pub struct SignUpRequest {
    pub email: String,
    pub password: Password,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A fresh emailed token (unpadded base64url, by `base64ct`) and its stored hash.
fn new_email_token() -> Result<(Secret<String>, [u8; 32]), AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| AuthError::Internal(error.to_string()))?;
    let token = Base64UrlUnpadded::encode_string(&bytes);
    let hash = token_hash(&token);
    Ok((Secret::new(token), hash))
}

fn lifetime(seconds: u64) -> UnixSeconds {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// Applies the per-address and per-network request limits; every request counts.
async fn limit_requests(
    app: &App,
    normalized_email: &str,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let network = client.network();
    app.request_limiter
        .check_request(normalized_email, &network)
        .await?;
    app.request_limiter
        .count_request(normalized_email, &network)
        .await?;
    Ok(())
}

/// The per-network limit on an unauthenticated route that is about to hash a password
/// without an address to key it by (reset confirmation), before the hash queue (API.md
/// 15.7). Its buckets are the network's own (so `[signup] requests_per_address_network`
/// confirmations a minute), plus the network bucket that sign-up, resend and reset requests
/// drain; requests flooding an address never block its owner here.
async fn limit_hashing(app: &App, client: &ClientInfo) -> Result<(), AuthError> {
    let network = client.network();
    let key = format!("password-reset-confirm {network}");
    app.request_limiter.check_request(&key, &network).await?;
    app.request_limiter.count_request(&key, &network).await?;
    Ok(())
}

/// The link a message carries: the operator's template, or the server's own page. The token
/// leaves its `Secret` here, for the mail body, which is a `Secret` again.
fn link(app: &App, template: Option<&String>, page: EmailedPage, token: &Secret<String>) -> String {
    let token = token.expose_secret();
    match template {
        Some(template) => template.replace("{token}", token),
        None => format!(
            "{}{}?token={token}",
            app.config.public_origin(),
            page.path(app.config.pages.enabled)
        ),
    }
}

/// The server's own page an emailed link opens when no `*_link` is configured.
#[derive(Clone, Copy, Debug)]
enum EmailedPage {
    Verify,
    ResetConfirm,
}

impl EmailedPage {
    /// The hosted page, or with the pages off the minimal one under the API.
    fn path(self, pages_enabled: bool) -> &'static str {
        match (self, pages_enabled) {
            (EmailedPage::Verify, true) => "/verify",
            (EmailedPage::ResetConfirm, true) => "/password-reset/confirm",
            (EmailedPage::Verify, false) => "/frontend/api/v1/auth/verify",
            (EmailedPage::ResetConfirm, false) => "/frontend/api/v1/auth/password-reset",
        }
    }
}

/// A message whose link, if any, stands on a line of its own right after the paragraph
/// that says to open it, with the rest (the lifetime, what to do otherwise) after it.
fn message(
    to: &User,
    subject: &str,
    before_link: &[&str],
    link: Option<&str>,
    after_link: &[&str],
) -> OutgoingMail {
    let mut text_parts: Vec<String> = before_link.iter().map(|part| (*part).to_owned()).collect();
    let mut html: String = before_link
        .iter()
        .map(|paragraph| format!("<p>{}</p>", escape(paragraph)))
        .collect();
    if let Some(link) = link {
        text_parts.push(link.to_owned());
        let link = escape(link);
        html.push_str(&format!("<p><a href=\"{link}\">{link}</a></p>"));
    }
    text_parts.extend(after_link.iter().map(|part| (*part).to_owned()));
    html.extend(
        after_link
            .iter()
            .map(|paragraph| format!("<p>{}</p>", escape(paragraph))),
    );
    let text = text_parts.join("\n\n") + "\n";
    OutgoingMail {
        // The unique key, not the address as typed: mail goes to exactly the address the
        // uniqueness check used (API.md section 15, rule 15).
        to: to.normalized_email.clone(),
        subject: subject.to_owned(),
        text: Secret::new(text),
        html: Secret::new(format!("<!doctype html><html><body>{html}</body></html>")),
    }
}

/// `POST /auth/sign-up`. The same answer, after hashing and one write, whether the
/// address was free, pending or in use; what differs is only the email that goes out.
pub async fn sign_up(
    app: &App,
    request: SignUpRequest,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    if !app.config.signup.open {
        return Err(AuthError::SignupClosed);
    }
    let email = EmailAddress::parse(&request.email)?;
    let first_name = checked_name("first-name", request.first_name)?;
    let last_name = checked_name("last-name", request.last_name)?;
    limit_requests(app, &email.normalized, client).await?;
    let password = NewPassword::parse(app, request.password, "password", &email.normalized, None)?;
    let hash = app.hashers.hash(password.into_password()).await?;
    let now = app.clock.now_unix_seconds();
    let (token, token_hash) = new_email_token()?;
    let verify_link = link(
        app,
        app.config.email.verify_link.as_ref(),
        EmailedPage::Verify,
        &token,
    );
    // Where the owner of a taken address asks for a reset link: the hosted page (the old
    // minimal page needs a token this mail does not carry).
    let reset_page = if app.config.pages.enabled {
        format!("{}/password-reset", app.config.public_origin())
    } else {
        format!(
            "{}/frontend/api/v1/auth/password-reset",
            app.config.public_origin()
        )
    };
    let new_user = NewUser {
        password_hash: Some(hash),
        first_name,
        last_name,
        ..NewUser::new(email, Role::User, Status::Pending)
    };
    let expires_at = now + lifetime(app.config.signup.verify_token_lifetime_seconds);
    let works_for = format!(
        "This link works for {}.",
        describe_lifetime(app.config.signup.verify_token_lifetime_seconds)
    );
    let effect = app.store.sign_up(
            new_user,
            token_hash,
            expires_at,
            move |user| {
                message(
                    user,
                    "Confirm your email address",
                    &["Welcome. To confirm your email address and activate your account with the password you signed up with just now, open this link:"],
                    Some(&verify_link),
                    &[&works_for],
                )
            },
            move |user| {
                message(
                    user,
                    "Someone tried to sign up with your address",
                    &[
                        "Someone tried to create an account with this email address, which already has one.",
                        "If it was you, sign in instead, or open this link to reset your password:",
                    ],
                    Some(&reset_page),
                    &[],
                )
            },
            now,
        )
    .await?;
    app.wake_mail_worker();
    tracing::info!(
        target: "latchkey::audit",
        event = "sign-up",
        outcome = match effect {
            SignUpEffect::Created => "created",
            SignUpEffect::RefreshedPending => "refreshed-pending",
            SignUpEffect::AddressInUse => "address-in-use",
        },
        remote_ip = client.remote_ip,
    );
    Ok(())
}

/// Consumes an emailed token and makes its change in one transaction; a refusal names the
/// field the token came in, and a success is an audit event.
async fn consume(
    app: &App,
    token: &str,
    purpose: EmailTokenPurpose,
    action: TokenAction,
    field: &'static str,
    event: &'static str,
) -> Result<User, AuthError> {
    let hash = token_hash(token);
    let now = app.clock.now_unix_seconds();
    let consumed = app
        .store
        .consume_email_token(&hash, purpose, action, now)
        .await?;
    let user = consumed.map_err(|problem| AuthError::EmailToken { field, problem })?;
    tracing::info!(target: "latchkey::audit", event, user_id = user.id);
    Ok(user)
}

/// `POST /auth/verify`: consumes the token, which proves the address; a pending sign-up
/// becomes active with its attempt's password. Hashes nothing (API.md 15.7).
pub async fn verify_email(app: &App, token: &str) -> Result<User, AuthError> {
    consume(
        app,
        token,
        EmailTokenPurpose::VerifyEmail,
        TokenAction::Activate,
        "verify-token",
        "email-verified",
    )
    .await
}

/// `POST /auth/verify/resend`: the same answer always, sent before anything is looked up
/// (API.md 15.10). Then an unproved pending sign-up gets a link to confirm the address and
/// choose a password: a fresh link may carry no attempt's password, since the one who asks
/// may not be the one who signed up (API.md 15.5). An active account whose address is
/// unproved (a sub-user) gets a verification link. Anyone else gets nothing.
pub async fn resend_verification(
    app: &Arc<App>,
    email: &str,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let email = EmailAddress::parse(email)?;
    limit_requests(app, &email.normalized, client).await?;
    let (token, hash) = new_email_token()?;
    let job_app = Arc::clone(app);
    app.after_answer.spawn(async move {
        let app = job_app;
        let now = app.clock.now_unix_seconds();
        let verify_link = link(&app, app.config.email.verify_link.as_ref(), EmailedPage::Verify, &token);
        let choose_link = link(
            &app,
            app.config.email.reset_link.as_ref(),
            EmailedPage::ResetConfirm,
            &token,
        );
        let verify_expires_at = now + lifetime(app.config.signup.verify_token_lifetime_seconds);
        let verify_lifetime = describe_lifetime(app.config.signup.verify_token_lifetime_seconds);
        let issued = app.store.issue_email_token(
                &email.normalized,
                hash,
                move |user| {
                    if user.email_verified || user.status == Status::Suspended {
                        return None;
                    }
                    // An account made from a provider's unproved email has no password and
                    // signs in through its provider. A link would let the address's owner
                    // vouch for an account someone else holds (and then link their own
                    // provider sign-in into it), so its address stays unproved.
                    if user.status == Status::Active && user.password_hash.is_none() {
                        return None;
                    }
                    let works_for = format!("This link works for {verify_lifetime}.");
                    Some(if is_unproved_sign_up(user) {
                        LinkToIssue {
                            purpose: EmailTokenPurpose::ResetPassword,
                            expires_at: verify_expires_at,
                            mail: message(
                                user,
                                "Confirm your email address",
                                &["To confirm your email address, choose your password and activate your account, open this link:"],
                                Some(&choose_link),
                                &[&works_for],
                            ),
                        }
                    } else if user.parent_id.is_some() {
                        // A sub-user's address was typed in by its parent, who keeps full
                        // control of the account: the owner of the address must know that
                        // before vouching for it.
                        LinkToIssue {
                            purpose: EmailTokenPurpose::VerifyEmail,
                            expires_at: verify_expires_at,
                            mail: message(
                                user,
                                "Confirm your email address for a sub-account",
                                &[
                                    "Another account registered this address as one of its sub-accounts. That account can read this one, set its password and delete it.",
                                    "Only if you expected this, confirm your email address by opening this link:",
                                ],
                                Some(&verify_link),
                                &[
                                    &works_for,
                                    "If you did not expect it, ignore this message: nothing is confirmed unless the link is opened.",
                                ],
                            ),
                        }
                    } else {
                        LinkToIssue {
                            purpose: EmailTokenPurpose::VerifyEmail,
                            expires_at: verify_expires_at,
                            mail: message(
                                user,
                                "Confirm your email address",
                                &["To confirm your email address, open this link:"],
                                Some(&verify_link),
                                &[&works_for],
                            ),
                        }
                    })
                },
                now,
            )
        .await;
        app.wake_mail_worker();
        if let Err(error) = issued {
            tracing::warn!(%error, "verification resend failed");
        }
    })
}

/// `POST /auth/password-reset`: the same answer always, sent before anything is looked up
/// (API.md 15.10). Then an active user whose address is proved gets a reset link; an
/// unproved address gets nothing (API.md 15.4), nor does an unknown one.
pub async fn request_password_reset(
    app: &Arc<App>,
    email: &str,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let email = EmailAddress::parse(email)?;
    limit_requests(app, &email.normalized, client).await?;
    let (token, hash) = new_email_token()?;
    let remote_ip = client.remote_ip.clone();
    let job_app = Arc::clone(app);
    app.after_answer.spawn(async move {
        let app = job_app;
        let now = app.clock.now_unix_seconds();
        let reset_link = link(
            &app,
            app.config.email.reset_link.as_ref(),
            EmailedPage::ResetConfirm,
            &token,
        );
        let expires_at = now + lifetime(app.config.signup.reset_token_lifetime_seconds);
        let works_for = format!(
            "This link works for {}.",
            describe_lifetime(app.config.signup.reset_token_lifetime_seconds)
        );
        let issued = app.store.issue_email_token(
                &email.normalized,
                hash,
                move |user| {
                    (user.status == Status::Active && user.email_verified).then(|| LinkToIssue {
                        purpose: EmailTokenPurpose::ResetPassword,
                        expires_at,
                        mail: message(
                            user,
                            "Reset your password",
                            &["Someone asked to reset the password of this account. If it was you, open this link to choose a new one:"],
                            Some(&reset_link),
                            &[
                                &works_for,
                                "If it was not you, ignore this message; your password stays as it is.",
                            ],
                        ),
                    })
                },
                now,
            )
        .await;
        app.wake_mail_worker();
        match issued {
            Ok(true) => tracing::info!(
                target: "latchkey::audit",
                event = "password-reset-requested",
                remote_ip
            ),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "password reset request failed"),
        }
    })
}

/// `PUT /auth/current/password` with a `password-update-token` (and the reset page's form):
/// sets the password and ends every session and API token of the user, consuming the token
/// in the same transaction. The token is looked up first, so an unknown, used or expired one
/// costs no hash; a usable one is limited per client network before the hash queue, and the
/// password meets the rules of every other route (API.md 15.7).
pub async fn complete_password_reset(
    app: &App,
    token: &str,
    new_password: Password,
    client: &ClientInfo,
) -> Result<User, AuthError> {
    let field = "password-update-token";
    let hash = token_hash(token);
    let now = app.clock.now_unix_seconds();
    let user = app
        .store
        .email_token_user(&hash, EmailTokenPurpose::ResetPassword, now)
        .await?
        .map_err(|problem| AuthError::EmailToken { field, problem })?;
    let new_password = NewPassword::parse(
        app,
        new_password,
        "new-password",
        &user.normalized_email,
        None,
    )?;
    limit_hashing(app, client).await?;
    let password_hash = app.hashers.hash(new_password.into_password()).await?;
    consume(
        app,
        token,
        EmailTokenPurpose::ResetPassword,
        TokenAction::SetPassword(password_hash),
        field,
        "password-reset",
    )
    .await
}

/// Deletes the sign-ups whose address was not proved within `[signup]
/// pending_lifetime_days` of their creation (API.md 15.15), with what they made while
/// pending, their links and their queued mail, in transactions of at most
/// `PURGE_BATCH_ROWS` accounts. Returns how many went.
pub async fn purge_unproved_sign_ups(app: &App, now: UnixSeconds) -> Result<usize, AuthError> {
    let lifetime_seconds = app
        .config
        .signup
        .pending_lifetime_days
        .saturating_mul(86_400);
    let before = now.saturating_sub(lifetime(lifetime_seconds));
    let mut purged_total = 0;
    loop {
        let candidates = app
            .store
            .unproved_sign_ups_created_before(before, PURGE_BATCH_ROWS)
            .await?;
        let full_batch = candidates.len() == PURGE_BATCH_ROWS;
        let purged = app
            .store
            .purge_unproved_sign_ups(&candidates, before)
            .await?;
        purged_total += purged;
        if !full_batch || purged == 0 {
            return Ok(purged_total);
        }
        tokio::task::yield_now().await;
    }
}

/// "30 minutes", "1 hour", "2 days": a link's lifetime as its mail states it.
fn describe_lifetime(seconds: u64) -> String {
    let (count, unit) = match seconds {
        0 => (0, "second"),
        _ if seconds.is_multiple_of(86_400) => (seconds / 86_400, "day"),
        _ if seconds.is_multiple_of(3_600) => (seconds / 3_600, "hour"),
        _ if seconds.is_multiple_of(60) => (seconds / 60, "minute"),
        _ => (seconds, "second"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emailed_tokens_are_43_characters_of_unpadded_base64url() {
        assert_eq!(Base64UrlUnpadded::encode_string(&[0xfb, 0xff]), "-_8");
        assert_eq!(Base64UrlUnpadded::encode_string(b"fo"), "Zm8");
        let (token, hash) = new_email_token().unwrap();
        let token = token.into_exposed_secret();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
            "{token}"
        );
        assert_eq!(hash, token_hash(&token));
    }

    #[test]
    fn lifetimes_read_in_their_largest_whole_unit() {
        assert_eq!(describe_lifetime(1800), "30 minutes");
        assert_eq!(describe_lifetime(3600), "1 hour");
        assert_eq!(describe_lifetime(86_400), "1 day");
        assert_eq!(describe_lifetime(5400), "90 minutes");
        assert_eq!(describe_lifetime(61), "61 seconds");
        assert_eq!(describe_lifetime(1), "1 second");
    }
}
