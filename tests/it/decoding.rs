//! Bad input of every kind gets the documented error shape and a 4xx, never a 500.

use latchkey::model::{Role, Status};
use serde_json::json;

use crate::support::{PASSWORD, TestServer};

#[tokio::test]
async fn every_field_with_a_wrong_type_is_a_400_naming_it() {
    let server = TestServer::start().await;
    server
        .add_user("types@example.com", Role::User, Status::Active)
        .await;
    let base = json!({ "email": "types@example.com", "password": PASSWORD });
    let cases = [
        ("email", json!(5)),
        ("email", json!(["a@b.com"])),
        ("password", json!(true)),
        ("password", json!({ "x": 1 })),
        ("current-user", json!(1)),
        ("logout-other", json!("yes")),
        ("long-term-token", json!(1)),
        ("ret-url", json!(false)),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let response = server
            .request("POST", "/auth/sign-in")
            .json(&body)
            .send()
            .await;
        let error = response.assert_error(400);
        assert_eq!(error["context"]["field"], field, "{field} = {value}");
    }
    let form = server
        .request("POST", "/auth/sign-in")
        .form(&[
            ("email", "types@example.com"),
            ("password", PASSWORD),
            ("logout-other", "1"),
        ])
        .send()
        .await;
    assert_eq!(form.assert_error(400)["context"]["field"], "logout-other");
    let missing = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(missing.assert_error(400)["context"]["field"], "email");
    let too_long = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "types@example.com", "password": "x".repeat(73) }))
        .send()
        .await;
    assert_eq!(too_long.assert_error(400)["context"]["field"], "password");
    let bad_email = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "not-an-email", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(bad_email.assert_error(400)["context"]["field"], "email");
}

#[tokio::test]
async fn malformed_oversized_and_foreign_bodies_get_their_statuses() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", b"{\"email\":".to_vec(), 400),
        ("application/json", b"[1,2]".to_vec(), 400),
        ("application/json", vec![b' '; 65 * 1024], 413),
        ("text/plain", b"email=a".to_vec(), 415),
        ("application/json; charset=iso-8859-1", b"{}".to_vec(), 415),
        (
            "application/x-www-form-urlencoded",
            b"email=\xff\xfe".to_vec(),
            400,
        ),
    ];
    for (content_type, body, status) in cases {
        let response = server
            .request("POST", "/auth/sign-in")
            .raw_body(content_type, body)
            .send()
            .await;
        response.assert_error(status);
    }
    // An empty body without a Content-Type is `{}`: the email is then missing.
    let empty = server.request("POST", "/auth/sign-in").send().await;
    assert_eq!(empty.assert_error(400)["context"]["field"], "email");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_404_and_405() {
    let server = TestServer::start().await;
    server
        .request("GET", "/nothing-here")
        .send()
        .await
        .assert_error(404);
    server
        .request("GET", "/user/current/")
        .send()
        .await
        .assert_error(404);
    let wrong_method = server.request("DELETE", "/auth/sign-in").send().await;
    wrong_method.assert_error(405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    // The method is checked before the credential: no credential, still 405.
    let no_credential = server.request("DELETE", "/user/7").send().await;
    no_credential.assert_error(405);
    assert_eq!(no_credential.header("allow"), Some("GET, PUT"));
    let health = server.request("GET", "/health").send().await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json, json!({ "status": "ok" }));
    assert_eq!(health.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(health.header("referrer-policy"), Some("no-referrer"));
    // HEAD, for monitors: the same status and headers, no body.
    let head = server.request("HEAD", "/health").send().await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(health.body.len().to_string().as_str())
    );
    let wrong_method = server.request("POST", "/health").send().await;
    assert_eq!(wrong_method.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let server = TestServer::start_with(|config| {
        config.http.cors_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    let preflight = server
        .request("OPTIONS", "/auth/sign-in")
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(preflight.header("vary"), Some("Origin"));
    let listed = server
        .request("GET", "/health")
        .header("Origin", "https://app.example.com")
        .send()
        .await;
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );

    let unlisted = server
        .request("OPTIONS", "/auth/sign-in")
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await;
    unlisted.assert_error(405);
    assert!(unlisted.header("access-control-allow-origin").is_none());
    let unlisted_get = server
        .request("GET", "/health")
        .header("Origin", "https://evil.example")
        .send()
        .await;
    assert!(unlisted_get.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn health_answers_503_while_draining() {
    let server = TestServer::start().await;
    assert_eq!(server.request("GET", "/health").send().await.status, 200);
    server.app.start_draining();
    let draining = server.request("GET", "/health").send().await;
    draining.assert_error(503);
    assert_eq!(draining.header("retry-after"), Some("1"));
}
