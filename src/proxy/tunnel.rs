//! Protocol upgrades (WebSocket and others): after a `101`, the client and
//! backend connections are spliced together (hyper's `upgrades.rs` example).
//!
//! A tunnel is bounded like any other connection:
//! - idle (no byte either way) for `--tunnel-idle-timeout`: closed;
//! - its backend left the routing table (stopped, removed, disconnected
//!   from the network): closed at once — the backend is gone, and a tunnel
//!   kept open would swallow every message;
//! - its backend drains: closed after `--drain-timeout`;
//! - wharf shuts down: tunnels get the drain time like requests, then
//!   close ([`Tunnels::close_all`]).
//!
//! Open tunnels are counted per worker ([`Tunnels`]) for the metrics, and
//! per backend ([`crate::backend::BackendShared::tunnels`]) for the state.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tracing::debug;

use super::body::Guard;
use crate::health;
use crate::routing::Router;

/// One worker's open tunnels, and the switch that closes them at shutdown.
#[derive(Debug)]
pub struct Tunnels {
    open: AtomicUsize,
    /// Tunnels closed by wharf (idle, backend gone or drained, shutdown).
    pub closed_by_wharf: AtomicU64,
    stop: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            open: AtomicUsize::new(0),
            closed_by_wharf: AtomicU64::new(0),
            stop: watch::channel(false).0,
        }
    }
}

impl Tunnels {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Close every open tunnel (the end of the drain at shutdown).
    pub fn close_all(&self) {
        let _ = self.stop.send(true);
    }

    /// Wait until no tunnel is open (polled: tunnels are few and this runs
    /// only while shutting down).
    pub async fn drained(&self) {
        while self.open() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What a tunnel watches besides its two sockets.
pub struct Watch {
    pub tunnels: Arc<Tunnels>,
    pub router: Arc<Router>,
    pub idle: Duration,
    pub drain: Duration,
}

/// Why a tunnel ended (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Closed,
    Idle,
    BackendGone,
    BackendDrained,
    Shutdown,
}

/// Splice the two upgraded connections until either side closes or a bound
/// is reached. The guard keeps the backend's in-flight count up for the
/// tunnel's lifetime.
pub async fn tunnel(on_client: OnUpgrade, on_backend: OnUpgrade, guard: Guard, w: Watch) {
    let (client, backend) = match tokio::try_join!(on_client, on_backend) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            return;
        }
    };
    w.tunnels.open.fetch_add(1, Ordering::Relaxed);
    guard.shared().tunnels.fetch_add(1, Ordering::Relaxed);
    let last = Arc::new(AtomicU64::new(health::now_ms()));
    let mut client = Active::new(TokioIo::new(client), &last);
    let mut backend = Active::new(TokioIo::new(backend), &last);
    let end = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => End::Closed,
        end = bounds(&w, &guard, &last) => end,
    };
    if end != End::Closed {
        w.tunnels.closed_by_wharf.fetch_add(1, Ordering::Relaxed);
    }
    debug!(?end, "tunnel closed");
    w.tunnels.open.fetch_sub(1, Ordering::Relaxed);
    guard.shared().tunnels.fetch_sub(1, Ordering::Relaxed);
    drop(guard);
}

/// Resolves when a bound closes the tunnel.
async fn bounds(w: &Watch, guard: &Guard, last: &AtomicU64) -> End {
    let uid = guard.shared().uid;
    let mut swaps = w.router.subscribe();
    let mut stop = w.tunnels.stop.subscribe();
    let check = (w.idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(check);
    let mut draining_since: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = swaps.changed() => if changed.is_err() { return End::Shutdown },
            _ = stop.wait_for(|v| *v) => return End::Shutdown,
        }
        let now = health::now_ms();
        if now.saturating_sub(last.load(Ordering::Relaxed)) >= w.idle.as_millis() as u64 {
            return End::Idle;
        }
        let table = w.router.load();
        let present = table
            .pools
            .iter()
            .flat_map(|p| &p.backends)
            .any(|b| b.shared.uid == uid);
        if !present {
            return End::BackendGone;
        }
        if guard.shared().draining.load(Ordering::Relaxed) {
            let since = *draining_since.get_or_insert(now);
            if now.saturating_sub(since) >= w.drain.as_millis() as u64 {
                return End::BackendDrained;
            }
        } else {
            draining_since = None;
        }
    }
}

/// An upgraded connection that notes when a byte last came in.
struct Active<T> {
    inner: T,
    last: Arc<AtomicU64>,
}

impl<T> Active<T> {
    fn new(inner: T, last: &Arc<AtomicU64>) -> Active<T> {
        Active {
            inner,
            last: Arc::clone(last),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last.store(health::now_ms(), Ordering::Relaxed);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
