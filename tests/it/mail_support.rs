//! Real email peers for the tests: an SMTP server (Python's aiosmtpd, installed by .ci/run)
//! that saves what it accepts, and readers for the saved messages.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port held for one test and never released: its socket is bound but does not
/// listen, so a connection to it is refused (a server that is down) until `SmtpServer`
/// listens on it. No other test can take it meanwhile.
pub struct ReservedPort {
    socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        ReservedPort { socket, port }
    }
}

pub struct SmtpServer {
    pub port: u16,
    pub inbox: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    /// Starts aiosmtpd listening on `reserved`, whose socket it gets as its standard input;
    /// with `require_auth`, AUTH as mailer / secret is required. Must run inside the tokio
    /// runtime.
    pub fn start_on(reserved: ReservedPort, require_auth: bool) -> SmtpServer {
        let port = reserved.port;
        let listener = reserved.socket.listen(128).unwrap().into_std().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smtp_server.py");
        let mut child = Command::new("python3")
            .args([
                script,
                inbox.path().to_str().unwrap(),
                if require_auth { "auth" } else { "open" },
            ])
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SMTP server (pip install aiosmtpd)");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP server did not start (is aiosmtpd installed?)"
        );
        SmtpServer { port, inbox, child }
    }

    pub fn start(require_auth: bool) -> SmtpServer {
        SmtpServer::start_on(ReservedPort::new(), require_auth)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every .eml file in `directory`, in queue order, with quoted-printable soft breaks and
/// `=3D` undone; none if the directory does not exist yet.
pub fn delivered_mails(directory: &Path) -> Vec<String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

/// Waits until `directory` holds at least `count` .eml files; returns them all, as
/// `delivered_mails` reads them.
pub async fn wait_for_mail(directory: &Path, count: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let mails = delivered_mails(directory);
        if mails.len() >= count {
            return mails;
        }
        assert!(
            Instant::now() < deadline,
            "{count} mails did not arrive in {directory:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The single-use token in a message's link (`…?token=<base64url>`).
pub fn token_in(message: &str) -> String {
    let start = message
        .find("token=")
        .expect("no token link in the message")
        + "token=".len();
    message[start..]
        .chars()
        .take_while(|character| {
            character.is_ascii_alphanumeric() || *character == '-' || *character == '_'
        })
        .collect()
}
