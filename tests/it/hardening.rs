//! Abuse and hostile clients: password guessing, a saturated hasher pool, idle and slow
//! connections, oversized heads and stalled bodies. Each protection has a test here that
//! fails when the protection is removed.

use std::time::Duration;

use latchkey::model::{Role, Status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{PASSWORD, TestServer};

/// A server that believes X-Forwarded-For from loopback, so tests can speak as many clients.
async fn server_behind_a_proxy() -> TestServer {
    TestServer::start_with(|config| {
        config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await
}

async fn sign_in_from(
    server: &TestServer,
    client: &str,
    email: &str,
    password: &str,
) -> crate::support::TestResponse {
    server
        .request("POST", "/auth/sign-in")
        .header("X-Forwarded-For", client)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

#[tokio::test]
async fn guessing_one_account_is_throttled_but_its_owner_still_gets_in() {
    let server = server_behind_a_proxy().await;
    server
        .add_user("target@example.com", Role::User, Status::Active)
        .await;
    let attacker = "198.51.100.66";
    for _ in 0..5 {
        sign_in_from(&server, attacker, "target@example.com", "guess guess")
            .await
            .assert_error(401);
    }
    let throttled = sign_in_from(&server, attacker, "target@example.com", PASSWORD).await;
    throttled.assert_error(429);
    let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    // Unknown accounts are throttled the same way: no hint that the address is free.
    for _ in 0..5 {
        sign_in_from(&server, attacker, "nobody@example.com", "guess guess")
            .await
            .assert_error(401);
    }
    sign_in_from(&server, attacker, "nobody@example.com", "guess guess")
        .await
        .assert_error(429);

    // The owner, from a clean address, signs in during the attack.
    let owner = sign_in_from(&server, "203.0.113.5", "target@example.com", PASSWORD).await;
    assert_eq!(owner.status, 200, "{}", owner.text());
}

/// Wrong passwords sent at once.
async fn simultaneous_guesses(
    server: &TestServer,
    email: &str,
    networks: impl Iterator<Item = String>,
) -> Vec<u16> {
    let mut guesses = tokio::task::JoinSet::new();
    for network in networks {
        let request = server
            .request("POST", "/auth/sign-in")
            .header("X-Forwarded-For", &network)
            .json(&json!({ "email": email, "password": "guess guess" }));
        guesses.spawn(request.send());
    }
    let mut statuses = Vec::new();
    while let Some(answer) = guesses.join_next().await {
        statuses.push(answer.unwrap().status);
    }
    statuses
}

/// Guesses sent all at once meet the ceilings that guesses one after another meet: a check
/// that passed holds a token of each of its buckets while its hash runs, so that the checks
/// beside it count it. From one network, the (account, network) bucket's 5; from forty, the
/// account's 20. The rest are refused without a hash.
#[tokio::test]
async fn simultaneous_guesses_meet_the_ceilings_of_guesses_one_after_another() {
    let server = server_behind_a_proxy().await;
    for email in ["burst@example.com", "spread@example.com"] {
        server.add_user(email, Role::User, Status::Active).await;
    }
    let one_network = std::iter::repeat_n("198.51.100.77".to_owned(), 30);
    let statuses = simultaneous_guesses(&server, "burst@example.com", one_network).await;
    assert_hashed_at_most(&statuses, 5);

    let forty_networks = (1..=40).map(|index| format!("203.0.113.{index}"));
    let statuses = simultaneous_guesses(&server, "spread@example.com", forty_networks).await;
    assert_hashed_at_most(&statuses, 20);
}

/// Some guesses were hashed (401), at most `ceiling`, and the rest refused (429).
fn assert_hashed_at_most(statuses: &[u16], ceiling: usize) {
    let hashed = statuses.iter().filter(|status| **status == 401).count();
    assert!((1..=ceiling).contains(&hashed), "{statuses:?}");
    assert!(
        statuses.iter().all(|status| [401, 429].contains(status)),
        "{statuses:?}"
    );
}

/// Refused requests hold nothing: a network locked out of an account can send as many as it
/// likes while its owner signs in from elsewhere (a check holds a token only once it has
/// passed, however long the buckets take to read).
#[tokio::test]
async fn a_stream_of_refused_guesses_takes_no_room_from_the_owner() {
    let server = server_behind_a_proxy().await;
    server
        .add_user("owner@example.com", Role::User, Status::Active)
        .await;
    let attacker = "198.51.100.200";
    for _ in 0..5 {
        sign_in_from(&server, attacker, "owner@example.com", "guess guess")
            .await
            .assert_error(401);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let address = server.address;
        let stop = std::sync::Arc::clone(&stop);
        flood.spawn(async move {
            let mut refused = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = crate::support::request_to(address, "POST", "/auth/sign-in")
                    .header("X-Forwarded-For", attacker)
                    .json(&json!({ "email": "owner@example.com", "password": "guess guess" }))
                    .send()
                    .await;
                assert_eq!(answer.status, 429, "{}", answer.text());
                refused += 1;
            }
            refused
        });
    }
    for _ in 0..10 {
        let owner = sign_in_from(&server, "192.0.2.99", "owner@example.com", PASSWORD).await;
        assert_eq!(owner.status, 200, "{}", owner.text());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refused = 0;
    while let Some(count) = flood.join_next().await {
        refused += count.unwrap();
    }
    assert!(refused >= 40, "the flood sent only {refused} requests");
}

#[tokio::test]
async fn a_success_resets_the_count_for_its_network() {
    let server = server_behind_a_proxy().await;
    server
        .add_user("forgetful@example.com", Role::User, Status::Active)
        .await;
    let client = "192.0.2.10";
    for _ in 0..4 {
        sign_in_from(&server, client, "forgetful@example.com", "wrong password")
            .await
            .assert_error(401);
    }
    assert_eq!(
        sign_in_from(&server, client, "forgetful@example.com", PASSWORD)
            .await
            .status,
        200
    );
    for _ in 0..4 {
        sign_in_from(&server, client, "forgetful@example.com", "wrong password")
            .await
            .assert_error(401);
    }
    assert_eq!(
        sign_in_from(&server, client, "forgetful@example.com", PASSWORD)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn one_network_guessing_many_accounts_is_throttled_per_network_and_ipv6_per_64() {
    let server = server_behind_a_proxy().await;
    for index in 0..30 {
        let email = format!("spray{index}@example.com");
        sign_in_from(&server, "2001:db8:7:7::1", &email, "spray password")
            .await
            .assert_error(401);
    }
    // Another address in the same /64 is the same network; the next /64 is not.
    let same_network = sign_in_from(
        &server,
        "2001:db8:7:7:ffff::2",
        "spray99@example.com",
        "x1x2x3x4",
    )
    .await;
    same_network.assert_error(429);
    let next_network = sign_in_from(
        &server,
        "2001:db8:7:8::1",
        "spray99@example.com",
        "x1x2x3x4",
    )
    .await;
    next_network.assert_error(401);
}

#[tokio::test]
async fn password_changes_draw_on_the_same_buckets() {
    let server = TestServer::start().await;
    server
        .add_user("changer@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("changer@example.com").await;
    let change = |old: &'static str| {
        server
            .request("PUT", "/auth/current/password")
            .bearer(&signed_in.signed_token)
            .form(&[
                ("old-password", old),
                ("new-password", "a brand new password"),
            ])
            .send()
    };
    for _ in 0..5 {
        change("not my password").await.assert_error(403);
    }
    change(PASSWORD).await.assert_error(429);
    // Sign-in for that account from this network is held back too.
    server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "changer@example.com", "password": PASSWORD }))
        .send()
        .await
        .assert_error(429);
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_at_once_while_token_checks_go_on() {
    let server = TestServer::start_with(|config| {
        config.password.hasher_threads = 1;
        config.password.queue_capacity = 1;
        config.throttle.enabled = false;
    })
    .await;
    server
        .add_user("busy@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("busy@example.com").await;
    // Make each later hash expensive: the stored hash now costs 64 MiB and 3 passes.
    let expensive = latchkey::auth::password::HashCost {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 1,
    };
    let user = server
        .app
        .store
        .user_by_normalized_email("busy@example.com")
        .await
        .unwrap()
        .unwrap();
    let hash = latchkey::auth::password::hash_once(
        &latchkey::auth::password::Password::new(PASSWORD.to_owned()),
        expensive,
    )
    .unwrap();
    server
        .app
        .store
        .update_user(user.id, server.now(), |user| {
            user.password_hash = Some(hash)
        })
        .await
        .unwrap();

    let mut sign_ins = tokio::task::JoinSet::new();
    for _ in 0..12 {
        // Wrong passwords: nothing gets re-hashed, every attempt costs one expensive verify.
        let request = server
            .request("POST", "/auth/sign-in")
            .json(&json!({ "email": "busy@example.com", "password": "wrong password" }));
        sign_ins.spawn(request.send());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let checked = server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_eq!(
        checked.status, 200,
        "token checks must not wait for the hashers"
    );
    // Collect what has finished (the 503s come back at once); some must still be hashing.
    let mut responses = Vec::new();
    while let Some(done) = sign_ins.try_join_next() {
        responses.push(done.unwrap());
    }
    let still_hashing = !sign_ins.is_empty();
    while let Some(done) = sign_ins.join_next().await {
        responses.push(done.unwrap());
    }
    let mut overloaded = 0;
    for response in responses {
        match response.status {
            503 => {
                overloaded += 1;
                assert_eq!(response.header("retry-after"), Some("1"));
                response.assert_error(503);
            }
            401 => {}
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert!(
        overloaded >= 1,
        "no sign-in was turned away by the full queue"
    );
    assert!(
        still_hashing,
        "the token check came back only after the hashing was over"
    );
}

/// Reads until the peer closes; `true` if it closed (or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_by_the_header_read_timeout() {
    let server = TestServer::start_with(|config| config.http.header_read_timeout_seconds = 1).await;
    // Idle: connects and says nothing.
    let mut idle = TcpStream::connect(server.address).await.unwrap();
    // Slow: a header one byte at a time, every 300 ms.
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    let dribble = tokio::spawn(async move {
        for byte in b"GET /frontend/api/v1/health HTTP/1.1\r\nHost: x\r\n" {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        closed_within(&mut slow, Duration::from_secs(5)).await
    });
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "an idle connection stayed open"
    );
    assert!(
        dribble.await.unwrap(),
        "a byte-a-moment connection stayed open"
    );
}

#[tokio::test]
async fn a_stalled_body_gets_503_after_the_request_timeout() {
    let server = TestServer::start_with(|config| config.http.request_timeout_seconds = 1).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let head = "POST /frontend/api/v1/auth/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    answer.extend_from_slice(&buffer[..read]);
                    if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let server = TestServer::start().await;
    let response = server
        .request("GET", "/health")
        .header("X-Padding", &"a".repeat(20 * 1024))
        .send()
        .await;
    assert_eq!(response.status, 431);
}

#[tokio::test]
async fn a_thousand_idle_connections_do_not_stop_the_server_answering_others() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    let server = TestServer::start().await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(server.address).await.unwrap());
    }
    let health = server.request("GET", "/health").send().await;
    assert_eq!(health.status, 200);
    drop(idle);
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    let server = TestServer::start_with(|config| config.http.max_connections = 2).await;
    let first = TcpStream::connect(server.address).await.unwrap();
    let second = TcpStream::connect(server.address).await.unwrap();
    // Give the server time to take both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(server.request("GET", "/health").send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past max_connections"
    );
    drop(first);
    let answered = waiting.await.unwrap();
    assert_eq!(answered.status, 200);
    drop(second);
}
