//! The Swarm provider's Engine API calls (GET only): the node's swarm role,
//! services, tasks, one task, and the events that hint at a change.
//!
//! Tasks are read as raw JSON: bollard's typed `Task` lacks
//! `NetworksAttachments`. bollard has no public raw GET, so [`SwarmClient::get`]
//! sends bollard's own `GET /_ping` with its URI rewritten to the wanted path
//! (a request modifier) and takes the body as text: the same connection,
//! `DOCKER_HOST`, TLS, API version and timeout as every other call.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::tasks::{self, ServiceInfo, TaskInfo};
use crate::provider::docker::client::docker_host;
use crate::provider::docker::DockerClient;

/// The label Swarm puts on a task's container: the task id.
pub const TASK_ID_LABEL: &str = "com.docker.swarm.task.id";

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Docker(#[from] crate::provider::docker::DockerError),
    #[error("--provider swarm: the Docker Engine at {host} is not part of a swarm (swarm state: {state}); run wharf on a swarm manager, or use --provider docker")]
    NotInSwarm { host: String, state: String },
    #[error("--provider swarm needs a swarm manager's API, and the Docker Engine at {host} is a worker: place wharf on managers (deploy.placement.constraints: [node.role == manager]) or point DOCKER_HOST at a manager (or a read-only socket proxy on one)")]
    NotManager { host: String },
    #[error("Docker API at {host}: {message}")]
    Api { host: String, message: String },
}

/// One hint from the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A service was created, updated (scaled, rolled) or removed.
    Service { action: String, name: String },
    /// A task container on this node: `kill` (a stop signal), `die`, `start`,
    /// `health_status: …`.
    TaskContainer {
        action: String,
        task_id: String,
        /// The signal of a `kill`.
        signal: Option<String>,
    },
    /// Anything else (ignored).
    Other,
}

/// A connection to a swarm manager's Engine API (cheap to clone).
#[derive(Debug, Clone)]
pub struct SwarmClient {
    docker: Docker,
}

impl SwarmClient {
    /// Connect as the Docker provider does, then check that the engine is a
    /// swarm manager: only managers answer `/tasks` and `/services`.
    pub async fn connect() -> Result<(SwarmClient, DockerClient), SwarmError> {
        let docker_client = DockerClient::connect().await?;
        let docker = docker_client.bollard().clone();
        let host = docker_host();
        let info = docker.info().await.map_err(|e| SwarmError::Api {
            host: host.clone(),
            message: e.to_string(),
        })?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        if state != "active" {
            return Err(SwarmError::NotInSwarm { host, state });
        }
        if swarm.control_available != Some(true) {
            return Err(SwarmError::NotManager { host });
        }
        Ok((SwarmClient { docker }, docker_client))
    }

    /// `GET path` (with its query), the body as text.
    pub async fn get(&self, path: &str) -> Result<String, String> {
        get(&self.docker, path).await
    }

    /// The live tasks: `desired-state=running` (the filter keeps the task
    /// history out of every poll).
    pub async fn tasks(&self) -> Result<Vec<TaskInfo>, String> {
        let filters = r#"{"desired-state":["running"]}"#;
        let body = self.get(&format!("/tasks?filters={}", encode(filters))).await?;
        tasks::parse_tasks(&body)
    }

    /// One task; `None` when Swarm no longer knows it.
    pub async fn task(&self, id: &str) -> Result<Option<TaskInfo>, String> {
        match self.get(&format!("/tasks/{}", encode(id))).await {
            Ok(body) => tasks::parse_task(&body).map(Some),
            Err(e) if e.contains("404") || e.contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn services(&self) -> Result<HashMap<String, ServiceInfo>, String> {
        let body = self.get("/services").await?;
        tasks::parse_services(&body)
    }

    /// Service events, and the container events of this node's tasks.
    pub fn events(&self, since_unix: i64) -> BoxStream<'static, Result<SwarmEvent, String>> {
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["service".to_string(), "container".to_string()]);
        let opts = EventsOptions {
            since: Some(since_unix.to_string()),
            until: None,
            filters: Some(filters),
        };
        self.docker
            .events(Some(opts))
            .map(|r| r.map(from_event).map_err(|e| e.to_string()))
            .boxed()
    }

    /// The task wharf itself runs as, from its container's labels.
    pub async fn own_task(&self, own_container: &str) -> Option<String> {
        let info = self
            .docker
            .inspect_container(
                own_container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()?;
        info.config?.labels?.remove(TASK_ID_LABEL)
    }
}

fn from_event(ev: bollard::models::EventMessage) -> SwarmEvent {
    use bollard::models::EventMessageTypeEnum as T;
    let action = ev.action.unwrap_or_default();
    let mut attrs = ev.actor.and_then(|a| a.attributes).unwrap_or_default();
    match ev.typ {
        Some(T::SERVICE) => SwarmEvent::Service {
            action,
            name: attrs.remove("name").unwrap_or_default(),
        },
        Some(T::CONTAINER) => match attrs.remove(TASK_ID_LABEL) {
            Some(task_id) => SwarmEvent::TaskContainer {
                action,
                task_id,
                signal: attrs.remove("signal"),
            },
            None => SwarmEvent::Other,
        },
        _ => SwarmEvent::Other,
    }
}

/// The raw GET: bollard's `/_ping` request, pointed at `path`.
fn get(docker: &Docker, path: &str) -> BoxFuture<'static, Result<String, String>> {
    let path = path.to_string();
    let docker = docker.clone().with_request_modifier(move |mut req| {
        let uri = req.uri().to_string();
        if let Some(base) = uri.strip_suffix("/_ping") {
            if let Ok(new) = format!("{base}{path}").parse() {
                *req.uri_mut() = new;
            }
        }
        req
    });
    async move { docker.ping().await.map_err(|e| e.to_string()) }.boxed()
}

/// Percent-encode a query value or path segment (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_escapes_a_filter_document() {
        assert_eq!(
            encode(r#"{"desired-state":["running"]}"#),
            "%7B%22desired-state%22%3A%5B%22running%22%5D%7D"
        );
    }
}
