//! The HTTP side of a node: `GET /metrics` (Prometheus), `GET /healthz` (liveness: the
//! process answers) and `GET /readyz` (readiness: the node has loaded its state; see
//! [`Readiness`]), plus whatever other routes the node adds (a coordinator adds its status
//! page, [`crate::status_page`]). Neither probe depends on the node's role: a follower is as
//! ready as the leader, and a leader inside its hold stays ready while its store is down.
//!
//! The routes are an axum [`Router`]; connections are served by hyper's HTTP/1.1 server
//! directly rather than `axum::serve`, because only there can a connection be given a
//! deadline for its request head and a cap on its size: a client that opens a connection
//! and sends nothing, or sends an endless header, is dropped instead of holding a task.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{StatusCode, header};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use leasehold::serving::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tracing::debug;

/// Renders the current metrics in the Prometheus text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The largest request head (request line and headers) a connection may send; hyper answers
/// a larger one with 431 and closes. No route reads a request body.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// How long a connection may take to send a request head, also between two requests on a
/// kept-alive connection.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a route may take to answer. The status page reads the store with calls of their
/// own timeout, all at once, so it answers well within this even when the store does not.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `/metrics`, `/healthz` and `/readyz`: what every node serves on its metrics port.
pub fn probes(render: RenderMetrics, ready: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let answer = if ready.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready: loading its state\n")
                };
                async move { answer }
            }),
        )
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    render: RenderMetrics,
    ready: Readiness,
    shutdown: CancellationToken,
) {
    serve(listener, probes(render, ready), shutdown).await
}

/// Serves `routes` on `listener` until `shutdown`, with a timeout on every request; any
/// other path is 404, any other method on a known path 405.
pub async fn serve(listener: TcpListener, routes: Router, shutdown: CancellationToken) {
    let app = routes.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") }).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|error: tower::BoxError| async move { timed_out(error) }))
            .timeout(REQUEST_TIMEOUT),
    );
    let service = TowerToHyperService::new(app);
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    debug!(%error, "metrics accept failed");
                    continue;
                }
            },
        };
        let (service, shutdown) = (service.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_HEAD_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD_BYTES);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => if let Err(error) = served {
                    debug!(%error, "metrics connection ended with an error");
                },
                // A scrape in flight at shutdown is dropped: the process is going away.
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn timed_out(error: tower::BoxError) -> (StatusCode, String) {
    if error.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("no answer within {REQUEST_TIMEOUT:?}\n"))
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn send(address: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        send(address, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await
    }

    #[tokio::test]
    async fn serves_metrics_and_probes_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let render: RenderMetrics = Arc::new(|| "leasehold_ha_term 3\n".to_owned());
        let ready = Readiness::new();
        let server = tokio::spawn(serve_metrics(listener, render, ready.clone(), shutdown.clone()));

        let metrics = get(address, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(metrics.contains("content-type: text/plain; version=0.0.4\r\n"), "{metrics}");
        assert!(metrics.ends_with("leasehold_ha_term 3\n"), "{metrics}");
        assert!(get(address, "/healthz").await.ends_with("ok\n"));
        let other = get(address, "/other").await;
        assert!(other.starts_with("HTTP/1.1 404") && other.ends_with("not found\n"), "{other}");
        let posted =
            send(address, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(posted.await.starts_with("HTTP/1.1 405"));

        let loading = get(address, "/readyz").await;
        assert!(
            loading.starts_with("HTTP/1.1 503") && loading.ends_with("not ready: loading its state\n"),
            "{loading}"
        );
        assert!(get(address, "/healthz").await.starts_with("HTTP/1.1 200"), "live while not ready");
        ready.set(true);
        let loaded = get(address, "/readyz").await;
        assert!(loaded.starts_with("HTTP/1.1 200") && loaded.ends_with("ready\n"), "{loaded}");

        shutdown.cancel();
        server.await.unwrap();
    }

    /// A request head larger than the cap is refused with 431 and the connection closed,
    /// rather than buffered.
    #[tokio::test]
    async fn an_oversized_request_head_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let render: RenderMetrics = Arc::new(String::new);
        let server = tokio::spawn(serve_metrics(listener, render, Readiness::new(), shutdown.clone()));
        let padding = "a".repeat(MAX_REQUEST_HEAD_BYTES * 2);
        let answer = send(address, &format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        shutdown.cancel();
        server.await.unwrap();
    }

    /// A connection that never sends its request head is closed after the head timeout, so
    /// idle clients cannot pile up connections.
    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_head_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let render: RenderMetrics = Arc::new(String::new);
        let server = tokio::spawn(serve_metrics(listener, render, Readiness::new(), shutdown.clone()));
        let opened = tokio::time::Instant::now();
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(REQUEST_HEAD_TIMEOUT * 2, stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the server kept a silent connection open");
        assert!(opened.elapsed() >= REQUEST_HEAD_TIMEOUT, "closed after {:?}", opened.elapsed());
        shutdown.cancel();
        server.await.unwrap();
    }
}
