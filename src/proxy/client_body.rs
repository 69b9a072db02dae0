//! The client's request body on its way upstream, watched so that a failure
//! on the *client's* side is blamed on the client.
//!
//! When a client sends a bad chunk size, stops mid-upload or trickles its
//! body slower than the body idle timeout, the upstream connection fails
//! too — and without this wrapper that looked exactly like a backend that
//! cut the connection: a 502, a delivery failure on the backend's record,
//! and after a few of them an ejection of a healthy backend. A hostile
//! client could keep half a pool ejected that way.
//!
//! [`ClientBody`] notes what went wrong in a shared [`Fault`] cell the
//! attempt reads when the upstream exchange fails: a client fault ends the
//! request with the client's status (400, 408, or 499 for a client that went
//! away) and never touches the backend's health.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

use crate::stats::StreamedBytes;

/// What went wrong with a client's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientFault {
    /// Bad framing (a chunk size that is not hex, a body longer than announced…).
    #[error("malformed request body")]
    Malformed,
    /// The client closed the connection before its body ended.
    #[error("client went away during its request body")]
    Gone,
    /// No body byte for longer than the body idle timeout.
    #[error("request body idle for longer than {0:?}")]
    Timeout(Duration),
}

/// Shared between the body (which writes it) and the attempt (which reads
/// it after a failure). Only the first fault is kept.
#[derive(Debug, Default)]
pub struct Fault {
    kind: AtomicU8,
    timeout_ms: std::sync::atomic::AtomicU64,
}

impl Fault {
    fn set(&self, f: ClientFault) {
        let code = match f {
            ClientFault::Malformed => 1,
            ClientFault::Gone => 2,
            ClientFault::Timeout(d) => {
                self.timeout_ms.store(d.as_millis() as u64, Ordering::Relaxed);
                3
            }
        };
        let _ = self.kind.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The client's fault, if its body failed.
    pub fn get(&self) -> Option<ClientFault> {
        match self.kind.load(Ordering::Acquire) {
            1 => Some(ClientFault::Malformed),
            2 => Some(ClientFault::Gone),
            3 => Some(ClientFault::Timeout(Duration::from_millis(
                self.timeout_ms.load(Ordering::Relaxed),
            ))),
            _ => None,
        }
    }
}

/// Which fault a body error from the client's connection is: hyper reports
/// a connection that ended mid-body as an `UnexpectedEof` I/O error (or an
/// incomplete message), bad framing as anything else.
pub fn classify(e: &hyper::Error) -> ClientFault {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ClientFault::Gone;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => ClientFault::Gone,
                _ => ClientFault::Malformed,
            };
        }
        source = s.source();
    }
    ClientFault::Malformed
}

pin_project_lite::pin_project! {
    /// The client's body, with an idle timer and fault reporting.
    #[derive(Debug)]
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
        idle: Duration,
        // Runs only while the upstream side waits for the client: set at a
        // poll that finds no data, cleared by each frame, so a backend that
        // reads slowly never makes the client look idle.
        timer: Option<Pin<Box<Sleep>>>,
        fault: Arc<Fault>,
        // Only for a body of undeclared length (see `counting`).
        bytes: Option<StreamedBytes>,
    }
}

impl ClientBody {
    pub fn new(inner: Incoming, idle: Duration, fault: Arc<Fault>) -> ClientBody {
        ClientBody {
            inner,
            idle,
            timer: None,
            fault,
            bytes: None,
        }
    }

    /// Count the body's bytes as they pass (its length was not declared).
    pub fn counting(&mut self, bytes: StreamedBytes) {
        self.bytes = Some(bytes);
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientFault;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                *this.timer = None;
                if let Some(bytes) = this.bytes.as_mut() {
                    bytes.add(f.data_ref().map_or(0, |d| d.len()));
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                *this.timer = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let f = classify(&e);
                this.fault.set(f);
                Poll::Ready(Some(Err(f)))
            }
            Poll::Pending => {
                let idle = *this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let f = ClientFault::Timeout(idle);
                        this.fault.set(f);
                        Poll::Ready(Some(Err(f)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fault_is_kept_and_read_back() {
        let f = Fault::default();
        assert_eq!(f.get(), None);
        f.set(ClientFault::Timeout(Duration::from_millis(1500)));
        f.set(ClientFault::Gone);
        assert_eq!(f.get(), Some(ClientFault::Timeout(Duration::from_millis(1500))));
        let g = Fault::default();
        g.set(ClientFault::Malformed);
        assert_eq!(g.get(), Some(ClientFault::Malformed));
    }
}
