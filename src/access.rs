//! The access log (`--access-log`): one line per request on the public
//! listener, through `tracing` with target `wharf::access`, so it follows
//! `--log-format` (text, or one JSON object per line with the fields under
//! `"fields"`) and `WHARF_LOG` filtering (`WHARF_LOG=info,wharf::access=off`).
//!
//! Fields: `client`, `method`, `host`, `path`, `proto`, `status`,
//! `request_bytes`/`response_bytes` (declared lengths; absent for streamed
//! bodies), `ms` (request received → response head: the backend's, as it
//! came, for a proxied request; wharf's own answer otherwise), `upstream_ms`
//! (request sent → the backend's response head, for the answering attempt;
//! a first attempt that did not wait for a `max_conns` slot counts from the
//! request's arrival, a few µs of routing earlier, or from its admission
//! by a pool's policy: one clock read fewer),
//! `pool`, `container` and `backend` (the answering backend's name and
//! address), `attempts`, `request_id`, and `error` — the `x-wharf-error` kind
//! when wharf answered itself. Absent values are left out.
//!
//! With the flag off, the request path does not build any of this.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Version};
use tracing::info;

/// One request as the access log shows it.
#[derive(Debug)]
pub struct Entry<'a> {
    pub client: SocketAddr,
    pub method: &'a Method,
    pub host: &'a str,
    pub path: &'a str,
    pub version: Version,
    pub status: u16,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    pub total: Duration,
    pub upstream: Option<Duration>,
    pub pool: Option<&'a str>,
    pub container: Option<&'a str>,
    pub backend: Option<SocketAddr>,
    pub attempts: u32,
    pub request_id: &'a str,
    pub error: Option<&'static str>,
}

/// `HTTP/1.1`, `HTTP/2.0`, …
pub fn proto(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Write the line.
pub fn log(e: &Entry<'_>) {
    info!(
        target: "wharf::access",
        client = %e.client,
        method = %e.method,
        host = e.host,
        path = e.path,
        proto = proto(e.version),
        status = e.status,
        request_bytes = e.request_bytes,
        response_bytes = e.response_bytes,
        ms = ms(e.total),
        upstream_ms = e.upstream.map(ms),
        pool = e.pool,
        container = e.container,
        backend = e.backend.map(tracing::field::display),
        attempts = e.attempts,
        request_id = e.request_id,
        error = e.error,
        "request"
    );
}
