//! Forward auth (API.md section 9): `GET /auth/forward` alone (rules, trusted and untrusted
//! peers, the `Remote-*` headers, the cookie domain), then behind real nginx and Caddy
//! running the contrib files in front of an app that echoes what reaches it.

use latchkey::config::{Config, ForwardAuthRule};
use latchkey::model::{Permission, Role, Status};
use serde_json::json;

use crate::proxy_support::{APP_HOST, Browser, EchoUpstream, Proxy, echoed_header};
use crate::support::{PASSWORD, TestResponse, TestServer};

const AUTH_HOST: &str = "auth.example.com";

fn rule(host: &str, path_prefix: Option<&str>) -> ForwardAuthRule {
    ForwardAuthRule {
        host: host.to_owned(),
        path_prefix: path_prefix.map(str::to_owned),
        require_permission: None,
        require_role: None,
        deny: None,
    }
}

fn role_rule(host: &str, path_prefix: Option<&str>, role: Role) -> ForwardAuthRule {
    ForwardAuthRule {
        require_role: Some(role),
        ..rule(host, path_prefix)
    }
}

fn permission_rule(host: &str, permission: Permission) -> ForwardAuthRule {
    ForwardAuthRule {
        require_permission: Some(permission),
        ..rule(host, None)
    }
}

fn deny_rule(host: &str) -> ForwardAuthRule {
    ForwardAuthRule {
        deny: Some(true),
        ..rule(host, None)
    }
}

fn trust_loopback(config: &mut Config) {
    config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// Asks the forward endpoint about `original_url` with a bearer credential, as a proxy
/// on loopback would.
async fn ask(server: &TestServer, credential: &str, original_url: &str) -> TestResponse {
    ask_with(server, credential, &[("X-Original-URL", original_url)]).await
}

/// `GET /auth/forward` with `credential` and the proxy's `headers`.
async fn ask_with(server: &TestServer, credential: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut request = server.request("GET", "/auth/forward").bearer(credential);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await
}

fn assert_refused(response: &TestResponse, code: u64) {
    let body = response.assert_error(403);
    assert_eq!(body["code"], code, "{}", response.text());
}

#[tokio::test]
async fn the_first_matching_rule_decides_by_host_path_segments_role_and_permission() {
    let server = TestServer::start_with(|config| {
        trust_loopback(config);
        config.forward_auth.rules = vec![
            role_rule("grafana.example.com", Some("/admin"), Role::Admin),
            permission_rule("grafana.example.com", Permission::ReadAdmin),
            deny_rule("secret.example.com"),
        ];
    })
    .await;
    server
        .add_user("admin@example.com", Role::Admin, Status::Active)
        .await;
    server
        .add_user("user@example.com", Role::User, Status::Active)
        .await;
    let admin = server.sign_in("admin@example.com").await.signed_token;
    let user = server.sign_in("user@example.com").await.signed_token;

    // The role rule, by rank, over whole segments in any spelling.
    for path in [
        "/admin",
        "/admin/users?x=1",
        "/ADMIN/",
        "/public/../admin/x",
        "/%61dmin",
    ] {
        let url = format!("https://grafana.example.com{path}");
        assert_eq!(ask(&server, &admin, &url).await.status, 200, "{path}");
        let refused = ask(&server, &user, &url).await;
        assert_refused(&refused, 40320);
        assert_eq!(refused.json["context"]["role"], "admin");
    }
    // `/administrator` is not under `/admin`: the next rule, a permission, decides.
    let refused = ask(&server, &user, "https://grafana.example.com/administrator").await;
    assert_refused(&refused, 40300);
    assert_eq!(refused.json["context"]["permission"], "read:admin");
    let admin_answer = ask(
        &server,
        &admin,
        "https://Grafana.Example.com:8443/dashboard",
    )
    .await;
    assert_eq!(admin_answer.status, 200);

    // The permission is the credential's effective set, not the user's.
    let narrow_token = server
        .request("POST", "/auth/api-token")
        .bearer(&admin)
        .json(&json!({ "permissions": ["read:profile"] }))
        .send()
        .await;
    assert_eq!(narrow_token.status, 200, "{}", narrow_token.text());
    let narrow_token = narrow_token.json["token"].as_str().unwrap().to_owned();
    let refused = ask(
        &server,
        &narrow_token,
        "https://grafana.example.com/dashboard",
    )
    .await;
    assert_refused(&refused, 40300);
    // A role rule holds the credential to its holder's whole set: the admin's narrowed
    // token does not pass as the admin (API.md 15.2).
    assert_refused(
        &ask(&server, &narrow_token, "https://grafana.example.com/admin").await,
        40320,
    );

    // Deny refuses everyone; a host no rule names lets any valid credential through.
    assert_refused(
        &ask(&server, &admin, "https://secret.example.com/").await,
        40321,
    );
    assert_eq!(
        ask(&server, &user, "https://wiki.example.com/admin")
            .await
            .status,
        200
    );

    // Caddy's and Traefik's form of the same URL meets the same rule.
    let forwarded = ask_with(
        &server,
        &user,
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "grafana.example.com"),
            ("X-Forwarded-Uri", "/admin/x"),
            ("X-Forwarded-Method", "GET"),
        ],
    )
    .await;
    assert_refused(&forwarded, 40320);

    // With rules set, a request that names no URL, or two that disagree, passes nowhere.
    let unnamed = ask_with(&server, &admin, &[]).await;
    assert_refused(&unnamed, 40322);
    let disagreeing = ask_with(
        &server,
        &admin,
        &[
            ("X-Original-URL", "https://wiki.example.com/"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "secret.example.com"),
            ("X-Forwarded-Uri", "/"),
        ],
    )
    .await;
    assert_refused(&disagreeing, 40322);
    server.stop().await;
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let adjust = |config: &mut Config| {
        config.forward_auth.rules = vec![deny_rule("secret.example.com")];
        config.auth.allowed_return_origins = vec!["https://app.example.com".parse().unwrap()];
    };
    let untrusted = TestServer::start_with(|config| {
        adjust(config);
        config.server.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let trusted = TestServer::start_with(|config| {
        adjust(config);
        trust_loopback(config);
    })
    .await;
    for server in [&untrusted, &trusted] {
        server
            .add_user("user@example.com", Role::User, Status::Active)
            .await;
    }
    let untrusted_user = untrusted.sign_in("user@example.com").await.signed_token;
    let trusted_user = trusted.sign_in("user@example.com").await.signed_token;

    // The claimed URL is not read: the rules cannot be applied (not "denied by the rule").
    let ignored = ask(&untrusted, &untrusted_user, "https://secret.example.com/").await;
    assert_refused(&ignored, 40322);
    assert_refused(
        &ask(&trusted, &trusted_user, "https://secret.example.com/").await,
        40321,
    );

    // Nor is it carried to the sign-in page.
    let redirect = |server: &TestServer| {
        server
            .request("GET", "/auth/forward")
            .query("redirect=true")
            .header("X-Original-URL", "https://app.example.com/reports?id=7")
            .send()
    };
    let from_untrusted = redirect(&untrusted).await;
    assert_eq!(from_untrusted.status, 302);
    assert_eq!(
        from_untrusted.header("location"),
        Some(format!("{}/sign-in", untrusted.origin()).as_str())
    );
    let from_trusted = redirect(&trusted).await;
    assert_eq!(from_trusted.status, 302);
    assert_eq!(
        from_trusted.header("location"),
        Some(
            format!(
                "{}/sign-in?ret-url=https%3A%2F%2Fapp.example.com%2Freports%3Fid%3D7",
                trusted.origin()
            )
            .as_str()
        )
    );
    untrusted.stop().await;
    trusted.stop().await;
}

#[tokio::test]
async fn the_answer_names_the_user_and_the_missing_credential_gets_401_or_the_sign_in_page() {
    let server = TestServer::start_with(|config| {
        trust_loopback(config);
        config.auth.allowed_return_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    let user = server
        .add_user("Zoe@Example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("zoe@example.com").await;
    let renamed = server
        .request("PUT", "/user/current")
        .bearer(&signed_in.signed_token)
        .json(&json!({ "first-name": "Zoë", "last-name": "Ångström" }))
        .send()
        .await;
    assert_eq!(renamed.status, 200);
    let sessions = server
        .request("GET", "/auth/session")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    let session_id = sessions.json["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for method in ["GET", "HEAD"] {
        let answer = server
            .request(method, "/auth/forward")
            .bearer(&signed_in.signed_token)
            .header("X-Original-URL", "https://app.example.com/")
            .send()
            .await;
        assert_eq!(answer.status, 200, "{method}");
        assert!(answer.body.is_empty());
        assert_eq!(answer.header("remote-user"), Some("zoe@example.com"));
        assert_eq!(answer.header("remote-email"), Some("Zoe@Example.com"));
        assert_eq!(answer.header("remote-name"), Some("Zoë Ångström"));
        assert_eq!(answer.header("remote-groups"), Some("user"));
        assert_eq!(answer.header("remote-role"), Some("user"));
        assert_eq!(
            answer.header("remote-user-id"),
            Some(user.id.to_string().as_str())
        );
        let expected_permissions = Role::User.default_permissions().names().join(",");
        assert_eq!(
            answer.header("remote-permissions"),
            Some(expected_permissions.as_str())
        );
        let mut sorted: Vec<&str> = expected_permissions.split(',').collect();
        sorted.sort_unstable();
        assert_eq!(sorted.join(","), expected_permissions);
        assert_eq!(answer.header("remote-session"), Some(session_id.as_str()));
        assert_eq!(answer.header("cache-control"), Some("no-store"));
    }

    // A standalone API token belongs to no session.
    let api_token = server
        .request("POST", "/auth/api-token")
        .bearer(&signed_in.signed_token)
        .json(&json!({}))
        .send()
        .await;
    let api_token = api_token.json["token"].as_str().unwrap().to_owned();
    let by_token = ask(&server, &api_token, "https://app.example.com/").await;
    assert_eq!(by_token.status, 200);
    assert_eq!(by_token.header("remote-session"), Some(""));
    assert_eq!(by_token.header("remote-user"), Some("zoe@example.com"));

    // No credential, or a bad one: 401, unless the proxy asks for the way to sign in.
    for credential in [None, Some("v4.public.forged")] {
        let mut request = server
            .request("GET", "/auth/forward")
            .header("X-Original-URL", "https://app.example.com/x");
        if let Some(credential) = credential {
            request = request.bearer(credential);
        }
        request.send().await.assert_error(401);
        let mut request = server
            .request("GET", "/auth/forward")
            .query("redirect=true")
            .header("X-Original-URL", "https://app.example.com/x");
        if let Some(credential) = credential {
            request = request.bearer(credential);
        }
        let redirected = request.send().await;
        assert_eq!(redirected.status, 302);
        assert_eq!(
            redirected.header("location"),
            Some(
                format!(
                    "{}/sign-in?ret-url=https%3A%2F%2Fapp.example.com%2Fx",
                    server.origin()
                )
                .as_str()
            )
        );
    }
    // An origin the ret-url rule does not allow is left out; a form post is not redirected.
    let foreign = server
        .request("GET", "/auth/forward")
        .query("redirect=true")
        .header("X-Original-URL", "https://evil.example/x")
        .send()
        .await;
    assert_eq!(
        foreign.header("location"),
        Some(format!("{}/sign-in", server.origin()).as_str())
    );
    let posted = server
        .request("GET", "/auth/forward")
        .query("redirect=true")
        .header("X-Original-URL", "https://app.example.com/x")
        .header("X-Forwarded-Method", "POST")
        .send()
        .await;
    posted.assert_error(401);
    server
        .request("GET", "/auth/forward")
        .query("redirect=maybe")
        .send()
        .await
        .assert_error(400);
    server.stop().await;
}

#[tokio::test]
async fn a_cookie_domain_serves_subdomains_without_widening_the_origin_rules() {
    let server = TestServer::start_with(|config| {
        trust_loopback(config);
        config.server.public_url = Some("https://auth.example.com".parse().unwrap());
        config.session.cookie_domain = Some("example.com".to_owned());
    })
    .await;
    server
        .add_user("user@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server
        .sign_in_with_password("user@example.com", PASSWORD)
        .await;
    let cookies: Vec<&str> = signed_in
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    // A host-only cookie from before the domain was set is cleared, then the domain one set.
    assert!(cookies[0].starts_with("jwt=;") && cookies[0].contains("Max-Age=0"));
    assert!(!cookies[0].contains("Domain="));
    assert!(cookies[1].contains("; Domain=example.com") && cookies[1].contains("; Secure"));
    let token = signed_in.json["jwt-token"]["token"].as_str().unwrap();
    let cookie = format!("jwt={token}");

    // A subdomain is no allowed origin unless the operator lists it: neither for writes with
    // the cookie (CSRF) nor as a place to return to.
    let from_app = server
        .request("PUT", "/user/current")
        .header("Cookie", &cookie)
        .header("Origin", "https://app.example.com")
        .json(&json!({ "first-name": "A" }))
        .send()
        .await;
    assert_eq!(from_app.assert_error(403)["code"], 40303);
    let from_auth = server
        .request("PUT", "/user/current")
        .header("Cookie", &cookie)
        .header("Origin", "https://auth.example.com")
        .json(&json!({ "first-name": "A" }))
        .send()
        .await;
    assert_eq!(from_auth.status, 200);
    let redirect = server
        .request("GET", "/auth/forward")
        .query("redirect=true")
        .header("X-Original-URL", "https://app.example.com/x")
        .send()
        .await;
    assert_eq!(
        redirect.header("location"),
        Some("https://auth.example.com/sign-in")
    );
    server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "user@example.com", "password": PASSWORD,
                       "ret-url": "https://app.example.com/x" }))
        .send()
        .await
        .assert_error(400);

    // The cookie passes forward auth, and signing out clears both cookies.
    let answer = server
        .request("GET", "/auth/forward")
        .header("Cookie", &cookie)
        .header("X-Original-URL", "https://app.example.com/x")
        .send()
        .await;
    assert_eq!(answer.status, 200);
    let signed_out = server
        .request("DELETE", "/auth/sign-out")
        .header("Cookie", &cookie)
        .header("Origin", "https://auth.example.com")
        .send()
        .await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.text());
    let cleared: Vec<&str> = signed_out
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(cleared.len(), 2);
    assert!(cleared.iter().all(|cookie| cookie.contains("Max-Age=0")));
    assert!(cleared[1].contains("Domain=example.com"));
    server.stop().await;
}

/// Which contrib file runs in front of the app.
#[derive(Clone, Copy, Debug)]
enum ProxyKind {
    Nginx,
    Caddy,
}

/// Latchkey at `auth.example.com` (any port) behind `kind`, serving `app.example.com`:
/// loopback trusted, the cookie for `example.com`, the app's origin allowed as a ret-url.
async fn latchkey_behind(
    kind: ProxyKind,
    rules: Vec<ForwardAuthRule>,
) -> (TestServer, Proxy, EchoUpstream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let latchkey = listener.local_addr().unwrap();
    let upstream = EchoUpstream::start().await;
    let proxy = match kind {
        ProxyKind::Nginx => Proxy::start_nginx(latchkey, upstream.address).await,
        ProxyKind::Caddy => Proxy::start_caddy(latchkey, upstream.address).await,
    };
    let app_origin = proxy.app_origin();
    let server = TestServer::start_on_listener(listener, |config| {
        trust_loopback(config);
        config.server.public_url = Some(
            format!("http://{AUTH_HOST}:{}", latchkey.port())
                .parse()
                .unwrap(),
        );
        config.session.cookie_domain = Some("example.com".to_owned());
        config.auth.allowed_return_origins = vec![app_origin.parse().unwrap()];
        config.forward_auth.rules = rules;
    })
    .await;
    (server, proxy, upstream)
}

/// Signs in on the hosted sign-in page the proxy sent the browser to, as a person would:
/// the page's form (its CSRF token and the `ret-url` it carries) filled in and submitted.
/// Answers where the page sends the browser next.
async fn sign_in_where_sent(browser: &mut Browser, sign_in_location: &str, email: &str) -> String {
    let location = url::Url::parse(sign_in_location).unwrap();
    assert_eq!(location.path(), "/sign-in");
    let page = browser.get(sign_in_location).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let hidden = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).expect("the form carries the field") + marker.len();
        html[start..]
            .split('"')
            .next()
            .unwrap()
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    };
    let csrf_token = hidden("csrf-token");
    let return_url = hidden("ret-url");
    assert!(!return_url.is_empty(), "{html}");
    let page_origin = location.origin().ascii_serialization();
    let signed_in = browser
        .send(
            "POST",
            &format!("{page_origin}/sign-in"),
            &[("Origin", &page_origin)],
            Some(&[
                ("csrf-token", &csrf_token),
                ("ret-url", &return_url),
                ("email", email),
                ("password", PASSWORD),
            ]),
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    signed_in.header("location").unwrap().to_owned()
}

/// Headers a client forges, hoping the app takes them for Latchkey's.
const FORGED: [(&str, &str); 5] = [
    ("Remote-User", "mallory@example.com"),
    ("Remote-Role", "root"),
    ("Remote-Groups", "root"),
    ("Remote-Name", "Forged Name"),
    ("Remote-Permissions", "write:admin"),
];

fn assert_no_forged_value(echoed: &str) {
    for (name, value) in FORGED {
        assert!(
            !echoed_header(echoed, name).iter().any(|seen| seen == value),
            "the client's {name} reached the app:\n{echoed}"
        );
    }
}

/// The whole visit: anonymous, sent to sign in, back at the first URL, and the app sees who
/// it is and never what the client forged; the proxy also applies a rule; then the session
/// ends (`end`) and the very next request is refused with the old cookie.
async fn visit_through(kind: ProxyKind, end_by_revocation: bool) {
    let rules = vec![
        role_rule(APP_HOST, Some("/admin"), Role::Admin),
        ForwardAuthRule {
            deny: Some(true),
            ..rule(APP_HOST, Some("/internal"))
        },
    ];
    let (server, proxy, _upstream) = latchkey_behind(kind, rules).await;
    let user = server
        .add_user("visitor@example.com", Role::User, Status::Active)
        .await;
    let mut browser = Browser::default();
    let first_url = proxy.app_url("/reports/2026?tab=sales&sort=desc");

    let anonymous = browser.send("GET", &first_url, &FORGED, None).await;
    assert_eq!(
        anonymous.status,
        302,
        "{kind:?}: {}\n{}",
        anonymous.text(),
        proxy.log()
    );
    let sign_in_location = anonymous.header("location").unwrap().to_owned();
    assert!(
        sign_in_location.starts_with(&format!(
            "http://{AUTH_HOST}:{}/sign-in?ret-url=",
            server.address.port()
        )),
        "{sign_in_location}"
    );
    assert!(echoed_header(&anonymous.text(), "remote-user").is_empty());

    let back_at = sign_in_where_sent(&mut browser, &sign_in_location, "visitor@example.com").await;
    assert_eq!(back_at, first_url);
    let arrived = browser.send("GET", &back_at, &FORGED, None).await;
    assert_eq!(
        arrived.status,
        200,
        "{kind:?}: {}\n{}",
        arrived.text(),
        proxy.log()
    );
    let echoed = arrived.text();
    assert!(
        echoed.starts_with("GET /reports/2026?tab=sales&sort=desc\n"),
        "{echoed}"
    );
    assert_eq!(
        echoed_header(&echoed, "remote-user"),
        ["visitor@example.com"]
    );
    assert_eq!(echoed_header(&echoed, "remote-role"), ["user"]);
    assert_eq!(echoed_header(&echoed, "remote-groups"), ["user"]);
    assert_eq!(
        echoed_header(&echoed, "remote-user-id"),
        [user.id.to_string()]
    );
    assert_no_forged_value(&echoed);
    assert!(
        echoed_header(&echoed, "cookie")
            .iter()
            .all(|cookie| !cookie.contains("jwt=")),
        "{kind:?}: the session cookie reached the app:\n{echoed}"
    );
    let session_id = echoed_header(&echoed, "remote-session")
        .pop()
        .expect("the app sees the session");

    // A form post passes too (Latchkey is asked with GET whatever the method); anonymous, it
    // gets the 401, not a redirect that would lose the form.
    let posted = browser
        .send(
            "POST",
            &proxy.app_url("/reports/new"),
            &[],
            Some(&[("title", "q3")]),
        )
        .await;
    assert_eq!(posted.status, 200, "{kind:?}: {}", posted.text());
    assert!(posted.text().starts_with("POST /reports/new\n"));
    assert_eq!(
        echoed_header(&posted.text(), "remote-user"),
        ["visitor@example.com"]
    );
    let anonymous_post = Browser::default()
        .send(
            "POST",
            &proxy.app_url("/reports/new"),
            &[],
            Some(&[("title", "q3")]),
        )
        .await;
    assert_eq!(
        anonymous_post.status,
        401,
        "{kind:?}: {}",
        anonymous_post.text()
    );

    // The rules, through the proxy: a role's rank on a path prefix, and deny.
    let admin_area = browser.get(&proxy.app_url("/admin/settings")).await;
    assert_eq!(admin_area.status, 403, "{kind:?}");
    assert_eq!(
        browser.get(&proxy.app_url("/administrator")).await.status,
        200
    );
    assert_eq!(browser.get(&proxy.app_url("/internal/x")).await.status, 403);
    // Another name in Host (the cookie covers it) does not take the request out of the
    // app's rules: nginx names its own server, Caddy serves no such site.
    let other_host = browser
        .get(&format!(
            "http://other.example.com:{}/admin/settings",
            proxy.port
        ))
        .await;
    assert!(
        !echoed_header(&other_host.text(), "remote-user")
            .contains(&"visitor@example.com".to_owned()),
        "{kind:?}: {} {}",
        other_host.status,
        other_host.text()
    );

    // The session ends; the cookie the browser still holds is refused on the next request.
    let old_cookies = browser.clone();
    if end_by_revocation {
        let other = server.sign_in("visitor@example.com").await;
        let revoked = server
            .request("DELETE", &format!("/auth/session/{session_id}"))
            .bearer(&other.signed_token)
            .send()
            .await;
        assert_eq!(revoked.status, 204, "{}", revoked.text());
    } else {
        let auth_origin = format!("http://{AUTH_HOST}:{}", server.address.port());
        let signed_out = browser
            .send(
                "DELETE",
                &format!("{auth_origin}/frontend/api/v1/auth/sign-out"),
                &[("Origin", &auth_origin)],
                None,
            )
            .await;
        assert_eq!(signed_out.status, 200, "{}", signed_out.text());
        assert!(!browser.has_cookie("jwt"));
    }
    let mut replaying = old_cookies;
    let refused = replaying.send("GET", &first_url, &FORGED, None).await;
    assert_eq!(refused.status, 302, "{kind:?}: {}", refused.text());
    assert!(echoed_header(&refused.text(), "remote-user").is_empty());
    drop(proxy);
    server.stop().await;
}

#[tokio::test]
async fn nginx_sends_a_visitor_to_sign_in_and_back_and_refuses_a_signed_out_cookie() {
    visit_through(ProxyKind::Nginx, false).await;
}

#[tokio::test]
async fn caddy_sends_a_visitor_to_sign_in_and_back_and_refuses_a_revoked_session() {
    visit_through(ProxyKind::Caddy, true).await;
}

/// Sends `target` through the proxy exactly as written (no client library tidies it up),
/// with `credential` as a bearer token.
async fn send_raw_target(proxy: &Proxy, target: &str, credential: &str) -> TestResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {APP_HOST}:{}\r\nAuthorization: Bearer {credential}\r\n\
         Connection: close\r\n\r\n",
        proxy.port
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    TestResponse::parse(&raw)
}

/// nginx hands the app a request target's `#` as it came, and an app that resolves
/// `/public#/../admin` as a path serves `/admin`: the rule for `/admin` must not be walked
/// around by a fragment the rules would drop.
#[tokio::test]
async fn a_fragment_in_the_request_target_does_not_walk_around_a_rule() {
    let rules = vec![deny_rule_under(APP_HOST, "/admin")];
    let (server, proxy, _upstream) = latchkey_behind(ProxyKind::Nginx, rules).await;
    server
        .add_user("user@example.com", Role::User, Status::Active)
        .await;
    let token = server.sign_in("user@example.com").await.signed_token;

    assert_eq!(send_raw_target(&proxy, "/public", &token).await.status, 200);
    for target in ["/admin", "/public#/../admin", "/public/x#/../../admin/"] {
        let response = send_raw_target(&proxy, target, &token).await;
        assert_eq!(response.status, 403, "{target}: {}", response.text());
    }
    // Asked directly, a URL with a fragment is not believed: no rule can be applied to it.
    let original = format!("http://{APP_HOST}/public#/../admin");
    assert_refused(&ask(&server, &token, &original).await, 40322);
    server.stop().await;
}

fn deny_rule_under(host: &str, path_prefix: &str) -> ForwardAuthRule {
    ForwardAuthRule {
        deny: Some(true),
        ..rule(host, Some(path_prefix))
    }
}
