//! Start-up and shutdown: binds the listeners, connects to Docker, starts the
//! watcher, serves until SIGTERM/SIGINT, then drains.
//!
//! Every start-up failure is a [`StartError`] whose message names the cause
//! and the fix; `main` prints it on one line and exits 2.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::info;

use crate::admin::{self, Admin};
use crate::config::{Config, Provider};
use crate::docker::client::{self, DockerError};
use crate::docker::desired::{Desired, Settings};
use crate::docker::watcher::{Discovery, Publisher, Status, Watcher};
use crate::proxy::Proxy;
use crate::routing::Router;
use crate::server;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}; is another process using it? choose another {flag}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

async fn bind(addr: SocketAddr, what: &'static str, flag: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
        addr,
        what,
        flag,
        source,
    })
}

/// The discovery settings a config implies (self id found later).
pub fn settings(cfg: &Config) -> Settings {
    Settings {
        label_prefix: cfg.label_prefix.clone(),
        exposed_by_default: cfg.exposed_by_default,
        network: cfg.network.clone(),
        self_id: None,
    }
}

/// Run wharf until `shutdown` resolves, then drain and return.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let listener = bind(cfg.listen, "proxy", "--listen").await?;
    let admin_listener = bind(cfg.admin_listen, "admin", "--admin-listen").await?;

    let router = Arc::new(Router::default());
    let discovery = Arc::new(Discovery::default());
    let publisher = Publisher {
        router: Arc::clone(&router),
        statics: cfg.static_pools.clone(),
    };

    let watcher = match cfg.provider {
        Provider::None => {
            discovery.update(|s| s.provider = "none".into());
            publisher.publish(Desired::default());
            discovery.ready.store(true, Ordering::Relaxed);
            None
        }
        Provider::Docker => {
            let docker = client::connect().await?;
            // Fail fast at start (exit 2) rather than serve nothing silently.
            client::list(&docker).await.map_err(|e| match e {
                DockerError::Api(source) => DockerError::Unreachable {
                    host: client::docker_host(),
                    source,
                },
                other => other,
            })?;
            let mut settings = settings(&cfg);
            settings.self_id = client::find_self(&docker).await;
            if let Some(id) = &settings.self_id {
                info!(container = %&id[..12.min(id.len())], "running in a container; its networks are used to reach backends");
            }
            discovery.update(|s| {
                *s = Status {
                    provider: "docker".into(),
                    docker_host: Some(client::docker_host()),
                    self_container: settings.self_id.clone(),
                    ..Status::default()
                }
            });
            let w = Watcher {
                docker,
                settings,
                publisher,
                discovery: Arc::clone(&discovery),
            };
            Some(tokio::spawn(w.run()))
        }
    };

    let proxy = Arc::new(Proxy::new(
        Arc::clone(&router),
        cfg.timeouts,
        cfg.access_log,
        cfg.trusted_proxies.clone(),
    ));
    let reaper = tokio::spawn(reap_idle(Arc::clone(&router), cfg.timeouts.upstream_idle));
    let admin = Arc::new(Admin {
        proxy: Arc::clone(&proxy),
        discovery,
        shutting_down: AtomicBool::new(false),
    });
    info!(listen = %cfg.listen, admin = %cfg.admin_listen, "wharf {} serving", env!("CARGO_PKG_VERSION"));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = {
        let mut rx = stop_rx.clone();
        let admin = Arc::clone(&admin);
        tokio::spawn(admin::serve(admin_listener, admin, async move {
            let _ = rx.wait_for(|v| *v).await;
        }))
    };
    let server_shutdown = {
        let admin = Arc::clone(&admin);
        async move {
            shutdown.await;
            info!("shutdown signal: readiness off, no new connections");
            admin.shutting_down.store(true, Ordering::Relaxed);
        }
    };
    server::serve(listener, proxy, cfg.timeouts, server_shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(w) = watcher {
        w.abort();
    }
    reaper.abort();
    let _ = admin_task.await;
    info!("bye");
    Ok(())
}

/// Close upstream connections idle for longer than `max_idle`, a few times
/// per `max_idle` (reuse also checks their age; this covers quiet times).
async fn reap_idle(router: Arc<Router>, max_idle: std::time::Duration) {
    let mut tick = tokio::time::interval((max_idle / 3).max(std::time::Duration::from_millis(50)));
    loop {
        tick.tick().await;
        for p in &router.load().pools {
            for b in &p.backends {
                b.shared.idle.prune(max_idle);
            }
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
