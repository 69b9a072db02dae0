//! Request-path statistics per pool: what `/metrics`, `/api/state` and the
//! dashboard show about requests, kept so that recording costs a handful of
//! uncontended atomic adds.
//!
//! A pool's [`PoolStats`] holds one [`Slot`] per worker (a request is recorded
//! in the slot of the worker that serves it: workers are per-core
//! current-thread runtimes, see [`crate::app`]). Slots are cache-line
//! aligned, so two workers never write the same line and no lock is shared on
//! the request path; a scrape sums the slots ([`PoolStats::totals`]). When
//! there are more workers than slots two workers share a slot: still correct
//! (the adds are atomic), only slower.
//!
//! The stats of a pool survive routing swaps: the routing registry hands the
//! same `Arc` to every table that has a pool of that name, and drops it when
//! the pool leaves every table (so a gone pool's series leave `/metrics`).
//!
//! Histograms are fixed-bucket (Prometheus' classic histograms): one bucket
//! counter and the sum per observation. Times are microseconds here and
//! seconds in `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

/// Upper bounds of the latency buckets, in microseconds (100 µs … 10 s).
pub const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// The method classes requests are counted by (a bounded label).
pub const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "other"];

/// Status classes: 1xx … 5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why a request went to another backend (see [`crate::retry::Failure`]).
pub const RETRY_CAUSES: [&str; 2] = ["not_sent", "lost"];

/// Index of `m` in [`METHODS`].
pub fn method_class(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        _ => 5,
    }
}

/// Index of `s` in [`CLASSES`].
pub fn status_class(s: StatusCode) -> usize {
    (s.as_u16() / 100).clamp(1, 5) as usize - 1
}

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn add_to(&self, t: &mut HistogramTotals) {
        for (acc, b) in t.buckets.iter_mut().zip(&self.buckets) {
            *acc += b.load(Ordering::Relaxed);
        }
        t.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// A histogram's figures summed over slots.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistogramTotals {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    pub buckets: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl HistogramTotals {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// `(upper bound in seconds, count in that bucket alone)`, `+Inf` last:
    /// what `prometheus-client`'s encoder takes (it makes them cumulative).
    pub fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        BOUNDS_US
            .iter()
            .map(|b| *b as f64 / 1e6)
            .chain([f64::INFINITY])
            .zip(self.buckets)
            .collect()
    }

    /// The `q` quantile (0..=1) in milliseconds, estimated as Prometheus'
    /// `histogram_quantile` does: linear within the bucket. `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            if *n > 0 && (below + n) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                let Some(&hi) = BOUNDS_US.get(i) else {
                    return Some(lo as f64 / 1e3);
                };
                let within = (rank - below as f64) / *n as f64;
                return Some((lo as f64 + (hi - lo) as f64 * within) / 1e3);
            }
            below += n;
        }
        None
    }
}

/// One worker's counters for one pool: a cache line (or a few) of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Slot {
    /// By [`METHODS`] × [`CLASSES`]; wharf's own answers (502, 503, 504)
    /// count here too, in their class.
    pub requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    /// Request received → response head: the backend's as it came for a
    /// proxied request (a few µs of header work after it are not counted),
    /// wharf's own answer otherwise.
    pub duration: Histogram,
    /// Request sent to the backend → its response head (the answering
    /// attempt). A first attempt that did not wait for a slot counts from
    /// the request's arrival (or its admission by a policy): the same few
    /// µs of routing for every backend, one clock read fewer.
    pub upstream: Histogram,
    /// Declared body sizes (Content-Length); streamed bodies count 0.
    pub request_bytes: AtomicU64,
    pub response_bytes: AtomicU64,
    /// By [`RETRY_CAUSES`].
    pub retries: [AtomicU64; RETRY_CAUSES.len()],
    /// A retry was allowed but the pool's retry budget said no.
    pub budget_exhausted: AtomicU64,
    /// Requests sent in panic mode.
    pub panics: AtomicU64,
}

impl Slot {
    /// Count one request: its classes, time, upstream time and sizes.
    pub fn record(
        &self,
        method: usize,
        status: StatusCode,
        total: Duration,
        upstream: Option<Duration>,
        bytes: (u64, u64),
    ) {
        self.requests[method][status_class(status)].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(total);
        if let Some(u) = upstream {
            self.upstream.observe(u);
        }
        if bytes.0 > 0 {
            self.request_bytes.fetch_add(bytes.0, Ordering::Relaxed);
        }
        if bytes.1 > 0 {
            self.response_bytes.fetch_add(bytes.1, Ordering::Relaxed);
        }
    }
}

/// The bytes of a body whose length was not declared (chunked, HTTP/2
/// without `content-length`), counted as its frames pass and added to the
/// pool's slot when the body is dropped: at its end, or when either side
/// gave up. Declared lengths are counted at the head instead (cheaper).
#[derive(Debug)]
pub struct StreamedBytes {
    stats: Arc<PoolStats>,
    worker: usize,
    response: bool,
    n: u64,
}

impl StreamedBytes {
    /// Counts into `stats`' slot of `worker`, as response or request bytes.
    pub fn new(stats: Arc<PoolStats>, worker: usize, response: bool) -> StreamedBytes {
        StreamedBytes {
            stats,
            worker,
            response,
            n: 0,
        }
    }

    pub fn add(&mut self, n: usize) {
        self.n += n as u64;
    }
}

impl Drop for StreamedBytes {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        let slot = self.stats.slot(self.worker);
        let total = if self.response {
            &slot.response_bytes
        } else {
            &slot.request_bytes
        };
        total.fetch_add(self.n, Ordering::Relaxed);
    }
}

/// A pool's slots summed: what a scrape reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub requests: [[u64; CLASSES.len()]; METHODS.len()],
    pub duration: HistogramTotals,
    pub upstream: HistogramTotals,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub retries: [u64; RETRY_CAUSES.len()],
    pub budget_exhausted: u64,
    pub panics: u64,
}

impl Totals {
    /// All requests, and those answered 5xx.
    pub fn requests_and_errors(&self) -> (u64, u64) {
        let all = self.requests.iter().flatten().sum();
        let errors = self.requests.iter().map(|by_class| by_class[4]).sum();
        (all, errors)
    }
}

/// The per-worker slots of one pool.
#[derive(Debug)]
pub struct PoolStats {
    slots: Box<[Slot]>,
}

impl Default for PoolStats {
    /// One slot per core (at most 64): the workers' default count.
    fn default() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(64);
        PoolStats::with_slots(n)
    }
}

impl PoolStats {
    pub fn with_slots(n: usize) -> PoolStats {
        PoolStats {
            slots: (0..n.max(1)).map(|_| Slot::default()).collect(),
        }
    }

    /// Worker `worker`'s slot.
    #[inline]
    pub fn slot(&self, worker: usize) -> &Slot {
        &self.slots[worker % self.slots.len()]
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for s in self.slots.iter() {
            for (row, srow) in t.requests.iter_mut().zip(&s.requests) {
                for (acc, a) in row.iter_mut().zip(srow) {
                    *acc += load(a);
                }
            }
            s.duration.add_to(&mut t.duration);
            s.upstream.add_to(&mut t.upstream);
            t.request_bytes += load(&s.request_bytes);
            t.response_bytes += load(&s.response_bytes);
            for (acc, a) in t.retries.iter_mut().zip(&s.retries) {
                *acc += load(a);
            }
            t.budget_exhausted += load(&s.budget_exhausted);
            t.panics += load(&s.panics);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_of_different_workers_are_summed_and_a_worker_beyond_the_slots_wraps() {
        let p = PoolStats::with_slots(2);
        let ms = Duration::from_millis;
        p.slot(0).record(0, StatusCode::OK, ms(3), Some(ms(2)), (10, 100));
        p.slot(1).record(2, StatusCode::BAD_GATEWAY, ms(30), None, (0, 20));
        p.slot(2).record(0, StatusCode::NOT_FOUND, ms(1), None, (0, 0));
        let t = p.totals();
        assert_eq!(t.requests[0][1], 1, "GET 2xx");
        assert_eq!(t.requests[2][4], 1, "POST 5xx");
        assert_eq!(t.requests[0][3], 1, "GET 4xx, from worker 2 in slot 0");
        assert_eq!(t.requests_and_errors(), (3, 1));
        assert_eq!(t.duration.count(), 3);
        assert_eq!(t.upstream.count(), 1);
        assert_eq!(t.duration.sum_us, 34_000);
        assert_eq!((t.request_bytes, t.response_bytes), (10, 120));
    }

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_is_not_below_it() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100)); // bucket ≤100µs
        h.observe(Duration::from_micros(101)); // ≤250µs
        h.observe(Duration::from_secs(11)); // +Inf
        let mut t = HistogramTotals::default();
        h.add_to(&mut t);
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[1], 1);
        assert_eq!(t.buckets[BOUNDS_US.len()], 1);
        let b = t.buckets_seconds();
        assert_eq!(b[0], (0.0001, 1));
        assert_eq!(b[1], (0.00025, 1));
        assert_eq!(b[2], (0.0005, 0));
        assert_eq!(*b.last().unwrap(), (f64::INFINITY, 1));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let h = Histogram::default();
        for _ in 0..100 {
            h.observe(Duration::from_micros(2_000)); // bucket 1ms..2.5ms
        }
        let mut t = HistogramTotals::default();
        h.add_to(&mut t);
        let p50 = t.quantile_ms(0.5).unwrap();
        assert!((p50 - 1.75).abs() < 1e-9, "{p50}");
        assert_eq!(t.quantile_ms(1.0), Some(2.5));
        assert_eq!(HistogramTotals::default().quantile_ms(0.5), None);
    }

    #[test]
    fn method_and_status_classes_are_bounded() {
        assert_eq!(METHODS[method_class(&Method::GET)], "GET");
        assert_eq!(METHODS[method_class(&Method::from_bytes(b"PURGE").unwrap())], "other");
        assert_eq!(CLASSES[status_class(StatusCode::SWITCHING_PROTOCOLS)], "1xx");
        assert_eq!(CLASSES[status_class(StatusCode::GATEWAY_TIMEOUT)], "5xx");
    }
}
