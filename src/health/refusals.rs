//! Connect refusals in a row, so a backend that refuses every connection is
//! shown as such (`refusing` in `/api/state` and `wharf_backend_state`)
//! instead of `ready`.
//!
//! Ejection alone does not show it: a lone backend is never ejected (there
//! is nothing to send its requests to instead), and an ejected one only says
//! "consecutive delivery failures". A refused connect is the clearest signal
//! there is — the host answered and nothing listens on the port — so it gets
//! its own counter: [`REFUSING_AFTER`] refusals in a row, with no connect
//! that succeeded in between, mark the backend refusing until the next
//! connect succeeds. An ejected backend stays `ejected` (that decides
//! whether it gets requests) with the refusals in its reason. Only fresh connects count (the proxy's, see
//! `proxy::attempt`); a request served on a pooled connection says nothing
//! about whether the port still listens.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Refused connects in a row that make a backend `refusing`.
pub const REFUSING_AFTER: u32 = 3;

#[derive(Debug, Default)]
pub struct Refusals {
    in_a_row: AtomicU32,
    /// `health::now_ms()` of the first refusal of the current run; 0: none.
    since_ms: AtomicU64,
}

/// A backend that refuses connections: since when, and how many in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusing {
    /// Time since the first refusal of the run, at the `now` asked about.
    pub for_: Duration,
    pub in_a_row: u32,
}

impl Refusals {
    /// A connect was refused at `now_ms`.
    pub fn record_refused(&self, now_ms: u64) {
        self.in_a_row.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .since_ms
            .compare_exchange(0, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A connect succeeded: the run is over. One load when there was none.
    pub fn record_connected(&self) {
        if self.in_a_row.load(Ordering::Relaxed) != 0 {
            self.in_a_row.store(0, Ordering::Relaxed);
            self.since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// `Some` when the last [`REFUSING_AFTER`] or more connects were all refused.
    pub fn refusing(&self, now_ms: u64) -> Option<Refusing> {
        let in_a_row = self.in_a_row.load(Ordering::Relaxed);
        let since = self.since_ms.load(Ordering::Relaxed);
        (in_a_row >= REFUSING_AFTER && since != 0).then(|| Refusing {
            for_: Duration::from_millis(now_ms.saturating_sub(since)),
            in_a_row,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_refusals_in_a_row_make_a_backend_refusing_since_the_first() {
        let r = Refusals::default();
        r.record_refused(1_000);
        r.record_refused(1_500);
        assert_eq!(r.refusing(2_000), None, "two are not enough");
        r.record_refused(2_000);
        assert_eq!(
            r.refusing(4_000),
            Some(Refusing {
                for_: Duration::from_secs(3),
                in_a_row: 3
            })
        );
    }

    #[test]
    fn a_connect_that_succeeds_ends_the_run_and_the_next_starts_afresh() {
        let r = Refusals::default();
        for t in [1, 2, 3, 4] {
            r.record_refused(t * 1_000);
        }
        r.record_connected();
        assert_eq!(r.refusing(5_000), None);
        for t in [6, 7] {
            r.record_refused(t * 1_000);
        }
        assert_eq!(r.refusing(8_000), None);
        r.record_refused(8_000);
        assert_eq!(r.refusing(8_000).map(|x| x.for_), Some(Duration::from_secs(2)));
    }
}
