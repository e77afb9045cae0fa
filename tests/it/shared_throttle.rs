//! Two nodes on one PostgreSQL database share their throttles (API.md 13): wrong passwords
//! alternating between the nodes meet the ceilings at the same count as on one server, and so
//! do password-reset requests. Both nodes are in-process servers on one database made for
//! the test, reading clones of one manual clock; the single server they are compared with is
//! the run's usual one (a redb file, or a database of its own).

use std::time::Duration;

use latchkey::config::Config;
use latchkey::model::clock::ManualClock;
use latchkey::model::{Role, Status};
use serde_json::json;

use crate::support::{PASSWORD, TestResponse, TestServer, fresh_postgres_database};

/// Believes X-Forwarded-For from loopback, so that a test speaks as many client networks.
fn behind_a_proxy(config: &mut Config) {
    config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
}

/// Two nodes on one new database, on one clock.
async fn two_nodes_on_one_database() -> (TestServer, TestServer) {
    let database_url = fresh_postgres_database().await;
    let clock = ManualClock::starting_now();
    let first = TestServer::start_on_postgres_database(&database_url, clock.clone(), |config| {
        behind_a_proxy(config);
        config.signup.open = true;
    })
    .await;
    let second = TestServer::start_on_postgres_database(&database_url, clock, |config| {
        behind_a_proxy(config);
        config.signup.open = true;
    })
    .await;
    (first, second)
}

async fn sign_in_from(
    server: &TestServer,
    client: &str,
    email: &str,
    password: &str,
) -> TestResponse {
    server
        .request("POST", "/auth/sign-in")
        .header("X-Forwarded-For", client)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

async fn password_reset_from(server: &TestServer, client: &str, email: &str) -> TestResponse {
    server
        .request("POST", "/auth/password-reset")
        .header("X-Forwarded-For", client)
        .json(&json!({ "email": email }))
        .send()
        .await
}

/// Wrong passwords from `client` for `email`, the nth sent to `nodes[n % nodes.len()]`, until
/// one is refused with 429: how many were answered 401 first.
async fn wrong_passwords_before_the_refusal(
    nodes: &[&TestServer],
    client: &str,
    email: &str,
) -> usize {
    for attempt in 0..100 {
        let node = nodes[attempt % nodes.len()];
        let response = sign_in_from(node, client, email, "a wrong guess").await;
        match response.status {
            401 => {}
            429 => return attempt,
            other => panic!("attempt {attempt}: {other} {}", response.text()),
        }
    }
    panic!("100 wrong passwords and no refusal");
}

#[tokio::test]
async fn wrong_passwords_alternating_over_two_nodes_meet_the_ceiling_of_one_server() {
    let one_server = TestServer::start_with(behind_a_proxy).await;
    one_server
        .add_user("target@example.com", Role::User, Status::Active)
        .await;
    let on_one_server =
        wrong_passwords_before_the_refusal(&[&one_server], "198.51.100.7", "target@example.com")
            .await;
    assert_eq!(
        on_one_server as u32,
        Config::default().throttle.failures_per_account_network
    );

    let (first, second) = two_nodes_on_one_database().await;
    first
        .add_user("target@example.com", Role::User, Status::Active)
        .await;
    let on_two_nodes = wrong_passwords_before_the_refusal(
        &[&first, &second],
        "198.51.100.7",
        "target@example.com",
    )
    .await;
    assert_eq!(on_two_nodes, on_one_server);

    // Both nodes refuse now, the right password too (before any hashing), and say how long.
    let mut longest_wait = 0;
    for node in [&first, &second] {
        let refused = sign_in_from(node, "198.51.100.7", "target@example.com", PASSWORD).await;
        refused.assert_error(429);
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!(wait >= 1);
        longest_wait = longest_wait.max(wait);
    }
    // Once the wait is over on the shared clock, the owner gets in through either node.
    first.advance_clock(Duration::from_secs(longest_wait));
    let signed_in = sign_in_from(&second, "198.51.100.7", "target@example.com", PASSWORD).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    one_server.stop().await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn the_account_ceiling_binds_every_network_on_every_node() {
    let (first, second) = two_nodes_on_one_database().await;
    first
        .add_user("ceiling@example.com", Role::User, Status::Active)
        .await;
    let ceiling = Config::default().throttle.failures_per_account;
    // One guess from each of `ceiling` networks, alternating over the nodes: no network is
    // near its own limit, and no node saw more than half of them.
    for index in 0..ceiling {
        let node = if index % 2 == 0 { &first } else { &second };
        let network = format!("203.0.113.{index}");
        sign_in_from(node, &network, "ceiling@example.com", "a wrong guess")
            .await
            .assert_error(401);
    }
    for node in [&first, &second] {
        sign_in_from(node, "192.0.2.99", "ceiling@example.com", "one more guess")
            .await
            .assert_error(429);
    }
    // Another account from the same fresh network is not held back.
    sign_in_from(&second, "192.0.2.99", "other@example.com", "a wrong guess")
        .await
        .assert_error(401);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn password_reset_requests_alternating_over_two_nodes_are_limited_as_on_one_server() {
    let one_server = TestServer::start_with(behind_a_proxy).await;
    let (first, second) = two_nodes_on_one_database().await;
    let defaults = Config::default().signup;

    // Per (address, network): the same answers, request by request.
    let mut on_one_server = Vec::new();
    let mut on_two_nodes = Vec::new();
    for index in 0..=defaults.requests_per_address_network {
        let node = if index % 2 == 0 { &first } else { &second };
        on_one_server.push(
            password_reset_from(&one_server, "198.51.100.20", "reset@example.com")
                .await
                .status,
        );
        on_two_nodes.push(
            password_reset_from(node, "198.51.100.20", "reset@example.com")
                .await
                .status,
        );
    }
    let mut expected = vec![200; defaults.requests_per_address_network as usize];
    expected.push(429);
    assert_eq!(on_one_server, expected);
    assert_eq!(on_two_nodes, expected);

    // Per network, for every address: `requests_per_network` in all over both nodes (the
    // address above spent some already), then 429 on either node for a fresh address.
    let mut accepted = defaults.requests_per_address_network;
    let mut index = 0;
    while accepted < defaults.requests_per_network {
        let node = if index % 2 == 0 { &first } else { &second };
        let response =
            password_reset_from(node, "198.51.100.20", &format!("spray{index}@example.com")).await;
        assert_eq!(response.status, 200, "{}", response.text());
        accepted += 1;
        index += 1;
    }
    for node in [&first, &second] {
        let refused = password_reset_from(node, "198.51.100.20", "fresh@example.com").await;
        refused.assert_error(429);
        assert!(refused.header("retry-after").is_some());
    }
    // Another network is not held back.
    let response = password_reset_from(&first, "198.51.100.21", "fresh@example.com").await;
    assert_eq!(response.status, 200, "{}", response.text());
    one_server.stop().await;
    first.stop().await;
    second.stop().await;
}
