//! Test certificates: a CA and leaves it signs, generated per test (rcgen).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf: chain PEM (leaf then CA) and key PEM.
pub struct Leaf {
    pub chain: String,
    pub key: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_until(names, 2099)
    }

    /// A leaf valid until January 1st of `year`.
    pub fn leaf_until(&self, names: &[&str], year: i32) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: format!("{}{}", cert.pem(), self.pem),
            key: key.serialize_pem(),
        }
    }
}
