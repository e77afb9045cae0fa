//! What recording the metrics costs (issue #21): the signed-token check's rate on two
//! servers over copies of one store, one with `[metrics] listen` set and one without, in
//! paired rounds (one window each, their order alternating), the ratio being the median
//! round's. Both servers run throughout, so neither window pays for a start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::load::paired::{
    median, paired_rounds, percentages_text, rate_window, round_ratio, round_timing,
};
use crate::load::{Phase, Requests, Timing, TokenCheck};
use crate::servers::{ChildServer, free_port};
use crate::{BenchResult, Paths};

/// The rounds, and what the server with metrics counted.
pub struct MetricsOverhead {
    /// Each round's windows: (metrics off, metrics on), in the order measured.
    pub rounds: Vec<(Phase, Phase)>,
    /// The sum of `latchkey_http_requests_total` scraped after the last round: proof that
    /// the measured server recorded.
    pub recorded_requests: u64,
}

impl MetricsOverhead {
    /// Each round's rate with metrics over the rate without.
    pub fn round_ratios(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|(off, on)| round_ratio(on, off))
            .collect()
    }

    /// The median round's ratio.
    pub fn ratio(&self) -> f64 {
        median(&self.round_ratios())
    }

    /// The median round's windows.
    pub fn median_round(&self) -> Option<&(Phase, Phase)> {
        let ratio = self.ratio();
        self.rounds
            .iter()
            .find(|(off, on)| round_ratio(on, off) == ratio)
    }

    pub fn rounds_text(&self) -> String {
        percentages_text(&self.round_ratios(), 1)
    }
}

/// Copies the small store (its server stopped) and runs the rounds: `GET /user/current` with
/// signed tokens at `RATE_CONNECTIONS`, each window half the measured seconds.
pub fn measure_metrics_overhead(
    client: &tokio::runtime::Runtime,
    paths: &Paths,
    small_dir: &Path,
    requests: &Requests,
    timing: &Timing,
) -> BenchResult<MetricsOverhead> {
    let copy_dir = small_dir.with_file_name("small-metrics-copy");
    std::fs::create_dir_all(&copy_dir)?;
    std::fs::copy(
        small_dir.join("latchkey.redb"),
        copy_dir.join("latchkey.redb"),
    )?;
    let metrics_address = free_port()?;
    let metrics_listen = metrics_address.to_string();
    let mut without = ChildServer::start_latchkey(paths, small_dir)?;
    without.wait_ready()?;
    let mut with = ChildServer::start_latchkey_with(
        paths,
        &copy_dir,
        &[("LATCHKEY_METRICS__LISTEN", metrics_listen.as_str())],
    )?;
    with.wait_ready()?;
    let request_set = requests.token_check(TokenCheck::UserCurrentSigned);
    for server in [&without, &with] {
        crate::load::prime(client, server, request_set)?;
    }
    let round_timing = round_timing(timing);
    let rounds = paired_rounds(
        "(#21) metrics overhead, metrics off and on",
        || {
            rate_window(
                client,
                &without,
                Some(&with),
                "GET /user/current, signed token, metrics off",
                request_set,
                &round_timing,
            )
        },
        || {
            rate_window(
                client,
                &with,
                Some(&without),
                "GET /user/current, signed token, metrics on",
                request_set,
                &round_timing,
            )
        },
    )?;
    let recorded_requests = scrape_request_total(metrics_address)?;
    without.stop()?;
    with.stop()?;
    let _ = std::fs::remove_dir_all(&copy_dir);
    Ok(MetricsOverhead {
        rounds,
        recorded_requests,
    })
}

/// `GET /metrics` and the sum of its `latchkey_http_requests_total` samples.
fn scrape_request_total(address: SocketAddr) -> BenchResult<u64> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("latchkey_http_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum())
}
