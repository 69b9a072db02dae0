//! Passive health: outlier ejection on consecutive delivery failures.
//!
//! After [`THRESHOLD`] failures in a row a backend is ejected for a back-off
//! that doubles with each ejection that follows without a success in between
//! (1 s, 2 s, 4 s, … capped at 30 s; Envoy's outlier detection does the
//! same). At most [`MAX_EJECTED_SHARE`] of a pool is ejected at once, so a
//! pool-wide problem (the network, the daemon) cannot empty it; and if
//! nothing in a pool is usable wharf tries all of it anyway (panic mode, see
//! `proxy`).

use std::time::Duration;

pub const THRESHOLD: u32 = 3;
pub const BASE: Duration = Duration::from_secs(1);
pub const MAX: Duration = Duration::from_secs(30);
/// Share of a pool that may be ejected at once (at least one backend).
pub const MAX_EJECTED_SHARE: f64 = 0.5;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ejection {
    /// Ejections since the last success.
    pub ejections: u32,
}

impl Ejection {
    /// `consecutive` failures so far: eject now? For how long?
    pub fn on_failure(&mut self, consecutive: u32) -> Option<Duration> {
        if consecutive < THRESHOLD {
            return None;
        }
        let d = backoff(self.ejections);
        self.ejections += 1;
        Some(d)
    }

    pub fn on_success(&mut self) {
        self.ejections = 0;
    }
}

/// 1 s × 2^n, at most 30 s.
pub fn backoff(previous_ejections: u32) -> Duration {
    BASE.saturating_mul(1u32 << previous_ejections.min(16)).min(MAX)
}

/// May one more backend of a pool of `size` be ejected when `ejected` already are?
pub fn may_eject(ejected: usize, size: usize) -> bool {
    let cap = ((size as f64 * MAX_EJECTED_SHARE).floor() as usize).max(1);
    ejected < cap && size > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_needs_the_threshold_and_backs_off_exponentially_to_a_cap() {
        let mut e = Ejection::default();
        assert_eq!(e.on_failure(2), None);
        assert_eq!(e.on_failure(3), Some(Duration::from_secs(1)));
        assert_eq!(e.on_failure(4), Some(Duration::from_secs(2)));
        assert_eq!(e.on_failure(5), Some(Duration::from_secs(4)));
        for n in 6..20 {
            e.on_failure(n);
        }
        assert_eq!(e.on_failure(20), Some(MAX));
        e.on_success();
        assert_eq!(e.on_failure(3), Some(Duration::from_secs(1)));
    }

    #[test]
    fn at_most_half_a_pool_is_ejected_and_never_a_lone_backend() {
        assert!(!may_eject(0, 1));
        assert!(may_eject(0, 2));
        assert!(!may_eject(1, 2));
        assert!(may_eject(1, 4));
        assert!(!may_eject(2, 4));
        assert!(!may_eject(2, 5));
    }
}
