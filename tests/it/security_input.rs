//! The tightened input rules of API.md section 15, each reproduced as the attack it stops:
//! addresses that are not bare (rule 15), names and undecodable forms (rule 16), ambiguous
//! requests (rule 17), login CSRF (rule 11), and the header hardening beside them
//! (`X-Forwarded-For` with ports, `Origin` with userinfo, `X-Frame-Options`).

use std::time::Duration;

use latchkey::model::{Role, Status};
use serde_json::{Value, json};

use crate::mail_support::wait_for_mail;
use crate::support::{PASSWORD, TestResponse, TestServer};

const MAIL_WAIT: Duration = Duration::from_secs(20);

fn field_of(response: &TestResponse) -> Value {
    response.assert_error(400)["context"]["field"].clone()
}

async fn sign_up(server: &TestServer, body: Value) -> TestResponse {
    server
        .request("POST", "/auth/sign-up")
        .json(&body)
        .send()
        .await
}

async fn create_sub_user(server: &TestServer, parent_token: &str, body: Value) -> TestResponse {
    server
        .request("POST", "/user")
        .bearer(parent_token)
        .json(&body)
        .send()
        .await
}

// Rule 15: addresses.

/// Addresses that an older build stored as new accounts although mail for them reaches
/// alice@example.com (or a look-alike that Unicode lowercasing turns into kate@example.com).
const NOT_BARE: [&str; 8] = [
    "\"alice\"@example.com",
    "<alice@example.com>",
    "Alice<alice@example.com>",
    "alice@example.com(comment)",
    "alice@[192.0.2.1]",
    "\u{212A}ate@example.com",
    "al\u{200B}ice@example.com",
    "al\u{AD}ice@example.com",
];

#[tokio::test]
async fn sign_up_refuses_every_address_that_is_not_bare() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    server.add_user("alice@example.com", Role::User, Status::Active);
    server.add_user("kate@example.com", Role::User, Status::Active);
    for address in NOT_BARE {
        let response = sign_up(&server, json!({ "email": address, "password": PASSWORD })).await;
        assert_eq!(field_of(&response), "email", "{address:?}");
    }
    let too_long = format!("{}@example.com", "a".repeat(65));
    let response = sign_up(&server, json!({ "email": too_long, "password": PASSWORD })).await;
    let body = response.assert_error(400);
    assert_eq!(body["context"]["field"], "email");
    assert!(body["error"].as_str().unwrap().contains("254"), "{body}");
    // No account was made for any of them: only the two above exist.
    assert_eq!(server.app.store.all_users().unwrap().len(), 2);
}

#[tokio::test]
async fn sub_users_resend_and_reset_refuse_addresses_that_are_not_bare() {
    let server = TestServer::start().await;
    server.add_user("alice@example.com", Role::User, Status::Active);
    server.add_user("parent@example.com", Role::User, Status::Active);
    let parent = server.sign_in("parent@example.com").await;
    for address in NOT_BARE {
        let created = create_sub_user(
            &server,
            &parent.signed_token,
            json!({ "email": address, "password": PASSWORD }),
        )
        .await;
        assert_eq!(field_of(&created), "email", "POST /user {address:?}");
        for path in ["/auth/verify/resend", "/auth/password-reset"] {
            let response = server
                .request("POST", path)
                .json(&json!({ "email": address }))
                .send()
                .await;
            assert_eq!(field_of(&response), "email", "{path} {address:?}");
        }
    }
}

#[tokio::test]
async fn sign_in_with_an_address_that_is_not_bare_is_a_400_naming_email() {
    let server = TestServer::start().await;
    server.add_user("alice@example.com", Role::User, Status::Active);
    for address in NOT_BARE {
        let response = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": address, "password": PASSWORD }))
            .send()
            .await;
        assert_eq!(field_of(&response), "email", "{address:?}");
    }
}

#[tokio::test]
async fn the_domain_is_stored_in_ascii_and_the_address_keeps_no_unicode_folding() {
    let server = TestServer::start().await;
    server.add_user("parent@example.com", Role::User, Status::Active);
    let parent = server.sign_in("parent@example.com").await;
    let created = create_sub_user(
        &server,
        &parent.signed_token,
        json!({ "email": "Kate@Bücher.example", "password": PASSWORD }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json["username"], "kate@xn--bcher-kva.example");
    assert_eq!(created.json["email"], "Kate@xn--bcher-kva.example");
    // The Unicode spelling of the same domain is the same account.
    let again = create_sub_user(
        &server,
        &parent.signed_token,
        json!({ "email": "kate@bücher.EXAMPLE", "password": PASSWORD }),
    )
    .await;
    again.assert_error(409);
    // A non-ASCII capital is not folded: ÄRGER and ärger are two addresses.
    for (address, status) in [("Ärger@example.com", 201), ("ärger@example.com", 201)] {
        let response = create_sub_user(
            &server,
            &parent.signed_token,
            json!({ "email": address, "password": PASSWORD }),
        )
        .await;
        assert_eq!(response.status, status, "{address}: {}", response.text());
        assert_eq!(response.json["username"], address);
    }
}

#[tokio::test]
async fn mail_goes_to_the_address_the_uniqueness_check_used() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let response = sign_up(
        &server,
        json!({ "email": "  Fresh@Example.COM ", "password": PASSWORD }),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let outbox = server.data_dir.path().join("outbox");
    let mails = wait_for_mail(&outbox, 1, MAIL_WAIT).await;
    assert!(
        mails[0].contains("To: fresh@example.com\r\n"),
        "{}",
        mails[0]
    );
}

// Rule 16: names and fields.

#[tokio::test]
async fn sign_up_applies_the_name_rule_of_every_other_route() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let long_name = "n".repeat(256);
    for (field, value) in [
        ("first-name", long_name.as_str()),
        ("last-name", long_name.as_str()),
        ("first-name", "Eve\u{1b}[31m"),
        ("last-name", "Eve\nAdmin"),
    ] {
        let response = sign_up(
            &server,
            json!({ "email": "eve@example.com", "password": PASSWORD, field: value }),
        )
        .await;
        assert_eq!(field_of(&response), field, "{value:?}");
    }
    let longest = "n".repeat(255);
    let response = sign_up(
        &server,
        json!({ "email": "eve@example.com", "password": PASSWORD, "first-name": longest }),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn a_form_whose_percent_decoding_is_not_utf8_is_a_400() {
    let server = TestServer::start().await;
    server.add_user("ada@example.com", Role::User, Status::Active);
    let session = server.sign_in("ada@example.com").await;
    for body in [
        "first-name=%FF",
        "first-name=Ada&last-name=%C3",
        "first-name=%ED%A0%80",
        "%FF=x",
    ] {
        let response = server
            .request("PUT", "/user/current")
            .bearer(&session.signed_token)
            .raw_body(
                "application/x-www-form-urlencoded",
                body.as_bytes().to_vec(),
            )
            .send()
            .await;
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        response.assert_error(400);
    }
    let profile = server
        .request("GET", "/user/current")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert!(
        profile.json.get("first-name").is_none(),
        "{}",
        profile.text()
    );
    let fine = server
        .request("PUT", "/user/current")
        .bearer(&session.signed_token)
        .raw_body(
            "application/x-www-form-urlencoded",
            b"first-name=J%C3%B6rg+M".to_vec(),
        )
        .send()
        .await;
    assert_eq!(fine.status, 200, "{}", fine.text());
    assert_eq!(fine.json["first-name"], "Jörg M");
}
