//! Backends that refuse connections: a container whose process listens a
//! moment after it starts (cold start without a health check, issue 10) and
//! a backend that refuses every connection (shown as such in `/api/state`
//! and `/metrics`).

mod support;

use std::time::Instant;

use support::*;

/// Start-to-listen delay of the demo in the cold-start test.
const LISTEN_DELAY: &str = "500ms";
/// Containers started one after the other, each alone in its pool.
const CYCLES: usize = 4;

/// A client sends steadily to a host from before its only container starts
/// until that container has answered for a while. Before wharf has seen the
/// container the answer is wharf's 404 `no-route`; after, every answer must
/// be the container's 200 — no 502 while its process is not listening yet.
#[tokio::test]
async fn a_container_that_listens_500ms_after_start_alone_in_its_pool_loses_no_request() {
    let net = Network::create("cold");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let (mut lost, mut routed_total, mut slowest) = (Vec::new(), 0usize, Duration::ZERO);
    for cycle in 0..CYCLES {
        let pool = unique("cold");
        let host = format!("{pool}.test");
        let load = Load::start(wharf.listen, &host, LoadOpts::gets(2, millis(10)));
        load.wait_more(5, secs(20), "requests before the container starts")
            .await;
        let c = demo(
            &net,
            "cold",
            &[&format!("wharf.pool={pool}"), &format!("wharf.host={host}")],
            &["-e", &format!("DEMO_LISTEN_DELAY={LISTEN_DELAY}")],
        );
        let ran = Instant::now();
        // When the route is known to exist: the answer to an `/api/state`
        // poll that lists the backend. A `no-route` 404 sent before then is
        // an answer from before the route; one sent after is a lost request.
        // (Ordering by send time alone misclassifies: two load workers race,
        // and a request sent a moment earlier can reach wharf a moment later.)
        poll("the backend listed in /api/state", secs(30), || async {
            let n = wharf.backends(&pool).await.len();
            (n > 0).then_some(()).ok_or(format!("{n} backends"))
        })
        .await;
        let route_seen = load.elapsed();
        poll("50 answers from the container", secs(30), || async {
            let p = load.progress();
            (p.ok >= 50)
                .then_some(())
                .ok_or(format!("{} ok of {}", p.ok, p.requests))
        })
        .await;
        let took = ran.elapsed();
        let report = load.stop().await;
        let (before, routed): (Vec<_>, Vec<_>) = report.outcomes.iter().partition(|o| {
            o.sent < route_seen && o.status == Some(404) && o.wharf_error.as_deref() == Some("no-route")
        });
        let mut routed = routed;
        routed.sort_by_key(|o| o.sent);
        let before = before.len();
        routed_total += routed.len();
        let first_wait = routed.iter().take(5).map(|o| o.latency()).max().unwrap_or_default();
        slowest = slowest.max(first_wait);
        println!(
            "cycle {cycle}: {before} answers before the route, {} after ({} not ok); \
             docker run → 50 ok in {took:?}; slowest of the first 5 routed: {first_wait:?}",
            routed.len(),
            routed.iter().filter(|o| !o.is_ok()).count(),
        );
        lost.extend(
            routed
                .iter()
                .filter(|o| !o.is_ok())
                .map(|o| format!("cycle {cycle}: {}", o.describe())),
        );
        drop(c);
    }
    println!(
        "{} of {routed_total} routed requests lost; slowest first answer {slowest:?}",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "requests lost during cold starts:\n{}",
        lost.join("\n")
    );
}

/// The `wharf_backend_state{state="refusing"}` value of the one backend.
async fn refusing_gauge(wharf: &Wharf) -> u64 {
    let r = wharf.admin_get("/metrics").await.expect("GET /metrics");
    r.body
        .lines()
        .find(|l| l.starts_with("wharf_backend_state{") && l.contains("state=\"refusing\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no refusing series in /metrics:\n{}", r.body))
}

/// A backend whose port refuses every connection (bound, not listening) is
/// `refusing` in `/api/state` and `/metrics`, not `ready`; once it listens
/// and a connect succeeds it is `ready` again.
#[tokio::test]
async fn a_backend_that_refuses_every_connection_is_shown_refusing_then_ready_once_it_listens() {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let addr = socket.local_addr().expect("address");
    let backend = format!("web={addr}");
    let wharf = Wharf::spawn(
        &["--provider", "none", "--static", &backend, "--connect-timeout", "200ms"],
        &[],
    )
    .await;
    let state = || async { wharf.backends("web").await[0].clone() };
    assert_eq!(state().await["state"], "ready", "nothing tried yet");
    for _ in 0..3 {
        let r = wharf.get("any.test", "/").await.expect("GET");
        assert_eq!(r.status, 502, "{}", r.body);
    }
    let b = state().await;
    println!("{b}");
    assert_eq!(b["state"], "refusing", "{b}");
    let reason = b["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("refusing connections for "), "{reason}");
    let since = b["refusing_since_unix_ms"].as_u64().expect("refusing_since_unix_ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(since <= now && now - since < 60_000, "since {since}, now {now}");
    assert_eq!(refusing_gauge(&wharf).await, 1);

    // The process listens at last: the next connect succeeds and ends the run.
    let listener = socket.listen(16).expect("listen");
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
            });
        }
    });
    let r = wharf.get("any.test", "/").await.expect("GET");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let b = state().await;
    assert_eq!(b["state"], "ready", "{b}");
    assert!(b["refusing_since_unix_ms"].is_null(), "{b}");
    assert_eq!(refusing_gauge(&wharf).await, 0);
    server.abort();
}
