//! The test harness: a real server on 127.0.0.1 port 0 over a real redb file in a temp dir
//! (or, with `TEST_STORE_BACKEND=postgres`, a database of its own on the PostgreSQL
//! server `scripts/test` starts), started in-process on a manual clock the test advances,
//! and a small HTTP/1.1 client that speaks to it over TCP.
// Not every test module uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use latchkey::App;
use latchkey::auth::password::{HashCost, Password, hash_once};
use latchkey::config::{Config, StoreBackend};
use latchkey::http::Api;
use latchkey::model::clock::ManualClock;
use latchkey::model::{
    NewUser, PermissionSet, Role, Secret, Session, SessionId, SessionKind, Status, UaType,
    UnixSeconds, User, now_unix_seconds,
};
use latchkey::store::Store;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PASSWORD: &str = "correct horse battery";

/// Cheap argon2 so the suite runs fast; the default stays OWASP's.
pub fn cheap_config() -> Config {
    let mut config = Config::default();
    config.password.memory_kib = 64;
    config.password.iterations = 1;
    config.password.hasher_threads = 2;
    config
}

pub struct TestServer {
    pub address: SocketAddr,
    pub app: Arc<App>,
    /// The server's clock: it stands at the time the server started until the test advances
    /// it (`advance_clock`).
    pub clock: ManualClock,
    pub data_dir: tempfile::TempDir,
    /// The metrics listener's address, when the config set `metrics.listen` (to any
    /// address: the server binds 127.0.0.1 port 0 instead).
    pub metrics_address: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop_metrics: Option<tokio::sync::oneshot::Sender<()>>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the cheap config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::start_on_listener(listener, adjust).await
    }

    /// Starts a server whose public URL is `http://localhost:PORT`, its listener on
    /// 127.0.0.1: passkeys need a relying party id that is a domain (`localhost`, not an IP
    /// address), and browsers count `http://localhost` as a secure context. Chromium
    /// reaches the 127.0.0.1 listener by that name; a browser test loads the pages at
    /// `localhost_origin`.
    pub async fn start_on_localhost(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        TestServer::start_on_listener(listener, move |config| {
            config.server.public_url = Some(public_url.parse().unwrap());
            adjust(config);
        })
        .await
    }

    /// Starts a server on a listener bound beforehand: for a test whose config needs what
    /// was started knowing the server's address (a proxy in front of it).
    pub async fn start_on_listener(
        listener: tokio::net::TcpListener,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        TestServer::start_on_listener_with_store(
            listener,
            adjust,
            TestStore::OwnStore,
            ManualClock::starting_now(),
        )
        .await
    }

    /// Starts a server on the PostgreSQL database at `database_url`, which other servers of
    /// the test may share (`fresh_postgres_database`), reading `clock`: give every node of
    /// one test clones of one `ManualClock`, so that advancing it moves them all.
    pub async fn start_on_postgres_database(
        database_url: &str,
        clock: ManualClock,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::start_on_listener_with_store(
            listener,
            adjust,
            TestStore::PostgresDatabase(database_url.to_owned()),
            clock,
        )
        .await
    }

    async fn start_on_listener_with_store(
        listener: tokio::net::TcpListener,
        adjust: impl FnOnce(&mut Config),
        test_store: TestStore,
        clock: ManualClock,
    ) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        let address = listener.local_addr().unwrap();
        let mut config = cheap_config();
        config.store.data_dir = data_dir.path().to_path_buf();
        config.server.listen = address;
        config.server.shutdown_grace_seconds = 2;
        adjust(&mut config);
        let metrics_listener = match config.metrics.listen {
            Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let metrics_address = metrics_listener
            .as_ref()
            .map(|listener| listener.local_addr().unwrap());
        config.metrics.listen = metrics_address;
        let store = match test_store {
            TestStore::OwnStore => open_test_store(&mut config).await,
            TestStore::PostgresDatabase(url) => {
                config.store.backend = StoreBackend::Postgres;
                config.store.postgres_url = Some(Secret::new(url.clone()));
                config.store.postgres_pool_size = 8;
                Store::open_postgres(&url, 8).await.unwrap()
            }
        };
        let app = Arc::new(App::with_clock(config, store, clock.clock()).await.unwrap());
        let api = Arc::new(Api::new(Arc::clone(&app)).unwrap());
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = metrics_listener.map(|metrics_listener| {
            tokio::spawn(latchkey::server::run_metrics(
                metrics_listener,
                Arc::clone(&api),
                async move {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        let (shutdown, shutdown_received) = tokio::sync::oneshot::channel::<()>();
        // The real background work (purges, key upkeep, mail), stopped as `serve` stops it.
        let background_tasks = app.start_background_tasks();
        let task = tokio::spawn(latchkey::run(
            listener,
            api,
            background_tasks.stop_when(async move {
                let _ = shutdown_received.await;
            }),
        ));
        TestServer {
            address,
            app,
            clock,
            data_dir,
            metrics_address,
            shutdown: Some(shutdown),
            task: Some(task),
            stop_metrics: Some(stop_metrics),
            metrics_task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        drop(self.stop_metrics.take());
        if let Some(metrics_task) = self.metrics_task.take() {
            metrics_task.await.unwrap();
        }
    }

    /// Moves the server's clock forward: how a test lets tokens, links and sessions expire
    /// without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The time on the server's clock.
    pub fn now(&self) -> UnixSeconds {
        self.app.clock.now_unix_seconds()
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The server's origin by the name `localhost`, its public URL when started with
    /// `start_on_localhost`.
    pub fn localhost_origin(&self) -> String {
        format!("http://localhost:{}", self.address.port())
    }

    /// Creates a user straight in the store, as `latchkey user add` does.
    pub async fn add_user(&self, email: &str, role: Role, status: Status) -> User {
        self.add_user_with_cost(email, role, status, self.cost())
            .await
    }

    pub async fn add_user_with_cost(
        &self,
        email: &str,
        role: Role,
        status: Status,
        cost: HashCost,
    ) -> User {
        let hash = hash_once(&Password::new(PASSWORD.to_owned()), cost).unwrap();
        self.app
            .store
            .insert_user(
                NewUser {
                    email: email.to_owned(),
                    normalized_email: email.trim().to_lowercase(),
                    password_hash: Some(hash),
                    role,
                    status,
                    parent_id: None,
                    first_name: None,
                    last_name: None,
                    permissions: role.default_permissions(),
                    // As `latchkey user add` makes them: the operator vouches.
                    email_verified: status != Status::Pending,
                },
                self.now(),
            )
            .await
            .unwrap()
    }

    pub fn cost(&self) -> HashCost {
        latchkey::app::password_cost(&self.app.config)
    }

    pub fn request(&self, method: &str, path: &str) -> TestRequest {
        request_to(self.address, method, path)
    }

    /// `GET /user/current` with a bearer credential: how a resource server checks one.
    pub async fn current_user_status(&self, credential: &str) -> u16 {
        self.request("GET", "/user/current")
            .bearer(credential)
            .send()
            .await
            .status
    }

    /// Signs in by JSON and returns the whole answer.
    pub async fn sign_in(&self, email: &str) -> SignedIn {
        SignedIn::from_response(&self.sign_in_with_password(email, PASSWORD).await)
    }

    /// `POST /auth/sign-in` by JSON with `password`, the answer as it is.
    pub async fn sign_in_with_password(&self, email: &str, password: &str) -> TestResponse {
        self.request("POST", "/auth/sign-in")
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
    }
}

/// A request to `/frontend/api/v1{path}` on any server.
pub fn request_to(address: SocketAddr, method: &str, path: &str) -> TestRequest {
    TestRequest {
        address,
        method: method.to_owned(),
        path: format!("/frontend/api/v1{path}"),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// A request to a path at the server's root (the hosted pages), not under the API.
pub fn page_request_to(address: SocketAddr, method: &str, path: &str) -> TestRequest {
    TestRequest {
        address,
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

#[derive(Clone, Debug)]
pub struct SignedIn {
    pub signed_token: String,
    pub api_token: String,
    pub user_id: u64,
}

impl SignedIn {
    /// Reads a successful sign-in answer, checked against the vendor's schema.
    pub fn from_response(response: &TestResponse) -> SignedIn {
        assert_eq!(response.status, 200, "{}", response.text());
        crate::schema::assert_matches_schema(&response.json, "AuthPostSignInResponse");
        SignedIn {
            signed_token: response.json["jwt-token"]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
            api_token: response.json["api-token"].as_str().unwrap().to_owned(),
            user_id: response.json["user-id"].as_u64().unwrap(),
        }
    }
}

pub struct TestRequest {
    address: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl TestRequest {
    pub fn header(mut self, name: &str, value: &str) -> TestRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> TestRequest {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Appends a raw query string (already encoded).
    pub fn query(mut self, query: &str) -> TestRequest {
        let separator = if self.path.contains('?') { '&' } else { '?' };
        self.path = format!("{}{separator}{query}", self.path);
        self
    }

    pub fn json(self, body: &Value) -> TestRequest {
        self.raw_body("application/json", serde_json::to_vec(body).unwrap())
    }

    pub fn form(self, pairs: &[(&str, &str)]) -> TestRequest {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.raw_body("application/x-www-form-urlencoded", encoded.into_bytes())
    }

    pub fn raw_body(mut self, content_type: &str, body: Vec<u8>) -> TestRequest {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body;
        self
    }

    pub async fn send(self) -> TestResponse {
        let mut stream = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            self.path,
            self.address,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // A server may answer (413) before reading the whole body; a failed write is fine.
        let _ = stream.write_all(&self.body).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        TestResponse::parse(&raw)
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub json: Value,
}

impl TestResponse {
    pub fn parse(raw: &[u8]) -> TestResponse {
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        }
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_name, _)| header_name == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the documented error shape and status, and returns the body.
    pub fn assert_error(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(self.json["code"].is_u64(), "{}", self.text());
        assert!(self.json["context"].is_object(), "{}", self.text());
        assert!(self.json["error"].is_string(), "{}", self.text());
        assert!(self.json["status"].is_string(), "{}", self.text());
        crate::schema::assert_matches_schema(&self.json, "RouterUnauthorizedError");
        if status == 401 {
            assert_eq!(self.header("www-authenticate"), Some("Bearer"));
        }
        &self.json
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|window| window == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

/// A live session of `user_id` with the given id, written straight to the store.
/// Whether this run of the suite puts its servers on PostgreSQL (`scripts/test`'s second
/// run) rather than on redb files.
pub fn on_postgres() -> bool {
    std::env::var("TEST_STORE_BACKEND").as_deref() == Ok("postgres")
}

/// Which store `TestServer::start_on_listener_with_store` opens.
enum TestStore {
    /// The test's own: a redb file in its data directory, or with
    /// `TEST_STORE_BACKEND=postgres` a database of its own (`open_test_store`).
    OwnStore,
    /// A PostgreSQL database by URL, which several servers may share.
    PostgresDatabase(String),
}

/// A new, empty database on the PostgreSQL server of `TEST_POSTGRES_URL` (whichever backend
/// the run puts its other servers on), and its URL: for tests of several nodes on one
/// database, and of copies between backends.
pub async fn fresh_postgres_database() -> String {
    postgres_database_named(&format!("latchkey_nodes_{}", uuid::Uuid::new_v4().simple())).await
}

/// The URL of the database `name` on the test server, made if it is not there yet (a
/// server restarted on the same data directory finds its database again).
async fn postgres_database_named(name: &str) -> String {
    let server = std::env::var("TEST_POSTGRES_URL")
        .expect("tests on PostgreSQL need TEST_POSTGRES_URL (scripts/test starts a server)");
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    if let Err(error) = client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
    {
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE),
            "{error}"
        );
    }
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The store a test server runs on. On PostgreSQL the database is named after the data
/// directory, so a test that restarts a server on the same directory finds its data again,
/// as it would in the redb file.
async fn open_test_store(config: &mut Config) -> Store {
    if !on_postgres() {
        return Store::open_redb(&config.store.database_path(), 4 * 1024 * 1024).unwrap();
    }
    let name = format!(
        "latchkey_it_{}",
        config
            .store
            .data_dir
            .to_string_lossy()
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|byte| byte.to_ascii_lowercase() as char)
            .collect::<String>()
    );
    let url = postgres_database_named(&name).await;
    config.store.backend = StoreBackend::Postgres;
    config.store.postgres_url = Some(Secret::new(url.clone()));
    config.store.postgres_pool_size = 8;
    Store::open_postgres(&url, 8).await.unwrap()
}

pub fn live_session(id: SessionId, user_id: u64) -> Session {
    let now = now_unix_seconds();
    Session {
        id,
        user_id,
        kind: SessionKind::SignIn,
        created: now - 60,
        expire: now + 3600,
        remote_ip: "127.0.0.1".into(),
        user_agent: String::new(),
        ua_type: UaType::Unknown,
        granted_permissions: PermissionSet::empty(),
        api_token_hash: None,
        made_by: None,
    }
}
