//! A TCP proxy for fault injection, controllable at run time per direction.
//!
//! Put one between a client and a server and choose, for requests (client → server) and
//! responses (server → client) separately: pass, delay every chunk, drop every chunk (a
//! blackhole: connections stay open and silent), or reset every connection. Changes apply to
//! open connections at once.
//!
//! ```no_run
//! # async fn example(server: std::net::SocketAddr) -> std::io::Result<()> {
//! use leasehold_chaos::{Fault, Proxy};
//! let proxy = Proxy::start(server).await?;
//! // Dial proxy.address() instead of server; then:
//! proxy.responses(Fault::Drop); // requests arrive, answers never do
//! proxy.heal();
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What happens to the bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward at once.
    Pass,
    /// Forward each chunk after this long (in order).
    Delay(Duration),
    /// Read and discard: the peer waits forever.
    Drop,
    /// Reset every connection (and refuse new ones with a reset).
    Reset,
}

/// The faults of both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Client → server.
    pub requests: Fault,
    /// Server → client.
    pub responses: Fault,
}

impl Faults {
    const HEALTHY: Faults = Faults { requests: Fault::Pass, responses: Fault::Pass };

    fn resets(&self) -> bool {
        self.requests == Fault::Reset || self.responses == Fault::Reset
    }
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    target: watch::Sender<SocketAddr>,
    faults: watch::Sender<Faults>,
    stop: CancellationToken,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        Self::start_on("127.0.0.1:0", target).await
    }

    /// A proxy on `listen` in front of `target`.
    pub async fn start_on(listen: &str, target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::HEALTHY);
        let (target, _) = watch::channel(target);
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, target.subscribe(), faults.subscribe(), stop.clone()));
        Ok(Proxy { address, target, faults, stop })
    }

    /// Where clients dial.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        *self.target.borrow()
    }

    /// Forwards new connections to `target` from now on (a restarted server, say).
    pub fn retarget(&self, target: SocketAddr) {
        self.target.send_replace(target);
    }

    /// Sets both directions.
    pub fn set(&self, requests: Fault, responses: Fault) {
        debug!(proxy = %self.address, ?requests, ?responses, "faults changed");
        self.faults.send_replace(Faults { requests, responses });
    }

    /// Sets client → server, keeping the other direction.
    pub fn requests(&self, fault: Fault) {
        let responses = self.faults.borrow().responses;
        self.set(fault, responses);
    }

    /// Sets server → client, keeping the other direction.
    pub fn responses(&self, fault: Fault) {
        let requests = self.faults.borrow().requests;
        self.set(requests, fault);
    }

    /// Drops both directions: a partition that keeps connections open.
    pub fn blackhole(&self) {
        self.set(Fault::Drop, Fault::Drop);
    }

    /// Passes both directions.
    pub fn heal(&self) {
        self.set(Fault::Pass, Fault::Pass);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn accept(
    listener: TcpListener,
    target: watch::Receiver<SocketAddr>,
    faults: watch::Receiver<Faults>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else { continue };
        if faults.borrow().resets() {
            reset(&client);
            continue;
        }
        let faults = faults.clone();
        let stop = stop.child_token();
        let target = *target.borrow();
        tokio::spawn(async move {
            let upstream = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await {
                Ok(Ok(upstream)) => upstream,
                _ => {
                    reset(&client);
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            let connection = stop.child_token();
            let requests = pump(client_read, upstream_write, faults.clone(), |f| f.requests, connection.clone());
            let responses = pump(upstream_read, client_write, faults, |f| f.responses, connection.clone());
            tokio::join!(requests, responses);
        });
    }
}

/// Copies one direction under its fault until either side closes or a reset is asked for.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    fault_of: fn(&Faults) -> Fault,
    connection: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if faults.borrow().resets() {
            reset(from.as_ref());
            reset(to.as_ref());
            connection.cancel();
            return;
        }
        let read = tokio::select! {
            _ = connection.cancelled() => return,
            changed = faults.changed() => {
                if changed.is_err() { return }
                continue;
            }
            read = from.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                connection.cancel();
                return;
            }
            Ok(n) => n,
        };
        let fault = fault_of(&faults.borrow());
        match fault {
            Fault::Pass => {}
            Fault::Drop => continue,
            Fault::Delay(delay) => tokio::select! {
                _ = connection.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            },
            Fault::Reset => continue, // handled at the top of the loop
        }
        if to.write_all(&buf[..n]).await.is_err() {
            connection.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8], wait: Duration) -> Option<Vec<u8>> {
        stream.write_all(message).await.ok()?;
        let mut buf = vec![0u8; message.len()];
        tokio::time::timeout(wait, stream.read_exact(&mut buf)).await.ok()?.ok()?;
        Some(buf)
    }

    #[tokio::test]
    async fn passes_drops_and_heals_on_an_open_connection() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"one", Duration::from_secs(5)).await.as_deref(), Some(&b"one"[..]));

        proxy.responses(Fault::Drop);
        assert_eq!(round_trip(&mut stream, b"two", Duration::from_millis(300)).await, None, "answers are dropped");
        proxy.heal();
        assert_eq!(round_trip(&mut stream, b"six", Duration::from_secs(5)).await.as_deref(), Some(&b"six"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn delays_each_chunk() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        proxy.set(Fault::Delay(Duration::from_millis(400)), Fault::Pass);
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(round_trip(&mut stream, b"late", Duration::from_secs(5)).await.is_some());
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn reset_closes_open_connections_and_refuses_new_ones() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        assert!(round_trip(&mut stream, b"hi", Duration::from_secs(5)).await.is_some());
        proxy.set(Fault::Reset, Fault::Pass);
        let mut buf = [0u8; 8];
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("the reset arrives");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), fresh.read(&mut buf)).await.expect("refused at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
