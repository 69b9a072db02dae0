//! Per-pool policies at request time: decided before a request is balanced
//! ([`Policy::admit`]) and applied to its response ([`Policy::shape`]).
//!
//! Order, as `labels.md` documents it:
//! 1. `allow`/`deny` on the client address (403) — cheapest first;
//! 2. `ratelimit` (429 with `Retry-After`) — before auth, so a brute force
//!    is throttled before it costs a hash;
//! 3. `auth.basic` (401 with `WWW-Authenticate`; 429 if too many hashes are
//!    queued, see [`auth`]); `Authorization` then removed unless forwarded;
//! 4. `headers.request.*`;
//!    — the request is balanced and forwarded —
//! 5. `security_headers`, then `headers.response.*` (labels win);
//! 6. `compress`.
//!
//! A [`Policy`] is built once per routing table for a pool that has any
//! policy; a pool without one has `None` and pays one branch per request.
//! Each decision is a plain function in its own file, unit-tested:
//! [`access`], [`ratelimit`], [`auth`], [`headers`], [`compress`].

pub mod access;
pub mod auth;
pub mod compress;
pub mod headers;
pub mod ratelimit;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Either;
use hyper::body::Body;
use serde_json::{json, Value};

use crate::model::cidr::Cidr;
use crate::model::{Encoding, Policies};
use auth::{Auth, Verdict};
pub use compress::Compressed;
use ratelimit::Limiter;

/// Why a policy refused a request; [`crate::proxy::ProxyError::Refused`] maps it to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("access denied by wharf.allow/wharf.deny")]
    Forbidden,
    #[error("authentication required")]
    Unauthorized { challenge: HeaderValue },
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("too many authentication attempts in progress; retry shortly")]
    AuthBusy,
}

/// Refusals and work done, per pool, for `/api/state` and `/metrics`.
#[derive(Debug, Default)]
pub struct PolicyStats {
    pub denied: AtomicU64,
    pub unauthorized: AtomicU64,
    pub auth_busy: AtomicU64,
    pub limited: AtomicU64,
    pub compressed: AtomicU64,
}

/// What [`Policy::admit`] decided about the response of an admitted request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    encoding: Option<Encoding>,
}

#[derive(Debug)]
pub struct Policy {
    pub spec: Policies,
    auth: Option<Auth>,
    limiter: Option<Limiter>,
    request_headers: Vec<headers::Edit>,
    response_headers: Vec<headers::Edit>,
    pub stats: PolicyStats,
    /// Problems found while building (an unreadable auth file), for the log and `/api/state`.
    pub problems: Vec<String>,
}

impl Policy {
    /// `None` for a pool without policies (the request path then skips all of this).
    pub fn build(pool: &str, spec: &Policies) -> Option<Policy> {
        if spec.is_empty() {
            return None;
        }
        let (auth, problems) = match &spec.auth {
            Some(a) => {
                let (auth, problems) = Auth::build(a, pool);
                (Some(auth), problems)
            }
            None => (None, Vec::new()),
        };
        Some(Policy {
            spec: spec.clone(),
            auth,
            limiter: spec.ratelimit.as_ref().map(Limiter::new),
            request_headers: headers::edits(&spec.request_headers),
            response_headers: headers::edits(&spec.response_headers),
            stats: PolicyStats::default(),
            problems,
        })
    }

    /// Steps 1–4 of the module docs, on the request's head.
    /// `head`: the request is a `HEAD` (its response has no body to compress).
    pub async fn admit(
        &self,
        head: bool,
        headers: &mut HeaderMap,
        peer: SocketAddr,
        trusted: &[Cidr],
    ) -> Result<Shape, Refusal> {
        let p = &self.spec;
        let needs_client = !(p.allow.is_empty() && p.deny.is_empty()) || self.limiter.is_some();
        let client = if needs_client {
            access::client_address(peer.ip(), headers, trusted)
        } else {
            peer.ip()
        };
        if !access::allowed(client, &p.allow, &p.deny) {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Forbidden);
        }
        if let Some(limiter) = &self.limiter {
            if let Err(wait) = limiter.check(limiter.key(client, headers)) {
                self.stats.limited.fetch_add(1, Ordering::Relaxed);
                let retry_after = ratelimit::retry_after_secs(wait);
                return Err(Refusal::RateLimited { retry_after });
            }
        }
        if let Some(auth) = &self.auth {
            match auth.check(headers.get(http::header::AUTHORIZATION)).await {
                Verdict::Ok => {}
                Verdict::Wrong => {
                    self.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
                    let challenge = auth.challenge.clone();
                    return Err(Refusal::Unauthorized { challenge });
                }
                Verdict::Busy => {
                    self.stats.auth_busy.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::AuthBusy);
                }
            }
            if !auth.forward {
                headers.remove(http::header::AUTHORIZATION);
            }
        }
        headers::apply(headers, &self.request_headers);
        let ranged = headers.contains_key(http::header::RANGE);
        let encoding = match p.compress.is_empty() || head || ranged {
            true => None,
            false => compress::negotiate(headers, &p.compress),
        };
        Ok(Shape { encoding })
    }

    /// Steps 5–6 of the module docs, on the response.
    pub fn shape<B>(&self, mut resp: Response<B>, shape: Shape) -> Response<Either<B, Compressed>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if self.spec.security_headers {
            headers::add_security_headers(resp.headers_mut());
        }
        headers::apply(resp.headers_mut(), &self.response_headers);
        match shape.encoding {
            Some(enc) if compress::worth_compressing(resp.status(), resp.headers()) => {
                self.stats.compressed.fetch_add(1, Ordering::Relaxed);
                compress::compress(resp, enc).map(Either::Right)
            }
            _ => resp.map(Either::Left),
        }
    }

    /// The pool's policies and counters for `/api/state`.
    pub fn state(&self) -> Value {
        let p = &self.spec;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        json!({
            "allow": p.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "deny": p.deny.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "auth": self.auth.as_ref().map(|a| json!({
                "users": a.users(),
                "file": p.auth.as_ref().and_then(|x| x.file.clone()),
                "forward": a.forward,
            })),
            "ratelimit": self.limiter.as_ref().map(|l| json!({
                "rate": l.spec.rate,
                "period_ms": l.spec.period.as_millis() as u64,
                "burst": l.spec.burst,
                "by": l.spec.by.to_string(),
                "keys": l.keys(),
            })),
            "compress": p.compress.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "request_headers": p.request_headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "response_headers": p.response_headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "security_headers": p.security_headers,
            "refused": {
                "allow": n(&s.denied),
                "auth": n(&s.unauthorized),
                "auth_busy": n(&s.auth_busy),
                "ratelimit": n(&s.limited),
            },
            "compressed": n(&s.compressed),
            "problems": self.problems,
        })
    }
}

#[cfg(test)]
mod tests;
