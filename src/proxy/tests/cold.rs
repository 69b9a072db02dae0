//! Cold start ([`crate::proxy::cold`]): a backend alone in its pool that
//! refuses connections moments after it became ready is waited for, within
//! the connect timeout; one ready for longer, or with another backend to
//! take the request, is not.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::backends;
use super::client;
use super::fixture::{timeouts, Wharf};
use super::raw;
use crate::model::PoolOptions;
use crate::proxy::cold::GRACE;

#[tokio::test]
async fn a_lone_backend_that_listens_300ms_after_it_became_ready_answers_the_first_request() {
    let late = raw::refusing();
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[late.addr]);
    let start = Instant::now();
    // The process behind the port takes 300 ms to start listening.
    let listening = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        late.listen_named("late")
    });
    let r = client::get(wharf.addr, "/").await;
    let took = start.elapsed();
    println!("answered after {took:?}");
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "late"), "{}", r.body);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let up = listening.await.expect("listening task");
    assert_eq!(up.log.count(), 1, "delivered once");
    let shared = wharf.shared("web", up.addr);
    assert_eq!((shared.requests.load(SeqCst), shared.errors.load(SeqCst)), (1, 0));
    assert_eq!(
        wharf.proxy.stats.retries.load(SeqCst),
        0,
        "not a retry on another backend"
    );
    wharf.settled().await;
}

#[tokio::test]
async fn a_lone_cold_backend_that_never_listens_answers_502_after_the_connect_timeout() {
    let dead = raw::refusing();
    let mut t = timeouts();
    t.connect = Duration::from_millis(400);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[dead.addr]);
    let start = Instant::now();
    let r = client::get(wharf.addr, "/").await;
    let took = start.elapsed();
    println!("502 after {took:?}");
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.wharf_error(), Some("unreachable"));
    assert!(
        took >= Duration::from_millis(400),
        "waited the connect timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "and no longer: {took:?}");
}

#[tokio::test]
async fn a_lone_backend_ready_for_longer_than_the_grace_that_refuses_answers_502_at_once() {
    let dead = raw::refusing();
    let wharf = Wharf::start().await; // connect timeout 5 s
    wharf.serve(PoolOptions::default(), &[dead.addr]);
    let shared = wharf.shared("web", dead.addr);
    shared.ready_since.clear();
    shared
        .ready_since
        .mark(Instant::now() - GRACE - Duration::from_millis(1));
    let start = Instant::now();
    let r = client::get(wharf.addr, "/").await;
    let took = start.elapsed();
    println!("502 after {took:?}");
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_cold_backend_that_refuses_with_another_backend_in_the_pool_sends_the_request_there_at_once() {
    let cold = raw::refusing();
    let b = backends::named("b").await;
    let wharf = Wharf::start().await; // round robin: the refusing one first
    wharf.serve(PoolOptions::default(), &[cold.addr, b.addr]);
    let start = Instant::now();
    let r = client::get(wharf.addr, "/").await;
    let took = start.elapsed();
    println!("answered by b after {took:?}");
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));
    assert!(took < Duration::from_millis(500), "no cold-start wait: {took:?}");
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 1);
    wharf.settled().await;
}
