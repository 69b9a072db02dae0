//! wharf deployed the ways people run it: in a container with the Docker
//! socket mounted (finding its own networks), the compose example scaled
//! 1 → 3 → 1, and on the host behind a Docker socket whose connections are
//! cut (it keeps serving, reconnects and re-lists) or whose events stream
//! is narrowed to one network (a quiet host); the socket interceptor is
//! tests/support/sockproxy.rs.
//!
//! Every backend here carries a `wharf.host` label of its own: a wharf in a
//! container also sees the containers of the other tests, and a backend
//! without a host would serve any host there. The compose example's `web`
//! has no host label, so its tests run one at a time, and they fail if some
//! other labelled container without a host runs on the same Docker host
//! (see `two_compose_projects_keep_their_own_backends`).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use support::*;

/// A demo container on `net` calling itself `name`, in pool `pool` for host `host`.
fn pool_demo(net: &str, name: &str, pool: &str, host: &str) -> Container {
    named_demo(
        net,
        name,
        &[&format!("wharf.pool={pool}"), &format!("wharf.host={host}")],
    )
}

/// The loopback address Docker published container port `port` on.
fn published(c: &Container, port: u16) -> SocketAddr {
    let out = docker(&["port", &c.id, &format!("{port}/tcp")]);
    out.lines()
        .find_map(|l| l.trim().parse::<SocketAddr>().ok().filter(|a| a.ip().is_loopback()))
        .unwrap_or_else(|| panic!("port {port} of {} is not published on loopback: {out:?}", c.name))
}

/// A 200 answered by the demo named `name`, or what came instead.
async fn served_by(listen: SocketAddr, host: &str, name: &str) -> Result<Resp, String> {
    let r = get(listen, host, "/").await?;
    if r.status == 200 && r.header("x-demo-name") == Some(name) {
        Ok(r)
    } else {
        Err(format!(
            "{} from {:?}: {}",
            r.status,
            r.header("x-demo-name"),
            r.body.trim()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wharf_in_a_container_finds_its_networks_on_its_own() {
    let front = Network::create("dep-front");
    let back = Network::create("dep-back");
    // A network wharf never joins: it makes each backend's choice depend on
    // which network it shares with wharf, not on "its only network".
    let elsewhere = Network::create("dep-elsewhere");

    let (pool1, name1, host1) = (unique("p1"), unique("one"), format!("{}.test", unique("one")));
    let demo1 = pool_demo(&front, &name1, &pool1, &host1);
    demo1.connect(&elsewhere, &[]);
    wait_listening(demo1.addr(&front, 80), "demo1").await;

    let started = Instant::now();
    // As the SPEC runs it: socket mounted, no --group-add, no --user.
    let wharf = Container::run(
        "wharf",
        &[
            "--network",
            &front.name,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "-p",
            "127.0.0.1::80",
            "-p",
            "127.0.0.1::8081",
            wharf_image(),
        ],
    );
    let (listen, admin) = (published(&wharf, 80), published(&wharf, 8081));
    eprintln!("wharf container {} on {listen}, admin {admin}", wharf.name);
    poll("demo1 served through wharf's published port", secs(30), || {
        served_by(listen, &host1, &name1)
    })
    .await;
    eprintln!(
        "served-after-start (wharf in a container): {} ms after `docker run`",
        started.elapsed().as_millis()
    );

    // Started as root, it switched to 65534 keeping the socket's group.
    let me = Privileges::of_container(&wharf.id);
    assert!(
        me.uids.iter().all(|&u| u == WHARF_UID) && me.cap_eff == 0 && me.cap_prm == 0,
        "the image's process is not unprivileged: {me:?}"
    );
    me.assert_socket_group(&docker_gid(), "wharf container");
    eprintln!("wharf container runs as uid {:?}, groups {:?}", me.uids, me.groups);

    let st = state_at(admin).await.unwrap();
    assert_eq!(
        st["discovery"]["self_container"], wharf.id,
        "wharf did not recognise its own container: {}",
        st["discovery"]
    );
    let b = pool_backends(&st, &pool1);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        b[0]["address"],
        demo1.addr(&front, 80).to_string(),
        "not the address on the shared network"
    );

    // A backend on `back` and `elsewhere`, neither shared with wharf yet: skipped, it is unreachable.
    let (pool2, name2, host2) = (unique("p2"), unique("two"), format!("{}.test", unique("two")));
    let demo2 = pool_demo(&back, &name2, &pool2, &host2);
    demo2.connect(&elsewhere, &[]);
    wait_listening(demo2.addr(&back, 80), "demo2").await;
    let what = "demo2 skipped while it shares no network with wharf";
    let (reason, _) = wait_state_at(admin, secs(20), what, |s| {
        skip_reason(s, &demo2.name).ok_or_else(|| format!("not skipped; pool: {:?}", pool_view(s, &pool2)))
    })
    .await;
    eprintln!("demo2 skipped: {reason}");
    assert!(reason.contains("shares no network with wharf"), "{reason}");
    // (Not necessarily a 404: a wharf in a container also sees the other
    // tests' containers, and one without a host label serves any host.)
    let r = get(listen, &host2, "/").await.unwrap();
    assert_ne!(
        r.header("x-demo-name"),
        Some(name2.as_str()),
        "served while skipped: {r:?}"
    );

    // wharf joins `back`: demo2 is reached there, demo1 still on `front`.
    let joined = Instant::now();
    wharf.connect(&back, &[]);
    let in_pool = vec![(demo2.addr(&back, 80).to_string(), "ready".to_string())];
    let what = "demo2 in its pool once wharf shares `back` with it";
    wait_state_at(admin, secs(20), what, |s| {
        let v = pool_view(s, &pool2);
        if v == in_pool {
            Ok(())
        } else {
            Err(format!("pool {v:?}"))
        }
    })
    .await;
    eprintln!(
        "in the pool {} ms after `docker network connect`",
        joined.elapsed().as_millis()
    );
    poll("demo2 served", secs(20), || served_by(listen, &host2, &name2)).await;
    let r = served_by(listen, &host1, &name1).await;
    assert!(r.is_ok(), "demo1 no longer served: {r:?}");
    let st = state_at(admin).await.unwrap();
    assert_eq!(
        pool_view(&st, &pool1),
        vec![(demo1.addr(&front, 80).to_string(), "ready".into())]
    );
    assert_eq!(pool_view(&st, &pool2), in_pool);

    // wharf leaves `back`: demo2 is ambiguous again and leaves the pool.
    let left = Instant::now();
    wharf.disconnect(&back);
    wait_state_at(admin, secs(20), "demo2 leaves once wharf leaves `back`", |s| {
        let v = pool_view(s, &pool2);
        let skipped = skip_reason(s, &demo2.name).is_some();
        if v.is_empty() && skipped {
            Ok(())
        } else {
            Err(format!("pool {v:?}, skipped {skipped}"))
        }
    })
    .await;
    eprintln!(
        "left the pool {} ms after `docker network disconnect`",
        left.elapsed().as_millis()
    );
    let r = served_by(listen, &host1, &name1).await;
    assert!(r.is_ok(), "demo1 no longer served: {r:?}");

    // The image's HEALTHCHECK (`wharf healthcheck` against the admin listener) passes.
    poll_sync("wharf's container turns healthy", secs(30), || {
        let h = wharf.health();
        if h == "healthy" {
            Ok(())
        } else {
            Err(format!("health {h:?}"))
        }
    });
}

/// The compose example tests run one at a time: each wharf of the example
/// would see the other project's `web` containers.
static COMPOSE_EXAMPLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `compose-examples/basic` up with the test images, wharf published on
/// loopback only; returns the project and wharf's two published addresses.
/// The free ports are released before Docker binds them: on a clash, again
/// with new ports.
fn up_basic_example() -> (Compose, SocketAddr, SocketAddr) {
    let file = workspace_root().join("compose-examples/basic/compose.yaml");
    for attempt in 1.. {
        let (port, admin_port) = (free_port(), free_port());
        let compose = Compose::new("basic", &file)
            .env("WHARF_IMAGE", wharf_image())
            .env("DEMO_IMAGE", demo_image())
            .env("WHARF_BIND", "127.0.0.1")
            .env("WHARF_PORT", &port.to_string())
            .env("WHARF_ADMIN_PORT", &admin_port.to_string());
        match compose.try_run(&["up", "-d"]) {
            Ok(_) => {
                return (
                    compose,
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    SocketAddr::from(([127, 0, 0, 1], admin_port)),
                )
            }
            Err(e) if attempt < 3 && (e.contains("already allocated") || e.contains("already in use")) => {
                eprintln!("compose up: port clash on attempt {attempt}, retrying on new ports: {e}");
            }
            Err(e) => panic!("{e}"),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_example_runs_unprivileged_and_scaled_1_3_1_routes_to_exactly_its_replicas() {
    let _serial = COMPOSE_EXAMPLE.lock().await;
    let (compose, listen, admin) = up_basic_example();
    let wharf_ids = compose.ps_ids("wharf");
    assert_eq!(wharf_ids.len(), 1, "{wharf_ids:?}");
    // As the example asks: started as root with only SETUID/SETGID, it
    // switched to uid 65534 keeping the socket's group and holds no
    // capability (it binds :80 all the same), no privilege gain, read-only;
    // the demo keeps one capability.
    let me = Privileges::of_container(&wharf_ids[0]);
    eprintln!("{}", me.assert_least("compose wharf"));
    me.assert_socket_group(&docker_gid(), "compose wharf");
    let web = Privileges::of_container(&compose.ps_ids("web")[0]);
    assert!(
        web.no_new_privs && web.read_only_root && web.cap_eff == 1 << 10,
        "{web:?}"
    );
    let published = docker(&["port", &wharf_ids[0], "80/tcp"]);
    assert!(
        published.lines().all(|l| l.starts_with("127.0.0.1:")),
        "wharf's port is published beyond loopback: {published}"
    );

    for n in [1usize, 3, 1] {
        let scaled = Instant::now();
        compose.scale("web", n);
        let command = scaled.elapsed();
        let ids = compose.ps_ids("web");
        assert_eq!(ids.len(), n, "web containers: {ids:?}");
        let addrs: Vec<SocketAddr> = compose.ips("web").into_iter().map(|ip| (ip, 80).into()).collect();
        for a in &addrs {
            wait_listening(*a, "web replica").await;
        }
        let what = format!("pool web has exactly the {n} compose replicas");
        let (st, took) = wait_pool(admin, "web", &addrs, secs(20), &what).await;
        eprintln!(
            "scale web={n}: docker-compose took {} ms; pool in step {} ms after it returned \
             (the first check, after listing and probing the replicas, took {} ms)",
            command.as_millis(),
            (scaled.elapsed() - command).as_millis(),
            took.as_millis()
        );
        assert_eq!(st["discovery"]["self_container"], wharf_ids[0].as_str());

        let mut want: BTreeSet<String> = BTreeSet::new();
        for id in &ids {
            want.insert(docker(&["inspect", "--format", "{{.Config.Hostname}}", id]));
        }
        let mut seen = BTreeSet::new();
        for i in 0..6 * n {
            let r = get(listen, "basic.test", &format!("/scale/{n}/{i}"))
                .await
                .unwrap_or_else(|e| panic!("request {i} at web={n}: {e}"));
            assert_eq!(
                r.status, 200,
                "request {i} at web={n}: {r:?}\nroutes: {}\nproblems: {}",
                st["routes"], st["problems"]
            );
            seen.insert(r.header("x-demo-hostname").unwrap_or("?").to_string());
        }
        assert_eq!(seen, want, "hostnames answering through wharf at web={n}");
    }
}

fn discovery(s: &Value) -> (bool, u64, u64) {
    let d = &s["discovery"];
    (
        d["connected"].as_bool().unwrap_or(false),
        d["reconnects"].as_u64().unwrap_or(0),
        d["syncs"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_connection_cut_keeps_serving_then_reconnects_and_relists() {
    let net = Network::create("cut");
    let (pool, host) = (unique("pool"), format!("{}.test", unique("cut")));
    let name1 = unique("first");
    let demo1 = pool_demo(&net, &name1, &pool, &host);
    wait_listening(demo1.addr(&net, 80), "demo1").await;

    let sock = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.sock", unique("docker")));
    let mut proxy = SocketProxy::start(&sock);
    let docker_host = format!("unix://{}", sock.display());
    let started = Instant::now();
    let wharf = Wharf::spawn(&["--network", &net.name], &[("DOCKER_HOST", &docker_host)]).await;
    poll("demo1 served", secs(20), || served_by(wharf.listen, &host, &name1)).await;
    eprintln!(
        "served-after-start (wharf on the host): {} ms after spawn",
        started.elapsed().as_millis()
    );
    let st = wharf.state().await;
    let (connected, reconnects0, _) = discovery(&st);
    assert!(connected, "{}", st["discovery"]);
    assert_eq!(
        st["discovery"]["docker_host"],
        docker_host.as_str(),
        "{}",
        st["discovery"]
    );
    assert!(proxy.accepted() >= 1, "wharf never connected through the proxy");

    // Cut: the events stream and every other connection die, new ones are refused.
    let cut_at = Instant::now();
    let cut = proxy.cut().await;
    eprintln!("cut {cut} proxied connection(s)");
    let (st, noticed) = wait_state_at(wharf.admin, secs(20), "wharf notices the cut", |s| match discovery(s) {
        (false, r, _) if r > reconnects0 => Ok(s.clone()),
        d => Err(format!("(connected, reconnects, syncs) = {d:?}")),
    })
    .await;
    eprintln!("disconnect noticed {} ms after the cut", noticed.as_millis());
    assert!(!st["discovery"]["last_error"].is_null(), "{}", st["discovery"]);
    let (_, reconnects_cut, syncs_cut) = discovery(&st);

    // A second backend starts while wharf is blind.
    let name2 = unique("second");
    let demo2 = pool_demo(&net, &name2, &pool, &host);
    let demo2_started = Instant::now();
    let addr2 = demo2.addr(&net, 80);
    wait_listening(addr2, "demo2").await;
    // Meanwhile wharf keeps serving the last known backend (and only it), and
    // keeps trying to reconnect. Long enough that demo2's start event is out
    // of the window the events stream replays on reconnect (`since` = now - 1 s).
    let only1 = vec![(demo1.addr(&net, 80).to_string(), "ready".to_string())];
    stays("demo1 alone served during the outage", secs(3), || async {
        served_by(wharf.listen, &host, &name1).await?;
        let s = state_at(wharf.admin).await?;
        match (discovery(&s).0, pool_view(&s, &pool)) {
            (false, v) if v == only1 => Ok(()),
            (c, v) => Err(format!("connected {c}, pool {v:?}")),
        }
    })
    .await;
    let st = wharf.state().await;
    let (_, reconnects_out, syncs_out) = discovery(&st);
    eprintln!(
        "outage: reconnect attempts {reconnects_cut} → {reconnects_out}, syncs {syncs_cut} → {syncs_out}, \
         demo2 started {} ms before the proxy comes back",
        demo2_started.elapsed().as_millis()
    );
    assert!(
        reconnects_out > reconnects_cut,
        "no reconnect attempt during the outage"
    );
    assert_eq!(syncs_out, syncs_cut, "a sync happened while Docker was unreachable");

    // Back: wharf reconnects, re-lists and serves demo2.
    let restored = Instant::now();
    proxy.restore();
    let (_, took) = poll("demo2 served after the proxy is back", secs(20), || {
        served_by(wharf.listen, &host, &name2)
    })
    .await;
    eprintln!(
        "reconnect: demo2 served {} ms after the proxy came back (outage {} ms)",
        took.as_millis(),
        restored.duration_since(cut_at).as_millis()
    );
    let mut want = vec![
        (demo1.addr(&net, 80).to_string(), "ready".to_string()),
        (addr2.to_string(), "ready".to_string()),
    ];
    want.sort();
    let st = wharf.state().await;
    assert_eq!(pool_view(&st, &pool), want);
    let (connected, _, syncs) = discovery(&st);
    assert!(connected && syncs > syncs_out, "{}", st["discovery"]);
    // Both backends take turns again.
    let mut names = BTreeSet::new();
    for _ in 0..6 {
        let r = get(wharf.listen, &host, "/").await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        names.insert(r.header("x-demo-name").unwrap_or("?").to_string());
    }
    assert_eq!(names, BTreeSet::from([name1, name2]));
}

/// Two copies of the compose example on one Docker host (two projects, each
/// with its own network, wharf and `web` service): each wharf must route only
/// to its own project's replicas. A wharf in a container cannot reach a
/// container on a network it is not attached to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compose_projects_keep_their_own_backends() {
    let _serial = COMPOSE_EXAMPLE.lock().await;
    let (other, _, _) = up_basic_example();
    let other_ips = other.ips("web");
    let (compose, listen, admin) = up_basic_example();
    let own: Vec<SocketAddr> = compose.ips("web").into_iter().map(|ip| (ip, 80).into()).collect();
    assert_eq!(own.len(), 1, "{own:?}");
    wait_listening(own[0], "own web replica").await;
    let own_addr = own[0].to_string();
    let (st, _) = wait_state_at(admin, secs(20), "own replica in pool web", |s| {
        let v = pool_view(s, "web");
        if v.iter().any(|(a, _)| *a == own_addr) {
            Ok(s.clone())
        } else {
            Err(format!("pool web: {v:?}"))
        }
    })
    .await;
    let foreign: Vec<(String, String)> = pool_view(&st, "web")
        .into_iter()
        .filter(|(a, _)| *a != own_addr)
        .collect();
    assert!(
        foreign.is_empty(),
        "the wharf of project {} routes pool web also to {foreign:?}: project {}'s replicas {other_ips:?}, \
         on a network it is not attached to ({}); backends: {}",
        compose.project,
        other.project,
        other.default_network(),
        serde_json::to_string_pretty(&pool_backends(&st, "web")).unwrap()
    );
    let hostname = docker(&["inspect", "--format", "{{.Config.Hostname}}", &compose.ps_ids("web")[0]]);
    for i in 0..10 {
        let r = get(listen, "basic.test", &format!("/own/{i}")).await.unwrap();
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(
            r.header("x-demo-hostname"),
            Some(hostname.as_str()),
            "request {i}: {r:?}"
        );
    }
}

/// On a quiet Docker host (simulated: the socket proxy lets only the extra
/// network's events reach wharf), `docker network connect` and `disconnect`
/// must still change the routing within seconds, not at the next periodic
/// re-list. The daemon's container listing lags those events by a few
/// milliseconds, so a re-list made right after the event can still show the
/// old networks; on a busy host the next unrelated event hides that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_connect_and_disconnect_change_the_pool_within_ten_seconds_on_a_quiet_docker_host() {
    let home = Network::create("quiet-home");
    let extra = Network::create("quiet-extra");
    let (pool, host) = (unique("quiet"), format!("{}.test", unique("quiet")));
    let c = pool_demo(&home, &unique("q"), &pool, &host);
    let addr = c.addr(&home, 80);
    wait_listening(addr, "backend").await;

    let sock = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.sock", unique("quiet")));
    let _proxy = SocketProxy::quiet(&sock, &extra.name);
    let docker_host = format!("unix://{}", sock.display());
    // No --network: on two networks the backend is ambiguous, hence skipped.
    let wharf = Wharf::spawn(&[], &[("DOCKER_HOST", &docker_host)]).await;
    let in_pool = |s: &Value| {
        let v = pool_view(s, &pool);
        if v == [(addr.to_string(), "ready".to_string())] {
            Ok(())
        } else {
            Err(format!("pool {v:?}"))
        }
    };
    let ambiguous = |s: &Value| {
        let skipped = skip_reason(s, &c.name).is_some_and(|r| r.contains("ambiguous"));
        let v = pool_view(s, &pool);
        if skipped && v.is_empty() {
            Ok(())
        } else {
            Err(format!("skipped as ambiguous: {skipped}; pool {v:?}"))
        }
    };
    wait_state_at(wharf.admin, secs(10), "backend in its pool (first listing)", in_pool).await;
    let mut times = Vec::new();
    for round in 1..=8 {
        c.connect(&extra, &[]);
        let what = format!("round {round}: skipped after `docker network connect`");
        times.push(
            wait_state_at(wharf.admin, secs(10), &what, ambiguous)
                .await
                .1
                .as_millis(),
        );
        c.disconnect(&extra);
        let what = format!("round {round}: back in the pool after `docker network disconnect`");
        times.push(wait_state_at(wharf.admin, secs(10), &what, in_pool).await.1.as_millis());
    }
    let st = wharf.state().await;
    eprintln!(
        "quiet host: times (ms) {times:?}; events seen {}, syncs {}",
        st["discovery"]["events"], st["discovery"]["syncs"]
    );
}
