//! The routing table: one immutable snapshot behind one [`ArcSwap`].
//!
//! Every request does one `load` and sees either the old table or the new
//! one, never a mix. The table is rebuilt from the desired state and stored
//! only when that state changed.
//!
//! The table is plain data plus counters: pools, routes, balancers and the
//! backends' shared counters. It holds no sockets and imports nothing of the
//! proxy; what must survive a swap — in-flight counts, request/error
//! counters, health, latency, the slow-start mark — lives in
//! [`BackendShared`], keyed by [`BackendKey`] (container id + address) in a
//! [`Registry`] that hands the same `Arc` to every table that contains the
//! same backend. Whoever keeps per-backend resources of its own (the proxy's
//! upstream connections) watches [`Router::subscribe`] and cleans up after
//! each swap.

mod registry;
mod tls;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::backend::Backend;
use crate::balance::{self, Balancer};
use crate::health;
use crate::model::{BackendStatus, Desired, HostPattern, PoolOptions};
use crate::policy::Policy;
use crate::retry::RetryBudget;
use crate::stats::PoolStats;
pub use registry::Registry;
pub use tls::HostTls;

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub opts: PoolOptions,
    pub backends: Vec<Backend>,
    pub balancer: Box<dyn Balancer>,
    pub retry_budget: RetryBudget,
    /// Request statistics, per worker; survive swaps (see [`crate::stats`]).
    pub stats: Arc<PoolStats>,
    /// The pool's policies; `None` (no cost per request) when it has none.
    pub policy: Option<Box<Policy>>,
}

impl Pool {
    pub fn has_ready(&self) -> bool {
        self.backends.iter().any(Backend::is_ready)
    }

    /// Panic mode: backends are ready but none is healthy, so wharf tries
    /// them all rather than answer 503 to everyone.
    pub fn in_panic(&self, now_ms: u64) -> bool {
        self.has_ready() && !self.backends.iter().any(|b| b.is_available(now_ms))
    }

    /// May one more backend be ejected (see [`health::eject::may_eject`])?
    pub fn may_eject(&self, now_ms: u64) -> bool {
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.shared.health.is_ejected(now_ms))
            .count();
        health::eject::may_eject(ejected, self.backends.len())
    }
}

/// A route: requests whose path starts with `path` (on a segment boundary) go to `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path: Option<String>,
    pub pool: usize,
}

/// The immutable snapshot.
#[derive(Debug, Default)]
pub struct RoutingTable {
    pub pools: Vec<Arc<Pool>>,
    exact: HashMap<String, Vec<Route>>,
    /// (suffix with leading dot, routes), longest suffix first.
    wildcard: Vec<(String, Vec<Route>)>,
    any_host: Vec<Route>,
    /// The desired state it was built from: the next build compares against it.
    pub desired: Desired,
    /// Routes that collide (same host and path in two pools).
    pub route_problems: Vec<String>,
}

/// A matched route: the pool and how much of the path the route consumed.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    pub pool: &'a Arc<Pool>,
    /// Length of the matched prefix (0 when the route has no path).
    pub prefix_len: usize,
}

impl RoutingTable {
    /// Build a table from the desired state, reusing shared backend state from
    /// `registry`. A pool identical to one in `previous` is reused as it is, so
    /// an unrelated change elsewhere does not reset its balancer (a round-robin
    /// cycle keeps its place).
    pub fn build(desired: Desired, registry: &Registry, previous: Option<&RoutingTable>) -> RoutingTable {
        RoutingTable::build_at(desired, registry, previous, Instant::now())
    }

    /// [`RoutingTable::build`] at a given time: each ready backend's
    /// slow-start ramp starts at `now` unless it already runs, and any other
    /// backend loses its mark, so a container that comes back ramps again.
    pub fn build_at(
        desired: Desired,
        registry: &Registry,
        previous: Option<&RoutingTable>,
        now: Instant,
    ) -> RoutingTable {
        let mut t = RoutingTable::default();
        let mut policy_problems = Vec::new();
        for (name, dp) in &desired.pools {
            let same = previous.and_then(|prev| {
                let old = prev.desired.pools.get(name)?;
                (old == dp).then(|| prev.pools.iter().find(|p| &p.name == name).cloned())?
            });
            if let Some(pool) = same {
                policy_problems.extend(pool.policy.iter().flat_map(|p| p.problems.iter().cloned()));
                t.add_routes(&dp.opts, t.pools.len());
                t.pools.push(pool);
                continue;
            }
            let backends: Vec<Backend> = dp
                .backends
                .iter()
                .map(|b| {
                    let key = b.key();
                    let shared = registry.get(&key);
                    shared
                        .draining
                        .store(b.status == BackendStatus::Draining, Ordering::Relaxed);
                    // Slow start ramps from the first table in which the
                    // backend is ready; any other state restarts the ramp.
                    match b.status {
                        BackendStatus::Ready => shared.ready_since.mark(now),
                        _ => shared.ready_since.clear(),
                    }
                    if let Some(hc) = &dp.opts.health {
                        shared.health.enable_active(hc.rise, hc.fall);
                    }
                    Backend {
                        key,
                        container: b.container.clone(),
                        addr: b.addr,
                        weight: b.weight,
                        status: b.status.clone(),
                        shared,
                    }
                })
                .collect();
            let balancer = balance::build(&dp.opts, &backends);
            let policy = Policy::build(name, &dp.opts.policies).map(Box::new);
            for problem in policy.iter().flat_map(|p| &p.problems) {
                tracing::warn!(pool = %name, "{problem}");
                policy_problems.push(problem.clone());
            }
            t.add_routes(&dp.opts, t.pools.len());
            t.pools.push(Arc::new(Pool {
                name: name.clone(),
                opts: dp.opts.clone(),
                backends,
                balancer,
                retry_budget: RetryBudget::default(),
                stats: registry.pool_stats(name),
                policy,
            }));
        }
        let mut problems = policy_problems;
        let names: Vec<String> = t.pools.iter().map(|p| p.name.clone()).collect();
        let mut order = |host: &str, routes: &mut Vec<Route>| {
            // Longest path first; the pool name breaks ties so the choice is deterministic.
            routes.sort_by(|a, b| {
                let la = a.path.as_ref().map_or(0, String::len);
                let lb = b.path.as_ref().map_or(0, String::len);
                lb.cmp(&la).then_with(|| names[a.pool].cmp(&names[b.pool]))
            });
            for w in routes.windows(2) {
                if w[0].path == w[1].path {
                    problems.push(format!(
                        "route conflict: pools {} and {} both serve host {host} path {}; {} wins",
                        names[w[0].pool],
                        names[w[1].pool],
                        w[0].path.as_deref().unwrap_or("/"),
                        names[w[0].pool],
                    ));
                }
            }
        };
        for (host, routes) in t.exact.iter_mut() {
            order(host, routes);
        }
        for (sfx, routes) in t.wildcard.iter_mut() {
            order(&format!("*{sfx}"), routes);
        }
        order("*", &mut t.any_host);
        t.wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        problems.sort();
        t.desired = desired;
        t.route_problems = problems;
        t
    }

    fn add_routes(&mut self, opts: &PoolOptions, idx: usize) {
        let route = Route {
            path: opts.path.clone(),
            pool: idx,
        };
        if opts.hosts.is_empty() {
            self.any_host.push(route);
            return;
        }
        for h in &opts.hosts {
            match h {
                HostPattern::Exact(host) => self.exact.entry(host.clone()).or_default().push(route.clone()),
                HostPattern::Wildcard(sfx) => match self.wildcard.iter_mut().find(|(s, _)| s == sfx) {
                    Some((_, routes)) => routes.push(route.clone()),
                    None => self.wildcard.push((sfx.clone(), vec![route.clone()])),
                },
            }
        }
    }

    /// Find the pool for a host (lowercase, without port) and path.
    /// Exact host beats wildcard (longest suffix first) beats any host; within
    /// the first tier that matches at all, the longest path prefix wins.
    pub fn route(&self, host: &str, path: &str) -> Option<Match<'_>> {
        let tiers = self
            .exact
            .get(host)
            .into_iter()
            .chain(
                self.wildcard
                    .iter()
                    .filter(|(sfx, _)| host.len() > sfx.len() && host.ends_with(sfx.as_str()))
                    .map(|(_, r)| r),
            )
            .chain(std::iter::once(&self.any_host));
        for routes in tiers {
            for r in routes {
                let len = match &r.path {
                    None => Some(0),
                    Some(p) => prefix_match(p, path).then_some(p.len()),
                };
                if let Some(prefix_len) = len {
                    return Some(Match {
                        pool: &self.pools[r.pool],
                        prefix_len,
                    });
                }
            }
        }
        None
    }

    /// All routes as (host, path, pool name), for the state API.
    pub fn routes(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut push = |host: String, routes: &Vec<Route>| {
            for r in routes {
                out.push((
                    host.clone(),
                    r.path.clone().unwrap_or_else(|| "/".into()),
                    self.pools[r.pool].name.clone(),
                ));
            }
        };
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by(|a, b| a.0.cmp(b.0));
        for (h, r) in exact {
            push(h.clone(), r);
        }
        for (s, r) in &self.wildcard {
            push(format!("*{s}"), r);
        }
        push("*".into(), &self.any_host);
        out
    }
}

/// `/api` matches `/api`, `/api/`, `/api/x` and `/api?q`, not `/apix`.
pub fn prefix_match(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/') | Some(b'?'))
}

/// The live table and the registry that keeps backend state across swaps.
#[derive(Debug)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
    registry: Registry,
    /// Counts swaps; [`Router::subscribe`]rs are woken by each.
    swaps: tokio::sync::watch::Sender<u64>,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            table: ArcSwap::default(),
            registry: Registry::default(),
            swaps: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Router {
    pub fn load(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Build and swap in a new table if `desired` differs from the current one.
    /// Returns whether a swap happened.
    pub fn update(&self, desired: Desired) -> bool {
        let current = self.table.load();
        if current.desired == desired {
            return false;
        }
        let table = RoutingTable::build(desired, &self.registry, Some(&current));
        self.table.store(Arc::new(table));
        self.swaps.send_modify(|n| *n += 1);
        true
    }

    /// Take every backend of container `id` out of rotation in the current
    /// table at once, ahead of the table that will say so (a stop signal,
    /// an exit). Returns whether the table had any. A table build keeps the
    /// mark only if the backend is still draining.
    pub fn drain_now(&self, id: &str) -> bool {
        let table = self.table.load();
        let mut found = false;
        for b in table.pools.iter().flat_map(|p| p.backends.iter()) {
            if b.key.id == id {
                b.shared.draining.store(true, Ordering::Relaxed);
                found = true;
            }
        }
        found
    }

    /// Wakes after every swap (the value is the number of swaps so far).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.swaps.subscribe()
    }
}

#[cfg(test)]
mod tests;
