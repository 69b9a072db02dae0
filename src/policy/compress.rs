//! `wharf.compress`: gzip, br or zstd, negotiated from `Accept-Encoding`
//! (RFC 9110 §12.5.3), streamed.
//!
//! Whether to compress is decided twice, both pure: from the request
//! ([`negotiate`]: what the client accepts; never for `HEAD` or a `Range`
//! request) and from the response ([`worth_compressing`]: a compressible
//! type, not already encoded, not a partial response, no
//! `Cache-Control: no-transform`, and, when the length is known, at least
//! [`MIN_SIZE`] bytes). The body is then compressed as it streams
//! ([`compress`]): frames go through the encoder as they come, so a 1 GiB
//! response costs one encoder's window, not 1 GiB.

use std::io;

use bytes::Bytes;
use futures::TryStreamExt as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Body, Frame};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::model::Encoding;

/// Smaller bodies (by `Content-Length`) are not worth the encoder.
pub const MIN_SIZE: u64 = 1024;
/// Bytes read from the encoder at a time.
const CHUNK: usize = 16 * 1024;

/// A compressed response body.
pub type Compressed = UnsyncBoxBody<Bytes, io::Error>;

/// The encoding to use: the client's highest `q` among those `offered`,
/// ties broken by the order of `offered`; `None` if nothing acceptable.
/// `*` covers encodings the client did not name; `q=0` excludes.
pub fn negotiate(accept: &HeaderMap, offered: &[Encoding]) -> Option<Encoding> {
    let mut best: Option<(Encoding, u32)> = None;
    for &enc in offered {
        let q = accepted_q(accept, enc.as_str());
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((enc, q));
        }
    }
    best.map(|(e, _)| e)
}

/// The `q` (×1000) the client gives `coding`, through `*` if not named.
fn accepted_q(headers: &HeaderMap, coding: &str) -> u32 {
    let mut star = 0;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(parse_q)
                .unwrap_or(1000);
            if name.eq_ignore_ascii_case(coding) {
                return q;
            }
            if name == "*" {
                star = q;
            }
        }
    }
    star
}

/// `0.5` → 500; out of range or malformed → `None` (the item is treated as q=1).
fn parse_q(s: &str) -> Option<u32> {
    let v: f64 = s.trim().parse().ok()?;
    (0.0..=1.0).contains(&v).then(|| (v * 1000.0).round() as u32)
}

/// Is this response worth compressing? See the module docs.
pub fn worth_compressing(status: StatusCode, headers: &HeaderMap) -> bool {
    if !status.is_success() || status == StatusCode::NO_CONTENT || status == StatusCode::PARTIAL_CONTENT {
        return false;
    }
    let has = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded || headers.contains_key(header::CONTENT_RANGE) || has(header::CACHE_CONTROL, "no-transform") {
        return false;
    }
    let small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n < MIN_SIZE);
    !small && headers.get(header::CONTENT_TYPE).is_some_and(compressible_type)
}

/// Text and the structured text formats; not images (but SVG), video,
/// archives, or event streams (compression would hold events back).
pub fn compressible_type(ct: &HeaderValue) -> bool {
    let Ok(ct) = ct.to_str() else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "text/event-stream" {
        return false;
    }
    mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-ndjson"
                | "application/graphql-response+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
        )
}

/// The response with its body compressed as `enc`, and its headers to
/// match: `Content-Encoding` set, `Content-Length` and `Accept-Ranges`
/// gone, `Vary: Accept-Encoding`, a strong `ETag` made weak.
pub fn compress<B>(resp: Response<B>, enc: Encoding) -> Response<Compressed>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc.as_str()));
    let varies = h.get_all(header::VARY).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',')
            .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
    });
    if !varies {
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(etag) = h.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                h.insert(header::ETAG, v);
            }
        }
    }
    Response::from_parts(parts, encode(body, enc))
}

/// The streaming encoder: body frames → `AsyncRead` → encoder → frames.
/// Trailers are dropped (a compressed body ends with the encoder's footer).
pub fn encode<B>(body: B, enc: Encoding) -> Compressed
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
    use async_compression::Level;
    let data = body.into_data_stream().map_err(io::Error::other);
    let reader = StreamReader::new(data);
    // Levels that keep up with a network: gzip's default (6), brotli 4
    // (its default, 11, is for precompressing files), zstd's default (3).
    let encoder: std::pin::Pin<Box<dyn AsyncRead + Send>> = match enc {
        Encoding::Gzip => Box::pin(GzipEncoder::with_quality(reader, Level::Default)),
        Encoding::Br => Box::pin(BrotliEncoder::with_quality(reader, Level::Precise(4))),
        Encoding::Zstd => Box::pin(ZstdEncoder::with_quality(reader, Level::Default)),
    };
    let frames = ReaderStream::with_capacity(encoder, CHUNK).map_ok(Frame::data);
    UnsyncBoxBody::new(StreamBody::new(frames))
}

#[cfg(test)]
mod tests;
