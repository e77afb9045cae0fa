//! The browser OAuth sign-in (API.md section 11) attacked as a hostile client or a
//! malicious provider would: a flood of starts, malformed and mixed-up callbacks, a state
//! carried to another provider's callback, and claims a provider splits between its ID
//! token and its userinfo answer. The hand-made provider of `oauth_provider.rs` plays the
//! provider.

use latchkey::model::{Role, Status};

use crate::oauth_provider::TestProvider;
use crate::page_support::PageBrowser;
use crate::support::{TestResponse, TestServer, page_request_to};

const START: &str = "/frontend/api/v1/auth/oauth/idp/start";
const CALLBACK: &str = "/frontend/api/v1/auth/oauth/idp/callback";

async fn server_with(provider: &TestProvider) -> TestServer {
    let config = provider.browser_config("idp");
    TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
        server_config.oauth.provider_timeout_seconds = 1;
        server_config.signup.open = true;
    })
    .await
}

fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    let slash = after_scheme.find('/').unwrap();
    after_scheme[slash..].to_owned()
}

/// Starts at `start` in `browser` and lets the provider answer: the callback's path and
/// query as the provider sends the browser back.
async fn to_provider_and_back(
    browser: &mut PageBrowser<'_>,
    provider: &TestProvider,
    start: &str,
) -> String {
    let started = browser.get(start).await;
    assert_eq!(started.status, 302, "{}", started.text());
    let authorization_url = started.header("location").unwrap().to_owned();
    let answered = page_request_to(provider.address, "GET", &path_of(&authorization_url))
        .send()
        .await;
    assert_eq!(answered.status, 302);
    path_of(answered.header("location").unwrap())
}

fn sets_session_cookie(response: &TestResponse) -> bool {
    response
        .headers
        .iter()
        .any(|(name, value)| name == "set-cookie" && value.starts_with("jwt="))
}

#[tokio::test]
async fn one_network_cannot_fill_the_table_of_started_sign_ins() {
    let provider = TestProvider::start().await;
    let server = server_with(&provider).await;
    // Each start keeps a row for ten minutes; the table holds 10 000 for everyone. One
    // network starting without end must be held back long before that.
    let mut refused_after = None;
    for started in 0..200 {
        let mut browser = PageBrowser::new(&server);
        let answer = browser.get(START).await;
        if answer.status == 429 {
            refused_after = Some(started);
            assert!(answer.header("retry-after").is_some());
            assert!(
                answer.text().contains("action=\"/sign-in\""),
                "{}",
                answer.text()
            );
            break;
        }
        assert_eq!(answer.status, 302, "{}", answer.text());
    }
    let refused_after = refused_after.expect("200 starts from one network, none refused");
    assert!(
        refused_after >= 10,
        "refused after only {refused_after} starts"
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_or_hostile_callbacks_get_the_sign_in_page_never_a_500() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-m", "malformed@example.com", true);
    let server = server_with(&provider).await;
    let mut browser = PageBrowser::new(&server);
    let long = "a".repeat(8_000);
    for query in [
        "state=a&state=b".to_owned(),
        "state=%FF%FE&code=%FF".to_owned(),
        "state=%ZZ".to_owned(),
        "code=&state=".to_owned(),
        format!("state={long}&code={long}"),
        "error=%3Cscript%3Ealert(1)%3C%2Fscript%3E&error_description=%3Cscript%3Ealert(2)%3C%2Fscript%3E".to_owned(),
        "iss=%00&state=%0D%0Aset-cookie:%20jwt=x".to_owned(),
    ] {
        let answer = browser.get(&format!("{CALLBACK}?{query}")).await;
        assert!(
            (400..500).contains(&answer.status),
            "{query}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(!answer.text().contains("<script>alert"), "{query}");
        assert!(!sets_session_cookie(&answer), "{query}");
    }
    // A provider's error words are never shown: only ours.
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let state = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let declined = browser
        .get(&format!(
            "{CALLBACK}?error=access_denied&error_description=%3Cb%3Eevil%3C%2Fb%3E&state={state}"
        ))
        .await;
    assert_eq!(declined.status, 400, "{}", declined.text());
    assert!(!declined.text().contains("evil"), "{}", declined.text());
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_state_cannot_be_finished_at_another_providers_callback_or_with_another_issuer() {
    let first = TestProvider::start().await;
    let second = TestProvider::start().await;
    first.sign_in_as("subject-a", "mixup@example.com", true);
    second.sign_in_as("subject-b", "mixup@example.com", true);
    let (first_config, second_config) =
        (first.browser_config("idp"), second.browser_config("other"));
    let server = TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![first_config, second_config];
        server_config.signup.open = true;
    })
    .await;
    let mut browser = PageBrowser::new(&server);

    // The first provider's state and code at the second provider's callback: refused, and
    // the state is used up for the first one too.
    let callback = to_provider_and_back(&mut browser, &first, START).await;
    let moved = callback.replace("/oauth/idp/", "/oauth/other/");
    let refused = browser.get(&moved).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("expired or was used already"));
    assert!(!sets_session_cookie(&refused));
    let after = browser.get(&callback).await;
    assert_eq!(after.status, 400, "{}", after.text());
    assert!(!sets_session_cookie(&after));
    assert_eq!(first.token_requests() + second.token_requests(), 0);

    // RFC 9207: an `iss` that is not the provider's is a mix-up; the code is never sent.
    let callback = to_provider_and_back(&mut browser, &first, START).await;
    let mixed = callback.replace(
        &form_urlencoded::byte_serialize(first.issuer().as_bytes()).collect::<String>(),
        &form_urlencoded::byte_serialize(second.issuer().as_bytes()).collect::<String>(),
    );
    assert_ne!(mixed, callback);
    let refused = browser.get(&mixed).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("did not come from the provider"));
    assert_eq!(first.token_requests() + second.token_requests(), 0);
    first.stop().await;
    second.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_attackers_callback_does_not_sign_the_victims_browser_in() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("attacker", "attacker@example.com", true);
    let server = server_with(&provider).await;
    // The attacker starts in their own browser and stops before the callback.
    let mut attacker = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut attacker, &provider, START).await;
    // The victim's browser, which has started a sign-in of its own, is sent there.
    let mut victim = PageBrowser::new(&server);
    let _ = victim.get(START).await;
    assert!(victim.cookies.contains_key("latchkey-oauth"));
    let landed = victim.get(&callback).await;
    assert_eq!(landed.status, 400, "{}", landed.text());
    assert!(landed.text().contains("started in another browser"));
    assert!(!sets_session_cookie(&landed));
    assert_eq!(
        provider.token_requests(),
        0,
        "the attacker's code is never redeemed"
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_email_in_the_id_token_takes_no_verification_from_userinfo_about_another_address() {
    let provider = TestProvider::start().await;
    // The ID token names the owner's address without saying it is verified; userinfo
    // answers for another address, verified.
    provider.sign_in_as("intruder", "intruder@example.com", true);
    provider.put_in_id_tokens(serde_json::json!({"email": "owner@example.com"}));
    let mut config = provider.browser_config("idp");
    config.link_by_verified_email = true;
    let server = TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
        server_config.signup.open = true;
    })
    .await;
    let owner = server
        .add_user("owner@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let answer = browser.get(&callback).await;
    assert!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .is_empty(),
        "the owner's account was linked to the intruder's provider account ({})",
        answer.status
    );
    // The owner's address is not verified by anyone: no account, no session.
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(!sets_session_cookie(&answer));

    // The other way round: the ID token says "verified" without naming an address, and
    // userinfo names the owner's address, unverified.
    provider.sign_in_as("intruder", "owner@example.com", false);
    provider.put_in_id_tokens(serde_json::json!({"email_verified": true}));
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(!sets_session_cookie(&answer));
    assert!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .is_empty()
    );

    // One answer naming the address and its verification together still links.
    provider.sign_in_as("owner-at-idp", "owner@example.com", true);
    provider.put_in_id_tokens(serde_json::json!({"email": "owner@example.com"}));
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .len(),
        1
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_id_token_issued_to_another_client_of_the_same_provider_signs_nobody_in() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-aud", "aud@example.com", true);
    // The provider also serves a mobile app whose ID tokens `POST /auth/oauth-sign-in`
    // accepts; the browser sign-in is ours alone (OpenID Connect Core 3.1.3.7).
    let mut config = provider.browser_config("idp");
    config.audiences = vec![
        crate::oauth_provider::CLIENT_ID.to_owned(),
        "mobile-app".to_owned(),
    ];
    let server = TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
        server_config.signup.open = true;
    })
    .await;
    for claims in [
        serde_json::json!({"aud": "mobile-app"}),
        serde_json::json!({"aud": ["mobile-app", crate::oauth_provider::CLIENT_ID], "azp": "mobile-app"}),
    ] {
        provider.put_in_id_tokens(claims.clone());
        let mut browser = PageBrowser::new(&server);
        let callback = to_provider_and_back(&mut browser, &provider, START).await;
        let answer = browser.get(&callback).await;
        assert!(
            (400..500).contains(&answer.status),
            "{claims}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(!sets_session_cookie(&answer), "{claims}");
    }
    // Ours, named alone or with azp: signed in.
    provider.put_in_id_tokens(serde_json::json!({
        "aud": ["mobile-app", crate::oauth_provider::CLIENT_ID],
        "azp": crate::oauth_provider::CLIENT_ID,
    }));
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_id_token_with_a_wrong_nonce_issuer_time_or_subject_signs_nobody_in() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-t", "tampered@example.com", true);
    let server = server_with(&provider).await;
    for claims in [
        serde_json::json!({"nonce": "not-the-one-we-sent"}),
        serde_json::json!({"nonce": null}),
        serde_json::json!({"iss": "http://127.0.0.1:1"}),
        serde_json::json!({"exp": 1_000_000}),
        serde_json::json!({"iat": 99_999_999_999_u64}),
        serde_json::json!({"aud": "someone-else"}),
        // userinfo answers for `subject-t`: its email is not this subject's.
        serde_json::json!({"sub": "another-subject"}),
    ] {
        provider.put_in_id_tokens(claims.clone());
        let mut browser = PageBrowser::new(&server);
        let callback = to_provider_and_back(&mut browser, &provider, START).await;
        let answer = browser.get(&callback).await;
        assert!(
            (400..500).contains(&answer.status),
            "{claims}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(!sets_session_cookie(&answer), "{claims}");
    }
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_suspended_or_pending_account_gets_no_session_from_the_callback() {
    let provider = TestProvider::start().await;
    let mut config = provider.browser_config("idp");
    config.link_by_verified_email = true;
    let server = TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
        server_config.signup.open = true;
    })
    .await;
    for (email, status) in [
        ("suspended@example.com", Status::Suspended),
        ("pending@example.com", Status::Pending),
    ] {
        server.add_user(email, Role::User, status).await;
        provider.sign_in_as(email, email, true);
        let mut browser = PageBrowser::new(&server);
        let callback = to_provider_and_back(&mut browser, &provider, START).await;
        let answer = browser.get(&callback).await;
        assert!(
            (400..500).contains(&answer.status),
            "{email}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(!sets_session_cookie(&answer), "{email}");
    }
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_start_keeps_no_return_url_that_leaves_the_site() {
    let provider = TestProvider::start().await;
    let server = server_with(&provider).await;
    let mut browser = PageBrowser::new(&server);
    for return_url in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "%0D%0ALocation:%20https://evil.example",
    ] {
        let encoded: String = form_urlencoded::byte_serialize(return_url.as_bytes()).collect();
        let answer = browser.get(&format!("{START}?ret-url={encoded}")).await;
        assert_eq!(answer.status, 400, "{return_url}: {}", answer.text());
        assert!(answer.header("location").is_none(), "{return_url}");
    }
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_userinfo_provider_in_the_browser_links_only_a_verified_address() {
    let provider = TestProvider::start().await;
    // GitHub-style: no ID token, the account from userinfo with the access token.
    let mut config = provider.userinfo_config("idp");
    config.subject_field = "sub".to_owned();
    config.authorization_url = Some(provider.url("/authorize"));
    config.token_url = Some(provider.url("/token"));
    config.link_by_verified_email = true;
    let server = TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
        server_config.signup.open = true;
    })
    .await;
    let owner = server
        .add_user("owner@example.com", Role::User, Status::Active)
        .await;

    provider.sign_in_as("gh-intruder", "owner@example.com", false);
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(!sets_session_cookie(&refused));
    assert!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .is_empty()
    );

    provider.sign_in_as("gh-owner", "owner@example.com", true);
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let signed_in = browser.get(&callback).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .len(),
        1
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_redirect_uri_comes_from_the_public_url_never_from_request_headers() {
    let provider = TestProvider::start().await;
    let server = server_with(&provider).await;
    let expected = format!("{}{CALLBACK}", server.localhost_origin());
    let started = page_request_to(server.address, "GET", START)
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "host=evil.example;proto=https")
        .header("X-Original-URL", "/elsewhere")
        .send()
        .await;
    assert_eq!(started.status, 302, "{}", started.text());
    let location = started.header("location").unwrap();
    let redirect_uri = location
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix("redirect_uri="))
        .map(|value| {
            form_urlencoded::parse(format!("v={value}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        })
        .unwrap();
    assert_eq!(redirect_uri, expected);
    assert!(!location.contains("evil.example"), "{location}");
    provider.stop().await;
    server.stop().await;
}
