//! `wharf.sticky=cookie[:NAME]`: a cookie pins a client to its backend.
//!
//! [`Sticky`] wraps the pool's algorithm. A request whose cookie names a
//! backend of the pool that is eligible (ready, healthy, not yet tried by
//! this request) goes there; any other request — no cookie, an unknown or
//! stale value, a backend that drains, failed or was removed — is balanced
//! by the wrapped algorithm, and the proxy then sets the cookie to the backend
//! that answered ([`pin`]). So a client moves only when its backend can no
//! longer serve it, and its cookie follows it. This is what Traefik's sticky
//! cookie and HAProxy's `cookie … insert` do.
//!
//! The cookie value is a token: 16 hex digits of a fixed hash of the
//! backend's container id and address ([`token`]). It names a backend without
//! revealing its address (the container id is a 256-bit random value the
//! client never sees), and it is the same in every wharf process, so clients
//! keep their backend across a wharf restart and between wharf replicas. The
//! cookie is `NAME=TOKEN; Path=/; HttpOnly; SameSite=Lax`, a session cookie:
//! scripts cannot read it and cross-site subrequests do not carry it.
//!
//! Cost: one hash-map lookup in front of the wrapped algorithm.

use std::collections::HashMap;

use http::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};

use super::mix::hash_bytes;
use super::{Balancer, Context};
use crate::backend::Backend;
use crate::model::BackendKey;
use crate::model::Sticky as StickyOpts;

const SEED: u64 = 0x7768_6172_665f_636b; // "wharf_ck"

/// A backend's cookie value, as a number.
pub fn token(key: &BackendKey) -> u64 {
    hash_bytes(SEED, format!("{}/{}", key.id, key.addr).as_bytes())
}

/// A backend's cookie value, as sent: 16 lowercase hex digits.
pub fn token_string(key: &BackendKey) -> String {
    format!("{:016x}", token(key))
}

fn parse_token(v: &str) -> Option<u64> {
    (v.len() == 16).then(|| u64::from_str_radix(v, 16).ok())?
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265
/// §5.4: `a=1; b=2`, possibly several headers over HTTP/2), without quotes.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'));
    pairs.filter_map(|p| p.trim().split_once('=')).find_map(|(k, v)| {
        let v = v.trim();
        (k.trim() == name).then(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v))
    })
}

/// The `Set-Cookie` value pinning a client to `key`.
pub fn set_cookie(name: &str, key: &BackendKey) -> Option<HeaderValue> {
    let v = format!("{name}={}; Path=/; HttpOnly; SameSite=Lax", token_string(key));
    HeaderValue::from_str(&v).ok()
}

/// The proxy's hook, on the response of `backend`: when the pool is sticky
/// and the request's cookie (`sent`) does not already name that backend, add
/// a `Set-Cookie` that does.
pub fn pin(response: &mut HeaderMap, sticky: Option<&StickyOpts>, sent: Option<&str>, backend: &BackendKey) {
    let Some(s) = sticky else { return };
    if sent.and_then(parse_token) == Some(token(backend)) {
        return;
    }
    if let Some(v) = set_cookie(&s.cookie, backend) {
        response.append(SET_COOKIE, v);
    }
}

/// The pool's algorithm behind a cookie check.
#[derive(Debug)]
pub struct Sticky {
    inner: Box<dyn Balancer>,
    by_token: HashMap<u64, usize>,
}

impl Sticky {
    pub fn new(inner: Box<dyn Balancer>, backends: &[Backend]) -> Sticky {
        let by_token = backends.iter().enumerate().map(|(i, b)| (token(&b.key), i)).collect();
        Sticky { inner, by_token }
    }
}

impl Balancer for Sticky {
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let pinned = ctx
            .sticky
            .and_then(parse_token)
            .and_then(|t| self.by_token.get(&t))
            .copied();
        match pinned {
            Some(i) if i < backends.len() && backends[i].weight > 0 && eligible(i) => Some(i),
            _ => self.inner.select(backends, ctx, eligible),
        }
    }
}

#[cfg(test)]
mod tests;
