//! Shutdown end to end: wharf itself SIGTERMed with requests in flight, and
//! a backend that ignores SIGTERM drained by `docker stop` on its kill event.
//!
//! Real wharf on the host, real demo containers, real traffic; every test
//! prints its counts and the times it measured.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `docker run` a demo container on `net` with `wharf.*` labels and extra
/// `docker run` options (`-e …`).
fn demo(net: &Network, tag: &str, labels: &[&str], opts: &[&str]) -> Container {
    let mut args = vec!["--network", net.name.as_str()];
    for l in labels {
        args.extend(["--label", l]);
    }
    args.extend_from_slice(opts);
    args.push(demo_image());
    Container::run(tag, &args)
}

/// Waits until each demo container answers on its own address: `docker run -d`
/// returns before the process listens, and wharf routes to a running
/// container without a health check at once.
async fn wait_listening(net: &Network, containers: &[&Container]) {
    for c in containers {
        let addr = c.addr(&net.name, 80);
        poll(&format!("{} listens on {addr}", c.name), secs(20), || async {
            match get(addr, "demo", "/_demo/stats").await {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("{} {}", r.status, r.body)),
                Err(e) => Err(e),
            }
        })
        .await;
    }
}

/// A backend of `pool` in `/api/state`, by container name.
fn find_backend(state: &Value, pool: &str, container: &str) -> Option<Value> {
    state["pools"].as_array()?.iter().find(|p| p["name"] == pool)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["container"] == container)
        .cloned()
}

/// Polls `/api/state` until the backend is in `want`; returns its reason and the time it took.
async fn wait_state(wharf: &Wharf, pool: &str, c: &Container, want: &str, deadline: Duration) -> (String, Duration) {
    let what = format!("{} in pool {pool} is {want}", c.name);
    poll(&what, deadline, || async {
        let s = wharf.state().await;
        match find_backend(&s, pool, &c.name) {
            Some(b) if b["state"] == want => Ok(b["reason"].as_str().unwrap_or("").to_string()),
            Some(b) => Err(format!("state {} ({})", b["state"], b["reason"])),
            None => Err(format!("not in pool {pool}: {}", s["pools"])),
        }
    })
    .await
}

/// A counter without labels from wharf's `/metrics`.
async fn metric(wharf: &Wharf, name: &str) -> u64 {
    let r = wharf.admin_get("/metrics").await.expect("GET /metrics");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{}", r.body))
}

/// The demo's own count of the requests it received, asked directly.
async fn demo_requests(addr: SocketAddr) -> u64 {
    let r = get(addr, "demo", "/_demo/stats").await.expect("GET /_demo/stats");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["requests"].as_u64().expect("requests in /_demo/stats")
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos()
}

/// One request of a [`Traffic`].
#[derive(Debug, Clone)]
struct Hit {
    sent: Instant,
    /// `x-demo-hostname` of the backend that answered.
    backend: Option<String>,
    /// The status, or the client error.
    result: Result<u16, String>,
}

/// Steady traffic through wharf: `workers` keep-alive clients, each sending
/// `GET path` one request at a time, at most one per `every`.
struct Traffic {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<Hit>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: SocketAddr, host: &str, path: &str, workers: usize, every: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, hits) = (Arc::clone(&stop), Arc::clone(&hits));
                let (host, path) = (host.to_string(), path.to_string());
                tokio::spawn(async move {
                    let client = Client::new();
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let sent = Instant::now();
                        let r = client.get(addr, &host, &path).await;
                        let hit = Hit {
                            sent,
                            backend: r
                                .as_ref()
                                .ok()
                                .and_then(|r| r.header("x-demo-hostname"))
                                .map(str::to_string),
                            result: r.map(|r| r.status),
                        };
                        hits.lock().unwrap().push(hit);
                    }
                })
            })
            .collect();
        Traffic { stop, hits, tasks }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// Waits until `n` more requests have completed than now.
    async fn wait_more(&self, n: usize, what: &str) {
        let target = self.count() + n;
        poll(what, secs(30), || async {
            let c = self.count();
            (c >= target).then_some(()).ok_or(format!("{c} of {target} requests"))
        })
        .await;
    }

    /// Stops the workers and returns every request made.
    async fn stop(mut self) -> Vec<Hit> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.await.expect("traffic worker panicked");
        }
        self.hits()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Prints the counts of a traffic run and returns the failed requests.
fn report(what: &str, hits: &[Hit], retries: u64) -> Vec<Hit> {
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for h in hits {
        *per_backend
            .entry(h.backend.clone().unwrap_or_else(|| "-".into()))
            .or_default() += 1;
    }
    let failed: Vec<Hit> = hits.iter().filter(|h| h.result != Ok(200)).cloned().collect();
    eprintln!(
        "{what}: {} requests, {} failed, {retries} retries (wharf_retries_total); per backend {per_backend:?}",
        hits.len(),
        failed.len()
    );
    for h in failed.iter().take(5) {
        eprintln!("  failed: {:?}", h.result);
    }
    failed
}

// ---------------------------------------------------------------------------
// wharf SIGTERMed with requests in flight
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_requests_in_flight_turns_readyz_503_refuses_new_connections_and_exits_0() {
    let net = Network::create("term");
    let mut wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &["wharf.pool=web"], &[]);
    wait_state(&wharf, "web", &a, "ready", secs(20)).await;
    wait_listening(&net, &[&a]).await;
    let listen = wharf.listen;

    // An idle keep-alive connection from a client must not hold up the exit.
    let idle_client = Client::new();
    let r = idle_client
        .get(listen, "term.test", "/")
        .await
        .expect("warm-up request");
    assert_eq!(r.status, 200, "{}", r.body);

    let started = Instant::now();
    let inflight: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                let r = get(listen, "term.test", "/slow?ms=1500").await;
                (r, Instant::now())
            })
        })
        .collect();
    poll("5 requests in flight in wharf", secs(10), || async {
        let s = wharf.state().await;
        let n = find_backend(&s, "web", &a.name)
            .and_then(|b| b["in_flight"].as_u64())
            .unwrap_or(0);
        (n == 5).then_some(()).ok_or(format!("{n} in flight"))
    })
    .await;

    let signalled = Instant::now();
    eprintln!(
        "SIGTERM {} ms after the 5 slow requests were sent",
        signalled.duration_since(started).as_millis()
    );
    wharf.sigterm();
    let (_, readyz_503) = poll("/readyz answers 503 after SIGTERM", secs(5), || async {
        match wharf.admin_get("/readyz").await {
            Ok(r) if r.status == 503 => Ok(()),
            Ok(r) => Err(format!("{} {}", r.status, r.body.trim())),
            Err(e) => Err(e),
        }
    })
    .await;
    let (refused_at, _) = poll("new connections to the listener refused", secs(5), || async {
        match tokio::net::TcpStream::connect(listen).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Instant::now()),
            Err(e) => Err(format!("connect: {e}")),
            Ok(_) => Err("connection accepted".to_string()),
        }
    })
    .await;
    let still_running = inflight.iter().filter(|t| !t.is_finished()).count();
    // The admin listener serves until the drain ends.
    let retries = metric(&wharf, "wharf_retries_total").await;
    eprintln!(
        "after SIGTERM: /readyz 503 within {} ms, connections refused after {} ms, {still_running} of 5 requests still in flight",
        readyz_503.as_millis(),
        refused_at.duration_since(signalled).as_millis()
    );

    let mut ok = 0;
    let mut last_done = signalled;
    for t in inflight {
        let (r, done) = t.await.expect("request task");
        let r = r.unwrap_or_else(|e| panic!("request in flight at SIGTERM failed: {e}"));
        assert_eq!(r.status, 200, "request in flight at SIGTERM: {}", r.body);
        assert!(r.body.contains("GET /slow?ms=1500"), "echo body: {}", r.body);
        assert!(
            done > refused_at,
            "the listener closed only after the requests completed"
        );
        last_done = last_done.max(done);
        ok += 1;
    }
    let code = wharf.wait_exit(secs(30));
    let exited = signalled.elapsed();
    eprintln!(
        "in-flight requests: 5 sent, {ok} answered 200, {} failed, {retries} retries; last answer {} ms after SIGTERM; \
         wharf exited {} ms after SIGTERM with {code:?}",
        5 - ok,
        last_done.duration_since(signalled).as_millis(),
        exited.as_millis()
    );
    assert_eq!(
        still_running, 5,
        "the listener must close at the signal, while requests are in flight"
    );
    assert_eq!(code, Some(0), "wharf's exit code after SIGTERM; log:\n{}", wharf.log());
    assert!(
        exited < secs(10),
        "wharf took {} ms to exit (drain timeout 30 s): an idle keep-alive connection held it up?",
        exited.as_millis()
    );
    let log = wharf.log();
    assert!(
        log.contains("all connections drained"),
        "wharf should report a complete drain; log:\n{log}"
    );
    drop(idle_client);
}

// ---------------------------------------------------------------------------
// A backend ignoring SIGTERM is drained at `docker stop`'s kill event
// ---------------------------------------------------------------------------

/// Unix-nanosecond times of the container's `kill` events with SIGTERM since `since`.
fn sigterm_kill_events(id: &str, since: SystemTime) -> Vec<u128> {
    let secs_nanos = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let filter = format!("container={id}");
    let out = docker(&[
        "events",
        "--since",
        &secs_nanos(since),
        "--until",
        &secs_nanos(SystemTime::now()),
        "--filter",
        &filter,
        "--filter",
        "event=kill",
        "--format",
        "{{.TimeNano}} {{index .Actor.Attributes \"signal\"}}",
    ]);
    out.lines()
        .filter_map(|l| {
            let (t, sig) = l.split_once(' ')?;
            (sig == "15" || sig == "SIGTERM").then(|| t.parse().ok())?
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_stop_of_a_backend_that_ignores_sigterm_drains_it_at_the_kill_event_with_no_failed_request() {
    let net = Network::create("nosig");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &["wharf.pool=web"], &[]);
    let b = demo(&net, "b", &["wharf.pool=web"], &["-e", "DEMO_NO_SIGTERM=1"]);
    wait_state(&wharf, "web", &a, "ready", secs(20)).await;
    wait_state(&wharf, "web", &b, "ready", secs(20)).await;
    wait_listening(&net, &[&a, &b]).await;
    let b_host = b.hostname();
    let b_addr = b.addr(&net.name, 80);

    let traffic = Traffic::start(wharf.listen, "any.test", "/", 3, millis(10));
    poll("b takes traffic (pooled connections to it exist)", secs(20), || async {
        let n = traffic
            .hits()
            .iter()
            .filter(|h| h.backend.as_deref() == Some(b_host.as_str()))
            .count();
        (n >= 20).then_some(()).ok_or(format!("{n} requests to b"))
    })
    .await;

    let stop_wall = SystemTime::now();
    let id = b.id.clone();
    let stopper = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        docker(&["stop", "-t", "3", &id]);
        t.elapsed()
    });
    let (reason, drained) = wait_state(&wharf, "web", &b, "draining", secs(10)).await;
    let drained_at = Instant::now();
    let drained_wall = unix_nanos(SystemTime::now());
    let id = b.id.clone();
    let running = tokio::task::spawn_blocking(move || {
        docker(&["container", "inspect", "--format", "{{.State.Running}}", &id]) == "true"
    })
    .await
    .unwrap();
    // b still runs and answers directly, yet wharf sends it nothing more.
    let b_count = demo_requests(b_addr).await;
    traffic.wait_more(100, "100 more requests while b drains").await;
    let b_count_later = demo_requests(b_addr).await;
    eprintln!(
        "DRAIN: b draining {} ms after `docker stop` started ({reason}); still running: {running}; \
         b counted {b_count} requests at the drain and {b_count_later} after 100 more through wharf",
        drained.as_millis()
    );
    assert!(running, "b should still run when drained (it ignores SIGTERM)");
    assert!(reason.contains("stop"), "reason: {reason}");
    assert_eq!(b_count_later, b_count, "b received requests after it was drained");

    let stop_took = stopper.await.expect("docker stop");
    let exit = b.exit_code();
    let kills = sigterm_kill_events(&b.id, stop_wall);
    let kill_lag_ms = kills
        .first()
        .map(|k| (drained_wall as i128 - *k as i128) / 1_000_000)
        .expect("a kill event with SIGTERM for b");
    eprintln!(
        "DRAIN: SIGTERM kill event -> draining seen in /api/state: {kill_lag_ms} ms; \
         docker stop took {} ms (b killed after the 3 s, exit code {exit})",
        stop_took.as_millis()
    );
    assert!(
        stop_took >= millis(2500),
        "docker stop returned after {} ms: b should have ignored SIGTERM for 3 s",
        stop_took.as_millis()
    );
    assert_eq!(exit, 137, "b is SIGKILLed by docker stop");
    assert!(
        kill_lag_ms < 1000,
        "b drained {kill_lag_ms} ms after the kill event; it should be right after"
    );

    poll("b gone from pool web", secs(10), || async {
        let s = wharf.state().await;
        match find_backend(&s, "web", &b.name) {
            None => Ok(()),
            Some(be) => Err(format!("b still {}", be["state"])),
        }
    })
    .await;
    traffic.wait_more(50, "50 requests after b is gone").await;
    let hits = traffic.stop().await;
    let retries = metric(&wharf, "wharf_retries_total").await;
    let failed = report("docker stop of a backend ignoring SIGTERM", &hits, retries);
    let late = hits
        .iter()
        .filter(|h| h.sent > drained_at && h.backend.as_deref() == Some(b_host.as_str()))
        .count();
    assert_eq!(late, 0, "requests sent after b was drained reached b");
    assert!(failed.is_empty(), "{} requests failed", failed.len());
}
