//! Smooth weighted round robin, nginx's algorithm
//! (<https://github.com/phusion/nginx/commit/27e94984486058d73157038f7950a0a36ecc6e35>).
//!
//! Each pick adds every eligible backend's weight to its `current` value,
//! chooses the largest `current` (first index on ties) and subtracts the sum of
//! eligible weights from the winner. Over a cycle of `sum(weights)` picks each
//! backend is chosen exactly `weight` times, and heavy backends are spread out
//! instead of chosen in a burst: weights 5,1,1 give `a a b a c a a`.
//! Weight 0 never wins (it drains).

use std::sync::Mutex;

use super::{Balancer, Context};
use crate::routing::Backend;

#[derive(Debug)]
pub struct RoundRobin {
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    pub fn new(n: usize) -> Self {
        RoundRobin {
            current: Mutex::new(vec![0; n]),
        }
    }

    /// The algorithm on plain weights, so tests can pin exact sequences.
    pub fn pick(&self, weights: &[u32], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() != weights.len() {
            *current = vec![0; weights.len()];
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 || !eligible(i) {
                continue;
            }
            current[i] += i64::from(w);
            total += i64::from(w);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }
}

impl Balancer for RoundRobin {
    fn select(&self, backends: &[Backend], _ctx: &Context, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        // Small pools are the common case; avoid allocating for them.
        let mut small = [0u32; 16];
        let big: Vec<u32>;
        let weights: &[u32] = if backends.len() <= small.len() {
            for (s, b) in small.iter_mut().zip(backends) {
                *s = b.weight;
            }
            &small[..backends.len()]
        } else {
            big = backends.iter().map(|b| b.weight).collect();
            &big
        };
        self.pick(weights, eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(weights: &[u32], n: usize) -> String {
        let rr = RoundRobin::new(weights.len());
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
        assert_eq!(RoundRobin::new(0).pick(&[], &|_| true), None);
    }

    #[test]
    fn ineligible_backends_are_skipped() {
        let rr = RoundRobin::new(3);
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&[1, 1, 1], &|i| i != 1).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
    }

    #[test]
    fn shares_over_a_cycle_equal_weights() {
        let rr = RoundRobin::new(3);
        let mut n = [0; 3];
        for _ in 0..600 {
            n[rr.pick(&[3, 2, 1], &|_| true).unwrap()] += 1;
        }
        assert_eq!(n, [300, 200, 100]);
    }
}
