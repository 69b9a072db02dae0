//! Tiny backends the tests control, each on its own `127.0.0.1:0` listener.
//!
//! The HTTP ones here are hyper servers that log every request they receive
//! ([`Seen`]) and answer through a handler; the raw ones ([`super::raw`])
//! misbehave at the TCP level. Each counts the connections it accepted and
//! still holds, so a test sees wharf open, reuse and close upstream
//! connections. The accept task
//! owns every connection: [`Upstream::stop`] (or dropping the [`Upstream`])
//! closes the listener and all of them.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
type Handler = Arc<dyn Fn(&Seen) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// One request as a backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// Path and query.
    pub fn target(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// A header as text, `None` when absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a backend saw: requests and connections.
#[derive(Debug, Default)]
pub struct Log {
    seen: Mutex<Vec<Seen>>,
    accepted: AtomicUsize,
    open: AtomicUsize,
}

impl Log {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend received no request")
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections accepted and not yet closed.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub(super) fn record(&self, s: Seen) {
        self.seen.lock().unwrap().push(s);
    }
}

/// Counts a connection as open until dropped (with its task).
struct OpenConn(Arc<Log>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running backend.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Stop listening and close every connection held (new connects are refused).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accept connections and run `conn` on each, inside one task that owns them all.
pub(super) async fn spawn<F, Fut>(conn: F) -> Upstream
where
    F: Fn(TcpStream, Arc<Log>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a backend");
    spawn_on(listener, conn)
}

/// [`spawn`] on a listener the test made (e.g. late, on a port that refused until then).
pub(super) fn spawn_on<F, Fut>(listener: TcpListener, conn: F) -> Upstream
where
    F: Fn(TcpStream, Arc<Log>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("backend address");
    let log = Arc::new(Log::default());
    let task = tokio::spawn({
        let log = Arc::clone(&log);
        async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        log.accepted.fetch_add(1, Ordering::SeqCst);
                        log.open.fetch_add(1, Ordering::SeqCst);
                        let open = OpenConn(Arc::clone(&log));
                        let fut = conn(stream, Arc::clone(&log));
                        conns.spawn(async move {
                            let _open = open;
                            fut.await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }
    });
    Upstream { addr, log, task }
}

/// A hyper server (HTTP/1.1, or HTTP/2 prior knowledge with `h2`) that logs
/// each request with its whole body, then answers through `handler`.
async fn http(h2: bool, handler: Handler) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a backend");
    http_on(listener, h2, handler)
}

/// [`http`] on a listener the test made.
fn http_on(listener: TcpListener, h2: bool, handler: Handler) -> Upstream {
    spawn_on(listener, move |stream, log| {
        let handler = Arc::clone(&handler);
        async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let seen = Seen {
                        method: parts.method,
                        uri: parts.uri,
                        version: parts.version,
                        headers: parts.headers,
                        body,
                    };
                    log.record(seen.clone());
                    Ok::<_, Infallible>(handler(&seen).await)
                }
            });
            let io = TokioIo::new(stream);
            if h2 {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            }
        }
    })
}

pub fn full(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *r.status_mut() = status;
    r
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Empty::new().boxed_unsync());
    *r.status_mut() = status;
    r
}

/// Answers every request `200` with its name as the body.
pub async fn named(name: &'static str) -> Upstream {
    answering(move |_: &Seen| full(StatusCode::OK, name)).await
}

/// [`named`] on a listener the test made.
pub fn named_on(listener: TcpListener, name: &'static str) -> Upstream {
    http_on(
        listener,
        false,
        Arc::new(move |_: &Seen| async move { full(StatusCode::OK, name) }.boxed()),
    )
}

/// [`named`] over HTTP/2 cleartext (prior knowledge), as an h2c pool expects.
pub async fn named_h2(name: &'static str) -> Upstream {
    http(
        true,
        Arc::new(move |_: &Seen| async move { full(StatusCode::OK, name) }.boxed()),
    )
    .await
}

/// Answers each request with `f(request)`.
pub async fn answering(f: impl Fn(&Seen) -> Response<Body> + Send + Sync + 'static) -> Upstream {
    http(
        false,
        Arc::new(move |s: &Seen| {
            let r = f(s);
            async move { r }.boxed()
        }),
    )
    .await
}

/// Reads each request, then waits `delay` before answering `200` with its name.
pub async fn delayed(name: &'static str, delay: Duration) -> Upstream {
    http(
        false,
        Arc::new(move |_: &Seen| {
            async move {
                tokio::time::sleep(delay).await;
                full(StatusCode::OK, name)
            }
            .boxed()
        }),
    )
    .await
}

/// Waits as many milliseconds as its path says (`/250`; `/` at once), then
/// answers `200` with its name.
pub async fn waiting_per_path(name: &'static str) -> Upstream {
    http(
        false,
        Arc::new(move |s: &Seen| {
            let ms = s.uri.path().trim_start_matches('/').parse().unwrap_or(0);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                full(StatusCode::OK, name)
            }
            .boxed()
        }),
    )
    .await
}

/// Answers `200` at once with a chunked body the test writes: for each
/// request the returned receiver yields a sender; each `Bytes` sent is one
/// chunk, and dropping the sender ends the body.
pub async fn streaming() -> (Upstream, mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>) {
    let (bodies_tx, bodies_rx) = mpsc::unbounded_channel();
    let up = http(
        false,
        Arc::new(move |_: &Seen| {
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            let _ = bodies_tx.send(tx);
            let chunks = futures::stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
            });
            async move { Response::new(StreamBody::new(chunks).boxed_unsync()) }.boxed()
        }),
    )
    .await;
    (up, bodies_rx)
}

/// Answers `101 Switching Protocols` to any request and echoes every byte
/// of the upgraded connection back until the other side closes.
pub async fn upgrade_echo() -> Upstream {
    spawn(|stream, log| async move {
        let svc = service_fn(move |mut req: Request<Incoming>| {
            let log = Arc::clone(&log);
            async move {
                log.record(Seen {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    version: req.version(),
                    headers: req.headers().clone(),
                    body: Bytes::new(),
                });
                let protocol = req.headers().get(http::header::UPGRADE).cloned();
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let Ok(upgraded) = on.await else { return };
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
                let mut resp = empty(StatusCode::SWITCHING_PROTOCOLS);
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
                if let Some(p) = protocol {
                    resp.headers_mut().insert(http::header::UPGRADE, p);
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let _ = conn.with_upgrades().await;
    })
    .await
}

/// Answers `101 Switching Protocols`, writes `last` into the upgraded
/// connection and closes it at once, without waiting for the other side.
pub async fn upgrade_then_close(last: &'static [u8]) -> Upstream {
    spawn(move |stream, _log| async move {
        let svc = service_fn(move |mut req: Request<Incoming>| async move {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on.await else { return };
                let mut io = TokioIo::new(upgraded);
                let _ = io.write_all(last).await;
                let _ = io.shutdown().await;
            });
            let mut resp = empty(StatusCode::SWITCHING_PROTOCOLS);
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
            resp.headers_mut()
                .insert(http::header::UPGRADE, HeaderValue::from_static("echo"));
            Ok::<_, Infallible>(resp)
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let _ = conn.with_upgrades().await;
    })
    .await
}

/// An egress-proxy-like backend: answers `CONNECT` with `200` and echoes
/// every byte of the tunnel back until the other side closes; any other
/// request gets `200 plain`.
pub async fn connect_echo() -> Upstream {
    spawn(|stream, log| async move {
        let svc = service_fn(move |mut req: Request<Incoming>| {
            let log = Arc::clone(&log);
            async move {
                log.record(Seen {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    version: req.version(),
                    headers: req.headers().clone(),
                    body: Bytes::new(),
                });
                if req.method() != Method::CONNECT {
                    return Ok::<_, Infallible>(full(StatusCode::OK, "plain"));
                }
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let Ok(upgraded) = on.await else { return };
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
                Ok(empty(StatusCode::OK))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let _ = conn.with_upgrades().await;
    })
    .await
}
