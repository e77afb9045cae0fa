//! `GET /auth/keys`: the published keys verify a signed token offline, with pasetors alone.

use latchkey::model::{Role, Status};
use pasetors::Public;
use pasetors::keys::AsymmetricPublicKey;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};

use crate::support::TestServer;

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
