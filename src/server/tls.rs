//! The TLS listener: the same proxy behind rustls.
//!
//! Each accepted connection gets [`handshake_timeout`](serve) to finish its
//! handshake — a client that opens TCP and stalls, or trickles its
//! ClientHello, is dropped like a slowloris — then ALPN decides: `h2` →
//! hyper's HTTP/2 server, `http/1.1` or nothing → HTTP/1.1, `acme-tls/1` →
//! closed at once (RFC 8737 §3: the handshake itself is the answer to the
//! CA; nothing is ever proxied on it). Requests are handled by
//! [`Proxy::handle_on`] with `secure` set (`X-Forwarded-Proto: https`, HSTS).
//!
//! Accepting and draining are as in the plain listener ([`super::serve`]):
//! the listener is dropped at shutdown, open connections finish gracefully
//! within the drain timeout; a connection still handshaking is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::{accept_and_drain, drive, Builders, Ticket};
use crate::config::Timeouts;
use crate::proxy::Proxy;
use crate::tls::ACME_TLS_ALPN;

/// Serve TLS connections on `listener` until `shutdown`, then drain.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    config: Arc<rustls::ServerConfig>,
    timeouts: Timeouts,
    handshake_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let builders = Arc::new(Builders::new(&timeouts));
    let acceptor = TlsAcceptor::from(config);
    let spawn = |stream, peer, ticket| {
        let conn = TlsConnection {
            ticket,
            proxy: Arc::clone(&proxy),
            builders: Arc::clone(&builders),
            acceptor: acceptor.clone(),
        };
        tokio::spawn(conn.serve(stream, peer, handshake_timeout));
    };
    accept_and_drain(listener, &proxy, "TLS", timeouts.drain, shutdown, spawn).await;
}

struct TlsConnection {
    /// Its place under `--max-connections`, the shutdown signal, the drain's token.
    ticket: Ticket,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    acceptor: TlsAcceptor,
}

impl TlsConnection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr, handshake_timeout: Duration) {
        let handshake = tokio::time::timeout(handshake_timeout, self.acceptor.accept(stream));
        let mut watch = std::pin::pin!(self.ticket.stop.watch());
        let Some(tls) = watch.as_mut().run(handshake).await else {
            return;
        };
        let mut tls = match tls {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, timeout_ms = handshake_timeout.as_millis() as u64, "TLS handshake not completed in time; dropped");
                return;
            }
        };
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if alpn.as_deref() == Some(ACME_TLS_ALPN) {
            debug!(%peer, "acme-tls/1 challenge handshake done; closing");
            let _ = tls.shutdown().await;
            return;
        }
        let proxy = Arc::clone(&self.proxy);
        // Boxed per request, as on the plain listener (see `super::Connection::serve`).
        let svc = service_fn(move |req| super::built_in_box(|| Arc::clone(&proxy).handle_on(req, peer, true)));
        let io = TokioIo::new(tls);
        if alpn.as_deref() == Some(b"h2") {
            let conn = Box::pin(self.builders.h2.serve_connection(io, svc));
            drive(conn, watch.as_mut(), |c| c.graceful_shutdown()).await
        } else {
            let conn = self.builders.h1.serve_connection_boxed_with_upgrades(io, svc);
            drive(conn, watch.as_mut(), |c| c.graceful_shutdown()).await
        }
    }
}
