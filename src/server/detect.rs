//! Which protocol a new cleartext connection speaks, read with `peek` so that
//! no byte is consumed: hyper then reads the whole first request in one go.
//!
//! HTTP/2 with prior knowledge (h2c) starts with the fixed preface
//! `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113 §3.4); anything else is
//! HTTP/1.x. The first byte almost always decides (`G`, `P`OST vs `P`RI…);
//! only a client that sends a prefix of the preface and stalls makes us look
//! again, a few milliseconds later, until the detection deadline. A
//! connection that sends nothing at all is closed at that deadline — an idle
//! socket must not hold memory and a descriptor for ever.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{sleep, timeout_at, Instant};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Between two looks at a connection that sent a prefix of the preface.
const RETRY: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2,
}

/// What the first bytes say: a protocol, or `None` until more arrive.
pub fn classify(first: &[u8]) -> Option<Protocol> {
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == PREFACE.len() {
        Some(Protocol::H2)
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("no request within {0:?}")]
    Timeout(Duration),
    #[error("closed before sending anything")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Wait for the connection's first bytes, at most `within`.
pub async fn detect(stream: &TcpStream, within: Duration) -> Result<Protocol, DetectError> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = timeout_at(deadline, stream.peek(&mut buf))
            .await
            .map_err(|_| DetectError::Timeout(within))??;
        if n == 0 {
            return Err(DetectError::Closed);
        }
        if let Some(p) = classify(&buf[..n]) {
            return Ok(p);
        }
        // A prefix of the preface: the socket stays readable with the same
        // bytes, so wait a moment rather than spin on `peek`.
        if Instant::now() + RETRY > deadline {
            return Err(DetectError::Timeout(within));
        }
        sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn the_first_differing_byte_decides_and_only_the_whole_preface_is_h2() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"POST /x HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(PREFACE), Some(Protocol::H2));
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(classify(&more), Some(Protocol::H2));
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn detection_consumes_nothing_and_waits_for_a_split_preface() {
        let (mut client, server) = pair().await;
        client.write_all(&PREFACE[..5]).await.unwrap();
        let detecting = tokio::spawn(async move {
            let p = detect(&server, Duration::from_secs(5)).await;
            (p, server)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(&PREFACE[5..]).await.unwrap();
        let (p, server) = detecting.await.unwrap();
        assert_eq!(p.unwrap(), Protocol::H2);
        let mut all = [0u8; 24];
        assert_eq!(server.peek(&mut all).await.unwrap(), 24, "nothing was consumed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_given_up_at_the_deadline() {
        let (_client, server) = pair().await;
        let e = detect(&server, Duration::from_secs(3)).await.unwrap_err();
        assert!(matches!(e, DetectError::Timeout(_)), "{e}");
    }

    #[tokio::test]
    async fn a_connection_closed_without_a_byte_is_reported_closed() {
        let (client, server) = pair().await;
        drop(client);
        assert!(matches!(
            detect(&server, Duration::from_secs(5)).await,
            Err(DetectError::Closed)
        ));
    }
}
