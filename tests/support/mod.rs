//! Integration-test harness for wharf: real binaries, real Docker, real HTTP.
//!
//! Every test binary does `mod support;` and then `use support::*;`.
//! Nothing here is a mock: tests build the real static binaries, put them in
//! real images, run real containers on real Docker networks, and talk HTTP to
//! them over loopback or the Docker bridge.
//!
//! # Building ([`build`])
//!
//! * [`binaries()`] builds the whole workspace once per test process as
//!   statically linked executables (`target/static/x86_64-unknown-linux-gnu/debug`),
//!   in a separate target dir so it never fights the outer `cargo test` for its
//!   lock. Concurrent test processes are serialised by cargo's own lock.
//! * [`wharf_image()`] / [`demo_image()`] build `FROM scratch` images from
//!   those binaries (tags `wharf-it/wharf:test`, `wharf-it/demo:test`), once
//!   per test process, and return the tag.
//! * [`require_docker()`] fails with a clear message if the daemon is down.
//!   It is called by everything that touches Docker, so tests never skip.
//!
//! # Names and guards ([`docker`])
//!
//! Everything a test creates is named by [`unique()`] (`wharf-it-<pid>-<n>-<tag>`)
//! and owned by a guard that removes it on drop, including when the test panics:
//!
//! * [`Network::create`] — `docker network create`; drop removes every container
//!   still attached, then the network.
//! * [`Container::run`] — `docker run -d --name <unique> <args…>`; helpers for
//!   `ip`, `stop`, `start`, `kill`, `pause`, `logs`, `connect`, …; drop is
//!   `docker rm -f -v`.
//! * [`Compose`] — `docker-compose -p <unique> -f <file>`; `up`, `scale`,
//!   `ps_ids`, `ips`; drop is `down -v --remove-orphans -t 1`.
//! * [`docker()`] / [`docker_ok()`] / [`docker_try()`] run any docker CLI command.
//!
//! # HTTP ([`http`])
//!
//! * [`get()`] / [`request()`] — one request on a fresh connection, 10 s timeout.
//! * [`Client`] — pooled keep-alive client (HTTP/1, or h2c with `Client::http2()`).
//! * [`poll()`] / [`poll_sync()`] — wait for a condition with a deadline, print
//!   how long it took, panic with the last observation if it never happens.
//!   The closure may return `Option<T>` or `Result<T, E: Display>` (the `Err` is
//!   the observation reported on timeout). [`stays()`] checks that a condition
//!   holds for a whole period.
//!
//! # wharf on the host ([`wharf`])
//!
//! * [`Wharf::spawn`] runs the static wharf binary on two free loopback ports,
//!   logging to a file, and waits for `/readyz`; drop sends SIGTERM (then
//!   SIGKILL after 5 s) and dumps the log tail if the test is panicking.
//! * [`wharf_check()`] runs `wharf check …` and returns `(exit code, output)`.
//!
//! # Example
//!
//! ```ignore
//! mod support;
//! use support::*;
//!
//! #[tokio::test]
//! async fn proxies_to_a_labelled_container() {
//!     let net = Network::create("proxy");
//!     let web = Container::run("web", &["--network", &net.name,
//!         "--label", "wharf.enable=true", demo_image()]);
//!     let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
//!     let (resp, _) = poll("wharf routes to web", secs(20), || async {
//!         wharf.get("web.test", "/").await.ok().filter(|r| r.status == 200)
//!     }).await;
//!     assert_eq!(resp.header("x-demo-name"), Some(web.name.as_str()));
//! }
//! ```

// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod build;
pub mod docker;
pub mod http;
pub mod load;
pub mod wharf;

pub use self::build::{binaries, demo_image, require_docker, wharf_image, workspace_root, Binaries};
pub use self::docker::{container_ip, docker, docker_ok, docker_try, unique, Compose, Container, Network};
pub use self::http::{get, poll, poll_sync, request, stays, Client, Resp};
pub use self::load::{Load, LoadOpts, Outcome, Progress, Report};
pub use self::wharf::{free_port, wharf_check, wharf_run, Wharf};

pub use std::time::Duration;

/// `Duration::from_secs`, for short deadlines in tests.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `Duration::from_millis`.
pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}
