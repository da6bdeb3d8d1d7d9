//! A minimal HTTP/1.1 endpoint for Prometheus and probes: `GET /metrics`, `GET /healthz`
//! (liveness: the process answers) and `GET /readyz` (readiness: the node has loaded its
//! state; see [`Readiness`]). Neither probe depends on the node's role: a follower is as
//! ready as the leader, and a leader inside its hold stays ready while its store is down.
//!
//! Scrapes are small and rare, so a hand-written responder over a TCP listener is enough and
//! keeps an HTTP framework out of the dependency tree.

use std::sync::Arc;
use std::time::Duration;

use leasehold::serving::Readiness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Renders the current metrics in the Prometheus text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

const MAX_REQUEST_BYTES: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    render: RenderMetrics,
    ready: Readiness,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (render, ready) = (render.clone(), ready.clone());
                    tokio::spawn(async move {
                        if let Err(error) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, render, ready)).await {
                            debug!(%error, "metrics request timed out");
                        }
                    });
                }
                Err(error) => debug!(%error, "metrics accept failed"),
            },
        }
    }
}

async fn answer(mut stream: TcpStream, render: RenderMetrics, ready: Readiness) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buf).await?;
        if read == 0 || request.len() + read > MAX_REQUEST_BYTES {
            return Ok(());
        }
        request.extend_from_slice(&buf[..read]);
    }
    let request_line = String::from_utf8_lossy(&request);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") if ready.is_ready() => ("200 OK", "text/plain", "ready\n".to_owned()),
        ("GET", "/readyz") => ("503 Service Unavailable", "text/plain", "not ready: loading its state\n".to_owned()),
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
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
        assert!(metrics.ends_with("leasehold_ha_term 3\n"), "{metrics}");
        assert!(get(address, "/healthz").await.ends_with("ok\n"));
        assert!(get(address, "/other").await.starts_with("HTTP/1.1 404"));

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
}
