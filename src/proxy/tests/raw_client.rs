//! wharf's own HTTP/1.1 client ([`crate::proxy::raw`]), which carries every
//! request without a body: answers framed every way a backend may frame
//! them reach the client whole, and a connection goes back to the pool
//! only when its answer ended cleanly and the backend did not end it.

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;

use super::backends::{spawn, Upstream};
use super::client::{self, request};
use super::fixture::Wharf;
use super::raw::read_request;
use crate::model::PoolOptions;

/// Answers every request on a connection with `answer`, byte for byte;
/// with `close`, closes the connection after the first.
async fn answers(answer: &'static [u8], close: bool) -> Upstream {
    spawn(move |mut stream, log| async move {
        while let Some(seen) = read_request(&mut stream).await {
            log.record(seen);
            if stream.write_all(answer).await.is_err() || close {
                return;
            }
        }
    })
    .await
}

/// wharf serving one pool whose one backend [`answers`] `answer`.
async fn serving(answer: &'static [u8], close: bool) -> (Wharf, Upstream) {
    let up = answers(answer, close).await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[up.addr]);
    (wharf, up)
}

/// Two requests through wharf to `answer`: their bodies, and the
/// connections the backend accepted.
async fn twice(answer: &'static [u8], close: bool, method: Method) -> (Vec<String>, usize, Wharf, Upstream) {
    let (wharf, up) = serving(answer, close).await;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let reply = client::send(wharf.addr, request(method.clone(), "/").body(Full::default()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        bodies.push(reply.body);
        wharf.settled().await;
    }
    let accepted = up.log.accepted();
    (bodies, accepted, wharf, up)
}

#[tokio::test]
async fn a_chunked_answer_arrives_whole_and_its_connection_serves_the_next_request() {
    let answer =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    let (bodies, accepted, wharf, up) = twice(answer, false, Method::GET).await;
    assert_eq!(bodies, ["hello world", "hello world"]);
    assert_eq!(accepted, 1, "the second request reused the first connection");
    assert_eq!(wharf.idle_raw(&wharf.shared("web", up.addr)), 1, "a raw connection");
}

#[tokio::test]
async fn a_backend_that_answered_in_http10_and_kept_the_connection_is_asked_in_http10_with_keep_alive() {
    let answer = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
    let (bodies, accepted, wharf, up) = twice(answer, false, Method::GET).await;
    assert_eq!(bodies, ["ok", "ok"]);
    assert_eq!(accepted, 1);
    let second = up.log.last();
    assert_eq!(second.version, http::Version::HTTP_10, "as hyper's client asks");
    assert_eq!(second.headers["connection"], "keep-alive");
    assert_eq!(wharf.idle_raw(&wharf.shared("web", up.addr)), 1);
}

#[tokio::test]
async fn an_answer_without_a_length_is_read_to_the_close_and_its_connection_is_not_kept() {
    let (bodies, accepted, wharf, up) = twice(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true, Method::GET).await;
    assert_eq!(bodies, ["until the end", "until the end"]);
    assert_eq!(accepted, 2);
    assert_eq!(wharf.idle(&wharf.shared("web", up.addr)), 0);
}

#[tokio::test]
async fn an_answer_to_head_has_no_body_whatever_its_length_says_and_the_connection_is_reused() {
    let (wharf, up) = serving(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", false).await;
    for _ in 0..2 {
        let resp = client::open(wharf.addr, request(Method::HEAD, "/").body(Full::default()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-length"], "42");
        let body = resp.into_body().collect().await.expect("an empty body").to_bytes();
        assert!(body.is_empty());
        wharf.settled().await;
    }
    assert_eq!(up.log.accepted(), 1);
    assert_eq!(wharf.idle_raw(&wharf.shared("web", up.addr)), 1);
}

#[tokio::test]
async fn informational_answers_are_skipped_and_a_custom_reason_reaches_the_client() {
    let (wharf, _up) = serving(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok",
        false,
    )
    .await;
    let resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes().to_vec());
    assert_eq!(reason.as_deref(), Some(&b"Fine Thanks"[..]));
    assert!(!resp.headers().contains_key("link"), "the 103's fields stay with it");
    assert_eq!(client::read(resp).await.body, "ok");
}

#[tokio::test]
async fn an_answer_saying_close_does_not_keep_its_connection() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    let (bodies, accepted, wharf, up) = twice(answer, false, Method::GET).await;
    assert_eq!(bodies, ["ok", "ok"]);
    assert_eq!(accepted, 2);
    assert_eq!(wharf.idle(&wharf.shared("web", up.addr)), 0);
    client::eventually("the backend saw both connections closed", || up.log.open() == 0).await;
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_while_idle_is_not_used() {
    // Answers one request, then closes the connection when the test says.
    let (close, closing) = tokio::sync::watch::channel(false);
    let up = spawn(move |mut stream, log| {
        let mut closing = closing.clone();
        async move {
            if let Some(seen) = read_request(&mut stream).await {
                log.record(seen);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = closing.wait_for(|c| *c).await;
            }
        }
    })
    .await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[up.addr]);
    let shared = wharf.shared("web", up.addr);
    assert_eq!(client::get(wharf.addr, "/").await.body, "ok");
    wharf.settled().await;
    assert_eq!(wharf.idle_raw(&shared), 1, "nothing said it would close");
    close.send_replace(true);
    client::eventually("the backend closed its side", || up.log.open() == 0).await;

    let again = client::get(wharf.addr, "/").await;
    assert_eq!((again.status, again.body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(up.log.accepted(), 2, "a new connection");
    assert_eq!(shared.errors.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bytes_after_an_answer_keep_its_connection_from_the_next_request() {
    let (bodies, accepted, ..) = twice(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSURPRISE",
        false,
        Method::GET,
    )
    .await;
    assert_eq!(bodies, ["ok", "ok"]);
    assert_eq!(accepted, 2);
}

#[tokio::test]
async fn a_malformed_answer_is_a_502_and_counts_an_error() {
    let (wharf, up) = serving(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        false,
    )
    .await;
    let reply = client::get(wharf.addr, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("differing Content-Length"), "{reply:?}");
    let shared = wharf.shared("web", up.addr);
    assert_eq!(shared.errors.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_large_body_arrives_byte_for_byte_with_a_length_and_chunked() {
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut sized = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    sized.extend_from_slice(&body);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(100_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for answer in [sized, chunked] {
        let (wharf, up) = serving(Vec::leak(answer), false).await;
        for _ in 0..2 {
            let resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
            let got = resp.into_body().collect().await.expect("the whole body").to_bytes();
            assert!(got[..] == body[..], "{} bytes, not the {} sent", got.len(), body.len());
            wharf.settled().await;
        }
        assert_eq!(up.log.accepted(), 1, "reused after a large body");
    }
}
