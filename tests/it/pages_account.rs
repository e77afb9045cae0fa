//! The `/account` page over HTTP: every form's effect checked through the API, its CSRF
//! and origin refusals, and that another user's session or token cannot be named in a
//! form. A small cookie-keeping `PageBrowser` (`page_support.rs`) stands in for a real one.

use latchkey::config::OAuthProviderConfig;
use latchkey::model::{Role, Status};
use serde_json::Value;

use crate::oauth_provider::TestProvider;
use crate::page_support::{PageBrowser, csrf_token};
use crate::support::{PASSWORD, TestResponse, TestServer};

const NEW_PASSWORD: &str = "a brand new passphrase";

/// What the `/account` tests add to the page browser.
impl PageBrowser<'_> {
    /// Opens `/account` and sends one of its forms with the page's CSRF token and `pairs`.
    async fn act(&mut self, path: &str, pairs: &[(&str, &str)]) -> TestResponse {
        let page = self.get("/account").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let token = csrf_token(&page.text());
        let mut all = vec![("csrf-token", token.as_str())];
        all.extend_from_slice(pairs);
        self.post(path, &all).await
    }

    /// The session's signed token, from the `jwt` cookie: also a bearer credential.
    fn jwt(&self) -> String {
        self.cookies.get("jwt").unwrap().clone()
    }
}

fn assert_back_to_account(response: &TestResponse, done: &str) {
    assert_eq!(response.status, 303, "{}", response.text());
    assert_eq!(
        response.header("location"),
        Some(format!("/account?done={done}").as_str())
    );
}

async fn api_get(server: &TestServer, path: &str, credential: &str) -> TestResponse {
    server.request("GET", path).bearer(credential).send().await
}

async fn session_ids(server: &TestServer, credential: &str) -> Vec<String> {
    let listed = api_get(server, "/auth/session", credential).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    listed.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|session| session["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn api_tokens(server: &TestServer, credential: &str) -> Vec<Value> {
    let listed = api_get(server, "/auth/api-token", credential).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    listed.json["api-tokens"].as_array().unwrap().clone()
}

async fn create_api_token(server: &TestServer, credential: &str) -> String {
    let created = server
        .request("POST", "/auth/api-token")
        .bearer(credential)
        .json(&serde_json::json!({ "ttl": 0 }))
        .send()
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    created.json["token"].as_str().unwrap().to_owned()
}

/// Whether `password` signs `email` in through the API.
async fn signs_in_with(server: &TestServer, email: &str, password: &str) -> bool {
    server.sign_in_with_password(email, password).await.status == 200
}

#[tokio::test]
async fn an_anonymous_visitor_is_sent_to_sign_in_and_its_posts_change_nothing() {
    let server = TestServer::start().await;
    let mut browser = PageBrowser::new(&server);

    let page = browser.get("/account").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/sign-in?ret-url=/account"));

    let posted = browser
        .post("/account/profile", &[("first-name", "Mallory")])
        .await;
    assert_eq!(posted.status, 303);
    assert_eq!(posted.header("location"), Some("/sign-in?ret-url=/account"));
}

#[tokio::test]
async fn the_page_shows_the_account_its_sessions_tokens_and_the_security_headers() {
    let server = TestServer::start().await;
    server
        .add_user("page@example.com", Role::User, Status::Active)
        .await;
    let other = server.sign_in("page@example.com").await;
    let token = create_api_token(&server, &other.signed_token).await;
    let mut browser = PageBrowser::signed_in(&server, "page@example.com").await;

    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'; form-action 'self'")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = page.text();
    assert!(html.contains("page@example.com"));
    assert!(html.contains("This browser"));
    // The other session can be ended from here; this one only signed out.
    let jwt = browser.jwt();
    let current = session_behind(&server, &jwt).await;
    let other_id = session_ids(&server, &jwt)
        .await
        .into_iter()
        .find(|id| *id != current)
        .unwrap();
    assert!(html.contains(&format!("name=\"session-id\" value=\"{other_id}\"")));
    assert_eq!(html.matches("name=\"session-id\"").count(), 1);
    assert!(html.contains(&format!("<code>{}…</code>", &token[..8])));
    assert!(!html.contains(&token));
    assert!(html.contains("autocomplete=\"current-password\""));
    assert!(html.contains("autocomplete=\"new-password\""));
    // No form has a second submit button, and nothing is inline.
    for form in html.split("<form ").skip(1) {
        let form = form.split("</form>").next().unwrap();
        assert_eq!(form.matches("<button").count(), 1, "{form}");
    }
    assert!(!html.contains("<script") && !html.contains("style="));
}

#[tokio::test]
async fn the_profile_form_changes_the_names_the_api_reads_and_refuses_a_bad_one_inline() {
    let server = TestServer::start().await;
    server
        .add_user("names@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::signed_in(&server, "names@example.com").await;

    let saved = browser
        .act(
            "/account/profile",
            &[("first-name", "Ada"), ("last-name", "Lovelace")],
        )
        .await;
    assert_back_to_account(&saved, "profile");
    let profile = api_get(&server, "/user/current", &browser.jwt()).await;
    assert_eq!(profile.json["first-name"], "Ada");
    assert_eq!(profile.json["last-name"], "Lovelace");
    let page = browser.get("/account?done=profile").await;
    assert!(page.text().contains("Your profile was saved."));
    assert!(page.text().contains("value=\"Lovelace\""));

    // The API's name rule, worded for people, with the focus on the field to blame.
    let refused = browser
        .act(
            "/account/profile",
            &[("first-name", "Ada"), ("last-name", "Love\u{7}lace")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let html = refused.text();
    assert!(html.contains("The last name must be at most 255 characters"));
    let last_name_input = html.split("id=\"last-name\"").nth(1).unwrap();
    let last_name_input = last_name_input.split('>').next().unwrap();
    assert!(last_name_input.contains("autofocus"), "{last_name_input}");
    assert_eq!(html.matches("autofocus").count(), 1);
    let profile = api_get(&server, "/user/current", &browser.jwt()).await;
    assert_eq!(profile.json["last-name"], "Lovelace");

    // The notice is chosen by a fixed name, never the address's text.
    let page = browser.get("/account?done=%3Cb%3Ehello").await;
    assert_eq!(page.status, 200);
    assert!(!page.text().contains("hello"));
}

#[tokio::test]
async fn a_password_change_keeps_every_session_and_this_browser_signed_in() {
    let server = TestServer::start().await;
    server
        .add_user("keep@example.com", Role::User, Status::Active)
        .await;
    let elsewhere = server.sign_in("keep@example.com").await;
    let token = create_api_token(&server, &elsewhere.signed_token).await;
    let mut browser = PageBrowser::signed_in(&server, "keep@example.com").await;

    let changed = browser
        .act(
            "/account/password",
            &[("old-password", PASSWORD), ("new-password", NEW_PASSWORD)],
        )
        .await;
    assert_back_to_account(&changed, "password");

    assert!(signs_in_with(&server, "keep@example.com", NEW_PASSWORD).await);
    assert!(!signs_in_with(&server, "keep@example.com", PASSWORD).await);
    assert_eq!(
        server.current_user_status(&elsewhere.signed_token).await,
        200
    );
    assert_eq!(server.current_user_status(&token).await, 200);
    assert_eq!(server.current_user_status(&browser.jwt()).await, 200);
    assert_eq!(browser.get("/account").await.status, 200);
}

#[tokio::test]
async fn a_password_change_that_signs_out_everywhere_else_keeps_only_this_browser() {
    let server = TestServer::start().await;
    server
        .add_user("away@example.com", Role::User, Status::Active)
        .await;
    let elsewhere = server.sign_in("away@example.com").await;
    let token = create_api_token(&server, &elsewhere.signed_token).await;
    let mut browser = PageBrowser::signed_in(&server, "away@example.com").await;

    let changed = browser
        .act(
            "/account/password",
            &[
                ("old-password", PASSWORD),
                ("new-password", NEW_PASSWORD),
                ("logout-all", "true"),
            ],
        )
        .await;
    assert_back_to_account(&changed, "password-signed-out-elsewhere");

    assert!(signs_in_with(&server, "away@example.com", NEW_PASSWORD).await);
    assert_eq!(
        server.current_user_status(&elsewhere.signed_token).await,
        401
    );
    assert_eq!(server.current_user_status(&elsewhere.api_token).await, 401);
    assert_eq!(server.current_user_status(&token).await, 401);
    assert_eq!(server.current_user_status(&browser.jwt()).await, 200);
    let page = browser
        .get("/account?done=password-signed-out-elsewhere")
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("this browser stays signed in"));
}

#[tokio::test]
async fn a_wrong_current_password_or_a_short_new_one_is_shown_next_to_its_field() {
    let server = TestServer::start().await;
    server
        .add_user("wrong@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::signed_in(&server, "wrong@example.com").await;

    let refused = browser
        .act(
            "/account/password",
            &[
                ("old-password", "not my password"),
                ("new-password", NEW_PASSWORD),
                ("logout-all", "true"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let html = refused.text();
    assert!(html.contains("Your current password is not right"));
    let field = html.split("id=\"old-password\"").nth(1).unwrap();
    assert!(field.split('>').next().unwrap().contains("autofocus"));
    // The ticked box stays ticked; no password is written back into the page.
    assert!(html.contains("value=\"true\" checked"));
    assert!(!html.contains("not my password") && !html.contains(NEW_PASSWORD));

    let short = browser
        .act(
            "/account/password",
            &[("old-password", PASSWORD), ("new-password", "short")],
        )
        .await;
    assert_eq!(short.status, 400, "{}", short.text());
    let html = short.text();
    let field = html.split("id=\"new-password\"").nth(1).unwrap();
    assert!(field.split('>').next().unwrap().contains("autofocus"));

    assert!(signs_in_with(&server, "wrong@example.com", PASSWORD).await);
    assert_eq!(server.current_user_status(&browser.jwt()).await, 200);
}

#[tokio::test]
async fn a_throttled_password_change_says_how_long_to_wait() {
    let server = TestServer::start().await;
    server
        .add_user("guess@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::signed_in(&server, "guess@example.com").await;

    let mut throttled = None;
    for _ in 0..50 {
        let refused = browser
            .act(
                "/account/password",
                &[
                    ("old-password", "a wrong guess"),
                    ("new-password", NEW_PASSWORD),
                ],
            )
            .await;
        if refused.status == 429 {
            throttled = Some(refused);
            break;
        }
        assert_eq!(refused.status, 403, "{}", refused.text());
    }
    let throttled = throttled.expect("the password guesses were never throttled");
    assert!(throttled.header("retry-after").is_some());
    assert!(throttled.text().contains("Too many attempts. Please wait"));
    assert_eq!(server.current_user_status(&browser.jwt()).await, 200);
}

#[tokio::test]
async fn ending_a_session_refuses_its_token_and_another_users_session_is_not_found() {
    let server = TestServer::start().await;
    server
        .add_user("ender@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("stranger@example.com", Role::User, Status::Active)
        .await;
    let elsewhere = server.sign_in("ender@example.com").await;
    let stranger = server.sign_in("stranger@example.com").await;
    let mut browser = PageBrowser::signed_in(&server, "ender@example.com").await;

    let strangers_session = session_ids(&server, &stranger.signed_token).await.remove(0);
    let refused = browser
        .act(
            "/account/sessions/end",
            &[("session-id", &strangers_session)],
        )
        .await;
    assert_eq!(refused.status, 404, "{}", refused.text());
    assert!(refused.text().contains("no longer there"));
    assert_eq!(
        server.current_user_status(&stranger.signed_token).await,
        200
    );

    let garbled = browser
        .act("/account/sessions/end", &[("session-id", "not-an-id")])
        .await;
    assert_eq!(garbled.status, 400, "{}", garbled.text());

    let elsewhere_id = session_behind(&server, &elsewhere.signed_token).await;
    let ended = browser
        .act("/account/sessions/end", &[("session-id", &elsewhere_id)])
        .await;
    assert_back_to_account(&ended, "session-ended");
    assert_eq!(
        server.current_user_status(&elsewhere.signed_token).await,
        401
    );
    assert_eq!(server.current_user_status(&elsewhere.api_token).await, 401);
    assert_eq!(server.current_user_status(&browser.jwt()).await, 200);
}

/// The session id behind a signed token, read through `auth::authenticate`.
async fn session_behind(server: &TestServer, jwt: &str) -> String {
    latchkey::auth::authenticate(
        &server.app,
        latchkey::auth::PresentedCredential::SignedToken(latchkey::model::Secret::new(jwt)),
        latchkey::auth::AlsoRead::Nothing,
    )
    .await
    .unwrap()
    .session_id
    .unwrap()
    .to_string()
}

#[tokio::test]
async fn ending_all_other_sessions_keeps_this_browser_and_the_api_tokens() {
    let server = TestServer::start().await;
    server
        .add_user("others@example.com", Role::User, Status::Active)
        .await;
    let first = server.sign_in("others@example.com").await;
    let second = server.sign_in("others@example.com").await;
    let token = create_api_token(&server, &first.signed_token).await;
    let mut browser = PageBrowser::signed_in(&server, "others@example.com").await;

    let ended = browser.act("/account/sessions/end-others", &[]).await;
    assert_back_to_account(&ended, "other-sessions-ended");
    assert_eq!(server.current_user_status(&first.signed_token).await, 401);
    assert_eq!(server.current_user_status(&second.signed_token).await, 401);
    assert_eq!(server.current_user_status(&browser.jwt()).await, 200);
    // Sessions end, standalone tokens stand alone (API.md 15.3).
    assert_eq!(server.current_user_status(&token).await, 200);
    assert_eq!(session_ids(&server, &browser.jwt()).await.len(), 1);
    let page = browser.get("/account?done=other-sessions-ended").await;
    assert!(!page.text().contains("End all other sessions"));
}

#[tokio::test]
async fn a_created_token_works_through_the_api_and_is_never_shown_again() {
    let server = TestServer::start().await;
    server
        .add_user("maker@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::signed_in(&server, "maker@example.com").await;

    let created = browser
        .act(
            "/account/api-tokens/create",
            &[
                ("ttl", "86400"),
                ("permissions", "read:user"),
                ("permissions", "read:profile"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let html = created.text();
    let marker = "<code class=\"token new-token\">";
    let start = html.find(marker).unwrap() + marker.len();
    let token = html[start..].split('<').next().unwrap().to_owned();
    assert_eq!(token.len(), 64, "{html}");

    // It works, with what was ticked and no more, for a day.
    let profile = api_get(&server, "/user/current", &token).await;
    assert_eq!(profile.status, 200, "{}", profile.text());
    let listed = api_tokens(&server, &token).await;
    assert_eq!(listed.len(), 1);
    let granted: Vec<&String> = listed[0]["permissions"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(granted, ["read:profile", "read:user"]);
    let expires_at = listed[0]["expires-at"].as_str().unwrap();
    let expected = latchkey::rfc3339::format_rfc3339(server.now() + 86_400);
    assert_eq!(expires_at, expected);

    // Shown once: the account page lists its first 8 characters only.
    let page = browser.get("/account").await;
    assert!(
        page.text()
            .contains(&format!("<code>{}…</code>", &token[..8]))
    );
    assert!(!page.text().contains(&token));
}

#[tokio::test]
async fn a_token_form_is_refused_inline_for_no_permission_or_one_the_visitor_lacks() {
    let server = TestServer::start().await;
    server
        .add_user("picky@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::signed_in(&server, "picky@example.com").await;

    let none = browser
        .act("/account/api-tokens/create", &[("ttl", "0")])
        .await;
    assert_eq!(none.status, 400, "{}", none.text());
    assert!(none.text().contains("Choose at least one permission"));

    // write:admin is not the user's to give (the API's rule: within the caller's own set).
    let beyond = browser
        .act(
            "/account/api-tokens/create",
            &[("ttl", "0"), ("permissions", "write:admin")],
        )
        .await;
    assert_eq!(beyond.status, 403, "{}", beyond.text());
    assert!(!beyond.text().contains("new-token"));
    assert!(api_tokens(&server, &browser.jwt()).await.is_empty());
}

#[tokio::test]
async fn a_deleted_token_is_refused_and_another_users_token_is_not_found() {
    let server = TestServer::start().await;
    server
        .add_user("deleter@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("victim@example.com", Role::User, Status::Active)
        .await;
    let victim = server.sign_in("victim@example.com").await;
    let victims_token = create_api_token(&server, &victim.signed_token).await;
    let mut browser = PageBrowser::signed_in(&server, "deleter@example.com").await;
    let token = create_api_token(&server, &browser.jwt()).await;

    let refused = browser
        .act(
            "/account/api-tokens/delete",
            &[("token", &victims_token[..8])],
        )
        .await;
    assert_eq!(refused.status, 404, "{}", refused.text());
    let refused = browser
        .act("/account/api-tokens/delete", &[("token", &victims_token)])
        .await;
    assert_eq!(refused.status, 404, "{}", refused.text());
    assert_eq!(server.current_user_status(&victims_token).await, 200);

    let deleted = browser
        .act("/account/api-tokens/delete", &[("token", &token[..8])])
        .await;
    assert_back_to_account(&deleted, "api-token-deleted");
    assert_eq!(server.current_user_status(&token).await, 401);
    assert!(api_tokens(&server, &browser.jwt()).await.is_empty());
}

#[tokio::test]
async fn a_sub_user_without_token_permissions_sees_no_token_forms_and_cannot_post_one() {
    let server = TestServer::start().await;
    server
        .add_user("parent@example.com", Role::User, Status::Active)
        .await;
    let parent = server.sign_in("parent@example.com").await;
    let created = server
        .request("POST", "/user")
        .bearer(&parent.signed_token)
        .json(&serde_json::json!({
            "email": "child@example.com",
            "password": PASSWORD,
            "permissions": ["read:profile"],
        }))
        .send()
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut browser = PageBrowser::signed_in(&server, "child@example.com").await;

    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(!page.text().contains("/account/api-tokens/"));
    let refused = browser
        .act(
            "/account/api-tokens/create",
            &[("ttl", "0"), ("permissions", "read:profile")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("write:user"));
}

/// What every account form could change, read through the API (the password apart: a
/// sign-in would add a session).
async fn account_state(server: &TestServer, credential: &str) -> Vec<String> {
    let profile = api_get(server, "/user/current", credential).await;
    assert_eq!(profile.status, 200, "{}", profile.text());
    vec![
        profile.json["first-name"].to_string(),
        profile.json["last-name"].to_string(),
        session_ids(server, credential).await.join(","),
        api_tokens(server, credential)
            .await
            .iter()
            .map(|token| token["token"].to_string())
            .collect::<Vec<_>>()
            .join(","),
    ]
}

#[tokio::test]
async fn every_account_form_without_its_token_or_from_another_origin_changes_nothing() {
    let server = TestServer::start().await;
    server
        .add_user("csrf@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::signed_in(&server, "csrf@example.com").await;
    let elsewhere = server.sign_in("csrf@example.com").await;
    let token = create_api_token(&server, &elsewhere.signed_token).await;
    let jwt = browser.jwt();
    let current = session_behind(&server, &jwt).await;
    let other_session = session_ids(&server, &jwt)
        .await
        .into_iter()
        .find(|id| *id != current)
        .unwrap();
    let page = browser.get("/account").await;
    let good_token = csrf_token(&page.text());
    let forms: [(&str, Vec<(&str, &str)>); 6] = [
        ("/account/profile", vec![("first-name", "Mallory")]),
        (
            "/account/password",
            vec![
                ("old-password", PASSWORD),
                ("new-password", NEW_PASSWORD),
                ("logout-all", "true"),
            ],
        ),
        (
            "/account/sessions/end",
            vec![("session-id", other_session.as_str())],
        ),
        ("/account/sessions/end-others", vec![]),
        (
            "/account/api-tokens/create",
            vec![("ttl", "0"), ("permissions", "read:user")],
        ),
        ("/account/api-tokens/delete", vec![("token", &token[..8])]),
    ];
    let before = account_state(&server, &jwt).await;
    let origin = server.origin();
    for (path, fields) in &forms {
        // No token.
        let refused = browser.post_from(Some(&origin), path, fields).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(refused.text().contains("This form has expired"), "{path}");
        // A token of another browser (a fresh cookie).
        let mut stranger = PageBrowser::new(&server);
        stranger.cookies.insert("jwt".to_owned(), jwt.clone());
        let mut with_token = vec![("csrf-token", good_token.as_str())];
        with_token.extend_from_slice(fields);
        let refused = stranger.post_from(Some(&origin), path, &with_token).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        // The right token from a foreign page, and from a page that names no origin.
        for foreign in [Some("https://evil.example"), None] {
            let refused = browser.post_from(foreign, path, &with_token).await;
            assert_eq!(refused.status, 403, "{path}: {}", refused.text());
            assert!(refused.text().contains("sent from another site"), "{path}");
        }
    }
    assert_eq!(account_state(&server, &jwt).await, before);
    assert!(signs_in_with(&server, "csrf@example.com", PASSWORD).await);
    assert_eq!(
        server.current_user_status(&elsewhere.signed_token).await,
        200
    );
}

#[tokio::test]
async fn the_page_lists_the_linked_oauth_identities_and_offers_no_unlinking() {
    let provider = TestProvider::start().await;
    let server = TestServer::start_with(|config| {
        config.oauth.providers = vec![OAuthProviderConfig {
            allow_sign_up: Some(true),
            ..provider.oidc_config("test-oidc")
        }];
    })
    .await;
    let id_token = provider
        .rsa
        .sign(&provider.claims("subject-42", "linked@example.com", true));
    let signed_in = server
        .request("POST", "/auth/oauth-sign-in")
        .json(&serde_json::json!({
            "oauth-provider-token": { "provider": "test-oidc", "token": id_token },
        }))
        .send()
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let mut browser = PageBrowser::new(&server);
    browser.keep_cookies(&signed_in);

    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let linked = html.split("id=\"identities-heading\"").nth(1).unwrap();
    assert!(linked.contains("test-oidc"), "{linked}");
    assert!(linked.contains("Account subject-42"), "{linked}");
    // The API has no way to unlink, so neither has the page.
    assert!(!linked.contains("<form"), "{linked}");
    server.stop().await;
}
