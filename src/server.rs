//! The accept loop: one hyper HTTP/1 connection per socket, with a timer so the header-read
//! timeout applies, a cap on open connections (the request timeout wraps each handler in
//! `http::handle`), and a graceful shutdown that lets in-flight requests finish within a
//! deadline. `run` never binds, and starts no background work: the caller starts
//! `App::start_background_tasks` and stops them with `shutdown` (`BackgroundTasks::stop_when`).
//! `run_metrics` is the same loop, smaller, for the metrics listener.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::{self, Api};

/// Serves `listener` until `shutdown` completes, then drains: health answers 503, no new
/// connection is taken, and open ones (and the per-address work of answered reset and
/// resend requests) get `shutdown_grace_seconds` to finish.
pub async fn run(listener: TcpListener, api: Arc<Api>, shutdown: impl Future<Output = ()>) {
    let config = api.app.config.clone();
    let header_read_timeout = Duration::from_secs(config.http.header_read_timeout_seconds);
    let connection_slots = Arc::new(Semaphore::new(config.http.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connection_slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: log, breathe, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection_api = Arc::clone(&api);
        let service = service_fn(move |request| {
            let api = Arc::clone(&connection_api);
            async move { Ok::<_, Infallible>(http::handle(&api, request, peer).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(config.http.max_header_bytes)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    api.app.start_draining();
    drop(listener);
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    // Answered resets and resends still owe their per-address work: let it finish too.
    let drained = async {
        graceful.shutdown().await;
        api.app.after_answer.finished().await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown deadline passed; closing open connections"),
    }
}

/// The most scrapes served at once: a scraper opens one connection, so a few are plenty,
/// and a flood of connections on the metrics port cannot take the API's resources.
const METRICS_CONNECTIONS: usize = 8;

/// Serves the metrics listener (`http::metrics::answer`) until `shutdown` completes, then
/// closes it and every open scrape connection at once. Like `run`, it never binds.
pub async fn run_metrics(listener: TcpListener, api: Arc<Api>, shutdown: impl Future<Output = ()>) {
    let header_read_timeout = Duration::from_secs(api.app.config.http.header_read_timeout_seconds);
    let connection_slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connection_slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap the finished connections, so that the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let connection_api = Arc::clone(&api);
        let service = service_fn(move |request| {
            let api = Arc::clone(&connection_api);
            async move { Ok::<_, Infallible>(http::metrics::answer(&api, request).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.shutdown().await;
}
