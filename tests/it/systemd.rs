//! The systemd deployment as `contrib/latchkey.service` and README's "Running under systemd"
//! describe it: the unit's own command line reads its config file, and the admin commands
//! reach a server that runs as another user (root or the server's user are accepted, anyone
//! else gets a message naming the server's user).

use std::process::Command;

use crate::binary::{BINARY, RunningServer, spawn_server, terminate};
use crate::support::request_to;

const UNIT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/latchkey.service");
const UNIT_BINARY: &str = "/usr/local/bin/latchkey";
const UNIT_CONFIG_FILE: &str = "/etc/latchkey/config.toml";
const UNIT_DATA_DIR: &str = "/var/lib/latchkey";

/// The unit's `ExecStart` words and `Environment` pairs, as systemd would read them (the
/// unit uses no quoting, which this refuses rather than misreads).
fn unit_command_line() -> (Vec<String>, Vec<(String, String)>) {
    let unit = std::fs::read_to_string(UNIT_FILE).unwrap();
    let mut exec_start = None;
    let mut environment = Vec::new();
    for line in unit.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("ExecStart=") {
            assert!(exec_start.is_none(), "one ExecStart line");
            assert!(!value.contains(['"', '\'', '\\']), "unquoted: {value}");
            exec_start = Some(value.split_whitespace().map(str::to_owned).collect());
        } else if let Some(value) = line.strip_prefix("Environment=") {
            assert!(!value.contains(['"', '\'', '\\']), "unquoted: {value}");
            for pair in value.split_whitespace() {
                let (name, value) = pair.split_once('=').unwrap();
                environment.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    (exec_start.expect("an ExecStart line"), environment)
}

/// The unit's command line with its paths moved into `root`: the binary is the one built,
/// the config file and the data directory are temp ones; `serve` becomes `subcommand`.
fn unit_command(root: &std::path::Path, subcommand: &str) -> Command {
    let (words, environment) = unit_command_line();
    let relocate = |text: &str| {
        text.replace(UNIT_CONFIG_FILE, root.join("config.toml").to_str().unwrap())
            .replace(UNIT_DATA_DIR, root.join("data").to_str().unwrap())
    };
    assert_eq!(words[0], UNIT_BINARY);
    assert_eq!(words.last().unwrap(), "serve");
    let mut command = Command::new(BINARY);
    command.env_clear();
    for word in &words[1..words.len() - 1] {
        command.arg(relocate(word));
    }
    command.arg(subcommand);
    for (name, value) in &environment {
        command.env(name, relocate(value));
    }
    command
}

fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_units_command_line_reads_its_config_file() {
    let root = tempfile::tempdir().unwrap();
    let port = free_local_port();
    std::fs::write(
        root.path().join("config.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\n\
             [password]\nmemory_kib = 64\niterations = 1\n\
             [email]\nsmtp_password = \"unit-smtp-secret\"\n"
        ),
    )
    .unwrap();

    let checked = unit_command(root.path(), "check-config").output().unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{report}");
    let config_path = root.path().join("config.toml");
    assert!(
        report.contains(&format!("config file: {}\n", config_path.display())),
        "{report}"
    );
    assert!(
        report.contains(&format!("server.listen = \"127.0.0.1:{port}\"")),
        "{report}"
    );
    assert!(report.contains("email.smtp_password = \"***\""), "{report}");
    assert!(!report.contains("unit-smtp-secret"), "{report}");

    let mut server: RunningServer = spawn_server(unit_command(root.path(), "serve"));
    assert_eq!(server.address.port(), port, "the config's listen address");
    let health = request_to(server.address, "GET", "/health").send().await;
    assert_eq!(health.status, 200);
    let started = server.log.lock().unwrap().join("\n");
    assert!(
        started.contains(&format!("\"config_file\":\"{}\"", config_path.display())),
        "{started}"
    );
    assert!(root.path().join("data/latchkey.redb").exists());
    assert_eq!(terminate(&mut server).code(), Some(0));

    // A config file the unit names but that is missing stops the start, naming it.
    std::fs::remove_file(&config_path).unwrap();
    let missing = unit_command(root.path(), "serve").output().unwrap();
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        message.contains(&config_path.display().to_string()),
        "{message}"
    );
}
