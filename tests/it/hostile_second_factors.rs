//! Holes a hostile client found where second factors meet the rest (issue #19's hostile
//! review): each test reproduces one over HTTP against a real server and pins its fix.

use serde_json::json;

use crate::mail_support::token_in;
use crate::passkey_authenticator::SoftwareAuthenticator;
use crate::passkeys::{PUBLIC_URL, honest, register, sign_in_with};
use crate::second_factor::enrol;
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
