//! A load client: N concurrent workers, each with its own keep-alive
//! HTTP/1.1 connection to wharf, sending a paced mix of GETs and POSTs until
//! stopped, and recording every single outcome. The draining tests run it
//! with GETs and POSTs, the health and shutdown tests with steady GETs
//! ([`LoadOpts::gets`]).
//!
//! * Each worker owns one raw hyper `http1` connection (reopened when it
//!   closes) and sends one request at a time at `rate / workers` requests
//!   per second; a slow answer slows only its own worker.
//! * Every request carries a unique `x-demo-id` (`<run>-<worker>-<seq>`, with
//!   a `g`/`p` prefix for GET/POST). A POST goes to `post_path` (the demo's
//!   `/echo-body`) with a small body naming its id; the echoed body must come
//!   back byte for byte or the request counts as failed.
//! * An outcome is *ok* (2xx and, for POST, the body echoed), *failed* (any
//!   other status or a wrong body; status, `x-wharf-error` and body are kept)
//!   or a *transport error* (connect/IO error or the client's own timeout).
//!   Which backend answered comes from `x-demo-hostname`.
//! * The only thing the client does on its own is what every keep-alive
//!   client does: a request that hyper hands back *unsent* because the
//!   reused connection turned out closed is sent again on a new connection
//!   (counted in `client_resends`; wharf never saw the first try).
//! * While it runs, [`Load::progress`] has the counters and
//!   [`Load::outcomes`] every request finished so far; [`Load::stop`] returns
//!   the [`Report`] (see [`report`]).
//!
//! ```ignore
//! let load = Load::start(wharf.listen, "any.test", LoadOpts::default());
//! // … make containers come and go …
//! let report = load.stop().await;
//! report.print("scale up and down");
//! report.assert_no_failures("scale up and down");
//! ```

pub mod report;

pub use self::report::{percentile, Outcome, Progress, Report};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::http::{poll, HTTP_TIMEOUT};
use super::unix_ns;

/// How to load wharf.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// Concurrent workers, one connection each.
    pub workers: usize,
    /// Target total rate, requests per second.
    pub rate: f64,
    /// Share of POSTs, 0.0 (GET only) to 1.0 (POST only).
    pub post_share: f64,
    /// Path of the GETs.
    pub get_path: String,
    /// Path of the POSTs (must echo the body, like the demo's `/echo-body`).
    pub post_path: String,
    /// Client-side timeout of one request (connect, send, whole response).
    pub timeout: Duration,
    /// How many failures are kept in full in [`Report::failures`].
    pub keep_failures: usize,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            workers: 16,
            rate: 300.0,
            post_share: 0.5,
            get_path: "/load".to_string(),
            post_path: "/echo-body".to_string(),
            timeout: Duration::from_secs(20),
            keep_failures: 20,
        }
    }
}

impl LoadOpts {
    /// Steady GETs of `/` only: `workers` workers, each sending at most one
    /// request per `every`, with the 10 s timeout of the other HTTP helpers.
    pub fn gets(workers: usize, every: Duration) -> LoadOpts {
        LoadOpts {
            workers,
            rate: workers as f64 / every.as_secs_f64(),
            post_share: 0.0,
            get_path: "/".to_string(),
            timeout: HTTP_TIMEOUT,
            ..LoadOpts::default()
        }
    }
}

struct Shared {
    addr: SocketAddr,
    host: HeaderValue,
    opts: LoadOpts,
    run: String,
    start: Instant,
    live: Mutex<Live>,
    resends: AtomicUsize,
}

/// What the workers have done so far, under one lock so the counters and
/// the list always agree.
#[derive(Default)]
struct Live {
    progress: Progress,
    /// Every finished request, in the order they finished.
    outcomes: Vec<Outcome>,
}

/// A running load; [`Load::stop`] ends it and returns the [`Report`].
pub struct Load {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    start_unix_ns: i128,
}

impl Load {
    /// Starts `opts.workers` workers sending to `addr` with `Host: host`.
    pub fn start(addr: SocketAddr, host: &str, opts: LoadOpts) -> Load {
        assert!(opts.workers > 0 && opts.rate > 0.0, "bad load options {opts:?}");
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let run = format!("{}.{}", std::process::id(), RUN.fetch_add(1, Ordering::Relaxed));
        let start = Instant::now();
        let start_unix_ns = unix_ns();
        let shared = Arc::new(Shared {
            addr,
            host: HeaderValue::from_str(host).expect("host header"),
            opts,
            run,
            start,
            live: Mutex::default(),
            resends: AtomicUsize::new(0),
        });
        let (stop, rx) = watch::channel(false);
        let workers = (0..shared.opts.workers)
            .map(|i| tokio::spawn(worker(Arc::clone(&shared), i, rx.clone())))
            .collect();
        eprintln!(
            "load: started {} workers at {:.0} req/s total, {:.0}% POST, to {addr}",
            shared.opts.workers,
            shared.opts.rate,
            shared.opts.post_share * 100.0
        );
        Load {
            shared,
            stop,
            workers,
            start_unix_ns,
        }
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    /// The start instant (offsets in outcomes are from here).
    pub fn start_instant(&self) -> Instant {
        self.shared.start
    }

    /// Counters so far.
    pub fn progress(&self) -> Progress {
        self.shared.live.lock().unwrap().progress.clone()
    }

    /// Every request finished so far, in the order they finished (so
    /// `outcomes()[n..]` are the ones after the first `n`).
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.shared.live.lock().unwrap().outcomes.clone()
    }

    /// Waits up to `deadline` until the load has finished `more` requests
    /// beyond the first `from`; returns the counters then.
    pub async fn wait_requests(&self, from: u64, more: u64, deadline: Duration, what: &str) -> Progress {
        poll(what, deadline, || async {
            let p = self.progress();
            if p.requests >= from + more {
                Ok(p)
            } else {
                Err(format!("{} of {more} requests", p.requests - from.min(p.requests)))
            }
        })
        .await
        .0
    }

    /// Waits up to `deadline` until the load has finished `more` requests
    /// beyond the ones finished now; returns the counters then.
    pub async fn wait_more(&self, more: u64, deadline: Duration, what: &str) -> Progress {
        self.wait_requests(self.progress().requests, more, deadline, what).await
    }

    /// Waits up to `deadline` for the first request, among the ones finished
    /// after the first `from`, that the backend with hostname `host` answered
    /// (with any status); returns it.
    pub async fn wait_answer_from(&self, host: &str, from: u64, deadline: Duration, what: &str) -> Outcome {
        poll(what, deadline, || async {
            self.outcomes()[from as usize..]
                .iter()
                .find(|o| o.answered_by(host))
                .cloned()
                .ok_or("not yet")
        })
        .await
        .0
    }

    /// Waits (60 s at most) until the load has had ok answers from every one
    /// of `hostnames` (the demos' `x-demo-hostname`).
    pub async fn wait_answered_by(&self, hostnames: &[String], what: &str) {
        poll(what, Duration::from_secs(60), || async {
            let p = self.progress();
            let missing: Vec<&String> = hostnames.iter().filter(|h| !p.by_backend.contains_key(*h)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("no answer yet from {missing:?}; so far {:?}", p.by_backend))
            }
        })
        .await;
    }

    /// Stops the workers (each finishes the request it is in), and reports.
    pub async fn stop(self) -> Report {
        let _ = self.stop.send(true);
        for w in self.workers {
            w.await.expect("load worker panicked");
        }
        let duration = self.shared.start.elapsed();
        let outcomes = std::mem::take(&mut self.shared.live.lock().unwrap().outcomes);
        Report::new(
            outcomes,
            self.shared.opts.keep_failures,
            self.shared.resends.load(Ordering::Relaxed) as u64,
            duration,
            self.shared.start,
            self.start_unix_ns,
        )
    }
}

async fn worker(shared: Arc<Shared>, index: usize, mut stop: watch::Receiver<bool>) {
    let opts = &shared.opts;
    let period = Duration::from_secs_f64(opts.workers as f64 / opts.rate);
    // Spread the workers over one period so the requests don't come in bursts.
    let first = tokio::time::Instant::from_std(shared.start) + period.mul_f64(index as f64 / opts.workers as f64);
    let mut ticker = tokio::time::interval_at(first, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        seq += 1;
        // Deterministic mix: the running share of POSTs tracks `post_share`.
        let post = (seq as f64 * opts.post_share).floor() > ((seq - 1) as f64 * opts.post_share).floor();
        let outcome = one(&shared, &mut conn, index, seq, post).await;
        let mut live = shared.live.lock().unwrap();
        live.progress.record(&outcome);
        live.outcomes.push(outcome);
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn one(
    shared: &Shared,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    worker: usize,
    seq: u64,
    post: bool,
) -> Outcome {
    let opts = &shared.opts;
    let (method, path) = if post {
        (Method::POST, opts.post_path.as_str())
    } else {
        (Method::GET, opts.get_path.as_str())
    };
    let id = format!("{}{}-{worker}-{seq}", if post { "p" } else { "g" }, shared.run);
    let body = if post {
        Bytes::from(format!("body of {id}\n"))
    } else {
        Bytes::new()
    };
    let mut outcome = Outcome {
        worker,
        seq,
        method: if post { "POST" } else { "GET" },
        id: id.clone(),
        sent: shared.start.elapsed(),
        done: Duration::ZERO,
        status: None,
        backend: None,
        wharf_error: None,
        detail: None,
    };
    let build = || {
        let mut r = Request::new(Full::new(body.clone()));
        *r.method_mut() = method.clone();
        *r.uri_mut() = path.parse().expect("load path");
        let h = r.headers_mut();
        h.insert(HOST, shared.host.clone());
        h.insert("x-demo-id", HeaderValue::from_str(&id).expect("id header"));
        r
    };
    let work = async {
        // At most one resend, and only of a request hyper gave back unsent.
        for _ in 0..2 {
            let reused = conn.as_ref().is_some_and(|c| !c.is_closed());
            if !reused {
                *conn = Some(connect(shared.addr).await?);
            }
            let sender = conn.as_mut().expect("connection");
            if sender.ready().await.is_err() {
                *conn = None;
                if reused {
                    continue; // closed while idle: nothing was sent
                }
                return Err("new connection closed before the request".to_string());
            }
            outcome.sent = shared.start.elapsed();
            match sender.try_send_request(build()).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let bytes = match body.collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(e) => {
                            *conn = None;
                            return Err(format!("reading the body: {e}"));
                        }
                    };
                    return Ok((parts, bytes));
                }
                Err(mut e) => {
                    *conn = None;
                    if e.take_message().is_some() && reused {
                        shared.resends.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    return Err(format!("{}: {}", if reused { "reused" } else { "new" }, e.into_error()));
                }
            }
        }
        Err("the connection closed twice before the request was written".to_string())
    };
    let result = tokio::time::timeout(opts.timeout, work).await;
    outcome.done = shared.start.elapsed();
    match result {
        Err(_) => {
            *conn = None;
            outcome.detail = Some(format!("client timeout after {:?}", opts.timeout));
        }
        Ok(Err(e)) => outcome.detail = Some(e),
        Ok(Ok((parts, bytes))) => {
            let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            outcome.status = Some(parts.status.as_u16());
            outcome.backend = header("x-demo-hostname");
            outcome.wharf_error = header("x-wharf-error");
            let text = String::from_utf8_lossy(&bytes);
            if !parts.status.is_success() {
                outcome.detail = Some(format!("body {:?}", text.chars().take(200).collect::<String>()));
            } else if post && bytes != body {
                outcome.detail = Some(format!(
                    "POST body not echoed: sent {:?}, got {:?}",
                    String::from_utf8_lossy(&body),
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    outcome
}
