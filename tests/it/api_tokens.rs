//! API tokens, minted tokens and key rotation, over HTTP.

use latchkey::model::{Permission, Role, Status};
use latchkey::rfc3339::parse_rfc3339;
use pasetors::Public;
use pasetors::keys::AsymmetricPublicKey;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde_json::{Value, json};

use crate::support::{SignedIn, TestServer};

/// Checks every documented field of `AuthApiToken`.
fn assert_token_fields(body: &Value) {
    for field in ["created", "updated"] {
        assert!(
            parse_rfc3339(body[field].as_str().unwrap()).is_some(),
            "{field}: {body}"
        );
    }
    assert!(body["expired"].is_boolean(), "{body}");
    assert!(
        body["expires-at"].is_null() || body["expires-at"].is_string(),
        "{body}"
    );
    assert!(body["permissions"].is_object(), "{body}");
    assert!(body["restrictions"].is_object(), "{body}");
    assert!(body["token"].is_string(), "{body}");
}

fn permission_names(body: &Value, field: &str) -> Vec<String> {
    body[field].as_object().unwrap().keys().cloned().collect()
}

async fn create_token(server: &TestServer, credential: &str, body: Value) -> Value {
    let response = server
        .request("POST", "/auth/api-token")
        .bearer(credential)
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_token_fields(&response.json);
    response.json
}

#[tokio::test]
async fn api_tokens_round_trip_with_every_field_and_are_shown_once() {
    let server = TestServer::start().await;
    server
        .add_user("tokens@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("tokens@example.com").await;
    let created = create_token(
        &server,
        &session.signed_token,
        json!({ "permissions": ["read:profile", "read:user"], "ttl": 3600 }),
    )
    .await;
    let full = created["token"].as_str().unwrap().to_owned();
    assert_eq!(full.len(), 64);
    assert_eq!(
        permission_names(&created, "permissions"),
        ["read:profile", "read:user"]
    );
    assert_eq!(created["restrictions"], json!({}));
    assert_eq!(created["expired"], false);
    let expires_at = parse_rfc3339(created["expires-at"].as_str().unwrap()).unwrap();
    assert!((expires_at - server.now() - 3600).abs() < 10);
    assert_eq!(server.current_user_status(&full).await, 200);

    // Never shown again: the list, and lookups by full token or prefix, show it masked.
    let masked = format!("{}…", &full[..8]);
    let list = server
        .request("GET", "/auth/api-token")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(list.status, 200);
    let listed = list.json["api-tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "the sign-in's own api-token is not listed");
    assert_eq!(listed[0]["token"], masked.as_str());
    assert!(!list.text().contains(&full));
    for key in [&full[..8], full.as_str()] {
        let one = server
            .request("GET", &format!("/auth/api-token/{key}"))
            .bearer(&session.signed_token)
            .send()
            .await;
        assert_eq!(one.status, 200, "{}", one.text());
        assert_token_fields(&one.json);
        assert_eq!(one.json["token"], masked.as_str());
    }

    // PUT: permissions add; ttl 0 never expires; reset-permissions replaces.
    let added = server
        .request("PUT", &format!("/auth/api-token/{}", &full[..8]))
        .bearer(&session.signed_token)
        .json(&json!({ "permissions": ["read:media"], "ttl": 0 }))
        .send()
        .await;
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(
        permission_names(&added.json, "permissions"),
        ["read:media", "read:profile", "read:user"]
    );
    assert!(added.json["expires-at"].is_null());
    let reset = server
        .request("PUT", &format!("/auth/api-token/{full}"))
        .bearer(&session.signed_token)
        .form(&[
            ("permissions[]", "read:profile"),
            ("reset-permissions", "true"),
            ("ttl", "600"),
        ])
        .send()
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(
        permission_names(&reset.json, "permissions"),
        ["read:profile"]
    );
    assert!(reset.json["expires-at"].is_string());

    // A form create, and the path rules for {token}.
    let form = server
        .request("POST", "/auth/api-token")
        .bearer(&session.signed_token)
        .form(&[("permissions", "read:profile"), ("ttl", "60")])
        .send()
        .await;
    assert_eq!(form.status, 200, "{}", form.text());
    for bad in ["ABCDEF12", "abc", "zzzzzzzz"] {
        let response = server
            .request("GET", &format!("/auth/api-token/{bad}"))
            .bearer(&session.signed_token)
            .send()
            .await;
        assert_eq!(response.assert_error(400)["context"]["parameter"], "token");
    }
    let unknown = server
        .request("GET", "/auth/api-token/00000000")
        .bearer(&session.signed_token)
        .send()
        .await;
    unknown.assert_error(404);

    let deleted = server
        .request("DELETE", &format!("/auth/api-token/{}", &full[..8]))
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(server.current_user_status(&full).await, 401);
    let gone = server
        .request("GET", &format!("/auth/api-token/{full}"))
        .bearer(&session.signed_token)
        .send()
        .await;
    gone.assert_error(404);
    assert_eq!(server.current_user_status(&session.signed_token).await, 200);
}

#[tokio::test]
async fn a_token_with_ttl_1_stops_working_and_is_listed_only_with_include_expired() {
    let server = TestServer::start().await;
    server
        .add_user("ttl@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("ttl@example.com").await;
    let created = create_token(&server, &session.signed_token, json!({ "ttl": 1 })).await;
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(server.current_user_status(&token).await, 200);
    server.advance_clock(std::time::Duration::from_secs(2));
    assert_eq!(server.current_user_status(&token).await, 401);
    let live = server
        .request("GET", "/auth/api-token")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(live.json["api-tokens"], json!([]));
    let all = server
        .request("GET", "/auth/api-token")
        .query("include-expired=true")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(all.json["api-tokens"][0]["expired"], true);
}

#[tokio::test]
async fn restrictions_and_a_demoted_owner_shrink_the_effective_set_at_once() {
    let server = TestServer::start().await;
    let owner = server
        .add_user("shrink@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("shrink@example.com").await;
    let created = create_token(
        &server,
        &session.signed_token,
        json!({ "permissions": ["read:sub-user", "read:user", "read:profile"] }),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let list_users = || server.request("GET", "/user").bearer(&token).send();
    assert_eq!(list_users().await.status, 200);
    let restricted = server
        .request("PUT", &format!("/auth/api-token/{}", &token[..8]))
        .bearer(&session.signed_token)
        .json(&json!({ "restrictions": ["read:sub-user"] }))
        .send()
        .await;
    assert_eq!(restricted.status, 200);
    assert_eq!(
        permission_names(&restricted.json, "restrictions"),
        ["read:sub-user"]
    );
    assert_eq!(
        list_users().await.assert_error(403)["context"]["permission"],
        "read:sub-user"
    );

    // Lift the restriction, then demote the owner: the token loses what the owner lost.
    let lifted = server
        .request("PUT", &format!("/auth/api-token/{}", &token[..8]))
        .bearer(&session.signed_token)
        .json(&json!({ "restrictions": [] }))
        .send()
        .await;
    assert_eq!(lifted.status, 200);
    assert_eq!(list_users().await.status, 200);
    server
        .app
        .store
        .update_user(owner.id, server.now(), |user| {
            user.permissions = user.permissions.without(Permission::ReadSubUser);
        })
        .await
        .unwrap();
    assert_eq!(
        list_users().await.assert_error(403)["context"]["permission"],
        "read:sub-user"
    );
    assert_eq!(server.current_user_status(&token).await, 200);
}

#[tokio::test]
async fn a_write_user_token_cannot_mint_or_create_beyond_write_user() {
    let server = TestServer::start().await;
    server
        .add_user("limited@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("limited@example.com").await;
    let created = create_token(
        &server,
        &session.signed_token,
        json!({ "permissions": ["write:user"] }),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let create = |permissions: Value| {
        server
            .request("POST", "/auth/api-token")
            .bearer(&token)
            .json(&json!({ "permissions": permissions }))
            .send()
    };
    assert_eq!(
        create(json!(["read:user"])).await.assert_error(403)["context"]["permission"],
        "read:user"
    );
    assert_eq!(create(json!(["write:user"])).await.status, 200);
    let mint = server
        .request("POST", "/auth/jwt")
        .bearer(&token)
        .json(&json!({ "permissions": ["read:profile"] }))
        .send()
        .await;
    assert_eq!(
        mint.assert_error(403)["context"]["permission"],
        "read:profile"
    );
    let sub_user = server
        .request("POST", "/user")
        .bearer(&token)
        .json(&json!({ "email": "kid@example.com", "password": "a fine password" }))
        .send()
        .await;
    assert_eq!(
        sub_user.assert_error(403)["context"]["permission"],
        "write:sub-user"
    );
    let read = server
        .request("GET", "/auth/api-token")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(read.assert_error(403)["context"]["permission"], "read:user");
    // Minting without naming permissions gives exactly the token's own set.
    let minted = server
        .request("POST", "/auth/jwt")
        .bearer(&token)
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    let claims = offline_claims(&server, minted.json["token"].as_str().unwrap()).await;
    assert_eq!(claims["permissions"], json!(["write:user"]));
}

/// Verifies a signed token with pasetors and the PASERK key `/auth/keys` publishes for its
/// footer's key id, and returns its claims.
async fn offline_claims(server: &TestServer, token: &str) -> Value {
    let keys = server.request("GET", "/auth/keys").send().await;
    let untrusted = UntrustedToken::<Public, V4>::try_from(token).unwrap();
    let footer: Value = serde_json::from_slice(untrusted.untrusted_footer()).unwrap();
    let key = keys.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["id"] == footer["kid"])
        .expect("the token's key is published");
    let public_key = AsymmetricPublicKey::<V4>::try_from(key["key"].as_str().unwrap()).unwrap();
    let trusted = PublicToken::verify(&public_key, &untrusted, None, None).unwrap();
    serde_json::from_str(trusted.payload()).unwrap()
}

#[tokio::test]
async fn minted_tokens_carry_their_claims_verify_offline_and_end_with_the_sessions() {
    let server = TestServer::start().await;
    server
        .add_user("mint@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("mint@example.com").await;
    let minted = server
        .request("POST", "/auth/jwt")
        .bearer(&session.signed_token)
        .json(&json!({
            "claims": { "org": "acme", "tier": 3 },
            "long-term-token": false,
            "permissions": ["read:profile", "read:media"],
        }))
        .send()
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    crate::schema::assert_matches_schema(&minted.json, "AuthJWTToken");
    let token = minted.json["token"].as_str().unwrap().to_owned();
    let expire = parse_rfc3339(minted.json["expire"].as_str().unwrap()).unwrap();
    assert!((expire - server.now() - 3 * 3600).abs() < 10);
    let claims = offline_claims(&server, &token).await;
    assert_eq!(claims["org"], "acme");
    assert_eq!(claims["tier"], 3);
    assert_eq!(claims["permissions"], json!(["read:media", "read:profile"]));
    assert_eq!(server.current_user_status(&token).await, 200);
    let sessions = server
        .request("GET", "/auth/session")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(sessions.json["sessions"].as_array().unwrap().len(), 2);

    // The minted set is its limit: listing API tokens needs read:user.
    let beyond = server
        .request("GET", "/auth/api-token")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(
        beyond.assert_error(403)["context"]["permission"],
        "read:user"
    );

    for reserved in [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "sid",
        "permissions",
    ] {
        let response = server
            .request("POST", "/auth/jwt")
            .bearer(&session.signed_token)
            .json(&json!({ "claims": { reserved: "x" } }))
            .send()
            .await;
        assert_eq!(
            response.assert_error(400)["context"]["field"],
            "claims",
            "{reserved}"
        );
    }
    let oversized = server
        .request("POST", "/auth/jwt")
        .bearer(&session.signed_token)
        .json(&json!({ "claims": { "blob": "x".repeat(4100) } }))
        .send()
        .await;
    oversized.assert_error(400);
    let not_an_object = server
        .request("POST", "/auth/jwt")
        .bearer(&session.signed_token)
        .json(&json!({ "claims": ["org"] }))
        .send()
        .await;
    not_an_object.assert_error(400);

    let ended = server
        .request("DELETE", "/auth/session")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(ended.status, 204);
    assert_eq!(server.current_user_status(&token).await, 401);
}

#[tokio::test]
async fn after_rotation_old_tokens_work_new_ones_carry_the_new_key_and_keys_list_both() {
    let server = TestServer::start_with(|config| {
        config.session.long_term_seconds = 2;
        config.session.short_term_seconds = 2;
    })
    .await;
    server
        .add_user("rotate@example.com", Role::User, Status::Active)
        .await;
    let before = server.sign_in("rotate@example.com").await;
    let keys_before = server.request("GET", "/auth/keys").send().await;
    let etag_before = keys_before.header("etag").unwrap().to_owned();
    let old_key = keys_before.json["keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let latchkey::auth::signing_keys::KeyRotation::Active { key_id: new_key } =
        server.app.rotate_signing_key().await.unwrap()
    else {
        panic!("with publish_ahead_seconds = 0 the new key signs at once");
    };
    assert_ne!(new_key, old_key);
    assert_eq!(server.current_user_status(&before.signed_token).await, 200);
    let after: SignedIn = server.sign_in("rotate@example.com").await;
    let claims_footer =
        UntrustedToken::<Public, V4>::try_from(after.signed_token.as_str()).unwrap();
    let footer: Value = serde_json::from_slice(claims_footer.untrusted_footer()).unwrap();
    assert_eq!(footer["kid"], new_key.as_str());
    let keys_after = server.request("GET", "/auth/keys").send().await;
    assert_ne!(keys_after.header("etag").unwrap(), etag_before);
    let statuses: Vec<(String, String)> = keys_after.json["keys"]
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
    assert_eq!(
        statuses,
        [
            (new_key.clone(), "active".to_owned()),
            (old_key.clone(), "retired".to_owned())
        ]
    );

    // Once every token the old key signed has expired, the key is dropped.
    assert!(server.app.maintain_signing_keys().await.unwrap().is_empty());
    server.advance_clock(std::time::Duration::from_secs(3));
    assert_eq!(server.app.maintain_signing_keys().await.unwrap(), [old_key]);
    let keys_last = server.request("GET", "/auth/keys").send().await;
    assert_eq!(keys_last.json["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys_last.json["keys"][0]["id"], new_key.as_str());
}
