//! wharf: a load balancer that configures itself from Docker labels.
//!
//! The map of the crate, from the bottom up. Dependencies point one way:
//! each module imports only modules above it in this list.
//!
//! - [`model`]: the shared vocabulary — backend identity and status, the
//!   desired state, pool options. Imports nothing of ours.
//! - [`text`]: small pure helpers (durations, suggestions); networks are
//!   [`model::cidr`].
//! - [`privilege`]: `--user` — dropping root at start, keeping the Docker
//!   socket's group (before any thread exists).
//! - [`config`]: flags and `WHARF_*` variables → a validated `Config`.
//! - [`labels`]: one container's labels → its service spec or the reasons
//!   it was skipped (pure).
//! - [`health`]: passive ejection and active-check counters (pure).
//! - [`backend`]: a backend as the table holds it, with the counters that
//!   survive swaps (in flight, health, latency, slow-start mark).
//! - [`balance`]: one `Balancer` per pool, built per snapshot, asked per request.
//! - [`retry`]: when a failed attempt goes elsewhere, and the retry budget (pure).
//! - [`stats`]: per-pool request counters and histograms, one slot per worker.
//! - [`policy`]: per-pool policies — allow/deny, rate limit, basic auth,
//!   headers, compression — decided before a request is balanced and applied
//!   to its response.
//! - [`routing`]: the immutable `RoutingTable` behind one `ArcSwap`; plain
//!   data plus counters, no sockets.
//! - [`tls`]: HTTPS — the certificate store (SNI, atomic publishes), `--tls-dir`
//!   files, ACME challenge answers, the rustls configuration.
//! - [`net`]: opening HTTP connections to backends (proxy and prober share it).
//! - [`probe`]: the active health checks, one task per backend that needs one.
//! - [`provider`]: where backends come from, behind one seam — `docker`
//!   (events + listings), `swarm` (a manager's tasks, polled, events as
//!   hints), `statics` (`--provider none`); the provider-neutral publisher
//!   swaps the table.
//! - [`reqid`], [`access`]: `X-Request-Id` and the access-log line.
//! - [`proxy`]: the hyper service — route, pick, forward, retry what was never
//!   delivered, stream the response back — and the upstream connections it owns.
//! - [`listen`], [`server`] and [`admin`]: the public listener (one socket per
//!   worker) and the status/metrics one; [`metrics`] registers and encodes
//!   every `/metrics` family.
//! - [`app`]: wires it together and owns start-up and shutdown; [`check`]
//!   is `wharf check`.
//!
//! Data flow: provider → `Desired` → publisher → `RoutingTable` →
//! `ArcSwap::store` → each request loads the table once, matches host and
//! path, asks the pool's balancer, forwards, retries an undelivered request,
//! and releases its in-flight slot when the response body ends.
#![forbid(unsafe_code)]

/// `malloc`, with a bounded cache of freed blocks on each worker thread and
/// over-aligned blocks (tokio's task cells and socket registrations) kept
/// off `posix_memalign`: see the `wharf-alloc` crate. In
/// the library, so that every test of wharf runs on it too.
#[global_allocator]
static GLOBAL: wharf_alloc::Allocator = wharf_alloc::Allocator;

pub mod access;
pub mod admin;
pub mod admin_access;
pub mod app;
pub mod backend;
pub mod balance;
pub mod check;
pub mod config;
pub mod health;
pub mod labels;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod net;
pub mod policy;
pub mod privilege;
pub mod probe;
#[cfg(test)]
mod proptests;
pub mod provider;
pub mod proxy;
pub mod reqid;
pub mod retry;
pub mod routing;
pub mod server;
pub mod stats;
pub mod text;
pub mod tls;

/// Moved into [`model`] (policies match networks too); the old path still works.
pub use model::cidr;
