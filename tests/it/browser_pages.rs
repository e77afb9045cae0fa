//! The hosted pages in a real headless Chromium: sign-in with a return URL, the same page for
//! a wrong password and an unknown address, sign-up through the emailed verification link,
//! the password reset, every action of the account page with its effect checked through the
//! API; every page fits 360 px without sideways scrolling and logs no console
//! error or CSP violation, and each one's screenshot can be saved for the README.

use std::net::SocketAddr;
use std::time::Duration;

use latchkey::model::{Role, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser_harness::link_path_in;
use crate::browser_support::Browser;
use crate::mail_support::wait_for_mail;
use crate::support::{PASSWORD, SignedIn, TestServer};

const MAIL_WAIT: Duration = Duration::from_secs(20);
const NEW_PASSWORD: &str = "a brand new passphrase";

/// What every page must pass wherever a test reaches it: it fits a 360 px screen without
/// horizontal scrolling, has a title and a `lang`, and the browser logged no error (CSP
/// violations included). The screenshot is taken at that width, and the console read last,
/// so that what the page loads after its `load` event (a favicon) has had its chance to fail.
pub async fn check_page(browser: &Browser, name: &str) {
    assert_fits_and_names_itself(browser, name).await;
    browser.save_screenshot(name).await;
    browser.assert_no_console_errors(name).await;
}

/// `check_page` for a page the README does not show: no screenshot.
async fn check_page_without_screenshot(browser: &Browser, name: &str) {
    assert_fits_and_names_itself(browser, name).await;
    browser.assert_no_console_errors(name).await;
}

async fn assert_fits_and_names_itself(browser: &Browser, name: &str) {
    browser.assert_fits_phone_width(name).await;
    assert!(!browser.title().await.is_empty(), "{name} has no title");
    assert!(
        browser
            .find("html")
            .await
            .attribute("lang")
            .await
            .is_some_and(|language| !language.is_empty()),
        "{name} has no lang"
    );
}

/// Every form of the page has exactly one submit button, and every field the page shows has
/// a label (a field kept for password managers must also be kept out of sight).
async fn assert_forms_are_well_formed(browser: &Browser, name: &str) {
    let forms = browser.find_all("form").await;
    assert!(!forms.is_empty(), "{name} has no form");
    let problems = browser
        .execute(
            "const problems = [];\
             for (const form of document.forms) {\
               const submits = form.querySelectorAll('button:not([type]), [type=submit]');\
               if (submits.length !== 1) problems.push(form.action + ': ' + submits.length + ' submit buttons');\
               for (const input of form.querySelectorAll('input, select, textarea')) {\
                 const shown = input.getClientRects().length > 0;\
                 if (shown && input.labels.length === 0) problems.push(form.action + ': a shown ' + (input.name || input.type) + ' field has no label');\
               }\
             }\
             return problems;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(problems, serde_json::json!([]), "{name}");
}

/// Fills the sign-in form and sends it.
async fn sign_in_with(browser: &Browser, email: &str, password: &str) {
    browser
        .fill("form[action='/sign-in'] input[name=email]", email)
        .await;
    browser
        .fill("form[action='/sign-in'] input[name=password]", password)
        .await;
    browser
        .click_and_wait_for_page("form[action='/sign-in'] [type=submit]")
        .await;
}

/// A stand-in for the operator's own application on another loopback origin: every request
/// gets a small HTML page (no favicon to fail), so a redirect there lands somewhere real.
async fn start_application() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0_u8; 2048];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let body = "<!doctype html><html lang=\"en\"><head><title>The app</title>\
                            <link rel=\"icon\" href=\"data:,\"></head>\
                            <body><h1>The application</h1></body></html>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://{address}"), task)
}

#[tokio::test]
async fn sign_in_follows_the_return_url_with_a_session_the_api_accepts() {
    let (application_origin, application) = start_application().await;
    let allowed_origin = application_origin.parse().unwrap();
    let server = TestServer::start_with(|config| {
        config.auth.allowed_return_origins = vec![allowed_origin];
    })
    .await;
    server
        .add_user("reader@example.com", Role::User, Status::Active)
        .await;
    let return_url = format!("{application_origin}/after/sign-in?from=pages");
    let browser = Browser::start().await;

    browser
        .goto(&format!(
            "{}/sign-in?ret-url={}",
            server.origin(),
            form_urlencoded::byte_serialize(return_url.as_bytes()).collect::<String>()
        ))
        .await;
    check_page(&browser, "sign-in").await;
    assert_forms_are_well_formed(&browser, "sign-in").await;
    // And as most visitors see it, on a desktop screen.
    browser.set_window_size(1024, 640).await;
    let (scroll_width, client_width) = browser.scroll_and_client_width().await;
    assert!(
        scroll_width <= client_width,
        "{scroll_width} > {client_width}"
    );
    browser.save_screenshot("sign-in-desktop").await;
    let email_field = browser.find("input[name=email]").await;
    assert_eq!(
        email_field.attribute("autocomplete").await.as_deref(),
        Some("username")
    );
    assert!(
        email_field.is_focused().await,
        "the email field has no focus"
    );
    assert_eq!(
        browser
            .find("input[name=password]")
            .await
            .attribute("autocomplete")
            .await
            .as_deref(),
        Some("current-password")
    );
    assert!(browser.cookie("jwt").await.is_none());

    sign_in_with(&browser, "reader@example.com", PASSWORD).await;
    assert_eq!(browser.current_url().await, return_url);
    assert_eq!(browser.text_of("h1").await, "The application");
    browser
        .assert_no_console_errors("the return after sign-in")
        .await;
    let session = browser
        .cookie("jwt")
        .await
        .expect("no jwt cookie after sign-in");
    assert!(session.http_only, "the jwt cookie is readable by scripts");
    assert_eq!(server.current_user_status(&session.value).await, 200);

    // A visitor already signed in is sent on at once, here to the account page.
    browser.goto(&format!("{}/sign-in", server.origin())).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.origin())
    );
    application.abort();
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_address_get_the_same_page() {
    let server = TestServer::start().await;
    server
        .add_user("known@example.com", Role::User, Status::Active)
        .await;
    let browser = Browser::start().await;
    let sign_in_page = format!("{}/sign-in", server.origin());

    browser.goto(&sign_in_page).await;
    sign_in_with(&browser, "known@example.com", "not the password").await;
    let wrong_password = rendered_problem_page(&browser, "known@example.com").await;
    check_page(&browser, "sign-in-refused").await;

    browser.goto(&sign_in_page).await;
    sign_in_with(&browser, "nobody@example.com", "not the password").await;
    let unknown_address = rendered_problem_page(&browser, "nobody@example.com").await;
    browser.assert_no_console_errors("sign-in refused").await;

    assert_eq!(wrong_password, unknown_address);
    assert!(browser.cookie("jwt").await.is_none());
    assert!(
        wrong_password
            .text
            .contains(&browser.text_of("[role=alert]").await),
        "the problem is not in the main content"
    );
}

/// What a refused sign-in shows: the main content's text, its markup with the address typed
/// and the form's token masked, and which field has the focus.
#[derive(Debug, PartialEq)]
struct ProblemPage {
    url: String,
    text: String,
    markup: String,
    focused_field: String,
}

async fn rendered_problem_page(browser: &Browser, typed_email: &str) -> ProblemPage {
    let problem = browser.find("[role=alert]").await;
    assert!(!problem.text().await.trim().is_empty(), "an empty problem");
    let main = browser.find("main").await;
    let csrf_token = browser
        .find("input[name=csrf-token]")
        .await
        .attribute("value")
        .await
        .unwrap_or_default();
    let markup = main
        .property("innerHTML")
        .await
        .as_str()
        .unwrap()
        .replace(typed_email, "EMAIL")
        .replace(&csrf_token, "CSRF");
    let focused_field = browser
        .execute(
            "return document.activeElement ? document.activeElement.name || '' : '';",
            serde_json::json!([]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !focused_field.is_empty(),
        "no field has the focus after a problem"
    );
    ProblemPage {
        url: browser.current_url().await,
        text: main.text().await.replace(typed_email, "EMAIL"),
        markup,
        focused_field,
    }
}

#[tokio::test]
async fn sign_up_verifies_through_the_emailed_link_and_signs_in() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let browser = Browser::start().await;

    browser.goto(&format!("{}/sign-up", server.origin())).await;
    check_page(&browser, "sign-up").await;
    assert_forms_are_well_formed(&browser, "sign-up").await;
    browser
        .fill("input[name=email]", "newcomer@example.com")
        .await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser.fill("input[name=first-name]", "Ada").await;
    browser.fill("input[name=last-name]", "Newcomer").await;
    browser.click_and_wait_for_page("form [type=submit]").await;
    check_page(&browser, "sign-up-sent").await;
    assert!(
        browser
            .text_of("main")
            .await
            .contains("newcomer@example.com"),
        "{}",
        browser.text_of("main").await
    );

    let outbox = server.data_dir.path().join("outbox");
    let mail = &wait_for_mail(&outbox, 1, MAIL_WAIT).await[0];
    let link_path = link_path_in(mail);
    assert!(link_path.starts_with("/verify?token="), "{link_path}");
    browser
        .goto(&format!("{}{link_path}", server.origin()))
        .await;
    check_page(&browser, "verify").await;
    assert_forms_are_well_formed(&browser, "verify").await;
    // Opening the link spends nothing: a mail scanner's fetch must not verify.
    let pending = server
        .app
        .store
        .user_by_normalized_email("newcomer@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.status, Status::Pending);

    browser
        .click_and_wait_for_page("form[action='/verify'] [type=submit]")
        .await;
    check_page(&browser, "verify-done").await;
    let verified = server
        .app
        .store
        .user_by_normalized_email("newcomer@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.status, Status::Active);
    assert_eq!(verified.first_name.as_deref(), Some("Ada"));

    browser
        .click_and_wait_for_page("main a[href='/sign-in']")
        .await;
    sign_in_with(&browser, "newcomer@example.com", PASSWORD).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.origin())
    );
    assert!(
        browser
            .text_of("main")
            .await
            .contains("newcomer@example.com"),
        "{}",
        browser.text_of("main").await
    );
    browser.assert_no_console_errors("the account page").await;
    let session = browser.cookie("jwt").await.expect("no jwt cookie");
    assert_eq!(server.current_user_status(&session.value).await, 200);

    // Signing out ends the session itself, not only the cookie.
    browser
        .click_and_wait_for_page("form[action='/sign-out'] [type=submit]")
        .await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/sign-in", server.origin())
    );
    assert!(browser.cookie("jwt").await.is_none());
    assert_eq!(server.current_user_status(&session.value).await, 401);
    browser.assert_no_console_errors("signed out").await;
}

#[tokio::test]
async fn a_password_reset_through_the_emailed_link_replaces_the_password() {
    let server = TestServer::start().await;
    server
        .add_user("forgetful@example.com", Role::User, Status::Active)
        .await;
    let earlier_session = server.sign_in("forgetful@example.com").await;
    let browser = Browser::start().await;

    browser.goto(&format!("{}/sign-in", server.origin())).await;
    browser
        .click_and_wait_for_page("a[href='/password-reset']")
        .await;
    check_page(&browser, "password-reset").await;
    assert_forms_are_well_formed(&browser, "password-reset").await;
    browser
        .fill("input[name=email]", "forgetful@example.com")
        .await;
    browser.click_and_wait_for_page("form [type=submit]").await;
    check_page(&browser, "password-reset-sent").await;

    let outbox = server.data_dir.path().join("outbox");
    let mail = &wait_for_mail(&outbox, 1, MAIL_WAIT).await[0];
    let link_path = link_path_in(mail);
    assert!(
        link_path.starts_with("/password-reset/confirm?token="),
        "{link_path}"
    );
    browser
        .goto(&format!("{}{link_path}", server.origin()))
        .await;
    check_page(&browser, "password-reset-confirm").await;
    assert_forms_are_well_formed(&browser, "password-reset-confirm").await;
    assert_eq!(
        browser
            .find("input[name=new-password]")
            .await
            .attribute("autocomplete")
            .await
            .as_deref(),
        Some("new-password")
    );
    browser.fill("input[name=new-password]", NEW_PASSWORD).await;
    browser.click_and_wait_for_page("form [type=submit]").await;
    check_page(&browser, "password-reset-done").await;

    // Through the API: the old session is over, the old password refused, the new one works.
    assert_eq!(
        server
            .current_user_status(&earlier_session.signed_token)
            .await,
        401
    );
    let with_old = server
        .sign_in_with_password("forgetful@example.com", PASSWORD)
        .await;
    assert_eq!(with_old.status, 401, "{}", with_old.text());
    let with_new = server
        .sign_in_with_password("forgetful@example.com", NEW_PASSWORD)
        .await;
    assert_eq!(with_new.status, 200, "{}", with_new.text());

    // And in the browser, the new password signs in.
    browser.goto(&format!("{}/sign-in", server.origin())).await;
    sign_in_with(&browser, "forgetful@example.com", NEW_PASSWORD).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.origin())
    );
    browser.assert_fits_phone_width("the account page").await;
    browser.assert_no_console_errors("the account page").await;
}

/// The browser's session credential, as the API takes it.
async fn browser_session(browser: &Browser) -> String {
    browser.cookie("jwt").await.expect("no jwt cookie").value
}

/// Checks through the API that the browser's own session still works.
async fn assert_browser_still_signed_in(server: &TestServer, browser: &Browser) {
    assert_eq!(
        server
            .current_user_status(&browser_session(browser).await)
            .await,
        200
    );
}

/// Checks through the API that a session made elsewhere, and its API token, are over.
async fn assert_signed_out(server: &TestServer, elsewhere: &SignedIn) {
    assert_eq!(
        server.current_user_status(&elsewhere.signed_token).await,
        401
    );
    assert_eq!(server.current_user_status(&elsewhere.api_token).await, 401);
}

/// Sends the form whose `action` is `action` (the first, when there are several) and checks
/// the page it leads to.
async fn send_account_form(browser: &Browser, action: &str, name: &str) {
    browser
        .click_and_wait_for_page(&format!("form[action='{action}'] [type=submit]"))
        .await;
    browser.assert_fits_phone_width(name).await;
    browser.assert_no_console_errors(name).await;
}

#[tokio::test]
async fn every_account_action_takes_effect_through_the_api() {
    let server = TestServer::start().await;
    server
        .add_user("owner@example.com", Role::User, Status::Active)
        .await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/account", server.origin())).await;
    let sent_to = browser.current_url().await;
    assert!(
        sent_to.contains("/sign-in?ret-url=%2Faccount")
            || sent_to.contains("/sign-in?ret-url=/account"),
        "{sent_to}"
    );
    sign_in_with(&browser, "owner@example.com", PASSWORD).await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/account", server.origin())
    );
    assert_forms_are_well_formed(&browser, "account").await;

    // The profile.
    browser
        .fill(
            "form[action='/account/profile'] input[name=first-name]",
            "Grace",
        )
        .await;
    browser
        .fill(
            "form[action='/account/profile'] input[name=last-name]",
            "Owner",
        )
        .await;
    send_account_form(&browser, "/account/profile", "profile saved").await;
    let owner = server
        .request("GET", "/user/current")
        .bearer(&browser_session(&browser).await)
        .send()
        .await;
    assert_eq!(owner.status, 200, "{}", owner.text());
    assert_eq!(owner.json["first-name"], "Grace", "{}", owner.text());
    assert_eq!(owner.json["last-name"], "Owner", "{}", owner.text());

    // A new API token: shown once, working, then deleted.
    let lifetimes = browser.find_all("select[name=ttl] option").await;
    assert!(!lifetimes.is_empty(), "no lifetime to choose");
    lifetimes.last().unwrap().click().await;
    for permission in browser
        .find_all("form[action='/account/api-tokens/create'] input[name=permissions]")
        .await
    {
        if permission.property("checked").await != serde_json::Value::Bool(true) {
            permission.click().await;
        }
    }
    browser
        .click_and_wait_for_page("form[action='/account/api-tokens/create'] [type=submit]")
        .await;
    check_page(&browser, "account-api-token").await;
    let full_token = browser.text_of("code.new-token").await;
    assert_eq!(full_token.len(), 64, "{full_token}");
    assert_eq!(server.current_user_status(&full_token).await, 200);
    browser.goto(&format!("{}/account", server.origin())).await;
    assert!(
        !browser.page_source().await.contains(&full_token),
        "the account page shows the whole token again"
    );
    let listed = server
        .request("GET", "/auth/api-token")
        .bearer(&browser_session(&browser).await)
        .send()
        .await;
    assert_eq!(
        listed.json["api-tokens"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text()
    );
    send_account_form(&browser, "/account/api-tokens/delete", "token deleted").await;
    assert_eq!(server.current_user_status(&full_token).await, 401);

    // One other session ended by its own button, then two by "end all others".
    let elsewhere = server.sign_in("owner@example.com").await;
    browser.goto(&format!("{}/account", server.origin())).await;
    assert_eq!(
        browser
            .find_all("form[action='/account/sessions/end']")
            .await
            .len(),
        1,
        "the current session has an end button, or the other has none"
    );
    send_account_form(&browser, "/account/sessions/end", "session ended").await;
    assert_eq!(
        server.current_user_status(&elsewhere.signed_token).await,
        401
    );
    assert_browser_still_signed_in(&server, &browser).await;
    let phone = server.sign_in("owner@example.com").await;
    let laptop = server.sign_in("owner@example.com").await;
    browser.goto(&format!("{}/account", server.origin())).await;
    check_page(&browser, "account").await;
    send_account_form(
        &browser,
        "/account/sessions/end-others",
        "other sessions ended",
    )
    .await;
    for other in [&phone, &laptop] {
        assert_signed_out(&server, other).await;
    }
    assert_browser_still_signed_in(&server, &browser).await;

    // A password change that signs out everywhere else keeps this browser signed in.
    let tablet = server.sign_in("owner@example.com").await;
    browser
        .fill(
            "form[action='/account/password'] input[name=old-password]",
            PASSWORD,
        )
        .await;
    browser
        .fill(
            "form[action='/account/password'] input[name=new-password]",
            NEW_PASSWORD,
        )
        .await;
    let sign_out_elsewhere = browser.find("input[name=logout-all]").await;
    if sign_out_elsewhere.property("checked").await != serde_json::Value::Bool(true) {
        sign_out_elsewhere.click().await;
    }
    send_account_form(&browser, "/account/password", "password changed").await;
    assert_signed_out(&server, &tablet).await;
    assert_browser_still_signed_in(&server, &browser).await;
    let with_new = server
        .sign_in_with_password("owner@example.com", NEW_PASSWORD)
        .await;
    assert_eq!(with_new.status, 200, "{}", with_new.text());
}

#[tokio::test]
async fn the_second_step_and_the_error_pages_fit_a_phone_and_log_no_errors() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;

    browser
        .goto(&format!("{}/sign-in/second-factor", server.origin()))
        .await;
    check_page_without_screenshot(&browser, "the second-factor page").await;

    // Sign-up is closed by default: a page that says so, not a bare status.
    browser.goto(&format!("{}/sign-up", server.origin())).await;
    check_page_without_screenshot(&browser, "the closed sign-up page").await;
    assert!(browser.try_find("form[action='/sign-up']").await.is_none());

    // A verification link whose token is no good: the confirm button leads to an error page
    // worded for people, with a way back.
    browser
        .goto(&format!("{}/verify?token=no-such-token", server.origin()))
        .await;
    browser
        .click_and_wait_for_page("form[action='/verify'] [type=submit]")
        .await;
    check_page_without_screenshot(&browser, "the failed verification").await;
    assert!(
        !browser.text_of("[role=alert]").await.trim().is_empty(),
        "the failure is not explained"
    );
    browser.find("main a[href='/sign-in']").await;
}
