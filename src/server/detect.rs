//! Which protocol a new cleartext connection speaks, from its first bytes.
//!
//! HTTP/2 with prior knowledge (h2c) starts with the fixed preface
//! `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113 §3.4); anything else is
//! HTTP/1.x. The first byte almost always decides (`G`, `P`OST vs `P`RI…);
//! a client that sends a prefix of the preface and stalls is read again when
//! more arrives, until the detection deadline. A connection that sends
//! nothing at all is closed at that deadline — an idle socket must not hold
//! memory and a descriptor for ever.
//!
//! The bytes are read, not peeked, and handed to hyper in front of the socket
//! ([`Prefixed`]): a `Connection: close` request costs one `recv` instead of a
//! `peek` and a `recv` (issue 9; the first read is usually the whole request
//! head). The buffer is allocated only once bytes have arrived, so a silent
//! connection holds none, and it is freed as soon as hyper has taken them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first read's size: hyper's initial read buffer (the vendored patch's
/// 1 KiB), so a usual request head arrives in one `recv`.
const FIRST_READ: usize = 1024;

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

/// Wait for the connection's first bytes, at most `within`; the protocol and
/// the bytes read, which belong in front of the stream ([`Prefixed::new`]).
///
/// The deadline is set by the first read that has to wait: bytes tokio
/// already knows to be there cost no clock read and no timer (issue 9). A
/// connection from a deferring listener (`--defer-accept`, the default)
/// usually has its bytes there, and takes them at once; one from a listener
/// that does not defer always waits once ([`wait_for_first_bytes`]), so
/// there the first try only registers the task's waker, and the deadline is
/// set at once.
pub async fn detect(stream: &mut TcpStream, within: Duration) -> Result<(Protocol, Vec<u8>), DetectError> {
    let mut deadline = None;
    let mut first = Vec::new();
    loop {
        let tried = std::future::poll_fn(|cx| Poll::Ready(read_some(Pin::new(&mut *stream), cx, &mut first))).await;
        let n = match tried {
            Poll::Ready(n) => n?,
            Poll::Pending => {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + within);
                let read = std::future::poll_fn(|cx| read_some(Pin::new(&mut *stream), cx, &mut first));
                timeout_at(deadline, read)
                    .await
                    .map_err(|_| DetectError::Timeout(within))??
            }
        };
        match n {
            0 if first.is_empty() => return Err(DetectError::Closed),
            // Closed after a prefix of the preface: HTTP/1's parser answers
            // it (a 505 from 18 bytes on) or closes.
            0 => return Ok((Protocol::Http1, first)),
            _ => {
                if let Some(p) = classify(&first) {
                    return Ok((p, first));
                }
                // A prefix of the preface: read again when more arrives.
            }
        }
    }
}

/// Forget tokio's guess that a socket `accept` just returned is readable:
/// its first read then waits for the driver's event instead of trying the
/// socket at once.
///
/// tokio marks an accepted stream readable and writable so that its first
/// read skips the wait for the driver. That pays when the client's bytes
/// are already queued (the load is heavier than the proxy can take), but
/// the accept usually wins the race: the connection is complete as soon as
/// the client's ACK arrives, and the request follows it. Under
/// `bench/pinned.sh`'s `Connection: close` load, `perf` counted 0.985 first
/// reads per connection failing with `EAGAIN` (issue 9): a `recv` and the
/// way through tokio and [`detect`] for nothing. nginx, too, reads a new
/// connection only after epoll says it is readable.
///
/// The price is paid when the bytes were there first: a task poll and the
/// detection deadline's timer. callgrind, which slows the proxy so much
/// that they always are, counts about 1,500 more instructions per
/// `Connection: close` request; `bench/pinned.sh` at full speed measured
/// 0-6 % less CPU in close mode (four runs), even with the proxy's core
/// shared so that connections queue.
///
/// A plain function of tokio's own API: `try_io` clears the readiness it
/// was given when the operation reports `WouldBlock`, and this operation
/// always does, without a system call. Call it at once after `accept`, on
/// the thread of a current-thread runtime (every wharf worker's): the
/// driver cannot have delivered a real event for the socket yet, so only
/// the guess is cleared. On a multi-thread runtime the driver could, and
/// clearing it would lose the wake-up.
///
/// Not called for a listener that defers accepts (`--defer-accept`, on by
/// default): its connections arrive with their bytes, and tokio's guess is
/// then right.
pub fn wait_for_first_bytes(stream: &TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

/// Whether a read of `s` would try the socket now (and clears tokio's
/// readiness if it would): what the tests of [`wait_for_first_bytes`] see.
#[cfg(test)]
pub(crate) fn would_try(s: &TcpStream) -> bool {
    let mut tried = false;
    let _ = s.try_io(tokio::io::Interest::READABLE, || {
        tried = true;
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
    tried
}

/// One read appended to `first`, through a stack buffer: a read may find
/// nothing yet (a connection's first read waits for its bytes), and a heap
/// buffer allocated for it would stay with a silent connection (1 KiB each,
/// measured) or cost a `malloc` and a `free` per connection. Not `async`:
/// the stack buffer is never part of the connection's future.
///
/// tokio's `poll_read`, not `try_read`: `poll_read` takes a short read as
/// proof that the socket is drained and clears its readiness, `try_read`
/// only an `EAGAIN`. hyper reads a connection again as soon as it has a
/// request head (to notice a client that hangs up while the response is on
/// its way), and after a `try_read` that read was a `recv` failing with
/// `EAGAIN`: one syscall per `Connection: close` request (issue 9).
fn read_some(stream: Pin<&mut TcpStream>, cx: &mut Context<'_>, first: &mut Vec<u8>) -> Poll<io::Result<usize>> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); FIRST_READ];
    let mut read = ReadBuf::uninit(&mut buf);
    std::task::ready!(stream.poll_read(cx, &mut read))?;
    let got = read.filled();
    // Exactly what was read (a typical request head: 100 bytes or so), not
    // 1 KiB: hyper's read buffer and tokio's task cell are allocated per
    // connection too, and three blocks of one size class per connection
    // overflow glibc's per-thread cache (7 per class) under concurrent
    // connections (issue 9). A later read grows it if the preface is cut.
    if first.capacity() == 0 {
        first.reserve_exact(got.len());
    }
    first.extend_from_slice(got);
    Poll::Ready(Ok(got.len()))
}

/// A stream with bytes already read from it in front: reads return those
/// first, then the stream's own; writes go straight to the stream.
pub struct Prefixed<S> {
    first: Vec<u8>,
    taken: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(first: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed { first, taken: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.first.len() {
            let n = buf.remaining().min(this.first.len() - this.taken);
            buf.put_slice(&this.first[this.taken..this.taken + n]);
            this.taken += n;
            if this.taken == this.first.len() {
                // Given back now, not when the connection ends.
                this.first = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    async fn a_split_preface_is_waited_for_and_every_byte_reaches_the_reader_in_order() {
        let (mut client, mut server) = pair().await;
        client.write_all(&PREFACE[..5]).await.unwrap();
        let (protocol, first) = {
            let detecting = detect(&mut server, Duration::from_secs(5));
            tokio::pin!(detecting);
            // Five bytes of the preface decide nothing: detection reads
            // them and waits for more.
            assert!(futures::poll!(&mut detecting).is_pending());
            client.write_all(&PREFACE[5..]).await.unwrap();
            client.write_all(b"after").await.unwrap();
            client.shutdown().await.unwrap();
            detecting.await.unwrap()
        };
        assert_eq!(protocol, Protocol::H2);
        let mut io = Prefixed::new(first, server);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        let mut want = PREFACE.to_vec();
        want.extend_from_slice(b"after");
        assert_eq!(all, want, "nothing lost, nothing repeated");
    }

    #[tokio::test]
    async fn a_small_reader_gets_the_read_bytes_in_pieces_then_the_stream() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (protocol, first) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(protocol, Protocol::Http1);
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut io = Prefixed::new(first, server);
        let mut piece = [0u8; 4];
        let mut all = Vec::new();
        loop {
            let n = io.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 4);
            all.extend_from_slice(&piece[..n]);
        }
        assert_eq!(all, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn a_preface_prefix_then_close_goes_to_http1_with_its_bytes() {
        let (mut client, mut server) = pair().await;
        client.write_all(&PREFACE[..5]).await.unwrap();
        client.shutdown().await.unwrap();
        let (protocol, first) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(protocol, Protocol::Http1, "HTTP/1's parser answers a truncated preface");
        assert_eq!(first, &PREFACE[..5]);
    }

    #[tokio::test]
    async fn a_read_that_waits_leaves_no_buffer_behind() {
        let (_client, mut server) = pair().await;
        let mut first = Vec::new();
        let read = std::future::poll_fn(|cx| read_some(Pin::new(&mut server), cx, &mut first)).now_or_never();
        assert!(read.is_none(), "nothing arrived: the read waits, got {read:?}");
        assert_eq!(first.capacity(), 0, "a silent connection holds no buffer");
    }

    #[tokio::test]
    async fn after_a_short_first_read_the_socket_is_no_longer_taken_as_readable() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (_, first) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(first, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // The read returned less than it asked for: the socket is drained.
        // Were it still taken as readable, hyper's next read (at once, to
        // notice a client hanging up) would be a `recv` failing with EAGAIN.
        let ready = server.ready(tokio::io::Interest::READABLE).now_or_never();
        assert!(
            ready.is_none(),
            "tokio still takes the drained socket as readable: {ready:?}"
        );
        // And it becomes readable again when the client sends more.
        client.write_all(b"x").await.unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(5), server.ready(tokio::io::Interest::READABLE)).await;
        assert!(ready.expect("readable within 5 s").unwrap().is_readable());
    }

    #[tokio::test]
    async fn wait_for_first_bytes_makes_the_first_read_wait_and_the_bytes_still_wake_it() {
        // What this guards against: tokio takes a socket just accepted as
        // readable, and its first read is a `recv` failing with EAGAIN.
        let (_client, server) = pair().await;
        assert!(
            would_try(&server),
            "tokio no longer takes an accepted socket as readable"
        );

        let (mut client, mut server) = pair().await;
        wait_for_first_bytes(&server);
        assert!(
            !would_try(&server),
            "the first read still tries the socket before any event"
        );
        // The client's bytes then wake the read.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let detected = tokio::time::timeout(Duration::from_secs(5), detect(&mut server, Duration::from_secs(5))).await;
        let (protocol, first) = detected.expect("read within 5 s").unwrap();
        assert_eq!(protocol, Protocol::Http1);
        assert_eq!(first, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_given_up_at_the_deadline() {
        let (_client, mut server) = pair().await;
        let e = detect(&mut server, Duration::from_secs(3)).await.unwrap_err();
        assert!(matches!(e, DetectError::Timeout(_)), "{e}");
    }

    /// The first read finds bytes at once (no deadline is set for it), but
    /// only a prefix of the HTTP/2 preface: the deadline is set by the read
    /// that waits and still ends the wait.
    #[tokio::test]
    async fn bytes_that_came_with_the_connect_then_silence_are_given_up_at_the_deadline() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"PRI * HTTP/2").await.unwrap();
        server.readable().await.unwrap();
        let start = std::time::Instant::now();
        let detected = tokio::time::timeout(Duration::from_secs(10), detect(&mut server, Duration::from_secs(1))).await;
        println!("given up after {:?}", start.elapsed());
        let e = detected.expect("given up, not waiting for ever").unwrap_err();
        assert!(matches!(e, DetectError::Timeout(_)), "{e}");
        assert!(start.elapsed() >= Duration::from_secs(1), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_connection_closed_without_a_byte_is_reported_closed() {
        let (client, mut server) = pair().await;
        drop(client);
        assert!(matches!(
            detect(&mut server, Duration::from_secs(5)).await,
            Err(DetectError::Closed)
        ));
    }
}
