//! The browser harness proves itself against a real server: it drives Chromium through an
//! emailed link, sees console errors and CSP violations when there are some, measures the
//! page at phone width, and leaves no process behind.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::browser_support::{Browser, PHONE_WIDTH};
use crate::mail_support::{token_in, wait_for_mail};
use crate::support::{PASSWORD, TestServer};

const MAIL_WAIT: Duration = Duration::from_secs(20);

/// The path and query of the first `http://` link in `message`, to open on the test's server.
pub fn link_path_in(message: &str) -> String {
    let start = message.find("http://").expect("no link in the message");
    let link: String = message[start..]
        .chars()
        .take_while(|character| !character.is_whitespace())
        .collect();
    let after_scheme = &link["http://".len()..];
    let path_start = after_scheme.find('/').expect("a link without a path");
    after_scheme[path_start..].to_owned()
}

#[tokio::test]
async fn the_browser_opens_an_emailed_verify_link_and_finds_a_clean_page() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let signed_up = server
        .request("POST", "/auth/sign-up")
        .json(&json!({ "email": "smoke@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.text());
    let outbox = server.data_dir.path().join("outbox");
    let mail = &wait_for_mail(&outbox, 1, MAIL_WAIT).await[0];
    let link = format!("{}{}", server.origin(), link_path_in(mail));

    let browser = Browser::start().await;
    browser.goto(&link).await;
    assert!(
        browser.current_url().await.starts_with(&server.origin()),
        "{}",
        browser.current_url().await
    );
    // The page asks before it spends the token: a form that carries it, one submit button.
    let token = token_in(mail);
    let token_field = browser.find(&format!("form input[value='{token}']")).await;
    assert_eq!(
        token_field.attribute("type").await.as_deref(),
        Some("hidden")
    );
    assert_eq!(browser.find_all("form [type=submit]").await.len(), 1);
    assert!(!browser.title().await.is_empty());
    assert!(
        browser
            .cookies()
            .await
            .iter()
            .all(|cookie| cookie.name != "jwt")
    );
    browser.assert_no_console_errors("the verify page").await;
    browser.assert_fits_phone_width("the verify page").await;
    let png = browser.screenshot_png().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    // The PNG's header carries its width: the window really is phone-sized.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, PHONE_WIDTH);
}

#[tokio::test]
async fn the_console_check_sees_failed_loads_and_csp_violations() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;

    browser
        .goto(&format!("{}/no-such-page-at-all", server.origin()))
        .await;
    let failed_load = browser.take_console_log().await;
    assert!(
        failed_load
            .iter()
            .any(|entry| entry.level == "SEVERE" && entry.message.contains("404")),
        "{failed_load:#?}"
    );

    // A page under the server's CSP that tries to load an image from elsewhere: the browser
    // refuses it and says so in the console, where the check must see it.
    browser
        .goto(&format!(
            "{}/frontend/api/v1/auth/verify?token=AAAA",
            server.origin()
        ))
        .await;
    browser.take_console_log().await;
    browser
        .execute(
            "const image = document.createElement('img'); \
             image.src = 'http://elsewhere.invalid/tracker.png'; \
             document.body.appendChild(image);",
            json!([]),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let violation = loop {
        let log = browser.take_console_log().await;
        if let Some(entry) = log
            .into_iter()
            .find(|entry| entry.message.contains("Content Security Policy"))
        {
            break entry;
        }
        assert!(Instant::now() < deadline, "no CSP violation was logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(violation.level, "SEVERE", "{violation:?}");
}

#[tokio::test]
async fn a_dropped_browser_leaves_no_process_behind() {
    let browser = Browser::start().await;
    let process_ids = browser.process_ids();
    assert!(process_ids.iter().all(|id| *id != 0), "{process_ids:?}");
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_ids.iter().any(|id| is_running(*id)) {
        assert!(
            Instant::now() < deadline,
            "still running after drop: {process_ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `id` exists and is not a zombie waiting to be reaped.
fn is_running(id: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{id}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
