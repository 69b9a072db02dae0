//! Per request, around [`Proxy::forward`]: the request id, the pool's
//! statistics, the warning line for a failure (rate-limited when it is the
//! client's fault) and the access-log line.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use tracing::warn;

use super::{headers, Proxy, ProxyError, RespBody, Trace};
use crate::{access, health, reqid, stats};

impl Proxy {
    /// A request that came over plain HTTP (`secure` false) or TLS.
    ///
    /// A plain function that returns an `async move` block, here and in
    /// `forward` and `attempt`, rather than an `async fn`: an `async fn`
    /// keeps each argument twice in its state (as passed, and moved into the
    /// body's local), so the 264-byte request was held, and copied, twice at
    /// each level. And it takes the `Arc`, so the server's per-request
    /// future is this one, not one more level around it. Issue 9: the boxed
    /// request future went from 4,552 to 2,936 bytes; callgrind from 33,993
    /// to 33,357 instructions per keep-alive request (42,201 to 41,601 with
    /// `Connection: close`).
    ///
    /// It answers a `Result` that is never an error, which is what hyper's
    /// service wants: wrapping the future in `.map(Ok)` copied all of it
    /// (2.9 KiB) once more per request.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn handle_on(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        client: SocketAddr,
        secure: bool,
    ) -> impl Future<Output = Result<Response<RespBody>, Infallible>> + Send {
        async move {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let start = Instant::now();
            let method = stats::method_class(req.method());
            // Room for the four headers wharf adds (X-Request-Id, X-Forwarded-For,
            // -Proto, -Host) in one step: a map sized for the client's headers
            // only would grow twice (two reallocations per `Connection: close`
            // request; issue 9). For HTTP/1 the hyper patch reserves them when
            // it parses the head (vendor/hyper/WHARF-PATCH.md), so this is a
            // no-op there; HTTP/2 requests get a new map from h2 every time.
            req.headers_mut().reserve(4);
            let request_id = reqid::ensure(req.headers_mut());
            let request_bytes = hyper::body::Body::size_hint(req.body()).exact();
            // Only the access log needs these; cloning a `Uri` only bumps reference counts.
            let logged = self.access_log.then(|| {
                let host = headers::request_host(req.headers(), req.uri())
                    .unwrap_or_default()
                    .to_string();
                (req.method().clone(), req.uri().clone(), req.version(), host)
            });
            // For the warning lines; cloning a `Uri` only bumps reference counts.
            let (log_method, log_uri) = (req.method().clone(), req.uri().clone());
            let mut trace = Trace::default();
            let (mut resp, error) = match self.forward(req, client, secure, start, &mut trace).await {
                Ok(resp) => (resp, None),
                Err(e) => {
                    let counter = match &e {
                        ProxyError::NoRoute => &self.stats.no_route,
                        ProxyError::NoBackend(_) | ProxyError::BackendFull { .. } => &self.stats.no_backend,
                        ProxyError::Unreachable { .. } => &self.stats.unreachable,
                        ProxyError::Timeout(_) => &self.stats.timeouts,
                        ProxyError::BadRequest(_) | ProxyError::Client(_) | ProxyError::MethodNotAllowed => {
                            &self.stats.client_errors
                        }
                        ProxyError::BadResponse { .. } => &self.stats.bad_responses,
                        ProxyError::Refused(_) => &self.stats.refused,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let request_id_str = request_id.to_str().unwrap_or_default();
                    let pool = trace.pool.as_ref().map(|p| p.name.as_str());
                    if matches!(
                        e,
                        ProxyError::Unreachable { .. } | ProxyError::Timeout(_) | ProxyError::BadResponse { .. }
                    ) {
                        warn!(%client, method = %log_method, path = log_uri.path(), pool, error = %e,
                          request_id = request_id_str, "request failed");
                    } else if matches!(
                        e,
                        ProxyError::Client(_) | ProxyError::BadRequest(_) | ProxyError::MethodNotAllowed
                    ) {
                        // A client can send these as fast as it likes: rate-limited.
                        if let Some(suppressed) = self.client_log.allow(health::now_ms(), 1_000) {
                            warn!(%client, method = %log_method, path = log_uri.path(), error = %e, suppressed,
                              fault = "client", request_id = request_id_str,
                              "request refused (client's fault, no backend blamed)");
                        }
                    }
                    (e.to_response_for(&request_id).map(Either::Right), Some(e.code()))
                }
            };
            let response_bytes = hyper::body::Body::size_hint(resp.body()).exact();
            let total = match trace.answered {
                Some(answered) => answered.saturating_duration_since(start),
                None => start.elapsed(),
            };
            if let Some(pool) = &trace.pool {
                pool.stats.slot(self.worker).record(
                    method,
                    resp.status(),
                    total,
                    trace.upstream,
                    (request_bytes.unwrap_or(0), response_bytes.unwrap_or(0)),
                );
            }
            if let Some((method, uri, version, host)) = &logged {
                let backend = trace.pool.as_ref().zip(trace.backend).map(|(p, i)| &p.backends[i]);
                access::log(&access::Entry {
                    client,
                    method,
                    host,
                    path: uri.path(),
                    version: *version,
                    status: resp.status().as_u16(),
                    request_bytes,
                    response_bytes,
                    total,
                    upstream: trace.upstream,
                    pool: trace.pool.as_ref().map(|p| p.name.as_str()),
                    container: backend.map(|b| b.container.as_str()),
                    backend: backend.map(|b| b.addr),
                    attempts: trace.attempts,
                    request_id: request_id.to_str().unwrap_or_default(),
                    error,
                });
            }
            resp.headers_mut().insert(reqid::HEADER.clone(), request_id);
            Ok(resp)
        }
    }
}
