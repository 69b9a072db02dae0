//! `cargo bench --bench metrics`: what the request path pays for metrics and
//! request ids, in nanoseconds per request, single-threaded. Prints a
//! Markdown table. The whole request's figure (callgrind instructions per
//! proxied request, before and after) comes from `bench/instructions.sh`.
//!
//! Rows: recording one request in its pool's per-worker slot (status class,
//! duration and upstream-time histograms, bytes) — the only metrics work per
//! request; generating a request id; checking an incoming one; and, for
//! scale, one scrape (`/metrics` text) of a table with 20 pools of 10
//! backends (control thread, not request path).
//!
//! Figures are the fastest of several rounds, so they show the code's cost
//! rather than the load of the shared machine.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use wharf::metrics::{self, Sources};
use wharf::model::{BackendStatus, Desired, DesiredBackend, DesiredPool, PoolOptions};
use wharf::provider::Discovery;
use wharf::reqid;
use wharf::routing::Router;
use wharf::stats::PoolStats;

/// Nanoseconds per call of `f`: the fastest of 7 rounds of `iters` calls.
fn ns_per(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let stats = PoolStats::with_slots(2);
    let record = ns_per(2_000_000, |i| {
        let status = if i % 50 == 0 {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        };
        let total = Duration::from_micros(200 + i % 5000);
        stats
            .slot(black_box(1))
            .record(black_box((i % 3) as usize), status, total, Some(total / 2), (0, 612));
    });
    let generate = ns_per(2_000_000, |_| {
        black_box(reqid::generate());
    });
    let mut incoming = HeaderMap::new();
    incoming.insert(
        &reqid::HEADER,
        HeaderValue::from_static("7f3a9c1e-5b2d-4e8f-a1c3-0d9e8b7a6f5e"),
    );
    let keep = ns_per(2_000_000, |_| {
        black_box(reqid::ensure(black_box(&mut incoming)));
    });

    let router = Arc::new(Router::default());
    let mut d = Desired::default();
    for p in 0..20 {
        let backends = (0..10)
            .map(|b| DesiredBackend {
                id: format!("{p:02}{b:02}"),
                container: format!("app-{p}-{b}"),
                addr: format!("10.0.{p}.{b}:8080").parse().unwrap(),
                weight: 1,
                status: BackendStatus::Ready,
            })
            .collect();
        d.pools.insert(
            format!("pool{p}"),
            DesiredPool {
                opts: PoolOptions::default(),
                backends,
            },
        );
    }
    router.update(d);
    let src = Sources {
        router,
        discovery: Arc::new(Discovery::default()),
        proxies: Vec::new(),
        tls: None,
        acme: None,
    };
    let size = metrics::encode(&src).len();
    let scrape = ns_per(50, |_| {
        black_box(metrics::encode(&src));
    });

    println!("| per request | ns |");
    println!("| --- | ---: |");
    println!("| record in the pool's worker slot | {record:.1} |");
    println!("| generate a request id | {generate:.1} |");
    println!("| keep a sane incoming request id | {keep:.1} |");
    println!();
    println!(
        "One scrape of 20 pools × 10 backends ({} KiB of text): {:.2} ms (control thread).",
        size / 1024,
        scrape / 1e6
    );
}
