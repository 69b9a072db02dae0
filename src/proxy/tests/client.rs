//! Test clients: hyper's HTTP/1.1 and HTTP/2 client connections, one fresh
//! connection per request, and raw sockets for byte-level control.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The `Host` every request carries unless a test sets its own.
pub const HOST: &str = "app.test";

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `x-wharf-error` header, `None` when absent.
    pub fn wharf_error(&self) -> Option<&str> {
        self.headers.get("x-wharf-error").and_then(|v| v.to_str().ok())
    }
}

/// A request builder with `Host: app.test`.
pub fn request(method: Method, path: &str) -> http::request::Builder {
    request_to(HOST, method, path)
}

/// A request builder with this `Host`.
pub fn request_to(host: &str, method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
}

/// Send `req` on a new HTTP/1.1 connection and return the response head;
/// its body streams as the test reads it.
pub async fn open(addr: SocketAddr, req: Request<Full<Bytes>>) -> http::Response<Incoming> {
    try_open(addr, req).await.expect("response headers from wharf")
}

/// [`open`], for a test where the response head may not come.
pub async fn try_open(addr: SocketAddr, req: Request<Full<Bytes>>) -> hyper::Result<http::Response<Incoming>> {
    let stream = TcpStream::connect(addr).await.expect("connect to wharf");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("client handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// Send `req` on a new HTTP/1.1 connection and read the whole response.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    read(open(addr, req).await).await
}

/// Read a response's body to its end.
pub async fn read(resp: http::Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, request(Method::GET, path).body(Full::default()).unwrap()).await
}

pub async fn post(addr: SocketAddr, path: &str, body: &'static str) -> Reply {
    let req = request(Method::POST, path).body(Full::new(Bytes::from_static(body.as_bytes())));
    send(addr, req.unwrap()).await
}

/// Send `req` over HTTP/2 with prior knowledge (h2c) on a new connection.
pub async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect to wharf");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    read(sender.send_request(req).await.expect("h2 response")).await
}

/// Read a response head from a raw socket: the head as text and whatever
/// followed it in the same reads.
pub async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read a response head");
        assert!(n > 0, "connection closed before a response head; got {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Poll `cond` every few milliseconds until it holds, failing after a
/// generous deadline (a busy 2-core machine); returns how long it took.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    let deadline = Duration::from_secs(10);
    while !cond() {
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// [`eventually`] for a condition that must do I/O to be checked.
pub async fn eventually_async<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) -> Duration {
    let start = Instant::now();
    let deadline = Duration::from_secs(10);
    while !cond().await {
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}
