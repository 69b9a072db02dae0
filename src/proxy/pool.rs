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
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// The body wharf sends upstream: the client's, or an empty one when a
/// bodyless request is replayed.
pub type UpBody = Either<Incoming, Empty<Bytes>>;
pub type Sender = http1::SendRequest<UpBody>;
/// HTTP/2 (h2c) connections are multiplexed: one per backend, shared by clones.
pub type H2Sender = http2::SendRequest<UpBody>;

/// A connection ready for one request, of either protocol.
pub enum Conn {
    H1(Sender),
    H2(H2Sender),
}

type TrySend = Result<http::Response<Incoming>, hyper::client::conn::TrySendError<http::Request<UpBody>>>;

impl Conn {
    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Conn::H1(s) => s.ready().await,
            Conn::H2(s) => s.ready().await,
        }
    }

    /// Send, or get the request back if the connection could not take it.
    pub fn try_send(&mut self, req: http::Request<UpBody>) -> impl std::future::Future<Output = TrySend> {
        match self {
            Conn::H1(s) => futures::future::Either::Left(s.try_send_request(req)),
            Conn::H2(s) => futures::future::Either::Right(s.try_send_request(req)),
        }
    }
}

/// Most idle connections kept per backend; more are closed when returned.
const MAX_IDLE: usize = 256;

#[derive(Debug, Default)]
pub struct IdleConns {
    inner: Mutex<Vec<(Sender, Instant)>>,
    h2: Mutex<Option<H2Sender>>,
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

    /// Close idle connections older than `max_idle` (or already closed), so
    /// none lingers past the upstream idle timeout when traffic stops.
    pub fn prune(&self, max_idle: Duration) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(s, since)| since.elapsed() < max_idle && !s.is_closed());
    }

    /// The backend's shared HTTP/2 connection, if it is still open.
    pub fn take_h2(&self) -> Option<H2Sender> {
        let mut h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match h2.as_ref() {
            Some(s) if !s.is_closed() => Some(s.clone()),
            _ => {
                *h2 = None;
                None
            }
        }
    }

    pub fn set_h2(&self, s: H2Sender) {
        *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }

    /// Close every idle connection (dropping a `SendRequest` ends its
    /// connection; an HTTP/2 one once its open streams are done).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = None;
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

async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr, timeout))?
        .map_err(|e| ConnectError::Io(addr, e))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Open an HTTP/2 cleartext (prior knowledge) connection to `addr`.
pub async fn connect_h2(addr: SocketAddr, timeout: Duration) -> Result<H2Sender, ConnectError> {
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
pub async fn connect(addr: SocketAddr, timeout: Duration, upgrades: bool) -> Result<Sender, ConnectError> {
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
