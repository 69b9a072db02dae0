//! Small, pure parsers and formatters (durations, query strings, status
//! codes, URLs, JSON strings). Everything here is unit-tested inline.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper::StatusCode;

/// Parses a duration such as `500ms`, `1s`, `1.5s`, `2m`, `1h` or `0`.
/// A bare number means seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {input:?} (expected e.g. 500ms, 1s, 2m)"))?;
    Duration::try_from_secs_f64(value * unit_secs)
        .map_err(|_| format!("invalid duration {input:?} (must be finite and not negative)"))
}

/// Parses a listen address: `IP:PORT`, `[IPv6]:PORT`, or `:PORT` (all IPv4
/// interfaces).
pub fn parse_listen(input: &str) -> Result<SocketAddr, String> {
    if let Some(port) = input.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("invalid listen address {input:?}"))?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    input
        .parse()
        .map_err(|_| format!("invalid listen address {input:?} (expected IP:PORT or :PORT)"))
}

/// Parses a boolean environment value: `1/true/yes/on` or `0/false/no/off/""`.
pub fn parse_bool(input: &str) -> Result<bool, String> {
    match input.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("invalid boolean {input:?} (expected 1 or 0)")),
    }
}

/// Returns the value of the first `key` in a query string (`a=1&b&c=3`).
/// A key without `=` has the empty value. No percent-decoding is done.
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Reads a numeric query parameter, falling back to `default` when absent.
pub fn query_number(query: &str, key: &str, default: Option<u64>) -> Result<u64, String> {
    match query_param(query, key) {
        Some(value) => value
            .parse()
            .map_err(|_| format!("invalid {key}={value:?}: expected a non-negative integer")),
        None => default.ok_or_else(|| format!("missing query parameter {key}")),
    }
}

/// Parses the `N` of `/status/N`: a final status code, 200..=599.
pub fn parse_status(input: &str) -> Option<StatusCode> {
    let code: u16 = input.parse().ok()?;
    if (200..=599).contains(&code) {
        StatusCode::from_u16(code).ok()
    } else {
        None
    }
}

/// Escapes a string for use inside JSON double quotes.
pub fn json_escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Canonical display form of a header name, as Go (and traefik/whoami)
/// prints it: `x-forwarded-for` becomes `X-Forwarded-For`.
pub fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// A plain `http://host[:port][/path]` URL, as accepted by `wharf-demo probe`.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host[:port]` exactly as written, used for the Host header.
    pub authority: String,
    /// Host without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?}: only http:// is supported"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("invalid host in {url:?}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in {url:?}"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("invalid port in {url:?}"))?,
        None => 80,
    };
    Ok(HttpUrl {
        authority: authority.to_owned(),
        host: host.to_owned(),
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":8080"), Ok(SocketAddr::from(([0, 0, 0, 0], 8080))));
        assert_eq!(parse_listen("127.0.0.1:80"), Ok(SocketAddr::from(([127, 0, 0, 1], 80))));
        assert!(parse_listen("[::]:80").is_ok());
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen(":http").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert_eq!(parse_bool(""), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn query_strings() {
        let q = "n=10&chunk=3&flag&empty=&n=99";
        assert_eq!(query_param(q, "n"), Some("10"));
        assert_eq!(query_param(q, "chunk"), Some("3"));
        assert_eq!(query_param(q, "flag"), Some(""));
        assert_eq!(query_param(q, "empty"), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "n"), None);
        assert_eq!(query_number(q, "n", None), Ok(10));
        assert_eq!(query_number(q, "missing", Some(7)), Ok(7));
        assert!(query_number(q, "missing", None).is_err());
        assert!(query_number(q, "flag", Some(1)).is_err());
        assert!(query_number("n=-1", "n", None).is_err());
    }

    #[test]
    fn status_codes() {
        assert_eq!(parse_status("200"), Some(StatusCode::OK));
        assert_eq!(parse_status("503"), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(parse_status("599").map(|s| s.as_u16()), Some(599));
        assert_eq!(parse_status("101"), None);
        assert_eq!(parse_status("600"), None);
        assert_eq!(parse_status("99"), None);
        assert_eq!(parse_status("abc"), None);
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn json_strings() {
        assert_eq!(json_escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(json_escape("l1\nl2\u{1}"), "l1\\nl2\\u0001");
        assert_eq!(json_escape("héllo"), "héllo");
    }

    #[test]
    fn header_names() {
        assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_name("user-agent"), "User-Agent");
        assert_eq!(canonical_header_name("x-real-ip"), "X-Real-Ip");
        assert_eq!(canonical_header_name("accept"), "Accept");
    }

    #[test]
    fn http_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/health?x=1"),
            Ok(HttpUrl {
                authority: "127.0.0.1:8080".into(),
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/health?x=1".into(),
            })
        );
        let url = parse_http_url("http://localhost").expect("valid url");
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("localhost", 80, "/"));
        let url = parse_http_url("http://[::1]:81?q").expect("valid url");
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("::1", 81, "/?q"));
        assert_eq!(url.authority, "[::1]:81");
        assert!(parse_http_url("https://example.com/").is_err());
        assert!(parse_http_url("http:///path").is_err());
        assert!(parse_http_url("http://host:port/").is_err());
    }
}
