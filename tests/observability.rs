//! Issue 11: what wharf shows of itself, against real Docker, real sockets
//! and a real browser — `/metrics` parsed as Prometheus text while a scenario
//! moves its series, the JSON access log followed by request id to the
//! backend, and the dashboard rendered by headless Chromium.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use prometheus_parse::{Scrape, Value};
use support::*;

/// `/metrics`, parsed; panics unless every sample line parsed.
async fn scrape(wharf: &Wharf) -> Scrape {
    let r = wharf.admin_get("/metrics").await.expect("GET /metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    let ct = r.header("content-type").unwrap_or_default().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content-type {ct}");
    let lines: Vec<std::io::Result<String>> = r.body.lines().map(|l| Ok(l.to_string())).collect();
    let s = Scrape::parse(lines.into_iter()).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{}", r.body));
    // The parser skips what it does not understand: count what it kept.
    let sample_lines = r.body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    let parsed: usize = s
        .samples
        .iter()
        .map(|x| match &x.value {
            Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(parsed, sample_lines, "some lines did not parse:\n{}", r.body);
    for (name, help) in &s.docs {
        assert!(!help.is_empty(), "{name} has no HELP");
    }
    s
}

/// The sum of a family's samples whose labels include `want`.
fn value(s: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && want.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_move_as_requests_retries_ejections_and_docker_events_happen() {
    let net = Network::create("metrics");
    let pool = unique("pool");
    let label = format!("wharf.pool={pool}");
    let a = named_demo(&net.name, &unique("a"), &[&label]);
    // Listens on 80 but is announced on 81: every connection is refused, so
    // requests it is picked for are retried elsewhere, and it gets ejected.
    let refusing = demo(&net.name, "refusing", &[&label, "wharf.port=81"], &[]);
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_demos_listening(&net.name, &[&a]).await;
    wait_state_at(
        wharf.admin,
        secs(30),
        "both backends listed",
        |s: &serde_json::Value| {
            let n = pool_backends(s, &pool).len();
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{n} backends"))
            }
        },
    )
    .await;
    let before = scrape(&wharf).await;

    let host = format!("{pool}.test");
    for _ in 0..20 {
        let r = wharf.get(&host, "/").await.expect("GET through wharf");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = wharf.get(&host, "/status/404").await.unwrap();
    assert_eq!(r.status, 404);
    let p = pool.as_str();
    let s = scrape(&wharf).await;
    let moved = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels) - value(&before, name, labels);
    assert_eq!(
        moved(
            "wharf_pool_requests_total",
            &[("pool", p), ("method", "GET"), ("class", "2xx")]
        ),
        20.0
    );
    assert_eq!(
        moved("wharf_pool_requests_total", &[("pool", p), ("class", "4xx")]),
        1.0
    );
    assert_eq!(moved("wharf_pool_request_duration_seconds_count", &[("pool", p)]), 21.0);
    assert_eq!(moved("wharf_pool_upstream_ttfb_seconds_count", &[("pool", p)]), 21.0);
    let retries = moved("wharf_pool_retries_total", &[("pool", p), ("cause", "not_sent")]);
    assert!(retries >= 1.0, "no retry recorded (refusing backend never picked?)");
    assert!(
        moved(
            "wharf_backend_ejections_total",
            &[("pool", p), ("container", &refusing.name)]
        ) >= 1.0,
        "the refusing backend was not ejected"
    );
    assert_eq!(
        value(
            &s,
            "wharf_backend_state",
            &[("container", &refusing.name), ("state", "ejected")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "wharf_backend_state", &[("container", &a.name), ("state", "ready")]),
        1.0
    );
    eprintln!("{retries} retries; the refusing backend is ejected");

    // A Docker event: the table swaps, and the event → swap histogram counts it.
    let swaps = value(&s, "wharf_table_swaps_total", &[]);
    let observed = value(&s, "wharf_event_to_swap_seconds_count", &[]);
    refusing.stop(1);
    let (after, took) = poll(
        "the stop is counted as a swap with its event → swap time",
        secs(20),
        || async {
            let s = scrape(&wharf).await;
            (value(&s, "wharf_event_to_swap_seconds_count", &[]) > observed).then_some(s)
        },
    )
    .await;
    eprintln!("event → swap observed after {took:?}");
    assert!(value(&after, "wharf_table_swaps_total", &[]) > swaps);
    assert!(value(&after, "wharf_docker_events_total", &[("action", "kill")]) >= 1.0);
    assert_eq!(value(&after, "wharf_discovery_connected", &[]), 1.0);
    assert_eq!(value(&after, "wharf_build_info", &[]), 1.0);
    // Gone backends leave: no series names the stopped container once it is out of the table.
    let (_, took) = poll("the stopped backend's series are gone", secs(20), || async {
        let r = wharf.admin_get("/metrics").await.ok()?;
        (!r.body.contains(&refusing.name)).then_some(())
    })
    .await;
    eprintln!("series of the removed backend gone after {took:?}");
}

#[tokio::test]
async fn access_log_lines_are_json_with_the_request_id_the_client_and_backend_saw() {
    let net = Network::create("access");
    let pool = unique("pool");
    let label = format!("wharf.pool={pool}");
    let host = format!("{pool}.test");
    // A host rule, so that another host has no route (wharf's own 404).
    let host_label = format!("wharf.host={host}");
    let a = named_demo(&net.name, &unique("a"), &[&label, &host_label]);
    let wharf = Wharf::spawn(&["--network", &net.name, "--access-log", "--log-format", "json"], &[]).await;
    wait_ready_backends(wharf.admin, &pool, &[&a], &net.name, secs(30), "a ready").await;

    // Generated: the client's response header is the id the backend received.
    let r = wharf.get(&host, "/hello?x=1").await.unwrap();
    assert_eq!(r.status, 200);
    let id = r
        .header("x-request-id")
        .expect("x-request-id on the response")
        .to_string();
    assert_eq!(id.len(), 20, "{id}");
    assert!(
        r.body.contains(&format!("X-Request-Id: {id}\n")),
        "backend saw another id:\n{}",
        r.body
    );
    // Kept when sane, replaced when not.
    let kept = request(
        wharf.listen,
        "GET",
        &host,
        "/kept",
        &[("x-request-id", "client-id-42")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(kept.header("x-request-id"), Some("client-id-42"));
    assert!(kept.body.contains("X-Request-Id: client-id-42\n"), "{}", kept.body);
    let long = "x".repeat(200);
    let replaced = request(wharf.listen, "GET", &host, "/", &[("x-request-id", &long)], b"")
        .await
        .unwrap();
    assert_ne!(replaced.header("x-request-id"), Some(long.as_str()));
    // wharf's own error carries its id and kind.
    let err = wharf.get("nowhere.invalid", "/").await.unwrap();
    assert_eq!(err.status, 404);
    let err_id = err.header("x-request-id").unwrap().to_string();
    assert!(err.body.contains(&err_id), "{}", err.body);

    let line_of = |id: &str| {
        let log = wharf.log();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "wharf::access" && v["fields"]["request_id"] == id)
    };
    let (line, _) = poll_sync("the access-log line of the request", secs(10), || line_of(&id));
    let f = &line["fields"];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["host"], host.as_str());
    assert_eq!(f["path"], "/hello");
    assert_eq!(f["status"], 200);
    assert_eq!(f["pool"], pool.as_str());
    assert_eq!(f["container"], a.name.as_str());
    assert_eq!(f["backend"], a.addr(&net.name, 80).to_string());
    assert_eq!(f["attempts"], 1);
    assert_eq!(f["proto"], "HTTP/1.1");
    assert!(
        f["ms"].as_f64().unwrap() >= f["upstream_ms"].as_f64().unwrap(),
        "{line}"
    );
    assert!(f["response_bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(f["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    let (line, _) = poll_sync("the access-log line of wharf's own error", secs(10), || {
        line_of(&err_id)
    });
    assert_eq!(line["fields"]["error"], "no-route");
    assert_eq!(line["fields"]["status"], 404);
    let (line, _) = poll_sync("the access-log line of the kept id", secs(10), || {
        line_of("client-id-42")
    });
    assert_eq!(line["fields"]["path"], "/kept");
}

/// Debian's chromium, installed if absent (as `.ci/run` does).
fn chromium() -> String {
    for bin in ["chromium", "chromium-browser"] {
        if Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin.to_string();
        }
    }
    eprintln!("installing chromium (Debian package)");
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "chromium is needed for the dashboard test and could not be installed"
    );
    "chromium".to_string()
}

/// Run headless Chromium on `url` at `size` with `extra` arguments; the
/// page's scripts get `budget_ms` of virtual time (its 1 s refreshes run).
fn headless(bin: &str, url: &str, size: &str, budget_ms: u32, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--window-size={size}"),
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn dashboard_renders_in_chromium_with_backends_and_excluded_containers() {
    let bin = chromium();
    let net = Network::create("dash");
    let pool = unique("shop");
    let label = format!("wharf.pool={pool}");
    let a = named_demo(&net.name, &unique("shop-a"), &[&label]);
    let b = named_demo(&net.name, &unique("shop-b"), &[&label]);
    let bad = demo(&net.name, "broken", &[&label, "wharf.port=http"], &[]);
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_ready_backends(wharf.admin, &pool, &[&a, &b], &net.name, secs(30), "a and b ready").await;
    let reason = wait_state_at(
        wharf.admin,
        secs(20),
        "the broken container skipped",
        |s: &serde_json::Value| skip_reason(s, &bad.name).ok_or_else(|| "not skipped yet".to_string()),
    )
    .await
    .0;
    let host = format!("{pool}.test");
    for _ in 0..30 {
        let _ = wharf.get(&host, "/").await;
    }
    let _ = wharf.get(&host, "/status/503").await;

    // Steady traffic while the page renders, so its rates and sparklines move.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, listen, host) = (stop.clone(), wharf.listen, host.clone());
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = get(listen, &host, "/").await;
                tokio::time::sleep(millis(5)).await;
            }
        }
    });
    let url = format!("http://{}/", wharf.admin);
    let dom = tokio::task::spawn_blocking({
        let (bin, url) = (bin.clone(), url.clone());
        move || headless(&bin, &url, "1280,800", 3000, &["--dump-dom"])
    })
    .await
    .unwrap();
    for name in [&a.name, &b.name, &bad.name] {
        assert!(dom.contains(name.as_str()), "{name} not on the dashboard:\n{dom}");
    }
    assert!(
        dom.contains(&format!("data-pool=\"{pool}\"")),
        "no card for {pool}:\n{dom}"
    );
    // The reason as the DOM holds it (text, quotes escaped by the serialiser only in attributes).
    let reason_text = reason.split('"').next().unwrap_or(&reason).to_string();
    assert!(dom.contains(&reason_text), "skip reason {reason:?} not shown:\n{dom}");
    assert!(dom.contains("2/2 ready"), "ready count not shown:\n{dom}");

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let mut shots = HashMap::new();
    for (what, size) in [("desktop", "1280,800"), ("phone", "390,844")] {
        let path = dir.join(format!("dashboard-{what}.png"));
        let _ = std::fs::remove_file(&path);
        let arg = format!("--screenshot={}", path.display());
        let (bin, url) = (bin.clone(), url.clone());
        tokio::task::spawn_blocking(move || headless(&bin, &url, size, 3000, &[&arg]))
            .await
            .unwrap();
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("no screenshot {}: {e}", path.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{what}: not a real PNG"
        );
        eprintln!("{what} screenshot: {} ({} bytes)", path.display(), png.len());
        shots.insert(what, path);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    // WHARF_DASHBOARD_SCREENSHOT=1: refresh the README's picture.
    if std::env::var_os("WHARF_DASHBOARD_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::copy(&shots["desktop"], docs.join("dashboard.png")).unwrap();
        std::fs::copy(&shots["phone"], docs.join("dashboard-phone.png")).unwrap();
    }
}
