//! The response body wharf streams back, with the bookkeeping that must
//! happen exactly when it ends.
//!
//! The body comes from hyper's client or from wharf's own ([`super::raw`],
//! requests without a body); [`UpstreamBody`] is either.
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

use super::raw::{body::RawError, RawBody, RawConn};
use super::upstream::{Pooled, Timer, Up, Upstreams};
use crate::backend::BackendShared;
use crate::stats::StreamedBytes;

/// Holds one in-flight slot of a backend, and what is needed to give the
/// connection back: the pool and the connection's timer, and hyper's
/// sender (a raw connection is in the body until its end).
#[derive(Debug)]
pub struct Guard {
    shared: Arc<BackendShared>,
    home: Option<(Arc<Upstreams>, Timer)>,
    sender: Option<super::upstream::Sender>,
}

impl Guard {
    pub fn new(shared: Arc<BackendShared>) -> Guard {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.requests.fetch_add(1, Ordering::Relaxed);
        Guard {
            shared,
            home: None,
            sender: None,
        }
    }

    /// The connection goes back to `upstreams` if the response ends
    /// cleanly: hyper's `sender`, or (`None`) the raw connection the body
    /// hands over at its end.
    pub fn set_home(&mut self, upstreams: &Arc<Upstreams>, timer: Timer, sender: Option<super::upstream::Sender>) {
        self.home = Some((Arc::clone(upstreams), timer));
        self.sender = sender;
    }

    pub fn shared(&self) -> &Arc<BackendShared> {
        &self.shared
    }

    /// The response ended cleanly: the connection may serve another
    /// request (`raw`: the raw connection the body gave back, if reusable).
    fn complete(mut self, raw: Option<Box<RawConn>>) {
        let conn = match (self.sender.take(), raw) {
            (Some(s), _) => Up::Hyper(s),
            (None, Some(r)) => Up::Raw(r),
            (None, None) => return,
        };
        if let Some((upstreams, timer)) = self.home.take() {
            if !self.shared.draining.load(Ordering::Relaxed) {
                upstreams.put(self.shared.uid, Pooled { conn, timer });
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
        inner: UpstreamBody,
        guard: Option<Guard>,
        // Only for a body of undeclared length (see `counting`).
        bytes: Option<StreamedBytes>,
    }
}

impl Tracked {
    pub fn new(mut inner: UpstreamBody, guard: Guard) -> Tracked {
        // hyper never polls a body that is already at its end (e.g. 204,
        // Content-Length: 0): release now or the connection would be lost.
        if inner.is_end_stream() {
            guard.complete(inner.take_reusable());
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
    type Error = UpstreamError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        if let (Some(bytes), Poll::Ready(Some(Ok(frame)))) = (this.bytes.as_mut(), &res) {
            bytes.add(frame.data_ref().map_or(0, |d| d.len()));
        }
        match &res {
            Poll::Ready(None) => {
                if let Some(g) = this.guard.take() {
                    g.complete(this.inner.as_mut().get_mut().take_reusable());
                }
            }
            // hyper stops polling once `is_end_stream()` says so, so the
            // last data frame may be the last call we get.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                if let Some(g) = this.guard.take() {
                    g.complete(this.inner.as_mut().get_mut().take_reusable());
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

/// A backend's response body, from hyper's client or wharf's own.
#[derive(Debug)]
pub enum UpstreamBody {
    Hyper(Incoming),
    Raw(RawBody),
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error(transparent)]
    Raw(#[from] RawError),
}

impl UpstreamBody {
    /// hyper's body (an upgrade needs it), or this body back.
    pub fn into_hyper(self) -> Result<Incoming, UpstreamBody> {
        match self {
            UpstreamBody::Hyper(b) => Ok(b),
            raw => Err(raw),
        }
    }

    /// A raw connection that ended its body cleanly, for the idle pool.
    fn take_reusable(&mut self) -> Option<Box<RawConn>> {
        match self {
            UpstreamBody::Raw(b) => b.take_reusable(),
            UpstreamBody::Hyper(_) => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        // Both are `Unpin`.
        match self.get_mut() {
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Raw(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Raw(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Raw(b) => b.size_hint(),
        }
    }
}
