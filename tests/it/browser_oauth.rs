//! "Sign in with <provider>" in headless Chromium against a real OpenID provider: the
//! `oidc-provider` package run with node (`tests/oidc-provider/provider.js`, installed by
//! `scripts/test` with `npm ci`), PKCE required, its client authenticated with
//! `client_secret_basic`, its development login and consent pages driven like a person
//! would. The state's single use, its browser binding and the other refusals are pinned
//! over HTTP in `oauth_browser.rs`, against the hand-made provider.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use latchkey::config::{OAuthProviderConfig, OAuthProviderKind};
use latchkey::model::{Role, Secret, Status};

use crate::browser_support::Browser;
use crate::support::TestServer;

const CLIENT_ID: &str = "latchkey-browser-test";
const CLIENT_SECRET: &str = "latchkey-browser-test-secret";
const PROVIDER: &str = "oidc";

/// The provider's node process, ended when dropped.
struct OidcProvider {
    child: Child,
    issuer: String,
}

impl OidcProvider {
    /// Starts the provider for a client whose callback is `redirect_uri`, signing in an
    /// account with `email`, verified or not.
    fn start(redirect_uri: &str, email: &str, email_verified: bool) -> OidcProvider {
        let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
        assert!(
            directory.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run scripts/test (it runs npm ci in {})",
            directory.display()
        );
        let mut child = Command::new("node")
            .arg("provider.js")
            .args([
                CLIENT_ID,
                CLIENT_SECRET,
                redirect_uri,
                email,
                if email_verified { "true" } else { "false" },
            ])
            .current_dir(&directory)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let issuer = loop {
            let line = lines
                .next()
                .expect("the provider ended before it listened")
                .unwrap();
            if let Some(issuer) = line.strip_prefix("listening ") {
                break issuer.to_owned();
            }
        };
        // What it prints later is read and dropped, so that its writes never fail.
        std::thread::spawn(move || lines.for_each(drop));
        OidcProvider { child, issuer }
    }

    /// How the server under test is configured for it: only the issuer and the client;
    /// every endpoint is discovered.
    fn config(&self) -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: PROVIDER.to_owned(),
            kind: OAuthProviderKind::Oidc,
            issuer: Some(self.issuer.clone()),
            client_id: Some(CLIENT_ID.to_owned()),
            client_secret: Some(Secret::new(CLIENT_SECRET.to_owned())),
            display_name: Some("Example ID".to_owned()),
            link_by_verified_email: true,
            ..OAuthProviderConfig::default()
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server on `localhost` with the provider started for its callback.
async fn server_and_provider(email: &str, email_verified: bool) -> (TestServer, OidcProvider) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let provider = OidcProvider::start(
        &format!("{public_url}/frontend/api/v1/auth/oauth/{PROVIDER}/callback"),
        email,
        email_verified,
    );
    let config = provider.config();
    let server = TestServer::start_on_listener(listener, move |server_config| {
        server_config.server.public_url = Some(public_url.parse().unwrap());
        server_config.oauth.providers = vec![config];
        server_config.oauth.provider_timeout_seconds = 2;
        server_config.signup.open = true;
    })
    .await;
    (server, provider)
}

/// Clicks "Sign in with Example ID" on the sign-in page, and signs in at the provider when
/// it asks (its login, then its consent), as a person would.
async fn sign_in_with_the_provider(
    browser: &Browser,
    server: &TestServer,
    provider: &OidcProvider,
) {
    browser
        .goto(&format!("{}/sign-in", server.localhost_origin()))
        .await;
    let button = browser.find("a.provider-button").await;
    assert_eq!(button.text().await, "Sign in with Example ID");
    browser.click_and_wait_for_page("a.provider-button").await;
    if browser.current_url().await.starts_with(&provider.issuer)
        && browser.try_find("input[name=login]").await.is_some()
    {
        browser.fill("input[name=login]", "ada").await;
        browser.fill("input[name=password]", "any password").await;
        browser.click_and_wait_for_page("button[type=submit]").await;
    }
    if browser.current_url().await.starts_with(&provider.issuer) {
        // The consent page.
        browser.click_and_wait_for_page("button[type=submit]").await;
    }
}

#[tokio::test]
async fn a_person_signs_in_with_a_real_provider_and_the_same_account_signs_in_again() {
    let (server, provider) = server_and_provider("ada@example.com", true).await;
    let browser = Browser::start().await;
    sign_in_with_the_provider(&browser, &server, &provider).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.localhost_origin())
    );
    assert!(browser.page_source().await.contains("ada@example.com"));
    let user = server
        .app
        .store
        .user_by_normalized_email("ada@example.com")
        .await
        .unwrap()
        .expect("the sign-in made the account");
    assert!(user.email_verified, "the provider verified the address");
    assert_eq!(
        server
            .app
            .store
            .identities_of_user(user.id)
            .await
            .unwrap()
            .len(),
        1
    );

    // Signed out, then in again: the provider remembers the person; the same account.
    browser.delete_all_cookies().await;
    sign_in_with_the_provider(&browser, &server, &provider).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.localhost_origin())
    );
    let again = server
        .app
        .store
        .user_by_normalized_email("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, user.id);
    server.stop().await;
}

#[tokio::test]
async fn an_unverified_provider_email_never_reaches_the_existing_account() {
    let (server, provider) = server_and_provider("owner@example.com", false).await;
    let owner = server
        .add_user("owner@example.com", Role::User, Status::Active)
        .await;
    let browser = Browser::start().await;
    sign_in_with_the_provider(&browser, &server, &provider).await;
    assert!(
        browser
            .current_url()
            .await
            .contains("/frontend/api/v1/auth/oauth/oidc/callback"),
        "{}",
        browser.current_url().await
    );
    assert!(
        browser
            .text_of("[role=alert]")
            .await
            .contains("This provider account cannot sign in here."),
        "{}",
        browser.page_source().await
    );
    assert!(browser.cookie("jwt").await.is_none());
    assert!(
        server
            .app
            .store
            .identities_of_user(owner.id)
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn cancelling_at_the_provider_and_a_provider_that_is_down_are_told_in_words() {
    let (server, mut provider) = server_and_provider("cancel@example.com", true).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/sign-in", server.localhost_origin()))
        .await;
    browser.click_and_wait_for_page("a.provider-button").await;
    // The provider's login page: "[ Cancel ]" answers `error=access_denied`.
    browser.click_and_wait_for_page(".login-help a").await;
    assert!(
        browser
            .text_of("[role=alert]")
            .await
            .contains("cancelled or refused at the provider"),
        "{}",
        browser.page_source().await
    );
    assert!(browser.cookie("jwt").await.is_none());
    server.stop().await;

    // A provider that is down before its endpoints were ever discovered: the start draws
    // the sign-in page with the problem, at once.
    provider.stop();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let config = provider.config();
    let server = TestServer::start_on_listener(listener, move |server_config| {
        server_config.server.public_url = Some(public_url.parse().unwrap());
        server_config.oauth.providers = vec![config];
    })
    .await;
    browser
        .goto(&format!("{}/sign-in", server.localhost_origin()))
        .await;
    browser.click_and_wait_for_page("a.provider-button").await;
    assert!(
        browser
            .text_of("[role=alert]")
            .await
            .contains("cannot be reached right now"),
        "{}",
        browser.page_source().await
    );
    server.stop().await;
}
