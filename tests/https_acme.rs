//! ACME against a real CA: Debian's pebble and pebble-challtestsrv on
//! loopback (tests/support/pebble.rs), wharf on the host, demo containers
//! labelled `wharf.host=…`, and a rustls client that trusts only pebble's
//! issuing root. Names are unique per test; pebble resolves every name to
//! 127.0.0.1 (wharf's listeners) unless a test says otherwise.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use support::pebble::{roots_from_pem, served_serial, Pebble, H2};
use support::*;

/// Deadline for a certificate that should come: catches "never", not "slow".
const ISSUE: Duration = Duration::from_secs(120);

struct Ports {
    listen: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    /// Held until wharf starts, so pebble's own free ports cannot be these.
    hold: std::cell::RefCell<Vec<std::net::TcpListener>>,
}

impl Ports {
    fn new() -> Ports {
        let hold: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let at = |i: usize| hold[i].local_addr().unwrap();
        Ports {
            listen: at(0),
            tls: at(1),
            admin: at(2),
            hold: std::cell::RefCell::new(hold),
        }
    }
}

fn storage_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("acme-storage"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn name(tag: &str) -> String {
    format!("{}.example.com", unique(tag))
}

/// wharf with ACME against `pebble`, storage in `storage`, extra `args`.
async fn start_wharf(
    ports: &Ports,
    net: &str,
    pebble: &Pebble,
    storage: &std::path::Path,
    challenge: &str,
    args: &[&str],
) -> Wharf {
    let tls = ports.tls.to_string();
    let ca = pebble.ca_root_path.display().to_string();
    let st = storage.display().to_string();
    let mut all = vec![
        "--network",
        net,
        "--tls-listen",
        &tls,
        "--acme-email",
        "ops@example.com",
        "--acme-directory",
        &pebble.directory,
        "--acme-ca-root",
        &ca,
        "--acme-storage",
        &st,
        "--acme-challenge",
        challenge,
    ];
    all.extend_from_slice(args);
    ports.hold.borrow_mut().clear();
    Wharf::start_on(ports.listen, ports.admin, &all, &[])
        .wait_ready(Duration::from_secs(30))
        .await
}

/// Poll until a verified handshake for `name` gets a certificate; its serial.
async fn wait_cert(ports: &Ports, name: &str, root: &str) -> String {
    let what = format!("a certificate for {name} verified against pebble's root");
    let (serial, _) = poll(&what, ISSUE, || async {
        served_serial(ports.tls, name, roots_from_pem(root)).await
    })
    .await;
    serial
}

fn acme_cert(state: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    state["acme"]["certificates"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_certifies_two_hosts_of_one_pool_and_one_of_another() {
    require_docker();
    let ports = Ports::new();
    // TLS-ALPN-01 would hit a closed port: success proves HTTP-01.
    let pebble = Pebble::start(ports.listen.port(), free_port(), "127.0.0.1", "127.0.0.1");
    let net = Network::create("acme");
    let (a, b, c) = (name("a"), name("b"), name("c"));
    let shop = demo(
        &net.name,
        "shop",
        &["wharf.pool=shop", &format!("wharf.host={a},{b}")],
        &[],
    );
    let blog = demo(&net.name, "blog", &["wharf.pool=blog", &format!("wharf.host={c}")], &[]);
    wait_demos_listening(&net.name, &[&shop, &blog]).await;
    let storage = storage_dir();
    let wharf = start_wharf(&ports, &net.name, &pebble, &storage, "http-01", &[]).await;
    let root = pebble.issuing_root().await;

    for n in [&a, &b, &c] {
        wait_cert(&ports, n, &root).await;
        // The certificate serves real traffic to the right pool.
        let body = support::pebble::https_get(ports.tls, n, "/", roots_from_pem(&root))
            .await
            .unwrap();
        assert!(!body.is_empty());
    }
    let state = wharf.state().await;
    for n in [&a, &b, &c] {
        let s = acme_cert(&state, n).unwrap_or_else(|| panic!("{n} not in /api/state acme: {state:#}"));
        assert_eq!(s["state"], "valid", "{s}");
        assert_eq!(s["challenge"], "http-01");
        assert!(s["not_after"].is_string() && s["next_renewal"].is_string(), "{s}");
    }
    let metrics = wharf.admin_get("/metrics").await.unwrap().body;
    for n in [&a, &b, &c] {
        assert!(
            metrics.contains(&format!("wharf_acme_certificate_expiry_seconds{{name=\"{n}\"}}")),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("wharf_acme_orders_total{outcome=\"issued\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn01_certifies_a_host_through_the_tls_listener() {
    require_docker();
    let ports = Ports::new();
    // HTTP-01 would hit a closed port: success proves TLS-ALPN-01.
    let pebble = Pebble::start(free_port(), ports.tls.port(), "127.0.0.1", "127.0.0.1");
    let net = Network::create("acme");
    let a = name("alpn");
    let web = demo(&net.name, "web", &["wharf.pool=web", &format!("wharf.host={a}")], &[]);
    wait_demos_listening(&net.name, &[&web]).await;
    let storage = storage_dir();
    let wharf = start_wharf(&ports, &net.name, &pebble, &storage, "tls-alpn-01", &[]).await;
    let root = pebble.issuing_root().await;
    wait_cert(&ports, &a, &root).await;
    let state = wharf.state().await;
    let s = acme_cert(&state, &a).unwrap();
    assert_eq!(s["state"], "valid");
    assert_eq!(s["challenge"], "tls-alpn-01");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_the_stored_certificate_and_orders_nothing() {
    require_docker();
    let ports = Ports::new();
    let pebble = Pebble::start(ports.listen.port(), ports.tls.port(), "127.0.0.1", "127.0.0.1");
    let net = Network::create("acme");
    let a = name("keep");
    let web = demo(&net.name, "web", &["wharf.pool=web", &format!("wharf.host={a}")], &[]);
    wait_demos_listening(&net.name, &[&web]).await;
    let storage = storage_dir();
    let root = pebble.issuing_root().await;
    let first = {
        let _wharf = start_wharf(&ports, &net.name, &pebble, &storage, "http-01", &[]).await;
        wait_cert(&ports, &a, &root).await
    };
    let orders = pebble.orders_created();
    assert_eq!(orders, 1, "one order before the restart\n{}", pebble.logs());
    let wharf = start_wharf(&ports, &net.name, &pebble, &storage, "http-01", &[]).await;
    let again = wait_cert(&ports, &a, &root).await;
    assert_eq!(again, first, "the restarted wharf serves the stored certificate");
    // Give it the time it would take to order (the manager starts at once).
    stays("no new order after the restart", secs(5), || async {
        let now = pebble.orders_created();
        (now == orders).then_some(()).ok_or(format!("{now} orders"))
    })
    .await;
    let s = acme_cert(&wharf.state().await, &a).unwrap();
    assert_eq!(s["state"], "valid");
    assert_eq!(s["serial"], first.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_an_order_leaves_a_readable_store_and_the_next_start_finishes() {
    require_docker();
    let ports = Ports::new();
    let pebble = Pebble::start(ports.listen.port(), ports.tls.port(), "127.0.0.1", "127.0.0.1");
    let net = Network::create("acme");
    let a = name("kill");
    // The challenge first goes to a test listener that accepts and never
    // answers: the order stays in progress, recorded, until wharf is killed.
    let stall = std::net::TcpListener::bind(("127.0.0.3", ports.listen.port())).expect("bind 127.0.0.3");
    pebble.set_address(&a, "127.0.0.3").await;
    let web = demo(&net.name, "web", &["wharf.pool=web", &format!("wharf.host={a}")], &[]);
    wait_demos_listening(&net.name, &[&web]).await;
    let storage = storage_dir();
    let mut wharf = start_wharf(&ports, &net.name, &pebble, &storage, "http-01", &[]).await;
    let order_file = storage.join("orders").join(format!("{a}.json"));
    poll_sync("the order is recorded and its challenge in progress", ISSUE, || {
        let recorded = order_file.exists();
        stall.set_nonblocking(true).unwrap();
        let accepted = stall.accept().map(|(s, _)| std::mem::forget(s)).is_ok();
        if recorded && accepted {
            Ok(())
        } else {
            Err(format!("recorded {recorded}, challenge connection {accepted}"))
        }
    });
    wharf.signal("KILL");
    assert!(wharf.wait_exit(secs(10)).is_some());

    // Everything in the store parses.
    let store = ::wharf::tls::acme::storage::Storage::open(&storage).expect("storage opens");
    let rec = store
        .load_order(&a)
        .expect("order record readable")
        .expect("order recorded");
    assert!(rec.url.starts_with("https://"), "{rec:?}");
    let (_, errors) = store.load_certs();
    assert!(errors.is_empty(), "{errors:?}");

    drop(stall);
    pebble.clear_address(&a).await;
    let wharf = start_wharf(&ports, &net.name, &pebble, &storage, "http-01", &[]).await;
    let root = pebble.issuing_root().await;
    wait_cert(&ports, &a, &root).await;
    assert!(!order_file.exists(), "the finished order's record is removed");
    let log = wharf.log();
    eprintln!(
        "after the restart: {}",
        log.lines()
            .filter(|l| l.contains("order"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_renewal_swaps_the_certificate_while_an_open_http2_connection_keeps_working() {
    require_docker();
    let ports = Ports::new();
    let pebble = Pebble::start(ports.listen.port(), ports.tls.port(), "127.0.0.1", "127.0.0.1");
    let net = Network::create("acme");
    let a = name("renew");
    let web = demo(&net.name, "web", &["wharf.pool=web", &format!("wharf.host={a}")], &[]);
    wait_demos_listening(&net.name, &[&web]).await;
    let storage = storage_dir();
    // A threshold longer than any lifetime: renew as soon as allowed (10 s).
    let wharf = start_wharf(
        &ports,
        &net.name,
        &pebble,
        &storage,
        "http-01",
        &["--acme-renew-before", "1000000h"],
    )
    .await;
    let root = pebble.issuing_root().await;
    let first = wait_cert(&ports, &a, &root).await;
    let mut h2 = H2::connect(ports.tls, &a, roots_from_pem(&root)).await.unwrap();
    assert_eq!(h2.serial, first);
    assert_eq!(h2.get("/").await.unwrap(), 200);
    let (renewed, _) = poll("a renewed certificate for new handshakes", ISSUE, || async {
        match served_serial(ports.tls, &a, roots_from_pem(&root)).await {
            Ok(s) if s != first => Ok(s),
            Ok(s) => Err(format!("still {s}")),
            Err(e) => Err(e),
        }
    })
    .await;
    assert_ne!(renewed, first);
    // The connection opened before the swap still works, on its certificate.
    for _ in 0..3 {
        assert_eq!(h2.get("/").await.expect("old HTTP/2 connection keeps working"), 200);
    }
    let s = acme_cert(&wharf.state().await, &a).unwrap();
    assert_ne!(s["serial"], first.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_challenge_fails_is_retried_with_back_off_and_shown_while_others_work() {
    require_docker();
    let ports = Ports::new();
    let pebble = Pebble::start(ports.listen.port(), ports.tls.port(), "127.0.0.1", "127.0.0.1");
    let net = Network::create("acme");
    let (good, bad) = (name("good"), name("bad"));
    // Nothing listens on 127.0.0.2: pebble's validation of `bad` fails.
    pebble.set_address(&bad, "127.0.0.2").await;
    // A wildcard host needs DNS-01: reported, never ordered.
    let wild = format!("*.{}", name("wild"));
    let web = demo(
        &net.name,
        "web",
        &["wharf.pool=web", &format!("wharf.host={good},{bad},{wild}")],
        &[],
    );
    wait_demos_listening(&net.name, &[&web]).await;
    let storage = storage_dir();
    let wharf = start_wharf(&ports, &net.name, &pebble, &storage, "http-01", &[]).await;
    let root = pebble.issuing_root().await;
    wait_cert(&ports, &good, &root).await;
    let w = acme_cert(&wharf.state().await, &wild).expect("wildcard host in /api/state");
    assert_eq!(w["state"], "needs_dns01", "{w}");
    assert!(wharf.log().contains("needs a DNS-01 challenge"));
    let (s, _) = poll("the failing host has failed twice", ISSUE, || async {
        let st = wharf.state().await;
        match acme_cert(&st, &bad) {
            Some(s) if s["failures"].as_u64() >= Some(2) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(s["state"], "failed", "{s}");
    assert!(s["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    assert!(s["next_attempt"].is_string(), "{s}");
    // Back-off doubles: the log's retry_in of the first two failures.
    let delays: Vec<f64> = wharf
        .log()
        .lines()
        .filter(|l| l.contains("ACME order failed") && l.contains(bad.as_str()))
        .filter_map(|l| {
            let v = l.split("retry_in=").nth(1)?.split_whitespace().next()?;
            v.trim_end_matches('s').parse().ok()
        })
        .collect();
    eprintln!("retry delays: {delays:?}");
    assert!(delays.len() >= 2, "{delays:?}");
    assert!(
        (9.0..=11.0).contains(&delays[0]) && (18.0..=22.0).contains(&delays[1]),
        "{delays:?}"
    );
    // The good host was never held up.
    assert_eq!(acme_cert(&wharf.state().await, &good).unwrap()["state"], "valid");
    let metrics = wharf.admin_get("/metrics").await.unwrap().body;
    assert!(
        metrics.contains("wharf_acme_orders_total{outcome=\"failed\"}"),
        "{metrics}"
    );
}

/// `compose-examples/https` as a user runs it (unprivileged, read-only), with the test images, ports
/// on loopback, and pebble as the CA: pebble listens on the compose
/// network's gateway (the only host address the wharf container can reach;
/// a network this test created) and validates through wharf's published
/// loopback ports.
#[tokio::test(flavor = "multi_thread")]
async fn compose_https_example_gets_a_certificate_from_pebble() {
    let (http, https, admin) = (free_port(), free_port(), free_port());
    let host = name("compose");
    let file = workspace_root().join("compose-examples/https/compose.yaml");
    let compose = Compose::new("https", &file)
        .env("WHARF_IMAGE", wharf_image())
        .env("DEMO_IMAGE", demo_image())
        .env("WHARF_BIND", "127.0.0.1")
        .env("HTTP_PORT", &http.to_string())
        .env("HTTPS_PORT", &https.to_string())
        .env("WHARF_ADMIN_PORT", &admin.to_string())
        .env("APP_HOST", &host);
    compose.run(&["up", "--no-start"]);
    let net = format!("{}_default", compose.project);
    let gateway = docker(&[
        "network",
        "inspect",
        &net,
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let gateway = gateway.trim();
    assert!(
        gateway.parse::<std::net::Ipv4Addr>().is_ok(),
        "gateway of {net}: {gateway:?}"
    );
    let pebble = Pebble::start(http, https, gateway, "127.0.0.1");
    let compose = compose
        .env("ACME_DIRECTORY", &pebble.directory)
        .env("ACME_CA_DIR", &pebble.dir.display().to_string())
        .env("ACME_CA_ROOT", "/ca/pebble-api-ca.pem");
    compose.run(&["up", "-d"]);
    let _logs = LogsOnPanic(&compose);
    let root = pebble.issuing_root().await;
    let ports = Ports {
        listen: SocketAddr::from(([127, 0, 0, 1], http)),
        tls: SocketAddr::from(([127, 0, 0, 1], https)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        hold: Default::default(),
    };
    poll("wharf's /api/state shows the certificate valid", ISSUE, || async {
        let st = state_at(ports.admin).await?;
        match acme_cert(&st, &host) {
            Some(c) if c["state"] == "valid" => Ok(()),
            _ => Err(format!("acme: {}", st["acme"])),
        }
    })
    .await;
    wait_cert(&ports, &host, &root).await;
    let body = support::pebble::https_get(ports.tls, &host, "/", roots_from_pem(&root))
        .await
        .unwrap();
    assert!(!body.is_empty());
    let state = state_at(ports.admin).await.unwrap();
    assert_eq!(acme_cert(&state, &host).unwrap()["state"], "valid", "{state:#}");
    // All of it as the example asks: switched to uid 65534 (keeping the
    // socket's group), storing into the `acme` volume, no capability (yet
    // bound :80 and :443), read-only otherwise.
    let wharf = compose.ps_ids("wharf");
    let me = Privileges::of_container(&wharf[0]);
    eprintln!("{}", me.assert_least("compose https wharf"));
    me.assert_socket_group(&docker_gid(), "compose https wharf");
    let volume = docker(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &format!("{}_acme", compose.project),
    ]);
    let stored = PathBuf::from(volume.trim()).join("certs").join(format!("{host}.pem"));
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(&stored).unwrap_or_else(|e| panic!("{}: {e}", stored.display())),
    );
    assert_eq!(owner, WHARF_UID, "{} written by uid {owner}", stored.display());
}

/// Prints the compose project's wharf logs when the test fails.
struct LogsOnPanic<'a>(&'a Compose);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.0.try_run(&["logs", "--no-color", "wharf"]).unwrap_or_else(|e| e);
            eprintln!("--- compose wharf logs ---\n{}", support::docker::tail(&logs, 60));
        }
    }
}
