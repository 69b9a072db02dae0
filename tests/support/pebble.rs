//! Debian's `pebble` (an RFC 8555 test CA) and `pebble-challtestsrv` (its
//! DNS), on loopback, one pair per test.
//!
//! [`Pebble::start`] writes pebble's config and its own HTTPS certificate
//! (from a throw-away CA, [`Pebble::ca_root_pem`], which wharf trusts with
//! `--acme-ca-root`) into a temp dir, picks free ports, and starts:
//! - challtestsrv with only its DNS server, answering `dns_answer` (by default
//!   127.0.0.1) for every A query and nothing for AAAA, so pebble validates
//!   every name against a listener on this machine; [`Pebble::set_address`]
//!   gives one name another answer (a wrong address makes its challenge fail);
//! - pebble with `httpPort`/`tlsPort` pointed at wharf's plain and TLS
//!   listeners (HTTP-01 and TLS-ALPN-01 go there), `PEBBLE_VA_NOSLEEP=1`,
//!   `PEBBLE_WFE_NONCEREJECT=0`, `PEBBLE_AUTHZREUSE=0` (every order really
//!   runs its challenge).
//!
//! [`Pebble::issuing_root`] fetches the root pebble signs with from its
//! management API: a client trusting it verifies what wharf serves. Pebble
//! is installed with apt if absent. Dropping a `Pebble` kills both processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use super::docker::unique;
use super::wharf::free_port;

static INSTALL: Once = Once::new();

/// Install Debian's pebble package if its binaries are missing.
pub fn ensure_pebble() {
    INSTALL.call_once(|| {
        let have = |b: &str| {
            Command::new("which")
                .arg(b)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if have("pebble") && have("pebble-challtestsrv") {
            return;
        }
        eprintln!("installing pebble (apt-get)");
        let ok = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && have("pebble"),
            "cannot install Debian's pebble package (apt-get install pebble)"
        );
    });
}

pub struct Pebble {
    /// The ACME directory URL (`--acme-directory`).
    pub directory: String,
    /// PEM file of the CA that signed pebble's own HTTPS certificate (`--acme-ca-root`).
    pub ca_root_path: PathBuf,
    pub ca_root_pem: String,
    pub listen: SocketAddr,
    pub management: SocketAddr,
    /// challtestsrv's management API (plain HTTP).
    pub challtest: SocketAddr,
    pub dir: PathBuf,
    pebble: Child,
    challtestsrv: Child,
}

fn spawn(cmd: &mut Command, log: &PathBuf) -> Child {
    let f = std::fs::File::create(log).expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().expect("dup"))
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

impl Pebble {
    /// Pebble whose HTTP-01 and TLS-ALPN-01 validations connect to
    /// `http_port` and `tls_port` on the address its DNS answers
    /// (`dns_answer`, normally 127.0.0.1). `listen_ip` is where pebble's
    /// own API listens (127.0.0.1, or a test network's gateway so a
    /// container can reach it).
    pub fn start(http_port: u16, tls_port: u16, listen_ip: &str, dns_answer: &str) -> Pebble {
        ensure_pebble();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("pebble"));
        std::fs::create_dir_all(&dir).expect("pebble dir");

        // Pebble's own HTTPS certificate, from a CA made for this test.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wharf test: pebble API CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if listen_ip != "127.0.0.1" {
            names.push(listen_ip.to_string());
        }
        let leaf = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let ca_root_pem = ca_cert.pem();
        let ca_root_path = dir.join("pebble-api-ca.pem");
        std::fs::write(&ca_root_path, &ca_root_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();

        let dns = free_port();
        let challtest_port = free_port();
        let challtest = SocketAddr::from(([127, 0, 0, 1], challtest_port));
        let challtestsrv = spawn(
            Command::new("pebble-challtestsrv").args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &challtest.to_string(),
                "-defaultIPv4",
                dns_answer,
                "-defaultIPv6",
                "",
            ]),
            &dir.join("challtestsrv.log"),
        );

        let listen: SocketAddr = format!("{listen_ip}:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("{listen_ip}:{}", free_port()).parse().unwrap();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let pebble = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .arg("-dnsserver")
                .arg(format!("127.0.0.1:{dns}"))
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            &dir.join("pebble.log"),
        );
        let p = Pebble {
            directory: format!("https://{listen}/dir"),
            ca_root_path,
            ca_root_pem,
            listen,
            management,
            challtest,
            dir,
            pebble,
            challtestsrv,
        };
        let start = Instant::now();
        for addr in [p.listen, p.management, p.challtest] {
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "pebble not listening on {addr} after 20 s; logs:\n{}",
                    p.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!(
            "pebble up in {} ms: {} (logs in {})",
            start.elapsed().as_millis(),
            p.directory,
            p.dir.display()
        );
        p
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- pebble ---\n{}\n--- challtestsrv ---\n{}",
            read("pebble.log"),
            read("challtestsrv.log")
        )
    }

    /// How many orders pebble has created (from its log).
    pub fn orders_created(&self) -> usize {
        std::fs::read_to_string(self.dir.join("pebble.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Added order"))
            .count()
    }

    /// Make challtestsrv answer `addr` for `host` (A record).
    pub async fn set_address(&self, host: &str, addr: &str) {
        let body = serde_json::json!({"host": format!("{host}."), "addresses": [addr]}).to_string();
        let r = super::http::request(
            self.challtest,
            "POST",
            "localhost",
            "/add-a",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await
        .expect("challtestsrv /add-a");
        assert_eq!(r.status, 200, "challtestsrv /add-a: {}", r.body);
    }

    /// Drop what [`Pebble::set_address`] set for `host`: the default answer again.
    pub async fn clear_address(&self, host: &str) {
        let body = serde_json::json!({"host": format!("{host}.")}).to_string();
        let r = super::http::request(
            self.challtest,
            "POST",
            "localhost",
            "/clear-a",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await
        .expect("challtestsrv /clear-a");
        assert_eq!(r.status, 200, "challtestsrv /clear-a: {}", r.body);
    }

    /// The root pebble issues under (PEM), from its management API.
    pub async fn issuing_root(&self) -> String {
        let roots = roots_from_pem(&self.ca_root_pem);
        let r = https_get(self.management, "localhost", "/roots/0", roots)
            .await
            .unwrap_or_else(|e| panic!("pebble /roots/0: {e}\n{}", self.logs()));
        assert!(r.contains("BEGIN CERTIFICATE"), "pebble /roots/0 answered {r}");
        r
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
        if std::thread::panicking() {
            eprintln!("{}", super::docker::tail(&self.logs(), 60));
        }
    }
}

pub fn roots_from_pem(pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.expect("PEM")).expect("root");
    }
    roots
}

/// A TLS client config trusting `roots`, ring provider, with `alpn`.
pub fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// Open TLS to `addr` with SNI `name`, verifying against `roots`.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timeout"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let sni = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client_config(roots, alpn));
    tokio::time::timeout(Duration::from_secs(5), connector.connect(sni, tcp))
        .await
        .map_err(|_| format!("TLS handshake with {addr} ({name}): timeout"))?
        .map_err(|e| format!("TLS handshake with {addr} ({name}): {e}"))
}

/// The serial (lowercase hex) of the certificate a verified handshake for
/// `name` at `addr` gets.
pub async fn served_serial(addr: SocketAddr, name: &str, roots: rustls::RootCertStore) -> Result<String, String> {
    let tls = tls_connect(addr, name, roots, &[b"http/1.1"]).await?;
    let (_, conn) = tls.get_ref();
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no peer certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    Ok(cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
}

/// `GET path` over HTTPS/1.1 with SNI and Host `name`; the body (any status).
pub async fn https_get(
    addr: SocketAddr,
    name: &str,
    path: &str,
    roots: rustls::RootCertStore,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    let tls = tls_connect(addr, name, roots, &[b"http/1.1"]).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", name)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .map_err(|_| "response timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/2 connection over TLS (ALPN h2) kept open across requests.
pub struct H2 {
    send: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    pub name: String,
    /// Serial of the certificate this connection was handshaken with.
    pub serial: String,
}

impl H2 {
    pub async fn connect(addr: SocketAddr, name: &str, roots: rustls::RootCertStore) -> Result<H2, String> {
        let tls = tls_connect(addr, name, roots, &[b"h2"]).await?;
        let (_, conn) = tls.get_ref();
        if conn.alpn_protocol() != Some(b"h2") {
            return Err(format!("ALPN chose {:?}, not h2", conn.alpn_protocol()));
        }
        let der = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no peer certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
        let serial = cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(H2 {
            send,
            name: name.to_string(),
            serial,
        })
    }

    /// `GET path` on this connection; the status.
    pub async fn get(&mut self, path: &str) -> Result<u16, String> {
        use http_body_util::BodyExt;
        let req = http::Request::get(format!("https://{}{path}", self.name))
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.send.send_request(req))
            .await
            .map_err(|_| "response timeout".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
    }
}
