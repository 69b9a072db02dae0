//! The response body wharf streams back, with the bookkeeping that must
//! happen exactly when it ends.
//!
//! A request counts as in flight until its response *body* has ended or the
//! client went away (linkerd's `PendingUntilEos`): the [`Guard`] decrements
//! the backend's in-flight count when dropped. Only a body that reached its
//! clean end hands the connection back to the idle pool, and only if the
//! backend is not draining; any other ending closes the connection.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;

use super::upstream::{Pooled, Upstreams};
use crate::backend::BackendShared;
use crate::stats::StreamedBytes;

/// Holds one in-flight slot of a backend, and the connection to give back.
#[derive(Debug)]
pub struct Guard {
    shared: Arc<BackendShared>,
    sender: Option<(Arc<Upstreams>, Pooled)>,
}

impl Guard {
    pub fn new(shared: Arc<BackendShared>) -> Guard {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.requests.fetch_add(1, Ordering::Relaxed);
        Guard { shared, sender: None }
    }

    /// The connection goes back to `upstreams` if the response ends cleanly.
    pub fn set_sender(&mut self, upstreams: &Arc<Upstreams>, s: Pooled) {
        self.sender = Some((Arc::clone(upstreams), s));
    }

    pub fn shared(&self) -> &Arc<BackendShared> {
        &self.shared
    }

    /// The response ended cleanly: the connection may serve another request.
    fn complete(mut self) {
        if let Some((upstreams, s)) = self.sender.take() {
            if !self.shared.draining.load(Ordering::Relaxed) {
                upstreams.put(self.shared.uid, s);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        // Cheap when nobody waits (one atomic): only `wharf.max_conns` queues do.
        self.shared.slot_freed.notify_waiters();
    }
}

pin_project! {
    /// The backend's response body, releasing its [`Guard`] at the end.
    #[derive(Debug)]
    pub struct Tracked {
        #[pin]
        inner: Incoming,
        guard: Option<Guard>,
        // Only for a body of undeclared length (see `counting`).
        bytes: Option<StreamedBytes>,
    }
}

impl Tracked {
    pub fn new(inner: Incoming, guard: Guard) -> Tracked {
        // hyper never polls a body that is already at its end (e.g. 204,
        // Content-Length: 0): release now or the connection would be lost.
        if inner.is_end_stream() {
            guard.complete();
            return Tracked {
                inner,
                guard: None,
                bytes: None,
            };
        }
        Tracked {
            inner,
            guard: Some(guard),
            bytes: None,
        }
    }

    /// Count the body's bytes as they pass (its length was not declared).
    pub fn counting(mut self, bytes: StreamedBytes) -> Tracked {
        self.bytes = Some(bytes);
        self
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        if let (Some(bytes), Poll::Ready(Some(Ok(frame)))) = (this.bytes.as_mut(), &res) {
            bytes.add(frame.data_ref().map_or(0, |d| d.len()));
        }
        match &res {
            Poll::Ready(None) => {
                if let Some(g) = this.guard.take() {
                    g.complete();
                }
            }
            // hyper stops polling once `is_end_stream()` says so, so the
            // last data frame may be the last call we get.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                if let Some(g) = this.guard.take() {
                    g.complete();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(g) = this.guard.take() {
                    g.shared().errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
