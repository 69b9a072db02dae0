//! `wharf.ratelimit`: a token bucket per key (governor's GCRA), with memory
//! bounded however many keys a flood brings.
//!
//! A key's state is one 8-byte timestamp in a concurrent map. Keys whose
//! bucket has refilled are worth nothing and are pruned
//! (`retain_recent`) whenever the map reaches its bound, at most every
//! [`PRUNE_EVERY_MS`]. If pruning cannot bring it under the bound — more
//! than [`MAX_KEYS`] distinct keys inside one refill time — requests with a
//! key not yet in the map share one overflow bucket of the same quota until
//! pruning frees room: the limit degrades to per-pool for newcomers instead
//! of the map growing without end.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::model::{RateKey, RateLimit};

/// Distinct keys kept per pool (a few MiB at most).
pub const MAX_KEYS: usize = 65_536;
const PRUNE_EVERY_MS: u64 = 100;

type Keyed = RateLimiter<u128, DefaultKeyedStateStore<u128>, DefaultClock>;

#[derive(Debug)]
pub struct Limiter {
    pub spec: RateLimit,
    keyed: Keyed,
    overflow: DefaultDirectRateLimiter,
    max_keys: usize,
    hasher: RandomState,
    born: Instant,
    /// Milliseconds after `born` of the last prune.
    pruned_at: AtomicU64,
}

impl Limiter {
    pub fn new(spec: &RateLimit) -> Limiter {
        Limiter::with_max_keys(spec, MAX_KEYS)
    }

    pub fn with_max_keys(spec: &RateLimit, max_keys: usize) -> Limiter {
        let quota = quota(spec);
        Limiter {
            spec: spec.clone(),
            keyed: RateLimiter::dashmap(quota),
            overflow: RateLimiter::direct(quota),
            max_keys,
            hasher: RandomState::new(),
            born: Instant::now(),
            pruned_at: AtomicU64::new(0),
        }
    }

    /// The key of a request: its client address, a header's value, or the pool.
    pub fn key(&self, client: IpAddr, headers: &http::HeaderMap) -> u128 {
        match &self.spec.by {
            RateKey::Client => match client {
                IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                IpAddr::V6(v6) => u128::from(v6),
            },
            RateKey::Header(name) => {
                let value = headers.get(name.as_str()).map_or(&b""[..], |v| v.as_bytes());
                u128::from(self.hasher.hash_one(value))
            }
            RateKey::Pool => 0,
        }
    }

    /// `Ok` takes a token; `Err(wait)` says when one will be there.
    pub fn check(&self, key: u128) -> Result<(), Duration> {
        if self.keyed.len() >= self.max_keys && !self.prune() {
            return self
                .overflow
                .check()
                .map_err(|n| n.wait_time_from(self.overflow.clock().now()));
        }
        self.keyed
            .check_key(&key)
            .map_err(|n| n.wait_time_from(self.keyed.clock().now()))
    }

    /// Drops refilled buckets (throttled); `true` if there is room now.
    fn prune(&self) -> bool {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.pruned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRUNE_EVERY_MS
            && self
                .pruned_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.keyed.retain_recent();
            self.keyed.shrink_to_fit();
        }
        self.keyed.len() < self.max_keys
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.keyed.len()
    }
}

/// `rate` per `period` refill, `burst` at once.
fn quota(spec: &RateLimit) -> Quota {
    let per_token = (spec.period / spec.rate.max(1)).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(spec.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per_token)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// Whole seconds for `Retry-After`, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: u32, period: Duration, burst: u32, by: RateKey) -> RateLimit {
        RateLimit {
            rate,
            period,
            burst,
            by,
        }
    }

    #[test]
    fn a_full_bucket_gives_the_burst_then_refuses_with_a_wait() {
        let l = Limiter::new(&spec(10, Duration::from_secs(1), 5, RateKey::Client));
        let ok = (0..50).filter(|_| l.check(7).is_ok()).count();
        // 5 at once, plus at most one refilled while the loop ran.
        assert!((5..=6).contains(&ok), "{ok}");
        let wait = l.check(7).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        // Another key has its own bucket.
        assert!(l.check(8).is_ok());
    }

    #[test]
    fn keys_by_client_header_and_pool() {
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "abc".parse().unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let by_client = Limiter::new(&spec(1, Duration::from_secs(1), 1, RateKey::Client));
        assert_ne!(by_client.key(ip, &h), by_client.key(other, &h));
        let by_header = Limiter::new(&spec(1, Duration::from_secs(1), 1, RateKey::Header("x-api-key".into())));
        assert_eq!(by_header.key(ip, &h), by_header.key(other, &h));
        assert_ne!(by_header.key(ip, &h), by_header.key(ip, &http::HeaderMap::new()));
        let by_pool = Limiter::new(&spec(1, Duration::from_secs(1), 1, RateKey::Pool));
        assert_eq!(by_pool.key(ip, &h), by_pool.key(other, &http::HeaderMap::new()));
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_bound() {
        let l = Limiter::with_max_keys(&spec(1, Duration::from_secs(3600), 1, RateKey::Client), 1000);
        for key in 0..20_000u128 {
            let _ = l.check(key);
        }
        assert!(l.keys() <= 1000, "{} keys", l.keys());
        // Newcomers beyond the bound share the overflow bucket: one passes, then it is empty.
        assert!(l.check(1_000_000).is_err());
    }

    #[test]
    fn refilled_buckets_are_pruned_to_make_room() {
        let l = Limiter::with_max_keys(&spec(1000, Duration::from_secs(1), 1, RateKey::Client), 100);
        for key in 0..100u128 {
            assert!(l.check(key).is_ok());
        }
        std::thread::sleep(Duration::from_millis(150));
        // Every bucket refilled (1 ms per token): the newcomer gets its own.
        assert!(l.check(5000).is_ok());
        assert!(l.keys() <= 2, "{}", l.keys());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
