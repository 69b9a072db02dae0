//! Peak-EWMA of a backend's latency, the load signal of `p2c` ([`crate::balance::p2c`]).
//!
//! After Finagle's `PeakEwma` (`finagle-core/.../loadbalancer/PeakEwma.scala`)
//! and its port in tower and linkerd2-proxy (`tower/src/load/peak_ewma.rs`):
//!
//! - an observation *above* the estimate replaces it at once (the "peak"), so
//!   a backend that turns slow is avoided from its first slow answer;
//! - an observation below it is blended in with weight `1 − e^(−Δt/τ)`, Δt
//!   being the time since the previous observation: the estimate comes down
//!   over about τ (10 s, Finagle's and linkerd's default) once it is fast again;
//! - while nothing is observed the estimate decays towards zero with the same
//!   τ, so a backend that was avoided for being slow is tried again now and
//!   then instead of being starved forever on old evidence;
//! - a backend never observed counts as [`DEFAULT_RTT`] (linkerd's 30 ms).
//!
//! Unlike Finagle, reading the estimate does not store the decay: reads are
//! pure, and the result depends only on the observations and the clock.
//! What is observed is the time from sending a request to its response
//! headers (the proxy records it), connection set-up included.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The estimate of a backend nothing has been observed from.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// τ, the time constant of the decay.
pub const DECAY: Duration = Duration::from_secs(10);

/// One estimate: nanoseconds, as of `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    pub ns: f64,
    pub at: Instant,
}

/// `e^(−Δt/τ)`: the weight the old estimate keeps after `Δt`.
fn keep(prev: Instant, now: Instant) -> f64 {
    let dt = now.saturating_duration_since(prev).as_secs_f64();
    decay(dt / DECAY.as_secs_f64())
}

/// `e^(−x)` for `x ≥ 0`. Under load observations come microseconds apart
/// (x below 1e-4): there `1 − x + x²/2` is within x³/6 (below 2e-13) of it,
/// for a fraction of `exp`'s cost (about 50 instructions on every response;
/// issue 9).
fn decay(x: f64) -> f64 {
    if x < 1e-4 {
        1.0 - x + x * x / 2.0
    } else {
        (-x).exp()
    }
}

/// The estimate after observing `rtt` at `now`.
pub fn observe(prev: Option<Ewma>, rtt: Duration, now: Instant) -> Ewma {
    // Not `as_nanos() as f64`: that is a `u128`, and a `u128` to `f64` is a
    // software routine (`__floattidf`, about 45 instructions). Exact below
    // 2^53 ns (104 days), as that was.
    let rtt = rtt.as_secs() as f64 * 1e9 + f64::from(rtt.subsec_nanos());
    let ns = match prev {
        Some(p) if rtt <= p.ns => {
            let w = keep(p.at, now);
            p.ns * w + rtt * (1.0 - w)
        }
        _ => rtt,
    };
    Ewma { ns, at: now }
}

/// The estimate at `now`, in nanoseconds, decayed since the last observation.
pub fn estimate(prev: Option<Ewma>, now: Instant) -> f64 {
    match prev {
        Some(p) => p.ns * keep(p.at, now),
        None => DEFAULT_RTT.as_nanos() as f64,
    }
}

/// The estimate of one backend, in its shared state: it survives routing
/// swaps with the backend. The lock is held for a few arithmetic operations.
#[derive(Debug, Default)]
pub struct Latency(Mutex<Option<Ewma>>);

impl Latency {
    pub fn observe(&self, rtt: Duration, now: Instant) {
        let mut e = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *e = Some(observe(*e, rtt, now));
    }

    /// Nanoseconds.
    pub fn estimate(&self, now: Instant) -> f64 {
        estimate(*self.0.lock().unwrap_or_else(|e| e.into_inner()), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_short_decay_matches_exp_on_both_sides_of_its_switch() {
        for x in [0.0, 1e-9, 1e-6, 5e-5, 9.99e-5, 1e-4, 1.01e-4, 1e-3, 0.5, 1.0, 10.0] {
            let (got, want) = (decay(x), (-x).exp());
            assert!((got - want).abs() <= 1e-12 * want, "x {x}: {got} vs {want}");
        }
        // Monotonic across the switch: a later observation never keeps more.
        assert!(decay(9.999_999e-5) > decay(1e-4) && decay(1e-4) > decay(1.000_001e-4));
    }

    #[test]
    fn an_rtt_is_observed_in_nanoseconds() {
        let t = Instant::now();
        for rtt in [
            Duration::from_nanos(1),
            Duration::from_micros(137),
            Duration::new(3, 999_999_999),
            // These two came out one ulp off through `as_secs_f64() * 1e9`.
            Duration::from_nanos(253_535_582),
            Duration::new(3, 507_069_464),
        ] {
            assert_eq!(observe(None, rtt, t).ns, rtt.as_nanos() as f64, "{rtt:?}");
        }
    }

    #[test]
    fn an_unobserved_backend_counts_as_the_default() {
        assert_eq!(Latency::default().estimate(Instant::now()), 30.0 * MS);
    }

    #[test]
    fn a_slower_observation_takes_over_at_once() {
        let t = Instant::now();
        let e = observe(Some(Ewma { ns: 10.0 * MS, at: t }), ms(200), t + ms(1));
        assert_eq!(e.ns, 200.0 * MS);
    }

    #[test]
    fn a_faster_observation_pulls_the_estimate_down_by_elapsed_time() {
        let t = Instant::now();
        let slow = Some(Ewma { ns: 200.0 * MS, at: t });
        // Right after the last one: almost no pull.
        let soon = observe(slow, ms(10), t + ms(10)).ns;
        assert!(soon > 199.0 * MS && soon < 200.0 * MS, "{soon}");
        // After τ: 1/e of the old estimate is left.
        let later = observe(slow, ms(10), t + DECAY).ns;
        let want = 200.0 * MS / std::f64::consts::E + 10.0 * MS * (1.0 - 1.0 / std::f64::consts::E);
        assert!((later - want).abs() < 1e-3 * MS, "{later} vs {want}");
    }

    #[test]
    fn an_idle_estimate_decays_towards_zero_and_reads_do_not_change_it() {
        let t = Instant::now();
        let l = Latency::default();
        l.observe(ms(100), t);
        assert_eq!(l.estimate(t), 100.0 * MS);
        let after_tau = l.estimate(t + DECAY);
        assert!((after_tau - 100.0 * MS / std::f64::consts::E).abs() < 1e-3 * MS);
        assert_eq!(l.estimate(t), 100.0 * MS, "reading did not store the decay");
        assert!(l.estimate(t + 10 * DECAY) < 0.01 * MS);
    }
}
