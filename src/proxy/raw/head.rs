//! The two heads of an exchange on a raw connection, as pure functions: the
//! request head written as bytes, and the response head parsed into a
//! `Response` and the framing of the body that follows (RFC 9112 §6.3).
//!
//! The framing rules are hyper's client's (`Client::decoder` in
//! `proto/h1/role.rs`), so a backend is read the same way whichever client
//! wharf used: `1xx` heads are skipped, `HEAD`, `204` and `304` have no body,
//! `Transfer-Encoding` wins over `Content-Length` and makes the connection
//! unusable afterwards unless `chunked` is last, differing or invalid
//! `Content-Length`s are refused, and a body with neither is read to the end
//! of the connection.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use crate::proxy::headers;

/// Most header lines in a response head (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// How the body after a response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// `Content-Length` bytes (more than zero).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the backend closes the connection.
    Close,
}

/// A response head read off the connection.
#[derive(Debug)]
pub struct Head {
    /// Without its hop-by-hop fields and those its `Connection` names
    /// (the proxy relies on it and does not strip them again).
    pub response: Response<()>,
    pub framing: Framing,
    /// The connection may carry another request once the body has ended.
    pub keep_alive: bool,
}

/// Why a response head was refused (the request is lost: it was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("invalid response head from the backend: {0}")]
    Parse(httparse::Error),
    #[error("invalid status code from the backend")]
    Status,
    #[error("invalid response header from the backend")]
    Header,
    #[error("invalid or differing Content-Length from the backend")]
    ContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response from the backend")]
    TransferEncoding10,
}

/// Write `req`'s head as HTTP/1.1 (or 1.0, below) into `dst`. The request has no body, so no
/// framing header goes with it (`Transfer-Encoding` is dropped as hyper's
/// client does for an empty body; the proxy has already removed the client's
/// framing headers). `http10`: the backend's last answer on this connection
/// was HTTP/1.0 (and kept it open); as hyper's client does, the request goes
/// as HTTP/1.0 with `Connection: keep-alive`. `forwarded`: the proxy's
/// `X-Forwarded-*` fields, written after the map's (see
/// [`headers::Forwarded`]).
pub fn encode_request<B>(req: &Request<B>, forwarded: &headers::Forwarded, dst: &mut Vec<u8>, http10: bool) {
    let headers = req.headers();
    dst.reserve(64 + (headers.len() + 3) * 32);
    dst.extend_from_slice(req.method().as_str().as_bytes());
    dst.push(b' ');
    let uri = req.uri();
    match (uri.scheme(), uri.authority(), uri.path_and_query()) {
        // Origin form, what the proxy sends: the bytes the client sent.
        (None, None, Some(pq)) => dst.extend_from_slice(pq.as_str().as_bytes()),
        (None, None, None) => dst.push(b'/'),
        _ => dst.extend_from_slice(uri.to_string().as_bytes()),
    }
    dst.extend_from_slice(if http10 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    // `forwarding` took the values it sets out of the map; a request that
    // had them inserted (hyper's client) never comes to the raw client.
    debug_assert!(forwarded.fields().all(|(n, _)| !headers.contains_key(n)));
    for (name, value) in headers.iter().chain(forwarded.fields()) {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if http10
        && !headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, b"keep-alive"))
    {
        dst.extend_from_slice(b"connection: keep-alive\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// Does a comma-separated list hold `token` (ASCII case aside)?
fn has_token(value: &HeaderValue, token: &[u8]) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The field names of a connection's last response, as the backend wrote
/// them. A backend sends the same names in the same order in each answer,
/// so the name at line `i` is usually the bytes of the last answer's line
/// `i`: a comparison, and a clone of the `HeaderName`, instead of
/// `HeaderName::from_bytes`, a lowercasing copy and a `match` over the
/// standard names (about 130 instructions per name; issue 9). Bytes that
/// were not a valid name are never kept; equal bytes parse to an equal name.
#[derive(Debug, Default)]
pub struct Names {
    seen: Vec<(Vec<u8>, HeaderName)>,
}

/// Lines remembered per connection.
const NAMES_KEPT: usize = 16;
/// Longest name remembered: a hostile backend's 64 KiB names would
/// otherwise stay with each idle connection.
const NAME_KEPT_LEN: usize = 64;

impl Names {
    /// The name written as `raw` on line `i` of a response head.
    fn get(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, HeadError> {
        if let Some((bytes, name)) = self.seen.get(i) {
            if bytes == raw {
                return Ok(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).map_err(|_| HeadError::Header)?;
        // A long name leaves an empty entry, which no name matches.
        let entry = || match raw.len() <= NAME_KEPT_LEN {
            true => (raw.to_vec(), name.clone()),
            false => (Vec::new(), header::HOST),
        };
        let len = self.seen.len();
        match self.seen.get_mut(i) {
            Some((bytes, kept)) if raw.len() <= NAME_KEPT_LEN => {
                bytes.clear();
                bytes.extend_from_slice(raw);
                *kept = name.clone();
            }
            Some(slot) => *slot = entry(),
            None if i == len && i < NAMES_KEPT => self.seen.push(entry()),
            None => {}
        }
        Ok(name)
    }
}

/// Parse the response head at the start of `buf`, taking its bytes out of
/// `buf` when complete (what follows is the body). `Ok(None)`: more bytes
/// are needed. Informational (`1xx`) heads other than `101` are taken out
/// and skipped. Hop-by-hop fields frame the body and decide keep-alive, then
/// stay out of the response (see [`Head::response`]).
pub fn parse_response(buf: &mut BytesMut, method: &Method, names: &mut Names) -> Result<Option<Head>, HeadError> {
    loop {
        let mut lines = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut lines)
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HeadError::Parse(e)),
        };
        let status = StatusCode::from_u16(res.code.unwrap_or(0)).map_err(|_| HeadError::Status)?;
        let version = if res.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let reason = res.reason.filter(|r| Some(*r) != status.canonical_reason());
        // Where each name and value sits in the head, so that the values can
        // share the head's bytes once it is taken out of `buf`.
        // httparse returns an empty reason or value as a static `""`, not
        // a slice of `buf`: an empty span is (0, 0) wherever it points.
        let (base, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + len);
        let at = |s: &[u8]| match s.as_ptr() as usize {
            _ if s.is_empty() => Ok((0, 0)),
            p if p >= base && p + s.len() <= end => Ok((p - base, s.len())),
            _ => Err(HeadError::Header),
        };
        let mut spans = Vec::with_capacity(res.headers.len());
        for h in res.headers.iter() {
            spans.push((at(h.name.as_bytes())?, at(h.value)?));
        }
        let reason = reason.map(|r| at(r.as_bytes())).transpose()?;
        let head = buf.split_to(len).freeze();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        let mut headers = HeaderMap::with_capacity(spans.len());
        // The framing headers are read as they go into the map (three
        // lookups fewer afterwards), and the hop-by-hop ones, which the
        // proxy would remove at once, stay out of it, with any header a
        // `Connection` names (RFC 9110 §7.6.1): the proxy's
        // `strip_hop_by_hop`, done here without a pass over the map.
        let mut seen = Seen::default();
        let mut named = Vec::new();
        for (i, ((n, nl), (v, vl))) in spans.into_iter().enumerate() {
            let name = names.get(i, &head[n..n + nl])?;
            let value = HeaderValue::from_maybe_shared(head.slice(v..v + vl)).map_err(|_| HeadError::Header)?;
            seen.note(&name, &value);
            if !headers::is_hop_by_hop(&name) {
                headers.append(name, value);
            } else if name == header::CONNECTION {
                headers::connection_names(&value, &mut named);
            }
        }
        for name in named {
            headers.remove(name);
        }
        let keep_alive = seen.keep_alive(version);
        let framing = framing(status, method, version, &seen)?;
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        if let Some((r, rl)) = reason {
            // Kept as hyper's client keeps it: hyper's server writes it back.
            if let Ok(r) = hyper::ext::ReasonPhrase::try_from(head.slice(r..r + rl)) {
                response.extensions_mut().insert(r);
            }
        }
        // A switch of protocols ends HTTP on this connection.
        let keep_alive = keep_alive && status != StatusCode::SWITCHING_PROTOCOLS && framing != Framing::Close;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive,
        }));
    }
}

/// What the framing and keep-alive rules need from a head's fields.
#[derive(Debug, Default)]
struct Seen {
    /// A `Connection` said `close`.
    close: bool,
    /// A `Connection` said `keep-alive`.
    keep: bool,
    /// `Transfer-Encoding` was present; whether its last coding is `chunked`.
    chunked: Option<bool>,
    /// Every `Content-Length` value so far (a line may list several) was
    /// this decimal number.
    length: Option<u64>,
    /// A `Content-Length` value was not a number, or differed from another
    /// (an error unless `Transfer-Encoding` overrides it, as in hyper).
    bad_length: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        let tokens = || value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if name == header::CONNECTION {
            // The usual whole values at the cost of a length check (see
            // `headers::connection_names`).
            let v = value.as_bytes();
            if v.eq_ignore_ascii_case(b"keep-alive") {
                self.keep = true;
                return;
            }
            if v.eq_ignore_ascii_case(b"close") {
                self.close = true;
                return;
            }
            // As hyper: a value that is not visible ASCII says nothing.
            if value.to_str().is_err() {
                return;
            }
            for t in tokens() {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::TRANSFER_ENCODING {
            // The last field line's last coding decides.
            self.chunked = Some(tokens().next_back().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
        } else if name == header::CONTENT_LENGTH {
            for t in tokens() {
                let n = (!t.is_empty() && t.iter().all(u8::is_ascii_digit))
                    .then(|| {
                        t.iter()
                            .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
                    })
                    .flatten();
                self.bad_length |= n.is_none() || (self.length.is_some() && self.length != n);
                self.length = n;
            }
        }
    }

    /// HTTP/1.1 keeps the connection unless a `Connection` says `close`;
    /// HTTP/1.0 closes it unless one says `keep-alive`. A `close` anywhere
    /// wins over a `keep-alive`.
    fn keep_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep)
    }
}

/// RFC 9112 §6.3, for a response to `method` (never `CONNECT` here).
fn framing(status: StatusCode, method: &Method, version: Version, seen: &Seen) -> Result<Framing, HeadError> {
    if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty);
    }
    if method == Method::HEAD {
        return Ok(Framing::Empty);
    }
    if let Some(chunked) = seen.chunked {
        if version == Version::HTTP_10 {
            return Err(HeadError::TransferEncoding10);
        }
        return Ok(if chunked { Framing::Chunked } else { Framing::Close });
    }
    match seen.length {
        _ if seen.bad_length => Err(HeadError::ContentLength),
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Close),
    }
}

#[cfg(test)]
mod tests;
