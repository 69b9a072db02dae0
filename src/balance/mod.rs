//! Backend selection: one [`Balancer`] per pool, built once per routing
//! snapshot from the pool's backends and asked once per request.
//!
//! A balancer sees every backend of its pool and an `eligible` predicate
//! (ready, not yet tried by this request); it must pick only eligible ones and
//! return `None` when there are none. Per-backend state that must outlive a
//! snapshot (in-flight counts, statistics) lives in
//! [`crate::routing::BackendShared`], never in the balancer.

mod round_robin;

pub use round_robin::RoundRobin;

use std::net::IpAddr;

use crate::labels::Balance;
use crate::routing::Backend;

/// What a balancer may look at for one request.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub client_ip: IpAddr,
}

pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Index into `backends` of the chosen one, among those `eligible` accepts.
    fn select(&self, backends: &[Backend], ctx: &Context, eligible: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// Build the balancer for a pool. Algorithms other than round robin are
/// accepted as labels and currently served by smooth weighted round robin
/// (reported in the pool's state as `balance_effective`).
pub fn build(algorithm: Balance, backends: &[Backend]) -> Box<dyn Balancer> {
    let _ = algorithm;
    Box::new(RoundRobin::new(backends.len()))
}

/// The algorithm actually used for `requested` (see [`build`]).
pub fn effective(requested: Balance) -> Balance {
    let _ = requested;
    Balance::RoundRobin
}
