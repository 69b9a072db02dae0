//! Swarm services and tasks → desired state, as pure functions.
//!
//! The Engine API's task JSON is read here into plain [`TaskInfo`] values
//! (bollard's typed `Task` has no `NetworksAttachments`, where the task
//! addresses are), and [`derive`] turns tasks plus their services into the
//! same [`Desired`] the Docker provider makes: each task becomes a
//! [`ContainerInfo`] and goes through [`containers::derive`], so every label,
//! the network rule (label > `--network` > the network wharf's own task
//! shares > the only one) and the pool-disagreement rule work for tasks
//! exactly as for containers.
//!
//! A task's status, from what Swarm decided and what the task is doing:
//! - desired `running`, state `running`: ready;
//! - desired `running`, any earlier state (`pending` … `starting`; a task
//!   with a HEALTHCHECK stays `starting` until it passes): waiting;
//! - desired anything else (`shutdown` on a rolling update, `remove` or
//!   `shutdown` on a scale-down), state still `running`: draining, the
//!   moment Swarm decides, before the container gets its stop signal;
//! - a terminal state (`complete`, `failed`, `shutdown`, …): not a backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Deserialize;

use crate::labels::COMPOSE_SERVICE_LABEL;
use crate::model::{BackendStatus, Desired};
use crate::provider::docker::containers::{self, ContainerInfo, Health, Settings};

/// What wharf needs to know about one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub id: String,
    pub service_id: String,
    /// Replicated services number their tasks; global ones do not.
    pub slot: Option<u64>,
    pub node_id: String,
    /// What Swarm wants: `running`, `shutdown`, `remove`, …
    pub desired: String,
    /// What the task is doing: `pending`, `starting`, `running`, `failed`, …
    pub state: String,
    /// Creation time, unix seconds (the oldest member wins disagreements).
    pub created: i64,
    /// The task template's container labels, as of this task's version.
    pub labels: HashMap<String, String>,
    /// Network name → the task's address on it (the ingress network left out:
    /// it carries the routing mesh, not backend traffic).
    pub networks: BTreeMap<String, Option<IpAddr>>,
}

impl TaskInfo {
    /// Running, or on its way to running, as Swarm wants.
    pub fn is_live(&self) -> bool {
        !is_terminal(&self.state)
    }
}

/// What wharf needs to know about one service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    /// The service's own labels (`deploy.labels` in a stack file).
    pub labels: HashMap<String, String>,
    /// Target ports of the endpoint spec (TCP), sorted: like a container's exposed ports.
    pub ports: Vec<u16>,
}

/// States after which a task never runs again.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned"
    )
}

/// The task's status as a backend; `None` when it is not one any more.
/// `draining` holds the tasks whose container received a stop signal on
/// this node (a hint ahead of the next poll).
pub fn status(t: &TaskInfo, draining: &HashSet<String>) -> Option<BackendStatus> {
    if is_terminal(&t.state) {
        return None;
    }
    if t.desired != "running" {
        // Swarm decided to stop it: nothing new, whatever it is doing.
        return Some(BackendStatus::Draining);
    }
    if draining.contains(&t.id) {
        return Some(BackendStatus::Draining);
    }
    Some(match t.state.as_str() {
        "running" => BackendStatus::Ready,
        "starting" => BackendStatus::Waiting("task starting (health check not passed yet)".into()),
        other => BackendStatus::Waiting(format!("task {other}")),
    })
}

/// Derive the desired pools from the live tasks and their services. Tasks of
/// unknown services (created since the last service listing) are left out
/// until the services are listed again.
pub fn derive(
    tasks: &[TaskInfo],
    services: &HashMap<String, ServiceInfo>,
    draining: &HashSet<String>,
    settings: &Settings,
) -> Desired {
    let mut as_containers = Vec::with_capacity(tasks.len());
    let mut stop = HashSet::new();
    let mut waiting: HashMap<String, String> = HashMap::new();
    for t in tasks {
        let Some(status) = status(t, draining) else { continue };
        // wharf's own task goes in too: its networks choose the backends'.
        let Some(svc) = services.get(&t.service_id) else {
            continue;
        };
        match status {
            BackendStatus::Draining => {
                stop.insert(t.id.clone());
            }
            BackendStatus::Waiting(why) => {
                waiting.insert(t.id.clone(), why);
            }
            BackendStatus::Ready => {}
        }
        as_containers.push(to_container(t, svc));
    }
    let mut out = containers::derive(&as_containers, &stop, settings);
    for pool in out.pools.values_mut() {
        for b in &mut pool.backends {
            if let (Some(why), BackendStatus::Ready) = (waiting.remove(&b.id), &b.status) {
                b.status = BackendStatus::Waiting(why);
            }
        }
    }
    out
}

/// A task as the container the label parser and network rule expect: the
/// service's labels over the task template's, the service name as the
/// default pool name, Docker's container name (`service.slot.task`).
pub fn to_container(t: &TaskInfo, svc: &ServiceInfo) -> ContainerInfo {
    let mut labels = t.labels.clone();
    labels.extend(svc.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    // The parser's default pool is the compose service; a Swarm service is the same idea.
    labels
        .entry(COMPOSE_SERVICE_LABEL.to_string())
        .or_insert_with(|| svc.name.clone());
    ContainerInfo {
        id: t.id.clone(),
        name: task_name(t, &svc.name),
        labels,
        networks: t.networks.clone(),
        exposed_ports: svc.ports.clone(),
        created: t.created,
        paused: false,
        health: Health::None,
    }
}

/// Docker's name for a task's container: `web.3.<task id>` (replicated) or
/// `web.<node id>.<task id>` (global).
pub fn task_name(t: &TaskInfo, service: &str) -> String {
    match t.slot {
        Some(slot) if slot > 0 => format!("{service}.{slot}.{}", t.id),
        _ => format!("{service}.{}.{}", t.node_id, t.id),
    }
}

// ---- The Engine API's JSON, the fields wharf reads ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    slot: Option<u64>,
    #[serde(rename = "NodeID")]
    node_id: String,
    desired_state: String,
    status: RawStatus,
    created_at: String,
    spec: RawTaskSpec,
    networks_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawStatus {
    state: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawTaskSpec {
    container_spec: RawContainerSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawContainerSpec {
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawAttachment {
    network: RawNetwork,
    addresses: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawNetwork {
    spec: RawNetworkSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawNetworkSpec {
    name: String,
    ingress: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawService {
    #[serde(rename = "ID")]
    id: String,
    spec: RawServiceSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawServiceSpec {
    name: String,
    labels: Option<HashMap<String, String>>,
    endpoint_spec: Option<RawEndpointSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawEndpointSpec {
    ports: Option<Vec<RawPort>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawPort {
    protocol: Option<String>,
    target_port: u16,
}

/// `GET /tasks` (a JSON array) → tasks; entries without an id are dropped.
pub fn parse_tasks(json: &str) -> Result<Vec<TaskInfo>, String> {
    let raw: Vec<RawTask> = serde_json::from_str(json).map_err(|e| format!("tasks JSON: {e}"))?;
    Ok(raw
        .into_iter()
        .filter(|t| !t.id.is_empty())
        .map(from_raw_task)
        .collect())
}

/// `GET /tasks/{id}` (one JSON object) → the task.
pub fn parse_task(json: &str) -> Result<TaskInfo, String> {
    let raw: RawTask = serde_json::from_str(json).map_err(|e| format!("task JSON: {e}"))?;
    Ok(from_raw_task(raw))
}

/// `GET /services` → services by id.
pub fn parse_services(json: &str) -> Result<HashMap<String, ServiceInfo>, String> {
    let raw: Vec<RawService> = serde_json::from_str(json).map_err(|e| format!("services JSON: {e}"))?;
    Ok(raw
        .into_iter()
        .filter(|s| !s.id.is_empty())
        .map(|s| {
            let mut ports: Vec<u16> = s
                .spec
                .endpoint_spec
                .and_then(|e| e.ports)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "tcp") && p.target_port != 0)
                .map(|p| p.target_port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            let info = ServiceInfo {
                id: s.id.clone(),
                name: s.spec.name,
                labels: s.spec.labels.unwrap_or_default(),
                ports,
            };
            (s.id, info)
        })
        .collect())
}

fn from_raw_task(t: RawTask) -> TaskInfo {
    let networks = t
        .networks_attachments
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.network.spec.ingress && !a.network.spec.name.is_empty())
        .map(|a| {
            let ip = a.addresses.unwrap_or_default().iter().find_map(|cidr| strip_cidr(cidr));
            (a.network.spec.name, ip)
        })
        .collect();
    TaskInfo {
        id: t.id,
        service_id: t.service_id,
        slot: t.slot,
        node_id: t.node_id,
        desired: t.desired_state,
        state: t.status.state,
        created: unix_seconds(&t.created_at).unwrap_or(0),
        labels: t.spec.container_spec.labels.unwrap_or_default(),
        networks,
    }
}

/// `10.0.1.5/24` → `10.0.1.5` (an address without a prefix length is taken as is).
pub fn strip_cidr(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.trim().parse().ok()
}

/// RFC 3339 (`2026-12-02T05:20:46.123456789Z`, as the Engine writes it) →
/// unix seconds. Only `Z` or a numeric offset; `None` for anything else.
pub fn unix_seconds(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => return None,
    };
    let mut c = clock.split(':');
    let h: i64 = c.next()?.parse().ok()?;
    let min: i64 = c.next()?.parse().ok()?;
    let sec: i64 = c.next()?.split('.').next()?.parse().ok()?;
    let off = match offset {
        "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec - off)
}

#[cfg(test)]
mod tests;
