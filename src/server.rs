//! The public listener: accepts connections, serves HTTP/1.1 and h2c through
//! the proxy, and drains on shutdown.
//!
//! As in mini-redis, the caller binds the socket and owns the shutdown
//! signal, so tests can bind `127.0.0.1:0` and stop the server at will.
//! Shutdown, step by step: stop accepting (the listener is dropped, so new
//! connections are refused by the kernel), ask every open connection to
//! finish its in-flight requests and close (HTTP/1 stops keep-alive, HTTP/2
//! sends GOAWAY), and wait for them up to the drain timeout.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Timeouts;
use crate::proxy::Proxy;

/// Largest request head (request line + headers) accepted from a client.
const MAX_HEADER_BYTES: usize = 64 * 1024;

pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, timeouts: Timeouts, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper's header read timeout silently does nothing.
        // The timer runs while a keep-alive connection waits for its next
        // request too, so it is both the slow-client guard and the idle
        // timeout (nginx's client_header_timeout and keepalive_timeout).
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.client_idle)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(512)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = Arc::clone(&proxy);
                let svc = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    info!(
        timeout_ms = timeouts.drain.as_millis() as u64,
        "listener closed, draining connections"
    );
    tokio::select! {
        _ = graceful.shutdown() => info!("all connections drained"),
        _ = tokio::time::sleep(timeouts.drain) => warn!("drain timeout reached; closing remaining connections"),
    }
}
