//! The client's request → the request wharf sends upstream: the path with
//! any stripped prefix, hop-by-hop headers removed, the `X-Forwarded-*`
//! values worked out (each attempt writes them: [`Prepared::forwarded`]), the
//! Host kept, HTTP/2's `:authority` for h2c pools, and whether the request
//! may be replayed on another backend ([`Replay`] copies its head, taken by
//! the proxy only before an attempt after which a replay is possible).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;

use super::client_body::{ClientBody, Fault};
use super::error::ProxyError;
use super::headers;
use super::upstream::UpBody;
use crate::model::Protocol;
use crate::retry;
use crate::routing::Pool;

/// A request ready for its first attempt.
pub struct Prepared {
    pub req: Request<UpBody>,
    /// The client asked for a protocol upgrade (HTTP/1.1 only) or sent a
    /// `CONNECT`: its side of the tunnel.
    pub upgrade: Option<OnUpgrade>,
    /// Spoken to the backend in HTTP/2 (an h2c pool, not an upgrade).
    pub h2: bool,
    /// An idempotent request without a body: it may be replayed after a
    /// lost connection ([`Replay::of`] copies its head, only when needed).
    pub replayable: bool,
    /// Set by the client's body when it fails: the client's fault, not the
    /// backend's. `None` for a request without a body, which cannot fail.
    pub fault: Option<Arc<Fault>>,
    /// The `X-Forwarded-*` values, not yet in `req`'s map: each attempt
    /// writes them (see [`headers::Forwarded`]).
    pub forwarded: headers::Forwarded,
}

/// What is needed to send a bodyless request again.
///
/// Only requests through hyper's client (upgrades, h2c pools) need it: the
/// raw client only borrows the request, so a lost one is still there to
/// send again ([`super::raw::Failed::Lost`]).
/// The headers are kept as a list, not a `HeaderMap`: the copy is made for
/// every such replayable request to a pool with more than one backend and used
/// almost never, and a list is one small allocation where a map's clone is
/// two (issue 9, callgrind with two backends: the map's copy cost about 1.4k
/// instructions per request, the list saves 350-480 of them). Appending the
/// list in order rebuilds the same map: the same names in the same order,
/// each with its values in order.
pub struct Replay {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    version: Version,
}

impl Replay {
    /// A copy of `req`'s head, taken before an attempt that could be replayed.
    pub fn of(req: &Request<UpBody>) -> Replay {
        let mut headers = Vec::with_capacity(req.headers().len());
        headers.extend(req.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers,
            version: req.version(),
        }
    }

    pub fn request(&self) -> Request<UpBody> {
        let mut r = Request::new(Either::Right(Empty::new()));
        *r.version_mut() = self.version;
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        // `extend` appends, in order, and caps what it reserves (a map
        // panics when asked to reserve too much; this list counts values).
        r.headers_mut().extend(self.headers.iter().cloned());
        r
    }
}

/// `http://host/p?q` → `/p?q` (the path-and-query is shared, not copied).
fn origin_form(uri: &Uri) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_default()
}

/// `sent_host`: the client's `Host` header (looked up once, by the proxy).
/// `prefix_len`: how much of the path the route matched (stripped if the
/// pool says so). `trusted`: the peer is a trusted proxy (its
/// `X-Forwarded-*` are kept and extended). `secure`: the request came over
/// TLS (`X-Forwarded-Proto: https`). `body_idle`: the longest silence allowed
/// inside the client's body.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub fn prepare(
    mut req: Request<Incoming>,
    sent_host: Option<HeaderValue>,
    pool: &Pool,
    prefix_len: usize,
    client: SocketAddr,
    trusted: bool,
    secure: bool,
    body_idle: Duration,
) -> Result<Prepared, ProxyError> {
    let upgrade = headers::wants_upgrade(req.headers()) && req.version() == Version::HTTP_11;
    // A CONNECT (admitted by the pool, see `connect`) becomes a tunnel on 2xx.
    let connect = req.method() == Method::CONNECT;
    let client_upgrade = (upgrade || connect).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let stripped = (pool.opts.strip_prefix && prefix_len > 0).then(|| {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        headers::strip_prefix(pq, prefix_len)
    });
    let host_sent = sent_host.is_some();
    let host_value = sent_host.or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let h2 = pool.opts.protocol == Protocol::H2c && !upgrade && !connect;
    // gRPC needs `te: trailers`, the one TE value HTTP/2 allows.
    let te_trailers = h2 && headers::te_trailers(&parts.headers);
    let (removed_named, forwarded) = headers::forwarding(
        &mut parts.headers,
        client.ip(),
        host_value.as_ref(),
        upgrade,
        trusted,
        secure,
    );
    if !trusted {
        super::client_ip::strip_untrusted(&mut parts.headers, client.ip());
    }
    let uri = if h2 {
        // HTTP/2 carries the host as :authority, which hyper takes from an absolute URI.
        let authority = host_value.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let pq = stripped
            .as_deref()
            .unwrap_or_else(|| parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        format!("http://{authority}{pq}").parse::<Uri>()
    } else {
        // HTTP/1 needs a Host: the authority's when the client sent none
        // (HTTP/2), or the client's if `Connection` named it. Usually the
        // client's is still there: sent, and nothing `Connection` named was
        // removed; no lookup then (issue 9). Otherwise a lookup is still
        // cheaper than an insert.
        if let Some(h) = host_value {
            if (!host_sent || removed_named) && !parts.headers.contains_key(http::header::HOST) {
                parts.headers.insert(http::header::HOST, h);
            }
        }
        match stripped {
            // CONNECT's authority-form target goes as it is.
            _ if connect => Ok(parts.uri),
            Some(pq) => pq.parse::<Uri>(),
            // The client's own request target, unless it came in absolute
            // form (HTTP/2, or a proxy-style request): no copy of the path.
            None if parts.uri.scheme().is_none() && parts.uri.authority().is_none() => Ok(parts.uri),
            None => Ok(origin_form(&parts.uri)),
        }
    }
    .map_err(|_| ProxyError::BadRequest("invalid path or host"))?;
    if te_trailers {
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let version = if h2 { Version::HTTP_2 } else { Version::HTTP_11 };
    let bodyless = body.is_end_stream();
    let replayable = pool.opts.retries > 0 && retry::is_idempotent(&parts.method) && bodyless;
    // No body (most requests): nothing to watch, so no shared fault cell
    // (an allocation and its release per request; issue 9).
    let (body, fault) = if bodyless {
        (Either::Right(Empty::new()), None)
    } else {
        let fault = Arc::new(Fault::default());
        let body = ClientBody::new(body, body_idle, Arc::clone(&fault));
        (Either::Left(body), Some(fault))
    };
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.version_mut() = version;
    *up.headers_mut() = parts.headers;
    Ok(Prepared {
        req: up,
        upgrade: client_upgrade,
        h2,
        replayable,
        fault,
        forwarded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_rebuilds_the_same_head_with_every_value_of_a_repeated_name_in_order() {
        let mut req: Request<UpBody> = Request::new(Either::Right(Empty::new()));
        *req.method_mut() = Method::GET;
        *req.uri_mut() = Uri::from_static("/a/b?c=d");
        let h = req.headers_mut();
        h.append("accept", HeaderValue::from_static("text/html"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("accept", HeaderValue::from_static("*/*"));
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        h.append("x-gone", HeaderValue::from_static("1"));
        // A removal reorders the map's entries: the copy follows the map as it is.
        h.remove("x-gone");

        let again = Replay::of(&req).request();
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.version(), req.version());
        assert_eq!(again.headers(), req.headers());
        let order = |r: &Request<UpBody>| -> Vec<(String, String)> {
            let h = r.headers().iter();
            h.map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect()
        };
        assert_eq!(order(&again), order(&req), "values in the same order");
        assert_eq!(again.headers().get_all("accept").iter().count(), 2);
    }
}
