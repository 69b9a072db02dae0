//! Providers: where backends come from, behind one seam.
//!
//! A provider turns the state of the outside world into a [`Desired`] state
//! and hands every new one to a [`Publisher`]. The publisher is
//! provider-neutral: it adds the `--static` pools, logs what changed, swaps
//! the routing table and starts the health probes the new table needs. A stop
//! signal is published the same way, as a desired state in which the backend
//! drains, the moment the provider learns of it.
//!
//! - [`docker`]: containers of the local Docker Engine (events + listings);
//! - [`swarm`]: the tasks of a Docker Swarm's services (a manager's API);
//! - [`statics`]: `--provider none`, only the `--static` pools.
//!
//! Swarm reuses the Docker provider's pure derivation (labels, network
//! rule); otherwise a provider needs nothing from another one.

pub mod docker;
pub mod publish;
pub mod statics;
pub mod swarm;

use futures::future::BoxFuture;

pub use publish::{Discovery, Publisher, Status};

/// A source of desired states.
pub trait Provider: Send + 'static {
    /// Keep `out` current until the returned future is dropped (at shutdown
    /// the caller aborts its task). Losing the source never clears the
    /// routes: the provider keeps the last state published and says so in
    /// the discovery status.
    fn run(self: Box<Self>, out: Publisher) -> BoxFuture<'static, ()>;
}
