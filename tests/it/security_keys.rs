//! Issue #14 (API.md section 15, rules 14, 18 and 19): a token's issuer does not follow the
//! listen address, old password hashes cost the current time, restores keep to their own
//! install, and a revoked signing key stops its tokens at once.

use latchkey::admin::{self, AdminCommand};
use latchkey::model::{Role, Status};
use latchkey::store::{Store, StoreError};

use crate::binary::BINARY;
use crate::support::{PASSWORD, TestServer};

/// Waits (briefly) until every handle of a stopped in-process server has let go of the store.
pub async fn wait_until_store_is_free(data_dir: &std::path::Path) {
    let path = data_dir.join("latchkey.redb");
    for _ in 0..200 {
        match Store::open_redb(&path, 1024 * 1024) {
            Ok(_) => return,
            Err(StoreError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    panic!("the stopped server still holds the store");
}

#[tokio::test]
async fn a_token_stays_valid_when_the_server_restarts_on_another_port() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_path = data_dir.path().to_path_buf();
    let first = TestServer::start_with(|config| config.store.data_dir = data_path.clone()).await;
    first
        .add_user("moves@example.com", Role::User, Status::Active)
        .await;
    let signed_in = first.sign_in("moves@example.com").await;
    assert_eq!(
        first.current_user_status(&signed_in.signed_token).await,
        200
    );
    let first_address = first.address;
    let first_issuer = first.app.issuer.clone();
    assert!(first_issuer.starts_with("urn:latchkey:"), "{first_issuer}");
    first.stop().await;
    wait_until_store_is_free(&data_path).await;

    // Another port (and the listen address in the config with it), the same data dir.
    let second = TestServer::start_with(|config| config.store.data_dir = data_path.clone()).await;
    assert_ne!(second.address, first_address);
    assert_eq!(second.app.issuer, first_issuer);
    assert_eq!(
        second.current_user_status(&signed_in.signed_token).await,
        200
    );
    second.stop().await;
}

#[tokio::test]
async fn a_set_public_url_is_the_issuer() {
    let server = TestServer::start_with(|config| {
        config.server.public_url = Some("https://auth.example.com".parse().unwrap());
    })
    .await;
    assert_eq!(server.app.issuer, "https://auth.example.com");
    server.stop().await;
}

/// Runs the built binary with `--config FILE` and standard input; returns (success, output).
fn latchkey_with_config(
    data_dir: &std::path::Path,
    config_file: &std::path::Path,
    arguments: &[&str],
    stdin: &str,
) -> (bool, String) {
    crate::binary::run_with_stdin(
        std::process::Command::new(BINARY)
            .arg("--config")
            .arg(config_file)
            .args(arguments)
            .env("LATCHKEY_DATA_DIR", data_dir),
        stdin,
    )
}

#[tokio::test]
async fn the_cli_hashes_with_the_configured_password_cost() {
    let data_dir = tempfile::tempdir().unwrap();
    let config_file = data_dir.path().join("latchkey.toml");
    std::fs::write(
        &config_file,
        "[password]\nmemory_kib = 96\niterations = 3\nparallelism = 2\n",
    )
    .unwrap();
    let store_dir = data_dir.path().join("data");
    let expected_parameters = "$argon2id$v=19$m=96,t=3,p=2$";
    let stored_hash = async || {
        let store = Store::open_redb(&store_dir.join("latchkey.redb"), 1024 * 1024).unwrap();
        let user = store
            .user_by_normalized_email("cost@example.com")
            .await
            .unwrap()
            .unwrap();
        user.password_hash.unwrap().into_exposed_secret()
    };

    let (ok, text) = latchkey_with_config(
        &store_dir,
        &config_file,
        &[
            "user",
            "add",
            "--email",
            "cost@example.com",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{text}");
    let added = stored_hash().await;
    assert!(added.starts_with(expected_parameters), "{added}");

    let (ok, text) = latchkey_with_config(
        &store_dir,
        &config_file,
        &[
            "user",
            "passwd",
            "--email",
            "cost@example.com",
            "--password-stdin",
        ],
        "another password\n",
    );
    assert!(ok, "{text}");
    let changed = stored_hash().await;
    assert_ne!(changed, added);
    assert!(changed.starts_with(expected_parameters), "{changed}");
}

#[tokio::test]
async fn a_sign_in_against_an_old_cheaper_hash_costs_at_least_the_configured_hash() {
    let server = TestServer::start().await;
    let configured = server.cost();
    let configured_work = u64::from(configured.memory_kib) * u64::from(configured.iterations);
    let older = latchkey::auth::password::HashCost {
        memory_kib: 8,
        ..configured
    };
    server
        .add_user_with_cost("old-hash@example.com", Role::User, Status::Active, older)
        .await;
    server
        .add_user("new-hash@example.com", Role::User, Status::Active)
        .await;
    let wrong_password_work = async |email: &str| {
        let before = server.app.hashers.block_passes();
        let response = server
            .request("POST", "/auth/sign-in")
            .json(&serde_json::json!({ "email": email, "password": "not the password" }))
            .send()
            .await;
        response.assert_error(401);
        server.app.hashers.block_passes() - before
    };
    assert_eq!(
        wrong_password_work("new-hash@example.com").await,
        configured_work
    );
    assert!(wrong_password_work("old-hash@example.com").await >= configured_work);
    server.stop().await;
}

fn key_id_of(token: &str) -> String {
    use pasetors::Public;
    use pasetors::token::UntrustedToken;
    use pasetors::version4::V4;
    let untrusted = UntrustedToken::<Public, V4>::try_from(token).unwrap();
    let footer: serde_json::Value = serde_json::from_slice(untrusted.untrusted_footer()).unwrap();
    footer["kid"].as_str().unwrap().to_owned()
}

/// `GET /auth/keys` as (id, status) pairs in the served order, and the ETag.
async fn published_keys(server: &TestServer) -> (Vec<(String, String)>, String) {
    let response = server.request("GET", "/auth/keys").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    let keys = response.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            (
                key["id"].as_str().unwrap().to_owned(),
                key["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (keys, response.header("etag").unwrap().to_owned())
}

async fn admin_command(server: &TestServer, command: AdminCommand) -> (bool, String) {
    let reply = admin::execute(&server.app.store, Some(&server.app), command).await;
    (reply.ok, reply.output)
}

#[tokio::test]
async fn a_revoked_key_stops_its_tokens_on_the_next_request_even_when_cached() {
    let server = TestServer::start().await;
    server
        .add_user("revoke@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("revoke@example.com").await;
    let old_key = key_id_of(&signed_in.signed_token);
    // Used twice: the second use is answered from the verified-token cache.
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );

    let (ok, output) = admin_command(
        &server,
        AdminCommand::KeysRevoke {
            key_id: old_key.clone(),
        },
    )
    .await;
    assert!(ok, "{output}");
    assert!(output.contains("new active key"), "{output}");
    server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await
        .assert_error(401);
    // The session itself lives on: its api-token still works, and new tokens use a new key.
    assert_eq!(server.current_user_status(&signed_in.api_token).await, 200);
    let again = server.sign_in("revoke@example.com").await;
    let new_key = key_id_of(&again.signed_token);
    assert_ne!(new_key, old_key);
    assert_eq!(server.current_user_status(&again.signed_token).await, 200);
    let (keys, _) = published_keys(&server).await;
    assert_eq!(keys, [(new_key, "active".to_owned())]);

    let (ok, output) = admin_command(
        &server,
        AdminCommand::KeysRevoke {
            key_id: old_key.clone(),
        },
    )
    .await;
    assert!(!ok && output.contains("no signing key"), "{output}");
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_published_as_next_before_it_signs() {
    let server = TestServer::start_with(|config| config.keys.publish_ahead_seconds = 2).await;
    server
        .add_user("ahead@example.com", Role::User, Status::Active)
        .await;
    let before = server.sign_in("ahead@example.com").await;
    let old_key = key_id_of(&before.signed_token);
    let (_, etag_before) = published_keys(&server).await;

    let (ok, output) = admin_command(
        &server,
        AdminCommand::KeysRotate {
            publish_ahead_seconds: 0,
        },
    )
    .await;
    assert!(ok && output.contains("new next key"), "{output}");
    let (keys, etag_next) = published_keys(&server).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], (old_key.clone(), "active".to_owned()));
    assert_eq!(keys[1].1, "next");
    let new_key = keys[1].0.clone();
    assert_ne!(etag_next, etag_before);
    // Meanwhile the old key keeps signing, and a second rotation adds nothing.
    let meanwhile = server.sign_in("ahead@example.com").await;
    assert_eq!(key_id_of(&meanwhile.signed_token), old_key);
    let (ok, output) = admin_command(
        &server,
        AdminCommand::KeysRotate {
            publish_ahead_seconds: 0,
        },
    )
    .await;
    assert!(!ok && output.contains("already next"), "{output}");

    // At its time (two seconds on) the new key signs; the old one verifies.
    server.advance_clock(std::time::Duration::from_secs(2));
    let after = server.sign_in("ahead@example.com").await;
    assert_eq!(
        key_id_of(&after.signed_token),
        new_key,
        "the next key never signed"
    );
    assert_eq!(server.current_user_status(&after.signed_token).await, 200);
    assert_eq!(server.current_user_status(&before.signed_token).await, 200);
    let (keys, etag_after) = published_keys(&server).await;
    assert_eq!(
        keys,
        [
            (new_key.clone(), "active".to_owned()),
            (old_key.clone(), "retired".to_owned())
        ]
    );
    assert_ne!(etag_after, etag_next);
    server.stop().await;
}

#[tokio::test]
async fn automatic_rotation_publishes_ahead_once() {
    let server = TestServer::start_with(|config| {
        config.keys.rotate_every = 3600;
        // Longer than the rotation period: the next key is due to be published at once.
        config.keys.publish_ahead_seconds = 7200;
    })
    .await;
    let (keys, _) = published_keys(&server).await;
    assert_eq!(keys.len(), 1);
    server.app.maintain_signing_keys().await.unwrap();
    let (keys, _) = published_keys(&server).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0].1, "active");
    assert_eq!(keys[1].1, "next");
    server.app.maintain_signing_keys().await.unwrap();
    assert_eq!(published_keys(&server).await.0, keys);
    server.stop().await;
}

/// A data dir whose store holds an active signing key (made by `keys rotate` on the store,
/// no server), and a backup of it; returns the key id.
fn install_with_backup(data_dir: &std::path::Path, backup: &std::path::Path) -> String {
    let (ok, text) = crate::binary::admin(data_dir, &["keys", "rotate"], "");
    assert!(ok, "{text}");
    let key_id = text
        .trim()
        .strip_prefix("new active key ")
        .unwrap()
        .to_owned();
    let (ok, text) = crate::binary::admin(data_dir, &["backup", backup.to_str().unwrap()], "");
    assert!(ok, "{text}");
    key_id
}

#[test]
fn restore_refuses_a_backup_of_another_install_unless_allowed_and_names_the_keys() {
    let workspace = tempfile::tempdir().unwrap();
    let first = workspace.path().join("first");
    let second = workspace.path().join("second");
    let first_backup = workspace.path().join("first.redb");
    let second_backup = workspace.path().join("second.redb");
    let first_key = install_with_backup(&first, &first_backup);
    let second_key = install_with_backup(&second, &second_backup);
    let store_id = |data_dir: &std::path::Path| {
        Store::open_redb(&data_dir.join("latchkey.redb"), 1024 * 1024)
            .unwrap()
            .store_id()
            .to_owned()
    };
    let second_store_id = store_id(&second);

    // Its own backup restores without a flag, and the keys it brings back are named.
    let (ok, text) =
        crate::binary::admin(&second, &["restore", second_backup.to_str().unwrap()], "");
    assert!(ok, "{text}");
    assert!(text.contains(&format!("{second_key}\tactive")), "{text}");

    let (ok, text) =
        crate::binary::admin(&second, &["restore", first_backup.to_str().unwrap()], "");
    assert!(!ok, "{text}");
    assert!(text.contains("another install"), "{text}");
    assert!(text.contains("--allow-other-install"), "{text}");
    assert_eq!(store_id(&second), second_store_id, "nothing was replaced");
    assert!(!second.join("latchkey.redb.restoring").exists());

    let (ok, text) = crate::binary::admin(
        &second,
        &[
            "restore",
            "--allow-other-install",
            first_backup.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{text}");
    assert!(text.contains(&format!("{first_key}\tactive")), "{text}");
    assert_eq!(store_id(&second), store_id(&first));

    // Where no store exists yet (a new machine), any backup restores.
    let fresh = workspace.path().join("fresh");
    let (ok, text) =
        crate::binary::admin(&fresh, &["restore", second_backup.to_str().unwrap()], "");
    assert!(ok, "{text}");
    assert_eq!(store_id(&fresh), second_store_id);
}

#[test]
fn restore_writes_its_staged_copy_private_from_the_first_byte() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let workspace = tempfile::tempdir().unwrap();
    let source_dir = workspace.path().join("source");
    let backup = workspace.path().join("backup.redb");
    install_with_backup(&source_dir, &backup);
    let backup_bytes = std::fs::read(&backup).unwrap();
    // The backup arrives through a named pipe readable by all, so the restore blocks
    // after it has made its staged file and before any byte is in it.
    let pipe = workspace.path().join("backup.pipe");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "0644"])
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    let data_dir = workspace.path().join("target");
    std::fs::create_dir(&data_dir).unwrap();
    // A directory loosened since it was made is closed again too.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let restore = std::process::Command::new(BINARY)
        .args(["restore", pipe.to_str().unwrap()])
        .env("LATCHKEY_DATA_DIR", &data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pipe_path = pipe.clone();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        // Opening blocks until the restore opens the pipe to read.
        let mut pipe_writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&pipe_path)
            .unwrap();
        released.recv().unwrap();
        pipe_writer.write_all(&backup_bytes).unwrap();
    });
    let staged = data_dir.join("latchkey.redb.restoring");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !staged.exists() {
        assert!(std::time::Instant::now() < deadline, "no staged file");
        #[allow(clippy::disallowed_methods, reason = "a plain test thread, no runtime")]
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mode = std::fs::metadata(&staged).unwrap().permissions().mode() & 0o777;
    release.send(()).unwrap();
    writer.join().unwrap();
    let output = restore.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        mode, 0o600,
        "the staged copy was {mode:o} before its first byte"
    );
    let restored_mode = std::fs::metadata(data_dir.join("latchkey.redb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(restored_mode & 0o777, 0o600);
    let directory_mode = std::fs::metadata(&data_dir).unwrap().permissions().mode();
    assert_eq!(directory_mode & 0o777, 0o700);
}

#[tokio::test]
async fn keys_revoke_through_the_cli_stops_the_running_servers_tokens() {
    use crate::binary::{CHEAP_HASHING, admin, start_server_with, terminate};
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let (ok, text) = admin(
        path,
        &[
            "user",
            "add",
            "--email",
            "cli-revoke@example.com",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{text}");
    let mut server = start_server_with(path, &CHEAP_HASHING);
    let sign_in = || async {
        let response = crate::support::request_to(server.address, "POST", "/auth/sign-in")
            .json(&serde_json::json!({ "email": "cli-revoke@example.com", "password": PASSWORD }))
            .send()
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json["jwt-token"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let status = |token: String| async move {
        crate::support::request_to(server.address, "GET", "/user/current")
            .bearer(&token)
            .send()
            .await
            .status
    };
    let token = sign_in().await;
    assert_eq!(status(token.clone()).await, 200);
    let key_id = key_id_of(&token);

    let (ok, text) = admin(path, &["keys", "revoke", &key_id], "");
    assert!(ok, "{text}");
    assert!(text.contains("new active key"), "{text}");
    assert_eq!(status(token.clone()).await, 401);
    let (_, listed) = admin(path, &["keys", "list"], "");
    assert!(!listed.contains(&key_id), "{listed}");
    let fresh = sign_in().await;
    assert_ne!(key_id_of(&fresh), key_id);
    assert_eq!(status(fresh).await, 200);
    assert_eq!(terminate(&mut server).code(), Some(0));
}
