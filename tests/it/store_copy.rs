//! `latchkey store copy` with the built binary: an install seeded through a running redb
//! server (sign-ins, an API token, TOTP with an mfa-token half way, a sign-up whose mail is
//! still queued) moves to PostgreSQL and back, and after each move a server on the copy
//! takes every token made before, the old password, the old mfa-token and the old link.
//! Needs `TEST_POSTGRES_URL` (scripts/test starts the server).

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::binary::{BINARY, CHEAP_HASHING, admin, run_with_stdin, start_server_with, terminate};
use crate::mail_support::{ReservedPort, SmtpServer, token_in, wait_for_mail};
use crate::second_factor::pyotp_code;
use crate::support::{PASSWORD, SignedIn, fresh_postgres_database, request_to};

const ROOT: &str = "root@example.com";
const TOTP_USER: &str = "totp@example.com";
const NEWCOMER: &str = "newcomer@example.com";

/// One number from the database at `url`.
async fn count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Runs the binary with `environment` on `data_dir`; returns (success, stdout then stderr).
fn latchkey(
    data_dir: &std::path::Path,
    environment: &[(&str, &str)],
    arguments: &[&str],
    stdin: &str,
) -> (bool, String) {
    run_with_stdin(
        Command::new(BINARY)
            .args(arguments)
            .env("LATCHKEY_DATA_DIR", data_dir)
            .envs(CHEAP_HASHING)
            .envs(environment.iter().copied()),
        stdin,
    )
}

/// What a server on a copy must take: the tokens made before the copy, and the password.
struct MadeBefore {
    root: SignedIn,
    standalone_api_token: String,
}

async fn assert_still_valid(address: std::net::SocketAddr, made: &MadeBefore) {
    for credential in [
        &made.root.signed_token,
        &made.root.api_token,
        &made.standalone_api_token,
    ] {
        let profile = request_to(address, "GET", "/user/current")
            .bearer(credential)
            .send()
            .await;
        assert_eq!(profile.status, 200, "{}", profile.text());
        assert_eq!(profile.json["email"], ROOT);
    }
    let signed_in = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": ROOT, "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
}

/// The first step of the TOTP user's sign-in: the mfa-token of the second factor it awaits.
async fn first_step(address: std::net::SocketAddr) -> String {
    let answer = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": TOTP_USER, "password": PASSWORD }))
        .send()
        .await;
    let body = answer.assert_error(403);
    assert_eq!(
        body["context"]["reason"], "second-factor-required",
        "{body}"
    );
    body["context"]["mfa-token"].as_str().unwrap().to_owned()
}

async fn second_step(address: std::net::SocketAddr, mfa_token: &str, recovery_code: &str) -> u16 {
    request_to(address, "POST", "/auth/sign-in/second-factor")
        .json(&json!({ "mfa-token": mfa_token, "recovery-code": recovery_code }))
        .send()
        .await
        .status
}

/// Turns TOTP on for the TOTP user; answers its recovery codes.
async fn enrol_totp(address: std::net::SocketAddr) -> Vec<String> {
    let session = SignedIn::from_response(
        &request_to(address, "POST", "/auth/sign-in")
            .json(&json!({ "email": TOTP_USER, "password": PASSWORD }))
            .send()
            .await,
    );
    let started = request_to(address, "POST", "/auth/mfa/totp")
        .bearer(&session.signed_token)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let secret = started.json["secret"].as_str().unwrap().to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let confirmed = request_to(address, "POST", "/auth/mfa/totp/confirm")
        .bearer(&session.signed_token)
        .json(&json!({ "code": pyotp_code(&secret, now) }))
        .send()
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    confirmed.json["recovery-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect()
}

/// The rows a copy's output says it copied of `table` (its line as the table ends).
fn line_count(output: &str, table: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let copied = line.strip_prefix(&format!("{table}: "))?;
        copied
            .strip_suffix(" rows copied")
            .or_else(|| copied.strip_suffix(" row copied"))?
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn a_store_moves_to_postgresql_and_back_with_every_token_still_valid() {
    let redb_dir = tempfile::tempdir().unwrap();
    let password_line = format!("{PASSWORD}\n");
    for (email, role) in [(ROOT, "root"), (TOTP_USER, "user")] {
        let (ok, text) = admin(
            redb_dir.path(),
            &[
                "user",
                "add",
                "--email",
                email,
                "--role",
                role,
                "--password-stdin",
            ],
            &password_line,
        );
        assert!(ok, "{text}");
    }
    // Sign-ups are open and mail goes to an SMTP port where nothing listens yet: the
    // sign-up's mail stays queued until a server on the copy delivers it.
    let smtp_port = ReservedPort::new();
    let port_text = smtp_port.port.to_string();
    let mail_settings = [
        ("LATCHKEY_SIGNUP__OPEN", "true"),
        ("LATCHKEY_EMAIL__TRANSPORT", "smtp"),
        ("LATCHKEY_EMAIL__SMTP_HOST", "127.0.0.1"),
        ("LATCHKEY_EMAIL__SMTP_PORT", port_text.as_str()),
        ("LATCHKEY_EMAIL__SMTP_TLS", "none"),
    ];
    let mut redb_settings = CHEAP_HASHING.to_vec();
    redb_settings.extend(mail_settings);
    let mut server = start_server_with(redb_dir.path(), &redb_settings);
    let address = server.address;
    let root = SignedIn::from_response(
        &request_to(address, "POST", "/auth/sign-in")
            .json(&json!({ "email": ROOT, "password": PASSWORD }))
            .send()
            .await,
    );
    let created = request_to(address, "POST", "/auth/api-token")
        .bearer(&root.signed_token)
        .json(&json!({ "permissions": ["read:profile"], "ttl": 86400 }))
        .send()
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let made = MadeBefore {
        root,
        standalone_api_token: created.json["token"].as_str().unwrap().to_owned(),
    };
    let recovery_codes = enrol_totp(address).await;
    let waiting_mfa_token = first_step(address).await;
    let signed_up = request_to(address, "POST", "/auth/sign-up")
        .json(&json!({ "email": NEWCOMER, "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.text());

    // A data directory without a store has nothing to copy: refused, and none is made.
    let nowhere = tempfile::tempdir().unwrap();
    let (ok, text) = latchkey(
        nowhere.path(),
        &[],
        &["store", "copy", "--to", "/nonexistent/copy.redb"],
        "",
    );
    assert!(!ok && text.contains("there is no store at"), "{text}");
    assert!(!nowhere.path().join("latchkey.redb").exists());

    // A running server holds its redb file: the copy is refused, and says what to do.
    let postgres_url = fresh_postgres_database().await;
    let (ok, text) = latchkey(
        redb_dir.path(),
        &[],
        &["store", "copy", "--to", postgres_url.as_str()],
        "",
    );
    assert!(!ok && text.contains("stop it before copying"), "{text}");
    assert_eq!(terminate(&mut server).code(), Some(0));

    // redb → PostgreSQL, with a progress line per table.
    let (ok, text) = latchkey(
        redb_dir.path(),
        &[],
        &["store", "copy", "--to", postgres_url.as_str()],
        "",
    );
    assert!(ok, "{text}");
    assert!(text.starts_with("copying store "), "{text}");
    assert_eq!(line_count(&text, "users"), Some(3), "{text}");
    assert_eq!(line_count(&text, "mail_queue"), Some(1), "{text}");
    assert_eq!(line_count(&text, "mfa_tokens"), Some(1), "{text}");
    assert_eq!(line_count(&text, "recovery_codes"), Some(1), "{text}");
    assert!(line_count(&text, "sessions").unwrap() >= 2, "{text}");
    let store_id = text.split_whitespace().nth(2).unwrap().to_owned();

    // A server on PostgreSQL takes everything made on redb.
    let postgres_dir = tempfile::tempdir().unwrap();
    let mut postgres_settings = mail_settings.to_vec();
    postgres_settings.extend([
        ("LATCHKEY_STORE__BACKEND", "postgres"),
        ("LATCHKEY_STORE__POSTGRES_URL", postgres_url.as_str()),
    ]);
    let mut server_settings = CHEAP_HASHING.to_vec();
    server_settings.extend(postgres_settings.iter().copied());
    let smtp = SmtpServer::start_on(smtp_port, false);
    let mut server = start_server_with(postgres_dir.path(), &server_settings);
    let address = server.address;
    assert_still_valid(address, &made).await;
    assert_eq!(
        second_step(address, &waiting_mfa_token, &recovery_codes[0]).await,
        200
    );
    assert_eq!(
        second_step(address, &first_step(address).await, &recovery_codes[0]).await,
        403,
        "a recovery code works once"
    );
    let mails = wait_for_mail(smtp.inbox.path(), 1, Duration::from_secs(40)).await;
    assert!(
        mails[0].contains(&format!("To: {NEWCOMER}")),
        "{}",
        mails[0]
    );
    let verified = request_to(address, "POST", "/auth/verify")
        .header("X-Recaptcha-Token", "not-checked")
        .json(&json!({ "verify-token": token_in(&mails[0]) }))
        .send()
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    // The sequences passed the copied ids: the next user is the fourth.
    let (ok, text) = latchkey(
        postgres_dir.path(),
        &postgres_settings,
        &[
            "user",
            "add",
            "--email",
            "fourth@example.com",
            "--password-stdin",
        ],
        &password_line,
    );
    assert!(ok && text.contains("created user 4 "), "{text}");

    // PostgreSQL → redb while the PostgreSQL server runs: one snapshot.
    let back_dir = tempfile::tempdir().unwrap();
    let back_file = back_dir.path().join("latchkey.redb");
    let back_text = back_file.to_str().unwrap().to_owned();
    let (ok, text) = latchkey(
        postgres_dir.path(),
        &postgres_settings,
        &["store", "copy", "--to", back_text.as_str()],
        "",
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("copying store {store_id} ")),
        "{text}"
    );
    assert_eq!(line_count(&text, "users"), Some(4), "{text}");
    assert_eq!(terminate(&mut server).code(), Some(0));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&back_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A target that holds rows is refused, and nothing is written to it.
    let users_before = count(&postgres_url, "SELECT count(*) FROM users").await;
    let (ok, text) = latchkey(
        redb_dir.path(),
        &[],
        &["store", "copy", "--to", postgres_url.as_str()],
        "",
    );
    assert!(!ok && text.contains("the target is not empty"), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert_eq!(
        count(&postgres_url, "SELECT count(*) FROM users").await,
        users_before
    );
    let (ok, text) = latchkey(
        postgres_dir.path(),
        &postgres_settings,
        &["store", "copy", "--to", back_text.as_str()],
        "",
    );
    assert!(!ok && text.contains("the target is not empty"), "{text}");

    // A server on the new redb file takes the same tokens, and the sign-up verified on
    // PostgreSQL.
    let mut server = start_server_with(back_dir.path(), &CHEAP_HASHING);
    let address = server.address;
    assert_still_valid(address, &made).await;
    let newcomer = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": NEWCOMER, "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(newcomer.status, 200, "{}", newcomer.text());
    assert_eq!(
        second_step(address, &first_step(address).await, &recovery_codes[1]).await,
        200
    );
    assert_eq!(terminate(&mut server).code(), Some(0));
    let (ok, text) = admin(
        back_dir.path(),
        &[
            "user",
            "add",
            "--email",
            "fifth@example.com",
            "--password-stdin",
        ],
        &password_line,
    );
    assert!(ok && text.contains("created user 5 "), "{text}");
}
