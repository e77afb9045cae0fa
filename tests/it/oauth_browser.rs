//! The browser OAuth sign-in (API.md section 11) over HTTP, against the hand-made provider
//! of `oauth_provider.rs`, whose authorization endpoint approves at once: the start's
//! redirect, the state's single use and browser binding, the code exchange with PKCE, the
//! ID token's nonce, userinfo for the email, the linking rules, and every failure drawn on
//! the sign-in page in words. The flow through a real provider in Chromium is in
//! `browser_oauth.rs`.

use std::time::Duration;

use latchkey::model::{Role, Status};

use crate::oauth_provider::TestProvider;
use crate::page_support::PageBrowser;
use crate::support::{TestResponse, TestServer, page_request_to};

const PROVIDER: &str = "idp";
const START: &str = "/frontend/api/v1/auth/oauth/idp/start";

async fn server_with(provider: &TestProvider) -> TestServer {
    let config = provider.browser_config(PROVIDER);
    TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
        server_config.oauth.provider_timeout_seconds = 1;
        server_config.signup.open = true;
    })
    .await
}

/// The path and query of an absolute URL.
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    let slash = after_scheme.find('/').unwrap();
    after_scheme[slash..].to_owned()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Starts the sign-in in `browser` and lets the provider answer: the callback URL's path
/// and query, as the provider sends the browser back.
async fn to_provider_and_back(
    browser: &mut PageBrowser<'_>,
    provider: &TestProvider,
    start: &str,
) -> String {
    let started = browser.get(start).await;
    assert_eq!(started.status, 302, "{}", started.text());
    let authorization_url = started.header("location").unwrap().to_owned();
    assert!(
        authorization_url.starts_with(&provider.url("/authorize?")),
        "{authorization_url}"
    );
    let answered = page_request_to(provider.address, "GET", &path_of(&authorization_url))
        .send()
        .await;
    assert_eq!(answered.status, 302);
    path_of(answered.header("location").unwrap())
}

/// The whole flow in `browser`: the callback's answer.
async fn sign_in_through_provider(
    browser: &mut PageBrowser<'_>,
    provider: &TestProvider,
) -> TestResponse {
    let callback = to_provider_and_back(browser, provider, START).await;
    browser.get(&callback).await
}

fn assert_sign_in_page_says(response: &TestResponse, status: u16, words: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let html = response.text();
    assert!(html.contains("action=\"/sign-in\""), "{html}");
    assert!(html.contains(words), "{html}");
    assert!(
        !response
            .headers
            .iter()
            .any(|(name, value)| name == "set-cookie" && value.starts_with("jwt=")),
        "a failed sign-in sets no session cookie"
    );
}

#[tokio::test]
async fn the_start_redirects_with_state_nonce_and_an_s256_challenge_bound_to_the_browser() {
    let provider = TestProvider::start().await;
    let server = server_with(&provider).await;
    let mut browser = PageBrowser::new(&server);
    let sign_in_page = browser.get("/sign-in?ret-url=/account").await;
    assert!(
        sign_in_page.text().contains(&format!(
            "href=\"{START}?ret-url=%2Faccount\">Sign in with Test Provider</a>"
        )),
        "{}",
        sign_in_page.text()
    );
    let started = browser.get(START).await;
    assert_eq!(started.status, 302);
    let location = started.header("location").unwrap();
    assert_eq!(query_value(location, "response_type").unwrap(), "code");
    assert_eq!(
        query_value(location, "client_id").unwrap(),
        crate::oauth_provider::CLIENT_ID
    );
    assert_eq!(
        query_value(location, "redirect_uri").unwrap(),
        format!(
            "{}/frontend/api/v1/auth/oauth/idp/callback",
            server.localhost_origin()
        )
    );
    assert_eq!(
        query_value(location, "scope").unwrap(),
        "openid email profile"
    );
    assert_eq!(
        query_value(location, "code_challenge_method").unwrap(),
        "S256"
    );
    assert_eq!(query_value(location, "code_challenge").unwrap().len(), 43);
    assert_eq!(query_value(location, "state").unwrap().len(), 43);
    assert_eq!(query_value(location, "nonce").unwrap().len(), 43);
    let cookie = started
        .headers
        .iter()
        .find(|(name, value)| name == "set-cookie" && value.starts_with("latchkey-oauth="))
        .map(|(_, value)| value.clone())
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Max-Age=600", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // An unknown provider, or one without the browser sign-in, has no start.
    assert_eq!(
        browser
            .get("/frontend/api/v1/auth/oauth/other/start")
            .await
            .status,
        404
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_new_account_is_made_then_the_same_account_signs_in_again() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-1", "newcomer@example.com", true);
    let server = server_with(&provider).await;
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(
        &mut browser,
        &provider,
        &format!("{START}?ret-url=/account%3Fx%3D1"),
    )
    .await;
    let signed_in = browser.get(&callback).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(signed_in.header("location"), Some("/account?x=1"));
    let token = browser.session_token().unwrap().to_owned();
    let current = server
        .request("GET", "/user/current")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(current.status, 200);
    assert_eq!(current.json["email"], "newcomer@example.com");
    let user_id = current.json["id"].as_u64().unwrap();
    // The ID token lacked the email: it came from userinfo, with the access token.
    assert_eq!(provider.userinfo_requests(), 1);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200);
    assert!(account.text().contains(PROVIDER), "{}", account.text());

    let mut other_browser = PageBrowser::new(&server);
    let again = sign_in_through_provider(&mut other_browser, &provider).await;
    assert_eq!(again.status, 303, "{}", again.text());
    assert_eq!(again.header("location"), Some("/account"));
    let token = other_browser.session_token().unwrap().to_owned();
    let current = server
        .request("GET", "/user/current")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(current.json["id"].as_u64().unwrap(), user_id);
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_unverified_provider_email_never_reaches_an_existing_account() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("intruder", "owner@example.com", false);
    let mut config = provider.browser_config(PROVIDER);
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
    let refused = sign_in_through_provider(&mut browser, &provider).await;
    assert_sign_in_page_says(&refused, 403, "This provider account cannot sign in here.");
    assert!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .is_empty()
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_state_is_used_once_and_only_by_the_browser_that_started_it() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-2", "once@example.com", true);
    let server = server_with(&provider).await;

    // Without the browser-binding cookie: refused, and the state is used up.
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    let mut cookieless = PageBrowser::new(&server);
    let refused = cookieless.get(&callback).await;
    assert_sign_in_page_says(&refused, 400, "started in another browser");
    let replayed = browser.get(&callback).await;
    assert_sign_in_page_says(&replayed, 400, "expired or was used already");

    // A callback that succeeded cannot be replayed.
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    assert_eq!(browser.get(&callback).await.status, 303);
    browser.cookies.remove("jwt");
    assert_sign_in_page_says(
        &browser.get(&callback).await,
        400,
        "expired or was used already",
    );

    // A made-up state, and none at all.
    let mut anonymous = PageBrowser::new(&server);
    assert_sign_in_page_says(
        &anonymous
            .get("/frontend/api/v1/auth/oauth/idp/callback?code=x&state=made-up")
            .await,
        400,
        "expired or was used already",
    );
    assert_sign_in_page_says(
        &anonymous
            .get("/frontend/api/v1/auth/oauth/idp/callback")
            .await,
        400,
        "expired or was used already",
    );

    // A state older than ten minutes on the server's clock.
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    server.advance_clock(Duration::from_secs(601));
    assert_sign_in_page_says(
        &browser.get(&callback).await,
        400,
        "expired or was used already",
    );
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_provider_error_is_shown_in_words() {
    let provider = TestProvider::start().await;
    provider.decline();
    let server = server_with(&provider).await;
    let mut browser = PageBrowser::new(&server);
    let declined = sign_in_through_provider(&mut browser, &provider).await;
    assert_sign_in_page_says(&declined, 400, "cancelled or refused at the provider");
    assert_eq!(provider.token_requests(), 0);
    provider.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_provider_that_is_down_or_hangs_is_a_503_page_not_a_hang() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-3", "slow@example.com", true);
    let server = server_with(&provider).await;
    // It hangs between the redirect back and the code exchange.
    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(&mut browser, &provider, START).await;
    provider.hang();
    let timed_out = browser.get(&callback).await;
    assert_sign_in_page_says(&timed_out, 503, "cannot be reached right now");
    provider.stop().await;
    server.stop().await;

    // It is down before discovery: the start answers the page too.
    let provider = TestProvider::start().await;
    let server = server_with(&provider).await;
    provider.stop().await;
    let mut browser = PageBrowser::new(&server);
    let down = browser.get(START).await;
    assert_sign_in_page_says(&down, 503, "cannot be reached right now");
    server.stop().await;
}

#[tokio::test]
async fn an_account_with_a_second_factor_continues_at_the_second_step() {
    let provider = TestProvider::start().await;
    provider.sign_in_as("subject-4", "guarded@example.com", true);
    let mut config = provider.browser_config(PROVIDER);
    config.link_by_verified_email = true;
    let server = TestServer::start_on_localhost(move |server_config| {
        server_config.oauth.providers = vec![config];
    })
    .await;
    server
        .add_user("guarded@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("guarded@example.com").await;
    let enrolment = crate::second_factor::enrol(&server, &session).await;
    server.advance_clock(Duration::from_secs(30));

    let mut browser = PageBrowser::new(&server);
    let callback = to_provider_and_back(
        &mut browser,
        &provider,
        &format!("{START}?ret-url=/account"),
    )
    .await;
    let second_step = browser.get(&callback).await;
    assert_eq!(second_step.status, 200, "{}", second_step.text());
    assert!(
        browser.session_token().is_none(),
        "no session before the second step"
    );
    let html = second_step.text();
    let form = html
        .split("<form ")
        .skip(1)
        .map(|form| form.split("</form>").next().unwrap())
        .find(|form| form.contains("name=\"code\""))
        .unwrap_or_else(|| panic!("no code form: {html}"));
    assert!(form.starts_with("method=\"post\" action=\"/sign-in/second-factor\""));
    let mut pairs = crate::page_support::hidden_fields(form);
    let code = crate::second_factor::pyotp_code(&enrolment.secret, server.now());
    pairs.push(("code".to_owned(), code));
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let origin = server.localhost_origin();
    let finished = browser
        .post_from(Some(&origin), "/sign-in/second-factor", &pairs)
        .await;
    assert_eq!(finished.status, 303, "{}", finished.text());
    assert_eq!(finished.header("location"), Some("/account"));
    assert!(browser.session_token().is_some());
    provider.stop().await;
    server.stop().await;
}
