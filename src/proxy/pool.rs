//! Upstream connections: opening them (with a connect timeout) and keeping
//! idle keep-alive ones per backend.
//!
//! wharf keeps its own small pool instead of hyper-util's client so that it
//! controls the two moments that matter for zero failed requests:
//! - a connect failure happens *before* the request is handed over, so any
//!   request (with a body too) can go to another backend;
//! - a draining backend's idle connections are closed at once and its busy
//!   ones are not put back ([`crate::routing::BackendShared::draining`]).
//!
//! Idle connections are reused last-in first-out and dropped once older than
//! the upstream idle timeout, which stays below common backend keep-alive
//! timeouts (the race where a backend closes a connection just as it is
//! reused is handled by `try_send_request` giving the request back).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The body wharf sends upstream: the client's, or an empty one when a
/// bodyless request is replayed.
pub type UpBody = Either<Incoming, Empty<Bytes>>;
pub type Sender = http1::SendRequest<UpBody>;

/// Most idle connections kept per backend; more are closed when returned.
const MAX_IDLE: usize = 256;

#[derive(Debug, Default)]
pub struct IdleConns {
    inner: Mutex<Vec<(Sender, Instant)>>,
}

impl IdleConns {
    /// The most recently returned live connection younger than `max_idle`.
    pub fn take(&self, max_idle: Duration) -> Option<Sender> {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((s, since)) = v.pop() {
            if since.elapsed() < max_idle && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    pub fn put(&self, s: Sender) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < MAX_IDLE && !s.is_closed() {
            v.push((s, Instant::now()));
        }
    }

    /// Close every idle connection (dropping a `SendRequest` ends its connection).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

/// Open a new HTTP/1.1 connection to `addr`. With `upgrades`, the connection
/// can be taken over after a `101 Switching Protocols` (it is then never pooled).
pub async fn connect(addr: SocketAddr, timeout: Duration, upgrades: bool) -> Result<Sender, ConnectError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr, timeout))?
        .map_err(|e| ConnectError::Io(addr, e))?;
    let _ = tcp.set_nodelay(true);
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
