//! HTTP-01 (RFC 8555 §8.3): the key authorizations the ACME client has
//! published, answered on the plain listener at
//! `GET /.well-known/acme-challenge/<token>` before any routing and never
//! redirected to HTTPS (the CA fetches it over plain HTTP, from port 80).
//!
//! Tokens are few (one per pending authorization) and short-lived, so a
//! lock-protected map is enough; the proxy checks the path prefix first, so
//! ordinary requests never touch the lock.

use std::collections::HashMap;
use std::sync::RwLock;

/// The path prefix the CA requests.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// `/.well-known/acme-challenge/TOKEN` → `TOKEN` (a non-empty single segment).
pub fn http01_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    (!token.is_empty() && !token.contains('/')).then_some(token)
}

/// Pending HTTP-01 answers by token.
#[derive(Debug, Default)]
pub struct Http01 {
    answers: RwLock<HashMap<String, String>>,
}

impl Http01 {
    pub fn new() -> Http01 {
        Http01::default()
    }

    /// Answer `GET /.well-known/acme-challenge/<token>` with `key_authorization`.
    pub fn set(&self, token: &str, key_authorization: &str) {
        let mut m = self.answers.write().unwrap_or_else(|p| p.into_inner());
        m.insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        let mut m = self.answers.write().unwrap_or_else(|p| p.into_inner());
        m.remove(token);
    }

    /// The key authorization for `token`, if one is pending.
    pub fn answer(&self, token: &str) -> Option<String> {
        let m = self.answers.read().unwrap_or_else(|p| p.into_inner());
        m.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_token_is_answered_until_removed() {
        let h = Http01::new();
        assert_eq!(h.answer("t1"), None);
        h.set("t1", "t1.thumb");
        assert_eq!(h.answer("t1").as_deref(), Some("t1.thumb"));
        h.remove("t1");
        assert_eq!(h.answer("t1"), None);
    }

    #[test]
    fn only_a_single_segment_under_the_prefix_is_a_token() {
        assert_eq!(http01_token("/.well-known/acme-challenge/abc_-1"), Some("abc_-1"));
        assert_eq!(http01_token("/.well-known/acme-challenge/"), None);
        assert_eq!(http01_token("/.well-known/acme-challenge/a/b"), None);
        assert_eq!(http01_token("/.well-known/other/abc"), None);
        assert_eq!(http01_token("/x/.well-known/acme-challenge/abc"), None);
    }
}
