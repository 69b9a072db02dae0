//! Smoke tests of the integration-test harness itself (tests/support), using
//! the demo backend image only: building, guards (also on panic), compose,
//! HTTP helpers and polling, and the Docker socket interceptor (narrowing the
//! events stream, filtering calls) against the real daemon.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use futures::FutureExt;
use support::*;

/// Fetches `/` from the demo container until it answers 200.
async fn demo_answers(addr: std::net::SocketAddr, what: &str) -> Resp {
    poll(what, secs(20), || async {
        match get(addr, "demo.test", "/harness?x=1").await {
            Ok(r) if r.status == 200 => Ok(r),
            Ok(r) => Err(format!("status {}: {}", r.status, r.body)),
            Err(e) => Err(e),
        }
    })
    .await
    .0
}

#[test]
fn unique_names_are_unique_and_prefixed() {
    let a = unique("x");
    let b = unique("x");
    assert_ne!(a, b);
    let prefix = format!("wharf-it-{}-", std::process::id());
    assert!(a.starts_with(&prefix) && a.ends_with("-x"), "{a}");
}

#[test]
fn binaries_are_static_executables() {
    let bins = binaries();
    for path in [&bins.wharf, &bins.demo] {
        assert!(path.is_file(), "{} missing", path.display());
        assert!(
            path.starts_with(workspace_root().join("target/static")),
            "{}",
            path.display()
        );
    }
    // Calling again does not rebuild (same &'static).
    assert!(std::ptr::eq(bins, binaries()));
}

#[test]
fn images_are_built_with_the_expected_config() {
    assert!(demo_image().starts_with("wharf-it/demo:test-"), "{}", demo_image());
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}",
            demo_image()
        ]),
        r#"["/wharf-demo"]"#
    );
    assert!(wharf_image().starts_with("wharf-it/wharf:test-"), "{}", wharf_image());
    let cfg = docker(&["image", "inspect", "--format", "{{json .Config}}", wharf_image()]);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/wharf"]), "{cfg}");
    // Starts as root (to read the socket without --group-add) and switches to WHARF_USER.
    assert!(
        cfg["User"].as_str().unwrap_or_default().is_empty(),
        "the image starts as root: {cfg}"
    );
    assert!(
        cfg["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "WHARF_USER=65534:65534")),
        "the image switches to 65534: {cfg}"
    );
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/wharf", "healthcheck"]),
        "{cfg}"
    );
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"WHARF_LISTEN=0.0.0.0:80"), "{cfg}");
    assert!(env.contains(&"WHARF_ADMIN_LISTEN=0.0.0.0:8081"), "{cfg}");
    assert!(cfg["ExposedPorts"].get("8081/tcp").is_some(), "{cfg}");
}

#[tokio::test]
async fn demo_container_answers_on_its_network_address() {
    let net = Network::create("demo");
    let c = Container::run("demo", &["--network", &net.name, demo_image()]);
    assert!(c.name.starts_with("wharf-it-") && c.name.ends_with("-demo"));
    assert_eq!(net.containers(), vec![c.id.clone()]);
    let addr = c.addr(&net, 80);
    let r = demo_answers(addr, "demo container answers").await;
    let hostname = c.hostname();
    assert_eq!(r.header("x-demo-hostname"), Some(hostname.as_str()), "{r:?}");
    assert!(r.header("x-demo-name").is_some(), "{r:?}");
    assert!(r.body.starts_with(&format!("Hostname: {hostname}\n")), "{}", r.body);
    assert_eq!(r.body_field("Hostname"), Some(hostname.as_str()));

    // The pooled client reaches it too, over one keep-alive connection.
    let client = Client::new();
    for _ in 0..20 {
        let r = client.get(addr, "demo.test", "/").await.unwrap();
        assert_eq!(r.status, 200);
    }

    // Lifecycle helpers, each observed through HTTP or inspect.
    c.stop(1);
    assert_eq!(c.status(), "exited");
    assert!(
        get(addr, "demo.test", "/").await.is_err(),
        "stopped container still answers"
    );
    c.start();
    let addr = c.addr(&net, 80);
    demo_answers(addr, "demo answers after restart").await;
    c.pause();
    assert_eq!(c.status(), "paused");
    c.unpause();
    assert_eq!(c.status(), "running");
    demo_answers(addr, "demo answers after unpause").await;
    c.kill("KILL");
    poll_sync("container exits after SIGKILL", secs(10), || {
        (!c.running()).then_some(())
    });
    assert_eq!(c.exit_code(), 137);
    let _ = c.logs();
}

#[test]
fn guards_remove_everything_when_the_test_panics() {
    let mut names = (String::new(), String::new(), String::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let net = Network::create("panic");
        let c = Container::run("panic", &["--network", &net.name, demo_image()]);
        // A container without a guard of its own: the network guard removes it.
        let stray = unique("stray");
        docker(&["run", "-d", "--name", &stray, "--network", &net.name, demo_image()]);
        names = (net.name.clone(), c.name.clone(), stray);
        assert!(c.exists());
        panic!("deliberate panic inside the guarded scope");
    }));
    assert!(result.is_err(), "the closure should have panicked");
    let (net, c, stray) = names;
    assert!(!net.is_empty());
    assert!(!docker_ok(&["container", "inspect", &c]), "container {c} leaked");
    assert!(
        !docker_ok(&["container", "inspect", &stray]),
        "container {stray} leaked"
    );
    assert!(!docker_ok(&["network", "inspect", &net]), "network {net} leaked");
}

#[test]
fn failed_docker_run_panics_and_leaves_nothing_behind() {
    let image = demo_image();
    let before = docker(&["ps", "-aq", "--filter", "name=-noentry"]);
    let result = catch_unwind(|| {
        Container::run("noentry", &["--entrypoint", "/does-not-exist", image]);
    });
    // `docker run` creates the container, then fails to start it.
    let msg = result.expect_err("docker run with a missing entrypoint should panic");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("docker run"), "{msg}");
    let after = docker(&["ps", "-aq", "--filter", "name=-noentry"]);
    assert_eq!(before, after, "a container was left behind");
}

#[tokio::test]
async fn compose_scales_to_three_answering_replicas_and_drop_removes_them_and_the_network() {
    let image = demo_image();
    let compose = Compose::new("compose", "demo-compose.yml").env("WHARF_IT_DEMO_IMAGE", image);
    compose.up(&[]);
    assert_eq!(compose.ps_ids("demo").len(), 1);
    compose.scale("demo", 3);
    let ids = compose.ps_ids("demo");
    assert_eq!(ids.len(), 3, "{ids:?}");
    let mut hostnames = Vec::new();
    for ip in compose.ips("demo") {
        let r = demo_answers((ip, 80).into(), "compose replica answers").await;
        hostnames.push(r.header("x-demo-hostname").unwrap().to_string());
    }
    hostnames.sort();
    hostnames.dedup();
    assert_eq!(hostnames.len(), 3, "{hostnames:?}");
    let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", &ids[0]]);
    assert!(labels.contains(r#""it.wharf-test.fixture":"demo-compose""#), "{labels}");

    let network = compose.default_network();
    drop(compose);
    for id in &ids {
        assert!(
            !docker_ok(&["container", "inspect", id]),
            "compose container {id} leaked"
        );
    }
    assert!(
        !docker_ok(&["network", "inspect", &network]),
        "network {network} leaked"
    );
}

#[tokio::test]
async fn http_errors_are_reported_not_hung() {
    let port = free_port();
    let err = get(([127, 0, 0, 1], port).into(), "x", "/").await.unwrap_err();
    assert!(err.contains("connect"), "{err}");
    let err = Client::new()
        .get(([127, 0, 0, 1], port).into(), "x", "/")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
}

#[tokio::test]
async fn poll_reports_time_and_value() {
    let mut n = 0;
    let (v, took) = poll("counter reaches 3", secs(5), || {
        n += 1;
        let n = n;
        async move { (n >= 3).then_some(n) }
    })
    .await;
    assert_eq!(v, 3);
    assert!(took >= millis(40), "{took:?}");
    let checks = stays("always true", millis(100), || async { Some(()) }).await;
    assert!(checks >= 2);
}

#[tokio::test]
#[should_panic(expected = "waiting for: something that never happens\nlast observation: still 42")]
async fn poll_panics_with_the_last_observation() {
    poll("something that never happens", millis(200), || async {
        Err::<(), _>("still 42")
    })
    .await;
}

#[test]
#[should_panic(expected = "stopped holding")]
fn stays_panics_when_the_condition_breaks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut n = 0;
        stays("n stays small", secs(5), || {
            n += 1;
            let n = n;
            async move { (n < 3).then_some(()) }
        })
        .await;
    });
}

#[tokio::test]
async fn wharf_spawn_fails_fast_with_the_log_when_wharf_exits() {
    binaries(); // build first: only the spawn is timed
    let started = std::time::Instant::now();
    let result = AssertUnwindSafe(Wharf::spawn(&["--no-such-flag-for-the-harness-test"], &[]))
        .catch_unwind()
        .await;
    let err = result.err().expect("spawn should panic when wharf exits");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("wharf exited before ready"), "{msg}");
    // The guard keeps the log of a panicking test; this panic was deliberate.
    let log = msg
        .split_once("log (")
        .and_then(|(_, rest)| rest.split_once("):"))
        .map(|(path, _)| path);
    let log = log.unwrap_or_else(|| panic!("no log path in: {msg}"));
    assert!(
        msg.contains("--no-such-flag-for-the-harness-test"),
        "log not included: {msg}"
    );
    std::fs::remove_file(log).unwrap();
    assert!(
        started.elapsed() < secs(20),
        "took {:?}: should fail early, not wait for the readiness deadline",
        started.elapsed()
    );
}

#[tokio::test]
async fn wharf_on_the_host_proxies_to_a_static_demo_backend_and_stops_on_sigterm() {
    let net = Network::create("static");
    let demo = Container::run("static", &["--network", &net.name, demo_image()]);
    let backend = demo.addr(&net, 80);
    demo_answers(backend, "demo answers directly").await;
    let pool = format!("web={backend}");
    let mut wharf = Wharf::spawn(&["--provider", "none", "--static", &pool], &[]).await;
    assert!(wharf.listen.ip().is_loopback() && wharf.admin.ip().is_loopback());

    let r = wharf.get("anything.test", "/via-wharf").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-demo-hostname"), Some(demo.hostname().as_str()), "{r:?}");
    let backends = wharf.backends("web").await;
    assert_eq!(backends.len(), 1, "{}", wharf.state().await);
    assert_eq!(backends[0]["address"], backend.to_string().as_str());
    assert!(wharf.backends("no-such-pool").await.is_empty());

    wharf.sigterm();
    let code = wharf.wait_exit(secs(10));
    assert_eq!(code, Some(0), "log:\n{}", wharf.log());
    assert!(!wharf.running());
}

#[test]
fn wharf_check_reports_a_bad_label_with_exit_code_1() {
    // A unique label prefix keeps other containers on the daemon out of the report.
    let prefix = unique("check").replace('-', "_");
    let net = Network::create("check");
    let bad = Container::run(
        "check",
        &[
            "--network",
            &net.name,
            "--label",
            &format!("{prefix}.enable=true"),
            "--label",
            &format!("{prefix}.port=eighty"),
            demo_image(),
        ],
    );
    let (code, out) = wharf_check(&["--label-prefix", &prefix, "--network", &net.name], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&bad.name) && out.contains("eighty"), "{out}");
}

#[test]
fn narrow_events_adds_a_network_filter_to_events_requests_only() {
    use support::sockproxy::{narrow_events, percent_decode};
    let events =
        "GET /v1.41/events?since=5&filters=%7B%22type%22%3A%5B%22container%22%5D%7D HTTP/1.1\r\nhost: d\r\n\r\n";
    let out = narrow_events(events, "net-1");
    let (line, rest) = out.split_once("\r\n").unwrap();
    assert_eq!(rest, "host: d\r\n\r\n");
    let query = line
        .strip_prefix("GET /v1.41/events?")
        .and_then(|l| l.strip_suffix(" HTTP/1.1"))
        .unwrap();
    let (since, filters) = query.split_once('&').unwrap();
    assert_eq!(since, "since=5");
    let filters: serde_json::Value =
        serde_json::from_str(&percent_decode(filters.strip_prefix("filters=").unwrap())).unwrap();
    assert_eq!(
        filters,
        serde_json::json!({"type": ["container"], "network": ["net-1"]})
    );
    let list = "GET /v1.41/containers/json?all=false HTTP/1.1\r\n\r\n";
    assert_eq!(narrow_events(list, "net-1"), list);
}

#[test]
fn socket_filter_allows_only_its_methods_on_its_endpoints_whatever_the_api_version() {
    let f = Filter::wharf_reads();
    for (method, target) in [
        ("GET", "/_ping"),
        ("HEAD", "/_ping"),
        ("GET", "/version"),
        ("GET", "/v1.41/containers/json?all=false&filters=%7B%7D"),
        ("GET", "/v1.41/containers/0123abcd/json"),
        ("GET", "/v1.53/events?since=5"),
    ] {
        assert_eq!(f.check(method, target), Ok(()), "{method} {target}");
    }
    for (method, target, why) in [
        ("POST", "/v1.41/containers/create", "method POST"),
        ("DELETE", "/v1.41/containers/0123abcd", "method DELETE"),
        ("POST", "/v1.41/containers/0123abcd/json", "method POST"),
        ("GET", "/v1.41/containers/0123abcd/archive?path=/", "endpoint"),
        ("GET", "/v1.41/containers/0123abcd/logs", "endpoint"),
        ("GET", "/v1.41/secrets", "endpoint"),
        ("GET", "/v1.41/containers/../json", "endpoint"),
        ("GET", "/v1.41/containers//json", "endpoint"),
        ("GET", "/vX/containers/json", "endpoint"),
        ("GET", "/v1.41/containers/json/extra", "endpoint"),
    ] {
        let err = f
            .check(method, target)
            .expect_err(&format!("{method} {target} must be refused"));
        assert!(err.contains(why), "{method} {target}: {err}");
    }
}

/// One request on a fresh connection to the Unix socket at `path`; the
/// answer's head.
async fn unix_call(path: &std::path::Path, method: &str, target: &str, body: &str) -> Head {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut buf = Vec::new();
    let head = tokio::time::timeout(secs(10), read_head(&mut s, &mut buf))
        .await
        .unwrap_or_else(|_| panic!("{method} {target}: no answer within 10 s"))
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
        .unwrap_or_else(|| panic!("{method} {target}: connection closed without an answer"));
    Head::parse(&head).unwrap()
}

#[tokio::test]
async fn filtering_socket_proxy_forwards_allowed_reads_refuses_the_rest_itself_and_records_every_call() {
    require_docker();
    let sock = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.sock", unique("filter")));
    let proxy = SocketProxy::filtering(&sock, Filter::wharf_reads());
    let ghost = unique("no-such-container");
    let calls = [
        ("GET", "/v1.41/_ping".to_string(), "", 200),
        ("HEAD", "/_ping".to_string(), "", 200),
        ("GET", "/v1.41/containers/json?limit=1".to_string(), "", 200),
        // Allowed, and answered by the daemon itself: it does not know the container.
        ("GET", format!("/v1.41/containers/{ghost}/json"), "", 404),
        // Refused by the proxy: the daemon would have answered 404 (no such container).
        ("POST", format!("/v1.41/containers/{ghost}/stop"), "", 403),
        ("DELETE", format!("/v1.41/containers/{ghost}"), "", 403),
        ("GET", format!("/v1.41/containers/{ghost}/archive?path=/"), "", 403),
        ("GET", "/v1.41/containers/json".to_string(), "{}", 403),
    ];
    for (method, target, body, status) in &calls {
        let head = unix_call(&sock, method, target, body).await;
        eprintln!("{method} {target}: {}", head.start);
        assert_eq!(head.status(), Ok(*status), "{method} {target}: {head:?}");
        let by_proxy = head.header("x-sockproxy") == Some("refused");
        assert_eq!(by_proxy, *status == 403, "{method} {target}: {head:?}");
    }
    let recorded = proxy.calls();
    let got: Vec<(String, String, bool)> = recorded
        .iter()
        .map(|c| (c.method.clone(), c.target.clone(), c.refused.is_some()))
        .collect();
    let want: Vec<(String, String, bool)> = calls
        .iter()
        .map(|(m, t, _, status)| (m.to_string(), t.clone(), *status == 403))
        .collect();
    assert_eq!(got, want, "recorded calls: {recorded:#?}");
    assert!(
        recorded.last().unwrap().refused.as_deref().unwrap().contains("bodies"),
        "{recorded:#?}"
    );
    assert_eq!(proxy.accepted(), calls.len());
}
