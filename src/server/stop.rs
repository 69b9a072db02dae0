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
//! would complete one `Watch` without the flag set.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Set once by [`Stop::trigger`]; watched through [`Stop::watch`].
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Tell every connection to stop; idempotent.
    pub fn trigger(&self) {
        // The flag first: a `Watch` polled after this sees it; one made before
        // holds a `Notified` made before `notify_waiters`, which that call
        // completes.
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// A connection's watch on the signal: one `Notified`, registered once
    /// for the connection's whole life and reused by every [`Watch::run`]
    /// on it (its first bytes, then hyper's connection). Two `Run`s with a
    /// `Notified` each took the `Notify`'s waiter lock four times per
    /// connection, not two (issue 9, `Connection: close`).
    pub fn watch(&self) -> Watch<'_> {
        Watch {
            stop: self,
            // Made now, before the flag is first read: `notify_waiters`
            // completes every `Notified` made before it, polled yet or not.
            notified: self.notify.notified(),
            registered: None,
        }
    }

    /// Wait until the signal is triggered.
    pub async fn stopped(&self) {
        let watch = std::pin::pin!(self.watch());
        let _ = watch.run(std::future::pending::<()>()).await;
    }
}

pin_project_lite::pin_project! {
    /// See [`Stop::watch`].
    pub struct Watch<'a> {
        stop: &'a Stop,
        #[pin]
        notified: Notified<'a>,
        // The waker `notify_waiters` will wake: registered on the first
        // poll, again only if the task's waker changed since.
        registered: Option<Waker>,
    }
}

impl<'a> Watch<'a> {
    /// Run `fut` to its end (`Some(output)`), or until the signal is
    /// triggered (`None`, `fut` dropped unfinished).
    ///
    /// A named future rather than an `async fn`: an `async fn` keeps its
    /// argument twice (once as passed, once pinned), and this one holds a
    /// connection's first-bytes future with its timer: 0.25 KiB more per
    /// idle connection, measured with 10,000 (`bench/pinned.sh --modes idle`).
    pub fn run<'w, F: Future>(self: Pin<&'w mut Self>, fut: F) -> Run<'w, 'a, F> {
        Run { watch: self, fut }
    }

    /// Whether the signal is triggered; if not, `cx`'s waker is the one
    /// woken when it is.
    fn poll_triggered(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if this.stop.is_triggered() {
            return true;
        }
        if !this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if this.notified.poll(cx).is_ready() {
                return true;
            }
            *this.registered = Some(cx.waker().clone());
        }
        false
    }
}

pin_project_lite::pin_project! {
    /// See [`Watch::run`].
    pub struct Run<'w, 'a, F> {
        watch: Pin<&'w mut Watch<'a>>,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Run<'_, '_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if this.watch.as_mut().poll_triggered(cx) {
            return Poll::Ready(None);
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
        assert_eq!(pin!(stop.watch()).run(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn a_signal_set_before_the_run_stops_it_at_once() {
        let stop = Stop::default();
        stop.trigger();
        assert_eq!(pin!(stop.watch()).run(std::future::pending::<()>()).await, None);
    }

    #[test]
    fn a_trigger_wakes_the_waiting_task_and_the_run_ends_unfinished() {
        let stop = Stop::default();
        let mut watch = pin!(stop.watch());
        let mut run = pin!(watch.as_mut().run(std::future::pending::<()>()));
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
        let mut watch = pin!(stop.watch());
        let mut run = pin!(watch.as_mut().run(std::future::pending::<()>()));
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
        let mut watch = pin!(stop.watch());
        let mut run = pin!(watch.as_mut().run(std::future::pending::<()>()));
        stop.trigger();
        let w = waker(Arc::new(Woken::default()));
        assert_eq!(run.as_mut().poll(&mut Context::from_waker(&w)), Poll::Ready(None));
    }

    #[test]
    fn a_watch_stays_registered_between_runs_and_its_next_run_stops() {
        let stop = Stop::default();
        let mut watch = pin!(stop.watch());
        let woken = Arc::new(Woken::default());
        let w = waker(Arc::clone(&woken));
        let mut cx = Context::from_waker(&w);
        {
            let mut first = pin!(watch.as_mut().run(std::future::pending::<()>()));
            assert!(first.as_mut().poll(&mut cx).is_pending());
        }
        stop.trigger();
        assert!(
            woken.was_woken(),
            "the waker registered in the first run is woken after that run ended"
        );
        let mut second = pin!(watch.as_mut().run(std::future::pending::<()>()));
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[tokio::test]
    async fn every_connection_waiting_on_one_signal_stops() {
        let stop = Arc::new(Stop::default());
        let runs: Vec<_> = (0..50)
            .map(|_| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move { pin!(stop.watch()).run(std::future::pending::<()>()).await })
            })
            .collect();
        tokio::task::yield_now().await;
        stop.trigger();
        for r in runs {
            assert_eq!(r.await.unwrap(), None);
        }
    }
}
