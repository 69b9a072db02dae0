//! `wharf.max_conns`: at most N requests in flight to one backend (so at
//! most N upstream connections busy on it), over every worker.
//!
//! A request whose backend is at its cap first goes to another backend of
//! the pool that has room. When all are full it waits in a short queue —
//! at most N waiting per backend, each for at most `--connect-timeout` —
//! for a slot to be released; past that it gets `503` with
//! `x-wharf-error: backend-full`. The check and the slot's increment run
//! without an `await` between them, so a worker never overshoots; two
//! workers racing can exceed the cap by one each for a moment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::backend::BackendShared;

/// Does the backend have room under `max` (0: no cap)?
pub fn has_room(shared: &BackendShared, max: u32) -> bool {
    max == 0 || shared.in_flight.load(Ordering::Relaxed) < u64::from(max)
}

/// Wait until the backend has room, at most `within`; `false` when the
/// queue is full or the wait timed out.
pub async fn wait_for_room(shared: &BackendShared, max: u32, within: Duration) -> bool {
    if has_room(shared, max) {
        return true;
    }
    if shared.queued.fetch_add(1, Ordering::AcqRel) >= u64::from(max) {
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    let deadline = tokio::time::Instant::now() + within;
    let room = loop {
        let notified = shared.slot_freed.notified();
        tokio::pin!(notified);
        // Registered before the check: a release in between still wakes us.
        notified.as_mut().enable();
        if has_room(shared, max) {
            break true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break has_room(shared, max);
        }
    };
    shared.queued.fetch_sub(1, Ordering::AcqRel);
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_backend_queues_up_to_its_cap_then_refuses_and_a_release_wakes_a_waiter() {
        let shared = std::sync::Arc::new(BackendShared::default());
        assert!(has_room(&shared, 0), "0 is no cap");
        shared.in_flight.store(2, Ordering::Relaxed);
        assert!(!has_room(&shared, 2));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = std::sync::Arc::clone(&shared);
                tokio::spawn(async move { wait_for_room(&s, 2, Duration::from_secs(5)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(shared.queued.load(Ordering::Relaxed), 2);
        assert!(
            !wait_for_room(&shared, 2, Duration::from_secs(5)).await,
            "the queue is full"
        );
        shared.in_flight.store(1, Ordering::Relaxed);
        shared.slot_freed.notify_waiters();
        for w in waiters {
            assert!(w.await.unwrap());
        }
        shared.in_flight.store(2, Ordering::Relaxed);
        assert!(
            !wait_for_room(&shared, 2, Duration::from_millis(100)).await,
            "timed out"
        );
        assert_eq!(shared.queued.load(Ordering::Relaxed), 0);
    }
}
