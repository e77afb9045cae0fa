//! Second factors through the API (API.md section 10): TOTP enrolment and removal, the
//! sign-in's second step with codes that pyotp (an implementation not ours) computes for the
//! server's manual clock, recovery codes, the mfa-token's life, the brute-force buckets,
//! which credentials may manage second factors, OAuth sign-in, malformed bodies, the sign-in
//! page, and `latchkey user mfa-reset` through the built binary while the server runs.

use std::process::Command;
use std::time::Duration;

use latchkey::admin::{AdminCommand, execute};
use latchkey::auth::sign_in_counts::{AttemptOutcome, SignInMethod};
use latchkey::config::OAuthProviderConfig;
use latchkey::model::{Role, Status, now_unix_seconds};
use serde_json::{Value, json};

use crate::binary::{CHEAP_HASHING, admin, start_server_with, terminate};
use crate::oauth_provider::TestProvider;
use crate::page_support::PageBrowser;
use crate::support::{PASSWORD, SignedIn, TestResponse, TestServer, request_to};

pub(crate) const EMAIL: &str = "ada@example.com";
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// The code an authenticator shows at `unix_time` for this base32 secret, as pyotp computes it.
pub fn pyotp_code(secret: &str, unix_time: i64) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, pyotp; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &unix_time.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// What pyotp reads from an otpauth URI: secret, issuer, account, digits, period, digest.
fn pyotp_parse_uri(uri: &str) -> Vec<String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, pyotp\n\
             t = pyotp.parse_uri(sys.argv[1])\n\
             print(t.secret, t.issuer, t.name, t.digits, t.interval, t.digest().name)",
            uri,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    credential: &str,
    body: Value,
) -> TestResponse {
    server
        .request(method, path)
        .bearer(credential)
        .json(&body)
        .send()
        .await
}

async fn second_factors(server: &TestServer, credential: &str) -> Value {
    let profile = call(server, "GET", "/user/current", credential, json!({})).await;
    assert_eq!(profile.status, 200, "{}", profile.text());
    profile.json["second-factors"].clone()
}

fn holding(totp: bool, recovery_codes_left: u64) -> Value {
    json!({ "totp": totp, "passkeys": 0, "recovery-codes-left": recovery_codes_left })
}

/// TOTP turned on for a signed-in user: its secret and recovery codes.
pub(crate) struct Enrolment {
    pub(crate) secret: String,
    pub(crate) recovery_codes: Vec<String>,
}

pub(crate) async fn enrol(server: &TestServer, session: &SignedIn) -> Enrolment {
    let started = call(
        server,
        "POST",
        "/auth/mfa/totp",
        &session.signed_token,
        json!({ "password": PASSWORD }),
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let secret = started.json["secret"].as_str().unwrap().to_owned();
    let confirmed = call(
        server,
        "POST",
        "/auth/mfa/totp/confirm",
        &session.signed_token,
        json!({ "code": pyotp_code(&secret, server.now()) }),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    let recovery_codes = confirmed.json["recovery-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    Enrolment {
        secret,
        recovery_codes,
    }
}

/// A user with TOTP on, signed in once; the clock moved on a step, so a fresh code is due.
async fn enrolled_user(server: &TestServer) -> (SignedIn, Enrolment) {
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let session = server.sign_in(EMAIL).await;
    let enrolment = enrol(server, &session).await;
    server.advance_clock(STEP);
    (session, enrolment)
}

/// The right password's answer when a second factor is due; returns the mfa-token.
fn second_factor_required(response: &TestResponse, methods: Value) -> String {
    let body = response.assert_error(403);
    assert_eq!(body["code"], 40330, "{body}");
    assert_eq!(body["context"]["reason"], "second-factor-required");
    assert_eq!(body["context"]["methods"], methods);
    assert!(response.header("set-cookie").is_none());
    let token = body["context"]["mfa-token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "32 bytes as unpadded base64url");
    token
}

async fn first_step(server: &TestServer) -> String {
    let response = server.sign_in_with_password(EMAIL, PASSWORD).await;
    second_factor_required(&response, json!(["totp", "recovery-code"]))
}

pub(crate) async fn second_step(server: &TestServer, body: Value) -> TestResponse {
    server
        .request("POST", "/auth/sign-in/second-factor")
        .json(&body)
        .send()
        .await
}

pub(crate) async fn with_code(server: &TestServer, mfa_token: &str, code: &str) -> TestResponse {
    second_step(server, json!({ "mfa-token": mfa_token, "code": code })).await
}

fn assert_wrong(response: &TestResponse, field: &str) {
    let body = response.assert_error(403);
    assert_eq!(body["code"], 40331, "{body}");
    assert_eq!(body["context"]["field"], field);
}

fn assert_mfa_token_refused(response: &TestResponse) {
    let body = response.assert_error(401);
    assert_eq!(body["code"], 40103, "{body}");
    assert_eq!(body["context"]["field"], "mfa-token");
}

async fn live_sessions(server: &TestServer, user_id: u64) -> usize {
    server
        .app
        .store
        .live_sessions_of_user(user_id, server.now())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn enrolment_rechecks_the_password_and_stays_pending_until_a_code_confirms_it() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let session = server.sign_in(EMAIL).await;
    let token = session.signed_token.as_str();
    assert_eq!(second_factors(&server, token).await, holding(false, 0));

    let start = |body: Value| call(&server, "POST", "/auth/mfa/totp", token, body);
    let confirm = |code: String| {
        call(
            &server,
            "POST",
            "/auth/mfa/totp/confirm",
            token,
            json!({ "code": code }),
        )
    };
    let missing = start(json!({})).await;
    assert_eq!(missing.assert_error(400)["context"]["field"], "password");
    let wrong = start(json!({ "password": "not the password" })).await;
    let body = wrong.assert_error(403);
    assert_eq!(body["code"], 40304);
    assert_eq!(body["context"]["field"], "password");

    let first = start(json!({ "password": PASSWORD })).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first_secret = first.json["secret"].as_str().unwrap().to_owned();
    assert_eq!(first_secret.len(), 32, "160 bits in base32");
    let uri = first.json["otpauth-uri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Latchkey:ada%40example.com?secret={first_secret}&issuer=Latchkey&algorithm=SHA1&digits=6&period=30"
        )
    );
    assert_eq!(
        pyotp_parse_uri(uri),
        [&first_secret, "Latchkey", EMAIL, "6", "30", "sha1"]
    );
    // Pending is not on: the password alone still signs in.
    let alone = server.sign_in_with_password(EMAIL, PASSWORD).await;
    assert_eq!(alone.status, 200, "{}", alone.text());
    assert_eq!(second_factors(&server, token).await, holding(false, 0));

    // A new start replaces the pending secret: the first one's codes are wrong now.
    let second = start(json!({ "password": PASSWORD })).await;
    let second_secret = second.json["secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first_secret);
    assert_wrong(
        &confirm(pyotp_code(&first_secret, server.now())).await,
        "code",
    );
    let malformed = confirm("12a456".to_owned()).await;
    assert_eq!(malformed.assert_error(400)["context"]["field"], "code");
    // A pending enrolment waits 10 minutes, no longer.
    server.advance_clock(Duration::from_secs(601));
    let late = confirm(pyotp_code(&second_secret, server.now())).await;
    assert_eq!(late.assert_error(409)["code"], 40900);

    let third = start(json!({ "password": PASSWORD })).await;
    let third_secret = third.json["secret"].as_str().unwrap().to_owned();
    let confirmed = confirm(pyotp_code(&third_secret, server.now())).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    let codes: Vec<&str> = confirmed.json["recovery-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        assert_eq!(code.len(), 11, "{code}");
        assert_eq!(&code[5..6], "-", "{code}");
        assert!(
            code.bytes()
                .all(|byte| byte == b'-' || byte.is_ascii_digit() || byte.is_ascii_lowercase()),
            "{code}"
        );
    }
    let mut distinct = codes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    assert_eq!(second_factors(&server, token).await, holding(true, 10));
    // Nothing is pending any more, and while TOTP is on no new enrolment starts.
    server.advance_clock(STEP);
    let again = confirm(pyotp_code(&third_secret, server.now())).await;
    assert_eq!(again.assert_error(409)["code"], 40900);
    let restart = start(json!({ "password": PASSWORD })).await;
    assert_eq!(restart.assert_error(409)["code"], 40900);
    server.stop().await;
}

#[tokio::test]
async fn a_password_alone_gets_the_second_step_and_a_fresh_code_within_one_step_completes_it() {
    let server = TestServer::start().await;
    let (session, enrolment) = enrolled_user(&server).await;
    let secret = enrolment.secret.as_str();
    let sessions_before = live_sessions(&server, session.user_id).await;
    let mfa_token = first_step(&server).await;
    // A form sign-in with a ret-url is answered the same: no session, no redirect.
    let form = server
        .request("POST", "/auth/sign-in")
        .form(&[
            ("email", EMAIL),
            ("password", PASSWORD),
            ("ret-url", "/after"),
        ])
        .send()
        .await;
    second_factor_required(&form, json!(["totp", "recovery-code"]));
    assert_eq!(
        live_sessions(&server, session.user_id).await,
        sessions_before
    );

    // The confirming code's step is spent: its code is a replay now.
    let confirming_step_code = pyotp_code(secret, server.now() - 30);
    assert_wrong(
        &with_code(&server, &mfa_token, &confirming_step_code).await,
        "code",
    );
    let far = pyotp_code(secret, server.now() + 3600);
    assert_wrong(&with_code(&server, &mfa_token, &far).await, "code");
    let code = pyotp_code(secret, server.now());
    let done = with_code(&server, &mfa_token, &code).await;
    let signed_in = SignedIn::from_response(&done);
    assert!(done.header("set-cookie").unwrap().starts_with("jwt="));
    assert_eq!(signed_in.user_id, session.user_id);
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    assert_eq!(server.current_user_status(&signed_in.api_token).await, 200);
    assert_eq!(
        live_sessions(&server, session.user_id).await,
        sessions_before + 1
    );
    // The token is spent, and so is the code.
    assert_mfa_token_refused(&with_code(&server, &mfa_token, &code).await);
    let next_token = first_step(&server).await;
    assert_wrong(&with_code(&server, &next_token, &code).await, "code");

    // One step of skew either way. The last accepted step is now's, S; the next step's code
    // is taken (S+1), then, 90 seconds on (now S+4), the previous step's (S+3).
    let ahead = pyotp_code(secret, server.now() + 30);
    SignedIn::from_response(&with_code(&server, &next_token, &ahead).await);
    server.advance_clock(Duration::from_secs(90));
    let behind_token = first_step(&server).await;
    let behind = pyotp_code(secret, server.now() - 30);
    SignedIn::from_response(&with_code(&server, &behind_token, &behind).await);
    // Two steps away is refused, on either side (now S+7; last accepted S+3).
    server.advance_clock(Duration::from_secs(90));
    let token = first_step(&server).await;
    for two_away in [server.now() - 60, server.now() + 60] {
        assert_wrong(
            &with_code(&server, &token, &pyotp_code(secret, two_away)).await,
            "code",
        );
    }
    SignedIn::from_response(&with_code(&server, &token, &pyotp_code(secret, server.now())).await);

    // The metrics: each first step once, each second step by its outcome.
    let counts = &server.app.sign_in_counts;
    let count = |outcome| counts.count(SignInMethod::Password, outcome);
    assert_eq!(count(AttemptOutcome::SecondFactorRequired), 5);
    // The enrolling sign-in and four second steps.
    assert_eq!(count(AttemptOutcome::Success), 5);
    // A replay, a far code, a spent code and two codes two steps away.
    assert_eq!(count(AttemptOutcome::WrongCredentials), 5);

    // The session is the one the first step asked for: short, ending the others.
    server.advance_clock(STEP);
    let asked = server
        .request("POST", "/auth/sign-in")
        .json(&json!({
            "email": EMAIL, "password": PASSWORD, "long-term-token": false, "logout-other": true,
        }))
        .send()
        .await;
    let token = second_factor_required(&asked, json!(["totp", "recovery-code"]));
    let done = with_code(&server, &token, &pyotp_code(secret, server.now())).await;
    let signed_in = SignedIn::from_response(&done);
    let short_term = server.app.config.session.short_term_seconds;
    let cookie = done.header("set-cookie").unwrap();
    assert!(
        cookie.contains(&format!("Max-Age={short_term}")),
        "{cookie}"
    );
    assert_eq!(live_sessions(&server, session.user_id).await, 1);
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    assert_eq!(server.current_user_status(&session.signed_token).await, 401);
    server.stop().await;
}

#[tokio::test]
async fn recovery_codes_work_once_each_count_down_and_regeneration_replaces_them() {
    let server = TestServer::start().await;
    let (session, enrolment) = enrolled_user(&server).await;
    let credential = session.signed_token.as_str();
    let codes = &enrolment.recovery_codes;
    let with_recovery_code = |mfa_token: String, code: String| {
        second_step(
            &server,
            json!({ "mfa-token": mfa_token, "recovery-code": code }),
        )
    };
    // Read loosely: any case, without the hyphen.
    let loose = codes[0].to_uppercase().replace('-', "");
    SignedIn::from_response(&with_recovery_code(first_step(&server).await, loose).await);
    assert_eq!(second_factors(&server, credential).await, holding(true, 9));
    let token = first_step(&server).await;
    assert_wrong(
        &with_recovery_code(token.clone(), codes[0].clone()).await,
        "recovery-code",
    );
    assert_eq!(second_factors(&server, credential).await, holding(true, 9));
    // A wrong one leaves the token alive: another code completes it.
    SignedIn::from_response(&with_recovery_code(token, codes[1].clone()).await);
    assert_eq!(second_factors(&server, credential).await, holding(true, 8));
    // The token check reads the summary with the credential: the session's api-token and a
    // standalone API token see the same as the signed token.
    assert_eq!(
        second_factors(&server, &session.api_token).await,
        holding(true, 8)
    );
    let standalone = call(
        &server,
        "POST",
        "/auth/api-token",
        credential,
        json!({ "permissions": ["read:profile"] }),
    )
    .await;
    assert_eq!(standalone.status, 200, "{}", standalone.text());
    let standalone = standalone.json["token"].as_str().unwrap().to_owned();
    assert_eq!(second_factors(&server, &standalone).await, holding(true, 8));

    // Regeneration: the password again, ten new codes, every old one gone.
    let regenerate = |body: Value| {
        call(
            &server,
            "POST",
            "/auth/mfa/recovery-codes",
            credential,
            body,
        )
    };
    let wrong = regenerate(json!({ "password": "not the password" })).await;
    assert_eq!(wrong.assert_error(403)["context"]["field"], "password");
    let missing = regenerate(json!({})).await;
    assert_eq!(missing.assert_error(400)["context"]["field"], "password");
    let regenerated = regenerate(json!({ "password": PASSWORD })).await;
    assert_eq!(regenerated.status, 200, "{}", regenerated.text());
    let new_codes: Vec<String> = regenerated.json["recovery-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|code| !codes.contains(code)));
    assert_eq!(second_factors(&server, credential).await, holding(true, 10));
    let token = first_step(&server).await;
    assert_wrong(
        &with_recovery_code(token.clone(), codes[2].clone()).await,
        "recovery-code",
    );
    // Spent to the last, one by one.
    SignedIn::from_response(&with_recovery_code(token, new_codes[0].clone()).await);
    for code in &new_codes[1..] {
        let token = first_step(&server).await;
        SignedIn::from_response(&with_recovery_code(token, code.clone()).await);
    }
    assert_eq!(second_factors(&server, credential).await, holding(true, 0));
    // None left: the sign-in offers the authenticator alone.
    let response = server.sign_in_with_password(EMAIL, PASSWORD).await;
    second_factor_required(&response, json!(["totp"]));
    server.stop().await;
}

#[tokio::test]
async fn an_mfa_token_lives_five_minutes_and_dies_after_five_wrong_codes() {
    // Generous buckets, so that the token's own limit is what shows.
    let server = TestServer::start_with(|config| {
        config.throttle.failures_per_account_network = 100;
        config.throttle.failures_per_account = 100;
        config.throttle.failures_per_network = 100;
    })
    .await;
    let (_, enrolment) = enrolled_user(&server).await;
    let secret = enrolment.secret.as_str();
    let token = first_step(&server).await;
    server.advance_clock(Duration::from_secs(5 * 60));
    let code = pyotp_code(secret, server.now());
    assert_mfa_token_refused(&with_code(&server, &token, &code).await);

    let token = first_step(&server).await;
    let wrong = pyotp_code(secret, server.now() + 3600);
    for _ in 0..5 {
        assert_wrong(&with_code(&server, &token, &wrong).await, "code");
    }
    assert_mfa_token_refused(&with_code(&server, &token, &code).await);
    // Nothing was spent: a fresh token takes the same code.
    let token = first_step(&server).await;
    SignedIn::from_response(&with_code(&server, &token, &code).await);
    server.stop().await;
}

#[tokio::test]
async fn wrong_codes_drain_the_brute_force_buckets_that_passwords_drain() {
    // The default buckets: five failures a minute per account and network.
    let server = TestServer::start().await;
    let (session, enrolment) = enrolled_user(&server).await;
    let secret = enrolment.secret.as_str();
    let first = first_step(&server).await;
    let second = first_step(&server).await;
    let wrong = pyotp_code(secret, server.now() + 3600);
    for _ in 0..5 {
        assert_wrong(&with_code(&server, &first, &wrong).await, "code");
    }
    // The sixth try waits, the right code on another token included, and so does a password.
    let code = pyotp_code(secret, server.now());
    let throttled = with_code(&server, &second, &code).await;
    assert_eq!(throttled.assert_error(429)["code"], 42900);
    assert!(throttled.header("retry-after").is_some());
    let password = server.sign_in_with_password(EMAIL, PASSWORD).await;
    password.assert_error(429);
    // Once the wait is over, the token (still within its 5 minutes) completes.
    server.advance_clock(Duration::from_secs(60));
    let code = pyotp_code(secret, server.now());
    SignedIn::from_response(&with_code(&server, &second, &code).await);

    // Wrong codes when turning TOTP off count too, the right password between them
    // forgiving none.
    server.advance_clock(Duration::from_secs(60));
    let remove = |code: String| {
        call(
            &server,
            "DELETE",
            "/auth/mfa/totp",
            &session.signed_token,
            json!({ "password": PASSWORD, "code": code }),
        )
    };
    let wrong = pyotp_code(secret, server.now() + 3600);
    for _ in 0..5 {
        assert_wrong(&remove(wrong.clone()).await, "code");
    }
    remove(pyotp_code(secret, server.now()))
        .await
        .assert_error(429);
    assert_eq!(
        second_factors(&server, &session.signed_token).await,
        holding(true, 10)
    );

    // And wrong codes confirming an enrolment.
    let other = "grace@example.com";
    server.add_user(other, Role::User, Status::Active).await;
    let other_session = server.sign_in(other).await;
    let started = call(
        &server,
        "POST",
        "/auth/mfa/totp",
        &other_session.signed_token,
        json!({ "password": PASSWORD }),
    )
    .await;
    let other_secret = started.json["secret"].as_str().unwrap().to_owned();
    let confirm = |code: String| {
        call(
            &server,
            "POST",
            "/auth/mfa/totp/confirm",
            &other_session.signed_token,
            json!({ "code": code }),
        )
    };
    let wrong = pyotp_code(&other_secret, server.now() + 3600);
    for _ in 0..5 {
        assert_wrong(&confirm(wrong.clone()).await, "code");
    }
    confirm(pyotp_code(&other_secret, server.now()))
        .await
        .assert_error(429);
    server.stop().await;
}

#[tokio::test]
async fn wrong_codes_spread_over_minutes_and_mfa_tokens_meet_the_accounts_hourly_ceiling() {
    // The password is known; the guesses stay under the minute buckets. The default hourly
    // ceiling of ten wrong second factors per account still ends them.
    let server = TestServer::start().await;
    let (_session, enrolment) = enrolled_user(&server).await;
    let secret = enrolment.secret.as_str();
    for _ in 0..5 {
        let mfa_token = first_step(&server).await;
        let wrong = pyotp_code(secret, server.now() + 3600);
        for _ in 0..2 {
            assert_wrong(&with_code(&server, &mfa_token, &wrong).await, "code");
        }
        server.advance_clock(Duration::from_secs(60));
    }
    // The eleventh try waits, the right code included, though the minute buckets are full.
    let mfa_token = first_step(&server).await;
    let throttled = with_code(&server, &mfa_token, &pyotp_code(secret, server.now())).await;
    assert_eq!(throttled.assert_error(429)["code"], 42900);
    let wait: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=360).contains(&wait), "{wait}");
    // One failure's worth of the hour later, the right code completes.
    server.advance_clock(Duration::from_secs(wait));
    let mfa_token = first_step(&server).await;
    let code = pyotp_code(secret, server.now());
    SignedIn::from_response(&with_code(&server, &mfa_token, &code).await);
    server.stop().await;
}

#[tokio::test]
async fn api_tokens_and_minted_tokens_are_refused_on_every_route_that_manages_second_factors() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let session = server.sign_in(EMAIL).await;
    let permissions = json!(["read:user", "write:user"]);
    let standalone = call(
        &server,
        "POST",
        "/auth/api-token",
        &session.signed_token,
        json!({ "permissions": permissions, "ttl": 3600 }),
    )
    .await;
    assert_eq!(standalone.status, 200, "{}", standalone.text());
    let standalone = standalone.json["token"].as_str().unwrap().to_owned();
    let minted = call(
        &server,
        "POST",
        "/auth/jwt",
        &session.signed_token,
        json!({ "permissions": permissions }),
    )
    .await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    let minted = minted.json["token"].as_str().unwrap().to_owned();
    let routes = [
        ("POST", "/auth/mfa/totp", json!({ "password": PASSWORD })),
        (
            "DELETE",
            "/auth/mfa/totp",
            json!({ "password": PASSWORD, "code": "123456" }),
        ),
        (
            "POST",
            "/auth/mfa/totp/confirm",
            json!({ "code": "123456" }),
        ),
        (
            "POST",
            "/auth/mfa/recovery-codes",
            json!({ "password": PASSWORD }),
        ),
    ];
    for (method, path, body) in &routes {
        for credential in [&standalone, &minted] {
            let refused = call(&server, method, path, credential, body.clone()).await;
            let error = refused.assert_error(403);
            assert_eq!(error["code"], 40332, "{method} {path}");
            assert_eq!(error["context"]["reason"], "sign-in-session-required");
        }
        let anonymous = server.request(method, path).json(body).send().await;
        anonymous.assert_error(401);
    }
    assert_eq!(
        second_factors(&server, &session.signed_token).await,
        holding(false, 0)
    );
    // The sign-in's own api-token is the session's credential: it may.
    let started = call(
        &server,
        "POST",
        "/auth/mfa/totp",
        &session.api_token,
        json!({ "password": PASSWORD }),
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.text());
    server.stop().await;
}

#[tokio::test]
async fn turning_totp_off_takes_the_password_and_a_code_and_then_a_password_alone_signs_in() {
    let server = TestServer::start().await;
    let (session, enrolment) = enrolled_user(&server).await;
    let secret = enrolment.secret.as_str();
    let remove = |body: Value| {
        call(
            &server,
            "DELETE",
            "/auth/mfa/totp",
            &session.signed_token,
            body,
        )
    };
    let code = pyotp_code(secret, server.now());
    let no_code = remove(json!({ "password": PASSWORD })).await;
    assert_eq!(no_code.assert_error(400)["context"]["field"], "code");
    let both = remove(json!({
        "password": PASSWORD, "code": code, "recovery-code": enrolment.recovery_codes[0],
    }))
    .await;
    assert_eq!(both.assert_error(400)["context"]["field"], "code");
    let no_password = remove(json!({ "code": code })).await;
    assert_eq!(
        no_password.assert_error(400)["context"]["field"],
        "password"
    );
    let wrong_password = remove(json!({ "password": "not the password", "code": code })).await;
    assert_eq!(
        wrong_password.assert_error(403)["context"]["field"],
        "password"
    );
    let far = pyotp_code(secret, server.now() + 3600);
    assert_wrong(
        &remove(json!({ "password": PASSWORD, "code": far })).await,
        "code",
    );
    let removed = remove(json!({ "password": PASSWORD, "code": code })).await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    assert_eq!(
        second_factors(&server, &session.signed_token).await,
        holding(false, 0)
    );
    SignedIn::from_response(&server.sign_in_with_password(EMAIL, PASSWORD).await);
    let again = remove(json!({ "password": PASSWORD, "code": code })).await;
    assert_eq!(again.assert_error(409)["code"], 40900);

    // The device lost: a recovery code turns it off instead.
    let enrolment = enrol(&server, &session).await;
    let removed = remove(json!({
        "password": PASSWORD, "recovery-code": enrolment.recovery_codes[3],
    }))
    .await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    assert_eq!(
        second_factors(&server, &session.signed_token).await,
        holding(false, 0)
    );
    SignedIn::from_response(&server.sign_in_with_password(EMAIL, PASSWORD).await);
    server.stop().await;
}

#[tokio::test]
async fn an_oauth_sign_in_to_an_account_with_totp_gets_the_second_step_too() {
    const PROVIDER: &str = "test-oidc";
    let provider = TestProvider::start().await;
    let server = TestServer::start_with(|config| {
        config.oauth.providers = vec![OAuthProviderConfig {
            allow_sign_up: Some(true),
            ..provider.oidc_config(PROVIDER)
        }];
    })
    .await;
    let oauth_sign_in = || async {
        let token = provider
            .rsa
            .sign(&provider.claims("subject-1", "oauth@example.com", true));
        server
            .request("POST", "/auth/oauth-sign-in")
            .json(&json!({ "oauth-provider-token": { "provider": PROVIDER, "token": token } }))
            .send()
            .await
    };
    let first = oauth_sign_in().await;
    assert_eq!(first.status, 200, "{}", first.text());
    let credential = first.json["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The account has no password: a fresh sign-in is what enrolment asks instead.
    let started = call(&server, "POST", "/auth/mfa/totp", &credential, json!({})).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let secret = started.json["secret"].as_str().unwrap().to_owned();
    assert!(
        started.json["otpauth-uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Latchkey:oauth%40example.com?")
    );
    let confirmed = call(
        &server,
        "POST",
        "/auth/mfa/totp/confirm",
        &credential,
        json!({ "code": pyotp_code(&secret, server.now()) }),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    server.advance_clock(STEP);

    // The provider's token alone opens no session now.
    let mfa_token =
        second_factor_required(&oauth_sign_in().await, json!(["totp", "recovery-code"]));
    let done = with_code(&server, &mfa_token, &pyotp_code(&secret, server.now())).await;
    let signed_in = SignedIn::from_response(&done);
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    let counts = &server.app.sign_in_counts;
    assert_eq!(
        counts.count(SignInMethod::OAuth, AttemptOutcome::SecondFactorRequired),
        1
    );
    assert_eq!(
        counts.count(SignInMethod::OAuth, AttemptOutcome::Success),
        2
    );
    assert_eq!(
        counts.count(SignInMethod::Password, AttemptOutcome::Success),
        0
    );

    // Ten minutes on, that sign-in is no longer fresh enough to change a second factor.
    server.advance_clock(Duration::from_secs(601));
    for (method, path, body) in [
        ("POST", "/auth/mfa/recovery-codes", json!({})),
        (
            "DELETE",
            "/auth/mfa/totp",
            json!({ "code": pyotp_code(&secret, server.now()) }),
        ),
    ] {
        let stale = call(&server, method, path, &credential, body).await;
        let error = stale.assert_error(403);
        assert_eq!(error["code"], 40333, "{method} {path}");
        assert_eq!(error["context"]["reason"], "recent-sign-in-required");
    }
    server.stop().await;
    provider.stop().await;
}

#[tokio::test]
async fn a_password_change_while_an_mfa_token_waits_ends_the_token() {
    let server = TestServer::start().await;
    let (session, enrolment) = enrolled_user(&server).await;
    let mfa_token = first_step(&server).await;
    let changed = call(
        &server,
        "PUT",
        "/auth/current/password",
        &session.signed_token,
        json!({ "old-password": PASSWORD, "new-password": "a brand new password" }),
    )
    .await;
    assert_eq!(changed.status, 204, "{}", changed.text());
    let code = pyotp_code(&enrolment.secret, server.now());
    assert_mfa_token_refused(&with_code(&server, &mfa_token, &code).await);
    // The new password's first step leads to a working second one, with the same code.
    let response = server
        .sign_in_with_password(EMAIL, "a brand new password")
        .await;
    let mfa_token = second_factor_required(&response, json!(["totp", "recovery-code"]));
    SignedIn::from_response(&with_code(&server, &mfa_token, &code).await);
    server.stop().await;
}

#[tokio::test]
async fn a_suspended_account_is_refused_at_the_second_step() {
    let server = TestServer::start().await;
    let (_, enrolment) = enrolled_user(&server).await;
    let mfa_token = first_step(&server).await;
    let reply = execute(
        &server.app.store,
        Some(&server.app),
        AdminCommand::UserSuspend {
            email: EMAIL.to_owned(),
        },
    )
    .await;
    assert!(reply.ok, "{}", reply.output);
    let code = pyotp_code(&enrolment.secret, server.now());
    let refused = with_code(&server, &mfa_token, &code).await;
    let body = refused.assert_error(403);
    assert_eq!(body["code"], 40302);
    assert_eq!(body["context"]["reason"], "suspended");
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_on_every_second_factor_route_get_the_error_shape_and_never_a_500() {
    let server = TestServer::start().await;
    let (session, enrolment) = enrolled_user(&server).await;
    let credential = session.signed_token.as_str();
    let routes = [
        ("POST", "/auth/mfa/totp"),
        ("DELETE", "/auth/mfa/totp"),
        ("POST", "/auth/mfa/totp/confirm"),
        ("POST", "/auth/mfa/recovery-codes"),
        ("POST", "/auth/sign-in/second-factor"),
    ];
    let oversized = vec![b' '; 65 * 1024];
    for (method, path) in routes {
        for (content_type, body, status, code) in [
            ("application/json", b"{not json".to_vec(), 400, 40001),
            ("application/json", b"[1, 2]".to_vec(), 400, 40001),
            (
                "application/json",
                br#"{"code": 1, "code": 2}"#.to_vec(),
                400,
                40000,
            ),
            (
                "application/x-www-form-urlencoded",
                b"code=%ff".to_vec(),
                400,
                40001,
            ),
            ("text/plain", b"code".to_vec(), 415, 41500),
            ("application/json", oversized.clone(), 413, 41300),
        ] {
            let response = server
                .request(method, path)
                .bearer(credential)
                .raw_body(content_type, body)
                .send()
                .await;
            assert_eq!(
                response.assert_error(status)["code"],
                code,
                "{method} {path} {content_type}"
            );
        }
    }
    let field_of = |response: TestResponse| {
        response.assert_error(400)["context"]["field"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (method, path, body, field) in [
        (
            "POST",
            "/auth/mfa/totp",
            json!({ "password": 5 }),
            "password",
        ),
        (
            "DELETE",
            "/auth/mfa/totp",
            json!({ "password": PASSWORD, "code": 123_456 }),
            "code",
        ),
        (
            "DELETE",
            "/auth/mfa/totp",
            json!({ "password": PASSWORD, "recovery-code": "not a code" }),
            "recovery-code",
        ),
        ("POST", "/auth/mfa/totp/confirm", json!({}), "code"),
        (
            "POST",
            "/auth/mfa/totp/confirm",
            json!({ "code": ["1"] }),
            "code",
        ),
        (
            "POST",
            "/auth/mfa/totp/confirm",
            json!({ "code": "1234567" }),
            "code",
        ),
        (
            "POST",
            "/auth/mfa/recovery-codes",
            json!({ "password": true }),
            "password",
        ),
    ] {
        let response = call(&server, method, path, credential, body).await;
        assert_eq!(field_of(response), field, "{method} {path}");
    }
    let mfa_token = first_step(&server).await;
    for (body, field) in [
        (json!({}), "mfa-token"),
        (json!({ "mfa-token": 5, "code": "123456" }), "mfa-token"),
        (json!({ "mfa-token": mfa_token }), "code"),
        (
            json!({ "mfa-token": mfa_token, "code": "123456", "recovery-code": "abcde-fghjk" }),
            "code",
        ),
        (json!({ "mfa-token": mfa_token, "code": "12 456" }), "code"),
        (json!({ "mfa-token": mfa_token, "code": 123_456 }), "code"),
        (
            json!({ "mfa-token": mfa_token, "recovery-code": "not-a-code" }),
            "recovery-code",
        ),
        (
            json!({ "mfa-token": mfa_token, "challenge-id": "abc", "credential": {} }),
            "challenge-id",
        ),
        (
            json!({ "mfa-token": mfa_token, "credential": "text" }),
            "credential",
        ),
    ] {
        assert_eq!(
            field_of(second_step(&server, body.clone()).await),
            field,
            "{body}"
        );
    }
    assert_mfa_token_refused(&with_code(&server, "not-a-token", "123456").await);
    // Nothing above counted against the token: a form completes it, and with a ret-url
    // the answer is a redirect there, with the cookie.
    let code = pyotp_code(&enrolment.secret, server.now());
    let done = server
        .request("POST", "/auth/sign-in/second-factor")
        .form(&[
            ("mfa-token", mfa_token.as_str()),
            ("code", code.as_str()),
            ("ret-url", "/after"),
        ])
        .send()
        .await;
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(done.header("location"), Some("/after"));
    assert!(done.header("set-cookie").unwrap().starts_with("jwt="));
    server.stop().await;
}

#[tokio::test]
async fn the_sign_in_page_opens_no_session_on_a_password_alone() {
    let server = TestServer::start().await;
    let (session, _) = enrolled_user(&server).await;
    let sessions_before = live_sessions(&server, session.user_id).await;
    let mut browser = PageBrowser::new(&server);
    let answered = browser
        .submit("/sign-in", &[("email", EMAIL), ("password", PASSWORD)])
        .await;
    assert_ne!(answered.status, 500, "{}", answered.text());
    assert!(
        !browser.cookies.contains_key("jwt"),
        "{:?}",
        answered.headers
    );
    assert_eq!(
        live_sessions(&server, session.user_id).await,
        sessions_before
    );
    server.stop().await;
}

#[tokio::test]
async fn mfa_reset_through_the_cli_removes_the_second_factors_while_the_server_runs() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let (ok, text) = admin(
        path,
        &["user", "add", "--email", EMAIL, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{text}");
    let mut server = start_server_with(path, &CHEAP_HASHING);
    let address = server.address;
    let sign_in = || async {
        request_to(address, "POST", "/auth/sign-in")
            .json(&json!({ "email": EMAIL, "password": PASSWORD }))
            .send()
            .await
    };
    let session = SignedIn::from_response(&sign_in().await);
    let started = request_to(address, "POST", "/auth/mfa/totp")
        .bearer(&session.signed_token)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let secret = started.json["secret"].as_str().unwrap().to_owned();
    // The binary runs on the real clock: pyotp's code for now, one step of skew to spare.
    let confirmed = request_to(address, "POST", "/auth/mfa/totp/confirm")
        .bearer(&session.signed_token)
        .json(&json!({ "code": pyotp_code(&secret, now_unix_seconds()) }))
        .send()
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    let recovery_codes: Vec<String> = confirmed.json["recovery-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    second_factor_required(&sign_in().await, json!(["totp", "recovery-code"]));

    let (ok, text) = admin(path, &["user", "mfa-reset", "--email", EMAIL], "");
    assert!(ok, "{text}");
    assert!(
        text.contains("removed the second factors of ada@example.com: TOTP, 10 recovery codes"),
        "{text}"
    );
    let alone = SignedIn::from_response(&sign_in().await);
    let profile = request_to(address, "GET", "/user/current")
        .bearer(&alone.signed_token)
        .send()
        .await;
    assert_eq!(profile.json["second-factors"], holding(false, 0));
    let (ok, text) = admin(
        path,
        &["user", "mfa-reset", "--email", "nobody@example.com"],
        "",
    );
    assert!(!ok && text.contains("no user nobody@example.com"), "{text}");
    assert_eq!(terminate(&mut server).code(), Some(0));

    let log = server.log.lock().unwrap().join("\n");
    for event in [
        "totp-enrolment-started",
        "totp-enabled",
        "second-factor-required",
        "mfa-reset",
    ] {
        let line = log
            .lines()
            .find(|line| line.contains(&format!("event=\"{event}\"")))
            .unwrap_or_else(|| panic!("no {event} audit line in {log}"));
        assert!(
            line.contains(&format!("user_id={}", session.user_id)),
            "{line}"
        );
    }
    let reset_line = log.lines().find(|line| line.contains("mfa-reset")).unwrap();
    assert!(
        reset_line.contains("source=\"admin\"") && reset_line.contains("recovery_codes=10"),
        "{reset_line}"
    );
    assert!(!log.contains(&secret), "the secret reached the log");
    for code in &recovery_codes {
        assert!(
            !log.contains(code.as_str()),
            "a recovery code reached the log"
        );
    }

    // Stopped: the command opens the store itself.
    let (ok, text) = admin(path, &["user", "mfa-reset", "--email", EMAIL], "");
    assert!(ok && text.contains("no TOTP, 0 recovery codes"), "{text}");
}
