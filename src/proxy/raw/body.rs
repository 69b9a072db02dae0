//! A response body read straight from a [`RawConn`], framed as its head
//! said. At a clean end the connection is kept for the idle pool (when the
//! head allowed it and nothing followed the body); at any other end it is
//! closed with the body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::chunked::{ChunkError, Decoder, Step};
use super::head::Framing;
use super::RawConn;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("reading the backend's body: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("the backend closed the connection before the body's end")]
    Closed,
}

#[derive(Debug)]
enum Left {
    Length(u64),
    Chunked(Decoder),
    Close,
    Ended,
}

#[derive(Debug)]
pub struct RawBody {
    /// Until the body ends; after a clean end, only if it may be reused.
    conn: Option<Box<RawConn>>,
    left: Left,
    keep_alive: bool,
}

impl RawBody {
    pub fn new(conn: Box<RawConn>, framing: Framing, keep_alive: bool) -> RawBody {
        let left = match framing {
            Framing::Empty => Left::Ended,
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(Decoder::default()),
            Framing::Close => Left::Close,
        };
        let mut body = RawBody {
            conn: Some(conn),
            left,
            keep_alive,
        };
        if matches!(body.left, Left::Ended) {
            body.end();
        }
        body
    }

    /// The connection, if the body ended cleanly and it may carry another request.
    pub fn take_reusable(&mut self) -> Option<Box<RawConn>> {
        match self.left {
            Left::Ended => self.conn.take(),
            _ => None,
        }
    }

    fn end(&mut self) {
        self.left = Left::Ended;
        if !(self.keep_alive && self.conn.as_mut().is_some_and(|c| c.rest())) {
            self.conn = None;
        }
    }

    fn fail(&mut self, e: RawError) -> Poll<Option<Result<Frame<Bytes>, RawError>>> {
        self.left = Left::Ended;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = RawError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RawError>>> {
        let this = self.get_mut();
        loop {
            let (Some(conn), false) = (this.conn.as_mut(), matches!(this.left, Left::Ended)) else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.buf;
            match &mut this.left {
                Left::Ended => return Poll::Ready(None),
                Left::Length(n) if !buf.is_empty() => {
                    let take = (buf.len() as u64).min(*n);
                    let data = buf.split_to(take as usize).freeze();
                    *n -= take;
                    if *n == 0 {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Chunked(d) => match d.step(buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End(trailers)) => {
                        this.end();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Step::More) => {}
                    Err(e) => return this.fail(e.into()),
                },
                Left::Close if !buf.is_empty() => return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze())))),
                Left::Length(_) | Left::Close => {}
            }
            match std::task::ready!(conn.poll_read(cx)) {
                Ok(0) if matches!(this.left, Left::Close) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(RawError::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Ended)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Ended => SizeHint::with_exact(0),
            Left::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
