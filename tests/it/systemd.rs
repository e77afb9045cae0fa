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

/// The unit's paths moved into `root`: the config file and the data directory are temp
/// ones, and so is any backup under /var/backups.
fn relocate(root: &std::path::Path, text: &str) -> String {
    if text.starts_with("/var/backups/") {
        let name = text.rsplit('/').next().unwrap();
        return root.join("backups").join(name).to_str().unwrap().to_owned();
    }
    text.replace(UNIT_CONFIG_FILE, root.join("config.toml").to_str().unwrap())
        .replace(UNIT_DATA_DIR, root.join("data").to_str().unwrap())
}

/// The unit's command line with its paths moved into `root` and the binary the one built,
/// run as `user` (else as this process's user); `serve` becomes `subcommand`.
fn unit_command(root: &std::path::Path, subcommand: &str) -> Command {
    unit_command_as(None, root, subcommand)
}

fn unit_command_as(
    user: Option<&TemporaryUser>,
    root: &std::path::Path,
    subcommand: &str,
) -> Command {
    let (words, environment) = unit_command_line();
    let relocate = |text: &str| relocate(root, text);
    assert_eq!(words[0], UNIT_BINARY);
    assert_eq!(words.last().unwrap(), "serve");
    let mut command = match user {
        Some(user) => user.latchkey(),
        None => Command::new(BINARY),
    };
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for word in &words[1..words.len() - 1] {
        command.arg(relocate(word));
    }
    command.arg(subcommand);
    for (name, value) in &environment {
        command.env(name, relocate(value));
    }
    command
}

#[tokio::test]
async fn the_units_command_line_reads_its_config_file() {
    let root = tempfile::tempdir().unwrap();
    // Port 0: the kernel picks a free port as the server binds, so no port is picked twice.
    // A port other than the default's shows that the server read this file.
    std::fs::write(
        root.path().join("config.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
         [password]\nmemory_kib = 64\niterations = 1\n\
         [email]\nsmtp_password = \"unit-smtp-secret\"\n",
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
        report.contains("server.listen = \"127.0.0.1:0\""),
        "{report}"
    );
    assert!(report.contains("email.smtp_password = \"***\""), "{report}");
    assert!(!report.contains("unit-smtp-secret"), "{report}");

    let mut server: RunningServer = spawn_server(unit_command(root.path(), "serve"));
    assert_ne!(
        server.address.port(),
        latchkey::Config::default().server.listen.port(),
        "the config's listen address"
    );
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

/// useradd and userdel lock /etc/passwd: this test binary runs them one at a time.
static USER_DATABASE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A system user made for one test with `useradd`, removed with `userdel` when dropped,
/// with a link to (or copy of) the built binary in a directory it can reach: the checkout's
/// own may be private to root.
struct TemporaryUser {
    name: String,
    uid: u32,
    gid: u32,
    binary_directory: tempfile::TempDir,
}

impl TemporaryUser {
    fn create(suffix: &str) -> TemporaryUser {
        let name = format!("lk{}{suffix}", std::process::id());
        let _one_at_a_time = USER_DATABASE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
        let id = |flag: &str| -> u32 {
            let output = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let binary_directory = tempfile::tempdir().unwrap();
        set_mode(binary_directory.path(), 0o755);
        let binary = binary_directory.path().join("latchkey");
        if std::fs::hard_link(BINARY, &binary).is_err() {
            std::fs::copy(BINARY, &binary).unwrap();
        }
        TemporaryUser {
            name,
            uid,
            gid,
            binary_directory,
        }
    }

    /// The built binary run as this user (and its group only).
    fn latchkey(&self) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid", &self.name, "--regid", &self.name])
            .args(["--clear-groups", "--"])
            .arg(self.binary_directory.path().join("latchkey"));
        command
    }
}

impl Drop for TemporaryUser {
    fn drop(&mut self) {
        let _one_at_a_time = USER_DATABASE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Runs the CLI on `data_dir` with cheap argon2, as root or as `user`: (success, output).
fn admin_as(
    user: Option<&TemporaryUser>,
    data_dir: &std::path::Path,
    arguments: &[&str],
    stdin: &str,
) -> (bool, String) {
    let mut command = match user {
        Some(user) => user.latchkey(),
        None => Command::new(BINARY),
    };
    crate::binary::run_with_stdin(
        command
            .args(arguments)
            .env("LATCHKEY_DATA_DIR", data_dir)
            .envs(crate::binary::CHEAP_HASHING),
        stdin,
    )
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn start_server_as(user: &TemporaryUser, data_dir: &std::path::Path) -> RunningServer {
    let mut command = user.latchkey();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("LATCHKEY_DATA_DIR", data_dir)
        .envs(crate::binary::CHEAP_HASHING);
    spawn_server(command)
}

/// The systemd case: the server runs as its own user. Root and that user are served over
/// the socket; another user reads a message naming the server's user; `backup` writes
/// where only root may write; root's `restore` leaves a store the server's user can open.
#[tokio::test]
async fn admin_commands_reach_a_server_run_by_another_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: making users needs root (CI runs as root)");
        return;
    }
    let service = TemporaryUser::create("s");
    let stranger = TemporaryUser::create("o");
    let root = tempfile::tempdir().unwrap();
    set_mode(root.path(), 0o755);
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(service.uid), Some(service.gid)).unwrap();
    let backups = root.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    set_mode(&backups, 0o700);

    let mut server = start_server_as(&service, &data);
    let password = format!("{}\n", crate::support::PASSWORD);
    let (ok, text) = admin_as(
        None,
        &data,
        &[
            "user",
            "add",
            "--email",
            "root@example.com",
            "--role",
            "root",
            "--password-stdin",
        ],
        &password,
    );
    assert!(ok, "root is served: {text}");
    let (ok, listed) = admin_as(Some(&service), &data, &["user", "list"], "");
    assert!(ok && listed.contains("root@example.com"), "{listed}");

    // Anyone else: the data directory (0700) keeps it out, and the message says who may.
    let advice = format!(
        "user {0}; run this as root or with sudo -u {0}",
        service.name
    );
    let (ok, text) = admin_as(Some(&stranger), &data, &["user", "list"], "");
    assert!(!ok, "{text}");
    assert!(
        text.contains("permission denied") && text.contains(&advice),
        "{text}"
    );
    // With the modes loosened by mistake, the server itself refuses, with one line.
    set_mode(&data, 0o711);
    set_mode(&data.join("latchkey.sock"), 0o666);
    let (ok, text) = admin_as(Some(&stranger), &data, &["user", "list"], "");
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("refused uid {}", stranger.uid))
            && text.contains(&format!("the server runs as {advice}")),
        "{text}"
    );
    assert!(!text.contains("Broken pipe"), "{text}");
    set_mode(&data, 0o700);

    // The copy streams to the CLI, which writes where the server's user cannot.
    let live_copy = backups.join("live.redb");
    let (ok, text) = admin_as(None, &data, &["backup", live_copy.to_str().unwrap()], "");
    assert!(ok, "{text}");
    let metadata = std::fs::metadata(&live_copy).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(metadata.uid(), 0);
    let (ok, text) = admin_as(None, &data, &["backup", live_copy.to_str().unwrap()], "");
    assert!(!ok && text.contains("exists"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(terminate(&mut server).code(), Some(0));

    // Stopped: backup reads the store itself; root's restore keeps the server's ownership.
    let stopped_copy = backups.join("stopped.redb");
    let (ok, text) = admin_as(None, &data, &["backup", stopped_copy.to_str().unwrap()], "");
    assert!(ok, "{text}");
    let (ok, text) = admin_as(None, &data, &["restore", live_copy.to_str().unwrap()], "");
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::metadata(data.join("latchkey.redb")).unwrap().uid(),
        service.uid
    );
    let mut restarted = start_server_as(&service, &data);
    let signed_in = request_to(restarted.address, "POST", "/auth/sign-in")
        .json(&serde_json::json!({
            "email": "root@example.com",
            "password": crate::support::PASSWORD
        }))
        .send()
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    assert_eq!(terminate(&mut restarted).code(), Some(0));
}

fn unit_setting(name: &str) -> String {
    let unit = std::fs::read_to_string(UNIT_FILE).unwrap();
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("the unit sets {name}"))
        .to_owned()
}

/// README's "Running under systemd" section: its `sh` lines that start with `sudo`.
fn readme_systemd_admin_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Running under systemd\n")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let useradd = section
        .lines()
        .find(|line| line.starts_with("useradd "))
        .expect("the section makes the service's user");
    assert!(
        useradd.ends_with(&format!(" {}", unit_setting("User"))),
        "README makes the unit's User: {useradd}"
    );
    section
        .lines()
        .filter(|line| line.starts_with("sudo "))
        .map(str::to_owned)
        .collect()
}

/// Every admin command README's systemd section shows, run as it says (root, or `sudo -u`
/// the service's user) against a server run by the service's user from the unit's own
/// command line, with the unit's paths moved into a temp dir.
#[tokio::test]
async fn the_readmes_systemd_admin_commands_work_against_the_units_server() {
    use std::os::unix::fs::PermissionsExt;
    let lines = readme_systemd_admin_lines();
    assert!(
        lines.iter().any(|line| line.starts_with("sudo latchkey "))
            && lines.iter().any(|line| line.starts_with("sudo -u ")),
        "{lines:?}"
    );
    let as_root = rustix::process::getuid().is_root();
    if !as_root {
        eprintln!("not root: the README's commands run as this user, not as another");
    }
    let service = as_root.then(|| TemporaryUser::create("r"));
    let root = tempfile::tempdir().unwrap();
    set_mode(root.path(), 0o755);
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(root.path().join("backups")).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[password]\nmemory_kib = 64\niterations = 1\n",
    )
    .unwrap();
    if let Some(service) = &service {
        std::os::unix::fs::chown(&data, Some(service.uid), Some(service.gid)).unwrap();
        std::os::unix::fs::chown(&config, Some(0), Some(service.gid)).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let mut server = spawn_server(unit_command_as(service.as_ref(), root.path(), "serve"));
    let service_user = unit_setting("User");

    for line in &lines {
        // The one shell expansion the section uses.
        let expanded = line.replace("$(date +%F)", "today");
        let words: Vec<&str> = expanded
            .split(" #")
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let (user, command_words) = match words.as_slice() {
            ["sudo", "-u", user, rest @ ..] => {
                assert_eq!(*user, service_user, "{line}");
                (service.as_ref(), rest)
            }
            ["sudo", rest @ ..] => (None, rest),
            _ => panic!("{line}"),
        };
        assert_eq!(command_words[0], "latchkey", "{line}");
        let mut command = match user {
            Some(user) => user.latchkey(),
            None => Command::new(BINARY),
        };
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        for word in &command_words[1..] {
            command.arg(relocate(root.path(), word));
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{line}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(root.path().join("backups/latchkey-today.redb").exists());
    assert_eq!(terminate(&mut server).code(), Some(0));
}
