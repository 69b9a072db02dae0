//! Backends that misbehave at the TCP level: refuse connections, close at
//! once, close after reading the request, cut a response body short; and
//! the small HTTP/1.1 request reader they use.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::backends::{spawn, Seen, Upstream};

/// A port that refuses connections: bound, so no other test can take it
/// while this lives, but not listening.
#[derive(Debug)]
pub struct Refusing {
    pub addr: SocketAddr,
    socket: TcpSocket,
}

pub fn refusing() -> Refusing {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let addr = socket.local_addr().expect("address");
    Refusing { addr, socket }
}

impl Refusing {
    /// Start listening on the port at last: a backend whose process took
    /// this long to start, answering `200` with `name`.
    pub fn listen_named(self, name: &'static str) -> Upstream {
        let listener = self.socket.listen(128).expect("listen");
        super::backends::named_on(listener, name)
    }
}

/// Accepts each connection and closes it without reading a byte.
pub async fn closes_at_once() -> Upstream {
    spawn(|stream, _| async move { drop(stream) }).await
}

/// Reads one whole request (logged), then closes without answering.
pub async fn reads_then_closes() -> Upstream {
    spawn(|mut stream, log| async move {
        if let Some(seen) = read_request(&mut stream).await {
            log.record(seen);
        }
    })
    .await
}

/// Reads one request, sends response headers promising 10 bytes and 5 of
/// them, then closes.
pub async fn cuts_body_short() -> Upstream {
    spawn(|mut stream, log| async move {
        if let Some(seen) = read_request(&mut stream).await {
            log.record(seen);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
                .await;
        }
    })
    .await
}

/// Read one HTTP/1.1 request: its head, and a body framed by
/// `Content-Length` or chunked (kept as sent). `None` if the peer closed first.
pub async fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(s, &mut buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.parse().ok()?;
    let uri = first.next()?.parse().ok()?;
    let version = match first.next()? {
        "HTTP/1.0" => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
            HeaderValue::from_str(v.trim()).ok()?,
        );
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let chunked = headers.get("transfer-encoding").is_some_and(|v| v == "chunked");
    loop {
        let body = &buf[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None => !chunked || body.ends_with(b"0\r\n\r\n"),
        };
        if done {
            break;
        }
        read_more(s, &mut buf).await?;
    }
    Some(Seen {
        method,
        uri,
        version,
        headers,
        body: Bytes::copy_from_slice(&buf[head_end..]),
    })
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}
