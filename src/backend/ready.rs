//! When a backend last became ready, for slow start (`wharf.slow_start`).
//!
//! The mark is set when a routing table is built in which the backend's
//! container is ready, and cleared while it is not (see
//! [`crate::routing::RoutingTable::build`]); the balancers read it through
//! [`crate::balance::slow_start`]. It lives in the backend's shared state, so
//! it survives routing swaps.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When a backend last became ready, in one atomic (nanoseconds from a
/// process-wide reference instant, signed so that any `Instant` fits; 0 = not
/// marked). Reads are a relaxed load: the request path takes no lock.
#[derive(Debug, Default)]
pub struct ReadySince(AtomicI64);

fn reference() -> Instant {
    static REF: OnceLock<Instant> = OnceLock::new();
    *REF.get_or_init(Instant::now)
}

pub fn encode(t: Instant) -> i64 {
    let r = reference();
    let n = match t.checked_duration_since(r) {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(r.duration_since(t).as_nanos()).unwrap_or(i64::MAX),
    };
    if n == 0 {
        1
    } else {
        n
    }
}

impl ReadySince {
    /// Start the ramp at `now` unless it already started.
    pub fn mark(&self, now: Instant) {
        let _ = self
            .0
            .compare_exchange(0, encode(now), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The backend is not ready: the next [`ReadySince::mark`] starts a new ramp.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Time since the mark, `None` if not marked.
    pub fn elapsed(&self, now: Instant) -> Option<Duration> {
        self.elapsed_at(encode(now))
    }

    /// [`ReadySince::elapsed`] with `now` already [`encode`]d.
    pub fn elapsed_at(&self, now: i64) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_nanos(now.saturating_sub(since).max(0) as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn instants_before_the_reference_instant_work_too() {
        let r = ReadySince::default();
        let before = reference().checked_sub(5 * S).expect("up for more than 5 s");
        assert!(encode(before) < 0);
        r.mark(before);
        assert_eq!(r.elapsed(before + 7 * S), Some(7 * S));
        assert_eq!(r.elapsed(before), Some(Duration::ZERO));
    }
}
