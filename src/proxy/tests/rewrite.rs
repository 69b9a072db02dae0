//! What the backend receives and what the client gets back, through the
//! service: `strip_prefix`, `X-Forwarded-*` per `--trusted-proxies`, the
//! Host kept, hop-by-hop headers removed both ways (RFC 9110 §7.6.1), the
//! sticky cookie, the 404/503 answers with their `x-wharf-error`, and the
//! `Date` every answer carries.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backends::{self, Seen};
use super::client::{self, request, request_to, Reply};
use super::fixture::{at_path, desired, pool, timeouts, Wharf};
use crate::model::{BackendStatus, HostPattern, PoolOptions, Sticky};

#[tokio::test]
async fn strip_prefix_removes_the_matched_prefix_and_keeps_the_query() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    let strip = PoolOptions {
        strip_prefix: true,
        ..at_path("/api")
    };
    wharf.publish(desired([
        pool("api", strip, &[a.addr]),
        pool("raw", at_path("/raw"), &[a.addr]),
    ]));
    for (sent, received) in [
        ("/api/users?id=1", "/users?id=1"),
        ("/api", "/"),
        ("/api?q=2", "/?q=2"),
        ("/raw/users?id=1", "/raw/users?id=1"),
    ] {
        assert_eq!(client::get(wharf.addr, sent).await.status, StatusCode::OK, "{sent}");
        assert_eq!(a.log.last().target(), received, "{sent}");
    }
}

#[tokio::test]
async fn from_an_untrusted_client_x_forwarded_headers_are_replaced_and_host_is_kept() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    for method in [Method::GET, Method::POST] {
        send_forged(&wharf, method.clone()).await;
        let seen = a.log.last();
        assert_eq!(seen.method, method);
        forwarded_once(&seen, ["127.0.0.1", "http", "App.Test:8080"]);
        assert_eq!(seen.header("host"), Some("App.Test:8080"));
    }
}

#[tokio::test]
async fn from_a_trusted_proxy_x_forwarded_headers_are_kept_and_the_peer_appended() {
    let a = backends::named("a").await;
    let wharf = Wharf::with(timeouts(), vec!["127.0.0.0/8".parse().unwrap()]).await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    for method in [Method::GET, Method::POST] {
        send_forged(&wharf, method.clone()).await;
        let seen = a.log.last();
        assert_eq!(seen.method, method);
        forwarded_once(&seen, ["6.6.6.6, 127.0.0.1", "https", "shop.test"]);
        assert_eq!(seen.header("host"), Some("App.Test:8080"));
    }
}

/// A request carrying forged forwarding headers, with `Host` on a port:
/// a GET (no body: wharf's raw client) or a POST with a body (hyper's client).
async fn send_forged(wharf: &Wharf, method: Method) {
    let req = request_to("App.Test:8080", method.clone(), "/")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "shop.test");
    let body = if method == Method::GET { "" } else { "a body" };
    let r = client::send(wharf.addr, req.body(Full::new(body.into())).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "a"));
}

/// `X-Forwarded-For`, `-Proto` and `-Host` as the backend saw them: each once.
pub(super) fn forwarded_once(seen: &Seen, values: [&str; 3]) {
    for (name, value) in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
        .into_iter()
        .zip(values)
    {
        let all: Vec<_> = seen.headers.get_all(name).iter().collect();
        assert_eq!(all, [value], "{} {name}", seen.method);
    }
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed_both_ways_by_either_upstream_client() {
    let a = backends::answering(|_: &Seen| {
        let mut r = backends::full(StatusCode::OK, "a");
        let h = r.headers_mut();
        h.insert("connection", "x-backend-secret".parse().unwrap());
        h.insert("x-backend-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("x-answer", "kept".parse().unwrap());
        r
    })
    .await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);

    // A GET goes through wharf's own client (`proxy::raw`), a POST with a
    // body through hyper's: both strip the same fields.
    for (method, body) in [(Method::GET, ""), (Method::POST, "a body")] {
        let req = request(method.clone(), "/")
            .header("connection", "keep-alive, x-client-secret")
            .header("x-client-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic d2hhcmY6")
            .header("proxy-connection", "keep-alive")
            .header("te", "gzip")
            .header("x-kept", "yes");
        let r = client::send(
            wharf.addr,
            req.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{method}");
        let seen = a.log.last();
        assert_eq!((&seen.method, &seen.body[..]), (&method, body.as_bytes()));
        assert_eq!(seen.header("x-kept"), Some("yes"));
        for h in [
            "x-client-secret",
            "keep-alive",
            "proxy-authorization",
            "proxy-connection",
            "te",
        ] {
            assert_eq!(seen.header(h), None, "{method}: {h} reached the backend");
        }
        assert_eq!(r.headers.get("x-answer").map(|v| v.as_bytes()), Some(&b"kept"[..]));
        for h in ["x-backend-secret", "keep-alive", "proxy-connection", "connection"] {
            assert!(!r.headers.contains_key(h), "{method}: {h} reached the client");
        }
    }
}

#[tokio::test]
async fn no_route_answers_404_and_a_pool_without_a_ready_backend_503_each_naming_the_cause() {
    let a = backends::named("a").await;
    let on = |host: &str| PoolOptions {
        hosts: vec![HostPattern::Exact(host.into())],
        ..PoolOptions::default()
    };
    let (waiting_name, mut waiting) = pool("waiting", on("waiting.test"), &[a.addr]);
    waiting.backends[0].status = BackendStatus::Waiting("starting".into());
    let (draining_name, mut draining) = pool("draining", on("draining.test"), &[a.addr]);
    draining.backends[0].status = BackendStatus::Draining;
    let wharf = Wharf::start().await;
    wharf.publish(desired([
        pool("a", on("a.test"), &[a.addr]),
        pool("empty", on("empty.test"), &[]),
        (waiting_name, waiting),
        (draining_name, draining),
    ]));

    let get = |host: &'static str| {
        let req = request_to(host, Method::GET, "/");
        client::send(wharf.addr, req.body(Full::default()).unwrap())
    };
    let r = get("A.TEST:8080").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "a"),
        "host matched without case and port"
    );

    let r = get("b.test").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.wharf_error(), Some("no-route"));
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 20, "a request id is generated");
    assert_eq!(
        r.body,
        format!("wharf: no route for this host and path (request id {id})\n"),
        "the error names the request id"
    );
    assert_eq!(
        r.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; charset=utf-8"[..])
    );
    for (host, pool) in [
        ("empty.test", "empty"),
        ("waiting.test", "waiting"),
        ("draining.test", "draining"),
    ] {
        let r = get(host).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{host}");
        assert_eq!(r.wharf_error(), Some("no-backend"), "{host}");
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert_eq!(
            r.body,
            format!("wharf: pool {pool} has no ready backend (request id {id})\n")
        );
    }
    let stats = &wharf.proxy.stats;
    assert_eq!((stats.no_route.load(SeqCst), stats.no_backend.load(SeqCst)), (1, 3));
    assert_eq!(a.log.count(), 1, "only the routed request reached a backend");
}

#[tokio::test]
async fn a_sticky_pool_pins_a_client_to_the_backend_that_answered() {
    let a = backends::named("a").await;
    let b = backends::named("b").await;
    let wharf = Wharf::start().await;
    let sticky = PoolOptions {
        sticky: Some(Sticky { cookie: "pin".into() }),
        ..PoolOptions::default()
    };
    wharf.serve(sticky, &[a.addr, b.addr]);

    let first = client::get(wharf.addr, "/").await;
    assert_eq!(first.body, "a");
    let set = first.headers["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("pin="), "{set}");
    for _ in 0..3 {
        let req = request(Method::GET, "/").header("cookie", format!("other=1; {cookie}"));
        let r = client::send(wharf.addr, req.body(Full::default()).unwrap()).await;
        assert_eq!(r.body, "a", "the cookie keeps the client on a");
        assert!(!r.headers.contains_key("set-cookie"), "already pinned: no new cookie");
    }
    assert_eq!(client::get(wharf.addr, "/").await.body, "b", "without it, round robin");
}

/// `Connection: host` removes the client's Host as a hop-by-hop header:
/// wharf still sends the backend one (HTTP/1.1 requires it), the client's.
#[tokio::test]
async fn a_host_that_connection_names_still_reaches_the_backend() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);

    let req = request_to("a.test", Method::GET, "/").header("connection", "host");
    let r = client::send(wharf.addr, req.body(Full::default()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = a.log.last();
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    assert_eq!(seen.header("host"), Some("a.test"));
    assert_eq!(seen.header("x-forwarded-host"), Some("a.test"));
}

/// A backend that answers `200 bare` without a `Date` (hyper's servers
/// always add one) and logs each request head as sent: its reader keeps
/// every header, where a hyper server leaves a whole `Connection: close`
/// or `keep-alive` out of the map (the hyper patch's 14th change).
async fn bare() -> backends::Upstream {
    backends::spawn(|mut stream, log| async move {
        while let Some(seen) = super::raw::read_request(&mut stream).await {
            log.record(seen);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbare";
            if stream.write_all(answer).await.is_err() {
                break;
            }
        }
    })
    .await
}

/// hyper's server acts on a client's whole `Connection: close` without
/// keeping it in the request (the hyper patch's 14th change), and writes
/// the `Connection: close` of its answer itself (15th): over raw sockets,
/// through wharf's own upstream client (GET) and hyper's (POST), and on
/// wharf's own 404, the answer carries exactly one `connection: close`,
/// wharf closes, and the backend sees no `Connection` (nor a header that
/// one named).
#[tokio::test]
async fn a_client_s_connection_close_gets_one_close_back_and_never_reaches_the_backend() {
    let a = bare().await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([pool("bare", at_path("/bare"), &[a.addr])]));
    let cases: [(&str, &[u8]); 5] = [
        (
            "GET",
            b"GET /bare HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "POST",
            b"POST /bare HTTP/1.1\r\nHost: app.test\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "list",
            b"GET /bare HTTP/1.1\r\nHost: app.test\r\nConnection: close, x-gone\r\nX-Gone: 1\r\n\r\n",
        ),
        ("HTTP/1.0", b"GET /bare HTTP/1.0\r\nHost: app.test\r\n\r\n"),
        (
            "404",
            b"GET /nowhere HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (what, bytes) in cases {
        let before = a.log.count();
        let mut c = tokio::net::TcpStream::connect(wharf.addr).await.unwrap();
        c.write_all(bytes).await.unwrap();
        let mut got = Vec::new();
        // wharf closes after the answer: read to the end.
        let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await;
        assert!(matches!(read, Ok(Ok(_))), "{what}: {read:?}");
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let closes: Vec<_> = head.lines().filter(|l| l.starts_with("connection:")).collect();
        if what == "HTTP/1.0" {
            // An HTTP/1.0 client closes unless it asks otherwise: nothing to say.
            assert!(head.starts_with("http/1.0 200 ok"), "{what}: {text}");
            assert!(closes.is_empty(), "{what}: {text}");
        } else {
            assert_eq!(closes, ["connection: close"], "{what}: {text}");
        }
        if what == "404" {
            assert!(head.starts_with("http/1.1 404"), "{what}: {text}");
            assert_eq!(a.log.count(), before, "{what}");
            continue;
        }
        assert!(text.ends_with("\r\n\r\nbare"), "{what}: {text}");
        assert_eq!(a.log.count(), before + 1, "{what}");
        let seen = a.log.last();
        for h in ["connection", "x-gone"] {
            assert_eq!(seen.header(h), None, "{what}: {h} reached the backend");
        }
    }
}

/// The other whole value (the hyper patch's 14th change): an HTTP/1.0
/// client that sends `Connection: Keep-Alive` is kept alive (told so with
/// `connection: keep-alive`) and answered twice on one connection, and the
/// backend sees no `Connection`.
#[tokio::test]
async fn an_http_1_0_client_that_asks_for_keep_alive_is_answered_twice_on_one_connection() {
    let a = bare().await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([pool("bare", at_path("/bare"), &[a.addr])]));
    let mut c = tokio::net::TcpStream::connect(wharf.addr).await.unwrap();
    let mut got = Vec::new();
    for n in 1..=2 {
        c.write_all(b"GET /bare HTTP/1.0\r\nHost: app.test\r\nConnection: Keep-Alive\r\n\r\n")
            .await
            .unwrap();
        let mut chunk = [0u8; 1024];
        while String::from_utf8_lossy(&got).matches("\r\n\r\nbare").count() < n {
            let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk)).await;
            let Ok(Ok(k @ 1..)) = read else {
                panic!("answer {n}: {read:?} after {:?}", String::from_utf8_lossy(&got));
            };
            got.extend_from_slice(&chunk[..k]);
        }
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert_eq!(text.matches("http/1.0 200 ok\r\n").count(), 2, "{text}");
    assert_eq!(text.matches("\r\nconnection: keep-alive\r\n").count(), 2, "{text}");
    assert_eq!(a.log.count(), 2);
    assert_eq!(a.log.last().header("connection"), None);
}

/// The one `Date` of an answer, as a time.
fn date_of(r: &Reply) -> SystemTime {
    let dates: Vec<_> = r.headers.get_all("date").iter().collect();
    assert_eq!(dates.len(), 1, "one Date: {:?}", r.headers);
    httpdate::parse_http_date(dates[0].to_str().unwrap()).expect("an HTTP date")
}

/// hyper's server refreshes its cached `Date` only when it writes one (the
/// hyper patch's 13th change, vendor/hyper/WHARF-PATCH.md): a backend's own
/// `Date` passes through alone, an answer without one (from a backend or
/// from wharf itself) gets the current second, and that date moves on.
#[tokio::test]
async fn every_answer_has_one_date_the_backends_own_or_a_current_one_that_moves_on() {
    let own = backends::answering(|_| {
        let mut r = backends::full(StatusCode::OK, "own");
        r.headers_mut()
            .insert("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        r
    })
    .await;
    let bare = bare().await;
    let wharf = Wharf::start().await;
    wharf.publish(desired([
        pool("own", at_path("/own"), &[own.addr]),
        pool("bare", at_path("/bare"), &[bare.addr]),
    ]));

    let r = client::get(wharf.addr, "/own").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "own"));
    assert_eq!(
        date_of(&r),
        httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap()
    );

    for path in ["/bare", "/nowhere"] {
        let before = SystemTime::now() - Duration::from_secs(1);
        let r = client::get(wharf.addr, path).await;
        let after = SystemTime::now();
        let want = if path == "/bare" {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(r.status, want, "{path}");
        let date = date_of(&r);
        assert!(
            before <= date && date <= after,
            "{path}: {date:?} not between {before:?} and {after:?}"
        );
    }
    assert_eq!(bare.log.count(), 1);

    let first = date_of(&client::get(wharf.addr, "/bare").await);
    let took = client::eventually_async("the Date to move on", || async {
        date_of(&client::get(wharf.addr, "/bare").await) > first
    })
    .await;
    println!("the Date moved on after {took:?}");
}
