//! The built binary, end to end: `user add`, `serve` with the default (OWASP) argon2 cost,
//! sign-ins, peak memory, SIGTERM, and a restart on the same file.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::json;

use crate::support::{PASSWORD, request_to};

pub const BINARY: &str = env!("CARGO_BIN_EXE_latchkey");

/// Cheap argon2 for the tests that do not measure it.
pub const CHEAP_HASHING: [(&str, &str); 2] = [
    ("LATCHKEY_PASSWORD__MEMORY_KIB", "64"),
    ("LATCHKEY_PASSWORD__ITERATIONS", "1"),
];

pub struct RunningServer {
    pub child: Child,
    pub address: SocketAddr,
    /// Every line the server wrote to standard error so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A server a failed test leaves behind is killed, not orphaned.
impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn start_server(data_dir: &std::path::Path) -> RunningServer {
    start_server_with(data_dir, &[])
}

pub fn start_server_with(
    data_dir: &std::path::Path,
    environment: &[(&str, &str)],
) -> RunningServer {
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("LATCHKEY_DATA_DIR", data_dir)
        .envs(environment.iter().copied());
    spawn_server(command)
}

/// Spawns a `serve` command line and waits for its listen line (text or JSON log).
pub fn spawn_server(mut command: Command) -> RunningServer {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let collected = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            collected.lock().unwrap().push(line.clone());
            let _ = sender.send(line);
        }
    });
    let address = loop {
        let Ok(line) = receiver.recv_timeout(std::time::Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server printed no listen line");
        };
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(listen) = entry["listen"].as_str()
        {
            break listen.parse().unwrap();
        }
    };
    RunningServer {
        child,
        address,
        log,
    }
}

pub fn terminate(server: &mut RunningServer) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.child.wait().unwrap()
}

/// One `/proc/<pid>/status` figure, in KiB.
fn memory_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn user_add_serve_sign_in_terminate_and_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_path = data_dir.path().join("nested");
    let mut add = Command::new(BINARY)
        .args([
            "user",
            "add",
            "--email",
            "root@example.com",
            "--role",
            "root",
            "--password-stdin",
        ])
        .env("LATCHKEY_DATA_DIR", &data_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let output = add.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("created user 1 root@example.com (root)")
    );
    use std::os::unix::fs::PermissionsExt;
    let file_mode = std::fs::metadata(data_path.join("latchkey.redb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(file_mode & 0o777, 0o600);
    let directory_mode = std::fs::metadata(&data_path).unwrap().permissions().mode();
    assert_eq!(directory_mode & 0o777, 0o700);

    // Eight sign-ins of one account from one network at a time: each holds a token of the
    // throttle's (account, network) bucket while it hashes, so that bucket gets room for 8.
    let mut server = start_server_with(
        &data_path,
        &[("LATCHKEY_THROTTLE__FAILURES_PER_ACCOUNT_NETWORK", "8")],
    );
    let address = server.address;
    let sign_in = move || async move {
        request_to(address, "POST", "/auth/sign-in")
            .json(&json!({ "email": "root@example.com", "password": PASSWORD }))
            .send()
            .await
    };
    let first = sign_in().await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first_token = first.json["jwt-token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // 200 sign-ins at the default argon2 cost, 8 at a time: memory stays bounded. The heap
    // (RssAnon) is what a leak or a fresh 19 MiB buffer per hash would grow; the whole
    // resident size of this debug build also counts its own, much larger, code pages
    // (the benchmark holds the release binary's VmHWM to 64 MiB).
    let pid = server.child.id();
    let mut heap_after_batches = Vec::new();
    for _ in 0..25 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..8 {
            batch.spawn(sign_in());
        }
        while let Some(response) = batch.join_next().await {
            assert_eq!(response.unwrap().status, 200);
        }
        heap_after_batches.push(memory_status_kib(pid, "RssAnon:"));
    }
    eprintln!("heap (RssAnon) after each batch of 8 sign-ins, KiB: {heap_after_batches:?}");
    let heap_peak = heap_after_batches.iter().max().copied().unwrap();
    // Two hashers' 19 MiB buffers, the runtime and redb's cache.
    assert!(
        heap_peak < 56 * 1024,
        "heap {heap_peak} KiB is over 56 MiB: {heap_after_batches:?}"
    );
    let (first, last) = (heap_after_batches[0], heap_after_batches[24]);
    assert!(
        last <= first + 4 * 1024,
        "the heap grew from {first} KiB to {last} KiB over 200 sign-ins: {heap_after_batches:?}"
    );
    let peak = memory_status_kib(pid, "VmHWM:");
    assert!(peak < 80 * 1024, "peak RSS {peak} KiB is over 80 MiB");

    let status = terminate(&mut server);
    assert_eq!(status.code(), Some(0), "SIGTERM should exit 0");

    let mut restarted = start_server(&data_path);
    let profile = request_to(restarted.address, "GET", "/user/current")
        .bearer(&first_token)
        .send()
        .await;
    assert_eq!(profile.status, 200, "{}", profile.text());
    assert_eq!(profile.json["email"], "root@example.com");
    assert_eq!(terminate(&mut restarted).code(), Some(0));
}

#[test]
fn password_stdin_strips_exactly_one_newline_and_arguments_never_carry_one() {
    let data_dir = tempfile::tempdir().unwrap();
    let add = |email: &str, stdin: &str| {
        admin(
            data_dir.path(),
            &["user", "add", "--email", email, "--password-stdin"],
            stdin,
        )
    };
    assert!(add("one@example.com", "password one\n\n").0);
    assert!(add("two@example.com", " spaced password ").0);
    let (ok, text) = add("one@example.com", "another password\n");
    assert!(!ok && text.contains("taken"), "{text}");
    assert!(!add("three@example.com", "abc\n").0);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store_dir = data_dir.path().to_path_buf();
    runtime.block_on(async move {
        let server = crate::support::TestServer::start_with(|config| {
            config.store.data_dir = store_dir;
        })
        .await;
        // "password one\n\n" keeps its second newline; " spaced password " keeps its spaces.
        for (email, password, status) in [
            ("one@example.com", "password one\n", 200),
            ("one@example.com", "password one", 401),
            ("two@example.com", " spaced password ", 200),
        ] {
            let response = server
                .request("POST", "/auth/sign-in")
                .json(&json!({ "email": email, "password": password }))
                .send()
                .await;
            assert_eq!(response.status, status, "{email} {password:?}");
        }
    });
}

/// Runs an admin command with cheap argon2 against `data_dir`; returns (success, stdout+stderr).
pub fn admin(data_dir: &std::path::Path, arguments: &[&str], stdin: &str) -> (bool, String) {
    run_with_stdin(
        Command::new(BINARY)
            .args(arguments)
            .env("LATCHKEY_DATA_DIR", data_dir)
            .envs(CHEAP_HASHING),
        stdin,
    )
}

/// Runs `command` with `stdin` written to it; returns (success, stdout then stderr).
pub fn run_with_stdin(command: &mut Command, stdin: &str) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn admin_commands_suspend_activate_demote_and_revoke_but_keep_the_last_root() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path();
    let password = format!("{PASSWORD}\n");
    assert!(
        admin(
            path,
            &[
                "user",
                "add",
                "--email",
                "root@example.com",
                "--role",
                "root",
                "--password-stdin"
            ],
            &password
        )
        .0
    );
    assert!(
        admin(
            path,
            &[
                "user",
                "add",
                "--email",
                "user@example.com",
                "--password-stdin"
            ],
            &password
        )
        .0
    );

    let (ok, text) = admin(
        path,
        &["user", "suspend", "--email", "root@example.com"],
        "",
    );
    assert!(!ok && text.contains("last active root"), "{text}");
    let (ok, text) = admin(
        path,
        &[
            "user",
            "role",
            "--email",
            "root@example.com",
            "--role",
            "admin",
        ],
        "",
    );
    assert!(!ok && text.contains("last active root"), "{text}");
    let (ok, text) = admin(
        path,
        &[
            "user",
            "role",
            "--email",
            "user@example.com",
            "--role",
            "admin",
        ],
        "",
    );
    assert!(ok && text.contains("role admin"), "{text}");
    let (ok, text) = admin(
        path,
        &["user", "suspend", "--email", "user@example.com"],
        "",
    );
    assert!(ok && text.contains("status suspended"), "{text}");
    let (_, listing) = admin(path, &["user", "list"], "");
    assert!(
        listing.contains("user@example.com\tadmin\tsuspended"),
        "{listing}"
    );
    assert!(
        admin(
            path,
            &["user", "activate", "--email", "user@example.com"],
            ""
        )
        .0
    );
    assert!(
        admin(
            path,
            &[
                "user",
                "passwd",
                "--email",
                "user@example.com",
                "--password-stdin"
            ],
            "a newer password\n"
        )
        .0
    );

    // Two sessions, then the server stops; the CLI lists and ends them.
    let mut server = start_server(path);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let response = request_to(server.address, "POST", "/auth/sign-in")
            .json(&json!({ "email": "user@example.com", "password": "a newer password" }))
            .send()
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        tokens.push(
            response.json["jwt-token"]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(terminate(&mut server).code(), Some(0));
    let (ok, sessions) = admin(
        path,
        &["session", "list", "--email", "user@example.com"],
        "",
    );
    assert!(ok);
    let ids: Vec<&str> = sessions
        .lines()
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert_eq!(ids.len(), 2, "{sessions}");
    let revoke_first = [
        "session",
        "revoke",
        "--email",
        "user@example.com",
        "--id",
        ids[0],
    ];
    let (ok, text) = admin(path, &revoke_first, "");
    assert!(ok, "{text}");
    let (ok, _) = admin(path, &revoke_first, "");
    assert!(!ok, "a session cannot end twice");

    let mut server = start_server(path);
    let mut statuses = Vec::new();
    for token in &tokens {
        let response = request_to(server.address, "GET", "/user/current")
            .bearer(token)
            .send()
            .await;
        statuses.push(response.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
    assert_eq!(terminate(&mut server).code(), Some(0));
    let (ok, text) = admin(
        path,
        &["session", "revoke", "--email", "user@example.com", "--all"],
        "",
    );
    assert!(ok && text.contains("ended 1 sessions"), "{text}");
}
