//! When to order, renew and retry: pure decisions over plain data.
//!
//! - Renewal at two thirds of the certificate's lifetime (Let's Encrypt's own
//!   advice for 90-day certificates: 30 days before expiry), or
//!   `--acme-renew-before` ahead of not-after when set (a testing knob and
//!   for CAs with unusual lifetimes), minus a random jitter of up to 1/50 of
//!   the lifetime so a fleet that started together does not renew together.
//!   A renewal is never scheduled sooner than [`MIN_RENEW_GAP`] after now,
//!   so a threshold longer than the lifetime cannot loop without pause.
//! - A failed order is retried after 10 s, 20 s, 40 s … up to one hour
//!   (Let's Encrypt allows 5 failed validations per name per hour), ±10 %
//!   jitter; one name's failures never delay another's orders.

use std::time::{Duration, SystemTime};

/// Floor between now and a scheduled renewal.
pub const MIN_RENEW_GAP: Duration = Duration::from_secs(10);
/// First retry delay after a failure; doubles per consecutive failure.
pub const RETRY_BASE: Duration = Duration::from_secs(10);
pub const RETRY_MAX: Duration = Duration::from_secs(3600);

/// When to renew a certificate valid from `not_before` to `not_after`.
/// `jitter` in `[0, 1)` (random in production, fixed in tests).
pub fn renewal_at(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Option<Duration>,
    jitter: f64,
    now: SystemTime,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let base = match renew_before {
        Some(before) => not_after.checked_sub(before).unwrap_or(not_before),
        None => not_before + lifetime.mul_f64(2.0 / 3.0),
    };
    let spread = lifetime.mul_f64(jitter.clamp(0.0, 1.0) / 50.0);
    let at = base.checked_sub(spread).unwrap_or(base);
    at.max(now + MIN_RENEW_GAP)
}

/// Delay before retry number `failures` (1 = after the first failure).
/// `jitter` in `[0, 1)` maps to ±10 %.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = RETRY_BASE.saturating_mul(1u32 << exp).min(RETRY_MAX);
    base.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// What a name's state says to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Order (no certificate) or renew (renewal time passed) now.
    Now,
    /// Nothing before this time.
    At(SystemTime),
    /// Never by itself (an order is running, or the name cannot be ordered).
    Never,
}

/// `renew_at`: when the current certificate is due (None: no certificate);
/// `retry_at`: after a failure, not before this.
pub fn due(renew_at: Option<SystemTime>, retry_at: Option<SystemTime>, ordering: bool, now: SystemTime) -> Due {
    if ordering {
        return Due::Never;
    }
    let want = renew_at.unwrap_or(now);
    let at = match retry_at {
        Some(r) => want.max(r),
        None => want,
    };
    if at <= now {
        Due::Now
    } else {
        Due::At(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_90_day_certificate_renews_at_day_60_without_jitter() {
        let nb = t(1_000_000_000);
        let at = renewal_at(nb, nb + 90 * DAY, None, 0.0, nb);
        assert_eq!(at, nb + 60 * DAY);
    }

    #[test]
    fn jitter_moves_renewal_earlier_by_at_most_a_fiftieth_of_the_lifetime() {
        let nb = t(1_000_000_000);
        let at = renewal_at(nb, nb + 90 * DAY, None, 0.999_999, nb);
        assert!(at < nb + 60 * DAY);
        assert!(at >= nb + 60 * DAY - DAY.mul_f64(1.8) - Duration::from_secs(1));
    }

    #[test]
    fn renew_before_counts_back_from_not_after() {
        let nb = t(1_000_000_000);
        let at = renewal_at(nb, nb + 90 * DAY, Some(10 * DAY), 0.0, nb);
        assert_eq!(at, nb + 80 * DAY);
    }

    #[test]
    fn a_threshold_longer_than_the_lifetime_renews_soon_but_never_in_a_tight_loop() {
        let nb = t(1_000_000_000);
        let now = nb + Duration::from_secs(5);
        let at = renewal_at(nb, nb + 90 * DAY, Some(1000 * DAY), 0.0, now);
        assert_eq!(at, now + MIN_RENEW_GAP);
    }

    #[test]
    fn an_expired_certificate_from_storage_is_renewed_after_the_minimum_gap() {
        let nb = t(1_000_000_000);
        let now = nb + 100 * DAY;
        assert_eq!(renewal_at(nb, nb + 90 * DAY, None, 0.0, now), now + MIN_RENEW_GAP);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        assert_eq!(retry_delay(1, 0.5), Duration::from_secs(10));
        assert_eq!(retry_delay(2, 0.5), Duration::from_secs(20));
        assert_eq!(retry_delay(3, 0.5), Duration::from_secs(40));
        assert_eq!(retry_delay(30, 0.5), RETRY_MAX);
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(9));
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(11));
    }

    #[test]
    fn a_name_without_certificate_is_due_now_unless_backing_off_or_ordering() {
        let now = t(100);
        assert_eq!(due(None, None, false, now), Due::Now);
        assert_eq!(due(None, Some(t(150)), false, now), Due::At(t(150)));
        assert_eq!(due(None, Some(t(50)), false, now), Due::Now);
        assert_eq!(due(None, None, true, now), Due::Never);
    }

    #[test]
    fn a_valid_certificate_is_due_at_its_renewal_time() {
        let now = t(100);
        assert_eq!(due(Some(t(200)), None, false, now), Due::At(t(200)));
        assert_eq!(due(Some(t(90)), None, false, now), Due::Now);
        // A failed renewal waits for its back-off even though renewal is overdue.
        assert_eq!(due(Some(t(90)), Some(t(130)), false, now), Due::At(t(130)));
    }
}
