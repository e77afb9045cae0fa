//! Sign-up, email verification and password reset. Requests that could reveal whether an
//! address is registered (sign-up, resend, reset) answer the same after the same work and
//! are rate-limited by address and client network, keyed alike for free and taken
//! addresses. Emailed tokens are 32 random bytes (base64url), stored only as SHA-256,
//! single use, and consumed in the transaction that acts on them.

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::auth::account::checked_name;
use crate::auth::email::EmailAddress;
use crate::auth::password::Password;
use crate::auth::{AuthError, ClientInfo, check_new_password_length, store_write};
use crate::model::{
    EmailTokenPurpose, NewUser, OutgoingMail, Role, Status, UnixSeconds, User, now_unix_seconds,
};
use crate::store::{SignUpEffect, TokenAction};

/// What `POST /auth/sign-up` asks for.
#[derive(Debug)]
pub struct SignUpRequest {
    pub email: String,
    pub password: Password,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A fresh emailed token and its stored hash.
fn new_email_token() -> Result<(String, [u8; 32]), AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| AuthError::Internal(error.to_string()))?;
    let token = crate::hex::base64url_encode(&bytes);
    let hash = email_token_hash(&token);
    Ok((token, hash))
}

pub fn email_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn lifetime(seconds: u64) -> UnixSeconds {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// Applies the per-address and per-network request limits; every request counts.
fn limit_requests(app: &App, normalized_email: &str, client: &ClientInfo) -> Result<(), AuthError> {
    let network = client.network();
    let now = app.request_limiter.now();
    app.request_limiter
        .check(normalized_email, &network, now)
        .map_err(|retry| AuthError::TooManyAttempts(retry.0))?;
    app.request_limiter
        .record_failure(normalized_email, &network, now);
    Ok(())
}

/// The link a message carries: the operator's template, or the server's own page.
fn link(app: &App, template: Option<&String>, page: &str, token: &str) -> String {
    match template {
        Some(template) => template.replace("{token}", token),
        None => format!(
            "{}/frontend/api/v1/auth/{page}?token={token}",
            app.config.public_origin()
        ),
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn message(to: &User, subject: &str, paragraphs: &[&str], link: Option<&str>) -> OutgoingMail {
    let mut text = paragraphs.join("\n\n");
    let mut html: String = paragraphs
        .iter()
        .map(|paragraph| format!("<p>{}</p>", escape_html(paragraph)))
        .collect();
    if let Some(link) = link {
        text.push_str(&format!("\n\n{link}\n"));
        let link = escape_html(link);
        html.push_str(&format!("<p><a href=\"{link}\">{link}</a></p>"));
    }
    OutgoingMail {
        // The unique key, not the address as typed: mail goes to exactly the address the
        // uniqueness check used (API.md section 15, rule 15).
        to: to.normalized_email.clone(),
        subject: subject.to_owned(),
        text,
        html: format!("<!doctype html><html><body>{html}</body></html>"),
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
    let email = EmailAddress::parse_field(&request.email)?;
    let first_name = checked_name("first-name", request.first_name)?;
    let last_name = checked_name("last-name", request.last_name)?;
    limit_requests(app, &email.normalized, client)?;
    check_new_password_length(
        "password",
        &request.password,
        app.config.password.min_length,
    )?;
    if request.password.expose().trim().to_lowercase() == email.normalized {
        return Err(AuthError::InvalidField {
            field: "password",
            message: "must differ from the email address",
        });
    }
    let hash = app.hashers.hash(request.password).await?;
    let now = now_unix_seconds();
    let (token, token_hash) = new_email_token()?;
    let verify_link = link(app, app.config.email.verify_link.as_ref(), "verify", &token);
    let reset_page = format!(
        "{}/frontend/api/v1/auth/password-reset",
        app.config.public_origin()
    );
    let new_user = NewUser {
        email: email.as_given,
        normalized_email: email.normalized,
        password_hash: Some(hash),
        role: Role::User,
        status: Status::Pending,
        parent_id: None,
        first_name,
        last_name,
        permissions: Role::User.default_permissions(),
        email_verified: false,
    };
    let expires_at = now + lifetime(app.config.signup.verify_token_lifetime_seconds);
    let effect = store_write(&app.store, move |store| {
        store.sign_up(
            new_user,
            token_hash,
            expires_at,
            |user| {
                message(
                    user,
                    "Confirm your email address",
                    &["Welcome. Open this link to confirm your email address and activate your account:"],
                    Some(&verify_link),
                )
            },
            |user| {
                message(
                    user,
                    "Someone tried to sign up with your address",
                    &[
                        "Someone tried to create an account with this email address, which already has one.",
                        "If it was you, sign in instead, or reset your password here:",
                    ],
                    Some(&reset_page),
                )
            },
            now,
        )
    })
    .await?;
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
    let hash = email_token_hash(token);
    let now = now_unix_seconds();
    let consumed = store_write(&app.store, move |store| {
        store.consume_email_token(&hash, purpose, action, now)
    })
    .await?;
    let user = consumed.map_err(|problem| AuthError::EmailToken { field, problem })?;
    tracing::info!(target: "latchkey::audit", event, user_id = user.id);
    Ok(user)
}

/// `POST /auth/verify`: consumes the token and activates the user.
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

/// `POST /auth/verify/resend`: a fresh link for a pending user; the same answer always.
pub async fn resend_verification(
    app: &App,
    email: &str,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let email = EmailAddress::parse_field(email)?;
    limit_requests(app, &email.normalized, client)?;
    let (token, hash) = new_email_token()?;
    let verify_link = link(app, app.config.email.verify_link.as_ref(), "verify", &token);
    let now = now_unix_seconds();
    let expires_at = now + lifetime(app.config.signup.verify_token_lifetime_seconds);
    store_write(&app.store, move |store| {
        store.issue_email_token(
            &email.normalized,
            Status::Pending,
            (EmailTokenPurpose::VerifyEmail, hash, expires_at),
            |user| {
                message(
                    user,
                    "Confirm your email address",
                    &["Open this link to confirm your email address and activate your account:"],
                    Some(&verify_link),
                )
            },
            now,
        )
    })
    .await?;
    Ok(())
}

/// `POST /auth/password-reset`: a reset link for an active user; the same answer always.
pub async fn request_password_reset(
    app: &App,
    email: &str,
    client: &ClientInfo,
) -> Result<(), AuthError> {
    let email = EmailAddress::parse_field(email)?;
    limit_requests(app, &email.normalized, client)?;
    let (token, hash) = new_email_token()?;
    let reset_link = link(
        app,
        app.config.email.reset_link.as_ref(),
        "password-reset",
        &token,
    );
    let now = now_unix_seconds();
    let expires_at = now + lifetime(app.config.signup.reset_token_lifetime_seconds);
    let issued = store_write(&app.store, move |store| {
        store.issue_email_token(
            &email.normalized,
            Status::Active,
            (EmailTokenPurpose::ResetPassword, hash, expires_at),
            |user| {
                message(
                    user,
                    "Reset your password",
                    &[
                        "Someone asked to reset the password of this account. If it was you, open this link within 30 minutes:",
                        "If it was not you, ignore this message; your password stays as it is.",
                    ],
                    Some(&reset_link),
                )
            },
            now,
        )
    })
    .await?;
    if issued {
        tracing::info!(target: "latchkey::audit", event = "password-reset-requested", remote_ip = client.remote_ip);
    }
    Ok(())
}

/// `PUT /auth/current/password` with a `password-update-token`: sets the password and ends
/// every session and API token of the user, consuming the token in the same transaction.
pub async fn complete_password_reset(
    app: &App,
    token: &str,
    new_password: Password,
) -> Result<User, AuthError> {
    check_new_password_length(
        "new-password",
        &new_password,
        app.config.password.min_length,
    )?;
    let hash = app.hashers.hash(new_password).await?;
    consume(
        app,
        token,
        EmailTokenPurpose::ResetPassword,
        TokenAction::SetPassword(hash),
        "password-update-token",
        "password-reset",
    )
    .await
}
