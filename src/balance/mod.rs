//! Backend selection: one [`Balancer`] per pool, built once per routing
//! snapshot from the pool's backends ([`build`]) and asked once per request
//! ([`Balancer::select`]) with a small [`Context`].
//!
//! A balancer sees every backend of its pool and an `eligible` predicate
//! (ready, not draining, healthy, not ejected, not yet tried by this request);
//! it must pick only eligible backends of positive weight and return `None`
//! when there are none, never panic. Per-backend state that must outlive a
//! snapshot — in-flight counts, the latency estimate, the slow-start mark —
//! lives in [`crate::backend::BackendShared`], never in the balancer, so a
//! routing swap loses none of it. What a balancer keeps itself (a round-robin
//! cycle, a random generator, precomputed tables) is rebuilt with the pool.
//!
//! The algorithms (`wharf.balance`), each in its own file with its sources:
//!
//! | name | file | picks | cost per pick |
//! | --- | --- | --- | --- |
//! | `round_robin` | [`round_robin`] | in turn, smooth by weight (nginx) | O(n), a mutex |
//! | `least_conn` | [`least_conn`] | fewest in flight ÷ weight, ties in turn | O(n), a mutex |
//! | `ip_hash` | [`ip_hash`] | by client address, weighted rendezvous hashing | O(n), no lock |
//! | `random` | [`random`] | at random by weight | O(log n), no lock |
//! | `p2c` | [`p2c`] | better of two random by peak-EWMA load | O(log n), two tiny locks |
//!
//! Around any of them: [`sticky`] (`wharf.sticky=cookie`) pins a client to its
//! backend with a cookie, and [`slow_start`] (`wharf.slow_start`) ramps a new
//! backend's weight up. Everything is deterministic given the [`Context`]
//! (client address, sticky cookie, the clock as `now`) and the seed of the
//! pool's [`Rng`]: tests pin exact sequences and distributions.

pub mod ip_hash;
pub mod least_conn;
pub mod mix;
pub mod p2c;
pub mod random;
pub mod round_robin;
pub mod slow_start;
pub mod sticky;

pub use ip_hash::IpHash;
pub use least_conn::LeastConn;
pub use mix::Rng;
pub use p2c::P2c;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use slow_start::{Ramp, Weights};
pub use sticky::Sticky;

use std::net::IpAddr;
use std::time::Instant;

use crate::backend::Backend;
use crate::model::{Balance, PoolOptions};

/// What a balancer may look at for one request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The client's address (`ip_hash`).
    pub client_ip: IpAddr,
    /// The pool's sticky cookie as the request carries it; `None` when the
    /// pool is not sticky or the request has no such cookie.
    pub sticky: Option<&'a str>,
    /// The clock (slow start, latency decay), read once per request.
    pub now: Instant,
}

impl Context<'_> {
    pub fn new(client_ip: IpAddr, now: Instant) -> Context<'static> {
        Context {
            client_ip,
            sticky: None,
            now,
        }
    }
}

pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Index into `backends` of the chosen one, among those `eligible` accepts.
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// Build the balancer for a pool, seeded from the OS.
pub fn build(opts: &PoolOptions, backends: &[Backend]) -> Box<dyn Balancer> {
    build_with(opts, backends, Rng::from_os())
}

/// [`build`] with the generator injected. Slow-start marks are
/// the routing table's business ([`crate::routing::RoutingTable::build`]):
/// a balancer only reads them.
pub fn build_with(opts: &PoolOptions, backends: &[Backend], rng: Rng) -> Box<dyn Balancer> {
    let ramp = Ramp::new(opts.slow_start);
    let inner: Box<dyn Balancer> = match opts.balance {
        Balance::RoundRobin => Box::new(RoundRobin::new(backends, ramp)),
        Balance::LeastConn => Box::new(LeastConn::new(backends, ramp)),
        Balance::IpHash => Box::new(IpHash::new(backends, ramp)),
        Balance::Random => Box::new(Random::new(backends, ramp, rng)),
        Balance::P2c => Box::new(P2c::new(backends, ramp, rng)),
    };
    match opts.sticky {
        Some(_) => Box::new(Sticky::new(inner, backends)),
        None => inner,
    }
}

#[cfg(test)]
mod tests;

/// Helpers for the algorithms' unit tests.
#[cfg(test)]
pub(crate) mod testing;
