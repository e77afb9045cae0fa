//! The operator's surface through the built binary: configuration errors, admin commands
//! against a running and a stopped server, a stale socket, backup and restore under load,
//! and the security-event log.

use std::process::Command;

use serde_json::json;

use crate::binary::{BINARY, CHEAP_HASHING, admin, start_server_with, terminate};
use crate::support::{PASSWORD, request_to};

fn check_config(arguments: &[&str], environment: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(BINARY)
        .args(arguments)
        .envs(environment.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_or_variable_stops_the_start_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("latchkey.toml");
    std::fs::write(&file, "[password]\nmemory_kib = 64\n").unwrap();
    let file = file.to_str().unwrap();
    assert!(check_config(&["--config", file, "check-config"], &[]).0);

    std::fs::write(file, "[password]\nmemroy_kib = 64\n").unwrap();
    let (ok, message) = check_config(&["--config", file, "check-config"], &[]);
    assert!(!ok && message.contains("memroy_kib"), "{message}");
    let (ok, message) = check_config(&["--config", file, "serve", "--listen", "127.0.0.1:0"], &[]);
    assert!(!ok && message.contains("memroy_kib"), "{message}");

    let (ok, message) = check_config(&["check-config"], &[("LATCHKEY_HTTP__MAX_BODY", "1")]);
    assert!(
        !ok && message.contains("LATCHKEY_HTTP__MAX_BODY"),
        "{message}"
    );
    let (ok, message) = check_config(&["check-config"], &[("LATCHKEY_LISTEN", "x")]);
    assert!(!ok && message.contains("LATCHKEY_LISTEN"), "{message}");
    let (ok, message) = check_config(
        &["check-config"],
        &[("LATCHKEY_PASSWORD__ITERATIONS", "zero")],
    );
    assert!(
        !ok && message.contains("LATCHKEY_PASSWORD__ITERATIONS"),
        "{message}"
    );
}

#[test]
fn a_refused_value_stops_serve_and_check_config_naming_the_key_and_where_it_was_set() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let file = directory.path().join("latchkey.toml");
    std::fs::write(
        &file,
        "[email]\nfrom = \"Latchkey <auth@example.com>\"\n\
         verify_link = \"https://app.example.com/verify\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let expected =
        format!("email.verify_link (config file {file}, line 3): must contain {{token}}");
    for arguments in [
        vec!["--config", file, "check-config"],
        vec![
            "--config",
            file,
            "--data-dir",
            data_dir,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let (ok, message) = check_config(&arguments, &[]);
        assert!(
            !ok && message.contains(&expected),
            "{arguments:?}: {message}"
        );
    }

    let (ok, message) = check_config(
        &["--data-dir", data_dir, "serve", "--listen", "127.0.0.1:0"],
        &[("LATCHKEY_SESSION__LONG_TERM_SECONDS", "60")],
    );
    assert!(
        !ok && message.contains(
            "session.long_term_seconds (environment variable \
             LATCHKEY_SESSION__LONG_TERM_SECONDS): is 60, and must be at least \
             session.short_term_seconds (10800, the default)"
        ),
        "{message}"
    );
    let (ok, message) = check_config(
        &["check-config"],
        &[
            ("LATCHKEY_EMAIL__TRANSPORT", "smtp"),
            ("LATCHKEY_EMAIL__SMTP_HOST", "mail.example.com"),
            ("LATCHKEY_EMAIL__SMTP_TLS", "none"),
        ],
    );
    assert!(
        !ok && message.contains("email.smtp_tls (environment variable LATCHKEY_EMAIL__SMTP_TLS)"),
        "{message}"
    );
    // A text key takes the variable as written, digits and all.
    let (ok, message) = check_config(
        &["check-config"],
        &[
            ("LATCHKEY_EMAIL__SMTP_PASSWORD", "123456"),
            ("LATCHKEY_EMAIL__SMTP_USERNAME", "2024"),
        ],
    );
    assert!(ok, "{message}");
    // A refused start touches nothing.
    assert!(!std::path::Path::new(data_dir).exists());
}

#[tokio::test]
async fn admin_commands_answer_alike_through_the_socket_and_the_store_and_survive_a_kill() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let password = format!("{PASSWORD}\n");
    let mut server = start_server_with(path, &CHEAP_HASHING);
    assert!(path.join("latchkey.sock").exists());
    let (ok, text) = admin(
        path,
        &[
            "user",
            "add",
            "--email",
            "live@example.com",
            "--password-stdin",
        ],
        &password,
    );
    assert!(ok, "{text}");
    // The running server sees the user at once: it was written through the socket.
    let signed_in = request_to(server.address, "POST", "/auth/sign-in")
        .json(&json!({ "email": "live@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(signed_in.status, 200);
    let (ok, listed_live) = admin(path, &["user", "list"], "");
    assert!(ok);
    let (ok, keys_text) = admin(path, &["keys", "rotate"], "");
    assert!(ok, "{keys_text}");
    let (_, keys_live) = admin(path, &["keys", "list"], "");
    assert_eq!(keys_live.lines().count(), 2, "{keys_live}");
    assert!(
        keys_live.contains("\tactive\t") && keys_live.contains("\tretired\t"),
        "{keys_live}"
    );
    let token = signed_in.json["jwt-token"]["token"].as_str().unwrap();
    let still = request_to(server.address, "GET", "/user/current")
        .bearer(token)
        .send()
        .await;
    assert_eq!(
        still.status, 200,
        "the old key must keep verifying after rotate"
    );

    // SIGKILL leaves a stale socket behind; the CLI and the next start both cope.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(path.join("latchkey.sock").exists());
    let (ok, listed_stopped) = admin(path, &["user", "list"], "");
    assert!(ok);
    assert_eq!(listed_live, listed_stopped);
    let (_, keys_stopped) = admin(path, &["keys", "list"], "");
    assert_eq!(keys_live, keys_stopped);
    let mut restarted = start_server_with(path, &CHEAP_HASHING);
    let (ok, listed_again) = admin(path, &["user", "list"], "");
    assert!(ok);
    assert_eq!(listed_live, listed_again);
    assert_eq!(terminate(&mut restarted).code(), Some(0));
    assert!(
        !path.join("latchkey.sock").exists(),
        "a clean stop removes the socket"
    );
}

#[tokio::test]
async fn a_backup_under_sign_in_load_restores_every_session_made_before_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    assert!(
        admin(
            path,
            &[
                "user",
                "add",
                "--email",
                "load@example.com",
                "--password-stdin"
            ],
            &format!("{PASSWORD}\n")
        )
        .0
    );
    let mut server = start_server_with(path, &CHEAP_HASHING);
    let address = server.address;
    let sign_in = move || async move {
        request_to(address, "POST", "/auth/sign-in")
            .json(&json!({ "email": "load@example.com", "password": PASSWORD }))
            .send()
            .await
    };
    let mut before = Vec::new();
    for _ in 0..10 {
        let response = sign_in().await;
        before.push(
            response.json["jwt-token"]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let stop = std::sync::Arc::clone(&stop);
        clients.spawn(async move {
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(sign_in().await.status, 200);
                count += 1;
            }
            count
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let backup = path.join("copy.redb");
    let backup_text = backup.to_str().unwrap().to_owned();
    let data_path = path.to_path_buf();
    let (ok, text) =
        tokio::task::spawn_blocking(move || admin(&data_path, &["backup", &backup_text], ""))
            .await
            .unwrap();
    assert!(ok, "{text}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut during = 0;
    while let Some(count) = clients.join_next().await {
        during += count.unwrap();
    }
    assert!(during > 0, "the clients signed in while the backup ran");
    assert_eq!(terminate(&mut server).code(), Some(0));

    let fresh = tempfile::tempdir().unwrap();
    let (ok, text) = admin(fresh.path(), &["restore", backup.to_str().unwrap()], "");
    assert!(ok, "{text}");
    let mut restored = start_server_with(fresh.path(), &CHEAP_HASHING);
    for token in &before {
        let response = request_to(restored.address, "GET", "/user/current")
            .bearer(token)
            .send()
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // A restore refuses while a server holds the store, and refuses a file that is no store.
    let (ok, text) = admin(fresh.path(), &["restore", backup.to_str().unwrap()], "");
    assert!(!ok && text.contains("running server"), "{text}");
    assert_eq!(terminate(&mut restored).code(), Some(0));
    let junk = fresh.path().join("junk.redb");
    std::fs::write(&junk, b"not a database").unwrap();
    let (ok, text) = admin(fresh.path(), &["restore", junk.to_str().unwrap()], "");
    assert!(!ok && text.contains("not a usable backup"), "{text}");
}

#[tokio::test]
async fn the_event_log_records_each_security_event_and_no_secret() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let password = format!("{PASSWORD}\n");
    assert!(
        admin(
            path,
            &[
                "user",
                "add",
                "--email",
                "audit@example.com",
                "--password-stdin"
            ],
            &password
        )
        .0
    );
    assert!(
        admin(
            path,
            &[
                "user",
                "add",
                "--email",
                "victim@example.com",
                "--password-stdin"
            ],
            &password
        )
        .0
    );
    let mut server = start_server_with(path, &CHEAP_HASHING);
    let address = server.address;
    let failed = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": "audit@example.com", "password": "a wrong password" }))
        .send()
        .await;
    assert_eq!(failed.status, 401);
    let signed_in = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": "audit@example.com", "password": PASSWORD }))
        .send()
        .await;
    let token = signed_in.json["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let session_api_token = signed_in.json["api-token"].as_str().unwrap().to_owned();
    let created = request_to(address, "POST", "/auth/api-token")
        .bearer(&token)
        .json(&json!({ "permissions": ["read:profile"] }))
        .send()
        .await;
    let api_token = created.json["token"].as_str().unwrap().to_owned();
    let via_query = request_to(address, "GET", "/user/current")
        .query(&format!("token={api_token}"))
        .send()
        .await;
    assert_eq!(via_query.status, 200);
    let via_jwt_query = request_to(address, "GET", "/user/current")
        .query(&format!("jwt={token}"))
        .send()
        .await;
    assert_eq!(via_jwt_query.status, 200);
    let deleted = request_to(address, "DELETE", &format!("/auth/api-token/{api_token}"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(deleted.status, 204);
    let changed = request_to(address, "PUT", "/auth/current/password")
        .bearer(&token)
        .form(&[
            ("old-password", PASSWORD),
            ("new-password", "the next password"),
        ])
        .send()
        .await;
    assert_eq!(changed.status, 204);
    let second = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": "audit@example.com", "password": "the next password" }))
        .send()
        .await;
    let second_token = second.json["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let session_id = request_to(address, "GET", "/auth/session")
        .bearer(&token)
        .send()
        .await
        .json["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = request_to(address, "DELETE", &format!("/auth/session/{session_id}"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(ended.status, 204);
    assert!(
        admin(
            path,
            &["user", "suspend", "--email", "victim@example.com"],
            ""
        )
        .0
    );
    assert!(
        admin(
            path,
            &[
                "user",
                "passwd",
                "--email",
                "victim@example.com",
                "--password-stdin"
            ],
            "reset by the operator\n"
        )
        .0
    );
    assert_eq!(terminate(&mut server).code(), Some(0));

    let log = server.log.lock().unwrap().join("\n");
    for event in [
        "event=\"sign-in\"",
        "event=\"sign-in-failed\"",
        "event=\"api-token-created\"",
        "event=\"api-token-deleted\"",
        "event=\"password-changed\"",
        "event=\"session-ended\"",
        "event=\"user-suspended\"",
        "event=\"password-reset\"",
    ] {
        assert!(log.contains(event), "no {event} in the log:\n{log}");
    }
    assert!(
        log.contains("remote_ip=\"127.0.0.1\"") || log.contains("remote_ip=127.0.0.1"),
        "{log}"
    );
    // A failed sign-in names the account it aimed at, masked: a guessing run against one
    // account shows in the log without the log holding the address.
    let failed_line = log
        .lines()
        .find(|line| line.contains("event=\"sign-in-failed\""))
        .unwrap();
    assert!(failed_line.contains("a***@example.com"), "{failed_line}");
    assert!(!failed_line.contains("audit@example.com"), "{failed_line}");
    for secret in [
        PASSWORD,
        "a wrong password",
        "the next password",
        "reset by the operator",
        &token,
        &second_token,
        &session_api_token,
        &api_token,
        &api_token[..8],
    ] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}");
    }
    assert!(log.contains("route=\"/auth/api-token/{token}\""), "{log}");
}

#[tokio::test]
async fn the_log_can_be_json() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    assert!(
        admin(
            path,
            &[
                "user",
                "add",
                "--email",
                "json@example.com",
                "--password-stdin"
            ],
            &format!("{PASSWORD}\n")
        )
        .0
    );
    let mut environment = CHEAP_HASHING.to_vec();
    environment.push(("LATCHKEY_LOG__FORMAT", "\"json\""));
    let mut server = start_server_with(path, &environment);
    let response = request_to(server.address, "POST", "/auth/sign-in")
        .json(&json!({ "email": "json@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(terminate(&mut server).code(), Some(0));
    let log = server.log.lock().unwrap().clone();
    let sign_in = log
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["event"] == "sign-in")
        .unwrap_or_else(|| panic!("no JSON sign-in event in {log:?}"));
    assert_eq!(sign_in["user_id"], 1);
    assert_eq!(sign_in["remote_ip"], "127.0.0.1");
}

#[test]
fn a_socket_path_too_long_for_unix_stops_the_start_with_a_clear_message() {
    let directory = tempfile::tempdir().unwrap();
    let long = directory.path().join("d".repeat(100));
    let output = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("LATCHKEY_DATA_DIR", &long)
        .envs(CHEAP_HASHING)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("over the 107") && message.contains("shorter --data-dir"),
        "{message}"
    );
}
