//! Many nodes, one database: two or three real `latchkey serve` processes (the built binary,
//! each with its own data directory and port) on one fresh PostgreSQL database on
//! `TEST_POSTGRES_URL`, and the CLI on that database, answering as one server: a session made
//! on one node works and ends on the others, a suspension or a key change made by the CLI
//! reaches every node, each queued mail is sent once, and a node killed mid-traffic leaves
//! the others serving and comes back. And the README's two nodes behind nginx, as written
//! there.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::binary::{BINARY, CHEAP_HASHING, RunningServer, run_with_stdin, start_server_with};
use crate::mail_support::{ReservedPort, SmtpServer, delivered_mails, wait_for_mail};
use crate::proxy_support::{Proxy, substitute};
use crate::support::{PASSWORD, SignedIn, TestResponse, fresh_postgres_database, request_to};

/// The settings every node and the CLI share: the database, cheap argon2, and the
/// maintenance pass every second (so that the nodes contend for its lock throughout).
fn shared_environment(database_url: &str) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = CHEAP_HASHING
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    for (name, value) in [
        ("LATCHKEY_STORE__BACKEND", "postgres"),
        ("LATCHKEY_STORE__POSTGRES_URL", database_url),
        ("LATCHKEY_STORE__POSTGRES_POOL_SIZE", "8"),
        ("LATCHKEY_SESSION__PURGE_INTERVAL_SECONDS", "1"),
    ] {
        environment.push((name.to_owned(), value.to_owned()));
    }
    environment
}

struct Node {
    data_dir: tempfile::TempDir,
    server: RunningServer,
}

/// Nodes on one database, started one after the other (the first makes the signing key).
struct Cluster {
    database_url: String,
    environment: Vec<(String, String)>,
    nodes: Vec<Node>,
    cli_data_dir: tempfile::TempDir,
}

impl Cluster {
    /// `count` nodes with the shared settings and `extra` ones.
    async fn start(count: usize, extra: &[(&str, &str)]) -> Cluster {
        let database_url = fresh_postgres_database().await;
        let mut environment = shared_environment(&database_url);
        environment.extend(
            extra
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        let mut cluster = Cluster {
            database_url,
            environment,
            nodes: Vec::new(),
            cli_data_dir: tempfile::tempdir().unwrap(),
        };
        for _ in 0..count {
            let data_dir = tempfile::tempdir().unwrap();
            let server = cluster.spawn(&data_dir);
            cluster.nodes.push(Node { data_dir, server });
        }
        cluster
    }

    fn spawn(&self, data_dir: &tempfile::TempDir) -> RunningServer {
        let environment: Vec<(&str, &str)> = self
            .environment
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        start_server_with(data_dir.path(), &environment)
    }

    fn address(&self, node: usize) -> SocketAddr {
        self.nodes[node].server.address
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.server.address).collect()
    }

    /// The CLI on the database (no node's socket): (success, stdout then stderr).
    fn cli(&self, arguments: &[&str], stdin: &str) -> (bool, String) {
        run_with_stdin(
            Command::new(BINARY)
                .args(arguments)
                .env("LATCHKEY_DATA_DIR", self.cli_data_dir.path())
                .envs(self.environment.iter().map(|(name, value)| (name, value))),
            stdin,
        )
    }

    fn add_user(&self, email: &str) {
        let (ok, output) = self.cli(
            &["user", "add", "--email", email, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        );
        assert!(ok, "{output}");
    }

    /// Asks the database itself.
    async fn query_count(&self, sql: &str) -> i64 {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Fails naming the node and the line if a node logged that a shared chore failed.
    fn assert_no_node_failed_its_chores(&self) {
        for (index, node) in self.nodes.iter().enumerate() {
            for line in node.server.log.lock().unwrap().iter() {
                for failure in [
                    "maintenance lock",
                    "maintenance failed",
                    "purge failed",
                    "cannot claim mail",
                    "cannot update the mail queue",
                    "cannot reload the signing keys",
                ] {
                    assert!(!line.contains(failure), "node {index}: {line}");
                }
            }
        }
    }
}

async fn sign_in(address: SocketAddr, email: &str) -> TestResponse {
    request_to(address, "POST", "/auth/sign-in")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
}

/// A sign-in to a node that may die under it: whatever happens is fine.
async fn sign_in_ignoring_failures(address: SocketAddr, email: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({ "email": email, "password": PASSWORD }).to_string();
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return;
    };
    let request = format!(
        "POST /auth/sign-in HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).await.is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
    }
}

async fn signed_in(address: SocketAddr, email: &str) -> SignedIn {
    SignedIn::from_response(&sign_in(address, email).await)
}

async fn current_user_status(address: SocketAddr, credential: &str) -> u16 {
    request_to(address, "GET", "/user/current")
        .bearer(credential)
        .send()
        .await
        .status
}

/// Asserts the status each credential gets from every node.
async fn assert_everywhere(cluster: &Cluster, credentials: &[&str], status: u16) {
    for (node, address) in cluster.addresses().into_iter().enumerate() {
        for (index, credential) in credentials.iter().enumerate() {
            assert_eq!(
                current_user_status(address, credential).await,
                status,
                "credential {index} on node {node}"
            );
        }
    }
}

/// The id of the key that signed `token`, from its footer.
fn key_id_of(token: &str) -> String {
    use pasetors::Public;
    use pasetors::token::UntrustedToken;
    use pasetors::version4::V4;
    let untrusted = UntrustedToken::<Public, V4>::try_from(token).unwrap();
    let footer: serde_json::Value = serde_json::from_slice(untrusted.untrusted_footer()).unwrap();
    footer["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_made_on_one_node_is_used_and_ended_on_the_others() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.add_user("roaming@example.com");
    let first = signed_in(cluster.address(0), "roaming@example.com").await;
    let second = signed_in(cluster.address(1), "roaming@example.com").await;
    let third = signed_in(cluster.address(2), "roaming@example.com").await;
    // Each node's tokens work on every node, and are cached there now.
    let every_credential = [
        first.signed_token.as_str(),
        first.api_token.as_str(),
        second.signed_token.as_str(),
        second.api_token.as_str(),
        third.signed_token.as_str(),
        third.api_token.as_str(),
    ];
    assert_everywhere(&cluster, &every_credential, 200).await;
    let sessions = request_to(cluster.address(2), "GET", "/auth/session")
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(sessions.status, 200, "{}", sessions.text());
    assert_eq!(sessions.json["sessions"].as_array().unwrap().len(), 3);

    // The session made on node 0 signs out on node 1: no node takes it on the next request.
    let signed_out = request_to(cluster.address(1), "DELETE", "/auth/sign-out")
        .bearer(&first.signed_token)
        .send()
        .await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.text());
    assert_everywhere(&cluster, &every_credential[..2], 401).await;
    assert_everywhere(&cluster, &every_credential[2..], 200).await;

    // `DELETE /auth/session` on node 0 ends every session, and every node refuses them all.
    let ended = request_to(cluster.address(0), "DELETE", "/auth/session")
        .bearer(&third.api_token)
        .send()
        .await;
    assert_eq!(ended.status, 204, "{}", ended.text());
    assert_everywhere(&cluster, &every_credential, 401).await;
    assert_eq!(
        cluster.query_count("SELECT count(*) FROM sessions").await,
        0
    );
    cluster.assert_no_node_failed_its_chores();
}

#[tokio::test]
async fn concurrent_sign_ins_over_every_node_each_make_one_session_that_works_everywhere() {
    let cluster = Cluster::start(3, &[]).await;
    for email in ["one@example.com", "two@example.com"] {
        cluster.add_user(email);
    }
    const PER_NODE_AND_USER: usize = 4;
    let mut sign_ins = tokio::task::JoinSet::new();
    for address in cluster.addresses() {
        for email in ["one@example.com", "two@example.com"] {
            for _ in 0..PER_NODE_AND_USER {
                sign_ins.spawn(async move { (email, signed_in(address, email).await) });
            }
        }
    }
    let mut made = Vec::new();
    while let Some(result) = sign_ins.join_next().await {
        made.push(result.unwrap());
    }
    let per_user = 3 * PER_NODE_AND_USER;
    assert_eq!(made.len(), 2 * per_user);
    let distinct_tokens: BTreeSet<&str> = made
        .iter()
        .map(|(_, signed_in)| signed_in.signed_token.as_str())
        .collect();
    assert_eq!(distinct_tokens.len(), made.len());
    // Every token works on every node, and each user holds all its sessions.
    for (_, signed_in) in &made {
        assert_everywhere(
            &cluster,
            &[&signed_in.signed_token, &signed_in.api_token],
            200,
        )
        .await;
    }
    for (node, address) in cluster.addresses().into_iter().enumerate() {
        for email in ["one@example.com", "two@example.com"] {
            let (_, signed_in) = made
                .iter()
                .find(|(made_for, _)| *made_for == email)
                .unwrap();
            let sessions = request_to(address, "GET", "/auth/session")
                .bearer(&signed_in.signed_token)
                .send()
                .await;
            assert_eq!(
                sessions.json["sessions"].as_array().unwrap().len(),
                per_user,
                "{email} on node {node}"
            );
        }
    }
    assert_eq!(
        cluster.query_count("SELECT count(*) FROM sessions").await,
        i64::try_from(made.len()).unwrap()
    );
    cluster.assert_no_node_failed_its_chores();
}

#[tokio::test]
async fn a_user_suspended_by_the_cli_is_refused_by_every_node_on_its_next_request() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.add_user("suspect@example.com");
    cluster.add_user("bystander@example.com");
    let mut credentials = Vec::new();
    for address in cluster.addresses() {
        let signed_in = signed_in(address, "suspect@example.com").await;
        credentials.push(signed_in.signed_token);
        credentials.push(signed_in.api_token);
    }
    let bystander = signed_in(cluster.address(0), "bystander@example.com").await;
    let credential_texts: Vec<&str> = credentials.iter().map(String::as_str).collect();
    assert_everywhere(&cluster, &credential_texts, 200).await;

    // The CLI writes the database; no node is told.
    let (ok, output) = cluster.cli(&["user", "suspend", "--email", "suspect@example.com"], "");
    assert!(ok && output.contains("status suspended"), "{output}");
    assert_everywhere(&cluster, &credential_texts, 401).await;
    for address in cluster.addresses() {
        let refused = sign_in(address, "suspect@example.com").await;
        assert_eq!(refused.status, 403, "{}", refused.text());
    }
    assert_everywhere(
        &cluster,
        &[&bystander.signed_token, &bystander.api_token],
        200,
    )
    .await;

    let (ok, output) = cluster.cli(&["user", "activate", "--email", "suspect@example.com"], "");
    assert!(ok, "{output}");
    for address in cluster.addresses() {
        let again = signed_in(address, "suspect@example.com").await;
        assert_everywhere(&cluster, &[&again.signed_token], 200).await;
    }
    cluster.assert_no_node_failed_its_chores();
}

/// Signs in on `address` until its token is signed by `key_id`; returns how long that took.
async fn wait_until_signing_with(address: SocketAddr, key_id: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let token = signed_in(address, "keys@example.com").await.signed_token;
        if key_id_of(&token) == key_id {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{address} still signs with another key after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_key_rotated_by_the_cli_signs_on_every_node_within_ten_seconds_and_a_revoked_one_goes() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.add_user("keys@example.com");
    let before = signed_in(cluster.address(0), "keys@example.com").await;
    let old_key = key_id_of(&before.signed_token);
    assert_everywhere(&cluster, &[&before.signed_token], 200).await;

    let (ok, output) = cluster.cli(&["keys", "rotate"], "");
    assert!(ok, "{output}");
    let rotated_at = Instant::now();
    let new_key = output
        .trim()
        .strip_prefix("new active key ")
        .unwrap_or_else(|| panic!("{output}"))
        .to_owned();
    let mut waits = Vec::new();
    for address in cluster.addresses() {
        waits.push(wait_until_signing_with(address, &new_key, Duration::from_secs(10)).await);
    }
    let everywhere_after = rotated_at.elapsed();
    assert!(
        everywhere_after < Duration::from_secs(10),
        "the new key signed everywhere only after {everywhere_after:?} ({waits:?})"
    );
    // Tokens of either key work on every node.
    let after = signed_in(cluster.address(1), "keys@example.com").await;
    assert_eq!(key_id_of(&after.signed_token), new_key);
    assert_everywhere(&cluster, &[&before.signed_token, &after.signed_token], 200).await;

    // The old key revoked by the CLI: every node drops it (and its cached verifications)
    // at its next reload of the keys, 5 seconds at most.
    let (ok, output) = cluster.cli(&["keys", "revoke", &old_key], "");
    assert!(ok, "{output}");
    let revoked_at = Instant::now();
    for (node, address) in cluster.addresses().into_iter().enumerate() {
        loop {
            match current_user_status(address, &before.signed_token).await {
                401 => break,
                200 => {}
                other => panic!("node {node} answered {other}"),
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(10),
                "node {node} still takes the revoked key's token"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "new key signing everywhere after {everywhere_after:?}; revoked key refused everywhere \
         after {:?}",
        revoked_at.elapsed()
    );
    assert_everywhere(&cluster, &[&after.signed_token, &before.api_token], 200).await;
    cluster.assert_no_node_failed_its_chores();
}

#[tokio::test]
async fn sign_ups_over_every_node_give_exactly_one_mail_each() {
    // The SMTP server is down at first: the first attempts fail and every mail comes due
    // again while all three nodes poll the queue.
    let reserved = ReservedPort::new();
    let port = reserved.port.to_string();
    let cluster = Cluster::start(
        3,
        &[
            ("LATCHKEY_SIGNUP__OPEN", "true"),
            ("LATCHKEY_EMAIL__TRANSPORT", "smtp"),
            ("LATCHKEY_EMAIL__SMTP_HOST", "127.0.0.1"),
            ("LATCHKEY_EMAIL__SMTP_PORT", &port),
            ("LATCHKEY_EMAIL__SMTP_TLS", "none"),
        ],
    )
    .await;
    const SIGN_UPS: usize = 18;
    let mut sign_ups = tokio::task::JoinSet::new();
    for index in 0..SIGN_UPS {
        let address = cluster.address(index % 3);
        sign_ups.spawn(async move {
            request_to(address, "POST", "/auth/sign-up")
                .json(&json!({ "email": format!("new{index}@example.com"), "password": PASSWORD }))
                .send()
                .await
        });
    }
    while let Some(answer) = sign_ups.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let smtp = SmtpServer::start_on(reserved, false);
    let mails = wait_for_mail(smtp.inbox.path(), SIGN_UPS, Duration::from_secs(20)).await;
    // A few more polls of every node: nothing more arrives, and the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.query_count("SELECT count(*) FROM mail_queue").await > 0 {
        assert!(Instant::now() < deadline, "mail stays queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mails_after = delivered_mails(smtp.inbox.path());
    assert_eq!(mails_after.len(), SIGN_UPS, "{} mails", mails_after.len());
    assert_eq!(mails.len(), SIGN_UPS);
    let recipients: BTreeSet<String> = mails_after
        .iter()
        .map(|mail| {
            mail.lines()
                .find_map(|line| line.strip_prefix("To: "))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = (0..SIGN_UPS)
        .map(|index| format!("new{index}@example.com"))
        .collect();
    assert_eq!(recipients, expected);
    cluster.assert_no_node_failed_its_chores();
}

#[tokio::test]
async fn a_node_killed_mid_traffic_leaves_the_others_serving_and_comes_back() {
    // The traffic below can sign the one user in more than the default cap of 1000 sessions
    // (`[session] max_per_user`) on a fast machine, which would end the first ones, the
    // session made on the victim among them: the cap is not what this test is about.
    let mut cluster = Cluster::start(3, &[("LATCHKEY_SESSION__MAX_PER_USER", "100000")]).await;
    cluster.add_user("steady@example.com");
    let made_on_the_victim = signed_in(cluster.address(0), "steady@example.com").await;
    let survivors = [cluster.address(1), cluster.address(2)];

    // Sign-ins and token checks on the two survivors throughout.
    let traffic_until = Instant::now() + Duration::from_millis(2500);
    let mut traffic = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let address = survivors[worker % 2];
        let other = survivors[(worker + 1) % 2];
        traffic.spawn(async move {
            let mut requests = 0;
            while Instant::now() < traffic_until {
                let signed_in = signed_in(address, "steady@example.com").await;
                assert_eq!(
                    current_user_status(other, &signed_in.signed_token).await,
                    200
                );
                requests += 2;
            }
            requests
        });
    }
    // The victim is busy signing in too when it dies: its open transactions and any lock
    // it holds end with its connections.
    let victim = cluster.address(0);
    let mut victim_traffic = tokio::task::JoinSet::new();
    for _ in 0..4 {
        victim_traffic.spawn(async move {
            for _ in 0..20 {
                sign_in_ignoring_failures(victim, "steady@example.com").await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes[0].server.child.kill().unwrap();
    cluster.nodes[0].server.child.wait().unwrap();
    victim_traffic.abort_all();
    let mut served = 0;
    while let Some(requests) = traffic.join_next().await {
        served += requests.unwrap();
    }
    assert!(served > 0);
    eprintln!("{served} requests on the survivors while the victim died");
    for address in survivors {
        assert_eq!(
            current_user_status(address, &made_on_the_victim.signed_token).await,
            200
        );
    }

    // Restarted on its data directory (and a new port), it serves again, old tokens and new.
    let restarted = cluster.spawn(&cluster.nodes[0].data_dir);
    cluster.nodes[0].server = restarted;
    assert_everywhere(&cluster, &[&made_on_the_victim.signed_token], 200).await;
    let after = signed_in(cluster.address(0), "steady@example.com").await;
    assert_everywhere(&cluster, &[&after.signed_token, &after.api_token], 200).await;
    cluster.assert_no_node_failed_its_chores();
}

/// The first block of `language` in the README's section `heading`.
fn readme_block(heading: &str, language: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no section {heading:?}"))
        .1;
    let block = section
        .split_once(&format!("```{language}\n"))
        .unwrap_or_else(|| panic!("{heading:?} has no {language} block"))
        .1;
    block.split_once("```").unwrap().0.to_owned()
}

/// How many requests to `route` a node logged.
fn requests_logged(node: &RunningServer, route: &str) -> usize {
    let route = format!("route=\"{route}\" ");
    node.log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(&route))
        .count()
}

#[tokio::test]
async fn the_readmes_two_nodes_behind_nginx_answer_as_one_and_ride_out_a_node_going_down() {
    let mut cluster = Cluster::start(
        2,
        &[("LATCHKEY_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]")],
    )
    .await;
    cluster.add_user("balanced@example.com");
    let site = readme_block("## Running more than one node", "nginx");
    let (first, second) = (cluster.address(0), cluster.address(1));
    let nginx = Proxy::start_nginx_site(|port| {
        substitute(
            &site,
            &[
                ("listen 443 ssl;", &format!("listen 127.0.0.1:{port};")),
                ("10.0.0.11:8080", &first.to_string()),
                ("10.0.0.12:8080", &second.to_string()),
            ],
        )
    })
    .await;
    let through_nginx: SocketAddr = ([127, 0, 0, 1], nginx.port).into();

    // Sign-ins through nginx land on both nodes; each token works through nginx and on
    // either node; the sessions carry the client's address, as nginx forwarded it.
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let answer = request_to(through_nginx, "POST", "/auth/sign-in")
            .header("X-Forwarded-For", "203.0.113.9")
            .json(&json!({ "email": "balanced@example.com", "password": PASSWORD }))
            .send()
            .await;
        tokens.push(SignedIn::from_response(&answer).signed_token);
    }
    for node in &cluster.nodes {
        assert!(
            requests_logged(&node.server, "/auth/sign-in") >= 2,
            "nginx did not spread the sign-ins"
        );
    }
    for token in &tokens {
        for address in [through_nginx, first, second] {
            assert_eq!(current_user_status(address, token).await, 200);
        }
    }
    let sessions = request_to(through_nginx, "GET", "/auth/session")
        .bearer(&tokens[0])
        .send()
        .await;
    let sessions = sessions.json["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 6);
    assert!(
        sessions
            .iter()
            .all(|session| session["remote-ip"] == "203.0.113.9"),
        "{sessions:?}"
    );

    // One node dies: nginx sends everything to the other, sign-ins included.
    cluster.nodes[1].server.child.kill().unwrap();
    cluster.nodes[1].server.child.wait().unwrap();
    for token in &tokens {
        assert_eq!(current_user_status(through_nginx, token).await, 200);
        let answer = sign_in(through_nginx, "balanced@example.com").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    cluster.nodes.truncate(1);
    cluster.assert_no_node_failed_its_chores();
}

/// Wrong passwords for one account, until a node answers 429: over `addresses` in turn.
/// Returns how many wrong passwords were answered 401 first.
async fn wrong_passwords_until_refused(addresses: &[SocketAddr], email: &str) -> usize {
    for attempt in 0..50 {
        let address = addresses[attempt % addresses.len()];
        let answer = request_to(address, "POST", "/auth/sign-in")
            .json(&json!({ "email": email, "password": "not the password" }))
            .send()
            .await;
        match answer.status {
            401 => continue,
            429 => return attempt,
            other => panic!("attempt {attempt}: {other} {}", answer.text()),
        }
    }
    panic!("50 wrong passwords for {email} were never refused");
}

#[tokio::test]
async fn wrong_passwords_spread_over_two_nodes_meet_the_same_ceiling_as_on_one() {
    let cluster = Cluster::start(2, &[]).await;
    cluster.add_user("spread@example.com");
    cluster.add_user("single@example.com");
    let on_one_node =
        wrong_passwords_until_refused(&[cluster.address(0)], "single@example.com").await;
    let spread = wrong_passwords_until_refused(&cluster.addresses(), "spread@example.com").await;
    assert_eq!(
        spread, on_one_node,
        "spreading the guesses over nodes gained attempts"
    );
    // Both nodes now refuse the account from this network, the right password included.
    for address in cluster.addresses() {
        let refused = sign_in(address, "spread@example.com").await;
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert!(refused.header("retry-after").is_some());
    }
    cluster.assert_no_node_failed_its_chores();
}
