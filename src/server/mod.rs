//! The public listener: accepts connections, serves HTTP/1.1 and h2c through
//! the proxy, and drains on shutdown.
//!
//! As in mini-redis, the caller binds the socket and owns the shutdown
//! signal, so tests can bind `127.0.0.1:0` and stop the server at will.
//!
//! A connection's protocol is found from its first read ([`detect`]), then
//! hyper's HTTP/1 or HTTP/2 server takes the socket with those bytes in
//! front of it ([`detect::Prefixed`]), so the first request costs one `recv`
//! (hyper-util's `auto` builder reads the h2 preface itself and hands the
//! rest back in pieces, which cost a buffer reallocation per connection).
//!
//! Shutdown, step by step: stop accepting (the listener is dropped, so new
//! connections are refused by the kernel), ask every open connection to
//! finish its in-flight requests and close (HTTP/1 stops keep-alive, HTTP/2
//! sends GOAWAY), and wait for them up to the drain timeout. Each connection
//! task holds a clone of one channel sender; the channel closes when the last
//! task ends, which is how the drain knows all are done.

pub mod detect;
pub mod stop;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::Timeouts;
use crate::proxy::Proxy;
use detect::Protocol;
use stop::Stop;

/// Largest request head (request line + headers) accepted from a client.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The HTTP/1 and HTTP/2 server settings, shared by every connection.
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(timeouts: &Timeouts) -> Builders {
        let mut h1 = http1::Builder::new();
        h1
            // Without a timer hyper's header read timeout silently does nothing.
            // The timer runs while a keep-alive connection waits for its next
            // request too, so it is both the slow-client guard and the idle
            // timeout (nginx's client_header_timeout and keepalive_timeout).
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.client_idle)
            .max_buf_size(MAX_HEADER_BYTES)
            // A client's whole `Connection: close` / `keep-alive` is acted
            // on and not stored: wharf would only find and remove it (the
            // hyper patch's 14th change).
            .skip_whole_connection(true)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(512)
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Builders { h1, h2 }
    }

    /// The plain listener's: a finished HTTP/1 connection is closed without
    /// a `shutdown(SHUT_WR)` first (the hyper patch's 18th change): the
    /// task drops the socket right after, and its `close` sends the same
    /// FIN. One system call per `Connection: close` request that nginx
    /// does not make either (issue 9: 9.97 → 8.89 per request). Not for
    /// TLS, which ends with a `close_notify` written by the stream's own
    /// shutdown. An upgraded connection (a WebSocket) is handed over
    /// untouched, so the tunnel's shutdowns still pass half-closes on.
    fn plain(timeouts: &Timeouts) -> Builders {
        let mut builders = Builders::new(timeouts);
        builders.h1.close_without_shutdown(true);
        builders
    }
}

pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, timeouts: Timeouts, shutdown: impl Future<Output = ()>) {
    let builders = Arc::new(Builders::plain(&timeouts));
    let deadline = accept_and_drain(
        listener,
        &proxy,
        "plain",
        timeouts.drain,
        shutdown,
        |stream, peer, ticket| {
            let conn = Connection {
                ticket,
                proxy: Arc::clone(&proxy),
                builders: Arc::clone(&builders),
            };
            // Boxed: the future (most of tokio's 768-byte task cell) was
            // copied five times on its way into the task and three more as
            // the task's stage changed; now a pointer is, for one more
            // allocation from glibc's per-thread cache. callgrind, close
            // mode: about 600-900 instructions fewer per connection (issue 9).
            tokio::spawn(Box::pin(conn.serve(stream, peer, timeouts.client_idle)));
        },
    )
    .await;
    // Upgraded connections (WebSockets) get the rest of the drain time too.
    let tunnels = proxy.tunnels.open();
    if tunnels > 0 {
        info!(tunnels, "waiting for open tunnels");
        if tokio::time::timeout_at(deadline, proxy.tunnels.drained())
            .await
            .is_err()
        {
            warn!(
                open = proxy.tunnels.open(),
                "drain timeout reached; closing open tunnels"
            );
        }
        proxy.tunnels.close_all();
    }
}

/// What a connection's task holds while it lives: its place under
/// `--max-connections`, the shutdown signal, and the token the drain waits
/// for (dropped when the task ends).
struct Ticket {
    _permit: crate::limits::ConnPermit,
    stop: Arc<Stop>,
    _live: mpsc::Sender<()>,
}

/// Accept on `listener` until `shutdown`, handing each admitted connection
/// to `spawn`; then drop the listener (new connections are refused), tell
/// the open ones to finish and wait for them until the drain deadline, which
/// is returned. One loop for the plain and the TLS listener, so that a bound
/// added to one holds for both (the TLS loop was once a copy that escaped
/// `--max-connections`).
async fn accept_and_drain(
    listener: TcpListener,
    proxy: &Proxy,
    kind: &'static str,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
    mut spawn: impl FnMut(TcpStream, SocketAddr, Ticket),
) -> tokio::time::Instant {
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
    // `setsockopt` instead of one per connection (issue 9). `listen::socket`
    // sets it before `listen()`, so that connections queued before this loop
    // starts have it too; this covers listeners bound elsewhere (tests).
    if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        warn!(listener = kind, error = %e, "could not set TCP_NODELAY on the listener");
    }
    // A new socket's first read waits for epoll's event (see
    // `detect::wait_for_first_bytes`), which is safe only where the driver
    // runs on this thread: every wharf worker's runtime. Not where the
    // listener defers accepts (`--defer-accept`): its connections arrive
    // with their first bytes, and the first read should take them at once.
    let clear_guess = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
        && !crate::listen::defers_accept(&listener);
    let stop = Arc::new(Stop::default());
    // Also if this future is dropped before its drain (an aborted task):
    // the open connections are told to finish, not left running.
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let (live_tx, mut live_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // In this order, and no random draw: `shutdown` first, so that
            // a flood of connections cannot keep the loop from stopping.
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer, permit) = match admit(accepted, proxy, kind, clear_guess) {
                    Admission::In(stream, peer, permit) => (stream, peer, permit),
                    Admission::Refused => continue,
                    Admission::Failed => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let ticket = Ticket {
                    _permit: permit,
                    stop: Arc::clone(&stop),
                    _live: live_tx.clone(),
                };
                spawn(stream, peer, ticket);
            }
        }
    }
    drop(listener);
    info!(
        listener = kind,
        timeout_ms = drain.as_millis() as u64,
        "listener closed, draining connections"
    );
    stop.trigger();
    drop(live_tx);
    let deadline = tokio::time::Instant::now() + drain;
    tokio::select! {
        _ = live_rx.recv() => info!(listener = kind, "all connections drained"),
        _ = tokio::time::sleep_until(deadline) => warn!(listener = kind, "drain timeout reached; closing remaining connections"),
    }
    deadline
}

/// Triggers the stop signal when dropped.
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// What became of one `accept`.
enum Admission {
    /// A connection under `--max-connections` (shared by every listener:
    /// plain and TLS alike).
    In(TcpStream, SocketAddr, crate::limits::ConnPermit),
    /// The cap is reached: the connection was closed at once, before it
    /// cost more than its descriptor.
    Refused,
    /// The accept failed (EMFILE and friends): back off instead of spinning.
    Failed,
}

/// A plain function, not an `async fn`: its future was made and polled for
/// every connection (about 90 instructions; issue 9). `clear_guess`: on a
/// current-thread runtime only (see `detect::wait_for_first_bytes`).
fn admit(
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
    proxy: &Proxy,
    kind: &'static str,
    clear_guess: bool,
) -> Admission {
    let (stream, peer) = match accepted {
        Ok(a) => a,
        Err(e) => {
            warn!(listener = kind, error = %e, "accept failed");
            return Admission::Failed;
        }
    };
    let Some(permit) = proxy.conn_limit.try_acquire() else {
        drop(stream);
        if let Some(suppressed) = proxy.client_log.allow(crate::health::now_ms(), 1_000) {
            warn!(%peer, max = proxy.conn_limit.max(), suppressed, "connection refused: --max-connections reached");
        }
        return Admission::Refused;
    };
    if clear_guess {
        detect::wait_for_first_bytes(&stream);
    }
    Admission::In(stream, peer, permit)
}

/// One client connection's task.
struct Connection {
    ticket: Ticket,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
}

impl Connection {
    /// Not an `async fn`, which would keep `self`, the stream and the peer
    /// twice in the task's state (see `Proxy::handle_on`): 104 bytes less
    /// put tokio's task cell for it at 768 bytes instead of 896 (128-byte
    /// aligned), out of the 1 KiB size class that hyper's read buffer also
    /// uses once per connection (issue 9, `Connection: close`). The plain
    /// listener now spawns it boxed, and the box is smaller still.
    ///
    /// Careful: an `async move` block captures only the fields it names. The
    /// ticket's permit (`--max-connections`) and drain token are otherwise
    /// never named, so the ticket is taken apart inside the block and each
    /// is dropped by name at the end: without that they were dropped when
    /// the task was spawned (the drain did not wait, the cap did not hold).
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn serve(
        self,
        mut stream: TcpStream,
        peer: SocketAddr,
        first_bytes_within: Duration,
    ) -> impl Future<Output = ()> + Send {
        let Connection {
            ticket,
            proxy,
            builders,
        } = self;
        async move {
            // Taken apart here, so that the watch can borrow the stop signal
            // while the permit and drain token are given back by name at the
            // end (see above).
            let Ticket {
                _permit: permit,
                stop,
                _live: live,
            } = ticket;
            // One watch on the stop signal for the connection's whole life
            // (see `Stop::watch`).
            let mut watch = std::pin::pin!(stop.watch());
            // The socket is closed before the ticket (its permit) is given
            // back, on every path, as when this was an `async fn`.
            let Some(protocol) = watch
                .as_mut()
                .run(detect::detect(&mut stream, first_bytes_within))
                .await
            else {
                drop(stream);
                return;
            };
            let (protocol, first) = match protocol {
                Ok(p) => p,
                Err(e) => {
                    debug!(%peer, error = %e, "connection closed before a request");
                    drop(stream);
                    return;
                }
            };
            let _open = OpenConnection::new(&proxy, protocol);
            // The request's future is boxed per request: hyper otherwise keeps a
            // `Box` sized for it (about 5 KiB) for the whole life of every
            // connection, idle ones included (issue 9: 10,000 idle connections).
            // Built in its box: `Box::pin` copied all 2.6 KiB of it per
            // request (280 instructions of `memcpy`; see `built_in_box`).
            let handler = Arc::clone(&proxy);
            let svc = service_fn(move |req| built_in_box(|| Arc::clone(&handler).handle_on(req, peer, false)));
            let io = TokioIo::new(detect::Prefixed::new(first, stream));
            // Boxed: hyper's connection state is large, and the task's future is
            // copied several times on its way into the runtime (spawn, completion).
            // HTTP/1's is made in its box (the hyper patch's 16th change).
            match protocol {
                Protocol::Http1 => {
                    let conn = builders.h1.serve_connection_boxed_with_upgrades(io, svc);
                    drive(conn, watch.as_mut(), |c| c.graceful_shutdown()).await
                }
                Protocol::H2 => {
                    let conn = Box::pin(builders.h2.serve_connection(io, svc));
                    drive(conn, watch.as_mut(), |c| c.graceful_shutdown()).await
                }
            }
            // The open-connections gauge, then the ticket, when the
            // connection ends (see above).
            drop(_open);
            drop(permit);
            drop(live);
        }
    }
}

/// `Box::pin(make())`, with `make`'s value built in the box rather than on
/// the stack and then copied in: the box is allocated first, so the
/// compiler can write `make`'s result straight into it (an optimisation,
/// not a guarantee: measured). A future that has not started holds only its
/// arguments, but `Box::pin(future)` copies its whole size (issue 9: the
/// request future, 2.6 KiB, cost 280 instructions of `memcpy` per request;
/// now the arguments, 64). It does not help where the value is moved again
/// inside `make`.
#[inline(always)]
pub(crate) fn built_in_box<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    let uninit = Box::<T>::new_uninit();
    Box::into_pin(Box::write(uninit, make()))
}

/// Counts a client connection as open (by protocol) while it lives.
struct OpenConnection {
    proxy: Arc<Proxy>,
    index: usize,
}

impl OpenConnection {
    fn new(proxy: &Arc<Proxy>, protocol: Protocol) -> OpenConnection {
        let index = usize::from(protocol == Protocol::H2);
        proxy.stats.connections[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection {
            proxy: Arc::clone(proxy),
            index,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.proxy.stats.connections[self.index].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Run a connection to its end; when `stop` turns true, ask it to finish
/// gracefully and keep running it.
async fn drive<C, E>(mut conn: Pin<Box<C>>, stop: Pin<&mut stop::Watch<'_>>, graceful: impl FnOnce(Pin<&mut C>))
where
    C: Future<Output = Result<(), E>>,
{
    if stop.run(conn.as_mut()).await.is_some() {
        return;
    }
    graceful(conn.as_mut());
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Router;
    use tokio::sync::oneshot;

    /// Connect to `listener` through the accept loop (sending `hello`
    /// first) and tell whether a read of the socket it hands on would try
    /// the socket at once (`detect::would_try`).
    async fn first_read_tries_at_once(listener: TcpListener, hello: &[u8]) -> Option<bool> {
        let proxy = Proxy::new(Arc::new(Router::default()), Timeouts::default(), false, Vec::new());
        let addr = listener.local_addr().unwrap();
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let accepting = accept_and_drain(
            listener,
            &proxy,
            "test",
            Duration::from_secs(1),
            async {
                let _ = stop_rx.await;
            },
            |stream, _, _ticket| {
                let _ = seen_tx.send(detect::would_try(&stream));
            },
        );
        let client = async {
            let mut c = TcpStream::connect(addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut c, hello).await.unwrap();
            let tried = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await;
            let _ = stop_tx.send(());
            (c, tried)
        };
        let (_, (_client, tried)) = tokio::join!(accepting, client);
        tried.expect("a connection handed on within 5 s")
    }

    #[tokio::test]
    async fn the_accept_loop_hands_on_sockets_whose_first_read_waits_for_their_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Without the accept loop's clearing, tokio takes the socket as
        // readable and this would be `Some(true)` (see detect's tests).
        assert_eq!(
            first_read_tries_at_once(listener, b"").await,
            Some(false),
            "a read would try the socket before any event"
        );
    }

    #[tokio::test]
    async fn a_deferring_listeners_sockets_are_read_at_once_for_the_bytes_they_came_with() {
        let std_listener = crate::listen::reuseport("127.0.0.1:0".parse().unwrap(), 1, 1)
            .unwrap()
            .remove(0);
        let listener = TcpListener::from_std(std_listener).unwrap();
        // Cleared, the first read would wait for the driver's next turn to
        // be told of bytes that are already there.
        assert_eq!(
            first_read_tries_at_once(listener, b"GET / HTTP/1.1\r\n\r\n").await,
            Some(true),
            "the first read takes the request without waiting"
        );
    }

    /// A socket that counts the calls to its `poll_shutdown`.
    struct CountsShutdowns {
        inner: TcpStream,
        shutdowns: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl tokio::io::AsyncRead for CountsShutdowns {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for CountsShutdowns {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let this = self.get_mut();
            this.shutdowns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Pin::new(&mut this.inner).poll_shutdown(cx)
        }
    }

    /// One `Connection: close` exchange served with `builders`, the socket
    /// dropped when hyper is done: the client's bytes up to the end of the
    /// stream, and how many times hyper shut the socket down.
    async fn close_exchange(builders: &Builders) -> (Vec<u8>, usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let shutdowns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let io = TokioIo::new(CountsShutdowns {
            inner: server,
            shutdowns: Arc::clone(&shutdowns),
        });
        let svc = service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        });
        let conn = builders.h1.serve_connection_boxed_with_upgrades(io, svc);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let served = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(matches!(served, Ok(Ok(()))), "served within 10 s: {served:?}");
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got)).await;
        assert!(matches!(read, Ok(Ok(_))), "an end of stream within 10 s: {read:?}");
        (got, shutdowns.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn the_plain_listener_closes_a_finished_connection_without_shutting_it_down_and_tls_shuts_it_down() {
        let (got, shutdowns) = close_exchange(&Builders::plain(&Timeouts::default())).await;
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            got.ends_with(b"\r\n\r\nok"),
            "the whole response, then the end: {got:?}"
        );
        assert_eq!(shutdowns, 0, "plain: the socket's close ends the stream");
        let (got, shutdowns) = close_exchange(&Builders::new(&Timeouts::default())).await;
        assert!(got.ends_with(b"\r\n\r\nok"), "{got:?}");
        assert_eq!(shutdowns, 1, "TLS's builder still shuts down (its close_notify)");
    }
}
