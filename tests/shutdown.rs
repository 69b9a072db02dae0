//! Shutdown end to end: wharf itself SIGTERMed with requests in flight, and
//! a backend that ignores SIGTERM drained by `docker stop` on its kill event.
//!
//! Real wharf on the host, real demo containers, real traffic; every test
//! prints its counts and the times it measured.

mod support;

use std::time::{Instant, SystemTime};

use support::*;

// ---------------------------------------------------------------------------
// wharf SIGTERMed with requests in flight
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_requests_in_flight_turns_readyz_503_refuses_new_connections_and_exits_0() {
    let net = Network::create("term");
    let mut wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &["wharf.pool=web"], &[]);
    wait_demos_ready(&wharf, "web", &net, &[&a]).await;
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
                let r = get(listen, "term.test", "/slow?ms=6000").await;
                (r, Instant::now())
            })
        })
        .collect();
    poll("5 requests in flight in wharf", secs(10), || async {
        let s = wharf.state().await;
        let n = backend_named(&s, "web", &a.name)
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
    let retries = wharf.metric("wharf_retries_total").await;
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
        assert!(r.body.contains("GET /slow?ms=6000"), "echo body: {}", r.body);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_stop_of_a_backend_that_ignores_sigterm_drains_it_at_the_kill_event_with_no_failed_request() {
    let net = Network::create("nosig");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let a = demo(&net, "a", &["wharf.pool=web"], &[]);
    let b = demo(&net, "b", &["wharf.pool=web"], &["-e", "DEMO_NO_SIGTERM=1"]);
    wait_demos_ready(&wharf, "web", &net, &[&a, &b]).await;
    let b_host = b.hostname();
    let b_addr = b.addr(&net.name, 80);

    let load = Load::start(wharf.listen, "any.test", LoadOpts::gets(3, millis(10)));
    poll("b takes traffic (pooled connections to it exist)", secs(20), || async {
        let n = load.outcomes().iter().filter(|o| o.answered_by(&b_host)).count();
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
    let (reason, drained) = wharf.wait_backend_state("web", &b.name, "draining", secs(10)).await;
    let drained_at = load.elapsed();
    let drained_wall = unix_ns();
    // Now, while the daemon's short event history (256) still holds it.
    let kills: Vec<i128> = tokio::task::block_in_place(|| container_events(&b.id, "kill", unix_nanos(stop_wall)))
        .iter()
        .filter(|e| e.signal_is("TERM"))
        .map(|e| e.time_ns)
        .collect();
    let id = b.id.clone();
    let running = tokio::task::spawn_blocking(move || {
        docker(&["container", "inspect", "--format", "{{.State.Running}}", &id]) == "true"
    })
    .await
    .unwrap();
    // b still runs and answers directly, yet wharf sends it nothing more.
    let b_count = demo_requests(b_addr).await;
    load.wait_more(100, secs(30), "100 more requests while b drains").await;
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
    let kill_lag_ms = kills
        .first()
        .map(|k| (drained_wall - *k) / 1_000_000)
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
    // Far below the 3 s until `die`: draining came from the kill event.
    assert!(
        kill_lag_ms < 2000,
        "b drained {kill_lag_ms} ms after the kill event; it should be right after"
    );

    poll("b gone from pool web", secs(10), || async {
        let s = wharf.state().await;
        match backend_named(&s, "web", &b.name) {
            None => Ok(()),
            Some(be) => Err(format!("b still {}", be["state"])),
        }
    })
    .await;
    load.wait_more(50, secs(30), "50 requests after b is gone").await;
    let report = load.stop().await;
    let what = "docker stop of a backend ignoring SIGTERM";
    report.print_with_retries(what, wharf.metric("wharf_retries_total").await);
    let late = report
        .outcomes
        .iter()
        .filter(|o| o.sent > drained_at && o.answered_by(&b_host))
        .count();
    assert_eq!(late, 0, "requests sent after b was drained reached b");
    report.assert_no_failures(what);
}
