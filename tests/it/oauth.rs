//! `POST /auth/oauth-sign-in` against a real provider on loopback (`oauth_provider`): new
//! accounts, linked identities, linking by verified email and its limits, every way an ID
//! token fails, key rotation and the JWKS refresh floor, access tokens bound to our client,
//! the three places a token may come from, `check-auth`, and a provider that is down.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::config::{Config, FlagOverrides, OAuthProviderConfig};
use latchkey::model::{Role, Status, now_unix_seconds};
use serde_json::{Value, json};

use crate::oauth_provider::{AccessTokenGrant, CLIENT_ID, TestKey, TestProvider};
use crate::support::{PASSWORD, TestResponse, TestServer};

const OIDC: &str = "test-oidc";
const USERINFO: &str = "test-userinfo";

async fn server_with(
    providers: Vec<OAuthProviderConfig>,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    TestServer::start_with(|config| {
        config.oauth.providers = providers;
        adjust(config);
    })
    .await
}

/// An OIDC provider that may create accounts.
fn open_oidc(provider: &TestProvider) -> OAuthProviderConfig {
    OAuthProviderConfig {
        allow_sign_up: Some(true),
        ..provider.oidc_config(OIDC)
    }
}

async fn oauth_sign_in(server: &TestServer, provider: &str, token: &str) -> TestResponse {
    oauth_request(
        server,
        json!({ "oauth-provider-token": { "provider": provider, "token": token } }),
    )
    .await
}

async fn oauth_request(server: &TestServer, body: Value) -> TestResponse {
    server
        .request("POST", "/auth/oauth-sign-in")
        .json(&body)
        .send()
        .await
}

/// Asserts a successful OAuth sign-in answer and returns its body.
fn signed_in(response: &TestResponse) -> &Value {
    assert_eq!(response.status, 200, "{}", response.text());
    crate::schema::assert_matches_schema(&response.json, "AuthPostOAuthSignInResponse");
    assert!(
        response.json["api-token"].is_string(),
        "{}",
        response.text()
    );
    assert!(response.header("set-cookie").is_some());
    &response.json
}

async fn user_count(server: &TestServer) -> usize {
    server.app.store.all_users().await.unwrap().len()
}

#[tokio::test]
async fn a_new_account_is_created_then_its_linked_identity_signs_in_again() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let token = provider
        .rsa
        .sign(&provider.claims("subject-1", "New@Example.com", true));
    let response = oauth_sign_in(&server, OIDC, &token).await;
    let body = signed_in(&response);
    assert_eq!(body["email"], "New@Example.com");
    assert_eq!(body["status"], "active");
    assert_eq!(
        body["oauth-provider-tokens"],
        json!([{ "provider": OIDC, "token": "subject-1" }])
    );
    assert!(
        !response.text().contains(&token),
        "the provider token is never echoed"
    );
    let user_id = body["user-id"].as_u64().unwrap();
    let api_token = body["api-token"].as_str().unwrap();
    let signed_token = body["jwt-token"]["token"].as_str().unwrap();
    assert_eq!(server.current_user_status(api_token).await, 200);
    assert_eq!(server.current_user_status(signed_token).await, 200);
    let profile = server
        .request("GET", "/user/current")
        .bearer(api_token)
        .send()
        .await;
    assert_eq!(profile.json["role"], "user");
    assert_eq!(user_count(&server).await, 1);

    // The identity is linked now: the same subject signs in again, whatever its email and
    // whichever key signed the token.
    for key in [&provider.p256, &provider.ed25519] {
        let token = key.sign(&provider.claims("subject-1", "renamed@example.com", false));
        let response = oauth_sign_in(&server, OIDC, &token).await;
        assert_eq!(signed_in(&response)["user-id"], user_id);
        assert_eq!(response.json["email"], "New@Example.com");
    }
    assert_eq!(user_count(&server).await, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_password_sign_in_to_a_password_less_account_costs_a_dummy_verify_and_gets_401() {
    let provider = TestProvider::start().await;
    // Real argon2 cost, so that a verification is what the time measures.
    let server = server_with(vec![open_oidc(&provider)], |config| {
        config.password.memory_kib = 19_456;
        config.password.iterations = 2;
        config.throttle.enabled = false;
    })
    .await;
    let token =
        provider
            .ed25519
            .sign(&provider.claims("subject-2", "oauth-only@example.com", true));
    signed_in(&oauth_sign_in(&server, OIDC, &token).await);
    server
        .add_user("password@example.com", Role::User, Status::Active)
        .await;

    // Interleaved, so that load from other tests slows both kinds alike.
    let (mut password_less, mut wrong_password) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        password_less = password_less
            .min(timed_refused_sign_in(&server, "oauth-only@example.com", PASSWORD).await);
        wrong_password = wrong_password
            .min(timed_refused_sign_in(&server, "password@example.com", "not the password").await);
    }
    // Without the dummy verify the password-less account would answer in a small fraction
    // of the time an argon2 verification takes.
    assert!(
        password_less * 3 >= wrong_password,
        "password-less {password_less:?} vs wrong password {wrong_password:?}"
    );
    server.stop().await;
}

/// How long a refused password sign-in takes; it must be a 401 with code 40101.
async fn timed_refused_sign_in(server: &TestServer, email: &str, password: &str) -> Duration {
    let started = Instant::now();
    let response = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await;
    let elapsed = started.elapsed();
    assert_eq!(response.assert_error(401)["code"], 40101);
    elapsed
}

#[tokio::test]
async fn sign_up_follows_signup_open_unless_the_provider_says_otherwise() {
    let provider = TestProvider::start().await;
    let token = provider
        .rsa
        .sign(&provider.claims("subject-3", "someone@example.com", true));

    let closed = server_with(vec![provider.oidc_config(OIDC)], |_| {}).await;
    let response = oauth_sign_in(&closed, OIDC, &token).await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "refused");
    assert_eq!(user_count(&closed).await, 0);
    closed.stop().await;

    let open = server_with(vec![provider.oidc_config(OIDC)], |config| {
        config.signup.open = true;
    })
    .await;
    signed_in(&oauth_sign_in(&open, OIDC, &token).await);
    open.stop().await;

    let refused_here = OAuthProviderConfig {
        allow_sign_up: Some(false),
        ..provider.oidc_config(OIDC)
    };
    let open_but_not_here = server_with(vec![refused_here], |config| {
        config.signup.open = true;
    })
    .await;
    oauth_sign_in(&open_but_not_here, OIDC, &token)
        .await
        .assert_error(403);
    open_but_not_here.stop().await;

    // A provider account without an email cannot become an account.
    let open = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let mut claims = provider.claims("subject-4", "x@example.com", true);
    claims.as_object_mut().unwrap().remove("email");
    let response = oauth_sign_in(&open, OIDC, &provider.rsa.sign(&claims)).await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "refused");
    open.stop().await;
}

#[tokio::test]
async fn linking_by_verified_email_is_off_unless_configured_and_never_reaches_root_or_admin() {
    let provider = TestProvider::start().await;
    let token_for = |subject: &str, email: &str, verified: bool| {
        provider
            .p256
            .sign(&provider.claims(subject, email, verified))
    };

    let off = server_with(vec![open_oidc(&provider)], |_| {}).await;
    off.add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let response = oauth_sign_in(&off, OIDC, &token_for("ada", "Ada@Example.com", true)).await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "refused");
    off.stop().await;

    let linking = OAuthProviderConfig {
        link_by_verified_email: true,
        ..open_oidc(&provider)
    };
    let server = server_with(vec![linking], |_| {}).await;
    let ada = server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let root = server
        .add_user("root@example.com", Role::Root, Status::Active)
        .await;
    server
        .add_user("admin@example.com", Role::Admin, Status::Active)
        .await;
    let pending = server
        .add_user("pending@example.com", Role::User, Status::Pending)
        .await;
    server
        .add_user("suspended@example.com", Role::User, Status::Suspended)
        .await;

    // An unverified provider email never links (and, being taken, never signs up either).
    let response = oauth_sign_in(&server, OIDC, &token_for("ada", "ada@example.com", false)).await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "refused");

    let response = oauth_sign_in(&server, OIDC, &token_for("ada", "ADA@example.com", true)).await;
    assert_eq!(signed_in(&response)["user-id"], ada.id);
    // The account keeps its password, and its password sign-in lists the identity.
    let password_sign_in = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(password_sign_in.status, 200, "{}", password_sign_in.text());
    assert_eq!(
        password_sign_in.json["oauth-provider-tokens"],
        json!([{ "provider": OIDC, "token": "ada" }])
    );

    for (subject, email) in [("r", "root@example.com"), ("a", "admin@example.com")] {
        let response = oauth_sign_in(&server, OIDC, &token_for(subject, email, true)).await;
        assert_eq!(response.assert_error(403)["context"]["reason"], "refused");
    }
    assert!(
        server
            .app
            .store
            .identities_of_user(root.id)
            .await
            .unwrap()
            .is_empty()
    );

    let response = oauth_sign_in(
        &server,
        OIDC,
        &token_for("s", "suspended@example.com", true),
    )
    .await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "refused");

    // A pending account has not proved its address: it is neither linked nor changed
    // (`security_oauth` tests this in full).
    let response = oauth_sign_in(&server, OIDC, &token_for("p", "pending@example.com", true)).await;
    assert_eq!(response.assert_error(403)["context"]["reason"], "refused");
    assert!(
        server
            .app
            .store
            .identities_of_user(pending.id)
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

/// Base64url without padding, for hand-made tokens.
fn encoded(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn id_tokens_that_do_not_verify_get_401() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let now = now_unix_seconds();
    let good = provider.claims("subject-5", "five@example.com", true);
    let with = |changes: Value| {
        let mut claims = good.clone();
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let impostor = TestKey::ed25519("ed-1");
    let hmac_token = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("ec-1".to_owned());
        let secret = jsonwebtoken::EncodingKey::from_secret(b"the public key as a secret");
        jsonwebtoken::encode(&header, &good, &secret).unwrap()
    };
    // Each case, the reason the server gives (`check-auth` shows it; the 401 does not).
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "wrong audience",
            "wrong audience",
            provider.rsa.sign(&with(json!({ "aud": "another-app" }))),
        ),
        (
            "wrong issuer",
            "wrong issuer",
            provider
                .rsa
                .sign(&with(json!({ "iss": "https://evil.example.com" }))),
        ),
        (
            "expired",
            "expired",
            provider
                .rsa
                .sign(&with(json!({ "iat": now - 7200, "exp": now - 3600 }))),
        ),
        (
            "not yet valid",
            "not valid yet",
            provider.rsa.sign(&with(json!({ "nbf": now + 3600 }))),
        ),
        (
            "issued in the future",
            "issued in the future",
            provider.rsa.sign(&with(json!({ "iat": now + 3600 }))),
        ),
        ("no exp", "a required claim is missing", {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove("exp");
            provider.rsa.sign(&claims)
        }),
        (
            "another client's azp",
            "azp is not our client",
            provider.rsa.sign(&with(json!({ "azp": "another-app" }))),
        ),
        (
            "another key under a published kid",
            "bad signature",
            impostor.sign(&good),
        ),
        (
            "alg none",
            "unsupported header",
            format!(
                "{}.{}.",
                encoded(&json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" })),
                encoded(&good)
            ),
        ),
        (
            "HS256 with a public key as the secret",
            "algorithm not accepted",
            hmac_token,
        ),
        (
            "an algorithm the key does not name",
            "the key does not name this algorithm",
            provider.ed25519.sign_as("ec-1", &good),
        ),
        (
            "unknown kid",
            "unknown key",
            provider.rsa.sign_as("no-such-key", &good),
        ),
        ("tampered payload", "bad signature", {
            let token = provider.rsa.sign(&good);
            let mut pieces: Vec<&str> = token.split('.').collect();
            let forged = encoded(&with(json!({ "sub": "someone-else" })));
            pieces[1] = &forged;
            pieces.join(".")
        }),
        ("not a JWT", "unsupported header", "gibberish".to_owned()),
    ];
    for (case, reason, token) in cases {
        let response = oauth_sign_in(&server, OIDC, &token).await;
        assert_eq!(response.status, 401, "{case}: {}", response.text());
        assert_eq!(response.assert_error(401)["code"], 40102, "{case}");
        let checked = oauth_request(
            &server,
            json!({ "check-auth": true, "oauth-provider-token": { "provider": OIDC, "token": token } }),
        )
        .await;
        assert_eq!(checked.json["check-auth-result"]["ok"], false, "{case}");
        let message = checked.json["check-auth-result"]["message"]
            .as_str()
            .unwrap();
        assert!(message.contains(reason), "{case}: {message}");
    }
    assert_eq!(user_count(&server).await, 0);

    // Within the leeway (60 s by default), a just-expired token still verifies.
    let token = provider
        .rsa
        .sign(&with(json!({ "iat": now - 600, "exp": now - 30 })));
    signed_in(&oauth_sign_in(&server, OIDC, &token).await);
    server.stop().await;
}

#[tokio::test]
async fn after_a_key_rotation_an_unknown_kid_refreshes_the_jwks_but_not_more_often_than_the_floor()
{
    let provider = TestProvider::start().await;
    let rotated = TestKey::p256("ec-2");

    // A long floor: the key set fetched for the first token is not fetched again.
    let patient = server_with(vec![open_oidc(&provider)], |config| {
        config.oauth.jwks_refresh_floor_seconds = 3600;
    })
    .await;
    let first = provider
        .rsa
        .sign(&provider.claims("rotating", "r@example.com", true));
    signed_in(&oauth_sign_in(&patient, OIDC, &first).await);
    assert_eq!(provider.jwks_requests(), 1);
    provider.publish(&rotated);
    provider.withdraw("rsa-1");
    let after_rotation = rotated.sign(&provider.claims("rotating", "r@example.com", true));
    oauth_sign_in(&patient, OIDC, &after_rotation)
        .await
        .assert_error(401);
    assert_eq!(provider.jwks_requests(), 1);
    patient.stop().await;

    // A one-second floor: once it has passed, the unknown kid fetches the JWKS again.
    let prompt = server_with(vec![open_oidc(&provider)], |config| {
        config.oauth.jwks_refresh_floor_seconds = 1;
    })
    .await;
    let before = provider
        .ed25519
        .sign(&provider.claims("other", "o@example.com", true));
    signed_in(&oauth_sign_in(&prompt, OIDC, &before).await);
    assert_eq!(provider.jwks_requests(), 2);
    let newer = TestKey::ed25519("ed-2");
    provider.publish(&newer);
    prompt.advance_clock(Duration::from_secs(1));
    let token = newer.sign(&provider.claims("rotating", "r@example.com", true));
    signed_in(&oauth_sign_in(&prompt, OIDC, &token).await);
    assert_eq!(provider.jwks_requests(), 3);
    // Right after that fetch, another unknown kid is refused without asking again.
    let unknown = TestKey::ed25519("ed-3");
    let token = unknown.sign(&provider.claims("rotating", "r@example.com", true));
    oauth_sign_in(&prompt, OIDC, &token).await.assert_error(401);
    assert_eq!(provider.jwks_requests(), 3);
    prompt.stop().await;
}

#[tokio::test]
async fn the_jwks_may_come_from_discovery_or_a_file() {
    let provider = TestProvider::start().await;
    let discovered = OAuthProviderConfig {
        jwks_url: None,
        ..open_oidc(&provider)
    };
    let server = server_with(vec![discovered], |_| {}).await;
    let token = provider
        .ed25519
        .sign(&provider.claims("d", "d@example.com", true));
    signed_in(&oauth_sign_in(&server, OIDC, &token).await);
    assert_eq!(provider.jwks_requests(), 1);
    server.stop().await;

    // A JWKS file is read at start; the provider is never asked.
    let directory = tempfile::tempdir().unwrap();
    let jwks_file = directory.path().join("jwks.json");
    std::fs::write(
        &jwks_file,
        json!({ "keys": [provider.p256.jwk()] }).to_string(),
    )
    .unwrap();
    let from_file = OAuthProviderConfig {
        jwks_url: None,
        jwks_file: Some(jwks_file),
        ..open_oidc(&provider)
    };
    let server = server_with(vec![from_file], |_| {}).await;
    provider.hang();
    let token = provider
        .p256
        .sign(&provider.claims("f", "f@example.com", true));
    signed_in(&oauth_sign_in(&server, OIDC, &token).await);
    let token = provider
        .rsa
        .sign(&provider.claims("f", "f@example.com", true));
    oauth_sign_in(&server, OIDC, &token).await.assert_error(401);
    assert_eq!(provider.jwks_requests(), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_access_token_signs_in_only_when_it_was_issued_to_our_client() {
    let provider = TestProvider::start().await;
    let config = OAuthProviderConfig {
        allow_sign_up: Some(true),
        ..provider.userinfo_config(USERINFO)
    };
    let server = server_with(vec![config], |_| {}).await;
    let octocat = json!({
        "id": 4242, "login": "octocat", "email": "octo@example.com", "email_verified": true,
    });
    let grant = |client_id: &str, active: bool| AccessTokenGrant {
        client_id: client_id.to_owned(),
        active,
        userinfo: octocat.clone(),
    };
    provider.grant_access_token("gho_ours", grant(CLIENT_ID, true));
    provider.grant_access_token("gho_theirs", grant("another-app", true));
    provider.grant_access_token("gho_revoked", grant(CLIENT_ID, false));

    let response = oauth_sign_in(&server, USERINFO, "gho_ours").await;
    let body = signed_in(&response);
    assert_eq!(body["email"], "octo@example.com");
    assert_eq!(
        body["oauth-provider-tokens"],
        json!([{ "provider": USERINFO, "token": "4242" }])
    );
    for token in ["gho_theirs", "gho_revoked", "gho_unknown"] {
        let response = oauth_sign_in(&server, USERINFO, token).await;
        assert_eq!(response.assert_error(401)["code"], 40102, "{token}");
    }
    // Refused tokens never reach the userinfo URL.
    assert_eq!(provider.userinfo_requests(), 1);
    assert_eq!(provider.introspection_requests(), 4);
    server.stop().await;

    // With allow_unbound_tokens (and no introspection), userinfo alone decides.
    let unbound = OAuthProviderConfig {
        introspection_url: None,
        allow_unbound_tokens: true,
        ..provider.userinfo_config(USERINFO)
    };
    let server = server_with(vec![unbound], |config| config.signup.open = true).await;
    signed_in(&oauth_sign_in(&server, USERINFO, "gho_theirs").await);
    oauth_sign_in(&server, USERINFO, "gho_unknown")
        .await
        .assert_error(401);
    assert_eq!(provider.introspection_requests(), 4);
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_provider_or_a_missing_token_is_a_400() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let token = provider
        .rsa
        .sign(&provider.claims("x", "x@example.com", true));
    let response = oauth_sign_in(&server, "no-such-provider", &token).await;
    assert_eq!(response.assert_error(400)["context"]["field"], "provider");
    for body in [
        json!({}),
        json!({ "oauth-provider-token": { "provider": OIDC } }),
        json!({ "oauth-provider-token": { "token": token } }),
        json!({ "oauth-provider-token": "not an object" }),
    ] {
        oauth_request(&server, body).await.assert_error(400);
    }
    server.stop().await;
}

#[tokio::test]
async fn the_token_may_come_from_json_a_form_or_cookies_and_the_body_wins() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let token = provider
        .rsa
        .sign(&provider.claims("forms", "forms@example.com", true));

    for (provider_key, token_key) in [
        ("oauth-token[provider]", "oauth-token[token]"),
        ("oauth-token.provider", "oauth-token.token"),
    ] {
        let response = server
            .request("POST", "/auth/oauth-sign-in")
            .form(&[(provider_key, OIDC), (token_key, &token)])
            .send()
            .await;
        signed_in(&response);
    }

    // A form with ret-url: 303 with the cookie, as for password sign-in.
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .form(&[
            ("oauth-token[provider]", OIDC),
            ("oauth-token[token]", &token),
            ("ret-url", "/welcome"),
        ])
        .send()
        .await;
    assert_eq!(response.status, 303, "{}", response.text());
    assert_eq!(response.header("location"), Some("/welcome"));
    assert!(response.header("set-cookie").unwrap().starts_with("jwt="));

    let cookies = |token: &str, email: &str| {
        format!("oauth-provider-name={OIDC}; oauth-provider-token={token}; oauth-email={email}")
    };
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .header("Cookie", &cookies(&token, "forms%40example.com"))
        .send()
        .await;
    signed_in(&response);
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .header("Cookie", &cookies(&token, "someone-else%40example.com"))
        .send()
        .await;
    assert_eq!(
        response.assert_error(403)["context"]["reason"],
        "email-mismatch"
    );

    // The body wins over the cookies, whichever of the two is good.
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .header("Cookie", &cookies("not-a-token", "forms%40example.com"))
        .json(&json!({ "oauth-provider-token": { "provider": OIDC, "token": token } }))
        .send()
        .await;
    signed_in(&response);
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .header("Cookie", &cookies(&token, "forms%40example.com"))
        .json(&json!({ "oauth-provider-token": { "provider": OIDC, "token": "not-a-token" } }))
        .send()
        .await;
    response.assert_error(401);
    server.stop().await;
}

#[tokio::test]
async fn check_auth_verifies_without_creating_a_session_or_an_account() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let check = |token: &str| {
        json!({
            "check-auth": true,
            "oauth-provider-token": { "provider": OIDC, "token": token },
        })
    };
    let newcomer = provider
        .rsa
        .sign(&provider.claims("check", "check@example.com", true));
    let response = oauth_request(&server, check(&newcomer)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    crate::schema::assert_matches_schema(&response.json, "AuthPostOAuthSignInResponse");
    assert_eq!(response.json["check-auth-result"]["ok"], true);
    assert_eq!(response.json["status"], "anonymous");
    assert_eq!(response.json["email"], "check@example.com");
    assert!(response.json.get("api-token").is_none());
    assert!(response.json.get("jwt-token").is_none());
    assert!(response.header("set-cookie").is_none());
    assert_eq!(user_count(&server).await, 0);
    assert_eq!(server.app.store.session_count().await.unwrap(), 0);

    let expired = provider.rsa.sign(&json!({
        "iss": provider.issuer(), "aud": CLIENT_ID, "sub": "check",
        "iat": now_unix_seconds() - 7200, "exp": now_unix_seconds() - 3600,
    }));
    let response = oauth_request(&server, check(&expired)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json["check-auth-result"]["ok"], false);
    assert!(
        response.json["check-auth-result"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Once the account exists, the check names it, and still creates no session.
    let user_id = signed_in(&oauth_sign_in(&server, OIDC, &newcomer).await)["user-id"].clone();
    let sessions = server.app.store.session_count().await.unwrap();
    let response = oauth_request(&server, check(&newcomer)).await;
    assert_eq!(response.json["check-auth-result"]["ok"], true);
    assert_eq!(response.json["user-id"], user_id);
    assert_eq!(response.json["status"], "active");
    assert_eq!(server.app.store.session_count().await.unwrap(), sessions);
    server.stop().await;
}

#[tokio::test]
async fn a_provider_that_is_down_gets_503_and_never_a_hang() {
    let timeout_one_second = |config: &mut Config| config.oauth.provider_timeout_seconds = 1;

    // Hanging: the JWKS call times out.
    let hanging = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&hanging)], timeout_one_second).await;
    hanging.hang();
    let token = hanging
        .rsa
        .sign(&hanging.claims("down", "down@example.com", true));
    // The provider never answers, so an answer at all is the call's timeout at work; the
    // generous bound only turns a missing timeout into a failure rather than a hang.
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        oauth_sign_in(&server, OIDC, &token),
    )
    .await
    .expect("the server waited for a provider that never answers");
    assert_eq!(response.assert_error(503)["code"], 50304);
    assert_eq!(response.header("retry-after"), Some("1"));
    server.stop().await;

    // Hanging userinfo provider: the introspection call times out.
    let server = server_with(vec![hanging.userinfo_config(USERINFO)], timeout_one_second).await;
    oauth_sign_in(&server, USERINFO, "gho_any")
        .await
        .assert_error(503);
    server.stop().await;

    // Stopped: refused connections. Keys fetched before it went down still verify.
    let stopping = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&stopping)], |config| {
        config.oauth.provider_timeout_seconds = 1;
        config.oauth.jwks_refresh_floor_seconds = 1;
    })
    .await;
    let before = stopping
        .rsa
        .sign(&stopping.claims("kept", "kept@example.com", true));
    signed_in(&oauth_sign_in(&server, OIDC, &before).await);
    let unknown_kid = TestKey::p256("ec-9");
    let after = unknown_kid.sign(&stopping.claims("kept", "kept@example.com", true));
    let known_kid = stopping
        .p256
        .sign(&stopping.claims("kept", "kept@example.com", true));
    stopping.stop().await;
    signed_in(&oauth_sign_in(&server, OIDC, &known_kid).await);
    server.advance_clock(Duration::from_secs(1));
    oauth_sign_in(&server, OIDC, &after).await.assert_error(503);
    server.stop().await;
}

#[tokio::test]
async fn logout_other_and_long_term_token_work_as_in_password_sign_in() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let token = provider
        .rsa
        .sign(&provider.claims("sessions", "s@example.com", true));
    let first = oauth_sign_in(&server, OIDC, &token).await;
    let first_token = signed_in(&first)["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = oauth_request(
        &server,
        json!({
            "oauth-provider-token": { "provider": OIDC, "token": token },
            "logout-other": true,
            "long-term-token": false,
            "current-user": "s@example.com",
            "ret-url": "/back",
        }),
    )
    .await;
    let body = signed_in(&second);
    assert_eq!(body["current-user"], "s@example.com");
    assert_eq!(body["ret-url"], "/back");
    assert!(
        second
            .header("set-cookie")
            .unwrap()
            .contains("Max-Age=10800")
    );
    assert_eq!(server.current_user_status(&first_token).await, 401);
    assert_eq!(
        server
            .current_user_status(body["api-token"].as_str().unwrap())
            .await,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn deleting_an_account_unlinks_its_identities() {
    let provider = TestProvider::start().await;
    let server = server_with(vec![open_oidc(&provider)], |_| {}).await;
    let token = provider
        .rsa
        .sign(&provider.claims("leaving", "leaving@example.com", true));
    let response = oauth_sign_in(&server, OIDC, &token).await;
    let first_id = signed_in(&response)["user-id"].as_u64().unwrap();
    let api_token = response.json["api-token"].as_str().unwrap().to_owned();
    let deleted = server
        .request("DELETE", "/user/current")
        .bearer(&api_token)
        .send()
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(
        server
            .app
            .store
            .identities_of_user(first_id)
            .await
            .unwrap()
            .is_empty()
    );
    let response = oauth_sign_in(&server, OIDC, &token).await;
    assert_ne!(signed_in(&response)["user-id"], first_id);
    server.stop().await;
}

#[test]
fn providers_are_read_from_the_config_file_only() {
    let directory = tempfile::tempdir().unwrap();
    let jwks_file = directory.path().join("jwks.json");
    std::fs::write(
        &jwks_file,
        json!({ "keys": [TestKey::ed25519("ed-1").jwk()] }).to_string(),
    )
    .unwrap();
    let file = directory.path().join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[oauth]\nleeway_seconds = 30\n\n[[oauth.providers]]\nname = \"google\"\nkind = \"oidc\"\n\
             issuer = \"https://accounts.google.com\"\naudiences = [\"client.apps.example.com\"]\n\
             link_by_verified_email = true\n\n[[oauth.providers]]\nname = \"files\"\nkind = \"oidc\"\n\
             issuer = \"https://idp.example.com\"\nclient_id = \"latchkey\"\njwks_file = {:?}\n",
            jwks_file.display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load(Some(&file), Vec::new(), &FlagOverrides::default()).unwrap();
    assert_eq!(config.oauth.providers.len(), 2);
    assert_eq!(config.oauth.leeway_seconds, 30);
    assert!(config.oauth.providers[0].link_by_verified_email);

    let environment = vec![(
        "LATCHKEY_OAUTH__PROVIDERS".to_owned(),
        "[{name = \"x\", kind = \"oidc\"}]".to_owned(),
    )];
    let error = Config::load(None, environment, &FlagOverrides::default()).unwrap_err();
    assert!(error.to_string().contains("config file only"), "{error}");

    std::fs::write(
        &file,
        "[[oauth.providers]]\nname = \"plain\"\nkind = \"userinfo\"\n\
         userinfo_url = \"http://api.example.com/user\"\nallow_unbound_tokens = true\n",
    )
    .unwrap();
    let error = Config::load(Some(&file), Vec::new(), &FlagOverrides::default()).unwrap_err();
    assert!(error.to_string().contains("https"), "{error}");
}
