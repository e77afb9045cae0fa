//! The metrics listener: exact counts after known traffic, the output accepted by
//! `promtool check metrics`, the alerting rules accepted (and unit-tested) by `promtool`, and
//! a real Prometheus that scrapes the endpoint with the shipped scrape config.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey::model::{Role, Status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::binary::{BINARY, CHEAP_HASHING, start_server_with, terminate};
use crate::mail_support::wait_for_mail;
use crate::support::{TestResponse, TestServer, on_postgres};

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/prometheus");

async fn start_with_metrics() -> TestServer {
    TestServer::start_with(|config| {
        config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// One raw request to the metrics listener.
async fn metrics_request(address: SocketAddr, method: &str, path: &str, accept: &str) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Scrape {
        status,
        content_type,
        body: body.to_owned(),
    }
}

struct Scrape {
    status: u16,
    content_type: String,
    body: String,
}

impl Scrape {
    /// Every sample, by its name and labels as written (`name{label="value",...}`).
    fn samples(&self) -> BTreeMap<String, f64> {
        self.body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                (series.to_owned(), value.parse().unwrap())
            })
            .collect()
    }
}

async fn scrape(server: &TestServer) -> Scrape {
    let scrape = metrics_request(
        server.metrics_address.unwrap(),
        "GET",
        "/metrics",
        "text/plain",
    )
    .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    scrape
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

async fn sign_in_with(server: &TestServer, email: &str, password: &str) -> TestResponse {
    server
        .request("POST", "/auth/sign-in")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

#[tokio::test]
async fn a_scrape_after_known_traffic_reports_exact_counts() {
    let server = start_with_metrics().await;
    server
        .add_user("metrics@example.com", Role::User, Status::Active)
        .await;
    let first = server.sign_in("metrics@example.com").await;
    server.sign_in("metrics@example.com").await;
    assert_eq!(
        sign_in_with(&server, "metrics@example.com", "wrong password")
            .await
            .status,
        401
    );
    assert_eq!(
        sign_in_with(&server, "nobody@example.com", "wrong password")
            .await
            .status,
        401
    );
    for _ in 0..3 {
        assert_eq!(server.current_user_status(&first.signed_token).await, 200);
    }
    assert_eq!(server.current_user_status(&first.api_token).await, 200);
    assert_eq!(
        server.request("GET", "/no/such/route").send().await.status,
        404
    );
    assert_eq!(
        server
            .request("DELETE", "/auth/sign-in")
            .send()
            .await
            .status,
        405
    );
    let reset = server
        .request("POST", "/auth/password-reset")
        .json(&json!({ "email": "metrics@example.com" }))
        .send()
        .await;
    assert_eq!(reset.status, 200);
    let outbox = server.data_dir.path().join("outbox");
    wait_for_mail(&outbox, 1, Duration::from_secs(20)).await;

    // The worker counts a delivery just after writing the file: poll for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let samples = scrape(&server).await.samples();
        let delivered = samples
            .get(r#"latchkey_mail_deliveries_total{outcome="delivered"}"#)
            .copied();
        let queued = samples.get("latchkey_mail_queue_depth").copied();
        if delivered == Some(1.0) && queued == Some(0.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery was never counted: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let requests = |route: &str, method: &str, status: &str| {
        value(
            &samples,
            &format!(
                r#"latchkey_http_requests_total{{route="{route}",method="{method}",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(requests("/auth/sign-in", "POST", "200"), 2.0);
    assert_eq!(requests("/auth/sign-in", "POST", "401"), 2.0);
    assert_eq!(requests("/user/current", "GET", "200"), 4.0);
    assert_eq!(requests("unmatched", "GET", "404"), 1.0);
    assert_eq!(requests("/auth/sign-in", "DELETE", "405"), 1.0);
    assert_eq!(requests("/auth/password-reset", "POST", "200"), 1.0);
    let request_series = samples
        .keys()
        .filter(|series| series.starts_with("latchkey_http_requests_total"))
        .count();
    assert_eq!(request_series, 6, "{samples:#?}");
    assert_eq!(
        value(
            &samples,
            r#"latchkey_http_request_duration_seconds_count{route="/user/current"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &samples,
            r#"latchkey_http_request_duration_seconds_bucket{route="/auth/sign-in",le="+Inf"}"#
        ),
        5.0
    );
    assert!(
        value(
            &samples,
            r#"latchkey_http_request_duration_seconds_sum{route="/auth/sign-in"}"#
        ) > 0.0
    );

    let sign_ins = |method: &str, outcome: &str| {
        value(
            &samples,
            &format!(r#"latchkey_sign_ins_total{{method="{method}",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(sign_ins("password", "success"), 2.0);
    assert_eq!(sign_ins("password", "wrong_credentials"), 2.0);
    assert_eq!(sign_ins("password", "throttled"), 0.0);
    assert_eq!(sign_ins("oauth", "success"), 0.0);
    assert_eq!(sign_ins("passkey", "success"), 0.0);

    // Four verifications (the unknown address against the dummy hash too); nothing waits.
    assert_eq!(value(&samples, "latchkey_password_hashes_total"), 4.0);
    assert_eq!(value(&samples, "latchkey_password_hash_queue_depth"), 0.0);
    assert_eq!(
        value(&samples, "latchkey_password_hash_queue_capacity"),
        server.app.config.password.queue_capacity as f64
    );
    // The signed token was checked three times: verified once, then answered from the cache.
    assert_eq!(value(&samples, "latchkey_token_cache_misses_total"), 1.0);
    assert_eq!(value(&samples, "latchkey_token_cache_hits_total"), 2.0);
    assert_eq!(
        value(
            &samples,
            r#"latchkey_mail_deliveries_total{outcome="failed"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            r#"latchkey_mail_deliveries_total{outcome="given_up"}"#
        ),
        0.0
    );
    let store_bytes = server.app.store.size_in_bytes().await.unwrap();
    assert_eq!(value(&samples, "latchkey_store_bytes"), store_bytes as f64);
    if !on_postgres() {
        let file_bytes = std::fs::metadata(server.app.config.store.database_path())
            .unwrap()
            .len();
        assert_eq!(store_bytes, file_bytes);
    }
    assert_eq!(
        value(
            &samples,
            &format!(
                r#"latchkey_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert!(value(&samples, "process_resident_memory_bytes") > 1e6);
    assert!(
        value(&samples, "process_virtual_memory_bytes")
            >= value(&samples, "process_resident_memory_bytes")
    );
    assert!(value(&samples, "process_cpu_seconds_total") > 0.0);
    assert!(value(&samples, "process_open_fds") >= 3.0);
    assert!(value(&samples, "process_max_fds") >= value(&samples, "process_open_fds"));

    // Bounded labels: a route label is a template, and no address, id or token reaches a
    // series.
    let text = scrape(&server).await.body;
    for private in ["example.com", first.api_token.as_str(), "no/such"] {
        assert!(!text.contains(private), "{private} in\n{text}");
    }
    let templates: Vec<&str> = latchkey::http::Route::ALL
        .iter()
        .map(|route| route.template())
        .collect();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        if let Some((_, after)) = line.split_once("route=\"") {
            let route = after.split('"').next().unwrap();
            assert!(route == "unmatched" || templates.contains(&route), "{line}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn promtool_accepts_the_output_and_openmetrics_is_served_on_request() {
    let server = start_with_metrics().await;
    server
        .add_user("lint@example.com", Role::User, Status::Active)
        .await;
    let signed_in = server.sign_in("lint@example.com").await;
    server.current_user_status(&signed_in.signed_token).await;
    let text = scrape(&server).await;
    assert_eq!(
        text.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
        text.body
    );

    let address = server.metrics_address.unwrap();
    let openmetrics = metrics_request(
        address,
        "GET",
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await;
    assert_eq!(openmetrics.status, 200);
    assert!(
        openmetrics
            .content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        openmetrics.content_type
    );
    assert!(
        openmetrics.body.ends_with("# EOF\n"),
        "{}",
        openmetrics.body
    );
    assert!(openmetrics.body.contains("# TYPE latchkey_build info\n"));

    // Only GET /metrics: anything else is plainly refused.
    let elsewhere = metrics_request(address, "GET", "/frontend/api/v1/health", "*/*").await;
    assert_eq!(elsewhere.status, 404);
    let posted = metrics_request(address, "POST", "/metrics", "*/*").await;
    assert_eq!(posted.status, 405);
    server.stop().await;
}

#[test]
fn promtool_accepts_the_alerting_rules_and_their_unit_tests() {
    for args in [
        ["check", "rules", "latchkey-rules.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "latchkey-rules.test.yml"],
    ] {
        let checked = Command::new("promtool")
            .args(args)
            .current_dir(CONTRIB)
            .output()
            .expect("promtool is installed (scripts/test installs it)");
        assert!(
            checked.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

/// A Prometheus server for one test, killed when dropped.
struct PrometheusServer {
    child: Child,
    address: SocketAddr,
    _directory: tempfile::TempDir,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on now. Prometheus takes no listening socket from its
/// parent, so the port is found by binding and letting go; `start_prometheus` tries again
/// with another if it was taken meanwhile.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `/usr/bin/prometheus` on the shipped scrape config, aimed at `target`, scraping
/// and evaluating every second, with the shipped rules.
async fn start_prometheus(target: SocketAddr) -> PrometheusServer {
    let directory = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(Path::new(CONTRIB).join("prometheus.yml")).unwrap();
    assert!(shipped.contains("127.0.0.1:9464") && shipped.contains("15s"));
    let config = shipped
        .replace("127.0.0.1:9464", &target.to_string())
        .replace("15s", "1s");
    std::fs::write(directory.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        Path::new(CONTRIB).join("latchkey-rules.yml"),
        directory.path().join("latchkey-rules.yml"),
    )
    .unwrap();
    for _ in 0..5 {
        let address: SocketAddr = format!("127.0.0.1:{}", unused_port()).parse().unwrap();
        let mut child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                directory.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/test installs it)");
        // Up once its API answers; gone at once if the port was taken.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return PrometheusServer {
                    child,
                    address,
                    _directory: directory,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("prometheus did not start");
}

fn prometheus_binary() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/prometheus");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("prometheus")
    }
}

/// `GET` on Prometheus's HTTP API, as JSON.
async fn prometheus_api(address: SocketAddr, path_and_query: &str) -> serde_json::Value {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // HTTP/1.0, so that the answer comes whole, never chunked.
    let head = format!("GET {path_and_query} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_endpoint_and_loads_the_rules() {
    let server = start_with_metrics().await;
    let prometheus = start_prometheus(server.metrics_address.unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = prometheus_api(prometheus.address, "/api/v1/query?query=up").await;
        let up = answer["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned);
        if up.as_deref() == Some("1") {
            assert_eq!(answer["data"]["result"][0]["metric"]["job"], "latchkey");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw up == 1: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It read the series too (in OpenMetrics, which it asks for), and loaded the rules.
    let build = prometheus_api(
        prometheus.address,
        "/api/v1/query?query=latchkey_build_info",
    )
    .await;
    assert_eq!(
        build["data"]["result"][0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build}"
    );
    let rules = prometheus_api(prometheus.address, "/api/v1/rules").await;
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|rule| rule["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "LatchkeySignInFailuresSurging",
            "LatchkeyPasswordHashQueueSaturated",
            "LatchkeyMailDeliveryFailing"
        ],
        "{rules}"
    );
    drop(prometheus);
    server.stop().await;
}

#[tokio::test]
async fn the_binary_serves_metrics_on_its_own_port_and_stops_them_with_the_server() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut environment = CHEAP_HASHING.to_vec();
    environment.push(("LATCHKEY_METRICS__LISTEN", "127.0.0.1:0"));
    let mut server = start_server_with(data_dir.path(), &environment);
    let start_line = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|line| line.contains("latchkey serving"))
        .cloned()
        .unwrap();
    let metrics_address: SocketAddr = start_line
        .split("metrics=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in {start_line}"))
        .parse()
        .unwrap();
    assert_ne!(metrics_address, server.address);
    let scrape = metrics_request(metrics_address, "GET", "/metrics", "text/plain").await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.body.contains("latchkey_build_info"),
        "{}",
        scrape.body
    );
    assert!(terminate(&mut server).success());
    assert!(
        tokio::net::TcpStream::connect(metrics_address)
            .await
            .is_err()
    );
}

#[test]
fn a_metrics_address_that_is_taken_stops_the_start() {
    let data_dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let output = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("LATCHKEY_DATA_DIR", data_dir.path())
        .env("LATCHKEY_METRICS__LISTEN", &taken_address)
        .envs(CHEAP_HASHING)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on {taken_address} (metrics.listen)"
        )),
        "{stderr}"
    );
}
