//! The shared vocabulary: what every part of wharf talks about, as plain data.
//!
//! This module sits at the bottom of the crate and imports nothing of ours.
//! Labels parse *into* it ([`crate::labels`]), providers produce it
//! ([`crate::provider`]), the routing table is built from it
//! ([`crate::routing`]), and the admin API reads it. A second provider
//! (Swarm) needs nothing from the first to speak it.
//!
//! - [`options`]: pool-wide settings ([`PoolOptions`]) and their enums.
//! - [`desired`]: the desired state — pools, their backends with identity
//!   and status, skipped containers and problems ([`Desired`]).

pub mod desired;
pub mod options;

pub use desired::{BackendKey, BackendStatus, Desired, DesiredBackend, DesiredPool, Skipped, StaticPool};
pub use options::{
    Balance, HealthCheck, HostPattern, PoolOptions, Protocol, Sticky, TlsMode, DEFAULT_STICKY_COOKIE, MAX_RETRIES,
};
