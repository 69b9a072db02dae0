//! HTTP/2 on either side, upgrades a backend declines, and a request
//! timeout that bounds the wait for response headers, not the body.

use std::convert::Infallible;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::backends;
use super::client::{self, request, request_to};
use super::fixture::{timeouts, AbortOnDrop, Wharf};
use crate::model::{HostPattern, PoolOptions, Protocol};

#[tokio::test]
async fn an_h2c_pool_sends_every_request_over_one_shared_http2_connection() {
    let a = backends::named_h2("a").await;
    let wharf = Wharf::start().await;
    let h2c = PoolOptions {
        protocol: Protocol::H2c,
        ..PoolOptions::default()
    };
    wharf.serve(h2c, &[a.addr]);

    for i in 0..3 {
        let r = client::get(wharf.addr, &format!("/n/{i}?q=1")).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "a"));
        let seen = a.log.last();
        assert_eq!(seen.version, Version::HTTP_2);
        assert_eq!(seen.uri.authority().map(|a| a.as_str()), Some(client::HOST));
        assert_eq!(seen.target(), format!("/n/{i}?q=1"));
    }
    let r = client::post(wharf.addr, "/up", "over h2").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&a.log.last().body[..], b"over h2");
    assert_eq!(a.log.accepted(), 1, "one connection for all four");
    wharf.settled().await;
}

#[tokio::test]
async fn an_http2_client_is_routed_by_its_authority_which_reaches_an_http1_backend_as_host() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    let on_b = PoolOptions {
        hosts: vec![HostPattern::Exact("b.test".into())],
        ..PoolOptions::default()
    };
    wharf.serve(on_b, &[a.addr]);

    let req = Request::builder()
        .uri("http://B.test/page?x=1")
        .body(Full::default())
        .unwrap();
    let r = client::send_h2(wharf.addr, req).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "a"));
    let seen = a.log.last();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.target(), "/page?x=1");
    // Routed without case; passed on as the client wrote it.
    assert_eq!(seen.header("host"), Some("B.test"));
    assert_eq!(seen.header("x-forwarded-host"), Some("B.test"));
    wharf.settled().await;
}

/// A POST to `path` on a new HTTP/1.1 connection to `addr`, whose body is
/// what the test sends on the returned channel, chunk by chunk, until it
/// drops it; the response head arrives on the returned task.
async fn streamed_post(
    addr: std::net::SocketAddr,
    path: &str,
) -> (
    mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<hyper::Result<Response<Incoming>>>,
) {
    let (chunks, rx) = mpsc::channel::<Bytes>(1);
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    }));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = request(Method::POST, path).body(body).unwrap();
    (chunks, tokio::spawn(sender.send_request(req)))
}

/// A request body reaches the backend as the client sends it, not once it
/// has ended: the backend reports its first chunk while the client still
/// holds the rest.
#[tokio::test]
async fn a_request_body_streams_to_the_backend_before_the_client_has_finished_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first_tx, mut first_rx) = mpsc::unbounded_channel::<Bytes>();
    let _backend = AbortOnDrop(tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |req: Request<Incoming>| {
            let first_tx = first_tx.clone();
            async move {
                let mut body = req.into_body();
                let mut total = 0;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        if total == 0 {
                            let _ = first_tx.send(data.clone());
                        }
                        total += data.len();
                    }
                }
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(format!("{total} bytes")))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    }));
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[addr]);

    let (chunks, pending) = streamed_post(wharf.addr, "/upload").await;

    chunks.send(Bytes::from_static(b"first,")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), first_rx.recv())
        .await
        .expect("the first chunk reached the backend while the body was still open")
        .expect("the backend read a first chunk");
    assert_eq!(&first[..], b"first,", "received before the body ended");
    chunks.send(Bytes::from_static(b"second")).await.unwrap();
    drop(chunks);
    let r = client::read(pending.await.unwrap().expect("a response")).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "12 bytes"));
    wharf.settled().await;
}

/// A backend that answers at once and echoes the request body as it
/// arrives: each chunk must cross wharf both ways before the client sends
/// the next, so the rest of the request body must keep flowing upstream
/// while the response body streams back (a design that drives the upstream
/// connection only while something waits for its response fails this).
#[tokio::test]
async fn a_backend_echoing_the_request_body_as_it_arrives_streams_both_ways_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _backend = AbortOnDrop(tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc =
            service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(Response::new(req.into_body())) });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    }));
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[addr]);

    let (chunks, pending) = streamed_post(wharf.addr, "/echo").await;
    chunks.send(Bytes::from_static(b"one")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("response headers while the request body is still open")
        .unwrap()
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut echoed = resp.into_body();
    for (i, word) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        if i > 0 {
            chunks.send(Bytes::from_static(word)).await.unwrap();
        }
        // The echo of one chunk may come in more than one frame.
        let mut got = Vec::new();
        while got.len() < word.len() {
            let frame = tokio::time::timeout(Duration::from_secs(10), echoed.frame())
                .await
                .unwrap_or_else(|_| panic!("chunk {i} echoed while the request body is still open"))
                .expect("a frame")
                .expect("not an error");
            got.extend_from_slice(&frame.into_data().unwrap_or_default());
        }
        assert_eq!(got, word);
    }
    drop(chunks);
    let rest = echoed.collect().await.expect("the echo ends cleanly").to_bytes();
    assert!(rest.is_empty(), "nothing after the last chunk: {rest:?}");
    wharf.settled().await;
}

/// The request timeout bounds the wait for response headers; a body that
/// keeps streaming after it is not cut off. The pause between the chunks is
/// the behaviour under test (time passing), not a synchronisation.
#[tokio::test]
async fn a_body_streaming_for_longer_than_the_request_timeout_is_not_cut_off() {
    let (a, mut bodies) = backends::streaming().await;
    let mut t = timeouts();
    t.request = Duration::from_millis(200);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[a.addr]);

    let resp = client::open(wharf.addr, request(Method::GET, "/").body(Full::default()).unwrap()).await;
    let chunks = bodies.recv().await.expect("the backend got the request");
    chunks.send(Bytes::from_static(b"early,")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    chunks.send(Bytes::from_static(b"late")).await.unwrap();
    drop(chunks);
    let body = resp.into_body().collect().await.expect("whole body").to_bytes();
    assert_eq!(&body[..], b"early,late");
    assert_eq!(wharf.proxy.stats.timeouts.load(SeqCst), 0);
    wharf.settled().await;
}

#[tokio::test]
async fn an_upgrade_the_backend_declines_is_answered_as_a_plain_response() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);

    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: app.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = client::read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-length: 1\r\n"), "{head}");
    assert_eq!(body, b"a");
    assert_eq!(
        a.log.last().header("upgrade"),
        Some("echo"),
        "the upgrade was asked for"
    );
    wharf.settled().await;
}

/// The backend's half-close reaches the client through the tunnel: wharf
/// shuts the client's side down when the backend's ends (a WebSocket
/// client waits for that after its close handshake), also now that a
/// finished plain connection is closed without a `shutdown` (the hyper
/// patch's 18th change applies to HTTP/1 connections that end in hyper,
/// not to upgraded ones).
#[tokio::test]
async fn a_backend_that_closes_its_tunnel_first_ends_the_clients_stream() {
    let up = backends::upgrade_then_close(b"bye").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[up.addr]);
    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: app.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let (head, mut rest) = client::read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The client keeps its own side open and reads to the end of the stream.
    let start = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "no end of stream 10 s after the backend closed its side: {read:?}, got {rest:?}"
    );
    assert_eq!(rest, b"bye");
    println!("end of stream {:?} after the 101", start.elapsed());
}

/// HTTP/2 carries the host in the URI, so for an h2c pool it must be a
/// valid authority; a Host header that is not one is the client's error.
#[tokio::test]
async fn an_h2c_pool_answers_400_to_a_host_that_is_not_a_valid_authority() {
    let a = backends::named_h2("a").await;
    let wharf = Wharf::start().await;
    let h2c = PoolOptions {
        protocol: Protocol::H2c,
        ..PoolOptions::default()
    };
    wharf.serve(h2c, &[a.addr]);
    let r = client::send(
        wharf.addr,
        request_to("a b", Method::GET, "/").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.wharf_error(), Some("bad-request"));
    assert_eq!(a.log.count(), 0);
    wharf.settled().await;
}
