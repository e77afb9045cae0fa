//! The tightened rules of API.md section 15 around OAuth sign-in and the throttles, each
//! reproduced as an attack against a real server (and, for OAuth, the loopback provider of
//! `oauth_provider`): linking by email only to a verified plain account (15.4), unverified
//! provider emails making no accounts (15.4), refusals that do not tell whether an address
//! has an account (15.10), OAuth sign-in throttled per network (15.13), the per-address
//! ceilings counting every network (15.9), and `POST /user` limited per caller (15.10).

use latchkey::config::{Config, OAuthProviderConfig};
use latchkey::model::{NewUser, Role, Status, User};
use serde_json::{Value, json};

use crate::oauth_provider::{AccessTokenGrant, CLIENT_ID, TestProvider};
use crate::support::{PASSWORD, TestResponse, TestServer};

const LINKING: &str = "linking";
const NOT_LINKING: &str = "not-linking";
const USERINFO: &str = "userinfo";

/// A server that believes X-Forwarded-For from loopback, so a test can speak as many
/// networks; the network throttle is out of the way unless `adjust` sets it.
async fn server_with(
    providers: Vec<OAuthProviderConfig>,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    TestServer::start_with(|config| {
        config.oauth.providers = providers;
        config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        config.throttle.failures_per_network = 1000;
        adjust(config);
    })
    .await
}

async fn oauth_from(server: &TestServer, network: &str, body: Value) -> TestResponse {
    server
        .request("POST", "/auth/oauth-sign-in")
        .header("X-Forwarded-For", network)
        .json(&body)
        .send()
        .await
}

fn sign_in_body(provider: &str, token: &str) -> Value {
    json!({ "oauth-provider-token": { "provider": provider, "token": token } })
}

fn check_body(provider: &str, token: &str) -> Value {
    json!({ "check-auth": true, "oauth-provider-token": { "provider": provider, "token": token } })
}

/// Inserts a user straight into the store with the given verification flag.
async fn insert_user(
    server: &TestServer,
    email: &str,
    role: Role,
    status: Status,
    email_verified: bool,
    parent_id: Option<u64>,
) -> User {
    let hash = latchkey::auth::password::hash_once(
        &latchkey::auth::password::Password::new(PASSWORD.to_owned()),
        server.cost(),
    )
    .unwrap();
    server
        .app
        .store
        .insert_user(
            NewUser {
                email: email.to_owned(),
                normalized_email: email.to_owned(),
                password_hash: Some(hash),
                role,
                status,
                parent_id,
                first_name: None,
                last_name: None,
                permissions: role.default_permissions(),
                email_verified,
            },
            server.now(),
        )
        .await
        .unwrap()
}

/// What a refused link must leave alone.
async fn account_state(server: &TestServer, user_id: u64) -> (Status, bool, bool, u64, i64, usize) {
    let user = server.app.store.user_by_id(user_id).await.unwrap().unwrap();
    (
        user.status,
        user.password_hash.is_some(),
        user.email_verified,
        user.credential_version,
        user.updated,
        server
            .app
            .store
            .identities_of_user(user_id)
            .await
            .unwrap()
            .len(),
    )
}

/// Two providers on the same loopback IdP: one links by verified email, one does not;
/// neither creates accounts.
fn linking_and_not(provider: &TestProvider) -> Vec<OAuthProviderConfig> {
    vec![
        OAuthProviderConfig {
            link_by_verified_email: true,
            allow_sign_up: Some(false),
            ..provider.oidc_config(LINKING)
        },
        OAuthProviderConfig {
            allow_sign_up: Some(false),
            ..provider.oidc_config(NOT_LINKING)
        },
    ]
}

#[tokio::test]
async fn linking_by_email_reaches_only_a_verified_active_plain_user() {
    let provider = TestProvider::start().await;
    let server = server_with(linking_and_not(&provider), |_| {}).await;
    let parent = insert_user(
        &server,
        "parent@example.com",
        Role::User,
        Status::Active,
        true,
        None,
    )
    .await;
    let refused_accounts = [
        // A sign-up that never used its link: whoever set its password never proved the
        // address, and linking used to activate it for the provider's user.
        insert_user(
            &server,
            "pending@example.com",
            Role::User,
            Status::Pending,
            false,
            None,
        )
        .await,
        // Active but unverified (say, allowed to sign in before verifying).
        insert_user(
            &server,
            "unverified@example.com",
            Role::User,
            Status::Active,
            false,
            None,
        )
        .await,
        // A sub-user, even one whose address is verified.
        insert_user(
            &server,
            "sub@example.com",
            Role::Sub,
            Status::Active,
            true,
            Some(parent.id),
        )
        .await,
        insert_user(
            &server,
            "root@example.com",
            Role::Root,
            Status::Active,
            true,
            None,
        )
        .await,
        insert_user(
            &server,
            "admin@example.com",
            Role::Admin,
            Status::Active,
            true,
            None,
        )
        .await,
        insert_user(
            &server,
            "suspended@example.com",
            Role::User,
            Status::Suspended,
            true,
            None,
        )
        .await,
    ];
    for (index, account) in refused_accounts.iter().enumerate() {
        let before = account_state(&server, account.id).await;
        let token =
            provider
                .rsa
                .sign(&provider.claims(&format!("attacker-{index}"), &account.email, true));
        let response = oauth_from(&server, "198.51.100.1", sign_in_body(LINKING, &token)).await;
        assert_eq!(
            response.assert_error(403)["code"],
            40306,
            "{}",
            account.email
        );
        assert_eq!(
            account_state(&server, account.id).await,
            before,
            "{} was changed or linked",
            account.email
        );
    }
    // The pending account's own password still works once its owner verifies.
    let verified = server
        .app
        .store
        .user_by_id(refused_accounts[0].id)
        .await
        .unwrap();
    assert_eq!(verified.unwrap().status, Status::Pending);

    // A verified active user is linked and signed in.
    let token = provider
        .rsa
        .sign(&provider.claims("owner", "parent@example.com", true));
    let response = oauth_from(&server, "198.51.100.1", sign_in_body(LINKING, &token)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json["user-id"], parent.id);
    server.stop().await;
}

#[tokio::test]
async fn an_unverified_provider_email_creates_no_account_unless_the_provider_allows_it() {
    let provider = TestProvider::start().await;
    let open = OAuthProviderConfig {
        allow_sign_up: Some(true),
        ..provider.oidc_config(LINKING)
    };
    let server = server_with(vec![open.clone()], |_| {}).await;
    let token = provider
        .p256
        .sign(&provider.claims("newcomer", "claimed@example.com", false));
    let response = oauth_from(&server, "198.51.100.1", sign_in_body(LINKING, &token)).await;
    assert_eq!(response.assert_error(403)["code"], 40306);
    assert!(server.app.store.all_users().await.unwrap().is_empty());
    let checked = oauth_from(&server, "198.51.100.1", check_body(LINKING, &token)).await;
    assert_eq!(checked.json["check-auth-result"]["ok"], false);
    server.stop().await;

    let allowing = OAuthProviderConfig {
        allow_unverified_email_sign_up: true,
        ..open
    };
    let server = server_with(vec![allowing], |_| {}).await;
    let response = oauth_from(&server, "198.51.100.1", sign_in_body(LINKING, &token)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let user = server
        .app
        .store
        .user_by_normalized_email("claimed@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(!user.email_verified, "nobody proved this address");
    // A verified one still makes a verified account.
    let token = provider
        .p256
        .sign(&provider.claims("proved", "proved@example.com", true));
    let response = oauth_from(&server, "198.51.100.1", sign_in_body(LINKING, &token)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let user = server
        .app
        .store
        .user_by_normalized_email("proved@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(user.email_verified);
    server.stop().await;
}

#[tokio::test]
async fn every_oauth_refusal_reads_the_same_whether_or_not_the_address_has_an_account() {
    let provider = TestProvider::start().await;
    let mut providers = linking_and_not(&provider);
    providers.push(OAuthProviderConfig {
        allow_sign_up: Some(true),
        ..provider.oidc_config("open")
    });
    let server = server_with(providers, |_| {}).await;
    let parent = insert_user(
        &server,
        "taken@example.com",
        Role::User,
        Status::Active,
        true,
        None,
    )
    .await;
    insert_user(
        &server,
        "root@example.com",
        Role::Root,
        Status::Active,
        true,
        None,
    )
    .await;
    insert_user(
        &server,
        "admin@example.com",
        Role::Admin,
        Status::Active,
        true,
        None,
    )
    .await;
    insert_user(
        &server,
        "sub@example.com",
        Role::Sub,
        Status::Active,
        false,
        Some(parent.id),
    )
    .await;
    insert_user(
        &server,
        "pending@example.com",
        Role::User,
        Status::Pending,
        false,
        None,
    )
    .await;
    insert_user(
        &server,
        "unverified@example.com",
        Role::User,
        Status::Active,
        false,
        None,
    )
    .await;
    insert_user(
        &server,
        "suspended@example.com",
        Role::User,
        Status::Suspended,
        true,
        None,
    )
    .await;
    let no_email = {
        let mut claims = provider.claims("no-email", "x@example.com", true);
        claims.as_object_mut().unwrap().remove("email");
        claims
    };
    // (what it shows, provider, claims)
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "sign-up closed, free address",
            LINKING,
            provider.claims("s1", "free@example.com", true),
        ),
        (
            "unverified email, free address",
            "open",
            provider.claims("s2", "free@example.com", false),
        ),
        (
            "unverified email, taken address",
            LINKING,
            provider.claims("s3", "taken@example.com", false),
        ),
        (
            "linking off, taken address",
            NOT_LINKING,
            provider.claims("s4", "taken@example.com", true),
        ),
        (
            "sign-up open, taken address, linking off",
            "open",
            provider.claims("s5", "taken@example.com", true),
        ),
        (
            "root",
            LINKING,
            provider.claims("s6", "root@example.com", true),
        ),
        (
            "admin",
            LINKING,
            provider.claims("s7", "admin@example.com", true),
        ),
        (
            "sub-user",
            LINKING,
            provider.claims("s8", "sub@example.com", true),
        ),
        (
            "pending account",
            LINKING,
            provider.claims("s9", "pending@example.com", true),
        ),
        (
            "unverified account",
            LINKING,
            provider.claims("s10", "unverified@example.com", true),
        ),
        (
            "suspended account",
            LINKING,
            provider.claims("s11", "suspended@example.com", true),
        ),
        ("no email", "open", no_email),
    ];
    let mut refusals: Vec<(&str, u16, Option<String>, Value)> = Vec::new();
    let mut verdicts: Vec<(&str, Value)> = Vec::new();
    for (case, provider_name, claims) in &cases {
        let token = provider.rsa.sign(claims);
        let response =
            oauth_from(&server, "198.51.100.1", sign_in_body(provider_name, &token)).await;
        response.assert_error(403);
        refusals.push((
            case,
            response.status,
            response.header("retry-after").map(str::to_owned),
            response.json.clone(),
        ));
        let checked = oauth_from(&server, "198.51.100.1", check_body(provider_name, &token)).await;
        assert_eq!(checked.status, 200, "{case}: {}", checked.text());
        verdicts.push((case, checked.json.clone()));
    }
    let (first_case, status, retry_after, body) = &refusals[0];
    for (case, other_status, other_retry_after, other_body) in &refusals[1..] {
        assert_eq!(
            (other_status, other_retry_after, other_body),
            (status, retry_after, body),
            "{case} reads differently from {first_case}"
        );
    }
    let (first_case, verdict) = &verdicts[0];
    assert_eq!(verdict["check-auth-result"]["ok"], false);
    for (case, other_verdict) in &verdicts[1..] {
        assert_eq!(
            other_verdict, verdict,
            "check-auth: {case} reads differently from {first_case}"
        );
    }
    // Nothing was created or linked.
    assert_eq!(server.app.store.all_users().await.unwrap().len(), 7);
    assert!(
        server
            .app
            .store
            .identities_of_user(parent.id)
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn oauth_sign_in_is_throttled_per_network_before_any_provider_call() {
    let provider = TestProvider::start().await;
    let config = OAuthProviderConfig {
        allow_sign_up: Some(true),
        ..provider.userinfo_config(USERINFO)
    };
    let server = server_with(vec![config], |config| {
        config.throttle.failures_per_network = 3;
    })
    .await;
    let grant = AccessTokenGrant {
        client_id: CLIENT_ID.to_owned(),
        active: true,
        userinfo: json!({ "id": 7, "email": "octo@example.com", "email_verified": true }),
    };
    provider.grant_access_token("gho_good", grant);
    let attacker = "198.51.100.66";

    // Successes do not drain the bucket.
    for _ in 0..4 {
        let response = oauth_from(&server, "203.0.113.9", sign_in_body(USERINFO, "gho_good")).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // Three guessed tokens (two sign-ins and a check-auth) spend the attacker's network.
    for body in [
        sign_in_body(USERINFO, "gho_guess_1"),
        check_body(USERINFO, "gho_guess_2"),
        sign_in_body(USERINFO, "gho_guess_3"),
    ] {
        let response = oauth_from(&server, attacker, body).await;
        assert!(
            response.status == 401 || response.status == 200,
            "{}",
            response.text()
        );
    }
    let calls_before = provider.introspection_requests();
    let sessions_before = server.app.store.session_count().await.unwrap();
    for body in [
        sign_in_body(USERINFO, "gho_guess_4"),
        check_body(USERINFO, "gho_guess_5"),
        // Even a good token: no provider call, no session written.
        sign_in_body(USERINFO, "gho_good"),
    ] {
        let response = oauth_from(&server, attacker, body).await;
        assert_eq!(response.assert_error(429)["code"], 42900);
        let retry_after: u64 = response.header("retry-after").unwrap().parse().unwrap();
        assert!(retry_after >= 1);
    }
    assert_eq!(provider.introspection_requests(), calls_before);
    assert_eq!(
        server.app.store.session_count().await.unwrap(),
        sessions_before
    );

    // The bucket is the one failed passwords drain: password sign-in is held back too.
    let password = server
        .request("POST", "/auth/sign-in")
        .header("X-Forwarded-For", attacker)
        .json(&json!({ "email": "octo@example.com", "password": PASSWORD }))
        .send()
        .await;
    password.assert_error(429);

    // Another network is not held back.
    let response = oauth_from(&server, "192.0.2.44", sign_in_body(USERINFO, "gho_good")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    server.stop().await;
}

#[tokio::test]
async fn rotating_networks_buys_no_guesses_beyond_the_account_ceiling() {
    let server = server_with(Vec::new(), |_| {}).await;
    server
        .add_user("target@example.com", Role::User, Status::Active)
        .await;
    // One guess from each of 20 networks spends the account's 20 a minute.
    for index in 0..20 {
        let response = server
            .request("POST", "/auth/sign-in")
            .header("X-Forwarded-For", &format!("2001:db8:{index:x}::1"))
            .json(&json!({ "email": "target@example.com", "password": "guess guess" }))
            .send()
            .await;
        assert_eq!(response.assert_error(401)["code"], 40101);
    }
    // A 21st network gets no fresh guess, whatever it sends.
    let response = server
        .request("POST", "/auth/sign-in")
        .header("X-Forwarded-For", "2001:db8:ffff::1")
        .json(&json!({ "email": "target@example.com", "password": PASSWORD }))
        .send()
        .await;
    response.assert_error(429);
    assert!(response.header("retry-after").is_some());
    server.stop().await;
}

#[tokio::test]
async fn reset_requests_for_one_address_count_every_network() {
    let server = server_with(Vec::new(), |_| {}).await;
    server
        .add_user("target@example.com", Role::User, Status::Active)
        .await;
    let reset_from = |network: String| {
        server
            .request("POST", "/auth/password-reset")
            .header("X-Forwarded-For", &network)
            .json(&json!({ "email": "target@example.com" }))
            .send()
    };
    // `[signup] requests_per_address` is 5 a minute, from every network together.
    for index in 0..5 {
        let response = reset_from(format!("198.51.100.{index}")).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let response = reset_from("203.0.113.200".to_owned()).await;
    assert_eq!(response.assert_error(429)["code"], 42900);
    server.stop().await;
}

#[tokio::test]
async fn sub_user_creation_is_limited_per_caller() {
    let server = server_with(Vec::new(), |config| {
        config.throttle.sub_users_per_caller_per_hour = 3;
    })
    .await;
    server
        .add_user("prober@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("other@example.com", Role::User, Status::Active)
        .await;
    server
        .add_user("victim@example.com", Role::User, Status::Active)
        .await;
    let prober = server.sign_in("prober@example.com").await;
    let other = server.sign_in("other@example.com").await;
    let create = |credential: String, email: &'static str| {
        server
            .request("POST", "/user")
            .bearer(&credential)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
    };
    // Probing addresses: a taken one answers 409, a free one 201; each counts.
    assert_eq!(
        create(prober.signed_token.clone(), "victim@example.com")
            .await
            .status,
        409
    );
    assert_eq!(
        create(prober.signed_token.clone(), "free-1@example.com")
            .await
            .status,
        201
    );
    // Another credential of the same caller draws on the same bucket.
    assert_eq!(
        create(prober.api_token.clone(), "free-2@example.com")
            .await
            .status,
        201
    );
    let refused = create(prober.signed_token.clone(), "free-3@example.com").await;
    assert_eq!(refused.assert_error(429)["code"], 42900);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry_after >= 60,
        "one creation back every 20 minutes: {retry_after}"
    );
    assert!(
        server
            .app
            .store
            .user_by_normalized_email("free-3@example.com")
            .await
            .unwrap()
            .is_none()
    );
    // Another caller is not held back.
    assert_eq!(
        create(other.signed_token.clone(), "free-3@example.com")
            .await
            .status,
        201
    );
    server.stop().await;
}
