//! Publishing desired states: provider-neutral, so every provider shares it.
//!
//! [`Publisher::publish`] adds the `--static` pools to what the provider
//! found, logs each backend that appeared, left or changed state, swaps the
//! routing table when anything changed, and starts the active health probes
//! the new table needs. [`Discovery`] is the provider's health, shown by
//! `/api/state` and `/readyz`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};

use super::statics::add_static;
use crate::metrics::control::Control;
use crate::model::{Desired, Skipped, StaticPool};
use crate::routing::Router;

/// Discovery health, shown by `/api/state` and `/readyz`.
#[derive(Debug, Default)]
pub struct Discovery {
    pub ready: AtomicBool,
    pub status: Mutex<Status>,
    /// Events, swaps, event → swap times (`/metrics`, the dashboard).
    pub control: Control,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub provider: String,
    pub docker_host: Option<String>,
    pub connected: bool,
    pub self_container: Option<String>,
    pub syncs: u64,
    /// Look-ups of the few containers a burst of events named.
    pub lookups: u64,
    pub events: u64,
    pub reconnects: u64,
    pub last_sync_unix_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl Discovery {
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn snapshot(&self) -> Status {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// What a provider publishes through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    router: Arc<Router>,
    statics: Arc<[StaticPool]>,
    discovery: Arc<Discovery>,
}

impl Publisher {
    pub fn new(router: Arc<Router>, statics: Vec<StaticPool>, discovery: Arc<Discovery>) -> Publisher {
        Publisher {
            router,
            statics: statics.into(),
            discovery,
        }
    }

    /// Route `d` (plus the static pools) from now on; returns whether the
    /// table changed.
    pub fn publish(&self, mut d: Desired) -> bool {
        add_static(&mut d, &self.statics);
        let old = self.router.load();
        log_changes(&old.desired, &d);
        let swapped = self.router.update(d);
        if swapped {
            debug!("routing table swapped");
            self.discovery.control.swapped();
            crate::probe::ensure_probes(&self.router.load());
        }
        swapped
    }

    /// Take container `id`'s backends out of rotation now, before the
    /// next [`Publisher::publish`] says so (see [`Router::drain_now`]).
    pub fn drain_now(&self, id: &str) -> bool {
        self.router.drain_now(id)
    }

    /// The control-plane metrics, for the provider to note its events.
    pub fn control(&self) -> &Control {
        &self.discovery.control
    }

    /// Change the discovery status.
    pub fn status(&self, f: impl FnOnce(&mut Status)) {
        self.discovery.update(f);
    }

    /// A full sync with the source is done: `/readyz` turns 200 (logged once).
    pub fn synced(&self) {
        if !self.discovery.ready.swap(true, Ordering::Relaxed) {
            let pools = self.router.load().pools.len();
            info!(pools, "first sync done, ready");
        }
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }
}

/// One log line per backend that appeared, left or changed state, and per new problem.
fn log_changes(old: &Desired, new: &Desired) {
    for (pool, p) in &new.pools {
        for b in &p.backends {
            let before = old
                .pools
                .get(pool)
                .and_then(|op| op.backends.iter().find(|ob| ob.id == b.id && ob.addr == b.addr));
            match before {
                None => {
                    info!(pool, container = %b.container, addr = %b.addr, state = b.status.as_str(), "backend added")
                }
                Some(ob) if ob.status != b.status => {
                    info!(pool, container = %b.container, addr = %b.addr, state = b.status.as_str(), "backend state changed")
                }
                _ => {}
            }
        }
    }
    for (pool, op) in &old.pools {
        for ob in &op.backends {
            let still = new
                .pools
                .get(pool)
                .is_some_and(|p| p.backends.iter().any(|b| b.id == ob.id && b.addr == ob.addr));
            if !still {
                info!(pool, container = %ob.container, addr = %ob.addr, "backend removed");
            }
        }
    }
    // Sets, not `Vec::contains`: a listing can carry thousands of these.
    let before: HashSet<&Skipped> = old.skipped.iter().collect();
    for s in new.skipped.iter().filter(|s| !before.contains(s)) {
        warn!(container = %s.container, reason = %s.reason, "container skipped");
    }
    let before: HashSet<&String> = old.problems.iter().collect();
    for p in new.problems.iter().filter(|p| !before.contains(p)) {
        warn!(problem = %p, "label problem");
    }
    let before: HashSet<&String> = old.warnings.iter().collect();
    for w in new.warnings.iter().filter(|w| !before.contains(w)) {
        warn!(warning = %w, "label warning");
    }
}
