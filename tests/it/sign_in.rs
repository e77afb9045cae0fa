//! `POST /auth/sign-in`: JSON and form, every documented field, the ret-url rule, statuses.

use latchkey::auth::password::HashCost;
use latchkey::model::{Role, Status};
use latchkey::rfc3339::parse_rfc3339;
use serde_json::json;

use crate::support::{PASSWORD, TestServer};

#[tokio::test]
async fn json_sign_in_answers_every_documented_field() {
    let server = TestServer::start().await;
    let user = server
        .add_user("Ada@Example.com", Role::User, Status::Active)
        .await;
    let response = server
        .request("POST", "/auth/sign-in")
        .json(&json!({
            "email": " ada@example.COM ",
            "password": PASSWORD,
            "current-user": "someone@example.com",
            "logout-other": false,
            "long-term-token": false,
            "ret-url": "/after?x=1",
        }))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = &response.json;
    let api_token = body["api-token"].as_str().unwrap();
    assert_eq!(api_token.len(), 64);
    assert!(
        api_token
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
    );
    assert_eq!(body["email"], "Ada@Example.com");
    assert_eq!(body["user-id"], user.id);
    assert_eq!(body["status"], "active");
    assert_eq!(body["current-user"], "someone@example.com");
    assert_eq!(body["ret-url"], "/after?x=1");
    assert_eq!(body["oauth-provider-tokens"], json!([]));
    let token = body["jwt-token"]["token"].as_str().unwrap();
    assert!(token.starts_with("v4.public."));
    let expire = parse_rfc3339(body["jwt-token"]["expire"].as_str().unwrap()).unwrap();
    let short_term = 3 * 3600;
    assert!((expire - server.now() - short_term).abs() < 10);
    let cookie = response.header("set-cookie").unwrap();
    assert!(cookie.starts_with(&format!("jwt={token};")), "{cookie}");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=10800"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"));
    assert_eq!(response.header("cache-control"), Some("no-store"));

    // Absent optional fields are omitted; the default lifetime is long-term (14 days).
    let response = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert!(response.json.get("ret-url").is_none());
    assert!(response.json.get("current-user").is_none());
    assert!(
        response
            .header("set-cookie")
            .unwrap()
            .contains("Max-Age=1209600")
    );
}

#[tokio::test]
async fn a_form_with_ret_url_gets_a_303_with_the_cookie() {
    let server = TestServer::start().await;
    server
        .add_user("form@example.com", Role::User, Status::Active)
        .await;
    let response = server
        .request("POST", "/auth/sign-in")
        .form(&[
            ("email", "form@example.com"),
            ("password", PASSWORD),
            ("ret-url", "/home"),
            ("long-term-token", "true"),
        ])
        .send()
        .await;
    assert_eq!(response.status, 303, "{}", response.text());
    assert_eq!(response.header("location"), Some("/home"));
    let cookie = response.header("set-cookie").unwrap();
    let token = cookie.trim_start_matches("jwt=").split(';').next().unwrap();
    let profile = server
        .request("GET", "/user/current")
        .header("Cookie", &format!("jwt={token}"))
        .send()
        .await;
    assert_eq!(profile.status, 200);

    // A form without ret-url answers JSON like the JSON body.
    let response = server
        .request("POST", "/auth/sign-in")
        .form(&[("email", "form@example.com"), ("password", PASSWORD)])
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json["email"], "form@example.com");
}

#[tokio::test]
async fn an_allowed_absolute_ret_url_passes_and_every_bypass_is_refused() {
    let server = TestServer::start_with(|config| {
        config.auth.allowed_return_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    server
        .add_user("ret@example.com", Role::User, Status::Active)
        .await;
    let allowed = server
        .request("POST", "/auth/sign-in")
        .form(&[
            ("email", "ret@example.com"),
            ("password", PASSWORD),
            ("ret-url", "https://app.example.com/in"),
        ])
        .send()
        .await;
    assert_eq!(allowed.status, 303);
    assert_eq!(
        allowed.header("location"),
        Some("https://app.example.com/in")
    );
    for bypass in [
        "//evil.example/",
        "/\\evil.example/",
        "https://app.example.com@evil.example/",
        "https://evil.example/",
        "/ok\u{1}",
        "/ok\r\nSet-Cookie: x=1",
        "http://app.example.com/",
    ] {
        let response = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": "ret@example.com", "password": PASSWORD, "ret-url": bypass }))
            .send()
            .await;
        let body = response.assert_error(400);
        assert_eq!(body["context"]["field"], "ret-url", "{bypass:?}");
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_are_indistinguishable() {
    let server = TestServer::start().await;
    server
        .add_user("known@example.com", Role::User, Status::Active)
        .await;
    let wrong_password = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "known@example.com", "password": "not the password" }))
        .send()
        .await;
    let unknown_email = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "nobody@example.com", "password": "not the password" }))
        .send()
        .await;
    wrong_password.assert_error(401);
    assert_eq!(wrong_password.status, unknown_email.status);
    assert_eq!(wrong_password.body, unknown_email.body);
    assert!(wrong_password.header("set-cookie").is_none());
}

#[tokio::test]
async fn pending_and_suspended_get_403_only_with_the_right_password() {
    let server = TestServer::start().await;
    server
        .add_user("pending@example.com", Role::User, Status::Pending)
        .await;
    server
        .add_user("suspended@example.com", Role::User, Status::Suspended)
        .await;
    for (email, reason) in [
        ("pending@example.com", "pending"),
        ("suspended@example.com", "suspended"),
    ] {
        let wrong = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": email, "password": "wrong password" }))
            .send()
            .await;
        wrong.assert_error(401);
        let right = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await;
        let body = right.assert_error(403);
        assert_eq!(body["context"]["reason"], reason);
    }
}

#[tokio::test]
async fn pending_users_sign_in_when_unverified_sign_in_is_allowed() {
    let server =
        TestServer::start_with(|config| config.signup.allow_unverified_sign_in = true).await;
    server
        .add_user("early@example.com", Role::User, Status::Pending)
        .await;
    let response = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "early@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json["status"], "pending");
}

#[tokio::test]
async fn logout_other_ends_every_other_session() {
    let server = TestServer::start().await;
    server
        .add_user("many@example.com", Role::User, Status::Active)
        .await;
    let first = server.sign_in("many@example.com").await;
    let second = server.sign_in("many@example.com").await;
    let third = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "many@example.com", "password": PASSWORD, "logout-other": true }))
        .send()
        .await;
    assert_eq!(third.status, 200);
    let third_token = third.json["jwt-token"]["token"].as_str().unwrap();
    for ended in [&first.signed_token, &second.signed_token, &first.api_token] {
        let response = server
            .request("GET", "/user/current")
            .bearer(ended)
            .send()
            .await;
        response.assert_error(401);
    }
    let alive = server
        .request("GET", "/user/current")
        .bearer(third_token)
        .send()
        .await;
    assert_eq!(alive.status, 200);
}

#[tokio::test]
async fn a_hash_with_other_parameters_is_replaced_at_sign_in() {
    let server = TestServer::start().await;
    let older_cost = HashCost {
        memory_kib: 128,
        iterations: 1,
        parallelism: 1,
    };
    let user = server
        .add_user_with_cost("old@example.com", Role::User, Status::Active, older_cost)
        .await;
    assert!(
        user.password_hash
            .as_ref()
            .unwrap()
            .expose_secret()
            .contains("m=128")
    );
    server.sign_in("old@example.com").await;
    let stored = server.app.store.user_by_id(user.id).await.unwrap().unwrap();
    let hash = stored.password_hash.unwrap().into_exposed_secret();
    assert!(hash.contains("m=64,t=1,p=1"), "not re-hashed");
    // The new hash still verifies.
    server.sign_in("old@example.com").await;
}
