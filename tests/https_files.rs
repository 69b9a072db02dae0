//! HTTPS from `--tls-dir` with the real binary on the host: certificates
//! generated per test (rcgen), a demo backend on the host, rustls and curl
//! clients that trust only the test CA.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;

/// A test CA that signs leaves.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wharf https_files CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (chain PEM, key PEM) for `names`.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }
}

/// A directory under the target's tmp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// Write `name` atomically (temporary file + rename), as a deploy tool would.
    fn put(&self, name: &str, content: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.0.join(name)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo backend as a process on the host, killed on drop.
struct HostDemo {
    child: Child,
    addr: SocketAddr,
}

impl HostDemo {
    async fn start(name: &str) -> HostDemo {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(&binaries().demo)
            .args(["--listen", &addr.to_string(), "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wharf-demo");
        let demo = HostDemo { child, addr };
        poll("demo backend on the host answers", secs(20), || async {
            get(addr, "demo.test", "/").await.map(|r| r.status)
        })
        .await;
        demo
    }
}

impl Drop for HostDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// wharf with `--tls-dir dir`, one static pool to `demo`, TLS on a free port.
async fn wharf_with_tls(dir: &TempDir, demo: &HostDemo) -> (Wharf, SocketAddr) {
    let tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (tls_arg, pool) = (tls.to_string(), format!("web={}", demo.addr));
    let args = [
        "--provider",
        "none",
        "--static",
        &pool,
        "--tls-listen",
        &tls_arg,
        "--tls-dir",
        dir.arg(),
        "--tls-handshake-timeout",
        "2s",
    ];
    (Wharf::spawn(&args, &[]).await, tls)
}

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio::time::timeout(secs(10), connector.connect(name, tcp));
    tls.await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))
}

/// The served certificate for `sni`, verified against the CA: (SAN names, serial hex).
async fn served(addr: SocketAddr, ca_pem: &str, sni: &str) -> Result<(Vec<String>, String), String> {
    let tls = tls_connect(addr, ca_pem, sni).await?;
    let der = tls.get_ref().1.peer_certificates().ok_or("no certificate")?[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    let serial = cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
    Ok((names, serial))
}

/// GET over TLS (HTTP/1.1): (status, body).
async fn https_get(addr: SocketAddr, ca_pem: &str, host: &str, path: &str) -> Result<(u16, String), String> {
    let tls = tls_connect(addr, ca_pem, host).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = ::http::Request::get(path)
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_chosen_by_sni_a_wildcard_covers_one_label_and_api_state_lists_them() {
    let ca = Ca::new();
    let dir = TempDir::new("tls-sni");
    let (a, a_key) = ca.leaf(&["a.test"]);
    dir.put("a.crt", &a);
    dir.put("a.key", &a_key);
    let (b, b_key) = ca.leaf(&["b.test"]);
    dir.put("b.pem", &format!("{b}{b_key}"));
    let (w, w_key) = ca.leaf(&["*.w.test"]);
    dir.put("wild.cert", &w);
    dir.put("wild.key", &w_key);
    let demo = HostDemo::start("tls-demo").await;
    let (wharf, tls) = wharf_with_tls(&dir, &demo).await;

    assert_eq!(served(tls, &ca.pem, "a.test").await.unwrap().0, ["DNSName(a.test)"]);
    assert_eq!(served(tls, &ca.pem, "b.test").await.unwrap().0, ["DNSName(b.test)"]);
    assert_eq!(served(tls, &ca.pem, "x.w.test").await.unwrap().0, ["DNSName(*.w.test)"]);
    let e = served(tls, &ca.pem, "x.y.w.test").await.unwrap_err();
    assert!(e.contains("handshake"), "a wildcard covers one label only: {e}");
    assert!(
        served(tls, &ca.pem, "other.test").await.is_err(),
        "no certificate, no handshake"
    );

    let (status, body) = https_get(tls, &ca.pem, "a.test", "/hello?x=1").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("X-Forwarded-Proto: https"),
        "the backend sees https:\n{body}"
    );

    let state = wharf.state().await;
    let certs = state["certificates"].as_array().expect("certificates in /api/state");
    let names: Vec<String> = certs
        .iter()
        .map(|c| c["names"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["*.w.test", "a.test", "b.test"]);
    let (_, a_serial) = served(tls, &ca.pem, "a.test").await.unwrap();
    let a_state = &certs[1];
    assert_eq!(a_state["serial"], a_serial.as_str());
    assert_eq!(a_state["source"], "files");
    assert_eq!(a_state["issuer"], "CN=wharf https_files CA");
    assert!(a_state["not_after"].as_str().unwrap().ends_with('Z'));
    assert!(a_state["origin"].as_str().unwrap().ends_with("a.crt"));
    let metrics = wharf.admin_get("/metrics").await.unwrap().body;
    assert!(
        metrics.contains("wharf_certificate_expiry_seconds{names=\"a.test\",source=\"files\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_file_is_served_without_restart_a_corrupt_one_keeps_the_old_and_a_removed_one_stops() {
    let ca = Ca::new();
    let dir = TempDir::new("tls-reload");
    let (a1, a1_key) = ca.leaf(&["a.test"]);
    dir.put("a.crt", &a1);
    dir.put("a.key", &a1_key);
    let demo = HostDemo::start("tls-demo").await;
    let (wharf, tls) = wharf_with_tls(&dir, &demo).await;
    let (_, first) = served(tls, &ca.pem, "a.test").await.unwrap();

    // Replaced: key first, then chain (a half-done update in between is
    // refused and the first certificate keeps serving).
    let (a2, a2_key) = ca.leaf(&["a.test"]);
    dir.put("a.key", &a2_key);
    dir.put("a.crt", &a2);
    let (second, took) = poll("the replaced certificate is served", secs(20), || async {
        let (_, serial) = served(tls, &ca.pem, "a.test").await?;
        if serial != first {
            Ok(serial)
        } else {
            Err(format!("still serial {serial}"))
        }
    })
    .await;
    eprintln!("replacement picked up after {took:?}");

    // Corrupt: the previous certificate keeps serving, the log says why.
    dir.put(
        "a.crt",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    poll("wharf reports the corrupt file", secs(20), || async {
        let log = wharf.log();
        log.contains("certificate file cannot be used; the previous certificate from it keeps serving")
            .then_some(())
            .ok_or("not yet in the log")
    })
    .await;
    let kept = stays("the previous certificate keeps serving", secs(5), || async {
        let (_, serial) = served(tls, &ca.pem, "a.test").await?;
        (serial == second).then_some(()).ok_or(format!("now serial {serial}"))
    })
    .await;
    eprintln!("old certificate served on {kept} checks after the corruption");

    // Added and removed.
    let (c, c_key) = ca.leaf(&["c.test"]);
    dir.put("c.pem", &format!("{c_key}{c}"));
    let ((), took) = poll("an added file is served", secs(20), || async {
        served(tls, &ca.pem, "c.test").await.map(|_| ())
    })
    .await;
    eprintln!("added file picked up after {took:?}");
    std::fs::remove_file(dir.path().join("a.crt")).unwrap();
    let ((), took) = poll("a removed file is no longer served", secs(20), || async {
        match served(tls, &ca.pem, "a.test").await {
            Err(_) => Ok(()),
            Ok((_, s)) => Err(format!("still serving {s}")),
        }
    })
    .await;
    eprintln!("removal picked up after {took:?}");
}

/// Installs curl (Debian package) if it is absent, as `.ci/run` does.
fn need_curl() {
    if Command::new("curl").arg("--version").output().is_ok() {
        return;
    }
    let ok = Command::new("sh")
        .args(["-c", "apt-get update -qq && apt-get install -y -qq curl"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "curl is needed and could not be installed (apt-get install curl)");
}

/// `curl --http2`/`--http1.1` over TLS: (HTTP version curl reports, body).
fn curl(args: &[&str], ca: &Path, host: &str, tls: SocketAddr, path: &str) -> (String, String) {
    let resolve = format!("{host}:{}:127.0.0.1", tls.port());
    let url = format!("https://{host}:{}{path}", tls.port());
    let out = Command::new("curl")
        .args(args)
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &resolve, "-w", "\n%{http_version} %{http_code}", &url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    (tail.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_gets_http2_and_http1_1_over_tls_trusting_only_the_test_ca() {
    need_curl();
    let ca = Ca::new();
    let dir = TempDir::new("tls-curl");
    let (a, a_key) = ca.leaf(&["a.test"]);
    dir.put("a.crt", &a);
    dir.put("a.key", &a_key);
    let ca_file = dir.path().join("ca-file-not-a-cert-pair.txt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let demo = HostDemo::start("tls-demo").await;
    let (_wharf, tls) = wharf_with_tls(&dir, &demo).await;

    let start = Instant::now();
    let (version, body) = curl(&["--http2"], &ca_file, "a.test", tls, "/over/h2");
    assert_eq!(version, "2 200", "{body}");
    assert!(
        body.contains("GET /over/h2 HTTP/1.1"),
        "the backend got it over HTTP/1.1:\n{body}"
    );
    assert!(body.contains("X-Forwarded-Proto: https"), "{body}");
    let (version, body) = curl(&["--http1.1"], &ca_file, "a.test", tls, "/over/h1");
    assert_eq!(version, "1.1 200", "{body}");
    assert!(body.contains("X-Forwarded-Proto: https"), "{body}");
    eprintln!("both curls took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn wharf_check_warns_about_a_host_no_certificate_covers_and_not_about_covered_or_tls_off_ones() {
    let ca = Ca::new();
    let dir = TempDir::new("tls-check");
    let (a, a_key) = ca.leaf(&["covered.test"]);
    dir.put("covered.crt", &a);
    dir.put("covered.key", &a_key);
    dir.put("broken.pem", "not a certificate");
    let net = Network::create("tls-check");
    // A namespace of its own: other tests' containers on this daemon don't count.
    let prefix = format!("tlsck{}", std::process::id());
    let label = |k: &str, v: &str| format!("{prefix}.{k}={v}");
    let (covered_pool, covered_host) = (label("pool", "covered"), label("host", "covered.test"));
    let (bare_pool, bare_host) = (label("pool", "bare"), label("host", "bare.test"));
    let (plain_pool, plain_host, plain_tls) =
        (label("pool", "plain"), label("host", "plain.test"), label("tls", "off"));
    let _c1 = demo(&net.name, "covered", &[&covered_pool, &covered_host], &[]);
    let _c2 = demo(&net.name, "bare", &[&bare_pool, &bare_host], &[]);
    let _c3 = demo(&net.name, "plain", &[&plain_pool, &plain_host, &plain_tls], &[]);
    let base = ["--network", &net.name, "--label-prefix", &prefix];

    let (code, out) = wharf_check(&base, &[]);
    assert_eq!(
        code, 0,
        "without certificates configured there is nothing to warn about:\n{out}"
    );

    let mut args = base.to_vec();
    args.extend(["--tls-dir", dir.arg(), "--tls-listen", "127.0.0.1:0"]);
    let (code, out) = wharf_check(&args, &[]);
    eprintln!("wharf check with --tls-dir:\n{out}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("host bare.test (pool bare): no certificate in --tls-dir covers it"),
        "{out}"
    );
    assert!(out.contains("broken.pem"), "the broken file is named:\n{out}");
    assert!(!out.contains("host covered.test"), "{out}");
    assert!(!out.contains("host plain.test"), "{out}");
}
