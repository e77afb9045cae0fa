//! Starting and stopping the servers under test as child processes: the release server
//! (`latchkey serve` on a fresh port of 127.0.0.1) and the minimal hyper "hello" server, this
//! machine's ceiling for any hyper server (this binary re-executed with `--hello-server`).
//! Each is ready once its health path answers 200; each is stopped with SIGTERM.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::procfs::ServerProcesses;
use crate::seed::PUBLIC_URL;
use crate::{BenchResult, Paths, pause};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The ids of the child servers running now, for a run interrupted by a signal.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A server child process: latchkey or the hello server. Dropping it kills it.
pub struct ChildServer {
    child: Option<Child>,
    pub pid: u32,
    pub address: SocketAddr,
    /// On PostgreSQL: the database cluster's postmaster, whose processes' CPU counts as this
    /// server's in a load's samples.
    pub database_postmaster_pid: Option<u32>,
    started: Instant,
    health_path: &'static str,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// How a server stopped on SIGTERM.
pub struct Stopped {
    pub took: Duration,
    pub status: ExitStatus,
}

/// Kills the child servers still running (by their ids), for a run interrupted by a signal.
pub fn kill_started_servers() {
    {
        let children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        for pid in children.iter() {
            if let Some(pid) = i32::try_from(*pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// A loopback address whose port was free a moment ago.
pub fn free_port() -> BenchResult<SocketAddr> {
    let listener = StdTcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl ChildServer {
    pub fn start_latchkey(paths: &Paths, data_dir: &Path) -> BenchResult<ChildServer> {
        ChildServer::start_latchkey_with(paths, data_dir, &[])
    }

    /// `start_latchkey` with `extra` environment on top of `--server-env`.
    pub fn start_latchkey_with(
        paths: &Paths,
        data_dir: &Path,
        extra: &[(&str, &str)],
    ) -> BenchResult<ChildServer> {
        let binary = &paths.server;
        let address = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg(address.to_string());
        // An unknown LATCHKEY_ variable stops the server: pass exactly ours.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LATCHKEY_") {
                command.env_remove(name);
            }
        }
        command
            .env("LATCHKEY_DATA_DIR", data_dir)
            .env("LATCHKEY_SERVER__PUBLIC_URL", PUBLIC_URL)
            .env("LATCHKEY_LOG__LEVEL", "warn");
        for (name, value) in &paths.server_env {
            command.env(name, value);
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        ChildServer::spawn(command, address, "/frontend/api/v1/health")
    }

    pub fn start_hello(own_exe: &Path) -> BenchResult<ChildServer> {
        let address = free_port()?;
        let mut command = Command::new(own_exe);
        command.arg("--hello-server").arg(address.to_string());
        ChildServer::spawn(command, address, "/")
    }

    fn spawn(
        mut command: Command,
        address: SocketAddr,
        health_path: &'static str,
    ) -> BenchResult<ChildServer> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {:?}: {error}", command.get_program()))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            // Drains the child's log until it exits (EOF), keeping the last lines.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().take(10_000_000) {
                    let Ok(line) = line else { break };
                    {
                        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                        if tail.len() >= 20 {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }
        CHILDREN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(child.id());
        Ok(ChildServer {
            pid: child.id(),
            child: Some(child),
            address,
            database_postmaster_pid: None,
            started,
            health_path,
            stderr_tail,
        })
    }

    /// The processes whose CPU a load's samples count as this server's.
    pub fn processes(&self) -> ServerProcesses {
        ServerProcesses {
            server_pid: self.pid,
            database_postmaster_pid: self.database_postmaster_pid,
        }
    }

    fn tail(&self) -> String {
        self.stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls the health path until it answers 200; returns the time since the spawn.
    pub fn wait_ready(&mut self) -> BenchResult<Duration> {
        let deadline = self.started + READY_TIMEOUT;
        while Instant::now() < deadline {
            if health_answers(self.address, self.health_path) {
                return Ok(self.started.elapsed());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                return Err(format!(
                    "the server exited with {status} before answering; its last log lines:\n{}",
                    self.tail()
                )
                .into());
            }
            pause(Duration::from_millis(1));
        }
        Err(format!(
            "the server on {} did not answer within {} s; its last log lines:\n{}",
            self.address,
            READY_TIMEOUT.as_secs(),
            self.tail()
        )
        .into())
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> BenchResult<Stopped> {
        let Some(mut child) = self.child.take() else {
            return Err("the server was already stopped".into());
        };
        let started = Instant::now();
        rustix::process::kill_process(pid_of(&child)?, rustix::process::Signal::TERM)?;
        while started.elapsed() < STOP_TIMEOUT {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    return Err(format!(
                        "the server exited with {status} on SIGTERM; its last log lines:\n{}",
                        self.tail()
                    )
                    .into());
                }
                return Ok(Stopped {
                    took: started.elapsed(),
                    status,
                });
            }
            pause(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "the server did not stop within {} s",
            STOP_TIMEOUT.as_secs()
        )
        .into())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        CHILDREN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|pid| *pid != self.pid);
    }
}

fn pid_of(child: &Child) -> BenchResult<rustix::process::Pid> {
    Ok(rustix::process::Pid::from_child(child))
}

/// One blocking GET; true when it answers 200.
fn health_answers(address: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = StdTcpStream::connect_timeout(&address, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// The hello server's whole life, in the re-executed process: answers "hello" to every request
/// until SIGTERM.
pub fn hello_server(address: SocketAddr) -> BenchResult<()> {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = terminate.recv() => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(b"hello"),
                    )))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
