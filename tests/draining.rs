//! Zero failed requests while containers come and go: real wharf, real
//! containers, real load (tests/support/load.rs), and containers scaled,
//! stopped, killed and paused under it.
//!
//! 1. the compose example scaled 1 → 8 → 1 under GET+POST load: 0 failed,
//!    the pool follows, and the SIGTERM → drained lag from wharf's log;
//! 2. `docker kill` (SIGKILL) of one of three backends under GET load: 0 failed;
//! 3. `docker stop` of a backend with 6.5-second requests in flight on it: they
//!    all finish with 200, and no request sent after wharf drained it reaches it;
//! 6. `docker pause` of one of three under load: failures (if any) end within
//!    2 s, and after `unpause` it is back in rotation;
//! 10. POSTs with unique ids through a SIGKILL: no id answered twice, none
//!     sent after the kill answered by the killed backend, and the only failed
//!     POSTs are the ones that were on their way to it when it died.
//!
//! wharf runs on the host with `--network <test network>` (tests 2–10, the
//! [`Three`] fixture of tests/support/three.rs), so containers of other
//! tests never join its pools; the compose example's wharf gets `WHARF_NETWORK` from a small override file for the same reason.
//! Docker CLI calls made while a load runs go through `block_in_place` or
//! `spawn_blocking` so they never stall the load's workers.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use support::load::percentile;
use support::*;
use tokio::task::block_in_place;

/// The Host header of the compose test's requests (the example's `web` has
/// no `wharf.host`: any host). The other tests send [`Three::HOST`].
const HOST: &str = "drain.test";
/// The daemon's and wharf's times are Unix times, the load's are Instants:
/// converting between them costs up to a few ms of precision, so comparisons
/// across the two allow this much.
const CLOCK_SLACK: Duration = Duration::from_millis(5);

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// 1. compose example, 1 → 8 → 1 under load
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn compose_example_scaled_1_8_1_under_load_fails_no_request() {
    let test_start = Instant::now();
    let file = workspace_root().join("compose-examples/basic/compose.yaml");
    let (port, admin_port) = (free_port().to_string(), free_port().to_string());
    let compose = Compose::new("drain", &file)
        .env("WHARF_IMAGE", wharf_image())
        .env("DEMO_IMAGE", demo_image())
        .env("WHARF_BIND", "127.0.0.1")
        .env("WHARF_PORT", &port)
        .env("WHARF_ADMIN_PORT", &admin_port);
    // The example's wharf sees every container on the daemon; other tests'
    // labelled containers (no host, other networks) must not join its pool.
    let over = TempFile(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.override.yaml", compose.project)));
    std::fs::write(
        &over.0,
        format!(
            "version: \"3.7\"\nservices:\n  wharf:\n    environment:\n      WHARF_NETWORK: {}\n",
            compose.default_network()
        ),
    )
    .expect("write compose override");
    let over_path = over.0.to_str().expect("utf-8 path").to_string();
    let up = |args: &[&str]| {
        let mut full = vec!["-f", over_path.as_str(), "up", "-d", "--no-recreate"];
        full.extend_from_slice(args);
        let started = Instant::now();
        block_in_place(|| compose.run(&full));
        eprintln!(
            "docker-compose up {}: took {} ms",
            args.join(" "),
            started.elapsed().as_millis()
        );
    };
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    up(&[]);

    let wharf_id = compose.ps_ids("wharf").pop().expect("a wharf container");
    let web = compose.ps_ids("web");
    assert_eq!(web.len(), 1, "{web:?}");
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &web[0]]);
    assert!(
        env.contains("DEMO_DRAIN_DELAY=300ms"),
        "the example's web service should keep serving 300 ms after SIGTERM (DEMO_DRAIN_DELAY): {env}"
    );
    let addrs = |c: &Compose| -> Vec<SocketAddr> { c.ips("web").into_iter().map(|ip| (ip, 80).into()).collect() };
    let hostnames = |c: &Compose| -> Vec<String> {
        c.ps_ids("web")
            .iter()
            .map(|id| docker(&["inspect", "--format", "{{.Config.Hostname}}", id]))
            .collect()
    };
    wait_pool(
        admin,
        "web",
        &addrs(&compose),
        secs(60),
        "pool web: the one replica ready",
    )
    .await;
    wait_all_answer(listen, HOST, &hostnames(&compose)).await;

    let load = Load::start(listen, HOST, LoadOpts::default());
    load.wait_requests(0, 200, secs(60), "load under way").await;

    // Up to 8.
    let t = Instant::now();
    up(&["--scale", "web=8", "web"]);
    let eight = block_in_place(|| addrs(&compose));
    assert_eq!(eight.len(), 8, "{eight:?}");
    wait_pool(admin, "web", &eight, secs(60), "pool web: 8 replicas ready").await;
    eprintln!(
        "scale web=8: pool in step {} ms after the command started",
        t.elapsed().as_millis()
    );
    let eight_hosts = block_in_place(|| hostnames(&compose));
    load.wait_answered_by(&eight_hosts, "the load reaches all 8 replicas")
        .await;

    // Down to 1: compose stops 7 replicas (SIGTERM) and removes them.
    load.wait_requests(load.progress().requests, 300, secs(60), "load at 8 replicas")
        .await;
    let eight_ids = block_in_place(|| compose.ps_ids("web"));
    let t = Instant::now();
    let down_since = unix_ns();
    up(&["--scale", "web=1", "web"]);
    // Read the kill events now: the daemon keeps only its last 256 events.
    let remaining = block_in_place(|| compose.ps_ids("web"));
    let kills: Vec<(String, i128)> = eight_ids
        .iter()
        .filter(|id| !remaining.contains(id))
        .map(|id| (id.clone(), block_in_place(|| first_event_ns(id, "kill", down_since))))
        .collect();
    let one = block_in_place(|| addrs(&compose));
    assert_eq!(one.len(), 1, "{one:?}");
    wait_pool(admin, "web", &one, secs(60), "pool web: back to the 1 replica").await;
    eprintln!(
        "scale web=1: pool in step {} ms after the command started",
        t.elapsed().as_millis()
    );
    load.wait_requests(load.progress().requests, 300, secs(60), "load after scaling down")
        .await;

    let report = load.stop().await;
    report.print("compose 1→8→1");
    let retries = metric_at(admin, "wharf_retries_total").await;
    eprintln!(
        "[compose 1→8→1] requests {}, failures {}, wharf retries {retries}",
        report.requests,
        report.not_ok()
    );

    // SIGTERM → drained, as wharf measured it for each kill event.
    let log = block_in_place(|| docker_logs(&wharf_id));
    // Only the 7 replicas compose stopped: this wharf sees the whole daemon,
    // and logs (and replays at start) other tests' kill events too.
    let stopped: Vec<&String> = kills.iter().map(|(id, _)| id).collect();
    assert_eq!(stopped.len(), 7, "stopped replicas: {stopped:?}");
    let lags = drain_lags(&log);
    let mut us = Vec::new();
    let mut late = Vec::new();
    for (id, kill_ns) in &kills {
        let Some((_, lag)) = lags.iter().find(|(prefix, _)| id.starts_with(prefix.as_str())) else {
            panic!("wharf logged no `stop signal: draining` for replica {id}; its log:\n{log}");
        };
        us.push(*lag);
        // Nothing sent after wharf drained a replica may have reached it.
        let drained_at = report.offset_unix_ns(kill_ns + *lag as i128 * 1000);
        late.extend(
            report
                .outcomes
                .iter()
                .filter(|o| {
                    o.sent > drained_at + CLOCK_SLACK && o.backend.as_deref().is_some_and(|h| id.starts_with(h))
                })
                .map(Outcome::describe),
        );
    }
    us.sort();
    eprintln!(
        "[compose 1→8→1] SIGTERM→drained over the {} stopped replicas: p50 {:.2} ms, p99 {:.2} ms (all µs: {us:?})",
        us.len(),
        percentile(&us, 0.5) as f64 / 1e3,
        percentile(&us, 0.99) as f64 / 1e3,
    );
    eprintln!("[compose 1→8→1] test took {:.1} s", test_start.elapsed().as_secs_f64());

    report.assert_no_failures("scaling the compose example 1 → 8 → 1");
    assert!(
        late.is_empty(),
        "requests sent after wharf drained a replica reached it:\n{}",
        late.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. SIGKILL under GET load
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_one_of_three_backends_fails_no_get() {
    let test_start = Instant::now();
    let t = Three::start("kget", &[]).await;
    let hosts = t.hosts.clone();
    let opts = LoadOpts {
        post_share: 0.0,
        ..LoadOpts::default()
    };
    let load = t.load(opts, "GET load reaches all three").await;
    let p = load.wait_requests(0, 300, secs(60), "GET load under way").await;

    let victim = &t.backends[0];
    let since = unix_ns();
    let before = Instant::now();
    block_in_place(|| victim.kill("KILL"));
    let killed = Instant::now();
    eprintln!("docker kill -s KILL: took {} ms", (killed - before).as_millis());
    t.wait_gone(t.addrs[0], "killed backend leaves the pool").await;
    // Now, while the daemon's short event history (256) still holds it.
    let kill_ns = block_in_place(|| first_event_ns(&victim.id, "kill", since));
    load.wait_requests(p.requests, 600, secs(60), "GET load after the kill")
        .await;
    let report = load.stop().await;
    let retries = t.retries().await;
    report.print("SIGKILL, GET");
    eprintln!(
        "[SIGKILL, GET] requests {}, failures {}, wharf retries {retries}; test took {:.1} s",
        report.requests,
        report.not_ok(),
        test_start.elapsed().as_secs_f64()
    );
    eprintln!(
        "[SIGKILL, GET] kill event at {:.3} s into the load",
        report.offset_unix_ns(kill_ns).as_secs_f64()
    );

    report.assert_no_failures("GETs through a SIGKILL");
    let after = report.offset(killed);
    let late: Vec<String> = report
        .outcomes
        .iter()
        .filter(|o| o.sent > after && o.backend.as_deref() == Some(hosts[0].as_str()))
        .map(Outcome::describe)
        .collect();
    assert!(
        late.is_empty(),
        "answered by the killed backend after the kill: {late:?}"
    );
    for h in &hosts[1..] {
        let n = report
            .outcomes
            .iter()
            .filter(|o| o.sent > after && o.backend.as_deref() == Some(h.as_str()))
            .count();
        assert!(n > 0, "survivor {h} got no request after the kill");
    }
}

// ---------------------------------------------------------------------------
// 3. docker stop with long requests in flight
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn docker_stop_lets_in_flight_slow_requests_finish_and_sends_nothing_new() {
    let test_start = Instant::now();
    let t = Three::start("stop", &["-e", "DEMO_DRAIN_DELAY=300ms"]).await;
    let hosts = t.hosts.clone();
    let victim = &t.backends[0];
    let victim_addr = t.addrs[0];

    // 18 slow requests, each on its own connection: round robin puts 6 on each backend.
    const SLOW: usize = 18;
    let listen = t.wharf.listen;
    let origin = Instant::now();
    let slow: Vec<_> = (0..SLOW)
        .map(|i| {
            tokio::spawn(async move {
                let id = format!("slow-{i}");
                let r = request(listen, "GET", Three::HOST, "/slow?ms=6500", &[("x-demo-id", &id)], b"").await;
                (id, r, origin.elapsed())
            })
        })
        .collect();
    let what = "6 slow requests in flight on the victim";
    let (in_flight, _) = wait_state_at(t.wharf.admin, secs(20), what, |s| {
        let all: Vec<u64> = pool_backends(s, &t.pool)
            .iter()
            .map(|b| b["in_flight"].as_u64().unwrap_or(0))
            .collect();
        let v = backend_at(s, &t.pool, victim_addr).map_or(0, |b| b["in_flight"].as_u64().unwrap_or(0));
        if v >= 6 && all.iter().sum::<u64>() >= SLOW as u64 {
            Ok(v)
        } else {
            Err(format!("in flight: victim {v}, all {all:?}"))
        }
    })
    .await;
    eprintln!(
        "slow requests in flight on the victim: {in_flight} ({} ms after sending)",
        origin.elapsed().as_millis()
    );

    let opts = LoadOpts {
        rate: 200.0,
        ..LoadOpts::default()
    };
    let load = Load::start(listen, Three::HOST, opts);
    load.wait_requests(0, 60, secs(60), "background load under way").await;

    // `docker stop` returns once the victim exits, after its slow requests.
    let since = unix_ns();
    let stop_issued = Instant::now();
    let id = victim.id.clone();
    let stop = tokio::task::spawn_blocking(move || docker(&["stop", "-t", "15", &id]));
    let what = "victim draining in /api/state";
    let (first_draining, _) = t
        .wait_backend(victim_addr, secs(20), what, |b| match b {
            Some(b) if b["state"] == "draining" => Ok(b),
            Some(b) => Err(format!("victim: {b}")),
            None => Err("victim gone before it was seen draining".to_string()),
        })
        .await;
    let seen = Mutex::new(Vec::new());
    t.wait_backend(victim_addr, secs(30), "victim leaves the pool", |b| match b {
        None => Ok(()),
        Some(b) => {
            let observation = format!("victim: {b}");
            seen.lock().unwrap().push(b);
            Err(observation)
        }
    })
    .await;
    // The counter baseline is the poll after the first that saw draining: a
    // request that picked the victim just before the swap may count itself
    // a few µs after it (the `late` check above covers those by send time).
    let seen = seen.into_inner().unwrap();
    let baseline = seen.first().unwrap_or(&first_draining).clone();
    let last_seen = seen.last().unwrap_or(&first_draining).clone();
    stop.await.expect("docker stop");
    eprintln!("docker stop took {} ms", stop_issued.elapsed().as_millis());
    // Now, while the daemon's short event history (256) still holds it.
    let kill_ns = block_in_place(|| first_event_ns(&victim.id, "kill", since));
    let p = load.progress();
    load.wait_requests(p.requests, 100, secs(60), "background load after the stop")
        .await;
    let report = load.stop().await;
    let retries = t.retries().await;

    let mut slow_done = Vec::new();
    for h in slow {
        slow_done.push(h.await.expect("slow request task"));
    }
    let lag_us = t.drain_lag_us(&victim.id);
    let kill_at = report.offset_unix_ns(kill_ns);
    let drained_at = report.offset_unix_ns(kill_ns + lag_us as i128 * 1000);
    report.print("docker stop, slow requests");
    let answered_by_victim: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| o.backend.as_deref() == Some(hosts[0].as_str()))
        .collect();
    let between = answered_by_victim
        .iter()
        .filter(|o| o.sent > kill_at && o.sent <= drained_at)
        .count();
    let late: Vec<String> = answered_by_victim
        .iter()
        .filter(|o| o.sent > drained_at + CLOCK_SLACK)
        .map(|o| o.describe())
        .collect();
    eprintln!(
        "[docker stop] kill event at {:.3} s, wharf drained at {:.3} s (lag {lag_us} µs); load requests answered by \
         the victim: {} in all, {between} sent between the kill event and the drain, {} sent after the drain",
        kill_at.as_secs_f64(),
        drained_at.as_secs_f64(),
        answered_by_victim.len(),
        late.len()
    );
    eprintln!(
        "[docker stop] wharf's request counter for the victim: {} when first seen draining, {} a poll later, {} \
         when last seen",
        first_draining["requests"], baseline["requests"], last_seen["requests"]
    );
    let slow_ok = slow_done
        .iter()
        .filter(|(_, r, _)| r.as_ref().is_ok_and(|r| r.status == 200))
        .count();
    eprintln!(
        "[docker stop] requests {} + {SLOW} slow ({slow_ok} ok), failures {}, wharf retries {retries}; test took {:.1} s",
        report.requests,
        report.not_ok() + (SLOW - slow_ok) as u64,
        test_start.elapsed().as_secs_f64()
    );

    // Every slow request finished with 200, 6 of them on the victim after it was stopped.
    let mut on_victim = 0;
    for (id, r, done) in &slow_done {
        let r = r.as_ref().unwrap_or_else(|e| panic!("slow request {id}: {e}"));
        assert_eq!(r.status, 200, "slow request {id}: {r:?}");
        if r.header("x-demo-hostname") == Some(hosts[0].as_str()) {
            on_victim += 1;
            assert!(
                origin + *done > stop_issued,
                "slow request {id} ended before docker stop: the test did not test anything"
            );
        }
    }
    assert_eq!(on_victim, in_flight, "slow requests answered by the stopped backend");
    report.assert_no_failures("background load through docker stop");
    assert!(
        late.is_empty(),
        "requests sent after wharf drained the backend reached it:\n{}",
        late.join("\n")
    );
    assert_eq!(
        baseline["requests"], last_seen["requests"],
        "wharf sent requests to the backend while it was draining"
    );
}

// ---------------------------------------------------------------------------
// 6. docker pause
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn docker_pause_failures_stop_within_two_seconds_and_unpause_restores() {
    let test_start = Instant::now();
    let t = Three::start("pause", &[]).await;
    let hosts = t.hosts.clone();
    let victim = &t.backends[0];
    let victim_addr = t.addrs[0];
    // Each request the paused backend takes holds its worker until the
    // unpause: enough workers that the load never stalls on them.
    let opts = LoadOpts {
        rate: 200.0,
        workers: 64,
        ..LoadOpts::default()
    };
    let load = t.load(opts, "load reaches all three").await;
    let p = load.wait_requests(0, 200, secs(60), "load under way").await;

    let since = unix_ns();
    let pause_called = load.elapsed();
    block_in_place(|| victim.pause());
    let paused_cli = load.elapsed();
    let what = "paused backend out of rotation in /api/state";
    t.wait_backend(victim_addr, secs(30), what, |b| match b {
        Some(b) if b["state"] != "ready" => Ok(()),
        other => Err(format!("victim: {other:?}")),
    })
    .await;
    let out_of_rotation = load.elapsed();
    // Now, while the daemon's short event history (256) still holds it.
    let pause_ns = block_in_place(|| first_event_ns(&victim.id, "pause", since));
    // wharf's own count of attempts on the victim (`requests` in
    // `/api/state`, counted when an attempt starts), read 2 s past the pause
    // event and again just before the unpause: nothing may go to the paused
    // backend between the two. Counted by wharf, not inferred from the
    // client's send times (a request sent just before the unpause can reach
    // wharf just after it).
    let victim_requests = || async {
        let s = t.wharf.state().await;
        backend_at(&s, &t.pool, victim_addr)
            .and_then(|b| b["requests"].as_u64())
            .expect("the paused backend's requests in /api/state")
    };
    poll("2 s past the pause event", secs(10), || async {
        let left = pause_ns + 2_000_000_000 - unix_ns();
        (left <= 0)
            .then_some(())
            .ok_or(format!("{} ms to go", left / 1_000_000))
    })
    .await;
    let requests_at_window = victim_requests().await;
    // A measurement window, not a synchronisation: the load keeps running
    // until 3 s past the pause, so the 2-second mark can be checked. (Requests
    // held by the paused backend keep their workers busy until the unpause.)
    poll("load ran 3 s past the pause", secs(10), || async {
        let p2 = load.progress();
        (load.elapsed() > paused_cli + secs(3))
            .then_some(())
            .ok_or(format!("{} requests since the pause", p2.requests - p.requests))
    })
    .await;

    let requests_before_unpause = victim_requests().await;
    eprintln!(
        "[docker pause] wharf's attempts on the paused backend: {requests_at_window} at pause + 2 s, \
         {requests_before_unpause} just before the unpause"
    );
    let unpause_called = load.elapsed();
    block_in_place(|| victim.unpause());
    let unpaused = load.elapsed();
    // Normally a few ms; the deadline is far below wharf's 60 s periodic
    // re-list, which must not be what brings the backend back. (Docker emits
    // `unpause` just before its container listing says running.)
    let what = "unpaused backend ready in /api/state within 10 s";
    t.wait_backend(victim_addr, secs(10), what, |b| match b {
        Some(b) if b["state"] == "ready" => Ok(()),
        other => Err(format!("victim: {other:?}")),
    })
    .await;
    let unpause_ns = block_in_place(|| first_event_ns(&victim.id, "unpause", since));
    let client = Client::new();
    poll("unpaused backend answers through wharf again", secs(20), || async {
        let r = client.get(t.wharf.listen, Three::HOST, "/after-unpause").await?;
        (r.status == 200 && r.header("x-demo-hostname") == Some(hosts[0].as_str()))
            .then_some(())
            .ok_or(format!("{} from {:?}", r.status, r.header("x-demo-hostname")))
    })
    .await;
    let p3 = load.progress();
    load.wait_requests(p3.requests, 100, secs(60), "load after the unpause")
        .await;
    let report = load.stop().await;
    let retries = t.retries().await;
    report.print("docker pause");

    let pause_at = report.offset_unix_ns(pause_ns);
    // wharf may restore the backend on Docker's `unpause` event, a few ms
    // before the CLI returns, or on a listing taken after the daemon thawed
    // the container but before it logged the event (as with `kill`, the
    // event follows the action): the paused window ends at the earlier of
    // the event and the moment the test asked for the unpause.
    let unpause_at = report.offset_unix_ns(unpause_ns).min(unpause_called);
    let not_ok: Vec<&Outcome> = report.not_ok_outcomes().collect();
    let last_failure = not_ok.iter().map(|o| o.done).max();
    let stalled: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| o.backend.as_deref() == Some(hosts[0].as_str()) && o.sent < unpaused && o.done > pause_at)
        .filter(|o| o.latency() > millis(500))
        .collect();
    eprintln!(
        "[docker pause] pause event at {:.3} s, unpause at {:.3} s; requests {}, failures {}, wharf retries {retries}; \
         last failure {}; {} requests were held by the paused backend until the unpause (longest {:.0} ms); \
         test took {:.1} s",
        pause_at.as_secs_f64(),
        unpaused.as_secs_f64(),
        report.requests,
        report.not_ok(),
        last_failure.map_or("none".to_string(), |d| format!(
            "{:.0} ms after the pause",
            (d.as_secs_f64() - pause_at.as_secs_f64()) * 1e3
        )),
        stalled.len(),
        stalled.iter().map(|o| o.latency()).max().unwrap_or_default().as_secs_f64() * 1e3,
        test_start.elapsed().as_secs_f64()
    );

    assert!(
        out_of_rotation < pause_at + secs(2),
        "wharf kept the paused backend in rotation until {:.0} ms after the pause event (Docker emits `pause` \
         just before its container listing says paused: a re-list made right after the event can miss it)",
        (out_of_rotation.as_secs_f64() - pause_at.as_secs_f64()) * 1e3
    );
    for o in &not_ok {
        assert!(
            o.done + CLOCK_SLACK >= pause_called && o.done < pause_at + secs(2),
            "a failure outside the 2 s after the pause ({:.3} s): {}",
            pause_at.as_secs_f64(),
            o.describe()
        );
    }
    // From 2 s after the pause until the unpause, nothing new goes to the paused backend.
    let window = pause_at + secs(2);
    let late: Vec<String> = report
        .outcomes
        .iter()
        .filter(|o| {
            o.sent >= window && o.sent + CLOCK_SLACK < unpause_at && o.backend.as_deref() == Some(hosts[0].as_str())
        })
        .map(Outcome::describe)
        .collect();
    assert_eq!(
        requests_before_unpause,
        requests_at_window,
        "wharf sent requests to the paused backend from 2 s after the pause until the unpause; \
         the requests sent in that window that it answered:\n{}",
        late.join("\n")
    );
    let in_window = report
        .outcomes
        .iter()
        .filter(|o| o.sent >= window && o.sent < unpause_at)
        .count();
    assert!(
        in_window > 0,
        "the load sent nothing between pause + 2 s and the unpause"
    );
}

// ---------------------------------------------------------------------------
// 10. POSTs with ids through a SIGKILL
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn posts_through_a_sigkill_are_answered_at_most_once_and_never_by_the_dead() {
    let test_start = Instant::now();
    let t = Three::start("kpost", &[]).await;
    let hosts = t.hosts.clone();
    let opts = LoadOpts {
        post_share: 1.0,
        ..LoadOpts::default()
    };
    let load = t.load(opts, "POST load reaches all three").await;
    let p = load.wait_requests(0, 300, secs(60), "POST load under way").await;

    let victim = &t.backends[0];
    let since = unix_ns();
    block_in_place(|| victim.kill("KILL"));
    t.wait_gone(t.addrs[0], "killed backend leaves the pool").await;
    // Now, while the daemon's short event history (256) still holds it.
    let kill_ns = block_in_place(|| first_event_ns(&victim.id, "kill", since));
    load.wait_requests(p.requests, 600, secs(60), "POST load after the kill")
        .await;
    let report = load.stop().await;
    let retries = t.retries().await;
    report.print("SIGKILL, POST");

    let lag_us = t.drain_lag_us(&victim.id);
    let kill_at = report.offset_unix_ns(kill_ns);
    let drained_at = report.offset_unix_ns(kill_ns + lag_us as i128 * 1000);
    // The daemon logs `kill` after the signal has landed: a POST on the victim
    // can fail a few ms before the event. The earliest honest failure ends
    // after the test called `docker kill`.
    let kill_called_at = report.offset_unix_ns(since);

    // Every id each survivor logged, straight from the survivor.
    let mut logged: HashMap<String, Vec<String>> = HashMap::new();
    for (addr, h) in t.addrs.iter().zip(&hosts).skip(1) {
        let r = get(*addr, "ids", "/_demo/ids").await.expect("GET /_demo/ids");
        assert_eq!(r.status, 200);
        for id in r.body.lines().filter(|l| l.starts_with('p')) {
            logged.entry(id.to_string()).or_default().push(h.clone());
        }
    }
    let twice: Vec<(&String, &Vec<String>)> = logged.iter().filter(|(_, v)| v.len() > 1).collect();

    let by_id: BTreeMap<&str, &Outcome> = report.outcomes.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut problems = Vec::new();
    for o in &report.outcomes {
        let seen = logged.get(&o.id);
        let answered_by = o.backend.as_deref();
        if o.is_ok() {
            if answered_by == Some(hosts[0].as_str()) {
                if o.sent > kill_at + CLOCK_SLACK {
                    problems.push(format!(
                        "sent after the kill event, answered by the killed backend: {}",
                        o.describe()
                    ));
                }
                if let Some(s) = seen {
                    problems.push(format!(
                        "answered by the killed backend, yet logged by {s:?}: {}",
                        o.describe()
                    ));
                }
            } else if seen.is_none_or(|s| s.as_slice() != [answered_by.unwrap_or("?").to_string()]) {
                problems.push(format!(
                    "answered by a survivor but logged by {seen:?}: {}",
                    o.describe()
                ));
            }
        }
    }
    // Failures allowed only for POSTs on their way to the victim when it died:
    // sent before wharf could know (its drain), finished after the kill was
    // called, and delivered to no survivor.
    let failed: Vec<&Outcome> = report.not_ok_outcomes().collect();
    for o in &failed {
        if o.is_transport_error() || o.status != Some(502) {
            problems.push(format!("a failure other than 502 from wharf: {}", o.describe()));
        } else if o.sent > drained_at + CLOCK_SLACK
            || o.done + CLOCK_SLACK < kill_called_at
            || logged.contains_key(&o.id)
        {
            problems.push(format!(
                "a failed POST that was not in flight on the killed backend at the kill: {} (logged by {:?})",
                o.describe(),
                logged.get(&o.id)
            ));
        }
    }
    let unknown = logged.keys().filter(|id| !by_id.contains_key(id.as_str())).count();
    eprintln!(
        "[SIGKILL, POST] kill event at {:.3} s, drained at {:.3} s (lag {lag_us} µs); requests {}, failures {} \
         ({} sent before the kill event, {} between the event and the drain), wharf retries {retries}; ids logged by \
         survivors {} (twice: {}, not sent by the load: {unknown}); test took {:.1} s",
        kill_at.as_secs_f64(),
        drained_at.as_secs_f64(),
        report.requests,
        report.not_ok(),
        failed.iter().filter(|o| o.sent <= kill_at).count(),
        failed.iter().filter(|o| o.sent > kill_at).count(),
        logged.len(),
        twice.len(),
        test_start.elapsed().as_secs_f64()
    );
    assert!(twice.is_empty(), "POSTs delivered twice: {twice:?}");
    assert_eq!(unknown, 0, "survivors logged ids the load never sent");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
