//! Health end to end on the real daemon: active checks take a failing backend
//! out of rotation and bring it back, the health state survives routing swaps,
//! a new backend (active check or Docker HEALTHCHECK) takes no request before
//! it passes, a backend's keep-alive timeout never fails a request, and a
//! backend that breaks off a response leaves the client with a broken response.
//!
//! Every test drives real traffic through a real wharf on the host to real
//! demo containers (the keep-alive test: to a backend on the host that makes
//! the race it is about certain), and prints its counts and the times it
//! measured.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use support::*;
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------------------
// Active checks: out after `fall` failures, back after `rise` passes
// ---------------------------------------------------------------------------

const CHECK_LABELS: [&str; 5] = [
    "wharf.pool=web",
    "wharf.health.path=/health",
    "wharf.health.interval=500ms",
    "wharf.health.fall=2",
    "wharf.health.rise=2",
];
/// interval × fall with the labels above.
const LEAVE_BOUND: Duration = Duration::from_millis(500 * 2);
/// interval × rise with the labels above.
const RISE_BOUND: Duration = Duration::from_millis(500 * 2);
/// Allowance on top of those bounds for a busy 2-core machine (probe time,
/// scheduling, the 20 ms poll of /api/state, other tests' containers). The
/// printed times are the measurement; the bound only catches "much later".
const SLACK: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_health_check_takes_a_backend_out_within_interval_times_fall_and_rise_brings_it_back() {
    let net = Network::create("hflip");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &CHECK_LABELS, &[]);
    let b = demo(&net, "b", &CHECK_LABELS, &[]);
    wait_demos_ready(&wharf, "web", &net, &[&a, &b]).await;
    let (a_host, b_host) = (a.hostname(), b.hostname());
    let b_addr = b.addr(&net.name, 80);

    let load = Load::start(wharf.listen, "any.test", LoadOpts::gets(2, millis(10)));
    load.wait_more(100, secs(30), "100 requests before the flip").await;
    assert!(
        load.outcomes().iter().any(|o| o.answered_by(&b_host)),
        "b takes traffic before its health fails"
    );

    // Out: /health answers 500 from now on.
    demo_call(b_addr, "/health/fail").await;
    let flipped = load.elapsed();
    let (reason, leave) = wharf
        .wait_backend_state("web", &b.name, "unhealthy", LEAVE_BOUND + SLACK + secs(3))
        .await;
    let out_at = load.elapsed();
    eprintln!(
        "LEAVE: b unhealthy {} ms after /health/fail (bound interval×fall = {} ms); reason: {reason}",
        leave.as_millis(),
        LEAVE_BOUND.as_millis()
    );
    assert!(reason.contains("500"), "reason names the failing answer: {reason}");
    load.wait_more(200, secs(30), "200 requests while b is out").await;
    let outcomes = load.outcomes();
    let last_b = outcomes
        .iter()
        .filter(|o| o.answered_by(&b_host))
        .map(|o| o.sent)
        .max()
        .expect("b answered before");
    let last_b_ms = last_b.saturating_sub(flipped).as_millis();
    eprintln!("LEAVE: last request sent to b {last_b_ms} ms after the flip");
    let late: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.sent > out_at && o.answered_by(&b_host))
        .collect();
    assert!(
        late.is_empty(),
        "{} requests sent after b was reported unhealthy still reached b",
        late.len()
    );
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent > out_at).collect();
    assert!(
        after.iter().all(|o| o.answered_by(&a_host)),
        "every request after b left went to a"
    );
    assert!(
        leave <= LEAVE_BOUND + SLACK,
        "b left rotation {} ms after its health failed; interval×fall is {} ms (+{} ms slack)",
        leave.as_millis(),
        LEAVE_BOUND.as_millis(),
        SLACK.as_millis()
    );

    // Back: /health answers 200 again; `rise` passes in a row bring it back.
    let before_back = load.progress().requests;
    demo_call(b_addr, "/health/ok").await;
    let unflipped = load.elapsed();
    let (_, back) = wharf
        .wait_backend_state("web", &b.name, "ready", RISE_BOUND + SLACK + secs(3))
        .await;
    let first_again = load
        .wait_answer_from(
            &b_host,
            before_back,
            secs(10),
            "a request reaches b again through wharf",
        )
        .await
        .done
        .saturating_sub(unflipped);
    eprintln!(
        "RISE: b ready {} ms after /health/ok (bound interval×rise = {} ms); first request answered by b through wharf \
         {} ms after /health/ok",
        back.as_millis(),
        RISE_BOUND.as_millis(),
        first_again.as_millis()
    );
    assert!(
        back <= RISE_BOUND + SLACK,
        "b came back {} ms after its health passed; interval×rise is {} ms (+{} ms slack)",
        back.as_millis(),
        RISE_BOUND.as_millis(),
        SLACK.as_millis()
    );

    let report = load.stop().await;
    report.print_with_retries("health flip out and back", wharf.metric("wharf_retries_total").await);
    report.assert_no_failures("health flip out and back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_down_by_its_health_check_stays_down_through_fifty_unrelated_container_starts_and_stops() {
    let net = Network::create("hswap");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &CHECK_LABELS, &[]);
    let b = demo(&net, "b", &CHECK_LABELS, &[]);
    wait_demos_ready(&wharf, "web", &net, &[&a, &b]).await;
    let b_host = b.hostname();
    demo_call(b.addr(&net.name, 80), "/health/fail").await;
    let (reason, took) = wharf.wait_backend_state("web", &b.name, "unhealthy", secs(10)).await;
    eprintln!("b unhealthy {} ms after /health/fail: {reason}", took.as_millis());

    let load = Load::start(wharf.listen, "any.test", LoadOpts::gets(2, millis(10)));
    let syncs_before =
        wharf.metric("wharf_discovery_syncs_total").await + wharf.metric("wharf_discovery_lookups_total").await;

    // 25 labelled containers of another pool (another host) on the same
    // network, each started and removed (50 starts/stops), five at a time.
    let churn_net = net.name.clone();
    let churn = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..5 {
                let net = churn_net.as_str();
                s.spawn(move || {
                    for i in 0..5 {
                        // Its own host, so it never competes with pool web for a route.
                        let c = demo(
                            net,
                            &format!("churn{t}{i}"),
                            &["wharf.pool=other", "wharf.host=churn.test"],
                            &[],
                        );
                        drop(c); // docker rm -f -v
                    }
                });
            }
        });
        started.elapsed()
    });

    // While the churn runs: on every look b is still down for its failing
    // check (not "no passing probe yet", which a reset would show), a is
    // ready, the pool is not in panic.
    // A violation is recorded, not panicked on, so the churn can finish and
    // clean up before the test fails.
    let mut checks = 0u32;
    let mut other_seen: BTreeSet<String> = BTreeSet::new();
    let mut violation: Option<String> = None;
    let started = Instant::now();
    while !churn.is_finished() {
        let s = wharf.state().await;
        checks += 1;
        let at = started.elapsed().as_millis();
        let bs = backend_state(&s, "web", &b.name);
        let as_ = backend_state(&s, "web", &a.name);
        let panic = find_pool(&s, "web").map(|p| p["panic"].clone());
        let ok = matches!(&bs, Some((st, reason)) if st == "unhealthy" && reason.contains("500"))
            && matches!(&as_, Some((st, _)) if st == "ready")
            && panic == Some(Value::Bool(false));
        if !ok && violation.is_none() {
            violation = Some(format!(
                "check {checks} at {at} ms into the churn: b {bs:?}, a {as_:?}, pool panic {panic:?}; \
                 b should stay unhealthy for its failing check, a ready"
            ));
        }
        if let Some(p) = find_pool(&s, "other") {
            for be in p["backends"].as_array().into_iter().flatten() {
                other_seen.insert(be["container"].as_str().unwrap_or("").to_string());
            }
        }
        tokio::time::sleep(millis(20)).await;
    }
    let churn_took = churn.await.expect("churn thread panicked");
    // Re-lists and look-ups (a start is looked up, not re-listed).
    let syncs = wharf.metric("wharf_discovery_syncs_total").await + wharf.metric("wharf_discovery_lookups_total").await
        - syncs_before;
    eprintln!(
        "churn: 25 containers started and removed in {} ms; {checks} state checks, b unhealthy and a ready in all; \
         {} of the 25 seen in pool other; {syncs} re-lists and look-ups by wharf meanwhile",
        churn_took.as_millis(),
        other_seen.len()
    );
    assert!(
        !other_seen.is_empty() && syncs >= 10,
        "the churn should have changed the routing table (seen {other_seen:?}, {syncs} re-lists)"
    );
    assert!(checks >= 10, "only {checks} checks during the churn");
    if let Some(v) = violation {
        panic!("{v}");
    }

    let report = load.stop().await;
    report.print_with_retries("traffic during the churn", wharf.metric("wharf_retries_total").await);
    let to_b = report.outcomes.iter().filter(|o| o.answered_by(&b_host)).count();
    assert_eq!(to_b, 0, "requests reached b while it was down");
    report.assert_no_failures("traffic during the churn");
    assert!(
        report.requests >= 50,
        "only {} requests during the churn",
        report.requests
    );
}

// ---------------------------------------------------------------------------
// A new backend takes no request before it passes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_backend_with_a_health_path_takes_no_request_before_its_first_passing_probe() {
    // A 30 s interval: only the fast probing of a backend that never passed
    // can bring it in quickly; the interval would take up to 30 s.
    let labels = [
        "wharf.pool=web",
        "wharf.health.path=/health",
        "wharf.health.interval=30s",
    ];
    let net = Network::create("hfirst");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &labels, &[]);
    wharf.wait_backend_state("web", &a.name, "ready", secs(20)).await;

    let load = Load::start(wharf.listen, "any.test", LoadOpts::gets(2, millis(10)));
    load.wait_more(50, secs(30), "50 requests to a alone").await;

    let b = demo(&net, "b", &labels, &["-e", "DEMO_HEALTH_FAIL=1"]);
    let b_host = b.hostname();
    let b_addr = b.addr(&net.name, 80);
    let (reason, _) = poll("b discovered and failing its probes", secs(20), || async {
        let s = wharf.state().await;
        match backend_state(&s, "web", &b.name) {
            Some((st, reason)) if st == "unhealthy" && reason.contains("500") => Ok(reason),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("b listed: unhealthy ({reason})");
    stays("b stays out of rotation while it fails", secs(2), || async {
        let s = wharf.state().await;
        match backend_state(&s, "web", &b.name) {
            Some((st, _)) if st == "unhealthy" => {}
            other => return Err(format!("b: {other:?}")),
        }
        match load.outcomes().iter().find(|o| o.answered_by(&b_host)) {
            Some(o) => Err(format!("a request reached b: {}", o.describe())),
            None => Ok(()),
        }
    })
    .await;
    let b_got = demo_requests(b_addr).await;
    let before = load.progress().requests;
    eprintln!("while b failed: {before} requests through wharf, b itself counted {b_got}");
    assert_eq!(b_got, 0, "b received requests before passing a probe");

    demo_call(b_addr, "/health/ok").await;
    let flipped = load.elapsed();
    let join = load
        .wait_answer_from(&b_host, before, secs(10), "first request answered by b through wharf")
        .await
        .done
        .saturating_sub(flipped);
    let (_, ready) = wharf.wait_backend_state("web", &b.name, "ready", secs(10)).await;
    eprintln!(
        "JOIN: first request answered by b {} ms after /health/ok (target ~250 ms; probes every 100 ms until the first pass); \
         state ready seen after {} ms",
        join.as_millis(),
        ready.as_millis()
    );

    let report = load.stop().await;
    report.print_with_retries("new backend joining", wharf.metric("wharf_retries_total").await);
    report.assert_no_failures("new backend joining");
    assert!(
        join <= millis(3000),
        "b joined {} ms after its health passed; probing every 100 ms until the first pass should take ~250 ms",
        join.as_millis()
    );
}

/// A demo image whose Docker HEALTHCHECK (exec form: the image has no shell,
/// so `docker run --health-cmd`, which is `CMD-SHELL`, cannot work) probes
/// `/health` every 500 ms. Removed on drop.
struct HealthImage {
    tag: String,
}

impl HealthImage {
    fn build() -> HealthImage {
        let tag = format!("{}:test", unique("hcimage"));
        let dockerfile = format!(
            "FROM {}\nHEALTHCHECK --interval=500ms --timeout=2s --retries=30 \
             CMD [\"/wharf-demo\", \"probe\", \"http://127.0.0.1:80/health\"]\n",
            demo_image()
        );
        let label = format!("it.wharf-test.pid={}", std::process::id());
        let mut child = std::process::Command::new("docker")
            .args(["build", "-q", "--label", &label, "-t", &tag, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run docker build");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(dockerfile.as_bytes()).expect("write Dockerfile");
        }
        let out = child.wait_with_output().expect("docker build");
        let image = HealthImage { tag };
        assert!(
            out.status.success(),
            "docker build of {} failed: {}",
            image.tag,
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }
}

impl Drop for HealthImage {
    fn drop(&mut self) {
        if let Err(e) = docker_try(&["rmi", "-f", &self.tag]) {
            eprintln!("warning: cleanup: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_with_a_docker_healthcheck_takes_traffic_only_once_docker_reports_it_healthy() {
    let image = HealthImage::build();
    let net = Network::create("hcheck");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &["wharf.pool=web"], &[]);
    wait_demos_ready(&wharf, "web", &net, &[&a]).await;

    let load = Load::start(wharf.listen, "any.test", LoadOpts::gets(2, millis(10)));
    load.wait_more(50, secs(30), "50 requests to a alone").await;

    // b's HEALTHCHECK needs 3 s to pass: /health fails until the test flips
    // it 3 s after the start (the scenario's premise, not a synchronisation).
    let b = demo_from(
        &image.tag,
        &net,
        "b",
        &["wharf.pool=web"],
        &["-e", "DEMO_HEALTH_FAIL=1"],
    );
    let b_started = tokio::time::Instant::now();
    let b_host = b.hostname();
    let b_addr = b.addr(&net.name, 80);
    let ((state, reason), _) = poll("b listed in pool web", secs(20), || async {
        backend_state(&wharf.state().await, "web", &b.name).ok_or("not listed")
    })
    .await;
    eprintln!("b listed while Docker says {:?}: {state} ({reason})", b.health());
    assert!(
        state == "unhealthy" && reason.contains("starting"),
        "b listed as {state} ({reason}) while its HEALTHCHECK is starting"
    );
    tokio::time::sleep_until(b_started + secs(3)).await;
    let (status, _) = health_passed_ns(&b.id);
    assert_eq!(status, "starting", "b's HEALTHCHECK before its 3 s are up");
    assert!(
        !load.outcomes().iter().any(|o| o.answered_by(&b_host)),
        "a request reached b before Docker reported it healthy"
    );
    let b_got = demo_requests(b_addr).await;
    let before = load.progress().requests;
    eprintln!("first 3 s of b: {before} requests through wharf, b itself counted {b_got}");
    assert_eq!(b_got, 0, "b received requests while its HEALTHCHECK was starting");

    demo_call(b_addr, "/health/ok").await;
    let flipped = load.elapsed();
    let flipped_wall = unix_ns();
    let ((healthy_at, passed_wall), _) = poll("docker inspect shows b healthy", secs(15), || async {
        let id = b.id.clone();
        let (status, passed) = tokio::task::spawn_blocking(move || health_passed_ns(&id))
            .await
            .unwrap();
        (status == "healthy")
            .then(|| (load.elapsed(), passed))
            .ok_or(format!("health {status}"))
    })
    .await;
    let passed_wall = passed_wall.expect("the passing probe is in Docker's health log");
    let first = load
        .wait_answer_from(&b_host, before, secs(10), "first request answered by b through wharf")
        .await;
    let report = load.stop().await;

    let since_probe_ms = (report.unix_ns_at(first.done) - passed_wall) / 1_000_000;
    let since_inspect_ms = (first.done.as_nanos() as i128 - healthy_at.as_nanos() as i128) / 1_000_000;
    eprintln!(
        "HEALTHCHECK: Docker's passing probe ended {} ms after /health/ok; docker inspect showed healthy after {} ms; \
         first response from b through wharf {since_probe_ms} ms after the passing probe ended, \
         {since_inspect_ms} ms after docker inspect showed healthy (target < 500 ms)",
        (passed_wall - flipped_wall) / 1_000_000,
        healthy_at.saturating_sub(flipped).as_millis(),
    );
    let early: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| o.answered_by(&b_host) && report.unix_ns_at(o.done) < passed_wall)
        .collect();
    assert!(
        early.is_empty(),
        "{} requests answered by b before Docker's first passing probe ended",
        early.len()
    );
    report.print_with_retries("Docker HEALTHCHECK join", wharf.metric("wharf_retries_total").await);
    report.assert_no_failures("Docker HEALTHCHECK join");
    assert!(
        since_probe_ms <= 3000,
        "b took its first request {since_probe_ms} ms after Docker reported it healthy (target 500 ms)"
    );
}

// ---------------------------------------------------------------------------
// Keep-alive: a backend that closes connections idle for 1 s
// ---------------------------------------------------------------------------

/// The backend's keep-alive timeout: the shortest one common servers use,
/// just above wharf's upstream idle cap (`UPSTREAM_IDLE_MAX`, 900 ms).
const BACKEND_KEEPALIVE: Duration = Duration::from_secs(1);

/// What a [`RacingBackend`] saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    answered: AtomicUsize,
    /// Requests that arrived on a connection idle for the keep-alive timeout or more.
    cut: AtomicUsize,
}

/// A backend on the host whose keep-alive timeout always wins the race with
/// a proxy that reuses the connection.
///
/// A real backend closes a connection once it has been idle for its
/// timeout; a proxy that picks the connection just then sends its request
/// into the close, and the request is lost (with no other backend, the
/// client gets a 502). With real sockets that takes a request leaving
/// within a few ms of the timeout: requests spaced about a second apart hit
/// it once or twice a minute, at random. This backend makes it certain: a request that arrives on a connection idle for
/// `keepalive` or more is not answered, the connection is closed, as if
/// the close and the request had crossed on the wire. A proxy is safe only
/// if it never reuses a connection idle that long.
struct RacingBackend {
    addr: SocketAddr,
    seen: Arc<Seen>,
    accept: tokio::task::JoinHandle<()>,
}

impl RacingBackend {
    async fn start(keepalive: Duration) -> RacingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Seen::default());
        let counts = Arc::clone(&seen);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counts.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(RacingBackend::serve(stream, keepalive, Arc::clone(&counts)));
            }
        });
        RacingBackend { addr, seen, accept }
    }

    async fn serve(mut stream: tokio::net::TcpStream, keepalive: Duration, seen: Arc<Seen>) {
        let mut buf = Vec::new();
        let mut idle_since: Option<Instant> = None;
        while let Ok(Some(_head)) = read_head(&mut stream, &mut buf).await {
            if idle_since.is_some_and(|t| t.elapsed() >= keepalive) {
                seen.cut.fetch_add(1, Ordering::Relaxed);
                return; // closed unanswered
            }
            let n = seen.answered.fetch_add(1, Ordering::Relaxed) + 1;
            let body = format!("answer {n}\n");
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            idle_since = Some(Instant::now());
        }
    }

    fn count(&self, what: fn(&Seen) -> &AtomicUsize) -> usize {
        what(&self.seen).load(Ordering::Relaxed)
    }
}

impl Drop for RacingBackend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_with_a_one_second_keepalive_timeout_fails_no_request_even_when_its_close_races_the_reuse() {
    let backend = RacingBackend::start(BACKEND_KEEPALIVE).await;
    let pool = format!("web={}", backend.addr);
    let wharf = Wharf::spawn(&["--provider", "none", "--static", &pool], &[]).await;

    // One keep-alive client; after each answer it waits a gap (the pacing is
    // the scenario, not a synchronisation): 300 ms (wharf reuses its
    // upstream connection), 750 ms (below wharf's 900 ms cap, with 250 ms
    // to spare for scheduling: the backend's clock also counts the legs
    // between its write and wharf's pool, and wharf's reuse and its read;
    // at 850 ms a 150 ms stall on a busy machine was a false cut), 950 and
    // 1000 ms (between the cap and the backend's timeout), 1100 and 1500 ms
    // (past the timeout: a reused connection is cut). Without the cap every
    // request after a gap of 1 s or more fails.
    const GAPS_MS: [u64; 12] = [300, 1100, 750, 1500, 300, 1000, 950, 1100, 300, 1500, 750, 1000];
    let client = Client::new();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut requests = 0;
    for gap in std::iter::once(0).chain(GAPS_MS) {
        tokio::time::sleep(millis(gap)).await;
        requests += 1;
        match client.get(wharf.listen, "ka.test", "/").await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!(
                "request {requests}, after a {gap} ms gap: {} {:?} {}",
                r.status,
                r.header("x-wharf-error"),
                r.body.trim()
            )),
            Err(e) => failures.push(format!("request {requests}, after a {gap} ms gap: {e}")),
        }
    }
    let retries = wharf.metric("wharf_retries_total").await;
    let (connections, answered, cut) = (
        backend.count(|s| &s.connections),
        backend.count(|s| &s.answered),
        backend.count(|s| &s.cut),
    );
    eprintln!(
        "keep-alive 1 s backend: {requests} requests over {} ms, {} failed, {retries} retries; the backend saw \
         {connections} connections, answered {answered}, cut {cut} requests on connections idle for 1 s or more",
        started.elapsed().as_millis(),
        failures.len()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: wharf reused upstream connections idle for the backend's keep-alive timeout",
        failures.len()
    );
    assert_eq!(
        cut, 0,
        "wharf sent requests on connections idle for the backend's keep-alive timeout"
    );
    // Not vacuous: wharf does keep upstream connections alive between requests.
    assert!(
        connections < requests,
        "{connections} upstream connections for {requests} requests: wharf never reused one"
    );
}

// ---------------------------------------------------------------------------
// A backend that breaks off a response
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_breaking_off_a_response_leaves_the_client_with_a_broken_response_never_a_clean_short_one() {
    let net = Network::create("habort");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &["wharf.pool=web"], &[]);
    wait_demos_ready(&wharf, "web", &net, &[&a]).await;
    let a_addr = a.addr(&net.name, 80);
    let backend_before = demo_requests(a_addr).await;
    let mut sent = 0u64;

    // Controls: whole bodies end cleanly, so the reader can tell the two apart.
    for (path, framing) in [
        ("/bytes?n=100000", "content-length 100000"),
        ("/chunked?n=100000", "chunked"),
    ] {
        let end = raw_get(wharf.listen, "abort.test", path).await.expect("raw GET");
        sent += 1;
        eprintln!("raw HTTP/1.1 {path}: {end:?}");
        assert_eq!(
            end,
            RawEnd::Complete {
                status: 200,
                framing: framing.into(),
                body: 100_000
            },
            "{path}"
        );
    }

    let mut broken = 0;
    for round in 0..3 {
        for path in ["/abort?n=100000", "/abort?n=100000&chunked=1"] {
            // Raw HTTP/1.1: the exact framing and how the connection ended.
            let end = raw_get(wharf.listen, "abort.test", path).await.expect("raw GET");
            sent += 1;
            if round == 0 {
                eprintln!("raw HTTP/1.1 {path}: {end:?}");
            }
            match &end {
                RawEnd::Broken { status: 200, body, .. } if *body <= 100_000 => broken += 1,
                other => panic!("{path}: the client must see a broken response, got {other:?}"),
            }

            // hyper HTTP/1.1 client: reading the body is an error.
            let r = get(wharf.listen, "abort.test", path).await;
            sent += 1;
            if round == 0 {
                eprintln!(
                    "hyper HTTP/1.1 {path}: {:?}",
                    r.as_ref().map(|r| (r.status, r.body.len()))
                );
            }
            match r {
                Err(e) if e.contains("reading body") => broken += 1,
                other => panic!("{path} (hyper http1): body must fail, got {other:?}"),
            }

            // h2c client: the stream is reset, not ended.
            let r = Client::http2().get(wharf.listen, "abort.test", path).await;
            sent += 1;
            if round == 0 {
                eprintln!("hyper h2c {path}: {:?}", r.as_ref().map(|r| (r.status, r.body.len())));
            }
            match r {
                Err(e) if e.contains("reading body") => broken += 1,
                other => panic!("{path} (h2c): body must fail, got {other:?}"),
            }
        }
    }

    // wharf still serves, and the backend saw each request exactly once (a
    // request whose response headers arrived is never retried).
    let r = wharf.get("abort.test", "/").await.expect("request after the aborts");
    assert_eq!(r.status, 200, "{}", r.body);
    sent += 1;
    let backend_got = demo_requests(a_addr).await - backend_before;
    let retries = wharf.metric("wharf_retries_total").await;
    eprintln!(
        "aborted responses: {sent} requests sent ({broken} aborted ones, all seen as broken by the client), \
         backend counted {backend_got}, {retries} retries"
    );
    assert_eq!(broken, 18);
    assert_eq!(backend_got, sent, "the backend got each request exactly once");
    assert_eq!(retries, 0, "nothing to retry");
}
