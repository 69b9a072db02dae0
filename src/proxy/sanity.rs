//! Requests wharf refuses before routing them, and the rate limit on the log
//! lines such refusals produce. Pure functions, unit-tested here.
//!
//! - `CONNECT` asks a proxy to open a raw TCP tunnel anywhere; wharf is a
//!   reverse proxy: 405, unless the pool it routes to opts in with
//!   `wharf.connect` (decided after routing, see [`super::connect`]; a
//!   `CONNECT` with a bad `Host` is a 400 like any request).
//! - HTTP/1.1 requires exactly one `Host` (RFC 9112 §3.2): none, two, or one
//!   that disagrees with an absolute request target is a 400 — otherwise
//!   routing and the backend could read different hosts from the same
//!   request. HTTP/2 may carry a Host beside `:authority` (RFC 9113 §8.3.1
//!   only says SHOULD refuse a mismatch): wharf routes by Host and hands the
//!   backend that same Host, so there is nothing to confuse, and clients that
//!   dial an address while naming a virtual host keep working.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{header, HeaderMap, HeaderValue, Method, Uri, Version};

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 405: a method wharf does not forward.
    Method,
    /// 400, with the reason.
    BadRequest(&'static str),
}

/// Check a request head; `None`: it may be routed. `CONNECT` with a sound
/// Host gets [`Refusal::Method`]: refused unless its pool opts in.
pub fn check(method: &Method, version: Version, uri: &Uri, headers: &HeaderMap) -> Option<Refusal> {
    check_hosts(method, version, uri, &Hosts::of(headers))
}

/// A request's `Host` headers, looked up once: the first one and whether
/// another follows. The proxy checks them, routes by the first and sends it
/// on: one lookup instead of three (issue 9).
#[derive(Debug, Clone, Copy)]
pub struct Hosts<'a> {
    pub first: Option<&'a HeaderValue>,
    pub more: bool,
}

impl<'a> Hosts<'a> {
    pub fn of(headers: &'a HeaderMap) -> Hosts<'a> {
        let mut all = headers.get_all(header::HOST).iter();
        let first = all.next();
        Hosts {
            first,
            more: all.next().is_some(),
        }
    }
}

/// [`check`] with the `Host` headers already looked up.
pub fn check_hosts(method: &Method, version: Version, uri: &Uri, hosts: &Hosts<'_>) -> Option<Refusal> {
    let host = check_host(version, uri, hosts);
    if host.is_none() && method == Method::CONNECT {
        return Some(Refusal::Method);
    }
    host
}

fn check_host(version: Version, uri: &Uri, hosts: &Hosts<'_>) -> Option<Refusal> {
    if hosts.more {
        return Some(Refusal::BadRequest("more than one Host header"));
    }
    match (hosts.first, uri.authority()) {
        (None, None) if version == Version::HTTP_11 => Some(Refusal::BadRequest("HTTP/1.1 request without Host")),
        // HTTP/2 carries both :authority and, from some clients, a Host that
        // names the virtual host while :authority names the address dialled.
        // wharf routes by Host and passes that same Host on, so the two
        // cannot disagree about where the request goes: allowed, as before.
        (Some(_), Some(_)) if version == Version::HTTP_2 => None,
        (Some(h), Some(a)) => {
            let h = h.to_str().unwrap_or("");
            (!same_host(h, a.as_str())).then_some(Refusal::BadRequest("Host disagrees with the request target"))
        }
        _ => None,
    }
}

/// `a` and `b` name the same host (case and a trailing dot aside); a port
/// present on both must match too.
fn same_host(a: &str, b: &str) -> bool {
    let split = |s: &str| -> (String, Option<String>) {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => {
                (h, Some(p.to_string()))
            }
            _ => (s, None),
        };
        (h.trim_end_matches('.').to_ascii_lowercase(), p)
    };
    let ((ha, pa), (hb, pb)) = (split(a), split(b));
    ha == hb
        && match (pa, pb) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

/// At most one log line per `every_ms` for a kind of hostile request, with
/// the number suppressed since the last one. One per worker: no lock.
#[derive(Debug, Default)]
pub struct LogLimit {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn allow(&self, now_ms: u64, every_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < every_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last_ms.store(now_ms.max(1), Ordering::Relaxed);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn connect_with_a_sound_host_is_a_method_refusal_and_with_a_bad_one_a_400() {
        let uri: Uri = "db.internal:5432".parse().unwrap();
        assert_eq!(
            check(&Method::CONNECT, Version::HTTP_11, &uri, &hosts(&["db.internal:5432"])),
            Some(Refusal::Method)
        );
        assert_eq!(
            check(&Method::CONNECT, Version::HTTP_11, &uri, &hosts(&[])),
            Some(Refusal::Method)
        );
        assert!(matches!(
            check(&Method::CONNECT, Version::HTTP_11, &uri, &hosts(&["other.internal"])),
            Some(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn http11_needs_exactly_one_host_and_http10_may_have_none() {
        let uri: Uri = "/".parse().unwrap();
        let get = Method::GET;
        assert_eq!(check(&get, Version::HTTP_11, &uri, &hosts(&["a.test"])), None);
        assert!(matches!(
            check(&get, Version::HTTP_11, &uri, &hosts(&[])),
            Some(Refusal::BadRequest(r)) if r.contains("without Host")
        ));
        assert_eq!(check(&get, Version::HTTP_10, &uri, &hosts(&[])), None);
        assert!(matches!(
            check(&get, Version::HTTP_11, &uri, &hosts(&["a.test", "b.test"])),
            Some(Refusal::BadRequest(r)) if r.contains("more than one")
        ));
        // Even two identical ones: a proxy in front may have picked either.
        assert!(check(&get, Version::HTTP_11, &uri, &hosts(&["a.test", "a.test"])).is_some());
    }

    #[test]
    fn a_host_that_disagrees_with_an_http1_absolute_target_is_refused_and_http2_routes_by_host() {
        let get = Method::GET;
        let abs: Uri = "http://a.test/x".parse().unwrap();
        assert_eq!(check(&get, Version::HTTP_11, &abs, &hosts(&["A.test."])), None);
        assert_eq!(check(&get, Version::HTTP_11, &abs, &hosts(&["a.test:80"])), None);
        assert!(check(&get, Version::HTTP_11, &abs, &hosts(&["b.test"])).is_some());
        let h2: Uri = "http://a.test:8443/x".parse().unwrap();
        assert_eq!(check(&get, Version::HTTP_2, &h2, &hosts(&[])), None);
        // HTTP/2: Host decides (routing and the backend see the same one).
        assert_eq!(check(&get, Version::HTTP_2, &h2, &hosts(&["admin.test"])), None);
        let v6: Uri = "http://[::1]:80/".parse().unwrap();
        assert_eq!(check(&get, Version::HTTP_11, &v6, &hosts(&["[::1]"])), None);
    }

    #[test]
    fn the_log_limit_lets_one_line_through_per_period_and_counts_the_rest() {
        let l = LogLimit::default();
        assert_eq!(l.allow(1_000, 1_000), Some(0));
        assert_eq!(l.allow(1_200, 1_000), None);
        assert_eq!(l.allow(1_900, 1_000), None);
        assert_eq!(l.allow(2_000, 1_000), Some(2));
        assert_eq!(l.allow(2_001, 1_000), None);
    }
}
