//! Crash safety: the built binary serves concurrent sign-ins, password changes, session
//! deletions and sub-user creations, and is killed with SIGKILL at a random moment, 20
//! times over, restarting on the same file each time. Every change that got a 2xx must be
//! there after the restart, nothing half-done may show, and the file must always reopen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::binary::{CHEAP_HASHING, admin, start_server_with};
use crate::support::{PASSWORD, request_to};

const ROUNDS: usize = 20;

/// Cheap hashing, and room for every sub-user the load creates in a round.
const ENVIRONMENT: [(&str, &str); 3] = [
    CHEAP_HASHING[0],
    CHEAP_HASHING[1],
    ("LATCHKEY_THROTTLE__SUB_USERS_PER_CALLER_PER_HOUR", "100000"),
];

/// What the server acknowledged (2xx), and what was in flight when it died.
#[derive(Default)]
struct Ledger {
    /// Tokens of acknowledged sign-ins of the "steady" user, whose sessions nobody ends.
    steady_tokens: Vec<String>,
    /// Sub-users whose creation was acknowledged: email → id.
    sub_users: HashMap<String, u64>,
    /// The changer's passwords: the last acknowledged one and every attempt after it.
    changer_acknowledged: String,
    changer_attempts: Vec<String>,
    /// Session tokens whose DELETE was acknowledged.
    ended_tokens: Vec<String>,
}

async fn sign_in(address: SocketAddr, email: &str, password: &str) -> Option<serde_json::Value> {
    let response = request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await;
    (response.status == 200).then_some(response.json)
}

fn token_of(answer: &serde_json::Value) -> String {
    answer["jwt-token"]["token"].as_str().unwrap().to_owned()
}

/// The `sid` claim of a signed token (read without verifying: the server made it).
fn session_id_of(token: &str) -> String {
    let untrusted =
        pasetors::token::UntrustedToken::<pasetors::Public, pasetors::version4::V4>::try_from(
            token,
        )
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(untrusted.untrusted_payload()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

/// Random-ish milliseconds without a random crate: the clock's nanoseconds.
fn jitter(low: u64, high: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    low + u64::from(nanos) % (high - low)
}

async fn load(address: SocketAddr, ledger: Arc<Mutex<Ledger>>, round: usize, worker: usize) {
    // One worker a kind, so that the ledger's order is the server's order.
    for step in 0.. {
        match worker % 4 {
            0 => {
                if let Some(answer) = sign_in(address, "steady@example.com", PASSWORD).await {
                    ledger.lock().unwrap().steady_tokens.push(token_of(&answer));
                }
            }
            1 => {
                let current = ledger.lock().unwrap().changer_acknowledged.clone();
                let next = format!("changer password {round}-{worker}-{step}");
                let Some(answer) = sign_in(address, "changer@example.com", &current).await else {
                    return;
                };
                ledger.lock().unwrap().changer_attempts.push(next.clone());
                let response = request_to(address, "PUT", "/auth/current/password")
                    .bearer(&token_of(&answer))
                    .form(&[
                        ("old-password", current.as_str()),
                        ("new-password", next.as_str()),
                    ])
                    .send()
                    .await;
                if response.status == 204 {
                    let mut ledger = ledger.lock().unwrap();
                    ledger.changer_acknowledged = next;
                    ledger.changer_attempts.clear();
                }
            }
            2 => {
                let Some(answer) = sign_in(address, "ender@example.com", PASSWORD).await else {
                    continue;
                };
                let token = token_of(&answer);
                let id = session_id_of(&token);
                let ended = request_to(address, "DELETE", &format!("/auth/session/{id}"))
                    .bearer(&token)
                    .send()
                    .await;
                if ended.status == 204 {
                    ledger.lock().unwrap().ended_tokens.push(token);
                }
            }
            _ => {
                let Some(answer) = sign_in(address, "parent@example.com", PASSWORD).await else {
                    continue;
                };
                let email = format!("child-{round}-{worker}-{step}@example.com");
                let created = request_to(address, "POST", "/user")
                    .bearer(&token_of(&answer))
                    .json(&json!({ "email": email, "password": PASSWORD }))
                    .send()
                    .await;
                if created.status == 201 {
                    let id = created.json["id"].as_u64().unwrap();
                    ledger.lock().unwrap().sub_users.insert(email, id);
                }
            }
        }
    }
}

#[tokio::test]
async fn every_acknowledged_change_survives_sigkill_and_nothing_half_done_shows() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let password = format!("{PASSWORD}\n");
    for email in [
        "steady@example.com",
        "changer@example.com",
        "ender@example.com",
        "parent@example.com",
    ] {
        assert!(
            admin(
                path,
                &["user", "add", "--email", email, "--password-stdin"],
                &password
            )
            .0
        );
    }
    let ledger = Arc::new(Mutex::new(Ledger {
        changer_acknowledged: PASSWORD.to_owned(),
        ..Ledger::default()
    }));
    for round in 0..ROUNDS {
        let mut server = start_server_with(path, &ENVIRONMENT);
        let address = server.address;
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..4 {
            workers.spawn(load(address, Arc::clone(&ledger), round, worker));
        }
        tokio::time::sleep(Duration::from_millis(jitter(50, 400))).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        workers.abort_all();
        while workers.join_next().await.is_some() {}

        // The file reopens, and everything acknowledged is there.
        let mut restarted = start_server_with(path, &ENVIRONMENT);
        let address = restarted.address;
        let ledger_now = {
            let ledger = ledger.lock().unwrap();
            (
                ledger.steady_tokens.clone(),
                ledger.sub_users.clone(),
                ledger.changer_acknowledged.clone(),
                ledger.changer_attempts.clone(),
                ledger.ended_tokens.clone(),
            )
        };
        let (steady_tokens, sub_users, acknowledged, attempts, ended_tokens) = ledger_now;
        for token in &steady_tokens {
            let response = request_to(address, "GET", "/user/current")
                .bearer(token)
                .send()
                .await;
            assert_eq!(
                response.status, 200,
                "round {round}: an acknowledged sign-in was lost"
            );
        }
        for token in &ended_tokens {
            let response = request_to(address, "GET", "/user/current")
                .bearer(token)
                .send()
                .await;
            assert_eq!(
                response.status, 401,
                "round {round}: an acknowledged session end was lost"
            );
        }
        let mut candidates = vec![acknowledged.clone()];
        candidates.extend(attempts);
        let mut working = None;
        for candidate in &candidates {
            if sign_in(address, "changer@example.com", candidate)
                .await
                .is_some()
            {
                working = Some(candidate.clone());
                break;
            }
        }
        let working = working.unwrap_or_else(|| {
            panic!("round {round}: the changer's password is none of the possible ones")
        });
        {
            // An unacknowledged change that did commit is the new baseline.
            let mut ledger = ledger.lock().unwrap();
            ledger.changer_acknowledged = working;
            ledger.changer_attempts.clear();
        }
        let parent = sign_in(address, "parent@example.com", PASSWORD)
            .await
            .unwrap();
        let listed = request_to(address, "GET", "/user")
            .bearer(&token_of(&parent))
            .query("pagination%5Blimit%5D=100&pagination%5Bpage%5D=1")
            .send()
            .await;
        let total = listed.json["pagination"]["total"].as_u64().unwrap();
        let mut listed_ids = Vec::new();
        let pages = total.div_ceil(100).max(1);
        for page in 1..=pages {
            let listed = request_to(address, "GET", "/user")
                .bearer(&token_of(&parent))
                .query(&format!(
                    "pagination%5Blimit%5D=100&pagination%5Bpage%5D={page}"
                ))
                .send()
                .await;
            for user in listed.json["users"].as_array().unwrap() {
                listed_ids.push((
                    user["email"].as_str().unwrap().to_owned(),
                    user["id"].as_u64().unwrap(),
                ));
            }
        }
        for (email, id) in &sub_users {
            assert!(
                listed_ids.contains(&(email.clone(), *id)),
                "round {round}: sub-user {email} was lost"
            );
        }
        // Nothing half-done: every listed sub-user can sign in (user, email index and
        // parent index were written together).
        for (email, _) in &listed_ids {
            assert!(
                sign_in(address, email, PASSWORD).await.is_some(),
                "round {round}: {email} is half-made"
            );
        }
        restarted.child.kill().unwrap();
        restarted.child.wait().unwrap();
    }
    let ledger = ledger.lock().unwrap();
    assert!(
        ledger.steady_tokens.len() >= ROUNDS,
        "too little was acknowledged to prove anything"
    );
    assert!(!ledger.sub_users.is_empty());
}
