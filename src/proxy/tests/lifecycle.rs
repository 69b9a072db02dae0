//! The listener's life ([`crate::server::serve`]) and the whole wiring
//! ([`crate::app::run`]) in-process: bound by the test on `127.0.0.1:0`,
//! fed by a provider the test drives, stopped by a future the test resolves.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser as _;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::backends;
use super::client::{self, request};
use super::fixture::{desired, pool, timeouts, Wharf};
use crate::app::{self, Listeners};
use crate::config::Cli;
use crate::model::{Desired, PoolOptions};
use crate::provider::{Provider, Publisher};

async fn refuses(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_lets_an_in_flight_response_finish() {
    let (a, mut bodies) = backends::streaming().await;
    let mut wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
    let chunks = bodies.recv().await.expect("the backend got the request");
    chunks.send(Bytes::from_static(b"before,")).await.unwrap();

    let served = wharf.shut_down();
    client::eventually_async("new connections refused", || refuses(wharf.addr)).await;
    assert!(!served.is_finished(), "still draining the in-flight response");
    chunks.send(Bytes::from_static(b"after")).await.unwrap();
    drop(chunks);
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the response finished")
        .to_bytes();
    assert_eq!(&body[..], b"before,after");
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve returned once drained")
        .unwrap();
    println!("serve returned {:?} after the last response ended", start.elapsed());
}

#[tokio::test]
async fn serve_returns_after_the_drain_timeout_when_a_response_never_ends() {
    let (a, mut bodies) = backends::streaming().await;
    let mut t = timeouts();
    t.drain = Duration::from_millis(300);
    let mut wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let _resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
    let _chunks = bodies.recv().await.expect("the backend got the request");

    let start = Instant::now();
    let served = wharf.shut_down();
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve gave up draining")
        .unwrap();
    let took = start.elapsed();
    println!("serve returned after {took:?} (drain timeout 300ms)");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

#[tokio::test]
async fn a_client_that_stops_mid_head_is_disconnected_after_the_idle_timeout() {
    let (_wharf, mut c) = connected_with_client_idle(Duration::from_millis(300)).await;
    let start = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    let took = start.elapsed();
    println!("disconnected after {took:?} (idle timeout 300ms)");
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    assert!(buf.is_empty(), "no response: {buf:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

/// Send one keep-alive request on `c` and read its whole response (wharf
/// answers it itself: no route).
async fn one_keep_alive_request(c: &mut TcpStream) {
    let response = keep_alive_request(c).await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

/// Send `GET /` on `c` and read its whole response (with a `Content-Length`).
async fn keep_alive_request(c: &mut TcpStream) -> String {
    c.write_all(b"GET / HTTP/1.1\r\nhost: nowhere.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_end = loop {
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the response ended: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        if let Some(head) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a content-length");
            break head + 4 + len;
        }
    };
    while buf.len() < body_end {
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the body ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn the_idle_timeout_still_applies_after_requests_even_after_one_slower_than_it() {
    // hyper's header-read timer is kept from one request to the next (the
    // vendored patch, change 5): it must fire on the next silence, and a
    // request that outlives it must not be cut off by it.
    let mut t = timeouts();
    t.client_idle = Duration::from_millis(1000);
    let wharf = Wharf::with_timeouts(t).await;
    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    // Pauses shorter than the timeout, twice: each request must push the
    // kept timer's deadline on (a stale one would cut the third request).
    one_keep_alive_request(&mut c).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        one_keep_alive_request(&mut c).await;
    }
    let slow = backends::delayed("slow", Duration::from_millis(1300)).await;
    wharf.serve(PoolOptions::default(), &[slow.addr]);
    let start = Instant::now();
    let response = keep_alive_request(&mut c).await;
    println!("the slow response came after {:?}", start.elapsed());
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("slow"), "{response}");
    let response = keep_alive_request(&mut c).await;
    assert!(response.starts_with("HTTP/1.1 200"), "still open after it: {response}");

    c.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n").await.unwrap();
    let took = closed_within(&mut c).await;
    println!("disconnected {took:?} after stopping mid-head (idle timeout 1s)");
    // The timer started when the last response was written, a little
    // before `took` did.
    assert!(took >= Duration::from_millis(600), "{took:?}");
}

#[tokio::test]
async fn a_head_sent_in_pieces_is_still_given_up_at_the_header_timeout() {
    // hyper's header-read timer is armed only once a head has to be waited
    // for (the vendored patch, change 17): a client that trickles its first
    // head a byte at a time must still be cut off at the timeout, counted
    // from its first bytes, however often it sends.
    let (_wharf, mut c) = connected_with_client_idle(Duration::from_millis(1000)).await;
    let start = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\nx-slow: ")
        .await
        .unwrap();
    let (mut r, mut w) = c.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if w.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    let mut rest = Vec::new();
    let closed = tokio::select! {
        read = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut rest)) => read,
        _ = trickle => Ok(Ok(0)),
    };
    let took = start.elapsed();
    println!("disconnected {took:?} after the first bytes of a head sent a byte per 100 ms (timeout 1s)");
    // Closed (an end of stream or a reset, either way), within 10 s.
    assert!(closed.is_ok(), "not closed within 10 s");
    println!("the read ended with {closed:?}");
    assert!(rest.is_empty(), "no response: {rest:?}");
    assert!(
        took >= Duration::from_millis(900),
        "closed before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "the trickle kept it open: {took:?}");
}

/// wharf with its client idle (header-read) timeout set to `idle`, and a
/// client connected to it.
async fn connected_with_client_idle(idle: Duration) -> (Wharf, TcpStream) {
    let mut t = timeouts();
    t.client_idle = idle;
    let wharf = Wharf::with_timeouts(t).await;
    let c = TcpStream::connect(wharf.addr).await.unwrap();
    (wharf, c)
}

/// How long until the server closes `c` (read to the end); panics past 10 s.
async fn closed_within(c: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
    start.elapsed()
}

#[tokio::test]
async fn at_shutdown_a_silent_connection_and_an_idle_keep_alive_one_are_closed_at_once() {
    // client_idle is 30 s: a close well before it is the shutdown's doing.
    let mut wharf = Wharf::start().await;
    let mut silent = TcpStream::connect(wharf.addr).await.unwrap();
    let mut idle = TcpStream::connect(wharf.addr).await.unwrap();
    one_keep_alive_request(&mut idle).await;
    let served = wharf.shut_down();
    let (s, i) = (closed_within(&mut silent).await, closed_within(&mut idle).await);
    println!("closed after shutdown: silent {s:?}, idle keep-alive {i:?}");
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve returned once drained")
        .unwrap();
}

#[tokio::test]
async fn an_aborted_server_task_still_closes_its_open_connections() {
    let wharf = Wharf::start().await;
    let mut silent = TcpStream::connect(wharf.addr).await.unwrap();
    let mut idle = TcpStream::connect(wharf.addr).await.unwrap();
    one_keep_alive_request(&mut idle).await;
    drop(wharf); // aborts the task running `server::serve`
    let (s, i) = (closed_within(&mut silent).await, closed_within(&mut idle).await);
    println!("closed after the abort: silent {s:?}, idle keep-alive {i:?}");
}

/// A provider that publishes each desired state the test sends it.
struct Given(mpsc::UnboundedReceiver<Desired>);

impl Provider for Given {
    fn run(self: Box<Self>, out: Publisher) -> BoxFuture<'static, ()> {
        let mut states = self.0;
        async move {
            out.status(|s| s.provider = "test".into());
            while let Some(d) = states.recv().await {
                out.publish(d);
                out.synced();
            }
            futures::future::pending::<()>().await
        }
        .boxed()
    }
}

async fn status(addr: std::net::SocketAddr, path: &str) -> StatusCode {
    client::get(addr, path).await.status
}

#[tokio::test]
async fn app_run_serves_on_listeners_bound_by_the_caller_with_two_workers_and_returns_when_shutdown_resolves() {
    let a = backends::named("a").await;
    let b = backends::named("b").await;
    let public = crate::listen::reuseport("127.0.0.1:0".parse().unwrap(), 2, 0).unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, admin_addr) = (public[0].local_addr().unwrap(), admin.local_addr().unwrap());
    let cfg = Cli::try_parse_from(["wharf", "--drain-timeout", "2s"])
        .unwrap()
        .opts
        .into_config()
        .unwrap();
    let (states, given) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(app::run(
        cfg,
        Listeners {
            public,
            admin,
            tls: Vec::new(),
        },
        Box::new(Given(given)),
        async move {
            let _ = stopped.await;
        },
    ));

    assert_eq!(status(admin_addr, "/healthz").await, StatusCode::OK);
    assert_eq!(status(admin_addr, "/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        status(public_addr, "/").await,
        StatusCode::NOT_FOUND,
        "nothing published yet"
    );
    states
        .send(desired([pool("web", PoolOptions::default(), &[a.addr])]))
        .unwrap();
    client::eventually_async("ready after the first sync", move || async move {
        status(admin_addr, "/readyz").await == StatusCode::OK
    })
    .await;
    assert_eq!(client::get(public_addr, "/").await.body, "a");
    states
        .send(desired([pool("web", PoolOptions::default(), &[b.addr])]))
        .unwrap();
    client::eventually_async("the new state is routed", move || async move {
        client::get(public_addr, "/").await.body == "b"
    })
    .await;

    let start = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returned after shutdown")
        .unwrap()
        .unwrap();
    println!("run returned {:?} after shutdown", start.elapsed());
    assert!(refuses(public_addr).await, "public listener closed");
    assert!(refuses(admin_addr).await, "admin listener closed");
}
