//! Hostile clients against the wharf binary: connection floods meet
//! `--max-connections` and a descriptor limit, and the admin listener keeps
//! answering `/healthz` through it all.

mod support;

use std::time::Instant;

use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Whether wharf closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once_and_the_others_kept() {
    let backend = format!("web=127.0.0.1:{}", free_port());
    let wharf = Wharf::spawn(
        &[
            "--provider",
            "none",
            "--static",
            &backend,
            "--max-connections",
            "5",
            "--workers",
            "2",
            // Silent connections reach wharf at once: what this test is
            // about (with the default deferral the kernel holds them for 1 s;
            // see the next test).
            "--defer-accept",
            "0",
        ],
        &[],
    )
    .await;
    let mut kept = Vec::new();
    for _ in 0..5 {
        kept.push(TcpStream::connect(wharf.listen).await.expect("connect"));
    }
    // The five hold their slots before any other connection is tried (two
    // workers accept independently: a probe could otherwise take a slot).
    poll("the five connections are accepted", secs(20), || async {
        let open = wharf.metric("wharf_connections_open").await;
        (open == 5).then_some(()).ok_or(format!("{open} open"))
    })
    .await;
    let (_, took) = poll("a sixth connection is closed at once", secs(20), || async {
        let mut extra = TcpStream::connect(wharf.listen).await.ok()?;
        closed_within(&mut extra, secs(2)).await.then_some(())
    })
    .await;
    println!("sixth connection refused after {took:?}");
    for (i, s) in kept.iter_mut().enumerate() {
        assert!(
            !closed_within(s, millis(200)).await,
            "connection {i} under the limit was closed"
        );
    }
    assert!(
        wharf.log().contains("--max-connections reached"),
        "the refusal is logged"
    );
    drop(kept);
    // The slots come back: a new connection is served.
    let (r, _) = poll("a request is served once the flood is gone", secs(20), || async {
        wharf.get("any.test", "/").await
    })
    .await;
    assert_eq!(r.status, 502, "the static backend is not listening: wharf's own 502");
}

#[tokio::test]
async fn a_silent_connection_waits_in_the_kernel_and_leaves_the_only_place_to_a_request() {
    let backend = format!("web=127.0.0.1:{}", free_port());
    let args = |defer| {
        [
            "--provider",
            "none",
            "--static",
            backend.as_str(),
            "--max-connections",
            "1",
            "--workers",
            "1",
            // The 502 at once: a lone new backend that refuses is otherwise
            // waited for up to the connect timeout (labels.md, "Cold start").
            "--connect-timeout",
            "100ms",
            "--defer-accept",
            defer,
        ]
    };
    // Deferred (3 s: the kernel hands a silent connection over when the
    // client answers the SYN-ACK it sends again then): the silent connection
    // is not wharf's yet, so the request gets the one place and wharf's own
    // 502 (its backend is not listening). Were the silent one handed over
    // first, the request's connection would be closed unanswered.
    let deferred = Wharf::spawn(&args("3s"), &[]).await;
    let silent = TcpStream::connect(deferred.listen).await.expect("connect");
    let connected = Instant::now();
    let r = deferred
        .get("any.test", "/")
        .await
        .expect("a request while the silent one waits");
    let took = connected.elapsed();
    println!("request answered {} {took:?} after the silent connection", r.status);
    assert_eq!(r.status, 502, "served, not refused");
    drop(silent);
    // Not deferred: the silent connection takes the place and the request's
    // connection is closed at once, without an answer.
    let at_once = Wharf::spawn(&args("0"), &[]).await;
    let _silent = TcpStream::connect(at_once.listen).await.expect("connect");
    let (_, took) = poll("the silent connection holds the only place", secs(20), || async {
        let refused = at_once.metric("wharf_connections_refused_total").await;
        if refused > 0 {
            return Some(());
        }
        // Each try is a connection over the cap once the silent one is in.
        let _ = at_once.get("any.test", "/").await;
        None
    })
    .await;
    println!("without deferral a request was refused after {took:?}");
    assert!(
        at_once.log().contains("--max-connections reached"),
        "the refusal is logged"
    );
}

#[tokio::test]
async fn healthz_answers_while_a_flood_of_connections_meets_a_256_descriptor_limit() {
    let backend = format!("web=127.0.0.1:{}", free_port());
    let wharf = Wharf::start_in(
        &["prlimit", "--nofile=256:256", "--"],
        // Silent connections reach wharf at once (the default deferral would
        // hold them in the kernel for the test's first second).
        &[
            "--provider",
            "none",
            "--static",
            &backend,
            "--workers",
            "1",
            "--defer-accept",
            "0",
        ],
        &[],
    )
    .wait_ready(secs(30))
    .await;
    // Twice the descriptors wharf has, all silent (held past the test by the idle timeout).
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..512 {
        match TcpStream::connect(wharf.listen).await {
            Ok(s) => flood.push(s),
            Err(e) => println!("connect failed after {} connections: {e}", flood.len()),
        }
    }
    println!("{} flood connections opened in {:?}", flood.len(), started.elapsed());
    let (r, took) = poll("/healthz answers during the flood", secs(20), || async {
        wharf.admin_get("/healthz").await.ok().filter(|r| r.status == 200)
    })
    .await;
    println!("/healthz answered {} after {took:?}", r.status);
    assert!(
        wharf.log().contains("max_connections=96"),
        "auto: (256 - 64 reserved) / 2 = 96 client connections"
    );
    // Several times in a row, not once by luck.
    for _ in 0..5 {
        let r = wharf.admin_get("/healthz").await.expect("/healthz during the flood");
        assert_eq!(r.status, 200);
    }
    drop(flood);
}

/// One raw HTTP/1.0 request to the admin listener; the response's status.
async fn admin_status(wharf: &Wharf, path: &str, host: &str, auth: Option<&str>) -> u16 {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(wharf.admin).await.expect("connect to admin");
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let head = read_head(&mut s, &mut buf).await.expect("a response").expect("a head");
    Head::parse(&head).unwrap().status().unwrap()
}

#[tokio::test]
async fn the_admin_listener_answers_only_its_hosts_and_wants_the_token_for_api_and_metrics() {
    let backend = format!("web=127.0.0.1:{}", free_port());
    let wharf = Wharf::spawn(
        &[
            "--provider",
            "none",
            "--static",
            &backend,
            "--admin-hosts",
            "localhost,127.0.0.1",
        ],
        &[("WHARF_ADMIN_TOKEN", "s3cret")],
    )
    .await;
    let bearer = Some("Bearer s3cret");
    assert_eq!(
        admin_status(&wharf, "/api/state", "rebound.example:8081", bearer).await,
        421
    );
    assert_eq!(admin_status(&wharf, "/api/state", "localhost:8081", None).await, 401);
    assert_eq!(
        admin_status(&wharf, "/metrics", "127.0.0.1", Some("Bearer nope")).await,
        401
    );
    assert_eq!(admin_status(&wharf, "/api/state", "localhost:8081", bearer).await, 200);
    assert_eq!(admin_status(&wharf, "/metrics", "127.0.0.1", bearer).await, 200);
    // Health probes need neither.
    assert_eq!(admin_status(&wharf, "/healthz", "rebound.example", None).await, 200);
    assert_eq!(admin_status(&wharf, "/readyz", "rebound.example", None).await, 200);
    assert!(!wharf.log().contains("s3cret"), "the token is never logged");
}

#[tokio::test]
async fn wharf_discovers_through_a_read_only_filtering_socket_proxy_and_is_refused_nothing() {
    require_docker();
    let net = Network::create("lp");
    let sock = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.sock", unique("lp")));
    // GET/HEAD on the endpoints wharf needs; anything else is answered 403 and recorded.
    let proxy = SocketProxy::filtering(&sock, Filter::wharf_reads());
    let docker_host = format!("unix://{}", sock.display());
    let (pool, host) = (unique("pool"), format!("{}.test", unique("lp")));
    let name = unique("web");
    let labels = [format!("wharf.pool={pool}"), format!("wharf.host={host}")];
    let web = named_demo(&net.name, &name, &[labels[0].as_str(), labels[1].as_str()]);
    let wharf = Wharf::spawn(&["--network", &net.name], &[("DOCKER_HOST", &docker_host)]).await;
    // Discovery at start (listing), routing, then events: a stop leaves the pool.
    let (_, took) = poll("the labelled container is served", secs(30), || async {
        let r = wharf.get(&host, "/").await?;
        (r.status == 200 && r.header("x-demo-name") == Some(name.as_str()))
            .then_some(())
            .ok_or(format!("{} {:?}", r.status, r.header("x-demo-name")))
    })
    .await;
    println!("served {took:?} after start through the filtering proxy");
    web.stop(1);
    poll("the stopped container leaves the pool", secs(30), || async {
        let r = wharf.get(&host, "/").await?;
        (r.status == 503 || r.status == 404)
            .then_some(())
            .ok_or(format!("{}", r.status))
    })
    .await;
    let calls = proxy.calls();
    let refused: Vec<_> = calls.iter().filter(|c| c.refused.is_some()).collect();
    println!("{} Docker API calls, {} refused", calls.len(), refused.len());
    assert!(!calls.is_empty(), "wharf never went through the proxy");
    assert!(refused.is_empty(), "refused calls: {refused:#?}");
}
