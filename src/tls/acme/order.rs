//! One name's order, from account to stored certificate: the I/O half of
//! ACME, on top of instant-acme (RFC 8555 lives there, not here).
//!
//! [`obtain`] resumes a recorded order when there is one (see
//! [`super::storage`]), otherwise places a new one and records it before
//! answering any challenge; it answers HTTP-01 through [`Http01`] or
//! TLS-ALPN-01 through [`CertStore::set_alpn_challenge`] and always removes
//! the answer again, whatever happens.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;

use super::storage::{unix_now, OrderRecord, Storage, StorageError, StoredCert};
use super::ChallengeKind;
use crate::tls::{CertStore, Http01};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the CA offers no {0} challenge for this name")]
    NoChallenge(&'static str),
    #[error("authorization {0:?}: the CA could not validate the challenge")]
    Authorization(AuthorizationStatus),
    #[error("order became invalid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// How long the challenge answers wait for the CA, and how long a
/// finalized order may stay `processing`.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// The HTTPS client instant-acme talks through: webpki roots (the image has
/// no system store) plus `ca_root`, ring as the provider.
pub fn http_client(ca_root: Option<&[u8]>) -> Result<Box<dyn instant_acme::HttpClient>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_root {
        let mut n = 0;
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| format!("--acme-ca-root: not PEM: {e}"))?;
            roots.add(der).map_err(|e| format!("--acme-ca-root: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("--acme-ca-root holds no CERTIFICATE".into());
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, BodyWrapper<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

/// The stored account for `directory`, or a new one (stored before use).
pub async fn account(
    storage: &Storage,
    directory: &str,
    email: Option<&str>,
    http: impl Fn() -> Box<dyn instant_acme::HttpClient>,
) -> Result<Account, OrderError> {
    if let Some(json) = storage.load_account(directory)? {
        match serde_json::from_str::<AccountCredentials>(&json) {
            Ok(creds) => return Ok(Account::builder_with_http(http()).from_credentials(creds).await?),
            Err(e) => tracing::warn!(error = %e, "stored ACME account cannot be read; creating a new one"),
        }
    }
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = Account::builder_with_http(http())
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await?;
    let json = serde_json::to_string_pretty(&creds).map_err(|e| OrderError::Other(e.to_string()))?;
    storage.save_account(directory, &json)?;
    tracing::info!(directory, account = account.id(), "ACME account created");
    Ok(account)
}

/// What an order needs besides the name.
pub struct OrderContext<'a> {
    pub account: &'a Account,
    pub directory: &'a str,
    pub storage: &'a Storage,
    pub challenge: ChallengeKind,
    pub store: &'a CertStore,
    pub http01: &'a Http01,
}

/// Removes the challenge answers it was given when dropped.
struct Answers<'a> {
    ctx: &'a OrderContext<'a>,
    tokens: Vec<String>,
    alpn: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.ctx.http01.remove(t);
        }
        for n in &self.alpn {
            self.ctx.store.set_alpn_challenge(n, None);
        }
    }
}

/// Order (or finish the recorded order for) a certificate for `name`.
/// Returns the chain and key, already written to storage.
pub async fn obtain(ctx: &OrderContext<'_>, name: &str) -> Result<StoredCert, OrderError> {
    let mut resumed = None;
    if let Some(rec) = ctx.storage.load_order(name).unwrap_or_else(|e| {
        tracing::warn!(name, error = %e, "recorded order unreadable; placing a new one");
        None
    }) {
        if rec.directory == ctx.directory {
            match ctx.account.order(rec.url.clone()).await {
                Ok(mut o) => {
                    let status = o.state().status;
                    if status == OrderStatus::Invalid {
                        tracing::info!(name, "recorded order is invalid; placing a new one");
                    } else {
                        tracing::info!(name, order = rec.url, ?status, "resuming the order a previous run left");
                        resumed = Some((o, rec.key_pem));
                    }
                }
                Err(e) => tracing::info!(name, error = %e, "recorded order unknown to the CA; placing a new one"),
            }
        }
    }
    let (mut order, key_pem) = match resumed {
        Some(r) => r,
        None => {
            let ids = [Identifier::Dns(name.to_string())];
            let order = ctx.account.new_order(&NewOrder::new(&ids)).await?;
            let key = rcgen::KeyPair::generate().map_err(|e| OrderError::Other(e.to_string()))?;
            let key_pem = key.serialize_pem();
            ctx.storage.save_order(
                name,
                &OrderRecord {
                    directory: ctx.directory.to_string(),
                    url: order.url().to_string(),
                    key_pem: key_pem.clone(),
                    started: unix_now(),
                },
            )?;
            (order, key_pem)
        }
    };

    let mut answers = Answers {
        ctx,
        tokens: Vec::new(),
        alpn: Vec::new(),
    };
    if order.state().status == OrderStatus::Pending {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(OrderError::Authorization(other)),
            }
            let ident = authz.identifier().to_string();
            let (kind, label) = match ctx.challenge {
                ChallengeKind::Http01 => (ChallengeType::Http01, "http-01"),
                ChallengeKind::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
            };
            let mut ch = authz.challenge(kind).ok_or(OrderError::NoChallenge(label))?;
            let key_auth = ch.key_authorization();
            match ctx.challenge {
                ChallengeKind::Http01 => {
                    ctx.http01.set(&ch.token, key_auth.as_str());
                    answers.tokens.push(ch.token.clone());
                }
                ChallengeKind::TlsAlpn01 => {
                    let cert = alpn_certificate(&ident, key_auth.digest().as_ref())?;
                    ctx.store.set_alpn_challenge(&ident, Some(cert));
                    answers.alpn.push(ident.clone());
                }
            }
            // After a crash the challenge may already be processing: asking
            // again is an error at some CAs, so only a pending one is readied.
            if ch.status == ChallengeStatus::Pending {
                ch.set_ready().await?;
            }
        }
        let status = order.poll_ready(&POLL).await?;
        if status != OrderStatus::Ready {
            drop(answers);
            let _ = ctx.storage.remove_order(name);
            return Err(OrderError::Invalid(problem(&mut order)));
        }
    }
    drop(answers);

    if order.state().status == OrderStatus::Ready {
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| OrderError::Other(format!("recorded key: {e}")))?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| OrderError::Other(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| OrderError::Other(e.to_string()))?;
        order.finalize_csr(csr.der()).await?;
    }
    let chain_pem = match order.poll_certificate(&POLL).await {
        Ok(c) => c,
        Err(e) => {
            if order.state().status == OrderStatus::Invalid {
                let _ = ctx.storage.remove_order(name);
            }
            return Err(e.into());
        }
    };
    let cert = StoredCert { chain_pem, key_pem };
    ctx.storage.save_cert(name, &cert)?;
    ctx.storage.remove_order(name)?;
    Ok(cert)
}

fn problem(order: &mut instant_acme::Order) -> String {
    match &order.state().error {
        Some(p) => p.to_string(),
        None => format!("status {:?}", order.state().status),
    }
}

/// The self-signed certificate TLS-ALPN-01 wants (RFC 8737 §3): the name as
/// its only SAN and the critical acmeIdentifier extension holding the
/// SHA-256 digest of the key authorization.
pub fn alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, OrderError> {
    let key = rcgen::KeyPair::generate().map_err(|e| OrderError::Other(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| OrderError::Other(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| OrderError::Other(e.to_string()))?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| OrderError::Other(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_alpn_certificate_names_the_host_and_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let ck = alpn_certificate("a.example.com", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // DER OCTET STRING: tag 0x04, length 32, the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1);
        assert!(format!("{:?}", san.value.general_names[0]).contains("a.example.com"));
    }

    #[test]
    fn a_ca_root_without_certificates_is_a_clear_error() {
        let err = http_client(Some(b"not pem")).err().unwrap();
        assert!(err.contains("--acme-ca-root"), "{err}");
    }
}
