//! Response bodies: a boxed body type for all responses, and a generated
//! body of `x` bytes used by `/bytes`, `/chunked` and `/abort`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response.
pub type DemoBody = BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(data: impl Into<Bytes>) -> DemoBody {
    Full::new(data.into()).map_err(|never| match never {}).boxed()
}

/// Largest chunk `/chunked` accepts, to bound memory use.
pub const MAX_CHUNK: usize = 16 * 1024 * 1024;

/// Chunk size used when the caller does not choose one.
pub const DEFAULT_CHUNK: usize = 16 * 1024;

/// How long an aborting body stays pending after its last byte before it
/// fails. Hyper flushes buffered data while the body is pending, so this
/// makes sure the client really receives the bytes before the connection
/// is torn down.
const ABORT_GRACE: Duration = Duration::from_millis(100);

static XS: [u8; DEFAULT_CHUNK] = [b'x'; DEFAULT_CHUNK];

/// How a [`Pattern`] body ends once all its bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Known length: hyper sends `Content-Length` itself.
    Sized,
    /// Unknown length: HTTP/1.1 chunked encoding.
    Streamed,
    /// Fail after the last byte, which makes hyper abort the connection
    /// (HTTP/1) or reset the stream (HTTP/2).
    Abort,
}

/// `remaining` bytes of `x`, in frames of (at most) `chunk` bytes.
pub struct Pattern {
    remaining: u64,
    chunk: Bytes,
    ending: Ending,
    /// Pause before the next frame (only used before an abort).
    pause: Option<Pin<Box<Sleep>>>,
    abort_armed: bool,
}

impl Pattern {
    /// `chunk` must be between 1 and [`MAX_CHUNK`] (callers validate it).
    pub fn new(len: u64, chunk: usize, ending: Ending) -> Self {
        let chunk = chunk.clamp(1, MAX_CHUNK);
        let chunk = if chunk <= XS.len() {
            Bytes::from_static(&XS[..chunk])
        } else {
            Bytes::from(vec![b'x'; chunk])
        };
        Self {
            remaining: len,
            chunk,
            ending,
            pause: None,
            abort_armed: false,
        }
    }

    pub fn boxed(self) -> DemoBody {
        BodyExt::boxed(self)
    }
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            if this.remaining > 0 {
                let len = usize::try_from(this.remaining).map_or(this.chunk.len(), |r| r.min(this.chunk.len()));
                this.remaining -= len as u64;
                return Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..len)))));
            }
            if this.ending != Ending::Abort {
                return Poll::Ready(None);
            }
            if this.abort_armed {
                return Poll::Ready(Some(Err("body aborted on purpose by /abort".into())));
            }
            this.abort_armed = true;
            this.pause = Some(Box::pin(tokio::time::sleep(ABORT_GRACE)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.ending != Ending::Abort
    }

    fn size_hint(&self) -> SizeHint {
        match self.ending {
            Ending::Sized => SizeHint::with_exact(self.remaining),
            Ending::Streamed | Ending::Abort => SizeHint::default(),
        }
    }
}
