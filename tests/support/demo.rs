//! The demo backend (`wharf-demo`) in containers: run it with `wharf.*`
//! labels, wait until it listens, and ask it directly what it received.
//!
//! `docker run -d` returns before the demo server listens, and wharf routes
//! to a running container without a health check at once: tests that count
//! failed requests wait for [`wait_listening`] first.
//!
//! ```ignore
//! let a = demo(&net, "a", &["wharf.pool=web"], &["-e", "DEMO_KEEPALIVE_TIMEOUT=1s"]);
//! wait_demos_listening(&net, &[&a]).await;
//! let seen = demo_requests(a.addr(&net, 80)).await;
//! ```

use std::net::SocketAddr;

use super::build::demo_image;
use super::docker::Container;
use super::http::{get, poll};
use super::secs;
use super::wharf::Wharf;

/// `docker run` the demo image as `tag` on network `net`, with `wharf.*`
/// labels and extra `docker run` options (`-e …`) before the image.
pub fn demo(net: &str, tag: &str, labels: &[&str], opts: &[&str]) -> Container {
    demo_from(demo_image(), net, tag, labels, opts)
}

/// Like [`demo`], from another `image` (e.g. one built `FROM` the demo image).
pub fn demo_from(image: &str, net: &str, tag: &str, labels: &[&str], opts: &[&str]) -> Container {
    let mut args = vec!["--network", net];
    for l in labels {
        args.extend(["--label", l]);
    }
    args.extend_from_slice(opts);
    args.push(image);
    Container::run(tag, &args)
}

/// A demo container on `net` that calls itself `name` (`DEMO_NAME`, the
/// `x-demo-name` of its answers), with `labels`.
pub fn named_demo(net: &str, name: &str, labels: &[&str]) -> Container {
    let env = format!("DEMO_NAME={name}");
    demo(net, "demo", labels, &["-e", &env])
}

/// Waits up to 20 s until the demo server at `addr` answers 200 on its own
/// address (`GET /_demo/stats`, which it does not count as a request).
pub async fn wait_listening(addr: SocketAddr, what: &str) {
    poll(&format!("{what} listens on {addr}"), secs(20), || async {
        match get(addr, "demo", "/_demo/stats").await {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{} {}", r.status, r.body)),
            Err(e) => Err(e),
        }
    })
    .await;
}

/// [`wait_listening`] for each demo container, on its address on `net`.
pub async fn wait_demos_listening(net: &str, containers: &[&Container]) {
    for c in containers {
        wait_listening(c.addr(net, 80), &c.name).await;
    }
}

/// Waits until each demo container is ready in pool `pool` of `wharf` (20 s
/// each), then until each answers on its own address on `net` (see
/// [`wait_listening`]).
pub async fn wait_demos_ready(wharf: &Wharf, pool: &str, net: &str, containers: &[&Container]) {
    for c in containers {
        wharf.wait_backend_state(pool, &c.name, "ready", secs(20)).await;
    }
    wait_demos_listening(net, containers).await;
}

/// The demo's own count of the requests it received (everything but
/// `/health*` and `/_demo/*`), asked directly on its address.
pub async fn demo_requests(addr: SocketAddr) -> u64 {
    let r = get(addr, "demo", "/_demo/stats").await.expect("GET /_demo/stats");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["requests"].as_u64().expect("requests in /_demo/stats")
}

/// `GET path` directly on a demo container (e.g. `/health/fail` to make its
/// health check fail from now on); asserts 200.
pub async fn demo_call(addr: SocketAddr, path: &str) {
    let r = get(addr, "demo", path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    assert_eq!(r.status, 200, "GET {path} on {addr}: {}", r.body);
}
