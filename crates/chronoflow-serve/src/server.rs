//! The HTTP server under every port chronoflow listens on (the fetcher of `serve`, and the API
//! and UI port of `standalone` and `scheduler`): an axum router on hyper's HTTP/1 connections,
//! with the bounds `axum::serve` lacks.
//!
//! - A client that does not send a request's headers within `header_read_timeout` is
//!   disconnected (this also closes idle keep-alive connections), so half-sent requests cannot
//!   hold connections open.
//! - A request not answered within `request_timeout` (reading its body included) gets a JSON
//!   408.
//! - At most `max_connections` connections are served at once; further clients wait in the
//!   kernel's accept queue until one closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Bounds every HTTP server applies to its clients.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time a client has to send a request's headers (and an idle connection to start one).
    pub header_read_timeout: Duration,
    /// Time a request has to be answered, reading its body included.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight finish
/// (for at most `request_timeout`). Requests carry `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // Taking a slot before accepting leaves clients beyond the cap in the accept queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let limits = limits.clone();
        let closing = closing_rx.clone();
        connections.spawn(async move {
            connection(stream, remote, app, &limits, closing).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "connections still open at shutdown were closed"
        );
    }
    Ok(())
}

/// An accept that failed: a connection reset before it was accepted is nothing; running out of
/// file descriptors is waited out rather than spun on.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!(error = %e, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: &ServerLimits,
    mut closing: watch::Receiver<bool>,
) {
    let request_timeout = limits.request_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(remote));
        let app = app.clone();
        async move {
            let response = match tokio::time::timeout(request_timeout, app.oneshot(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(request_timeout),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = closing.wait_for(|closing| *closing) => conn.as_mut().graceful_shutdown(),
    }
    // Shutting down: the request in flight, if any, is answered; then the connection closes.
    let _ = conn.await;
}

fn timed_out(limit: Duration) -> Response {
    let message = format!(
        "the request was not answered within {} s (--request-timeout-secs)",
        limit.as_secs_f64()
    );
    (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}
