//! The rustls server configuration: TLS 1.2 and 1.3 only (rustls speaks
//! nothing older), the ring provider, certificates from the [`CertStore`],
//! ALPN `h2`, `http/1.1` and `acme-tls/1` (RFC 8737; such connections are
//! closed after the handshake, never proxied).

use std::sync::Arc;

use rustls::ServerConfig;

use super::{CertStore, ACME_TLS_ALPN};

/// The ALPN protocols offered, in the server's order of preference.
pub fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]
}

pub fn server_config(store: Arc<CertStore>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = alpn_protocols();
    // Stateless tickets: resumption works across the workers, whose
    // in-memory session caches would otherwise be per process anyway.
    if let Ok(t) = rustls::crypto::ring::Ticketer::new() {
        cfg.ticketer = t;
    }
    Arc::new(cfg)
}
