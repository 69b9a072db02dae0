//! HTTP/1.1 by hand on raw sockets, for what a client library hides: how a
//! response's framing ended (a broken body is not a clean short one), the
//! head of a `101` before the tunnel bytes, the request heads that pass
//! through the Docker socket proxy ([`super::sockproxy`]), and backends that
//! misbehave on purpose.
//!
//! Only what the tests need: a head ends at the first CRLF CRLF, header names
//! compare case-insensitively, a response body is framed by Content-Length,
//! chunked encoding or the end of the connection (RFC 9112 §6.3).
//!
//! ```ignore
//! let end = raw_get(wharf.listen, "abort.test", "/abort?n=100000").await?;
//! assert!(matches!(end, RawEnd::Broken { status: 200, .. }));
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long [`raw_get`] waits for a response to end.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(15);

/// A message head: the start line and the header fields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `HTTP/1.1 200 OK` or `GET /path HTTP/1.1`.
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a head (with or without its final CRLF CRLF).
    pub fn parse(bytes: &[u8]) -> Result<Head, String> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
        let start = lines.next().ok_or("empty head")?.to_string();
        let headers = lines
            .map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| format!("bad header line {l:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Head { start, headers })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A response's status code.
    pub fn status(&self) -> Result<u16, String> {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {}", self.start))
    }

    /// A request's `(method, target, version)`.
    pub fn request_line(&self) -> Result<(&str, &str, &str), String> {
        let mut parts = self.start.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/") => Ok((m, t, v)),
            _ => Err(format!("bad request line: {}", self.start)),
        }
    }

    /// Whether a request announces a body (a non-zero Content-Length or any
    /// Transfer-Encoding).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some() || self.header("content-length").is_some_and(|n| n.trim() != "0")
    }

    /// How a response's body is framed.
    pub fn framing(&self) -> Result<Framing, String> {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_lowercase().contains("chunked"))
        {
            Ok(Framing::Chunked)
        } else if let Some(n) = self.header("content-length") {
            Ok(Framing::Length(n.parse().map_err(|_| format!("content-length {n}"))?))
        } else {
            Ok(Framing::Close)
        }
    }
}

/// Reads from `r` until `buf` holds a whole head, and takes it (with its
/// CRLF CRLF) out of `buf`; bytes after it stay there. `Ok(None)`: the
/// connection ended before the first byte of a head (a keep-alive peer
/// going away). `Err` names how it ended mid-head.
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(buf.drain(..end + 4).collect()));
        }
        match r.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(format!("EOF before the end of the head ({} bytes)", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(format!(
                    "read error: {e} before the end of the head ({} bytes)",
                    buf.len()
                ))
            }
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    Length(usize),
    Chunked,
    Close,
}

impl Framing {
    /// `(data bytes, complete, name)` of a body received so far.
    fn progress(self, body: &[u8]) -> (usize, bool, String) {
        match self {
            Framing::Length(n) => (body.len().min(n), body.len() >= n, format!("content-length {n}")),
            Framing::Chunked => {
                let (d, c) = chunked_progress(body);
                (d, c, "chunked".to_string())
            }
            Framing::Close => (body.len(), false, "close-delimited".to_string()),
        }
    }
}

/// How a response read off a raw HTTP/1.1 connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RawEnd {
    /// The message framing says the body is complete.
    Complete { status: u16, framing: String, body: usize },
    /// The connection ended (EOF or error) before the framing's end.
    Broken {
        status: u16,
        framing: String,
        body: usize,
        how: String,
    },
}

/// Parses a chunked body so far: (data bytes, whether the last chunk arrived).
pub fn chunked_progress(b: &[u8]) -> (usize, bool) {
    let (mut pos, mut data) = (0usize, 0usize);
    loop {
        let Some(eol) = b[pos..].windows(2).position(|w| w == b"\r\n") else {
            return (data, false);
        };
        let line = String::from_utf8_lossy(&b[pos..pos + eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(usize::MAX);
        if size == usize::MAX {
            return (data, false); // garbage: never a clean end
        }
        if size == 0 {
            return (data, true);
        }
        let start = pos + eol + 2;
        if b.len() < start + size + 2 {
            return (data + b.len().saturating_sub(start).min(size), false);
        }
        data += size;
        pos = start + size + 2;
    }
}

/// `GET path` on a fresh raw TCP connection, read until the framing says the
/// response is complete or the connection ends ([`RAW_TIMEOUT`] at most).
pub async fn raw_get(addr: SocketAddr, host: &str, path: &str) -> Result<RawEnd, String> {
    let deadline = tokio::time::Instant::now() + RAW_TIMEOUT;
    let mut buf = Vec::new();
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: raw-test\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let head = read_head(&mut s, &mut buf)
            .await?
            .ok_or("EOF before the response head (0 bytes)")?;
        let head = Head::parse(&head)?;
        let (status, framing) = (head.status()?, head.framing()?);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let (data, complete, name) = framing.progress(&buf);
            if complete {
                return Ok(RawEnd::Complete {
                    status,
                    framing: name,
                    body: data,
                });
            }
            let how = match s.read(&mut chunk).await {
                Ok(0) => "EOF".to_string(),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
                Err(e) => format!("read error: {e}"),
            };
            return Ok(match framing {
                // EOF is the only end a close-delimited body has: the client
                // cannot tell a truncated one from a whole one.
                Framing::Close if how == "EOF" => RawEnd::Complete {
                    status,
                    framing: name,
                    body: data,
                },
                _ => RawEnd::Broken {
                    status,
                    framing: name,
                    body: data,
                    how,
                },
            });
        }
    };
    let ended = tokio::time::timeout_at(deadline, work).await;
    match ended {
        Ok(end) => end,
        Err(_) => Err(format!(
            "no end within {} s; {} bytes so far",
            RAW_TIMEOUT.as_secs(),
            buf.len()
        )),
    }
}
