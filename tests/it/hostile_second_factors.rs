//! Holes a hostile client found where second factors meet the rest (issue #19's hostile
//! review): each test reproduces one over HTTP against a real server and pins its fix.

use latchkey::model::{Role, Status};
use serde_json::json;

use crate::mail_support::token_in;
use crate::passkey_authenticator::SoftwareAuthenticator;
use crate::passkeys::{PUBLIC_URL, honest, register, sign_in_with};
use crate::second_factor::{EMAIL, STEP, enrol, pyotp_code, with_code};
use crate::security_signup::{nth_mail_to, outbox, sign_in, sign_up, verify};
use crate::support::{PASSWORD, SignedIn, TestServer};

const VICTIM_PASSWORD: &str = "the victim's own password";

/// Someone who signs up first with another's address, and signs in while the sign-up is
/// pending (`allow_unverified_sign_in`), adds TOTP and a passkey. When the address's owner
/// signs up and proves the address, those go with the attacker's sessions: else the
/// attacker's passkey would sign the owner's account in with no password, and the
/// attacker's TOTP would lock the owner out.
#[tokio::test]
async fn activation_removes_the_second_factors_added_while_the_sign_up_was_pending() {
    let server = TestServer::start_with(|config| {
        config.server.public_url = Some(PUBLIC_URL.parse().unwrap());
        config.signup.open = true;
        config.signup.allow_unverified_sign_in = true;
    })
    .await;
    let outbox = outbox(&server);
    assert_eq!(
        sign_up(&server, "victim@example.com", PASSWORD)
            .await
            .status,
        200
    );
    let attacker = SignedIn::from_response(&sign_in(&server, "victim@example.com", PASSWORD).await);
    enrol(&server, &attacker).await;
    let mut attackers_authenticator = SoftwareAuthenticator::new();
    register(
        &server,
        &attacker,
        &mut attackers_authenticator,
        "attacker's key",
    )
    .await;

    assert_eq!(
        sign_up(&server, "victim@example.com", VICTIM_PASSWORD)
            .await
            .status,
        200
    );
    let victim_link = token_in(&nth_mail_to(&outbox, "victim@example.com", 2).await);
    assert_eq!(verify(&server, &victim_link).await.status, 200);

    // The owner's password alone signs in: no second factor of the attacker's is asked for.
    let victim = sign_in(&server, "victim@example.com", VICTIM_PASSWORD).await;
    assert_eq!(victim.status, 200, "{}", victim.text());
    let profile = server
        .request("GET", "/user/current")
        .bearer(victim.json["api-token"].as_str().unwrap())
        .send()
        .await;
    assert_eq!(
        profile.json["second-factors"],
        json!({ "totp": false, "passkeys": 0, "recovery-codes-left": 0 })
    );
    // And the attacker's passkey signs nobody in.
    let passwordless = sign_in_with(&server, &mut attackers_authenticator, &honest()).await;
    let body = passwordless.assert_error(401);
    assert_eq!(body["code"], 40104, "{body}");
}

/// A 6-digit code that none of the steps the server accepts now (the current one and one
/// either side) shows.
fn wrong_code(server: &TestServer, secret: &str, nth: u32) -> String {
    let accepted: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|offset| pyotp_code(secret, server.now() + offset))
        .collect();
    (nth..)
        .map(|candidate| format!("{:06}", candidate * 7919 % 1_000_000))
        .find(|candidate| !accepted.contains(candidate))
        .unwrap()
}

/// With the password and not the device, an attacker had 4 guesses per first step from one
/// network: the right password at the first step wiped the (account, network) bucket that
/// the wrong codes had drained. Now only an opened session clears it, so the 5th wrong code
/// from a network is its last, however many first steps come between.
#[tokio::test]
async fn a_right_password_at_the_first_step_forgives_no_wrong_code() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let session = server.sign_in(EMAIL).await;
    let enrolment = enrol(&server, &session).await;
    server.advance_clock(STEP);

    let mut guesses = 0;
    for _ in 0..2 {
        let first = server.sign_in_with_password(EMAIL, PASSWORD).await;
        assert_eq!(first.status, 403, "{}", first.text());
        let mfa_token = first.json["context"]["mfa-token"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..4 {
            if guesses == 5 {
                break;
            }
            let guess = with_code(
                &server,
                &mfa_token,
                &wrong_code(&server, &enrolment.secret, guesses),
            )
            .await;
            assert_eq!(guess.status, 403, "{}", guess.text());
            assert_eq!(guess.json["code"], 40331);
            guesses += 1;
        }
    }
    assert_eq!(guesses, 5);
    // The network's five are spent: the password, right as it is, waits too.
    server
        .sign_in_with_password(EMAIL, PASSWORD)
        .await
        .assert_error(429);
}

/// A reset link proves the mailbox, not the device: the new password still gets the second
/// step, and the TOTP and its recovery codes stay (held, pinned here).
#[tokio::test]
async fn a_password_reset_keeps_the_second_factor() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let session = server.sign_in(EMAIL).await;
    let enrolment = enrol(&server, &session).await;
    server.advance_clock(STEP);
    let asked = server
        .request("POST", "/auth/password-reset")
        .json(&json!({ "email": EMAIL }))
        .send()
        .await;
    assert_eq!(asked.status, 200, "{}", asked.text());
    let link = token_in(&nth_mail_to(&outbox(&server), EMAIL, 1).await);
    let confirmed = server
        .request("PUT", "/auth/current/password")
        .json(&json!({ "password-update-token": link, "new-password": VICTIM_PASSWORD }))
        .send()
        .await;
    assert_eq!(confirmed.status, 204, "{}", confirmed.text());

    let first = sign_in(&server, EMAIL, VICTIM_PASSWORD).await;
    let body = first.assert_error(403);
    assert_eq!(body["context"]["methods"], json!(["totp", "recovery-code"]));
    let mfa_token = body["context"]["mfa-token"].as_str().unwrap().to_owned();
    let code = pyotp_code(&enrolment.secret, server.now());
    assert_eq!(with_code(&server, &mfa_token, &code).await.status, 200);
}
