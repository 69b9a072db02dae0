use super::*;
use crate::tls::testing::{Leaf, TestCa};

fn cert(leaf: &Leaf) -> Certificate {
    certificate_from_pem(leaf.chain.as_bytes(), leaf.key.as_bytes()).unwrap()
}

/// Which certificate (by its first name) a handshake for `host` gets.
fn served_for(store: &CertStore, host: &str) -> Option<String> {
    let key = store.choose(Some(host), false)?;
    let info = describe(key.end_entity_cert().unwrap()).unwrap();
    Some(info.names.join(","))
}

#[test]
fn a_pem_chain_and_key_give_names_issuer_serial_and_expiry() {
    let ca = TestCa::new("wharf test CA");
    let leaf = ca.leaf_until(&["B.example.com", "a.example.com", "*.w.example.com"], 2098);
    let c = cert(&leaf);
    assert_eq!(c.names, ["*.w.example.com", "a.example.com", "b.example.com"]);
    assert_eq!(c.info.issuer, "CN=wharf test CA");
    assert!(!c.info.serial.is_empty() && c.info.serial.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(format_rfc3339(c.info.not_after), "2098-01-01T00:00:00Z");
    assert_eq!(c.key.cert.len(), 2, "the CA stays in the served chain");
    // One PEM holding both works too.
    let both = format!("{}{}", leaf.chain, leaf.key);
    assert_eq!(
        certificate_from_pem(both.as_bytes(), both.as_bytes()).unwrap().names,
        c.names
    );
}

#[test]
fn broken_inputs_are_refused_with_the_reason() {
    let ca = TestCa::new("ca");
    let (a, b) = (ca.leaf(&["a.com"]), ca.leaf(&["b.com"]));
    let no_key = certificate_from_pem(a.chain.as_bytes(), a.chain.as_bytes()).unwrap_err();
    assert_eq!(no_key, TlsError::NoKey);
    let no_cert = certificate_from_pem(a.key.as_bytes(), a.key.as_bytes()).unwrap_err();
    assert_eq!(no_cert, TlsError::NoCertificate);
    let wrong = certificate_from_pem(a.chain.as_bytes(), b.key.as_bytes()).unwrap_err();
    assert!(matches!(wrong, TlsError::Key(_)), "{wrong}");
    let truncated = &a.chain[..a.chain.len() / 4];
    let e = certificate_from_pem(truncated.as_bytes(), a.key.as_bytes()).unwrap_err();
    assert!(
        matches!(e, TlsError::Pem(_) | TlsError::NoCertificate | TlsError::X509(_)),
        "{e}"
    );
}

#[test]
fn sni_picks_exact_then_wildcard_for_exactly_one_label() {
    let ca = TestCa::new("ca");
    let store = CertStore::new();
    store.publish(
        CertSource::Files,
        vec![
            cert(&ca.leaf(&["*.example.com"])),
            cert(&ca.leaf(&["shop.example.com"])),
        ],
    );
    assert_eq!(served_for(&store, "shop.example.com").unwrap(), "shop.example.com");
    assert_eq!(served_for(&store, "SHOP.example.com").unwrap(), "shop.example.com");
    assert_eq!(served_for(&store, "api.example.com").unwrap(), "*.example.com");
    assert_eq!(
        served_for(&store, "a.b.example.com"),
        None,
        "a wildcard covers one label"
    );
    assert_eq!(served_for(&store, "example.com"), None);
    assert!(store.choose(None, false).is_none(), "no SNI, no guess");
    assert!(store.covers("api.example.com") && !store.covers("other.org"));
}

#[test]
fn a_file_certificate_wins_over_acme_and_each_publish_replaces_only_its_source() {
    let ca = TestCa::new("ca");
    let store = CertStore::new();
    let acme = cert(&ca.leaf(&["a.com", "b.com"]));
    let file = cert(&ca.leaf(&["a.com"]));
    let (acme_key, file_key) = (Arc::clone(&acme.key), Arc::clone(&file.key));
    store.publish(CertSource::Acme, vec![acme]);
    store.publish(CertSource::Files, vec![file]);
    assert!(Arc::ptr_eq(&store.choose(Some("a.com"), false).unwrap(), &file_key));
    assert!(Arc::ptr_eq(&store.choose(Some("b.com"), false).unwrap(), &acme_key));
    let sources: Vec<CertSource> = store.served().iter().map(|c| c.source).collect();
    assert_eq!(sources, [CertSource::Files, CertSource::Acme]);
    store.publish(CertSource::Files, Vec::new());
    assert!(Arc::ptr_eq(&store.choose(Some("a.com"), false).unwrap(), &acme_key));
    assert_eq!(store.served().len(), 1);
}

#[test]
fn within_a_source_the_certificate_expiring_last_wins_a_name() {
    let ca = TestCa::new("ca");
    let store = CertStore::new();
    let old = cert(&ca.leaf_until(&["a.com"], 2090));
    let new = cert(&ca.leaf_until(&["a.com"], 2095));
    let new_key = Arc::clone(&new.key);
    store.publish(CertSource::Files, vec![new, old]);
    assert!(Arc::ptr_eq(&store.choose(Some("a.com"), false).unwrap(), &new_key));
}

#[test]
fn a_key_held_before_a_publish_stays_valid_after_it() {
    let ca = TestCa::new("ca");
    let store = CertStore::new();
    store.publish(CertSource::Files, vec![cert(&ca.leaf(&["a.com"]))]);
    let held = store.choose(Some("a.com"), false).unwrap();
    store.publish(CertSource::Files, vec![cert(&ca.leaf(&["a.com"]))]);
    let now = store.choose(Some("a.com"), false).unwrap();
    assert!(!Arc::ptr_eq(&held, &now), "new handshakes see the new certificate");
    assert_eq!(held.cert.len(), 2, "an open connection's certificate is untouched");
}

#[test]
fn the_alpn_challenge_certificate_is_served_only_with_acme_tls_alpn() {
    let ca = TestCa::new("ca");
    let store = CertStore::new();
    let served = cert(&ca.leaf(&["a.com"]));
    let challenge = cert(&ca.leaf(&["a.com"]));
    let (served_key, challenge_key) = (Arc::clone(&served.key), Arc::clone(&challenge.key));
    store.publish(CertSource::Acme, vec![served]);
    assert!(
        store.choose(Some("a.com"), true).is_none(),
        "no challenge pending: nothing"
    );
    store.set_alpn_challenge("A.com", Some(challenge_key.clone()));
    assert!(Arc::ptr_eq(&store.choose(Some("a.com"), true).unwrap(), &challenge_key));
    assert!(Arc::ptr_eq(&store.choose(Some("a.com"), false).unwrap(), &served_key));
    store.set_alpn_challenge("a.com", None);
    assert!(store.choose(Some("a.com"), true).is_none());
}

#[test]
fn times_are_written_as_rfc3339_utc() {
    assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    let t = UNIX_EPOCH + Duration::from_secs(1_795_999_456);
    assert_eq!(format_rfc3339(t), "2026-11-30T00:44:16Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(format_rfc3339(leap), "2000-02-29T00:00:00Z");
}
