//! The hosted pages over HTTP (API.md section 8): their headers, CSRF refusals, redirects,
//! sign-in with `ret-url`, the flows through the outbox's mail, and `[pages] enabled`.
//! A small cookie-keeping `PageBrowser` (`page_support.rs`) stands in for a real one.

use std::time::Duration;

use latchkey::model::{Role, Status};

use crate::mail_support::{token_in, wait_for_mail};
use crate::page_support::{PageBrowser, attribute, csrf_token, hidden_fields, tags};
use crate::support::{PASSWORD, TestResponse, TestServer, page_request_to};

const MAIL_WAIT: Duration = Duration::from_secs(10);
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'";

/// Whether any attribute is an event handler (`onclick="…"` and the like).
fn has_inline_handler(html: &str) -> bool {
    html.split(" on").skip(1).any(|rest| {
        let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

fn assert_page_headers(response: &TestResponse) {
    assert_eq!(response.header("content-security-policy"), Some(CSP));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

async fn sessions_of(server: &TestServer, email: &str) -> usize {
    let user = server
        .app
        .store
        .user_by_normalized_email(email)
        .await
        .unwrap()
        .unwrap();
    server
        .app
        .store
        .live_sessions_of_user(user.id, server.now())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn every_page_has_the_security_headers_no_inline_code_labels_and_one_submit_button_per_form()
{
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let mut browser = PageBrowser::new(&server);
    for path in [
        "/sign-in",
        "/sign-in/second-factor",
        "/sign-up",
        "/verify?token=abc",
        "/verify",
        "/password-reset",
        "/password-reset/confirm?token=abc",
        "/no-such-page-at-all",
    ] {
        let page = browser.get(path).await;
        let expected_status = if path.starts_with("/no-such") {
            404
        } else {
            200
        };
        assert_eq!(page.status, expected_status, "{path}");
        if expected_status == 404 {
            // Not a page: the API's JSON 404.
            page.assert_error(404);
            continue;
        }
        assert_page_headers(&page);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let html = page.text();
        assert!(
            html.starts_with("<!doctype html>\n<html lang=\"en\">"),
            "{path}"
        );
        assert!(html.contains("<title>"), "{path}");
        assert!(!html.contains("<script"), "{path}: {html}");
        assert!(!html.contains("<style"), "{path}: {html}");
        assert!(!html.contains(" style="), "{path}: {html}");
        assert!(!has_inline_handler(&html), "{path}: {html}");
        for form in html.split("<form ").skip(1) {
            let form = form.split("</form>").next().unwrap();
            assert_eq!(form.matches("<button").count(), 1, "{path}: {form}");
            assert!(form.contains("name=\"csrf-token\""), "{path}: {form}");
            for input in tags(form, "input") {
                if input.contains("type=\"hidden\"") {
                    continue;
                }
                let id = attribute(input, "id").unwrap();
                assert!(
                    html.contains(&format!("<label for=\"{id}\"")),
                    "{path}: no label for {id}"
                );
                assert!(attribute(input, "name").is_some(), "{path}: {input}");
            }
        }
    }
    let stylesheet = browser.get("/assets/latchkey.css").await;
    assert_eq!(stylesheet.status, 200);
    assert_eq!(
        stylesheet.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        stylesheet.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(stylesheet.text().contains("--accent"));
    // GET where only POST is answered: 405 with Allow, drawn as a page.
    let wrong_method = browser.get("/sign-out").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert_page_headers(&wrong_method);
}

#[tokio::test]
async fn head_answers_like_get_without_a_body_on_every_page_that_answers_get() {
    // Method confusion: HEAD on a page was 405, though HTTP asks every server to answer
    // HEAD wherever it answers GET (monitors check /sign-in that way). It must act on
    // nothing a POST would, and a form-only page still refuses it.
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    server
        .add_user("head@example.com", Role::User, Status::Active)
        .await;
    for path in [
        "/sign-in",
        "/sign-up",
        "/password-reset",
        "/assets/latchkey.css",
    ] {
        let get = page_request_to(server.address, "GET", path).send().await;
        let head = page_request_to(server.address, "HEAD", path).send().await;
        assert_eq!(head.status, 200, "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        assert_eq!(
            head.header("content-security-policy"),
            get.header("content-security-policy"),
            "{path}"
        );
    }
    let anonymous_account = page_request_to(server.address, "HEAD", "/account")
        .send()
        .await;
    assert_eq!(anonymous_account.status, 303);
    assert_eq!(
        anonymous_account.header("location"),
        Some("/sign-in?ret-url=/account")
    );
    let mut browser = PageBrowser::new(&server);
    let signed_in = browser
        .submit(
            "/sign-in",
            &[("email", "head@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let head_out = browser.request("HEAD", "/sign-out").send().await;
    assert_eq!(head_out.status, 405);
    assert_eq!(head_out.header("allow"), Some("POST"));
    assert_eq!(sessions_of(&server, "head@example.com").await, 1);
    let put = browser.request("PUT", "/sign-in").send().await;
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST"));
    assert_page_headers(&put);
}

#[tokio::test]
async fn forms_use_the_api_field_names_with_autocomplete_and_focus_the_first_field() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let mut browser = PageBrowser::new(&server);
    let sign_in = browser.get("/sign-in").await.text();
    let inputs = tags(&sign_in, "input");
    let by_name = |inputs: &[&str], name: &str| -> String {
        (*inputs
            .iter()
            .find(|tag| attribute(tag, "name").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {name}")))
        .to_owned()
    };
    assert_eq!(
        attribute(&by_name(&inputs, "email"), "autocomplete").as_deref(),
        Some("username")
    );
    assert!(by_name(&inputs, "email").contains("autofocus"));
    assert_eq!(
        attribute(&by_name(&inputs, "password"), "autocomplete").as_deref(),
        Some("current-password")
    );
    assert!(by_name(&inputs, "long-term-token").contains("type=\"checkbox\""));
    let sign_up = browser.get("/sign-up").await.text();
    let inputs = tags(&sign_up, "input");
    assert_eq!(
        attribute(&by_name(&inputs, "password"), "autocomplete").as_deref(),
        Some("new-password")
    );
    by_name(&inputs, "first-name");
    by_name(&inputs, "last-name");
    let confirm = browser
        .get("/password-reset/confirm?token=abc")
        .await
        .text();
    let inputs = tags(&confirm, "input");
    assert_eq!(
        attribute(&by_name(&inputs, "new-password"), "autocomplete").as_deref(),
        Some("new-password")
    );
    assert_eq!(
        attribute(&by_name(&inputs, "password-update-token"), "value").as_deref(),
        Some("abc")
    );
}

#[tokio::test]
async fn a_page_post_without_its_csrf_token_or_from_a_foreign_origin_is_refused_and_signs_no_one_in()
 {
    let server = TestServer::start().await;
    server
        .add_user("csrf@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    let html = browser.get("/sign-in").await.text();
    let token = csrf_token(&html);
    let credentials = [("email", "csrf@example.com"), ("password", PASSWORD)];

    // No token.
    let missing = browser.post("/sign-in", &credentials).await;
    assert_eq!(missing.status, 403, "{}", missing.text());
    assert!(missing.text().contains("This form has expired"));
    assert_page_headers(&missing);
    // A wrong token.
    let wrong_token = "0".repeat(64);
    let mut with_wrong = credentials.to_vec();
    with_wrong.push(("csrf-token", &wrong_token));
    assert_eq!(browser.post("/sign-in", &with_wrong).await.status, 403);
    // A token that is not hex at all.
    let mut with_garbage = credentials.to_vec();
    with_garbage.push(("csrf-token", "not a token"));
    assert_eq!(browser.post("/sign-in", &with_garbage).await.status, 403);
    // The right token from a browser without the cookie it was made for.
    let mut with_token = credentials.to_vec();
    with_token.push(("csrf-token", &token));
    let other_browser = PageBrowser::new(&server);
    let cookieless = other_browser
        .request("POST", "/sign-in")
        .header("Origin", &server.origin())
        .form(&with_token)
        .send()
        .await;
    assert_eq!(cookieless.status, 403);
    // The right token and cookie from a foreign page.
    let foreign = browser
        .request("POST", "/sign-in")
        .header("Origin", "https://evil.example")
        .form(&with_token)
        .send()
        .await;
    assert_eq!(foreign.status, 403);
    assert!(foreign.text().contains("sent from another site"));
    // With no Origin, Referer or Sec-Fetch-Site to say where it came from.
    let unproven = browser
        .request("POST", "/sign-in")
        .form(&with_token)
        .send()
        .await;
    assert_eq!(unproven.status, 403);
    // `Origin: null` (a browser under `no-referrer`) from another site.
    let null_cross_site = browser
        .request("POST", "/sign-in")
        .header("Origin", "null")
        .header("Sec-Fetch-Site", "cross-site")
        .form(&with_token)
        .send()
        .await;
    assert_eq!(null_cross_site.status, 403);
    assert!(browser.session_token().is_none());
    assert_eq!(sessions_of(&server, "csrf@example.com").await, 0);

    // The same form as a browser sends it from the page: it works.
    let same_origin = browser
        .request("POST", "/sign-in")
        .header("Origin", "null")
        .header("Sec-Fetch-Site", "same-origin")
        .form(&with_token)
        .send()
        .await;
    assert_eq!(same_origin.status, 303, "{}", same_origin.text());
    assert_eq!(sessions_of(&server, "csrf@example.com").await, 1);
}

#[tokio::test]
async fn a_form_made_for_one_session_does_not_work_for_another() {
    let server = TestServer::start().await;
    server
        .add_user("bound@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    let signed_in = browser
        .submit(
            "/sign-in",
            &[("email", "bound@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let account = browser.get("/account").await.text();
    let session_token = csrf_token(&account);
    // Signed out (cookie gone) with the same browser cookie: the signed-in form's token no
    // longer matches.
    let jwt = browser.cookies.remove("jwt").unwrap();
    let anonymous = browser
        .post("/sign-in/second-factor", &[("csrf-token", &session_token)])
        .await;
    assert_eq!(anonymous.status, 403);
    browser.cookies.insert("jwt".to_owned(), jwt);
    let accepted = browser
        .post("/sign-in/second-factor", &[("csrf-token", &session_token)])
        .await;
    assert_eq!(accepted.status, 303);
    assert_eq!(accepted.header("location"), Some("/sign-in"));
}

#[tokio::test]
async fn a_sign_in_form_opened_before_signing_in_elsewhere_sends_the_visitor_on() {
    // Attack (on a person, not a server): two tabs. The first signs in; the second still
    // shows a sign-in form with the anonymous token. Sending it must not loop on "this form
    // has expired" (every redraw carried an anonymous token again), nor sign in a second
    // account on top of the first: the visitor is sent on, as a GET of /sign-in does.
    let server = TestServer::start_with(|config| {
        config.auth.allowed_return_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    server
        .add_user("first-tab@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("second-tab@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    let stale_form = browser.get("/sign-in").await.text();
    let stale_token = csrf_token(&stale_form);
    let signed_in = browser
        .submit(
            "/sign-in",
            &[("email", "first-tab@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let first_cookie = browser.session_token().unwrap().to_owned();

    let second_tab = browser
        .post(
            "/sign-in",
            &[
                ("csrf-token", &stale_token),
                ("email", "second-tab@example.com"),
                ("password", PASSWORD),
                ("ret-url", "https://app.example.com/next"),
            ],
        )
        .await;
    assert_eq!(second_tab.status, 303, "{}", second_tab.text());
    assert_eq!(
        second_tab.header("location"),
        Some("https://app.example.com/next")
    );
    assert!(second_tab.header("set-cookie").is_none());
    assert_eq!(browser.session_token(), Some(first_cookie.as_str()));
    assert_eq!(sessions_of(&server, "second-tab@example.com").await, 0);

    // The ret-url rule still holds, and a foreign origin is still refused first.
    let bad_return = browser
        .post(
            "/sign-in",
            &[("csrf-token", &stale_token), ("ret-url", "//evil.example")],
        )
        .await;
    assert_eq!(bad_return.status, 400);
    let foreign = browser
        .request("POST", "/sign-in")
        .header("Origin", "https://evil.example")
        .form(&[("csrf-token", stale_token.as_str())])
        .send()
        .await;
    assert_eq!(foreign.status, 403);
}

#[tokio::test]
async fn sign_in_sets_the_cookie_and_goes_to_the_account_or_an_allowed_ret_url() {
    let server = TestServer::start_with(|config| {
        config.auth.allowed_return_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    server
        .add_user("ret@example.com", Role::User, Status::Active)
        .await;
    let credentials = [("email", "ret@example.com"), ("password", PASSWORD)];

    let mut browser = PageBrowser::new(&server);
    let page = browser.get("/sign-in").await;
    // The form's answer may redirect to an allowed origin.
    assert_eq!(
        page.header("content-security-policy"),
        Some(format!("{CSP} https://app.example.com").as_str())
    );
    let signed_in = browser.submit("/sign-in", &credentials).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(signed_in.header("location"), Some("/account"));
    let cookie = signed_in.header("set-cookie").unwrap();
    assert!(cookie.starts_with("jwt="), "{cookie}");
    assert!(cookie.contains("HttpOnly; SameSite=Lax"), "{cookie}");
    // Not kept signed in: the short session.
    let short = server.app.config.session.short_term_seconds;
    assert!(cookie.contains(&format!("Max-Age={short}")), "{cookie}");
    // The cookie is a working credential.
    let token = browser.session_token().unwrap().to_owned();
    assert_eq!(server.current_user_status(&token).await, 200);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200);
    assert!(account.text().contains("ret@example.com"));
    // Signed in: the sign-in page sends the visitor on at once.
    let again = browser.get("/sign-in?ret-url=/somewhere").await;
    assert_eq!(again.status, 303);
    assert_eq!(again.header("location"), Some("/somewhere"));

    // A fresh browser, with an allowed absolute ret-url and "keep me signed in".
    let mut browser = PageBrowser::new(&server);
    let target = "https://app.example.com/after?x=1";
    let page = browser
        .get(&format!(
            "/sign-in?ret-url={}",
            "https%3A%2F%2Fapp.example.com%2Fafter%3Fx%3D1"
        ))
        .await;
    assert!(
        page.text()
            .contains("name=\"ret-url\" value=\"https://app.example.com/after?x=1\""),
        "{}",
        page.text()
    );
    let mut pairs = hidden_fields(&page.text());
    pairs.push(("email".into(), "ret@example.com".into()));
    pairs.push(("password".into(), PASSWORD.into()));
    pairs.push(("long-term-token".into(), "true".into()));
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signed_in = browser.post("/sign-in", &pairs).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(signed_in.header("location"), Some(target));
    let long = server.app.config.session.long_term_seconds;
    assert!(
        signed_in
            .header("set-cookie")
            .unwrap()
            .contains(&format!("Max-Age={long}"))
    );

    // A ret-url the rule refuses: 400, on the page and on the post, and no session.
    let before = sessions_of(&server, "ret@example.com").await;
    let mut browser = PageBrowser::new(&server);
    for refused in ["https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example"] {
        let page = browser.get(&format!("/sign-in?ret-url={refused}")).await;
        assert_eq!(page.status, 400, "{refused}");
        assert_page_headers(&page);
        assert!(
            page.text().contains("The address to return to"),
            "{}",
            page.text()
        );
    }
    let token = csrf_token(&browser.get("/sign-in").await.text());
    let refused = browser
        .post(
            "/sign-in",
            &[
                ("csrf-token", &token),
                ("ret-url", "https://evil.example/"),
                ("email", "ret@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(browser.session_token().is_none());
    assert_eq!(sessions_of(&server, "ret@example.com").await, before);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_show_the_same_page() {
    let server = TestServer::start().await;
    server
        .add_user("known@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    let wrong_password = browser
        .submit(
            "/sign-in",
            &[
                ("email", "known@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    let unknown_email = browser
        .submit(
            "/sign-in",
            &[
                ("email", "nobody@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(unknown_email.status, 401);
    // The same page but for the address typed, which the form keeps.
    assert_eq!(
        wrong_password.text().replace("known@example.com", "EMAIL"),
        unknown_email.text().replace("nobody@example.com", "EMAIL"),
    );
    let html = wrong_password.text();
    assert!(html.contains("do not match an account"), "{html}");
    assert!(html.contains("role=\"alert\""));
    // The focus goes to the password, marked invalid.
    let password = tags(&html, "input")
        .into_iter()
        .find(|tag| tag.contains("name=\"password\""))
        .unwrap();
    assert!(password.contains("autofocus") && password.contains("aria-invalid=\"true\""));
    assert!(
        !tags(&html, "input")
            .into_iter()
            .any(|tag| tag.contains("name=\"email\"") && tag.contains("autofocus"))
    );
}

#[tokio::test]
async fn a_throttled_visitor_is_told_how_long_to_wait() {
    let server = TestServer::start().await;
    server
        .add_user("guessed@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    let mut throttled = None;
    for _ in 0..30 {
        let answer = browser
            .submit(
                "/sign-in",
                &[
                    ("email", "guessed@example.com"),
                    ("password", "a wrong guess"),
                ],
            )
            .await;
        if answer.status == 429 {
            throttled = Some(answer);
            break;
        }
        assert_eq!(answer.status, 401);
    }
    let throttled = throttled.expect("sign-in was never throttled");
    let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let html = throttled.text();
    assert!(html.contains("Too many attempts. Please wait "), "{html}");
    let unit = if retry_after < 60 { "second" } else { "minute" };
    assert!(html.contains(unit), "{html}");
    // The form is still there, with a fresh token, for when the wait is over.
    assert!(html.contains("name=\"csrf-token\""));
}

#[tokio::test]
async fn sign_up_verify_sign_in_and_sign_out_through_the_pages_and_the_outbox() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let outbox = server.data_dir.path().join("outbox");
    let mut browser = PageBrowser::new(&server);
    let signed_up = browser
        .submit(
            "/sign-up",
            &[
                ("email", "new@example.com"),
                ("password", "a new password"),
                ("first-name", "Ada"),
                ("last-name", ""),
            ],
        )
        .await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.text());
    assert!(signed_up.text().contains("Check your email"));
    // A taken address reads the same.
    server
        .add_user("taken@example.com", Role::User, Status::Active)
        .await;
    let taken = browser
        .submit(
            "/sign-up",
            &[
                ("email", "taken@example.com"),
                ("password", "a new password"),
                ("first-name", "Ada"),
                ("last-name", ""),
            ],
        )
        .await;
    assert_eq!(
        taken.text().replace("taken@example.com", "EMAIL"),
        signed_up.text().replace("new@example.com", "EMAIL")
    );

    let mails = wait_for_mail(&outbox, 2, MAIL_WAIT).await;
    let to_new = mails
        .iter()
        .find(|mail| mail.contains("To: new@example.com"))
        .unwrap();
    let link_prefix = format!("{}/verify?token=", server.origin());
    assert!(to_new.contains(&link_prefix), "{to_new}");
    let to_taken = mails
        .iter()
        .find(|mail| mail.contains("To: taken@example.com"))
        .unwrap();
    assert!(
        to_taken.contains(&format!("{}/password-reset\n", server.origin()))
            || to_taken.contains(&format!("{}/password-reset\r\n", server.origin())),
        "{to_taken}"
    );
    let token = token_in(to_new);

    // Opening the link consumes nothing: a mail scanner may fetch it.
    let page = browser.get(&format!("/verify?token={token}")).await;
    assert_eq!(page.status, 200);
    let pending = async |server: &TestServer| {
        server
            .app
            .store
            .user_by_normalized_email("new@example.com")
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(pending(&server).await, Status::Pending);
    let verified = browser.submit(&format!("/verify?token={token}"), &[]).await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert!(verified.text().contains("Email address confirmed"));
    assert_eq!(pending(&server).await, Status::Active);
    // The link works once.
    let again = browser.submit(&format!("/verify?token={token}"), &[]).await;
    assert_eq!(again.status, 400);
    assert!(again.text().contains("already used"), "{}", again.text());

    let signed_in = browser
        .submit(
            "/sign-in",
            &[("email", "new@example.com"), ("password", "a new password")],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    let token = browser.session_token().unwrap().to_owned();
    let account = browser.get("/account").await;
    assert!(account.text().contains("new@example.com"));
    assert!(
        account.text().contains("value=\"Ada\""),
        "{}",
        account.text()
    );
    let csrf = csrf_token(&account.text());
    let signed_out = browser
        .post("/sign-out", &[("csrf-token", csrf.as_str())])
        .await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(signed_out.header("location"), Some("/sign-in"));
    assert!(
        signed_out
            .header("set-cookie")
            .unwrap()
            .starts_with("jwt=;")
    );
    assert!(browser.session_token().is_none());
    assert_eq!(server.current_user_status(&token).await, 401);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 303);
    assert_eq!(
        account.header("location"),
        Some("/sign-in?ret-url=/account")
    );
}

#[tokio::test]
async fn sign_up_is_refused_on_the_page_when_closed() {
    let server = TestServer::start().await;
    let mut browser = PageBrowser::new(&server);
    let page = browser.get("/sign-up").await;
    assert_eq!(page.status, 403);
    assert!(page.text().contains("does not take new sign-ups"));
    assert!(!browser.get("/sign-in").await.text().contains("/sign-up"));
}

#[tokio::test]
async fn a_password_reset_through_the_pages_and_the_outbox() {
    let server = TestServer::start().await;
    let outbox = server.data_dir.path().join("outbox");
    server
        .add_user("forgot@example.com", Role::User, Status::Active)
        .await;
    let old_session = server.sign_in("forgot@example.com").await;
    let mut browser = PageBrowser::new(&server);
    let requested = browser
        .submit("/password-reset", &[("email", "forgot@example.com")])
        .await;
    assert_eq!(requested.status, 200, "{}", requested.text());
    let unknown = browser
        .submit("/password-reset", &[("email", "stranger@example.com")])
        .await;
    assert_eq!(
        requested.text().replace("forgot@example.com", "EMAIL"),
        unknown.text().replace("stranger@example.com", "EMAIL")
    );
    let mail = &wait_for_mail(&outbox, 1, MAIL_WAIT).await[0];
    assert!(
        mail.contains(&format!(
            "{}/password-reset/confirm?token=",
            server.origin()
        )),
        "{mail}"
    );
    let token = token_in(mail);
    let confirm_page = format!("/password-reset/confirm?token={token}");
    // Too short a password: the form again, the new-password field focused.
    let short = browser
        .submit(&confirm_page, &[("new-password", "abc")])
        .await;
    assert_eq!(short.status, 400);
    let field = tags(&short.text(), "input")
        .into_iter()
        .find(|tag| tag.contains("name=\"new-password\""))
        .unwrap()
        .to_owned();
    assert!(field.contains("autofocus") && field.contains("aria-invalid=\"true\""));
    let changed = browser
        .submit(&confirm_page, &[("new-password", "my reset password")])
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert!(changed.text().contains("Password changed"));
    assert_eq!(
        server.current_user_status(&old_session.signed_token).await,
        401
    );
    let used = browser
        .submit(&confirm_page, &[("new-password", "another password")])
        .await;
    assert_eq!(used.status, 400);
    let signed_in = browser
        .submit(
            "/sign-in",
            &[
                ("email", "forgot@example.com"),
                ("password", "my reset password"),
            ],
        )
        .await;
    assert_eq!(signed_in.status, 303);
}

#[tokio::test]
async fn the_old_link_pages_redirect_to_the_new_ones_with_their_token() {
    let server = TestServer::start().await;
    for (old, new) in [
        ("/auth/verify?token=abc-_1", "/verify?token=abc-_1"),
        (
            "/auth/password-reset?token=abc-_1",
            "/password-reset/confirm?token=abc-_1",
        ),
    ] {
        let answer = server.request("GET", old).send().await;
        assert_eq!(answer.status, 303, "{old}");
        assert_eq!(answer.header("location"), Some(new));
    }
}

#[tokio::test]
async fn pages_never_take_a_credential_from_the_query_or_a_header() {
    let server = TestServer::start().await;
    server
        .add_user("query@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("query@example.com").await;
    let browser = PageBrowser::new(&server);
    for path in [
        format!("/account?jwt={}", session.signed_token),
        format!("/account?token={}", session.api_token),
    ] {
        let answer = browser.request("GET", &path).send().await;
        assert_eq!(answer.status, 303, "{path}");
        assert_eq!(answer.header("location"), Some("/sign-in?ret-url=/account"));
    }
    let answer = browser
        .request("GET", "/account")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert_eq!(answer.status, 303);
    // The cookie is how a page knows its visitor.
    let answer = browser
        .request("GET", "/account")
        .header("Cookie", &format!("jwt={}", session.signed_token))
        .send()
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn the_title_and_an_operator_stylesheet_are_on_every_page() {
    let directory = tempfile::tempdir().unwrap();
    let stylesheet = directory.path().join("site.css");
    std::fs::write(&stylesheet, "body { color: #123456; }\n").unwrap();
    let path = stylesheet.clone();
    let server = TestServer::start_with(move |config| {
        config.pages.title = "Acme <Login>".to_owned();
        config.pages.stylesheet = Some(path);
    })
    .await;
    let mut browser = PageBrowser::new(&server);
    let html = browser.get("/sign-in").await.text();
    // Escaped like every value in a page.
    assert!(
        html.contains("Acme &#60;Login&#62;") || html.contains("Acme &lt;Login&gt;"),
        "{html}"
    );
    let links: Vec<String> = tags(&html, "link")
        .into_iter()
        .filter_map(|tag| attribute(tag, "href"))
        .collect();
    assert_eq!(links.len(), 3, "{links:?}");
    // The icon first, then the built-in stylesheet, then the operator's, which wins.
    assert_eq!(links[0], "/assets/icon.svg");
    let icon = browser.get(&links[0]).await;
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert!(links[1].starts_with("/assets/latchkey.css?v="));
    assert!(links[2].starts_with("/assets/site.css?v="));
    let served = browser.get(&links[2]).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.text(), "body { color: #123456; }\n");
}

#[tokio::test]
async fn with_the_pages_off_their_paths_are_not_found() {
    let server = TestServer::start_with(|config| config.pages.enabled = false).await;
    let mut browser = PageBrowser::new(&server);
    for path in [
        "/sign-in",
        "/account",
        "/assets/latchkey.css",
        "/verify?token=x",
    ] {
        browser.get(path).await.assert_error(404);
    }
    let post = browser.post("/sign-out", &[]).await;
    post.assert_error(404);
    // The API is unchanged.
    let health = server.request("GET", "/health").send().await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn sign_out_needs_the_sessions_form_while_the_session_lives() {
    let server = TestServer::start().await;
    server
        .add_user("out@example.com", Role::User, Status::Active)
        .await;
    let mut browser = PageBrowser::new(&server);
    browser
        .submit(
            "/sign-in",
            &[("email", "out@example.com"), ("password", PASSWORD)],
        )
        .await;
    let token = browser.session_token().unwrap().to_owned();
    let account = browser.get("/account").await.text();
    let form_token = csrf_token(&account);
    // No token: refused, and the session lives on.
    let refused = browser.post("/sign-out", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(server.current_user_status(&token).await, 200);
    // The session ends elsewhere; the page's old form still clears the cookie.
    let ended = server
        .request("DELETE", "/auth/session")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(ended.status, 204);
    let signed_out = browser
        .post("/sign-out", &[("csrf-token", &form_token)])
        .await;
    assert_eq!(signed_out.status, 303);
    assert!(browser.session_token().is_none());
}

#[test]
fn a_stylesheet_that_cannot_be_read_stops_the_start_naming_the_key() {
    let directory = tempfile::tempdir().unwrap();
    let mut config = crate::support::cheap_config();
    config.pages.stylesheet = Some(directory.path().join("missing.css"));
    let refusal = latchkey::app::preflight(&config).unwrap_err().to_string();
    assert!(refusal.contains("pages.stylesheet"), "{refusal}");
    assert!(refusal.contains("missing.css"), "{refusal}");
    config.pages.stylesheet = Some(directory.path().to_path_buf());
    let refusal = latchkey::app::preflight(&config).unwrap_err().to_string();
    assert!(refusal.contains("not a regular file"), "{refusal}");
}

#[tokio::test]
async fn the_passkey_script_is_a_versioned_asset_linked_only_where_passkeys_are_offered() {
    // Without a public URL there is no relying party id: no passkey button, no script.
    let without = TestServer::start().await;
    let mut browser = PageBrowser::new(&without);
    let html = browser.get("/sign-in").await.text();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("data-passkey"), "{html}");
    assert!(html.contains("autocomplete=\"username\" "), "{html}");

    let server = TestServer::start_on_localhost(|_| {}).await;
    let mut browser = PageBrowser::new(&server);
    let sign_in = browser.get("/sign-in?ret-url=/account").await;
    assert_page_headers(&sign_in);
    let html = sign_in.text();
    let head = html.split("</head>").next().unwrap();
    let sources: Vec<String> = tags(head, "script")
        .into_iter()
        .map(|tag| {
            assert!(tag.contains(" defer"), "{tag}");
            attribute(tag, "src").unwrap()
        })
        .collect();
    assert_eq!(sources.len(), 1, "{head}");
    let script_url = &sources[0];
    assert!(
        html.contains("autocomplete=\"username webauthn\""),
        "{html}"
    );
    // The button is no submit button of a form, and waits hidden for the script.
    let body = html.split("</head>").nth(1).unwrap();
    let passkey = body.split("data-passkey-sign-in").nth(1).unwrap();
    let passkey = passkey.split("</div>").next().unwrap();
    assert!(
        passkey.contains("data-return-url=\"/account\""),
        "{passkey}"
    );
    assert!(passkey.contains(" hidden>"), "{passkey}");
    assert!(passkey.contains("<button type=\"button\""), "{passkey}");
    assert!(passkey.contains(">Sign in with a passkey</button>"));
    for form in html.split("<form ").skip(1) {
        assert!(
            !form
                .split("</form>")
                .next()
                .unwrap()
                .contains("data-passkey")
        );
    }
    // The other pages run no passkey ceremony yet, so they link no script.
    for path in ["/sign-up", "/password-reset", "/sign-in/second-factor"] {
        assert!(
            !browser.get(path).await.text().contains("<script"),
            "{path}"
        );
    }

    // Served from that URL with its bytes' hash in it, cached a year, as a script.
    let (path, version) = script_url.split_once("?v=").unwrap();
    assert_eq!(path, "/assets/passkey.js");
    let script = browser.get(script_url).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        script.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(script.header("x-content-type-options"), Some("nosniff"));
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&script.body);
    assert_eq!(version, &base16ct::lower::encode_string(&digest)[..16]);
    for attribute_name in [
        "data-passkey-sign-in",
        "data-passkey-second-factor",
        "data-passkey-register",
    ] {
        assert!(script.text().contains(attribute_name), "{attribute_name}");
    }
    // The same bytes without the version, and for HEAD without a body.
    let unversioned = browser.get("/assets/passkey.js").await;
    assert_eq!(unversioned.body, script.body);
    let head_only = page_request_to(server.address, "HEAD", script_url)
        .send()
        .await;
    assert_eq!(head_only.status, 200);
    assert!(head_only.body.is_empty());
}
