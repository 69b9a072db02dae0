//! Opening HTTP connections to backends: TCP with a connect timeout, then an
//! HTTP/1.1 or HTTP/2 (prior knowledge) handshake. Each connection is driven
//! by its own task. ([`tcp`] alone opens the proxy's raw connections, which
//! have no task: see `proxy::raw`.)
//!
//! Shared by the proxy (which pools what it opens) and the active health
//! prober (which does not), so neither imports the other.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a request body sent upstream must be (hyper's bounds for both protocols).
pub trait SendBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}
impl<T: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static> SendBody for T {}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

impl ConnectError {
    /// The backend's host answered with a reset: nothing listens on the port
    /// (yet). Not a timeout: the host is there.
    pub fn is_refused(&self) -> bool {
        matches!(self, ConnectError::Io(_, e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// A TCP connection to `addr` within `timeout`, with Nagle off.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr, timeout))?
        .map_err(|e| ConnectError::Io(addr, e))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Open an HTTP/2 cleartext (prior knowledge) connection to `addr`.
pub async fn connect_h2<B: SendBody>(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<http2::SendRequest<B>, ConnectError> {
    let tcp = tcp(addr, timeout).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| ConnectError::Handshake(addr, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Open a new HTTP/1.1 connection to `addr`. With `upgrades`, the connection
/// can be taken over after a `101 Switching Protocols` (it is then never pooled).
pub async fn connect<B: SendBody>(
    addr: SocketAddr,
    timeout: Duration,
    upgrades: bool,
) -> Result<http1::SendRequest<B>, ConnectError> {
    let tcp = tcp(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| ConnectError::Handshake(addr, e))?;
    if upgrades {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(sender)
}
