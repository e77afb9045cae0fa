//! Real reverse proxies for the forward-auth tests: nginx and Caddy started on the contrib
//! files (only ports and upstreams substituted), an upstream app that echoes the headers it
//! receives, and a small cookie-keeping client that plays the browser.
// Not every test uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestResponse;

/// The app's name in the contrib files, which the tests' browser asks for.
pub const APP_HOST: &str = "app.example.com";

const CONTRIB_LATCHKEY: &str = "127.0.0.1:8080";
const CONTRIB_APP: &str = "127.0.0.1:3000";

/// An app behind the proxy that answers every request with the headers it received, one
/// `name: value` line each (names lowercase), so a test sees exactly what reached it.
pub struct EchoUpstream {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|request: hyper::Request<_>| {
                        let mut echoed = format!("{} {}\n", request.method(), request.uri());
                        for (name, value) in request.headers() {
                            echoed.push_str(&format!(
                                "{}: {}\n",
                                name.as_str(),
                                String::from_utf8_lossy(value.as_bytes())
                            ));
                        }
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(echoed),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EchoUpstream { address, task }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The values of one header as the upstream echoed them.
pub fn echoed_header(body: &str, name: &str) -> Vec<String> {
    let prefix = format!("{}: ", name.to_ascii_lowercase());
    body.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// A proxy process started on a contrib file, stopped when dropped.
pub struct Proxy {
    pub port: u16,
    child: Child,
    directory: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// The proxy's URL for `path` on the app's host, as the browser asks for it.
    pub fn app_url(&self, path: &str) -> String {
        format!("http://{APP_HOST}:{}{path}", self.port)
    }

    /// The app's origin as Latchkey's `allowed_return_origins` lists it.
    pub fn app_origin(&self) -> String {
        format!("http://{APP_HOST}:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// nginx, one process in the foreground (`master_process off`, so it runs as whoever runs
    /// the tests, root included), on `contrib/nginx/latchkey.conf` included from a main file
    /// that only keeps its pid, logs and temp files in a temp dir.
    pub async fn start_nginx(latchkey: SocketAddr, upstream: SocketAddr) -> Proxy {
        let site = contrib_file("contrib/nginx/latchkey.conf");
        Proxy::start_nginx_site(|port| {
            substitute(
                &site,
                &[
                    ("listen 80;", &format!("listen 127.0.0.1:{port};")),
                    (CONTRIB_LATCHKEY, &latchkey.to_string()),
                    (CONTRIB_APP, &upstream.to_string()),
                ],
            )
        })
        .await
    }

    /// nginx as `start_nginx` runs it, on the site `site_on` gives for the port it listens on.
    pub async fn start_nginx_site(site_on: impl Fn(u16) -> String) -> Proxy {
        start_on_some_port(|port, directory| {
            std::fs::write(directory.join("latchkey.conf"), site_on(port)).unwrap();
            let prefix = directory.display();
            let main = format!(
                "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\n\
                 error_log {prefix}/proxy.log warn;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {prefix}/client_body;\n\
                 proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n\
                 uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
                 include {prefix}/latchkey.conf;\n}}\n"
            );
            std::fs::write(directory.join("nginx.conf"), main).unwrap();
            Command::new(binary("nginx", "/usr/sbin/nginx"))
                .arg("-p")
                .arg(directory)
                .arg("-c")
                .arg(directory.join("nginx.conf"))
                .arg("-e")
                .arg(directory.join("proxy.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(directory))
                .spawn()
                .expect("nginx starts (apt-get install nginx)")
        })
        .await
    }

    /// Caddy on `contrib/caddy/Caddyfile`, its site address given this port over plain HTTP,
    /// with HOME and the XDG directories in a temp dir (its admin API is off in the file).
    pub async fn start_caddy(latchkey: SocketAddr, upstream: SocketAddr) -> Proxy {
        let caddyfile = contrib_file("contrib/caddy/Caddyfile");
        start_on_some_port(|port, directory| {
            let caddyfile = substitute(
                &caddyfile,
                &[
                    (
                        &format!("\n{APP_HOST} {{"),
                        &format!("\nhttp://{APP_HOST}:{port} {{"),
                    ),
                    (CONTRIB_LATCHKEY, &latchkey.to_string()),
                    (CONTRIB_APP, &upstream.to_string()),
                ],
            );
            let path = directory.join("Caddyfile");
            std::fs::write(&path, caddyfile).unwrap();
            Command::new(binary("caddy", "/usr/bin/caddy"))
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&path)
                .env("HOME", directory)
                .env("XDG_DATA_HOME", directory.join("data"))
                .env("XDG_CONFIG_HOME", directory.join("config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(directory))
                .spawn()
                .expect("caddy starts (apt-get install caddy)")
        })
        .await
    }
}

fn contrib_file(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

/// Replaces each example value with the test's; each must be in the file, so a contrib file
/// that changes shape fails here rather than running something else.
pub fn substitute(text: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "the contrib file no longer holds {from:?}"
        );
        text = text.replace(from, to);
    }
    text
}

fn binary(name: &str, usual_path: &str) -> PathBuf {
    if Path::new(usual_path).exists() {
        PathBuf::from(usual_path)
    } else {
        PathBuf::from(name)
    }
}

fn log_file(directory: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join("proxy.log"))
        .unwrap()
}

/// Starts a proxy on a free loopback port. The port is found by binding and releasing it,
/// so another process may take it first: then the proxy exits at once and is started again
/// on another port. Ready once the port answers while the process still runs.
async fn start_on_some_port(spawn: impl Fn(u16, &Path) -> Child) -> Proxy {
    let mut last_log = String::new();
    for _ in 0..5 {
        let directory = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn(port, directory.path());
        let log = directory.path().join("proxy.log");
        let mut proxy = Proxy {
            port,
            child,
            directory,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if proxy.child.try_wait().unwrap().is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last_log = proxy.log();
    }
    panic!("the proxy did not start:\n{last_log}");
}

/// A browser as far as forward auth needs one: it keeps cookies by domain (RFC 6265: a
/// host-only cookie goes back to its host, a `Domain` cookie to that domain and its
/// subdomains, any port) and resolves every name to 127.0.0.1, so `app.example.com:PORT`
/// reaches the proxy and `auth.example.com:PORT` Latchkey.
#[derive(Clone, Debug, Default)]
pub struct Browser {
    cookies: Vec<StoredCookie>,
}

#[derive(Clone, Debug)]
struct StoredCookie {
    name: String,
    value: String,
    domain: String,
    host_only: bool,
}

impl Browser {
    pub async fn get(&mut self, url: &str) -> TestResponse {
        self.send("GET", url, &[], None).await
    }

    /// Sends a request with the cookies for its host and keeps the cookies it sets.
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        extra_headers: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> TestResponse {
        let parsed = url::Url::parse(url).unwrap();
        let host = parsed.host_str().unwrap().to_owned();
        let port = parsed.port_or_known_default().unwrap();
        let mut target = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            target = format!("{target}?{query}");
        }
        let body = form.map_or_else(String::new, |pairs| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        });
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        let cookies = self.cookie_header(&host);
        if !cookies.is_empty() {
            head.push_str(&format!("Cookie: {cookies}\r\n"));
        }
        for (name, value) in extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let response = TestResponse::parse(&raw);
        for (name, value) in &response.headers {
            if name == "set-cookie" {
                self.store_cookie(&host, value);
            }
        }
        response
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookies.iter().any(|cookie| cookie.name == name)
    }

    fn cookie_header(&self, host: &str) -> String {
        self.cookies
            .iter()
            .filter(|cookie| {
                host == cookie.domain
                    || (!cookie.host_only && host.ends_with(&format!(".{}", cookie.domain)))
            })
            .map(|cookie| format!("{}={}", cookie.name, cookie.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn store_cookie(&mut self, host: &str, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            return;
        };
        let mut domain = None;
        let mut expired = false;
        for attribute in parts {
            let (key, attribute_value) = attribute.split_once('=').unwrap_or((attribute, ""));
            if key.eq_ignore_ascii_case("domain") {
                domain = Some(attribute_value.trim_start_matches('.').to_ascii_lowercase());
            }
            if key.eq_ignore_ascii_case("max-age") && attribute_value.trim() == "0" {
                expired = true;
            }
        }
        // A browser refuses a Domain that does not cover the host that set it.
        if let Some(domain) = &domain
            && host != domain
            && !host.ends_with(&format!(".{domain}"))
        {
            return;
        }
        let host_only = domain.is_none();
        let domain = domain.unwrap_or_else(|| host.to_owned());
        self.cookies.retain(|cookie| {
            !(cookie.name == name && cookie.domain == domain && cookie.host_only == host_only)
        });
        if !expired {
            self.cookies.push(StoredCookie {
                name: name.to_owned(),
                value: value.to_owned(),
                domain,
                host_only,
            });
        }
    }
}
