//! `latchkey user delete --email E` through the built binary: against a running server (the
//! socket) and a stopped one (the store), with its sub-users, sessions, API tokens, the
//! last-root guard and the audit line.

use serde_json::json;

use crate::binary::{CHEAP_HASHING, admin, start_server_with, terminate};
use crate::support::{PASSWORD, SignedIn, request_to};

#[tokio::test]
async fn user_delete_takes_the_whole_tree_and_its_credentials_live_and_stopped() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let password = format!("{PASSWORD}\n");
    for (email, role) in [("root@example.com", "root"), ("parent@example.com", "user")] {
        let (ok, text) = admin(
            path,
            &[
                "user",
                "add",
                "--email",
                email,
                "--role",
                role,
                "--password-stdin",
            ],
            &password,
        );
        assert!(ok, "{text}");
    }
    let mut server = start_server_with(path, &CHEAP_HASHING);
    let address = server.address;
    let signed_in = |email: &'static str| async move {
        SignedIn::from_response(
            &request_to(address, "POST", "/auth/sign-in")
                .json(&json!({ "email": email, "password": PASSWORD }))
                .send()
                .await,
        )
    };
    let parent = signed_in("parent@example.com").await;
    let created = request_to(address, "POST", "/user")
        .bearer(&parent.signed_token)
        .json(&json!({ "email": "sub@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let sub = signed_in("sub@example.com").await;
    let standalone = request_to(address, "POST", "/auth/api-token")
        .bearer(&parent.signed_token)
        .json(&json!({ "permissions": ["read:profile"], "ttl": 3600 }))
        .send()
        .await;
    assert_eq!(standalone.status, 200, "{}", standalone.text());
    let standalone = standalone.json["token"].as_str().unwrap().to_owned();
    let root = signed_in("root@example.com").await;
    let status_of = |credential: String| async move {
        request_to(address, "GET", "/user/current")
            .bearer(&credential)
            .send()
            .await
            .status
    };
    for credential in [
        &parent.signed_token,
        &parent.api_token,
        &standalone,
        &sub.signed_token,
    ] {
        assert_eq!(status_of(credential.clone()).await, 200);
    }

    // Through the running server's socket: the tree goes, at once, with every credential.
    let (ok, text) = admin(
        path,
        &["user", "delete", "--email", "parent@example.com"],
        "",
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("parent@example.com with 1 sub-users"),
        "{text}"
    );
    for credential in [
        &parent.signed_token,
        &parent.api_token,
        &standalone,
        &sub.signed_token,
        &sub.api_token,
    ] {
        assert_eq!(status_of(credential.clone()).await, 401);
    }
    assert_eq!(status_of(root.signed_token.clone()).await, 200);
    let (ok, listed) = admin(path, &["user", "list"], "");
    assert!(ok);
    assert!(
        listed.contains("root@example.com")
            && !listed.contains("parent@example.com")
            && !listed.contains("sub@example.com"),
        "{listed}"
    );
    let gone = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": "parent@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(gone.status, 401, "{}", gone.text());
    let (ok, text) = admin(path, &["user", "delete", "--email", "root@example.com"], "");
    assert!(!ok && text.contains("last active root"), "{text}");
    let (ok, text) = admin(
        path,
        &["user", "delete", "--email", "nobody@example.com"],
        "",
    );
    assert!(!ok && text.contains("no user nobody@example.com"), "{text}");
    assert_eq!(terminate(&mut server).code(), Some(0));
    let log = server.log.lock().unwrap().join("\n");
    let audit_line = log
        .lines()
        .find(|line| line.contains("user-deleted"))
        .unwrap_or_else(|| panic!("an audit line: {log}"));
    assert!(
        audit_line.contains(&format!("user_id={}", parent.user_id))
            && audit_line.contains("sub_users=1")
            && audit_line.contains("source=\"admin\""),
        "{audit_line}"
    );

    // Stopped: the command opens the store itself, with the same rules.
    let (ok, text) = admin(
        path,
        &[
            "user",
            "add",
            "--email",
            "later@example.com",
            "--password-stdin",
        ],
        &password,
    );
    assert!(ok, "{text}");
    let (ok, text) = admin(
        path,
        &["user", "delete", "--email", "later@example.com"],
        "",
    );
    assert!(
        ok && text.contains("later@example.com with 0 sub-users"),
        "{text}"
    );
    let (ok, text) = admin(path, &["user", "delete", "--email", "root@example.com"], "");
    assert!(!ok && text.contains("last active root"), "{text}");
    let (_, listed) = admin(path, &["user", "list"], "");
    assert_eq!(listed.lines().count(), 1, "{listed}");
}
