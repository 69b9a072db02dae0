//! `p2c`: power of two choices over a peak-EWMA load (Mitzenmacher, "The
//! Power of Two Choices in Randomized Load Balancing", IEEE TPDS 2001; the
//! load metric is Finagle's and linkerd's peak EWMA, see [`crate::backend::latency`]).
//!
//! Draw two different eligible backends at random in proportion to weight,
//! and send the request to the one with the lower cost
//! `latency estimate × (in flight + 1) / weight`. Sampling two instead of
//! scanning all keeps the pick O(log n) and lock-free, and since the worst
//! backend of the pool is never chosen over the other candidate, and the
//! best one is a candidate often, a slow or overloaded backend gets little
//! traffic with no configuration: its estimate jumps with its first slow
//! answer (the "peak"), and its in-flight count grows while it is slow.
//! Unlike `least_conn` it does not send every request of a burst to the one
//! backend that looks idle (several wharf replicas each see a different
//! subset of the load).
//!
//! Weights act as capacity: cost is divided by weight, so a weight-3 backend
//! takes three times the load of a weight-1 one before they cost the same.
//! At very low load (nothing in flight) that means the heaviest, fastest
//! backend takes most requests; it is a load-based balancer, not a share.
//!
//! When to pick it: large pools, backends of uneven speed, or several wharf
//! replicas. Cost: two weighted draws (binary searches) and two estimate
//! reads, each behind its own tiny lock; O(n) only when a draw misses the
//! eligible backends several times or during slow start.

use std::sync::atomic::Ordering;

use super::mix::Rng;
use super::random::{self, Draw};
use super::slow_start::Ramp;
use super::{Balancer, Context};
use crate::backend::Backend;

#[derive(Debug)]
pub struct P2c {
    rng: Rng,
    draw: Draw,
}

impl P2c {
    pub fn new(backends: &[Backend], ramp: Ramp, rng: Rng) -> P2c {
        P2c {
            rng,
            draw: Draw::new(backends, ramp),
        }
    }
}

/// `latency_ns × (in_flight + 1) / weight`: what one more request would cost
/// per unit of capacity.
pub fn cost(latency_ns: f64, in_flight: u64, weight: u64) -> f64 {
    latency_ns * (in_flight as f64 + 1.0) / weight.max(1) as f64
}

impl Balancer for P2c {
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let (a, b) = if self.draw.weights().is_settled() {
            let a = self.draw.draw(&self.rng, backends, ctx, eligible)?;
            let b = self.draw.draw(&self.rng, backends, ctx, &|i| i != a && eligible(i));
            (a, b)
        } else {
            // Slow start: compute the ramped weights once for both draws.
            self.draw.weights().with(backends, ctx.now, |w| {
                let a = random::pick(&self.rng, w, eligible)?;
                Some((a, random::pick(&self.rng, w, &|i| i != a && eligible(i))))
            })?
        };
        let Some(b) = b else {
            return Some(a);
        };
        let cost_of = |i: usize| {
            let s = &backends[i].shared;
            let load = s.in_flight.load(Ordering::Relaxed);
            let weight = self.draw.weights().one(backends, i, ctx.now);
            cost(s.latency.estimate(ctx.now), load, weight)
        };
        // Ties go to the first draw, itself random.
        Some(if cost_of(b) < cost_of(a) { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::balance::testing::{self, assert_close, ctx, pool, simulate};

    fn shares(backends: &[Backend], eligible: &dyn Fn(usize) -> bool) -> Vec<f64> {
        testing::shares(&P2c::new(backends, Ramp::default(), Rng::new(7)), backends, eligible)
    }

    #[test]
    fn equal_backends_share_evenly_over_100k_picks() {
        assert_close(&shares(&pool(&[1, 1, 1]), &|_| true), &[1.0 / 3.0; 3]);
    }

    #[test]
    fn the_less_loaded_candidate_wins() {
        let backends = pool(&[1, 1, 1]);
        backends[1].shared.in_flight.store(5, Ordering::Relaxed);
        backends[2].shared.in_flight.store(5, Ordering::Relaxed);
        // Backend 0 wins whenever it is one of the two candidates: 2 pairs in 3.
        assert_close(&shares(&backends, &|_| true), &[2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0]);
    }

    #[test]
    fn a_backend_ten_times_slower_gets_nothing_while_it_has_a_rival() {
        let backends = pool(&[1, 1, 1]);
        let now = ctx().now;
        for (b, ms) in backends.iter().zip([10, 10, 100]) {
            b.shared.latency.observe(Duration::from_millis(ms), now);
        }
        assert_close(&shares(&backends, &|_| true), &[0.5, 0.5, 0.0]);
        // The only one left is still used.
        assert_close(&shares(&backends, &|i| i == 2), &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn under_closed_loop_load_a_ten_times_slower_backend_gets_under_15_percent() {
        let backends = pool(&[1, 1, 1]);
        let lb = P2c::new(&backends, Ramp::default(), Rng::new(3));
        let lat = [10, 10, 100].map(Duration::from_millis);
        let n = simulate(&lb, &backends, &lat, 8, 3_000);
        let slow = f64::from(n[2]) / 3_000.0;
        eprintln!("p2c, 8 clients, latencies 10/10/100 ms: picks {n:?}, slow share {slow:.3}");
        assert!(slow < 0.15, "{n:?}");
    }

    #[test]
    fn cost_is_load_per_unit_of_weight() {
        assert_eq!(cost(10.0, 0, 1), 10.0);
        assert_eq!(cost(10.0, 2, 1), 30.0);
        assert_eq!(cost(10.0, 2, 3), 10.0);
        assert_eq!(cost(10.0, 0, 0), 10.0, "no division by zero");
    }

    #[test]
    fn an_empty_or_fully_ineligible_pool_gives_none_and_one_backend_is_picked_alone() {
        let lb = P2c::new(&[], Ramp::default(), Rng::new(1));
        assert_eq!(lb.select(&[], &ctx(), &|_| true), None);
        let backends = pool(&[1, 1]);
        let lb = P2c::new(&backends, Ramp::default(), Rng::new(1));
        assert_eq!(lb.select(&backends, &ctx(), &|_| false), None);
        assert_eq!(lb.select(&backends, &ctx(), &|i| i == 1), Some(1));
    }
}
