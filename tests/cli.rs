//! The `wharf` command line: help and version, start-up errors (one line,
//! exit 2), `wharf check` against real containers, and a clean exit on SIGTERM.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use support::*;

/// Lines of `out` that carry text.
fn lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// No panic message, no backtrace.
fn assert_no_panic(out: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!out.contains(bad), "output mentions {bad:?}:\n{out}");
    }
}

/// A start-up error: exit 2 and exactly one line, `wharf: error: …`.
fn assert_startup_error(code: i32, out: &str) -> String {
    assert_eq!(code, 2, "exit code; output:\n{out}");
    assert_no_panic(out);
    let l = lines(out);
    assert_eq!(l.len(), 1, "expected one line, got {}:\n{out}", l.len());
    assert!(l[0].starts_with("wharf: error: "), "{out}");
    l[0].to_string()
}

#[test]
fn help_exits_0_and_documents_flags_and_environment() {
    let (code, out) = wharf_run(&["--help"], &[]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "--listen",
        "--network",
        "--admin-listen",
        "WHARF_",
        "check",
        "--user",
        "WHARF_USER",
    ] {
        assert!(out.contains(needle), "--help does not mention {needle:?}:\n{out}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let (code, out) = wharf_run(&["--version"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("wharf {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_flag_is_one_error_line_and_exit_2() {
    let (code, out) = wharf_run(&["--no-such-flag"], &[]);
    assert_eq!(code, 2, "{out}");
    assert_no_panic(&out);
    // clap's error: one `error:` line naming the flag, then at most a usage
    // line and a hint, never the whole help text.
    let errors: Vec<&str> = lines(&out).into_iter().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("--no-such-flag"), "{out}");
    assert!(lines(&out).len() <= 3, "more than an error, a usage and a hint:\n{out}");
    assert!(out.contains("--help"), "no hint towards --help:\n{out}");

    // A bad value names the flag too.
    let (code, out) = wharf_run(&["--listen", "nonsense", "--provider", "none"], &[]);
    assert_eq!(code, 2, "{out}");
    assert_no_panic(&out);
    let errors: Vec<&str> = lines(&out).into_iter().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(
        errors[0].contains("--listen") && errors[0].contains("nonsense"),
        "{out}"
    );

    // --user takes numbers only (the image has no /etc/passwd) and says so.
    let (code, out) = wharf_run(&["--user", "nobody", "--provider", "none"], &[]);
    assert_eq!(code, 2, "{out}");
    let errors: Vec<&str> = lines(&out).into_iter().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("--user") && errors[0].contains("UID[:GID]"), "{out}");
}

#[test]
fn unreachable_docker_is_one_line_naming_the_socket_and_exit_2() {
    let envs = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    // Loopback port 0 so the listeners bind and the Docker connection is what fails.
    let (code, out) = wharf_run(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], &envs);
    let line = assert_startup_error(code, &out);
    assert!(
        line.contains("/nonexistent/docker.sock") || line.contains("DOCKER_HOST"),
        "does not name the socket or DOCKER_HOST: {line}"
    );
    // The same for `wharf check`.
    let (code, out) = wharf_check(&[], &envs);
    let line = assert_startup_error(code, &out);
    assert!(line.contains("/nonexistent/docker.sock"), "{line}");
}

#[test]
fn taken_port_is_one_line_naming_the_flag_and_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let other = format!("127.0.0.1:{}", free_port());
    let statics = ["--provider", "none", "--static", "web=127.0.0.1:9"];

    let mut args = vec!["--listen", &taken_addr, "--admin-listen", &other];
    args.extend(statics);
    let (code, out) = wharf_run(&args, &[]);
    let line = assert_startup_error(code, &out);
    assert!(line.contains("--listen") && line.contains(&taken_addr), "{line}");
    assert!(!line.contains("--admin-listen"), "blames the wrong listener: {line}");

    let mut args = vec!["--listen", &other, "--admin-listen", &taken_addr];
    args.extend(statics);
    let (code, out) = wharf_run(&args, &[]);
    let line = assert_startup_error(code, &out);
    assert!(line.contains("--admin-listen") && line.contains(&taken_addr), "{line}");
    drop(taken);
}

#[test]
fn check_lists_backends_and_bad_labels_and_exits_1() {
    let net = Network::create("check");
    // A label namespace of our own too, so that one run sees only these
    // containers whatever else runs on this Docker host.
    let prefix = format!("itcheck{}", std::process::id());
    let pool = unique("pool");
    let good_labels = [format!("wharf.pool={pool}"), format!("{prefix}.pool={pool}")];
    let bad_labels = [
        format!("wharf.pool={pool}"),
        "wharf.port=http".to_string(),
        format!("{prefix}.pool={pool}"),
        format!("{prefix}.port=http"),
    ];
    let run = |tag: &str, labels: &[String]| {
        let mut args = vec!["--network", &net.name];
        for l in labels {
            args.extend(["--label", l.as_str()]);
        }
        args.push(demo_image());
        Container::run(tag, &args)
    };
    let good = run("good", &good_labels);
    let bad = run("bad", &bad_labels);
    let good_addr = good.addr(&net, 80).to_string();

    let (code, out) = wharf_check(&["--network", &net.name], &[]);
    eprintln!("wharf check:\n{out}");
    assert_eq!(code, 1, "{out}");
    assert_no_panic(&out);
    let row = out
        .lines()
        .find(|l| l.contains(&good.name))
        .unwrap_or_else(|| panic!("good container {} not listed:\n{out}", good.name));
    for cell in [pool.as_str(), good_addr.as_str(), "ready"] {
        assert!(row.contains(cell), "row of {} lacks {cell:?}: {row}\n{out}", good.name);
    }
    let bad_line = out
        .lines()
        .find(|l| l.contains(&bad.name))
        .unwrap_or_else(|| panic!("bad container {} not listed:\n{out}", bad.name));
    assert!(
        bad_line.contains("wharf.port") && bad_line.contains("http"),
        "the reason does not name wharf.port: {bad_line}"
    );

    // The same as JSON: the /api/state shape (docs/api-state.md), exit 1, "ok": false.
    let (code, out) = wharf_check(&["--network", &net.name, "--json"], &[]);
    assert_eq!(code, 1, "{out}");
    let json = &out[out.find("{\n").unwrap_or_else(|| panic!("no JSON document:\n{out}"))..];
    let doc: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(doc["ok"], false, "{out}");
    assert_eq!(doc["schema"], 1);
    let backends = doc["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool.as_str());
    let backends = backends.unwrap_or_else(|| panic!("pool {pool} not in {out}"))["backends"].clone();
    assert!(
        backends
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["container"] == good.name.as_str()
                && b["address"] == good_addr.as_str()
                && b["state"] == "ready"),
        "{out}"
    );
    let skipped = doc["skipped"].as_array().unwrap();
    let reason = skipped
        .iter()
        .find(|s| s["container"] == bad.name.as_str())
        .map(|s| s["reason"].to_string());
    assert!(
        reason.as_ref().is_some_and(|r| r.contains("wharf.port")),
        "{reason:?}\n{out}"
    );

    // Only our namespace: the same verdict, and it is the bad container's fault…
    let (code, out) = wharf_check(&["--network", &net.name, "--label-prefix", &prefix], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{prefix}.port")), "{out}");
    // …because without it there is no problem at all.
    drop(bad);
    let (code, out) = wharf_check(&["--network", &net.name, "--label-prefix", &prefix], &[]);
    eprintln!("wharf check --label-prefix {prefix} after removing the bad container:\n{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&good.name) && out.contains(&good_addr), "{out}");
    assert!(out.contains("no problems"), "{out}");
}

/// The demo backend as a process on the host (no Docker), killed on drop.
struct HostDemo {
    child: Child,
    addr: SocketAddr,
}

impl HostDemo {
    async fn start(name: &str) -> HostDemo {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(&binaries().demo)
            .args(["--listen", &addr.to_string(), "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wharf-demo");
        let demo = HostDemo { child, addr };
        poll("demo backend on the host answers", secs(20), || async {
            get(addr, "demo.test", "/").await.map(|r| r.status)
        })
        .await;
        demo
    }
}

impl Drop for HostDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let demo = HostDemo::start("cli-static").await;
    let backend = format!("web={}", demo.addr);
    let mut wharf = Wharf::spawn(&["--provider", "none", "--static", &backend], &[]).await;
    let r = wharf.get("any.test", "/hello").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-demo-name"), Some("cli-static"), "{r:?}");

    // A request in flight when the signal arrives still gets its answer.
    let listen = wharf.listen;
    let slow = tokio::spawn(async move { get(listen, "any.test", "/slow?ms=4000").await });
    poll("the slow request is in flight", secs(10), || async {
        let s = wharf.admin_get("/api/state").await?;
        let n = s.json()["pools"][0]["backends"][0]["in_flight"].as_u64().unwrap_or(0);
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("in_flight {n}"))
        }
    })
    .await;
    wharf.sigterm();
    let r = slow.await.unwrap().expect("in-flight request during shutdown");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-demo-path"), Some("/slow?ms=4000"), "{r:?}");
    let code = wharf.wait_exit(secs(15));
    assert_eq!(
        code,
        Some(0),
        "wharf did not exit 0 within 15 s of SIGTERM; log:\n{}",
        wharf.log()
    );
    assert!(
        get(listen, "any.test", "/").await.is_err(),
        "the listener still accepts after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_kept_only_from_trusted_proxies() {
    let demo = HostDemo::start("cli-trust").await;
    let backend = format!("web={}", demo.addr);
    let from_outer_proxy = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.test"),
    ];

    // The test's client connects from 127.0.0.1: trusted by the first wharf, not the second.
    let trusting = Wharf::spawn(
        &[
            "--provider",
            "none",
            "--static",
            &backend,
            "--trusted-proxies",
            "127.0.0.0/8,fd00::/8",
        ],
        &[],
    )
    .await;
    let r = trusting
        .request("GET", "inner.test", "/trusted", &from_outer_proxy, b"")
        .await
        .expect("request through the trusting wharf");
    assert_eq!(r.status, 200, "{r:?}");
    eprintln!("behind a trusted proxy the backend saw:\n{}", r.body);
    assert_eq!(
        r.body_field("X-Forwarded-For"),
        Some("203.0.113.9, 127.0.0.1"),
        "{}",
        r.body
    );
    assert_eq!(r.body_field("X-Forwarded-Proto"), Some("https"), "{}", r.body);
    assert_eq!(r.body_field("X-Forwarded-Host"), Some("shop.test"), "{}", r.body);
    assert_eq!(r.body_field("Host"), Some("inner.test"), "{}", r.body);

    let wary = Wharf::spawn(
        &[
            "--provider",
            "none",
            "--static",
            &backend,
            "--trusted-proxies",
            "10.0.0.0/8",
        ],
        &[],
    )
    .await;
    let r = wary
        .request("GET", "inner.test", "/untrusted", &from_outer_proxy, b"")
        .await
        .expect("request through the wary wharf");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_field("X-Forwarded-For"), Some("127.0.0.1"), "{}", r.body);
    assert_eq!(r.body_field("X-Forwarded-Proto"), Some("http"), "{}", r.body);
    assert_eq!(r.body_field("X-Forwarded-Host"), Some("inner.test"), "{}", r.body);
}

#[test]
fn a_bad_trusted_proxy_is_a_one_line_error_with_exit_2() {
    let args = [
        "--provider",
        "none",
        "--static",
        "web=127.0.0.1:9",
        "--trusted-proxies",
        "10.0.0/8",
    ];
    let (code, out) = wharf_run(&args, &[]);
    let line = assert_startup_error(code, &out);
    assert!(
        line.contains("--trusted-proxies") && line.contains("10.0.0/8"),
        "{line}"
    );
}
