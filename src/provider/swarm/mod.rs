//! The Swarm provider (`--provider swarm`): the tasks of a swarm's services.
//!
//! Swarm is the engine; wharf stays stateless. Every wharf replica reads the
//! same manager state and derives the same table, so any number of them
//! agree without talking to each other. Backends are the tasks' own
//! addresses on an overlay network, never a service VIP, so balancing,
//! health, draining and sticky sessions apply per task.
//!
//! - [`client`]: the Engine API calls (GET only), and the manager check;
//! - [`tasks`]: services and tasks → desired state (pure), through the
//!   Docker provider's label parser and network rule;
//! - [`watcher`]: the poll loop, with events as hints.

pub mod client;
pub mod tasks;
pub mod watcher;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::info;

use super::{Provider, Publisher};
use crate::provider::docker::client::docker_host;
use crate::provider::docker::Settings;
pub use client::{SwarmClient, SwarmError};
use watcher::Watcher;

/// Swarm discovery, connected and checked at start.
pub struct SwarmProvider {
    client: SwarmClient,
    settings: Settings,
    own_container: Option<String>,
}

impl SwarmProvider {
    /// Connect, check that the engine is a swarm manager, read the tasks once
    /// (so a broken API fails the start, exit 2) and find wharf's own task,
    /// whose networks choose the backends' when no label or flag does.
    pub async fn connect(mut settings: Settings) -> Result<SwarmProvider, SwarmError> {
        let (client, docker) = SwarmClient::connect().await?;
        let api = |message: String| SwarmError::Api {
            host: docker_host(),
            message,
        };
        let tasks = client.tasks().await.map_err(api)?;
        let services = client.services().await.map_err(api)?;
        info!(
            host = %docker_host(),
            services = services.len(),
            tasks = tasks.len(),
            "connected to a swarm manager"
        );
        let own_container = docker.find_self().await;
        if let Some(id) = &own_container {
            settings.self_id = client.own_task(id).await;
            match &settings.self_id {
                Some(task) => info!(task = %task, "running as a swarm task; its networks are used to reach backends"),
                None => info!("running in a container that is not a swarm task"),
            }
        }
        Ok(SwarmProvider {
            client,
            settings,
            own_container,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn client(&self) -> &SwarmClient {
        &self.client
    }
}

impl Provider for SwarmProvider {
    fn run(self: Box<Self>, out: Publisher) -> BoxFuture<'static, ()> {
        out.status(|s| {
            s.provider = "swarm".into();
            s.docker_host = Some(docker_host());
            s.self_container = self.own_container.clone();
        });
        Watcher {
            source: self.client,
            settings: self.settings,
            out,
        }
        .run()
        .boxed()
    }
}
