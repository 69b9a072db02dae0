//! Who may use the admin listener: pure decisions, unit-tested here.
//!
//! - `--admin-hosts`: the admin listener answers only requests whose `Host`
//!   is one of these names (port aside). A web page the operator visits can
//!   otherwise reach `127.0.0.1:8081` through DNS rebinding and read
//!   container names and addresses.
//! - `--admin-token`: `/api/*` and `/metrics` need `Authorization: Bearer
//!   <token>`. `/healthz` and `/readyz` never do (the HEALTHCHECK and
//!   orchestrators probe them), and say nothing about the backends.

use http::{header, HeaderMap, StatusCode};

#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// Lowercased names; empty: any Host.
    pub hosts: Vec<String>,
    pub token: Option<String>,
}

impl AdminAccess {
    /// `Some((status, reason))` when the request must be refused.
    pub fn refuse(&self, path: &str, headers: &HeaderMap) -> Option<(StatusCode, &'static str)> {
        if path == "/healthz" || path == "/readyz" {
            return None;
        }
        if !self.hosts.is_empty() {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(strip_port)
                .unwrap_or("");
            if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return Some((
                    StatusCode::MISDIRECTED_REQUEST,
                    "this admin listener does not answer for that Host (see --admin-hosts)\n",
                ));
            }
        }
        if let Some(token) = &self.token {
            let protected = path.starts_with("/api/") || path == "/metrics";
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if protected && !same(given.trim().as_bytes(), token.as_bytes()) {
                return Some((
                    StatusCode::UNAUTHORIZED,
                    "admin token required: Authorization: Bearer <--admin-token>\n",
                ));
            }
        }
        None
    }
}

/// `host[:port]` → `host` (an IPv6 literal keeps its brackets).
fn strip_port(h: &str) -> &str {
    match h.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    }
}

/// Equal, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(host: &str, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn with_admin_hosts_only_those_names_are_answered_and_health_always_is() {
        let a = AdminAccess {
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            token: None,
        };
        assert_eq!(a.refuse("/api/state", &headers("localhost:8081", None)), None);
        assert_eq!(a.refuse("/metrics", &headers("127.0.0.1:8081", None)), None);
        let (status, _) = a.refuse("/api/state", &headers("evil.example:8081", None)).unwrap();
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert!(
            a.refuse("/", &HeaderMap::new()).is_some(),
            "no Host is not a configured one"
        );
        assert_eq!(a.refuse("/healthz", &headers("evil.example", None)), None);
        assert_eq!(AdminAccess::default().refuse("/api/state", &headers("any", None)), None);
    }

    #[test]
    fn with_a_token_api_and_metrics_need_the_bearer_and_nothing_else_does() {
        let a = AdminAccess {
            hosts: Vec::new(),
            token: Some("s3cret".into()),
        };
        let h = |auth| headers("localhost", auth);
        assert_eq!(a.refuse("/api/state", &h(None)).unwrap().0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            a.refuse("/metrics", &h(Some("Bearer wrong!"))).unwrap().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            a.refuse("/metrics", &h(Some("Basic s3cret"))).unwrap().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(a.refuse("/api/state", &h(Some("Bearer s3cret"))), None);
        assert_eq!(a.refuse("/readyz", &h(None)), None);
        assert_eq!(a.refuse("/", &h(None)), None, "the dashboard page itself holds no data");
    }
}
