//! Docker containers → desired state, as a pure function.
//!
//! The watcher hands in the latest listing (plain [`ContainerInfo`] values, no
//! bollard types), the set of containers that received a stop signal, and the
//! discovery settings; [`derive`] returns the pools wharf should route, every
//! container it skipped with the reason, and every pool-wide disagreement.
//!
//! Invariants: the result never depends on map iteration order (containers are
//! sorted by creation time then id, networks are chosen by name), and a
//! problem with one container never affects another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::labels::{self, LabelContext, Parsed};
use crate::model::{BackendStatus, Desired, DesiredBackend, DesiredPool, Skipped};

/// What wharf needs to know about one container, taken from a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Network name → the container's IP on it (None when it has none, e.g. `host`).
    pub networks: BTreeMap<String, Option<IpAddr>>,
    /// Exposed TCP ports, sorted and deduplicated.
    pub exposed_ports: Vec<u16>,
    /// Creation time (unix seconds): the oldest member of a pool wins disagreements.
    pub created: i64,
    pub paused: bool,
    pub health: Health,
}

/// Docker's HEALTHCHECK verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The image has no HEALTHCHECK: ready while running.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Older daemons (API < 1.50) report health only inside the `Status` text:
    /// "Up 3 seconds (health: starting)", "Up 1 minute (healthy)", "(unhealthy)".
    pub fn from_status_text(status: &str) -> Health {
        if status.contains("(health: starting)") {
            Health::Starting
        } else if status.contains("(unhealthy)") {
            Health::Unhealthy
        } else if status.contains("(healthy)") {
            Health::Healthy
        } else {
            Health::None
        }
    }
}

/// Discovery settings that shape the derivation.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub label_prefix: String,
    pub exposed_by_default: bool,
    /// `--network`.
    pub network: Option<String>,
    /// wharf's own container id, when it runs in one (its networks come from the listing).
    pub self_id: Option<String>,
}

/// Derive the desired pools from a container listing.
///
/// `draining` holds the ids of containers that received a stop signal and
/// have not died yet.
pub fn derive(containers: &[ContainerInfo], draining: &HashSet<String>, settings: &Settings) -> Desired {
    derive_refs(containers.iter().collect(), draining, settings)
}

/// [`derive`] from borrowed containers: the watcher overlays the events'
/// hints on a few of them without copying the rest (a copy of every
/// container, labels and all, per publish made a burst's publishes grow
/// with the pools and with the labels).
pub fn derive_refs(mut sorted: Vec<&ContainerInfo>, draining: &HashSet<String>, settings: &Settings) -> Desired {
    sorted.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));

    // wharf's own networks, when it runs in a container with addresses of its
    // own (not `--network host`, where every bridge address is reachable).
    let own_networks: Vec<&str> = settings
        .self_id
        .as_deref()
        .and_then(|me| sorted.iter().find(|c| c.id == me))
        .map(|me| {
            me.networks
                .iter()
                .filter(|(_, ip)| ip.is_some())
                .map(|(n, _)| n.as_str())
                .collect()
        })
        .unwrap_or_default();

    let mut out = Desired::default();
    // Pool name → (name of the member whose options won, those options).
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    for c in sorted {
        if settings.self_id.as_deref() == Some(c.id.as_str()) {
            continue;
        }
        let ctx = LabelContext {
            prefix: &settings.label_prefix,
            exposed_by_default: settings.exposed_by_default,
            container_name: &c.name,
            exposed_ports: &c.exposed_ports,
        };
        let outcome = labels::parse(&c.labels, &ctx);
        out.warnings.extend(
            outcome
                .warnings
                .into_iter()
                .map(|w| format!("container {}: {w}", c.name)),
        );
        let spec = match outcome.parsed {
            Parsed::NotMember => continue,
            Parsed::Invalid(errors) => {
                let reason = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                out.skipped.push(skip(c, format!("bad label: {reason}")));
                continue;
            }
            Parsed::Member(spec) => spec,
        };
        let ip = match choose_network(c, spec.network.as_deref(), settings, &own_networks) {
            Ok((_, ip)) => ip,
            Err(reason) => {
                out.skipped.push(skip(c, reason));
                continue;
            }
        };
        let status = if draining.contains(&c.id) {
            BackendStatus::Draining
        } else if c.paused {
            BackendStatus::Waiting("paused".into())
        } else {
            match c.health {
                Health::None | Health::Healthy => BackendStatus::Ready,
                Health::Starting => BackendStatus::Waiting("health check starting".into()),
                Health::Unhealthy => BackendStatus::Waiting("Docker reports unhealthy".into()),
            }
        };
        let backend = DesiredBackend {
            id: c.id.clone(),
            container: c.name.clone(),
            addr: SocketAddr::new(ip, spec.port),
            weight: spec.weight,
            status,
        };
        match out.pools.get_mut(&spec.pool) {
            None => {
                first.insert(spec.pool.clone(), c.name.clone());
                out.pools.insert(
                    spec.pool,
                    DesiredPool {
                        opts: spec.pool_opts,
                        backends: vec![backend],
                    },
                );
            }
            Some(pool) => {
                let diffs = labels::differences(&pool.opts, &spec.pool_opts, &settings.label_prefix);
                if !diffs.is_empty() {
                    out.problems.push(format!(
                        "pool {}: container {} disagrees with the oldest member {} on {}; using {}'s values",
                        spec.pool,
                        c.name,
                        first[&spec.pool],
                        diffs.join(", "),
                        first[&spec.pool],
                    ));
                }
                pool.backends.push(backend);
            }
        }
    }
    out
}

fn skip(c: &ContainerInfo, reason: String) -> Skipped {
    Skipped {
        id: c.id.clone(),
        container: c.name.clone(),
        reason,
    }
}

/// SPEC "Network address": label > flag > the network wharf shares > the only
/// network. When wharf runs in a container with addresses of its own, a
/// backend sharing none of its networks is unreachable and is skipped.
/// Returns the network name and the container's IP on it, or why there is none.
pub fn choose_network(
    c: &ContainerInfo,
    label: Option<&str>,
    settings: &Settings,
    own_networks: &[&str],
) -> Result<(String, IpAddr), String> {
    let with_ip: Vec<(&str, IpAddr)> = c
        .networks
        .iter()
        .filter_map(|(n, ip)| ip.map(|ip| (n.as_str(), ip)))
        .collect();
    let names = || {
        let v: Vec<&str> = c.networks.keys().map(String::as_str).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let named = |net: &str, source: &str| -> Result<(String, IpAddr), String> {
        with_ip
            .iter()
            .find(|(n, _)| *n == net)
            .map(|(n, ip)| (n.to_string(), *ip))
            .ok_or_else(|| format!("not on network {net:?} ({source}); its networks: {}", names()))
    };
    if let Some(net) = label {
        return named(net, &format!("{}.network", settings.label_prefix));
    }
    if let Some(net) = settings.network.as_deref() {
        return named(net, "--network");
    }
    let shared: Vec<&(&str, IpAddr)> = with_ip.iter().filter(|(n, _)| own_networks.contains(n)).collect();
    match shared.as_slice() {
        [(n, ip)] => return Ok((n.to_string(), *ip)),
        // wharf in a container can only reach backends on its own networks.
        [] if !own_networks.is_empty() => {
            return Err(format!(
                "shares no network with wharf (wharf is on {}; the container on {}); connect them or set {}.network",
                own_networks.join(", "),
                names(),
                settings.label_prefix
            ))
        }
        [] => {}
        many => {
            let list: Vec<&str> = many.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "ambiguous: shares networks {} with wharf; set {}.network or --network",
                list.join(", "),
                settings.label_prefix
            ));
        }
    }
    match with_ip.as_slice() {
        [(n, ip)] => Ok((n.to_string(), *ip)),
        [] => Err(format!("no network address (networks: {})", names())),
        _ => Err(format!(
            "ambiguous: on networks {}; set {}.network or --network",
            names(),
            settings.label_prefix
        )),
    }
}

#[cfg(test)]
mod tests;
