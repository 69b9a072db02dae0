//! Retries, as pure decisions: when a failed attempt may go to another
//! backend ([`after`]), and how many retries a pool may spend ([`RetryBudget`]).
//!
//! The rule (SPEC "Retries"): a request that never reached a backend —
//! connect refused/reset/timed out, or a pooled connection found closed
//! before the request was written — goes to another backend whatever its
//! method; an idempotent request without a body is also replayed when the
//! connection died before response headers. Nothing is retried after
//! response headers arrived or after the request timeout, and a request is
//! never sent twice otherwise.
//!
//! The budget is Finagle's `RetryBudget`: every request deposits a fifth of a
//! token, every retry withdraws a whole one, and a small reserve lets a quiet
//! pool retry too. During an outage retries can add at most ~20% to the load
//! instead of multiplying it by `retries + 1`.

use std::sync::atomic::{AtomicI64, Ordering};

use http::Method;

pub use crate::model::MAX_RETRIES;

/// How one attempt on one backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request was not sent: it can go elsewhere as it is.
    NotSent,
    /// The request was sent and the connection died before response headers.
    Lost,
    /// No response headers within the request timeout.
    Timeout,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try another backend with the same request.
    Retry,
    /// Try another backend with a rebuilt copy of the (bodyless) request.
    Replay,
    /// Answer 502: nothing could be delivered.
    Unreachable,
    /// Answer 504.
    Timeout,
}

/// After `attempts` attempts of which the last failed with `failure`, with
/// at most `max_attempts` in all: what next? `replayable` says whether the
/// request is idempotent and has no body. The budget is asked separately,
/// only when a retry is otherwise allowed and another backend exists.
pub fn after(failure: Failure, replayable: bool, attempts: usize, max_attempts: usize) -> Next {
    let more = attempts < max_attempts;
    match failure {
        Failure::Timeout => Next::Timeout,
        Failure::NotSent if more => Next::Retry,
        Failure::Lost if more && replayable => Next::Replay,
        _ => Next::Unreachable,
    }
}

/// GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 §9.2.2).
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Milli-tokens deposited per request (0.2 tokens).
const DEPOSIT: i64 = 200;
/// Milli-tokens a retry costs.
const COST: i64 = 1000;
/// Starting and minimum-refill balance: 10 retries.
const RESERVE: i64 = 10 * COST;
/// Most that can be saved up: 100 retries.
const CAP: i64 = 100 * COST;

#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            balance: AtomicI64::new(RESERVE),
        }
    }
}

impl RetryBudget {
    /// Called once per request.
    pub fn deposit(&self) {
        if self.balance.load(Ordering::Relaxed) < CAP {
            self.balance.fetch_add(DEPOSIT, Ordering::Relaxed);
        }
    }

    /// May this request retry? Takes a token if so.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= COST).then_some(b - COST)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_matrix() {
        use Failure::{Lost, NotSent};
        use Next::{Replay, Retry, Unreachable};
        // (failure, replayable, attempts so far, max attempts) → next
        let cases = [
            (NotSent, false, 1, 3, Retry),
            (NotSent, true, 2, 3, Retry),
            (NotSent, false, 3, 3, Unreachable),
            (Lost, true, 1, 3, Replay),
            (Lost, false, 1, 3, Unreachable),
            (Lost, true, 3, 3, Unreachable),
            (Failure::Timeout, true, 1, 3, Next::Timeout),
            (NotSent, false, 1, 1, Unreachable),
        ];
        for (f, r, n, max, want) in cases {
            assert_eq!(after(f, r, n, max), want, "{f:?} replayable={r} {n}/{max}");
        }
    }

    #[test]
    fn only_safe_and_idempotent_methods_replay() {
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m), "{m}");
        }
    }

    #[test]
    fn a_quiet_pool_has_a_reserve_of_ten_retries() {
        let b = RetryBudget::default();
        assert_eq!((0..20).filter(|_| b.try_withdraw()).count(), 10);
    }

    #[test]
    fn under_load_retries_are_bounded_to_a_fifth_of_requests() {
        let b = RetryBudget::default();
        while b.try_withdraw() {}
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.try_withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 200);
    }

    #[test]
    fn savings_are_capped() {
        let b = RetryBudget::default();
        for _ in 0..10_000 {
            b.deposit();
        }
        assert_eq!((0..1000).filter(|_| b.try_withdraw()).count(), 100);
    }
}
