//! HTTPS: the certificates wharf serves and the ACME challenges it answers.
//!
//! - [`store`]: [`CertStore`], the rustls resolver — SNI picks a certificate
//!   from one immutable snapshot behind an `ArcSwap`; sources (files, ACME)
//!   publish whole sets atomically; TLS-ALPN-01 challenge certificates.
//! - [`challenge`]: [`Http01`], pending HTTP-01 answers, served by the plain
//!   listener before routing.
//! - [`files`]: `--tls-dir` — PEM files loaded, paired and polled for changes.
//! - [`config`]: the rustls `ServerConfig` every TLS listener shares.
//!
//! [`Tls`] bundles what the workers (listeners, proxy) and whoever obtains
//! certificates (the files watcher, an ACME manager) share. This module
//! imports only the model: the proxy and the server use it, not the reverse.

pub mod acme;
pub mod challenge;
pub mod config;
pub mod files;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

pub use challenge::Http01;
pub use store::{certificate_from_pem, CertInfo, CertSource, CertStore, Certificate};

/// The ALPN protocol id of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why a certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not valid PEM: {0}")]
    Pem(String),
    #[error("no CERTIFICATE section")]
    NoCertificate,
    #[error("no PRIVATE KEY section (PKCS#8, RSA or EC)")]
    NoKey,
    #[error("the certificate cannot be parsed: {0}")]
    X509(String),
    #[error("the certificate names no DNS name (no subjectAltName, no CN)")]
    NoNames,
    #[error("the private key cannot be used with this certificate: {0}")]
    Key(String),
    #[error("{0}")]
    Io(String),
}

/// What TLS serving shares: created once in [`crate::app`], handed to every
/// worker and to the certificate sources.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The served certificates; sources publish into it.
    pub store: Arc<CertStore>,
    /// Pending HTTP-01 answers; the ACME client sets them, the plain listener serves them.
    pub http01: Arc<Http01>,
    /// The rustls configuration every TLS listener shares (resolver: `store`).
    pub server_config: Arc<rustls::ServerConfig>,
}

impl Tls {
    pub fn new() -> Tls {
        let store = Arc::new(CertStore::new());
        let server_config = config::server_config(Arc::clone(&store));
        Tls {
            store,
            http01: Arc::new(Http01::new()),
            server_config,
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls::new()
    }
}
