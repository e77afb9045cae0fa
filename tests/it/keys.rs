//! `GET /auth/keys`: the published keys verify a signed token offline, with pasetors alone.
//! And keys changed in the store by someone else (another node, the CLI on PostgreSQL): a
//! token naming a key the ring lacks reloads it at once, at most once a second, on a shared
//! store, and a key gone from the store takes its cached verifications with it at the next
//! reload. Sessions
//! and users are read on every request, so their changes need no reload at all.

use std::time::{Duration, Instant};

use latchkey::admin::{self, AdminCommand};
use latchkey::auth::signed_token::{KeyRing, TokenClaims, generate_signing_key};
use latchkey::auth::signing_keys::{self, KeyRotation};
use latchkey::model::{PermissionSet, Role, Status};
use pasetors::Public;
use pasetors::keys::AsymmetricPublicKey;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};

use crate::support::{TestServer, request_to};

#[tokio::test]
async fn published_keys_verify_a_signed_token_offline_and_carry_an_etag() {
    let server = TestServer::start().await;
    server
        .add_user("keys@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("keys@example.com").await;

    let response = server.request("GET", "/auth/keys").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=300")
    );
    let etag = response.header("etag").unwrap().to_owned();
    let keys = response.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["status"], "active");
    let key_id = keys[0]["id"].as_str().unwrap();
    assert!(key_id.starts_with("k4.pid."));
    assert!(latchkey::rfc3339::parse_rfc3339(keys[0]["created"].as_str().unwrap()).is_some());

    // Offline: parse the PASERK key, check the footer's kid, verify, read the claims.
    let public_key = AsymmetricPublicKey::<V4>::try_from(keys[0]["key"].as_str().unwrap()).unwrap();
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(signed_in.signed_token.as_str()).unwrap();
    let footer: serde_json::Value = serde_json::from_slice(untrusted.untrusted_footer()).unwrap();
    assert_eq!(footer["kid"], key_id);
    let trusted = PublicToken::verify(&public_key, &untrusted, None, None).unwrap();
    let claims: serde_json::Value = serde_json::from_str(trusted.payload()).unwrap();
    assert_eq!(claims["sub"], signed_in.user_id.to_string());
    // No public_url: the issuer is the store's, not the listen address.
    assert_eq!(claims["iss"], server.app.issuer);
    assert_eq!(
        server.app.issuer,
        format!("urn:latchkey:{}", server.app.store.store_id())
    );
    assert!(
        claims["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|name| name == "write:user")
    );
    for claim in ["sid", "iat", "nbf", "exp", "jti"] {
        assert!(claims[claim].is_string(), "{claim} missing");
    }

    let unchanged = server
        .request("GET", "/auth/keys")
        .header("If-None-Match", &etag)
        .send()
        .await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
}

/// The id of the key that signed `token`, from its footer.
fn key_id_of(token: &str) -> String {
    let untrusted = UntrustedToken::<Public, V4>::try_from(token).unwrap();
    let footer: serde_json::Value = serde_json::from_slice(untrusted.untrusted_footer()).unwrap();
    footer["kid"].as_str().unwrap().to_owned()
}

/// A token for the session `signed_token` names, signed by `ring`'s signing key.
fn resigned(server: &TestServer, ring: &KeyRing, signed_token: &str) -> String {
    let store_ring = server.app.key_ring();
    let verified = store_ring
        .verify(signed_token, &server.app.issuer, server.now())
        .unwrap();
    ring.sign(&TokenClaims {
        issuer: server.app.issuer.clone(),
        user_id: verified.user_id,
        session_id: verified.session_id,
        issued_at: server.now(),
        expires_at: verified.expires_at,
        permissions: PermissionSet::all(),
        extra_claims: serde_json::Map::new(),
    })
    .unwrap()
}

#[tokio::test]
async fn a_key_made_elsewhere_is_trusted_at_once_and_unknown_keys_reload_at_most_once_a_second() {
    let server = TestServer::start().await;
    server
        .add_user("ring@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("ring@example.com").await;
    // Another node rotates: the store holds the new key, this server's ring does not yet.
    let store = &server.app.store;
    let KeyRotation::Active { key_id: new_key } =
        signing_keys::rotate_signing_key(store, 0, server.now())
            .await
            .unwrap()
    else {
        panic!("publish_ahead_seconds 0 makes an active key");
    };
    let other_node_ring = signing_keys::read_key_ring(store).await.unwrap();
    let new_token = resigned(&server, &other_node_ring, &signed_in.signed_token);
    assert_eq!(key_id_of(&new_token), new_key);
    if !store.is_shared() {
        // A redb file has one writer, this server, which makes every key change itself:
        // a key it does not hold is no key, refused at once without reading the store.
        let reloads_before = server.app.key_ring_reload_count();
        assert_eq!(server.current_user_status(&new_token).await, 401);
        assert_eq!(server.app.key_ring_reload_count(), reloads_before);
        server.stop().await;
        return;
    }
    assert_eq!(server.current_user_status(&new_token).await, 200);
    // The reload also made this server sign with the new key.
    let after = server.sign_in("ring@example.com").await;
    assert_eq!(key_id_of(&after.signed_token), new_key);
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );

    // Tokens naming a key no store holds, 50 at once: refused, and the store is read again
    // at most once a second for them all.
    let nobodys_ring =
        KeyRing::from_stored(&[generate_signing_key(server.now()).unwrap()]).unwrap();
    let forged = resigned(&server, &nobodys_ring, &signed_in.signed_token);
    let reloads_before = server.app.key_ring_reload_count();
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = request_to(server.address, "GET", "/user/current").bearer(&forged);
        requests.spawn(request.send());
    }
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 401, "{}", response.text());
    }
    let elapsed = started.elapsed();
    let reloads = server.app.key_ring_reload_count() - reloads_before;
    // One reload for the burst, one more if the burst spanned a second, and perhaps the
    // periodic one.
    let allowed = 3 + elapsed.as_secs();
    assert!(
        (1..=allowed).contains(&reloads),
        "{reloads} reloads in {elapsed:?} for 50 tokens of an unknown key"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // A token of a known key pays nothing for them.
    assert_eq!(server.current_user_status(&after.signed_token).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_key_revoked_elsewhere_takes_its_cached_verifications_at_the_next_reload() {
    let server = TestServer::start().await;
    server
        .add_user("gone@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("gone@example.com").await;
    let old_key = key_id_of(&signed_in.signed_token);
    // Verified, and then answered from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(
            server.current_user_status(&signed_in.signed_token).await,
            200
        );
    }
    // Another node revokes the key that signs: the store has a new one.
    let store = &server.app.store;
    let revocation = signing_keys::revoke_signing_key(store, &old_key, server.now())
        .await
        .unwrap()
        .unwrap();
    let new_key = revocation.new_active_key_id.unwrap();
    // This node's next reload (every 5 seconds on a shared store) forgets the key and
    // every verification it made.
    server.app.reload_key_ring().await.unwrap();
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        401
    );
    assert_eq!(server.current_user_status(&signed_in.api_token).await, 200);
    let after = server.sign_in("gone@example.com").await;
    assert_eq!(key_id_of(&after.signed_token), new_key);
    assert_eq!(server.current_user_status(&after.signed_token).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn sessions_ended_and_users_suspended_in_the_store_are_refused_on_the_next_request() {
    let server = TestServer::start().await;
    for email in ["ended@example.com", "suspended@example.com"] {
        server.add_user(email, Role::User, Status::Active).await;
    }
    let ended = server.sign_in("ended@example.com").await;
    let kept = server.sign_in("ended@example.com").await;
    let suspended = server.sign_in("suspended@example.com").await;
    // Every token verified once and then cached.
    for token in [
        &ended.signed_token,
        &kept.signed_token,
        &suspended.signed_token,
    ] {
        for _ in 0..2 {
            assert_eq!(server.current_user_status(token).await, 200);
        }
    }
    // The CLI on PostgreSQL runs on the database, without any node: no node hears of it.
    let on_the_store = |command| admin::execute(&server.app.store, None, command);
    let ended_session = server
        .app
        .key_ring()
        .verify(&ended.signed_token, &server.app.issuer, server.now())
        .unwrap()
        .session_id;
    let reply = on_the_store(AdminCommand::SessionRevoke {
        email: "ended@example.com".to_owned(),
        id: Some(ended_session.to_string()),
        all: false,
    })
    .await;
    assert!(reply.ok, "{}", reply.output);
    let reply = on_the_store(AdminCommand::UserSuspend {
        email: "suspended@example.com".to_owned(),
    })
    .await;
    assert!(reply.ok, "{}", reply.output);
    let reloads = server.app.key_ring_reload_count();
    for (token, status) in [
        (&ended.signed_token, 401),
        (&ended.api_token, 401),
        (&kept.signed_token, 200),
        (&suspended.signed_token, 401),
        (&suspended.api_token, 401),
    ] {
        assert_eq!(server.current_user_status(token).await, status);
    }
    if !server.app.store.is_shared() {
        assert_eq!(server.app.key_ring_reload_count(), reloads);
    }
    server.stop().await;
}
