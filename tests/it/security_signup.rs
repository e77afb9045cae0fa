//! Issue #14 (API.md section 15) for sign-up, verification and reset: each test plays the
//! attack its rule closes. Rule 4: reset mail only to proved addresses, and sub-users start
//! unproved. Rule 5: each pending sign-up keeps its own password and link. Rule 7: tokens
//! are looked up before any hashing, and reset confirmation is limited per network. Rule 10:
//! reset and resend answer before any per-address work. Rule 15: unproved sign-ups are
//! purged. Mail is read from the outbox.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use latchkey::auth::signup::purge_unproved_sign_ups;
use latchkey::auth::token_hash;
use latchkey::config::{Config, EmailTransport, SmtpTls};
use latchkey::model::email_address::EmailAddress;
use latchkey::model::{EmailTokenPurpose, NewUser, OutgoingMail, Role, Status, User};
use latchkey::store::LinkToIssue;
use serde_json::json;

use crate::mail_support::{ReservedPort, delivered_mails, token_in};
use crate::support::{PASSWORD, SignedIn, TestResponse, TestServer};

const MAIL_WAIT: Duration = Duration::from_secs(20);

fn open_sign_up(config: &mut Config) {
    config.signup.open = true;
}

pub(crate) async fn sign_up(server: &TestServer, email: &str, password: &str) -> TestResponse {
    server
        .request("POST", "/auth/sign-up")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

pub(crate) async fn verify(server: &TestServer, token: &str) -> TestResponse {
    server
        .request("POST", "/auth/verify")
        .header("X-Recaptcha-Token", "not-checked")
        .json(&json!({ "verify-token": token }))
        .send()
        .await
}

pub(crate) async fn sign_in(server: &TestServer, email: &str, password: &str) -> TestResponse {
    server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

async fn confirm_reset(server: &TestServer, token: &str, new_password: &str) -> TestResponse {
    server
        .request("PUT", "/auth/current/password")
        .json(&json!({ "password-update-token": token, "new-password": new_password }))
        .send()
        .await
}

async fn post_email(server: &TestServer, path: &str, email: &str) -> TestResponse {
    server
        .request("POST", path)
        .json(&json!({ "email": email }))
        .send()
        .await
}

pub(crate) fn outbox(server: &TestServer) -> PathBuf {
    server.data_dir.path().join("outbox")
}

/// Waits for the `nth` (from 1) message to `address` and returns it.
pub(crate) async fn nth_mail_to(outbox: &Path, address: &str, nth: usize) -> String {
    let deadline = Instant::now() + MAIL_WAIT;
    let header = format!("To: {address}");
    loop {
        let to_address: Vec<String> = delivered_mails(outbox)
            .into_iter()
            .filter(|mail| mail.contains(&header))
            .collect();
        if let Some(mail) = to_address.into_iter().nth(nth - 1) {
            return mail;
        }
        assert!(
            Instant::now() < deadline,
            "mail {nth} to {address} did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn mail_to(outbox: &Path, address: &str) -> String {
    nth_mail_to(outbox, address, 1).await
}

/// Waits until the mail worker has taken every message off the queue.
async fn wait_for_an_empty_mail_queue(server: &TestServer) {
    let deadline = Instant::now() + MAIL_WAIT;
    while !server
        .app
        .store
        .due_mails(i64::MAX, 1)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the mail queue did not empty");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every accepted per-address job has run and the mail worker has delivered a
/// message queued after them; then nothing more is on its way.
async fn settle(server: &TestServer, control_address: &str) {
    server.app.after_answer.finished().await;
    let expires_at = server.now() + 60;
    let queued = server
        .app
        .store
        .issue_email_token(
            control_address,
            [7; 32],
            move |user| {
                Some(LinkToIssue {
                    purpose: EmailTokenPurpose::VerifyEmail,
                    expires_at,
                    mail: OutgoingMail {
                        to: user.email.clone(),
                        subject: "Control".into(),
                        text: latchkey::model::Secret::new("control".into()),
                        html: latchkey::model::Secret::new("<p>control</p>".into()),
                    },
                })
            },
            server.now(),
        )
        .await
        .unwrap();
    assert!(queued, "the control user exists");
    server.app.wake_mail_worker();
    mail_to(&outbox(server), control_address).await;
}

fn mails_to(outbox: &Path, address: &str) -> usize {
    let header = format!("To: {address}");
    delivered_mails(outbox)
        .iter()
        .filter(|mail| mail.contains(&header))
        .count()
}

async fn user(server: &TestServer, email: &str) -> Option<User> {
    server
        .app
        .store
        .user_by_normalized_email(email)
        .await
        .unwrap()
}

async fn create_sub_user(server: &TestServer, parent: &SignedIn, email: &str) -> TestResponse {
    server
        .request("POST", "/user")
        .bearer(&parent.signed_token)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
}

async fn create_api_token(server: &TestServer, signed_in: &SignedIn) -> String {
    let response = server
        .request("POST", "/auth/api-token")
        .bearer(&signed_in.signed_token)
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json["token"].as_str().unwrap().to_owned()
}

// ---- Rule 4: addresses are trusted only once their owner proved them ----

#[tokio::test]
async fn reset_mail_goes_only_to_proved_addresses() {
    let server = TestServer::start_with(open_sign_up).await;
    let parent_user = server
        .add_user("parent@example.com", Role::User, Status::Active)
        .await;
    assert!(
        parent_user.email_verified,
        "user add vouches for the address"
    );
    let parent = server.sign_in("parent@example.com").await;
    // A parent may type in any address, say its victim's: the sub-user must not be able
    // to take the victim's mailbox for a reset channel, nor the reverse.
    assert_eq!(
        create_sub_user(&server, &parent, "typed-in@example.com")
            .await
            .status,
        201
    );
    let sub_user = user(&server, "typed-in@example.com").await.unwrap();
    assert!(!sub_user.email_verified);
    assert_eq!(sub_user.status, Status::Active);
    assert_eq!(
        sign_up(&server, "pending@example.com", "pending password")
            .await
            .status,
        200
    );

    let unknown = post_email(&server, "/auth/password-reset", "nobody@example.com").await;
    assert_eq!(unknown.status, 200, "{}", unknown.text());
    for address in ["typed-in@example.com", "pending@example.com"] {
        let answer = post_email(&server, "/auth/password-reset", address).await;
        assert_eq!(
            (answer.status, &answer.body),
            (unknown.status, &unknown.body)
        );
    }
    let proved = post_email(&server, "/auth/password-reset", "parent@example.com").await;
    assert_eq!(
        (proved.status, &proved.body),
        (unknown.status, &unknown.body)
    );

    settle(&server, "parent@example.com").await;
    let outbox = outbox(&server);
    assert!(
        delivered_mails(&outbox)
            .iter()
            .any(|mail| mail.contains("To: parent@example.com")
                && mail.contains("Reset your password")),
        "the proved address gets its reset link"
    );
    assert_eq!(mails_to(&outbox, "typed-in@example.com"), 0);
    // The pending sign-up got its verification mail and nothing else.
    assert_eq!(mails_to(&outbox, "pending@example.com"), 1);
    assert!(!delivered_mails(&outbox).iter().any(
        |mail| mail.contains("To: pending@example.com") && mail.contains("Reset your password")
    ));
}

#[tokio::test]
async fn a_sub_user_verifies_its_address_through_resend_and_stays_active() {
    let server = TestServer::start().await;
    server
        .add_user("parent@example.com", Role::User, Status::Active)
        .await;
    let parent = server.sign_in("parent@example.com").await;
    assert_eq!(
        create_sub_user(&server, &parent, "child@example.com")
            .await
            .status,
        201
    );
    let resent = post_email(&server, "/auth/verify/resend", "child@example.com").await;
    assert_eq!(resent.status, 200, "{}", resent.text());
    let mail = mail_to(&outbox(&server), "child@example.com").await;
    assert!(
        mail.contains(&format!("{}/verify?token=", server.origin())),
        "{mail}"
    );
    // The address's owner learns whose account it is before vouching for it.
    assert!(
        mail.contains("Another account registered this address as one of its sub-accounts"),
        "{mail}"
    );
    let verified = verify(&server, &token_in(&mail)).await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert_eq!(
        verified.json,
        json!({ "email": "child@example.com", "status": "active", "success": true })
    );
    let child = user(&server, "child@example.com").await.unwrap();
    assert!(child.email_verified);
    assert_eq!(child.status, Status::Active);
    // Its password is the one its parent set, and now a reset reaches it.
    assert_eq!(
        sign_in(&server, "child@example.com", PASSWORD).await.status,
        200
    );
    post_email(&server, "/auth/password-reset", "child@example.com").await;
    let reset = nth_mail_to(&outbox(&server), "child@example.com", 2).await;
    assert!(reset.contains("Reset your password"), "{reset}");
}

#[tokio::test]
async fn a_pending_sign_ups_resend_lets_the_address_owner_choose_the_password() {
    let server = TestServer::start_with(open_sign_up).await;
    assert_eq!(
        sign_up(&server, "owner@example.com", "someone's password")
            .await
            .status,
        200
    );
    let resent = post_email(&server, "/auth/verify/resend", "owner@example.com").await;
    assert_eq!(resent.status, 200);
    let mail = nth_mail_to(&outbox(&server), "owner@example.com", 2).await;
    assert!(mail.contains("choose your password"), "{mail}");
    let chosen = confirm_reset(&server, &token_in(&mail), "the owner's password").await;
    assert_eq!(chosen.status, 204, "{}", chosen.text());
    let owner = user(&server, "owner@example.com").await.unwrap();
    assert_eq!(owner.status, Status::Active);
    assert!(owner.email_verified);
    assert_eq!(
        sign_in(&server, "owner@example.com", "the owner's password")
            .await
            .status,
        200
    );
    sign_in(&server, "owner@example.com", "someone's password")
        .await
        .assert_error(401);
    // The sign-up's own link died with the activation.
    let first = mail_to(&outbox(&server), "owner@example.com").await;
    assert_eq!(
        verify(&server, &token_in(&first)).await.assert_error(400)["context"]["reason"],
        "invalid"
    );
}

// ---- Rule 5: pending sign-ups ----

#[tokio::test]
async fn a_later_sign_up_for_a_pending_address_cannot_choose_the_victims_password() {
    let server = TestServer::start_with(open_sign_up).await;
    let outbox = outbox(&server);
    assert_eq!(
        sign_up(&server, "victim@example.com", "victim password")
            .await
            .status,
        200
    );
    let victim_link = token_in(&mail_to(&outbox, "victim@example.com").await);
    // The attacker signs up with the victim's address after the victim.
    assert_eq!(
        sign_up(&server, "victim@example.com", "attacker password")
            .await
            .status,
        200
    );
    let attacker_link = token_in(&nth_mail_to(&outbox, "victim@example.com", 2).await);

    let verified = verify(&server, &victim_link).await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert_eq!(
        sign_in(&server, "victim@example.com", "victim password")
            .await
            .status,
        200
    );
    sign_in(&server, "victim@example.com", "attacker password")
        .await
        .assert_error(401);
    // The other attempt's link died with the activation.
    assert_eq!(
        verify(&server, &attacker_link).await.assert_error(400)["context"]["reason"],
        "invalid"
    );
    assert_eq!(
        sign_in(&server, "victim@example.com", "victim password")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn activation_ends_what_an_earlier_sign_up_made_while_pending() {
    let server = TestServer::start_with(|config| {
        config.signup.open = true;
        config.signup.allow_unverified_sign_in = true;
    })
    .await;
    let outbox = outbox(&server);
    // The attacker signs up first with the victim's address, signs in while pending and
    // makes every kind of credential it can.
    assert_eq!(
        sign_up(&server, "victim@example.com", "attacker password")
            .await
            .status,
        200
    );
    let attacker =
        SignedIn::from_response(&sign_in(&server, "victim@example.com", "attacker password").await);
    let attacker_api_token = create_api_token(&server, &attacker).await;
    assert_eq!(
        create_sub_user(&server, &attacker, "attackers-sub@example.com")
            .await
            .status,
        201
    );
    assert_eq!(
        sign_in(&server, "attackers-sub@example.com", PASSWORD)
            .await
            .status,
        200
    );

    assert_eq!(
        sign_up(&server, "victim@example.com", "victim password")
            .await
            .status,
        200
    );
    let victim_link = token_in(&nth_mail_to(&outbox, "victim@example.com", 2).await);
    assert_eq!(verify(&server, &victim_link).await.status, 200);

    for credential in [
        &attacker.signed_token,
        &attacker.api_token,
        &attacker_api_token,
    ] {
        assert_eq!(server.current_user_status(credential).await, 401);
    }
    assert!(user(&server, "attackers-sub@example.com").await.is_none());
    sign_in(&server, "attackers-sub@example.com", PASSWORD)
        .await
        .assert_error(401);
    sign_in(&server, "victim@example.com", "attacker password")
        .await
        .assert_error(401);
    assert_eq!(
        sign_in(&server, "victim@example.com", "victim password")
            .await
            .status,
        200
    );
    let attacker_link = token_in(&mail_to(&outbox, "victim@example.com").await);
    verify(&server, &attacker_link).await.assert_error(400);
}

// ---- Rule 7: unauthenticated hashing ----

/// A server whose hash queue takes no job at all (a capacity of 0, below what config
/// validation allows): whatever reaches it is refused with 503 at once, so a 400 proves a
/// request never got there.
async fn server_whose_hashers_refuse_everything() -> TestServer {
    TestServer::start_with(|config| {
        config.password.hasher_threads = 1;
        config.password.queue_capacity = 0;
    })
    .await
}

#[tokio::test]
async fn reset_confirmation_and_verification_look_the_token_up_before_any_hashing() {
    let server = server_whose_hashers_refuse_everything().await;
    server
        .add_user("target@example.com", Role::User, Status::Active)
        .await;
    let target = server
        .add_user("other-target@example.com", Role::User, Status::Active)
        .await;
    let now = server.now();
    // An expired reset token and a used one (each user holds one reset link at a time),
    // written as a reset request writes them.
    for (address, token, expires_at) in [
        ("target@example.com", "expired-token", now - 10),
        ("other-target@example.com", "used-token", now + 600),
    ] {
        let issued = server
            .app
            .store
            .issue_email_token(
                address,
                token_hash(token),
                move |_| {
                    Some(LinkToIssue {
                        purpose: EmailTokenPurpose::ResetPassword,
                        expires_at,
                        mail: OutgoingMail {
                            to: "fixture@example.com".into(),
                            subject: "Written by the test".into(),
                            text: latchkey::model::Secret::new(String::new()),
                            html: latchkey::model::Secret::new(String::new()),
                        },
                    })
                },
                now,
            )
            .await
            .unwrap();
        assert!(issued);
    }
    let used = server
        .app
        .store
        .consume_email_token(
            &token_hash("used-token"),
            EmailTokenPurpose::ResetPassword,
            latchkey::store::TokenAction::SetPassword(target.password_hash.clone().unwrap()),
            now,
        )
        .await
        .unwrap();
    assert!(used.is_ok());

    for (token, reason) in [
        ("no-such-token", "invalid"),
        ("expired-token", "expired"),
        ("used-token", "used"),
    ] {
        let answer = confirm_reset(&server, token, "a fine new password").await;
        assert_eq!(
            answer.assert_error(400)["context"]["reason"],
            reason,
            "{token}: a bad token must not wait for (or be refused by) the hashers"
        );
        let form = server
            .request("POST", "/auth/password-reset/confirm")
            .form(&[
                ("password-update-token", token),
                ("new-password", "a fine new password"),
            ])
            .send()
            .await;
        assert_eq!(form.status, 400, "{}", form.text());
    }
    verify(&server, "no-such-token").await.assert_error(400);
    // A usable token does reach the hashers, which refuse it: the setup would have shown
    // any hash above.
    post_email(&server, "/auth/password-reset", "target@example.com").await;
    let token = token_in(&mail_to(&outbox(&server), "target@example.com").await);
    confirm_reset(&server, &token, "a fine new password")
        .await
        .assert_error(503);
}

#[tokio::test]
async fn reset_confirmation_is_limited_per_network_before_the_hash_queue() {
    let server = TestServer::start_with(|config| {
        config.signup.requests_per_network = 1;
    })
    .await;
    server
        .add_user("limited@example.com", Role::User, Status::Active)
        .await;
    // The network's one request a minute goes to the reset request itself.
    assert_eq!(
        post_email(&server, "/auth/password-reset", "limited@example.com")
            .await
            .status,
        200
    );
    let token = token_in(&mail_to(&outbox(&server), "limited@example.com").await);
    let refused = confirm_reset(&server, &token, "a fine new password").await;
    refused.assert_error(429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    // Refused before hashing: nothing changed, and the link still works later.
    assert_eq!(
        sign_in(&server, "limited@example.com", PASSWORD)
            .await
            .status,
        200
    );
    let form = server
        .request("POST", "/auth/password-reset/confirm")
        .form(&[
            ("password-update-token", token.as_str()),
            ("new-password", "a fine new password"),
        ])
        .send()
        .await;
    assert_eq!(form.status, 429, "{}", form.text());
    assert!(form.text().contains("too many"), "{}", form.text());
    // Sign-up, the other unauthenticated route that hashes, is held back alike.
    let closed_server = TestServer::start_with(|config| {
        config.signup.open = true;
        config.signup.requests_per_network = 1;
    })
    .await;
    assert_eq!(
        sign_up(&closed_server, "first@example.com", PASSWORD)
            .await
            .status,
        200
    );
    sign_up(&closed_server, "second@example.com", PASSWORD)
        .await
        .assert_error(429);
}

// ---- Rule 10: the same answer in the same time ----

#[tokio::test]
async fn reset_and_resend_answer_before_any_per_address_work() {
    let server = TestServer::start_with(open_sign_up).await;
    server
        .add_user("known@example.com", Role::User, Status::Active)
        .await;
    assert_eq!(
        sign_up(&server, "pending@example.com", PASSWORD)
            .await
            .status,
        200
    );
    // The worker writes a message's file before it takes the message off the queue: wait
    // for the queue, not the file, before checking that the queue stays empty.
    wait_for_an_empty_mail_queue(&server).await;
    mail_to(&outbox(&server), "pending@example.com").await;
    let mails_before = delivered_mails(&outbox(&server)).len();

    let held = server.app.after_answer.hold().await;
    let mut answers: Vec<(String, TestResponse)> = Vec::new();
    for (path, address) in [
        ("/auth/password-reset", "known@example.com"),
        ("/auth/password-reset", "unknown@example.com"),
        ("/auth/verify/resend", "pending@example.com"),
        ("/auth/verify/resend", "unknown@example.com"),
    ] {
        let answer = tokio::time::timeout(MAIL_WAIT, post_email(&server, path, address))
            .await
            .expect("the answer does not wait for the per-address work");
        answers.push((format!("{path} {address}"), answer));
    }
    for (what, answer) in &answers {
        assert_eq!(answer.status, 200, "{what}: {}", answer.text());
        assert_eq!(answer.json, json!({ "success": true }), "{what}");
    }
    // Answered, and still nothing looked up, issued or queued for anyone.
    assert!(
        server
            .app
            .store
            .due_mails(i64::MAX, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(delivered_mails(&outbox(&server)).len(), mails_before);

    drop(held);
    let reset = mail_to(&outbox(&server), "known@example.com").await;
    assert!(reset.contains("Reset your password"), "{reset}");
    let resent = nth_mail_to(&outbox(&server), "pending@example.com", 2).await;
    assert!(resent.contains("Confirm your email address"), "{resent}");
    settle(&server, "known@example.com").await;
    assert_eq!(mails_to(&outbox(&server), "unknown@example.com"), 0);
}

// ---- Rule 15 and the reset mail and password rules ----

#[tokio::test]
async fn sign_ups_never_verified_are_purged_with_what_they_made_their_links_and_mail() {
    // Mail to a closed port stays queued, so the purge can be seen to take it.
    let closed = ReservedPort::new();
    let closed_port = closed.port;
    let server = TestServer::start_with(|config| {
        config.signup.open = true;
        config.signup.allow_unverified_sign_in = true;
        config.signup.pending_lifetime_days = 7;
        config.email.transport = EmailTransport::Smtp;
        config.email.smtp_host = "127.0.0.1".into();
        config.email.smtp_port = closed_port;
        config.email.smtp_tls = SmtpTls::None;
    })
    .await;
    let store = &server.app.store;
    for address in ["stale@example.com", "fresh@example.com"] {
        assert_eq!(
            sign_up(&server, address, "pending password").await.status,
            200
        );
    }
    let squatter =
        SignedIn::from_response(&sign_in(&server, "stale@example.com", "pending password").await);
    assert_eq!(
        create_sub_user(&server, &squatter, "stale-sub@example.com")
            .await
            .status,
        201
    );
    let eight_days_ago = server.now() - 8 * 86_400;
    let mut stale = user(&server, "stale@example.com").await.unwrap();
    stale.created = eight_days_ago;
    store.replace_user(&stale).await.unwrap();
    // An old account whose owner proved the address stays, as does a fresh sign-up.
    let proved = store
        .insert_user(
            NewUser {
                email_verified: true,
                ..NewUser::new(
                    EmailAddress::parse("old-proved@example.com").unwrap(),
                    Role::User,
                    Status::Active,
                )
            },
            eight_days_ago,
        )
        .await
        .unwrap();
    let queued_to = async |address: &str| {
        store
            .due_mails(i64::MAX, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|queued| queued.mail.to == address)
            .count()
    };
    assert_eq!(queued_to("stale@example.com").await, 1);
    let stale_link = token_in(
        &store
            .due_mails(i64::MAX, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|queued| queued.mail.to == "stale@example.com")
            .unwrap()
            .mail
            .text
            .into_exposed_secret(),
    );

    let purged = purge_unproved_sign_ups(&server.app, server.now())
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(user(&server, "stale@example.com").await.is_none());
    assert!(user(&server, "stale-sub@example.com").await.is_none());
    assert_eq!(queued_to("stale@example.com").await, 0);
    assert_eq!(server.current_user_status(&squatter.api_token).await, 401);
    assert!(store.user_by_id(proved.id).await.unwrap().is_some());
    assert!(user(&server, "fresh@example.com").await.is_some());
    assert_eq!(queued_to("fresh@example.com").await, 1);
    // Nothing of the old account answers, its link included.
    assert_eq!(
        verify(&server, &stale_link).await.assert_error(400)["context"]["reason"],
        "invalid"
    );
    sign_in(&server, "stale@example.com", "pending password")
        .await
        .assert_error(401);
    assert_eq!(
        purge_unproved_sign_ups(&server.app, server.now())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_reset_mail_states_its_lifetime_and_the_new_password_meets_every_rule() {
    let server = TestServer::start_with(|config| {
        config.signup.reset_token_lifetime_seconds = 900;
        config.password.min_length = 8;
    })
    .await;
    server
        .add_user("rules@example.com", Role::User, Status::Active)
        .await;
    post_email(&server, "/auth/password-reset", "rules@example.com").await;
    let mail = mail_to(&outbox(&server), "rules@example.com").await;
    assert!(mail.contains("This link works for 15 minutes."), "{mail}");
    let token = token_in(&mail);
    // The link stands whole on the line right after the one that says to open it.
    let lines: Vec<&str> = mail.lines().collect();
    let invitation = lines
        .iter()
        .position(|line| line.ends_with("open this link to choose a new one:"))
        .unwrap_or_else(|| panic!("no invitation to open the link in {mail}"));
    let link_line = lines[invitation + 1..]
        .iter()
        .find(|line| !line.is_empty())
        .unwrap();
    assert!(
        link_line.starts_with("http") && link_line.ends_with(&token),
        "{mail}"
    );
    for refused in [
        "seven77".to_owned(),
        "x".repeat(73),
        "rules@example.com".to_owned(),
        " RULES@example.com ".to_owned(),
    ] {
        let answer = confirm_reset(&server, &token, &refused).await;
        assert_eq!(
            answer.assert_error(400)["context"]["field"],
            "new-password",
            "{refused:?}"
        );
        if refused.chars().count() < 8 || refused.chars().count() > 72 {
            assert_eq!(
                answer.json["error"],
                "new-password must be 8 to 72 characters"
            );
        }
    }
    // A refused password leaves the link usable.
    assert_eq!(
        confirm_reset(&server, &token, "a good new password")
            .await
            .status,
        204
    );
    assert_eq!(
        sign_in(&server, "rules@example.com", "a good new password")
            .await
            .status,
        200
    );
}

/// The second review: a reset link mailed before a password change or a suspension was
/// still good afterwards, for whoever had intercepted it.
#[tokio::test]
async fn a_password_change_or_a_suspension_ends_the_reset_links_mailed_before_it() {
    let server = TestServer::start().await;
    let user = server
        .add_user("links@example.com", Role::User, Status::Active)
        .await;
    post_email(&server, "/auth/password-reset", "links@example.com").await;
    let first_link = token_in(&mail_to(&outbox(&server), "links@example.com").await);
    let session = sign_in(&server, "links@example.com", PASSWORD).await;
    let signed_token = session.json["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let changed = server
        .request("PUT", "/auth/current/password")
        .bearer(&signed_token)
        .json(&json!({ "old-password": PASSWORD, "new-password": "changed by the owner" }))
        .send()
        .await;
    assert_eq!(changed.status, 204, "{}", changed.text());
    let refused = confirm_reset(&server, &first_link, "the interceptor's choice").await;
    assert_eq!(
        refused.assert_error(400)["context"]["reason"],
        "invalid",
        "{}",
        refused.text()
    );

    post_email(&server, "/auth/password-reset", "links@example.com").await;
    let second_link = token_in(&nth_mail_to(&outbox(&server), "links@example.com", 2).await);
    server
        .app
        .store
        .update_user(user.id, server.now(), |user| {
            user.status = Status::Suspended
        })
        .await
        .unwrap();
    let refused = confirm_reset(&server, &second_link, "the interceptor's choice").await;
    assert_eq!(refused.assert_error(400)["context"]["reason"], "invalid");
}

/// The second review: an account made from a provider's unproved email (no password; it
/// signs in through the provider) could have its address proved by mail, after which the
/// address's owner's own provider sign-in was linked into the account someone else held.
/// Resend sends such an account nothing.
#[tokio::test]
async fn an_account_made_from_an_unproved_provider_email_gets_no_verification_link() {
    let server = TestServer::start().await;
    server
        .add_user("control@example.com", Role::User, Status::Active)
        .await;
    server
        .app
        .store
        .insert_user(
            NewUser {
                ..NewUser::new(
                    EmailAddress::parse("claimed@example.com").unwrap(),
                    Role::User,
                    Status::Active,
                )
            },
            server.now(),
        )
        .await
        .unwrap();
    let answer = post_email(&server, "/auth/verify/resend", "claimed@example.com").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    settle(&server, "control@example.com").await;
    assert_eq!(mails_to(&outbox(&server), "claimed@example.com"), 0);
}
