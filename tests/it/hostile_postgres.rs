//! A hostile client against the PostgreSQL backend and nodes sharing one database: input
//! that only PostgreSQL would refuse must get the documented 4xx on either backend, and
//! races between nodes must not break the contract's rules. The in-process tests run on the
//! suite's backend (once on redb, once with `TEST_STORE_BACKEND=postgres`); the same request
//! answers the same on both.

use latchkey::model::{Role, Status};
use serde_json::json;

use crate::binary::{BINARY, CHEAP_HASHING, run_with_stdin, start_server_with, terminate};
use crate::support::{PASSWORD, TestServer, fresh_postgres_database};

/// A user id past `i64::MAX` (PostgreSQL's `bigint`) is no id any store can hold: it is an
/// invalid path parameter (400) on every route, not a 500 from the database layer.
#[tokio::test]
async fn a_user_id_beyond_a_signed_64_bit_integer_is_an_invalid_path_parameter() {
    let server = TestServer::start().await;
    server
        .add_user("root@example.com", Role::Root, Status::Active)
        .await;
    let root = server.sign_in("root@example.com").await;
    for (method, path, body) in [
        ("GET", "/user/9223372036854775808", None),
        ("GET", "/user/9999999999999999999", None),
        (
            "PUT",
            "/user/9223372036854775808",
            Some(json!({ "first-name": "Mallory" })),
        ),
        (
            "PUT",
            "/auth/9223372036854775808/password",
            Some(json!({ "password": "a new long password" })),
        ),
    ] {
        let request = server.request(method, path).bearer(&root.signed_token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await;
        let body = response.assert_error(400);
        assert_eq!(body["context"]["parameter"], "user-id", "{method} {path}");
    }
    let response = server
        .request("GET", "/user/9223372036854775807")
        .bearer(&root.signed_token)
        .send()
        .await;
    response.assert_error(404);
}

/// API.md 15.19 on PostgreSQL too: `serve` makes its data directory (the admin socket, the
/// outbox's mail with its links) 0700 at every start, whichever backend holds the data.
#[tokio::test]
async fn a_node_on_postgres_closes_its_data_directory_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let database_url = fresh_postgres_database().await;
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut environment: Vec<(&str, &str)> = CHEAP_HASHING.to_vec();
    environment.extend([
        ("LATCHKEY_STORE__BACKEND", "postgres"),
        ("LATCHKEY_STORE__POSTGRES_URL", database_url.as_str()),
    ]);
    let mut server = start_server_with(&data_dir, &environment);
    let mode = std::fs::metadata(&data_dir).unwrap().permissions().mode();
    terminate(&mut server);
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

/// A database the server cannot use says why (the server's own refusal), so the operator
/// can act, and never shows the URL's password.
#[test]
fn a_refused_database_connection_says_why_without_the_password() {
    let server = std::env::var("TEST_POSTGRES_URL")
        .expect("this test needs TEST_POSTGRES_URL (scripts/test)");
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path("/latchkey_no_such_database");
    url.set_password(Some("sw0rdf1sh-in-the-url")).unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let (ok, output) = run_with_stdin(
        std::process::Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("LATCHKEY_DATA_DIR", data_dir.path())
            .env("LATCHKEY_STORE__BACKEND", "postgres")
            .env("LATCHKEY_STORE__POSTGRES_URL", url.as_str()),
        "",
    );
    assert!(!ok, "{output}");
    assert!(
        output.contains("latchkey_no_such_database\" does not exist"),
        "{output}"
    );
    assert!(!output.contains("sw0rdf1sh"), "{output}");
}

/// A throttle ceiling past `i32::MAX` (PostgreSQL's `integer`, the buckets' capacity) is a
/// valid setting: wrong passwords and reset requests get their usual answers on both
/// backends, not a 500 from every sign-in.
#[tokio::test]
async fn throttle_ceilings_past_a_signed_32_bit_integer_work_without_errors() {
    let server = TestServer::start_with(|config| {
        config.throttle.failures_per_account_network = 3_000_000_000;
        config.throttle.failures_per_account = 3_000_000_000;
        config.throttle.failures_per_network = 3_000_000_000;
        config.signup.requests_per_address_network = 3_000_000_000;
        config.signup.requests_per_address = 3_000_000_000;
        config.signup.requests_per_network = 3_000_000_000;
    })
    .await;
    server
        .add_user("alice@example.com", Role::User, Status::Active)
        .await;
    for _ in 0..3 {
        let wrong = server
            .sign_in_with_password("alice@example.com", "not the password at all")
            .await;
        wrong.assert_error(401);
    }
    let right = server
        .sign_in_with_password("alice@example.com", PASSWORD)
        .await;
    assert_eq!(right.status, 200, "{}", right.text());
    let reset = server
        .request("POST", "/auth/password-reset")
        .json(&json!({ "email": "alice@example.com" }))
        .send()
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
}
