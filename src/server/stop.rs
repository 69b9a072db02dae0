//! The shutdown signal every client connection watches: set once, when the
//! listener closes, after which each connection finishes its in-flight
//! requests and closes (see the drain in [`super`]). A worker's accept loops
//! watch one too, triggered when shutdown is asked (`app::worker`).
//!
//! Why not a `watch` channel (as before): a connection's task polls its stop
//! future every time it wakes, two or three times per keep-alive request, and
//! `watch::Receiver::wait_for` takes the channel's read lock and re-polls its
//! `Notified` (the `Notify`'s waiter mutex) every time: about 400 instructions
//! per request (callgrind, issue 9). Here a wake costs one atomic load; the
//! `Notified` is polled again only if the task's waker changed.
//!
//! Only `notify_waiters` may be used on the `Notify`: a `notify_one` permit
//! would complete one `Run` without the flag set.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Set once by [`Stop::trigger`]; watched by [`Stop::run`].
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Tell every connection to stop; idempotent.
    pub fn trigger(&self) {
        // The flag first: a `Run` polled after this sees it; one made before
        // holds a `Notified` made before `notify_waiters`, which that call
        // completes.
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Run `fut` to its end (`Some(output)`), or until the signal is
    /// triggered (`None`, `fut` dropped unfinished).
    ///
    /// A named future rather than an `async fn`: an `async fn` keeps its
    /// argument twice (once as passed, once pinned), and this one holds a
    /// connection's first-bytes future with its timer: 0.25 KiB more per
    /// idle connection, measured with 10,000 (`bench/pinned.sh --modes idle`).
    pub fn run<F: Future>(&self, fut: F) -> Run<'_, F> {
        Run {
            stop: self,
            fut,
            // Made now, before the flag is first read: `notify_waiters`
            // completes every `Notified` made before it, polled yet or not.
            notified: self.notify.notified(),
            registered: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`Stop::run`].
    pub struct Run<'a, F> {
        stop: &'a Stop,
        #[pin]
        fut: F,
        #[pin]
        notified: Notified<'a>,
        // The waker `notify_waiters` will wake: registered on the first
        // poll, again only if the task's waker changed since.
        registered: Option<Waker>,
    }
}

impl<F: Future> Future for Run<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if this.stop.is_triggered() {
            return Poll::Ready(None);
        }
        if !this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if this.notified.poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            *this.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::Arc;

    use futures::task::{waker, ArcWake};

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Woken(AtomicBool);

    impl ArcWake for Woken {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Woken {
        fn was_woken(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_future_that_finishes_first_gives_its_output() {
        let stop = Stop::default();
        assert_eq!(stop.run(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn a_signal_set_before_the_run_stops_it_at_once() {
        let stop = Stop::default();
        stop.trigger();
        assert_eq!(stop.run(std::future::pending::<()>()).await, None);
    }

    #[test]
    fn a_trigger_wakes_the_waiting_task_and_the_run_ends_unfinished() {
        let stop = Stop::default();
        let mut run = pin!(stop.run(std::future::pending::<()>()));
        let woken = Arc::new(Woken::default());
        let w = waker(Arc::clone(&woken));
        let mut cx = Context::from_waker(&w);
        assert!(run.as_mut().poll(&mut cx).is_pending());
        assert!(
            run.as_mut().poll(&mut cx).is_pending(),
            "a second poll registers nothing new"
        );
        assert!(!woken.was_woken());
        stop.trigger();
        assert!(woken.was_woken(), "trigger wakes the registered waker");
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_new_waker_is_registered_and_the_latest_one_is_woken() {
        let stop = Stop::default();
        let mut run = pin!(stop.run(std::future::pending::<()>()));
        let (first, second) = (Arc::new(Woken::default()), Arc::new(Woken::default()));
        let (w1, w2) = (waker(Arc::clone(&first)), waker(Arc::clone(&second)));
        assert!(run.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(run.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        stop.trigger();
        assert!(second.was_woken(), "the waker of the latest poll is the one woken");
    }

    #[test]
    fn a_run_made_before_the_trigger_and_first_polled_after_it_stops() {
        let stop = Stop::default();
        let mut run = pin!(stop.run(std::future::pending::<()>()));
        stop.trigger();
        let w = waker(Arc::new(Woken::default()));
        assert_eq!(run.as_mut().poll(&mut Context::from_waker(&w)), Poll::Ready(None));
    }

    #[tokio::test]
    async fn every_connection_waiting_on_one_signal_stops() {
        let stop = Arc::new(Stop::default());
        let runs: Vec<_> = (0..50)
            .map(|_| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move { stop.run(std::future::pending::<()>()).await })
            })
            .collect();
        tokio::task::yield_now().await;
        stop.trigger();
        for r in runs {
            assert_eq!(r.await.unwrap(), None);
        }
    }
}
