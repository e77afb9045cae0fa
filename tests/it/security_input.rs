//! The tightened input rules of API.md section 15, each reproduced as the attack it stops:
//! addresses that are not bare (rule 15), names and undecodable forms (rule 16), ambiguous
//! requests (rule 17), login CSRF (rule 11), and the header hardening beside them
//! (`X-Forwarded-For` with ports, `Origin` with userinfo, `X-Frame-Options`).

use std::time::Duration;

use latchkey::model::{Role, Status};
use serde_json::{Value, json};

use crate::mail_support::wait_for_mail;
use crate::support::{PASSWORD, TestResponse, TestServer, page_request_to};

const MAIL_WAIT: Duration = Duration::from_secs(20);

fn field_of(response: &TestResponse) -> Value {
    response.assert_error(400)["context"]["field"].clone()
}

async fn sign_up(server: &TestServer, body: Value) -> TestResponse {
    server
        .request("POST", "/auth/sign-up")
        .json(&body)
        .send()
        .await
}

async fn create_sub_user(server: &TestServer, parent_token: &str, body: Value) -> TestResponse {
    server
        .request("POST", "/user")
        .bearer(parent_token)
        .json(&body)
        .send()
        .await
}

// Rule 15: addresses.

/// Addresses that an older build stored as new accounts although mail for them reaches
/// alice@example.com (or a look-alike that Unicode lowercasing turns into kate@example.com).
const NOT_BARE: [&str; 8] = [
    "\"alice\"@example.com",
    "<alice@example.com>",
    "Alice<alice@example.com>",
    "alice@example.com(comment)",
    "alice@[192.0.2.1]",
    "\u{212A}ate@example.com",
    "al\u{200B}ice@example.com",
    "al\u{AD}ice@example.com",
];

#[tokio::test]
async fn sign_up_refuses_every_address_that_is_not_bare() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    server
        .add_user("alice@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("kate@example.com", Role::User, Status::Active)
        .await;
    for address in NOT_BARE {
        let response = sign_up(&server, json!({ "email": address, "password": PASSWORD })).await;
        assert_eq!(field_of(&response), "email", "{address:?}");
    }
    let too_long = format!("{}@example.com", "a".repeat(65));
    let response = sign_up(&server, json!({ "email": too_long, "password": PASSWORD })).await;
    let body = response.assert_error(400);
    assert_eq!(body["context"]["field"], "email");
    assert!(body["error"].as_str().unwrap().contains("254"), "{body}");
    // No account was made for any of them: only the two above exist.
    assert_eq!(server.app.store.all_users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn sub_users_resend_and_reset_refuse_addresses_that_are_not_bare() {
    let server = TestServer::start().await;
    server
        .add_user("alice@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("parent@example.com", Role::User, Status::Active)
        .await;
    let parent = server.sign_in("parent@example.com").await;
    for address in NOT_BARE {
        let created = create_sub_user(
            &server,
            &parent.signed_token,
            json!({ "email": address, "password": PASSWORD }),
        )
        .await;
        assert_eq!(field_of(&created), "email", "POST /user {address:?}");
        for path in ["/auth/verify/resend", "/auth/password-reset"] {
            let response = server
                .request("POST", path)
                .json(&json!({ "email": address }))
                .send()
                .await;
            assert_eq!(field_of(&response), "email", "{path} {address:?}");
        }
    }
}

#[tokio::test]
async fn sign_in_with_an_address_that_is_not_bare_is_a_400_naming_email() {
    let server = TestServer::start().await;
    server
        .add_user("alice@example.com", Role::User, Status::Active)
        .await;
    for address in NOT_BARE {
        let response = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": address, "password": PASSWORD }))
            .send()
            .await;
        assert_eq!(field_of(&response), "email", "{address:?}");
    }
}

#[tokio::test]
async fn the_domain_is_stored_in_ascii_and_the_address_keeps_no_unicode_folding() {
    let server = TestServer::start().await;
    server
        .add_user("parent@example.com", Role::User, Status::Active)
        .await;
    let parent = server.sign_in("parent@example.com").await;
    let created = create_sub_user(
        &server,
        &parent.signed_token,
        json!({ "email": "Kate@Bücher.example", "password": PASSWORD }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json["username"], "kate@xn--bcher-kva.example");
    assert_eq!(created.json["email"], "Kate@xn--bcher-kva.example");
    // The Unicode spelling of the same domain is the same account.
    let again = create_sub_user(
        &server,
        &parent.signed_token,
        json!({ "email": "kate@bücher.EXAMPLE", "password": PASSWORD }),
    )
    .await;
    again.assert_error(409);
    // A non-ASCII capital is not folded: ÄRGER and ärger are two addresses.
    for (address, status) in [("Ärger@example.com", 201), ("ärger@example.com", 201)] {
        let response = create_sub_user(
            &server,
            &parent.signed_token,
            json!({ "email": address, "password": PASSWORD }),
        )
        .await;
        assert_eq!(response.status, status, "{address}: {}", response.text());
        assert_eq!(response.json["username"], address);
    }
}

#[tokio::test]
async fn mail_goes_to_the_address_the_uniqueness_check_used() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let response = sign_up(
        &server,
        json!({ "email": "  Fresh@Example.COM ", "password": PASSWORD }),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let outbox = server.data_dir.path().join("outbox");
    let mails = wait_for_mail(&outbox, 1, MAIL_WAIT).await;
    assert!(
        mails[0].contains("To: fresh@example.com\r\n"),
        "{}",
        mails[0]
    );
}

// Rule 16: names and fields.

#[tokio::test]
async fn sign_up_applies_the_name_rule_of_every_other_route() {
    let server = TestServer::start_with(|config| config.signup.open = true).await;
    let long_name = "n".repeat(256);
    for (field, value) in [
        ("first-name", long_name.as_str()),
        ("last-name", long_name.as_str()),
        ("first-name", "Eve\u{1b}[31m"),
        ("last-name", "Eve\nAdmin"),
        // Text-direction overrides and separators make a name read as something else.
        ("first-name", "Eve\u{202E}nimda"),
        ("last-name", "Eve\u{2028}Admin"),
        ("first-name", "Eve\u{2067}x"),
    ] {
        let response = sign_up(
            &server,
            json!({ "email": "eve@example.com", "password": PASSWORD, field: value }),
        )
        .await;
        assert_eq!(field_of(&response), field, "{value:?}");
    }
    // Scripts that need the zero-width non-joiner keep it.
    let response = sign_up(
        &server,
        json!({ "email": "eve@example.com", "password": PASSWORD, "first-name": "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}" }),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let longest = "n".repeat(255);
    let response = sign_up(
        &server,
        json!({ "email": "eve@example.com", "password": PASSWORD, "first-name": longest }),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn a_form_whose_percent_decoding_is_not_utf8_is_a_400() {
    let server = TestServer::start().await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let session = server.sign_in("ada@example.com").await;
    for body in [
        "first-name=%FF",
        "first-name=Ada&last-name=%C3",
        "first-name=%ED%A0%80",
        "%FF=x",
    ] {
        let response = server
            .request("PUT", "/user/current")
            .bearer(&session.signed_token)
            .raw_body(
                "application/x-www-form-urlencoded",
                body.as_bytes().to_vec(),
            )
            .send()
            .await;
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        response.assert_error(400);
    }
    let profile = server
        .request("GET", "/user/current")
        .bearer(&session.signed_token)
        .send()
        .await;
    assert!(
        profile.json.get("first-name").is_none(),
        "{}",
        profile.text()
    );
    let fine = server
        .request("PUT", "/user/current")
        .bearer(&session.signed_token)
        .raw_body(
            "application/x-www-form-urlencoded",
            b"first-name=J%C3%B6rg+M".to_vec(),
        )
        .send()
        .await;
    assert_eq!(fine.status, 200, "{}", fine.text());
    assert_eq!(fine.json["first-name"], "Jörg M");
}

// Rule 17: ambiguous requests.

#[tokio::test]
async fn two_authorization_headers_are_a_400_even_when_both_are_valid() {
    let server = TestServer::start().await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("eve@example.com", Role::User, Status::Active)
        .await;
    let ada = server.sign_in("ada@example.com").await;
    let eve = server.sign_in("eve@example.com").await;
    let response = server
        .request("GET", "/user/current")
        .bearer(&ada.signed_token)
        .bearer(&eve.signed_token)
        .send()
        .await;
    assert_eq!(field_of(&response), "Authorization");
    // Also on a public route, where no credential is read.
    let response = server
        .request("POST", "/auth/sign-in")
        .bearer(&ada.signed_token)
        .bearer(&eve.signed_token)
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(field_of(&response), "Authorization");
}

#[tokio::test]
async fn two_content_type_headers_are_a_400() {
    let server = TestServer::start().await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let body =
        serde_json::to_vec(&json!({ "email": "ada@example.com", "password": PASSWORD })).unwrap();
    for second in ["application/x-www-form-urlencoded", "application/json"] {
        let response = server
            .request("POST", "/auth/sign-in")
            .header("Content-Type", second)
            .raw_body("application/json", body.clone())
            .send()
            .await;
        assert_eq!(field_of(&response), "Content-Type", "{second}");
    }
}

#[tokio::test]
async fn two_jwt_cookies_are_a_400_in_one_cookie_header_or_several() {
    let server = TestServer::start().await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("eve@example.com", Role::User, Status::Active)
        .await;
    let ada = server.sign_in("ada@example.com").await;
    let eve = server.sign_in("eve@example.com").await;
    let one_header = server
        .request("GET", "/user/current")
        .header(
            "Cookie",
            &format!(
                "jwt={}; theme=dark; jwt={}",
                eve.signed_token, ada.signed_token
            ),
        )
        .send()
        .await;
    assert_eq!(field_of(&one_header), "jwt");
    let two_headers = server
        .request("GET", "/user/current")
        .header("Cookie", &format!("jwt={}", eve.signed_token))
        .header("Cookie", &format!("jwt={}", ada.signed_token))
        .send()
        .await;
    assert_eq!(field_of(&two_headers), "jwt");
    // One jwt cookie beside others is fine.
    let single = server
        .request("GET", "/user/current")
        .header("Cookie", &format!("jwtx=1; jwt={}", ada.signed_token))
        .header("Cookie", "theme=dark")
        .send()
        .await;
    assert_eq!(single.status, 200, "{}", single.text());
    assert_eq!(single.json["username"], "ada@example.com");
}

#[tokio::test]
async fn a_json_body_with_a_repeated_key_is_a_400_at_any_depth() {
    let server = TestServer::start().await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("eve@example.com", Role::User, Status::Active)
        .await;
    // A proxy or WAF that reads the first `email` sees eve; serde_json kept the last.
    let smuggled = format!(
        r#"{{"email":"eve@example.com","password":"{PASSWORD}","email":"ada@example.com"}}"#
    );
    let response = server
        .request("POST", "/auth/sign-in")
        .raw_body("application/json", smuggled.into_bytes())
        .send()
        .await;
    assert_eq!(field_of(&response), "email");

    let ada = server.sign_in("ada@example.com").await;
    let nested = br#"{"claims":{"tier":"free","tier":"gold"},"long-term-token":false}"#;
    let response = server
        .request("POST", "/auth/jwt")
        .bearer(&ada.signed_token)
        .raw_body("application/json", nested.to_vec())
        .send()
        .await;
    assert_eq!(field_of(&response), "claims.tier");
    let deeper = br#"{"claims":{"list":[{"a":1},{"b":{"c":1,"c":2}}]}}"#;
    let response = server
        .request("POST", "/auth/jwt")
        .bearer(&ada.signed_token)
        .raw_body("application/json", deeper.to_vec())
        .send()
        .await;
    assert_eq!(field_of(&response), "claims.list[1].b.c");
    // Siblings may share key names.
    let siblings = br#"{"claims":{"x":{"k":1},"y":{"k":2}}}"#;
    let response = server
        .request("POST", "/auth/jwt")
        .bearer(&ada.signed_token)
        .raw_body("application/json", siblings.to_vec())
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

// Rule 11: login CSRF.

async fn form_sign_in(server: &TestServer, origin: Option<&str>) -> TestResponse {
    let mut request = server.request("POST", "/auth/sign-in");
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request
        .form(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
}

#[tokio::test]
async fn a_form_sign_in_from_a_foreign_origin_is_a_403() {
    let server = TestServer::start_with(|config| {
        config.auth.allowed_return_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let own_origin = server.origin();
    let userinfo_origin = own_origin.replace("http://", "http://ada@");
    for foreign in [
        "https://evil.example",
        "null",
        "https://app.example.com:8443",
        userinfo_origin.as_str(),
    ] {
        let response = form_sign_in(&server, Some(foreign)).await;
        let body = response.assert_error(403);
        assert_eq!(body["code"], 40303, "{foreign}");
        assert_eq!(body["context"]["reason"], "origin");
        assert!(response.header("set-cookie").is_none(), "{foreign}");
    }
    for allowed in [
        Some(own_origin.as_str()),
        Some("https://app.example.com"),
        None,
    ] {
        let response = form_sign_in(&server, allowed).await;
        assert_eq!(response.status, 200, "{allowed:?}: {}", response.text());
    }
    // No Origin, but the browser's own Sec-Fetch-Site says another site posted it.
    for site in ["cross-site", "same-site"] {
        let response = server
            .request("POST", "/auth/sign-in")
            .header("Sec-Fetch-Site", site)
            .form(&[("email", "ada@example.com"), ("password", PASSWORD)])
            .send()
            .await;
        assert_eq!(response.assert_error(403)["code"], 40303, "{site}");
        assert!(response.header("set-cookie").is_none(), "{site}");
    }
    // JSON needs a CORS preflight: no Origin rule here.
    let json = server
        .request("POST", "/auth/sign-in")
        .header("Origin", "https://evil.example")
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(json.status, 200, "{}", json.text());
}

#[tokio::test]
async fn a_form_oauth_sign_in_from_a_foreign_origin_is_a_403() {
    let server = TestServer::start().await;
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .header("Origin", "https://evil.example")
        .form(&[
            ("oauth-provider-token[provider]", "oidc"),
            ("oauth-provider-token[token]", "attacker-token"),
        ])
        .send()
        .await;
    assert_eq!(response.assert_error(403)["code"], 40303);
    // No body at all needs no preflight either: the provider token can come in cookies.
    let response = server
        .request("POST", "/auth/oauth-sign-in")
        .header("Origin", "https://evil.example")
        .header(
            "Cookie",
            "oauth-provider-name=oidc; oauth-provider-token=attacker-token",
        )
        .send()
        .await;
    assert_eq!(response.assert_error(403)["code"], 40303);
}

// Origins with user information never match.

#[tokio::test]
async fn an_origin_with_userinfo_never_passes_the_cookie_csrf_check_or_cors() {
    let server = TestServer::start_with(|config| {
        config.http.cors_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    server
        .add_user("ada@example.com", Role::User, Status::Active)
        .await;
    let ada = server.sign_in("ada@example.com").await;
    let cookie = format!("jwt={}", ada.signed_token);
    let own_origin = server.origin();
    let change_name = |origin: String| {
        server
            .request("PUT", "/user/current")
            .header("Cookie", &cookie)
            .header("Origin", &origin)
            .json(&json!({ "first-name": "Mallory" }))
    };
    for disguised in [
        own_origin.replace("http://", "http://user@"),
        own_origin.replace("http://", "http://user:secret@"),
        own_origin.replace("http://", "http://@"),
    ] {
        let response = change_name(disguised.clone()).send().await;
        assert_eq!(response.assert_error(403)["code"], 40303, "{disguised}");
    }
    let referer_only = server
        .request("PUT", "/user/current")
        .header("Cookie", &cookie)
        .header(
            "Referer",
            &format!("{}/account", own_origin.replace("http://", "http://u@")),
        )
        .json(&json!({ "first-name": "Mallory" }))
        .send()
        .await;
    referer_only.assert_error(403);
    let plain = change_name(own_origin.clone()).send().await;
    assert_eq!(plain.status, 200, "{}", plain.text());

    for disguised in [
        "https://user@app.example.com",
        "https://u:p@app.example.com",
    ] {
        let preflight = server
            .request("OPTIONS", "/auth/sign-in")
            .header("Origin", disguised)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await;
        assert!(preflight.header("access-control-allow-origin").is_none());
        let read = server
            .request("GET", "/health")
            .header("Origin", disguised)
            .send()
            .await;
        assert!(read.header("access-control-allow-origin").is_none());
    }
}

// X-Forwarded-For with ports.

/// Signs a fresh user in through the loopback proxy with these `X-Forwarded-For` lines and
/// answers the remote-ip its one session records.
async fn recorded_remote_ip(server: &TestServer, email: &str, forwarded_lines: &[&str]) -> Value {
    server.add_user(email, Role::User, Status::Active).await;
    let mut request = server.request("POST", "/auth/sign-in");
    for line in forwarded_lines {
        request = request.header("X-Forwarded-For", line);
    }
    let response = request
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await;
    let signed_in = crate::support::SignedIn::from_response(&response);
    let sessions = server
        .request("GET", "/auth/session")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_eq!(sessions.json["sessions"].as_array().unwrap().len(), 1);
    sessions.json["sessions"][0]["remote-ip"].clone()
}

#[tokio::test]
async fn forwarded_for_entries_with_ports_are_recorded_as_their_address() {
    let server = TestServer::start_with(|config| {
        config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for (index, (forwarded_for, expected)) in [
        ("203.0.113.7:4711", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        (
            "198.51.100.1, 203.0.113.8:1234, 127.0.0.1:80",
            "203.0.113.8",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("user{index}@example.com");
        let recorded = recorded_remote_ip(&server, &email, &[forwarded_for]).await;
        assert_eq!(recorded, expected, "{forwarded_for}");
    }
    // A client's own line comes first; the trusted proxy's line after it is the one read.
    let recorded = recorded_remote_ip(
        &server,
        "two-lines@example.com",
        &["192.0.2.66", "203.0.113.9:5555"],
    )
    .await;
    assert_eq!(recorded, "203.0.113.9");
    // An untrusted peer's header is still ignored: the loopback peer is not trusted here.
    let untrusting = TestServer::start().await;
    let recorded =
        recorded_remote_ip(&untrusting, "direct@example.com", &["203.0.113.7:4711"]).await;
    assert_eq!(recorded, "127.0.0.1");
}

// X-Frame-Options on every HTML page.

#[tokio::test]
async fn every_html_page_forbids_framing_twice_over() {
    let server = TestServer::start().await;
    let page = |path: &str| page_request_to(server.address, "GET", path).send();
    let pages = [
        page("/sign-in").await,
        page("/verify?token=abc").await,
        page("/password-reset/confirm?token=abc").await,
        server
            .request("POST", "/auth/verify")
            .form(&[
                ("verify-token", "unknown"),
                ("x-recaptcha-token", "email-link"),
                ("respond", "html"),
            ])
            .send()
            .await,
        server
            .request("POST", "/auth/password-reset/confirm")
            .form(&[
                ("password-update-token", "unknown"),
                ("new-password", "a long new password"),
            ])
            .send()
            .await,
    ];
    for page in pages {
        assert!(
            page.header("content-type")
                .is_some_and(|value| value.starts_with("text/html")),
            "{}",
            page.text()
        );
        assert!(
            page.header("content-security-policy")
                .is_some_and(|value| value.contains("frame-ancestors 'none'"))
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
    }
}
