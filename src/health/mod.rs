//! Backend health: what wharf has learnt about a backend by talking to it.
//!
//! Two sources, both stored in [`BackendHealth`] inside the backend's shared
//! state so they survive every routing swap (a backend known down stays down
//! through any number of unrelated container events):
//!
//! - **passive**: consecutive failures to deliver a request (connect refused,
//!   reset, timed out; connection lost before response headers) eject the
//!   backend for a back-off that doubles with each ejection ([`eject`]);
//! - **active**: with `wharf.health.path`, a prober task per backend asks it
//!   over HTTP ([`crate::probe`]); `rise`/`fall` consecutive results flip its state
//!   ([`counter`]). A new backend starts *down* when checks are on and is
//!   probed every 100 ms until its first pass;
//! - **refusals**: connects refused in a row ([`refusals`]), shown as
//!   `refusing` (a lone backend is never ejected, so ejection cannot say it).
//!
//! Pure counters and thresholds (no I/O, no clock of its own): the request
//! path reads two atomics; locks are taken only when a result changes something.

pub mod counter;
pub mod eject;
pub mod refusals;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use counter::Consecutive;
pub use eject::Ejection;
pub use refusals::Refusals;

/// Milliseconds since the first call: a clock that fits in an atomic.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] at an instant already read (the request path reads the clock
/// once for what several decisions need).
pub fn ms_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    t.saturating_duration_since(*EPOCH.get_or_init(Instant::now))
        .as_millis() as u64
        + 1
}

#[derive(Debug, Default)]
pub struct BackendHealth {
    /// `now_ms()` until which the backend is ejected; 0 = not ejected.
    ejected_until: AtomicU64,
    consecutive_failures: AtomicU32,
    ejection: Mutex<Ejection>,
    /// Active checks configured and not (yet) passing.
    active_down: AtomicBool,
    /// The prober task was started (once per backend identity).
    pub probe_started: AtomicBool,
    active: Mutex<Option<Consecutive>>,
    /// Why the last probe failed, for the state API.
    pub last_probe_error: Mutex<Option<String>>,
    /// Connect refusals in a row (shown as `refusing`).
    pub refusals: Refusals,
}

impl BackendHealth {
    /// May this backend take a request at `now` (ms), as far as health goes?
    pub fn is_healthy(&self, now: u64) -> bool {
        !self.active_down.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    pub fn is_active_down(&self) -> bool {
        self.active_down.load(Ordering::Relaxed)
    }

    /// A request was delivered and answered.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.ejection.lock().unwrap_or_else(|e| e.into_inner()).on_success();
        }
    }

    /// A request could not be delivered. `may_eject` says whether the pool's
    /// cap on ejected backends leaves room. Returns the ejection time if this
    /// failure ejected the backend.
    pub fn record_failure(&self, now: u64, may_eject: bool) -> Option<Duration> {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if !may_eject || self.is_ejected(now) {
            return None;
        }
        let mut e = self.ejection.lock().unwrap_or_else(|e| e.into_inner());
        let d = e.on_failure(n)?;
        self.ejected_until.store(now + d.as_millis() as u64, Ordering::Relaxed);
        Some(d)
    }

    /// Turn active checks on (the backend starts down) with these thresholds.
    pub fn enable_active(&self, rise: u32, fall: u32) {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none() {
            *a = Some(Consecutive::new(rise, fall));
            self.active_down.store(true, Ordering::Relaxed);
        }
    }

    /// Record a probe result; returns the new state if it flipped.
    pub fn record_probe(&self, ok: bool) -> Option<bool> {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let c = a.as_mut()?;
        let flipped = c.record(ok);
        if let Some(up) = flipped {
            self.active_down.store(!up, Ordering::Relaxed);
        }
        flipped
    }

    /// Has the backend ever passed a probe? (probe faster until it has)
    pub fn ever_up(&self) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.ever_up())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let h = BackendHealth::default();
        let now = 1_000;
        assert_eq!(h.record_failure(now, true), None);
        assert_eq!(h.record_failure(now, true), None);
        let d = h.record_failure(now, true).expect("third failure ejects");
        assert!(!h.is_healthy(now) && h.is_ejected(now));
        assert!(h.is_healthy(now + d.as_millis() as u64));
        h.record_success();
        assert_eq!(h.record_failure(now + 60_000, true), None, "count restarted");
    }

    #[test]
    fn the_pool_cap_prevents_ejection() {
        let h = BackendHealth::default();
        for _ in 0..10 {
            assert_eq!(h.record_failure(5, false), None);
        }
        assert!(h.is_healthy(5));
    }

    #[test]
    fn active_checks_start_down_and_the_first_pass_brings_the_backend_up() {
        let h = BackendHealth::default();
        assert!(h.is_healthy(1), "no checks: healthy");
        h.enable_active(2, 3);
        assert!(!h.is_healthy(1));
        assert_eq!(h.record_probe(true), Some(true));
        assert!(h.is_healthy(1) && h.ever_up());
        assert_eq!(h.record_probe(false), None);
        assert_eq!(h.record_probe(false), None);
        assert_eq!(h.record_probe(false), Some(false));
        assert!(!h.is_healthy(1));
    }
}
