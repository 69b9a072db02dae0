//! HTTP helpers (hyper 1.x) and polling with deadlines.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Timeout for a whole request (connect, send, read the full body), so a hang
/// fails the test instead of blocking it.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, decoded as UTF-8 (lossily).
    pub body: String,
}

impl Resp {
    /// A header's value as a string, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of a `Key: value` line of the body (the demo backend's format).
    pub fn body_field(&self, key: &str) -> Option<&str> {
        self.body.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body))
    }
}

fn build_request(
    uri: String,
    method: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    let mut req = Request::builder()
        .method(method)
        .uri(&uri)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("bad request {uri}: {e}"))?;
    let h = req.headers_mut();
    h.insert(
        HOST,
        HeaderValue::from_str(host).map_err(|e| format!("host {host:?}: {e}"))?,
    );
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?,
            HeaderValue::from_str(v).map_err(|e| format!("header {k}: {v:?}: {e}"))?,
        );
    }
    Ok(req)
}

async fn read_response(resp: http::Response<hyper::body::Incoming>) -> Result<Resp, String> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading body: {e}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path` with `Host: host` on a fresh HTTP/1.1 connection to `addr`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<Resp, String> {
    request(addr, "GET", host, path, &[], b"").await
}

/// One request on a fresh HTTP/1.1 connection to `addr`, with `Host: host`,
/// extra headers and a body. `Err` describes connect/IO/timeout failures;
/// any HTTP status is `Ok`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let req = build_request(path.to_string(), method, host, headers, body)?;
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        let conn = tokio::spawn(conn);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{method} {path} to {addr}: {e}"))?;
        let resp = read_response(resp).await;
        drop(sender);
        conn.abort();
        resp
    };
    within_timeout(method, path, addr, work).await
}

/// `work` (one whole request) cut off after [`HTTP_TIMEOUT`], as an `Err` naming the request.
async fn within_timeout(
    method: &str,
    path: &str,
    addr: SocketAddr,
    work: impl Future<Output = Result<Resp, String>>,
) -> Result<Resp, String> {
    tokio::time::timeout(HTTP_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path} to {addr}: timed out after {HTTP_TIMEOUT:?}")))
}

/// A pooled keep-alive client (hyper_util's legacy client) for load tests;
/// cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// HTTP/1.1 with keep-alive.
    pub fn new() -> Client {
        Client::with(|_| {})
    }

    /// HTTP/2 over cleartext with prior knowledge (h2c).
    pub fn http2() -> Client {
        Client::with(|b| {
            b.http2_only(true);
        })
    }

    fn with(configure: impl FnOnce(&mut hyper_util::client::legacy::Builder)) -> Client {
        let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64);
        configure(&mut builder);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(HTTP_TIMEOUT));
        connector.set_nodelay(true);
        Client {
            inner: builder.build(connector),
        }
    }

    /// `GET path` with `Host: host`.
    pub async fn get(&self, addr: SocketAddr, host: &str, path: &str) -> Result<Resp, String> {
        self.request(addr, "GET", host, path, &[], b"").await
    }

    /// Like the free function [`request`], reusing pooled connections.
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, String> {
        let req = build_request(format!("http://{addr}{path}"), method, host, headers, body)?;
        let work = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| format!("{method} {path} to {addr}: {}", error_chain(&e)))?;
            read_response(resp).await
        };
        within_timeout(method, path, addr, work).await
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// What a poll closure returns: `Option<T>` (`None` = not yet) or
/// `Result<T, E>` (`Err(observation)` = not yet; the last one is reported on timeout).
pub trait Check {
    type Out;
    fn check(self) -> Result<Self::Out, String>;
}

impl<T> Check for Option<T> {
    type Out = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Out = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// How often [`poll`] and [`poll_sync`] retry.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` every ~20 ms until it yields a value or `deadline` has passed.
/// Prints `"<what>: took N ms"` and returns the value with the time it took;
/// panics with `what` and the last observation on timeout. An attempt still
/// running at the deadline is cancelled.
pub async fn poll<C, F, Fut>(what: &str, deadline: Duration, mut f: F) -> (C::Out, Duration)
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let start = Instant::now();
    let mut last = "no attempt finished".to_string();
    let mut attempts = 0u32;
    loop {
        let remaining = deadline.saturating_sub(start.elapsed());
        attempts += 1;
        match tokio::time::timeout(remaining, f()).await {
            Ok(c) => match c.check() {
                Ok(v) => {
                    let took = start.elapsed();
                    eprintln!("{what}: took {} ms ({attempts} attempts)", took.as_millis());
                    return (v, took);
                }
                Err(obs) => last = obs,
            },
            Err(_) => last = format!("attempt still running at the deadline; before that: {last}"),
        }
        if start.elapsed() >= deadline {
            panic!(
                "timed out after {:?} ({attempts} attempts) waiting for: {what}\nlast observation: {last}",
                start.elapsed()
            );
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_sub(start.elapsed()))).await;
    }
}

/// Blocking variant of [`poll`] for sync code.
pub fn poll_sync<C, F>(what: &str, deadline: Duration, mut f: F) -> (C::Out, Duration)
where
    C: Check,
    F: FnMut() -> C,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match f().check() {
            Ok(v) => {
                let took = start.elapsed();
                eprintln!("{what}: took {} ms ({attempts} attempts)", took.as_millis());
                return (v, took);
            }
            Err(obs) => obs,
        };
        if start.elapsed() >= deadline {
            panic!(
                "timed out after {:?} ({attempts} attempts) waiting for: {what}\nlast observation: {last}",
                start.elapsed()
            );
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_sub(start.elapsed())));
    }
}

/// Checks that `f` holds (returns `Some`/`Ok`) on every poll for the whole
/// `period`; panics with `what` and the failing observation as soon as it does not.
/// Returns the number of checks made.
pub async fn stays<C, F, Fut>(what: &str, period: Duration, mut f: F) -> u32
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let start = Instant::now();
    let mut checks = 0u32;
    loop {
        checks += 1;
        if let Err(obs) = f().await.check() {
            panic!(
                "{what}: stopped holding after {} ms (check {checks}): {obs}",
                start.elapsed().as_millis()
            );
        }
        if start.elapsed() >= period {
            eprintln!("{what}: held for {} ms ({checks} checks)", start.elapsed().as_millis());
            return checks;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
