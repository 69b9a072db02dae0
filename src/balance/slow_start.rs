//! Slow start (`wharf.slow_start=DURATION`): a backend that just became ready
//! gets a share that grows from a floor to its full weight over the window,
//! so a cold JIT, an empty cache or a lazily opened database pool is not
//! handed a full share of traffic in its first second.
//!
//! The ramp is Envoy's (`slow_start_config` of its round robin and least
//! request balancers, <https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/slow_start>)
//! with aggression 1.0, i.e. linear, like HAProxy's `slowstart`: the effective
//! weight is `weight × max(10 %, elapsed / window)`. The 10 % floor is Envoy's
//! default `min_weight_percent`: a new backend gets *some* requests at once,
//! which is how it warms up at all.
//!
//! Weights are worked in thousandths ([`SCALE`]) so the ramp is smooth with
//! small integer weights. Every algorithm reads weights through [`Weights`]:
//! round robin, random and p2c spread requests in proportion to them,
//! least_conn divides in-flight counts by them, and ip_hash's weighted
//! rendezvous moves clients to a ramping backend a few at a time (and only
//! to it). Because shares are relative, backends that started together
//! (every backend when wharf itself starts) ramp together and keep their
//! usual shares. Slow start costs an O(n) weight computation per pick while
//! some backend is ramping; once every backend is at full weight the pool's
//! balancer is back to its usual cost.
//!
//! When the ramp starts: [`crate::routing::RoutingTable::build`] marks a
//! backend *ready since now* (in [`crate::backend::ready`]) the first time it
//! builds a table in which the backend's container is ready (running, Docker
//! health check passing if it has one), and clears the mark while it is not, so a container that comes back ramps
//! again. The mark lives in the backend's shared state and survives routing
//! swaps. Ejection by passive health and wharf's own active checks do not
//! restart the ramp.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::ready::encode;
use crate::backend::Backend;

/// Weights are multiplied by this, so 10 % of weight 1 is still an integer.
pub const SCALE: u64 = 1000;
/// A ramping backend's effective weight never goes below this share of its weight (in [`SCALE`]ths).
pub const FLOOR: u64 = 100;

/// `weight × SCALE × max(FLOOR/SCALE, elapsed/window)`; `weight × SCALE` once
/// the window is over, or when there is no window.
pub fn ramp(weight: u32, elapsed: Duration, window: Duration) -> u64 {
    let full = u64::from(weight) * SCALE;
    if elapsed >= window {
        return full;
    }
    // u64 arithmetic (a u128 division costs tens of ns per backend per pick);
    // `elapsed < window`, so this only overflows for windows over 5 000 hours.
    let (e, w) = (elapsed.as_nanos() as u64, window.as_nanos() as u64);
    let permille = match e.checked_mul(SCALE) {
        Some(x) => x / w.max(1),
        None => (u128::from(e) * u128::from(SCALE) / u128::from(w)) as u64,
    };
    u64::from(weight) * permille.max(FLOOR)
}

/// The pool's slow-start window, applied to backends at select time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ramp {
    window: Duration,
}

impl Ramp {
    pub fn new(window: Duration) -> Ramp {
        Ramp { window }
    }

    /// Off: every weight is simply `weight × SCALE`, no clock is read.
    pub fn is_off(&self) -> bool {
        self.window.is_zero()
    }

    /// A backend's effective weight at `now`, in [`SCALE`]ths. A backend with
    /// no ready mark (never marked by a build) counts as fully ramped.
    pub fn weight(&self, b: &Backend, now: Instant) -> u64 {
        self.weight_at(b, encode(now))
    }

    /// [`Ramp::weight`] with `now` already encoded (once per pick, not per backend).
    fn weight_at(&self, b: &Backend, now: i64) -> u64 {
        if self.is_off() {
            return u64::from(b.weight) * SCALE;
        }
        match b.shared.ready_since.elapsed_at(now) {
            Some(elapsed) => ramp(b.weight, elapsed, self.window),
            None => u64::from(b.weight) * SCALE,
        }
    }
}

/// A pool's effective weights, the way every algorithm reads them. Without
/// slow start they are fixed when the balancer is built and a pick reads a
/// slice. With it, they are computed at each pick from the clock until the
/// first pick that finds every backend at full weight; from then on the
/// balancer is *settled* and reads the fixed slice again. (A new ramp only
/// starts with a routing change, which builds a new balancer.)
#[derive(Debug)]
pub struct Weights {
    ramp: Ramp,
    full: Vec<u64>,
    settled: AtomicBool,
}

impl Weights {
    pub fn new(backends: &[Backend], ramp: Ramp) -> Weights {
        Weights {
            ramp,
            full: backends.iter().map(|b| u64::from(b.weight) * SCALE).collect(),
            settled: AtomicBool::new(ramp.is_off()),
        }
    }

    /// Every weight is at its full value for good: the build-time table holds.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }

    /// Backend `i`'s weight (in [`SCALE`]ths) at `now`.
    pub fn one(&self, backends: &[Backend], i: usize, now: Instant) -> u64 {
        match self.full.get(i) {
            Some(&w) if self.is_settled() => w,
            _ => self.ramp.weight(&backends[i], now),
        }
    }

    /// Calls `f` with the weight (in [`SCALE`]ths) of every backend at `now`,
    /// without allocating for pools of up to 16 when they must be computed.
    pub fn with<R>(&self, backends: &[Backend], now: Instant, f: impl FnOnce(&[u64]) -> R) -> R {
        if self.is_settled() && self.full.len() == backends.len() {
            return f(&self.full);
        }
        let now = encode(now);
        let mut small = [0u64; 16];
        let big: Vec<u64>;
        let w: &[u64] = if backends.len() <= small.len() {
            for (s, b) in small.iter_mut().zip(backends) {
                *s = self.ramp.weight_at(b, now);
            }
            &small[..backends.len()]
        } else {
            big = backends.iter().map(|b| self.ramp.weight_at(b, now)).collect();
            &big
        };
        if w == self.full.as_slice() {
            self.settled.store(true, Ordering::Relaxed);
        }
        f(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::pool;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_ramp_is_linear_from_a_ten_percent_floor_to_full_weight() {
        let w = Duration::from_secs(10);
        let got: Vec<u64> = [0, 1, 2, 5, 9, 10, 60].iter().map(|&s| ramp(2, s * S, w)).collect();
        assert_eq!(got, vec![200, 200, 400, 1000, 1800, 2000, 2000]);
        assert_eq!(ramp(1, Duration::from_millis(2_500), w), 250);
        assert_eq!(ramp(0, 3 * S, w), 0, "weight 0 stays 0");
    }

    #[test]
    fn weights_are_fixed_without_a_window_and_ramped_with_one() {
        let backends = pool(&[1, 3]);
        let t0 = Instant::now();
        backends[1].shared.ready_since.mark(t0);
        let fixed = Weights::new(&backends, Ramp::default());
        assert_eq!(fixed.with(&backends, t0, <[u64]>::to_vec), vec![1000, 3000]);
        let ramped = Weights::new(&backends, Ramp::new(10 * S));
        assert_eq!(ramped.with(&backends, t0 + 5 * S, <[u64]>::to_vec), vec![1000, 1500]);
        assert!(!ramped.is_settled());
        assert_eq!(ramped.one(&backends, 1, t0 + 5 * S), 1500);
        // The first pick past the window settles it.
        assert_eq!(ramped.with(&backends, t0 + 10 * S, <[u64]>::to_vec), vec![1000, 3000]);
        assert!(ramped.is_settled());
        assert_eq!(ramped.one(&backends, 1, t0), 3000);
        let many = pool(&[2; 20]);
        assert_eq!(
            Weights::new(&many, Ramp::new(S)).with(&many, t0, <[u64]>::to_vec),
            vec![2000; 20]
        );
    }

    #[test]
    fn no_window_means_full_weight_at_once() {
        assert_eq!(ramp(3, Duration::ZERO, Duration::ZERO), 3 * SCALE);
    }

    #[test]
    fn a_backend_ramps_from_its_mark_and_a_clear_restarts_the_ramp() {
        let b = &pool(&[4])[0];
        let t0 = Instant::now();
        let ramp = Ramp::new(10 * S);
        assert_eq!(ramp.weight(b, t0), 4000, "never marked: full weight");
        b.shared.ready_since.mark(t0);
        b.shared.ready_since.mark(t0 + 5 * S); // a later mark does not restart it
        assert_eq!(ramp.weight(b, t0), 400);
        assert_eq!(ramp.weight(b, t0 + 5 * S), 2000);
        assert_eq!(ramp.weight(b, t0 + 20 * S), 4000);
        b.shared.ready_since.clear();
        b.shared.ready_since.mark(t0 + 20 * S);
        assert_eq!(ramp.weight(b, t0 + 25 * S), 2000);
        assert_eq!(Ramp::default().weight(b, t0), 4000, "off: full weight");
    }
}
