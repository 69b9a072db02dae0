//! `--provider swarm` on a real single-node Docker Swarm (issue 12).
//!
//! A separate test binary: cargo runs test binaries one after the other, so
//! no other Docker test sees the swarm these tests create. Inside it the
//! tests take turns ([`Swarm::join`] holds a lock), each creates the swarm
//! only if the daemon is in none and leaves it at its end, and each uses a
//! label prefix of its own. wharf runs as a swarm service on an attachable
//! overlay with host-mode published ports; the test talks to it on
//! 127.0.0.1 only (overlay addresses are not reachable from the host). The
//! backends use `--endpoint-mode dnsrr`: a VIP needs IPVS, which this kernel
//! lacks, and wharf never uses VIPs anyway.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use support::swarm::{Image, Overlay, Service, Swarm, WharfService};
use support::*;

/// A demo service of `replicas` tasks on `net` with `<prefix>.enable=true`.
fn web(net: &Overlay, prefix: &str, replicas: u32, extra: &[&str]) -> Service {
    let enable = format!("{prefix}.enable=true");
    let port = format!("{prefix}.port=80");
    let replicas = replicas.to_string();
    let mut args = vec![
        "--network",
        &net.name,
        "--endpoint-mode",
        "dnsrr",
        "--replicas",
        &replicas,
        "--label",
        &enable,
        "--label",
        &port,
        "--stop-grace-period",
        "5s",
    ];
    args.extend_from_slice(extra);
    args.push(demo_image());
    Service::create("web", &args)
}

/// Waits until wharf lists exactly `n` ready backends in `pool` and no other.
async fn wait_ready(w: &WharfService, pool: &str, n: usize, deadline: Duration) -> Duration {
    let what = format!("wharf lists {n} ready tasks in pool {pool}");
    let admin = w.admin;
    let (_, took) = poll(&what, deadline, || async move {
        let s = state_at(admin).await?;
        let all = pool_view(&s, pool);
        let ready = all.iter().filter(|(_, st)| st == "ready").count();
        if ready == n && all.len() == n {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    })
    .await;
    took
}

/// `x-demo-hostname` counts of `n` sequential keep-alive GETs through `addr`.
async fn split(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let client = Client::new();
    let mut by = BTreeMap::new();
    for i in 0..n {
        let r = client
            .get(addr, "any.test", "/")
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        *by.entry(r.header("x-demo-hostname").unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    by
}

#[test]
fn outside_a_swarm_wharf_exits_2_saying_it_needs_a_swarm_manager() {
    let _turn = Swarm::lock();
    require_docker();
    assert!(!Swarm::active(), "this test needs a daemon in no swarm (as in CI)");
    let args = [
        "--provider",
        "swarm",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    for (code, out) in [wharf_run(&args, &[]), wharf_check(&args[..2], &[])] {
        assert_eq!(code, 2, "{out}");
        let line = out.lines().last().unwrap_or_default();
        assert!(
            line.contains("not part of a swarm") && line.contains("manager"),
            "one line naming the cause and the fix: {out}"
        );
    }
}

#[tokio::test]
async fn three_tasks_split_300_requests_100_100_100_and_check_lists_them() {
    let swarm = Swarm::join();
    let net = Overlay::create("sw-net");
    let prefix = Swarm::prefix();
    let svc = web(&net, &prefix, 3, &[]);
    let w = swarm.wharf(&net, &prefix, 1, &[]).await;
    wait_ready(&w, &svc.name, 3, secs(60)).await;

    let by = split(w.listen, 300).await;
    eprintln!("300 requests over 3 tasks: {by:?}");
    assert_eq!(by.values().copied().collect::<Vec<_>>(), [100, 100, 100], "{by:?}");
    let mut hosts: Vec<String> = by.keys().cloned().collect();
    let mut tasks = svc.hostnames();
    hosts.sort();
    tasks.sort();
    assert_eq!(
        hosts, tasks,
        "each answer came from one of the service's task containers"
    );

    let s = state_at(w.admin).await.unwrap();
    assert_eq!(s["discovery"]["provider"], "swarm", "{}", s["discovery"]);
    for b in pool_backends(&s, &svc.name) {
        let name = b["container"].as_str().unwrap();
        assert!(
            name.starts_with(&format!("{}.", svc.name)),
            "task named service.slot.id: {name}"
        );
    }

    // `wharf check --provider swarm`, from a container that is not a task.
    let label_prefix = format!("--label-prefix={prefix}");
    let out = docker_try(&[
        "run",
        "--rm",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        wharf_image(),
        "check",
        "--provider",
        "swarm",
        &label_prefix,
        "--json",
    ])
    .unwrap_or_else(|e| panic!("wharf check failed: {e}"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(pool_backends(&v, &svc.name).len(), 3, "{out}");
}

#[tokio::test]
async fn scaling_3_to_6_to_2_under_load_fails_no_request() {
    let rounds: usize = std::env::var("SWARM_SCALE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let swarm = Swarm::join();
    let net = Overlay::create("sw-net");
    let prefix = Swarm::prefix();
    let svc = web(&net, &prefix, 3, &[]);
    let w = swarm.wharf(&net, &prefix, 1, &[]).await;
    wait_ready(&w, &svc.name, 3, secs(60)).await;

    let load = Load::start(w.listen, "any.test", LoadOpts::gets(8, millis(40)));
    load.wait_more(50, secs(30), "load flows").await;
    let (mut to_traffic, mut after_running) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let before: Vec<String> = svc.hostnames();
        let t0 = Instant::now();
        svc.scale(6);
        let what = format!("round {round}: the 3 new tasks take traffic");
        let running_at = std::cell::Cell::new(None);
        let (_, took) = poll(&what, secs(90), || async {
            if running_at.get().is_none() && svc.running_tasks().len() == 6 {
                running_at.set(Some(t0.elapsed()));
            }
            let now = svc.hostnames();
            let new: Vec<&String> = now.iter().filter(|h| !before.contains(h)).collect();
            let p = load.progress();
            let answered = new.iter().filter(|h| p.by_backend.contains_key(h.as_str())).count();
            if new.len() == 3 && answered == 3 {
                Ok(())
            } else {
                Err(format!("{} new containers, {answered} answered", new.len()))
            }
        })
        .await;
        // Swarm's part (the CLI's view, polled) and wharf's part after it.
        let running = running_at.get().unwrap_or(took);
        after_running.push(took.saturating_sub(running));
        to_traffic.push(took);
        let to = if round + 1 == rounds { 2 } else { 3 };
        svc.scale(to);
        wait_ready(&w, &svc.name, to as usize, secs(60)).await;
        // Stopped containers are gone before the next round counts "new" ones.
        poll("scaled-down containers are gone", secs(60), || async {
            let n = svc.hostnames().len();
            if n == to as usize {
                Ok(())
            } else {
                Err(format!("{n} containers"))
            }
        })
        .await;
    }
    load.wait_more(50, secs(30), "load flows after scaling down").await;
    let report = load.stop().await;
    report.print("scale 3→6→…→2");
    to_traffic.sort();
    let ms: Vec<u128> = to_traffic.iter().map(|d| d.as_millis()).collect();
    eprintln!(
        "docker service scale 3→6 → all new tasks taking traffic: median {} ms over {} rounds (all: {ms:?})",
        ms[ms.len() / 2],
        ms.len()
    );
    after_running.sort();
    let ms: Vec<u128> = after_running.iter().map(|d| d.as_millis()).collect();
    eprintln!(
        "of which after `docker service ps` showed all 6 running: median {} ms (all: {ms:?})",
        ms[ms.len() / 2]
    );
    report.assert_no_failures("scaling under load");
}

/// Waits until Swarm says the service's last update completed.
async fn wait_update_done(svc: &Service) {
    let what = format!("the rolling update of {} completes", svc.name);
    poll(&what, secs(180), || async {
        let st = docker_try(&[
            "service",
            "inspect",
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
            &svc.name,
        ])?;
        if st == "completed" {
            Ok(())
        } else {
            Err(format!("update state {st:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn rolling_updates_start_first_and_stop_first_under_load_fail_no_request() {
    let swarm = Swarm::join();
    let net = Overlay::create("sw-net");
    let prefix = Swarm::prefix();
    let svc = web(&net, &prefix, 3, &[]);
    let w = swarm.wharf(&net, &prefix, 1, &[]).await;
    wait_ready(&w, &svc.name, 3, secs(60)).await;

    for order in ["start-first", "stop-first"] {
        let load = Load::start(w.listen, "any.test", LoadOpts::gets(8, millis(40)));
        load.wait_more(50, secs(30), "load flows").await;
        let before = svc.hostnames();
        svc.update(&[
            "--force",
            "--update-order",
            order,
            "--update-parallelism",
            "1",
            "--update-delay",
            "0s",
        ]);
        wait_update_done(&svc).await;
        wait_ready(&w, &svc.name, 3, secs(60)).await;
        let after = svc.hostnames();
        assert!(
            after.iter().all(|h| !before.contains(h)),
            "{order}: every task replaced"
        );
        load.wait_answered_by(&after, "the new tasks take traffic").await;
        let report = load.stop().await;
        report.print(&format!("rolling update --update-order {order}"));
        report.assert_no_failures(&format!("rolling update {order}"));
    }
    // Each replaced task drained before it left: from the poll that saw
    // Swarm's decision (`state changed … draining`), or from its container's
    // stop signal on this node if that came first.
    let logs = w.logs();
    let by_poll = logs
        .lines()
        .filter(|l| l.contains("backend state changed") && l.contains("draining"))
        .count();
    let by_signal = logs.lines().filter(|l| l.contains("stop signal: draining")).count();
    eprintln!("old tasks drained: {by_poll}, of which {by_signal} by a stop signal seen before Swarm's decision");
    assert!(by_poll >= 6, "6 replaced tasks drained; wharf's log:\n{logs}");
}

#[tokio::test]
async fn two_wharf_replicas_serve_the_same_pools() {
    let swarm = Swarm::join();
    let net = Overlay::create("sw-net");
    let prefix = Swarm::prefix();
    let svc = web(&net, &prefix, 3, &[]);
    // Two services, one task each: host-mode ports allow one task per port on a node.
    let a = swarm.wharf(&net, &prefix, 1, &[]).await;
    let b = swarm.wharf(&net, &prefix, 1, &[]).await;
    for w in [&a, &b] {
        wait_ready(w, &svc.name, 3, secs(60)).await;
    }
    let (pa, pb) = (state_at(a.admin).await.unwrap(), state_at(b.admin).await.unwrap());
    assert_eq!(pool_view(&pa, &svc.name), pool_view(&pb, &svc.name), "the same table");
    for w in [&a, &b] {
        let by = split(w.listen, 30).await;
        assert_eq!(by.values().copied().collect::<Vec<_>>(), [10, 10, 10], "{by:?}");
    }
}

/// The demo image with a HEALTHCHECK (exec form: the image has no shell).
fn demo_with_healthcheck() -> Image {
    let tag = format!("{}-hc", demo_image());
    let dockerfile = format!(
        "FROM {}\nHEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/wharf-demo\",\"probe\",\"http://127.0.0.1/health\"]\n",
        demo_image()
    );
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker build");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(dockerfile.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "docker build of {tag}");
    Image { tag }
}

#[tokio::test]
async fn a_task_failing_its_healthcheck_takes_no_traffic() {
    let swarm = Swarm::join();
    let image = demo_with_healthcheck();
    let image = image.tag.as_str();
    let net = Overlay::create("sw-net");
    let prefix = Swarm::prefix();
    let pool = format!("{prefix}.pool=web");
    let enable = format!("{prefix}.enable=true");
    let healthy = Service::create(
        "ok",
        &[
            "--network",
            &net.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "2",
            "--label",
            &enable,
            "--label",
            &pool,
            image,
        ],
    );
    let sick = Service::create(
        "sick",
        &[
            "--network",
            &net.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "1",
            "--label",
            &enable,
            "--label",
            &pool,
            "--env",
            "DEMO_HEALTH_FAIL=1",
            image,
        ],
    );
    let w = swarm.wharf(&net, &prefix, 1, &[]).await;
    let admin = w.admin;
    // The sick task shows up, waiting, while its health check fails.
    wait_state_at(admin, secs(60), "the sick task is listed but not ready", |s| {
        let b = pool_backends(s, "web");
        let sick_ones: Vec<&serde_json::Value> = b
            .iter()
            .filter(|b| b["container"].as_str().is_some_and(|c| c.starts_with(&sick.name)))
            .collect();
        let ready = b.iter().filter(|b| b["state"] == "ready").count();
        if ready == 2 && !sick_ones.is_empty() && sick_ones.iter().all(|b| b["state"] != "ready") {
            Ok(())
        } else {
            Err(format!("{b:?}"))
        }
    })
    .await;
    let by = split(w.listen, 100).await;
    let mut hosts: Vec<String> = by.keys().cloned().collect();
    hosts.sort();
    let mut ok = healthy.hostnames();
    ok.sort();
    assert_eq!(
        hosts,
        ok,
        "only the healthy tasks answered: {by:?}; sick: {:?}",
        sick.hostnames()
    );
}

/// wharf's CPU over a minute with 50 idle labelled services (the poll's
/// cost). A benchmark: prints, never asserts, not run in CI
/// (`cargo test --test swarm -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn bench_wharf_cpu_with_50_idle_services() {
    let swarm = Swarm::join();
    let net = Overlay::create("sw-net");
    let prefix = Swarm::prefix();
    let services: Vec<Service> = (0..50).map(|_| web(&net, &prefix, 1, &[])).collect();
    let w = swarm.wharf(&net, &prefix, 1, &[]).await;
    let admin = w.admin;
    wait_state_at(admin, secs(300), "50 pools, each with a ready task", |s| {
        let n = services
            .iter()
            .filter(|svc| pool_view(s, &svc.name).iter().any(|(_, st)| st == "ready"))
            .count();
        if n == 50 {
            Ok(())
        } else {
            Err(format!("{n} of 50"))
        }
    })
    .await;
    let filter = format!("label=com.docker.swarm.service.name={}", w.service.name);
    let id = docker(&["ps", "-q", "--filter", &filter]);
    let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &id]);
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("wharf's /proc stat");
        let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / 100.0
    };
    // Past the fast polls that follow the last task change (10 s).
    tokio::time::sleep(secs(12)).await;
    let syncs0 = state_at(admin).await.unwrap()["discovery"]["syncs"]
        .as_u64()
        .unwrap_or(0);
    let (c0, t0) = (cpu(), Instant::now());
    tokio::time::sleep(secs(60)).await;
    let (used, wall) = (cpu() - c0, t0.elapsed().as_secs_f64());
    let polls = state_at(admin).await.unwrap()["discovery"]["syncs"]
        .as_u64()
        .unwrap_or(0)
        - syncs0;
    eprintln!("{polls} task polls in {wall:.0} s");
    eprintln!(
        "wharf with 50 idle services (51 tasks): {used:.2} s CPU over {wall:.0} s = {:.2}% of one core",
        100.0 * used / wall
    );
}
