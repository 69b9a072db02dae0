//! `round_robin`: smooth weighted round robin, nginx's algorithm
//! (<https://github.com/phusion/nginx/commit/27e94984486058d73157038f7950a0a36ecc6e35>).
//!
//! Each pick adds every eligible backend's weight to its `current` value,
//! chooses the largest `current` (first index on ties) and subtracts the sum of
//! eligible weights from the winner. Over a cycle of `sum(weights)` picks each
//! backend is chosen exactly `weight` times, and heavy backends are spread out
//! instead of chosen in a burst: weights 5,1,1 give `a a b a c a a`.
//! Weight 0 never wins (it drains).
//!
//! Why this one by default: requests that cost about the same are spread
//! exactly by weight with no randomness to average out, and a backend never
//! sees a burst. Cost: one pass over the pool under a mutex, O(n).
//! The `current` values belong to the pool's balancer, so a routing swap that
//! changes the pool restarts the cycle; one that leaves the pool alone keeps it.

use std::sync::Mutex;

use super::slow_start::{Ramp, Weights};
use super::{Balancer, Context};
use crate::backend::Backend;

#[derive(Debug)]
pub struct RoundRobin {
    current: Mutex<Vec<i64>>,
    weights: Weights,
}

impl RoundRobin {
    pub fn new(backends: &[Backend], ramp: Ramp) -> Self {
        RoundRobin {
            current: Mutex::new(vec![0; backends.len()]),
            weights: Weights::new(backends, ramp),
        }
    }

    /// The algorithm on plain weights, so tests can pin exact sequences.
    pub fn pick(&self, weights: &[u64], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        smooth_pick(&mut current, weights.len(), |i| weights[i], eligible)
    }
}

/// One step of smooth weighted round robin over the backends `i < n` with
/// `weight(i) > 0` and `eligible(i)`. Shared with `least_conn`, which runs it
/// over the backends tied for the lowest load.
pub fn smooth_pick(
    current: &mut Vec<i64>,
    n: usize,
    weight: impl Fn(usize) -> u64,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    if current.len() != n {
        *current = vec![0; n];
    }
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for (i, cur) in current.iter_mut().enumerate() {
        let w = weight(i);
        if w == 0 || !eligible(i) {
            continue;
        }
        // Weights are at most 10 000 × SCALE: no overflow even for huge pools.
        let w = i64::try_from(w).unwrap_or(i64::MAX >> 24);
        *cur += w;
        total += w;
        if best.is_none_or(|(_, v)| *cur > v) {
            best = Some((i, *cur));
        }
    }
    let (b, _) = best?;
    current[b] -= total;
    Some(b)
}

impl Balancer for RoundRobin {
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.weights.with(backends, ctx.now, |w| self.pick(w, eligible))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{ctx, pool};

    fn run(weights: &[u64], n: usize) -> String {
        let rr = RoundRobin::new(&[], Ramp::default());
        (0..n)
            .map(|_| {
                rr.pick(weights, &|_| true)
                    .map(|i| (b'a' + i as u8) as char)
                    .unwrap_or('-')
            })
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_the_nginx_sequence() {
        assert_eq!(run(&[5, 1, 1], 14), "aabacaaaabacaa");
    }

    #[test]
    fn equal_weights_alternate_strictly() {
        assert_eq!(run(&[1, 1, 1], 9), "abcabcabc");
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        assert_eq!(run(&[0, 2, 1], 6), "bcbbcb");
        assert_eq!(run(&[0, 0], 3), "---");
    }

    #[test]
    fn empty_pool_returns_none_without_panic() {
        let rr = RoundRobin::new(&[], Ramp::default());
        assert_eq!(rr.pick(&[], &|_| true), None);
        assert_eq!(rr.select(&[], &ctx(), &|_| true), None);
    }

    #[test]
    fn ineligible_backends_are_skipped() {
        let rr = RoundRobin::new(&pool(&[1; 3]), Ramp::default());
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&[1, 1, 1], &|i| i != 1)).collect();
        assert_eq!(picks, vec![Some(0), Some(2), Some(0), Some(2)]);
        assert_eq!(rr.pick(&[1, 1, 1], &|_| false), None);
    }

    #[test]
    fn shares_over_a_cycle_equal_weights() {
        let rr = RoundRobin::new(&pool(&[1; 3]), Ramp::default());
        let mut n = [0; 3];
        for _ in 0..600 {
            n[rr.pick(&[3, 2, 1], &|_| true).unwrap_or(9)] += 1;
        }
        assert_eq!(n, [300, 200, 100]);
    }

    #[test]
    fn select_reads_the_backends_weights_and_gives_the_nginx_sequence() {
        let backends = pool(&[5, 1, 1]);
        let rr = RoundRobin::new(&backends, Ramp::default());
        let seq: String = (0..7)
            .map(|_| match rr.select(&backends, &ctx(), &|_| true) {
                Some(i) => (b'a' + i as u8) as char,
                None => '-',
            })
            .collect();
        assert_eq!(seq, "aabacaa");
    }

    #[test]
    fn a_pool_larger_than_the_stack_buffer_is_served_too() {
        let backends = pool(&[1; 40]);
        let rr = RoundRobin::new(&backends, Ramp::default());
        let picks: Vec<_> = (0..40)
            .filter_map(|_| rr.select(&backends, &ctx(), &|_| true))
            .collect();
        assert_eq!(picks, (0..40).collect::<Vec<_>>());
    }
}
