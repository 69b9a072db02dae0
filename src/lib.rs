//! wharf: a load balancer that configures itself from Docker labels.
//!
//! The map of the crate, in the order data flows:
//!
//! - [`config`]: flags and `WHARF_*` variables → a validated `Config`.
//! - [`docker`]: `client` (the only bollard user) lists containers and
//!   streams events; `desired` turns a listing into pools (pure); `watcher`
//!   keeps it current: events are hints, state is re-derived by re-listing.
//! - [`labels`]: one container's labels → its service spec or the reasons
//!   it was skipped (pure).
//! - [`routing`]: the immutable `RoutingTable` behind one `ArcSwap`; backend
//!   state that must survive swaps lives in a registry keyed by container id
//!   + address.
//! - [`balance`]: one `Balancer` per pool, built per snapshot, asked per request.
//! - [`health`]: passive ejection and active checks, kept per backend identity.
//! - [`proxy`]: the hyper service: route, pick, forward, retry what was never
//!   delivered, stream the response back.
//! - [`cidr`]: `--trusted-proxies` networks (pure).
//! - [`server`] and [`admin`]: the public listener and the status/metrics one.
//! - [`app`]: wires it together and owns start-up and shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balance;
pub mod check;
pub mod cidr;
pub mod config;
pub mod docker;
pub mod health;
pub mod labels;
pub mod proxy;
pub mod routing;
pub mod server;
