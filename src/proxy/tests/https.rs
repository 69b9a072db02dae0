//! HTTPS in-process: wharf's plain and TLS listeners over one proxy, a
//! certificate store with a test CA, and rustls clients that trust only it.
//! The ACME HTTP-01 answer, the 308 redirect, HSTS, `X-Forwarded-Proto`,
//! HTTP/2 by ALPN, the handshake timeout and `acme-tls/1` connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::backends;
use super::client::{self, eventually, request_to, Reply};
use super::fixture::{desired, pool, timeouts, AbortOnDrop};
use crate::model::{HostPattern, PoolOptions};
use crate::proxy::Proxy;
use crate::routing::Router;
use crate::server;
use crate::tls::testing::TestCa;
use crate::tls::{certificate_from_pem, CertSource, Tls};

/// wharf with both listeners, certificates for `names` from `ca`.
struct Edge {
    plain: SocketAddr,
    tls_addr: SocketAddr,
    tls: Tls,
    proxy: Arc<Proxy>,
    _tasks: Vec<AbortOnDrop>,
}

impl Edge {
    async fn start(ca: &TestCa, names: &[&str], handshake_timeout: Duration) -> Edge {
        Edge::start_capped(ca, names, handshake_timeout, usize::MAX).await
    }

    /// [`Edge::start`] with `--max-connections max_connections`.
    async fn start_capped(ca: &TestCa, names: &[&str], handshake_timeout: Duration, max_connections: usize) -> Edge {
        let tls = Tls::new();
        let leaf = ca.leaf(names);
        let cert = certificate_from_pem(leaf.chain.as_bytes(), leaf.key.as_bytes()).unwrap();
        tls.store.publish(CertSource::Files, vec![cert]);
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
        let mut proxy = Proxy::new(Arc::new(Router::default()), timeouts(), false, Vec::new());
        proxy.http01 = Some(Arc::clone(&tls.http01));
        proxy.https_port = tls_addr.port();
        proxy.conn_limit = Arc::new(crate::limits::ConnLimit::new(max_connections));
        let proxy = Arc::new(proxy);
        let never = std::future::pending::<()>;
        let t1 = tokio::spawn(server::serve(plain, Arc::clone(&proxy), timeouts(), never()));
        let t2 = tokio::spawn(server::tls::serve(
            secure,
            Arc::clone(&proxy),
            Arc::clone(&tls.server_config),
            timeouts(),
            handshake_timeout,
            never(),
        ));
        Edge {
            plain: plain_addr,
            tls_addr,
            tls,
            proxy,
            _tasks: vec![AbortOnDrop(t1), AbortOnDrop(t2)],
        }
    }

    fn route(&self, name: &str, opts: PoolOptions, backend: SocketAddr) {
        assert!(self.proxy.router.update(desired([pool(name, opts, &[backend])])));
    }
}

fn on_host(host: &str) -> PoolOptions {
    PoolOptions {
        hosts: vec![HostPattern::Exact(host.into())],
        ..PoolOptions::default()
    }
}

/// A TLS connection to `addr` for `sni`, trusting only `ca`, offering `alpn`.
async fn connect(addr: SocketAddr, ca: &TestCa, sni: &str, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}
use rustls::pki_types::pem::PemObject;

/// GET `path` over TLS (HTTP/2 when `h2`, else HTTP/1.1), whole response.
async fn get_tls(edge: &Edge, ca: &TestCa, host: &str, path: &str, h2: bool) -> Reply {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let tls = connect(edge.tls_addr, ca, host, alpn).await.expect("TLS handshake");
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(negotiated.as_deref(), Some(alpn[0]), "ALPN");
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("https://{host}{path}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = request_to(host, http::Method::GET, path)
            .body(Full::<Bytes>::default())
            .unwrap();
        send.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn https_redirect_sends_308_to_the_https_url_but_acme_challenges_are_answered_over_http() {
    let ca = TestCa::new("test CA");
    let edge = Edge::start(&ca, &["shop.test"], Duration::from_secs(5)).await;
    let app = backends::named("app").await;
    let opts = PoolOptions {
        https_redirect: true,
        ..on_host("shop.test")
    };
    edge.route("shop", opts, app.addr);

    let r = client::send(
        edge.plain,
        request_to("Shop.test:80", http::Method::POST, "/cart/add?id=7&q=a%20b")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    let port = edge.tls_addr.port();
    assert_eq!(
        r.headers["location"],
        format!("https://shop.test:{port}/cart/add?id=7&q=a%20b").as_str()
    );
    assert_eq!(app.log.count(), 0, "a redirect never reaches the backend");

    edge.tls.http01.set("tok-1", "tok-1.thumbprint");
    let r = client::send(
        edge.plain,
        request_to("shop.test", http::Method::GET, "/.well-known/acme-challenge/tok-1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "tok-1.thumbprint"));
    // A token wharf does not know is the backend's business, still not redirected.
    let r = client::send(
        edge.plain,
        request_to("shop.test", http::Method::GET, "/.well-known/acme-challenge/other")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "app"));
    // Answered even for a host no pool serves: the CA asks before routes matter.
    let r = client::send(
        edge.plain,
        request_to("new.test", http::Method::GET, "/.well-known/acme-challenge/tok-1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "tok-1.thumbprint"));
    edge.tls.http01.remove("tok-1");
    let r = client::send(
        edge.plain,
        request_to("new.test", http::Method::GET, "/.well-known/acme-challenge/tok-1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = get_tls(&edge, &ca, "shop.test", "/cart", false).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "app"),
        "HTTPS is served, not redirected"
    );
}

#[tokio::test]
async fn over_tls_the_backend_sees_x_forwarded_proto_https_and_the_client_gets_hsts_on_h1_and_h2() {
    let ca = TestCa::new("test CA");
    let edge = Edge::start(&ca, &["shop.test"], Duration::from_secs(5)).await;
    let app = backends::named("app").await;
    let opts = PoolOptions {
        hsts: Some(Duration::from_secs(31_536_000)),
        ..on_host("shop.test")
    };
    edge.route("shop", opts, app.addr);

    for h2 in [false, true] {
        let r = get_tls(&edge, &ca, "shop.test", "/p?x=1", h2).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "app"), "h2={h2}");
        assert_eq!(r.headers["strict-transport-security"], "max-age=31536000", "h2={h2}");
        let seen = app.log.last();
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "h2={h2}");
        assert_eq!(seen.header("host"), Some("shop.test"), "h2={h2}");
        assert_eq!(seen.target(), "/p?x=1");
    }
    let r = client::send(
        edge.plain,
        request_to("shop.test", http::Method::GET, "/")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP (RFC 6797 §7.2)"
    );
    assert_eq!(app.log.last().header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn a_client_that_stalls_in_the_handshake_is_dropped_at_the_timeout() {
    let ca = TestCa::new("test CA");
    let timeout = Duration::from_millis(300);
    let edge = Edge::start(&ca, &["shop.test"], timeout).await;
    for partial in [&b""[..], &b"\x16\x03\x01\x02\x00\x01"[..]] {
        let mut s = TcpStream::connect(edge.tls_addr).await.unwrap();
        s.write_all(partial).await.unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("wharf never closed a stalled handshake")
            .unwrap_or(0);
        let took = start.elapsed();
        eprintln!("stalled handshake ({} bytes sent) closed after {took:?}", partial.len());
        assert_eq!(n, 0, "closed without an answer");
        assert!(
            took >= timeout - Duration::from_millis(50),
            "closed before the timeout: {took:?}"
        );
    }
}

#[tokio::test]
async fn tls_connections_count_against_max_connections_and_one_over_is_closed_at_once() {
    let ca = TestCa::new("test CA");
    let edge = Edge::start_capped(&ca, &["shop.test"], Duration::from_secs(10), 1).await;
    // The one allowed connection: a plain one, holding its slot.
    let _held = TcpStream::connect(edge.plain).await.unwrap();
    eventually("the plain connection holds the only slot", || {
        edge.proxy.conn_limit.open() == 1
    })
    .await;
    // A TLS client over the cap is closed before any handshake.
    let mut s = TcpStream::connect(edge.tls_addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("a TLS connection over --max-connections was kept open")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert_eq!(
        edge.proxy.conn_limit.refused.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn an_acme_tls_alpn_handshake_gets_the_challenge_certificate_and_is_closed() {
    let ca = TestCa::new("test CA");
    let edge = Edge::start(&ca, &["shop.test"], Duration::from_secs(5)).await;
    let app = backends::named("app").await;
    edge.route("shop", on_host("shop.test"), app.addr);
    // No challenge pending: an acme-tls/1 hello gets no certificate at all.
    assert!(connect(edge.tls_addr, &ca, "shop.test", &[b"acme-tls/1"])
        .await
        .is_err());

    let challenge = ca.leaf(&["shop.test"]);
    let c = certificate_from_pem(challenge.chain.as_bytes(), challenge.key.as_bytes()).unwrap();
    let challenge_der = c.key.cert[0].clone();
    edge.tls.store.set_alpn_challenge("shop.test", Some(Arc::clone(&c.key)));
    let mut tls = connect(edge.tls_addr, &ca, "shop.test", &[b"acme-tls/1"])
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    assert_eq!(conn.peer_certificates().unwrap()[0], challenge_der);
    let _ = tls.write_all(b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert!(
        buf.is_empty(),
        "nothing is proxied on an acme-tls/1 connection: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(app.log.count(), 0);
    // Ordinary handshakes still get the served certificate.
    let tls = connect(edge.tls_addr, &ca, "shop.test", &[b"http/1.1"]).await.unwrap();
    assert_ne!(tls.get_ref().1.peer_certificates().unwrap()[0], challenge_der);
}
