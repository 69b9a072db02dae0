//! `CONNECT` ([`crate::proxy::connect`]): refused with 405 unless the pool
//! opts in with `wharf.connect`; then tunnelled to a backend, and bounded
//! like any tunnel.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backends;
use super::client::{eventually, read_head};
use super::fixture::{desired, pool, timeouts, Wharf};
use crate::model::{HostPattern, PoolOptions};

fn for_host(host: &str, connect: bool) -> PoolOptions {
    PoolOptions {
        hosts: vec![HostPattern::Exact(host.into())],
        connect,
        ..PoolOptions::default()
    }
}

/// Send `CONNECT target` on a new connection; the response head and the socket.
async fn connect(wharf: &Wharf, target: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(wharf.addr).await.expect("connect to wharf");
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("write CONNECT");
    let (head, rest) = read_head(&mut s).await;
    if head.starts_with("HTTP/1.1 200") {
        assert!(rest.is_empty(), "bytes after a 2xx to CONNECT: {rest:?}");
    }
    (head, s)
}

#[tokio::test]
async fn connect_is_refused_405_without_wharf_connect_and_tunnelled_to_the_backend_with_it() {
    let up = backends::connect_echo().await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([
        pool("closed", for_host("closed.test", false), &[up.addr]),
        pool("open", for_host("open.test", true), &[up.addr]),
    ]));

    let (head, _) = connect(&wharf, "closed.test:443").await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(head.contains("x-wharf-error: method-not-allowed"), "{head}");
    assert_eq!(up.log.count(), 0, "a refused CONNECT reaches no backend");

    let (head, mut s) = connect(&wharf, "open.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = up.log.last();
    assert_eq!(seen.method, Method::CONNECT);
    assert_eq!(
        seen.uri.to_string(),
        "open.test:443",
        "the authority-form target, as sent"
    );
    assert_eq!(seen.header("host"), Some("open.test:443"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    for msg in [&b"ping"[..], b"any bytes at all \x00\xff"] {
        s.write_all(msg).await.expect("write into the tunnel");
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.expect("the echo");
        assert_eq!(got, msg);
    }
    let shared = wharf.shared("open", up.addr);
    assert_eq!(wharf.proxy.tunnels.open(), 1);
    assert_eq!(shared.in_flight.load(SeqCst), 1, "the tunnel holds its backend's slot");
    assert_eq!(shared.tunnels.load(SeqCst), 1, "and counts as its open tunnel");
    drop(s);
    eventually("the tunnel closes with the client", || wharf.proxy.tunnels.open() == 0).await;
    assert_eq!(shared.tunnels.load(SeqCst), 0);
    wharf.settled().await;
}

#[tokio::test]
async fn a_silent_connect_tunnel_is_closed_at_the_tunnel_idle_timeout() {
    let up = backends::connect_echo().await;
    let mut t = timeouts();
    t.tunnel_idle = Duration::from_millis(300);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.publish(desired([pool("open", for_host("open.test", true), &[up.addr])]));
    let (head, mut s) = connect(&wharf, "open.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let start = Instant::now();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
        .await
        .expect("closed within 10 s")
        .unwrap_or(0);
    let took = start.elapsed();
    println!("silent CONNECT tunnel closed after {took:?}");
    assert_eq!(n, 0, "closed, not data");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(wharf.proxy.tunnels.closed_by_wharf.load(SeqCst), 1);
    wharf.settled().await;
}

#[tokio::test]
async fn an_ordinary_request_to_a_connect_pool_is_proxied_as_usual() {
    let up = backends::connect_echo().await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([pool("open", for_host("open.test", true), &[up.addr])]));
    let r = super::client::send(
        wharf.addr,
        super::client::request_to("open.test", Method::GET, "/x")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "plain"));
    wharf.settled().await;
}
