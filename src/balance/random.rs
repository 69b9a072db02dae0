//! `random`: each request goes to a backend drawn at random in proportion to
//! its weight.
//!
//! It keeps no state but its generator, so several wharf instances in front of
//! the same pool (Swarm replicas) do not fall into lockstep the way their
//! round-robin cycles can, and a pick needs no lock. Shares are exact only on
//! average: over n requests a backend of share p gets `n·p ± 2·sqrt(n·p(1−p))`
//! nineteen times out of twenty (±2.2 % of 400 requests at 3:1).
//!
//! The draw ([`Draw`]) is also `p2c`'s. Without slow start it is a binary
//! search in the cumulative weights computed when the balancer is built: draw
//! over the whole pool, and if the backend drawn is not eligible, draw again
//! (rejection sampling keeps the result exactly proportional among the
//! eligible ones); after a few misses, one exact pass over the eligible
//! backends. Cost: O(log n) while the pool is healthy, O(n) otherwise and
//! while a backend is ramping up (the weights then change with time; see
//! [`super::slow_start::Weights`]).

use super::mix::Rng;
use super::slow_start::{Ramp, Weights, SCALE};
use super::{Balancer, Context};
use crate::backend::Backend;

/// Draws on the precomputed table before falling back to the exact pass.
const TRIES: usize = 4;

/// A weighted draw over one pool's backends.
#[derive(Debug)]
pub struct Draw {
    /// Running sums of the backends' weights (× SCALE) as built.
    cumulative: Vec<u64>,
    weights: Weights,
}

impl Draw {
    pub fn new(backends: &[Backend], ramp: Ramp) -> Draw {
        let mut sum = 0u64;
        let cumulative = backends
            .iter()
            .map(|b| {
                sum += u64::from(b.weight) * SCALE;
                sum
            })
            .collect();
        Draw {
            cumulative,
            weights: Weights::new(backends, ramp),
        }
    }

    /// An eligible backend of positive weight, with probability proportional
    /// to its (ramped) weight among those.
    pub fn draw(
        &self,
        rng: &Rng,
        backends: &[Backend],
        ctx: &Context<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if self.weights.is_settled() && total > 0 && self.cumulative.len() == backends.len() {
            for _ in 0..TRIES {
                let r = rng.below(total);
                let i = self.cumulative.partition_point(|&c| c <= r);
                if i < backends.len() && eligible(i) {
                    return Some(i);
                }
            }
        }
        self.weights.with(backends, ctx.now, |w| pick(rng, w, eligible))
    }

    /// The weights the draws use.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }
}

/// One exact weighted draw over the eligible backends of positive weight.
pub fn pick(rng: &Rng, weights: &[u64], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = weights
        .iter()
        .enumerate()
        .filter(|&(i, &w)| w > 0 && eligible(i))
        .map(|(_, &w)| w)
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 || !eligible(i) {
            continue;
        }
        if r < w {
            return Some(i);
        }
        r -= w;
        last = Some(i);
    }
    // Only if eligibility changed between the two passes.
    last
}

#[derive(Debug)]
pub struct Random {
    rng: Rng,
    draw: Draw,
}

impl Random {
    pub fn new(backends: &[Backend], ramp: Ramp, rng: Rng) -> Random {
        Random {
            rng,
            draw: Draw::new(backends, ramp),
        }
    }
}

impl Balancer for Random {
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.draw.draw(&self.rng, backends, ctx, eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{self, assert_close, ctx, pool};

    fn shares(weights: &[u32], eligible: &dyn Fn(usize) -> bool, ramp: Ramp) -> Vec<f64> {
        let backends = pool(weights);
        testing::shares(&Random::new(&backends, ramp, Rng::new(2024)), &backends, eligible)
    }

    #[test]
    fn shares_follow_weights_over_100k_picks() {
        assert_close(&shares(&[3, 1], &|_| true, Ramp::default()), &[0.75, 0.25]);
        assert_close(&shares(&[1, 1, 1, 1], &|_| true, Ramp::default()), &[0.25; 4]);
        assert_close(
            &shares(&[5, 0, 3, 2], &|_| true, Ramp::default()),
            &[0.5, 0.0, 0.3, 0.2],
        );
    }

    #[test]
    fn ineligible_backends_are_skipped_and_the_rest_keep_their_proportions() {
        assert_close(&shares(&[3, 6, 1], &|i| i != 1, Ramp::default()), &[0.75, 0.0, 0.25]);
        // The heavy backend is out: the table misses most of the time and the exact pass takes over.
        assert_close(&shares(&[100, 3, 1], &|i| i != 0, Ramp::default()), &[0.0, 0.75, 0.25]);
    }

    #[test]
    fn ramping_weights_are_drawn_by_the_exact_pass() {
        // A 10 s window, never-marked backends: full weights through the exact pass.
        let ramp = Ramp::new(std::time::Duration::from_secs(10));
        assert_close(&shares(&[3, 1], &|_| true, ramp), &[0.75, 0.25]);
    }

    #[test]
    fn the_same_seed_gives_the_same_picks() {
        let backends = pool(&[1, 2, 3]);
        let run = || {
            let lb = Random::new(&backends, Ramp::default(), Rng::new(9));
            (0..20)
                .map(|_| lb.select(&backends, &ctx(), &|_| true))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn an_empty_or_fully_ineligible_pool_gives_none() {
        let lb = Random::new(&[], Ramp::default(), Rng::new(1));
        assert_eq!(lb.select(&[], &ctx(), &|_| true), None);
        let backends = pool(&[1, 1]);
        let lb = Random::new(&backends, Ramp::default(), Rng::new(1));
        assert_eq!(lb.select(&backends, &ctx(), &|_| false), None);
        assert_eq!(pick(&Rng::new(1), &[0, 0], &|_| true), None);
    }
}
