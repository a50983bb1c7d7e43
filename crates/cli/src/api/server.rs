//! The HTTP server under the API: HTTP/1.1 on a TCP listener, with the limits a service on a
//! network needs.
//!
//! - A client must send its request head within [`Limits::header_timeout`] (slowloris), and its
//!   body within [`super::BODY_TIMEOUT`] once the handler reads it.
//! - At most [`Limits::max_connections`] connections are open at once; further clients wait in
//!   the listen backlog until one closes.
//! - On shutdown it stops accepting, lets the requests in flight finish (up to
//!   [`Limits::drain_timeout`]) and closes idle keep-alive connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How much a client may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest a client may take to send a request's head (request line and headers).
    pub header_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The longest a shutdown waits for the requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(10), max_connections: 1024, drain_timeout: Duration::from_secs(30) }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains as described above.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The client's address, for `Caller::address` (as `into_make_service_with_connect_info`).
        let service = TowerToHyperService::new(router.clone().map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        }));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(timeout = ?limits.drain_timeout, "Requests still in flight after the drain timeout; closing them");
    }
}
