//! The five credential schemes, their precedence, every kind of bad credential, and the
//! cache of verified ones.

use std::time::Duration;

use latchkey::auth::signed_token::{KeyRing, TokenClaims, generate_signing_key};
use latchkey::model::{PermissionSet, Role, Status};
use pasetors::keys::{AsymmetricKeyPair, Generate};
use pasetors::version4::{PublicToken, V4};

use crate::support::TestServer;

#[tokio::test]
async fn each_of_the_five_schemes_reaches_the_profile() {
    let server = TestServer::start().await;
    let user = server
        .add_user("five@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("five@example.com").await;
    let requests = [
        server
            .request("GET", "/user/current")
            .bearer(&signed_in.api_token),
        server
            .request("GET", "/user/current")
            .bearer(&signed_in.signed_token),
        server
            .request("GET", "/user/current")
            .query(&format!("token={}", signed_in.api_token)),
        server
            .request("GET", "/user/current")
            .query(&format!("jwt={}", signed_in.signed_token)),
        server.request("GET", "/user/current").header(
            "Cookie",
            &format!("theme=dark; jwt={}", signed_in.signed_token),
        ),
    ];
    for request in requests {
        let response = request.send().await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json["id"], user.id);
        assert_eq!(response.json["username"], "five@example.com");
        assert_eq!(response.json["role"], "user");
        assert!(response.json["permissions"]["write:user"].is_object());
        assert!(response.json["permissions"].get("read:admin").is_none());
        assert!(response.json.get("parent").is_none());
        assert!(response.json.get("plan").is_none());
    }
}

#[tokio::test]
async fn query_credentials_can_be_turned_off() {
    let server = TestServer::start_with(|config| config.auth.query_credentials = false).await;
    server
        .add_user("noquery@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("noquery@example.com").await;
    let response = server
        .request("GET", "/user/current")
        .query(&format!("token={}", signed_in.api_token))
        .send()
        .await;
    response.assert_error(401);
}

#[tokio::test]
async fn the_first_credential_present_decides_even_when_a_later_one_is_good() {
    let server = TestServer::start().await;
    server
        .add_user("order@example.com", Role::User, Status::Active)
        .await;
    let good = server.sign_in("order@example.com").await;
    let cookie = format!("jwt={}", good.signed_token);
    let bad_header = server
        .request("GET", "/user/current")
        .bearer("v4.public.garbage")
        .header("Cookie", &cookie)
        .send()
        .await;
    bad_header.assert_error(401);
    let bad_query = server
        .request("GET", "/user/current")
        .query(&format!("token={}", "0".repeat(64)))
        .header("Cookie", &cookie)
        .send()
        .await;
    bad_query.assert_error(401);
    let not_bearer = server
        .request("GET", "/user/current")
        .header("Authorization", &format!("Basic {}", good.api_token))
        .send()
        .await;
    not_bearer.assert_error(401);
    let no_credential = server.request("GET", "/user/current").send().await;
    no_credential.assert_error(401);
}

#[tokio::test]
async fn tampered_expired_foreign_and_garbage_tokens_are_refused_alike() {
    let server = TestServer::start().await;
    let user = server
        .add_user("bad@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("bad@example.com").await;
    let now = server.now();
    let verified = server
        .app
        .key_ring()
        .verify(&signed_in.signed_token, &server.app.issuer, now)
        .unwrap();
    let claims = |expires_at| TokenClaims {
        issuer: server.app.issuer.clone(),
        user_id: user.id,
        session_id: verified.session_id,
        issued_at: now - 100,
        expires_at,
        permissions: PermissionSet::all(),
        extra_claims: serde_json::Map::new(),
    };
    let expired = server.app.key_ring().sign(&claims(now - 1)).unwrap();
    let foreign_ring = KeyRing::from_stored(&[generate_signing_key(now).unwrap()]).unwrap();
    let foreign = foreign_ring.sign(&claims(now + 600)).unwrap();

    // Same claims and our key id in the footer, but signed by another key.
    let forged = forge_with_our_key_id(&server, &signed_in.signed_token);

    let mut tampered = signed_in.signed_token.clone().into_bytes();
    let index = "v4.public.".len() + 5;
    tampered[index] = if tampered[index] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();

    let mut bodies = Vec::new();
    for bad in [
        expired,
        foreign,
        forged,
        tampered,
        "garbage".to_owned(),
        "v4.public.".to_owned(),
        "0".repeat(64),
    ] {
        let response = server
            .request("GET", "/user/current")
            .bearer(&bad)
            .send()
            .await;
        response.assert_error(401);
        bodies.push(response.body);
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "401 bodies differ"
    );
    // The genuine token still works.
    let response = server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_forged_token_whose_claims_equal_a_cached_one_is_refused() {
    let server = TestServer::start().await;
    server
        .add_user("cache@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("cache@example.com").await;
    // Warm the verified-signature cache with the genuine token.
    let warm = server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_eq!(warm.status, 200);
    let forged = forge_with_our_key_id(&server, &signed_in.signed_token);
    assert_ne!(forged, signed_in.signed_token);
    let response = server
        .request("GET", "/user/current")
        .bearer(&forged)
        .send()
        .await;
    response.assert_error(401);
}

/// The verified-token cache frees its tables after `[auth]
/// verified_token_cache_release_after_idle_seconds` (default 5) without a token check, on the
/// app's clock, and a token checked after that verifies and is cached again. The background
/// task may free them first, so the test looks at the cache, not at who freed it.
#[tokio::test]
async fn an_idle_server_frees_its_verified_tokens_and_checks_them_again() {
    let server = TestServer::start().await;
    server
        .add_user("idle@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("idle@example.com").await;
    let check = || async {
        let response = server
            .request("GET", "/user/current")
            .bearer(&signed_in.signed_token)
            .send()
            .await;
        assert_eq!(response.status, 200);
    };
    check().await;
    let cache = &server.app.token_cache;
    assert!(cache.allocated_entries() > 0);
    server.app.release_idle_token_cache();
    server.advance_clock(Duration::from_secs(4));
    server.app.release_idle_token_cache();
    assert!(cache.allocated_entries() > 0, "freed before 5 idle seconds");
    server.advance_clock(Duration::from_secs(1));
    server.app.release_idle_token_cache();
    assert_eq!(cache.allocated_entries(), 0);
    check().await;
    assert!(cache.allocated_entries() > 0);

    // 0 keeps the cache however long the server idles.
    let keeping = TestServer::start_with(|config| {
        config.auth.verified_token_cache_release_after_idle_seconds = 0;
    })
    .await;
    keeping
        .add_user("keep@example.com", Role::User, Status::Active)
        .await;
    let kept = keeping.sign_in("keep@example.com").await;
    let response = keeping
        .request("GET", "/user/current")
        .bearer(&kept.signed_token)
        .send()
        .await;
    assert_eq!(response.status, 200);
    keeping.app.release_idle_token_cache();
    keeping.advance_clock(Duration::from_secs(3600));
    assert!(!keeping.app.release_idle_token_cache());
    assert!(keeping.app.token_cache.allocated_entries() > 0);
}

#[tokio::test]
async fn suspension_blocks_every_credential_on_the_next_request() {
    let server = TestServer::start().await;
    let user = server
        .add_user("later@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("later@example.com").await;
    let warm = server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_eq!(warm.status, 200);
    let mut suspended = user.clone();
    suspended.status = Status::Suspended;
    server.app.store.replace_user(&suspended).await.unwrap();
    for credential in [&signed_in.signed_token, &signed_in.api_token] {
        let response = server
            .request("GET", "/user/current")
            .bearer(credential)
            .send()
            .await;
        response.assert_error(401);
    }
}

/// The same claims under our key id, signed by another key.
fn forge_with_our_key_id(server: &TestServer, genuine: &str) -> String {
    let footer = format!(
        r#"{{"kid":"{}"}}"#,
        server.app.key_ring().active_key_id(server.now())
    );
    let other_pair = AsymmetricKeyPair::<V4>::generate().unwrap();
    let payload = pasetors_payload(genuine);
    PublicToken::sign(
        &other_pair.secret,
        payload.as_bytes(),
        Some(footer.as_bytes()),
        None,
    )
    .unwrap()
}

/// The claims JSON of a v4.public token (the message before the 64-byte signature).
fn pasetors_payload(token: &str) -> String {
    let untrusted =
        pasetors::token::UntrustedToken::<pasetors::Public, V4>::try_from(token).unwrap();
    String::from_utf8(untrusted.untrusted_payload().to_vec()).unwrap()
}
