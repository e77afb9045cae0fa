//! Passkeys over the API (issue #19, API.md section 10), against a software authenticator
//! (`passkey_authenticator`): registration and passwordless sign-in, single-use challenges
//! that expire after 5 minutes and survive a restart, every spoiled ceremony refused, a
//! credential bound to the user who registered it, who may manage passkeys, the cap, and
//! the second-factor pieces through the library.

use std::time::Duration;

use latchkey::auth::passkeys::{finish_passkey_assertion, start_passkey_assertion_for_user};
use latchkey::auth::second_factor::SecondFactorGate;
use latchkey::auth::sign_in_counts::{AttemptOutcome, SignInMethod};
use latchkey::auth::{AuthError, ClientInfo, SessionOpening, open_session};
use latchkey::model::email_address::EmailAddress;
use latchkey::model::passkey::PasskeyChallengeId;
use latchkey::model::second_factor::FirstFactor;
use latchkey::model::{NewUser, Role, Status, User};
use serde_json::{Value, json};

use crate::passkey_authenticator::{Ceremony, SoftwareAuthenticator, base64url_decode};
use crate::security_keys::wait_until_store_is_free;
use crate::support::{PASSWORD, SignedIn, TestResponse, TestServer};

pub(crate) const PUBLIC_URL: &str = "https://auth.example.test";

async fn passkey_server() -> TestServer {
    TestServer::start_with(|config| {
        config.server.public_url = Some(PUBLIC_URL.parse().unwrap());
    })
    .await
}

/// A browser on the server's own origin, with a user who unlocks the authenticator.
pub(crate) fn honest() -> Ceremony {
    Ceremony::at(PUBLIC_URL)
}

/// `register/start` as `credential`, with this password (or none); the answer as it is.
async fn register_start(
    server: &TestServer,
    credential: &str,
    password: Option<&str>,
) -> TestResponse {
    let body = match password {
        Some(password) => json!({ "password": password }),
        None => json!({}),
    };
    server
        .request("POST", "/auth/passkey/register/start")
        .bearer(credential)
        .json(&body)
        .send()
        .await
}

/// A started ceremony's challenge id and options, from a 200 answer.
fn ceremony(response: &TestResponse) -> (String, Value) {
    assert_eq!(response.status, 200, "{}", response.text());
    let challenge_id = response.json["challenge-id"].as_str().unwrap().to_owned();
    assert!(PasskeyChallengeId::parse_canonical(&challenge_id).is_some());
    (challenge_id, response.json["options"].clone())
}

async fn register_finish(
    server: &TestServer,
    credential: &str,
    challenge_id: &str,
    name: &str,
    answer: &Value,
) -> TestResponse {
    server
        .request("POST", "/auth/passkey/register/finish")
        .bearer(credential)
        .json(&json!({ "challenge-id": challenge_id, "name": name, "credential": answer }))
        .send()
        .await
}

/// Registers the authenticator's credential for the signed-in user; answers the new
/// passkey.
pub(crate) async fn register(
    server: &TestServer,
    signed_in: &SignedIn,
    authenticator: &mut SoftwareAuthenticator,
    name: &str,
) -> Value {
    let (challenge_id, options) =
        ceremony(&register_start(server, &signed_in.signed_token, Some(PASSWORD)).await);
    let answer = authenticator.register(&options, &honest());
    let response = register_finish(
        server,
        &signed_in.signed_token,
        &challenge_id,
        name,
        &answer,
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.text());
    response.json
}

pub(crate) async fn sign_in_start(server: &TestServer) -> (String, Value) {
    ceremony(
        &server
            .request("POST", "/auth/passkey/sign-in/start")
            .send()
            .await,
    )
}

pub(crate) async fn sign_in_finish(
    server: &TestServer,
    challenge_id: &str,
    answer: &Value,
) -> TestResponse {
    server
        .request("POST", "/auth/passkey/sign-in/finish")
        .json(&json!({ "challenge-id": challenge_id, "credential": answer }))
        .send()
        .await
}

/// A passwordless sign-in with this ceremony; the finish's answer.
pub(crate) async fn sign_in_with(
    server: &TestServer,
    authenticator: &mut SoftwareAuthenticator,
    ceremony: &Ceremony,
) -> TestResponse {
    let (challenge_id, options) = sign_in_start(server).await;
    let answer = authenticator.assert(&options, ceremony);
    sign_in_finish(server, &challenge_id, &answer).await
}

async fn list(server: &TestServer, credential: &str) -> Vec<Value> {
    let response = server
        .request("GET", "/auth/passkey")
        .bearer(credential)
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json["passkeys"].as_array().unwrap().clone()
}

fn assert_challenge_refused(response: &TestResponse, reason: &str) {
    let body = response.assert_error(400);
    assert_eq!(body["code"], 40006, "{body}");
    assert_eq!(body["context"]["field"], "challenge-id");
    assert_eq!(body["context"]["reason"], reason);
}

fn assert_passkey_refused(response: &TestResponse) {
    let body = response.assert_error(401);
    assert_eq!(body["code"], 40104, "{body}");
}

#[tokio::test]
async fn a_registered_passkey_signs_in_without_a_password_like_a_password_sign_in() {
    let server = passkey_server().await;
    let user = server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("ada@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();

    let start = register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await;
    let (challenge_id, options) = ceremony(&start);
    assert_eq!(options["rp"]["id"], "auth.example.test");
    assert_eq!(options["user"]["name"], "ada@example.com");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(options["excludeCredentials"], Value::Null);
    let answer = authenticator.register(&options, &honest());
    let created = register_finish(
        &server,
        &signed_in.signed_token,
        &challenge_id,
        "  Laptop  ",
        &answer,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json["name"], "Laptop");
    assert!(created.json["created"].is_string());
    assert!(created.json.get("last-used").is_none());
    let passkey_id = created.json["id"].as_str().unwrap().to_owned();

    // A second registration leaves the first credential out, under the same user handle.
    let (_, second_options) =
        ceremony(&register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await);
    assert_eq!(
        base64url_decode(
            second_options["excludeCredentials"][0]["id"]
                .as_str()
                .unwrap()
        ),
        authenticator.credential_id
    );
    assert_eq!(second_options["user"]["id"], options["user"]["id"]);

    // The passwordless sign-in: a discoverable request, user verification required.
    let (challenge_id, request_options) = sign_in_start(&server).await;
    assert_eq!(request_options["rpId"], "auth.example.test");
    assert_eq!(request_options["userVerification"], "required");
    assert_eq!(request_options["allowCredentials"], json!([]));
    let answer = authenticator.assert(&request_options, &honest());
    let response = sign_in_finish(&server, &challenge_id, &answer).await;
    let passkey_session = SignedIn::from_response(&response);
    assert_eq!(passkey_session.user_id, user.id);
    assert_eq!(response.json["email"], "ada@example.com");
    assert_eq!(response.json["status"], "active");
    let cookie = response.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("jwt={}", passkey_session.signed_token)),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    for credential in [&passkey_session.signed_token, &passkey_session.api_token] {
        let profile = server
            .request("GET", "/user/current")
            .bearer(credential)
            .send()
            .await;
        assert_eq!(profile.status, 200, "{}", profile.text());
        assert_eq!(profile.json["email"], "ada@example.com");
    }
    // The session is a sign-in session: it lists with the others and may add passkeys.
    let sessions = server
        .request("GET", "/auth/session")
        .bearer(&passkey_session.signed_token)
        .send()
        .await;
    assert_eq!(sessions.json["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(
        register_start(&server, &passkey_session.signed_token, Some(PASSWORD))
            .await
            .status,
        200
    );

    let listed = list(&server, &passkey_session.api_token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], passkey_id.as_str());
    assert_eq!(listed[0]["name"], "Laptop");
    assert!(listed[0]["last-used"].is_string(), "{}", listed[0]);
    assert_eq!(
        server
            .app
            .sign_in_counts
            .count(SignInMethod::Passkey, AttemptOutcome::Success),
        1
    );
    // A second sign-in with a higher counter works too.
    let again = sign_in_with(&server, &mut authenticator, &honest()).await;
    assert_eq!(again.status, 200, "{}", again.text());
    server.stop().await;
}

#[tokio::test]
async fn without_public_url_every_passkey_endpoint_answers_409_saying_why() {
    let server = TestServer::start().await;
    server
        .add_user("nourl@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("nourl@example.com").await;
    let token = signed_in.signed_token.as_str();
    let challenge = PasskeyChallengeId::new_random().to_string();
    let credential = json!({ "id": "AQID" });
    let requests = [
        server
            .request("POST", "/auth/passkey/register/start")
            .bearer(token)
            .json(&json!({ "password": PASSWORD })),
        server
            .request("POST", "/auth/passkey/register/finish")
            .bearer(token)
            .json(&json!({ "challenge-id": challenge, "name": "x", "credential": credential })),
        server.request("GET", "/auth/passkey").bearer(token),
        server
            .request(
                "DELETE",
                &format!("/auth/passkey/{}", PasskeyChallengeId::new_random()),
            )
            .bearer(token),
        server.request("POST", "/auth/passkey/sign-in/start"),
        server
            .request("POST", "/auth/passkey/sign-in/finish")
            .json(&json!({ "challenge-id": challenge, "credential": credential })),
    ];
    for request in requests {
        let response = request.send().await;
        let body = response.assert_error(409);
        assert_eq!(body["code"], 40901);
        assert_eq!(body["context"]["reason"], "passkeys-unavailable");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("[server] public_url"),
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_challenge_finishes_one_ceremony_once() {
    let server = passkey_server().await;
    server
        .add_user("once@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("once@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();

    let (challenge_id, options) =
        ceremony(&register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await);
    let answer = authenticator.register(&options, &honest());
    let first = register_finish(
        &server,
        &signed_in.signed_token,
        &challenge_id,
        "Key",
        &answer,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let replayed = register_finish(
        &server,
        &signed_in.signed_token,
        &challenge_id,
        "Key",
        &answer,
    )
    .await;
    assert_challenge_refused(&replayed, "invalid");

    let (challenge_id, options) = sign_in_start(&server).await;
    let answer = authenticator.assert(&options, &honest());
    assert_eq!(
        sign_in_finish(&server, &challenge_id, &answer).await.status,
        200
    );
    assert_challenge_refused(
        &sign_in_finish(&server, &challenge_id, &answer).await,
        "invalid",
    );
    // A challenge of another ceremony is no sign-in's, and is left alone.
    let (registration_id, registration_options) =
        ceremony(&register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await);
    let answer = authenticator.assert(&options, &honest());
    assert_challenge_refused(
        &sign_in_finish(&server, &registration_id, &answer).await,
        "invalid",
    );
    let mut second = SoftwareAuthenticator::new();
    let registered = register_finish(
        &server,
        &signed_in.signed_token,
        &registration_id,
        "Phone",
        &second.register(&registration_options, &honest()),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    assert_eq!(list(&server, &signed_in.signed_token).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn challenges_expire_after_five_minutes_on_the_servers_clock() {
    let server = passkey_server().await;
    server
        .add_user("late@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("late@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();

    let (challenge_id, options) =
        ceremony(&register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await);
    server.advance_clock(Duration::from_secs(299));
    let answer = authenticator.register(&options, &honest());
    assert_eq!(
        register_finish(
            &server,
            &signed_in.signed_token,
            &challenge_id,
            "Key",
            &answer
        )
        .await
        .status,
        201
    );

    let (challenge_id, options) = sign_in_start(&server).await;
    server.advance_clock(Duration::from_secs(300));
    let answer = authenticator.assert(&options, &honest());
    assert_challenge_refused(
        &sign_in_finish(&server, &challenge_id, &answer).await,
        "expired",
    );
    // Refused once as expired, it is gone.
    assert_challenge_refused(
        &sign_in_finish(&server, &challenge_id, &answer).await,
        "invalid",
    );
    server.stop().await;
}

#[tokio::test]
async fn a_restart_between_start_and_finish_loses_no_ceremony() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_path = data_dir.path().to_path_buf();
    let start_on_the_same_store = || {
        let data_path = data_path.clone();
        TestServer::start_with(move |config| {
            config.server.public_url = Some(PUBLIC_URL.parse().unwrap());
            config.store.data_dir = data_path;
        })
    };
    let first = start_on_the_same_store().await;
    first
        .add_user("restart@example.com", Role::User, Status::Active)
        .await;
    let signed_in = first.sign_in("restart@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();
    let (registration_id, registration_options) =
        ceremony(&register_start(&first, &signed_in.signed_token, Some(PASSWORD)).await);
    first.stop().await;
    wait_until_store_is_free(&data_path).await;

    let second = start_on_the_same_store().await;
    let answer = authenticator.register(&registration_options, &honest());
    let registered = register_finish(
        &second,
        &signed_in.signed_token,
        &registration_id,
        "Key",
        &answer,
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    let (sign_in_id, request_options) = sign_in_start(&second).await;
    second.stop().await;
    wait_until_store_is_free(&data_path).await;

    let third = start_on_the_same_store().await;
    let answer = authenticator.assert(&request_options, &honest());
    let response = sign_in_finish(&third, &sign_in_id, &answer).await;
    assert_eq!(
        SignedIn::from_response(&response).user_id,
        signed_in.user_id
    );
    third.stop().await;
}

#[tokio::test]
async fn spoiled_registrations_and_assertions_are_refused_and_use_their_challenge_up() {
    let server = passkey_server().await;
    server
        .add_user("spoiled@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("spoiled@example.com").await;

    let wrong_origin = Ceremony::at("https://evil.example.test");
    let wrong_relying_party = Ceremony {
        rp_id: Some("evil.example.test".into()),
        ..honest()
    };
    let unverified = Ceremony {
        user_verified: false,
        ..honest()
    };
    for spoiled in [&wrong_origin, &wrong_relying_party, &unverified] {
        let (challenge_id, options) =
            ceremony(&register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await);
        let answer = SoftwareAuthenticator::new().register(&options, spoiled);
        let response = register_finish(
            &server,
            &signed_in.signed_token,
            &challenge_id,
            "Key",
            &answer,
        )
        .await;
        let body = response.assert_error(400);
        assert_eq!(body["code"], 40007, "{spoiled:?}: {body}");
        assert_eq!(body["context"]["field"], "credential");
        // The refusal used the challenge up: an honest answer to it comes too late.
        let honest_answer = SoftwareAuthenticator::new().register(&options, &honest());
        assert_challenge_refused(
            &register_finish(
                &server,
                &signed_in.signed_token,
                &challenge_id,
                "Key",
                &honest_answer,
            )
            .await,
            "invalid",
        );
    }
    assert!(list(&server, &signed_in.signed_token).await.is_empty());

    let mut authenticator = SoftwareAuthenticator::new();
    register(&server, &signed_in, &mut authenticator, "Key").await;
    let wrong_signature = Ceremony {
        wrong_signature: true,
        ..honest()
    };
    let without_user_handle = Ceremony {
        without_user_handle: true,
        ..honest()
    };
    for spoiled in [
        &wrong_origin,
        &wrong_relying_party,
        &unverified,
        &wrong_signature,
        &without_user_handle,
    ] {
        let (challenge_id, options) = sign_in_start(&server).await;
        let answer = authenticator.assert(&options, spoiled);
        assert_passkey_refused(&sign_in_finish(&server, &challenge_id, &answer).await);
        let honest_answer = authenticator.assert(&options, &honest());
        assert_challenge_refused(
            &sign_in_finish(&server, &challenge_id, &honest_answer).await,
            "invalid",
        );
    }
    // A credential nobody registered, carrying the user's handle.
    let mut stranger = SoftwareAuthenticator::new();
    stranger.user_handle = authenticator.user_handle.clone();
    assert_passkey_refused(&sign_in_with(&server, &mut stranger, &honest()).await);
    // A replayed assertion's counter is no higher than the stored one.
    let (challenge_id, options) = sign_in_start(&server).await;
    let answer = authenticator.assert(&options, &honest());
    assert_eq!(
        sign_in_finish(&server, &challenge_id, &answer).await.status,
        200
    );
    authenticator.sign_count -= 1;
    assert_passkey_refused(&sign_in_with(&server, &mut authenticator, &honest()).await);
    assert!(
        server
            .app
            .sign_in_counts
            .count(SignInMethod::Passkey, AttemptOutcome::WrongCredentials)
            >= 7
    );
    server.stop().await;
}

#[tokio::test]
async fn a_credential_signs_in_only_the_user_who_registered_it() {
    let server = passkey_server().await;
    let ann = server
        .add_user("ann@example.com", Role::User, Status::Active)
        .await;
    let bob = server
        .add_user("bob@example.com", Role::User, Status::Active)
        .await;
    let ann_session = server.sign_in("ann@example.com").await;
    let bob_session = server.sign_in("bob@example.com").await;
    let mut anns_key = SoftwareAuthenticator::new();
    let mut bobs_key = SoftwareAuthenticator::new();
    register(&server, &ann_session, &mut anns_key, "Ann's").await;
    register(&server, &bob_session, &mut bobs_key, "Bob's").await;

    // Ann's credential claiming Bob's user handle signs in nobody.
    let anns_handle = anns_key.user_handle.clone();
    anns_key.user_handle = bobs_key.user_handle.clone();
    assert_passkey_refused(&sign_in_with(&server, &mut anns_key, &honest()).await);
    // With her own handle back, it signs in Ann, never Bob.
    anns_key.user_handle = anns_handle;
    let response = sign_in_with(&server, &mut anns_key, &honest()).await;
    assert_eq!(SignedIn::from_response(&response).user_id, ann.id);

    // Bob cannot register Ann's credential as his.
    let (challenge_id, options) =
        ceremony(&register_start(&server, &bob_session.signed_token, Some(PASSWORD)).await);
    let mut copy_of_anns = SoftwareAuthenticator::new();
    copy_of_anns.credential_id = anns_key.credential_id.clone();
    let answer = copy_of_anns.register(&options, &honest());
    let body = register_finish(
        &server,
        &bob_session.signed_token,
        &challenge_id,
        "Mine now",
        &answer,
    )
    .await
    .assert_error(409)
    .clone();
    assert_eq!(
        body["context"]["reason"],
        "the passkey is already registered"
    );

    // Nor finish Ann's registration ceremony with his session.
    let (anns_challenge, anns_options) =
        ceremony(&register_start(&server, &ann_session.signed_token, Some(PASSWORD)).await);
    let answer = SoftwareAuthenticator::new().register(&anns_options, &honest());
    assert_challenge_refused(
        &register_finish(
            &server,
            &bob_session.signed_token,
            &anns_challenge,
            "Key",
            &answer,
        )
        .await,
        "invalid",
    );

    // An assertion limited to Bob's passkeys does not take Ann's.
    let client = ClientInfo {
        remote_ip: "127.0.0.1".into(),
        user_agent: "test".into(),
    };
    let started = start_passkey_assertion_for_user(&server.app, bob.id, &client)
        .await
        .unwrap();
    let answer = anns_key.assert(&started.options, &honest());
    assert!(matches!(
        finish_passkey_assertion(&server.app, started.challenge_id, answer).await,
        Err(AuthError::PasskeyRefused(_))
    ));
    server.stop().await;
}

#[tokio::test]
async fn only_a_sign_in_session_manages_passkeys_and_any_read_user_credential_lists_them() {
    let server = passkey_server().await;
    server
        .add_user("owner@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("owner@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();
    let passkey = register(&server, &signed_in, &mut authenticator, "Key").await;
    let passkey_path = format!("/auth/passkey/{}", passkey["id"].as_str().unwrap());

    let api_token = server
        .request("POST", "/auth/api-token")
        .bearer(&signed_in.signed_token)
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(api_token.status, 200, "{}", api_token.text());
    let api_token = api_token.json["token"].as_str().unwrap().to_owned();
    let minted = server
        .request("POST", "/auth/jwt")
        .bearer(&signed_in.signed_token)
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    let minted = minted.json["token"].as_str().unwrap().to_owned();
    for token in [&api_token, &minted] {
        for request in [
            server
                .request("POST", "/auth/passkey/register/start")
                .json(&json!({ "password": PASSWORD })),
            server
                .request("POST", "/auth/passkey/register/finish")
                .json(&json!({
                    "challenge-id": PasskeyChallengeId::new_random().to_string(),
                    "name": "Thief's",
                    "credential": {},
                })),
            server.request("DELETE", &passkey_path),
        ] {
            let response = request.bearer(token).send().await;
            let body = response.assert_error(403);
            assert_eq!(body["code"], 40332);
            assert_eq!(body["context"]["reason"], "sign-in-session-required");
        }
        // Either holds read:user (and write:user): the list is theirs to read.
        assert_eq!(list(&server, token).await.len(), 1);
    }
    // The session's bound api-token is the session.
    assert_eq!(
        register_start(&server, &signed_in.api_token, Some(PASSWORD))
            .await
            .status,
        200
    );
    let delete = server
        .request("DELETE", &passkey_path)
        .bearer(&signed_in.api_token)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(delete.status, 204, "{}", delete.text());
    server.stop().await;
}

#[tokio::test]
async fn registration_rechecks_the_password_or_asks_a_passwordless_account_for_a_recent_sign_in() {
    let server = passkey_server().await;
    server
        .add_user("recheck@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("recheck@example.com").await;
    let missing = register_start(&server, &signed_in.signed_token, None).await;
    assert_eq!(missing.assert_error(400)["context"]["field"], "password");
    let wrong = register_start(&server, &signed_in.signed_token, Some("not the password")).await;
    let body = wrong.assert_error(403);
    assert_eq!(body["code"], 40304);
    assert_eq!(body["context"]["field"], "password");
    let long = register_start(&server, &signed_in.signed_token, Some(&"x".repeat(73))).await;
    assert_eq!(long.assert_error(403)["context"]["field"], "password");
    assert_eq!(
        register_start(&server, &signed_in.signed_token, Some(PASSWORD))
            .await
            .status,
        200
    );

    // An account made by OAuth has no password: a fresh session is its proof instead.
    let passwordless = server
        .app
        .store
        .insert_user(
            NewUser::new(
                EmailAddress::parse("oauth-only@example.com").unwrap(),
                Role::User,
                Status::Active,
            ),
            server.now(),
        )
        .await
        .unwrap();
    let token = open_passwordless_session(&server, passwordless).await;
    let (challenge_id, options) = ceremony(&register_start(&server, &token, None).await);
    let mut authenticator = SoftwareAuthenticator::new();
    let answer = authenticator.register(&options, &honest());
    assert_eq!(
        register_finish(&server, &token, &challenge_id, "Key", &answer)
            .await
            .status,
        201
    );
    server.advance_clock(Duration::from_secs(601));
    let stale = register_start(&server, &token, None).await;
    let body = stale.assert_error(403);
    assert_eq!(body["code"], 40333);
    assert_eq!(body["context"]["reason"], "recent-sign-in-required");
    // Its passkey signs it in: a fresh session may register again.
    let response = sign_in_with(&server, &mut authenticator, &honest()).await;
    let fresh = SignedIn::from_response(&response);
    assert_eq!(
        register_start(&server, &fresh.signed_token, None)
            .await
            .status,
        200
    );
    server.stop().await;
}

/// A sign-in session for a user without a password, opened as an OAuth sign-in opens one.
async fn open_passwordless_session(server: &TestServer, user: User) -> String {
    let outcome = open_session(
        &server.app,
        SessionOpening {
            user,
            parent: None,
            long_term_token: true,
            logout_other: false,
            client: ClientInfo {
                remote_ip: "127.0.0.1".into(),
                user_agent: "test".into(),
            },
            replacement_password_hash: None,
            second_factor: SecondFactorGate::FirstFactorOnly(FirstFactor::OAuth {
                provider: "test".into(),
            }),
        },
    )
    .await
    .unwrap();
    outcome.signed_token.expose_secret().clone()
}

#[tokio::test]
async fn passkeys_list_and_remove_as_their_owner_only() {
    let server = passkey_server().await;
    server
        .add_user("keys@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("other@example.com", Role::User, Status::Active)
        .await;
    let owner = server.sign_in("keys@example.com").await;
    let other = server.sign_in("other@example.com").await;
    let mut first = SoftwareAuthenticator::new();
    let mut second = SoftwareAuthenticator::new();
    let first_passkey = register(&server, &owner, &mut first, "Same name").await;
    register(&server, &owner, &mut second, "Same name").await;
    let listed = list(&server, &owner.signed_token).await;
    assert_eq!(
        listed
            .iter()
            .map(|passkey| passkey["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Same name", "Same name"]
    );
    assert!(list(&server, &other.signed_token).await.is_empty());

    let path = format!("/auth/passkey/{}", first_passkey["id"].as_str().unwrap());
    let as_other = server
        .request("DELETE", &path)
        .bearer(&other.signed_token)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(as_other.assert_error(404)["code"], 40400);
    // A session alone (perhaps stolen) removes nothing: the password is asked again.
    let without_password = server
        .request("DELETE", &path)
        .bearer(&owner.signed_token)
        .send()
        .await;
    assert_eq!(
        without_password.assert_error(400)["context"]["field"],
        "password"
    );
    let wrong_password = server
        .request("DELETE", &path)
        .bearer(&owner.signed_token)
        .json(&json!({ "password": "not the password" }))
        .send()
        .await;
    let body = wrong_password.assert_error(403);
    assert_eq!(body["code"], 40304, "{body}");
    assert_eq!(list(&server, &owner.signed_token).await.len(), 2);
    let removed = server
        .request("DELETE", &path)
        .bearer(&owner.signed_token)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    assert_eq!(
        server
            .request("DELETE", &path)
            .bearer(&owner.signed_token)
            .json(&json!({ "password": PASSWORD }))
            .send()
            .await
            .assert_error(404)["code"],
        40400
    );
    // A removed passkey signs in nobody; the other one still does.
    assert_passkey_refused(&sign_in_with(&server, &mut first, &honest()).await);
    assert_eq!(
        sign_in_with(&server, &mut second, &honest()).await.status,
        200
    );
    assert_eq!(list(&server, &owner.signed_token).await.len(), 1);
    for bad_id in ["NOT-A-UUID", "00000000000000000000000000000000"] {
        let response = server
            .request("DELETE", &format!("/auth/passkey/{bad_id}"))
            .bearer(&owner.signed_token)
            .send()
            .await;
        assert_eq!(
            response.assert_error(400)["context"]["parameter"],
            "passkey-id"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_user_holds_at_most_twenty_passkeys() {
    let server = passkey_server().await;
    server
        .add_user("many@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("many@example.com").await;
    for number in 0..20 {
        register(
            &server,
            &signed_in,
            &mut SoftwareAuthenticator::new(),
            &format!("Key {number}"),
        )
        .await;
    }
    let refused = register_start(&server, &signed_in.signed_token, Some(PASSWORD)).await;
    assert_eq!(refused.assert_error(409)["code"], 40900);
    assert_eq!(list(&server, &signed_in.signed_token).await.len(), 20);
    server.stop().await;
}

#[tokio::test]
async fn suspended_and_deleted_users_are_refused_as_a_password_sign_in_refuses_them() {
    let server = passkey_server().await;
    let user = server
        .add_user("suspended@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("suspended@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();
    register(&server, &signed_in, &mut authenticator, "Key").await;
    server
        .app
        .store
        .update_user(user.id, server.now(), |user| {
            user.status = Status::Suspended
        })
        .await
        .unwrap();
    let response = sign_in_with(&server, &mut authenticator, &honest()).await;
    let body = response.assert_error(403);
    assert_eq!(body["code"], 40302);
    assert_eq!(body["context"]["reason"], "suspended");
    server
        .app
        .store
        .update_user(user.id, server.now(), |user| user.status = Status::Pending)
        .await
        .unwrap();
    let response = sign_in_with(&server, &mut authenticator, &honest()).await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "pending");

    assert!(server.app.store.delete_user_tree(user.id).await.unwrap());
    assert_passkey_refused(&sign_in_with(&server, &mut authenticator, &honest()).await);
    server.stop().await;
}

/// A password sign-in of an account with a passkey: the 403's mfa-token and methods.
async fn password_sign_in_asking_for_the_passkey(server: &TestServer, email: &str) -> String {
    let response = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await;
    let body = response.assert_error(403);
    assert_eq!(
        body["context"]["reason"], "second-factor-required",
        "{body}"
    );
    assert_eq!(body["context"]["methods"], json!(["passkey"]));
    body["context"]["mfa-token"].as_str().unwrap().to_owned()
}

/// `sign-in/start` with an mfa-token: the second step's ceremony, limited to the user's
/// passkeys.
async fn second_factor_start(server: &TestServer, mfa_token: &str) -> TestResponse {
    server
        .request("POST", "/auth/passkey/sign-in/start")
        .json(&json!({ "mfa-token": mfa_token }))
        .send()
        .await
}

async fn second_factor_finish(
    server: &TestServer,
    mfa_token: &str,
    challenge_id: &str,
    answer: &Value,
) -> TestResponse {
    server
        .request("POST", "/auth/sign-in/second-factor")
        .json(
            &json!({ "mfa-token": mfa_token, "challenge-id": challenge_id, "credential": answer }),
        )
        .send()
        .await
}

#[tokio::test]
async fn a_passkey_completes_a_password_sign_in_that_asks_for_a_second_factor() {
    let server = passkey_server().await;
    server
        .add_user("second@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("thief@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("second@example.com").await;
    let thief_signed_in = server.sign_in("thief@example.com").await;
    let mut authenticator = SoftwareAuthenticator::new();
    let mut thief_authenticator = SoftwareAuthenticator::new();
    register(&server, &signed_in, &mut authenticator, "Key").await;
    register(
        &server,
        &thief_signed_in,
        &mut thief_authenticator,
        "Thief's",
    )
    .await;
    let current = server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_eq!(
        current.json["second-factors"],
        json!({ "totp": false, "passkeys": 1, "recovery-codes-left": 0 })
    );

    // From now on the password alone opens no session.
    let mfa_token = password_sign_in_asking_for_the_passkey(&server, "second@example.com").await;
    let (challenge_id, options) = ceremony(&second_factor_start(&server, &mfa_token).await);
    assert_eq!(options["userVerification"], "required");
    assert_eq!(
        base64url_decode(options["allowCredentials"][0]["id"].as_str().unwrap()),
        authenticator.credential_id
    );
    // Its challenge is no passwordless sign-in's (refused, and left for its own ceremony).
    let answer = authenticator.assert(&options, &honest());
    assert_challenge_refused(
        &sign_in_finish(&server, &challenge_id, &answer).await,
        "invalid",
    );
    // Another user's passkey answering it is a wrong second factor, and uses it up.
    let stolen = thief_authenticator.assert(&options, &honest());
    let refused = second_factor_finish(&server, &mfa_token, &challenge_id, &stolen).await;
    let body = refused.assert_error(403);
    assert_eq!(body["context"]["field"], "credential", "{body}");
    // Without user verification: wrong too.
    let (challenge_id, options) = ceremony(&second_factor_start(&server, &mfa_token).await);
    let unverified = Ceremony {
        user_verified: false,
        ..honest()
    };
    let answer = authenticator.assert(&options, &unverified);
    second_factor_finish(&server, &mfa_token, &challenge_id, &answer)
        .await
        .assert_error(403);
    // The thief's own mfa-token cannot spend the owner's challenge either.
    let thief_token = password_sign_in_asking_for_the_passkey(&server, "thief@example.com").await;
    let (challenge_id, options) = ceremony(&second_factor_start(&server, &mfa_token).await);
    let answer = authenticator.assert(&options, &honest());
    second_factor_finish(&server, &thief_token, &challenge_id, &answer)
        .await
        .assert_error(403);

    // The owner's verified assertion completes the sign-in, once.
    let (challenge_id, options) = ceremony(&second_factor_start(&server, &mfa_token).await);
    let answer = authenticator.assert(&options, &honest());
    let response = second_factor_finish(&server, &mfa_token, &challenge_id, &answer).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let session = SignedIn::from_response(&response);
    let me = server
        .request("GET", "/user/current")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(me.json["email"], "second@example.com");
    let replayed = second_factor_finish(&server, &mfa_token, &challenge_id, &answer).await;
    let body = replayed.assert_error(401);
    assert_eq!(body["code"], 40103, "{body}");
    // A spent or unknown mfa-token starts no ceremony.
    for mfa_token in [mfa_token.as_str(), "anything"] {
        let refused = second_factor_start(&server, mfa_token).await;
        assert_eq!(refused.assert_error(401)["code"], 40103);
    }
    // An empty object is the passwordless start.
    let empty = server
        .request("POST", "/auth/passkey/sign-in/start")
        .json(&json!({}))
        .send()
        .await;
    ceremony(&empty);
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_the_documented_error_on_every_passkey_route() {
    let server = passkey_server().await;
    server
        .add_user("malformed@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("malformed@example.com").await;
    let token = signed_in.signed_token.as_str();
    let (challenge_id, options) = ceremony(&register_start(&server, token, Some(PASSWORD)).await);
    let good_registration = SoftwareAuthenticator::new().register(&options, &honest());
    let (sign_in_id, _) = sign_in_start(&server).await;

    let post_routes = [
        ("/auth/passkey/register/start", true),
        ("/auth/passkey/register/finish", true),
        ("/auth/passkey/sign-in/start", false),
        ("/auth/passkey/sign-in/finish", false),
    ];
    for (path, authenticated) in post_routes {
        let request = |server: &TestServer| {
            let request = server.request("POST", path);
            if authenticated {
                request.bearer(token)
            } else {
                request
            }
        };
        let cases: [(&str, Vec<u8>, u16); 5] = [
            ("application/json", b"{not json".to_vec(), 400),
            ("application/json", b"[1, 2]".to_vec(), 400),
            ("application/json", b"{\"a\": 1, \"a\": 2}".to_vec(), 400),
            ("text/plain", b"hello".to_vec(), 415),
            ("application/json", vec![b' '; 70 * 1024], 413),
        ];
        for (content_type, body, status) in cases {
            let response = request(&server).raw_body(content_type, body).send().await;
            response.assert_error(status);
        }
    }

    let finish_cases = [
        (
            json!({ "name": "Key", "credential": good_registration }),
            "challenge-id",
        ),
        (
            json!({ "challenge-id": 7, "name": "Key", "credential": good_registration }),
            "challenge-id",
        ),
        (
            json!({ "challenge-id": "not-a-uuid", "name": "Key", "credential": good_registration }),
            "challenge-id",
        ),
        (
            json!({ "challenge-id": challenge_id, "credential": good_registration }),
            "name",
        ),
        (
            json!({ "challenge-id": challenge_id, "name": ["Key"], "credential": good_registration }),
            "name",
        ),
        (
            json!({ "challenge-id": challenge_id, "name": "x".repeat(101), "credential": good_registration }),
            "name",
        ),
        (
            json!({ "challenge-id": challenge_id, "name": "a\u{0}b", "credential": good_registration }),
            "name",
        ),
        (
            json!({ "challenge-id": challenge_id, "name": "Key" }),
            "credential",
        ),
        (
            json!({ "challenge-id": challenge_id, "name": "Key", "credential": "text" }),
            "credential",
        ),
    ];
    for (body, field) in finish_cases {
        let response = server
            .request("POST", "/auth/passkey/register/finish")
            .bearer(token)
            .json(&body)
            .send()
            .await;
        assert_eq!(
            response.assert_error(400)["context"]["field"],
            field,
            "{body}"
        );
    }
    // None of those touched the challenge: a well-formed finish still works.
    let mut spoiled = good_registration.clone();
    spoiled["response"]["clientDataJSON"] = json!("%%% not base64 %%%");
    let response = register_finish(&server, token, &challenge_id, "Key", &spoiled).await;
    assert_eq!(response.assert_error(400)["context"]["field"], "credential");
    // A malformed credential uses the challenge up like any other refusal.
    assert_challenge_refused(
        &register_finish(&server, token, &challenge_id, "Key", &good_registration).await,
        "invalid",
    );

    let sign_in_cases = [
        (json!({ "credential": {} }), "challenge-id"),
        (
            json!({ "challenge-id": true, "credential": {} }),
            "challenge-id",
        ),
        (json!({ "challenge-id": sign_in_id }), "credential"),
        (
            json!({ "challenge-id": sign_in_id, "credential": [1] }),
            "credential",
        ),
        (
            json!({ "challenge-id": sign_in_id, "credential": {}, "long-term-token": "yes" }),
            "long-term-token",
        ),
        (
            json!({ "challenge-id": sign_in_id, "credential": { "id": 5, "rawId": "AQID" } }),
            "credential",
        ),
    ];
    for (body, field) in sign_in_cases {
        let response = server
            .request("POST", "/auth/passkey/sign-in/finish")
            .json(&body)
            .send()
            .await;
        assert_eq!(
            response.assert_error(400)["context"]["field"],
            field,
            "{body}"
        );
    }
    // Form bodies carry no credential object.
    let form = server
        .request("POST", "/auth/passkey/sign-in/finish")
        .header("Origin", PUBLIC_URL)
        .form(&[("challenge-id", sign_in_id.as_str()), ("credential", "{}")])
        .send()
        .await;
    assert_eq!(form.assert_error(400)["context"]["field"], "credential");
    let password_type = server
        .request("POST", "/auth/passkey/register/start")
        .bearer(token)
        .json(&json!({ "password": 12 }))
        .send()
        .await;
    assert_eq!(
        password_type.assert_error(400)["context"]["field"],
        "password"
    );
    server.stop().await;
}
