//! Cold start without a health check: a container is routed as soon as it
//! runs, and its process may not listen yet. A refused connect to a backend
//! that became ready less than [`GRACE`] ago, when no other backend could
//! take the request, is tried again on the same backend with a short
//! back-off ([`backoff`]: 20 ms doubling to 250 ms) until
//! `--connect-timeout` has passed since the first refusal, instead of
//! answering 502 at once.
//!
//! Why only then:
//! - with another backend available the normal retry rule sends the request
//!   there at once, which is faster than waiting;
//! - a backend ready for longer than the grace that refuses is broken, not
//!   starting: waiting would only delay the 502;
//! - the wait is bounded by the connect timeout, which is what a client
//!   already accepts to wait for a connection to a backend.
//!
//! "Ready" is [`crate::backend::ReadySince`]: the first routing table in
//! which the backend was ready (for a static backend, wharf's start).
//! The decisions are plain functions over durations ([`next_wait`]); the
//! [`ColdStart`] a request carries only remembers its first refusal.

use std::time::{Duration, Instant};

use crate::backend::ReadySince;

/// How long after a backend became ready a refused connect counts as a cold
/// start (documented in labels.md, "Cold start").
pub const GRACE: Duration = Duration::from_secs(2);
const FIRST_STEP: Duration = Duration::from_millis(20);
const MAX_STEP: Duration = Duration::from_millis(250);

/// The wait before the retry that follows `retries` retries: 20 ms, 40 ms,
/// 80 ms, 160 ms, then 250 ms.
pub fn backoff(retries: u32) -> Duration {
    FIRST_STEP.saturating_mul(1u32 << retries.min(8)).min(MAX_STEP)
}

/// After a refused connect: how long to wait before connecting to the same
/// backend again, or `None` to give up (the usual retry rule then decides).
///
/// `alone`: no other backend could take the request; `ready_for`: how long
/// the backend had been ready at its first refusal (`None`: not ready);
/// `waited`: time since that first refusal; `budget`: the connect timeout;
/// `retries`: cold-start retries so far for this request.
pub fn next_wait(
    alone: bool,
    ready_for: Option<Duration>,
    waited: Duration,
    budget: Duration,
    retries: u32,
) -> Option<Duration> {
    if !alone || ready_for? >= GRACE {
        return None;
    }
    let left = budget.checked_sub(waited).filter(|d| !d.is_zero())?;
    Some(backoff(retries).min(left))
}

/// One request's cold-start retries on one backend.
#[derive(Debug)]
pub struct ColdStart {
    alone: bool,
    budget: Duration,
    /// The first refusal: when, and how long the backend had been ready then.
    first: Option<(Instant, Option<Duration>)>,
    pub retries: u32,
}

impl ColdStart {
    pub fn new(alone: bool, budget: Duration) -> ColdStart {
        ColdStart {
            alone,
            budget,
            first: None,
            retries: 0,
        }
    }

    /// A connect was refused at `now`: the wait before trying again, if any.
    pub fn after_refusal(&mut self, ready: &ReadySince, now: Instant) -> Option<Duration> {
        let (since, ready_for) = *self.first.get_or_insert_with(|| (now, ready.elapsed(now)));
        let wait = next_wait(
            self.alone,
            ready_for,
            now.saturating_duration_since(since),
            self.budget,
            self.retries,
        )?;
        self.retries += 1;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_backoff_doubles_from_20_ms_to_a_250_ms_cap() {
        let steps: Vec<u128> = (0..7).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(steps, [20, 40, 80, 160, 250, 250, 250]);
        assert_eq!(backoff(u32::MAX), MAX_STEP);
    }

    #[test]
    fn a_backend_ready_for_less_than_the_grace_and_alone_is_waited_for() {
        let budget = 2000 * MS;
        assert_eq!(
            next_wait(true, Some(100 * MS), Duration::ZERO, budget, 0),
            Some(20 * MS)
        );
        assert_eq!(next_wait(true, Some(1999 * MS), 300 * MS, budget, 3), Some(160 * MS));
    }

    #[test]
    fn no_wait_with_another_backend_or_after_the_grace_or_when_not_ready() {
        let budget = 2000 * MS;
        assert_eq!(next_wait(false, Some(100 * MS), Duration::ZERO, budget, 0), None);
        assert_eq!(next_wait(true, Some(GRACE), Duration::ZERO, budget, 0), None);
        assert_eq!(next_wait(true, None, Duration::ZERO, budget, 0), None);
    }

    #[test]
    fn the_waits_end_at_the_connect_timeout_and_the_last_one_is_cut_to_fit() {
        let budget = 500 * MS;
        assert_eq!(next_wait(true, Some(MS), 400 * MS, budget, 6), Some(100 * MS));
        assert_eq!(next_wait(true, Some(MS), 500 * MS, budget, 7), None);
        assert_eq!(next_wait(true, Some(MS), 900 * MS, budget, 7), None);
    }

    #[test]
    fn a_request_remembers_its_first_refusal_and_stops_after_the_budget() {
        let ready = ReadySince::default();
        let t0 = Instant::now();
        ready.mark(t0);
        let mut c = ColdStart::new(true, 300 * MS);
        let mut now = t0 + 10 * MS;
        let mut waits = Vec::new();
        while let Some(w) = c.after_refusal(&ready, now) {
            waits.push(w.as_millis());
            now += w;
        }
        assert_eq!(waits, [20, 40, 80, 160]);
        assert_eq!(c.retries, 4);
        // Ready for longer than the grace at its first refusal: no wait.
        let mut late = ColdStart::new(true, 300 * MS);
        assert_eq!(late.after_refusal(&ready, t0 + GRACE + MS), None);
    }
}
