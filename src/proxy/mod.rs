//! The proxy service: one request in, one routing-table load, one pool,
//! attempts on backends until one answers or the retry rule
//! ([`crate::retry`]) says stop.
//!
//! The proxy owns its upstream connections ([`upstream`]); the routing
//! table it reads holds none. [`Proxy::maintain`] keeps them in step with the
//! table: connections of a backend that left or drains are closed after each
//! swap, idle ones after the upstream idle timeout.
//!
//! - [`prepare`]: the client's request → the upstream request;
//! - [`attempt`]: one backend, a pooled or new connection, the request;
//! - [`raw`]: wharf's own HTTP/1.1 client, for requests without a body;
//! - [`body`]: the response body, releasing the in-flight slot at its end;
//! - [`tunnel`]: upgraded connections spliced together; [`connect`]: when
//!   an exchange becomes a tunnel (`Upgrade`, or `CONNECT` to a pool that opts in);
//! - [`headers`]: hop-by-hop and `X-Forwarded-*` rewriting (pure);
//! - [`handle`](Proxy::handle_on): per request, around routing and
//!   attempts: its statistics, request id, warning and access-log lines;
//! - [`error`]: the one mapping from failure to status.

mod attempt;
pub mod body;
pub mod client_body;
pub mod client_ip;
pub mod cold;
pub mod connect;
pub mod error;
mod handle;
pub mod headers;
pub mod https;
pub mod prepare;
pub mod raw;
pub mod sanity;
pub mod slots;
pub mod tunnel;
pub mod upstream;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tracing::debug;

use crate::balance::{self, Context};
use crate::cidr::{self, Cidr};
use crate::config::Timeouts;
use crate::health;
use crate::policy::Compressed;
use crate::retry::{self, Failure, Next};
use crate::routing::{Pool, Router};
use crate::stats::StreamedBytes;
use crate::tls::challenge::{http01_token, Http01};
use attempt::{others_left, pick, record_failure, Attempted, Mode};
use body::{Tracked, UpstreamBody};
pub use error::ProxyError;
use upstream::Upstreams;

/// A backend's body (compressed when a pool policy says so), or wharf's own.
pub type RespBody = Either<Either<Tracked, Compressed>, Full<Bytes>>;

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
    /// Requests that failed on the client's side (bad framing, a body
    /// too slow, a client gone, a refused method or Host): never a backend's fault.
    pub client_errors: AtomicU64,
    /// Backend answers wharf refused to pass on (an unsolicited `101`).
    pub bad_responses: AtomicU64,
    /// Open client connections by protocol: HTTP/1, HTTP/2 (a gauge).
    pub connections: [AtomicU64; 2],
    /// Requests a pool policy refused (403, 401, 429; per pool in the table).
    pub refused: AtomicU64,
}

/// What [`Proxy::forward`] learnt about a request, for its statistics and
/// its access-log line, whether it succeeded or not.
#[derive(Debug, Default)]
struct Trace {
    pool: Option<Arc<Pool>>,
    /// The last backend tried (the one that answered, on success), by index in the pool.
    backend: Option<usize>,
    attempts: u32,
    /// Request sent → response head, for the answering attempt (a first
    /// attempt is sent at `at`, see `forward`).
    upstream: Option<std::time::Duration>,
    /// When that response head came: the request's end for its statistics
    /// (what is left, a few µs of header work, is not worth a clock read).
    answered: Option<Instant>,
}

#[derive(Debug)]
pub struct Proxy {
    pub router: Arc<Router>,
    pub upstreams: Arc<Upstreams>,
    pub timeouts: Timeouts,
    pub access_log: bool,
    /// Peers whose `X-Forwarded-*` headers are kept (`--trusted-proxies`).
    pub trusted_proxies: Vec<Cidr>,
    pub stats: Stats,
    /// Pending ACME HTTP-01 answers, served on the plain listener before routing.
    pub http01: Option<Arc<Http01>>,
    /// The TLS listener's port, for `wharf.https_redirect`'s `Location`.
    pub https_port: u16,
    /// One warning a second about hostile or broken clients, at most.
    pub client_log: sanity::LogLimit,
    /// Open client connections, shared by every worker (`--max-connections`).
    pub conn_limit: Arc<crate::limits::ConnLimit>,
    /// This worker's open upgraded connections.
    pub tunnels: Arc<tunnel::Tunnels>,
    /// This worker's index: its slot in each pool's [`crate::stats::PoolStats`].
    pub worker: usize,
}

impl Proxy {
    pub fn new(router: Arc<Router>, timeouts: Timeouts, access_log: bool, trusted_proxies: Vec<Cidr>) -> Proxy {
        Proxy {
            router,
            upstreams: Arc::default(),
            timeouts,
            access_log,
            trusted_proxies,
            stats: Stats::default(),
            http01: None,
            https_port: 443,
            client_log: sanity::LogLimit::default(),
            conn_limit: Arc::default(),
            tunnels: Arc::default(),
            worker: 0,
        }
    }

    /// Not an `async fn`: see [`Proxy::handle_on`].
    #[allow(clippy::manual_async_fn)] // on purpose: see `Proxy::handle_on`
    fn forward<'a>(
        &'a self,
        mut req: Request<Incoming>,
        client: SocketAddr,
        secure: bool,
        start: Instant,
        trace: &'a mut Trace,
    ) -> impl Future<Output = Result<Response<RespBody>, ProxyError>> + Send + 'a {
        async move {
            let connect = req.method() == http::Method::CONNECT;
            let hosts = sanity::Hosts::of(req.headers());
            match sanity::check_hosts(req.method(), req.version(), req.uri(), &hosts) {
                None => {}
                // CONNECT: the pool decides, once routed (`wharf.connect`).
                Some(sanity::Refusal::Method) if connect => {}
                Some(sanity::Refusal::Method) => return Err(ProxyError::MethodNotAllowed),
                Some(sanity::Refusal::BadRequest(why)) => return Err(ProxyError::BadRequest(why)),
            }
            // ACME HTTP-01, before routing and never redirected; a token wharf
            // does not know goes on to the backend (it may run its own client).
            let challenge = !secure && http01_token(req.uri().path()).is_some();
            if challenge {
                let answer = (self.http01.as_ref()).and_then(|h| h.answer(http01_token(req.uri().path())?));
                if let Some(answer) = answer {
                    return Ok(https::http01_answer(answer).map(Either::Right));
                }
            }
            // The Host that was checked routes the request and goes upstream
            // (no policy touches it).
            let sent_host = hosts.first.cloned();
            let table = self.router.load();
            let host = headers::host_of(sent_host.as_ref(), req.uri()).unwrap_or_default();
            // A CONNECT target has no path: it routes like `/`.
            let path = if connect { "/" } else { req.uri().path() };
            let m = table.route(&host, path).ok_or(ProxyError::NoRoute)?;
            let pool = Arc::clone(m.pool);
            trace.pool = Some(Arc::clone(&pool));
            if connect && !connect::allowed(req.version(), &pool.opts) {
                return Err(ProxyError::MethodNotAllowed);
            }
            if !secure && !challenge && pool.opts.https_redirect {
                let location = https::redirect_location(&host, self.https_port, req.uri())
                    .ok_or(ProxyError::BadRequest("no host to redirect to"))?;
                return Ok(https::redirect(location).map(Either::Right));
            }
            // Policies before anything else: a refused client learns nothing of the backends.
            let shape = match &pool.policy {
                None => None,
                Some(policy) => {
                    let head = req.method() == http::Method::HEAD;
                    // Boxed: pools without policies do not carry its future's size.
                    let admitted = Box::pin(policy.admit(head, req.headers_mut(), client, &self.trusted_proxies));
                    Some(admitted.await.map_err(ProxyError::Refused)?)
                }
            };
            if !pool.has_ready() {
                return Err(ProxyError::NoBackend(pool.name.clone()));
            }
            let trusted = cidr::any_contains(&self.trusted_proxies, client.ip());
            let prepare::Prepared {
                mut req,
                upgrade,
                h2,
                replayable,
                fault,
                forwarded,
            } = prepare::prepare(
                req,
                sent_host,
                &pool,
                m.prefix_len,
                client,
                trusted,
                secure,
                self.timeouts.body_idle,
            )?;
            if let Either::Left(body) = req.body_mut() {
                if hyper::body::Body::size_hint(body).exact().is_none() {
                    body.counting(StreamedBytes::new(Arc::clone(&pool.stats), self.worker, false));
                }
            }

            let sticky = pool.opts.sticky.as_ref();
            let cookie =
                sticky.and_then(|s| balance::sticky::cookie_value(req.headers(), &s.cookie).map(str::to_owned));
            // The clock read when the request arrived, a few µs ago, is close
            // enough for balancing and health (two clock reads fewer), unless a
            // policy may have made it wait (a password hash, a queue).
            let at = if pool.policy.is_some() { Instant::now() } else { start };
            let ctx = Context {
                client_ip: client.ip(),
                sticky: cookie.as_deref(),
                now: at,
            };
            let now = health::ms_at(at);
            pool.retry_budget.deposit();
            // Panic mode: every ready backend is ejected or failing its checks;
            // trying them all beats answering 503 to everyone.
            let panic = pool.in_panic(now);
            let slot = pool.stats.slot(self.worker);
            if panic {
                self.stats.panics.fetch_add(1, Ordering::Relaxed);
                slot.panics.fetch_add(1, Ordering::Relaxed);
            }
            // Backends tried so far: at most 1 + `wharf.retries` (≤ 10), on the stack.
            let mut tried_at = [0usize; 1 + retry::MAX_RETRIES as usize];
            let mut attempts = 0;
            let mut last_err = String::new();
            let mut last_failure = Failure::NotSent;
            // The head kept for a replay after a lost connection through
            // hyper's client (the raw client only borrows the request):
            // copied only before an attempt that a replay could follow, i.e.
            // with attempts left and another backend to take it.
            let mut replay: Option<prepare::Replay> = None;
            let max_attempts = 1 + pool.opts.retries.min(retry::MAX_RETRIES) as usize;
            let unreachable = |detail: String| ProxyError::Unreachable {
                pool: pool.name.clone(),
                detail,
            };
            loop {
                let tried = &tried_at[..attempts];
                let max_conns = pool.opts.max_conns;
                // A backend with room first; if all are full, queue on one.
                let picked = pick(&pool, &ctx, tried, now, panic, max_conns).or_else(|| {
                    (max_conns > 0)
                        .then(|| pick(&pool, &ctx, tried, now, panic, 0))
                        .flatten()
                });
                let Some(idx) = picked else {
                    return Err(if tried.is_empty() {
                        ProxyError::NoBackend(pool.name.clone())
                    } else {
                        unreachable(last_err)
                    });
                };
                if !tried.is_empty() {
                    if !pool.retry_budget.try_withdraw() {
                        slot.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                        return Err(unreachable(format!("{last_err}; retry budget exhausted")));
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    slot.retries[usize::from(last_failure == Failure::Lost)].fetch_add(1, Ordering::Relaxed);
                }
                tried_at[attempts] = idx;
                attempts += 1;
                trace.attempts = attempts as u32;
                trace.backend = Some(idx);
                let backend = &pool.backends[idx];
                // Waiting is rare: boxed, so that its future does not size every request's.
                let room = slots::has_room(&backend.shared, max_conns);
                if !room && !Box::pin(slots::wait_for_room(&backend.shared, max_conns, self.timeouts.connect)).await {
                    return Err(ProxyError::BackendFull {
                        pool: pool.name.clone(),
                        max: max_conns,
                    });
                }
                // A first attempt that did not wait goes out a few µs after
                // `at`: one clock read fewer (issue 9). Its upstream time
                // then counts the routing too, the same µs for every backend.
                let sent_at = if attempts == 1 && room { at } else { Instant::now() };
                let mode = Mode {
                    upgrade: upgrade.is_some(),
                    h2,
                    alone: !others_left(&pool, &tried_at[..attempts], now, panic),
                    raw: upgrade.is_none() && !h2 && matches!(req.body(), Either::Right(_)),
                };
                // The raw client only borrows the request: no copy for it.
                if replayable && replay.is_none() && !mode.alone && !mode.raw && attempts < max_attempts {
                    replay = Some(prepare::Replay::of(&req));
                }
                // `attempt` borrows the request: after a failure it is still
                // here (unless hyper's client lost it), with no copy made.
                let (failure, why, kept) = match self.attempt(backend, &mut req, &forwarded, mode, sent_at).await {
                    Attempted::Answered(mut resp, guard) => {
                        backend.shared.health.record_success();
                        let answered = Instant::now();
                        let upstream = answered.saturating_duration_since(sent_at);
                        trace.upstream = Some(upstream);
                        trace.answered = Some(answered);
                        backend.shared.latency.observe(upstream, answered);
                        match connect::switch(resp.status(), connect, upgrade.is_some()) {
                            connect::Switch::Refuse(detail) => {
                                backend.shared.errors.fetch_add(1, Ordering::Relaxed);
                                return Err(ProxyError::BadResponse {
                                    pool: pool.name.clone(),
                                    detail,
                                });
                            }
                            connect::Switch::Tunnel => {
                                if let Some(on_client) = upgrade {
                                    // An upgrade always goes through hyper's client (`Mode::raw`).
                                    let (parts, body) = resp.into_parts();
                                    match body.into_hyper() {
                                        Ok(b) => {
                                            let mut resp = Response::from_parts(parts, b);
                                            let h = resp.headers_mut();
                                            balance::sticky::pin(h, sticky, ctx.sticky, &backend.key);
                                            return Ok(self.start_tunnel(on_client, resp, guard, connect));
                                        }
                                        Err(b) => resp = Response::from_parts(parts, b),
                                    }
                                }
                            }
                            connect::Switch::No => {}
                        }
                        // The raw client left them out as it parsed the head.
                        if !matches!(resp.body(), UpstreamBody::Raw(_)) {
                            headers::strip_hop_by_hop(resp.headers_mut(), false);
                        }
                        // After the strip: a backend's `Connection: set-cookie`
                        // removes its own cookies, not the affinity cookie.
                        balance::sticky::pin(resp.headers_mut(), sticky, ctx.sticky, &backend.key);
                        if let (true, Some(max_age)) = (secure, pool.opts.hsts) {
                            resp.headers_mut()
                                .insert(http::header::STRICT_TRANSPORT_SECURITY, https::hsts_value(max_age));
                        }
                        // A length not declared at the head is counted as it streams.
                        let streamed = hyper::body::Body::size_hint(resp.body()).exact().is_none();
                        let track = |b| {
                            let body = Tracked::new(b, guard);
                            match streamed {
                                true => body.counting(StreamedBytes::new(Arc::clone(&pool.stats), self.worker, true)),
                                false => body,
                            }
                        };
                        // One `map` without a policy: each one moves the whole head.
                        let resp = match (&pool.policy, shape) {
                            (Some(policy), Some(shape)) => policy.shape(resp.map(track), shape).map(Either::Left),
                            _ => resp.map(|b| Either::Left(Either::Left(track(b)))),
                        };
                        return Ok(resp);
                    }
                    Attempted::NotSent(why) => {
                        debug!(backend = %backend.addr, %why, "not delivered, trying another backend");
                        (Failure::NotSent, why, true)
                    }
                    Attempted::Lost { why, kept } => (Failure::Lost, why, kept),
                    Attempted::Timeout => (Failure::Timeout, String::new(), false),
                };
                // The client's body failed (bad framing, gone, too slow): the
                // upstream exchange broke because of the client. Not the
                // backend's fault, and no other backend would do better.
                if let Some(f) = fault.as_ref().and_then(|f| f.get()) {
                    return Err(ProxyError::Client(f));
                }
                if failure == Failure::Timeout {
                    backend.shared.errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    record_failure(&pool, backend, now);
                }
                last_err = why;
                last_failure = failure;
                match (retry::after(failure, replayable, attempts, max_attempts), kept) {
                    (Next::Retry | Next::Replay, true) => {}
                    (Next::Replay, false) => match &replay {
                        Some(r) => req = r.request(),
                        None => return Err(unreachable(last_err)),
                    },
                    (Next::Timeout, _) => return Err(ProxyError::Timeout(self.timeouts.request)),
                    _ => return Err(unreachable(last_err)),
                };
            }
        }
    }

    /// Keep the upstream connections in step with the routing table: after
    /// each swap, close those of backends that left the table or drain; a
    /// few times per idle timeout, close those idle for longer. Runs until
    /// the task is aborted.
    pub async fn maintain(self: Arc<Self>) {
        let max_idle = self.timeouts.upstream_idle;
        let mut swaps = self.router.subscribe();
        let mut tick = tokio::time::interval((max_idle / 3).max(std::time::Duration::from_millis(50)));
        loop {
            tokio::select! {
                changed = swaps.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
            let table = self.router.load();
            let keep: HashSet<u64> = table
                .pools
                .iter()
                .flat_map(|p| &p.backends)
                .filter(|b| !b.shared.draining.load(Ordering::Relaxed))
                .map(|b| b.shared.uid)
                .collect();
            self.upstreams.retain(&keep, max_idle);
        }
    }
}

#[cfg(test)]
mod tests;
