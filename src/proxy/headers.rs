//! Header rewriting, pure functions over `http::HeaderMap`.
//!
//! Hop-by-hop headers belong to one connection and must not be forwarded
//! (RFC 9110 §7.6.1): the fixed list below plus every header named in
//! `Connection`. Inbound `Content-Length`/`Transfer-Encoding` are dropped too:
//! hyper re-frames the body it forwards, which also removes any
//! request-smuggling ambiguity between the two.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that are hop-by-hop by definition (RFC 9110 §7.6.1, RFC 9112 §9.6,
/// plus the de-facto `Proxy-Connection` and `Keep-Alive`).
/// `HeaderName`s, not `&str`s: removing by `&str` parses the name on every call.
/// A `static`, not a `const`: a `const` array is built and dropped (eight
/// indirect calls) at every use, twice per request.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// [`HOP_BY_HOP`] as bytes, in the same order, for the `Connection` scan:
/// `HeaderName::as_str` on a standard name is a `match` of about 80
/// instructions, three of which the scan of `Connection: keep-alive` paid
/// (issue 9).
static HOP_BY_HOP_BYTES: [&[u8]; 8] = [
    b"connection",
    b"proxy-connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The `X-Forwarded-*` values wharf sets on a request, kept out of its
/// header map until it is sent: three map inserts cost about 770
/// instructions per request (issue 9), and the raw client
/// ([`super::raw`]) writes them straight into the request head instead.
/// hyper's client gets them inserted ([`Forwarded::insert_into`]). `None`:
/// wharf sets none (a trusted peer's own value stays in the map, as does a
/// trusted chain that could not be extended into a header value; or there
/// is no host to name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub for_: Option<HeaderValue>,
    pub proto: Option<HeaderValue>,
    pub host: Option<HeaderValue>,
}

impl Forwarded {
    /// Each value wharf sets, with its name.
    pub fn fields(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        [
            (&X_FORWARDED_FOR, &self.for_),
            (&X_FORWARDED_PROTO, &self.proto),
            (&X_FORWARDED_HOST, &self.host),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_ref()?)))
    }

    /// Into a request's map (hyper's client, or a test). Each replaces
    /// the map's value, if any: inserting twice changes nothing.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        for (name, value) in self.fields() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The index in [`HOP_BY_HOP`] of a (lowercase) header name. A `match` on
/// the string compiles to a switch on its length and one comparison, where
/// comparing `HeaderName`s one by one costs eight calls per header.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "proxy-connection" => 1,
        "keep-alive" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authorization" => 7,
        _ => return None,
    })
}

/// Remove hop-by-hop headers, including those listed in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive so that a
/// protocol upgrade (WebSocket) can be forwarded end to end.
/// Returns whether `Connection` named a header beyond the hop-by-hop ones
/// (each such header was removed if present; it may have been `Host`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> bool {
    // One pass over the names notes which hop-by-hop headers are present
    // (usually none, or only `Connection`): a hash lookup per name present
    // instead of one per name in the list.
    let mut present = 0u16;
    for k in headers.keys() {
        if let Some(i) = hop_by_hop_index(k.as_str()) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return false;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        connection_names(v, &mut named);
    }
    let upgrade = if keep_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let removed_named = !named.is_empty();
    for name in named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    removed_named
}

/// Is `name` hop-by-hop by definition (one of [`HOP_BY_HOP`])?
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_index(name.as_str()).is_some()
}

/// The header names a `Connection` value lists, except those that are
/// hop-by-hop anyway (and `close`, which names no header), pushed to `named`:
/// `Connection: keep-alive` costs nothing. A value that is not visible
/// ASCII names nothing.
pub fn connection_names(value: &HeaderValue, named: &mut Vec<HeaderName>) {
    // The usual whole values, at the cost of a length check: nginx answers
    // every keep-alive response with `Connection: keep-alive`, and a client
    // that closes sends `close` (issue 9: about 230 instructions each through
    // the loop below).
    let v = value.as_bytes();
    if v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close") {
        return;
    }
    // Scanned as bytes: `str::split` and the Unicode-aware `str::trim` cost
    // about 150 instructions for a one-token `Connection: keep-alive` (every
    // response of an nginx backend; issue 9). After `to_str` (visible ASCII,
    // space and tab), `trim_ascii` trims exactly what `trim` does.
    let Ok(v) = value.to_str() else { return };
    for t in v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        let known = t.eq_ignore_ascii_case(b"close") || HOP_BY_HOP_BYTES.iter().any(|h| t.eq_ignore_ascii_case(h));
        if !known {
            if let Ok(n) = HeaderName::from_bytes(t) {
                named.push(n);
            }
        }
    }
}

/// Does this request ask for a protocol upgrade (`Connection: upgrade` + `Upgrade`)?
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Does `TE` ask for trailers (gRPC does)?
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Prepare request headers for the backend: strip hop-by-hop and framing
/// headers, set `X-Forwarded-For/-Proto/-Host` (see [`forwarding`]). The
/// proxy calls `forwarding` and writes the values as it sends; this is the
/// whole rewrite as one map, for tests.
/// Returns [`strip_hop_by_hop`]'s answer: whether `Connection` named a
/// header beyond the hop-by-hop ones (so `Host` may be gone).
#[cfg(test)]
pub fn rewrite_request(
    headers: &mut HeaderMap,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
    upgrade: bool,
    trusted: bool,
) -> bool {
    let (removed_named, forwarded) = forwarding(headers, client_ip, host, upgrade, trusted, false);
    forwarded.insert_into(headers);
    removed_named
}

/// [`rewrite_request`], with the `X-Forwarded-*` values returned instead
/// of inserted: any the map held that they replace are removed from it
/// (see [`Forwarded`]). `secure`: the request came over TLS
/// (`X-Forwarded-Proto: https`).
///
/// From an untrusted peer, client-supplied forwarding headers are replaced:
/// wharf is the edge, and a client must not choose the address a backend
/// sees. From a `trusted` peer (`--trusted-proxies`), the peer's
/// `X-Forwarded-For` chain is kept and the peer appended to it, and its
/// `-Proto`/`-Host` are kept (wharf sets them only when absent).
pub fn forwarding(
    headers: &mut HeaderMap,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
    upgrade: bool,
    trusted: bool,
    secure: bool,
) -> (bool, Forwarded) {
    let removed_named = strip_hop_by_hop(headers, upgrade);
    headers.remove(header::CONTENT_LENGTH);
    // Which of the three the client sent, in one pass over the names:
    // usually none, and a lookup each would cost more.
    let (mut sent_for, mut sent_proto, mut sent_host) = (false, false, false);
    for k in headers.keys() {
        match k.as_str() {
            "x-forwarded-for" => sent_for = true,
            "x-forwarded-proto" => sent_proto = true,
            "x-forwarded-host" => sent_host = true,
            _ => {}
        }
    }
    let prior: Vec<&str> = if trusted && sent_for {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let xff = if prior.is_empty() {
        Ok(ip_value(client_ip))
    } else {
        HeaderValue::from_str(&format!("{}, {client_ip}", prior.join(", ")))
    };
    let mut forwarded = Forwarded::default();
    // A chain that cannot be a header value stays as the peer sent it.
    if let Ok(v) = xff {
        if sent_for {
            headers.remove(&X_FORWARDED_FOR);
        }
        forwarded.for_ = Some(v);
    }
    if !(trusted && sent_proto) {
        if sent_proto {
            headers.remove(&X_FORWARDED_PROTO);
        }
        forwarded.proto = Some(HeaderValue::from_static(if secure { "https" } else { "http" }));
    }
    if !(trusted && sent_host) {
        if sent_host {
            headers.remove(&X_FORWARDED_HOST);
        }
        forwarded.host = host.cloned();
    }
    (removed_named, forwarded)
}

/// An address as a header value. The last one made on this thread is
/// kept: a keep-alive connection's requests (and most of a busy client's)
/// come from one address, and a clone only bumps a reference count where
/// a new value costs an allocation and the digits.
fn ip_value(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((kept, v)) if *kept == ip => v.clone(),
            _ => {
                let v = format_ip(ip);
                *last = Some((ip, v.clone()));
                v
            }
        }
    })
}

/// IPv4 is written by hand: `Display` goes through the formatting
/// machinery, a measurable share of a request's instructions.
fn format_ip(ip: IpAddr) -> HeaderValue {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let (h, t, o) = (octet / 100, octet / 10 % 10, octet % 10);
                if h > 0 {
                    buf[n] = b'0' + h;
                    n += 1;
                }
                if h > 0 || t > 0 {
                    buf[n] = b'0' + t;
                    n += 1;
                }
                buf[n] = b'0' + o;
                n += 1;
            }
            HeaderValue::from_bytes(&buf[..n]).unwrap_or_else(|_| HeaderValue::from_static("0.0.0.0"))
        }
        IpAddr::V6(_) => HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("::")),
    }
}

/// The request's host: the `Host` header, else the URI authority (HTTP/2),
/// lowercased and without port. `None` when absent or not valid. Borrowed
/// when it needs no change (the usual case: no allocation per request).
pub fn request_host<'a>(headers: &'a HeaderMap, uri: &'a http::Uri) -> Option<Cow<'a, str>> {
    host_of(headers.get(header::HOST), uri)
}

/// [`request_host`] with the `Host` header already looked up.
pub fn host_of<'a>(host_header: Option<&'a HeaderValue>, uri: &'a http::Uri) -> Option<Cow<'a, str>> {
    let raw = match host_header.and_then(|h| h.to_str().ok()) {
        Some(h) => h,
        None => uri.authority()?.as_str(),
    };
    // By byte, from the end (issue 9): the port's digits, then its `:`.
    // `rsplit_once(':')` goes through the generic `char` searcher, and a
    // forward scan that tracks every rule per byte costs more than these
    // short loops (callgrind: 321, 464 and about 150 instructions for
    // `127.0.0.1:18290`).
    let b = raw.as_bytes();
    let mut i = b.len();
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    // Only digits after the last `:`, and something before it: a port. An
    // IPv6 literal (`[::1]`) keeps its brackets and colons.
    let mut end = if i > 1 && b[i - 1] == b':' { i - 1 } else { b.len() };
    // Trailing dots.
    while end > 0 && b[end - 1] == b'.' {
        end -= 1;
    }
    let host = &raw[..end];
    Some(if host.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Remove `prefix` (a path prefix that matched on a segment boundary) from
/// `path_and_query`, keeping the query and a leading `/`.
pub fn strip_prefix(path_and_query: &str, prefix_len: usize) -> String {
    let rest = path_and_query.get(prefix_len..).unwrap_or("");
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

#[cfg(test)]
mod tests;
