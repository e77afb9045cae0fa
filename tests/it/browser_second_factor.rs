//! The second factors through the hosted pages in a real headless Chromium: TOTP turned on
//! from the account page (the key read from the enrolment page, a first code from pyotp, the
//! recovery codes shown), then a password sign-in that asks for the second step, refuses a
//! wrong code with the focus on its field, lands on `/account` with a right one, and takes
//! a recovery code once. Every new page fits 360 px and logs no console error or CSP
//! violation; the README's screenshots of them are saved here.

use std::time::{Duration, Instant};

use latchkey::model::{Role, Status};

use crate::browser_pages::check_page;
use crate::browser_support::Browser;
use crate::second_factor::pyotp_code;
use crate::support::{PASSWORD, TestServer};

const EMAIL: &str = "grace@example.com";

/// How long a page's own navigation (after a script's ceremony) may take.
const NAVIGATION_WAIT: Duration = Duration::from_secs(20);

/// Waits until the browser is at `url` (a script navigates there).
pub async fn wait_for_url(browser: &Browser, url: &str) {
    let deadline = Instant::now() + NAVIGATION_WAIT;
    loop {
        let current = browser.current_url().await;
        if current == url {
            return;
        }
        assert!(Instant::now() < deadline, "still at {current}, not {url}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs in on the sign-in page with the password.
pub async fn sign_in_with_password(browser: &Browser, server: &TestServer) {
    browser
        .goto(&format!("{}/sign-in", server.localhost_origin()))
        .await;
    browser
        .fill("form[action='/sign-in'] input[name=email]", EMAIL)
        .await;
    browser
        .fill("form[action='/sign-in'] input[name=password]", PASSWORD)
        .await;
    browser
        .click_and_wait_for_page("form[action='/sign-in'] [type=submit]")
        .await;
}

pub async fn sign_out(browser: &Browser) {
    browser
        .click_and_wait_for_page("form[action='/sign-out'] [type=submit]")
        .await;
    assert!(browser.cookie("jwt").await.is_none());
}

/// The second-factor page answered a right password: no session yet.
async fn assert_at_the_second_step(browser: &Browser) {
    assert!(
        browser.page_source().await.contains("Finish signing in"),
        "{}",
        browser.page_source().await
    );
    assert!(browser.cookie("jwt").await.is_none());
}

#[tokio::test]
async fn totp_from_the_account_page_then_the_second_step_with_a_code_and_a_recovery_code() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let browser = Browser::start().await;
    let account = format!("{}/account", server.localhost_origin());
    sign_in_with_password(&browser, &server).await;
    assert_eq!(browser.current_url().await, account);
    check_page(&browser, "account-second-factors").await;

    browser.fill("#totp-enable-password", PASSWORD).await;
    browser
        .click_and_wait_for_page("form[action='/account/totp/enable'] [type=submit]")
        .await;
    assert!(
        browser
            .find("svg.qr-code")
            .await
            .attribute("role")
            .await
            .is_some()
    );
    check_page(&browser, "totp-enrolment").await;
    let secret = browser.text_of(".secret-key").await.replace(' ', "");
    assert_eq!(secret.len(), 32);
    browser
        .fill("input[name=code]", &pyotp_code(&secret, server.now()))
        .await;
    browser
        .click_and_wait_for_page("form[action='/account/totp/confirm'] [type=submit]")
        .await;
    let mut recovery_codes = Vec::new();
    for code in browser.find_all("ol.recovery-codes code").await {
        recovery_codes.push(code.text().await);
    }
    assert_eq!(recovery_codes.len(), 10);
    browser.assert_fits_phone_width("the recovery codes").await;
    browser.assert_no_console_errors("the recovery codes").await;
    browser
        .click_and_wait_for_page("a[href='/account#second-factors']")
        .await;
    assert!(
        browser
            .page_source()
            .await
            .contains("10 of your recovery codes are left")
    );
    sign_out(&browser).await;

    // The password alone now leads to the second step.
    server.advance_clock(Duration::from_secs(30));
    sign_in_with_password(&browser, &server).await;
    assert_at_the_second_step(&browser).await;
    assert!(browser.find("#code").await.is_focused().await);
    check_page(&browser, "second-factor").await;
    let right = pyotp_code(&secret, server.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    browser.fill("#code", wrong).await;
    browser
        .click_and_wait_for_page("form:has(#code) [type=submit]")
        .await;
    assert_at_the_second_step(&browser).await;
    assert!(
        browser
            .text_of("#problem")
            .await
            .contains("That code is not right")
    );
    assert!(browser.find("#code").await.is_focused().await);
    browser
        .assert_no_console_errors("the second-factor page after a wrong code")
        .await;
    browser.fill("#code", &right).await;
    browser
        .click_and_wait_for_page("form:has(#code) [type=submit]")
        .await;
    assert_eq!(browser.current_url().await, account);
    let session = browser.cookie("jwt").await.unwrap();
    assert_eq!(server.current_user_status(&session.value).await, 200);
    sign_out(&browser).await;

    // A recovery code finishes another sign-in, once.
    sign_in_with_password(&browser, &server).await;
    assert_at_the_second_step(&browser).await;
    browser.fill("#recovery-code", &recovery_codes[0]).await;
    browser
        .click_and_wait_for_page("form:has(#recovery-code) [type=submit]")
        .await;
    assert_eq!(browser.current_url().await, account);
    assert!(
        browser
            .page_source()
            .await
            .contains("9 of your recovery codes are left")
    );
    sign_out(&browser).await;
    sign_in_with_password(&browser, &server).await;
    browser.fill("#recovery-code", &recovery_codes[0]).await;
    browser
        .click_and_wait_for_page("form:has(#recovery-code) [type=submit]")
        .await;
    assert_at_the_second_step(&browser).await;
    assert!(browser.find("#recovery-code").await.is_focused().await);
    browser
        .assert_no_console_errors("the second-factor page after a used recovery code")
        .await;
}
