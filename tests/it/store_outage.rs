//! A node whose PostgreSQL cannot serve: requests that need the database answer 503 with
//! `Retry-After` (the database's trouble, not a bug: never a 500), `/health` answers 503 so
//! that a load balancer leaves the node out, and once the database is back the same
//! credentials work again without a restart. The outages are real: the network (a TCP relay
//! in this file that the test cuts, every open connection closed and new ones closed as they
//! come, then restores), a database that refuses connections, and the writer lock held by
//! another session past `lock_timeout`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use latchkey::model::clock::ManualClock;
use latchkey::model::{Role, Status};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_postgres::NoTls;

use crate::support::{PASSWORD, SignedIn, TestResponse, TestServer, fresh_postgres_database};

/// A loopback relay to the database that the test can cut and restore.
struct CuttableRelay {
    address: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accepting: AbortHandle,
}

impl CuttableRelay {
    async fn start(target: SocketAddr) -> CuttableRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accepting = tokio::spawn({
            let open = Arc::clone(&open);
            let connections = Arc::clone(&connections);
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !open.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let relayed = tokio::spawn(async move {
                        if let Ok(mut database) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut database).await;
                        }
                    });
                    connections.lock().unwrap().push(relayed.abort_handle());
                }
            }
        })
        .abort_handle();
        CuttableRelay {
            address,
            open,
            connections,
            accepting,
        }
    }

    /// Closes every relayed connection and every new one from now on.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for CuttableRelay {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}

/// `url` with its host and port replaced by `address`.
fn through(url: &str, address: SocketAddr) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&address.ip().to_string())).unwrap();
    url.set_port(Some(address.port())).unwrap();
    url.to_string()
}

fn database_address(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        .parse()
        .unwrap()
}

fn assert_store_unavailable(response: &TestResponse, what: &str) {
    assert_eq!(response.status, 503, "{what}: {}", response.text());
    let body = response.assert_error(503);
    assert_eq!(body["code"], 50305, "{what}");
    assert_eq!(response.header("retry-after"), Some("1"), "{what}");
    // Sanitized: nothing of the driver's text or the database's address reaches the client.
    let text = response.text();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("postgres"),
        "{text}"
    );
}

/// A node on the database at `node_url`, and a user of it signed in.
async fn node_with_a_signed_in_user(node_url: &str, email: &str) -> (TestServer, SignedIn) {
    let server =
        TestServer::start_on_postgres_database(node_url, ManualClock::starting_now(), |_| {}).await;
    server.add_user(email, Role::User, Status::Active).await;
    let signed_in = server.sign_in(email).await;
    (server, signed_in)
}

async fn sign_out(server: &TestServer, signed_in: &SignedIn) -> TestResponse {
    server
        .request("DELETE", "/auth/session")
        .bearer(&signed_in.signed_token)
        .send()
        .await
}

/// Once the database serves again, the sign-out that the outage refused works, and ends the
/// session: the refusal had changed nothing.
async fn assert_sign_out_now_ends_the_session(server: &TestServer, signed_in: &SignedIn) {
    let response = sign_out(server, signed_in).await;
    assert_eq!(response.status, 204, "{}", response.text());
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        401
    );
}

#[tokio::test]
async fn a_database_out_of_reach_answers_503_and_health_fails_until_it_is_back() {
    let database_url = fresh_postgres_database().await;
    let relay = CuttableRelay::start(database_address(&database_url)).await;
    let (server, signed_in) =
        node_with_a_signed_in_user(&through(&database_url, relay.address), "outage@example.com")
            .await;
    let health = || server.request("GET", "/health").send();
    assert_eq!(health().await.status, 200);

    relay.cut();
    for credential in [&signed_in.signed_token, &signed_in.api_token] {
        let response = server
            .request("GET", "/user/current")
            .bearer(credential)
            .send()
            .await;
        assert_store_unavailable(&response, "GET /user/current");
    }
    let sign_in = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "outage@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_store_unavailable(&sign_in, "POST /auth/sign-in");
    assert_store_unavailable(&sign_out(&server, &signed_in).await, "DELETE /auth/session");
    assert_store_unavailable(&health().await, "GET /health");

    relay.restore();
    assert_eq!(health().await.status, 200);
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    assert_eq!(server.current_user_status(&signed_in.api_token).await, 200);
    assert_sign_out_now_ends_the_session(&server, &signed_in).await;
    server.stop().await;
}

/// A connection of the test's own to the database at `url`.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn a_database_that_refuses_connections_answers_503_until_it_accepts_them_again() {
    let database_url = fresh_postgres_database().await;
    let database_name = url::Url::parse(&database_url).unwrap().path()[1..].to_owned();
    let server_url = std::env::var("TEST_POSTGRES_URL").unwrap();
    let (server, signed_in) =
        node_with_a_signed_in_user(&database_url, "refused@example.com").await;
    let administrator = connect(&server_url).await;
    administrator
        .batch_execute(&format!(
            "ALTER DATABASE {database_name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database_name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    let response = server
        .request("GET", "/user/current")
        .bearer(&signed_in.signed_token)
        .send()
        .await;
    assert_store_unavailable(&response, "GET /user/current");
    let sign_in = server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": "refused@example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_store_unavailable(&sign_in, "POST /auth/sign-in");
    assert_store_unavailable(
        &server.request("GET", "/health").send().await,
        "GET /health",
    );
    administrator
        .batch_execute(&format!(
            "ALTER DATABASE {database_name} ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    assert_eq!(server.request("GET", "/health").send().await.status, 200);
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    server.stop().await;
}

/// The advisory lock every write of every node takes first (`WRITER_LOCK` in
/// `src/store/postgres_backend/mod.rs`).
const WRITER_LOCK: i64 = 0x4c61_7463_686b_0001;

#[tokio::test]
async fn a_write_that_waits_past_lock_timeout_answers_503_and_changes_nothing() {
    let database_url = fresh_postgres_database().await;
    // A URL's own `lock_timeout` is kept (the default is 10 s): one second here.
    let node_url = format!("{database_url}?options=-c%20lock_timeout%3D1s");
    let (server, signed_in) = node_with_a_signed_in_user(&node_url, "locked@example.com").await;
    // Another session (a node frozen mid-write) holds the writer lock.
    let mut holder = connect(&database_url).await;
    let holding = holder.transaction().await.unwrap();
    holding
        .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
        .await
        .unwrap();
    assert_store_unavailable(&sign_out(&server, &signed_in).await, "DELETE /auth/session");
    // Reads take no lock: the node still answers them, and /health with them.
    assert_eq!(
        server.current_user_status(&signed_in.signed_token).await,
        200
    );
    assert_eq!(server.request("GET", "/health").send().await.status, 200);
    holding.rollback().await.unwrap();
    assert_sign_out_now_ends_the_session(&server, &signed_in).await;
    server.stop().await;
}
