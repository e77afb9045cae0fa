//! The metrics endpoint (the only code that knows prometheus-client): `GET /metrics` on the
//! metrics listener answers every series in the Prometheus text format, or OpenMetrics when
//! the scraper asks for it. A scrape first reads a `Snapshot` of the counters (`recording`),
//! the domain's atomics, the store and `/proc/self` (`process`), then encodes it.

pub mod process;
pub mod recording;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::app::StoreFigures;
use crate::auth::sign_in_counts::{AttemptOutcome, SignInMethod};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::metrics::process::ProcessFigures;
use crate::http::metrics::recording::{RequestCount, RouteHistogram};
use crate::http::response::{Response, error_response};
use crate::mail::DeliveryOutcome;

/// The one path the metrics listener serves.
pub const METRICS_PATH: &str = "/metrics";

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers one request on the metrics listener: `GET` (or `HEAD`) `/metrics`, else 404 or
/// 405 in the API's error shape.
pub async fn answer(api: &Api, request: hyper::Request<Incoming>) -> Response {
    if request.uri().path() != METRICS_PATH {
        return error_response(&ApiError::NotFound);
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return error_response(&ApiError::MethodNotAllowed("GET, HEAD"));
    }
    let wants_openmetrics = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    let snapshot = Snapshot::read(api).await;
    let (content_type, encoded) = if wants_openmetrics {
        (OPENMETRICS_CONTENT_TYPE, snapshot.encode_openmetrics())
    } else {
        (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            snapshot.encode_prometheus_text(),
        )
    };
    let Ok(body) = encoded else {
        tracing::error!("cannot encode the metrics");
        return error_response(&ApiError::Internal("cannot encode the metrics".to_owned()));
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Every figure of one scrape, read before encoding so that the encoder reads no lock,
/// store or file.
#[derive(Debug, Clone)]
pub struct Snapshot {
    requests: Vec<RequestCount>,
    durations: Vec<RouteHistogram>,
    sign_ins: Vec<(SignInMethod, AttemptOutcome, u64)>,
    hash_queue_depth: usize,
    hash_queue_capacity: usize,
    hashes_finished: u64,
    token_cache_hits: u64,
    token_cache_misses: u64,
    mail_deliveries: Vec<(DeliveryOutcome, u64)>,
    store: StoreFigures,
    process: ProcessFigures,
}

impl Snapshot {
    pub async fn read(api: &Api) -> Snapshot {
        let app = &api.app;
        let store = app.store_figures().await;
        // The /proc reads are file I/O: off the runtime's threads.
        let process = tokio::task::spawn_blocking(ProcessFigures::read)
            .await
            .unwrap_or_default();
        let (requests, durations) = api.request_metrics.as_ref().map_or_else(
            || (Vec::new(), Vec::new()),
            |metrics| (metrics.request_counts(), metrics.route_histograms()),
        );
        let sign_ins = SignInMethod::ALL
            .into_iter()
            .flat_map(|method| {
                AttemptOutcome::ALL.into_iter().map(move |outcome| {
                    (method, outcome, app.sign_in_counts.count(method, outcome))
                })
            })
            .collect();
        Snapshot {
            requests,
            durations,
            sign_ins,
            hash_queue_depth: app.hashers.queue_depth(),
            hash_queue_capacity: app.hashers.queue_capacity(),
            hashes_finished: app.hashers.jobs_finished(),
            token_cache_hits: app.token_cache.hits(),
            token_cache_misses: app.token_cache.misses(),
            mail_deliveries: DeliveryOutcome::ALL
                .into_iter()
                .map(|outcome| (outcome, app.mail_deliveries.count(outcome)))
                .collect(),
            store,
            process,
        }
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub fn encode_openmetrics(self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.into_registry())?;
        Ok(text)
    }

    /// The Prometheus text format, version 0.0.4.
    pub fn encode_prometheus_text(self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.into_registry())?;
        Ok(text)
    }

    fn into_registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests = encoder.encode_descriptor(
            "latchkey_http_requests",
            "Requests answered, by route template, method and status",
            None,
            MetricType::Counter,
        )?;
        for count in &self.requests {
            let labels = [
                ("route", count.route),
                ("method", count.method),
                ("status", count.status),
            ];
            ConstCounter::new(count.count).encode(requests.encode_family(&labels)?)?;
        }
        let mut durations = encoder.encode_descriptor(
            "latchkey_http_request_duration",
            "Time from a request's head to its answer, by route template",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for histogram in &self.durations {
            let labels = [("route", histogram.route)];
            durations
                .encode_family(&labels)?
                .encode_histogram::<[(&str, &str); 0]>(
                    histogram.sum_seconds,
                    histogram.count,
                    &histogram.buckets,
                    None,
                )?;
        }
        let mut sign_ins = encoder.encode_descriptor(
            "latchkey_sign_ins",
            "Sign-in attempts, by method and outcome",
            None,
            MetricType::Counter,
        )?;
        for (method, outcome, count) in &self.sign_ins {
            let labels = [("method", method.label()), ("outcome", outcome.label())];
            ConstCounter::new(*count).encode(sign_ins.encode_family(&labels)?)?;
        }
        encode_gauge(
            &mut encoder,
            "latchkey_password_hash_queue_depth",
            "Password hashing jobs waiting for a hasher thread",
            None,
            self.hash_queue_depth as u64,
        )?;
        encode_gauge(
            &mut encoder,
            "latchkey_password_hash_queue_capacity",
            "The most jobs that may wait; one more is refused with 503",
            None,
            self.hash_queue_capacity as u64,
        )?;
        encode_counter(
            &mut encoder,
            "latchkey_password_hashes",
            "Password hashes and verifications the hasher threads finished",
            None,
            self.hashes_finished,
        )?;
        encode_counter(
            &mut encoder,
            "latchkey_token_cache_hits",
            "Signed-token checks answered from the verified-token cache",
            None,
            self.token_cache_hits,
        )?;
        encode_counter(
            &mut encoder,
            "latchkey_token_cache_misses",
            "Signed-token checks that verified the signature",
            None,
            self.token_cache_misses,
        )?;
        if let Some(queued_mails) = self.store.queued_mails {
            encode_gauge(
                &mut encoder,
                "latchkey_mail_queue_depth",
                "Messages waiting in the mail queue, due or postponed",
                None,
                queued_mails,
            )?;
        }
        let mut deliveries = encoder.encode_descriptor(
            "latchkey_mail_deliveries",
            "Mail delivery attempts, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in &self.mail_deliveries {
            let labels = [("outcome", outcome.label())];
            ConstCounter::new(*count).encode(deliveries.encode_family(&labels)?)?;
        }
        if let Some(file_bytes) = self.store.file_bytes {
            encode_gauge(
                &mut encoder,
                "latchkey_store",
                "Size of the database file",
                Some(&Unit::Bytes),
                file_bytes,
            )?;
        }
        let mut build = encoder.encode_descriptor(
            "latchkey_build",
            "The running version",
            None,
            MetricType::Info,
        )?;
        build.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        self.encode_process(&mut encoder)
    }
}

impl Snapshot {
    /// The standard `process_*` series.
    fn encode_process(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let process = &self.process;
        if let Some(bytes) = process.resident_bytes {
            let help = "Resident memory size";
            encode_gauge(
                encoder,
                "process_resident_memory",
                help,
                Some(&Unit::Bytes),
                bytes,
            )?;
        }
        if let Some(bytes) = process.virtual_bytes {
            let help = "Virtual memory size";
            encode_gauge(
                encoder,
                "process_virtual_memory",
                help,
                Some(&Unit::Bytes),
                bytes,
            )?;
        }
        if let Some(seconds) = process.cpu_seconds {
            let metric = ConstCounter::new(seconds);
            metric.encode(encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?)?;
        }
        if let Some(files) = process.open_files {
            encode_gauge(
                encoder,
                "process_open_fds",
                "Open file descriptors",
                None,
                files,
            )?;
        }
        if let Some(files) = process.max_open_files {
            let help = "The most file descriptors the process may open";
            encode_gauge(encoder, "process_max_fds", help, None, files)?;
        }
        Ok(())
    }
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, unit, MetricType::Counter)?)
}
