//! Body bytes in the pool's statistics: a declared length is counted at the
//! head, a chunked body as it streams (`wharf_pool_*_bytes_total`).

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backends;
use super::client::{self, eventually, request};
use super::fixture::Wharf;
use crate::model::PoolOptions;

#[tokio::test]
async fn chunked_uploads_and_chunked_responses_are_counted_as_they_stream() {
    let (up, mut bodies) = backends::streaming().await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[up.addr]);

    // A chunked upload of 11 bytes, on a raw socket (no Content-Length).
    let mut s = TcpStream::connect(wharf.addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: bytes.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    // The backend answers with a chunked body of 3 + 5 bytes.
    let chunks = bodies.recv().await.expect("the backend got the request");
    chunks.send(Bytes::from_static(b"abc")).await.unwrap();
    chunks.send(Bytes::from_static(b"defgh")).await.unwrap();
    drop(chunks);
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("transfer-encoding: chunked"), "{got}");
    assert_eq!(up.log.last().body, Bytes::from_static(b"hello world"));

    let pool = wharf.pool("web");
    let took = eventually("11 request and 8 response bytes counted", || {
        let t = pool.stats.totals();
        (t.request_bytes, t.response_bytes) == (11, 8)
    })
    .await;
    eprintln!("streamed bytes counted: took {took:?}");

    // A declared length is counted once, at the head, not again as it streams.
    let up2 = backends::named("b").await;
    let wharf2 = Wharf::start().await;
    wharf2.serve(PoolOptions::default(), &[up2.addr]);
    let req = request(Method::POST, "/").body(Full::new(Bytes::from_static(b"0123456789")));
    let r = client::send(wharf2.addr, req.unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    let pool2 = wharf2.pool("web");
    eventually("10 request bytes and the response's declared length counted", || {
        pool2.stats.totals().request_bytes == 10
    })
    .await;
    let t = pool2.stats.totals();
    assert_eq!(t.request_bytes, 10, "counted once");
    assert_eq!(t.response_bytes, r.body.len() as u64, "counted once: {t:?}");
}
