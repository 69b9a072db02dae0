//! What the proxy does differently for HTTPS, as pure functions: the
//! `wharf.https_redirect` 308, the `wharf.hsts` header, the HTTP-01 answer.
//!
//! 308 (RFC 9110 §15.4.9) rather than 301: the method and body are kept, so
//! a POST to `http://` is not silently turned into a GET.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode, Uri};
use http_body_util::Full;

/// `https://HOST[:PORT]/path?query` for a plain request to `host` (lowercase,
/// without port); the port is written only when the TLS listener is not on 443.
pub fn redirect_location(host: &str, https_port: u16, uri: &Uri) -> Option<HeaderValue> {
    if host.is_empty() {
        return None;
    }
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = match https_port {
        443 => format!("https://{host}{pq}"),
        port => format!("https://{host}:{port}{pq}"),
    };
    HeaderValue::from_str(&location).ok()
}

/// The 308 to `location`.
pub fn redirect(location: HeaderValue) -> Response<Full<Bytes>> {
    let body = format!(
        "wharf: this site is served over HTTPS: {}\n",
        location.to_str().unwrap_or("")
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `max-age=N` (whole seconds). No `includeSubDomains`: a pool only speaks
/// for its own hosts.
pub fn hsts_value(max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

/// The HTTP-01 response: the key authorization as the whole body (RFC 8555 §8.3).
pub fn http01_answer(key_authorization: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(key_authorization)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_keeps_path_and_query_and_names_a_non_default_port() {
        let uri: Uri = "/a/b?x=1&y=%20".parse().unwrap();
        assert_eq!(
            redirect_location("shop.example.com", 443, &uri).unwrap(),
            "https://shop.example.com/a/b?x=1&y=%20"
        );
        assert_eq!(
            redirect_location("shop.example.com", 8443, &uri).unwrap(),
            "https://shop.example.com:8443/a/b?x=1&y=%20"
        );
        let absolute: Uri = "http://Shop.example.com/p".parse().unwrap();
        assert_eq!(
            redirect_location("shop.example.com", 443, &absolute).unwrap(),
            "https://shop.example.com/p"
        );
        assert!(redirect_location("", 443, &uri).is_none());
        let r = redirect(redirect_location("a.com", 443, &uri).unwrap());
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()["location"], "https://a.com/a/b?x=1&y=%20");
    }

    #[test]
    fn hsts_is_whole_seconds() {
        assert_eq!(hsts_value(Duration::from_secs(31_536_000)), "max-age=31536000");
        assert_eq!(hsts_value(Duration::from_millis(1500)), "max-age=1");
    }
}
