//! Least privilege, proven on the real image: it starts as root only to
//! switch at once to uid 65534 (`WHARF_USER`), keeping the Docker socket's
//! group; the kernel then clears every capability. wharf still binds :80
//! and reads Docker.
//!
//! * The SPEC's plain `docker run` (socket mounted, no `--group-add`, no
//!   `--user`): serves a labelled container, and its process (every thread)
//!   is uid 65534 with the socket's group and no capability.
//! * `--cap-drop ALL` without SETUID/SETGID: the switch is refused; wharf
//!   says how to fix it in one warning and serves as root all the same.
//! * `compose-examples/socket-proxy`, brought up by docker-compose with its
//!   hardening as written: wharf, started unprivileged, has no Docker
//!   socket, reads the API through a filtering proxy (the suite's own,
//!   standing in for the example's proxy image, which needs a registry),
//!   splits requests over the scaled replicas, follows a scale-down, and is
//!   refused no call.
//! * `scripts/build-image.sh` (README command 1) makes that image: run with
//!   `--read-only --cap-drop ALL --cap-add SETUID --cap-add SETGID
//!   --security-opt no-new-privileges`, it serves a labelled container on
//!   :80 as uid 65534 and turns healthy.
//! * Started unprivileged (`docker run --user 65534`) without the socket's
//!   group, wharf cannot open the socket: it exits 2 with one line naming
//!   the group to add.
//!
//! The basic and https examples are run hardened by
//! `tests/deployment.rs` and `tests/https_acme.rs` (same checks, via
//! [`Privileges::assert_least`]).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use support::*;
use tokio::task::block_in_place;

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Prints the project's wharf logs when the test fails.
struct LogsOnPanic<'a>(&'a Compose);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.0.try_run(&["logs", "--no-color", "wharf"]).unwrap_or_else(|e| e);
            eprintln!("--- compose wharf logs ---\n{}", support::docker::tail(&logs, 60));
        }
    }
}

/// Where wharf finds the (proxied) Docker API inside its container.
const PROXY_IN_CONTAINER: &str = "/sockproxy/docker.sock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_socket_proxy_example_runs_wharf_unprivileged_without_the_socket_and_is_refused_nothing() {
    let file = workspace_root().join("compose-examples/socket-proxy/compose.yaml");
    let (port, admin_port) = (free_port(), free_port());
    let compose = Compose::new("sockproxy", &file)
        .env("WHARF_IMAGE", wharf_image())
        .env("DEMO_IMAGE", demo_image())
        .env("WHARF_BIND", "127.0.0.1")
        .env("WHARF_PORT", &port.to_string())
        .env("WHARF_ADMIN_PORT", &admin_port.to_string());
    // `-p` does not set it for interpolation; the example names its network by it.
    let project = compose.project.clone();
    let compose = compose.env("COMPOSE_PROJECT_NAME", &project);
    let web_net = format!("{project}_web");

    // The example's proxy service pulls an image; the suite's filtering proxy
    // takes its place (GET/HEAD on wharf's endpoints, the rest refused and
    // recorded), reached over a socket of its own: the Docker socket is
    // never mounted into wharf.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let sock = tmp.join(format!("{project}.sock"));
    let proxy = SocketProxy::filtering(&sock, Filter::wharf_reads());
    // wharf's user (65534) must be able to connect (write) to it.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let over = TempFile(tmp.join(format!("{project}.override.yaml")));
    std::fs::write(
        &over.0,
        format!(
            "version: \"3.7\"\nservices:\n  wharf:\n    environment:\n      DOCKER_HOST: unix://{PROXY_IN_CONTAINER}\n    \
             volumes:\n      - {}:{PROXY_IN_CONTAINER}\n",
            sock.display()
        ),
    )
    .expect("write compose override");
    let over_path = over.0.to_str().expect("utf-8 path").to_string();
    // `--no-deps`: the example's proxy service stays down (no registry here).
    let up = |scale: &str| {
        let started = Instant::now();
        block_in_place(|| {
            compose.run(&[
                "-f",
                &over_path,
                "up",
                "-d",
                "--no-deps",
                "--no-recreate",
                "--scale",
                scale,
                "wharf",
                "web",
            ])
        });
        eprintln!(
            "docker-compose up --scale {scale}: took {} ms",
            started.elapsed().as_millis()
        );
    };
    up("web=2");
    let _logs = LogsOnPanic(&compose);
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));

    let wharf_id = compose.ps_ids("wharf").pop().expect("a wharf container");
    eprintln!(
        "{}",
        Privileges::of_container(&wharf_id).assert_least("socket-proxy wharf")
    );
    let mounts = docker(&["inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", &wharf_id]);
    assert_eq!(
        mounts.split_whitespace().collect::<Vec<_>>(),
        vec![sock.to_str().unwrap()],
        "wharf mounts something besides the proxy's socket"
    );

    // Requests split over both replicas, each answering on the example's `web` network.
    for n in [2usize, 1] {
        if n == 1 {
            up("web=1");
        }
        let ids = compose.ps_ids("web");
        assert_eq!(ids.len(), n, "{ids:?}");
        let addrs: Vec<SocketAddr> = ids.iter().map(|id| (container_ip(id, &web_net), 80).into()).collect();
        let (_, took) = wait_pool(admin, "web", &addrs, secs(60), &format!("pool web: the {n} replicas")).await;
        eprintln!("web={n}: pool in step after {} ms", took.as_millis());
        let want: BTreeSet<String> = ids
            .iter()
            .map(|id| docker(&["inspect", "--format", "{{.Config.Hostname}}", id]))
            .collect();
        let mut seen = BTreeSet::new();
        for i in 0..6 * n {
            let r = get(listen, "sockproxy.test", &format!("/{n}/{i}")).await.unwrap();
            assert_eq!(r.status, 200, "request {i} at web={n}: {r:?}");
            seen.insert(r.header("x-demo-hostname").unwrap_or("?").to_string());
        }
        assert_eq!(seen, want, "replicas answering through wharf at web={n}");
    }

    let calls = proxy.calls();
    let refused: Vec<_> = calls.iter().filter(|c| c.refused.is_some()).collect();
    eprintln!(
        "{} Docker API calls through the proxy, {} refused",
        calls.len(),
        refused.len()
    );
    assert!(
        calls.iter().any(|c| c.target.contains("/events")),
        "no events stream: {calls:#?}"
    );
    assert!(refused.is_empty(), "refused calls: {refused:#?}");
}

/// The published loopback address of container port `port`.
fn published(c: &Container, port: u16) -> SocketAddr {
    let out = docker(&["port", &c.id, &format!("{port}/tcp")]);
    out.lines()
        .find_map(|l| l.trim().parse::<SocketAddr>().ok().filter(|a| a.ip().is_loopback()))
        .unwrap_or_else(|| panic!("port {port} of {} is not published on loopback: {out:?}", c.name))
}

/// A labelled demo on `net` and its host name: what wharf must find and serve.
fn labelled_demo(net: &Network, tag: &str) -> (Container, String, String) {
    let (name, host) = (unique(tag), format!("{}.test", unique(tag)));
    let labels = ["wharf.enable=true".to_string(), format!("wharf.host={host}")];
    let demo = named_demo(&net.name, &name, &[labels[0].as_str(), labels[1].as_str()]);
    (demo, name, host)
}

/// Polls until `host` at `listen` is answered by the demo `name`; the time it took.
async fn wait_served(listen: SocketAddr, host: &str, name: &str, what: &str) -> std::time::Duration {
    let (_, took) = poll(what, secs(45), || async {
        let r = get(listen, host, "/").await?;
        (r.status == 200 && r.header("x-demo-name") == Some(name))
            .then_some(())
            .ok_or(format!("{} {:?}", r.status, r.header("x-demo-name")))
    })
    .await;
    took
}

/// The lines of `logs` that contain `needle`.
fn lines_with<'a>(logs: &'a str, needle: &str) -> Vec<&'a str> {
    logs.lines().filter(|l| l.contains(needle)).collect()
}

/// SPEC "How people run it": `docker run -d --name wharf --network web -p
/// 80:80 -p 127.0.0.1:8081:8081 -v /var/run/docker.sock:…:ro wharf`, nothing
/// more (ports published on loopback here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_run_command_serves_a_labelled_container_as_uid_65534_with_the_sockets_group_and_no_capability() {
    let net = Network::create("spec");
    let (_demo, name, host) = labelled_demo(&net, "spec-web");
    let image = wharf_image();
    let started = Instant::now();
    let wharf = Container::run(
        "spec-wharf",
        &[
            "--network",
            &net.name,
            "-p",
            "127.0.0.1::80",
            "-p",
            "127.0.0.1::8081",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            image,
        ],
    );
    let (listen, admin) = (published(&wharf, 80), published(&wharf, 8081));
    let took = wait_served(listen, &host, &name, "the labelled container is served on :80").await;
    eprintln!(
        "served {} ms after `docker run` (poll {} ms)",
        started.elapsed().as_millis(),
        took.as_millis()
    );
    let st = state_at(admin).await.unwrap();
    assert_eq!(st["discovery"]["connected"], true, "{}", st["discovery"]);

    let gid = docker_gid();
    let me = Privileges::of_container(&wharf.id);
    eprintln!("SPEC docker run: {me:?}");
    assert!(me.uids.iter().all(|&u| u == WHARF_UID), "uids {:?}", me.uids);
    assert!(me.gids.iter().all(|&g| g == WHARF_UID), "gids {:?}", me.gids);
    me.assert_socket_group(&gid, "SPEC docker run");
    assert_eq!(
        (me.cap_eff, me.cap_prm, me.cap_amb),
        (0, 0, 0),
        "capabilities left after the switch: {me:?}"
    );
    let logs = wharf.logs();
    let said = lines_with(&logs, "running as uid");
    assert_eq!(said.len(), 1, "not one 'running as' line:\n{logs}");
    let want = format!("running as uid 65534 gid 65534 (groups: {gid}, the Docker socket's)");
    assert!(said[0].contains(&want), "{want:?} not in: {}", said[0]);
    // (Other tests' containers on this daemon may draw skip warnings: only
    // the privilege warning is ruled out.)
    assert!(lines_with(&logs, "staying root").is_empty(), "{logs}");
}

/// `--cap-drop ALL` alone takes CAP_SETUID/CAP_SETGID: the switch is refused,
/// wharf warns once with the fix and serves as root rather than not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capability_dropped_warns_with_the_fix_and_serves_as_root() {
    let net = Network::create("nocaps");
    let (_demo, name, host) = labelled_demo(&net, "nocaps-web");
    let wharf = Container::run(
        "nocaps-wharf",
        &[
            "--network",
            &net.name,
            "--cap-drop",
            "ALL",
            "-p",
            "127.0.0.1::80",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            wharf_image(),
        ],
    );
    let listen = published(&wharf, 80);
    let took = wait_served(listen, &host, &name, "served as root").await;
    eprintln!("served after {} ms", took.as_millis());
    let me = Privileges::of_container(&wharf.id);
    assert!(me.uids.iter().all(|&u| u == 0), "{me:?}");
    let logs = wharf.logs();
    let warned = lines_with(&logs, "staying root");
    assert_eq!(warned.len(), 1, "not one warning:\n{logs}");
    eprintln!("{}", warned[0]);
    for want in [
        "WARN",
        "uid 65534",
        "operation not permitted",
        "cap_add: [SETUID, SETGID]",
    ] {
        assert!(warned[0].contains(want), "{want:?} missing from: {}", warned[0]);
    }
}

/// Started unprivileged by `docker run --user 65534` (explicit non-root),
/// without the socket's group: nothing to switch, the socket refuses, and
/// wharf exits 2 with one line naming the group to add.
#[test]
fn started_as_user_65534_without_the_sockets_group_exits_2_naming_the_group_to_add() {
    let gid = docker_gid();
    let wharf = Container::run(
        "denied",
        &[
            "--user",
            "65534",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            wharf_image(),
        ],
    );
    let (_, took) = poll_sync("wharf exits", secs(30), || match wharf.status().as_str() {
        "exited" => Ok(()),
        other => Err(format!("status {other}")),
    });
    eprintln!("exited {} ms after `docker run`", took.as_millis());
    let logs = wharf.logs();
    assert_eq!(wharf.exit_code(), 2, "{logs}");
    let errors = lines_with(&logs, "wharf: error:");
    assert_eq!(errors.len(), 1, "not one error line:\n{logs}");
    eprintln!("{}", errors[0]);
    for want in [
        "permission denied",
        "uid 65534",
        &format!("--group-add {gid}"),
        "DOCKER_HOST",
        "start it as root",
    ] {
        assert!(errors[0].contains(want), "{want:?} missing from: {}", errors[0]);
    }
}

/// Image tags removed on drop.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = docker_try(&["image", "rm", "-f", tag]);
        }
    }
}

/// README command 1: `scripts/build-image.sh` (no registry), then the image
/// run with every privilege dropped but SETUID/SETGID (to switch to 65534,
/// after which it holds none), and no `--group-add`: it binds :80, discovers
/// a labelled container and serves it, and its health check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_image_script_makes_an_image_that_serves_as_uid_65534_with_nothing_else() {
    // The script builds what `binaries()` built (same flags, same target
    // dir, debug profile): nothing to recompile.
    binaries();
    let root = workspace_root();
    let suffix = unique("script").to_lowercase();
    let (wharf_tag, demo_tag) = (
        format!("wharf-it/script:{suffix}"),
        format!("wharf-it/script-demo:{suffix}"),
    );
    let _images = Images(vec![wharf_tag.clone(), demo_tag.clone()]);
    let started = Instant::now();
    let out = block_in_place(|| {
        std::process::Command::new(root.join("scripts/build-image.sh"))
            .env("WHARF_TAG", &wharf_tag)
            .env("DEMO_TAG", &demo_tag)
            .env("PROFILE", "debug")
            .env("CARGO_TARGET_DIR", root.join("target").join("static"))
            .env("CARGO_INCREMENTAL", "0")
            // It would override the script's RUSTFLAGS (+crt-static).
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("run scripts/build-image.sh")
    });
    assert!(
        out.status.success(),
        "scripts/build-image.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("scripts/build-image.sh: took {} ms", started.elapsed().as_millis());
    // Starts as root (no USER), switches to WHARF_USER.
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}|{{json .Config.Env}}",
            &wharf_tag
        ])
        .split_once('|')
        .map(|(user, env)| (user.to_string(), env.contains("\"WHARF_USER=65534:65534\""))),
        Some((String::new(), true))
    );

    let net = Network::create("script");
    let (name, host) = (unique("web"), format!("{}.test", unique("script")));
    let web = Container::run(
        "script-web",
        &[
            "--network",
            &net.name,
            "--label",
            "wharf.enable=true",
            "--label",
            &format!("wharf.host={host}"),
            "-e",
            &format!("DEMO_NAME={name}"),
            &demo_tag,
        ],
    );
    let wharf = Container::run(
        "script-wharf",
        &[
            "--network",
            &net.name,
            "--read-only",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SETUID",
            "--cap-add",
            "SETGID",
            "--security-opt",
            "no-new-privileges",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "-p",
            "127.0.0.1::80",
            &wharf_tag,
            "--network",
            &net.name,
        ],
    );
    let port = docker(&["port", &wharf.id, "80/tcp"]);
    let listen: SocketAddr = port
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("port 80 not published: {port:?}"));
    // The script's demo image has a HEALTHCHECK (every 10 s): wharf routes
    // to it once it is healthy.
    poll(
        "the labelled container is served on the published :80",
        secs(45),
        || async {
            let r = get(listen, &host, "/").await?;
            (r.status == 200 && r.header("x-demo-name") == Some(name.as_str()))
                .then_some(())
                .ok_or(format!("{} {:?}", r.status, r.header("x-demo-name")))
        },
    )
    .await;
    let me = Privileges::of_container(&wharf.id);
    eprintln!("{}", me.assert_least("build-image.sh wharf"));
    me.assert_socket_group(&docker_gid(), "build-image.sh wharf");
    poll_sync("the image's health check passes", secs(60), || {
        match wharf.health().as_str() {
            "healthy" => Ok(()),
            other => Err(format!("health {other:?}")),
        }
    });
    drop(web);
}
