//! End-to-end tests: a real server on 127.0.0.1:0, spoken to over sockets.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use wharf_demo::Config;

const LIMIT: Duration = Duration::from_secs(5);

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(wharf_demo::run(listener, shutdown, config));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits for `run` to return; returns how long that took.
    async fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        self.begin_shutdown();
        timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server result");
        started.elapsed()
    }
}

fn config() -> Config {
    Config::new("demo-test", "test-host")
}

/// Sends raw bytes and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    timeout(LIMIT, async {
        let mut buf = [0u8; 4096];
        // A reset after an aborted body counts as the end as well.
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: demo.test\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Reads one response with a Content-Length body, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(LIMIT, async {
        loop {
            if let Some(end) = find(&data, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let len: usize = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&data[end + 4..end + 4 + len]);
                    return (head, body.into_owned());
                }
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed mid-response");
            data.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("response in time")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").expect("complete head")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn echo_reports_the_request() {
    let server = TestServer::start(config()).await;
    let response = exchange(
        server.addr,
        "GET /some/path?x=1&y=2 HTTP/1.1\r\nHost: demo.test\r\nX-Forwarded-For: 10.1.2.3\r\n\
         x-custom: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = split(&response);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(header(head, "x-demo-name"), Some("demo-test"));
    assert_eq!(header(head, "x-demo-hostname"), Some("test-host"));
    assert_eq!(header(head, "x-demo-path"), Some("/some/path?x=1&y=2"));
    assert_eq!(header(head, "content-type"), Some("text/plain"));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "Hostname: test-host");
    assert_eq!(lines[1], "Name: demo-test");
    assert!(lines[2].starts_with("RemoteAddr: 127.0.0.1:"), "{body}");
    assert_eq!(lines[3], "GET /some/path?x=1&y=2 HTTP/1.1");
    assert_eq!(lines[4], "Host: demo.test");
    assert_eq!(
        &lines[5..],
        ["X-Forwarded-For: 10.1.2.3", "X-Custom: a", "Connection: close"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let server = TestServer::start(config()).await;
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let request = Request::get(format!("http://{}/h2?q=1", server.addr))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-demo-path"], "/h2?q=1");
    let body = response.into_body().collect().await.expect("body").to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("GET /h2?q=1 HTTP/2.0\n"), "{body}");
    assert!(body.contains(&format!("Host: {}\n", server.addr)), "{body}");
    drop(sender);
    let _ = conn.await;
    server.shutdown().await;
}

#[tokio::test]
async fn status_endpoint() {
    let server = TestServer::start(config()).await;
    let response = get(server.addr, "/status/503").await;
    let (head, body) = split(&response);
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert_eq!(header(head, "x-demo-name"), Some("demo-test"));
    assert_eq!(body, "status 503\n");
    for invalid in ["/status/101", "/status/600", "/status/abc"] {
        let response = get(server.addr, invalid).await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{invalid}: {response}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn sized_and_chunked_bodies() {
    let server = TestServer::start(config()).await;
    let response = get(server.addr, "/bytes?n=10").await;
    let (head, body) = split(&response);
    assert_eq!(header(head, "content-length"), Some("10"));
    assert_eq!(body, "xxxxxxxxxx");

    let response = get(server.addr, "/chunked?n=7&chunk=3").await;
    let (head, body) = split(&response);
    assert_eq!(header(head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(head, "content-length"), None);
    assert_eq!(body, "3\r\nxxx\r\n3\r\nxxx\r\n1\r\nx\r\n0\r\n\r\n");

    assert!(get(server.addr, "/bytes").await.starts_with("HTTP/1.1 400 "));
    assert!(get(server.addr, "/chunked?n=1&chunk=0")
        .await
        .starts_with("HTTP/1.1 400 "));
    server.shutdown().await;
}

#[tokio::test]
async fn abort_closes_mid_body() {
    let server = TestServer::start(config()).await;
    let response = get(server.addr, "/abort?n=5").await;
    let (head, body) = split(&response);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(head, "content-length"), Some("10"));
    assert_eq!(body, "xxxxx");

    let response = get(server.addr, "/abort?n=5&chunked=1").await;
    let (head, body) = split(&response);
    assert_eq!(header(head, "transfer-encoding"), Some("chunked"));
    assert_eq!(body, "5\r\nxxxxx\r\n", "no terminating chunk");
    server.shutdown().await;
}

#[tokio::test]
async fn health_stats_and_ids() {
    let mut cfg = config();
    cfg.health_fail = true;
    let server = TestServer::start(cfg).await;
    assert!(get(server.addr, "/health").await.starts_with("HTTP/1.1 500 "));
    assert!(get(server.addr, "/health/ok").await.starts_with("HTTP/1.1 200 "));
    let response = get(server.addr, "/health").await;
    assert!(response.starts_with("HTTP/1.1 200 "));
    assert_eq!(split(&response).1, "ok\n");

    for id in ["post-1", "post-2"] {
        exchange(
            server.addr,
            &format!(
                "POST /orders HTTP/1.1\r\nHost: x\r\nx-demo-id: {id}\r\n\
                 Content-Length: 4\r\nConnection: close\r\n\r\nbody"
            ),
        )
        .await;
    }
    let response = get(server.addr, "/_demo/ids").await;
    assert_eq!(split(&response).1, "post-1\npost-2\n");

    let response = get(server.addr, "/_demo/stats").await;
    let (head, body) = split(&response);
    assert_eq!(header(head, "content-type"), Some("application/json"));
    // Counted: the two POSTs and /_demo/ids; not /health* nor the stats call.
    assert_eq!(
        body,
        "{\"requests\": 3, \"in_flight\": 0, \"name\": \"demo-test\", \"hostname\": \"test-host\"}\n"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_counts_slow_requests() {
    let server = TestServer::start(config()).await;
    let addr = server.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=400").await });
    sleep(Duration::from_millis(150)).await;
    let response = get(server.addr, "/_demo/stats").await;
    assert!(split(&response).1.contains("\"in_flight\": 1"), "{response}");
    let response = slow.await.expect("slow request");
    assert!(response.contains("GET /slow?ms=400 HTTP/1.1\n"), "{response}");
    server.shutdown().await;
}

#[tokio::test]
async fn echo_body_streams_back() {
    let server = TestServer::start(config()).await;
    let response = exchange(
        server.addr,
        "POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\
         Connection: close\r\n\r\nhello world",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert_eq!(split(&response).1, "hello world");
    server.shutdown().await;
}

#[tokio::test]
async fn connect_answers_200_and_echoes_the_tunnel() {
    let server = TestServer::start(config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"CONNECT anywhere.test:443 HTTP/1.1\r\nHost: anywhere.test:443\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    stream.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    timeout(LIMIT, stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&echoed, b"ping");
    server.shutdown().await;
    assert_eq!(read_to_close(&mut stream).await, "");
}

#[tokio::test]
async fn upgrade_echoes_bytes() {
    let server = TestServer::start(config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"));
    stream.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    timeout(LIMIT, stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&echoed, b"ping");

    assert!(get(server.addr, "/ws").await.starts_with("HTTP/1.1 400 "));
    // Shutdown closes the upgraded connection too.
    server.shutdown().await;
    assert_eq!(read_to_close(&mut stream).await, "");
}

#[tokio::test]
async fn keepalive_timeout_closes_idle_connections() {
    let mut cfg = config();
    cfg.keepalive_timeout = Some(Duration::from_millis(300));
    let server = TestServer::start(cfg).await;

    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..2 {
        stream
            .write_all(b"GET /ka HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    }
    let idle_since = Instant::now();
    assert_eq!(read_to_close(&mut stream).await, "");
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(250), "closed after {idle:?}");

    // A connection that never sends anything is closed as well.
    let mut fresh = TcpStream::connect(server.addr).await.expect("connect");
    assert_eq!(read_to_close(&mut fresh).await, "");
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_drains() {
    let mut cfg = config();
    cfg.drain_delay = Duration::from_millis(300);
    let mut server = TestServer::start(cfg).await;
    let addr = server.addr;

    // An idle keep-alive connection, to be closed by the shutdown.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /before HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut idle).await;

    // An in-flight request, to be completed by the shutdown.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /slow?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    sleep(Duration::from_millis(50)).await;

    server.begin_shutdown();
    // During the drain delay new connections are still served.
    sleep(Duration::from_millis(100)).await;
    assert!(get(addr, "/during-drain").await.starts_with("HTTP/1.1 200 "));

    let elapsed = server.shutdown().await;
    assert!(elapsed < Duration::from_secs(3), "drain took {elapsed:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");

    let response = read_to_close(&mut slow).await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.contains("GET /slow?ms=600 HTTP/1.1\n"), "{response}");
    assert_eq!(header(split(&response).0, "connection"), Some("close"));
    assert_eq!(read_to_close(&mut idle).await, "");
}

#[tokio::test]
async fn delay_slows_every_request_but_health_and_stats() {
    let mut cfg = config();
    cfg.delay = Duration::from_millis(300);
    let server = TestServer::start(cfg).await;
    let started = Instant::now();
    let response = get(server.addr, "/").await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(get(server.addr, "/health").await.starts_with("HTTP/1.1 200 "));
    assert!(get(server.addr, "/_demo/stats").await.starts_with("HTTP/1.1 200 "));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}
