//! The Docker provider: containers of one Docker Engine.
//!
//! [`client`] is the only bollard user (GET endpoints only) and converts
//! Docker's types into plain ones; [`containers`] turns a listing into the
//! desired state (pure); [`hints`] is what the events stream says ahead of
//! the next listing (pure); [`lookup`] merges what the daemon says about the
//! few containers an event named (pure); [`watcher`] is the loop that keeps
//! it current; [`denied`] explains a socket that refuses wharf's
//! (unprivileged) user.

pub mod client;
pub mod containers;
pub mod denied;
pub mod hints;
pub mod lookup;
pub mod watcher;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::info;

use super::{Provider, Publisher};
pub use client::{DockerClient, DockerError};
pub use containers::{ContainerInfo, Health, Settings};
use watcher::Watcher;

/// Docker discovery, connected and checked at start.
pub struct DockerProvider {
    client: DockerClient,
    settings: Settings,
}

impl DockerProvider {
    /// Connect, list once (so an unreachable daemon fails the start, exit 2,
    /// rather than serve nothing silently) and find wharf's own container.
    pub async fn connect(mut settings: Settings) -> Result<DockerProvider, DockerError> {
        let client = DockerClient::connect().await?;
        let listed = client.list_checked().await?;
        let (engine, api) = client.versions().await;
        info!(
            host = %client::docker_host(),
            engine = engine.as_deref().unwrap_or("unknown"),
            api = %api,
            containers = listed.len(),
            "connected to Docker"
        );
        settings.self_id = client.find_self().await;
        if let Some(id) = &settings.self_id {
            info!(container = %&id[..12.min(id.len())], "running in a container; its networks are used to reach backends");
        }
        Ok(DockerProvider { client, settings })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn client(&self) -> &DockerClient {
        &self.client
    }
}

impl Provider for DockerProvider {
    fn run(self: Box<Self>, out: Publisher) -> BoxFuture<'static, ()> {
        out.status(|s| {
            s.provider = "docker".into();
            s.docker_host = Some(client::docker_host());
            s.self_container = self.settings.self_id.clone();
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
