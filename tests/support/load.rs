//! A load client for the draining tests: N concurrent workers, each with its
//! own keep-alive HTTP/1.1 connection to wharf, sending a paced mix of GETs
//! and POSTs until stopped, and recording every single outcome.
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
//!
//! ```ignore
//! let load = Load::start(wharf.listen, "any.test", LoadOpts::default());
//! // … make containers come and go …
//! let report = load.stop().await;
//! report.print("scale up and down");
//! assert_eq!(report.not_ok(), 0);
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// One request and what became of it. Times are offsets from the start of the load.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub worker: usize,
    pub seq: u64,
    pub method: &'static str,
    /// The `x-demo-id` it carried.
    pub id: String,
    /// Just before the request was written (after the connection was ready).
    pub sent: Duration,
    /// When the whole response had been read (or the error happened).
    pub done: Duration,
    /// The HTTP status, `None` on a transport error.
    pub status: Option<u16>,
    /// `x-demo-hostname` of the answer.
    pub backend: Option<String>,
    /// `x-wharf-error` of the answer.
    pub wharf_error: Option<String>,
    /// For failures and transport errors: what went wrong (status, header, body or error).
    pub detail: Option<String>,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        self.detail.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn is_transport_error(&self) -> bool {
        self.status.is_none()
    }

    pub fn is_failed(&self) -> bool {
        !self.is_ok() && !self.is_transport_error()
    }

    pub fn latency(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }

    /// A one-line description for failure lists.
    pub fn describe(&self) -> String {
        format!(
            "{} {} (worker {}) sent at {:.3} s, done at {:.3} s: status {} x-wharf-error {} backend {}: {}",
            self.method,
            self.id,
            self.worker,
            self.sent.as_secs_f64(),
            self.done.as_secs_f64(),
            self.status.map_or("-".to_string(), |s| s.to_string()),
            self.wharf_error.as_deref().unwrap_or("-"),
            self.backend.as_deref().unwrap_or("-"),
            self.detail.as_deref().unwrap_or("ok"),
        )
    }
}

/// Counters readable while the load runs.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub requests: u64,
    pub ok: u64,
    /// Failed plus transport errors.
    pub not_ok: u64,
    /// Ok answers per `x-demo-hostname`.
    pub by_backend: BTreeMap<String, u64>,
}

/// Everything a stopped load saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub requests: u64,
    pub ok: u64,
    /// Answers with a non-2xx status (or a POST body that did not come back).
    pub failed: u64,
    /// Connect/IO errors and client timeouts.
    pub transport_errors: u64,
    /// Requests sent again because a reused connection was found closed before they were written.
    pub client_resends: u64,
    /// The first `keep_failures` failures and transport errors, described.
    pub failures: Vec<String>,
    /// Ok answers per `x-demo-hostname`.
    pub by_backend: BTreeMap<String, u64>,
    /// Every request, ordered by the time it was sent.
    pub outcomes: Vec<Outcome>,
    /// From start to the last worker's end.
    pub duration: Duration,
    /// When the load started (monotonic and wall clock, taken together).
    pub start: Instant,
    pub start_unix_ns: i128,
}

impl Report {
    /// Failed answers plus transport errors.
    pub fn not_ok(&self) -> u64 {
        self.failed + self.transport_errors
    }

    /// The offset from the load's start of a monotonic instant.
    pub fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    /// The offset from the load's start of a wall-clock time in Unix
    /// nanoseconds (e.g. a Docker event's `timeNano`); 0 if before the start.
    pub fn offset_unix_ns(&self, unix_ns: i128) -> Duration {
        Duration::from_nanos(u64::try_from(unix_ns - self.start_unix_ns).unwrap_or(0))
    }

    /// Latency percentile (0.0..=1.0) of all requests.
    pub fn latency(&self, q: f64) -> Duration {
        let mut v: Vec<Duration> = self.outcomes.iter().map(Outcome::latency).collect();
        v.sort();
        percentile(&v, q)
    }

    /// Everything that was not ok.
    pub fn not_ok_outcomes(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| !o.is_ok())
    }

    /// Prints the counts, the rate, latencies, backends and the first failures.
    pub fn print(&self, label: &str) {
        let secs = self.duration.as_secs_f64().max(1e-9);
        let posts = self.outcomes.iter().filter(|o| o.method == "POST").count();
        eprintln!(
            "[{label}] load: {} requests ({} GET, {posts} POST) in {:.1} s ({:.0} req/s): ok {}, failed {}, \
             transport errors {}, client resends {}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.requests,
            self.outcomes.len() - posts,
            secs,
            self.requests as f64 / secs,
            self.ok,
            self.failed,
            self.transport_errors,
            self.client_resends,
            self.latency(0.5).as_secs_f64() * 1e3,
            self.latency(0.99).as_secs_f64() * 1e3,
            self.latency(1.0).as_secs_f64() * 1e3,
        );
        eprintln!("[{label}] load: ok answers by backend: {:?}", self.by_backend);
        for f in &self.failures {
            eprintln!("[{label}] load: not ok: {f}");
        }
        let more = self.not_ok() as usize - self.failures.len().min(self.not_ok() as usize);
        if more > 0 {
            eprintln!("[{label}] load: … and {more} more not ok");
        }
    }
}

/// The `q` quantile of sorted `v` (nearest rank); zero if empty.
pub fn percentile<T: Copy + Default>(v: &[T], q: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

struct Shared {
    addr: SocketAddr,
    host: HeaderValue,
    opts: LoadOpts,
    run: String,
    start: Instant,
    progress: Mutex<Progress>,
    resends: AtomicUsize,
}

/// A running load; [`Load::stop`] ends it and returns the [`Report`].
pub struct Load {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<Vec<Outcome>>>,
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
            progress: Mutex::new(Progress::default()),
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
        self.shared.progress.lock().unwrap().clone()
    }

    /// Stops the workers (each finishes the request it is in), and reports.
    pub async fn stop(self) -> Report {
        let _ = self.stop.send(true);
        let mut outcomes = Vec::new();
        for w in self.workers {
            outcomes.extend(w.await.expect("load worker panicked"));
        }
        let duration = self.shared.start.elapsed();
        outcomes.sort_by_key(|o| (o.sent, o.worker));
        let mut report = Report {
            requests: outcomes.len() as u64,
            ok: 0,
            failed: 0,
            transport_errors: 0,
            client_resends: self.shared.resends.load(Ordering::Relaxed) as u64,
            failures: Vec::new(),
            by_backend: BTreeMap::new(),
            outcomes: Vec::new(),
            duration,
            start: self.shared.start,
            start_unix_ns: self.start_unix_ns,
        };
        for o in &outcomes {
            if o.is_ok() {
                report.ok += 1;
                *report
                    .by_backend
                    .entry(o.backend.clone().unwrap_or_else(|| "?".into()))
                    .or_default() += 1;
            } else {
                if o.is_transport_error() {
                    report.transport_errors += 1;
                } else {
                    report.failed += 1;
                }
                if report.failures.len() < self.shared.opts.keep_failures {
                    report.failures.push(o.describe());
                }
            }
        }
        report.outcomes = outcomes;
        report
    }
}

/// Wall-clock time in Unix nanoseconds.
pub fn unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

async fn worker(shared: Arc<Shared>, index: usize, mut stop: watch::Receiver<bool>) -> Vec<Outcome> {
    let opts = &shared.opts;
    let period = Duration::from_secs_f64(opts.workers as f64 / opts.rate);
    // Spread the workers over one period so the requests don't come in bursts.
    let first = tokio::time::Instant::from_std(shared.start) + period.mul_f64(index as f64 / opts.workers as f64);
    let mut ticker = tokio::time::interval_at(first, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut outcomes = Vec::new();
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
        {
            let mut p = shared.progress.lock().unwrap();
            p.requests += 1;
            if outcome.is_ok() {
                p.ok += 1;
                *p.by_backend
                    .entry(outcome.backend.clone().unwrap_or_else(|| "?".into()))
                    .or_default() += 1;
            } else {
                p.not_ok += 1;
            }
        }
        outcomes.push(outcome);
    }
    outcomes
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
