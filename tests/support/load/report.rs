//! What a [`Load`](super::Load) saw: each request's [`Outcome`], the
//! [`Progress`] counters readable while it runs, and the [`Report`] of a
//! stopped load (counts, latencies, answers per backend, the first failures).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

    /// Whether the backend with hostname `host` answered it (with any status).
    pub fn answered_by(&self, host: &str) -> bool {
        self.backend.as_deref() == Some(host)
    }

    /// `x-demo-hostname` of the answer, `?` without one.
    fn backend_name(&self) -> String {
        self.backend.clone().unwrap_or_else(|| "?".into())
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

impl Progress {
    /// Counts one more request.
    pub(super) fn record(&mut self, o: &Outcome) {
        self.requests += 1;
        if o.is_ok() {
            self.ok += 1;
            *self.by_backend.entry(o.backend_name()).or_default() += 1;
        } else {
            self.not_ok += 1;
        }
    }

    /// Ok answers from the backend with hostname `host` so far.
    pub fn answered_by(&self, host: &str) -> u64 {
        self.by_backend.get(host).copied().unwrap_or(0)
    }
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
    /// The report of `outcomes` (in any order; kept sorted by the time they
    /// were sent), describing the first `keep_failures` failures in full.
    pub(super) fn new(
        mut outcomes: Vec<Outcome>,
        keep_failures: usize,
        client_resends: u64,
        duration: Duration,
        start: Instant,
        start_unix_ns: i128,
    ) -> Report {
        outcomes.sort_by_key(|o| (o.sent, o.worker));
        let mut report = Report {
            requests: outcomes.len() as u64,
            ok: 0,
            failed: 0,
            transport_errors: 0,
            client_resends,
            failures: Vec::new(),
            by_backend: BTreeMap::new(),
            outcomes: Vec::new(),
            duration,
            start,
            start_unix_ns,
        };
        for o in &outcomes {
            if o.is_ok() {
                report.ok += 1;
                *report.by_backend.entry(o.backend_name()).or_default() += 1;
            } else {
                if o.is_transport_error() {
                    report.transport_errors += 1;
                } else {
                    report.failed += 1;
                }
                if report.failures.len() < keep_failures {
                    report.failures.push(o.describe());
                }
            }
        }
        report.outcomes = outcomes;
        report
    }

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

    /// The wall-clock time in Unix nanoseconds of an offset from the load's
    /// start (e.g. an outcome's `done`), to compare with Docker's timestamps.
    pub fn unix_ns_at(&self, offset: Duration) -> i128 {
        self.start_unix_ns + offset.as_nanos() as i128
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

    /// [`Report::print`], then wharf's retry count (`wharf_retries_total`) during the load.
    pub fn print_with_retries(&self, label: &str, retries: u64) {
        self.print(label);
        eprintln!("[{label}] wharf retries: {retries} (wharf_retries_total)");
    }

    /// Panics, with the counts and the first failures, unless every request was ok.
    pub fn assert_no_failures(&self, what: &str) {
        assert_eq!(
            self.not_ok(),
            0,
            "{what}: {} of {} requests failed ({} non-2xx, {} transport errors); first ones:\n{}",
            self.not_ok(),
            self.requests,
            self.failed,
            self.transport_errors,
            self.failures.join("\n")
        );
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
