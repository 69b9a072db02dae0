//! `cargo bench --bench balance`: the cost of one `select()` per algorithm and
//! pool size, in nanoseconds, single-threaded, with the eligibility check the
//! proxy uses. Prints a Markdown table.
//!
//! Figures are the fastest of several rounds, so they show the cost of the
//! algorithm rather than the load of the machine.
//!
//! Each pool has weights 1, 2, 3, 1, 2, 3, … (all 1 where the row says so), a
//! few requests in flight and latency estimates on every backend; every call
//! has another client address, and in the "cookie hit" row another valid
//! sticky cookie. "During slow start" rows are asked while every backend is
//! still ramping (a 60 s window), when weights are computed at each pick.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf::backend::{Backend, BackendShared};
use wharf::balance::{self, sticky, Context, Rng};
use wharf::model::{BackendKey, BackendStatus, Balance, PoolOptions, Sticky};

const SIZES: [usize; 3] = [10, 100, 1000];

fn pool(n: usize, now: Instant, equal: bool) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i as u32 + 1), 8080));
            let shared = Arc::new(BackendShared::default());
            shared.in_flight.store((i % 4) as u64, Ordering::Relaxed);
            shared
                .latency
                .observe(Duration::from_micros(500 + (i as u64 * 37) % 900), now);
            Backend {
                key: BackendKey {
                    id: format!("{i:064x}"),
                    addr,
                },
                container: format!("app-{i}"),
                addr,
                weight: if equal { 1 } else { 1 + (i % 3) as u32 },
                status: BackendStatus::Ready,
                shared,
            }
        })
        .collect()
}

/// Nanoseconds per select.
fn measure(row: &Row, n: usize) -> f64 {
    let (opts, sticky_hits) = (&row.opts, row.sticky_hits);
    let now = Instant::now();
    let backends = pool(n, now, row.equal);
    let lb = balance::build_with(opts, &backends, Rng::new(42));
    let tokens: Vec<String> = backends.iter().map(|b| sticky::token_string(&b.key)).collect();
    let eligible = |i: usize| backends[i].is_ready();
    let run = |iters: u64| {
        let start = Instant::now();
        for k in 0..iters {
            let ip = IpAddr::V4(Ipv4Addr::from(0xc000_0000u32.wrapping_add(k as u32 * 2_654_435_761)));
            let mut ctx = Context::new(ip, now);
            if sticky_hits {
                ctx.sticky = Some(&tokens[k as usize % n]);
            }
            black_box(lb.select(black_box(&backends), &ctx, &eligible));
        }
        start.elapsed()
    };
    // Size a round to ~30 ms, then keep the fastest of 7 rounds: the machine
    // may be busy with other work, and interference only ever adds time.
    let mut iters = 1_000u64;
    while run(iters) < Duration::from_millis(30) {
        iters *= 2;
    }
    let best = (0..7).map(|_| run(iters)).min().unwrap_or_default();
    best.as_nanos() as f64 / iters as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, quickly.
    if std::env::args().all(|a| a != "--bench") {
        println!("balance bench: run with `cargo bench --bench balance`");
        return;
    }
    let opts = |balance, sticky: bool, slow_start: u64| PoolOptions {
        balance,
        sticky: sticky.then(|| Sticky {
            cookie: "wharf_sticky".into(),
        }),
        slow_start: Duration::from_secs(slow_start),
        ..PoolOptions::default()
    };
    let row = |name: &str, opts: PoolOptions| Row {
        name: name.to_string(),
        opts,
        sticky_hits: false,
        equal: false,
    };
    let mut rows: Vec<Row> = Balance::ALL
        .iter()
        .map(|&b| row(b.as_str(), opts(b, false, 0)))
        .collect();
    rows.push(Row {
        equal: true,
        ..row("ip_hash, equal weights", opts(Balance::IpHash, false, 0))
    });
    rows.push(Row {
        sticky_hits: true,
        ..row("sticky cookie hit (round_robin)", opts(Balance::RoundRobin, true, 0))
    });
    rows.push(row(
        "sticky, no cookie (round_robin)",
        opts(Balance::RoundRobin, true, 0),
    ));
    for &b in Balance::ALL {
        rows.push(row(&format!("{} during slow start", b.as_str()), opts(b, false, 60)));
    }
    println!("| algorithm | 10 backends | 100 backends | 1,000 backends |");
    println!("| --- | ---: | ---: | ---: |");
    for r in &rows {
        let cells: Vec<String> = SIZES.iter().map(|&n| format!("{:.0} ns", measure(r, n))).collect();
        println!("| {} | {} |", r.name, cells.join(" | "));
    }
}

/// One line of the table.
struct Row {
    name: String,
    opts: PoolOptions,
    /// Every request carries a valid sticky cookie.
    sticky_hits: bool,
    /// All weights 1 (else 1, 2, 3, 1, 2, 3, …).
    equal: bool,
}
