//! The certificate store: which certificate a TLS handshake gets.
//!
//! Certificates come from sources ([`CertSource`]): `--tls-dir` files and
//! ACME. Each source publishes *all* of its certificates at once
//! ([`CertStore::publish`]); the store merges them into one immutable
//! [`Snapshot`] behind an [`ArcSwap`], exactly like the routing table: a
//! handshake loads the snapshot once, so it sees the old set or the new one,
//! never a mix. A publish never touches open connections — they keep the
//! certificate they were handshaken with — and every new handshake sees the
//! new set.
//!
//! Choosing (SNI, RFC 6066 §3): the exact name first, then a wildcard
//! `*.example.com` for one more label (`a.example.com`, not `a.b.example.com`
//! nor `example.com`, as RFC 6125 §6.4.3 has it). A ClientHello without SNI,
//! or for a name no certificate covers, gets no certificate and the handshake
//! fails with an alert: wharf does not guess a default.
//!
//! Precedence: when files and ACME both hold a certificate for a name, the
//! **file wins** — a certificate the operator put there on purpose overrides
//! an automatic one. Within one source, for the same name, the certificate
//! that expires last wins.
//!
//! TLS-ALPN-01 (RFC 8737): a ClientHello offering ALPN `acme-tls/1` is
//! answered only from the challenge certificates set with
//! [`CertStore::set_alpn_challenge`], never from the served ones; the server
//! closes such a connection after the handshake.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use super::{TlsError, ACME_TLS_ALPN};

/// Where a certificate came from. Earlier variants win (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertSource {
    /// `--tls-dir`.
    Files,
    /// Obtained through ACME.
    Acme,
}

impl CertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::Files => "files",
            CertSource::Acme => "acme",
        }
    }
}

impl fmt::Display for CertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What people (and `/api/state`) see of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// DNS names from the SANs (the subject CN when there are none),
    /// lowercased; wildcards as `*.example.com`.
    pub names: Vec<String>,
    pub source: CertSource,
    /// The issuer's distinguished name, e.g. `CN=R11, O=Let's Encrypt, C=US`.
    pub issuer: String,
    /// The serial number, lowercase hex without separators.
    pub serial: String,
    #[serde(serialize_with = "rfc3339")]
    pub not_before: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub not_after: SystemTime,
    /// Where it was loaded from (a file path), or what the source says.
    pub origin: String,
}

/// A certificate chain with its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The names it is served for (the same as `info.names`).
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

impl Certificate {
    /// Set the source and origin (`certificate_from_pem` does not know them).
    pub fn with_source(mut self, source: CertSource, origin: impl Into<String>) -> Certificate {
        self.info.source = source;
        self.info.origin = origin.into();
        self
    }
}

/// Parse a PEM chain (end-entity first) and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1). Both may be the same buffer: only `CERTIFICATE` sections
/// are read from `chain` and the first private key section from `key`. The
/// key must match the end-entity certificate. The result has source
/// [`CertSource::Files`]; see [`Certificate::with_source`].
pub fn certificate_from_pem(chain: &[u8], key: &[u8]) -> Result<Certificate, TlsError> {
    let certs = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
        e => TlsError::Pem(e.to_string()),
    })?;
    let info = describe(&certs[0])?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(certs, key, &provider).map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(Certificate {
        names: info.names.clone(),
        key: Arc::new(key),
        info,
    })
}

/// Names, issuer, serial and validity of a DER end-entity certificate.
fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| TlsError::X509(e.to_string()))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(TlsError::X509(format!("subjectAltName: {e}"))),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(TlsError::NoNames);
    }
    let time = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let validity = cert.validity();
    Ok(CertInfo {
        names,
        source: CertSource::Files,
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
        not_before: time(validity.not_before.timestamp()),
        not_after: time(validity.not_after.timestamp()),
        origin: String::new(),
    })
}

/// The merged, immutable view a handshake reads.
#[derive(Debug, Default)]
struct Snapshot {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`: `*.example.com` is `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Every certificate of every source, sorted by source then names.
    infos: Vec<CertInfo>,
}

impl Snapshot {
    fn build(sources: &BTreeMap<CertSource, Vec<Certificate>>) -> Snapshot {
        let mut s = Snapshot::default();
        // BTreeMap order is precedence order: the first source to claim a name keeps it.
        for certs in sources.values() {
            let mut by_expiry: Vec<&Certificate> = certs.iter().collect();
            by_expiry.sort_by_key(|c| std::cmp::Reverse(c.info.not_after));
            for c in by_expiry {
                for name in &c.names {
                    let (map, key) = match name.strip_prefix("*.") {
                        Some(sfx) => (&mut s.wildcard, sfx.to_string()),
                        None => (&mut s.exact, name.clone()),
                    };
                    map.entry(key).or_insert_with(|| Arc::clone(&c.key));
                }
                s.infos.push(c.info.clone());
            }
        }
        s.infos
            .sort_by(|a, b| (a.source, &a.names, &a.origin).cmp(&(b.source, &b.names, &b.origin)));
        s
    }

    fn find(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        let host = host.trim_end_matches('.');
        if let Some(k) = self.exact.get(host) {
            return Some(k);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent)
    }
}

/// The certificates wharf serves; shared as `Arc<CertStore>` by every TLS
/// listener (as its rustls resolver) and every source that publishes.
#[derive(Debug, Default)]
pub struct CertStore {
    /// Each source's latest publication; the lock only serialises publishers.
    sources: Mutex<BTreeMap<CertSource, Vec<Certificate>>>,
    snapshot: ArcSwap<Snapshot>,
    /// TLS-ALPN-01 challenge certificates by name.
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn new() -> CertStore {
        CertStore::default()
    }

    /// Replace every certificate of `source` at once (an empty `certs`
    /// removes them all). Handshakes after this call see the new set; open
    /// connections keep theirs.
    pub fn publish(&self, source: CertSource, certs: Vec<Certificate>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let certs = certs.into_iter().map(|mut c| {
            c.info.source = source;
            c
        });
        sources.insert(source, certs.collect());
        self.snapshot.store(Arc::new(Snapshot::build(&sources)));
    }

    /// Set (or with `None` remove) the TLS-ALPN-01 challenge certificate for
    /// `name`. It is served only to a ClientHello for `name` that offers ALPN
    /// `acme-tls/1`.
    pub fn set_alpn_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.alpn.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &key {
                Some(k) => next.insert(name.clone(), Arc::clone(k)),
                None => next.remove(&name),
            };
            next
        });
    }

    /// Is there a certificate (of any source) that a handshake for `host` would get?
    pub fn covers(&self, host: &str) -> bool {
        self.snapshot.load().find(&host.to_ascii_lowercase()).is_some()
    }

    /// Every certificate of every source, for `/api/state` (files first, then
    /// ACME; a file certificate and an ACME one for the same name are both
    /// listed, the file one is served).
    pub fn served(&self) -> Vec<CertInfo> {
        self.snapshot.load().infos.clone()
    }

    /// The certificate a handshake for `server_name` gets, with or without
    /// ALPN `acme-tls/1` offered (the resolver's decision, callable in tests).
    pub fn choose(&self, server_name: Option<&str>, acme_tls_alpn: bool) -> Option<Arc<CertifiedKey>> {
        let name = server_name?.to_ascii_lowercase();
        if acme_tls_alpn {
            let name = name.trim_end_matches('.');
            return self.alpn.load().get(name).cloned();
        }
        self.snapshot.load().find(&name).cloned()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        self.choose(hello.server_name(), acme)
    }
}

/// `2026-12-02T02:24:16Z`.
fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

/// A UTC time as RFC 3339 with second precision (Howard Hinnant's civil-from-days).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
