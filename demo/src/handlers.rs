//! Request routing and the endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body::{self, DemoBody, Ending, Pattern, DEFAULT_CHUNK, MAX_CHUNK};
use crate::parse::{canonical_header_name, json_escape, parse_status, query_number};
use crate::{Config, Lifelines};

const X_DEMO_NAME: HeaderName = HeaderName::from_static("x-demo-name");
const X_DEMO_HOSTNAME: HeaderName = HeaderName::from_static("x-demo-hostname");
const X_DEMO_PATH: HeaderName = HeaderName::from_static("x-demo-path");
const X_DEMO_ID: HeaderName = HeaderName::from_static("x-demo-id");

/// State shared by all connections of one server.
pub(crate) struct State {
    name: String,
    hostname: String,
    name_header: HeaderValue,
    hostname_header: HeaderValue,
    healthy: AtomicBool,
    requests: AtomicU64,
    in_flight: AtomicU64,
    ids: Mutex<Vec<String>>,
    delay: Duration,
}

impl State {
    pub(crate) fn new(config: &Config) -> Self {
        let header = |value: &str| HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Self {
            name: config.name.clone(),
            hostname: config.hostname.clone(),
            name_header: header(&config.name),
            hostname_header: header(&config.hostname),
            healthy: AtomicBool::new(!config.health_fail),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            ids: Mutex::new(Vec::new()),
            delay: config.delay,
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<State>);

impl InFlight {
    fn start(state: &Arc<State>) -> Self {
        state.requests.fetch_add(1, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything a handler may need besides the request.
pub(crate) struct Ctx {
    pub(crate) state: Arc<State>,
    pub(crate) peer: SocketAddr,
    pub(crate) lifelines: Lifelines,
}

/// The hyper service function: routes, then adds the `x-demo-*` headers.
pub(crate) async fn handle(ctx: Ctx, req: Request<Incoming>) -> Result<Response<DemoBody>, Infallible> {
    for id in req.headers().get_all(X_DEMO_ID) {
        let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
        ctx.state.ids().push(id);
    }
    let path = req.uri().path();
    let counted = path != "/_demo/stats" && !path.starts_with("/health");
    let _in_flight = counted.then(|| InFlight::start(&ctx.state));
    if counted && !path.starts_with("/_demo/") && !ctx.state.delay.is_zero() {
        tokio::time::sleep(ctx.state.delay).await;
    }

    let query = req.uri().query().unwrap_or("").to_owned();
    let mut response = route(&ctx, req).await;
    let headers = response.headers_mut();
    // `?type=`, `?encoding=`, `?cache=` on any endpoint: answer with that
    // Content-Type, Content-Encoding or Cache-Control (to test what a proxy
    // does with them, e.g. compression).
    for (key, name) in [
        ("type", header::CONTENT_TYPE),
        ("encoding", header::CONTENT_ENCODING),
        ("cache", header::CACHE_CONTROL),
    ] {
        if let Some(value) = crate::parse::query_param(&query, key).and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    headers.insert(X_DEMO_NAME, ctx.state.name_header.clone());
    headers.insert(X_DEMO_HOSTNAME, ctx.state.hostname_header.clone());
    Ok(response)
}

async fn route(ctx: &Ctx, req: Request<Incoming>) -> Response<DemoBody> {
    if req.method() == hyper::Method::CONNECT {
        return connect_echo(req, &ctx.lifelines);
    }
    let state = &ctx.state;
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match path.as_str() {
        "/health" if state.healthy.load(Ordering::Relaxed) => text(StatusCode::OK, "ok\n"),
        "/health" => text(StatusCode::INTERNAL_SERVER_ERROR, "failing\n"),
        "/health/fail" => {
            state.healthy.store(false, Ordering::Relaxed);
            text(StatusCode::OK, "health is now failing\n")
        }
        "/health/ok" => {
            state.healthy.store(true, Ordering::Relaxed);
            text(StatusCode::OK, "health is now ok\n")
        }
        "/_demo/stats" => stats(state),
        "/_demo/ids" => {
            let ids: String = state.ids().iter().map(|id| format!("{id}\n")).collect();
            text(StatusCode::OK, ids)
        }
        "/slow" => match query_number(&query, "ms", None) {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                echo(ctx, req).await
            }
            Err(err) => bad_request(err),
        },
        "/bytes" => match query_number(&query, "n", None) {
            Ok(n) => pattern(n, DEFAULT_CHUNK, Ending::Sized),
            Err(err) => bad_request(err),
        },
        "/chunked" => match (
            query_number(&query, "n", None),
            query_number(&query, "chunk", Some(DEFAULT_CHUNK as u64)),
        ) {
            (Ok(n), Ok(chunk @ 1..)) if chunk <= MAX_CHUNK as u64 => pattern(n, chunk as usize, Ending::Streamed),
            (Err(err), _) | (_, Err(err)) => bad_request(err),
            _ => bad_request(format!("chunk must be between 1 and {MAX_CHUNK}")),
        },
        "/abort" => abort(&query),
        "/ws" => upgrade_echo(req, &ctx.lifelines),
        "/echo-body" => {
            let body = req.into_body().map_err(Into::into).boxed();
            let mut response = Response::new(body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        _ => match path.strip_prefix("/status/") {
            Some(code) => match parse_status(code) {
                Some(status) if status == StatusCode::NO_CONTENT => text(status, ""),
                Some(status) if status == StatusCode::NOT_MODIFIED => text(status, ""),
                Some(status) => text(status, format!("status {}\n", status.as_u16())),
                None => bad_request(format!("invalid status {code:?}: expected 200..=599")),
            },
            None => echo(ctx, req).await,
        },
    }
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<DemoBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn bad_request(message: String) -> Response<DemoBody> {
    text(StatusCode::BAD_REQUEST, format!("{message}\n"))
}

fn stats(state: &State) -> Response<DemoBody> {
    let json = format!(
        "{{\"requests\": {}, \"in_flight\": {}, \"name\": \"{}\", \"hostname\": \"{}\"}}\n",
        state.requests.load(Ordering::Relaxed),
        state.in_flight.load(Ordering::Relaxed),
        json_escape(&state.name),
        json_escape(&state.hostname),
    );
    let mut response = text(StatusCode::OK, json);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn pattern(len: u64, chunk: usize, ending: Ending) -> Response<DemoBody> {
    let mut response = Response::new(Pattern::new(len, chunk, ending).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `/abort?n=N[&chunked=1]`: promise 2N bytes (or a chunked body), send N,
/// then kill the connection.
fn abort(query: &str) -> Response<DemoBody> {
    let n = match query_number(query, "n", None) {
        Ok(n) => n,
        Err(err) => return bad_request(err),
    };
    let chunked = matches!(crate::parse::query_param(query, "chunked"), Some("1" | "true"));
    let mut response = pattern(n, DEFAULT_CHUNK, Ending::Abort);
    if !chunked {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n.saturating_mul(2)));
    }
    response
}

/// The whoami-style echo of the request.
async fn echo(ctx: &Ctx, req: Request<Incoming>) -> Response<DemoBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let host = parts
        .headers
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();

    let mut lines = vec![
        format!("Hostname: {}", ctx.state.hostname),
        format!("Name: {}", ctx.state.name),
        format!("RemoteAddr: {}", ctx.peer),
        format!("{} {} {:?}", parts.method, path, parts.version),
        format!("Host: {host}"),
    ];
    for (name, value) in parts.headers.iter().filter(|(n, _)| **n != header::HOST) {
        lines.push(format!(
            "{}: {}",
            canonical_header_name(name.as_str()),
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let mut text_body = lines.join("\n");
    text_body.push('\n');

    // Read (and discard) any request body, so that HTTP/1 keep-alive works.
    let mut body = body;
    while let Some(Ok(_)) = body.frame().await {}

    let mut response = text(StatusCode::OK, text_body);
    if let Ok(value) = HeaderValue::from_str(&path) {
        response.headers_mut().insert(X_DEMO_PATH, value);
    }
    response
}

/// `/ws`: accept any HTTP/1.1 `Upgrade` and echo raw bytes back.
fn upgrade_echo(mut req: Request<Incoming>, lifelines: &Lifelines) -> Response<DemoBody> {
    let Some(protocol) = req.headers().get(header::UPGRADE).cloned() else {
        return bad_request("/ws needs an Upgrade header".to_owned());
    };
    if req.version() != Version::HTTP_11 {
        return bad_request("/ws needs an HTTP/1.1 upgrade".to_owned());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Taken now, while this connection still holds its own lifeline, so the
    // server never sees zero open connections in between.
    let mut lifeline = lifelines.take();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        tokio::select! {
            _ = echo_bytes(TokioIo::new(upgraded)) => {}
            () = lifeline.stopping() => {}
        }
    });
    let mut response = Response::new(body::full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response
}

/// `CONNECT` (any target): answer `200` and echo the tunnel's raw bytes back,
/// like an egress proxy whose every destination is an echo server.
fn connect_echo(mut req: Request<Incoming>, lifelines: &Lifelines) -> Response<DemoBody> {
    if req.version() != Version::HTTP_11 {
        return bad_request("CONNECT needs HTTP/1.1".to_owned());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut lifeline = lifelines.take();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        tokio::select! {
            _ = echo_bytes(TokioIo::new(upgraded)) => {}
            () = lifeline.stopping() => {}
        }
    });
    Response::new(body::full(""))
}

async fn echo_bytes<IO>(mut io: IO) -> std::io::Result<()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return io.shutdown().await;
        }
        io.write_all(&buf[..n]).await?;
        io.flush().await?;
    }
}
