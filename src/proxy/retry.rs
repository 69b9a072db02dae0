//! The pool-wide retry budget (Finagle's `RetryBudget`): every request
//! deposits a fifth of a token, every retry withdraws a whole one, and a
//! small reserve lets a quiet pool retry too. During an outage retries can
//! add at most ~20% to the load instead of multiplying it by `retries + 1`.

use std::sync::atomic::{AtomicI64, Ordering};

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
