//! The hosted pages' passkey side in a real headless Chromium, on a server whose public URL
//! is `http://localhost:PORT` (passkeys need a domain for relying party id and a secure
//! context): the passkey script runs under the pages' policy and shows its button, and a
//! same-origin JSON request from a page, authenticated by the `jwt` cookie as the script's
//! are, passes the API's origin rule for cookies.

use std::time::{Duration, Instant};

use latchkey::model::{Role, Status};
use serde_json::json;

use crate::browser_support::{Browser, ConsoleEntry};
use crate::support::{PASSWORD, TestServer, page_request_to};

/// How long the page's own requests get to show in the console.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);

/// Whether the passkey API answers: the passkey endpoints and this script land separately
/// (issue #19). Until they are merged, the sign-in page's autofill request is answered 404.
async fn passkey_api_is_served(server: &TestServer) -> bool {
    server
        .request("POST", "/auth/passkey/sign-in/start")
        .json(&json!({}))
        .send()
        .await
        .status
        != 404
}

/// Asserts the browser logged no error and no policy violation on the sign-in page. While
/// the passkey API is not served, one error is expected and awaited: the 404 of the autofill
/// request that the script starts on load, which shows that it started one.
async fn assert_clean_console_on_the_sign_in_page(browser: &Browser, server: &TestServer) {
    if passkey_api_is_served(server).await {
        browser
            .assert_no_console_errors("the sign-in page with passkeys")
            .await;
        return;
    }
    let autofill_start_missing = format!(
        "{}/frontend/api/v1/auth/passkey/sign-in/start - Failed to load resource: the server responded with a status of 404",
        server.localhost_origin()
    );
    let is_missing_start =
        |entry: &ConsoleEntry| entry.message.starts_with(&autofill_start_missing);
    let deadline = Instant::now() + CONSOLE_WAIT;
    let mut entries = Vec::new();
    while !entries.iter().any(is_missing_start) {
        assert!(
            Instant::now() < deadline,
            "the passkey script started no autofill request: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        entries.extend(browser.take_console_log().await);
    }
    let problems: Vec<&ConsoleEntry> = entries
        .iter()
        .filter(|entry| {
            entry.level == "SEVERE" || entry.message.contains("Content Security Policy")
        })
        .filter(|entry| !is_missing_start(entry))
        .collect();
    assert!(
        problems.is_empty(),
        "the sign-in page logged errors: {problems:#?}"
    );
}

#[tokio::test]
async fn the_sign_in_page_runs_the_passkey_script_under_its_policy() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    let browser = Browser::start().await;
    let sign_in = format!(
        "{}/sign-in?ret-url=%2Faccount%3Ftab%3D1",
        server.localhost_origin()
    );
    browser.goto(&sign_in).await;
    assert_eq!(browser.current_url().await, sign_in);

    let script = browser.find("head script").await;
    assert!(
        script
            .attribute("src")
            .await
            .is_some_and(|source| source.starts_with("/assets/passkey.js?v=")),
    );
    assert!(script.attribute("defer").await.is_some());
    // The page draws the passkey controls hidden: shown, they prove the script ran.
    let controls = browser.find("[data-passkey-sign-in]").await;
    assert_eq!(controls.property("hidden").await, json!(false));
    assert_eq!(
        controls.attribute("data-return-url").await.as_deref(),
        Some("/account?tab=1")
    );
    let button = browser
        .find("[data-passkey-sign-in] [data-passkey-button]")
        .await;
    assert_eq!(button.text().await, "Sign in with a passkey");
    assert_eq!(button.attribute("type").await.as_deref(), Some("button"));
    // Outside the password form, which keeps its one submit button.
    assert!(
        browser
            .try_find("form [data-passkey-button]")
            .await
            .is_none()
    );
    assert_eq!(browser.find_all("form [type=submit]").await.len(), 1);
    // The browser's autofill may offer passkeys in the email field.
    assert_eq!(
        browser
            .find("input[name=email]")
            .await
            .attribute("autocomplete")
            .await
            .as_deref(),
        Some("username webauthn")
    );
    // No problem is shown before anything went wrong.
    assert_eq!(
        browser
            .find("[data-passkey-problem]")
            .await
            .property("hidden")
            .await,
        json!(true)
    );
    browser
        .assert_fits_phone_width("the sign-in page with passkeys")
        .await;
    assert_clean_console_on_the_sign_in_page(&browser, &server).await;
}

#[tokio::test]
async fn a_same_origin_json_request_authenticated_by_the_cookie_passes_the_origin_rule() {
    // The pages send `Referrer-Policy: no-referrer`, under which their form posts carry
    // `Origin: null` (the pages' own rule accepts `Sec-Fetch-Site: same-origin` instead);
    // the API's rule for cookies wants the real origin. The passkey script's requests ask
    // for it with the "same-origin" referrer policy.
    let server = TestServer::start_on_localhost(|_| {}).await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let script = page_request_to(server.address, "GET", "/assets/passkey.js")
        .send()
        .await
        .text();
    for option in [
        "credentials: \"same-origin\"",
        "referrerPolicy: \"same-origin\"",
        "\"Content-Type\": \"application/json\"",
    ] {
        assert!(
            script.contains(option),
            "the script no longer sends {option}"
        );
    }
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/sign-in", server.localhost_origin()))
        .await;
    assert_clean_console_on_the_sign_in_page(&browser, &server).await;
    browser
        .fill(
            "form[action='/sign-in'] input[name=email]",
            "ada@example.com",
        )
        .await;
    browser
        .fill("form[action='/sign-in'] input[name=password]", PASSWORD)
        .await;
    browser
        .click_and_wait_for_page("form[action='/sign-in'] [type=submit]")
        .await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.localhost_origin())
    );

    let answer = browser
        .execute(
            "return fetch('/frontend/api/v1/user/current', {\
               method: 'PUT',\
               credentials: 'same-origin',\
               referrerPolicy: 'same-origin',\
               headers: { 'Content-Type': 'application/json', Accept: 'application/json' },\
               body: JSON.stringify({ 'first-name': 'Ada' }),\
             }).then(async (response) => [response.status, await response.text()]);",
            json!([]),
        )
        .await;
    assert_eq!(answer[0], 200, "{answer}");
    let session = browser.cookie("jwt").await.unwrap();
    let current = server
        .request("GET", "/user/current")
        .bearer(&session.value)
        .send()
        .await;
    assert_eq!(current.json["first-name"], "Ada", "{}", current.text());

    // The same request from another origin's page is refused (the cookie is the
    // credential, so the origin rule applies).
    let cross_site = server
        .request("PUT", "/user/current")
        .header("Cookie", &format!("jwt={}", session.value))
        .header("Origin", "http://elsewhere.example")
        .json(&json!({ "first-name": "Mallory" }))
        .send()
        .await;
    cross_site.assert_error(403);
    assert_eq!(cross_site.json["context"]["reason"], "origin");
    browser
        .assert_no_console_errors("the account page after the request")
        .await;
}

/// The passkeys the API lists for the holder of `session`.
async fn passkey_count(server: &TestServer, session: &str) -> usize {
    let listed = server
        .request("GET", "/auth/passkey")
        .bearer(session)
        .send()
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    listed.json["passkeys"].as_array().unwrap().len()
}

/// Issue #19's test: a passkey added from the account page signs in alone from the sign-in
/// page's button, then completes a password sign-in's second step from the second-factor
/// page's button, and is removed from the account page. While the browser lands on the
/// sign-in page the authenticator's user verification fails, so the autofill request that
/// the page starts on load cannot sign in by itself: each sign-in is the button's.
#[tokio::test]
async fn a_passkey_added_on_the_account_page_signs_in_alone_and_as_the_second_step() {
    use crate::browser_second_factor::{sign_in_with_password, sign_out, wait_for_url};
    let server = TestServer::start_on_localhost(|_| {}).await;
    server
        .add_user("grace@example.com", Role::User, Status::Active)
        .await;
    let origin = server.localhost_origin();
    let browser = Browser::start().await;
    sign_in_with_password(&browser, &server).await;
    assert_eq!(browser.current_url().await, format!("{origin}/account"));
    let first_session = browser.cookie("jwt").await.unwrap().value;

    // Added from the account page: name, password, the ceremony with the authenticator.
    let authenticator = browser.add_virtual_authenticator().await;
    browser.fill("[data-passkey-name]", "Grace's laptop").await;
    browser.fill("[data-passkey-password]", PASSWORD).await;
    browser
        .find("[data-passkey-register] [data-passkey-button]")
        .await
        .click()
        .await;
    wait_for_url(
        &browser,
        &format!("{origin}/account?done=passkey-added#passkeys"),
    )
    .await;
    assert!(
        browser.page_source().await.contains("Grace&#39;s laptop")
            || browser.page_source().await.contains("Grace's laptop")
    );
    let credentials = browser.virtual_credentials(&authenticator).await.unwrap();
    assert_eq!(credentials.len(), 1);
    assert!(credentials[0].is_resident);
    assert_eq!(passkey_count(&server, &first_session).await, 1);
    browser
        .assert_no_console_errors("the account page with a passkey")
        .await;

    // Signed out, then in with the passkey alone from the sign-in page's button.
    browser.set_user_verified(&authenticator, false).await;
    sign_out(&browser).await;
    assert_eq!(browser.current_url().await, format!("{origin}/sign-in"));
    browser.find("[data-passkey-sign-in]:not([hidden])").await;
    assert!(browser.cookie("jwt").await.is_none());
    browser.set_user_verified(&authenticator, true).await;
    assert_eq!(
        browser
            .find("input[name=password]")
            .await
            .property("value")
            .await,
        json!("")
    );
    browser
        .find("[data-passkey-sign-in] [data-passkey-button]")
        .await
        .click()
        .await;
    wait_for_url(&browser, &format!("{origin}/account")).await;
    let passkey_session = browser.cookie("jwt").await.unwrap().value;
    assert_eq!(server.current_user_status(&passkey_session).await, 200);
    // Whatever the autofill request logged while verification failed is read away here.
    browser.take_console_log().await;

    // A password sign-in now asks for the second factor, which the passkey completes.
    browser.set_user_verified(&authenticator, false).await;
    sign_out(&browser).await;
    browser.take_console_log().await;
    browser
        .fill(
            "form[action='/sign-in'] input[name=email]",
            "grace@example.com",
        )
        .await;
    browser
        .fill("form[action='/sign-in'] input[name=password]", PASSWORD)
        .await;
    browser
        .click_and_wait_for_page("form[action='/sign-in'] [type=submit]")
        .await;
    assert!(browser.page_source().await.contains("Finish signing in"));
    assert!(browser.cookie("jwt").await.is_none());
    browser.set_user_verified(&authenticator, true).await;
    let button = browser
        .find("[data-passkey-second-factor]:not([hidden]) [data-passkey-button]")
        .await;
    assert_eq!(button.text().await, "Use a passkey");
    browser
        .assert_fits_phone_width("the second-factor page with a passkey")
        .await;
    browser
        .assert_no_console_errors("the second-factor page with a passkey")
        .await;
    button.click().await;
    wait_for_url(&browser, &format!("{origin}/account")).await;
    let second_step_session = browser.cookie("jwt").await.unwrap().value;
    assert_eq!(server.current_user_status(&second_step_session).await, 200);

    // Removed from the account page, with the password asked again: the API lists none.
    browser
        .fill(
            "form[action='/account/passkeys/delete'] input[name=password]",
            PASSWORD,
        )
        .await;
    browser
        .click_and_wait_for_page("form[action='/account/passkeys/delete'] [type=submit]")
        .await;
    assert_eq!(
        browser.current_url().await,
        format!("{origin}/account?done=passkey-removed")
    );
    assert_eq!(passkey_count(&server, &second_step_session).await, 0);
    browser
        .assert_no_console_errors("the account page after removing the passkey")
        .await;
}
