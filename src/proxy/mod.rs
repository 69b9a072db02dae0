//! The proxy service: one request in, one routing-table load, one pool,
//! attempts on backends until one answers or the retry budget is spent.
//!
//! Retry rule (SPEC "Retries"): a request that never reached a backend —
//! connect refused/reset/timed out, or a pooled connection found closed
//! before the request was written — goes to another backend whatever its
//! method; an idempotent request without a body is also retried when the
//! connection died before response headers. Nothing is retried after
//! response headers arrived, and a request is never sent twice otherwise.

pub mod body;
pub mod error;
pub mod headers;
pub mod pool;
pub mod retry;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body as _, Incoming};
use tracing::{debug, info, warn};

use crate::balance::{self, Context};
use crate::cidr::{self, Cidr};
use crate::config::Timeouts;
use crate::health;
use crate::labels::Protocol;
use crate::routing::{Backend, Pool, Router};
use body::{Guard, Tracked};
pub use error::ProxyError;
use pool::{Conn, UpBody};

pub type RespBody = Either<Tracked, Full<Bytes>>;

/// Counters for `/metrics`, beside the per-backend ones in the routing table.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub no_route: AtomicU64,
    pub no_backend: AtomicU64,
    pub unreachable: AtomicU64,
    pub timeouts: AtomicU64,
    /// Requests served in panic mode (every ready backend unhealthy).
    pub panics: AtomicU64,
}

#[derive(Debug)]
pub struct Proxy {
    pub router: Arc<Router>,
    pub timeouts: Timeouts,
    pub access_log: bool,
    /// Peers whose `X-Forwarded-*` headers are kept (`--trusted-proxies`).
    pub trusted_proxies: Vec<Cidr>,
    pub stats: Stats,
}

/// Why one attempt on one backend failed, and whether the request survives it.
enum AttemptError {
    /// The request was not sent: try elsewhere with the same request.
    NotSent(Box<Request<UpBody>>, String),
    /// The request was sent and the connection died before response headers.
    Lost(String),
    Timeout,
}

impl Proxy {
    pub fn new(router: Arc<Router>, timeouts: Timeouts, access_log: bool, trusted_proxies: Vec<Cidr>) -> Proxy {
        Proxy {
            router,
            timeouts,
            access_log,
            trusted_proxies,
            stats: Stats::default(),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, client: SocketAddr) -> Response<RespBody> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        // Kept for the log lines; cloning a `Uri` only bumps reference counts.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let (resp, backend) = match self.forward(req, client).await {
            Ok(ok) => ok,
            Err(e) => {
                let counter = match &e {
                    ProxyError::NoRoute => &self.stats.no_route,
                    ProxyError::NoBackend(_) => &self.stats.no_backend,
                    ProxyError::Unreachable { .. } => &self.stats.unreachable,
                    ProxyError::Timeout(_) => &self.stats.timeouts,
                    ProxyError::BadRequest(_) => &self.stats.no_route,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if matches!(e, ProxyError::Unreachable { .. } | ProxyError::Timeout(_)) {
                    warn!(%client, %method, path = uri.path(), error = %e, "request failed");
                }
                (e.to_response().map(Either::Right), None)
            }
        };
        if self.access_log {
            info!(target: "wharf::access", %client, %method, path = uri.path(), status = resp.status().as_u16(),
                  backend = backend.map(|a: SocketAddr| a.to_string()).unwrap_or_default(),
                  ms = start.elapsed().as_secs_f64() * 1e3, "request");
        }
        resp
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<(Response<RespBody>, Option<SocketAddr>), ProxyError> {
        let table = self.router.load();
        let host = headers::request_host(req.headers(), req.uri()).unwrap_or_default();
        let m = table.route(&host, req.uri().path()).ok_or(ProxyError::NoRoute)?;
        let pool = Arc::clone(m.pool);
        if !pool.has_ready() {
            return Err(ProxyError::NoBackend(pool.name.clone()));
        }

        let upgrade = headers::wants_upgrade(req.headers()) && req.version() == Version::HTTP_11;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let pq = if pool.opts.strip_prefix && m.prefix_len > 0 {
            headers::strip_prefix(pq, m.prefix_len)
        } else {
            pq.to_string()
        };
        let host_value = parts.headers.get(http::header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
        let h2 = pool.opts.protocol == Protocol::H2c && !upgrade;
        // gRPC needs `te: trailers`, the one TE value HTTP/2 allows.
        let te_trailers = h2 && headers::te_trailers(&parts.headers);
        let trusted = cidr::any_contains(&self.trusted_proxies, client.ip());
        headers::rewrite_request(&mut parts.headers, client.ip(), host_value.as_ref(), upgrade, trusted);
        let uri: Uri = if h2 {
            // HTTP/2 carries the host as :authority, which hyper takes from an absolute URI.
            let authority = host_value
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_string();
            format!("http://{authority}{pq}").parse()
        } else {
            if let Some(h) = host_value {
                parts.headers.insert(http::header::HOST, h);
            }
            pq.parse()
        }
        .map_err(|_| ProxyError::BadRequest("invalid path or host"))?;
        if te_trailers {
            parts
                .headers
                .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
        let replay = (is_idempotent(&parts.method) && body.is_end_stream())
            .then(|| (parts.method.clone(), uri.clone(), parts.headers.clone()));
        let mut req = Request::new(Either::Left(body));
        *req.method_mut() = parts.method;
        *req.uri_mut() = uri;
        *req.version_mut() = if h2 { Version::HTTP_2 } else { Version::HTTP_11 };
        *req.headers_mut() = parts.headers;

        let sticky = pool.opts.sticky.as_ref();
        let cookie = sticky.and_then(|s| balance::sticky::cookie_value(req.headers(), &s.cookie).map(str::to_owned));
        let ctx = Context {
            client_ip: client.ip(),
            sticky: cookie.as_deref(),
            now: Instant::now(),
        };
        let now = health::now_ms();
        pool.retry_budget.deposit();
        // Panic mode: every ready backend is ejected or failing its checks;
        // trying them all beats answering 503 to everyone.
        let panic = pool.in_panic(now);
        if panic {
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
        }
        let mut tried: Vec<usize> = Vec::with_capacity(2);
        let mut last_err = String::new();
        let max_attempts = 1 + pool.opts.retries as usize;
        let unreachable = |detail: String| ProxyError::Unreachable {
            pool: pool.name.clone(),
            detail,
        };
        loop {
            if tried.len() >= max_attempts {
                return Err(unreachable(last_err));
            }
            let Some(idx) = pick(&pool, &ctx, &tried, now, panic) else {
                return Err(if tried.is_empty() {
                    ProxyError::NoBackend(pool.name.clone())
                } else {
                    unreachable(last_err)
                });
            };
            if !tried.is_empty() {
                if !pool.retry_budget.try_withdraw() {
                    return Err(unreachable(format!("{last_err}; retry budget exhausted")));
                }
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            tried.push(idx);
            let backend = &pool.backends[idx];
            let sent_at = Instant::now();
            match self.attempt(backend, req, upgrade, h2).await {
                Ok((mut resp, guard)) => {
                    backend.shared.health.record_success();
                    let answered = Instant::now();
                    backend
                        .shared
                        .latency
                        .observe(answered.saturating_duration_since(sent_at), answered);
                    balance::sticky::pin(resp.headers_mut(), sticky, ctx.sticky, &backend.key);
                    let status = resp.status();
                    if upgrade && status == http::StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(on_client) = client_upgrade {
                            let on_backend = hyper::upgrade::on(&mut resp);
                            tokio::spawn(tunnel(on_client, on_backend, guard));
                            let (p, _) = resp.into_parts();
                            let resp = Response::from_parts(p, Either::Right(Full::new(Bytes::new())));
                            return Ok((resp, Some(backend.addr)));
                        }
                    }
                    headers::strip_hop_by_hop(resp.headers_mut(), false);
                    let resp = resp.map(|b| Either::Left(Tracked::new(b, guard)));
                    return Ok((resp, Some(backend.addr)));
                }
                Err(AttemptError::NotSent(r, why)) => {
                    debug!(backend = %backend.addr, %why, "not delivered, trying another backend");
                    record_failure(&pool, backend, now);
                    last_err = why;
                    req = *r;
                }
                Err(AttemptError::Lost(why)) => {
                    record_failure(&pool, backend, now);
                    last_err = why;
                    match &replay {
                        Some((m, u, h)) => req = rebuild(m, u, h, if h2 { Version::HTTP_2 } else { Version::HTTP_11 }),
                        None => return Err(unreachable(last_err)),
                    }
                }
                Err(AttemptError::Timeout) => {
                    backend.shared.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(ProxyError::Timeout(self.timeouts.request));
                }
            }
        }
    }

    /// One backend: a pooled or new connection, then the request.
    async fn attempt(
        &self,
        backend: &Backend,
        mut req: Request<UpBody>,
        upgrade: bool,
        h2: bool,
    ) -> Result<(Response<Incoming>, Guard), AttemptError> {
        let mut guard = Guard::new(Arc::clone(&backend.shared));
        let idle = &backend.shared.idle;
        // A pooled connection can turn out dead; those don't count as attempts,
        // but a fresh connection is the last word on this backend.
        loop {
            let pooled = match (upgrade, h2) {
                (true, _) => None,
                (false, false) => idle.take(self.timeouts.upstream_idle).map(Conn::H1),
                (false, true) => idle.take_h2().map(Conn::H2),
            };
            let fresh = pooled.is_none();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let connected = if h2 {
                        pool::connect_h2(backend.addr, self.timeouts.connect).await.map(|s| {
                            idle.set_h2(s.clone());
                            Conn::H2(s)
                        })
                    } else {
                        pool::connect(backend.addr, self.timeouts.connect, upgrade)
                            .await
                            .map(Conn::H1)
                    };
                    match connected {
                        Ok(c) => c,
                        Err(e) => return Err(AttemptError::NotSent(Box::new(req), e.to_string())),
                    }
                }
            };
            if conn.ready().await.is_err() {
                if fresh {
                    let why = format!("connection to {} closed", backend.addr);
                    return Err(AttemptError::NotSent(Box::new(req), why));
                }
                continue;
            }
            let sent = tokio::time::timeout(self.timeouts.request, conn.try_send(req)).await;
            match sent {
                Err(_) => return Err(AttemptError::Timeout),
                Ok(Ok(resp)) => {
                    // HTTP/1 connections go back to the pool when the body ends;
                    // the shared HTTP/2 one never left it.
                    if let (Conn::H1(s), false) = (conn, upgrade) {
                        guard.set_sender(s);
                    }
                    return Ok((resp, guard));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(r) if !fresh => {
                        req = r;
                        continue;
                    }
                    Some(r) => return Err(AttemptError::NotSent(Box::new(r), e.into_error().to_string())),
                    None => return Err(AttemptError::Lost(e.into_error().to_string())),
                },
            }
        }
    }
}

/// Ask the pool's balancer for a backend not yet tried by this request:
/// an available one, or in panic mode any ready one.
fn pick(pool: &Pool, ctx: &Context, tried: &[usize], now: u64, panic: bool) -> Option<usize> {
    let eligible = |i: usize| {
        let b = &pool.backends[i];
        (if panic { b.is_ready() } else { b.is_available(now) }) && !tried.contains(&i)
    };
    pool.balancer.select(&pool.backends, ctx, &eligible)
}

/// A delivery failure: count it, and eject the backend if it keeps failing
/// and the pool can spare it.
fn record_failure(pool: &Pool, backend: &Backend, now: u64) {
    backend.shared.errors.fetch_add(1, Ordering::Relaxed);
    if let Some(d) = backend.shared.health.record_failure(now, pool.may_eject(now)) {
        warn!(pool = %pool.name, container = %backend.container, addr = %backend.addr,
              ejected_for_ms = d.as_millis() as u64, "backend ejected after consecutive delivery failures");
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn rebuild(method: &Method, uri: &Uri, headers: &http::HeaderMap, version: Version) -> Request<UpBody> {
    let mut r = Request::new(Either::Right(Empty::new()));
    *r.version_mut() = version;
    *r.method_mut() = method.clone();
    *r.uri_mut() = uri.clone();
    *r.headers_mut() = headers.clone();
    r
}

/// After a `101`, splice the client and backend connections together. The
/// guard keeps the backend's in-flight count up for the tunnel's lifetime.
async fn tunnel(on_client: hyper::upgrade::OnUpgrade, on_backend: hyper::upgrade::OnUpgrade, guard: Guard) {
    let (client, backend) = match tokio::try_join!(on_client, on_backend) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut backend = hyper_util::rt::TokioIo::new(backend);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    drop(guard);
}
