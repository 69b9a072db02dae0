//! The in-flight guard ([`crate::proxy::body::Guard`]): a request holds
//! its backend's slot until the response body ends, the client goes, the
//! tunnel closes or the attempt fails — and only a clean end gives the
//! upstream connection back to the pool.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backends::{self, Seen};
use super::client::{self, request};
use super::fixture::{at_path, desired, pool, timeouts, Wharf};
use super::raw;
use crate::model::PoolOptions;

#[tokio::test]
async fn a_finished_body_releases_the_slot_and_the_connection_is_reused() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);

    assert_eq!(client::get(wharf.addr, "/").await.body, "a");
    wharf.settled().await;
    assert_eq!(wharf.idle(&shared), 1, "returned to the pool");
    assert_eq!(client::get(wharf.addr, "/").await.body, "a");
    assert_eq!(
        (a.log.count(), a.log.accepted()),
        (2, 1),
        "two requests, one connection"
    );
    assert_eq!(shared.requests.load(SeqCst), 2);
    wharf.settled().await;
}

#[tokio::test]
async fn a_streamed_body_holds_the_slot_until_its_last_chunk() {
    let (a, mut bodies) = backends::streaming().await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);

    let resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
    let chunks = bodies.recv().await.expect("the backend got the request");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    chunks.send(Bytes::from_static(b"one,")).await.unwrap();
    let first = body.frame().await.expect("a frame").expect("no error");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"one,"[..]));
    assert_eq!(shared.in_flight.load(SeqCst), 1, "mid-body");
    assert_eq!(wharf.idle(&shared), 0, "not pooled mid-body");

    chunks.send(Bytes::from_static(b"two")).await.unwrap();
    drop(chunks);
    let rest = body.collect().await.expect("the rest").to_bytes();
    assert_eq!(&rest[..], b"two");
    wharf.settled().await;
    assert_eq!(wharf.idle(&shared), 1, "a clean end returns the connection");
}

#[tokio::test]
async fn a_client_gone_mid_body_releases_the_slot_and_the_upstream_connection_is_closed() {
    let (a, mut bodies) = backends::streaming().await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);

    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n").await.unwrap();
    let chunks = bodies.recv().await.expect("the backend got the request");
    chunks.send(Bytes::from_static(b"partial")).await.unwrap();
    let (head, _) = client::read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(shared.in_flight.load(SeqCst), 1);

    drop(c);
    let took = client::eventually("slot released after the client left", || {
        shared.in_flight.load(SeqCst) == 0
    })
    .await;
    println!("released {took:?} after the client closed");
    client::eventually("upstream connection closed", || a.log.open() == 0).await;
    assert_eq!(wharf.idle(&shared), 0);
    drop(chunks);
}

#[tokio::test]
async fn a_client_gone_before_the_answer_cancels_the_attempt_and_releases_the_slot() {
    let slow = backends::delayed("slow", Duration::from_secs(3600)).await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[slow.addr]);
    let shared = wharf.shared("web", slow.addr);

    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n").await.unwrap();
    client::eventually("the backend got the request", || slow.log.count() == 1).await;
    assert_eq!(shared.in_flight.load(SeqCst), 1);

    drop(c);
    client::eventually("slot released after the client left", || {
        shared.in_flight.load(SeqCst) == 0
    })
    .await;
    client::eventually("upstream connection closed", || slow.log.open() == 0).await;
    assert_eq!(wharf.idle(&shared), 0);
}

#[tokio::test]
async fn an_upgrade_tunnel_holds_the_slot_until_it_closes_and_its_connection_is_never_pooled() {
    let echo = backends::upgrade_echo().await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[echo.addr]);
    let shared = wharf.shared("web", echo.addr);

    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: app.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let (head, rest) = client::read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(rest.is_empty());
    let seen = echo.log.last();
    assert_eq!(seen.header("upgrade"), Some("echo"));
    assert_eq!(seen.header("connection"), Some("upgrade"));

    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping", "echoed through the tunnel");
    assert_eq!(shared.in_flight.load(SeqCst), 1, "the open tunnel holds the slot");

    drop(c);
    client::eventually("slot released when the tunnel closed", || {
        shared.in_flight.load(SeqCst) == 0
    })
    .await;
    client::eventually("backend side of the tunnel closed", || echo.log.open() == 0).await;
    assert_eq!(wharf.idle(&shared), 0);
}

#[tokio::test]
async fn no_content_not_modified_and_head_answers_release_the_slot_and_keep_the_connection() {
    let a = backends::answering(|s: &Seen| match s.target() {
        "/204" => backends::empty(StatusCode::NO_CONTENT),
        "/304" => backends::empty(StatusCode::NOT_MODIFIED),
        _ => backends::full(StatusCode::OK, "a body HEAD must not carry"),
    })
    .await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);

    for (method, path, status) in [
        (Method::GET, "/204", StatusCode::NO_CONTENT),
        (Method::GET, "/304", StatusCode::NOT_MODIFIED),
        (Method::HEAD, "/", StatusCode::OK),
    ] {
        let r = client::send(wharf.addr, request(method.clone(), path).body(Full::default()).unwrap()).await;
        assert_eq!((r.status, r.body.as_str()), (status, ""), "{method} {path}");
        wharf.settled().await;
        assert_eq!(wharf.idle(&shared), 1, "{method} {path}: connection back in the pool");
    }
    assert_eq!(a.log.accepted(), 1, "one connection served all three");
}

#[tokio::test]
async fn a_refused_a_lost_and_a_timed_out_attempt_each_release_their_slot() {
    let refused = raw::refusing();
    let lost = raw::reads_then_closes().await;
    let silent = backends::delayed("silent", Duration::from_secs(3600)).await;
    let mut t = timeouts();
    t.request = Duration::from_millis(200);
    // The refused backend is alone and new: a cold start, waited for within the connect timeout.
    t.connect = Duration::from_millis(300);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.publish(desired([
        pool("refused", at_path("/refused"), &[refused.addr]),
        pool("lost", at_path("/lost"), &[lost.addr]),
        pool("silent", at_path("/silent"), &[silent.addr]),
    ]));

    for (path, status) in [
        ("/refused", StatusCode::BAD_GATEWAY),
        ("/lost", StatusCode::BAD_GATEWAY),
        ("/silent", StatusCode::GATEWAY_TIMEOUT),
    ] {
        assert_eq!(client::get(wharf.addr, path).await.status, status, "{path}");
    }
    for (p, addr) in [("refused", refused.addr), ("lost", lost.addr), ("silent", silent.addr)] {
        let s = wharf.shared(p, addr);
        assert_eq!((s.requests.load(SeqCst), s.errors.load(SeqCst)), (1, 1), "{p}");
        assert_eq!(s.in_flight.load(SeqCst), 0, "{p}");
        assert_eq!(wharf.idle(&s), 0, "{p}");
    }
}

#[tokio::test]
async fn a_body_the_backend_cuts_short_counts_an_error_releases_the_slot_and_is_not_pooled() {
    let short = raw::cuts_body_short().await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[short.addr]);
    let shared = wharf.shared("web", short.addr);

    // The body fails while wharf streams it: after the head went out, or,
    // when the end of the connection came with the body's first bytes,
    // before hyper wrote the head. Either way no client gets a whole 200.
    let whole = match client::try_open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await {
        Ok(resp) => {
            assert_eq!(resp.status(), StatusCode::OK);
            resp.into_body().collect().await.is_ok()
        }
        Err(e) => {
            assert!(e.is_incomplete_message(), "{e}");
            false
        }
    };
    assert!(!whole, "the client sees the response fail");
    wharf.settled().await;
    assert_eq!(shared.errors.load(SeqCst), 1);
    assert_eq!(wharf.idle(&shared), 0);
}
