//! `wharf-demo`: the demo and test backend for wharf, in the spirit of
//! traefik/whoami.
//!
//! It serves HTTP/1.1 and h2c (with upgrades) and offers endpoints that
//! exercise a load balancer: an echo of the request, slow and failing
//! responses, fixed-size, chunked and aborted bodies, a raw upgrade echo and
//! a `CONNECT` echo (any target: the tunnel echoes), a
//! switchable health check and counters. On shutdown it drains gracefully:
//! it optionally keeps serving for a drain delay, then stops accepting, lets
//! in-flight requests finish and closes keep-alive connections.
//!
//! The binary (`src/main.rs`) only parses the command line and wires signals
//! to [`run`], which tests call directly.

#![forbid(unsafe_code)]

mod body;
pub mod cli;
mod handlers;
pub mod parse;
pub mod probe;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use handlers::{Ctx, State};

/// Longest time the server waits for open connections once it stopped
/// accepting.
pub const DRAIN_CAP: Duration = Duration::from_secs(30);

/// Server settings (everything but the listen address).
#[derive(Debug, Clone)]
pub struct Config {
    /// Reported in `x-demo-name` and the echo.
    pub name: String,
    /// Reported in `x-demo-hostname` and the echo.
    pub hostname: String,
    /// Close HTTP/1 connections idle for this long (`None`: never).
    pub keepalive_timeout: Option<Duration>,
    /// Start with `/health` failing.
    pub health_fail: bool,
    /// After the shutdown signal, keep accepting and serving this long.
    pub drain_delay: Duration,
    /// Added before answering every request except `/health*` and
    /// `/_demo/*`: makes one backend uniformly slower than its peers.
    pub delay: Duration,
}

impl Config {
    /// A configuration with the given name and hostname and no options.
    pub fn new(name: impl Into<String>, hostname: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            hostname: hostname.into(),
            keepalive_timeout: None,
            health_fail: false,
            drain_delay: Duration::ZERO,
            delay: Duration::ZERO,
        }
    }
}

/// The machine's hostname: `/proc/sys/kernel/hostname`, else `$HOSTNAME`,
/// else `unknown`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Held by every connection task and upgraded-connection task (one each).
/// The server waits at shutdown until all lifelines are dropped, and a task
/// learns from its lifeline when the server stops.
pub(crate) struct Lifeline(watch::Receiver<bool>);

/// Hands out [`Lifeline`]s; the value is `true` once the server drains.
#[derive(Clone)]
pub(crate) struct Lifelines(watch::Sender<bool>);

impl Lifelines {
    pub(crate) fn take(&self) -> Lifeline {
        Lifeline(self.0.subscribe())
    }

    /// Number of lifelines held, i.e. of open connections.
    fn count(&self) -> usize {
        self.0.receiver_count()
    }
}

impl Lifeline {
    /// Resolves once the server has stopped accepting connections.
    pub(crate) async fn stopping(&mut self) {
        // An error means the server is gone: stop as well.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Serves `listener` until `shutdown` resolves, then drains: keeps serving
/// for `config.drain_delay`, stops accepting, asks open connections to
/// close after their in-flight requests and returns when all are closed
/// (or after [`DRAIN_CAP`]).
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>, config: Config) -> io::Result<()> {
    let local_addr = listener.local_addr()?;
    eprintln!("wharf-demo {} listening on {local_addr}", config.name);

    let server = Server::new(&config);
    server.accept_until(&listener, shutdown).await;
    if !config.drain_delay.is_zero() {
        eprintln!("wharf-demo: drain delay: still serving for {:?}", config.drain_delay);
        server
            .accept_until(&listener, tokio::time::sleep(config.drain_delay))
            .await;
    }
    drop(listener);
    eprintln!(
        "wharf-demo: stopped accepting; draining {} open connection(s)",
        server.lifelines.count()
    );
    server.drain().await;
    Ok(())
}

struct Server {
    builder: auto::Builder<TokioExecutor>,
    state: Arc<State>,
    graceful: GracefulShutdown,
    lifelines: Lifelines,
    keepalive_timeout: Option<Duration>,
}

impl Server {
    fn new(config: &Config) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(idle) = config.keepalive_timeout {
            // Hyper starts the header read timer as soon as it waits for the
            // next request head, so an idle keep-alive connection is closed
            // after `idle`.
            builder.http1().timer(TokioTimer::new()).header_read_timeout(idle);
        }
        Self {
            builder,
            state: Arc::new(State::new(config)),
            graceful: GracefulShutdown::new(),
            lifelines: Lifelines(watch::Sender::new(false)),
            keepalive_timeout: config.keepalive_timeout,
        }
    }

    async fn accept_until(&self, listener: &TcpListener, until: impl Future<Output = ()>) {
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.spawn_connection(stream, peer),
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        eprintln!("wharf-demo: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn spawn_connection(&self, stream: TcpStream, peer: SocketAddr) {
        // Both are taken before spawning so that a shutdown starting right
        // now still sees (and waits for) this connection.
        let watcher = self.graceful.watcher();
        let mut lifeline = self.lifelines.take();
        let lifelines = self.lifelines.clone();
        let builder = self.builder.clone();
        let state = Arc::clone(&self.state);
        let idle = self.keepalive_timeout;
        tokio::spawn(async move {
            if let Some(idle) = idle {
                if !first_byte_within(&stream, idle, &mut lifeline).await {
                    return;
                }
            }
            serve_connection(builder, watcher, stream, peer, state, lifelines).await;
            drop(lifeline);
        });
    }

    /// Stops upgraded connections, asks the others to close once idle, and
    /// waits for all of them (at most [`DRAIN_CAP`]).
    async fn drain(self) {
        let Self {
            graceful, lifelines, ..
        } = self;
        let Lifelines(lifelines) = lifelines;
        lifelines.send_replace(true);
        let all_closed = async {
            graceful.shutdown().await;
            lifelines.closed().await;
        };
        match tokio::time::timeout(DRAIN_CAP, all_closed).await {
            Ok(()) => eprintln!("wharf-demo: all connections closed, exiting"),
            Err(_) => eprintln!(
                "wharf-demo: {} connection(s) still open after {DRAIN_CAP:?}, exiting anyway",
                lifelines.receiver_count()
            ),
        }
    }
}

/// Waits for a fresh connection's first byte, so that a connection that
/// never sends a request is closed after the keep-alive timeout too (hyper's
/// timer only starts once the protocol is detected).
async fn first_byte_within(stream: &TcpStream, idle: Duration, lifeline: &mut Lifeline) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        biased;
        peeked = tokio::time::timeout(idle, stream.peek(&mut byte)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        () = lifeline.stopping() => false,
    }
}

async fn serve_connection(
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    lifelines: Lifelines,
) {
    let service = service_fn(move |req| {
        let ctx = Ctx {
            state: Arc::clone(&state),
            peer,
            lifelines: lifelines.clone(),
        };
        handlers::handle(ctx, req)
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    // Errors here are clients going away or /abort doing its job.
    let _ = watcher.watch(conn).await;
}
