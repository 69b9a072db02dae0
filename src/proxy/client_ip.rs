//! Client-IP headers other than `X-Forwarded-*`, from untrusted peers.
//!
//! Backends and frameworks trust many headers to name the client: nginx's
//! `X-Real-IP`, RFC 7239's `Forwarded`, CDN headers (`True-Client-IP`,
//! `CF-Connecting-IP`, `Fastly-Client-IP`), and a few older ones. wharf sets
//! `X-Forwarded-For` itself; any of these a client sends would let it pick
//! the address a backend logs, rate-limits or allow-lists. From a peer
//! outside `--trusted-proxies` they are removed, except `X-Real-IP`, which
//! is replaced by the peer's address (some backends read only that one).
//! From a trusted proxy they pass unchanged.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Removed from untrusted requests (`X-Real-IP` is replaced instead).
/// A `static`: a `const` array would be built and dropped at every use.
pub static SPOOFABLE: [HeaderName; 11] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("x-original-forwarded-for"),
    HeaderName::from_static("x-forwarded"),
    HeaderName::from_static("forwarded-for"),
];

const X_REAL_IP: usize = 1;

/// The index in [`SPOOFABLE`] of a (lowercase) header name: a `match` on the
/// string is a switch on its length and a comparison or two, where comparing
/// `HeaderName`s one by one costs eleven calls per header.
fn spoofable_index(name: &str) -> Option<usize> {
    Some(match name {
        "forwarded" => 0,
        "x-real-ip" => 1,
        "x-client-ip" => 2,
        "client-ip" => 3,
        "true-client-ip" => 4,
        "cf-connecting-ip" => 5,
        "fastly-client-ip" => 6,
        "x-cluster-client-ip" => 7,
        "x-original-forwarded-for" => 8,
        "x-forwarded" => 9,
        "forwarded-for" => 10,
        _ => return None,
    })
}

/// Remove (or, for `X-Real-IP`, replace) the client-IP headers an untrusted
/// client sent. One pass over the names present; nothing else is touched.
pub fn strip_untrusted(headers: &mut HeaderMap, client_ip: IpAddr) {
    let mut present = 0u16;
    for k in headers.keys() {
        if let Some(i) = spoofable_index(k.as_str()) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    for (i, name) in SPOOFABLE.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << X_REAL_IP) != 0 {
        if let Ok(v) = HeaderValue::from_str(&client_ip.to_string()) {
            headers.insert(SPOOFABLE[X_REAL_IP].clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spoofable_header_is_removed_and_x_real_ip_is_the_peer() {
        let mut h = HeaderMap::new();
        for name in &SPOOFABLE {
            h.append(name.clone(), HeaderValue::from_static("6.6.6.6"));
            h.append(name.clone(), HeaderValue::from_static("for=6.6.6.7"));
        }
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_untrusted(&mut h, "10.1.2.3".parse().unwrap());
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn a_request_without_them_is_left_alone() {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_untrusted(&mut h, "10.1.2.3".parse().unwrap());
        assert_eq!(h.len(), 1);
        assert!(!h.contains_key("x-real-ip"), "not added when the client sent none");
    }

    #[test]
    fn the_index_matches_the_list() {
        for (i, name) in SPOOFABLE.iter().enumerate() {
            assert_eq!(spoofable_index(name.as_str()), Some(i), "{name}");
        }
        assert_eq!(spoofable_index("x-kept"), None);
    }
}
