//! The retry matrix through the service (SPEC "Retries", [`crate::retry`]):
//! which failed attempts send a request to another backend, which do not,
//! and what the client sees when nothing could be delivered.
//!
//! Pools are fresh in each test and balanced round robin, whose first pick
//! is the first backend: the misbehaving backend is listed first.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::Full;

use super::backends;
use super::client::{self, request};
use super::fixture::{at_path, desired, pool, timeouts, Wharf};
use super::raw;
use super::rewrite::forwarded_once;
use crate::health;
use crate::model::PoolOptions;

#[tokio::test]
async fn a_refused_connect_goes_to_the_next_backend_for_a_get_and_for_a_post_with_a_body() {
    let refused = raw::refusing();
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([
        pool("get", at_path("/get"), &[refused.addr, b.addr]),
        pool("post", at_path("/post"), &[refused.addr, b.addr]),
    ]));

    let r = client::get(wharf.addr, "/get").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));
    let r = client::post(wharf.addr, "/post", "the body").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));

    let seen = b.log.last();
    assert_eq!((seen.method, &seen.body[..]), (Method::POST, &b"the body"[..]));
    assert_eq!(b.log.count(), 2, "each request delivered once");
    for p in ["get", "post"] {
        let s = wharf.shared(p, refused.addr);
        assert_eq!((s.requests.load(SeqCst), s.errors.load(SeqCst)), (1, 1), "pool {p}");
    }
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 2);
    wharf.settled().await;
}

/// The backend closes a kept-alive connection and stops listening: the
/// request must not be written into the dead connection (it would be lost
/// and a POST could not go elsewhere) but go to the next backend.
#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_not_written_to_and_a_post_goes_to_the_next_backend() {
    let a = backends::named("a").await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr, b.addr]);
    let a_shared = wharf.shared("web", a.addr);
    // Round robin: a, b, then a again for the POST.
    assert_eq!(client::get(wharf.addr, "/").await.body, "a");
    assert_eq!(client::get(wharf.addr, "/").await.body, "b");
    assert_eq!(wharf.idle(&a_shared), 1, "a's connection kept alive");

    a.stop();
    client::eventually("a closed its connection", || a.log.open() == 0).await;
    let r = client::post(wharf.addr, "/", "once").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));
    assert_eq!(a.log.count(), 1, "a got only the first GET");
    assert_eq!(b.log.count(), 2);
    assert_eq!(&b.log.last().body[..], b"once");
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 1);
    wharf.settled().await;
}

#[tokio::test]
async fn a_backend_that_closes_before_reading_gets_a_get_served_by_the_next_backend() {
    let closer = raw::closes_at_once().await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[closer.addr, b.addr]);
    let r = client::get(wharf.addr, "/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));
    assert_eq!(closer.log.accepted(), 1, "tried once");
    assert_eq!(b.log.count(), 1);
    wharf.settled().await;
}

#[tokio::test]
async fn a_get_lost_after_it_was_written_is_replayed_on_another_backend_with_the_same_head() {
    let lost = raw::reads_then_closes().await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[lost.addr, b.addr]);
    let req = request(Method::GET, "/item?id=7").header("x-trace", "t-1");
    let r = client::send(wharf.addr, req.body(Full::default()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));
    let (first, replayed) = (lost.log.last(), b.log.last());
    assert_eq!(lost.log.count(), 1);
    assert_eq!(b.log.count(), 1);
    for seen in [&first, &replayed] {
        assert_eq!((&seen.method, seen.target()), (&Method::GET, "/item?id=7"));
        assert_eq!(seen.header("x-trace"), Some("t-1"));
        assert_eq!(seen.header("host"), Some(client::HOST));
        // The raw client only borrowed the request: wharf's fields once each.
        forwarded_once(seen, ["127.0.0.1", "http", client::HOST]);
    }
    wharf.settled().await;
}

/// An upgrade goes through hyper's client, which takes the request (wharf
/// keeps a copy of the head for a replay): the replay is the whole request,
/// never what `attempt` leaves in its place while hyper holds it.
#[tokio::test]
async fn an_upgrade_get_lost_after_it_was_written_is_replayed_from_its_copy_with_the_same_head() {
    let lost = raw::reads_then_closes().await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[lost.addr, b.addr]);
    let req = request(Method::GET, "/ws?room=7")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("x-trace", "t-2");
    let r = client::send(wharf.addr, req.body(Full::default()).unwrap()).await;
    // b answers 200 without switching: an ordinary answer.
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "b"));
    assert_eq!((lost.log.count(), b.log.count()), (1, 1));
    for seen in [&lost.log.last(), &b.log.last()] {
        assert_eq!((&seen.method, seen.target()), (&Method::GET, "/ws?room=7"));
        assert_eq!(seen.header("host"), Some(client::HOST));
        assert_eq!(seen.header("upgrade"), Some("websocket"));
        assert_eq!(seen.header("x-trace"), Some("t-2"));
        forwarded_once(seen, ["127.0.0.1", "http", client::HOST]);
    }
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 1);
    wharf.settled().await;
}

#[tokio::test]
async fn a_post_without_a_body_lost_after_it_was_written_is_not_replayed_and_answers_502() {
    // No body: it goes through the raw client, which leaves a lost request whole.
    let lost = raw::reads_then_closes().await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[lost.addr, b.addr]);
    let r = client::send(
        wharf.addr,
        request(Method::POST, "/post").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(r.wharf_error(), Some("unreachable"));
    assert_eq!(lost.log.count(), 1);
    assert_eq!(b.log.count(), 0, "not replayed");
    wharf.settled().await;
}

#[tokio::test]
async fn a_post_or_a_put_with_a_body_lost_after_it_was_written_is_not_replayed_and_answers_502() {
    let lost = raw::reads_then_closes().await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([
        pool("post", at_path("/post"), &[lost.addr, b.addr]),
        pool("put", at_path("/put"), &[lost.addr, b.addr]),
    ]));

    let r = client::post(wharf.addr, "/post", "exactly once").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(r.wharf_error(), Some("unreachable"));
    assert_eq!(lost.log.count(), 1);
    assert_eq!(&lost.log.last().body[..], b"exactly once");

    let put = request(Method::PUT, "/put").body(Full::new("idempotent, but has a body".into()));
    let r = client::send(wharf.addr, put.unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(lost.log.count(), 2);
    assert_eq!(b.log.count(), 0, "neither reached the second backend");
    wharf.settled().await;
}

#[tokio::test]
async fn with_the_retry_budget_spent_a_refused_request_answers_502_retry_budget_exhausted() {
    let (r1, r2) = (raw::refusing(), raw::refusing());
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[r1.addr, r2.addr]);
    let budget = &wharf.pool("web").retry_budget;
    while budget.try_withdraw() {}

    let r = client::get(wharf.addr, "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.wharf_error(), Some("unreachable"));
    assert!(r.body.contains("retry budget exhausted"), "{}", r.body);
    let attempts: u64 = [r1.addr, r2.addr]
        .iter()
        .map(|a| wharf.shared("web", *a).requests.load(SeqCst))
        .sum();
    assert_eq!(attempts, 1, "no second attempt without budget");
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 0);
    assert_eq!(wharf.proxy.stats.unreachable.load(SeqCst), 1);
}

/// A `GET` (wharf's raw client) and a `POST` with a body (hyper's client).
#[tokio::test]
async fn no_response_headers_within_the_request_timeout_answers_504_and_tries_no_other_backend() {
    let slow = backends::delayed("slow", Duration::from_secs(3600)).await;
    let b = backends::named("b").await;
    let mut t = timeouts();
    t.request = Duration::from_millis(300);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.publish(desired([
        pool("get", at_path("/get"), &[slow.addr, b.addr]),
        pool("post", at_path("/post"), &[slow.addr, b.addr]),
    ]));

    for path in ["/get", "/post"] {
        let start = Instant::now();
        let r = match path {
            "/get" => client::get(wharf.addr, path).await,
            _ => client::post(wharf.addr, path, "the body").await,
        };
        let took = start.elapsed();
        println!("{path}: 504 after {took:?}");
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{path}");
        assert_eq!(r.wharf_error(), Some("timeout"));
        assert!(r.body.contains("did not answer within 300ms"), "{}", r.body);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(wharf.shared(&path[1..], slow.addr).errors.load(SeqCst), 1, "{path}");
    }
    assert_eq!(slow.log.count(), 2);
    assert_eq!(
        (&slow.log.last().method, &slow.log.last().body[..]),
        (&Method::POST, &b"the body"[..])
    );
    assert_eq!(b.log.count(), 0);
    assert_eq!(wharf.proxy.stats.timeouts.load(SeqCst), 2);
    wharf.settled().await;
}

#[tokio::test]
async fn with_retries_0_neither_a_refused_nor_a_lost_get_is_tried_on_another_backend() {
    let refused = raw::refusing();
    let lost = raw::reads_then_closes().await;
    let b = backends::named("b").await;
    let no_retries = |path: &str| PoolOptions {
        retries: 0,
        ..at_path(path)
    };
    let wharf = Wharf::start().await;
    wharf.publish(desired([
        pool("refused", no_retries("/refused"), &[refused.addr, b.addr]),
        pool("lost", no_retries("/lost"), &[lost.addr, b.addr]),
    ]));

    for path in ["/refused", "/lost"] {
        let r = client::get(wharf.addr, path).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{path}: {}", r.body);
        assert_eq!(r.wharf_error(), Some("unreachable"));
    }
    assert_eq!(lost.log.count(), 1);
    assert_eq!(b.log.count(), 0);
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 0);
    wharf.settled().await;
}

/// Passive health (SPEC): consecutive delivery failures eject a backend
/// ([`crate::health::eject`]: three in a row, for a second at first).
#[tokio::test]
async fn three_refused_connects_in_a_row_eject_the_backend_and_the_next_request_skips_it() {
    let refused = raw::refusing();
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[refused.addr, b.addr]);
    let shared = wharf.shared("web", refused.addr);
    // Round robin starts every other request on the refused backend.
    for _ in 0..6 {
        assert_eq!(client::get(wharf.addr, "/").await.body, "b");
    }
    assert_eq!(shared.requests.load(SeqCst), 3);
    assert!(shared.health.is_ejected(health::now_ms()), "ejected after 3 failures");
    for _ in 0..2 {
        assert_eq!(client::get(wharf.addr, "/").await.body, "b");
    }
    assert_eq!(shared.requests.load(SeqCst), 3, "an ejected backend is not tried");
    assert_eq!(wharf.proxy.stats.retries.load(SeqCst), 3);
}

/// When every backend of a pool is unusable wharf tries them anyway rather
/// than answer 503 to everyone. Here the pool's active checks are on and no
/// probe has passed (the fixture starts no prober), so no backend is available.
#[tokio::test]
async fn when_no_backend_passes_its_checks_requests_are_still_served_in_panic_mode() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    let opts = PoolOptions {
        health: Some(crate::model::HealthCheck {
            path: "/health".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
        }),
        ..PoolOptions::default()
    };
    wharf.serve(opts, &[a.addr]);
    assert!(wharf.shared("web", a.addr).health.is_active_down());
    let r = client::get(wharf.addr, "/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "a"));
    assert_eq!(wharf.proxy.stats.panics.load(SeqCst), 1);
}
