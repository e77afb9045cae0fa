//! The browser harness proves itself against a real server: it drives Chromium through an
//! emailed link, sees console errors and CSP violations when there are some, measures the
//! page at phone width, makes and uses a passkey with a virtual authenticator, and leaves no
//! process behind.

use std::time::{Duration, Instant};

use base64::Engine;
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

/// `navigator.credentials.create` with fixed options, as a page of `localhost` may ask: a
/// discoverable credential (a passkey) with user verification, for user handle 01020304.
/// Returns the credential's JSON form, or the error's name.
const CREATE_PASSKEY_SCRIPT: &str = "\
    return navigator.credentials.create({ publicKey: {\
      rp: { id: 'localhost', name: 'Latchkey' },\
      user: { id: new Uint8Array([1, 2, 3, 4]), name: 'ada@example.com', displayName: 'Ada' },\
      challenge: crypto.getRandomValues(new Uint8Array(32)),\
      pubKeyCredParams: [{ type: 'public-key', alg: -7 }, { type: 'public-key', alg: -257 }],\
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },\
    } }).then((credential) => credential.toJSON(), (error) => error.name);";

/// A discoverable, user-verified `navigator.credentials.get` (no credential named, as a
/// passwordless sign-in asks). Returns the assertion's JSON form, or the error's name.
const GET_PASSKEY_SCRIPT: &str = "\
    return navigator.credentials.get({ publicKey: {\
      challenge: crypto.getRandomValues(new Uint8Array(32)),\
      rpId: 'localhost',\
      userVerification: 'required',\
    } }).then((credential) => credential.toJSON(), (error) => error.name);";

#[tokio::test]
async fn a_virtual_authenticator_makes_and_uses_a_passkey_on_a_localhost_page() {
    // Passkeys need a secure context and a relying party id that is a domain: the page is
    // loaded as http://localhost:PORT (the public URL), which Chromium reaches on the
    // server's 127.0.0.1 listener.
    let server = TestServer::start_on_localhost(|_| {}).await;
    let browser = Browser::start().await;
    let authenticator = browser.add_virtual_authenticator().await;
    assert!(
        browser
            .virtual_credentials(&authenticator)
            .await
            .unwrap()
            .is_empty()
    );
    let sign_in = format!("{}/sign-in", server.localhost_origin());
    browser.goto(&sign_in).await;
    assert_eq!(browser.current_url().await, sign_in);
    assert_eq!(
        browser
            .execute("return window.isSecureContext;", json!([]))
            .await,
        json!(true)
    );

    let created = browser.execute(CREATE_PASSKEY_SCRIPT, json!([])).await;
    assert!(created.is_object(), "no passkey was made: {created}");
    assert_eq!(created["type"], "public-key");
    assert!(created["response"]["attestationObject"].is_string());
    let credentials = browser.virtual_credentials(&authenticator).await.unwrap();
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    let credential = &credentials[0];
    assert_eq!(credential.credential_id, created["id"].as_str().unwrap());
    assert_eq!(credential.rp_id, "localhost");
    assert!(credential.is_resident, "the passkey is not discoverable");
    assert_eq!(credential.user_handle.as_deref(), Some("AQIDBA"));
    let sign_count_after_creation = credential.sign_count;

    // A passwordless sign-in finds it without being told which, the user verified.
    let asserted = browser.execute(GET_PASSKEY_SCRIPT, json!([])).await;
    assert!(asserted.is_object(), "no assertion: {asserted}");
    assert_eq!(asserted["id"], created["id"]);
    assert_eq!(asserted["response"]["userHandle"], "AQIDBA");
    let authenticator_data = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(asserted["response"]["authenticatorData"].as_str().unwrap())
        .unwrap();
    // Flags (byte 32): user present (0x01) and user verified (0x04).
    assert_eq!(
        authenticator_data[32] & 0x05,
        0x05,
        "{authenticator_data:?}"
    );
    let credentials = browser.virtual_credentials(&authenticator).await.unwrap();
    assert!(credentials[0].sign_count > sign_count_after_creation);

    // When the user check fails, a ceremony that requires it is refused.
    browser.set_user_verified(&authenticator, false).await;
    assert_eq!(
        browser.execute(GET_PASSKEY_SCRIPT, json!([])).await,
        json!("NotAllowedError")
    );

    browser.remove_virtual_authenticator(&authenticator).await;
    assert!(browser.virtual_credentials(&authenticator).await.is_err());
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
