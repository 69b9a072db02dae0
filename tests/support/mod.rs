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
//!   those binaries (tags `wharf-it/wharf:test-<checkout>`, `wharf-it/demo:test-<checkout>`), once
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
//! * [`Compose`] ([`compose`]) — `docker-compose -p <unique> -f <file>`; `up`,
//!   `scale`, `ps_ids`, `ips`; drop is `down -v --remove-orphans -t 1`.
//! * [`docker()`] / [`docker_ok()`] / [`docker_try()`] run any docker CLI command;
//!   [`docker_logs()`] reads any container's logs.
//!
//! # When Docker says it happened ([`events`])
//!
//! * [`container_events()`] / [`first_event_ns()`] — a container's `docker
//!   events` (kill, pause, …) since a time, on the daemon's clock (Unix ns;
//!   the test's own: [`unix_ns()`], [`unix_nanos()`]);
//!   [`health_passed_ns()`] — when the probe that made it healthy ended.
//!
//! # The demo backend ([`demo`](mod@demo))
//!
//! * [`demo()`] / [`named_demo()`] / [`demo_from()`] run a demo container with
//!   `wharf.*` labels; [`wait_listening()`] / [`wait_demos_listening()`] wait
//!   until it answers on its own address, [`wait_demos_ready()`] also until
//!   wharf lists it ready; [`demo_requests()`] asks it how many
//!   requests it got, [`demo_call()`] calls it directly (`/health/fail`, …).
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
//! * [`drain_lags()`] / [`Wharf::drain_lag_us`] read wharf's SIGTERM→drained
//!   lags from its log.
//! * [`Three`] ([`three`]) — wharf and three demo backends in one pool on a
//!   network of their own, all answering through wharf (the draining tests).
//!
//! # wharf's admin API ([`state`])
//!
//! * [`state_at()`] / [`Wharf::state`] fetch `/api/state`; [`find_pool()`],
//!   [`pool_backends()`], [`backend_named()`], [`backend_at()`],
//!   [`backend_state()`], [`pool_view()`], [`ready_backends()`],
//!   [`skip_reason()`], … read it.
//! * [`wait_state_at()`] polls `/api/state` until a check accepts it;
//!   [`wait_pool()`] (by address), [`wait_ready_backends()`] (by container)
//!   and [`Wharf::wait_backend_state`] wait for a pool or a backend to be as
//!   wanted; [`metric_at()`] / [`Wharf::metric`] read `/metrics`.
//!
//! # Privileges ([`privilege`])
//!
//! * [`Privileges::of_container`] reads a container's process identity,
//!   capabilities and `no_new_privs` from `/proc`; [`Privileges::assert_least`]
//!   checks wharf's least-privilege deployment (uid [`WHARF_UID`], nothing more),
//!   [`Privileges::assert_socket_group`] that it kept the socket's group.
//! * [`docker_gid()`] — the Docker socket's group (`--group-add`).
//!
//! # Load ([`load`])
//!
//! * [`Load::start`] runs paced keep-alive workers (GETs and POSTs, or steady
//!   GETs with [`LoadOpts::gets`]) and records every request's [`Outcome`];
//!   [`Load::stop`] returns the [`Report`].
//!
//! # Raw HTTP/1.1 ([`rawhttp`])
//!
//! * [`raw_get()`] — one GET read off a raw socket until its framing ends or
//!   the connection does ([`RawEnd`]: complete or broken);
//!   [`read_head()`] / [`Head`] read and parse a request or response head.
//!
//! # The Docker socket interceptor ([`sockproxy`])
//!
//! * [`SocketProxy`] — a proxy for `/var/run/docker.sock` that the test can
//!   cut and restore, that can narrow the events stream to one network, or
//!   forward only what a [`Filter`] allows (GET/HEAD on wharf's endpoints),
//!   answering the rest `403` and recording every call.
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

pub mod browser;
pub mod build;
pub mod compose;
pub mod demo;
pub mod docker;
pub mod events;
pub mod http;
pub mod load;
pub mod pebble;
pub mod privilege;
pub mod rawhttp;
pub mod sockproxy;
pub mod state;
pub mod swarm;
pub mod three;
pub mod wharf;

pub use self::browser::{chromium, headless};
pub use self::build::{binaries, demo_image, require_docker, wharf_image, workspace_root, Binaries};
pub use self::compose::Compose;
pub use self::demo::{
    demo, demo_call, demo_from, demo_requests, named_demo, wait_demos_listening, wait_demos_ready, wait_listening,
};
pub use self::docker::{container_ip, docker, docker_logs, docker_ok, docker_try, unique, Container, Network};
pub use self::events::{container_events, first_event_ns, health_passed_ns, Event};
pub use self::http::{get, poll, poll_sync, request, stays, Client, Resp};
pub use self::load::{Load, LoadOpts, Outcome, Progress, Report};
pub use self::pebble::{served_serial, Pebble, H2};
pub use self::privilege::{docker_gid, Privileges, WHARF_UID};
pub use self::rawhttp::{raw_get, read_head, Head, RawEnd};
pub use self::sockproxy::{Call, Filter, SocketProxy};
pub use self::state::{
    backend_at, backend_named, backend_state, backend_states, find_pool, metric_at, pool_backends, pool_view,
    ready_backends, skip_reason, state_at, wait_pool, wait_ready_backends, wait_state_at,
};
pub use self::three::{wait_all_answer, Three};
pub use self::wharf::{drain_lags, free_port, wharf_check, wharf_run, Wharf};

pub use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Duration::from_secs`, for short deadlines in tests.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `Duration::from_millis`.
pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Wall-clock time in Unix nanoseconds, to compare with Docker's `timeNano`.
pub fn unix_ns() -> i128 {
    unix_nanos(SystemTime::now())
}

/// A wall-clock time in Unix nanoseconds.
pub fn unix_nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as i128
}
