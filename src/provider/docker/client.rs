//! The only user of bollard: connect, list, inspect, subscribe to events,
//! and convert Docker's types into plain [`ContainerInfo`] and [`Event`]
//! values. Only GET endpoints are used: wharf never changes anything in Docker.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bollard::models::{
    ContainerSummary, ContainerSummaryStateEnum, EventMessage, EventMessageTypeEnum, PortSummaryTypeEnum,
};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::containers::{ContainerInfo, Health};
use super::hints::{Event, EventKind};
use super::watcher::Source;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon at {host}: {source}. Mount /var/run/docker.sock, set DOCKER_HOST, or run with --provider none")]
    Unreachable {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The Unix socket refused wharf's user (EACCES): names the group to add.
    #[error("{0}")]
    Denied(super::denied::Denied),
    #[error("Docker API: {0}")]
    Api(#[from] bollard::errors::Error),
}

impl DockerError {
    /// The start-up error for a failure to reach `host`: [`DockerError::Denied`]
    /// for a permission error on a Unix socket, else `Unreachable`.
    fn unreachable(host: &str, source: bollard::errors::Error) -> DockerError {
        match super::denied::diagnose(host, &source) {
            Some(denied) => DockerError::Denied(denied),
            None => DockerError::Unreachable {
                host: host.to_string(),
                source,
            },
        }
    }
}

/// Where `connect` will go, for messages: `DOCKER_HOST` or the default socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A connection to the Docker Engine API (cheap to clone).
#[derive(Debug, Clone)]
pub struct DockerClient {
    docker: Docker,
}

impl DockerClient {
    /// Connect as the Docker CLI does (`DOCKER_HOST`: unix://, tcp://, with
    /// `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`) and negotiate the API version:
    /// the daemon may be older than the API version bollard speaks by default.
    pub async fn connect() -> Result<DockerClient, DockerError> {
        let host = docker_host();
        let unreachable = |source| DockerError::unreachable(&host, source);
        // A hung daemon should not stall the watcher for bollard's default 2 min
        // (the timeout covers response headers, not the long-lived events body).
        let docker = Docker::connect_with_defaults()
            .map_err(unreachable)?
            .with_timeout(std::time::Duration::from_secs(20));
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        Ok(DockerClient { docker })
    }

    /// Running (and paused) containers.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        list(&self.docker).await
    }

    /// [`DockerClient::list`], with an API error reported as "unreachable"
    /// (the start-up check).
    pub async fn list_checked(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        self.list().await.map_err(|e| match e {
            DockerError::Api(source) => DockerError::unreachable(&docker_host(), source),
            other => other,
        })
    }

    /// The daemon's engine version and the API version in use, for the
    /// start-up line (`None` for the engine if the daemon does not say).
    pub async fn versions(&self) -> (Option<String>, String) {
        let engine = self.docker.version().await.ok().and_then(|v| v.version);
        (engine, self.docker.client_version().to_string())
    }

    /// The bollard handle, for the Swarm provider's calls.
    pub fn bollard(&self) -> &Docker {
        &self.docker
    }

    /// wharf's own container id, when it runs in one.
    pub async fn find_self(&self) -> Option<String> {
        find_self(&self.docker).await
    }
}

impl Source for DockerClient {
    /// The listing runs on a blocking-pool thread: on a host with a thousand
    /// containers it is megabytes of JSON (~13 ms of CPU to read and convert),
    /// and on the control thread every event — a stop signal that must drain
    /// a backend at once — would wait behind it.
    fn list(&self) -> BoxFuture<'static, Result<Vec<ContainerInfo>, String>> {
        let docker = self.docker.clone();
        let handle = tokio::runtime::Handle::current();
        async move {
            tokio::task::spawn_blocking(move || handle.block_on(list(&docker)))
                .await
                .map_err(|e| format!("listing task failed: {e}"))?
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    /// A look-up is a listing filtered by id: a few containers of JSON,
    /// read on the control thread, whatever the host runs.
    fn look(&self, ids: Vec<String>) -> BoxFuture<'static, Result<Vec<ContainerInfo>, String>> {
        let docker = self.docker.clone();
        async move { list_ids(&docker, ids).await.map_err(|e| e.to_string()) }.boxed()
    }

    fn events(&self, since_unix: i64) -> BoxStream<'static, Result<Event, String>> {
        events(&self.docker, since_unix)
            .map(|r| r.map(from_event).map_err(|e| e.to_string()))
            .boxed()
    }
}

async fn list(docker: &Docker) -> Result<Vec<ContainerInfo>, DockerError> {
    let opts = ListContainersOptions {
        all: false,
        ..Default::default()
    };
    let list = docker.list_containers(Some(opts)).await?;
    Ok(list.into_iter().filter_map(from_summary).collect())
}

/// The running (and paused) containers among `ids`.
async fn list_ids(docker: &Docker, ids: Vec<String>) -> Result<Vec<ContainerInfo>, DockerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let opts = ListContainersOptions {
        all: false,
        filters: Some(HashMap::from([("id".to_string(), ids)])),
        ..Default::default()
    };
    let list = docker.list_containers(Some(opts)).await?;
    Ok(list.into_iter().filter_map(from_summary).collect())
}

/// The container events wharf reacts to, and network connect/disconnect.
/// No label filter: it would drop network events.
fn events(
    docker: &Docker,
    since_unix: i64,
) -> impl futures::Stream<Item = Result<EventMessage, bollard::errors::Error>> + use<> {
    let mut filters = HashMap::new();
    filters.insert("type".to_string(), vec!["container".to_string(), "network".to_string()]);
    filters.insert(
        "event".to_string(),
        [
            "start",
            "die",
            "stop",
            "kill",
            "pause",
            "unpause",
            "health_status",
            "destroy",
            "connect",
            "disconnect",
            "restart",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    let opts = EventsOptions {
        since: Some(since_unix.to_string()),
        until: None,
        filters: Some(filters),
    };
    docker.events(Some(opts))
}

/// Find wharf's own container, when it runs in one: the container id from
/// `/proc/self/mountinfo` (Docker bind-mounts `/etc/hostname` from
/// `/var/lib/docker/containers/<id>/`), or from the cgroup path, else the
/// hostname (Docker's default hostname is the short id). `None` on the host.
async fn find_self(docker: &Docker) -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        candidates.extend(container_id_in(&m));
    }
    if let Ok(c) = std::fs::read_to_string("/proc/self/cgroup") {
        candidates.extend(container_id_in(&c));
    }
    if std::path::Path::new("/.dockerenv").exists() {
        if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
            candidates.push(h.trim().to_string());
        }
    }
    for c in candidates {
        if let Ok(info) = docker.inspect_container(&c, None::<InspectContainerOptions>).await {
            return info.id;
        }
    }
    None
}

/// The first 64-hex-digit id that follows `containers/` or `docker/` or `docker-`.
pub fn container_id_in(text: &str) -> Option<String> {
    for marker in ["/containers/", "/docker/", "docker-"] {
        for (i, _) in text.match_indices(marker) {
            let rest = &text[i + marker.len()..];
            let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            if id.len() == 64 {
                return Some(id);
            }
        }
    }
    None
}

/// A container event names the container as its actor; a network event
/// names the network, and the container in its `container` attribute.
fn from_event(ev: EventMessage) -> Event {
    let kind = match ev.typ {
        Some(EventMessageTypeEnum::CONTAINER) => EventKind::Container,
        Some(EventMessageTypeEnum::NETWORK) => EventKind::Network,
        _ => EventKind::Other,
    };
    let (actor_id, mut attrs) = match ev.actor {
        Some(a) => (a.id.unwrap_or_default(), a.attributes.unwrap_or_default()),
        None => (String::new(), HashMap::new()),
    };
    let (id, name) = match kind {
        EventKind::Network => (attrs.remove("container").unwrap_or_default(), String::new()),
        _ => (actor_id, attrs.remove("name").unwrap_or_default()),
    };
    Event {
        kind,
        action: ev.action.unwrap_or_default(),
        id,
        name,
        signal: attrs.remove("signal"),
        time_nano: ev.time_nano,
        attributes: attrs,
    }
}

fn from_summary(s: ContainerSummary) -> Option<ContainerInfo> {
    let id = s.id?;
    let name = s
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.chars().take(12).collect());
    let paused = s.state == Some(ContainerSummaryStateEnum::PAUSED);
    if !matches!(
        s.state,
        Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::PAUSED)
    ) {
        return None;
    }
    let networks: BTreeMap<String, Option<IpAddr>> = s
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| (name, ep.ip_address.and_then(|ip| ip.parse().ok())))
        .collect();
    let mut exposed_ports: Vec<u16> = s
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.typ != Some(PortSummaryTypeEnum::UDP) && p.typ != Some(PortSummaryTypeEnum::SCTP))
        .map(|p| p.private_port)
        .collect();
    exposed_ports.sort_unstable();
    exposed_ports.dedup();
    let health = match s.health.and_then(|h| h.status) {
        Some(st) => match st.to_string().as_str() {
            "starting" => Health::Starting,
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            _ => Health::None,
        },
        None => Health::from_status_text(s.status.as_deref().unwrap_or("")),
    };
    Some(ContainerInfo {
        id,
        name,
        labels: s.labels.unwrap_or_default(),
        networks,
        exposed_ports,
        created: s.created.unwrap_or(0),
        paused,
        health,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

    #[test]
    fn container_id_is_found_in_mountinfo_and_cgroup_v1() {
        let mountinfo = format!("612 600 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4");
        assert_eq!(container_id_in(&mountinfo).as_deref(), Some(ID));
        let cgroup = format!("12:memory:/docker/{ID}\n");
        assert_eq!(container_id_in(&cgroup).as_deref(), Some(ID));
        let systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id_in(&systemd).as_deref(), Some(ID));
    }

    #[test]
    fn no_container_id_on_the_host() {
        assert_eq!(container_id_in("0::/user.slice/user-1000.slice\n"), None);
        assert_eq!(container_id_in("/docker/abc"), None);
    }
}
