//! Sessions, sign-out, password changes, sub-users, user endpoints, permissions and
//! revocation, over HTTP, each answer checked against the vendor's schema.

use latchkey::model::{ApiToken, Permission, PermissionSet, Role, Session, SessionId, Status};
use serde_json::json;

use crate::schema::assert_matches_schema;
use crate::support::{PASSWORD, SignedIn, TestServer, live_session, page_request_to};

async fn assert_ended(server: &TestServer, signed_in: &SignedIn) {
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        401,
        "signed token survived"
    );
    assert_eq!(
        server.current_user_status(&signed_in.api_token).await,
        401,
        "api-token survived"
    );
    let cookie = server
        .request("GET", "/user/current")
        .header("Cookie", &format!("jwt={}", signed_in.signed_token))
        .send()
        .await;
    assert_eq!(cookie.status, 401, "cookie survived");
}

async fn assert_alive(server: &TestServer, signed_in: &SignedIn) {
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    assert_eq!(server.current_user_status(&signed_in.api_token).await, 200);
}

async fn sign_in_with_agent(server: &TestServer, email: &str, agent: &str) -> SignedIn {
    let response = server
        .request("POST", "/auth/sign-in")
        .header("User-Agent", agent)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await;
    SignedIn::from_response(&response)
}

#[tokio::test]
async fn sessions_are_listed_newest_first_read_one_by_one_and_ended() {
    let server = TestServer::start().await;
    server
        .add_user("s@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("other@example.com", Role::User, Status::Active)
        .await;
    let first = sign_in_with_agent(&server, "s@example.com", "curl/8.5").await;
    server.advance_clock(std::time::Duration::from_secs(1));
    let second = sign_in_with_agent(&server, "s@example.com", "Mozilla/5.0 (X11; Linux)").await;
    let other = server.sign_in("other@example.com").await;

    let list = server
        .request("GET", "/auth/session")
        .bearer(&first.api_token)
        .send()
        .await;
    assert_eq!(list.status, 200);
    assert_matches_schema(&list.json, "AuthGetSessionsResponse");
    let sessions = list.json["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["ua-type"], "browser");
    assert_eq!(sessions[1]["ua-type"], "cli");
    assert_eq!(sessions[0]["remote-ip"], "127.0.0.1");
    assert_eq!(sessions[0]["user-agent"], "Mozilla/5.0 (X11; Linux)");
    let second_id = sessions[0]["id"].as_str().unwrap().to_owned();

    let one = server
        .request("GET", &format!("/auth/session/{second_id}"))
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(one.status, 200);
    assert_matches_schema(&one.json, "AuthSession");
    assert_eq!(one.json["id"], second_id.as_str());

    // Another user's session is not there for this caller; a malformed id is a 400.
    let foreign = server
        .request("GET", &format!("/auth/session/{second_id}"))
        .bearer(&other.signed_token)
        .send()
        .await;
    foreign.assert_error(404);
    let foreign_delete = server
        .request("DELETE", &format!("/auth/session/{second_id}"))
        .bearer(&other.signed_token)
        .send()
        .await;
    foreign_delete.assert_error(404);
    let malformed = server
        .request("GET", "/auth/session/not-a-uuid")
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(
        malformed.assert_error(400)["context"]["parameter"],
        "session-id"
    );
    let unknown = server
        .request("GET", &format!("/auth/session/{}", SessionId::new_random()))
        .bearer(&first.signed_token)
        .send()
        .await;
    unknown.assert_error(404);

    assert_alive(&server, &second).await;
    let ended = server
        .request("DELETE", &format!("/auth/session/{second_id}"))
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(ended.status, 204);
    assert!(ended.body.is_empty());
    assert_ended(&server, &second).await;
    assert_alive(&server, &first).await;

    let all = server
        .request("DELETE", "/auth/session")
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(all.status, 204);
    assert_ended(&server, &first).await;
    assert_alive(&server, &other).await;
}

#[tokio::test]
async fn fifty_concurrent_sign_ins_all_end_with_delete_all_sessions() {
    // Fifty sign-ins of one account from one address at once would meet the throttle's
    // ceilings (each holds a token of its buckets while it hashes: hardening.rs); this test
    // is about ending them, so the ceilings make room for fifty.
    let server = TestServer::start_with(|config| {
        config.throttle.failures_per_account_network = 50;
        config.throttle.failures_per_account = 50;
        config.throttle.failures_per_network = 50;
    })
    .await;
    server
        .add_user("fifty@example.com", Role::User, Status::Active)
        .await;
    let mut batch = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": "fifty@example.com", "password": PASSWORD }));
        batch.spawn(request.send());
    }
    let mut tokens = Vec::new();
    while let Some(response) = batch.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200);
        tokens.push(
            response.json["jwt-token"]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let ended = server
        .request("DELETE", "/auth/session")
        .bearer(&tokens[0])
        .send()
        .await;
    assert_eq!(ended.status, 204);
    for token in &tokens {
        assert_eq!(server.current_user_status(token).await, 401);
    }
}

#[tokio::test]
async fn sign_out_ends_its_session_or_all_and_checks_ret_url_first() {
    let server = TestServer::start().await;
    server
        .add_user("out@example.com", Role::User, Status::Active)
        .await;
    let first = server.sign_in("out@example.com").await;
    let second = server.sign_in("out@example.com").await;
    let bad = server
        .request("DELETE", "/auth/sign-out")
        .query("ret-url=%2F%2Fevil.example")
        .bearer(&first.signed_token)
        .send()
        .await;
    bad.assert_error(400);
    assert_alive(&server, &first).await;

    let out = server
        .request("DELETE", "/auth/sign-out")
        .query("ret-url=%2Fbye")
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(out.status, 200);
    assert_matches_schema(&out.json, "AuthDeleteSignOutResponse");
    assert_eq!(out.json, json!({ "success": true, "ret-url": "/bye" }));
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_ended(&server, &first).await;
    assert_alive(&server, &second).await;

    let third = server.sign_in("out@example.com").await;
    let all = server
        .request("DELETE", "/auth/sign-out")
        .query("logout-all=true")
        .bearer(&third.api_token)
        .send()
        .await;
    assert_eq!(all.status, 200);
    assert_ended(&server, &second).await;
    assert_ended(&server, &third).await;
    let fourth = server.sign_in("out@example.com").await;
    let bad_flag = server
        .request("DELETE", "/auth/sign-out")
        .query("logout-all=yes")
        .bearer(&fourth.api_token)
        .send()
        .await;
    assert_eq!(bad_flag.assert_error(400)["context"]["field"], "logout-all");
    assert_alive(&server, &fourth).await;
}

#[tokio::test]
async fn a_cookie_sign_out_needs_an_allowed_origin() {
    let server = TestServer::start().await;
    server
        .add_user("csrf@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("csrf@example.com").await;
    let cookie = format!("jwt={}", signed_in.signed_token);
    let foreign = server
        .request("DELETE", "/auth/sign-out")
        .header("Cookie", &cookie)
        .header("Origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(foreign.assert_error(403)["context"]["reason"], "origin");
    let missing = server
        .request("DELETE", "/auth/sign-out")
        .header("Cookie", &cookie)
        .send()
        .await;
    missing.assert_error(403);
    let foreign_referer = server
        .request("DELETE", "/auth/sign-out")
        .header("Cookie", &cookie)
        .header("Referer", "https://evil.example/page")
        .send()
        .await;
    foreign_referer.assert_error(403);
    assert_alive(&server, &signed_in).await;
    let own = server
        .request("DELETE", "/auth/sign-out")
        .header("Cookie", &cookie)
        .header("Origin", &server.origin())
        .send()
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert_ended(&server, &signed_in).await;
}

#[tokio::test]
async fn own_password_changes_with_the_old_one_and_logout_all_ends_the_rest() {
    let server = TestServer::start().await;
    server
        .add_user("pw@example.com", Role::User, Status::Active)
        .await;
    let current = server.sign_in("pw@example.com").await;
    let other = server.sign_in("pw@example.com").await;
    let change = |old: &str, new: &str| {
        server
            .request("PUT", "/auth/current/password")
            .bearer(&current.signed_token)
            .form(&[("old-password", old), ("new-password", new)])
    };
    change("wrong old password", "brand new password")
        .send()
        .await
        .assert_error(403);
    let same_as_email = change(PASSWORD, "pw@example.com").send().await;
    assert_eq!(
        same_as_email.assert_error(400)["context"]["field"],
        "new-password"
    );
    change(PASSWORD, PASSWORD).send().await.assert_error(400);
    change(PASSWORD, "short").send().await.assert_error(400);
    let changed = change(PASSWORD, "brand new password").send().await;
    assert_eq!(changed.status, 204, "{}", changed.text());
    assert_alive(&server, &other).await;
    let old = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "pw@example.com", "password": PASSWORD }))
        .send()
        .await;
    old.assert_error(401);

    let json_change = server
        .request("PUT", "/auth/current/password")
        .query("logout-all=true")
        .bearer(&current.signed_token)
        .json(&json!({ "old-password": "brand new password", "new-password": "another new password" }))
        .send()
        .await;
    assert_eq!(json_change.status, 204, "{}", json_change.text());
    assert_ended(&server, &other).await;
    assert_alive(&server, &current).await;
    let no_credential = server
        .request("PUT", "/auth/current/password")
        .form(&[("old-password", "x"), ("new-password", "y")])
        .send()
        .await;
    no_credential.assert_error(401);
}

async fn create_sub_user(
    server: &TestServer,
    parent: &SignedIn,
    email: &str,
    permissions: &[&str],
) -> u64 {
    let response = server
        .request("POST", "/user")
        .bearer(&parent.signed_token)
        .json(&json!({
            "email": email, "password": PASSWORD, "first-name": "Sub", "last-name": "User",
            "permissions": permissions,
        }))
        .send()
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert_matches_schema(&response.json, "UserGetUserResponse");
    assert_eq!(response.json["role"], "sub");
    assert_eq!(response.json["parent"]["id"], parent.user_id);
    response.json["id"].as_u64().unwrap()
}

#[tokio::test]
async fn sub_users_are_reached_only_by_their_parent_and_hold_no_more_than_it() {
    let server = TestServer::start().await;
    server
        .add_user("parent@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("stranger@example.com", Role::User, Status::Active)
        .await;
    let parent = server.sign_in("parent@example.com").await;
    let stranger = server.sign_in("stranger@example.com").await;
    let sub_id = create_sub_user(
        &server,
        &parent,
        "sub@example.com",
        &["read:profile", "read:media"],
    )
    .await;
    let sub = server.sign_in("sub@example.com").await;

    let too_much = server
        .request("POST", "/user")
        .bearer(&parent.signed_token)
        .json(&json!({ "email": "x@example.com", "password": PASSWORD, "permissions": ["read:admin"] }))
        .send()
        .await;
    assert_eq!(
        too_much.assert_error(403)["context"]["permission"],
        "read:admin"
    );
    let taken = server
        .request("POST", "/user")
        .bearer(&parent.signed_token)
        .json(&json!({ "email": "SUB@example.com", "password": PASSWORD }))
        .send()
        .await;
    taken.assert_error(409);

    // The sub-user lacks write:sub-user and read:sub-user: 403 naming them.
    let create = server
        .request("POST", "/user")
        .bearer(&sub.signed_token)
        .json(&json!({ "email": "y@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(
        create.assert_error(403)["context"]["permission"],
        "write:sub-user"
    );
    let raise = server
        .request("PUT", &format!("/user/{sub_id}"))
        .bearer(&sub.signed_token)
        .json(&json!({ "permissions": ["write:user"] }))
        .send()
        .await;
    assert_eq!(
        raise.assert_error(403)["context"]["permission"],
        "write:sub-user"
    );
    let list = server
        .request("GET", "/user")
        .bearer(&sub.signed_token)
        .send()
        .await;
    assert_eq!(
        list.assert_error(403)["context"]["permission"],
        "read:sub-user"
    );
    let own = server
        .request("GET", &format!("/user/{sub_id}"))
        .bearer(&sub.signed_token)
        .send()
        .await;
    assert_eq!(own.status, 200);
    // Its own id answers like /user/current, with `second-factors` (API.md section 10),
    // which the vendor's schema lacks: checked apart.
    let mut vendor_fields = own.json.clone();
    let second_factors = vendor_fields
        .as_object_mut()
        .unwrap()
        .remove("second-factors");
    assert_eq!(
        second_factors,
        Some(json!({ "totp": false, "passkeys": 0, "recovery-codes-left": 0 }))
    );
    assert_matches_schema(&vendor_fields, "UserGetUserResponse");
    assert_eq!(own.json["parent"]["email"], "parent@example.com");
    let names: Vec<&str> = own.json["permissions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ["read:media", "read:profile"]);

    // Another user's sub-user is not there for a stranger.
    let read = server
        .request("GET", &format!("/user/{sub_id}"))
        .bearer(&stranger.signed_token)
        .send()
        .await;
    read.assert_error(404);
    let password = server
        .request("PUT", &format!("/auth/{sub_id}/password"))
        .bearer(&stranger.signed_token)
        .form(&[
            ("old-password", PASSWORD),
            ("new-password", "taken over password"),
        ])
        .send()
        .await;
    password.assert_error(404);

    // The parent changes the sub-user's password with its own; logout-all ends its sessions.
    let wrong = server
        .request("PUT", &format!("/auth/{sub_id}/password"))
        .bearer(&parent.signed_token)
        .form(&[
            ("old-password", "not my password"),
            ("new-password", "fresh sub password"),
        ])
        .send()
        .await;
    wrong.assert_error(403);
    let changed = server
        .request("PUT", &format!("/auth/{sub_id}/password"))
        .query("logout-all=true")
        .bearer(&parent.signed_token)
        .form(&[
            ("old-password", PASSWORD),
            ("new-password", "fresh sub password"),
        ])
        .send()
        .await;
    assert_eq!(changed.status, 204, "{}", changed.text());
    assert_ended(&server, &sub).await;

    // The parent narrows the sub-user's set; its profile and effective set follow.
    let narrowed = server
        .request("PUT", &format!("/user/{sub_id}"))
        .bearer(&parent.signed_token)
        .json(&json!({ "permissions": ["read:profile"], "first-name": "Renamed" }))
        .send()
        .await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.text());
    assert_matches_schema(&narrowed.json, "UserPutUserProfileResponse");
    assert_eq!(narrowed.json["first-name"], "Renamed");
    assert_eq!(narrowed.json["permissions"].as_object().unwrap().len(), 1);
    let restrictions = server
        .request("PUT", &format!("/user/{sub_id}"))
        .bearer(&parent.signed_token)
        .json(&json!({ "restrictions": ["read:profile"] }))
        .send()
        .await;
    assert_eq!(
        restrictions.assert_error(400)["context"]["field"],
        "restrictions"
    );

    // Deleting the parent deletes the sub-user and ends every credential of both.
    let sub_again = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "sub@example.com", "password": "fresh sub password" }))
        .send()
        .await;
    let sub_token = sub_again.json["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = server
        .request("DELETE", "/user/current")
        .bearer(&parent.signed_token)
        .send()
        .await;
    assert_eq!(deleted.status, 204);
    assert_ended(&server, &parent).await;
    assert_eq!(server.current_user_status(&sub_token).await, 401);
    let gone = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "sub@example.com", "password": "fresh sub password" }))
        .send()
        .await;
    gone.assert_error(401);
}

#[tokio::test]
async fn admins_reach_lower_ranks_only_and_the_last_root_stays() {
    let server = TestServer::start().await;
    let root = server
        .add_user("root@example.com", Role::Root, Status::Active)
        .await;
    let other_admin = server
        .add_user("admin2@example.com", Role::Admin, Status::Active)
        .await;
    let plain = server
        .add_user("plain@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("admin@example.com", Role::Admin, Status::Active)
        .await;
    let admin = server.sign_in("admin@example.com").await;
    for target in [root.id, other_admin.id] {
        let read = server
            .request("GET", &format!("/user/{target}"))
            .bearer(&admin.signed_token)
            .send()
            .await;
        read.assert_error(404);
        let change = server
            .request("PUT", &format!("/user/{target}"))
            .bearer(&admin.signed_token)
            .json(&json!({ "first-name": "Hacked" }))
            .send()
            .await;
        change.assert_error(404);
    }
    let change = server
        .request("PUT", &format!("/user/{}", plain.id))
        .bearer(&admin.signed_token)
        .json(&json!({ "last-name": "Changed" }))
        .send()
        .await;
    assert_eq!(change.status, 200, "{}", change.text());
    assert_eq!(change.json["last-name"], "Changed");
    let bad_id = server
        .request("GET", "/user/0")
        .bearer(&admin.signed_token)
        .send()
        .await;
    assert_eq!(bad_id.assert_error(400)["context"]["parameter"], "user-id");
    let bad_id = server
        .request("GET", "/user/12x")
        .bearer(&admin.signed_token)
        .send()
        .await;
    bad_id.assert_error(400);

    let own = server
        .request("PUT", "/user/current")
        .bearer(&admin.signed_token)
        .json(&json!({ "first-name": "Ada", "last-name": "Admin", "role": "root" }))
        .send()
        .await;
    assert_eq!(own.status, 200);
    assert_matches_schema(&own.json, "UserPutCurrentUserProfileResponse");
    assert_eq!(own.json["first-name"], "Ada");
    assert_eq!(own.json["role"], "admin");

    let root_session = server.sign_in("root@example.com").await;
    let last_root = server
        .request("DELETE", "/user/current")
        .bearer(&root_session.signed_token)
        .send()
        .await;
    last_root.assert_error(409);
    assert_alive(&server, &root_session).await;
}

#[tokio::test]
async fn user_lists_filter_sort_and_page_over_250_sub_users() {
    let server = TestServer::start_with(|config| {
        config.throttle.sub_users_per_caller_per_hour = 250;
    })
    .await;
    server
        .add_user("boss@example.com", Role::User, Status::Active)
        .await;
    let boss = server.sign_in("boss@example.com").await;
    for index in 0..250 {
        create_sub_user(
            &server,
            &boss,
            &format!("member-{index:03}@example.com"),
            &["read:profile"],
        )
        .await;
    }
    // Suspend five through the store, as the CLI would.
    for user in server
        .app
        .store
        .children_of(boss.user_id)
        .await
        .unwrap()
        .into_iter()
        .take(5)
    {
        server
            .app
            .store
            .update_user(user.id, server.now(), |user| {
                user.status = Status::Suspended
            })
            .await
            .unwrap();
    }
    let list = |query: &str| {
        server
            .request("GET", "/user")
            .bearer(&boss.signed_token)
            .query(query)
    };
    let first_page = list("").send().await;
    assert_eq!(first_page.status, 200);
    assert_matches_schema(&first_page.json, "UserGetUsersResponse");
    assert_eq!(
        first_page.json["pagination"],
        json!({ "count": 10, "limit": 10, "page": 1, "total": 250 })
    );
    assert_eq!(
        first_page.json["sort"],
        json!({ "field": "id", "order": "asc" })
    );
    assert_eq!(
        first_page.json["users"][0]["email"],
        "member-000@example.com"
    );

    let clamped = list("pagination%5Blimit%5D=500&pagination%5Bpage%5D=3")
        .send()
        .await;
    assert_eq!(
        clamped.json["pagination"],
        json!({ "count": 50, "limit": 100, "page": 3, "total": 250 })
    );
    let sorted = list("sort%5Bfield%5D=email&sort%5Border%5D=desc")
        .send()
        .await;
    assert_eq!(sorted.json["users"][0]["email"], "member-249@example.com");
    let contains = list("email-contains=MEMBER-10").send().await;
    assert_eq!(contains.json["pagination"]["total"], 10);
    assert_eq!(
        contains.json["filter"],
        json!({ "email-contains": "MEMBER-10" })
    );
    let exact = list("email=member-042%40example.com").send().await;
    assert_eq!(exact.json["pagination"]["total"], 1);
    let suspended = list("status=suspended").send().await;
    assert_eq!(suspended.json["pagination"]["total"], 5);
    let both = list("status=suspended&status[]=active").send().await;
    assert_eq!(both.json["pagination"]["total"], 250);
    let by_parent = list(&format!("parent-id={}", boss.user_id)).send().await;
    assert_eq!(by_parent.json["pagination"]["total"], 250);
    list("sort%5Bfield%5D=password")
        .send()
        .await
        .assert_error(400);
    list("pagination%5Bpage%5D=0")
        .send()
        .await
        .assert_error(400);
    list("status=sleeping").send().await.assert_error(400);
}

#[tokio::test]
async fn expired_sessions_are_purged_in_the_background_while_sign_ins_go_on() {
    let server = TestServer::start_with(|config| config.session.purge_interval_seconds = 1).await;
    let user = server
        .add_user("purge@example.com", Role::User, Status::Active)
        .await;
    let past = server.now() - 3600;
    let expired: Vec<Session> = (0..10_000)
        .map(|_| Session {
            created: past - 60,
            expire: past,
            ..live_session(SessionId::new_random(), user.id)
        })
        .collect();
    server.app.store.insert_sessions(&expired).await.unwrap();
    assert_eq!(server.app.store.session_count().await.unwrap(), 10_000);
    let mut live = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        live.push(server.sign_in("purge@example.com").await);
        let listed = server
            .request("GET", "/auth/session")
            .bearer(&live[0].signed_token)
            .send()
            .await;
        assert_eq!(
            listed.json["sessions"].as_array().unwrap().len(),
            live.len()
        );
        if server.app.store.session_count().await.unwrap() == live.len() as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired sessions were not purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for signed_in in &live {
        assert_alive(&server, signed_in).await;
    }
}

#[tokio::test]
async fn sessions_with_old_random_ids_and_a_user_sharing_the_id_prefix_are_told_apart() {
    let server = TestServer::start().await;
    server
        .add_user("prefix@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("prefix@example.com").await;
    let list_ids = || async {
        let listed = server
            .request("GET", "/auth/session")
            .bearer(&signed_in.signed_token)
            .send()
            .await;
        assert_eq!(listed.status, 200);
        let mut ids: Vec<String> = listed.json["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|session| session["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    // The store's only session so far is the sign-in's.
    assert_eq!(server.app.store.session_count().await.unwrap(), 1);
    let own_session_id = SessionId::parse_canonical(&list_ids().await[0]).unwrap();
    let user = server
        .app
        .store
        .user_by_id(signed_in.user_id)
        .await
        .unwrap()
        .unwrap();
    // Another user whose id has the same low 48 bits: its new sessions share the id range.
    let mut neighbour = user.clone();
    neighbour.id = user.id ^ (1 << 48);
    neighbour.email = "neighbour@example.com".to_owned();
    neighbour.normalized_email = "neighbour@example.com".to_owned();
    server.app.store.replace_user(&neighbour).await.unwrap();
    let neighbour_session = live_session(SessionId::new_for_user(neighbour.id), neighbour.id);
    assert!(SessionId::range_for_user(user.id).contains(&neighbour_session.id.0));
    // A session from before prefixed ids: a random v4 id, found through the index.
    let old_session = live_session(SessionId::new_random(), user.id);
    assert!(!old_session.id.is_prefixed_for(user.id));
    server
        .app
        .store
        .insert_sessions(&[neighbour_session.clone(), old_session.clone()])
        .await
        .unwrap();

    assert!(own_session_id.is_prefixed_for(user.id));
    let mut expected = vec![own_session_id.to_string(), old_session.id.to_string()];
    expected.sort();
    assert_eq!(list_ids().await, expected);

    let ended = server
        .request("DELETE", "/auth/session")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert!(ended.status < 300, "ending all sessions: {}", ended.status);
    assert!(
        server
            .app
            .store
            .session(old_session.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        server
            .app
            .store
            .session(own_session_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        server
            .app
            .store
            .session(neighbour_session.id)
            .await
            .unwrap()
            .is_some(),
        "ending one user's sessions ended its neighbour's"
    );
}

/// A standalone API token stored the way `POST /auth/api-token` will store one.
async fn standalone_token(server: &TestServer, user_id: u64, permissions: &[Permission]) -> String {
    let token = latchkey::auth::generate_api_token().unwrap();
    let now = server.now();
    server
        .app
        .store
        .insert_api_token(&ApiToken {
            hash: latchkey::auth::token_hash(&token),
            prefix: token[..8].to_owned(),
            user_id,
            session_id: None,
            permissions: permissions.iter().copied().collect(),
            restrictions: PermissionSet::empty(),
            created: now,
            updated: now,
            expires_at: None,
            made_by: None,
        })
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn a_read_profile_api_token_cannot_delete_end_all_or_create_beyond_itself() {
    let server = TestServer::start().await;
    let user = server
        .add_user("narrow@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("narrow@example.com").await;
    let narrow = standalone_token(&server, user.id, &[Permission::ReadProfile]).await;
    assert_eq!(server.current_user_status(&narrow).await, 200);
    let delete = server
        .request("DELETE", "/user/current")
        .bearer(&narrow)
        .send()
        .await;
    assert_eq!(
        delete.assert_error(403)["context"]["permission"],
        "write:user"
    );
    let end_all = server
        .request("DELETE", "/auth/session")
        .bearer(&narrow)
        .send()
        .await;
    assert_eq!(
        end_all.assert_error(403)["context"]["permission"],
        "write:user"
    );
    let create = server
        .request("POST", "/user")
        .bearer(&narrow)
        .json(&json!({ "email": "kid@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(
        create.assert_error(403)["context"]["permission"],
        "write:sub-user"
    );
    // A token with write:sub-user still cannot grant what it does not hold itself.
    let writer = standalone_token(
        &server,
        user.id,
        &[Permission::WriteSubUser, Permission::ReadProfile],
    )
    .await;
    let beyond = server
        .request("POST", "/user")
        .bearer(&writer)
        .json(&json!({ "email": "kid@example.com", "password": PASSWORD, "permissions": ["read:media"] }))
        .send()
        .await;
    assert_eq!(
        beyond.assert_error(403)["context"]["permission"],
        "read:media"
    );
    let within = server
        .request("POST", "/user")
        .bearer(&writer)
        .json(&json!({ "email": "kid@example.com", "password": PASSWORD, "permissions": ["read:profile"] }))
        .send()
        .await;
    assert_eq!(within.status, 201, "{}", within.text());
    // A standalone token signs out only with logout-all.
    let sign_out = server
        .request("DELETE", "/auth/sign-out")
        .bearer(&narrow)
        .send()
        .await;
    assert_eq!(sign_out.assert_error(400)["context"]["field"], "logout-all");
    assert_alive(&server, &session).await;
}

#[tokio::test]
async fn standalone_api_tokens_survive_session_ends_but_not_logout_all_password_changes_or_deletion()
 {
    let server = TestServer::start().await;
    let user = server
        .add_user("keeper@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("keeper@example.com").await;
    let standalone = standalone_token(
        &server,
        user.id,
        &[Permission::ReadProfile, Permission::WriteUser],
    )
    .await;
    let end_all = server
        .request("DELETE", "/auth/session")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(end_all.status, 204);
    assert_ended(&server, &session).await;
    assert_eq!(
        server.current_user_status(&standalone).await,
        200,
        "sessions' end took a standalone token"
    );

    let session = server.sign_in("keeper@example.com").await;
    let plain_change = server
        .request("PUT", "/auth/current/password")
        .bearer(&session.signed_token)
        .form(&[
            ("old-password", PASSWORD),
            ("new-password", "second password here"),
        ])
        .send()
        .await;
    assert_eq!(plain_change.status, 204);
    assert_eq!(server.current_user_status(&standalone).await, 200);
    let logout_all_change = server
        .request("PUT", "/auth/current/password")
        .query("logout-all=true")
        .bearer(&session.signed_token)
        .form(&[
            ("old-password", "second password here"),
            ("new-password", "third password here"),
        ])
        .send()
        .await;
    assert_eq!(logout_all_change.status, 204);
    assert_eq!(server.current_user_status(&standalone).await, 401);
    assert_alive(&server, &session).await;

    let second = standalone_token(&server, user.id, &[Permission::WriteUser]).await;
    assert_eq!(server.current_user_status(&second).await, 200);
    let deleted = server
        .request("DELETE", "/user/current")
        .bearer(&second)
        .send()
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(server.current_user_status(&second).await, 401);
    assert_ended(&server, &session).await;
}

#[tokio::test]
async fn every_password_length_refusal_gives_the_configured_range() {
    let server = TestServer::start_with(|config| {
        config.signup.open = true;
        config.password.min_length = 8;
    })
    .await;
    server
        .add_user("length@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("length@example.com").await;
    let sub_id = create_sub_user(&server, &signed_in, "length-sub@example.com", &[]).await;
    let too_long = "x".repeat(73);
    for new_password in ["seven77", too_long.as_str()] {
        let refusals = [
            (
                "password",
                server.request("POST", "/auth/sign-up").json(&json!({
                    "email": "new-length@example.com", "password": new_password,
                    "first-name": "New", "last-name": "Person",
                })),
            ),
            (
                "password",
                server
                    .request("POST", "/user")
                    .bearer(&signed_in.signed_token)
                    .json(&json!({
                        "email": "other-sub@example.com", "password": new_password,
                        "first-name": "Sub", "last-name": "User",
                    })),
            ),
            (
                "new-password",
                server
                    .request("PUT", "/auth/current/password")
                    .bearer(&signed_in.signed_token)
                    .form(&[("old-password", PASSWORD), ("new-password", new_password)]),
            ),
            (
                "new-password",
                server
                    .request("PUT", &format!("/auth/{sub_id}/password"))
                    .bearer(&signed_in.signed_token)
                    .form(&[("old-password", PASSWORD), ("new-password", new_password)]),
            ),
        ];
        // Reset confirmation looks its token up first, so its refusal, with a real link, is
        // in security_signup::the_reset_mail_states_its_lifetime_and_the_new_password_meets_every_rule.
        for (field, request) in refusals {
            let response = request.send().await;
            let body = response.assert_error(400);
            assert_eq!(body["code"], 40000, "{body}");
            assert_eq!(body["context"]["field"], field, "{body}");
            assert_eq!(
                body["error"],
                format!("{field} must be 8 to 72 characters"),
                "{body}"
            );
        }
    }
    // The reset page asks the browser for the same range.
    let page = page_request_to(
        server.address,
        "GET",
        "/password-reset/confirm?token=any-token",
    )
    .send()
    .await;
    assert!(
        page.text().contains("minlength=\"8\" maxlength=\"72\""),
        "{}",
        page.text()
    );
}
