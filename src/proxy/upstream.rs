//! Upstream connections, owned by the proxy: idle keep-alive HTTP/1.1
//! connections (hyper's, and wharf's own [`raw`](super::raw) ones for
//! requests without a body) and one shared HTTP/2 connection per backend,
//! keyed by the backend's [`uid`](crate::backend::BackendShared::uid).
//!
//! wharf keeps its own small pool instead of hyper-util's client so that it
//! controls the two moments that matter for zero failed requests:
//! - a connect failure happens *before* the request is handed over, so any
//!   request (with a body too) can go to another backend;
//! - a draining backend's idle connections are closed at once and its busy
//!   ones are not put back.
//!
//! The routing table knows nothing of these sockets (pingora keeps `Backend`
//! plain and its connection pool in the proxy). The proxy watches the router:
//! after every swap [`Upstreams::retain`] closes the connections of backends
//! that left the table or drain, and a reaper closes those idle for longer
//! than the upstream idle timeout, which stays below common backend
//! keep-alive timeouts (the race where a backend closes a connection just as
//! it is reused is handled by `try_send_request` giving the request back, or
//! the raw client's first write failing as `NotSent`). A raw connection the backend closed is
//! noticed when it is next taken or at the reaper's next pass (it has no
//! task of its own to notice sooner); until then it is one socket in
//! `CLOSE_WAIT`.
//! Idle connections are reused last-in first-out.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

/// The body wharf sends upstream: the client's, watched for the client's
/// faults, or an empty one for a request without a body (and its replay).
pub type UpBody = Either<super::client_body::ClientBody, Empty<Bytes>>;
pub type Sender = http1::SendRequest<UpBody>;
/// HTTP/2 (h2c) connections are multiplexed: one per backend, shared by clones.
pub type H2Sender = http2::SendRequest<UpBody>;

/// A connection of hyper's client ready for one request, of either protocol.
pub enum Conn {
    H1(Sender),
    H2(H2Sender),
}

/// An idle HTTP/1.1 connection: hyper's, or a raw one.
#[derive(Debug)]
pub enum Up {
    Hyper(Sender),
    Raw(Box<super::raw::RawConn>),
}

impl Up {
    fn is_closed(&self) -> bool {
        match self {
            Up::Hyper(s) => s.is_closed(),
            Up::Raw(r) => r.is_closed(),
        }
    }
}

type TrySend = Result<http::Response<Incoming>, hyper::client::conn::TrySendError<http::Request<UpBody>>>;

impl Conn {
    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Conn::H1(s) => s.ready().await,
            Conn::H2(s) => s.ready().await,
        }
    }

    /// Send, or get the request back if the connection could not take it.
    pub fn try_send(&mut self, req: http::Request<UpBody>) -> impl std::future::Future<Output = TrySend> {
        match self {
            Conn::H1(s) => futures::future::Either::Left(s.try_send_request(req)),
            Conn::H2(s) => futures::future::Either::Right(s.try_send_request(req)),
        }
    }
}

/// The timer of an HTTP/1 connection's requests: request sent → response head.
pub type Timer = Pin<Box<tokio::time::Sleep>>;

/// An HTTP/1 connection between requests, with the timer its requests reuse.
///
/// The request timeout was a new `tokio::time::timeout` per attempt: an
/// entry added to the runtime's timer wheel at its first poll and taken out
/// when dropped, a clone of the runtime's handle, the request's future moved
/// into the wrapper; about 680 instructions per request (issue 9, callgrind).
/// A timer that stays with its connection is only moved to the next
/// deadline, and tokio moves a registered entry to a later deadline with one
/// atomic operation (it files the entry again only when the old deadline
/// comes). While the connection sits idle, its timer may still fire once, at
/// the last request's deadline, and wake that request's task for nothing:
/// the task is polled and sleeps again.
#[derive(Debug)]
pub struct Pooled {
    pub conn: Up,
    pub timer: Timer,
}

/// Most idle connections kept per backend; more are closed when returned.
const MAX_IDLE: usize = 256;

#[derive(Debug, Default)]
struct Idle {
    h1: Vec<(Pooled, Instant)>,
    raw: Vec<(Pooled, Instant)>,
    h2: Option<H2Sender>,
}

impl Idle {
    fn list(&mut self, raw: bool) -> &mut Vec<(Pooled, Instant)> {
        if raw {
            &mut self.raw
        } else {
            &mut self.h1
        }
    }
}

/// Hashes a backend's `uid` by one multiplication. The keys are wharf's own
/// counter, never a client's input, so SipHash's protection against chosen
/// keys buys nothing here, and it cost about 150 instructions per lookup,
/// two lookups per request (take, then put back; issue 9, callgrind).
#[derive(Default)]
struct UidHasher(u64);

impl Hasher for UidHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); anything else still hashes.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the low bits (hashbrown's bucket index) stay a
        // one-to-one function of the uid's low bits, so consecutive uids never
        // share a bucket, and the high bits (its control bytes) are mixed.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type ByUid<V> = HashMap<u64, V, BuildHasherDefault<UidHasher>>;

/// Every backend's idle connections.
#[derive(Debug, Default)]
pub struct Upstreams {
    map: Mutex<ByUid<Idle>>,
}

impl Upstreams {
    fn with<R>(&self, f: impl FnOnce(&mut ByUid<Idle>) -> R) -> R {
        f(&mut self.map.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Backend `uid`'s most recently returned live connection (a raw one
    /// with `raw`, else hyper's) idle for less than `max_idle` at `now`.
    pub fn take(&self, uid: u64, raw: bool, max_idle: Duration, now: Instant) -> Option<Pooled> {
        self.with(|m| {
            let idle = m.get_mut(&uid)?.list(raw);
            while let Some((p, since)) = idle.pop() {
                if now.saturating_duration_since(since) < max_idle && !p.conn.is_closed() {
                    return Some(p);
                }
            }
            None
        })
    }

    /// Give a connection back after a response ended cleanly.
    pub fn put(&self, uid: u64, s: Pooled) {
        if s.conn.is_closed() {
            return;
        }
        let raw = matches!(s.conn, Up::Raw(_));
        self.with(|m| {
            let idle = m.entry(uid).or_default().list(raw);
            if idle.len() < MAX_IDLE {
                idle.push((s, Instant::now()));
            }
        });
    }

    /// Backend `uid`'s shared HTTP/2 connection, if it is still open.
    pub fn take_h2(&self, uid: u64) -> Option<H2Sender> {
        self.with(|m| {
            let slot = &mut m.get_mut(&uid)?.h2;
            match slot {
                Some(s) if !s.is_closed() => Some(s.clone()),
                _ => {
                    *slot = None;
                    None
                }
            }
        })
    }

    pub fn set_h2(&self, uid: u64, s: H2Sender) {
        self.with(|m| m.entry(uid).or_default().h2 = Some(s));
    }

    /// Keep only the connections of backends in `keep` (dropping a
    /// `SendRequest` ends its connection; an HTTP/2 one once its open
    /// streams are done), and of those only the ones idle for less than
    /// `max_idle`.
    pub fn retain(&self, keep: &HashSet<u64>, max_idle: Duration) {
        self.with(|m| {
            m.retain(|uid, _| keep.contains(uid));
            for idle in m.values_mut() {
                for list in [&mut idle.h1, &mut idle.raw] {
                    list.retain(|(p, since)| since.elapsed() < max_idle && !p.conn.is_closed());
                }
            }
        });
    }

    /// Idle raw connections to backend `uid` (the tests tell the clients apart).
    #[cfg(test)]
    pub fn idle_raw(&self, uid: u64) -> usize {
        self.with(|m| m.get(&uid).map_or(0, |i| i.raw.len()))
    }

    /// Idle HTTP/1.1 connections to backend `uid` (for the state API).
    pub fn idle(&self, uid: u64) -> usize {
        self.with(|m| m.get(&uid).map_or(0, |i| i.h1.len() + i.raw.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_uids_get_distinct_bucket_bits_and_mixed_high_bits() {
        let build = BuildHasherDefault::<UidHasher>::default();
        let hashes: Vec<u64> = (0..1024u64).map(|uid| build.hash_one(uid)).collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        assert_eq!(low.len(), 1024, "the low 10 bits of 1,024 consecutive uids collide");
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(top.len() > 64, "only {} of 128 control-byte values used", top.len());
    }
}
