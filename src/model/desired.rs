//! The desired state: what a provider says wharf should route, before it
//! becomes a [`crate::routing::RoutingTable`].
//!
//! Providers (Docker containers, `--static` pools, later Swarm tasks) each
//! produce a [`Desired`]; the publisher merges them and the routing table is
//! rebuilt only when the result differs from the last one, so every type here
//! compares by value.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::options::PoolOptions;

/// A backend's stable identity: the same container on a new address is a new backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub id: String,
    pub addr: SocketAddr,
}

/// Why a backend is or isn't taking new requests, as its provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendStatus {
    Ready,
    /// Received a stop signal (or weight 0): no new requests, in-flight ones finish.
    Draining,
    /// Running but not (yet) allowed to take traffic; the text says why.
    Waiting(String),
}

impl BackendStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendStatus::Ready => "ready",
            BackendStatus::Draining => "draining",
            BackendStatus::Waiting(_) => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredBackend {
    /// The container (or task) id: with `addr`, the backend's identity.
    pub id: String,
    /// A name for people: the container name.
    pub container: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub status: BackendStatus,
}

impl DesiredBackend {
    pub fn key(&self) -> BackendKey {
        BackendKey {
            id: self.id.clone(),
            addr: self.addr,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPool {
    pub opts: PoolOptions,
    pub backends: Vec<DesiredBackend>,
}

/// A container that asked to join but was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Skipped {
    pub id: String,
    pub container: String,
    pub reason: String,
}

/// The desired routing: pools by name, and everything worth telling people.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    pub pools: BTreeMap<String, DesiredPool>,
    pub skipped: Vec<Skipped>,
    /// Pool-wide disagreements and route conflicts.
    pub problems: Vec<String>,
    /// Unknown labels and other things worth a look that change nothing.
    pub warnings: Vec<String>,
}

/// A `--static` pool: a name and fixed backend addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPool {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    /// `--static-label POOL:KEY=VALUE`: (full label key, value), as a container would carry them.
    pub labels: Vec<(String, String)>,
}

/// `POOL=ADDR[,ADDR…]` → [`StaticPool`].
pub fn parse_static(s: &str) -> Result<StaticPool, String> {
    let (name, addrs) = s
        .split_once('=')
        .ok_or_else(|| format!("--static {s:?}: expected POOL=ADDR[,ADDR…], e.g. web=127.0.0.1:8080"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(format!(
            "--static {s:?}: pool name {name:?} must be letters, digits, '_', '.', '-'"
        ));
    }
    let addrs = addrs
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<SocketAddr>()
                .map_err(|_| format!("--static {s:?}: {a:?} is not IP:PORT (e.g. 127.0.0.1:8080)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StaticPool {
        name: name.to_string(),
        addrs,
        labels: Vec::new(),
    })
}
