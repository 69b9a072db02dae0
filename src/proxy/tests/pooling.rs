//! The upstream connections the proxy owns ([`crate::proxy::upstream`]):
//! not reused for a draining backend, and closed by [`Proxy::maintain`]
//! when their backend leaves the table, starts draining, or sits idle too long.
//!
//! [`Proxy::maintain`]: crate::proxy::Proxy::maintain

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};

use super::backends;
use super::client::{self, request};
use super::fixture::{desired, maintain, pool, timeouts, Wharf};
use crate::model::{BackendStatus, PoolOptions};

#[tokio::test]
async fn a_response_that_ends_after_its_backend_started_draining_does_not_return_the_connection() {
    let (a, mut bodies) = backends::streaming().await;
    let wharf = Wharf::start().await;
    let (name, mut web) = pool("web", PoolOptions::default(), &[a.addr]);
    wharf.publish(desired([(name.clone(), web.clone())]));
    let shared = wharf.shared("web", a.addr);

    let resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
    let chunks = bodies.recv().await.expect("the backend got the request");
    web.backends[0].status = BackendStatus::Draining;
    wharf.publish(desired([(name, web)]));
    assert!(shared.draining.load(SeqCst), "same backend, now draining");

    chunks.send(Bytes::from_static(b"last words")).await.unwrap();
    drop(chunks);
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the body ends cleanly")
        .to_bytes();
    assert_eq!(&body[..], b"last words", "in-flight requests finish");
    client::eventually("slot released", || shared.in_flight.load(SeqCst) == 0).await;
    assert_eq!(wharf.idle(&shared), 0, "a draining backend's connection is not kept");
    client::eventually("the connection to the draining backend closed", || a.log.open() == 0).await;
}

/// Requests to `a` then `b` (round robin) leave one idle connection each.
async fn two_idle_connections() -> (Wharf, backends::Upstream, backends::Upstream) {
    let a = backends::named("a").await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr, b.addr]);
    assert_eq!(client::get(wharf.addr, "/").await.body, "a");
    assert_eq!(client::get(wharf.addr, "/").await.body, "b");
    wharf.settled().await;
    (wharf, a, b)
}

#[tokio::test]
async fn maintain_closes_the_connections_of_a_backend_that_left_the_table_and_keeps_the_others() {
    let (wharf, a, b) = two_idle_connections().await;
    let (sa, sb) = (wharf.shared("web", a.addr), wharf.shared("web", b.addr));
    assert_eq!((wharf.idle(&sa), wharf.idle(&sb)), (1, 1));
    let _maintain = maintain(&wharf);

    wharf.publish(desired([pool("web", PoolOptions::default(), &[b.addr])]));
    let took = client::eventually("a's idle connection dropped", || wharf.idle(&sa) == 0).await;
    println!("closed {took:?} after the swap");
    client::eventually("a saw its connection closed", || a.log.open() == 0).await;
    assert_eq!(wharf.idle(&sb), 1, "b is still in the table");
    assert_eq!(b.log.open(), 1);
}

#[tokio::test]
async fn maintain_closes_the_connections_of_a_backend_that_starts_draining() {
    let (wharf, a, b) = two_idle_connections().await;
    let (sa, sb) = (wharf.shared("web", a.addr), wharf.shared("web", b.addr));
    let _maintain = maintain(&wharf);

    let (name, mut web) = pool("web", PoolOptions::default(), &[a.addr, b.addr]);
    web.backends[0].status = BackendStatus::Draining;
    wharf.publish(desired([(name, web)]));
    client::eventually("a's idle connection dropped", || wharf.idle(&sa) == 0).await;
    client::eventually("a saw its connection closed", || a.log.open() == 0).await;
    assert_eq!(wharf.idle(&sb), 1);
}

#[tokio::test]
async fn maintain_closes_a_connection_idle_for_longer_than_the_upstream_idle_timeout() {
    let a = backends::named("a").await;
    let mut t = timeouts();
    t.upstream_idle = Duration::from_millis(150);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);
    let _maintain = maintain(&wharf);

    // Measured from before the request: the connection cannot go idle earlier.
    let idle_since = Instant::now();
    assert_eq!(client::get(wharf.addr, "/").await.body, "a");
    wharf.settled().await;
    client::eventually("idle connection closed", || a.log.open() == 0).await;
    let took = idle_since.elapsed();
    println!("closed after {took:?} idle (timeout 150ms)");
    assert!(took >= Duration::from_millis(150), "closed too early: {took:?}");
    assert_eq!(wharf.idle(&shared), 0);
}

#[tokio::test]
async fn maintain_closes_the_shared_http2_connection_of_a_backend_that_left_the_table() {
    let a = backends::named_h2("a").await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    let h2c = PoolOptions {
        protocol: crate::model::Protocol::H2c,
        ..PoolOptions::default()
    };
    wharf.publish(desired([pool("web", h2c.clone(), &[a.addr])]));
    let _maintain = maintain(&wharf);
    assert_eq!(client::get(wharf.addr, "/").await.body, "a");
    wharf.settled().await;
    assert_eq!(a.log.open(), 1, "the shared connection stays open");

    wharf.publish(desired([pool("web", h2c, &[b.addr])]));
    let took = client::eventually("a's HTTP/2 connection closed", || a.log.open() == 0).await;
    println!("closed {took:?} after the swap");
}

/// The request timeout's timer stays with its upstream connection
/// (`upstream::Pooled`) and is moved to each request's own deadline.
#[tokio::test]
async fn a_reused_connection_times_each_request_from_its_own_start_even_after_idling_past_a_deadline() {
    let b = backends::waiting_per_path("b").await;
    let mut t = timeouts();
    t.request = Duration::from_millis(800);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[b.addr]);
    let shared = wharf.shared("web", b.addr);

    assert_eq!(client::get(wharf.addr, "/").await.body, "b");
    client::eventually("the connection back in the pool", || wharf.idle(&shared) == 1).await;
    // Idle past the first request's deadline: its timer fires in the pool.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Three answers of 400 ms each on that connection: 1.2 s in all, each
    // within its own 800 ms.
    for _ in 0..3 {
        let r = client::get(wharf.addr, "/400").await;
        assert_eq!((r.status, r.body.as_str()), (http::StatusCode::OK, "b"), "{}", r.body);
        client::eventually("the connection back in the pool", || wharf.idle(&shared) == 1).await;
    }
    assert_eq!(b.log.accepted(), 1, "one upstream connection served them all");

    let start = Instant::now();
    let r = client::get(wharf.addr, "/3600000").await;
    let took = start.elapsed();
    println!("504 after {took:?} on the reused connection");
    assert_eq!(r.status, http::StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(b.log.accepted(), 1, "the stalled request went over the same connection");
    assert_eq!(wharf.proxy.stats.timeouts.load(SeqCst), 1);
}
