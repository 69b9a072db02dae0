//! One attempt on one backend: a pooled or new connection, then the request.
//!
//! A pooled connection can turn out dead (the backend closed it while it sat
//! idle); that does not count as an attempt, and the request — given back by
//! hyper's `try_send_request`, or never taken by the raw client
//! ([`super::raw`], which borrows it) when its first write fails — goes on
//! the next pooled or a fresh connection.
//! A fresh connection is the last word on this backend,
//! except for a refused connect during a cold start ([`super::cold`]): when
//! the backend became ready moments ago and no other backend could take the
//! request, the connect is tried again after a short back-off.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{self, Poll};
use std::time::Instant;

use super::body::{Guard, UpstreamBody};
use super::cold::ColdStart;
use super::headers::Forwarded;
use super::raw::{Failed, RawConn};
use super::upstream::{Conn, Timer, Up, UpBody};
use super::{slots, Proxy};
use crate::backend::Backend;
use crate::balance::Context;
use crate::routing::Pool;
use crate::{health, net};
use http::{Request, Response};
use http_body_util::{Either, Empty};

/// How an attempt ended.
pub(super) enum Attempted {
    /// Response headers arrived; the guard holds the in-flight slot.
    Answered(Response<UpstreamBody>, Guard),
    /// The request was not sent: the caller's request is whole, for another
    /// backend (on hyper's path, with wharf's `X-Forwarded-*` already in
    /// its map: inserting them again replaces them).
    NotSent(String),
    /// The request was sent and the connection died before response
    /// headers. `kept`: the caller's request is still whole (the raw
    /// client only borrows it), for a replay; else hyper's client took it.
    Lost { why: String, kept: bool },
    /// No response headers within the request timeout.
    Timeout,
}

/// What [`Proxy::attempt`] needs to know besides the request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mode {
    /// The client asked for an upgrade: a fresh connection that can be taken over.
    pub upgrade: bool,
    /// Spoken to the backend in HTTP/2.
    pub h2: bool,
    /// No other backend could take the request (cold-start retries allowed).
    pub alone: bool,
    /// The request has no body and is neither an upgrade nor HTTP/2: it
    /// goes on a raw connection ([`super::raw`]).
    pub raw: bool,
}

impl Proxy {
    /// Not an `async fn`: see [`Proxy::handle_on`].
    #[allow(clippy::manual_async_fn)] // on purpose: see `Proxy::handle_on`
    pub(super) fn attempt<'a>(
        &'a self,
        backend: &'a Backend,
        req: &'a mut Request<UpBody>,
        forwarded: &'a Forwarded,
        mode: Mode,
        mut now: Instant,
    ) -> impl Future<Output = Attempted> + Send + 'a {
        async move {
            let Mode {
                upgrade,
                h2,
                alone,
                raw,
            } = mode;
            let mut cold = ColdStart::new(alone, self.timeouts.connect);
            let mut guard = Guard::new(Arc::clone(&backend.shared));
            let uid = backend.shared.uid;
            let ups = &self.upstreams;
            // The request timer: a pooled HTTP/1 connection's own, else a new one.
            let mut timer: Option<Timer> = None;
            loop {
                let pooled = match (upgrade, h2) {
                    (true, _) => None,
                    (false, false) => ups.take(uid, raw, self.timeouts.upstream_idle, now).map(|p| {
                        timer = Some(p.timer);
                        match p.conn {
                            Up::Hyper(s) => Link::Hyper(Conn::H1(s)),
                            Up::Raw(r) => Link::Raw(r),
                        }
                    }),
                    (false, true) => ups.take_h2(uid).map(|s| Link::Hyper(Conn::H2(s))),
                };
                let fresh = pooled.is_none();
                let link = match pooled {
                    Some(c) => c,
                    None => {
                        // Boxed: connecting (TCP, the handshake, the spawn) is a
                        // large future that a pooled connection never needs, and
                        // unboxed its size is held, per client connection, by
                        // hyper's `Box` for the service future (see server/).
                        let connected = if h2 {
                            Box::pin(net::connect_h2(backend.addr, self.timeouts.connect))
                                .await
                                .map(|s| {
                                    ups.set_h2(uid, s.clone());
                                    Link::Hyper(Conn::H2(s))
                                })
                        } else if raw {
                            Box::pin(net::tcp(backend.addr, self.timeouts.connect))
                                .await
                                .map(|tcp| Link::Raw(RawConn::new(tcp)))
                        } else {
                            Box::pin(net::connect(backend.addr, self.timeouts.connect, upgrade))
                                .await
                                .map(|s| Link::Hyper(Conn::H1(s)))
                        };
                        let refusals = &backend.shared.health.refusals;
                        match connected {
                            Ok(c) => {
                                refusals.record_connected();
                                c
                            }
                            Err(e) => {
                                if e.is_refused() {
                                    refusals.record_refused(health::now_ms());
                                }
                                let wait = e
                                    .is_refused()
                                    .then(|| cold.after_refusal(&backend.shared.ready_since, Instant::now()))
                                    .flatten();
                                if let Some(wait) = wait {
                                    tracing::debug!(backend = %backend.addr, ?wait, retries = cold.retries,
                                                "connect refused during cold start, trying again");
                                    tokio::time::sleep(wait).await;
                                    // The next pass may take a pooled connection:
                                    // its request is timed from here.
                                    now = Instant::now();
                                    continue;
                                }
                                return Attempted::NotSent(e.to_string());
                            }
                        }
                    }
                };
                // From now: a fresh connection's connect does not count; a
                // pooled one's request goes out a few µs after `now` was read
                // (the request's arrival for a first attempt that did not
                // wait, else the attempt's start, or after a cold-start
                // back-off).
                let deadline = |fresh: bool| {
                    let sent_at = if fresh { Instant::now() } else { now };
                    tokio::time::Instant::from_std(sent_at + self.timeouts.request)
                };
                let mut conn = match link {
                    Link::Hyper(conn) => conn,
                    Link::Raw(r) => {
                        let armed = arm(&mut timer, deadline(fresh));
                        let Some(sent) = timed(r.send(req, forwarded), armed).await else {
                            return Attempted::Timeout;
                        };
                        match sent {
                            Ok(resp) => {
                                // The connection is in the body; it comes
                                // back to the pool, with its timer, at the end.
                                if let Some(timer) = timer.take() {
                                    guard.set_home(ups, timer, None);
                                }
                                return Attempted::Answered(resp.map(UpstreamBody::Raw), guard);
                            }
                            Err(Failed::NotSent(_)) if !fresh => continue,
                            Err(Failed::NotSent(why)) => return Attempted::NotSent(why),
                            Err(Failed::Lost(why)) => return Attempted::Lost { why, kept: true },
                        }
                    }
                };
                if conn.ready().await.is_err() {
                    if fresh {
                        let why = format!("connection to {} closed", backend.addr);
                        return Attempted::NotSent(why);
                    }
                    continue;
                }
                forwarded.insert_into(req.headers_mut());
                let armed = arm(&mut timer, deadline(fresh));
                // hyper's client takes the request; the caller's place holds
                // a bodyless one meanwhile, and gets it back if it comes back.
                let taken = std::mem::replace(req, Request::new(Either::Right(Empty::new())));
                let Some(sent) = timed(conn.try_send(taken), armed).await else {
                    return Attempted::Timeout;
                };
                match sent {
                    Ok(resp) => {
                        // HTTP/1 connections go back to the pool, with their
                        // timer, when the body ends; the shared HTTP/2 one
                        // never left it.
                        if let (Conn::H1(sender), false, Some(timer)) = (conn, upgrade, timer.take()) {
                            guard.set_home(ups, timer, Some(sender));
                        }
                        return Attempted::Answered(resp.map(UpstreamBody::Hyper), guard);
                    }
                    Err(mut e) => match e.take_message() {
                        Some(r) if !fresh => {
                            *req = r;
                            continue;
                        }
                        Some(r) => {
                            *req = r;
                            return Attempted::NotSent(e.into_error().to_string());
                        }
                        None => {
                            return Attempted::Lost {
                                why: e.into_error().to_string(),
                                kept: false,
                            }
                        }
                    },
                }
            }
        }
    }
}

/// The request timer moved to `deadline`: the pooled connection's, else a new one.
fn arm(timer: &mut Option<Timer>, deadline: tokio::time::Instant) -> &mut Timer {
    match timer {
        Some(t) => {
            t.as_mut().reset(deadline);
            t
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    }
}

/// `exchange`'s result, or `None` if `timer` fires first. The exchange is
/// polled first, as in `tokio::time::timeout`: an answer ready at the
/// deadline wins.
///
/// A future of its own, not an `async fn`: an `async fn` holds its
/// argument twice (as passed, and pinned in its body), and the exchange is
/// the largest part of the request's future (744 bytes for the raw
/// client's), which hyper's server copies whole three times per request
/// (issue 9, `-Zprint-type-sizes`).
fn timed<F: Future>(exchange: F, timer: &mut Timer) -> Timed<'_, F> {
    Timed { exchange, timer }
}

pin_project_lite::pin_project! {
    struct Timed<'a, F> {
        #[pin]
        exchange: F,
        timer: &'a mut Timer,
    }
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(done) = this.exchange.poll(cx) {
            return Poll::Ready(Some(done));
        }
        this.timer.as_mut().poll(cx).map(|()| None)
    }
}

/// A connection for one attempt: hyper's client, or wharf's own.
enum Link {
    Hyper(Conn),
    Raw(Box<RawConn>),
}

/// Ask the pool's balancer for a backend not yet tried by this request:
/// an available one, or in panic mode any ready one.
/// With `max_conns`, only backends with room under it.
pub(super) fn pick(
    pool: &Pool,
    ctx: &Context,
    tried: &[usize],
    now: u64,
    panic: bool,
    max_conns: u32,
) -> Option<usize> {
    let eligible = |i: usize| {
        let b = &pool.backends[i];
        (if panic { b.is_ready() } else { b.is_available(now) })
            && !tried.contains(&i)
            && slots::has_room(&b.shared, max_conns)
    };
    pool.balancer.select(&pool.backends, ctx, &eligible)
}

/// Could a backend other than those in `tried` take the request (the same
/// test as [`pick`], without the connection cap)?
pub(super) fn others_left(pool: &Pool, tried: &[usize], now: u64, panic: bool) -> bool {
    pool.backends
        .iter()
        .enumerate()
        .any(|(i, b)| !tried.contains(&i) && if panic { b.is_ready() } else { b.is_available(now) })
}

/// A delivery failure: count it, and eject the backend if it keeps failing
/// and the pool can spare it.
pub(super) fn record_failure(pool: &Pool, backend: &Backend, now: u64) {
    backend.shared.errors.fetch_add(1, Ordering::Relaxed);
    if let Some(d) = backend.shared.health.record_failure(now, pool.may_eject(now)) {
        backend.shared.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(pool = %pool.name, container = %backend.container, addr = %backend.addr,
              ejected_for_ms = d.as_millis() as u64, "backend ejected after consecutive delivery failures");
    }
}
