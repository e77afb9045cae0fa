//! Sign-up, verification and password reset with real delivery: an SMTP server on loopback
//! (aiosmtpd), the outbox directory, a loopback captcha verifier, and the built binary
//! killed before delivery.

use std::time::Duration;

use latchkey::config::{Config, EmailTransport, SmtpTls};
use latchkey::model::{Role, Status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::binary::{CHEAP_HASHING, start_server_with, terminate};
use crate::mail_support::{ReservedPort, SmtpServer, token_in, wait_for_mail};
use crate::schema::assert_matches_schema;
use crate::support::{PASSWORD, TestServer, request_to};

const MAIL_WAIT: Duration = Duration::from_secs(20);

fn open_sign_up_over_smtp(config: &mut Config, port: u16, with_auth: bool) {
    config.signup.open = true;
    config.email.transport = EmailTransport::Smtp;
    config.email.smtp_host = "127.0.0.1".into();
    config.email.smtp_port = port;
    config.email.smtp_tls = SmtpTls::None;
    if with_auth {
        config.email.smtp_username = Some("mailer".into());
        config.email.smtp_password = Some(latchkey::model::Secret::new("secret".into()));
    }
}

async fn sign_up(server: &TestServer, email: &str, password: &str) -> crate::support::TestResponse {
    server
        .request("POST", "/auth/sign-up")
        .json(&json!({ "email": email, "password": password, "first-name": "New", "last-name": "Person" }))
        .send()
        .await
}

#[tokio::test]
async fn sign_up_is_closed_by_default() {
    let server = TestServer::start().await;
    let response = sign_up(&server, "new@example.com", PASSWORD).await;
    assert_eq!(
        response.assert_error(403)["context"]["reason"],
        "signup-closed"
    );
}

async fn sign_up_verify_and_sign_in(with_auth: bool) {
    let smtp = SmtpServer::start(with_auth);
    let server =
        TestServer::start_with(|config| open_sign_up_over_smtp(config, smtp.port, with_auth)).await;
    let answer = sign_up(&server, "fresh@example.com", PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json, json!({ "success": true }));
    let pending = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "fresh@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(pending.assert_error(403)["context"]["reason"], "pending");

    let mails = wait_for_mail(smtp.inbox.path(), 1, MAIL_WAIT).await;
    assert!(mails[0].contains("To: fresh@example.com"), "{}", mails[0]);
    assert!(
        mails[0].contains("text/plain") && mails[0].contains("text/html"),
        "{}",
        mails[0]
    );
    let token = token_in(&mails[0]);
    let verified = server
        .request("POST", "/auth/verify")
        .header("X-Recaptcha-Token", "not-checked")
        .json(&json!({ "verify-token": token }))
        .send()
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert_matches_schema(&verified.json, "AuthPostVerifyResponse");
    assert_eq!(
        verified.json,
        json!({ "email": "fresh@example.com", "status": "active", "success": true })
    );
    let signed_in = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "fresh@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(signed_in.status, 200);
    let reused = server
        .request("POST", "/auth/verify")
        .header("X-Recaptcha-Token", "not-checked")
        .json(&json!({ "verify-token": token }))
        .send()
        .await;
    assert_eq!(reused.assert_error(400)["context"]["reason"], "used");
}

#[tokio::test]
async fn sign_up_delivers_over_smtp_and_the_link_verifies() {
    sign_up_verify_and_sign_in(false).await;
}

#[tokio::test]
async fn sign_up_delivers_over_smtp_with_authentication() {
    sign_up_verify_and_sign_in(true).await;
}

#[tokio::test]
async fn with_the_pages_off_the_verify_link_opens_a_minimal_page_whose_form_completes_the_flow() {
    // With the hosted pages on, the link opens `/verify` (tests/it/pages.rs); off, the
    // minimal page under the API still serves it.
    let server = TestServer::start_with(|config| {
        config.signup.open = true;
        config.pages.enabled = false;
    })
    .await;
    assert_eq!(
        sign_up(&server, "page@example.com", PASSWORD).await.status,
        200
    );
    let outbox = server.data_dir.path().join("outbox");
    let mails = wait_for_mail(&outbox, 1, MAIL_WAIT).await;
    let link_start = mails[0].find("http://").unwrap();
    let link: String = mails[0][link_start..]
        .chars()
        .take_while(|character| !character.is_whitespace())
        .collect();
    let path_and_query = link.split_once("/frontend/api/v1").unwrap().1;
    let page = server.request("GET", path_and_query).send().await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    // Submit the page's form as a browser would: its action, method and every field.
    assert!(
        html.contains("method=\"post\" action=\"/frontend/api/v1/auth/verify\""),
        "{html}"
    );
    let fields: Vec<(String, String)> = html
        .split("<input ")
        .skip(1)
        .map(|input| {
            let attribute = |name: &str| {
                let marker = format!("{name}=\"");
                let start = input.find(&marker).unwrap() + marker.len();
                input[start..].split('"').next().unwrap().to_owned()
            };
            (attribute("name"), attribute("value"))
        })
        .collect();
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let submitted = server
        .request("POST", "/auth/verify")
        .form(&pairs)
        .send()
        .await;
    assert_eq!(submitted.status, 200, "{}", submitted.text());
    assert!(submitted.text().contains("verified"));
    let user = server
        .app
        .store
        .user_by_normalized_email("page@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.status, Status::Active);
}

#[tokio::test]
async fn sign_up_resend_and_reset_answer_the_same_for_taken_and_free_addresses() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    server
        .add_user("taken@example.com", Role::User, Status::Active)
        .await;
    let outbox = server.data_dir.path().join("outbox");
    let taken = sign_up(&server, "taken@example.com", "another password").await;
    let free = sign_up(&server, "free@example.com", "another password").await;
    assert_eq!((taken.status, &taken.body), (free.status, &free.body));
    for path in ["/auth/verify/resend", "/auth/password-reset"] {
        let taken = server
            .request("POST", path)
            .json(&json!({ "email": "taken@example.com" }))
            .send()
            .await;
        let free = server
            .request("POST", path)
            .json(&json!({ "email": "unknown@example.com" }))
            .send()
            .await;
        assert_eq!(taken.status, 200);
        assert_eq!(
            (taken.status, &taken.body),
            (free.status, &free.body),
            "{path}"
        );
    }
    // The owner of the taken address is told about the attempt; the free one got a link;
    // the reset went to the active owner. Nothing went to unknown@example.com.
    let mails = wait_for_mail(&outbox, 3, MAIL_WAIT).await;
    let joined = mails.join("\n----\n");
    assert!(joined.contains("Someone tried to sign up"), "{joined}");
    assert!(joined.contains("To: free@example.com"));
    assert!(joined.contains("Reset your password"));
    assert!(!joined.contains("unknown@example.com"));
}

#[tokio::test]
async fn a_second_sign_up_for_a_pending_address_keeps_each_link_with_its_own_password() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let outbox = server.data_dir.path().join("outbox");
    assert_eq!(
        sign_up(&server, "twice@example.com", "first password")
            .await
            .status,
        200
    );
    let first = token_in(&wait_for_mail(&outbox, 1, MAIL_WAIT).await[0]);
    assert_eq!(
        sign_up(&server, "twice@example.com", "second password")
            .await
            .status,
        200
    );
    let second = token_in(&wait_for_mail(&outbox, 2, MAIL_WAIT).await[1]);
    let verify = |token: String| {
        server
            .request("POST", "/auth/verify")
            .header("X-Recaptcha-Token", "not-checked")
            .json(&json!({ "verify-token": token }))
            .send()
    };
    // The first link activates the first attempt's password and kills the second link
    // (API.md 15.5).
    assert_eq!(verify(first).await.status, 200);
    assert_eq!(
        verify(second).await.assert_error(400)["context"]["reason"],
        "invalid"
    );
    let later = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "twice@example.com", "password": "second password" }))
        .send()
        .await;
    later.assert_error(401);
    let activated = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "twice@example.com", "password": "first password" }))
        .send()
        .await;
    assert_eq!(activated.status, 200);
}

#[tokio::test]
async fn a_password_reset_ends_every_credential_and_its_token_works_once() {
    let server = TestServer::start().await;
    let user = server
        .add_user("reset@example.com", Role::User, Status::Active)
        .await;
    let outbox = server.data_dir.path().join("outbox");
    let session = server.sign_in("reset@example.com").await;
    let token_request = server
        .request("POST", "/auth/api-token")
        .bearer(&session.signed_token)
        .json(&json!({}))
        .send()
        .await;
    let api_token = token_request.json["token"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .request("POST", "/auth/password-reset")
            .json(&json!({ "email": "reset@example.com" }))
            .send()
            .await
            .status,
        200
    );
    let reset_mail = &wait_for_mail(&outbox, 1, MAIL_WAIT).await[0];
    assert!(
        reset_mail.contains(&format!(
            "{}/password-reset/confirm?token=",
            server.origin()
        )),
        "{reset_mail}"
    );
    let token = token_in(reset_mail);

    // The old page's address, from mails sent before the hosted pages, leads to them.
    let page = server
        .request("GET", &format!("/auth/password-reset?token={token}"))
        .send()
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        Some(format!("/password-reset/confirm?token={token}").as_str())
    );
    let reset = server
        .request("PUT", "/auth/current/password")
        .form(&[
            ("password-update-token", token.as_str()),
            ("new-password", "my reset password"),
        ])
        .send()
        .await;
    assert_eq!(reset.status, 204, "{}", reset.text());
    for credential in [&session.signed_token, &session.api_token, &api_token] {
        assert_eq!(server.current_user_status(credential).await, 401);
    }
    let signed_in = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "reset@example.com", "password": "my reset password" }))
        .send()
        .await;
    assert_eq!(signed_in.status, 200);
    let again = server
        .request("PUT", "/auth/current/password")
        .json(&json!({ "password-update-token": token, "new-password": "yet another password" }))
        .send()
        .await;
    assert_eq!(again.assert_error(400)["context"]["reason"], "used");
    let bogus = server
        .request("PUT", "/auth/current/password")
        .json(&json!({ "password-update-token": "bogus-token", "new-password": "yet another password" }))
        .send()
        .await;
    assert_eq!(bogus.assert_error(400)["context"]["reason"], "invalid");
    let _ = user;
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_refused_with_their_reasons() {
    let server = TestServer::start_with(|config| {
        config.signup.open = true;
        config.signup.reset_token_lifetime_seconds = 1;
    })
    .await;
    server
        .add_user("late@example.com", Role::User, Status::Active)
        .await;
    let outbox = server.data_dir.path().join("outbox");
    server
        .request("POST", "/auth/password-reset")
        .json(&json!({ "email": "late@example.com" }))
        .send()
        .await;
    assert_eq!(
        sign_up(&server, "other@example.com", PASSWORD).await.status,
        200
    );
    let mails = wait_for_mail(&outbox, 2, MAIL_WAIT).await;
    let reset_token = token_in(
        mails
            .iter()
            .find(|mail| mail.contains("Reset your password"))
            .unwrap(),
    );
    let verify_token = token_in(
        mails
            .iter()
            .find(|mail| mail.contains("Confirm your email"))
            .unwrap(),
    );
    // A verification token is no reset token, and the reverse.
    let foreign = server
        .request("PUT", "/auth/current/password")
        .json(&json!({ "password-update-token": verify_token, "new-password": "a new password" }))
        .send()
        .await;
    assert_eq!(foreign.assert_error(400)["context"]["reason"], "invalid");
    let foreign = server
        .request("POST", "/auth/verify")
        .header("X-Recaptcha-Token", "not-checked")
        .json(&json!({ "verify-token": reset_token }))
        .send()
        .await;
    assert_eq!(foreign.assert_error(400)["context"]["reason"], "invalid");
    server.advance_clock(Duration::from_secs(2));
    let expired = server
        .request("PUT", "/auth/current/password")
        .json(&json!({ "password-update-token": reset_token, "new-password": "a new password" }))
        .send()
        .await;
    assert_eq!(expired.assert_error(400)["context"]["reason"], "expired");
    let no_header = server
        .request("POST", "/auth/verify")
        .json(&json!({ "verify-token": verify_token }))
        .send()
        .await;
    assert_eq!(
        no_header.assert_error(400)["context"]["field"],
        "X-Recaptcha-Token"
    );
}

#[tokio::test]
async fn the_outbox_holds_a_parsable_message() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    assert_eq!(
        sign_up(&server, "outbox@example.com", PASSWORD)
            .await
            .status,
        200
    );
    let outbox = server.data_dir.path().join("outbox");
    let message = &wait_for_mail(&outbox, 1, MAIL_WAIT).await[0];
    for header in [
        "From: Latchkey <latchkey@localhost>",
        "To: outbox@example.com",
        "Subject: Confirm your email address",
        "MIME-Version: 1.0",
        "multipart/alternative",
    ] {
        assert!(message.contains(header), "{header} missing in {message}");
    }
    let token = token_in(message);
    assert_eq!(token.len(), 43, "32 bytes in unpadded base64url");
}

#[tokio::test]
async fn mail_waits_for_an_smtp_server_that_is_down_and_arrives_once_it_is_back() {
    let reserved = ReservedPort::new();
    let port = reserved.port;
    let server = TestServer::start_with(|config| open_sign_up_over_smtp(config, port, false)).await;
    assert_eq!(
        sign_up(&server, "patient@example.com", PASSWORD)
            .await
            .status,
        200
    );
    // The first attempt is refused, and the message waits two seconds for the next.
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    loop {
        let queued = server.app.store.due_mails(i64::MAX, 10).await.unwrap();
        assert_eq!(queued.len(), 1);
        if queued[0].attempts == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery was tried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let smtp = SmtpServer::start_on(reserved, false);
    server.advance_clock(Duration::from_secs(2));
    let mails = wait_for_mail(smtp.inbox.path(), 1, MAIL_WAIT).await;
    assert!(mails[0].contains("To: patient@example.com"));
}

#[tokio::test]
async fn mail_queued_before_a_kill_arrives_after_the_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let reserved = ReservedPort::new();
    let port_text = reserved.port.to_string();
    let mut environment = CHEAP_HASHING.to_vec();
    environment.extend([
        ("LATCHKEY_SIGNUP__OPEN", "true"),
        ("LATCHKEY_EMAIL__TRANSPORT", "smtp"),
        ("LATCHKEY_EMAIL__SMTP_HOST", "127.0.0.1"),
        ("LATCHKEY_EMAIL__SMTP_PORT", port_text.as_str()),
        ("LATCHKEY_EMAIL__SMTP_TLS", "none"),
    ]);
    let mut server = start_server_with(data_dir.path(), &environment);
    let answer = request_to(server.address, "POST", "/auth/sign-up")
        .json(&json!({ "email": "survivor@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let smtp = SmtpServer::start_on(reserved, false);
    let mut restarted = start_server_with(data_dir.path(), &environment);
    let mails = wait_for_mail(smtp.inbox.path(), 1, MAIL_WAIT).await;
    assert!(mails[0].contains("To: survivor@example.com"));
    assert_eq!(terminate(&mut restarted).code(), Some(0));
}

/// A loopback siteverify endpoint: `success` is true for a response token starting "human".
async fn start_captcha_verifier() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(read) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length: usize = text[..head_end]
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|value| value.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let success =
                    text.contains("secret=verifier-secret") && text.contains("response=human");
                let body = format!("{{\"success\": {success}}}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_captcha_provider_checks_the_token_and_an_unreachable_one_never_passes() {
    let (port, verifier) = start_captcha_verifier().await;
    let with_verifier = |verify_url: String| {
        move |config: &mut Config| {
            config.signup.open = true;
            config.captcha.provider = latchkey::config::CaptchaProvider::Recaptcha;
            config.captcha.secret = Some(latchkey::model::Secret::new("verifier-secret".into()));
            config.captcha.verify_url = Some(verify_url);
        }
    };
    let server =
        TestServer::start_with(with_verifier(format!("http://127.0.0.1:{port}/siteverify"))).await;
    let attempt = |token: &'static str, email: &'static str| {
        server
            .request("POST", "/auth/sign-up")
            .header("X-Recaptcha-Token", token)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
    };
    assert_eq!(
        attempt("human-being", "human@example.com").await.status,
        200
    );
    assert_eq!(
        attempt("robot!", "robot@example.com")
            .await
            .assert_error(400)["context"]["reason"],
        "captcha"
    );
    let missing = server
        .request("POST", "/auth/sign-up")
        .json(&json!({ "email": "nobody@example.com", "password": PASSWORD }))
        .send()
        .await;
    missing.assert_error(400);
    verifier.abort();

    let closed = ReservedPort::new();
    let down = TestServer::start_with(with_verifier(format!(
        "http://127.0.0.1:{}/siteverify",
        closed.port
    )))
    .await;
    let unreachable = down
        .request("POST", "/auth/sign-up")
        .header("X-Recaptcha-Token", "human-being")
        .json(&json!({ "email": "human@example.com", "password": PASSWORD }))
        .send()
        .await;
    unreachable.assert_error(503);
    assert_eq!(unreachable.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn sign_up_resend_and_reset_are_rate_limited_alike_for_taken_and_free_addresses() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    server
        .add_user("limited@example.com", Role::User, Status::Active)
        .await;
    for email in ["limited@example.com", "vacant@example.com"] {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let response = server
                .request("POST", "/auth/password-reset")
                .json(&json!({ "email": email }))
                .send()
                .await;
            statuses.push(response.status);
        }
        assert_eq!(statuses, [200, 200, 200, 429], "{email}");
    }
    let limited = server
        .request("POST", "/auth/verify/resend")
        .json(&json!({ "email": "vacant@example.com" }))
        .send()
        .await;
    limited.assert_error(429);
    assert!(limited.header("retry-after").is_some());
}
