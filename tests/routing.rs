//! Routing through a real wharf on the host (`--network <test net>`) to real
//! demo containers: hosts, wildcards, path prefixes, strip_prefix, the error
//! answers (404, 503, 502), retries past a dead port, forwarding headers and
//! h2c from clients.

mod support;

use serde_json::Value;
use support::*;

/// Waits until every pool in `want` has exactly the given backend states.
async fn wait_for_pools(wharf: &Wharf, want: &[(&str, &[&str])]) -> Value {
    poll("wharf lists every test pool", secs(20), || async {
        let s = state_at(wharf.admin).await?;
        for (name, states) in want {
            let got = backend_states(&s, name);
            if got != *states {
                return Err(format!("pool {name}: backends {got:?}, want {states:?}"));
            }
        }
        Ok(s)
    })
    .await
    .0
}

/// One request through wharf on a fresh connection; panics on a transport error.
async fn req(wharf: &Wharf, host: &str, path: &str) -> Resp {
    wharf
        .get(host, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} (Host: {host}) through wharf: {e}"))
}

/// Asserts `r` is a 200 from the demo container named `name`.
fn assert_from(r: &Resp, name: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(
        r.header("x-demo-name"),
        Some(name),
        "{what}: answered by the wrong backend: {r:?}"
    );
}

/// Asserts `r` is wharf's own error answer with `status` and `x-wharf-error: code`.
fn assert_wharf_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(r.header("x-wharf-error"), Some(code), "{what}: {r:?}");
    assert!(r.body.starts_with("wharf: "), "{what}: body {:?}", r.body);
    assert!(r.header("x-demo-name").is_none(), "{what}: a backend answered: {r:?}");
}

#[tokio::test]
async fn routes_by_host_wildcard_and_longest_path_prefix_strips_prefixes_and_answers_404_without_a_route() {
    let net = Network::create("route");
    // Each container is its own pool; DEMO_NAME = pool name.
    let specs: [(&str, &[&str]); 9] = [
        ("one", &["wharf.host=one.test"]),
        ("two", &["wharf.host=two.test,zwei.test"]),
        ("exact", &["wharf.host=a.example.test"]),
        ("wild", &["wharf.host=*.example.test"]),
        ("exactpath", &["wharf.host=c.example.test", "wharf.path=/admin"]),
        ("shop", &["wharf.host=shop.test"]),
        ("api", &["wharf.host=shop.test", "wharf.path=/api"]),
        ("apiv2", &["wharf.host=shop.test", "wharf.path=/api/v2/"]),
        (
            "strip",
            &["wharf.host=strip.test", "wharf.path=/strip", "wharf.strip_prefix=true"],
        ),
    ];
    let names: Vec<String> = specs.iter().map(|(tag, _)| unique(tag)).collect();
    let mut containers = Vec::new();
    for ((_, labels), name) in specs.iter().zip(&names) {
        let pool_label = format!("wharf.pool={name}");
        let mut all = vec![pool_label.as_str()];
        all.extend_from_slice(labels);
        containers.push(named_demo(&net, name, &all));
    }
    let n = |tag: &str| names[specs.iter().position(|(t, _)| *t == tag).unwrap()].as_str();

    wait_demos_listening(&net, &containers.iter().collect::<Vec<_>>()).await;
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let want: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &["ready"][..])).collect();
    let st = wait_for_pools(&wharf, &want).await;

    // The state API shows what the labels asked for.
    let strip = find_pool(&st, n("strip")).unwrap();
    assert_eq!(strip["hosts"], serde_json::json!(["strip.test"]), "{strip}");
    assert_eq!(strip["path"], "/strip", "{strip}");
    assert_eq!(strip["strip_prefix"], true, "{strip}");
    let apiv2 = find_pool(&st, n("apiv2")).unwrap();
    assert_eq!(apiv2["path"], "/api/v2", "trailing slash dropped: {apiv2}");
    assert_eq!(apiv2["strip_prefix"], false, "{apiv2}");
    let two = find_pool(&st, n("two")).unwrap();
    assert_eq!(two["hosts"], serde_json::json!(["two.test", "zwei.test"]), "{two}");
    let c = &containers[1];
    assert_eq!(
        two["backends"][0]["address"],
        c.addr(&net, 80).to_string(),
        "address on --network: {two}"
    );
    assert_eq!(two["backends"][0]["id"], c.id.as_str(), "{two}");
    assert_eq!(two["backends"][0]["container"], c.name.as_str(), "{two}");

    // (Host, path) → the pool that must answer.
    let cases: &[(&str, &str, &str, &str)] = &[
        // Host routing; the host is matched without port, case or final dot.
        ("one.test", "/", "one", "exact host"),
        ("two.test", "/", "two", "first host of a list"),
        ("zwei.test", "/", "two", "second host of a list"),
        ("ONE.Test:8080", "/", "one", "host with case and port"),
        ("one.test.", "/", "one", "fully qualified host"),
        // Wildcard: any subdomain, any depth; the exact host beats it.
        ("a.example.test", "/", "exact", "exact beats wildcard"),
        ("b.example.test", "/", "wild", "wildcard"),
        ("x.y.example.test", "/", "wild", "deeper wildcard"),
        ("B.Example.TEST", "/", "wild", "wildcard, any case"),
        // An exact host without a route for the path falls through to the wildcard.
        ("c.example.test", "/admin/users", "exactpath", "exact host and path"),
        ("c.example.test", "/other", "wild", "exact host, other path: next tier"),
        // Longest prefix wins, on segment boundaries.
        ("shop.test", "/", "shop", "no path label: every path"),
        ("shop.test", "/api", "api", "the prefix itself"),
        ("shop.test", "/api/", "api", "prefix and slash"),
        ("shop.test", "/api/users?x=1", "api", "under the prefix"),
        ("shop.test", "/api/v2", "apiv2", "longer prefix"),
        ("shop.test", "/api/v2/users", "apiv2", "under the longer prefix"),
        ("shop.test", "/api/v2x", "api", "/api/v2x is under /api, not /api/v2"),
        ("shop.test", "/apix", "shop", "/apix is not under /api"),
    ];
    for (host, path, tag, what) in cases {
        let r = req(&wharf, host, path).await;
        assert_from(&r, n(tag), &format!("{what}: Host {host} {path}"));
    }
    let r = req(&wharf, "example.test", "/").await;
    assert_wharf_error(&r, 404, "no-route", "bare domain of a wildcard");

    let r = req(&wharf, "shop.test", "/api/v2/users?id=7").await;
    assert_eq!(
        r.header("x-demo-path"),
        Some("/api/v2/users?id=7"),
        "no strip_prefix: path untouched"
    );

    // strip_prefix: the backend sees the path without the prefix, query kept.
    let r = req(&wharf, "strip.test", "/strip/users?id=1&b=2").await;
    assert_from(&r, n("strip"), "strip");
    assert_eq!(r.header("x-demo-path"), Some("/users?id=1&b=2"), "{r:?}");
    assert!(r.body.contains("GET /users?id=1&b=2 HTTP/1.1"), "{}", r.body);
    let r = req(&wharf, "strip.test", "/strip").await;
    assert_eq!(r.header("x-demo-path"), Some("/"), "{r:?}");
    let r = req(&wharf, "strip.test", "/strip/").await;
    assert_eq!(r.header("x-demo-path"), Some("/"), "{r:?}");
    let r = req(&wharf, "strip.test", "/strip?q=1").await;
    assert_eq!(r.header("x-demo-path"), Some("/?q=1"), "{r:?}");
    let r = req(&wharf, "strip.test", "/stripx").await;
    assert_wharf_error(&r, 404, "no-route", "/stripx is not under /strip");

    // Nothing matches: 404 from wharf itself.
    let r = req(&wharf, "unknown.test", "/").await;
    assert_wharf_error(&r, 404, "no-route", "unknown host");
}

#[tokio::test]
async fn empty_pool_is_503_and_dead_port_is_502_and_retried_elsewhere() {
    let net = Network::create("errors");
    let (drained, dead, mixed) = (unique("drained"), unique("dead"), unique("mixed"));
    let l = |k: &str, v: &str| format!("wharf.{k}={v}");
    let drained_c = named_demo(
        &net,
        &drained,
        &[&l("pool", &drained), "wharf.host=drained.test", "wharf.weight=0"],
    );
    let dead_c = named_demo(
        &net,
        &dead,
        &[&l("pool", &dead), "wharf.host=dead.test", "wharf.port=81"],
    );
    // Same pool: one good backend, one whose port refuses connections.
    let good_name = unique("good");
    let good = named_demo(&net, &good_name, &[&l("pool", &mixed), "wharf.host=mixed.test"]);
    let bad = named_demo(
        &net,
        &unique("bad"),
        &[&l("pool", &mixed), "wharf.host=mixed.test", "wharf.port=81"],
    );

    wait_demos_listening(&net, &[&drained_c, &dead_c, &good, &bad]).await;
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let st = wait_for_pools(
        &wharf,
        &[
            (&drained, &["draining"]),
            (&dead, &["ready"]),
            (&mixed, &["ready", "ready"]),
        ],
    )
    .await;
    let b = &find_pool(&st, &drained).unwrap()["backends"][0];
    assert_eq!(b["weight"], 0, "{b}");

    let r = req(&wharf, "drained.test", "/").await;
    assert_wharf_error(&r, 503, "no-backend", "pool whose only member has weight 0");

    let r = req(&wharf, "dead.test", "/").await;
    assert_wharf_error(&r, 502, "unreachable", "pool whose only member refuses connections");

    // Every request succeeds: a refused connect goes to the other backend.
    let client = Client::new();
    let mut failures = Vec::new();
    for i in 0..50 {
        match client.get(wharf.listen, "mixed.test", &format!("/n/{i}")).await {
            Ok(r) if r.status == 200 && r.header("x-demo-name") == Some(good_name.as_str()) => {}
            Ok(r) => failures.push(format!("#{i}: {} {:?} {}", r.status, r.header("x-demo-name"), r.body)),
            Err(e) => failures.push(format!("#{i}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of 50 failed: {failures:#?}", failures.len());
    // …and the dead port was really tried.
    let st = state_at(wharf.admin).await.unwrap();
    let backends = find_pool(&st, &mixed).unwrap()["backends"].as_array().unwrap().clone();
    let by_name = |name: &str| backends.iter().find(|b| b["container"] == name).cloned().unwrap();
    let (g, d) = (by_name(&good.name), by_name(&bad.name));
    eprintln!("good backend: {g}\ndead-port backend: {d}");
    assert!(d["errors"].as_u64().unwrap() >= 1, "the dead port was never tried: {d}");
    assert!(g["requests"].as_u64().unwrap() >= 50, "{g}");
    assert_eq!(g["errors"], 0, "{g}");
}

#[tokio::test]
async fn forwarding_headers_are_set_host_kept_and_hop_by_hop_dropped() {
    let net = Network::create("headers");
    let name = unique("echo");
    let pool_label = format!("wharf.pool={name}");
    let echo = named_demo(&net, &name, &[&pool_label, "wharf.host=fwd.test"]);
    wait_demos_listening(&net, &[&echo]).await;
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_for_pools(&wharf, &[(&name, &["ready"])]).await;

    let r = wharf
        .request(
            "GET",
            "fwd.test:8080",
            "/headers?a=1",
            &[
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "must not pass"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "yes"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
            b"",
        )
        .await
        .unwrap();
    assert_from(&r, &name, "fwd.test");
    eprintln!("the backend saw:\n{}", r.body);
    assert!(r.body.contains("GET /headers?a=1 HTTP/1.1"), "{}", r.body);
    assert_eq!(
        r.body_field("Host"),
        Some("fwd.test:8080"),
        "Host not kept:\n{}",
        r.body
    );
    assert_eq!(r.body_field("X-Forwarded-Host"), Some("fwd.test:8080"), "{}", r.body);
    assert_eq!(r.body_field("X-Forwarded-Proto"), Some("http"), "{}", r.body);
    // No trusted proxies are configured: the client's own value is replaced.
    assert_eq!(r.body_field("X-Forwarded-For"), Some("127.0.0.1"), "{}", r.body);
    assert_eq!(r.body_field("X-Kept"), Some("yes"), "{}", r.body);
    assert_eq!(
        r.body_field("X-Hop"),
        None,
        "a header named in Connection was forwarded:\n{}",
        r.body
    );
    assert_eq!(
        r.body_field("Keep-Alive"),
        None,
        "hop-by-hop Keep-Alive forwarded:\n{}",
        r.body
    );
}

#[tokio::test]
async fn h2c_clients_are_served_over_concurrent_streams_and_an_idle_h2c_connection_does_not_hold_up_shutdown() {
    let net = Network::create("h2c");
    let name = unique("h2");
    let pool_label = format!("wharf.pool={name}");
    let c = named_demo(&net, &name, &[&pool_label, "wharf.host=h2.test"]);
    wait_demos_listening(&net, &[&c]).await;
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_for_pools(&wharf, &[(&name, &["ready"])]).await;

    // Prior-knowledge HTTP/2: fails outright unless wharf speaks h2c.
    let client = Client::http2();
    let r = client.get(wharf.listen, "h2.test", "/h2?x=1").await.unwrap();
    assert_from(&r, &name, "h2c");
    assert_eq!(r.header("x-demo-path"), Some("/h2?x=1"), "{r:?}");
    // To the backend it is HTTP/1.1, with the client's host.
    assert!(r.body.contains("GET /h2?x=1 HTTP/1.1"), "{}", r.body);
    assert_eq!(r.body_field("Host"), Some("h2.test"), "{}", r.body);

    // Many concurrent streams on the one connection.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (client, addr) = (client.clone(), wharf.listen);
            tokio::spawn(async move { client.get(addr, "h2.test", &format!("/s/{i}")).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap().unwrap();
        assert_from(&r, &name, "concurrent h2c stream");
        assert_eq!(r.header("x-demo-path"), Some(format!("/s/{i}").as_str()));
    }
    let r = client.get(wharf.listen, "nothing.test", "/").await.unwrap();
    assert_wharf_error(&r, 404, "no-route", "h2c to an unknown host");

    // An idle h2c connection does not hold up a graceful shutdown (the
    // client's connection task runs meanwhile, to answer GOAWAY and PING).
    let mut wharf = wharf;
    wharf.sigterm();
    poll("wharf exits with an idle h2c connection open", secs(15), || {
        let running = wharf.running();
        async move { (!running).then_some(()) }
    })
    .await;
    assert_eq!(wharf.wait_exit(secs(1)), Some(0));
    drop(client);
}
