//! The load client: one tokio task per keep-alive HTTP/1.1 connection, each sending its
//! request, reading the whole answer (the head, then `Content-Length` bytes), and again, with
//! the latency and status of every answer completed inside the measured window.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client runtime's worker threads.
pub const CLIENT_THREADS: usize = 2;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUESTS_PER_CONNECTION: u64 = 20_000_000;
const MAX_RESPONSE_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct LoadSpec {
    pub name: String,
    pub requests: Arc<Vec<Vec<u8>>>,
    pub connections: usize,
}

#[derive(Default)]
pub struct ConnectionStats {
    pub latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    pub failed: u64,
}

pub struct LoadOutcome {
    pub name: String,
    pub window: Duration,
    /// Sorted latencies of the requests completed in the window, in microseconds.
    pub latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    /// Answers other than 200.
    pub unexpected: u64,
    /// Connection failures, timeouts and unparsable answers.
    pub failed: u64,
}

impl LoadOutcome {
    pub fn new(name: String, window: Duration) -> LoadOutcome {
        LoadOutcome {
            name,
            window,
            latencies_us: Vec::new(),
            statuses: BTreeMap::new(),
            unexpected: 0,
            failed: 0,
        }
    }

    pub fn add(&mut self, stats: ConnectionStats) {
        self.latencies_us.extend(stats.latencies_us);
        for (status, count) in stats.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.failed += stats.failed;
    }

    pub fn finish(&mut self) {
        self.latencies_us.sort_unstable();
        self.unexpected = self
            .statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(_, count)| count)
            .sum();
    }

    pub fn completed(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// Successful (200) answers per second of the window.
    pub fn rate(&self) -> f64 {
        self.statuses.get(&200).copied().unwrap_or(0) as f64 / self.window.as_secs_f64()
    }

    /// Nearest-rank percentile, in milliseconds.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let count = self.latencies_us.len();
        let rank = ((percentile / 100.0) * count as f64).ceil() as usize;
        let index = rank.clamp(1, count) - 1;
        f64::from(self.latencies_us[index]) / 1e3
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_us
            .last()
            .map_or(f64::NAN, |latency| f64::from(*latency) / 1e3)
    }
}

/// One keep-alive connection: request, read the whole answer, again, until the window ends.
/// Only answers completed inside the measured window count.
pub async fn connection_loop(
    address: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    counter: Arc<AtomicUsize>,
    measure_start: Instant,
    measure_end: Instant,
) -> ConnectionStats {
    let mut stats = ConnectionStats::default();
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut buffer = Vec::with_capacity(16 * 1024);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        if Instant::now() >= measure_end || requests.is_empty() {
            break;
        }
        let mut connection = match stream.take() {
            Some(connection) => connection,
            None => match connect(address).await {
                Some(connection) => connection,
                None => {
                    stats.failed += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let index = counter.fetch_add(1, Ordering::Relaxed) % requests.len();
        let started = Instant::now();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut connection, &requests[index], &mut buffer),
        )
        .await;
        let finished = Instant::now();
        let in_window = finished >= measure_start && finished <= measure_end;
        match answer {
            Ok(Ok(answer)) => {
                if !answer.close {
                    stream = Some(connection);
                }
                if in_window {
                    let micros = finished.duration_since(started).as_micros();
                    stats
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    *stats.statuses.entry(answer.status).or_default() += 1;
                }
            }
            _ => {
                if in_window {
                    stats.failed += 1;
                }
            }
        }
    }
    stats
}

struct Answer {
    status: u16,
    close: bool,
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

/// Writes one request and reads one whole answer: the head up to `\r\n\r\n`, then exactly
/// `Content-Length` bytes of body.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> std::io::Result<Answer> {
    stream.write_all(request).await?;
    buffer.clear();
    let mut searched = 0;
    let head_end = loop {
        if let Some(position) = find_head_end(&buffer[searched..]) {
            break searched + position;
        }
        searched = buffer.len().saturating_sub(3);
        if buffer.len() > MAX_RESPONSE_BYTES {
            return Err(invalid("answer head too large"));
        }
        read_more(stream, buffer).await?;
    };
    let head = parse_head(&buffer[..head_end])?;
    let total = head_end + head.content_length;
    if total > MAX_RESPONSE_BYTES {
        return Err(invalid("answer too large"));
    }
    while buffer.len() < total {
        read_more(stream, buffer).await?;
    }
    if buffer.len() > total {
        return Err(invalid("bytes after the answer"));
    }
    Ok(Answer {
        status: head.status,
        close: head.close,
    })
}

async fn read_more(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<()> {
    buffer.reserve(8 * 1024);
    if stream.read_buf(buffer).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The index just past the head's closing blank line.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
}

struct Head {
    status: u16,
    content_length: usize,
    close: bool,
}

fn parse_head(head: &[u8]) -> std::io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("answer head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or_else(|| invalid("no status line"))?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| invalid("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked answers are not expected"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Head {
        status,
        content_length: content_length.ok_or_else(|| invalid("no content-length"))?,
        close,
    })
}

pub async fn prime_connection(
    address: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    counter: Arc<AtomicUsize>,
) -> u64 {
    let mut failures = 0;
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let index = counter.fetch_add(1, Ordering::Relaxed);
        let Some(request) = requests.get(index) else {
            break;
        };
        let mut connection = match stream.take() {
            Some(connection) => connection,
            None => match connect(address).await {
                Some(connection) => connection,
                None => {
                    failures += 1;
                    continue;
                }
            },
        };
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut connection, request, &mut buffer),
        )
        .await
        {
            Ok(Ok(answer)) => {
                if answer.status != 200 {
                    failures += 1;
                }
                if !answer.close {
                    stream = Some(connection);
                }
            }
            _ => failures += 1,
        }
    }
    failures
}

/// A new connection to the server under test with Nagle off, or `None` when it could not be
/// made within `REQUEST_TIMEOUT` (counted as a failure by the caller).
async fn connect(address: SocketAddr) -> Option<tokio::net::TcpStream> {
    match tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(connection)) => {
            let _ = connection.set_nodelay(true);
            Some(connection)
        }
        _ => None,
    }
}
