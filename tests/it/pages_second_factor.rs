//! Second factors on the hosted pages over HTTP: turning TOTP on from `/account` (the
//! enrolment page, a refused code, the recovery codes shown once), a password sign-in that
//! answers the second-factor page with no session, its code and recovery-code forms, a dead
//! sign-in sent back to `/sign-in`, and the refusals: forms without their token or from
//! another origin, and a minted token's cookie. Codes are pyotp's, at the `ManualClock`'s time.

use std::time::Duration;

use latchkey::model::{Role, Status};
use serde_json::{Value, json};

use crate::page_support::{PageBrowser, attribute, csrf_token, hidden_fields, tags};
use crate::second_factor::pyotp_code;
use crate::support::{PASSWORD, TestResponse, TestServer};

const EMAIL: &str = "two-step@example.com";

/// The markup of the first form of `html` that posts to `action`.
fn form_posting_to<'a>(html: &'a str, action: &str) -> &'a str {
    html.split("<form ")
        .skip(1)
        .map(|form| form.split("</form>").next().unwrap())
        .find(|form| form.contains(&format!("action=\"{action}\"")))
        .unwrap_or_else(|| panic!("no form posts to {action}: {html}"))
}

/// The hidden fields of the second-factor page's form holding `field`, with `value` added.
fn second_step_form(html: &str, field: &str, value: &str) -> Vec<(String, String)> {
    let form = html
        .split("<form ")
        .skip(1)
        .map(|form| form.split("</form>").next().unwrap())
        .find(|form| form.contains(&format!("name=\"{field}\"")))
        .unwrap_or_else(|| panic!("no form asks for {field}: {html}"));
    assert!(form.starts_with("method=\"post\" action=\"/sign-in/second-factor\""));
    let mut pairs = hidden_fields(form);
    pairs.push((field.to_owned(), value.to_owned()));
    pairs
}

fn as_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Sends one of the account page's forms with its CSRF token and `pairs`.
async fn account_form(
    browser: &mut PageBrowser<'_>,
    action: &str,
    pairs: &[(&str, &str)],
) -> TestResponse {
    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let token = csrf_token(&page.text());
    let mut all = vec![("csrf-token", token.as_str())];
    all.extend_from_slice(pairs);
    browser.post(action, &all).await
}

/// The secret the enrolment page shows for typing, without its spaces.
fn secret_on(html: &str) -> String {
    let start = html.find("<code class=\"secret-key\">").unwrap() + 25;
    html[start..]
        .split("</code>")
        .next()
        .unwrap()
        .replace(' ', "")
}

/// The recovery codes a page lists.
fn recovery_codes_on(html: &str) -> Vec<String> {
    html.split("<li><code>")
        .skip(1)
        .map(|rest| rest.split("</code>").next().unwrap().to_owned())
        .collect()
}

fn assert_not_stored(response: &TestResponse) {
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

async fn second_factors(server: &TestServer, credential: &str) -> Value {
    let profile = server
        .request("GET", "/user/current")
        .bearer(credential)
        .send()
        .await;
    assert_eq!(profile.status, 200, "{}", profile.text());
    profile.json["second-factors"].clone()
}

/// Turns TOTP on through the account page: the secret and the recovery codes it showed.
async fn enrol_through_the_page(
    server: &TestServer,
    browser: &mut PageBrowser<'_>,
) -> (String, Vec<String>) {
    let started = account_form(browser, "/account/totp/enable", &[("password", PASSWORD)]).await;
    assert_eq!(started.status, 200, "{}", started.text());
    assert_not_stored(&started);
    let html = started.text();
    let secret = secret_on(&html);
    assert_eq!(secret.len(), 32, "a 160-bit secret in base32: {secret}");
    let token = csrf_token(form_posting_to(&html, "/account/totp/confirm"));
    let code = pyotp_code(&secret, server.now());
    let confirmed = browser
        .post(
            "/account/totp/confirm",
            &[("csrf-token", &token), ("code", &code)],
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    assert_not_stored(&confirmed);
    let codes = recovery_codes_on(&confirmed.text());
    assert_eq!(codes.len(), 10, "{}", confirmed.text());
    (secret, codes)
}

/// A password sign-in on `/sign-in` (with `ret_url`, if any) that meets the second factor.
async fn first_step<'a>(
    server: &'a TestServer,
    ret_url: Option<&str>,
) -> (PageBrowser<'a>, String) {
    let mut browser = PageBrowser::new(server);
    let path = ret_url.map_or("/sign-in".to_owned(), |url| {
        format!("/sign-in?ret-url={}", url.replace('/', "%2F"))
    });
    let page = browser.get(&path).await;
    let mut pairs = hidden_fields(&page.text());
    pairs.push(("email".to_owned(), EMAIL.to_owned()));
    pairs.push(("password".to_owned(), PASSWORD.to_owned()));
    let answer = browser.post("/sign-in", &as_pairs(&pairs)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_not_stored(&answer);
    assert!(answer.header("location").is_none());
    assert!(
        !browser.cookies.contains_key("jwt"),
        "the password alone set a session cookie"
    );
    let html = answer.text();
    assert!(html.contains("Finish signing in"), "{html}");
    (browser, html)
}

#[tokio::test]
async fn totp_turned_on_from_the_account_page_then_asked_for_at_every_password_sign_in() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let mut account = PageBrowser::signed_in(&server, EMAIL).await;
    let jwt = account.cookies["jwt"].clone();

    // A refused first code draws the enrolment again, with the same pending secret.
    let started = account_form(
        &mut account,
        "/account/totp/enable",
        &[("password", PASSWORD)],
    )
    .await;
    let secret = secret_on(&started.text());
    let token = csrf_token(&started.text());
    let wrong = if pyotp_code(&secret, server.now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let refused = account
        .post(
            "/account/totp/confirm",
            &[("csrf-token", &token), ("code", wrong)],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_not_stored(&refused);
    assert!(refused.text().contains("That code is not right"));
    assert_eq!(secret_on(&refused.text()), secret);
    assert_eq!(
        second_factors(&server, &jwt).await["totp"],
        false,
        "a wrong code turned TOTP on"
    );
    // A wrong password on the enable form is shown next to its field.
    let wrong_password = account_form(
        &mut account,
        "/account/totp/enable",
        &[("password", "not the password")],
    )
    .await;
    assert_eq!(wrong_password.status, 403);
    let html = wrong_password.text();
    assert!(
        html.contains("Your current password is not right"),
        "{html}"
    );
    let field = tags(&html, "input")
        .into_iter()
        .find(|tag| tag.contains("id=\"totp-enable-password\""))
        .unwrap();
    assert!(field.contains("aria-invalid=\"true\"") && field.contains("autofocus"));

    let (secret, recovery_codes) = enrol_through_the_page(&server, &mut account).await;
    assert_eq!(
        second_factors(&server, &jwt).await,
        json!({ "totp": true, "passkeys": 0, "recovery-codes-left": 10 })
    );
    let page = account.get("/account").await.text();
    assert!(
        page.contains("10 of your recovery codes are left"),
        "{page}"
    );
    assert!(page.contains("action=\"/account/totp/disable\""));

    // The password alone now answers the second-factor page, carrying the sign-in.
    server.advance_clock(Duration::from_secs(30));
    let (mut browser, html) = first_step(&server, Some("/after")).await;
    let form = second_step_form(&html, "code", "");
    let mfa_token = form
        .iter()
        .find(|(name, _)| name == "mfa-token")
        .map(|(_, value)| value.clone())
        .unwrap();
    assert!(mfa_token.len() >= 40);
    assert!(form.contains(&("ret-url".to_owned(), "/after".to_owned())));
    // Every form posts the token in its body; no link or action carries it.
    for tag in tags(&html, "form").into_iter().chain(tags(&html, "a")) {
        assert!(!tag.contains(&mfa_token), "{tag}");
        assert!(
            attribute(tag, "action").is_none_or(|action| !action.contains('?')),
            "{tag}"
        );
    }
    assert!(html.contains("name=\"recovery-code\""));

    // A wrong code: the page again, the problem worded for people, the focus on the field.
    let mut wrong_form = second_step_form(&html, "code", "");
    wrong_form.last_mut().unwrap().1 = wrong.to_owned();
    if pyotp_code(&secret, server.now()) == wrong {
        wrong_form.last_mut().unwrap().1 = "222222".to_owned();
    }
    let refused = browser
        .post("/sign-in/second-factor", &as_pairs(&wrong_form))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(!browser.cookies.contains_key("jwt"));
    let again = refused.text();
    assert!(again.contains("That code is not right"), "{again}");
    let code_field = tags(&again, "input")
        .into_iter()
        .find(|tag| tag.contains("name=\"code\""))
        .unwrap();
    assert!(code_field.contains("autofocus") && code_field.contains("aria-invalid=\"true\""));

    // The right code: the session cookie, and on to ret-url.
    let right = second_step_form(&again, "code", &pyotp_code(&secret, server.now()));
    let signed_in = browser
        .post("/sign-in/second-factor", &as_pairs(&right))
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(signed_in.header("location"), Some("/after"));
    let session = browser.cookies["jwt"].clone();
    assert_eq!(server.current_user_status(&session).await, 200);
    // The spent sign-in cannot be finished twice.
    let replayed = PageBrowser::new(&server)
        .post("/sign-in/second-factor", &as_pairs(&right))
        .await;
    assert_ne!(replayed.status, 303);

    // A recovery code finishes another sign-in, once.
    let (mut browser, html) = first_step(&server, None).await;
    let recovery = second_step_form(&html, "recovery-code", &recovery_codes[0]);
    let signed_in = browser
        .post("/sign-in/second-factor", &as_pairs(&recovery))
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(signed_in.header("location"), Some("/account"));
    assert!(browser.cookies.contains_key("jwt"));
    assert_eq!(
        second_factors(&server, &jwt).await["recovery-codes-left"],
        9
    );
    let (mut browser, html) = first_step(&server, None).await;
    let used_again = second_step_form(&html, "recovery-code", &recovery_codes[0]);
    let refused = browser
        .post("/sign-in/second-factor", &as_pairs(&used_again))
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("That recovery code is not right"));
    assert!(!browser.cookies.contains_key("jwt"));

    // A sign-in left waiting too long goes back to the sign-in page, told why.
    let (mut browser, html) = first_step(&server, Some("/later")).await;
    server.advance_clock(Duration::from_secs(6 * 60));
    let late = second_step_form(&html, "code", &pyotp_code(&secret, server.now()));
    let sent_back = browser
        .post("/sign-in/second-factor", &as_pairs(&late))
        .await;
    assert_eq!(sent_back.status, 401, "{}", sent_back.text());
    let html = sent_back.text();
    assert!(html.contains("waited too long"), "{html}");
    assert!(html.contains("action=\"/sign-in\""));
    assert!(html.contains("name=\"ret-url\" value=\"/later\""), "{html}");
    assert!(!browser.cookies.contains_key("jwt"));

    // Opened without a pending sign-in, the page says none waits.
    let bare = PageBrowser::new(&server)
        .get("/sign-in/second-factor")
        .await;
    assert_eq!(bare.status, 200);
    assert!(bare.text().contains("No sign-in is waiting"));

    // New recovery codes replace the old ones, shown once.
    let remade = account_form(
        &mut account,
        "/account/recovery-codes",
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(remade.status, 200, "{}", remade.text());
    assert_not_stored(&remade);
    let new_codes = recovery_codes_on(&remade.text());
    assert_eq!(new_codes.len(), 10);
    assert!(
        remade
            .text()
            .contains("Your earlier recovery codes no longer work.")
    );
    assert_eq!(
        second_factors(&server, &jwt).await["recovery-codes-left"],
        10
    );

    // Turned off with the password and a recovery code (the app lost).
    let off = account_form(
        &mut account,
        "/account/totp/disable",
        &[
            ("password", PASSWORD),
            ("code", ""),
            ("recovery-code", &new_codes[3]),
        ],
    )
    .await;
    assert_eq!(off.status, 303, "{}", off.text());
    assert_eq!(off.header("location"), Some("/account?done=totp-off"));
    assert_eq!(
        second_factors(&server, &jwt).await,
        json!({ "totp": false, "passkeys": 0, "recovery-codes-left": 0 })
    );
    assert!(
        PageBrowser::signed_in(&server, EMAIL)
            .await
            .cookies
            .contains_key("jwt")
    );
}

#[tokio::test]
async fn every_second_factor_form_without_its_token_or_from_another_origin_changes_nothing() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let mut account = PageBrowser::signed_in(&server, EMAIL).await;
    let jwt = account.cookies["jwt"].clone();
    let (secret, recovery_codes) = enrol_through_the_page(&server, &mut account).await;
    server.advance_clock(Duration::from_secs(30));
    let code = pyotp_code(&secret, server.now());
    let page = account.get("/account").await;
    let good_token = csrf_token(&page.text());
    let forms: [(&str, Vec<(&str, &str)>); 5] = [
        ("/account/totp/enable", vec![("password", PASSWORD)]),
        ("/account/totp/confirm", vec![("code", &code)]),
        (
            "/account/totp/disable",
            vec![("password", PASSWORD), ("code", &code)],
        ),
        ("/account/recovery-codes", vec![("password", PASSWORD)]),
        (
            "/account/passkeys/delete",
            vec![
                ("passkey-id", "00000000-0000-4000-8000-000000000000"),
                ("password", PASSWORD),
            ],
        ),
    ];
    let before = second_factors(&server, &jwt).await;
    let origin = server.origin();
    for (path, fields) in &forms {
        let refused = account.post_from(Some(&origin), path, fields).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(refused.text().contains("This form has expired"), "{path}");
        let mut with_token = vec![("csrf-token", good_token.as_str())];
        with_token.extend_from_slice(fields);
        for foreign in [Some("https://evil.example"), None] {
            let refused = account.post_from(foreign, path, &with_token).await;
            assert_eq!(refused.status, 403, "{path}: {}", refused.text());
            assert!(refused.text().contains("sent from another site"), "{path}");
        }
    }
    assert_eq!(second_factors(&server, &jwt).await, before);

    // The second step's forms: from another site, nothing is signed in; without the token,
    // the page comes again to be sent anew, and the sign-in still waits.
    let (mut browser, html) = first_step(&server, None).await;
    let right = second_step_form(&html, "recovery-code", &recovery_codes[0]);
    for foreign in [Some("https://evil.example"), None] {
        let refused = browser
            .post_from(foreign, "/sign-in/second-factor", &as_pairs(&right))
            .await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        assert!(!browser.cookies.contains_key("jwt"));
    }
    let without_token: Vec<(String, String)> = right
        .iter()
        .filter(|(name, _)| name != "csrf-token")
        .cloned()
        .collect();
    let expired = browser
        .post("/sign-in/second-factor", &as_pairs(&without_token))
        .await;
    assert_eq!(expired.status, 403, "{}", expired.text());
    assert!(expired.text().contains("This form has expired"));
    assert!(!browser.cookies.contains_key("jwt"));
    assert_eq!(second_factors(&server, &jwt).await, before);
    // The form drawn again finishes the same sign-in.
    let again = second_step_form(&expired.text(), "recovery-code", &recovery_codes[0]);
    let signed_in = browser
        .post("/sign-in/second-factor", &as_pairs(&again))
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
}

#[tokio::test]
async fn a_minted_token_in_the_cookie_cannot_change_second_factors() {
    let server = TestServer::start().await;
    server.add_user(EMAIL, Role::User, Status::Active).await;
    let session = server.sign_in(EMAIL).await;
    let minted = server
        .request("POST", "/auth/jwt")
        .bearer(&session.signed_token)
        // All of the session's permissions, write:user included.
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    let minted = minted.json["token"].as_str().unwrap().to_owned();
    let mut browser = PageBrowser::new(&server);
    browser.cookies.insert("jwt".to_owned(), minted.clone());
    let before = second_factors(&server, &session.signed_token).await;
    for (path, fields) in [
        ("/account/totp/enable", vec![("password", PASSWORD)]),
        ("/account/totp/confirm", vec![("code", "123456")]),
        (
            "/account/totp/disable",
            vec![("password", PASSWORD), ("code", "123456")],
        ),
        ("/account/recovery-codes", vec![("password", PASSWORD)]),
        (
            "/account/passkeys/delete",
            vec![
                ("passkey-id", "00000000-0000-4000-8000-000000000000"),
                ("password", PASSWORD),
            ],
        ),
    ] {
        let refused = account_form(&mut browser, path, &fields).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(
            refused
                .text()
                .contains("can be changed only from a browser signed in"),
            "{path}: {}",
            refused.text()
        );
        assert!(!refused.text().contains("secret-key"), "{path}");
    }
    assert_eq!(second_factors(&server, &session.signed_token).await, before);
}
