//! API.md section 15, rules 1, 2, 3, 8, 12 and 13: what minted and API tokens may do, how
//! long what they make lives, and the caps on sessions and tokens. Each test replays an
//! attack that the server allowed before those rules.

use latchkey::model::{Role, Session, SessionId, Status};
use latchkey::rfc3339::parse_rfc3339;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestServer, live_session};

async fn post_json(server: &TestServer, path: &str, credential: &str, body: Value) -> Value {
    let response = server
        .request("POST", path)
        .bearer(credential)
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json
}

async fn mint(server: &TestServer, credential: &str, body: Value) -> String {
    let answer = post_json(server, "/auth/jwt", credential, body).await;
    answer["token"].as_str().unwrap().to_owned()
}

async fn new_api_token(server: &TestServer, credential: &str, body: Value) -> Value {
    post_json(server, "/auth/api-token", credential, body).await
}

fn token_text(answer: &Value) -> String {
    answer["token"].as_str().unwrap().to_owned()
}

fn expires_at(answer: &Value) -> Option<i64> {
    answer["expires-at"]
        .as_str()
        .map(|text| parse_rfc3339(text).unwrap())
}

/// The id of the session a signed token belongs to, as `GET /auth/session/{id}` shows.
async fn newest_session_id(server: &TestServer, signed_token: &str) -> String {
    let listed = server
        .request("GET", "/auth/session")
        .bearer(signed_token)
        .send()
        .await;
    // Newest first: the session just signed in.
    listed.json["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Rule 1: a minted token with only `read:profile` is no session credential.
#[tokio::test]
async fn a_minted_read_profile_token_cannot_end_sessions_change_the_password_or_delete_the_account()
{
    let server = TestServer::start().await;
    server
        .add_user("minted@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("minted@example.com").await;
    let sign_in_session_id = newest_session_id(&server, &session.signed_token).await;
    let minted = mint(
        &server,
        &session.signed_token,
        json!({ "permissions": ["read:profile"] }),
    )
    .await;
    assert_eq!(server.current_user_status(&minted).await, 200);
    // The minted token's own session: the only one besides the sign-in's, for now.
    let own_session_id = server
        .request("GET", "/auth/session")
        .bearer(&minted)
        .send()
        .await
        .json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_str().unwrap().to_owned())
        .find(|id| *id != sign_in_session_id)
        .unwrap();

    let attempts = [
        server.request("DELETE", "/auth/session").bearer(&minted),
        server
            .request("DELETE", "/auth/sign-out")
            .query("logout-all=true")
            .bearer(&minted),
        server
            .request("PUT", "/auth/current/password")
            .bearer(&minted)
            .json(&json!({ "old-password": PASSWORD, "new-password": "a brand new one" })),
        server.request("DELETE", "/user/current").bearer(&minted),
    ];
    for attempt in attempts {
        let response = attempt.send().await;
        let body = response.assert_error(403);
        assert_eq!(body["context"]["permission"], "write:user");
    }
    // Nor one by one: ending the sign-in's session by its id is ending another session.
    let response = server
        .request("DELETE", &format!("/auth/session/{sign_in_session_id}"))
        .bearer(&minted)
        .send()
        .await;
    assert_eq!(
        response.assert_error(403)["context"]["permission"],
        "write:user"
    );
    // Everything still stands: the sign-in, the minted token, the account, the password.
    assert_eq!(server.current_user_status(&session.signed_token).await, 200);
    assert_eq!(server.current_user_status(&minted).await, 200);
    server.sign_in("minted@example.com").await;

    // Its own session it may still end, by sign-out or by id; then it is gone and the
    // sign-in stays.
    let response = server
        .request("DELETE", &format!("/auth/session/{own_session_id}"))
        .bearer(&minted)
        .send()
        .await;
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(server.current_user_status(&minted).await, 401);
    assert_eq!(server.current_user_status(&session.signed_token).await, 200);
}

/// Rule 1, the other side: the sign-in's signed token and bound api-token are session
/// credentials, and a standalone token with `write:user` may end every session.
#[tokio::test]
async fn sign_in_credentials_and_write_user_tokens_may_still_end_every_session() {
    let server = TestServer::start().await;
    server
        .add_user("ender@example.com", Role::User, Status::Active)
        .await;
    let first = server.sign_in("ender@example.com").await;
    let response = server
        .request("DELETE", "/auth/session")
        .bearer(&first.api_token)
        .send()
        .await;
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(server.current_user_status(&first.signed_token).await, 401);

    let second = server.sign_in("ender@example.com").await;
    let writer = new_api_token(
        &server,
        &second.signed_token,
        json!({ "permissions": ["write:user"] }),
    )
    .await;
    let response = server
        .request("DELETE", "/auth/sign-out")
        .query("logout-all=true")
        .bearer(&token_text(&writer))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(server.current_user_status(&second.signed_token).await, 401);
}

/// Rule 2: a restricted token cannot lift its own restrictions, nor widen a token past
/// itself, nor make a token that expires outlive it.
#[tokio::test]
async fn a_token_cannot_lift_its_restrictions_or_outlive_itself_through_put() {
    let server = TestServer::start().await;
    server
        .add_user("restricted@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("restricted@example.com").await;
    let restricted = new_api_token(
        &server,
        &session.signed_token,
        json!({
            "permissions": ["read:user", "write:user", "read:billing", "write:billing"],
            "restrictions": ["write:billing"],
            "ttl": 3600,
        }),
    )
    .await;
    let restricted_text = token_text(&restricted);
    let prefix = &restricted_text[..8];

    // Lifting its own restriction: the result would hold write:billing, outside its set.
    let response = server
        .request("PUT", &format!("/auth/api-token/{prefix}"))
        .bearer(&restricted_text)
        .json(&json!({ "restrictions": [] }))
        .send()
        .await;
    assert_eq!(
        response.assert_error(403)["context"]["permission"],
        "write:billing"
    );
    // Living forever, or longer than itself.
    for ttl in [0, 7200] {
        let response = server
            .request("PUT", &format!("/auth/api-token/{prefix}"))
            .bearer(&restricted_text)
            .json(&json!({ "ttl": ttl }))
            .send()
            .await;
        assert_eq!(
            response.assert_error(403)["context"]["reason"],
            "outlives-credential"
        );
    }
    // A stronger sibling made by the sign-in cannot be changed by the weaker token either.
    let sibling = new_api_token(&server, &session.signed_token, json!({ "ttl": 60 })).await;
    let response = server
        .request(
            "PUT",
            &format!("/auth/api-token/{}", &token_text(&sibling)[..8]),
        )
        .bearer(&restricted_text)
        .json(&json!({ "ttl": 30 }))
        .send()
        .await;
    response.assert_error(403);
    // What stays within it is allowed: a shorter life.
    let response = server
        .request("PUT", &format!("/auth/api-token/{prefix}"))
        .bearer(&restricted_text)
        .json(&json!({ "ttl": 600 }))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let stored = server
        .app
        .store
        .standalone_api_tokens_of_user(session.user_id)
        .await
        .unwrap();
    let changed = stored.iter().find(|token| token.prefix == prefix).unwrap();
    assert!(changed.restrictions.names().contains(&"write:billing"));
}

/// Rule 3: what a token makes expires no later than it and ends with it; what a sign-in
/// session makes stands alone.
#[tokio::test]
async fn what_a_token_makes_nests_under_it_and_ends_with_it() {
    let server = TestServer::start().await;
    server
        .add_user("nesting@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("nesting@example.com").await;
    let parent = new_api_token(&server, &session.signed_token, json!({ "ttl": 3600 })).await;
    let parent_text = token_text(&parent);
    let parent_expiry = expires_at(&parent).unwrap();

    // ttl 0 (never) from an expiring token: capped at the parent's expiry.
    let child = new_api_token(&server, &parent_text, json!({ "ttl": 0 })).await;
    assert_eq!(expires_at(&child), Some(parent_expiry));
    let minted = post_json(&server, "/auth/jwt", &parent_text, json!({})).await;
    let minted_expiry = parse_rfc3339(minted["expire"].as_str().unwrap()).unwrap();
    // A session's `expire` is the first second it no longer works; a token's `expires-at` the
    // last one it does.
    assert!(minted_expiry <= parent_expiry + 1, "{minted}");
    let minted_text = minted["token"].as_str().unwrap().to_owned();
    // A grandchild, made by the minted token.
    let grandchild = new_api_token(&server, &minted_text, json!({ "ttl": 0 })).await;
    assert!(expires_at(&grandchild).unwrap() <= minted_expiry);
    // What the sign-in made stands alone.
    let standalone = new_api_token(&server, &session.signed_token, json!({ "ttl": 0 })).await;
    assert_eq!(expires_at(&standalone), None);

    for credential in [&token_text(&child), &minted_text, &token_text(&grandchild)] {
        assert_eq!(server.current_user_status(credential).await, 200);
    }
    let response = server
        .request("DELETE", &format!("/auth/api-token/{}", &parent_text[..8]))
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(response.status, 204, "{}", response.text());
    for credential in [&token_text(&child), &minted_text, &token_text(&grandchild)] {
        assert_eq!(server.current_user_status(credential).await, 401);
    }
    let listed = server
        .request("GET", "/auth/api-token")
        .query("include-expired=true")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(
        listed.json["api-tokens"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text()
    );

    // A minted token's makings end when it signs out; the sign-in's own stand.
    let minted = mint(&server, &session.signed_token, json!({})).await;
    let made_by_minted = new_api_token(&server, &minted, json!({})).await;
    let response = server
        .request("DELETE", "/auth/sign-out")
        .bearer(&minted)
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        server
            .current_user_status(&token_text(&made_by_minted))
            .await,
        401
    );
    let response = server
        .request("DELETE", "/auth/sign-out")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        server.current_user_status(&token_text(&standalone)).await,
        200
    );
}

/// Rule 3, when lifetimes change afterwards: a token that shortens its own life shortens
/// what it made, and a sign-in session cannot stretch a made token past its maker.
#[tokio::test]
async fn a_shortened_maker_shortens_what_it_made_and_nothing_outlives_its_maker() {
    let server = TestServer::start().await;
    server
        .add_user("stretch@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("stretch@example.com").await;
    let maker = new_api_token(&server, &session.signed_token, json!({ "ttl": 0 })).await;
    let maker_text = token_text(&maker);
    let child = new_api_token(&server, &maker_text, json!({ "ttl": 0 })).await;
    assert_eq!(expires_at(&child), None);
    let grandchild = new_api_token(&server, &token_text(&child), json!({ "ttl": 0 })).await;
    let minted = mint(&server, &maker_text, json!({})).await;

    // The maker gives itself a minute: all it made now ends within that minute too.
    let response = server
        .request("PUT", &format!("/auth/api-token/{}", &maker_text[..8]))
        .bearer(&maker_text)
        .json(&json!({ "ttl": 60 }))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let bound = expires_at(&response.json).unwrap();
    let listed = server
        .request("GET", "/auth/api-token")
        .bearer(&session.signed_token)
        .send()
        .await;
    for made in [&child, &grandchild] {
        let prefix = &token_text(made)[..8];
        let entry = listed.json["api-tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["token"].as_str().unwrap().starts_with(prefix))
            .unwrap();
        assert_eq!(expires_at(entry), Some(bound), "{entry}");
    }
    let sessions = server
        .request("GET", "/auth/session")
        .bearer(&minted)
        .send()
        .await;
    let minted_expiry = sessions.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| parse_rfc3339(entry["expire"].as_str().unwrap()).unwrap())
        .min()
        .unwrap();
    assert!(minted_expiry <= bound + 1, "{}", sessions.text());

    // The sign-in session asks for the child to live forever: it still ends with its maker.
    let response = server
        .request(
            "PUT",
            &format!("/auth/api-token/{}", &token_text(&child)[..8]),
        )
        .bearer(&session.signed_token)
        .json(&json!({ "ttl": 0 }))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(expires_at(&response.json), Some(bound));
}

/// Rule 8: an admin's password change with logout-all also ends the target's standalone
/// API tokens, which a thief of the old password may have made.
#[tokio::test]
async fn an_admin_password_change_with_logout_all_ends_the_targets_api_tokens() {
    let server = TestServer::start().await;
    server
        .add_user("admin@example.com", Role::Admin, Status::Active)
        .await;
    let target = server
        .add_user("victim@example.com", Role::User, Status::Active)
        .await;
    let victim_session = server.sign_in("victim@example.com").await;
    let planted = new_api_token(&server, &victim_session.signed_token, json!({})).await;
    let admin = server.sign_in("admin@example.com").await;
    let response = server
        .request("PUT", &format!("/auth/{}/password", target.id))
        .bearer(&admin.signed_token)
        .json(&json!({
            "old-password": PASSWORD,
            "new-password": "the admin's choice",
            "logout-all": true,
        }))
        .send()
        .await;
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(
        server
            .current_user_status(&victim_session.signed_token)
            .await,
        401
    );
    assert_eq!(server.current_user_status(&token_text(&planted)).await, 401);
}

/// Rule 12: claims a resource server could take for facts about the user are reserved.
#[tokio::test]
async fn minting_refuses_claims_that_pose_as_user_facts() {
    let server = TestServer::start().await;
    server
        .add_user("claims@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("claims@example.com").await;
    for claim in [
        "email", "role", "status", "username", "parent", "name", "user-id", "Sub", "ISS", "Email",
    ] {
        let response = server
            .request("POST", "/auth/jwt")
            .bearer(&session.signed_token)
            .json(&json!({ "claims": { claim: "root" } }))
            .send()
            .await;
        assert_eq!(
            response.assert_error(400)["context"]["field"],
            "claims",
            "{claim}"
        );
    }
    mint(
        &server,
        &session.signed_token,
        json!({ "claims": { "tenant": "acme" } }),
    )
    .await;
}

/// Rule 13: sessions and API tokens per user are capped, so no client grows the store
/// without bound; a new sign-in ends the oldest session.
#[tokio::test]
async fn sessions_and_api_tokens_per_user_are_capped() {
    let server = TestServer::start_with(|config| {
        config.session.max_per_user = 3;
        config.auth.max_api_tokens_per_user = 2;
    })
    .await;
    let user = server
        .add_user("capped@example.com", Role::User, Status::Active)
        .await;
    // Three sessions from earlier minutes, oldest first (times are whole seconds, so a
    // test's own sign-ins would all tie).
    let now = server.now();
    let earlier: Vec<Session> = [300, 200, 100]
        .into_iter()
        .map(|age| Session {
            created: now - age,
            ..live_session(SessionId::new_for_user(user.id), user.id)
        })
        .collect();
    server.app.store.insert_sessions(&earlier).await.unwrap();
    let newest = server.sign_in("capped@example.com").await;
    let listed = server
        .request("GET", "/auth/session")
        .bearer(&newest.signed_token)
        .send()
        .await;
    let mut listed_ids: Vec<String> = listed.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|session| session["id"].as_str().unwrap().to_owned())
        .collect();
    listed_ids.sort();
    let mut expected: Vec<String> = earlier[1..]
        .iter()
        .map(|session| session.id.to_string())
        .chain([newest_session_id(&server, &newest.signed_token).await])
        .collect();
    expected.sort();
    assert_eq!(listed_ids, expected);
    // Minting counts too: the oldest left (200 s) ends.
    mint(&server, &newest.signed_token, json!({})).await;
    assert!(
        server
            .app
            .store
            .session(earlier[1].id)
            .await
            .unwrap()
            .is_none()
    );

    for _ in 0..2 {
        new_api_token(&server, &newest.signed_token, json!({ "ttl": 1 })).await;
    }
    let response = server
        .request("POST", "/auth/api-token")
        .bearer(&newest.signed_token)
        .json(&json!({}))
        .send()
        .await;
    response.assert_error(409);
}
