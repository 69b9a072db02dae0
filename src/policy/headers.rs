//! `wharf.headers.request.*`, `wharf.headers.response.*` and
//! `wharf.security_headers`: header edits, prepared once per routing table
//! so a request only inserts and removes.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Set (`Some`) or remove (`None`) one header.
pub type Edit = (HeaderName, Option<HeaderValue>);

/// The safe set of `wharf.security_headers=true`, added when the backend did
/// not set them itself. HSTS is not here: it belongs to HTTPS (`wharf.hsts`).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

/// Labels' (name, value) pairs → edits; an empty value removes. Pairs that
/// do not parse were refused by the labels already and are skipped here.
pub fn edits(pairs: &[(String, String)]) -> Vec<Edit> {
    pairs
        .iter()
        .filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = match value.as_str() {
                "" => None,
                v => Some(HeaderValue::from_str(v).ok()?),
            };
            Some((name, value))
        })
        .collect()
}

pub fn apply(headers: &mut HeaderMap, edits: &[Edit]) {
    for (name, value) in edits {
        match value {
            Some(v) => {
                headers.insert(name.clone(), v.clone());
            }
            None => {
                headers.remove(name);
            }
        }
    }
}

/// Adds each of [`SECURITY_HEADERS`] the response does not carry yet.
pub fn add_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(*name) {
            headers.insert(*name, HeaderValue::from_static(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_an_empty_value_removes() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert("server", HeaderValue::from_static("nginx"));
        let e = edits(&[("x-a".into(), "3".into()), ("server".into(), String::new())]);
        apply(&mut h, &e);
        assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["3"]);
        assert!(!h.contains_key("server"));
    }

    #[test]
    fn security_headers_do_not_override_the_backend() {
        let mut h = HeaderMap::new();
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        add_security_headers(&mut h);
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    }
}
