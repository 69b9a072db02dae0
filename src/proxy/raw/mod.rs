//! wharf's own HTTP/1.1 client, for requests without a body (most of them):
//! the request head written and the response read in the client
//! connection's own task, on a connection the worker pools.
//!
//! Why not hyper's client here: hyper drives each upstream connection in a
//! task of its own and hands requests and responses to it through channels.
//! Per request that is two task wake-ups, a request channel, a response
//! channel and a body channel; callgrind put that task at about 9.8k of the
//! 28.7k instructions wharf spent per keep-alive request (issue 9), where
//! nginx spends 18.5k on the whole request. A request without a body needs
//! none of it: write the head, read the answer, stream its body from the
//! same socket. Everything else keeps hyper's client: request bodies
//! (reading the answer while the body is still being sent), upgrades and
//! `CONNECT` (the connection is taken over), HTTP/2.
//!
//! The rules for reading a response are hyper's ([`head`], [`chunked`]),
//! and so is what is written (HTTP/1.1, or HTTP/1.0 with `Connection:
//! keep-alive` to a backend that answered in HTTP/1.0). Known differences:
//! - A body that fails at once (the backend sent its head and part of the
//!   body, then closed, all in one read) can fail before hyper's server has
//!   written the head: the client sees its connection close with no answer,
//!   where through hyper's client it more often saw the head and a cut
//!   body. Either way the exchange fails and the backend counts an error.
//! - Some malformed chunked bodies are refused with different limits (at
//!   most 4 KiB per size line, where hyper counts 16 KiB of extensions per
//!   body).
//! - An idle connection the backend closed stays in `CLOSE_WAIT` until it
//!   is next taken or the pool's reaper passes (see [`super::upstream`]).

pub mod body;
pub mod chunked;
pub mod head;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::{Request, Response};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use body::RawBody;

use super::headers::Forwarded;

/// Bytes asked of the socket by a connection's first read of an answer:
/// one allocator class (≤ 4 KiB, kept per worker by `wharf-alloc`), and a
/// whole small response. Each read that fills its space doubles the next,
/// up to `MAX_READ`, so that a large body takes few system calls.
const READ_SIZE: usize = 4096;
const MAX_READ: usize = 64 * 1024;
/// The longest response head read (hyper's client's buffer limit).
const MAX_HEAD: usize = 8192 + 4096 * 100;

/// An HTTP/1.1 connection to a backend, between exchanges or inside one.
#[derive(Debug)]
pub struct RawConn {
    io: TcpStream,
    /// Read from the socket, not yet consumed.
    buf: BytesMut,
    /// Space for the next read.
    read_size: usize,
    /// The last answer was HTTP/1.0 (see [`head::encode_request`]).
    http10: bool,
    /// The last answer's field names (see [`head::Names`]).
    names: head::Names,
}

/// How an exchange failed. The request stays with the caller, who lent it
/// to [`RawConn::send`]: it can go to another backend after either (a
/// replay after `Lost`), with no copy of its head made in case of one
/// (issue 9: about 450 instructions per replayable request).
#[derive(Debug)]
pub enum Failed {
    /// Nothing was written.
    NotSent(String),
    /// The request was written; no usable response head came back.
    Lost(String),
}

impl RawConn {
    /// Boxed: it moves with each request into its response's body and
    /// back to the pool, and is allocated once per connection.
    pub fn new(io: TcpStream) -> Box<RawConn> {
        Box::new(RawConn {
            io,
            buf: BytesMut::new(),
            read_size: READ_SIZE,
            http10: false,
            names: head::Names::default(),
        })
    }

    /// Did the backend close the connection (or send bytes nobody asked
    /// for) while it sat idle? No system call unless the reactor saw the
    /// socket become readable.
    pub fn is_closed(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// An answer ended: may the connection go back to the idle pool
    /// (nothing left over)? Reads start small again, and a buffer grown by
    /// a large body is not kept while idle.
    pub fn rest(&mut self) -> bool {
        if self.read_size > READ_SIZE {
            self.read_size = READ_SIZE;
            if self.buf.is_empty() {
                self.buf = BytesMut::new();
            }
        }
        self.buf.is_empty()
    }

    /// Read more of the answer into the buffer: `Ok(0)` at the end of the
    /// connection.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(self.read_size);
        }
        let space = self.buf.capacity() - self.buf.len();
        // tokio's `poll_read` (under `poll_read_buf`) takes a short read as
        // proof that the socket is drained and forgets its readiness: the
        // next exchange's first read and the idle check then wait for the
        // reactor instead of asking the kernel for an `EAGAIN` (`try_read`
        // keeps the readiness: one `recvfrom` more per request, strace).
        let read = std::task::ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf));
        if matches!(read, Ok(n) if n == space) {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(read)
    }

    /// Send a request without a body and read its response head. The body
    /// is read from the connection as the returned response's body is polled.
    /// `forwarded`: the `X-Forwarded-*` fields, written after `req`'s own.
    ///
    /// The head is written out here, so the exchange keeps only the bytes
    /// and the method, not the request (328 bytes, which the exchange's
    /// future was copied with four times on its way into `attempt`'s state;
    /// issue 9). Not an `async fn`, which would hold its arguments twice
    /// (see `Proxy::handle_on`).
    pub fn send<B>(
        mut self: Box<Self>,
        req: &Request<B>,
        forwarded: &Forwarded,
    ) -> impl Future<Output = Result<Response<RawBody>, Failed>> + Send + 'static {
        let mut out = Vec::new();
        head::encode_request(req, forwarded, &mut out, self.http10);
        let method = req.method().clone();
        async move {
            // The first write tells whether anything went out: on a connection
            // the backend reset while idle, nothing did (`NotSent`).
            let written = poll_fn(|cx| Pin::new(&mut self.io).poll_write(cx, &out)).await;
            match written {
                Ok(0) => return Err(Failed::NotSent("connection to the backend closed".into())),
                Err(e) => return Err(Failed::NotSent(format!("writing to the backend: {e}"))),
                Ok(n) if n < out.len() => {
                    if let Err(e) = self.io.write_all(&out[n..]).await {
                        return Err(Failed::Lost(format!("writing to the backend: {e}")));
                    }
                }
                Ok(_) => {}
            }
            loop {
                match head::parse_response(&mut self.buf, &method, &mut self.names) {
                    Ok(Some(h)) => {
                        self.http10 = h.response.version() == http::Version::HTTP_10;
                        let (parts, ()) = h.response.into_parts();
                        return Ok(Response::from_parts(parts, RawBody::new(self, h.framing, h.keep_alive)));
                    }
                    Ok(None) if self.buf.len() >= MAX_HEAD => {
                        return Err(Failed::Lost("response head too large".into()))
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Failed::Lost(e.to_string())),
                }
                match poll_fn(|cx| self.poll_read(cx)).await {
                    Ok(0) => {
                        let why = "connection closed before the response head was complete";
                        return Err(Failed::Lost(why.into()));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Failed::Lost(format!("reading from the backend: {e}"))),
                }
            }
        }
    }
}
