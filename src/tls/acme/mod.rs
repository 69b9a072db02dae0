//! ACME (RFC 8555): certificates obtained, stored and renewed with no step
//! of the user's.
//!
//! - [`storage`]: `--acme-storage`, written so a crash or a second wharf
//!   never leaves it unreadable or orders a name twice at once.
//! - [`schedule`]: when to renew and when to retry (pure).
//! - [`order`]: one name's order through instant-acme, HTTP-01 or
//!   TLS-ALPN-01.
//! - [`manager`]: the task that watches which hosts want certificates,
//!   starts orders, publishes results into the [`crate::tls::CertStore`]
//!   and keeps a per-name [`NameStatus`] for `/api/state` and `/metrics`.
//!
//! One certificate per host name: a pool's hosts are ordered and renewed
//! independently, so one name that cannot be validated never holds up the
//! others. Wildcard hosts (`*.example.com`) need DNS-01, which wharf does
//! not do: they are reported (log and state) and never ordered.

pub mod config;
pub mod manager;
pub mod order;
pub mod schedule;
pub mod storage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use manager::Manager;

/// Let's Encrypt's production directory (the `--acme-directory` default).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// `--acme-staging`.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Which challenge proves control of a name (`--acme-challenge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChallengeKind {
    /// HTTP-01: the CA fetches `http://NAME/.well-known/acme-challenge/…` (port 80).
    #[default]
    #[value(name = "http-01")]
    Http01,
    /// TLS-ALPN-01: the CA opens TLS to NAME:443 with ALPN `acme-tls/1`.
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// What the manager needs from the flags.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    /// PEM to trust for the ACME server's own HTTPS (`--acme-ca-root`).
    pub ca_root: Option<PathBuf>,
    pub storage: PathBuf,
    pub challenge: ChallengeKind,
    /// `--acme-renew-before`: renew this long before not-after instead of
    /// at two thirds of the lifetime.
    pub renew_before: Option<Duration>,
}

/// One name's certificate state, as `/api/state` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NameStatus {
    pub name: String,
    /// `pending` (no certificate yet), `ordering`, `valid`, `renewing`,
    /// `failed` (waiting for the next attempt), `locked` (another wharf on
    /// the same storage is ordering it), `needs_dns01` (a wildcard).
    pub state: &'static str,
    pub challenge: &'static str,
    pub serial: Option<String>,
    pub issuer: Option<String>,
    pub not_after: Option<String>,
    pub next_renewal: Option<String>,
    pub last_error: Option<String>,
    pub next_attempt: Option<String>,
    /// Consecutive failures (reset by a success).
    pub failures: u32,
    #[serde(skip)]
    pub not_after_time: Option<SystemTime>,
}

/// Shared between the manager (writes) and the admin API (reads).
#[derive(Debug, Default)]
pub struct AcmeStatus {
    pub names: Mutex<BTreeMap<String, NameStatus>>,
    /// Account problems (cannot reach the directory, rejected email …).
    pub account_error: Mutex<Option<String>>,
    pub directory: Mutex<String>,
    pub orders_issued: AtomicU64,
    pub orders_failed: AtomicU64,
}

impl AcmeStatus {
    pub fn set(&self, status: NameStatus) {
        let mut m = self.names.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(status.name.clone(), status);
    }

    pub fn get(&self, name: &str) -> Option<NameStatus> {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The `"acme"` object of `/api/state`.
    pub fn json(&self) -> serde_json::Value {
        let names: Vec<NameStatus> = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        serde_json::json!({
            "directory": *self.directory.lock().unwrap_or_else(|p| p.into_inner()),
            "account_error": *self.account_error.lock().unwrap_or_else(|p| p.into_inner()),
            "orders": {
                "issued": self.orders_issued.load(Ordering::Relaxed),
                "failed": self.orders_failed.load(Ordering::Relaxed),
            },
            "certificates": names,
        })
    }

    /// Seconds until each name's ACME certificate expires (negative: expired),
    /// for `/metrics`; names without a certificate are left out.
    pub fn expiry_seconds(&self, now: SystemTime) -> Vec<(String, i64)> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .values()
            .filter_map(|s| Some((s.name.clone(), seconds_until(s.not_after_time?, now))))
            .collect()
    }
}

/// `t - now` in whole seconds, negative when `t` has passed.
pub fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_listed_for_names_with_a_certificate_only() {
        let st = AcmeStatus::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        st.set(NameStatus {
            name: "a.example.com".into(),
            state: "valid",
            not_after_time: Some(now + Duration::from_secs(500)),
            ..NameStatus::default()
        });
        st.set(NameStatus {
            name: "b.example.com".into(),
            state: "failed",
            ..NameStatus::default()
        });
        assert_eq!(st.expiry_seconds(now), vec![("a.example.com".to_string(), 500)]);
        assert_eq!(seconds_until(now, now + Duration::from_secs(7)), -7);
    }
}
