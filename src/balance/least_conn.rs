//! `least_conn`: the backend with the fewest requests in flight relative to
//! its weight; ties broken by smooth weighted round robin. This is nginx's
//! `least_conn` (`ngx_http_upstream_least_conn_module.c`): compare
//! `in_flight / weight`, and among the backends tied for the lowest value run
//! the weighted round robin of [`super::round_robin`] instead of taking the
//! first by index, which would pile every quiet moment onto backend 0.
//!
//! A request is in flight from the moment it is sent until its response body
//! has ended or the client went away (the proxy's body guard, after linkerd's
//! `PendingUntilEos`), so a slow or streaming response keeps counting. The
//! counts live in each backend's shared state, so they survive routing swaps
//! and every request of every connection sees the same numbers.
//!
//! When to pick it: request costs vary a lot, or requests are long-lived
//! (streams, WebSockets, long polls). A backend that slows down accumulates
//! in-flight requests and is avoided without any configuration. With idle
//! traffic (nothing in flight) it is exactly weighted round robin.
//! Cost: two passes over the pool (find the least ratio, then round robin
//! among the tied) under a mutex, O(n). Counts are read without a lock, so two
//! requests arriving together may both see the same least-loaded backend;
//! that is the usual, harmless race of every least-connections balancer.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::round_robin::smooth_pick;
use super::slow_start::{Ramp, Weights};
use super::{Balancer, Context};
use crate::backend::Backend;

#[derive(Debug)]
pub struct LeastConn {
    current: Mutex<Vec<i64>>,
    weights: Weights,
}

impl LeastConn {
    pub fn new(backends: &[Backend], ramp: Ramp) -> Self {
        LeastConn {
            current: Mutex::new(vec![0; backends.len()]),
            weights: Weights::new(backends, ramp),
        }
    }

    /// The algorithm on plain loads and weights, for tests.
    pub fn pick(&self, loads: &[u64], weights: &[u64], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        pick(&mut current, weights, |i| loads[i], eligible)
    }
}

/// `a / wa < b / wb`, exactly, without division.
fn lighter(a: u64, wa: u64, b: u64, wb: u64) -> bool {
    u128::from(a) * u128::from(wb) < u128::from(b) * u128::from(wa)
}

fn same(a: u64, wa: u64, b: u64, wb: u64) -> bool {
    u128::from(a) * u128::from(wb) == u128::from(b) * u128::from(wa)
}

/// Least `load(i) / weights[i]` among eligible backends of positive weight,
/// ties by smooth weighted round robin over `current`.
pub fn pick(
    current: &mut Vec<i64>,
    weights: &[u64],
    load: impl Fn(usize) -> u64,
    eligible: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    // Read each load and eligibility once: counts move under our feet, and
    // the tie pass must agree with the first one. `SKIP` marks the rest.
    const SKIP: u64 = u64::MAX;
    let mut small = [SKIP; 16];
    let mut big = Vec::new();
    let loads: &mut [u64] = if weights.len() <= small.len() {
        &mut small[..weights.len()]
    } else {
        big.resize(weights.len(), SKIP);
        &mut big
    };
    let mut best: Option<(u64, u64)> = None;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 || !eligible(i) {
            continue;
        }
        let l = load(i).min(SKIP - 1);
        loads[i] = l;
        if best.is_none_or(|(bl, bw)| lighter(l, w, bl, bw)) {
            best = Some((l, w));
        }
    }
    let (bl, bw) = best?;
    let tied = |i: usize| loads[i] != SKIP && same(loads[i], weights[i], bl, bw);
    smooth_pick(current, weights.len(), |i| weights[i], tied)
}

impl Balancer for LeastConn {
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.weights.with(backends, ctx.now, |w| {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let load = |i: usize| backends[i].shared.in_flight.load(Ordering::Relaxed);
            pick(&mut current, w, load, eligible)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::mix::Rng;
    use crate::balance::testing::{ctx, pool};

    fn seq(lc: &LeastConn, loads: &[u64], weights: &[u64], n: usize) -> String {
        (0..n)
            .map(|_| match lc.pick(loads, weights, &|_| true) {
                Some(i) => (b'a' + i as u8) as char,
                None => '-',
            })
            .collect()
    }

    #[test]
    fn the_least_loaded_backend_wins() {
        let lc = LeastConn::new(&[], Ramp::default());
        assert_eq!(seq(&lc, &[4, 1, 3], &[1, 1, 1], 3), "bbb");
    }

    #[test]
    fn load_is_relative_to_weight() {
        let lc = LeastConn::new(&[], Ramp::default());
        // 5 in flight on weight 3 (1.67 each) beats 2 on weight 1.
        assert_eq!(seq(&lc, &[5, 2], &[3, 1], 2), "aa");
        assert_eq!(seq(&lc, &[7, 2], &[3, 1], 2), "bb");
    }

    #[test]
    fn ties_are_broken_round_robin_not_by_index() {
        let lc = LeastConn::new(&[], Ramp::default());
        assert_eq!(seq(&lc, &[0, 0, 0, 5], &[1, 1, 1, 1], 6), "abcabc");
        // With nothing in flight it is smooth weighted round robin.
        let lc = LeastConn::new(&[], Ramp::default());
        assert_eq!(seq(&lc, &[0, 0, 0], &[5, 1, 1], 7), "aabacaa");
    }

    #[test]
    fn never_picks_a_busier_backend() {
        let rng = Rng::new(42);
        let lc = LeastConn::new(&[], Ramp::default());
        for _ in 0..10_000 {
            let loads: Vec<u64> = (0..8).map(|_| rng.below(6)).collect();
            let weights: Vec<u64> = (0..8).map(|_| 1 + rng.below(4)).collect();
            let skip = rng.below(8) as usize;
            let eligible = |i: usize| i != skip;
            let Some(c) = lc.pick(&loads, &weights, &eligible) else {
                panic!("no pick among {loads:?}");
            };
            assert_ne!(c, skip);
            for i in (0..8).filter(|&i| eligible(i)) {
                assert!(
                    !lighter(loads[i], weights[i], loads[c], weights[c]),
                    "picked {c} ({}/{}) over {i} ({}/{})",
                    loads[c],
                    weights[c],
                    loads[i],
                    weights[i]
                );
            }
        }
    }

    #[test]
    fn ineligible_and_zero_weight_backends_are_skipped_and_an_empty_pool_gives_none() {
        let lc = LeastConn::new(&[], Ramp::default());
        assert_eq!(lc.pick(&[5, 0, 0], &[1, 0, 1], &|i| i != 2), Some(0));
        assert_eq!(lc.pick(&[0, 0, 0], &[1, 1, 1], &|_| false), None);
        assert_eq!(lc.pick(&[], &[], &|_| true), None);
        assert_eq!(
            LeastConn::new(&[], Ramp::default()).select(&[], &ctx(), &|_| true),
            None
        );
    }

    #[test]
    fn select_reads_in_flight_counts_from_the_shared_state() {
        let backends = pool(&[1, 1, 1]);
        backends[0].shared.in_flight.store(2, Ordering::Relaxed);
        backends[2].shared.in_flight.store(1, Ordering::Relaxed);
        let lc = LeastConn::new(&backends, Ramp::default());
        assert_eq!(lc.select(&backends, &ctx(), &|_| true), Some(1));
        backends[1].shared.in_flight.store(3, Ordering::Relaxed);
        assert_eq!(lc.select(&backends, &ctx(), &|_| true), Some(2));
    }

    #[test]
    fn large_pools_work_beyond_the_stack_buffer() {
        let mut loads = vec![3u64; 50];
        loads[37] = 1;
        let lc = LeastConn::new(&[], Ramp::default());
        assert_eq!(lc.pick(&loads, &[1; 50], &|_| true), Some(37));
    }
}
