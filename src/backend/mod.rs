//! A backend as the routing table holds it: plain data from the desired
//! state, plus the counters that must survive routing swaps.
//!
//! [`Backend`] is what a balancer sees and what a request is sent to. Its
//! [`BackendShared`] part is handed out by the routing registry per backend
//! identity ([`BackendKey`]), so every table that contains the same backend
//! shares the same in-flight count, health, latency estimate and slow-start
//! mark. It holds no sockets: upstream connections belong to the proxy
//! ([`crate::proxy`]), keyed by [`BackendShared::uid`].

pub mod latency;
pub mod ready;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::health::BackendHealth;
use crate::model::{BackendKey, BackendStatus};
pub use latency::Latency;
pub use ready::ReadySince;

/// Per-backend state shared by every snapshot that contains the backend.
#[derive(Debug)]
pub struct BackendShared {
    /// Unique in this process, never reused: what the proxy keys its
    /// upstream connections by (cheaper to hash than the [`BackendKey`]).
    pub uid: u64,
    pub in_flight: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Times passive health ejected it; active probes passed and failed.
    pub ejections: AtomicU64,
    pub probes_ok: AtomicU64,
    pub probes_failed: AtomicU64,
    /// Set while the backend drains: its connections are not reused.
    pub draining: AtomicBool,
    /// Passive and active health.
    pub health: BackendHealth,
    /// Peak-EWMA of response-header latency, for `p2c`; the proxy records it.
    pub latency: Latency,
    /// When the backend last became ready, for `wharf.slow_start`.
    pub ready_since: ReadySince,
    /// Woken when an in-flight slot is released: requests queued on a
    /// backend at its `wharf.max_conns` wait on it.
    pub slot_freed: tokio::sync::Notify,
    /// Requests waiting for a slot (bounded by `wharf.max_conns`).
    pub queued: AtomicU64,
    /// Open tunnels (upgrades, `CONNECT`) to it, over all workers; each
    /// also holds an in-flight slot.
    pub tunnels: AtomicU64,
}

impl Default for BackendShared {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        BackendShared {
            uid: NEXT.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            probes_ok: AtomicU64::new(0),
            probes_failed: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            health: BackendHealth::default(),
            latency: Latency::default(),
            ready_since: ReadySince::default(),
            slot_freed: tokio::sync::Notify::new(),
            queued: AtomicU64::new(0),
            tunnels: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub key: BackendKey,
    pub container: String,
    pub addr: std::net::SocketAddr,
    pub weight: u32,
    pub status: BackendStatus,
    pub shared: Arc<BackendShared>,
}

impl Backend {
    /// Is it running, not draining, weight > 0 (what the provider and the labels say)?
    /// `shared.draining` is set by the table build for a draining backend,
    /// and also straight from a stop signal, before the next table
    /// ([`crate::routing::Router::drain_now`]).
    pub fn is_ready(&self) -> bool {
        self.status == BackendStatus::Ready && self.weight > 0 && !self.shared.draining.load(Ordering::Relaxed)
    }

    /// Ready, and neither ejected nor failing its active checks at `now_ms`.
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.is_ready() && self.shared.health.is_healthy(now_ms)
    }
}
